/**
 * Optax-style gradient transformations: pure `{ init, update }` pairs over explicit trees.
 *
 * A transformation never stores anything: `init(params)` returns a fresh state tree and
 * `update(grads, state, params?)` returns fresh `updates` and a fresh next state, inside `tf.tidy`,
 * without disposing or mutating its inputs. The caller owns what it receives and disposes the old
 * trees when it no longer needs them (see `applyUpdates`).
 *
 * Updates are what to ADD to the parameters: an optimizer's updates are the negated step
 * (`sgd` returns `-learningRate * g`), as in optax.
 *
 * Non-finite gradients: as in optax, NaN and Infinity are not filtered; they propagate into the
 * updates and the state (e.g. Adam's moments), so one bad step poisons the state. Check the loss
 * or the gradients' `globalNorm` yourself when that matters.
 *
 * One flat buffer over all leaves (multi-tensor apply; see `./flat.ts`): the moments of the
 * stateful transformations (`trace`, and `scaleByAdam`, `scaleByRms`, `scaleByStddev` in
 * `./optimizers.ts`) are flat float32 buffers `[n]` over the params' `n` scalars (leaves in
 * flatten order), and `chain` runs consecutive built-in transformations on one concatenation of
 * the grads, splitting the updates back into the tree once: an Adam step is ~16 kernels plus a
 * `Reshape` in and out per leaf of rank != 1, instead of ~14 per leaf. Element by element the
 * arithmetic is the per-leaf one, in the same order: the results are the same bits.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as E from 'fp-ts/Either';
import { OptimConfigError, show } from '../errors';
import { tidy } from '../params/scope';
import * as tree from '../params/tree';
import type { ParamTree, Tree } from '../params/tree';
import {
  needsFlatAfter,
  flatStepOf,
  Packed,
  requireFlat,
  requireTensor,
  runSteps,
  select,
  withFlatStep,
  zerosFlat,
  type FlatStep,
} from './flat';
import {
  checkBoolean,
  checkFunction,
  checkKnownKeys,
  checkNumber,
  checkOptionalFunction,
  isInRange,
  optionsRecord,
  validate,
  type Validated,
  type Validation,
} from '../validation';

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/**
 * An optimizer state: a tree of tensors plus plain JS numbers (e.g. the step count), so that
 * schedules and bias corrections are computed in JS without reading data back from the device.
 */
export type OptState = Tree<tf.Tensor | number>;

/** A schedule maps the update count (0 for the first update) to a value, e.g. a learning rate. */
export type Schedule = (count: number) => number;

/** A learning rate: a constant, or a schedule evaluated at the update count. */
export type LearningRate = number | Schedule;

/**
 * What `update` returns: the updates to add to the params (a tree of the params' type `P`), and
 * the next state.
 */
export type TransformResult<S extends OptState, P extends ParamTree = ParamTree> = {
  readonly updates: P;
  readonly state: S;
};

/**
 * A pure gradient transformation, as in optax, generic in the params: one transformation serves
 * any model, and `update` returns updates of the type `P` of the grads (and params) it is given.
 *
 * - `init(params)` returns a fresh state (tensors created inside `tf.tidy`).
 * - `update(grads, state, params?)` returns fresh updates and a fresh next state, inside
 *   `tf.tidy`; it never disposes or mutates `grads`, `state` or `params`. `grads` must have the
 *   structure and leaf shapes of the params (checked when `params` are given: a mismatch throws
 *   a `TreeError` naming the path), and the flat buffers of `state` their number of scalars (a
 *   `TreeError` names the state field otherwise).
 *
 * @example
 * ```ts
 * const opt: GradientTransformation<AdamState> = adam({ learningRate: 1e-3 });
 * const state = opt.init(params); // params: { w: tf.Tensor }
 * const { updates } = opt.update(grads, state, params); // updates: { w: tf.Tensor }
 * ```
 */
export interface GradientTransformation<S extends OptState = OptState> {
  init<P extends ParamTree>(params: P): S;
  update<P extends ParamTree>(grads: P, state: S, params?: P): TransformResult<S, P>;
}

/** The state of a stateless transformation. */
export type EmptyState = Readonly<Record<string, never>>;
/** The state of `scaleBySchedule`: the number of updates done so far. */
export type ScaleByScheduleState = { readonly count: number };
/**
 * The state of `trace`: the momentum buffer, as ONE flat float32 buffer `[n]` over the `n` scalars
 * of the params (their leaves concatenated in flatten order), not a tree shaped like the params:
 * the update then runs once over all leaves.
 */
export type TraceState = { readonly trace: tf.Tensor1D };
/** The state of `scaleByLearningRate`: empty for a constant rate, a count for a schedule. */
export type LearningRateState = EmptyState | ScaleByScheduleState;
/** The state of `chain(...transforms)`: the tuple of the transforms' states. */
export type ChainState<T extends readonly GradientTransformation[]> = {
  readonly [K in keyof T]: T[K] extends GradientTransformation<infer S> ? S : never;
};

const EMPTY: EmptyState = Object.freeze({});

// ---------------------------------------------------------------------------------------------
// Config validation (internal; shared by optimizers, schedules and KL weights): the checks of
// `src/validation.ts`, throwing `OptimConfigError` (a `ConfigError`)
// ---------------------------------------------------------------------------------------------

export { OptimConfigError };

/**
 * @internal `validateOptions(owner, checks) -> values`: `validate` of `src/validation.ts` for the
 * options of an optimizer, schedule or KL weight: throws ONE `OptimConfigError` listing every
 * problem if any check failed.
 */
export function validateOptions<R extends Readonly<Record<string, Validation<unknown>>>>(
  owner: string,
  checks: R,
): Validated<R> {
  return validate(owner, checks, OptimConfigError);
}

/** @internal A learning rate: a finite number >= 0, or a schedule (a function of the count). */
export function checkLearningRate(name: string, value: unknown): Validation<LearningRate> {
  if (typeof value === 'function') return E.right(value as Schedule);
  return typeof value === 'number' && isInRange(value, { min: 0 })
    ? E.right(value)
    : E.left([
        `${name} must be a finite number >= 0 or a Schedule ((count) => number), ` +
          `got ${show(value)}`,
      ]);
}

// ---------------------------------------------------------------------------------------------
// Tree helpers (internal)
// ---------------------------------------------------------------------------------------------

/** @internal `tf.tidy` for results that are trees: the shared helper of `params/scope`. */
export { tidy };

const showShape = (t: tf.Tensor): string => `[${t.shape.join(', ')}]`;
const where = (path: string): string => `'${path || '<root>'}'`;

export { requireTensor };

/**
 * @internal `zipLeaves(owner, [[name, tree], ...], f) -> tree`: applies `f` leaf by leaf to trees
 * that must have the structure of the first one and the same leaf shapes; a mismatch throws a
 * `TreeError` naming the first differing path and the two trees.
 */
export function zipLeaves<P extends ParamTree>(
  owner: string,
  named: readonly [readonly [string, P], ...(readonly (readonly [string, ParamTree])[])],
  f: (leaves: readonly tf.Tensor[], path: string) => tf.Tensor,
): P {
  const [ref, rows] = matchLeaves(owner, named);
  let i = 0;
  // a tree of tensors with the structure of the first one, which is a P
  return tree.map<unknown, tf.Tensor>(ref, (_leaf, path) => f(rows[i++] as tf.Tensor[], path)) as P;
}

/**
 * @internal `mapLeaves(owner, name, t, f) -> tree`: `f` applied to every leaf of `t` (which must
 * be a tensor; a `TreeError` names the path otherwise), as a tree of the same type.
 */
export function mapLeaves<P extends ParamTree>(
  owner: string,
  name: string,
  t: P,
  f: (leaf: tf.Tensor, path: string) => tf.Tensor,
): P {
  // same structure, tensor leaves: a P
  return tree.map<unknown, tf.Tensor>(t, (leaf, path) =>
    f(requireTensor(owner, name, leaf, path), path),
  ) as P;
}

/**
 * @internal `assertMatching(owner, [[name, tree], ...]) -> void`: the check of `zipLeaves`
 * (same structure as the first tree, tensor leaves of the same shapes) without computing.
 */
export function assertMatching(
  owner: string,
  named: readonly (readonly [string, ParamTree])[],
): void {
  matchLeaves(owner, named);
}

/** The first tree, and for each of its leaves (flatten order) the leaves of all trees there. */
function matchLeaves(
  owner: string,
  named: readonly (readonly [string, ParamTree])[],
): [ParamTree, tf.Tensor[][]] {
  const [first, ...rest] = named;
  if (first === undefined) throw new Error(`${owner}: expected at least one tree.`);
  const [refName, ref] = first;
  const restLeaves = rest.map(([name, t]) => {
    tree.assertSameStructure(ref, t, `${owner}: ${refName} and ${name}`);
    return tree.leaves<unknown>(t);
  });
  const rows: tf.Tensor[][] = [];
  tree.map<unknown, null>(ref, (leaf, path) => {
    const i = rows.length;
    const ref0 = requireTensor(owner, refName, leaf, path);
    const row = [ref0];
    restLeaves.forEach((l, j) => {
      const name = (rest[j] as readonly [string, ParamTree])[0];
      const t = requireTensor(owner, name, l[i], path);
      if (t.shape.length !== ref0.shape.length || t.shape.some((d, k) => d !== ref0.shape[k])) {
        throw new tree.TreeError(
          path,
          `${owner}: at ${where(path)} ${name} has shape ${showShape(t)} but ${refName} has ` +
            `shape ${showShape(ref0)}; ${name} must be shaped like the params.`,
        );
      }
      row.push(t);
    });
    rows.push(row);
    return null;
  });
  return [ref, rows];
}

/**
 * @internal A stateful transformation whose state is flat (see `./flat`): `init(params)` makes
 * its state with `init(params)` inside a tidy, and `update` is its flat step run alone (pack the
 * grads, the step, split the updates). When `params` are given to `update`, the grads are checked
 * against them first (structure and leaf shapes: a `TreeError` names the path).
 */
export function flatTransform<S extends OptState>(
  owner: string,
  init: (params: ParamTree) => S,
  step: FlatStep<S>,
): GradientTransformation<S> {
  return withFlatStep<S>(
    {
      init: (params) => tidy(() => init(params)),
      update: (grads, state, params) => {
        if (params !== undefined) {
          assertMatching(owner, [
            ['params', params],
            ['grads', grads],
          ]);
        }
        return tidy(() => {
          const r = runSteps(owner, [step as unknown as FlatStep], grads, [state], params);
          return { updates: r.updates, state: r.states[0] as S };
        });
      },
    },
    step,
  );
}

export { Packed, requireFlat, zerosFlat, type FlatStep };

/** @internal Checks a state's step count (a plain JS integer >= 0). */
export function requireCount(owner: string, count: unknown): number {
  if (typeof count === 'number' && Number.isInteger(count) && count >= 0) return count;
  throw new tree.TreeError(
    'count',
    `${owner}: state.count must be an integer >= 0, got ${show(count)}; pass the state that ` +
      `init or the previous update returned.`,
  );
}

/** @internal Checks that a state is a record that has the given fields. */
export function requireFields(owner: string, state: unknown, fields: readonly string[]): void {
  const ok =
    typeof state === 'object' &&
    state !== null &&
    !Array.isArray(state) &&
    fields.every((f) => f in state);
  if (!ok) {
    throw new tree.TreeError(
      '',
      `${owner}: the state must be an object with fields [${fields.join(', ')}], got ` +
        `${show(state)}; pass the state that init or the previous update returned.`,
    );
  }
}

const cloneTree = <P extends ParamTree>(owner: string, t: P): P =>
  mapLeaves(owner, 'grads', t, (leaf) => tf.clone(leaf));

// ---------------------------------------------------------------------------------------------
// Transformations
// ---------------------------------------------------------------------------------------------

/**
 * `identity() -> GradientTransformation<EmptyState>`: updates are (fresh copies of) the grads.
 *
 * @example
 * ```ts
 * const t = identity();
 * const { updates } = t.update(grads, t.init(params)); // same values as grads
 * ```
 */
export function identity(): GradientTransformation<EmptyState> {
  return withFlatStep<EmptyState>(
    {
      init: () => EMPTY,
      update: (grads, state) => tidy(() => ({ updates: cloneTree('identity', grads), state })),
    },
    // in a run, a pass-through (the run clones what it would return of its inputs)
    { needsFlat: false, update: (g, state) => ({ updates: g, state }) },
  );
}

/**
 * `chain(...transforms) -> GradientTransformation<[S1, S2, ...]>`: applies the transforms in
 * order, each to the updates of the previous one; the state is the tuple (array) of their states.
 *
 * @example
 * ```ts
 * const opt = chain(clipByGlobalNorm(1), sgd({ learningRate: 0.1 }));
 * let state = opt.init(params);            // [clipState, sgdState]
 * const { updates, state: next } = opt.update(grads, state);
 * ```
 */
export function chain<T extends readonly GradientTransformation[]>(
  ...transforms: T
): GradientTransformation<ChainState<T>> {
  return makeChain('chain', transforms);
}

/**
 * @internal The core of `chain`; `owner` names the optimizer in errors. When `params` are given
 * to `update`, the grads are checked against them first (structure and leaf shapes), so that
 * stateless transformations (plain sgd) report a mismatch too.
 */
export function makeChain<T extends readonly GradientTransformation[]>(
  owner: string,
  transforms: T,
): GradientTransformation<ChainState<T>> {
  const n = transforms.length;
  const steps = transforms.map((t) => flatStepOf(t));
  const checkStates = (state: unknown): readonly OptState[] => {
    if (!Array.isArray(state) || state.length !== n) {
      throw new tree.TreeError(
        '',
        `${owner}: the state must be an array of ${n} states (one per transform, as init ` +
          `returns), got ${show(state)}.`,
      );
    }
    return state as readonly OptState[];
  };
  const chained: GradientTransformation<ChainState<T>> = {
    init: (params) =>
      tidy(() => Object.freeze(transforms.map((t) => t.init(params))) as unknown as ChainState<T>),
    update: (grads, state, params) => {
      const states = checkStates(state);
      if (params !== undefined) {
        assertMatching(owner, [
          ['params', params],
          ['grads', grads],
        ]);
      }
      return tidy(() => {
        if (n === 0) return { updates: cloneTree(owner, grads), state };
        let updates = grads;
        const next: OptState[] = [];
        // each run of transforms that have a flat step runs on one flat buffer (pack once,
        // split once); the others update the tree
        for (let i = 0; i < n; ) {
          let j = i;
          while (j < n && steps[j] !== undefined) j++;
          if (j > i) {
            const run = steps.slice(i, j) as FlatStep[];
            const r = runSteps(owner, run, updates, states.slice(i, j), params);
            updates = r.updates;
            next.push(...r.states);
            i = j;
          } else {
            const t = transforms[i] as GradientTransformation;
            const r = t.update(updates, states[i] as OptState, params);
            updates = r.updates;
            next.push(r.state);
            i++;
          }
        }
        return { updates, state: Object.freeze(next) as unknown as ChainState<T> };
      });
    },
  };
  if (!steps.every((s) => s !== undefined)) return chained;
  const flatSteps = steps as FlatStep[];
  // a chain of flat steps is a flat step: nested chains (adam inside chain(clip, adam)) join the
  // outer run
  return withFlatStep(chained, {
    needsFlat: flatSteps.some((s) => s.needsFlat),
    update: (g, state, ctx, flatAhead) => {
      const states = checkStates(state);
      const ahead = needsFlatAfter(flatSteps, flatAhead);
      let u = g;
      const next: OptState[] = [];
      flatSteps.forEach((s, i) => {
        const r = s.update(u, states[i] as OptState, ctx, ahead[i] as boolean);
        u = r.updates;
        next.push(r.state);
      });
      return { updates: u, state: Object.freeze(next) as unknown as ChainState<T> };
    },
  });
}

/**
 * `applyUpdates<P>(params: P, updates: P) -> P`: `p + u` leaf by leaf, as fresh tensors (inside
 * `tf.tidy`); the updates must have the params' type (`P` is inferred from `params`). Neither
 * input is disposed: dispose the old params yourself once you no longer need them. The
 * structures and leaf shapes must match (a `TreeError` names the first difference).
 *
 * @example
 * ```ts
 * const { updates, state: nextState } = opt.update(grads, state, params);
 * const nextParams = applyUpdates(params, updates);
 * tree.dispose([params, state, grads, updates]);
 * ```
 */
export function applyUpdates<P extends ParamTree>(params: P, updates: NoInfer<P>): P {
  return tidy(() =>
    zipLeaves(
      'applyUpdates',
      [
        ['params', params],
        ['updates', updates],
      ],
      ([p, u]) => tf.add(p as tf.Tensor, u as tf.Tensor),
    ),
  );
}

/**
 * `globalNorm(tree) -> tf.Scalar`: `sqrt(sum over leaves of sum(x^2))`, as a fresh scalar tensor
 * (no data is read back). An empty tree has norm 0.
 *
 * @example
 * ```ts
 * const n = globalNorm(grads); // log n.dataSync()[0], then n.dispose()
 * ```
 */
export function globalNorm(t: ParamTree): tf.Scalar {
  return tf.tidy(() => {
    const sums = tree
      .leaves<unknown>(t)
      .map((leaf, i) => tf.sum(tf.square(requireTensor('globalNorm', 'tree', leaf, `#${i}`))));
    return sums.length === 0 ? tf.scalar(0) : (tf.sqrt(tf.addN(sums)) as tf.Scalar);
  });
}

/**
 * `clipByGlobalNorm(maxNorm) -> GradientTransformation<EmptyState>`: scales all updates by
 * `min(1, maxNorm / globalNorm(updates))`, i.e. leaves them unchanged when the global norm is
 * below `maxNorm` and rescales them to norm `maxNorm` otherwise (optax `clip_by_global_norm`).
 * Computed with tensor ops; nothing is read back. A NaN norm propagates NaN, as in optax.
 *
 * @example
 * ```ts
 * const opt = chain(clipByGlobalNorm(1.0), adam({ learningRate: 1e-3 }));
 * ```
 */
export function clipByGlobalNorm(maxNorm: number): GradientTransformation<EmptyState> {
  const cfg = validateOptions('clipByGlobalNorm', {
    maxNorm: checkNumber('maxNorm', maxNorm, { min: 0, minOpen: true }),
  });
  // optax: where(norm < maxNorm, g, g / norm * maxNorm), as a scalar factor.
  const factorOf = (norm: tf.Scalar): tf.Tensor =>
    select(tf.less(norm, cfg.maxNorm), tf.scalar(1), tf.div(cfg.maxNorm, norm));
  return withFlatStep<EmptyState>(
    {
      init: () => EMPTY,
      update: (grads, state) =>
        tidy(() => {
          const g = cloneTree('clipByGlobalNorm', grads); // validates leaves; disposed by the tidy
          if (tree.leaves(g).length === 0) return { updates: g, state };
          const factor = factorOf(globalNorm(g));
          return {
            updates: mapLeaves('clipByGlobalNorm', 'grads', g, (x) => tf.mul(x, factor)),
            state,
          };
        }),
    },
    {
      needsFlat: false,
      update: (g, state, ctx, flatAhead) => {
        if (ctx.layout.sizes.length === 0) return { updates: g, state };
        // the norm leaf by leaf, as globalNorm (the same sums in the same order: a sum over the
        // flat buffer would round differently); the scaling once on the buffer
        const factor = factorOf(globalNorm(g.leaves()));
        return { updates: g.map((x) => tf.mul(x, factor), flatAhead), state };
      },
    },
  );
}

/**
 * `scale(stepSize) -> GradientTransformation`: multiplies the updates by `stepSize` (no sign
 * flip), or by `stepSize(count)` when given a schedule (then it is `scaleBySchedule`).
 *
 * @example
 * ```ts
 * const halve = scale(0.5);
 * const opt = chain(scaleByAdam(), scale(-1e-3)); // same as adam({ learningRate: 1e-3 })
 * ```
 */
export function scale(stepSize: number): GradientTransformation<EmptyState>;
export function scale(stepSize: Schedule): GradientTransformation<ScaleByScheduleState>;
export function scale(stepSize: number | Schedule): GradientTransformation<LearningRateState>;
export function scale(stepSize: number | Schedule): GradientTransformation<LearningRateState> {
  if (typeof stepSize === 'function') return scaleBySchedule(stepSize);
  const cfg = validateOptions('scale', { stepSize: checkNumber('stepSize', stepSize, {}) });
  return makeScale(cfg.stepSize);
}

function makeScale(stepSize: number): GradientTransformation<EmptyState> {
  return withFlatStep<EmptyState>(
    {
      init: () => EMPTY,
      update: (grads, state) =>
        tidy(() => ({
          updates: mapLeaves('scale', 'grads', grads, (g) => tf.mul(g, stepSize)),
          state,
        })),
    },
    {
      needsFlat: false,
      update: (g, state, _ctx, flatAhead) => ({
        updates: g.map((x) => tf.mul(x, stepSize), flatAhead),
        state,
      }),
    },
  );
}

/**
 * `scaleBySchedule(schedule) -> GradientTransformation<{ count }>`: multiplies the updates by
 * `schedule(count)`, where `count` (a plain number in the state) is 0 at the first update.
 *
 * @example
 * ```ts
 * const t = scaleBySchedule((count) => 1 / (1 + count));
 * ```
 */
export function scaleBySchedule(schedule: Schedule): GradientTransformation<ScaleByScheduleState> {
  validateOptions('scaleBySchedule', {
    schedule: checkFunction<Schedule>('schedule', schedule),
  });
  return makeScaleBySchedule(schedule);
}

function makeScaleBySchedule(
  stepSize: (count: number) => number,
): GradientTransformation<ScaleByScheduleState> {
  const next = (state: ScaleByScheduleState): [number, ScaleByScheduleState] => {
    requireFields('scaleBySchedule', state, ['count']);
    const count = requireCount('scaleBySchedule', state.count);
    return [stepSize(count), Object.freeze({ count: count + 1 })];
  };
  return withFlatStep<ScaleByScheduleState>(
    {
      init: () => Object.freeze({ count: 0 }),
      update: (grads, state) => {
        const [s, after] = next(state);
        return tidy(() => ({
          updates: mapLeaves('scaleBySchedule', 'grads', grads, (g) => tf.mul(g, s)),
          state: after,
        }));
      },
    },
    {
      needsFlat: false,
      update: (g, state, _ctx, flatAhead) => {
        const [s, after] = next(state);
        return { updates: g.map((x) => tf.mul(x, s), flatAhead), state: after };
      },
    },
  );
}

/**
 * `scaleByLearningRate(learningRate, flipSign = true) -> GradientTransformation`: multiplies the
 * updates by `-learningRate` (or by `-learningRate(count)` for a schedule), so that adding them
 * descends; `flipSign = false` keeps the sign (optax `scale_by_learning_rate`).
 *
 * @example
 * ```ts
 * const mySgd = chain(identity(), scaleByLearningRate(0.01)); // updates = -0.01 * g
 * ```
 */
export function scaleByLearningRate(
  learningRate: number,
  flipSign?: boolean,
): GradientTransformation<EmptyState>;
export function scaleByLearningRate(
  learningRate: Schedule,
  flipSign?: boolean,
): GradientTransformation<ScaleByScheduleState>;
export function scaleByLearningRate(
  learningRate: LearningRate,
  flipSign?: boolean,
): GradientTransformation<LearningRateState>;
export function scaleByLearningRate(
  learningRate: LearningRate,
  flipSign = true,
): GradientTransformation<LearningRateState> {
  const cfg = validateOptions('scaleByLearningRate', {
    learningRate: checkLearningRate('learningRate', learningRate),
    flipSign: checkBoolean('flipSign', flipSign),
  });
  return makeLearningRate(cfg.learningRate, cfg.flipSign);
}

/** @internal The validated core of `scaleByLearningRate`. */
export function makeLearningRate(
  learningRate: LearningRate,
  flipSign = true,
): GradientTransformation<LearningRateState> {
  const sign = flipSign ? -1 : 1;
  if (typeof learningRate === 'function') {
    return makeScaleBySchedule((count) => sign * learningRate(count));
  }
  return makeScale(sign * learningRate);
}

/** Options of `trace`. */
export interface TraceOptions {
  /** The momentum coefficient, in [0, 1). */
  readonly decay: number;
  /** Nesterov momentum: `g + decay * trace_new` instead of `trace_new`. Default false. */
  readonly nesterov?: boolean;
}

/**
 * `trace({ decay, nesterov = false }) -> GradientTransformation<{ trace }>`: momentum, as optax
 * `trace`: `trace_new = g + decay * trace`; updates are `trace_new`, or `g + decay * trace_new`
 * with Nesterov momentum.
 *
 * @example
 * ```ts
 * const heavyBall = chain(trace({ decay: 0.9 }), scaleByLearningRate(0.01));
 * ```
 */
export function trace(options: TraceOptions): GradientTransformation<TraceState> {
  const o = optionsRecord(options);
  const cfg = validateOptions('trace', {
    known: checkKnownKeys(options, ['decay', 'nesterov']),
    decay: checkNumber('decay', o.decay, { min: 0, max: 1, maxOpen: true }),
    nesterov: checkBoolean('nesterov', o.nesterov ?? false),
  });
  return makeTrace('trace', cfg.decay, cfg.nesterov);
}

/** @internal The validated core of `trace`; `owner` names the optimizer in errors. */
export function makeTrace(
  owner: string,
  decay: number,
  nesterov: boolean,
): GradientTransformation<TraceState> {
  return flatTransform<TraceState>(
    owner,
    (params) => Object.freeze({ trace: zerosFlat(owner, params) }),
    {
      needsFlat: true,
      update: (g, state, ctx) => {
        requireFields(owner, state, ['trace']);
        const t = requireFlat(owner, 'trace', state.trace, ctx.layout);
        const x = g.flat();
        const next = tf.add(x, tf.mul(t, decay)) as tf.Tensor1D;
        // without Nesterov the updates are the new trace itself: the run clones what it would
        // return of the state, so that updates and state never share a tensor
        const updates = nesterov ? tf.add(x, tf.mul(next, decay)) : next;
        return {
          updates: Packed.ofFlat(ctx.layout, updates),
          state: Object.freeze({ trace: next }),
        };
      },
    },
  );
}

/** Options of `addDecayedWeights`. */
export interface AddDecayedWeightsOptions {
  /** The weight-decay coefficient, >= 0. */
  readonly weightDecay: number;
  /** Which leaves are decayed: `mask(path)` true means decayed. Default: all of them. */
  readonly mask?: (path: string) => boolean;
}

/**
 * `addDecayedWeights({ weightDecay, mask? }) -> GradientTransformation<EmptyState>`:
 * `updates + weightDecay * params` on the leaves where `mask(path)` holds (all by default); the
 * other leaves pass through. Needs `params` in `update`.
 *
 * @example
 * ```ts
 * const decayKernels = addDecayedWeights({ weightDecay: 1e-4, mask: (p) => !p.endsWith('bias') });
 * ```
 */
export function addDecayedWeights(
  options: AddDecayedWeightsOptions,
): GradientTransformation<EmptyState> {
  const o = optionsRecord(options);
  const cfg = validateOptions('addDecayedWeights', {
    known: checkKnownKeys(options, ['weightDecay', 'mask']),
    weightDecay: checkNumber('weightDecay', o.weightDecay, { min: 0 }),
    mask: checkOptionalFunction<(path: string) => boolean>('mask', o.mask),
  });
  return makeAddDecayedWeights('addDecayedWeights', cfg.weightDecay, cfg.mask);
}

/** @internal The validated core of `addDecayedWeights`; `owner` names the optimizer in errors. */
export function makeAddDecayedWeights(
  owner: string,
  weightDecay: number,
  mask: ((path: string) => boolean) | undefined,
): GradientTransformation<EmptyState> {
  const needParams = (): never => {
    throw new Error(
      `${owner}: update(grads, state, params) needs the current params for the decoupled ` +
        `weight decay; pass them as the third argument.`,
    );
  };
  // the bool mask over the flat buffer of the last layout seen (its bytes; a fresh tensor each
  // step)
  let maskKey = '';
  let maskBytes = new Uint8Array(0);
  const maskOf = (sizes: readonly number[], decayed: readonly boolean[]): Uint8Array => {
    const key = `${sizes.join(',')}|${decayed.map(Number).join('')}`;
    if (key !== maskKey) {
      const bytes = new Uint8Array(sizes.reduce((a, b) => a + b, 0));
      let at = 0;
      sizes.forEach((n, i) => {
        if (decayed[i]) bytes.fill(1, at, at + n);
        at += n;
      });
      maskKey = key;
      maskBytes = bytes;
    }
    return maskBytes;
  };
  return withFlatStep<EmptyState>(
    {
      init: () => EMPTY,
      update: (grads, state, params) => {
        if (params === undefined) return needParams();
        return tidy(() => ({
          updates: zipLeaves(
            owner,
            [
              ['grads', grads],
              ['params', params],
            ],
            ([u, p], path) =>
              mask === undefined || mask(path)
                ? tf.add(u as tf.Tensor, tf.mul(p as tf.Tensor, weightDecay))
                : tf.clone(u as tf.Tensor),
          ),
          state,
        }));
      },
    },
    {
      needsFlat: false,
      update: (g, state, ctx, flatAhead) => {
        const params = ctx.params() ?? needParams();
        const { paths, sizes } = ctx.layout;
        const decayed = paths.map((path) => mask === undefined || mask(path));
        const decay = (u: tf.Tensor, p: tf.Tensor): tf.Tensor => tf.add(u, tf.mul(p, weightDecay));
        if (!g.hasFlat && !flatAhead) {
          // leaf by leaf; the others pass through (the run clones what it returns of its inputs)
          const ps = params.leaves();
          const us = g.leaves().map((u, i) => (decayed[i] ? decay(u, ps[i] as tf.Tensor) : u));
          return { updates: Packed.ofLeaves(ctx.layout, us), state };
        }
        if (!decayed.some(Boolean)) return { updates: g, state };
        const u = g.flat();
        const d = decay(u, params.flat());
        if (decayed.every(Boolean)) return { updates: Packed.ofFlat(ctx.layout, d), state };
        // where(mask, u + wd p, u): the undecayed elements keep their bits (u + 0 would turn -0
        // into +0)
        const m = tf.tensor1d(maskOf(sizes, decayed), 'bool');
        return { updates: Packed.ofFlat(ctx.layout, select(m, d, u)), state };
      },
    },
  );
}
