/**
 * Predictive metrics for regression: RMSE, Gaussian NLL of the predictive, and credible-interval
 * coverage. They read data and return plain numbers (for reports, not for training graphs).
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import { ShapeError, fmtShape } from '../errors';

function sameShape(what: string, ...ts: tf.Tensor[]): void {
  const s = (ts[0] as tf.Tensor).shape.join(',');
  if (ts.some((t) => t.shape.join(',') !== s)) {
    throw new ShapeError(
      what,
      `shapes must match: ${ts.map((t) => fmtShape(t.shape)).join(' vs ')}.`,
    );
  }
}

/**
 * `rmse(mean, y) -> number`: root mean squared error.
 *
 * @example
 * ```ts
 * rmse(tf.tensor([1, 2]), tf.tensor([1, 4])); // √2
 * ```
 */
export function rmse(mean: tf.Tensor, y: tf.Tensor): number {
  sameShape('rmse', mean, y);
  return tidy(() => Math.sqrt(tf.mean(tf.squaredDifference(mean, y)).dataSync()[0] as number));
}

/**
 * `totalStd(epistemicStd, noiseStd) -> tensor`: `sqrt(epistemic^2 + noise^2)`, the standard
 * deviation of the predictive when the likelihood adds Gaussian observation noise.
 *
 * @example
 * ```ts
 * totalStd(std, lik.noiseStd(params.likelihood));
 * ```
 */
export function totalStd(epistemicStd: tf.Tensor, noiseStd: tf.Tensor | number): tf.Tensor {
  return tidy(() => tf.sqrt(tf.add(tf.square(epistemicStd), tf.square(noiseStd))));
}

/**
 * `gaussianPredictiveNll(mean, std, y) -> number`: mean negative log-density of `y` under
 * `N(mean, std^2)`, element-wise, in nats.
 *
 * @example
 * ```ts
 * gaussianPredictiveNll(mean, totalStd(std, noise), yTest);
 * ```
 */
export function gaussianPredictiveNll(mean: tf.Tensor, std: tf.Tensor, y: tf.Tensor): number {
  sameShape('gaussianPredictiveNll', mean, std, y);
  return tidy(() => {
    const z2 = tf.div(tf.squaredDifference(y, mean), tf.square(std));
    const nll = tf.add(tf.add(tf.log(std), tf.mul(z2, 0.5)), 0.5 * Math.log(2 * Math.PI));
    return tf.mean(nll).dataSync()[0] as number;
  });
}

/** Shares of targets relative to the interval `mean ± k std`. */
export interface Coverage {
  readonly k: number;
  /** Inside `[mean - k std, mean + k std]`. */
  readonly inside: number;
  /** Below the lower bound. */
  readonly below: number;
  /** Above the upper bound. */
  readonly above: number;
}

/**
 * `coverage(mean, std, y, k = 2) -> { inside, below, above }`: the share of targets inside the
 * central interval `mean ± k std`, and outside on each side. For a calibrated Gaussian predictive
 * and k = 2: about 0.954 inside and 0.023 on each side.
 *
 * @example
 * ```ts
 * const { inside } = coverage(mean, std, yTest, 2);
 * ```
 */
export function coverage(mean: tf.Tensor, std: tf.Tensor, y: tf.Tensor, k = 2): Coverage {
  sameShape('coverage', mean, std, y);
  if (!(k > 0)) throw new RangeError(`coverage: k must be positive, got ${k}.`);
  return tidy(() => {
    const lo = tf.sub(mean, tf.mul(std, k));
    const hi = tf.add(mean, tf.mul(std, k));
    const below = tf.mean(tf.cast(tf.less(y, lo), 'float32')).dataSync()[0] as number;
    const above = tf.mean(tf.cast(tf.greater(y, hi), 'float32')).dataSync()[0] as number;
    return { k, inside: 1 - below - above, below, above };
  });
}
