/**
 * The optimizers' cost per training step: kernels (from `tf.profile`, deterministic) and
 * milliseconds of `update` + `applyUpdates`, for the parameter trees of the regression MLP
 * 13-512-1 (9 leaves with the likelihood's) and of `layers.bayesianLeNet5()` (20 leaves), on cpu
 * and wasm. "before" is the per-leaf implementation the library had (test/optim/perLeaf.ts, the
 * same ops leaf by leaf), "after" is the library (one flat buffer over all leaves). A and B are
 * timed alternately in one process (the machine is shared: the kernel counts are the figures to
 * trust, the times are medians). The reference skips the old code's structure checks, so its ms
 * are a lower bound for the old code (plain sgd on the MLP, wasm: ~0.14 ms for the reference,
 * ~0.17-0.21 ms for the old library, measured once against `git show` of it). Also: whole
 * training steps (regression MLP, LeNet-5) A/B, and `applyUpdates` leaf by leaf vs through one
 * flat buffer. Prints markdown to stdout.
 *
 *   npx tsx bench/optim.ts          (BENCH_QUICK=1: fewer rounds, no LeNet train step;
 *                                    BENCH_ONLY=update,apply,train: some tables only)
 */
import * as tf from '@tensorflow/tfjs-core';
import { layers, optim, random, transforms, tree, useBackend, type BackendName } from '../src';
import type { GradientTransformation, OptState } from '../src/optim';
import type { ParamTree } from '../src/params/tree';
import {
  perLeafAdam,
  perLeafAdamw,
  perLeafApplyUpdates,
  perLeafChain,
  perLeafClipByGlobalNorm,
  perLeafRmsprop,
  perLeafSgd,
} from '../test/optim/perLeaf';

tf.enableProdMode();
const QUICK = process.env['BENCH_QUICK'] === '1';
const ROUNDS = QUICK ? 3 : 9;
const STEPS = QUICK ? 10 : 40;
const ONLY = new Set((process.env['BENCH_ONLY'] ?? 'update,apply,train').split(','));

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

function mlp() {
  const model = layers.serial({
    hidden: layers.bayesianLinear({ inFeatures: 13, outFeatures: 512 }),
    act: layers.relu(),
    out: layers.bayesianLinear({ inFeatures: 512, outFeatures: 1 }),
  });
  const lik = transforms.gaussianNll();
  return { model, lik };
}

function trees(): readonly (readonly [string, () => ParamTree])[] {
  const k = random.key(0);
  return [
    [
      'MLP 13-512-1 (9 leaves)',
      () => {
        const { model, lik } = mlp();
        return { model: model.init(k, [-1, 13]).params, likelihood: lik.init() };
      },
    ],
    ['LeNet-5 (20 leaves)', () => layers.bayesianLeNet5().init(k, [-1, 28, 28, 1]).params],
  ];
}

type Pair = readonly [string, () => GradientTransformation, () => GradientTransformation];
const notBias = (p: string): boolean => !p.endsWith('bias.mu') && !p.endsWith('bias.rho');
const OPTIMIZERS: readonly Pair[] = [
  ['adam', () => perLeafAdam({ learningRate: 1e-3 }), () => optim.adam({ learningRate: 1e-3 })],
  [
    'adamw (mask: not biases)',
    () => perLeafAdamw({ learningRate: 1e-3, weightDecay: 1e-2, mask: notBias }),
    () => optim.adamw({ learningRate: 1e-3, weightDecay: 1e-2, mask: notBias }),
  ],
  [
    'chain(clipByGlobalNorm, adam)',
    () => perLeafChain(perLeafClipByGlobalNorm(1), perLeafAdam({ learningRate: 1e-3 })),
    () => optim.chain(optim.clipByGlobalNorm(1), optim.adam({ learningRate: 1e-3 })),
  ],
  ['sgd', () => perLeafSgd({ learningRate: 1e-2 }), () => optim.sgd({ learningRate: 1e-2 })],
  [
    'sgd (momentum, nesterov)',
    () => perLeafSgd({ learningRate: 1e-2, momentum: 0.9, nesterov: true }),
    () => optim.sgd({ learningRate: 1e-2, momentum: 0.9, nesterov: true }),
  ],
  [
    'rmsprop',
    () => perLeafRmsprop({ learningRate: 1e-3 }),
    () => optim.rmsprop({ learningRate: 1e-3 }),
  ],
  [
    'rmsprop (centered, momentum)',
    () => perLeafRmsprop({ learningRate: 1e-3, centered: true, momentum: 0.9 }),
    () => optim.rmsprop({ learningRate: 1e-3, centered: true, momentum: 0.9 }),
  ],
];

type Apply = <P extends ParamTree>(params: P, updates: P) => P;

/** `applyUpdates` through one flat buffer: concat the params and the updates, add, split. */
const flatApply: Apply = (params, updates) =>
  tf.tidy(() => {
    const ps = tree.leaves<tf.Tensor>(params);
    const us = tree.leaves<tf.Tensor>(updates);
    const flat = (ls: tf.Tensor[]) =>
      tf.concat(ls.map((l) => (l.rank === 1 ? l : tf.reshape(l, [-1]))));
    const sum = tf.add(flat(ps), flat(us));
    const parts = tf.split(
      sum,
      ps.map((p) => p.size),
    );
    const out = parts.map((x, i) => {
      const shape = (ps[i] as tf.Tensor).shape;
      return shape.length === 1 ? x : tf.reshape(x, shape);
    });
    return tree.unflatten(tree.flatten(params).treedef, out) as tf.TensorContainer;
  }) as unknown as typeof params;

/** A training loop of `update` + `apply` over fixed grads, owning its params and state. */
function looper(opt: GradientTransformation, p0: ParamTree, grads: ParamTree, apply: Apply) {
  let params = tree.clone(p0);
  let state: OptState = opt.init(params);
  const step = (): void => {
    const r = opt.update(grads, state, params);
    const next = apply(params, r.updates);
    tree.dispose([params, state, r.updates]);
    params = next;
    state = r.state;
  };
  return {
    step,
    kernels: async (): Promise<number> => (await tf.profile(step)).kernels.length,
    time: (n: number): number => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) step();
      return (performance.now() - t0) / n;
    },
    dispose: () => tree.dispose([params, state]),
  };
}

type Looper = ReturnType<typeof looper>;

/** Kernels and the median ms per step of A and B, timed alternately (ABAB, then BABA, ...). */
async function ab(a: Looper, b: Looper, steps = STEPS, rounds = ROUNDS) {
  for (let i = 0; i < 3; i++) {
    a.step();
    b.step();
  }
  const ka = await a.kernels();
  const kb = await b.kernels();
  const ta: number[] = [];
  const tb: number[] = [];
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      ta.push(a.time(steps));
      tb.push(b.time(steps));
    } else {
      tb.push(b.time(steps));
      ta.push(a.time(steps));
    }
  }
  return { ka, kb, ma: median(ta), mb: median(tb) };
}

const fmt = (x: number): string => (x >= 10 ? x.toFixed(1) : x.toFixed(3));
const row = (cells: readonly (string | number)[]): string => `| ${cells.join(' | ')} |`;

async function optimizerRows(be: BackendName, out: string[]): Promise<void> {
  for (const [treeName, make] of trees()) {
    const p0 = make();
    const grads = tree.map(p0, (p, path) =>
      tf.tidy(() => tf.mul(random.normal(random.foldIn(random.key(7), path.length), p.shape), 0.1)),
    );
    for (const [name, before, after] of OPTIMIZERS) {
      const a = looper(before(), p0, grads, perLeafApplyUpdates);
      const b = looper(after(), p0, grads, optim.applyUpdates);
      const r = await ab(a, b);
      const line = row([
        be,
        treeName,
        name,
        r.ka,
        r.kb,
        fmt(r.ma),
        fmt(r.mb),
        `${(r.ma / r.mb).toFixed(2)}x`,
      ]);
      out.push(line);
      console.error(line);
      a.dispose();
      b.dispose();
    }
    tree.dispose([p0, grads]);
  }
}

async function applyRows(be: BackendName, out: string[]): Promise<void> {
  for (const [treeName, make] of trees()) {
    const p0 = make();
    const u = tree.map(p0, (p) => tf.fill(p.shape, 1e-4));
    const loop = (apply: Apply) => {
      let params = tree.clone(p0);
      const step = (): void => {
        const next = apply(params, u);
        tree.dispose(params);
        params = next;
      };
      return {
        step,
        kernels: async (): Promise<number> => (await tf.profile(step)).kernels.length,
        time: (n: number): number => {
          const t0 = performance.now();
          for (let i = 0; i < n; i++) step();
          return (performance.now() - t0) / n;
        },
        dispose: () => tree.dispose(params),
      };
    };
    const a = loop(optim.applyUpdates);
    const b = loop(flatApply);
    const r = await ab(a, b);
    const line = row([be, treeName, r.ka, r.kb, fmt(r.ma), fmt(r.mb)]);
    out.push(line);
    console.error(line);
    a.dispose();
    b.dispose();
    tree.dispose([p0, u]);
  }
}

/** Whole training steps through the public API (`trainStep(elbo(...), adam)`), before/after. */
async function trainRows(be: BackendName, out: string[]): Promise<void> {
  const k = random.key(0);
  const cases: {
    name: string;
    build: () => { loss: (p: ParamTree, ...a: never[]) => tf.Scalar; params: ParamTree };
    x: tf.Tensor;
    y: tf.Tensor;
    steps: number;
  }[] = [];
  {
    const { model, lik } = mlp();
    cases.push({
      name: 'regression MLP 13-512-1, batch 16, 3 samples',
      build: () => ({
        loss: transforms.elbo(model, lik, { numSamples: 3 }) as never,
        params: { model: model.init(k, [-1, 13]).params, likelihood: lik.init() },
      }),
      x: random.normal(random.foldIn(k, 1), [16, 13]),
      y: random.normal(random.foldIn(k, 2), [16, 1]),
      steps: QUICK ? 5 : 20,
    });
  }
  if (!QUICK) {
    const model = layers.bayesianLeNet5();
    const lik = transforms.softmaxCrossEntropy();
    cases.push({
      name: 'LeNet-5 28x28x1, batch 64, 3 samples',
      build: () => ({
        loss: transforms.elbo(model, lik, { numSamples: 3 }) as never,
        params: { model: model.init(k, [-1, 28, 28, 1]).params, likelihood: lik.init() },
      }),
      x: random.normal(random.foldIn(k, 3), [64, 28, 28, 1]),
      y: tf.tensor1d(
        [...Array(64).keys()].map((i) => i % 10),
        'int32',
      ),
      steps: be === 'cpu' ? 2 : 4,
    });
  }
  for (const c of cases) {
    const make = (opt: GradientTransformation): Looper => {
      const { loss, params } = c.build();
      const step = transforms.trainStep(loss as never, opt);
      let state = { params, optState: opt.init(params), step: 0 };
      let i = 0;
      const one = (): void => {
        state = step(state as never, c.x, c.y, random.foldIn(k, 100 + i++), 1e-3).state as never;
      };
      return {
        step: one,
        kernels: async () => (await tf.profile(one)).kernels.length,
        time: (n) => {
          const t0 = performance.now();
          for (let j = 0; j < n; j++) one();
          return (performance.now() - t0) / n;
        },
        dispose: () => tree.dispose([state.params, state.optState]),
      };
    };
    const a = make(perLeafAdam({ learningRate: 1e-3 }));
    const b = make(optim.adam({ learningRate: 1e-3 }));
    const r = await ab(a, b, c.steps, QUICK ? 3 : 7);
    const line = row([
      be,
      c.name,
      r.ka,
      r.kb,
      fmt(r.ma),
      fmt(r.mb),
      `${(r.ma / r.mb).toFixed(2)}x`,
    ]);
    out.push(line);
    console.error(line);
    a.dispose();
    b.dispose();
    tf.dispose([c.x, c.y]);
  }
}

async function main(): Promise<void> {
  const opt: string[] = [
    row([
      'backend',
      'params',
      'optimizer',
      'kernels before',
      'kernels after',
      'ms before',
      'ms after',
      'speed-up',
    ]),
    row(Array(8).fill('---')),
  ];
  const apply: string[] = [
    row(['backend', 'params', 'kernels per leaf', 'kernels flat', 'ms per leaf', 'ms flat']),
    row(Array(6).fill('---')),
  ];
  const train: string[] = [
    row([
      'backend',
      'train step (adam)',
      'kernels before',
      'kernels after',
      'ms before',
      'ms after',
      'speed-up',
    ]),
    row(Array(7).fill('---')),
  ];
  for (const be of ['cpu', 'wasm'] as BackendName[]) {
    await useBackend(be);
    if (ONLY.has('update')) await optimizerRows(be, opt);
    if (ONLY.has('apply')) await applyRows(be, apply);
    if (ONLY.has('train')) await trainRows(be, train);
  }
  console.log(
    `# Optimizer step: one flat buffer vs leaf by leaf\n\nNode ${process.version}, ` +
      `${new Date().toISOString().slice(0, 10)}, tfjs 4.22, prod mode, one process, A/B ` +
      `alternated; ms are medians of ${ROUNDS} rounds of ${STEPS} steps.\n\n` +
      '## update + applyUpdates\n\n' +
      opt.join('\n') +
      '\n\n## applyUpdates alone: one add per leaf vs concat + add + split\n\n' +
      apply.join('\n') +
      '\n\n## Whole training steps\n\n' +
      train.join('\n') +
      '\n',
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
