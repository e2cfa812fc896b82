/**
 * Sequence classification with a Bayesian embedding and a Bayesian LSTM (or GRU): each token
 * sequence, generated from the seed, contains one of three motifs among random filler, and the
 * model says which. A held-out out-of-distribution set is made of tokens from a range of the
 * vocabulary never seen in training (their embedding rows are trained by the KL term alone, so
 * their posterior stays wide). Prints the test accuracy and the mean predictive entropy (and its
 * epistemic part, the mutual information) in- and out-of-distribution, and writes an SVG
 * histogram of the entropies.
 *
 *   npx tsx examples/sequence-classify/main.ts
 *   npx tsx examples/sequence-classify/main.ts --cell gru --seed 3 --backend wasm --epochs 10
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { random, tree, useBackend } from 'blitz-ts';
import { backendArg } from '../args';
import { TASK, tokenTask } from './data';
import { entropyHistogram } from './plot';
import { CLASSIFY_SETTINGS, evaluateClassifier, trainClassifier } from './train';

const here = path.dirname(fileURLToPath(import.meta.url));
const fmt = (v: number, d = 3): string => v.toFixed(d);

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      seed: { type: 'string', default: '0' },
      backend: { type: 'string', default: 'cpu' },
      epochs: { type: 'string', default: String(CLASSIFY_SETTINGS.epochs) },
      cell: { type: 'string', default: 'lstm' },
      out: { type: 'string', default: path.join(here, 'output') },
      quiet: { type: 'boolean', default: false },
    },
  });
  tf.enableProdMode(); // no "install tfjs-node" banner; skips tfjs's debug-only checks
  const backend = await useBackend(backendArg(args.backend));
  const seed = Number(args.seed);
  const epochs = Number(args.epochs);
  const cell = args.cell;
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${args.seed}`);
  if (!Number.isInteger(epochs) || epochs < 1) {
    throw new Error(`--epochs must be a positive integer, got ${args.epochs}`);
  }
  if (cell !== 'lstm' && cell !== 'gru') throw new Error(`--cell must be lstm or gru, got ${cell}`);
  const t0 = performance.now();
  const [kData, kTrain, kPred] = random.split(random.key(seed), 3);
  const task = tokenTask(kData);
  const L = TASK.length;
  console.log(
    `blitz-ts sequence classification demo — ${cell.toUpperCase()}, backend ${backend}, seed ${seed}\n`,
  );
  console.log(
    `task: which of ${TASK.numClasses} motifs (${task.motifs.map((m) => `[${m.join(' ')}]`).join(', ')}) ` +
      `a sequence of tokens 1..${TASK.idTokens} contains; length ${TASK.minLength}..${L}, left-padded with 0`,
  );
  console.log(
    `data: ${task.train.n} train / ${task.test.n} test sequences; out-of-distribution: ${task.ood.n} ` +
      `sequences of unseen tokens ${TASK.idTokens + 1}..${TASK.vocab - 1}`,
  );
  const x = tf.tensor2d(task.train.x, [task.train.n, L], 'int32');
  const y = tf.tensor1d(task.train.y, 'int32');
  const trained = await trainClassifier({
    key: kTrain,
    x,
    y,
    cell,
    sizes: {
      vocab: TASK.vocab,
      numClasses: TASK.numClasses,
      embeddingDim: CLASSIFY_SETTINGS.embeddingDim,
      hidden: CLASSIFY_SETTINGS.hidden,
    },
    epochs,
    batchSize: CLASSIFY_SETTINGS.batchSize,
    learningRate: CLASSIFY_SETTINGS.learningRate,
    numSamples: CLASSIFY_SETTINGS.numSamples,
    progress: !args.quiet && Boolean(process.stderr.isTTY),
  });
  const ev = evaluateClassifier(trained, task, kPred, CLASSIFY_SETTINGS.predictSamples);
  const K = TASK.numClasses;
  const maxEntropy = Math.log(K);
  console.log(
    `\ntrained ${trained.history.length} epochs in ${fmt(trained.seconds, 1)} s; final loss ` +
      `${fmt(trained.history.at(-1) ?? NaN)}\n`,
  );
  console.log(`                                    in-distribution   out-of-distribution`);
  console.log(`  test accuracy                     ${fmt(ev.accuracy).padStart(8)}          -`);
  console.log(
    `  mean predictive entropy (nats)    ${fmt(ev.entropy.test).padStart(8)}   ${fmt(ev.entropy.ood).padStart(12)}   (max log ${K} = ${fmt(maxEntropy)})`,
  );
  console.log(
    `  mean mutual information (nats)    ${fmt(ev.mutualInfo.test).padStart(8)}   ${fmt(ev.mutualInfo.ood).padStart(12)}`,
  );
  mkdirSync(args.out, { recursive: true });
  const file = path.join(args.out, `entropy-${cell}.svg`);
  writeFileSync(
    file,
    await entropyHistogram({
      title: `Bayesian ${cell.toUpperCase()}: predictive entropy on test sequences vs sequences of unseen tokens`,
      groups: {
        'in-distribution': Array.from(ev.test.entropy),
        'unseen tokens (OOD)': Array.from(ev.ood.entropy),
      },
      maxEntropy,
    }),
  );
  console.log(`\n  plot: ${path.relative(process.cwd(), file)}`);
  console.log(`  total time ${fmt((performance.now() - t0) / 1000, 1)} s`);
  tf.dispose([x, y]);
  tree.dispose(trained.params);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
