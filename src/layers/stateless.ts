/**
 * `deterministicLayer`: the builder of layers without a posterior (activations, reshapes,
 * pooling, dropout, deterministic dense and conv, combinator plumbing). A layer declares its
 * shapes, its optional parameter initialisation and its forward computation; the builder provides
 * `init`, `apply`, the batch rule and the KL term (0), so no layer writes the contract out by hand.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import type { Key } from '../params/random';
import { freeze as freezeTree, type ParamTree } from '../params/tree';
import { zeroKl, type BatchCtx, type BatchRule } from './batching';
import type { ApplyCtx, Layer, Shape } from './types';

/** The parameters of a layer that has none. */
export type EmptyParams = Readonly<Record<string, never>>;

/** The (frozen, shared) empty parameter tree. */
export const EMPTY: EmptyParams = Object.freeze({});

/** The context `forward` receives: the apply context with the layer's path resolved. */
export type ForwardCtx = Omit<ApplyCtx, 'path'> & { readonly path: string };

/** The context of a custom batch rule: the batch context with the layer's path resolved. */
export type ForwardBatchCtx = Omit<BatchCtx, 'path'> & { readonly path: string };

/**
 * How a deterministic layer runs on S posterior samples: `'leading'` (its forward treats extra
 * leading axes as batch axes: it runs once and keeps the input's batching), `'loop'` (no rule:
 * `vmapSamples` applies it once per sample), or a rule returning the output and whether it has
 * the sample axis.
 */
export type DeterministicBatch<P, In, Out> =
  | 'leading'
  | 'loop'
  | ((params: P, x: In, ctx: ForwardBatchCtx) => { readonly out: Out; readonly batched: boolean });

/** What a deterministic layer declares; `deterministicLayer(spec)` builds the rest. */
export interface DeterministicSpec<P extends ParamTree, In, Out, InShape, OutShape> {
  /** The layer type, e.g. `'relu'`. */
  readonly kind: string;
  /** The layer's name (its key in a parent's parameter tree). Default `kind`. */
  readonly name?: string;
  /** Plain-data configuration (the name is added). */
  readonly config?: Readonly<Record<string, unknown>>;
  /** The output shape for an input shape; throws `ShapeError` naming `path`. Default: unchanged. */
  readonly outputShape?: (inputShape: InShape, path: string) => OutShape;
  /** Fresh parameters; absent for a parameter-free layer (its params are `{}`). */
  readonly init?: (key: Key, inputShape: InShape, path: string) => P;
  /** The computation. */
  readonly forward: (params: P, x: In, ctx: ForwardCtx) => Out;
  /** The batch rule (see `DeterministicBatch`). Default `'loop'`. */
  readonly batch?: DeterministicBatch<P, In, Out>;
}

/**
 * `deterministicLayer(spec) -> Layer`: a layer without posterior from its forward computation:
 * `init` (the spec's, or `{}`), `apply` (KL 0), the batch rule, `klDivergence` (0).
 *
 * @example
 * ```ts
 * const square = deterministicLayer({ kind: 'square', forward: (_p, x: tf.Tensor) => tf.square(x), batch: 'leading' });
 * ```
 */
export function deterministicLayer<
  P extends ParamTree = EmptyParams,
  In = tf.Tensor,
  Out = tf.Tensor,
  InShape = Shape,
  OutShape = InShape,
>(spec: DeterministicSpec<P, In, Out, InShape, OutShape>): Layer<P, In, Out, InShape, OutShape> {
  const name = spec.name ?? spec.kind;
  const outputShape = (s: InShape, path?: string): OutShape =>
    spec.outputShape ? spec.outputShape(s, path ?? name) : (s as unknown as OutShape);
  const batch = spec.batch ?? 'loop';
  let applyBatched: BatchRule<P, In, Out> | undefined;
  if (batch === 'leading') {
    applyBatched = (params, x, ctx) =>
      tidy(() => ({
        out: spec.forward(params, x, { ...ctx, path: ctx.path ?? name }),
        kl: zeroKl(ctx.numSamples),
        batched: ctx.batched,
      }));
  } else if (typeof batch === 'function') {
    applyBatched = (params, x, ctx) =>
      tidy(() => {
        const r = batch(params, x, { ...ctx, path: ctx.path ?? name });
        return { out: r.out, kl: zeroKl(ctx.numSamples), batched: r.batched };
      });
  }
  const layer: Layer<P, In, Out, InShape, OutShape> = {
    name,
    kind: spec.kind,
    config: Object.freeze({ name, ...spec.config }),
    outputShape,
    init(key: Key, inputShape: InShape, path?: string) {
      const out = outputShape(inputShape, path);
      const params = spec.init
        ? (freezeTree(tidy(() => spec.init?.(key, inputShape, path ?? name))) as P)
        : (EMPTY as P);
      return { params, outputShape: out };
    },
    apply: (params, x, ctx) =>
      tidy(() => ({
        out: spec.forward(params, x, { ...ctx, path: ctx?.path ?? name }),
        kl: tf.scalar(0),
      })),
    ...(applyBatched ? { applyBatched } : {}),
    klDivergence: () => tf.scalar(0),
  };
  return Object.freeze(layer);
}
