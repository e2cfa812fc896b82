/**
 * Training-step and prediction throughput of Bayesian MLPs (the hot path of the main job) on each
 * backend available in Node. Prints a markdown table and writes bench/results/train-step.md.
 *
 *   npx tsx bench/train-step.ts
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { layers, optim, random, transforms, tree, useBackend, type BackendName } from '../src';

tf.enableProdMode();
const here = path.dirname(fileURLToPath(import.meta.url));

interface Case {
  readonly name: string;
  readonly inF: number;
  readonly hidden: number;
  readonly batch: number;
  readonly samples: number;
}
const CASES: readonly Case[] = [
  { name: 'diabetes MLP 10-32-1', inF: 10, hidden: 32, batch: 64, samples: 2 },
  { name: 'toy MLP 1-64-1', inF: 1, hidden: 64, batch: 128, samples: 2 },
  { name: 'wider 64-256-1', inF: 64, hidden: 256, batch: 128, samples: 4 },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function benchCase(
  c: Case,
): Promise<{ step: number; predict: number; vmap: number; loop: number }> {
  const { serial, bayesianLinear, relu } = layers;
  const model = serial({
    hidden: bayesianLinear({ inFeatures: c.inF, outFeatures: c.hidden }),
    act: relu(),
    out: bayesianLinear({ inFeatures: c.hidden, outFeatures: 1 }),
  });
  const lik = transforms.gaussianNll();
  const k = random.key(0);
  const x = random.normal(random.foldIn(k, 1), [c.batch, c.inF]);
  const y = random.normal(random.foldIn(k, 2), [c.batch, 1]);
  const opt = optim.adam({ learningRate: 1e-3 });
  const params = {
    model: model.init(random.foldIn(k, 0), [-1, c.inF]).params,
    likelihood: lik.init(),
  };
  let state = { params, optState: opt.init(params), step: 0 };
  const step = transforms.trainStep(transforms.elbo(model, lik, { numSamples: c.samples }), opt);
  const time = (n: number, f: (i: number) => void): number => {
    for (let i = 0; i < 3; i++) f(1000 + i);
    const reps: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) f(i);
      reps.push((performance.now() - t0) / n);
    }
    return median(reps);
  };
  const stepMs = time(20, (i) => {
    state = step(state, x, y, random.foldIn(k, 100 + i), 1 / 1000).state;
  });
  const predictMs = time(10, (i) => {
    const p = transforms.predictive(model, state.params.model, x, {
      key: random.foldIn(k, i + 7),
      numSamples: 32,
    });
    p.mean.dataSync();
    tf.dispose([p.mean, p.std, p.samples]);
  });
  const vmapMs = time(10, (i) => {
    const r = transforms.vmapSamples(model, 32)(state.params.model, x, {
      key: random.foldIn(k, i),
    });
    r.out.dataSync();
    tf.dispose([r.out, r.kl]);
  });
  const loopMs = time(10, (i) => {
    const r = transforms.loopSamples(model, 32)(state.params.model, x, {
      key: random.foldIn(k, i),
    });
    r.out.dataSync();
    tf.dispose([r.out, r.kl]);
  });
  tf.dispose([x, y]);
  tree.dispose(state.params);
  tree.dispose(state.optState);
  return { step: stepMs, predict: predictMs, vmap: vmapMs, loop: loopMs };
}

async function main(): Promise<void> {
  const rows: string[] = [
    '| backend | model | batch | ELBO samples | train step (ms) | predictive, 32 samples (ms) | vmapSamples 32 (ms) | loop of 32 applies (ms) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const be of ['cpu', 'wasm'] as BackendName[]) {
    await useBackend(be);
    for (const c of CASES) {
      const r = await benchCase(c);
      const row = `| ${be} | ${c.name} | ${c.batch} | ${c.samples} | ${r.step.toFixed(2)} | ${r.predict.toFixed(2)} | ${r.vmap.toFixed(2)} | ${r.loop.toFixed(2)} |`;
      rows.push(row);
      console.log(row);
    }
  }
  const table =
    `# Training step and prediction (median of 5 runs)\n\nNode ${process.version}, ${new Date().toISOString().slice(0, 10)}, ` +
    'tfjs 4.22, prod mode. A step is valueAndGrad of the ELBO + adam + applyUpdates (one loss read).\n\n' +
    rows.join('\n') +
    '\n';
  mkdirSync(path.join(here, 'results'), { recursive: true });
  writeFileSync(path.join(here, 'results', 'train-step.md'), table);
  console.log('\nwritten to bench/results/train-step.md');
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
