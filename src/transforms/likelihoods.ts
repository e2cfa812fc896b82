/**
 * Likelihoods (the reference's "criterion"): negative log-likelihoods of targets given the
 * network's predictions. Predictions may carry leading sample axes (`[S, ...targetShape]`); the
 * result is the mean over samples and examples.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import { inverseSoftplus, logSoftplus, softplus } from '../params/distributions';
import type { ParamTree } from '../params/tree';
import { ShapeError, fmtShape } from '../errors';
import { positive, validate, knownKeys } from '../validation';

/** A likelihood: its own (possibly empty) parameters and a mean negative log-likelihood. */
export interface Likelihood<LP extends ParamTree = ParamTree> {
  readonly name: string;
  /** Fresh parameters (e.g. the learned noise scale); `{}` when there are none. */
  init(): LP;
  /** Mean negative log-likelihood of `y` under predictions `pred` (`[...S, ...y.shape]`). */
  nll(params: LP, pred: tf.Tensor, y: tf.Tensor): tf.Scalar;
  /** The observation-noise standard deviation, where the likelihood has one (regression). */
  noiseStd?(params: LP): tf.Scalar;
}

/** A likelihood with an observation-noise scale (`gaussianNll`): `noiseStd` is always there. */
export interface NoisyLikelihood<LP extends ParamTree = ParamTree> extends Likelihood<LP> {
  /** The observation-noise standard deviation. */
  noiseStd(params: LP): tf.Scalar;
}

type Empty = Readonly<Record<string, never>>;

function checkTrailing(
  what: string,
  predShape: readonly number[],
  yShape: readonly number[],
): void {
  const tail = predShape.slice(predShape.length - yShape.length);
  if (predShape.length < yShape.length || tail.join(',') !== yShape.join(',')) {
    throw new ShapeError(
      what,
      `predictions ${fmtShape(predShape)} do not end with the target shape ${fmtShape(yShape)}; ` +
        'reshape the targets to match the network output (e.g. [batch, 1] for one output), so ' +
        'that nothing is silently broadcast.',
    );
  }
}

/**
 * `mse() -> Likelihood`: mean squared error, the reference's usual criterion (`nn.MSELoss()`).
 * Not a normalised likelihood: it fixes the noise variance at 1/2 and drops constants.
 *
 * @example
 * ```ts
 * const loss = elbo(model, mse(), { numSamples: 3 });
 * ```
 */
export function mse(): Likelihood<Empty> {
  return Object.freeze({
    name: 'mse',
    init: () => Object.freeze({}) as Empty,
    nll: (_p: Empty, pred: tf.Tensor, y: tf.Tensor): tf.Scalar =>
      tidy(() => {
        checkTrailing('mse', pred.shape, y.shape);
        return tf.mean(tf.squaredDifference(pred, y)) as tf.Scalar;
      }),
  });
}

/**
 * `softmaxCrossEntropy() -> Likelihood`: categorical NLL of logits `[..., C]`; targets are
 * integer labels `[...]` (int32) or one-hot / probability rows `[..., C]` (float32).
 *
 * @example
 * ```ts
 * const loss = elbo(classifier, softmaxCrossEntropy(), { numSamples: 2 });
 * ```
 */
export function softmaxCrossEntropy(): Likelihood<Empty> {
  return Object.freeze({
    name: 'softmaxCrossEntropy',
    init: () => Object.freeze({}) as Empty,
    nll: (_p: Empty, logits: tf.Tensor, y: tf.Tensor): tf.Scalar =>
      tidy(() => {
        const C = logits.shape[logits.rank - 1] as number;
        let target = y;
        if (y.dtype === 'int32') {
          checkTrailing('softmaxCrossEntropy (integer labels)', logits.shape.slice(0, -1), y.shape);
          target = tf.reshape(tf.oneHot(tf.reshape(y, [-1]) as tf.Tensor1D, C), [...y.shape, C]);
        } else {
          checkTrailing('softmaxCrossEntropy', logits.shape, y.shape);
        }
        // log-softmax as logits - logSumExp: tf.logSoftmax is a customGrad with `save`, which
        // tfjs's test-mode kernel leak check reports as a leak on wasm when differentiated
        const logp = tf.sub(logits, tf.logSumExp(logits, -1, true));
        return tf.neg(tf.mean(tf.sum(tf.mul(target, logp), -1))) as tf.Scalar;
      }),
  });
}

/** Parameters of `gaussianNll`: the noise scale `softplus(rho)`. */
export type GaussianNoiseParams = {
  readonly noise: { readonly rho: tf.Tensor };
};

/**
 * `gaussianNll({ initStd }) -> Likelihood`: Gaussian negative log-likelihood
 * `log sigma + (y - pred)^2 / (2 sigma^2) + log(2 pi) / 2` with a LEARNED homoscedastic noise
 * scale `sigma = softplus(rho)` (one scalar), so that regression uncertainty includes observation
 * noise. `initStd` (default 1) is the initial sigma, in the units of the targets.
 *
 * @example
 * ```ts
 * const lik = gaussianNll({ initStd: 0.5 });
 * const params = { model: model.init(k, [-1, 1]).params, likelihood: lik.init() };
 * ```
 */
export function gaussianNll(
  options: { initStd?: number } = {},
): NoisyLikelihood<GaussianNoiseParams> {
  const initStd = options.initStd ?? 1;
  validate('gaussianNll', [knownKeys(options, ['initStd']), positive('initStd', initStd)]);
  const rho0 = inverseSoftplus(initStd);
  return Object.freeze({
    name: 'gaussianNll',
    init: () =>
      Object.freeze({ noise: Object.freeze({ rho: tf.scalar(rho0) }) }) as GaussianNoiseParams,
    nll: (p: GaussianNoiseParams, pred: tf.Tensor, y: tf.Tensor): tf.Scalar =>
      tidy(() => {
        checkTrailing('gaussianNll', pred.shape, y.shape);
        const rho = p.noise.rho;
        const logSigma = logSoftplus(rho);
        const z2 = tf.div(tf.squaredDifference(pred, y), tf.square(softplus(rho)));
        return tf.add(
          tf.add(logSigma, tf.mul(tf.mean(z2), 0.5)),
          0.5 * Math.log(2 * Math.PI),
        ) as tf.Scalar;
      }),
    noiseStd: (p: GaussianNoiseParams): tf.Scalar => softplus(p.noise.rho) as tf.Scalar,
  });
}
