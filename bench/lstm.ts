/**
 * The recurrent training step of issue 10 (blitz's LSTM example): `serial([bayesianLSTM(8 -> 64),
 * lastTimeStep(), bayesianLinear(64 -> 1)])` on `x [32, 32, 8]`, mse, 3 ELBO samples, adam
 * (lr 1e-3), klWeight 1/1024; and the same step with a `bayesianGRU(8 -> 64)`. Prints a table of
 * ms per step (median over rounds) and kernels per step (`tf.profile`) on cpu and wasm (one
 * thread).
 *
 *   npx tsx bench/lstm.ts [--rounds N] [--steps N] [--backends cpu,wasm]
 */
import * as tf from '@tensorflow/tfjs-core';
import { layers, optim, random, transforms, tree, useBackend, type BackendName } from '../src';

tf.enableProdMode();

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}

const ROUNDS = Number(arg('rounds', '7'));
const STEPS = Number(arg('steps', '5'));
const BACKENDS = arg('backends', 'cpu,wasm').split(',') as BackendName[];

const B = 32;
const T = 32;
const IN = 8;
const H = 64;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

type Cell = 'LSTM' | 'GRU';

interface Workload {
  /** One training step (the state is owned by the workload). */
  readonly step: (i: number) => void;
  readonly dispose: () => void;
}

function workload(cell: Cell): Workload {
  const { serial, bayesianLSTM, bayesianGRU, lastTimeStep, bayesianLinear } = layers;
  const rnn =
    cell === 'LSTM'
      ? bayesianLSTM({ inFeatures: IN, outFeatures: H })
      : bayesianGRU({ inFeatures: IN, outFeatures: H });
  const model = serial([rnn, lastTimeStep(), bayesianLinear({ inFeatures: H, outFeatures: 1 })]);
  const lik = transforms.mse();
  const k = random.key(0);
  const x = random.normal(random.foldIn(k, 1), [B, T, IN]);
  const y = random.normal(random.foldIn(k, 2), [B, 1]);
  const opt = optim.adam({ learningRate: 1e-3 });
  const params = { model: model.init(random.foldIn(k, 0), [-1, T, IN]).params, likelihood: {} };
  let state = { params, optState: opt.init(params), step: 0 };
  const trainStep = transforms.trainStep(transforms.elbo(model, lik, { numSamples: 3 }), opt);
  return {
    step: (i) => {
      state = trainStep(state, x, y, random.foldIn(k, 100 + i), 1 / 1024).state;
    },
    dispose: () => {
      tf.dispose([x, y]);
      tree.dispose(state.params);
      tree.dispose(state.optState);
    },
  };
}

interface Row {
  readonly backend: string;
  readonly cell: Cell;
  readonly ms: number;
  readonly kernels: number;
  readonly top: string;
  readonly leaked: number;
}

async function measure(backend: BackendName, cell: Cell): Promise<Row> {
  await useBackend(backend);
  const w = workload(cell);
  for (let i = 0; i < 3; i++) w.step(1000 + i); // warm-up
  const before = tf.memory().numTensors;
  const info = await tf.profile(() => w.step(2000));
  const byKernel = new Map<string, number>();
  for (const kk of info.kernels) byKernel.set(kk.name, (byKernel.get(kk.name) ?? 0) + 1);
  const top = [...byKernel.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6)
    .map(([n, c]) => `${n} ${c}`)
    .join(', ');
  const reps: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    for (let i = 0; i < STEPS; i++) w.step(r * STEPS + i);
    reps.push((performance.now() - t0) / STEPS);
  }
  const leaked = tf.memory().numTensors - before;
  w.dispose();
  return { backend, cell, ms: median(reps), kernels: info.kernels.length, top, leaked };
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const be of BACKENDS) {
    for (const cell of ['LSTM', 'GRU'] as Cell[]) rows.push(await measure(be, cell));
  }
  const lines = [
    `Node ${process.version}, tfjs ${tf.version_core}, prod mode, wasm one thread; ` +
      `x [${B}, ${T}, ${IN}], hidden ${H}, 3 ELBO samples, adam; median of ${ROUNDS} rounds of ${STEPS} steps.`,
    '',
    '| backend | cell | ms / step | kernels / step | tensors leaked | most frequent kernels |',
    '| --- | --- | ---: | ---: | ---: | --- |',
    ...rows.map(
      (r) =>
        `| ${r.backend} | ${r.cell} | ${r.ms.toFixed(2)} | ${r.kernels} | ${r.leaked} | ${r.top} |`,
    ),
  ];
  console.log(lines.join('\n'));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
