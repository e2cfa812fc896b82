/**
 * The two experiments of the main job (`npm run demo`), as functions that return the figures the
 * demo prints and plots: main.ts prints them, test/examples/regression.test.ts checks them.
 */
import * as tf from '@tensorflow/tfjs-core';
import { random, transforms, tree, type Key } from 'blitz-ts';
import type { RegressionSplit } from './data';
import { TOY_SETTINGS, toyGrid, toyProblem } from './toy';
import { predict, trainRegression } from './train';

/** The demo's number of epochs (both experiments). */
export const DEMO_EPOCHS = 300;

/** How the demo trains on the diabetes data. */
export const DIABETES_SETTINGS = Object.freeze({
  testShare: 0.2,
  hidden: [32] as const,
  batchSize: 64,
  learningRate: 0.01,
  numSamples: 2,
});

/** The keys of a demo run: one half of the seed's key for the toy curve, one for diabetes. */
export function demoKeys(key: Key) {
  const [kToy, kDiab] = random.split(key);
  const [toyData, toyTrain, toyPredict] = random.split(kToy, 3);
  const [diabetesSplit, diabetesTrain, diabetesPredict] = random.split(kDiab, 3);
  return {
    toy: { data: toyData, train: toyTrain, predict: toyPredict },
    diabetes: { split: diabetesSplit, train: diabetesTrain, predict: diabetesPredict },
  };
}

/** The keys `demoKeys` derives. */
export type DemoKeys = ReturnType<typeof demoKeys>;

/** Run options shared by both experiments. */
export interface RunOptions {
  readonly epochs: number;
  readonly progress?: boolean;
}

/** Training summary of one experiment. */
export interface TrainingSummary {
  readonly epochs: number;
  readonly seconds: number;
  readonly finalLoss: number;
}

const mean = (a: readonly number[]): number => a.reduce((u, v) => u + v, 0) / a.length;

const summary = (t: { history: readonly number[]; seconds: number }): TrainingSummary => ({
  epochs: t.history.length,
  seconds: t.seconds,
  finalLoss: t.history.at(-1) ?? NaN,
});

/** The toy-curve experiment's figures, in curve units. */
export interface ToyResult {
  readonly training: TrainingSummary;
  /** The learned observation-noise std (the curve's true one is `TOY_NOISE_STD`). */
  readonly noiseStd: number;
  /** Mean epistemic std over the grid points inside the data, x in [0, 0.5]. */
  readonly epistemicInside: number;
  /** Mean epistemic std over the grid points far outside the data, x > 0.8. */
  readonly epistemicOutside: number;
  /** The plot: the grid, the predictive mean and total std on it, and the training points. */
  readonly grid: readonly number[];
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly points: readonly { x: number; y: number }[];
}

/**
 * `toyExperiment(keys, options) -> ToyResult`: trains the Bayesian MLP on the toy curve (x in
 * [0, 0.5]) and predicts on x in [-0.2, 1.2].
 */
export async function toyExperiment(keys: DemoKeys['toy'], o: RunOptions): Promise<ToyResult> {
  const toy = toyProblem(keys.data, TOY_SETTINGS.points);
  // Standardised inputs and targets (the network sees unit scales); reported in curve units.
  const { xMean: xm, xStd: xs, yMean: ym, yStd: ys } = toy;
  const x = tf.tensor2d(toy.x, [toy.x.length, 1]);
  const y = tf.tensor2d(toy.y, [toy.y.length, 1]);
  const t = await trainRegression({
    key: keys.train,
    x,
    y,
    hidden: TOY_SETTINGS.hidden,
    epochs: o.epochs,
    batchSize: TOY_SETTINGS.batchSize,
    learningRate: TOY_SETTINGS.learningRate,
    numSamples: TOY_SETTINGS.numSamples,
    progress: o.progress,
  });
  const gx = toyGrid();
  const grid = tf.tensor2d(
    gx.map((v) => (v - xm) / xs),
    [gx.length, 1],
  );
  const p = predict(t, grid, keys.predict);
  const m = Array.from(p.mean.dataSync(), (v) => v * ys + ym);
  const s = Array.from(p.total.dataSync(), (v) => v * ys);
  const e = Array.from(p.epistemic.dataSync(), (v) => v * ys);
  const where = (keep: (x: number) => boolean) => e.filter((_, i) => keep(gx[i] ?? NaN));
  const result: ToyResult = {
    training: summary(t),
    noiseStd: p.noise * ys,
    epistemicInside: mean(where((v) => v >= 0 && v <= 0.5)),
    epistemicOutside: mean(where((v) => v > 0.8)),
    grid: gx,
    mean: m,
    std: s,
    points: toy.raw.x.map((xv, i) => ({ x: xv, y: toy.raw.y[i] ?? NaN })),
  };
  tf.dispose([x, y, grid, p.mean, p.epistemic, p.total]);
  tree.dispose(t.params);
  return result;
}

/** The diabetes experiment's test figures, in the target's units. */
export interface DiabetesResult {
  readonly training: TrainingSummary;
  readonly rmse: number;
  /** The RMSE of predicting the training mean for every patient. */
  readonly baselineRmse: number;
  /** Gaussian NLL of the targets under the predictive, nats per patient. */
  readonly nll: number;
  readonly meanEpistemicStd: number;
  readonly meanTotalStd: number;
  readonly noiseStd: number;
  /** Coverage of mean ± 2 std and mean ± 1 std (total std). */
  readonly coverage2: transforms.Coverage;
  readonly coverage1: transforms.Coverage;
  /** The plot: the test patients sorted by predicted mean, with their std and true target. */
  readonly sorted: {
    readonly mean: readonly number[];
    readonly std: readonly number[];
    readonly target: readonly number[];
  };
}

/** `diabetesExperiment(data, keys, options) -> DiabetesResult`: train, predict the test part. */
export async function diabetesExperiment(
  d: RegressionSplit,
  keys: Omit<DemoKeys['diabetes'], 'split'>,
  o: RunOptions,
): Promise<DiabetesResult> {
  const x = tf.tensor2d(d.xTrain);
  const y = tf.tensor2d(d.yTrain, [d.yTrain.length, 1]);
  const xt = tf.tensor2d(d.xTest);
  const yt = tf.tensor2d(d.yTest, [d.yTest.length, 1]);
  const t = await trainRegression({
    key: keys.train,
    x,
    y,
    hidden: DIABETES_SETTINGS.hidden,
    epochs: o.epochs,
    batchSize: DIABETES_SETTINGS.batchSize,
    learningRate: DIABETES_SETTINGS.learningRate,
    numSamples: DIABETES_SETTINGS.numSamples,
    progress: o.progress,
  });
  const p = predict(t, xt, keys.predict);
  const toUnits = (u: tf.Tensor) => tf.tidy(() => tf.add(tf.mul(u, d.yStd), d.yMean));
  const [mU, yU, sU, eU] = [
    toUnits(p.mean),
    toUnits(yt),
    tf.mul(p.total, d.yStd),
    tf.mul(p.epistemic, d.yStd),
  ];
  const meanOf = (u: tf.Tensor) => tf.tidy(() => tf.mean(u).dataSync()[0] ?? NaN);
  // Test patients sorted by predicted mean, for the plot.
  const mArr = Array.from(mU.dataSync());
  const sArr = Array.from(sU.dataSync());
  const yArr = Array.from(yU.dataSync());
  const order = mArr.map((_, i) => i).sort((a, b) => (mArr[a] ?? NaN) - (mArr[b] ?? NaN));
  const result: DiabetesResult = {
    training: summary(t),
    rmse: transforms.rmse(mU, yU),
    baselineRmse: Math.sqrt(d.yTest.reduce((a, v) => a + v * v, 0) / d.yTest.length) * d.yStd,
    nll: transforms.gaussianPredictiveNll(mU, sU, yU),
    meanEpistemicStd: meanOf(eU),
    meanTotalStd: meanOf(sU),
    noiseStd: p.noise * d.yStd,
    coverage2: transforms.coverage(mU, sU, yU, 2),
    coverage1: transforms.coverage(mU, sU, yU, 1),
    sorted: {
      mean: order.map((i) => mArr[i] ?? NaN),
      std: order.map((i) => sArr[i] ?? NaN),
      target: order.map((i) => yArr[i] ?? NaN),
    },
  };
  tf.dispose([x, y, xt, yt, p.mean, p.epistemic, p.total, mU, yU, sU, eU]);
  tree.dispose(t.params);
  return result;
}
