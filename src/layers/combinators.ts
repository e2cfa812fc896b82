/**
 * Combinators: `serial` and `parallel` compose layers into layers. They thread keys (child `i`
 * gets `foldIn(key, i)`), sum KL terms, infer shapes at `init` and name the failing layer's path.
 * Also the fan-out / fan-in helpers that make multi-branch models out of `parallel`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import { foldIn, type Key } from '../params/random';
import { freeze as freezeTree, type ParamTree } from '../params/tree';
import { joinPath } from './bayesian';
import {
  applyLayerBatched,
  childBatchCtx,
  fusesActivation,
  fusibleActivation,
  tileSamples,
  zeroKl,
} from './batching';
import { check, validate } from '../validation';
import { ShapeError, fmtShape } from '../errors';
import { deterministicLayer, type EmptyParams } from './stateless';
import type {
  Applied,
  ApplyCtx,
  AnyLayer,
  InputOf,
  InputShapeOf,
  Layer,
  OutputOf,
  OutputShapeOf,
  ParamsOf,
  Shape,
} from './types';

type Children = readonly (readonly [string, AnyLayer])[];

function isLayer(x: unknown): x is AnyLayer {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as AnyLayer).apply === 'function' &&
    typeof (x as AnyLayer).init === 'function'
  );
}

/** Names children: the record's keys, or the layers' names made unique with `_1`, `_2`, ... */
/**
 * The children of a combinator (its keys and layers, in order), for tree walks such as
 * `toBayesian`: under this symbol on `serial` and `parallel` layers.
 * @internal
 */
export const CHILDREN = Symbol.for('blitz-ts.combinatorChildren');

function withChildren<T extends object>(layer: T, children: Children): T {
  Object.defineProperty(layer, CHILDREN, {
    value: Object.freeze([...children]),
    enumerable: false,
  });
  return layer;
}

function nameChildren(what: string, layers: readonly AnyLayer[] | LayerRecord): Children {
  const entries: [string, unknown][] = Array.isArray(layers)
    ? (layers as unknown[]).map((l, i) => [isLayer(l) ? l.name : `#${i}`, l])
    : Object.entries(layers ?? {});
  validate(what, [
    check(entries.length > 0, 'needs at least one layer'),
    ...entries.map(([k, l], i) =>
      check(
        isLayer(l),
        `entry ${Array.isArray(layers) ? i : `'${k}'`} is not a layer (${typeof l})`,
      ),
    ),
    ...(Array.isArray(layers)
      ? []
      : entries.map(([k]) =>
          check(
            !/^\d+$/.test(k) && !k.includes('.'),
            `layer key '${k}' must not be an integer or contain '.' (it becomes a parameter path)`,
          ),
        )),
  ]);
  if (!Array.isArray(layers)) return entries as [string, AnyLayer][];
  const seen = new Map<string, number>();
  return entries.map(([n, l]) => {
    const count = seen.get(n) ?? 0;
    seen.set(n, count + 1);
    return [count === 0 ? n : `${n}_${count}`, l as AnyLayer] as const;
  });
}

function childParams(params: unknown, key: string, path: string): ParamTree {
  if (typeof params !== 'object' || params === null || !(key in params)) {
    throw new ShapeError(
      path,
      `no parameters for this layer: expected a '${key}' entry in the parent's params ` +
        `(got ${typeof params === 'object' && params !== null ? `keys [${Object.keys(params).join(', ')}]` : String(params)}). ` +
        'Pass the params returned by the model’s init().',
    );
  }
  return (params as Record<string, ParamTree>)[key] as ParamTree;
}

/** Options of `serial` and `parallel`. */
export interface CombinatorOptions {
  readonly name?: string;
}

/** Parameters of a combinator: one entry per child, under its key. */
export type CombinatorParams = { readonly [k: string]: ParamTree };

/** Named layers: the children of a combinator, keyed as their parameters will be. */
export type LayerRecord = { readonly [k: string]: AnyLayer };

/** The parameters of a combinator of the named layers `C`: `{ [key]: that layer's params }`. */
export type ParamsRecord<C extends LayerRecord> = { readonly [K in keyof C]: ParamsOf<C[K]> };

/**
 * The output type of a record of layers (a record has no type-level order): the tensor `T` when
 * some child outputs one (the usual last layer), else the union of the children's outputs. The
 * input type is the union of the children's inputs; the array form of `serial` types both exactly.
 */
type RecordOut<U, T> = [T] extends [U] ? T : U;

/** The last element of a tuple of layers. */
type LastOf<L extends readonly AnyLayer[]> = L extends readonly [...AnyLayer[], infer X]
  ? X
  : L[number];

/**
 * `serial(layers, opts?) -> Layer`: applies the layers one after the other. `layers` is an array
 * (children keyed by their names, repeated names get `_1`, `_2`, ...) or a record (keys as given,
 * in insertion order). Child `i` gets `foldIn(key, i)` at `init` and `apply`; the KL terms add up.
 *
 * @example
 * ```ts
 * const model = serial({
 *   hidden: bayesianLinear({ inFeatures: 1, outFeatures: 32 }),
 *   act: relu(),
 *   out: bayesianLinear({ inFeatures: 32, outFeatures: 1 }),
 * });
 * const { params } = model.init(random.key(0), [-1, 1]); // params.hidden.kernel.mu, ...
 * ```
 */
export function serial<const L extends readonly [AnyLayer, ...AnyLayer[]]>(
  layers: L,
  opts?: CombinatorOptions,
): Layer<
  CombinatorParams,
  InputOf<L[0]>,
  OutputOf<LastOf<L>>,
  InputShapeOf<L[0]>,
  OutputShapeOf<LastOf<L>>
>;
export function serial(
  layers: readonly AnyLayer[],
  opts?: CombinatorOptions,
): Layer<CombinatorParams, tf.Tensor, tf.Tensor, Shape, Shape>;
export function serial<const C extends LayerRecord>(
  layers: C,
  opts?: CombinatorOptions,
): Layer<
  ParamsRecord<C>,
  InputOf<C[keyof C]>,
  RecordOut<OutputOf<C[keyof C]>, tf.Tensor>,
  InputShapeOf<C[keyof C]>,
  RecordOut<OutputShapeOf<C[keyof C]>, Shape>
>;
export function serial(
  layers: readonly AnyLayer[] | LayerRecord,
  opts: CombinatorOptions = {},
): AnyLayer {
  const name = opts.name ?? 'serial';
  const children = nameChildren(`serial '${name}'`, layers);
  const childCtx = (ctx: ApplyCtx | undefined, i: number, k: string): ApplyCtx => ({
    ...ctx,
    key: ctx?.key === undefined ? undefined : foldIn(ctx.key, i),
    path: joinPath(ctx?.path, k),
  });
  const layer: Layer<CombinatorParams, unknown, unknown, unknown, unknown> = {
    name,
    kind: 'serial',
    config: Object.freeze({
      name,
      layers: children.map(([k, l]) => ({ key: k, kind: l.kind, config: l.config })),
    }),
    outputShape(inputShape, path) {
      return children.reduce<unknown>(
        (s, [k, l]) => l.outputShape(s, joinPath(path, k)),
        inputShape,
      );
    },
    init(key: Key, inputShape: unknown, path?: string) {
      const params: Record<string, ParamTree> = {};
      let shape: unknown = inputShape;
      try {
        children.forEach(([k, l], i) => {
          const r = l.init(foldIn(key, i), shape, joinPath(path, k));
          params[k] = r.params;
          shape = r.outputShape;
        });
      } catch (err) {
        for (const p of Object.values(params)) tf.dispose(p as tf.TensorContainer);
        throw err;
      }
      return { params: freezeTree(params) as CombinatorParams, outputShape: shape };
    },
    apply(params, x, ctx) {
      return tidy(() => {
        let h: unknown = x;
        let kl: tf.Scalar = tf.scalar(0);
        children.forEach(([k, l], i) => {
          const c = childCtx(ctx, i, k);
          const r = l.apply(childParams(params, k, c.path as string), h, c) as Applied<unknown>;
          h = r.out;
          kl = tf.add(kl, r.kl);
        });
        return { out: h, kl };
      });
    },
    applyBatched(params, x, ctx) {
      return tidy(() => {
        let h: unknown = x;
        let batched = ctx.batched;
        let kl = zeroKl(ctx.numSamples);
        for (let i = 0; i < children.length; i++) {
          const [k, l] = children[i] as [string, AnyLayer];
          const path = joinPath(ctx.path, k);
          // a layer followed by an activation it can fuse (bayesianLinear, relu) applies both
          const next = children[i + 1]?.[1];
          const activation =
            next !== undefined && fusesActivation(l) ? fusibleActivation(next) : undefined;
          const r = applyLayerBatched(l, childParams(params, k, path), h, {
            ...childBatchCtx(ctx, i, path, batched),
            activation,
          });
          h = r.out;
          batched = r.batched;
          kl = tf.add(kl, r.kl);
          if (activation !== undefined) i++;
        }
        return { out: h, kl, batched };
      });
    },
    klDivergence(params, ctx) {
      return tidy(() =>
        children.reduce<tf.Scalar>((acc, [k, l], i) => {
          const c = childCtx(ctx, i, k);
          return tf.add(acc, l.klDivergence(childParams(params, k, c.path as string), c));
        }, tf.scalar(0)),
      );
    },
  };
  return Object.freeze(withChildren(layer, children));
}

/**
 * `parallel(layers, opts?) -> Layer`: applies layer `i` to input `i` of an array of inputs and
 * returns the array of outputs (stax's `parallel`). Pair it with `fanOut(n)` to run branches on
 * one input, and `fanInConcat()` / `fanInSum()` to merge them.
 *
 * @example
 * ```ts
 * const twoHeads = serial([fanOut(2), parallel([dense({ units: 1 }), dense({ units: 1 })]), fanInConcat()]);
 * ```
 */
export function parallel(
  layers: readonly AnyLayer[],
  opts?: CombinatorOptions,
): Layer<CombinatorParams, tf.Tensor[], tf.Tensor[], readonly Shape[], Shape[]>;
export function parallel<const C extends LayerRecord>(
  layers: C,
  opts?: CombinatorOptions,
): Layer<ParamsRecord<C>, tf.Tensor[], tf.Tensor[], readonly Shape[], Shape[]>;
export function parallel(
  layers: readonly AnyLayer[] | LayerRecord,
  opts: CombinatorOptions = {},
): Layer<CombinatorParams, tf.Tensor[], tf.Tensor[], readonly Shape[], Shape[]> {
  const name = opts.name ?? 'parallel';
  const children = nameChildren(`parallel '${name}'`, layers);
  const n = children.length;
  const checkArity = (len: number, path: string): void => {
    if (len !== n) {
      throw new ShapeError(
        path,
        `parallel with ${n} branches expects an array of ${n} inputs, got ${len}.`,
      );
    }
  };
  const asArray = (x: unknown, path: string): unknown[] => {
    if (!Array.isArray(x)) {
      throw new ShapeError(
        path,
        `parallel expects an array of ${n} inputs (use fanOut(${n}) before it), got ${x instanceof tf.Tensor ? `a tensor ${fmtShape(x.shape)}` : typeof x}.`,
      );
    }
    checkArity(x.length, path);
    return x;
  };
  const layer: Layer<CombinatorParams, tf.Tensor[], tf.Tensor[], readonly Shape[], Shape[]> = {
    name,
    kind: 'parallel',
    config: Object.freeze({
      name,
      layers: children.map(([k, l]) => ({ key: k, kind: l.kind, config: l.config })),
    }),
    outputShape(inputShapes, path) {
      const shapes = asArray(inputShapes, path ?? name) as Shape[];
      return children.map(([k, l], i) => l.outputShape(shapes[i], joinPath(path, k)) as Shape);
    },
    init(key, inputShapes, path) {
      const shapes = asArray(inputShapes, path ?? name) as Shape[];
      const params: Record<string, ParamTree> = {};
      const outs: Shape[] = [];
      try {
        children.forEach(([k, l], i) => {
          const r = l.init(foldIn(key, i), shapes[i], joinPath(path, k));
          params[k] = r.params;
          outs.push(r.outputShape as Shape);
        });
      } catch (err) {
        for (const p of Object.values(params)) tf.dispose(p as tf.TensorContainer);
        throw err;
      }
      return { params: freezeTree(params) as CombinatorParams, outputShape: outs };
    },
    apply(params, xs, ctx) {
      return tidy(() => {
        const inputs = asArray(xs, ctx?.path ?? name);
        let kl: tf.Scalar = tf.scalar(0);
        const outs = children.map(([k, l], i) => {
          const path = joinPath(ctx?.path, k);
          const r = l.apply(childParams(params, k, path), inputs[i], {
            ...ctx,
            key: ctx?.key === undefined ? undefined : foldIn(ctx.key, i),
            path,
          }) as Applied<tf.Tensor>;
          kl = tf.add(kl, r.kl);
          return r.out;
        });
        return { out: outs, kl };
      });
    },
    applyBatched(params, xs, ctx) {
      return tidy(() => {
        const inputs = asArray(xs, ctx.path ?? name);
        let kl = zeroKl(ctx.numSamples);
        const rs = children.map(([k, l], i) => {
          const path = joinPath(ctx.path, k);
          const r = applyLayerBatched(
            l,
            childParams(params, k, path),
            inputs[i],
            childBatchCtx(ctx, i, path),
          );
          kl = tf.add(kl, r.kl);
          return r;
        });
        const allBatched = rs.every((r) => r.batched);
        const noneBatched = rs.every((r) => !r.batched);
        const out = rs.map((r) =>
          r.batched || noneBatched ? r.out : tileSamples(r.out, ctx.numSamples),
        ) as tf.Tensor[];
        return { out, kl, batched: allBatched || !noneBatched };
      });
    },
    klDivergence(params, ctx) {
      return tidy(() =>
        children.reduce<tf.Scalar>((acc, [k, l], i) => {
          const path = joinPath(ctx?.path, k);
          return tf.add(
            acc,
            l.klDivergence(childParams(params, k, path), {
              ...ctx,
              key: ctx?.key === undefined ? undefined : foldIn(ctx.key, i),
              path,
            }),
          );
        }, tf.scalar(0)),
      );
    },
  };
  return Object.freeze(withChildren(layer, children));
}

/**
 * `fanOut(n) -> Layer`: `x -> [x, x, ..., x]` (n copies) for `parallel`.
 *
 * @example
 * ```ts
 * serial([fanOut(2), parallel([relu(), tanh()]), fanInConcat()]);
 * ```
 */
export function fanOut(
  n: number,
  opts: CombinatorOptions = {},
): Layer<EmptyParams, tf.Tensor, tf.Tensor[], Shape, Shape[]> {
  const name = opts.name ?? 'fanOut';
  validate(`fanOut '${name}'`, [
    check(Number.isInteger(n) && n >= 1, `n must be a positive integer, got ${String(n)}`),
  ]);
  return deterministicLayer({
    kind: 'fanOut',
    name,
    config: { n },
    outputShape: (s: Shape) => Array.from({ length: n }, () => s),
    forward: (_p: EmptyParams, x: tf.Tensor) => Array.from({ length: n }, () => tf.clone(x)),
    batch: 'leading',
  });
}

function fanIn(
  kind: string,
  name: string,
  merge: (xs: tf.Tensor[], batched: boolean) => tf.Tensor,
  mergeShape: (ss: readonly Shape[], path: string) => Shape,
): Layer<EmptyParams, tf.Tensor[], tf.Tensor, readonly Shape[], Shape> {
  const asArray = (x: unknown, path: string): tf.Tensor[] => {
    if (!Array.isArray(x) || x.length === 0) {
      throw new ShapeError(path, `${kind} expects a non-empty array of tensors, got ${typeof x}.`);
    }
    return x as tf.Tensor[];
  };
  return deterministicLayer({
    kind,
    name,
    outputShape: mergeShape,
    forward: (_p: EmptyParams, xs: tf.Tensor[], ctx) => merge(asArray(xs, ctx.path), false),
    batch: (_p, xs, ctx) => ({
      out: merge(asArray(xs, ctx.path), ctx.batched),
      batched: ctx.batched,
    }),
  });
}

/**
 * `fanInConcat(opts?) -> Layer`: concatenates an array of tensors along the last axis.
 *
 * @example
 * ```ts
 * serial([fanOut(2), parallel([dense({ units: 3 }), dense({ units: 5 })]), fanInConcat()]); // [..., 8]
 * ```
 */
export function fanInConcat(
  opts: CombinatorOptions = {},
): Layer<EmptyParams, tf.Tensor[], tf.Tensor, readonly Shape[], Shape> {
  const name = opts.name ?? 'fanInConcat';
  return fanIn(
    'fanInConcat',
    name,
    (xs) => tf.concat(xs, -1),
    (ss, path) => {
      const first = ss[0] as Shape;
      const lead = first.slice(0, -1).join(',');
      if (ss.some((s) => s.slice(0, -1).join(',') !== lead)) {
        throw new ShapeError(
          path,
          `fanInConcat: shapes differ before the last axis: ${ss.map(fmtShape).join(' vs ')}.`,
        );
      }
      return [...first.slice(0, -1), ss.reduce((a, s) => a + (s[s.length - 1] as number), 0)];
    },
  );
}

/**
 * `fanInSum(opts?) -> Layer`: adds an array of tensors of the same shape (residual connections).
 *
 * @example
 * ```ts
 * serial([fanOut(2), parallel([fn((x) => x), dense({ units: 4 })]), fanInSum()]);
 * ```
 */
export function fanInSum(
  opts: CombinatorOptions = {},
): Layer<EmptyParams, tf.Tensor[], tf.Tensor, readonly Shape[], Shape> {
  const name = opts.name ?? 'fanInSum';
  return fanIn(
    'fanInSum',
    name,
    (xs) => tf.addN(xs),
    (ss, path) => {
      const first = ss[0] as Shape;
      if (ss.some((s) => s.join(',') !== first.join(','))) {
        throw new ShapeError(path, `fanInSum: shapes differ: ${ss.map(fmtShape).join(' vs ')}.`);
      }
      return first;
    },
  );
}
