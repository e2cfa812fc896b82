/**
 * `bayesianLinear`: the reference's `BayesianLinear` (Bayes by Backprop), `y = x W + b` with a
 * diagonal Gaussian posterior over `W` (`[in, out]`) and `b` (`[out]`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import type { GaussianParams } from '../params/distributions';
import {
  BAYESIAN_DEFAULTS,
  bayesianLayer,
  type BayesianLayer,
  type BayesianOptions,
} from './bayesian';
import { sampledAffine } from './batching';
import { isBool, positiveInt, validate } from '../validation';
import { ShapeError, fmtShape } from '../errors';
import type { Shape } from './types';

/** Options of `bayesianLinear` (the reference's `BayesianLinear` arguments, camelCased). */
export interface BayesianLinearOptions extends BayesianOptions {
  /** Number of input features. */
  readonly inFeatures: number;
  /** Number of output features. */
  readonly outFeatures: number;
  /** Whether the layer has a bias. Default true. */
  readonly bias?: boolean;
  /** The layer's name (its key in a parent's parameter tree). Default `'bayesianLinear'`. */
  readonly name?: string;
}

/** Parameters of `bayesianLinear`: a posterior per weight tensor. */
export type BayesianLinearParams = {
  readonly kernel: GaussianParams;
  readonly bias?: GaussianParams;
};

/** Concrete weights of `bayesianLinear` (a sample or the means). */
export type LinearWeights = {
  readonly kernel: tf.Tensor;
  readonly bias?: tf.Tensor;
};

/** `bayesianLinear` is a `Layer` with its three steps exposed (`sample` / `mean` / `forward`). */
export type BayesianLinearLayer = BayesianLayer<BayesianLinearParams, LinearWeights>;

/**
 * `bayesianLinear(options) -> Layer`: a Bayes-by-Backprop linear layer.
 *
 * Defaults (the reference's): `bias = true`, `priorSigma1 = 1`, `priorSigma2 = 0.002`,
 * `priorPi = 0.5`, `posteriorMuInit = 0`, `posteriorRhoInit = -7`, `freeze = false`,
 * `kl = 'mc'`. Weights: `kernel [inFeatures, outFeatures]`, `bias [outFeatures]`; the kernel's
 * noise comes from `foldIn(layerKey, 0)`, the bias's from `foldIn(layerKey, 1)`.
 *
 * @example
 * ```ts
 * const layer = bayesianLinear({ inFeatures: 3, outFeatures: 2 });
 * const { params } = layer.init(random.key(0), [-1, 3]);
 * const { out, kl } = layer.apply(params, tf.ones([4, 3]), { key: random.key(1) });
 * ```
 */
export function bayesianLinear(options: BayesianLinearOptions): BayesianLinearLayer {
  const name = options?.name ?? 'bayesianLinear';
  if (options === null || typeof options !== 'object') {
    validate(`bayesianLinear '${name}'`, [
      positiveInt('inFeatures', undefined),
      positiveInt('outFeatures', undefined),
    ]);
  }
  const inF = options.inFeatures;
  const outF = options.outFeatures;
  const useBias = options.bias ?? true;

  const outputShape = (inputShape: Shape, path: string): Shape => {
    const last = inputShape[inputShape.length - 1];
    if (inputShape.length < 1 || last !== inF) {
      throw new ShapeError(
        path,
        `expected input of shape [..., ${inF}] (inFeatures = ${inF}), got ${fmtShape(inputShape)}.`,
      );
    }
    return [...inputShape.slice(0, -1), outF];
  };

  const checkInput = (x: tf.Tensor, path: string, batched: boolean): void => {
    const minRank = batched ? 2 : 1;
    if (!(x instanceof tf.Tensor)) {
      throw new ShapeError(
        path,
        `expected a tensor input of shape [..., ${inF}], got ${String(x)}.`,
      );
    }
    if (x.rank < minRank || x.shape[x.rank - 1] !== inF) {
      throw new ShapeError(
        path,
        `expected input of shape [..., ${inF}] (inFeatures = ${inF}), got ${fmtShape(x.shape)}.`,
      );
    }
  };

  return bayesianLayer({
    kind: 'bayesianLinear',
    name,
    options,
    optionNames: ['inFeatures', 'outFeatures', 'bias', 'name'],
    checks: [
      positiveInt('inFeatures', inF),
      positiveInt('outFeatures', outF),
      isBool('bias', useBias),
    ],
    rhoDefault: BAYESIAN_DEFAULTS.posteriorRhoInitLinear,
    config: { inFeatures: inF, outFeatures: outF, bias: useBias, name },
    weights: {
      kernel: { shape: [inF, outF], index: 0 },
      bias: useBias ? { shape: [outF], index: 1 } : undefined,
    },
    outputShape,
    checkInput,
    forward: (weights, x) =>
      tidy(() => {
        const lead = x.shape.slice(0, -1);
        let y = tf.matMul(tf.reshape(x, [-1, inF]), weights.kernel as tf.Tensor2D) as tf.Tensor;
        if (weights.bias) y = tf.add(y, weights.bias);
        return tf.reshape(y, [...lead, outF]);
      }),
    // x [S, M, in] (or shared [M, in]) through the S sampled kernels in one batched matmul, with
    // the bias and a following relu fused in
    fusesActivation: true,
    // linear in (kernel, bias), features last: flipout and local apply
    linearInWeights: true,
    forwardSampled: (w, x, ctx) =>
      tidy(() => {
        const S = ctx.numSamples;
        const lead = ctx.batched ? x.shape.slice(1, -1) : x.shape.slice(0, -1);
        const xs = ctx.batched ? tf.reshape(x, [S, -1, inF]) : tf.reshape(x, [-1, inF]);
        const y = sampledAffine(
          xs,
          w.kernel as tf.Tensor3D,
          w.bias as tf.Tensor2D | undefined,
          ctx.activation,
        );
        return tf.reshape(y, [S, ...lead, outF]);
      }),
  });
}
