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
 */
import * as tf from '@tensorflow/tfjs-core';
import * as E from 'fp-ts/Either';
import { OptimConfigError, show } from '../errors';
import { tidy } from '../params/scope';
import * as tree from '../params/tree';
import type { ParamTree, Tree } from '../params/tree';
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
 *   `tf.tidy`; it never disposes or mutates `grads`, `state` or `params`. `grads` (and the
 *   tensor parts of `state`) must have the structure and leaf shapes of the params; a mismatch
 *   throws a `TreeError` naming the path.
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
/** The state of `trace`: the momentum buffer, shaped like the params. */
export type TraceState = { readonly trace: ParamTree };
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

function requireTensor(owner: string, name: string, leaf: unknown, path: string): tf.Tensor {
  if (leaf instanceof tf.Tensor) return leaf;
  throw new tree.TreeError(
    path,
    `${owner}: ${name} at ${where(path)} is ${show(leaf)}; expected a tf.Tensor.`,
  );
}

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

/** @internal `zerosLikeTree(owner, params) -> tree` of fresh zeros (call inside a tidy). */
export function zerosLikeTree(owner: string, params: ParamTree): ParamTree {
  return tree.map<unknown, tf.Tensor>(params, (p, path) =>
    tf.zerosLike(requireTensor(owner, 'params', p, path)),
  );
}

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
  return {
    init: () => EMPTY,
    update: (grads, state) => tidy(() => ({ updates: cloneTree('identity', grads), state })),
  };
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
  return {
    init: (params) =>
      tidy(() => Object.freeze(transforms.map((t) => t.init(params))) as unknown as ChainState<T>),
    update: (grads, state, params) => {
      const states = state as unknown as readonly OptState[];
      if (!Array.isArray(states) || states.length !== n) {
        throw new tree.TreeError(
          '',
          `${owner}: the state must be an array of ${n} states (one per transform, as init ` +
            `returns), got ${show(state)}.`,
        );
      }
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
        transforms.forEach((t, i) => {
          const r = t.update(updates, states[i] as OptState, params);
          updates = r.updates;
          next.push(r.state);
        });
        return { updates, state: Object.freeze(next) as unknown as ChainState<T> };
      });
    },
  };
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
  return {
    init: () => EMPTY,
    update: (grads, state) =>
      tidy(() => {
        const g = cloneTree('clipByGlobalNorm', grads); // validates leaves; disposed by the tidy
        if (tree.leaves(g).length === 0) return { updates: g, state };
        const norm = globalNorm(g);
        // optax: where(norm < maxNorm, g, g / norm * maxNorm), as a scalar factor.
        const factor = tf.where(
          tf.less(norm, cfg.maxNorm),
          tf.scalar(1),
          tf.div(cfg.maxNorm, norm),
        );
        return {
          updates: mapLeaves('clipByGlobalNorm', 'grads', g, (x) => tf.mul(x, factor)),
          state,
        };
      }),
  };
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
  return {
    init: () => EMPTY,
    update: (grads, state) =>
      tidy(() => ({
        updates: mapLeaves('scale', 'grads', grads, (g) => tf.mul(g, stepSize)),
        state,
      })),
  };
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
  return {
    init: () => Object.freeze({ count: 0 }),
    update: (grads, state) => {
      requireFields('scaleBySchedule', state, ['count']);
      const count = requireCount('scaleBySchedule', state.count);
      const s = stepSize(count);
      return tidy(() => ({
        updates: mapLeaves('scaleBySchedule', 'grads', grads, (g) => tf.mul(g, s)),
        state: Object.freeze({ count: count + 1 }),
      }));
    },
  };
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
  return {
    init: (params) => tidy(() => Object.freeze({ trace: zerosLikeTree(owner, params) })),
    update: (grads, state) => {
      requireFields(owner, state, ['trace']);
      return tidy(() => {
        const next = zipLeaves(
          owner,
          [
            ['grads', grads],
            ['state.trace', state.trace],
          ],
          ([g, t]) => tf.add(g as tf.Tensor, tf.mul(t as tf.Tensor, decay)),
        );
        const updates = nesterov
          ? zipLeaves(
              owner,
              [
                ['grads', grads],
                ['trace', next],
              ],
              ([g, t]) => tf.add(g as tf.Tensor, tf.mul(t as tf.Tensor, decay)),
            )
          : cloneTree(owner, next); // fresh: updates and state never share a tensor
        return { updates, state: Object.freeze({ trace: next }) };
      });
    },
  };
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
  return {
    init: () => EMPTY,
    update: (grads, state, params) => {
      if (params === undefined) {
        throw new Error(
          `${owner}: update(grads, state, params) needs the current params for the decoupled ` +
            `weight decay; pass them as the third argument.`,
        );
      }
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
  };
}
