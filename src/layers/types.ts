/** The layer contract (see DESIGN.md, "Core types"). */
import type * as tf from '@tensorflow/tfjs-core';
import type { Key } from '../params/random';
import type { ParamTree } from '../params/tree';
import type { BatchRule } from './batching';

/** A shape; the batch dimension is written as -1. */
export type Shape = readonly number[];

/**
 * Substitute noise: return the standard-normal noise `eps` (a tensor of the weight's own `shape`)
 * for the weight at `path` (e.g. `'hidden.kernel'`) in posterior sample number `sample`, or
 * undefined to draw it from the key. `sample` is 0 for a single `apply`, and `s` for sample `s` of
 * `vmapSamples` and `loopSamples` (both ask for the same noise, so they agree).
 */
export type NoiseFn = (path: string, shape: Shape, sample: number) => tf.Tensor | undefined;

/** What `apply` receives besides params and input. */
export interface ApplyCtx {
  /** The PRNG key; required wherever something is sampled. */
  readonly key?: Key;
  /** `'sample'` or `'mean'` for the whole model; undefined: each layer's own `freeze` decides. */
  readonly mode?: 'sample' | 'mean';
  /** Dropout and other train-only behaviour. */
  readonly training?: boolean;
  /** Substitute the standard-normal noise of a weight (tests, parity with other libraries). */
  readonly noise?: NoiseFn;
  /**
   * The index of this posterior sample (default 0): what `ctx.noise` receives. `loopSamples` and
   * the batched pass's loop fallback set it; there is no need to set it by hand.
   */
  readonly sample?: number;
  /** The layer's path in the model (set by combinators; used in errors and by `noise`). */
  readonly path?: string;
  /**
   * Compute the KL term (default true). Prediction sets it to false: the layers then return a
   * KL of 0 and skip its cost (the prior's log-density over every weight).
   */
  readonly computeKl?: boolean;
}

/** A layer's output and its KL term (0 for deterministic layers). */
export interface Applied<Out> {
  readonly out: Out;
  readonly kl: tf.Scalar;
}

/**
 * A layer: pure functions over an explicit parameter tree. Nothing is stored on it but its
 * configuration.
 */
export interface Layer<
  P extends ParamTree = ParamTree,
  In = tf.Tensor,
  Out = tf.Tensor,
  InShape = Shape,
  OutShape = Shape,
> {
  /** The layer's name: its key in a parent combinator's parameter tree. */
  readonly name: string;
  /** The layer type, e.g. `'bayesianLinear'`. */
  readonly kind: string;
  /** Plain-data configuration (serializable). */
  readonly config: Readonly<Record<string, unknown>>;
  /** The output shape for an input shape; throws `ShapeError`. */
  outputShape(inputShape: InShape, path?: string): OutShape;
  /**
   * Fresh parameters for an input shape. `path` is the layer's path in the model, set by
   * combinators, used in error messages.
   */
  init(key: Key, inputShape: InShape, path?: string): { params: P; outputShape: OutShape };
  /** The output and the KL term. */
  apply(params: P, x: In, ctx?: ApplyCtx): Applied<Out>;
  /** Optional rule for `vmapSamples`; without it, `vmapSamples` loops over samples. */
  readonly applyBatched?: BatchRule<P, In, Out>;
  /**
   * The KL term alone, at the weights that `apply` with the same context would sample (no input
   * needed); 0 for deterministic layers.
   */
  klDivergence(params: P, ctx?: ApplyCtx): tf.Scalar;
}

/** Any layer, whatever its parameter and input types. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyLayer = Layer<any, any, any, any, any>;

/** The parameter tree type of a layer: `ParamsOf<typeof model>`. */
export type ParamsOf<L> =
  L extends Layer<infer P, infer _I, infer _O, infer _IS, infer _OS> ? P : never;

/** The input type of a layer. */
export type InputOf<L> =
  L extends Layer<infer _P, infer I, infer _O, infer _IS, infer _OS> ? I : never;

/** The output type of a layer. */
export type OutputOf<L> =
  L extends Layer<infer _P, infer _I, infer O, infer _IS, infer _OS> ? O : never;

/** The input-shape type of a layer. */
export type InputShapeOf<L> =
  L extends Layer<infer _P, infer _I, infer _O, infer IS, infer _OS> ? IS : never;

/** The output-shape type of a layer. */
export type OutputShapeOf<L> =
  L extends Layer<infer _P, infer _I, infer _O, infer _IS, infer OS> ? OS : never;
