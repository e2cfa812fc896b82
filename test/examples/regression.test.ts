/**
 * The main job (examples/regression, `npm run demo`):
 *
 * - its training is reproducible bit for bit from its seed on the backend under test (cpu by
 *   default, wasm with BLITZ_TEST_BACKEND=wasm), and a different seed gives different parameters
 *   (a short run of the exact training code);
 * - the figures README.md quotes hold: the demo's own experiments with its defaults (seed 0, 300
 *   epochs) give a test RMSE well below the mean predictor's, ±2 std coverage near 0.95 and ±1
 *   std near 0.68 on the diabetes data, and on the toy curve an epistemic std far outside the data
 *   several times the one inside. About 20 s on cpu, 12 s on wasm; checked on both.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { random, tree } from 'blitz-ts';
import { diabetes } from '../../examples/regression/data';
import {
  DEMO_EPOCHS,
  DIABETES_SETTINGS,
  demoKeys,
  diabetesExperiment,
  toyExperiment,
} from '../../examples/regression/experiments';
import { predict, trainRegression } from '../../examples/regression/train';

async function run(
  seed: number,
): Promise<{ params: Float32Array[]; history: readonly number[]; coverage: number }> {
  const [kSplit, kTrain, kPred] = random.split(random.key(seed), 3);
  const d = diabetes(kSplit, 0.2);
  const x = tf.tensor2d(d.xTrain);
  const y = tf.tensor2d(d.yTrain, [d.yTrain.length, 1]);
  const xt = tf.tensor2d(d.xTest);
  const yt = tf.tensor2d(d.yTest, [d.yTest.length, 1]);
  const t = await trainRegression({
    key: kTrain,
    x,
    y,
    hidden: [16],
    epochs: 4,
    batchSize: 64,
    learningRate: 0.01,
    numSamples: 2,
    progress: false,
  });
  const p = predict(t, xt, kPred, 20);
  const params = tree.leaves(t.params).map((l) => l.dataSync<'float32'>().slice());
  const coverage = tf.tidy(
    () =>
      tf
        .mean(tf.cast(tf.less(tf.abs(tf.sub(yt, p.mean)), tf.mul(p.total, 2)), 'float32'))
        .dataSync()[0] ?? NaN,
  );
  tf.dispose([x, y, xt, yt, p.mean, p.epistemic, p.total]);
  tree.dispose(t.params);
  return { params, history: t.history, coverage };
}

const sameBits = (a: Float32Array, b: Float32Array | undefined): boolean =>
  b !== undefined && Buffer.from(a.buffer).equals(Buffer.from(b.buffer));

describe('examples/regression training', () => {
  it('is reproducible bit for bit from a seed, and seed-dependent', async () => {
    const before = tf.memory().numTensors;
    const a = await run(11);
    const b = await run(11);
    const c = await run(12);
    expect(a.history).toEqual(b.history);
    expect(a.params.length).toBe(b.params.length);
    a.params.forEach((p, i) => expect(sameBits(p, b.params[i])).toBe(true));
    expect(a.coverage).toBe(b.coverage);
    expect(a.history).not.toEqual(c.history);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('examples/regression: the figures README.md quotes (seed 0, the demo defaults)', () => {
  const keys = demoKeys(random.key(0));

  it('toy curve: the epistemic std far outside the data is several times the one inside', async () => {
    const before = tf.memory().numTensors;
    const r = await toyExperiment(keys.toy, { epochs: DEMO_EPOCHS });
    // README: "an epistemic std of 0.02 inside the data and 0.11 far outside it (x > 0.8)"
    expect(r.training.epochs).toBe(DEMO_EPOCHS);
    expect(r.epistemicInside).toBeLessThan(0.05);
    expect(r.epistemicOutside).toBeGreaterThan(0.06);
    expect(r.epistemicOutside).toBeGreaterThan(3 * r.epistemicInside);
    expect(r.std.every((s) => Number.isFinite(s) && s > 0)).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('diabetes: RMSE well below the mean predictor, ±2 std coverage near 0.95', async () => {
    const before = tf.memory().numTensors;
    const d = diabetes(keys.diabetes.split, DIABETES_SETTINGS.testShare);
    expect([d.xTrain.length, d.xTest.length]).toEqual([354, 88]);
    const r = await diabetesExperiment(d, keys.diabetes, { epochs: DEMO_EPOCHS });
    // README: "an RMSE of 59.8 (predicting the training mean: 80.6), a Gaussian NLL of 5.52 nats
    // and 97.7 % of the targets inside mean ± 2 std (72.7 % inside ± 1 std)" (cpu)
    expect(r.baselineRmse).toBeCloseTo(80.64, 1);
    expect(r.rmse).toBeLessThan(0.85 * r.baselineRmse);
    expect(r.coverage2.inside).toBeGreaterThanOrEqual(0.9);
    expect(r.coverage2.inside).toBeLessThanOrEqual(0.99);
    expect(r.coverage1.inside).toBeGreaterThanOrEqual(0.6);
    expect(r.coverage1.inside).toBeLessThanOrEqual(0.8);
    expect(r.nll).toBeLessThan(5.7);
    // the total std is the learned noise and the epistemic part together
    expect(r.meanTotalStd).toBeGreaterThan(r.noiseStd);
    expect(r.meanTotalStd).toBeGreaterThan(r.meanEpistemicStd);
    expect(tf.memory().numTensors).toBe(before);
  });
});
