/**
 * The main job: Bayesian MLPs trained with the ELBO (Bayes by Backprop) and a learned-noise
 * Gaussian likelihood, on
 *   1. the toy curve of Blundell et al. (2015): the uncertainty band widens away from the data;
 *   2. the diabetes data set: test RMSE, Gaussian NLL, epistemic and total predictive std, and
 *      credible-interval coverage.
 * Writes SVG plots to examples/regression/output/. The experiments are in experiments.ts.
 *
 *   npm run demo                       # = tsx examples/regression/main.ts
 *   npm run demo -- --seed 3 --backend wasm --epochs 300
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { random, useBackend } from 'blitz-ts';
import { backendArg } from '../args';
import { diabetes } from './data';
import {
  DEMO_EPOCHS,
  DIABETES_SETTINGS,
  demoKeys,
  diabetesExperiment,
  toyExperiment,
} from './experiments';
import { bandChart } from './plot';
import { TOY_NOISE_STD, TOY_SETTINGS } from './toy';

const here = path.dirname(fileURLToPath(import.meta.url));

const fmt = (v: number, d = 3): string => v.toFixed(d);

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      seed: { type: 'string', default: '0' },
      backend: { type: 'string', default: 'cpu' },
      epochs: { type: 'string', default: String(DEMO_EPOCHS) },
      out: { type: 'string', default: path.join(here, 'output') },
      quiet: { type: 'boolean', default: false },
      only: { type: 'string', default: 'all' },
    },
  });
  tf.enableProdMode(); // no "install tfjs-node" banner; skips tfjs's debug-only checks
  const backend = await useBackend(backendArg(args.backend));
  const seed = Number(args.seed);
  const epochs = Number(args.epochs);
  if (!Number.isInteger(epochs) || epochs < 1)
    throw new Error(`--epochs must be a positive integer, got ${args.epochs}`);
  const keys = demoKeys(random.key(seed));
  const progress = !args.quiet && Boolean(process.stderr.isTTY);
  mkdirSync(args.out, { recursive: true });
  console.log(`blitz-ts regression demo — backend ${backend}, seed ${seed}\n`);

  // 1. The toy curve: train on [0, 0.5], predict on [-0.2, 1.2].
  if (args.only !== 'diabetes') {
    console.log(
      `1) toy curve of Blundell et al. (2015), ${TOY_SETTINGS.points} points with x in [0, 0.5]`,
    );
    const r = await toyExperiment(keys.toy, { epochs, progress });
    console.log(
      `   trained ${r.training.epochs} epochs in ${fmt(r.training.seconds, 1)} s; final loss ${fmt(r.training.finalLoss)}; ` +
        `learned noise std ${fmt(r.noiseStd)} (true ${fmt(TOY_NOISE_STD)})`,
    );
    console.log(
      `   epistemic std: ${fmt(r.epistemicInside)} inside the data (x in [0, 0.5]), ${fmt(r.epistemicOutside)} far outside (x > 0.8)`,
    );
    const file = path.join(args.out, 'toy-curve.svg');
    writeFileSync(
      file,
      await bandChart({
        title: 'Bayes by Backprop on the toy curve: predictive mean, ±1 and ±2 std (total)',
        xLabel: 'x',
        yLabel: 'y',
        grid: r.grid,
        mean: r.mean,
        std: r.std,
        points: r.points,
      }),
    );
    console.log(`   plot: ${path.relative(process.cwd(), file)}\n`);
  }

  // 2. Diabetes: report test metrics in the target's units.
  if (args.only !== 'toy') {
    const d = diabetes(keys.diabetes.split, DIABETES_SETTINGS.testShare);
    console.log(
      `2) diabetes: ${d.xTrain.length} train / ${d.xTest.length} test patients, ${d.featureNames.length} features`,
    );
    const r = await diabetesExperiment(d, keys.diabetes, { epochs, progress });
    const { coverage2: c2, coverage1: c1 } = r;
    console.log(
      `   trained ${r.training.epochs} epochs in ${fmt(r.training.seconds, 1)} s; final loss ${fmt(r.training.finalLoss)}`,
    );
    console.log('   test metrics (target units):');
    console.log(
      `     RMSE                       ${fmt(r.rmse, 2)}   (predicting the training mean: ${fmt(r.baselineRmse, 2)})`,
    );
    console.log(`     Gaussian NLL               ${fmt(r.nll)} nats per patient`);
    console.log(`     mean epistemic std         ${fmt(r.meanEpistemicStd, 2)}`);
    console.log(
      `     mean total std             ${fmt(r.meanTotalStd, 2)}   (learned noise std ${fmt(r.noiseStd, 2)})`,
    );
    console.log(
      `     coverage of mean ± 2 std   ${fmt(c2.inside)}   (below ${fmt(c2.below)}, above ${fmt(c2.above)}; Gaussian: 0.954)`,
    );
    console.log(
      `     coverage of mean ± 1 std   ${fmt(c1.inside)}   (below ${fmt(c1.below)}, above ${fmt(c1.above)}; Gaussian: 0.683)`,
    );
    // The test patients sorted by predicted mean, with their bands and true targets.
    const file = path.join(args.out, 'diabetes.svg');
    writeFileSync(
      file,
      await bandChart({
        title: `Diabetes test patients sorted by prediction: mean, ±1/±2 std; ${fmt(c2.inside * 100, 1)}% of targets inside ±2 std`,
        xLabel: 'test patient (rank of predicted progression)',
        yLabel: 'disease progression',
        grid: r.sorted.mean.map((_, rank) => rank),
        mean: r.sorted.mean,
        std: r.sorted.std,
        points: r.sorted.target.map((y, rank) => ({ x: rank, y })),
      }),
    );
    console.log(`   plot: ${path.relative(process.cwd(), file)}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
