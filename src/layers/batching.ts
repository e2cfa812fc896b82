/**
 * Batching over posterior samples: the ONE module that owns the batched (vmapped) application of
 * layers. It defines the batch context and result, the fallback for layers without a batch rule
 * (a loop of `apply`), tiling a value to the sample axis, per-sample keys, the rule helpers that
 * layers build their batch rules from, and the affine map that the Bayesian linear layer's rule
 * uses.
 *
 * A batch rule applies a layer to `S` posterior samples at once. Its input either has the leading
 * sample axis (`ctx.batched`: `[S, ...]`, one input per sample) or not (one input shared by every
 * sample, e.g. the data entering the first layer). Its result says whether its output has that
 * axis (`batched`), so that a deterministic layer before the first Bayesian one does not copy its
 * input S times; `vmapSamples` tiles at the end if needed.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import { foldIn, type Key } from '../params/random';
import type { ParamTree } from '../params/tree';
import type { Applied, ApplyCtx, Layer } from './types';

/** The context of a batched (vmapped) application over `numSamples` posterior samples. */
export interface BatchCtx extends Omit<ApplyCtx, 'key' | 'sample'> {
  /** One key per sample (sample `s` of `vmapSamples` uses `foldIn(key, s)`); absent in mean mode. */
  readonly keys?: readonly Key[];
  readonly numSamples: number;
  /** Whether the input has the leading sample axis `[S, ...]`. */
  readonly batched: boolean;
  /**
   * The global index of the first of these samples (default 0): a pass over samples
   * `[first, first + S)` (e.g. one chunk of `predictive`); `ctx.noise` is asked for sample
   * `first + s`.
   */
  readonly firstSample?: number;
  /**
   * An activation to apply to this layer's output, given by `serial` only to a layer that fuses
   * it (`fusesActivation`) in place of the activation layer that follows it (see
   * `fusibleActivation`). Combinators do not pass it on to their children.
   */
  readonly activation?: FusedActivation;
}

/**
 * An activation that a layer can fuse into its product (tfjs's fused matMul: on wasm the bias and
 * the clamp run inside XNNPACK's operator, with no pass over the output of their own).
 */
export type FusedActivation = 'relu' | 'relu6';

const ACTIVATION_LAYERS = new WeakMap<object, FusedActivation>();
const FUSING_LAYERS = new WeakSet<object>();

/**
 * `markFusibleActivation(layer, activation) -> layer`: marks an element-wise activation layer
 * (no parameters, KL 0, keeps the input's batching) that a preceding `fusesActivation` layer may
 * apply instead, in a batched pass of `serial`.
 */
export function markFusibleActivation<L extends object>(layer: L, activation: FusedActivation): L {
  ACTIVATION_LAYERS.set(layer, activation);
  return layer;
}

/** The activation that `layer` computes, if it is a marked activation layer. */
export const fusibleActivation = (layer: object): FusedActivation | undefined =>
  ACTIVATION_LAYERS.get(layer);

/**
 * `markFusesActivation(layer) -> layer`: marks a layer whose batch rule applies `ctx.activation`
 * to its output (every branch of it), so that `serial` may fuse the activation layer after it.
 */
export function markFusesActivation<L extends object>(layer: L): L {
  FUSING_LAYERS.add(layer);
  return layer;
}

/** Whether `layer`'s batch rule applies `ctx.activation` (see `markFusesActivation`). */
export const fusesActivation = (layer: object): boolean => FUSING_LAYERS.has(layer);

/** `applyActivation(x, activation?) -> y`: the activation, unfused (`x` itself when none). */
export function applyActivation(x: tf.Tensor, activation: FusedActivation | undefined): tf.Tensor {
  if (activation === undefined) return x;
  return activation === 'relu' ? tf.relu(x) : tf.relu6(x);
}

/** The output, the per-sample KL `[S]` and whether `out` has the leading sample axis. */
export interface AppliedBatched<Out> {
  readonly out: Out;
  readonly kl: tf.Tensor1D;
  /** Whether `out` has the leading sample axis `[S, ...]`. */
  readonly batched: boolean;
}

/** A rule that applies a layer to `S` posterior samples at once. */
export type BatchRule<P, In, Out> = (params: P, x: In, ctx: BatchCtx) => AppliedBatched<Out>;

/**
 * `sampleKeys(key, S) -> Key[] | undefined`: the per-sample keys of a batched pass, `foldIn(key,
 * s)` for sample `s` (undefined without a key).
 *
 * @example
 * ```ts
 * const keys = sampleKeys(random.key(0), 4); // 4 keys
 * ```
 */
export function sampleKeys(key: Key | undefined, numSamples: number): Key[] | undefined {
  return key === undefined
    ? undefined
    : Array.from({ length: numSamples }, (_, s) => foldIn(key, s));
}

/**
 * `childBatchCtx(ctx, i, path, batched?) -> BatchCtx`: the context of child `i` of a combinator:
 * its keys are `foldIn(keys[s], i)` (as `apply` gives child `i` the key `foldIn(key, i)`).
 *
 * @example
 * ```ts
 * const c = childBatchCtx(ctx, 0, 'hidden');
 * ```
 */
export function childBatchCtx(
  ctx: BatchCtx,
  i: number,
  path: string,
  batched: boolean = ctx.batched,
): BatchCtx {
  return {
    ...ctx,
    keys: ctx.keys?.map((k) => foldIn(k, i)),
    path,
    batched,
    activation: undefined,
  };
}

/** `zeroKl(S) -> [S]`: the per-sample KL of a computation without posterior. */
export const zeroKl = (numSamples: number): tf.Tensor1D => tf.zeros([numSamples]);

/** Splits a value with a leading sample axis (a tensor or an array of them) into S values. */
export function unstackSamples(x: unknown, numSamples: number): unknown[] {
  if (x instanceof tf.Tensor) return tf.unstack(x);
  if (Array.isArray(x)) {
    const parts = x.map((e) => unstackSamples(e, numSamples));
    return Array.from({ length: numSamples }, (_, s) => parts.map((p) => p[s]));
  }
  if (typeof x === 'object' && x !== null) {
    const entries = Object.entries(x).map(([k, v]) => [k, unstackSamples(v, numSamples)] as const);
    return Array.from({ length: numSamples }, (_, s) =>
      Object.fromEntries(entries.map(([k, p]) => [k, p[s]])),
    );
  }
  throw new TypeError(`vmapSamples: cannot split a ${typeof x} along the sample axis.`);
}

/** Stacks S per-sample values (tensors, arrays or records of them) along a new leading axis. */
export function stackSamples(outs: readonly unknown[]): unknown {
  const first = outs[0];
  if (first instanceof tf.Tensor) return tf.stack(outs as tf.Tensor[]);
  if (Array.isArray(first)) {
    return first.map((_, j) => stackSamples(outs.map((o) => (o as unknown[])[j])));
  }
  if (typeof first === 'object' && first !== null) {
    return Object.fromEntries(
      Object.keys(first).map((k) => [
        k,
        stackSamples(outs.map((o) => (o as Record<string, unknown>)[k])),
      ]),
    );
  }
  throw new TypeError(`vmapSamples: cannot stack a ${typeof first} along the sample axis.`);
}

/**
 * `tileSamples(x, S) -> [S, ...]`: adds the sample axis to a value that lacks it (a tensor or an
 * array of tensors) by repeating it.
 *
 * @example
 * ```ts
 * tileSamples(tf.ones([4, 2]), 3); // shape [3, 4, 2]
 * ```
 */
export function tileSamples<T>(x: T, numSamples: number): T {
  if (x instanceof tf.Tensor) {
    // a leading-axis broadcast: differentiable at any rank (tf.tile's gradient stops at rank 4)
    if (x.dtype === 'float32' || x.dtype === 'int32') {
      return tf.add(tf.zeros([numSamples, ...x.shape], x.dtype), x) as T;
    }
    return tf.tile(tf.expandDims(x, 0), [numSamples, ...x.shape.map(() => 1)]) as T;
  }
  if (Array.isArray(x)) return x.map((e: unknown) => tileSamples(e, numSamples)) as T;
  throw new TypeError(`vmapSamples: cannot tile a ${typeof x} along the sample axis.`);
}

/**
 * `loopBatched(layer, params, x, ctx) -> { out: [S, ...], kl: [S], batched: true }`: the fallback
 * batch rule: applies the layer once per sample, with that sample's key and index
 * (`ctx.sample = s`, which `ctx.noise` receives), and stacks the results. Exactly what a loop of
 * `apply` calls gives.
 *
 * @example
 * ```ts
 * const r = loopBatched(layer, params, x, { keys, numSamples: keys.length, batched: false });
 * ```
 */
export function loopBatched<P extends ParamTree, In, Out>(
  layer: Layer<P, In, Out, unknown, unknown>,
  params: P,
  x: In,
  ctx: BatchCtx,
): AppliedBatched<Out> {
  return tidy(() => {
    const S = ctx.numSamples;
    const { keys, numSamples: _n, batched: _b, firstSample = 0, ...rest } = ctx;
    const xs = ctx.batched ? (unstackSamples(x, S) as In[]) : undefined;
    const outs: Out[] = [];
    const kls: tf.Scalar[] = [];
    for (let s = 0; s < S; s++) {
      const r: Applied<Out> = layer.apply(params, xs ? (xs[s] as In) : x, {
        ...rest,
        key: keys?.[s],
        sample: firstSample + s,
      });
      outs.push(r.out);
      kls.push(r.kl);
    }
    return { out: stackSamples(outs) as Out, kl: tf.stack(kls) as tf.Tensor1D, batched: true };
  });
}

/**
 * `applyLayerBatched(layer, params, x, ctx) -> AppliedBatched`: the layer's batch rule if it has
 * one, else the loop fallback.
 *
 * @example
 * ```ts
 * const r = applyLayerBatched(model, params, x, { keys, numSamples: keys.length, batched: false });
 * ```
 */
export function applyLayerBatched<P extends ParamTree, In, Out>(
  layer: Layer<P, In, Out, unknown, unknown>,
  params: P,
  x: In,
  ctx: BatchCtx,
): AppliedBatched<Out> {
  return layer.applyBatched
    ? layer.applyBatched(params, x, ctx)
    : loopBatched(layer, params, x, ctx);
}

/**
 * `leadingAxesRule(f) -> BatchRule`: the batch rule of a computation without posterior that works
 * on inputs with extra leading axes (element-wise functions, last-axis functions, a dense layer):
 * apply it once, keep the input's batching, KL 0.
 *
 * @example
 * ```ts
 * const applyBatched = leadingAxesRule((_p, x) => tf.relu(x));
 * ```
 */
export function leadingAxesRule<P, In, Out>(
  f: (params: P, x: In, ctx: BatchCtx) => Out,
): BatchRule<P, In, Out> {
  return (params, x, ctx) =>
    tidy(() => ({ out: f(params, x, ctx), kl: zeroKl(ctx.numSamples), batched: ctx.batched }));
}

/**
 * `perSample(weights, x, batched, f) -> [S, ...]`: the rule of last resort for S sampled weights
 * meeting an input: unstacks every weight (and the input, when it has the sample axis), applies
 * `f` per sample and stacks the outputs. Layers use it where no batched computation is faster.
 *
 * @example
 * ```ts
 * const y = perSample({ kernel: w }, x, ctx.batched, (ws, xs) => conv(xs, ws.kernel));
 * ```
 */
export function perSample<W extends Readonly<Record<string, tf.Tensor | undefined>>, In, Out>(
  weights: W,
  x: In,
  batched: boolean,
  f: (weights: W, x: In, sample: number) => Out,
): Out {
  return tidy(() => {
    const names = Object.keys(weights).filter((k) => weights[k] !== undefined);
    const first = weights[names[0] as string] as tf.Tensor;
    const S = first.shape[0] as number;
    const parts = names.map((k) => unstackSamples(weights[k], S) as tf.Tensor[]);
    const xs = batched ? (unstackSamples(x, S) as In[]) : undefined;
    const outs = Array.from({ length: S }, (_, s) => {
      const w = Object.fromEntries(names.map((k, j) => [k, (parts[j] as tf.Tensor[])[s]])) as W;
      return f(w, xs ? (xs[s] as In) : x, s);
    });
    return stackSamples(outs) as Out;
  });
}

/**
 * `sampledAffine(x, w, b?, activation?) -> y [S, M, out]`: `y[s] = act(x[s] @ w[s] + b[s])` for a
 * batched input `x [S, M, in]`, or `y[s] = act(x @ w[s] + b[s])` for a shared input `x [M, in]`;
 * `w [S, in, out]`, `b [S, out]`, `act` the identity unless `activation` is given.
 *
 * Written for the backends' fast paths. wasm and webgl: one fused matMul (bias `[S, 1, out]` and
 * activation included; on wasm src/kernels/wasm.ts runs it as XNNPACK products with the bias and
 * the clamp inside, where a separate bias add was a matmul and an add over the whole output). cpu:
 * tfjs-cpu runs a binary op whose operands differ only by LEADING axes (`[in, out] + [S, in, out]`)
 * as a flat loop, but broadcasts a size-1 axis inside the shape (`[S, M, out] + [S, 1, out]`), and
 * transposes and tiles, element by element through index arithmetic, about 50x slower (its fused
 * matMul adds the bias that way); so there the bias arrives by a rank-1 batched matmul
 * (`ones [S, M, 1] @ b [S, 1, out]`). Everywhere a shared input reaches the samples by a
 * leading-axis broadcast: tfjs's BatchMatMul broadcasts a batch of 1 forward but not in its
 * gradient.
 *
 * @example
 * ```ts
 * const y = sampledAffine(tf.ones([8, 3]), w, b); // w [S, 3, 2], b [S, 2] -> [S, 8, 2]
 * ```
 */
export function sampledAffine(
  x: tf.Tensor,
  w: tf.Tensor3D,
  b?: tf.Tensor2D,
  activation?: FusedActivation,
): tf.Tensor3D {
  return tidy((): tf.Tensor3D => {
    const [S, inF, outF] = w.shape;
    const M = x.shape[x.rank - 2] as number;
    const xs = (x.rank === 2 ? tf.add(tf.zeros([S, M, inF]), x) : x) as tf.Tensor3D;
    if (tf.getBackend() !== 'cpu') {
      // one fused product: bias and activation inside the matmul (wasm: inside XNNPACK's operator)
      return tf.fused.matMul({
        a: xs,
        b: w,
        bias: b ? tf.reshape(b, [S, 1, outF]) : undefined,
        activation: activation ?? 'linear',
      }) as tf.Tensor3D;
    }
    const y = tf.matMul(xs, w) as tf.Tensor3D;
    const biased = b
      ? tf.add(y, tf.matMul(tf.ones([S, M, 1]), tf.reshape(b, [S, 1, outF]) as tf.Tensor3D))
      : y;
    return applyActivation(biased, activation) as tf.Tensor3D;
  });
}
