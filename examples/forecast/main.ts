/**
 * Forecasting with a Bayesian LSTM (Bayes by Backprop): a noisy seasonal series, generated from
 * the seed, is learned on its first 240 steps (months); the model then forecasts one step ahead
 * from the observed history over the rest, where at step 288 the series changes (a level shift and a larger
 * amplitude) in a way it never saw. The forecast's uncertainty should widen after the change.
 * Each window is shifted by its own mean (the model forecasts the deviation from it), and the
 * model is an LSTM with a linear autoregressive path (see train.ts). Prints the errors and the
 * predictive standard deviations before and after the change, and writes an SVG plot of the
 * forecast with ±1 and ±2 std bands.
 *
 *   npx tsx examples/forecast/main.ts
 *   npx tsx examples/forecast/main.ts --seed 3 --backend wasm --epochs 40 --out /tmp/forecast
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { random, tree, useBackend } from 'blitz-ts';
import { backendArg } from '../args';
import { bandChart } from '../regression/plot';
import { SERIES, prepare, seasonalSeries } from './data';
import {
  FORECAST_EPOCHS,
  FORECAST_SETTINGS,
  forecast,
  forecastFigures,
  trainForecaster,
} from './train';

const here = path.dirname(fileURLToPath(import.meta.url));
const fmt = (v: number, d = 3): string => v.toFixed(d);

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      seed: { type: 'string', default: '0' },
      backend: { type: 'string', default: 'cpu' },
      epochs: { type: 'string', default: String(FORECAST_EPOCHS) },
      out: { type: 'string', default: path.join(here, 'output') },
      quiet: { type: 'boolean', default: false },
    },
  });
  tf.enableProdMode(); // no "install tfjs-node" banner; skips tfjs's debug-only checks
  const backend = await useBackend(backendArg(args.backend));
  const seed = Number(args.seed);
  const epochs = Number(args.epochs);
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${args.seed}`);
  if (!Number.isInteger(epochs) || epochs < 1) {
    throw new Error(`--epochs must be a positive integer, got ${args.epochs}`);
  }
  const t0 = performance.now();
  const [kData, kTrain, kPred] = random.split(random.key(seed), 3);
  const series = seasonalSeries(kData);
  // standardised with the training part's statistics; reported in the series' units
  const prepared = prepare(series);
  const { train: tr, test: te } = prepared;
  const W = SERIES.window;
  console.log(`blitz-ts forecast demo — backend ${backend}, seed ${seed}\n`);
  console.log(
    `series: ${series.y.length} steps, period ${SERIES.period}, noise std ${SERIES.noiseStd}; ` +
      `trained on steps [0, ${series.trainEnd}) (${tr.n} windows of ${W}); ` +
      `at step ${series.changeAt} the level shifts by ${SERIES.levelShift} and the amplitude grows ${SERIES.amplitudeFactor}x`,
  );
  const x = tf.tensor3d(tr.x, [tr.n, W, 1]);
  const y = tf.tensor2d(tr.y, [tr.n, 1]);
  const xt = tf.tensor3d(te.x, [te.n, W, 1]);
  const trained = await trainForecaster({
    key: kTrain,
    x,
    y,
    epochs,
    progress: !args.quiet && Boolean(process.stderr.isTTY),
    ...FORECAST_SETTINGS,
  });
  const f = forecast(trained, xt, kPred, FORECAST_SETTINGS.predictSamples);
  const { before, after, ...figures } = forecastFigures(series, prepared, f);
  console.log(
    `trained ${trained.history.length} epochs in ${fmt(trained.seconds, 1)} s; final loss ` +
      `${fmt(trained.history.at(-1) ?? NaN)}; learned noise std ` +
      `${fmt(f.noise * prepared.std)} (true ${SERIES.noiseStd})\n`,
  );
  console.log(`one-step-ahead forecasts        before the change   after the change`);
  console.log(
    `  steps                         [${series.trainEnd}, ${series.changeAt})          [${series.changeAt}, ${series.y.length})`,
  );
  const row = (label: string, a: number, b: number) =>
    console.log(`  ${label.padEnd(30)}${fmt(a).padStart(8)}${fmt(b).padStart(19)}`);
  row('RMSE', before.rmse, after.rmse);
  row('mean epistemic std', before.meanEpistemicStd, after.meanEpistemicStd);
  row('mean total std', before.meanTotalStd, after.meanTotalStd);
  row('coverage of mean ± 2 std', before.coverage2, after.coverage2);
  const ratio = after.meanEpistemicStd / before.meanEpistemicStd;
  console.log(`\n  epistemic std after / before the change: ${fmt(ratio, 2)}x`);
  mkdirSync(args.out, { recursive: true });
  const file = path.join(args.out, 'forecast.svg');
  writeFileSync(
    file,
    await bandChart({
      title: `Bayesian LSTM one-step forecast (mean, ±1/±2 total std); the series changes at step ${series.changeAt}`,
      xLabel: 'time step',
      yLabel: 'value',
      grid: te.at,
      mean: figures.mean,
      std: figures.total,
      points: series.t
        .filter((i) => i >= series.trainEnd - 60)
        .map((i) => ({ x: i, y: series.y[i] ?? NaN })),
    }),
  );
  console.log(`  plot: ${path.relative(process.cwd(), file)}`);
  console.log(`  total time ${fmt((performance.now() - t0) / 1000, 1)} s`);
  tf.dispose([x, y, xt]);
  tree.dispose(trained.params);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
