/**
 * The synthetic series of the forecast example: a noisy seasonal signal drawn from a key, with a
 * change the model never sees in training (a level shift and a larger amplitude), and the sliding
 * windows the model reads. Browser-safe (no `node:` imports).
 */
import { random, type Key } from 'blitz-ts';

/** The series' settings (one place, so that the example, its test and the plot agree). */
export const SERIES = Object.freeze({
  /** Time steps in all (months). */
  length: 360,
  /** Steps used for training: `[0, trainEnd)`. */
  trainEnd: 240,
  /** The change happens here: after it the level and amplitude differ from training. */
  changeAt: 288,
  /** Period of the main seasonal component (a year of months). */
  period: 12,
  level: 0,
  amplitude: 1,
  /** Level shift and amplitude factor after the change. */
  levelShift: 1.5,
  amplitudeFactor: 1.6,
  /** Standard deviation of the observation noise. */
  noiseStd: 0.15,
  /** Steps the model reads to forecast the next one. */
  window: 12,
});

/** The series and where it changes. */
export interface Series {
  readonly t: readonly number[];
  readonly y: readonly number[];
  readonly trainEnd: number;
  readonly changeAt: number;
}

/**
 * `seasonalSeries(key) -> Series`: `level + amplitude * (sin(2 pi t / P) + 0.4 sin(4 pi t / P))`
 * plus Gaussian noise from `key`; from `changeAt` on, the level is shifted and the amplitude
 * multiplied.
 */
export function seasonalSeries(key: Key, s = SERIES): Series {
  const noise = random.normalArray(key, s.length);
  const t = Array.from({ length: s.length }, (_, i) => i);
  const y = t.map((i) => {
    const after = i >= s.changeAt;
    const level = s.level + (after ? s.levelShift : 0);
    const amp = s.amplitude * (after ? s.amplitudeFactor : 1);
    const phase = (2 * Math.PI * i) / s.period;
    return (
      level + amp * (Math.sin(phase) + 0.4 * Math.sin(2 * phase)) + s.noiseStd * (noise[i] ?? NaN)
    );
  });
  return { t, y, trainEnd: s.trainEnd, changeAt: s.changeAt };
}

/** Sliding windows, each shifted by its own mean: inputs `[n, window, 1]` (flat), targets `[n]`. */
export interface Windows {
  /** Flat `[n * window]` inputs, each window minus its mean. */
  readonly x: Float32Array;
  /** The next value minus the window's mean. */
  readonly y: Float32Array;
  /** Each window's mean: add it back to a prediction. */
  readonly offset: Float32Array;
  /** The time step each target belongs to. */
  readonly at: readonly number[];
  readonly n: number;
  readonly window: number;
}

/**
 * `windows(values, from, to, window) -> Windows`: for each target step `i` in `[from, to)` with
 * `i >= window`, the `window` values before it and the value at `i` (one-step-ahead forecasting
 * from observed history), both minus the window's mean (per-window mean scaling, as DeepAR-style
 * forecasters do: a level shift then moves the offset, not the network's input range).
 */
export function windows(
  values: readonly number[],
  from: number,
  to: number,
  window: number,
): Windows {
  const at: number[] = [];
  for (let i = Math.max(from, window); i < to; i++) at.push(i);
  const x = new Float32Array(at.length * window);
  const y = new Float32Array(at.length);
  const offset = new Float32Array(at.length);
  const value = (i: number): number => values[i] ?? NaN;
  at.forEach((i, r) => {
    let m = 0;
    for (let k = 0; k < window; k++) m += value(i - window + k) / window;
    for (let k = 0; k < window; k++) x[r * window + k] = value(i - window + k) - m;
    y[r] = value(i) - m;
    offset[r] = m;
  });
  return { x, y, offset, at, n: at.length, window };
}

/** The example's data: the series standardised with its training part, and the windows. */
export interface Prepared {
  /** Mean and standard deviation of the training part (to report in the series' units). */
  readonly mean: number;
  readonly std: number;
  readonly train: Windows;
  /** Windows whose targets lie after the training part. */
  readonly test: Windows;
}

/** `prepare(series) -> Prepared`: standardise with the training part's statistics, then window. */
export function prepare(series: Series, window = SERIES.window): Prepared {
  const train = series.y.slice(0, series.trainEnd);
  const mean = train.reduce((a, v) => a + v, 0) / train.length;
  const std = Math.sqrt(train.reduce((a, v) => a + (v - mean) ** 2, 0) / train.length);
  const z = series.y.map((v) => (v - mean) / std);
  return {
    mean,
    std,
    train: windows(z, 0, series.trainEnd, window),
    test: windows(z, series.trainEnd, series.y.length, window),
  };
}
