/**
 * KL weights: how much of the complexity cost (the KL term returned by `apply`) enters the loss
 * of one minibatch. All are plain JS numbers; multiply the KL by them when building the ELBO.
 */
import { checkKnownKeys, checkNumber, optionsRecord, type NumberRange } from '../validation';
import { validateOptions, type Schedule } from './transform';

const NON_NEGATIVE: NumberRange = { min: 0 };

/**
 * `inverseN(numExamples) -> number`: `1 / numExamples`, the weight of the KL term in the
 * per-example ELBO `mean(nll) + kl / numExamples` (the KL is paid once per pass over the data).
 *
 * @example
 * ```ts
 * const loss = tf.add(nllMean, tf.mul(kl, inverseN(trainSize)));
 * ```
 */
export function inverseN(numExamples: number): number {
  const cfg = validateOptions('inverseN', {
    numExamples: checkNumber('numExamples', numExamples, { integer: true, min: 1 }),
  });
  return 1 / cfg.numExamples;
}

/**
 * `minibatchWeight(batchIndex, numBatches) -> number`: the KL weight `pi_i` of minibatch `i` of
 * `M` in Blundell et al. (2015), eq. 9, and blitz's `minibatch_weight`: `2^(M-i-1) / (2^M - 1)`.
 * Early batches carry most of the KL, late ones mostly the data; the weights sum to 1 over an
 * epoch.
 *
 * `pi_i` weighs the KL against the SUMMED log-likelihood of the batch (`F_i = pi_i KL - sum log
 * p`). This library's losses use the MEAN NLL of the batch (`mean nll + klWeight * KL`), so the
 * KL weight to pass is `pi_i / batchSize`, with the size of THIS batch (the last one may be
 * smaller): in `fit`, `klWeight: ({ batchIndex, numBatches, batchSize }) =>
 * minibatchWeight(batchIndex, numBatches) / batchSize`. Passing `pi_i` itself would weigh the KL
 * `batchSize` times too much.
 *
 * Computed in log space, `log w = -(i+1) log 2 - log(1 - 2^-M)`, i.e. `w = 2^-(i+1) / (1 - 2^-M)`,
 * so it never forms `2^M`: the naive formula is `Infinity / Infinity = NaN` for `M > 1023`,
 * while this stays finite (about 1/2, 1/4, ... for the first batches; late batches underflow to
 * exactly 0, their true value being below the smallest double).
 *
 * @example
 * ```ts
 * minibatchWeight(0, 3); // 4/7
 * minibatchWeight(0, 5000); // 0.5
 * await fit({ ...options, klWeight: ({ batchIndex, numBatches, batchSize }) =>
 *   minibatchWeight(batchIndex, numBatches) / batchSize });
 * ```
 */
export function minibatchWeight(batchIndex: number, numBatches: number): number {
  const m = typeof numBatches === 'number' && Number.isInteger(numBatches) ? numBatches : Infinity;
  const cfg = validateOptions('minibatchWeight', {
    numBatches: checkNumber('numBatches', numBatches, { integer: true, min: 1 }),
    batchIndex: checkNumber(
      'batchIndex',
      batchIndex,
      Number.isFinite(m) && m >= 1
        ? { integer: true, min: 0, max: m, maxOpen: true }
        : { integer: true, min: 0 },
    ),
  });
  // 2^-(i+1) is exact (down to 2^-1074, then 0); 1 - 2^-M is in [1/2, 1) and exact for M <= 53.
  return 2 ** -(cfg.batchIndex + 1) / (1 - 2 ** -cfg.numBatches);
}

/** Options of `linearAnnealing`. */
export interface LinearAnnealingOptions {
  /** The number of steps of the ramp (integer >= 1). */
  readonly steps: number;
  /** The weight at count 0 (>= 0). Default 0. */
  readonly start?: number;
  /** The weight from count `steps` on (>= 0). Default 1. */
  readonly end?: number;
}

/** Options of `cyclicalAnnealing`. */
export interface CyclicalAnnealingOptions {
  /** The length of one cycle in steps (integer >= 1). */
  readonly cycleLength: number;
  /** The fraction of each cycle spent ramping, in (0, 1]. Default 0.5. */
  readonly ratio?: number;
  /** The weight at the start of each cycle (>= 0). Default 0. */
  readonly start?: number;
  /** The weight at the end of each ramp and until the cycle ends (>= 0). Default 1. */
  readonly end?: number;
}

const annealChecks = (o: Readonly<Record<string, unknown>>) => ({
  start: checkNumber('start', o.start ?? 0, NON_NEGATIVE),
  end: checkNumber('end', o.end ?? 1, NON_NEGATIVE),
});

/**
 * `linearAnnealing({ steps, start = 0, end = 1 }) -> Schedule`: KL warm-up,
 * `count => start + (end - start) * min(count / steps, 1)` (count 0 at the first update).
 *
 * @example
 * ```ts
 * const klWeight = linearAnnealing({ steps: 1000 });
 * klWeight(250); // 0.25
 * ```
 */
export function linearAnnealing(options: LinearAnnealingOptions): Schedule {
  const o = optionsRecord(options);
  const { steps, start, end } = validateOptions('linearAnnealing', {
    known: checkKnownKeys(options, ['steps', 'start', 'end']),
    steps: checkNumber('steps', o.steps, { integer: true, min: 1 }),
    ...annealChecks(o),
  });
  return (count) => start + (end - start) * Math.min(Math.max(count, 0) / steps, 1);
}

/**
 * `cyclicalAnnealing({ cycleLength, ratio = 0.5, start = 0, end = 1 }) -> Schedule`: the cyclical
 * KL annealing of Fu et al. (2019): the count is split in cycles of `cycleLength` steps; within
 * each, the weight ramps linearly from `start` over `ratio * cycleLength` steps and then stays at
 * `end`: `start + (end - start) * min((count mod cycleLength) / (ratio * cycleLength), 1)`.
 *
 * @example
 * ```ts
 * const klWeight = cyclicalAnnealing({ cycleLength: 10 });
 * [0, 1, 5, 9, 10].map(klWeight); // [0, 0.2, 1, 1, 0]
 * ```
 */
export function cyclicalAnnealing(options: CyclicalAnnealingOptions): Schedule {
  const o = optionsRecord(options);
  const { cycleLength, ratio, start, end } = validateOptions('cyclicalAnnealing', {
    known: checkKnownKeys(options, ['cycleLength', 'ratio', 'start', 'end']),
    cycleLength: checkNumber('cycleLength', o.cycleLength, { integer: true, min: 1 }),
    ratio: checkNumber('ratio', o.ratio ?? 0.5, { min: 0, max: 1, minOpen: true }),
    ...annealChecks(o),
  });
  const ramp = ratio * cycleLength;
  return (count) => {
    const pos = ((count % cycleLength) + cycleLength) % cycleLength;
    return start + (end - start) * Math.min(pos / ramp, 1);
  };
}
