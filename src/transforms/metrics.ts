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

/**
 * `normalQuantile(p) -> z`: the standard normal quantile `Phi^-1(p)` for p in (0, 1), in float64
 * (P. J. Acklam's rational approximation: relative error below 1.2e-9).
 *
 * @example
 * ```ts
 * normalQuantile(0.975); // 1.95996398...
 * ```
 */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile: p must be in (0, 1), got ${p}.`);
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716,
    2.506628277459239,
  ];
  const b = [
    -54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972,
    -13.28068155288572,
  ];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734,
    4.374664141464968, 2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const poly = (cs: number[], x: number) => cs.reduce((acc, k) => acc * x + k, 0);
  if (p < 0.02425) {
    const q = Math.sqrt(-2 * Math.log(p));
    return poly(c, q) / (poly(d, q) * q + 1);
  }
  if (p > 1 - 0.02425) {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    return -poly(c, q) / (poly(d, q) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return (poly(a, r) * q) / (poly(b, r) * r + 1);
}

/** One point of `calibrationCurve`. */
export interface CalibrationPoint {
  /** The nominal probability of the central interval `mean ± z std`, `z = Phi^-1((1 + level) / 2)`. */
  readonly level: number;
  /** The share of targets inside it. */
  readonly observed: number;
}

/**
 * `calibrationCurve(mean, std, y, levels?) -> [{ level, observed }]`: the calibration curve of a
 * Gaussian predictive (Kuleshov et al. 2018): for each nominal level, the share of targets inside
 * the central interval of that probability. Calibrated: `observed ≈ level` everywhere; below the
 * diagonal: overconfident. Default levels 0.1, 0.2, ..., 0.9, 0.95, 0.99.
 *
 * @example
 * ```ts
 * for (const { level, observed } of calibrationCurve(mean, std, yTest)) console.log(level, observed);
 * ```
 */
export function calibrationCurve(
  mean: tf.Tensor,
  std: tf.Tensor,
  y: tf.Tensor,
  levels: readonly number[] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99],
): CalibrationPoint[] {
  sameShape('calibrationCurve', mean, std, y);
  for (const l of levels) {
    if (!(l > 0 && l < 1)) {
      throw new RangeError(`calibrationCurve: levels must be in (0, 1), got ${l}.`);
    }
  }
  const m = mean.dataSync();
  const s = std.dataSync();
  const t = y.dataSync();
  const n = t.length;
  if (n === 0) throw new RangeError('calibrationCurve: no targets.');
  // |y - mean| / std per target, then the share within each z
  const zs = new Float64Array(n);
  for (let i = 0; i < n; i++)
    zs[i] = Math.abs((t[i] as number) - (m[i] as number)) / (s[i] as number);
  return levels.map((level) => {
    const z = normalQuantile((1 + level) / 2);
    let inside = 0;
    for (let i = 0; i < n; i++) if ((zs[i] as number) <= z) inside++;
    return { level, observed: inside / n };
  });
}
