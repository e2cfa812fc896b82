/**
 * The toy curve of the BBB paper and the settings the regression example trains on it with.
 * Browser-safe (no `node:` imports): the browser demo (examples/browser) and the backend
 * benchmark use it as well as examples/regression/main.ts.
 */
import { random, type Key } from 'blitz-ts';

/** The standard deviation of the toy curve's noise. */
export const TOY_NOISE_STD = 0.02;

/**
 * `toyCurve(key, n) -> { x, y }`: the curve of Blundell et al. (2015), section 5.2:
 * `y = x + 0.3 sin(2 pi (x + e)) + 0.3 sin(4 pi (x + e)) + e`, `e ~ N(0, 0.02^2)`, with `x`
 * uniform on [0, 0.5] (the paper's training range; we read its `N(0, 0.02)` as a standard
 * deviation of 0.02, which matches its figure).
 */
export function toyCurve(key: Key, n: number): { x: number[]; y: number[] } {
  const [kx, ke] = random.split(key);
  const u = random.uniformArray(kx, n, 0, 0.5);
  const e = random.normalArray(ke, n);
  const sd = TOY_NOISE_STD;
  const x = Array.from(u);
  const y = x.map((xi, i) => {
    const eps = (e[i] ?? NaN) * sd;
    return (
      xi + 0.3 * Math.sin(2 * Math.PI * (xi + eps)) + 0.3 * Math.sin(4 * Math.PI * (xi + eps)) + eps
    );
  });
  return { x, y };
}

/** How the regression example trains on the toy curve (examples/regression/main.ts, step 1). */
export const TOY_SETTINGS = Object.freeze({
  points: 512,
  hidden: Object.freeze([64]),
  batchSize: 128,
  learningRate: 0.01,
  numSamples: 2,
});

/** The toy curve standardised for the network, with the scalers to go back to curve units. */
export interface ToyProblem {
  /** The raw points (curve units). */
  readonly raw: { readonly x: number[]; readonly y: number[] };
  /** Standardised inputs and targets, what the network sees. */
  readonly x: number[];
  readonly y: number[];
  readonly xMean: number;
  readonly xStd: number;
  readonly yMean: number;
  readonly yStd: number;
}

/**
 * `toyProblem(key, n) -> ToyProblem`: `toyCurve(key, n)` with inputs standardised by the exact
 * moments of U(0, 0.5) and targets by their sample mean and standard deviation.
 */
export function toyProblem(key: Key, n: number = TOY_SETTINGS.points): ToyProblem {
  const raw = toyCurve(key, n);
  const xMean = 0.25;
  const xStd = Math.sqrt(1 / 48); // std of U(0, 0.5)
  const yMean = raw.y.reduce((a, v) => a + v, 0) / raw.y.length;
  const yStd = Math.sqrt(raw.y.reduce((a, v) => a + (v - yMean) ** 2, 0) / raw.y.length);
  return {
    raw,
    x: raw.x.map((v) => (v - xMean) / xStd),
    y: raw.y.map((v) => (v - yMean) / yStd),
    xMean,
    xStd,
    yMean,
    yStd,
  };
}

/** The prediction grid of the example's plot: x from -0.2 to 1.2 in steps of 0.01 (curve units). */
export const toyGrid = (): number[] => Array.from({ length: 141 }, (_, i) => -0.2 + i * 0.01);
