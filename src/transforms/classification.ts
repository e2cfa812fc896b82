/**
 * Classification: the posterior predictive distribution over classes (`predictiveProbs`) and the
 * metrics of a predictive distribution `probs [B, C]` against integer labels: accuracy, negative
 * log-likelihood, expected calibration error (Guo et al. 2017), predictive entropy. The metrics
 * read data and return plain numbers (for reports, not for training graphs), computed in float64.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import { isKey, type Key } from '../params/random';
import { MissingKeyError, ShapeError, fmtShape } from '../errors';
import { positiveInt, validate } from '../validation';
import type { AnyLayer, InputOf, ParamsOf } from '../layers/types';
import { DEFAULT_SAMPLES_PER_PASS, loopSamples, samplesInPasses, type SamplesCtx } from './elbo';

/** Integer class labels: a tensor `[B]` (int32 or float32 holding integers) or plain numbers. */
export type Labels = tf.Tensor | readonly number[];

/** Checks `probs [B, C]` and `labels [B]`, and reads both (labels as integers in [0, C)). */
function read(
  what: string,
  probs: tf.Tensor,
  labels: Labels,
): { p: Float32Array; y: Int32Array; B: number; C: number } {
  if (!(probs instanceof tf.Tensor) || probs.rank !== 2) {
    throw new ShapeError(
      what,
      `probs must be a tensor of shape [batch, classes], got ${probs instanceof tf.Tensor ? fmtShape(probs.shape) : String(probs)}.`,
    );
  }
  const [B, C] = probs.shape as [number, number];
  const y = readLabels(what, labels, B, C);
  return { p: probs.dataSync() as Float32Array, y, B, C };
}

function readLabels(what: string, labels: Labels, B: number, C: number): Int32Array {
  let values: ArrayLike<number>;
  if (labels instanceof tf.Tensor) {
    if (labels.rank !== 1 || labels.shape[0] !== B) {
      throw new ShapeError(
        what,
        `labels must have shape [${B}] (one integer label per row of probs), got ${fmtShape(labels.shape)}.`,
      );
    }
    values = labels.dataSync();
  } else if (Array.isArray(labels)) {
    if (labels.length !== B) {
      throw new ShapeError(what, `got ${labels.length} labels for ${B} rows of probs.`);
    }
    values = labels;
  } else {
    throw new TypeError(`${what}: labels must be a tensor [batch] or an array of numbers.`);
  }
  const y = new Int32Array(B);
  for (let i = 0; i < B; i++) {
    const v = values[i] as number;
    if (!Number.isInteger(v) || v < 0 || v >= C) {
      throw new RangeError(
        `${what}: label #${i} is ${v}; labels must be integers in [0, ${C - 1}] (${C} classes).`,
      );
    }
    y[i] = v;
  }
  return y;
}

/** The predicted class (first maximum) and its probability for each row. */
function argmaxRows(
  p: Float32Array,
  B: number,
  C: number,
): { cls: Int32Array; conf: Float64Array } {
  const cls = new Int32Array(B);
  const conf = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    let best = 0;
    let bestP = p[i * C] as number;
    for (let c = 1; c < C; c++) {
      const v = p[i * C + c] as number;
      if (v > bestP) {
        best = c;
        bestP = v;
      }
    }
    cls[i] = best;
    conf[i] = bestP;
  }
  return { cls, conf };
}

/**
 * `accuracy(probs, labels) -> number`: the share of rows whose most probable class (the first one
 * on ties) is the label. `probs [B, C]` may be probabilities or logits (only the argmax counts).
 *
 * @example
 * ```ts
 * accuracy(tf.tensor2d([[0.9, 0.1], [0.4, 0.6]]), [0, 0]); // 0.5
 * ```
 */
export function accuracy(probs: tf.Tensor, labels: Labels): number {
  const { p, y, B, C } = read('accuracy', probs, labels);
  if (B === 0) throw new RangeError('accuracy: probs has no rows.');
  const { cls } = argmaxRows(p, B, C);
  let hits = 0;
  for (let i = 0; i < B; i++) if (cls[i] === y[i]) hits++;
  return hits / B;
}

/**
 * `categoricalNll(probs, labels) -> number`: the mean negative log-probability of the labels,
 * `-(1/B) sum_i log probs[i, labels[i]]`, in nats (Infinity if a label has probability 0).
 *
 * @example
 * ```ts
 * categoricalNll(tf.tensor2d([[0.5, 0.5], [0.25, 0.75]]), [0, 1]); // (ln 2 + ln 4/3) / 2
 * ```
 */
export function categoricalNll(probs: tf.Tensor, labels: Labels): number {
  const { p, y, B, C } = read('categoricalNll', probs, labels);
  if (B === 0) throw new RangeError('categoricalNll: probs has no rows.');
  let total = 0;
  for (let i = 0; i < B; i++) total -= Math.log(p[i * C + (y[i] as number)] as number);
  return total / B;
}

/** Options of `expectedCalibrationError`. */
export interface CalibrationOptions {
  /** Number of equal-width confidence bins on [0, 1]. Default 15 (Guo et al. 2017). */
  readonly bins?: number;
}

/**
 * `expectedCalibrationError(probs, labels, { bins = 15 }) -> number`: the expected calibration
 * error of Guo et al. (2017), "On Calibration of Modern Neural Networks": the confidence of a row
 * is its largest probability, rows are grouped in `bins` equal-width bins
 * `((m - 1) / M, m / M]`, and `ECE = sum_m (|B_m| / n) |acc(B_m) - conf(B_m)|`, where `acc` is the
 * share of correct predictions in the bin and `conf` its mean confidence. 0 is perfect.
 *
 * @example
 * ```ts
 * expectedCalibrationError(tf.tensor2d([[0.8, 0.2], [0.8, 0.2]]), [0, 1], { bins: 10 }); // |0.5 - 0.8| = 0.3
 * ```
 */
export function expectedCalibrationError(
  probs: tf.Tensor,
  labels: Labels,
  options: CalibrationOptions = {},
): number {
  return reliabilityBins('expectedCalibrationError', probs, labels, options).ece;
}

/** One confidence bin of `reliabilityDiagram`. */
export interface ReliabilityBin {
  /** The bin is `(lower, upper]` (the first one includes 0). */
  readonly lower: number;
  readonly upper: number;
  /** Rows whose confidence (largest probability) falls in it. */
  readonly count: number;
  /** Their mean confidence (NaN for an empty bin). */
  readonly confidence: number;
  /** The share of them predicted right (NaN for an empty bin). */
  readonly accuracy: number;
}

/** What `reliabilityDiagram` returns: the table of a reliability diagram, and its ECE. */
export interface ReliabilityDiagram {
  readonly bins: readonly ReliabilityBin[];
  /** `sum_m (count_m / n) |accuracy_m - confidence_m|`: `expectedCalibrationError`'s value. */
  readonly ece: number;
  /** `max_m |accuracy_m - confidence_m|` over the non-empty bins (the maximum calibration error). */
  readonly mce: number;
}

/**
 * `reliabilityDiagram(probs, labels, { bins = 15 }) -> { bins, ece, mce }`: the table behind a
 * reliability diagram (DeGroot and Fienberg 1983; Guo et al. 2017): for each of `bins`
 * equal-width confidence bins, the count, mean confidence and accuracy of the rows in it, with
 * the expected and the maximum calibration error. In float64.
 *
 * @example
 * ```ts
 * const { bins, ece } = reliabilityDiagram(probs, yTest, { bins: 10 });
 * console.table(bins);
 * ```
 */
export function reliabilityDiagram(
  probs: tf.Tensor,
  labels: Labels,
  options: CalibrationOptions = {},
): ReliabilityDiagram {
  return reliabilityBins('reliabilityDiagram', probs, labels, options);
}

function reliabilityBins(
  what: string,
  probs: tf.Tensor,
  labels: Labels,
  options: CalibrationOptions,
): ReliabilityDiagram {
  const M = options?.bins ?? 15;
  validate(what, [positiveInt('bins', M)]);
  const { p, y, B, C } = read(what, probs, labels);
  if (B === 0) throw new RangeError(`${what}: probs has no rows.`);
  const { cls, conf } = argmaxRows(p, B, C);
  const count = new Float64Array(M);
  const correct = new Float64Array(M);
  const confSum = new Float64Array(M);
  for (let i = 0; i < B; i++) {
    const c = conf[i] as number;
    // bin m (0-based) holds (m/M, (m+1)/M]; a confidence of 0 goes to the first bin
    let m = Math.min(M - 1, Math.max(0, Math.ceil(c * M) - 1));
    // the product c * M may round across an edge: settle against the edges m / M themselves
    if (m < M - 1 && c > (m + 1) / M) m++;
    else if (m > 0 && c <= m / M) m--;
    count[m] = (count[m] as number) + 1;
    confSum[m] = (confSum[m] as number) + c;
    if (cls[i] === y[i]) correct[m] = (correct[m] as number) + 1;
  }
  let ece = 0;
  let mce = 0;
  const bins: ReliabilityBin[] = [];
  for (let m = 0; m < M; m++) {
    const n = count[m] as number;
    const acc = n > 0 ? (correct[m] as number) / n : NaN;
    const cf = n > 0 ? (confSum[m] as number) / n : NaN;
    if (n > 0) {
      ece += (n / B) * Math.abs(acc - cf);
      mce = Math.max(mce, Math.abs(acc - cf));
    }
    bins.push({ lower: m / M, upper: (m + 1) / M, count: n, confidence: cf, accuracy: acc });
  }
  return { bins, ece, mce };
}

/**
 * `brierScore(probs, labels) -> number`: the multi-class Brier score (Brier 1950)
 * `(1/n) sum_i sum_c (p_ic - [y_i = c])^2`, in [0, 2]; 0 is perfect. In float64.
 *
 * @example
 * ```ts
 * brierScore(tf.tensor2d([[0.8, 0.2]]), [0]); // 0.2^2 + 0.2^2 = 0.08
 * ```
 */
export function brierScore(probs: tf.Tensor, labels: Labels): number {
  const { p, y, B, C } = read('brierScore', probs, labels);
  if (B === 0) throw new RangeError('brierScore: probs has no rows.');
  let total = 0;
  for (let i = 0; i < B; i++) {
    for (let c = 0; c < C; c++) {
      const d = (p[i * C + c] as number) - (c === y[i] ? 1 : 0);
      total += d * d;
    }
  }
  return total / B;
}

function checkSampleProbs(what: string, sampleProbs: tf.Tensor): void {
  if (!(sampleProbs instanceof tf.Tensor) || sampleProbs.rank !== 3) {
    throw new ShapeError(
      what,
      `sampleProbs must be a tensor of shape [samples, batch, classes] (predictiveProbs' sampleProbs), got ${sampleProbs instanceof tf.Tensor ? fmtShape(sampleProbs.shape) : String(sampleProbs)}.`,
    );
  }
}

/** `-sum_c p log p` over the last axis (`0 log 0 = 0`). */
function entropyLast(p: tf.Tensor): tf.Tensor {
  const positive = tf.greater(p, 0);
  const safe = tf.where(positive, p, tf.onesLike(p));
  const plogp = tf.where(positive, tf.mul(p, tf.log(safe)), tf.zerosLike(p));
  return tf.neg(tf.sum(plogp, -1));
}

/**
 * `expectedEntropy(sampleProbs) -> [B]`: the mean over the posterior samples of each sample's
 * predictive entropy, `(1/S) sum_s H(p_s)` (nats), from `sampleProbs [S, B, C]`: the aleatoric
 * part of the predictive entropy. A fresh tensor.
 *
 * @example
 * ```ts
 * const { sampleProbs } = predictiveProbs(model, params, x, { key, numSamples: 50 });
 * const aleatoric = expectedEntropy(sampleProbs);
 * ```
 */
export function expectedEntropy(sampleProbs: tf.Tensor): tf.Tensor1D {
  checkSampleProbs('expectedEntropy', sampleProbs);
  return tidy(() => tf.mean(entropyLast(sampleProbs), 0) as tf.Tensor1D);
}

/**
 * `mutualInformation(sampleProbs) -> [B]`: the mutual information between the prediction and the
 * weights, `H(mean_s p_s) - mean_s H(p_s)` (nats, >= 0; BALD, Houlsby et al. 2011), from
 * `sampleProbs [S, B, C]`: the epistemic part of the predictive entropy (`predictiveEntropy` of
 * the mean = `expectedEntropy` + this). A fresh tensor; rounding below 0 is clamped to 0.
 *
 * @example
 * ```ts
 * const epistemic = mutualInformation(sampleProbs);
 * ```
 */
export function mutualInformation(sampleProbs: tf.Tensor): tf.Tensor1D {
  checkSampleProbs('mutualInformation', sampleProbs);
  return tidy(
    () =>
      tf.relu(
        tf.sub(entropyLast(tf.mean(sampleProbs, 0)), tf.mean(entropyLast(sampleProbs), 0)),
      ) as tf.Tensor1D,
  );
}

/**
 * `predictiveEntropy(probs) -> [B]`: the entropy `-sum_c p_c log p_c` (nats, `0 log 0 = 0`) of each
 * row of `probs [B, C]`: 0 for a certain prediction, `log C` for a uniform one. A fresh tensor.
 *
 * @example
 * ```ts
 * predictiveEntropy(tf.tensor2d([[1, 0], [0.5, 0.5]])); // [0, ln 2]
 * ```
 */
export function predictiveEntropy(probs: tf.Tensor): tf.Tensor1D {
  if (!(probs instanceof tf.Tensor) || probs.rank !== 2) {
    throw new ShapeError(
      'predictiveEntropy',
      `probs must be a tensor of shape [batch, classes], got ${probs instanceof tf.Tensor ? fmtShape(probs.shape) : String(probs)}.`,
    );
  }
  return tidy(() => {
    const positive = tf.greater(probs, 0);
    const safe = tf.where(positive, probs, tf.onesLike(probs));
    const plogp = tf.where(positive, tf.mul(probs, tf.log(safe)), tf.zerosLike(probs));
    return tf.neg(tf.sum(plogp, 1)) as tf.Tensor1D;
  });
}

/** Options of `predictiveProbs`. */
export interface PredictiveProbsOptions {
  /** Drives the posterior samples: sample `s` uses `foldIn(key, s)`. */
  readonly key: Key;
  /** Posterior samples. Default 10. */
  readonly numSamples?: number;
  /** `'vmap'` (default): batched passes; `'loop'`: one `apply` per sample. Same result. */
  readonly sampler?: 'vmap' | 'loop';
  /** With `'vmap'`: at most this many samples per batched pass (default 16), as `predictive`. */
  readonly samplesPerPass?: number;
  /** Extra context for the model (e.g. `{ mode: 'mean' }`). */
  readonly ctx?: Omit<SamplesCtx, 'key' | 'computeKl'>;
}

/** What `predictiveProbs` returns (fresh tensors, the caller's to dispose). */
export interface PredictiveProbs {
  /** The posterior predictive `mean_s softmax(logits_s)`, `[B, C]`. */
  readonly probs: tf.Tensor2D;
  /** The class probabilities of each posterior sample, `[S, B, C]`. */
  readonly sampleProbs: tf.Tensor3D;
}

/**
 * `predictiveProbs(model, params, x, { key, numSamples = 10 }) -> { probs, sampleProbs }`: the
 * Monte Carlo posterior predictive of a classifier whose output is logits `[B, C]`:
 * `probs = (1/S) sum_s softmax(f(x; w_s))` over `S` posterior samples `w_s` drawn with
 * `foldIn(key, s)` (through `vmapSamples`, without computing the KL).
 *
 * @example
 * ```ts
 * const { probs, sampleProbs } = predictiveProbs(model, params, xTest, { key: random.key(1), numSamples: 50 });
 * accuracy(probs, yTest);
 * ```
 */
export function predictiveProbs<M extends AnyLayer>(
  model: M,
  params: ParamsOf<M>,
  x: InputOf<M>,
  options: PredictiveProbsOptions,
): PredictiveProbs {
  const S = options?.numSamples ?? 10;
  validate('predictiveProbs', [positiveInt('numSamples', S)]);
  if (options?.key === undefined) {
    throw new MissingKeyError('predictiveProbs', 'Monte Carlo prediction');
  }
  if (!isKey(options.key)) {
    throw new TypeError(
      `predictiveProbs: key must be a PRNG key from random.key(seed), got ${String(options.key)}.`,
    );
  }
  const perPass = options.samplesPerPass ?? DEFAULT_SAMPLES_PER_PASS;
  validate('predictiveProbs', [positiveInt('samplesPerPass', perPass)]);
  const ctx = { ...options.ctx, key: options.key, computeKl: false };
  return tidy(() => {
    const out =
      (options.sampler ?? 'vmap') === 'vmap'
        ? samplesInPasses(model, params, x, ctx, S, perPass)
        : (loopSamples(model, S)(params, x, ctx).out as tf.Tensor);
    if (out.rank !== 3) {
      throw new ShapeError(
        'predictiveProbs',
        `the model must output logits [batch, classes]; got samples of shape ${fmtShape(out.shape)} (expected [${S}, batch, classes]).`,
      );
    }
    const sampleProbs = tf.softmax(out) as tf.Tensor3D;
    return { probs: tf.mean(sampleProbs, 0) as tf.Tensor2D, sampleProbs };
  });
}
