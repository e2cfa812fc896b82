/**
 * The training code of the sequence-classification example, importable without running it (the
 * reproducibility test uses it): a Bayesian embedding, a Bayesian LSTM or GRU, the last hidden
 * state and a Bayesian linear read-out, trained with the ELBO and the categorical likelihood.
 * Browser-safe (no `node:` imports).
 */
import * as tf from '@tensorflow/tfjs-core';
import { layers, optim, random, transforms, tree, type Key } from 'blitz-ts';
import { TASK, type TokenTask } from './data';

const { serial, bayesianEmbedding, bayesianLSTM, bayesianGRU, lastTimeStep, bayesianLinear } =
  layers;

/** The example's settings. */
export const CLASSIFY_SETTINGS = Object.freeze({
  epochs: 15,
  embeddingDim: 8,
  hidden: 16,
  batchSize: 64,
  learningRate: 0.02,
  numSamples: 2,
  predictSamples: 50,
});

/** The recurrent cell of the classifier. */
export type Cell = 'lstm' | 'gru';

/** The classifier's sizes. */
export interface ClassifierSizes {
  readonly vocab: number;
  readonly numClasses: number;
  readonly embeddingDim: number;
  readonly hidden: number;
}

/** `embedding -> LSTM/GRU -> last step -> linear`: logits `[batch, numClasses]`. */
export function classifier(cell: Cell, s: ClassifierSizes) {
  const rnnOpts = { inFeatures: s.embeddingDim, outFeatures: s.hidden, name: 'rnn' };
  return serial(
    {
      emb: bayesianEmbedding({
        numEmbeddings: s.vocab,
        embeddingDim: s.embeddingDim,
        paddingIdx: 0,
        // one scatter of the looked-up rows for the table's gradient (see bayesianEmbedding)
        sparse: true,
        name: 'emb',
      }),
      rnn: cell === 'lstm' ? bayesianLSTM(rnnOpts) : bayesianGRU(rnnOpts),
      last: lastTimeStep(),
      out: bayesianLinear({ inFeatures: s.hidden, outFeatures: s.numClasses, name: 'out' }),
    },
    { name: 'classifier' },
  );
}

/** The model `classifier` builds. */
export type Classifier = ReturnType<typeof classifier>;

/** What `trainClassifier` returns; the caller disposes `params`. */
export interface TrainedClassifier {
  readonly model: Classifier;
  readonly params: layers.ParamsOf<Classifier>;
  readonly history: readonly number[];
  readonly seconds: number;
}

/** Trains the classifier on int32 tokens `x [n, length]` and labels `y [n]`. */
export async function trainClassifier(o: {
  key: Key;
  x: tf.Tensor2D;
  y: tf.Tensor1D;
  cell: Cell;
  sizes: ClassifierSizes;
  epochs: number;
  batchSize: number;
  learningRate: number;
  numSamples: number;
  progress?: boolean;
}): Promise<TrainedClassifier> {
  const [kInit, kFit] = random.split(o.key);
  const model = classifier(o.cell, o.sizes);
  const likelihood = transforms.softmaxCrossEntropy();
  const params = {
    model: model.init(kInit, [-1, o.x.shape[1]]).params,
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
    params: r.params.model,
    history: r.history,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** Per-sequence predictive statistics over posterior samples. */
export interface ClassPrediction {
  /** The mean of the samples' class probabilities, `[n * K]` (row-major). */
  readonly probs: Float32Array;
  /** Entropy of the mean probabilities (total predictive uncertainty), nats, `[n]`. */
  readonly entropy: Float32Array;
  /** Mutual information between the label and the weights (the epistemic part), nats, `[n]`. */
  readonly mutualInfo: Float32Array;
}

/** `predictClasses(t, x, key, S) -> ClassPrediction`: Monte Carlo over `S` posterior samples. */
export function predictClasses(
  t: Pick<TrainedClassifier, 'model' | 'params'>,
  x: tf.Tensor2D,
  key: Key,
  numSamples = 50,
): ClassPrediction {
  return tf.tidy(() => {
    const { out } = transforms.vmapSamples(t.model, numSamples)(t.params, x, {
      key,
      computeKl: false,
    });
    const p = tf.softmax(out); // [S, n, K]
    const mean = tf.mean(p, 0);
    const h = (q: tf.Tensor) => tf.neg(tf.sum(tf.mul(q, tf.log(tf.maximum(q, 1e-12))), -1));
    const entropy = h(mean);
    const expected = tf.mean(h(p), 0);
    return {
      probs: mean.dataSync<'float32'>(),
      entropy: entropy.dataSync<'float32'>(),
      mutualInfo: tf.sub(entropy, expected).dataSync<'float32'>(),
    };
  });
}

/** What the example reports: test accuracy, and mean entropy and mutual information (nats). */
export interface ClassifierEvaluation {
  readonly accuracy: number;
  /** Mean predictive entropy on the test set and on the out-of-distribution set. */
  readonly entropy: { readonly test: number; readonly ood: number };
  /** Mean mutual information (the epistemic part of the entropy), test and OOD. */
  readonly mutualInfo: { readonly test: number; readonly ood: number };
  readonly test: ClassPrediction;
  readonly ood: ClassPrediction;
}

const mean = (a: ArrayLike<number>): number => Array.from(a).reduce((u, v) => u + v, 0) / a.length;

/**
 * `evaluateClassifier(t, task, key, S) -> ClassifierEvaluation`: the posterior predictive over
 * `S` samples on the task's test set (first half of `key`) and OOD set (second half).
 */
export function evaluateClassifier(
  t: Pick<TrainedClassifier, 'model' | 'params'>,
  task: TokenTask,
  key: Key,
  numSamples = CLASSIFY_SETTINGS.predictSamples,
): ClassifierEvaluation {
  const [kTest, kOod] = random.split(key);
  const L = TASK.length;
  const K = TASK.numClasses;
  const xt = tf.tensor2d(task.test.x, [task.test.n, L], 'int32');
  const xo = tf.tensor2d(task.ood.x, [task.ood.n, L], 'int32');
  const pt = predictClasses(t, xt, kTest, numSamples);
  const po = predictClasses(t, xo, kOod, numSamples);
  tf.dispose([xt, xo]);
  let correct = 0;
  task.test.y.forEach((label, r) => {
    const row = Array.from(pt.probs.subarray(r * K, (r + 1) * K));
    if (row.indexOf(Math.max(...row)) === label) correct += 1;
  });
  return {
    accuracy: correct / task.test.n,
    entropy: { test: mean(pt.entropy), ood: mean(po.entropy) },
    mutualInfo: { test: mean(pt.mutualInfo), ood: mean(po.mutualInfo) },
    test: pt,
    ood: po,
  };
}
