/**
 * Schedules: pure functions from the update count (0 at the first update) to a value, with the
 * semantics of optax's schedules. They run in plain JS, on the count kept as a number in the
 * optimizer state, so no data is read back from the device.
 */
import * as E from 'fp-ts/Either';
import { show } from '../errors';
import {
  checkBoolean,
  checkFunction,
  checkKnownKeys,
  checkNumber,
  optionsRecord,
  type NumberRange,
  type Validation,
} from '../validation';
import { validateOptions, type Schedule } from './transform';

const FINITE: NumberRange = {};
const STEPS: NumberRange = { integer: true, min: 1 };
const BEGIN: NumberRange = { integer: true, min: 0 };

/** Options of `exponentialDecay`. */
export interface ExponentialDecayOptions {
  /** The value before and at `transitionBegin`. */
  readonly initValue: number;
  /** The number of steps over which the value is multiplied by `decayRate` (integer >= 1). */
  readonly transitionSteps: number;
  /** The factor per `transitionSteps` steps, > 0 (> 1 grows). */
  readonly decayRate: number;
  /** Decay in discrete jumps every `transitionSteps` steps. Default false. */
  readonly staircase?: boolean;
  /** The count at which decay starts (integer >= 0). Default 0. */
  readonly transitionBegin?: number;
  /** A floor (when `decayRate < 1`) or ceiling (when `decayRate > 1`). Default none. */
  readonly endValue?: number;
}

/** Options of `cosineDecay`. */
export interface CosineDecayOptions {
  /** The value at count 0. */
  readonly initValue: number;
  /** The number of steps of the decay (integer >= 1); the value stays constant afterwards. */
  readonly decaySteps: number;
  /** The final value as a fraction of `initValue`, in [0, 1]. Default 0. */
  readonly alpha?: number;
}

/** Options of `linearSchedule`. */
export interface LinearScheduleOptions {
  /** The value up to `transitionBegin`. */
  readonly initValue: number;
  /** The value from `transitionBegin + transitionSteps` on. */
  readonly endValue: number;
  /** The length of the ramp (integer >= 1). */
  readonly transitionSteps: number;
  /** The count at which the ramp starts (integer >= 0). Default 0. */
  readonly transitionBegin?: number;
}

/** Options of `warmupCosineDecay`. */
export interface WarmupCosineDecayOptions {
  /** The value at count 0. */
  readonly initValue: number;
  /** The value at the end of the warm-up. */
  readonly peakValue: number;
  /** The length of the linear warm-up (integer >= 0). */
  readonly warmupSteps: number;
  /** The total length, warm-up INCLUDED, as in optax (integer > warmupSteps). */
  readonly decaySteps: number;
  /** The value at and after `decaySteps`. Default 0. */
  readonly endValue?: number;
}

/**
 * `constantSchedule(value) -> Schedule`: `count => value`.
 *
 * @example
 * ```ts
 * constantSchedule(0.1)(1000); // 0.1
 * ```
 */
export function constantSchedule(value: number): Schedule {
  const cfg = validateOptions('constantSchedule', { value: checkNumber('value', value, FINITE) });
  return () => cfg.value;
}

/**
 * `exponentialDecay({ initValue, transitionSteps, decayRate, staircase = false,
 * transitionBegin = 0, endValue? }) -> Schedule`: optax `exponential_decay`. With
 * `c = count - transitionBegin`: `initValue` while `c <= 0`, else
 * `initValue * decayRate ^ (c / transitionSteps)` (the exponent floored when `staircase`),
 * clipped at `endValue` (a floor when `decayRate < 1`, a ceiling when `decayRate > 1`).
 *
 * @example
 * ```ts
 * const lr = exponentialDecay({ initValue: 1e-2, transitionSteps: 1000, decayRate: 0.5 });
 * lr(2000); // 2.5e-3
 * ```
 */
export function exponentialDecay(options: ExponentialDecayOptions): Schedule {
  const o = optionsRecord(options);
  const cfg = validateOptions('exponentialDecay', {
    known: checkKnownKeys(options, [
      'initValue',
      'transitionSteps',
      'decayRate',
      'staircase',
      'transitionBegin',
      'endValue',
    ]),
    initValue: checkNumber('initValue', o.initValue, FINITE),
    transitionSteps: checkNumber('transitionSteps', o.transitionSteps, STEPS),
    decayRate: checkNumber('decayRate', o.decayRate, { min: 0, minOpen: true }),
    staircase: checkBoolean('staircase', o.staircase ?? false),
    transitionBegin: checkNumber('transitionBegin', o.transitionBegin ?? 0, BEGIN),
    endValue:
      o.endValue === undefined
        ? E.right(undefined)
        : (checkNumber('endValue', o.endValue, FINITE) as Validation<number | undefined>),
  });
  const { initValue, transitionSteps, decayRate, staircase, transitionBegin, endValue } = cfg;
  return (count) => {
    const c = count - transitionBegin;
    const p = staircase ? Math.floor(c / transitionSteps) : c / transitionSteps;
    const v = c <= 0 ? initValue : initValue * decayRate ** p;
    if (endValue === undefined) return v;
    return decayRate < 1 ? Math.max(v, endValue) : Math.min(v, endValue);
  };
}

/** The unvalidated optax cosine decay (alpha may be any number). */
const cosine =
  (initValue: number, decaySteps: number, alpha: number): Schedule =>
  (count) => {
    const c = Math.min(count, decaySteps);
    const decay = 0.5 * (1 + Math.cos((Math.PI * c) / decaySteps));
    return initValue * ((1 - alpha) * decay + alpha);
  };

/** The unvalidated optax linear schedule. */
const linear =
  (initValue: number, endValue: number, transitionSteps: number, transitionBegin: number) =>
  (count: number): number => {
    if (transitionSteps <= 0) return initValue; // optax: a constant schedule
    const c = Math.min(Math.max(count - transitionBegin, 0), transitionSteps);
    return (initValue - endValue) * (1 - c / transitionSteps) + endValue;
  };

/** The unvalidated optax join_schedules. */
const join =
  (schedules: readonly Schedule[], boundaries: readonly number[]): Schedule =>
  (count) => {
    let out = (schedules[0] as Schedule)(count);
    boundaries.forEach((b, i) => {
      if (count >= b) out = (schedules[i + 1] as Schedule)(count - b);
    });
    return out;
  };

/**
 * `cosineDecay({ initValue, decaySteps, alpha = 0 }) -> Schedule`: optax `cosine_decay_schedule`:
 * `initValue * ((1 - alpha) * 0.5 * (1 + cos(pi * min(count, decaySteps) / decaySteps)) + alpha)`.
 *
 * @example
 * ```ts
 * const lr = cosineDecay({ initValue: 0.1, decaySteps: 100 });
 * lr(50); // 0.05
 * ```
 */
export function cosineDecay(options: CosineDecayOptions): Schedule {
  const o = optionsRecord(options);
  const cfg = validateOptions('cosineDecay', {
    known: checkKnownKeys(options, ['initValue', 'decaySteps', 'alpha']),
    initValue: checkNumber('initValue', o.initValue, FINITE),
    decaySteps: checkNumber('decaySteps', o.decaySteps, STEPS),
    alpha: checkNumber('alpha', o.alpha ?? 0, { min: 0, max: 1 }),
  });
  return cosine(cfg.initValue, cfg.decaySteps, cfg.alpha);
}

/**
 * `linearSchedule({ initValue, endValue, transitionSteps, transitionBegin = 0 }) -> Schedule`:
 * optax `linear_schedule`: `initValue` until `transitionBegin`, then linear to `endValue` over
 * `transitionSteps` steps, then `endValue`.
 *
 * @example
 * ```ts
 * const lr = linearSchedule({ initValue: 0, endValue: 1, transitionSteps: 10 });
 * lr(5); // 0.5
 * ```
 */
export function linearSchedule(options: LinearScheduleOptions): Schedule {
  const o = optionsRecord(options);
  const cfg = validateOptions('linearSchedule', {
    known: checkKnownKeys(options, ['initValue', 'endValue', 'transitionSteps', 'transitionBegin']),
    initValue: checkNumber('initValue', o.initValue, FINITE),
    endValue: checkNumber('endValue', o.endValue, FINITE),
    transitionSteps: checkNumber('transitionSteps', o.transitionSteps, STEPS),
    transitionBegin: checkNumber('transitionBegin', o.transitionBegin ?? 0, BEGIN),
  });
  return linear(cfg.initValue, cfg.endValue, cfg.transitionSteps, cfg.transitionBegin);
}

/**
 * `warmupCosineDecay({ initValue, peakValue, warmupSteps, decaySteps, endValue = 0 }) -> Schedule`:
 * optax `warmup_cosine_decay_schedule`: linear from `initValue` to `peakValue` over `warmupSteps`,
 * then cosine decay to `endValue` at `decaySteps` (which INCLUDES the warm-up), constant after.
 *
 * @example
 * ```ts
 * const lr = warmupCosineDecay({ initValue: 0, peakValue: 1, warmupSteps: 10, decaySteps: 110 });
 * [lr(0), lr(5), lr(10), lr(60), lr(110)]; // [0, 0.5, 1, 0.5, 0]
 * ```
 */
export function warmupCosineDecay(options: WarmupCosineDecayOptions): Schedule {
  const o = optionsRecord(options);
  const warmup = o.warmupSteps;
  const cfg = validateOptions('warmupCosineDecay', {
    known: checkKnownKeys(options, [
      'initValue',
      'peakValue',
      'warmupSteps',
      'decaySteps',
      'endValue',
    ]),
    initValue: checkNumber('initValue', o.initValue, FINITE),
    peakValue: checkNumber('peakValue', o.peakValue, FINITE),
    warmupSteps: checkNumber('warmupSteps', warmup, BEGIN),
    decaySteps: checkNumber('decaySteps', o.decaySteps, {
      integer: true,
      min: typeof warmup === 'number' && Number.isInteger(warmup) && warmup >= 0 ? warmup : 0,
      minOpen: true,
    }),
    endValue: checkNumber('endValue', o.endValue ?? 0, FINITE),
  });
  const { initValue, peakValue, warmupSteps, decaySteps, endValue } = cfg;
  const alpha = peakValue === 0 ? 0 : endValue / peakValue;
  return join(
    [
      linear(initValue, peakValue, warmupSteps, 0),
      cosine(peakValue, decaySteps - warmupSteps, alpha),
    ],
    [warmupSteps],
  );
}

/**
 * `joinSchedules(schedules, boundaries) -> Schedule`: optax `join_schedules`: `schedules[0]`
 * before `boundaries[0]`, then `schedules[i + 1](count - boundaries[i])` from `boundaries[i]` on
 * (each schedule restarts its count at its boundary). Needs one boundary fewer than schedules,
 * non-decreasing integers >= 0.
 *
 * @example
 * ```ts
 * const lr = joinSchedules(
 *   [constantSchedule(0.1), cosineDecay({ initValue: 0.1, decaySteps: 90 })],
 *   [10],
 * );
 * lr(55); // 0.05
 * ```
 */
export function joinSchedules(
  schedules: readonly Schedule[],
  boundaries: readonly number[],
): Schedule {
  const ss: readonly unknown[] = Array.isArray(schedules) ? schedules : [];
  const bs: readonly unknown[] = Array.isArray(boundaries) ? boundaries : [];
  const checks: Record<string, Validation<unknown>> = {
    schedules:
      Array.isArray(schedules) && schedules.length >= 1
        ? E.right(schedules)
        : E.left([`schedules must be a non-empty array of schedules, got ${show(schedules)}`]),
    boundaries:
      Array.isArray(boundaries) && boundaries.length === Math.max(ss.length - 1, 0)
        ? E.right(boundaries)
        : E.left([
            `boundaries must be an array of ${Math.max(ss.length - 1, 0)} numbers ` +
              `(one fewer than the schedules), got ` +
              (Array.isArray(boundaries) ? `${boundaries.length}` : show(boundaries)),
          ]),
  };
  ss.forEach((s, i) => {
    checks[`schedules[${i}]`] = checkFunction(`schedules[${i}]`, s);
  });
  bs.forEach((b, i) => {
    const prev = bs[i - 1];
    const min = i > 0 && typeof prev === 'number' && Number.isInteger(prev) && prev >= 0 ? prev : 0;
    checks[`boundaries[${i}]`] = checkNumber(`boundaries[${i}]`, b, { integer: true, min });
  });
  validateOptions('joinSchedules', checks);
  return join(schedules, boundaries);
}
