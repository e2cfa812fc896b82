/**
 * The training code of the regression example, importable without running the example (the
 * reproducibility test uses it). Browser-safe (no `node:` imports): the browser demo
 * (examples/browser) trains with it too.
 */
import * as tf from '@tensorflow/tfjs-core';
import { layers, optim, random, transforms, tree, type Key } from 'blitz-ts';

const { serial, bayesianLinear, relu } = layers;

/** A Bayesian MLP `in -> hidden -> hidden? -> 1` with the reference's defaults. */
export function bayesianMlp(inFeatures: number, hidden: readonly number[]) {
  // as many hidden layers as `hidden` has widths: hidden1, act1, hidden2, act2, ..., out
  const parts: Record<string, layers.BayesianLinearLayer | layers.Layer<layers.EmptyParams>> = {};
  let width = inFeatures;
  hidden.forEach((h, i) => {
    parts[`hidden${i + 1}`] = bayesianLinear({
      inFeatures: width,
      outFeatures: h,
      name: `hidden${i + 1}`,
    });
    parts[`act${i + 1}`] = relu();
    width = h;
  });
  parts.out = bayesianLinear({ inFeatures: width, outFeatures: 1, name: 'out' });
  return serial(parts, { name: 'mlp' });
}

/** The model `bayesianMlp` builds. */
export type Mlp = ReturnType<typeof bayesianMlp>;

/** The parameters `trainRegression` trains: the model's and the likelihood's (learned noise). */
export type RegressionParams = {
  readonly model: layers.ParamsOf<Mlp>;
  readonly likelihood: transforms.GaussianNoiseParams;
};

/** What `trainRegression` returns: trained params (caller disposes) and the loss history. */
export interface Trained {
  readonly model: Mlp;
  readonly params: RegressionParams;
  readonly likelihood: transforms.NoisyLikelihood<transforms.GaussianNoiseParams>;
  readonly history: readonly number[];
  readonly seconds: number;
}

/** Trains a Bayesian MLP on `(x, y)` with the learned-noise Gaussian likelihood. */
export async function trainRegression(o: {
  key: Key;
  x: tf.Tensor2D;
  y: tf.Tensor2D;
  hidden: readonly number[];
  epochs: number;
  batchSize: number;
  learningRate: number;
  numSamples: number;
  progress?: boolean;
  /**
   * Called after each epoch with fit's epoch info (its `params` are still fit's: read, do not
   * dispose) and the model and likelihood being trained; return `false` to stop early.
   */
  onEpoch?: (
    info: transforms.EpochInfo<RegressionParams>,
    trained: Pick<Trained, 'model' | 'likelihood'>,
  ) => void | boolean | Promise<void | boolean>;
}): Promise<Trained> {
  const [kInit, kFit] = random.split(o.key);
  const model = bayesianMlp(o.x.shape[1], o.hidden);
  const likelihood = transforms.gaussianNll({ initStd: 0.5 });
  const params = {
    model: model.init(kInit, [-1, o.x.shape[1]]).params,
    likelihood: likelihood.init(),
  };
  const onEpoch = o.onEpoch;
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
    onEpoch:
      onEpoch &&
      ((info: transforms.EpochInfo<RegressionParams>) => onEpoch(info, { model, likelihood })),
  });
  tree.dispose(r.optState);
  return {
    model,
    params: r.params,
    likelihood,
    history: r.history,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** Predictive statistics in standardised units: mean, epistemic and total std. */
export function predict(
  t: Pick<Trained, 'model' | 'likelihood' | 'params'>,
  x: tf.Tensor2D,
  key: Key,
  numSamples = 200,
) {
  return tf.tidy(() => {
    const { mean, std } = transforms.predictive(t.model, t.params.model, x, { key, numSamples });
    const noise = t.likelihood.noiseStd(t.params.likelihood);
    return {
      mean,
      epistemic: std,
      total: transforms.totalStd(std, noise),
      noise: noise.arraySync(),
    };
  });
}
