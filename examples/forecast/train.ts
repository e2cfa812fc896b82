/**
 * The training code of the forecast example, importable without running it (the reproducibility
 * test uses it): a Bayesian LSTM reads a window of the (standardised, window-mean-shifted) series
 * and predicts the next value, with a learned-noise Gaussian likelihood. A Bayesian linear
 * autoregressive path over the same window is added to the LSTM's read-out: the LSTM's gates
 * saturate on inputs outside the training range, which squashes the spread of its posterior
 * samples, while the linear path's predictive variance grows with the input's swings, so the
 * epistemic band widens when the series leaves what the model has seen. Browser-safe (no `node:`
 * imports).
 */
import * as tf from '@tensorflow/tfjs-core';
import { layers, optim, random, transforms, tree, type Key } from 'blitz-ts';
import type { Prepared, Series } from './data';

const { serial, parallel, fanOut, fanInSum, flatten, bayesianLinear, bayesianLSTM, lastTimeStep } =
  layers;

/** The example's number of epochs. */
export const FORECAST_EPOCHS = 60;

/** The example's training settings. */
export const FORECAST_SETTINGS = Object.freeze({
  hidden: 16,
  batchSize: 32,
  learningRate: 0.01,
  numSamples: 2,
  predictSamples: 100,
});

/**
 * `lstm -> last step -> linear`, plus a linear autoregressive path over the window: the
 * forecaster for windows `[batch, window, 1]`.
 */
export function forecaster(hidden: number, window: number) {
  return serial(
    {
      split: fanOut(2),
      paths: parallel({
        lstm: serial({
          lstm: bayesianLSTM({ inFeatures: 1, outFeatures: hidden, name: 'lstm' }),
          last: lastTimeStep(),
          out: bayesianLinear({ inFeatures: hidden, outFeatures: 1, name: 'out' }),
        }),
        ar: serial({
          flat: flatten(),
          lin: bayesianLinear({ inFeatures: window, outFeatures: 1, name: 'lin' }),
        }),
      }),
      sum: fanInSum(),
    },
    { name: 'forecaster' },
  );
}

/** The model `forecaster` builds. */
export type Forecaster = ReturnType<typeof forecaster>;

/** The trained parameters: the model's and the likelihood's (learned noise). */
export type ForecastParams = {
  readonly model: layers.ParamsOf<Forecaster>;
  readonly likelihood: transforms.GaussianNoiseParams;
};

/** What `trainForecaster` returns; the caller disposes `params`. */
export interface TrainedForecaster {
  readonly model: Forecaster;
  readonly likelihood: transforms.NoisyLikelihood<transforms.GaussianNoiseParams>;
  readonly params: ForecastParams;
  readonly history: readonly number[];
  readonly seconds: number;
}

/** Trains the forecaster on windows `x [n, window, 1]` and next values `y [n, 1]`. */
export async function trainForecaster(o: {
  key: Key;
  x: tf.Tensor3D;
  y: tf.Tensor2D;
  hidden: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  numSamples: number;
  progress?: boolean;
}): Promise<TrainedForecaster> {
  const [kInit, kFit] = random.split(o.key);
  const model = forecaster(o.hidden, o.x.shape[1]);
  const likelihood = transforms.gaussianNll({ initStd: 0.5 });
  const params = {
    model: model.init(kInit, [-1, o.x.shape[1], 1]).params,
    likelihood: likelihood.init(),
  };
  const t0 = performance.now();
  const r = await transforms.fit({
    loss: transforms.elbo(model, likelihood, { numSamples: o.numSamples }),
    optimizer: optim.adam({ learningRate: o.learningRate }),
    params,
    x: o.x,
    y: o.y,
    key: kFit,
    epochs: o.epochs,
    batchSize: o.batchSize,
    klWeight: 1 / o.x.shape[0],
    progress: o.progress,
  });
  tree.dispose(r.optState);
  return {
    model,
    likelihood,
    params: r.params,
    history: r.history,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** One-step-ahead forecasts (standardised units): predictive mean, epistemic and total std. */
export interface Forecast {
  readonly mean: Float32Array;
  readonly epistemic: Float32Array;
  readonly total: Float32Array;
  /** The learned observation-noise std. */
  readonly noise: number;
}

/** `forecast(trained, x, key, S) -> Forecast`: the posterior predictive over `S` samples. */
export function forecast(
  t: Pick<TrainedForecaster, 'model' | 'likelihood' | 'params'>,
  x: tf.Tensor3D,
  key: Key,
  numSamples = 100,
): Forecast {
  return tf.tidy(() => {
    const p = transforms.predictive(t.model, t.params.model, x, { key, numSamples });
    const noise = t.likelihood.noiseStd(t.params.likelihood);
    return {
      mean: p.mean.dataSync<'float32'>(),
      epistemic: p.std.dataSync<'float32'>(),
      total: transforms.totalStd(p.std, noise).dataSync<'float32'>(),
      noise: noise.arraySync(),
    };
  });
}

/** Forecast figures over a stretch of the test steps (series units). */
export interface StretchFigures {
  readonly rmse: number;
  readonly meanEpistemicStd: number;
  readonly meanTotalStd: number;
  /** The share of observed values inside mean ± 2 total std. */
  readonly coverage2: number;
}

/** What the example reports: the forecasts in series units, and figures before / after the change. */
export interface ForecastFigures {
  /** Predictive mean and total std at each test step (`prepared.test.at`). */
  readonly mean: readonly number[];
  readonly total: readonly number[];
  /** Test steps before the change, `[trainEnd, changeAt)`. */
  readonly before: StretchFigures;
  /** Test steps from the change on, `[changeAt, length)`. */
  readonly after: StretchFigures;
}

const average = (a: readonly number[]): number => a.reduce((u, v) => u + v, 0) / a.length;

/**
 * `forecastFigures(series, prepared, f) -> ForecastFigures`: the standardised forecasts `f` of
 * `prepared.test` back in the series' units, compared with the observed series.
 */
export function forecastFigures(series: Series, prepared: Prepared, f: Forecast): ForecastFigures {
  const { mean: m, std: s, test: te } = prepared;
  const rows = te.at.map((step, r) => ({
    before: step < series.changeAt,
    observed: series.y[step] ?? NaN,
    mean: ((f.mean[r] ?? NaN) + (te.offset[r] ?? NaN)) * s + m,
    epistemic: (f.epistemic[r] ?? NaN) * s,
    total: (f.total[r] ?? NaN) * s,
  }));
  const stretch = (before: boolean): StretchFigures => {
    const part = rows.filter((r) => r.before === before);
    return {
      rmse: Math.sqrt(average(part.map((r) => (r.mean - r.observed) ** 2))),
      meanEpistemicStd: average(part.map((r) => r.epistemic)),
      meanTotalStd: average(part.map((r) => r.total)),
      coverage2: average(part.map((r) => (Math.abs(r.mean - r.observed) <= 2 * r.total ? 1 : 0))),
    };
  };
  return {
    mean: rows.map((r) => r.mean),
    total: rows.map((r) => r.total),
    before: stretch(true),
    after: stretch(false),
  };
}
