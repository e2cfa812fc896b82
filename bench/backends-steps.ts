/**
 * The timing routine of bench/backends.ts, browser-safe: it runs in Node (cpu, wasm) and, bundled
 * by bench/backends-page.ts, in headless Chromium (webgl, wasm). It times the regression
 * example's toy-curve model (Bayesian MLP 1-64-1, batch 128, 2 ELBO samples, adam) on the active
 * backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { optim, random, transforms, tree, type Key } from '../src/index';
import { TOY_SETTINGS, toyGrid, toyProblem } from '../examples/regression/toy';
import { bayesianMlp, predict, trainRegression } from '../examples/regression/train';

/** Median times in milliseconds on the active backend, and the best repetition's. */
export interface StepTimes {
  readonly backend: string;
  readonly best: { readonly trainStep: number; readonly fitStep: number; readonly predict: number };
  /** One `trainStep` (ELBO value and gradients, adam, update; reads the loss). */
  readonly trainStep: number;
  /** One step of the example's `fit` loop (shuffle, gather the minibatch, step; per-epoch yield). */
  readonly fitStep: number;
  /** `predict` on the plot's 141-point grid with 100 posterior samples (read back). */
  readonly predict: number;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

/** `timeToySteps(reps) -> StepTimes`: medians over `reps` repetitions, after warm-up. */
export async function timeToySteps(reps = 7): Promise<StepTimes> {
  const k = random.key(0);
  const [kData, kInit, kTrain, kPred] = random.split(k, 4) as [Key, Key, Key, Key];
  const toy = toyProblem(kData, TOY_SETTINGS.points);
  const B = TOY_SETTINGS.batchSize;
  const xAll = tf.tensor2d(toy.x, [toy.x.length, 1]);
  const yAll = tf.tensor2d(toy.y, [toy.y.length, 1]);

  // 1. trainStep on one minibatch
  const model = bayesianMlp(1, TOY_SETTINGS.hidden);
  const lik = transforms.gaussianNll({ initStd: 0.5 });
  const opt = optim.adam({ learningRate: TOY_SETTINGS.learningRate });
  const step = transforms.trainStep(
    transforms.elbo(model, lik, { numSamples: TOY_SETTINGS.numSamples }),
    opt,
  );
  const x = tf.tensor2d(toy.x.slice(0, B), [B, 1]);
  const y = tf.tensor2d(toy.y.slice(0, B), [B, 1]);
  const params = { model: model.init(kInit, [-1, 1]).params, likelihood: lik.init() };
  let state: transforms.TrainState<typeof params, ReturnType<typeof opt.init>> = {
    params,
    optState: opt.init(params),
    step: 0,
  };
  let i = 0;
  const run = (n: number) => {
    for (let j = 0; j < n; j++, i++) {
      state = step(state, x, y, random.foldIn(kTrain, i), 1 / toy.x.length).state;
    }
  };
  run(60); // warm-up: shader compilation (webgl), JIT tiers (wasm, JS)
  const stepTimes: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    run(20);
    stepTimes.push((performance.now() - t0) / 20);
  }
  tree.dispose(state.params);
  tree.dispose(state.optState);
  tf.dispose([x, y]);

  // 2. the example's fit loop: 10 epochs of 4 steps, after a 2-epoch warm-up run
  const fitRun = async (epochs: number) => {
    const t = await trainRegression({
      key: kTrain,
      x: xAll,
      y: yAll,
      hidden: TOY_SETTINGS.hidden,
      epochs,
      batchSize: B,
      learningRate: TOY_SETTINGS.learningRate,
      numSamples: TOY_SETTINGS.numSamples,
      progress: false,
    });
    return t;
  };
  tree.dispose((await fitRun(2)).params);
  const fitTimes: number[] = [];
  let last: Awaited<ReturnType<typeof fitRun>> | undefined;
  for (let r = 0; r < reps; r++) {
    if (last) tree.dispose(last.params);
    const t0 = performance.now();
    last = await fitRun(10);
    fitTimes.push((performance.now() - t0) / (10 * Math.ceil(toy.x.length / B)));
  }

  // 3. predictive on the plot grid
  const trained = last as NonNullable<typeof last>;
  const gx = toyGrid();
  const grid = tf.tensor2d(
    gx.map((v) => (v - toy.xMean) / toy.xStd),
    [gx.length, 1],
  );
  const once = () => {
    const p = predict(trained, grid, kPred, 100);
    p.mean.dataSync();
    p.total.dataSync();
    tf.dispose([p.mean, p.epistemic, p.total]);
  };
  once();
  const predictTimes: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    once();
    predictTimes.push(performance.now() - t0);
  }
  tree.dispose(trained.params);
  tf.dispose([grid, xAll, yAll]);
  return {
    backend: tf.getBackend(),
    best: {
      trainStep: Math.min(...stepTimes),
      fitStep: Math.min(...fitTimes),
      predict: Math.min(...predictTimes),
    },
    trainStep: median(stepTimes),
    fitStep: median(fitTimes),
    predict: median(predictTimes),
  };
}
