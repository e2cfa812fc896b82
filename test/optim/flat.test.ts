// The flat optimizers (one buffer over all leaves) against the per-leaf implementation they
// replace (./perLeaf.ts, the old ops leaf by leaf), BIT FOR BIT: over random trees (scalars,
// vectors, matrices, empty leaves, nested objects and arrays) and many steps, the updates, the
// params after applyUpdates and the state (the flat moments against the per-leaf moment trees
// concatenated in flatten order) are the same float32 bits. Runs on the backend under test
// (BLITZ_TEST_BACKEND). Also: the kernels per step no longer grow with the number of leaves.
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as tree from '../../src/params/tree';
import type { ParamTree, Tree } from '../../src/params/tree';
import {
  adam,
  adamw,
  addDecayedWeights,
  applyUpdates,
  chain,
  clipByGlobalNorm,
  exponentialDecay,
  identity,
  rmsprop,
  scale,
  scaleByAdam,
  scaleByLearningRate,
  scaleByRms,
  scaleByStddev,
  sgd,
  trace,
  warmupCosineDecay,
  type GradientTransformation,
  type OptState,
} from '../../src/optim';
import {
  perLeafAddDecayedWeights,
  perLeafAdam,
  perLeafAdamw,
  perLeafApplyUpdates,
  perLeafChain,
  perLeafClipByGlobalNorm,
  perLeafIdentity,
  perLeafRmsprop,
  perLeafScale,
  perLeafScaleByAdam,
  perLeafScaleByRms,
  perLeafScaleByStddev,
  perLeafSgd,
  perLeafTrace,
} from './perLeaf';

/** Where leaf i of a generated tree goes (flatten order is sorted, not this one). */
const PATHS = [
  'dense.kernel',
  'dense.bias',
  'layers.0',
  'layers.1',
  'noise',
  'out.bias',
  'out.kernel',
  'layers.2',
] as const;

function buildTree(leaves: readonly tf.Tensor[]): ParamTree {
  const root: Record<string, unknown> = {};
  leaves.forEach((t, i) => {
    const [a, b] = (PATHS[i] as string).split('.') as [string, string | undefined];
    if (b === undefined) root[a] = t;
    else if (a === 'layers') ((root[a] ??= []) as tf.Tensor[]).push(t);
    else ((root[a] ??= {}) as Record<string, tf.Tensor>)[b] = t;
  });
  return root as ParamTree;
}

const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** A float32 value: mostly in [-3, 3], with exact zeros (both signs) and some large ones. */
const value = fc.oneof(
  { weight: 8, arbitrary: fc.float({ min: -3, max: 3, noNaN: true }) },
  { weight: 1, arbitrary: fc.constantFrom(0, -0, 1e-20, -1e-20) },
  { weight: 1, arbitrary: fc.float({ min: -1e4, max: 1e4, noNaN: true }) },
);
const shape = fc.oneof(
  { weight: 2, arbitrary: fc.constant<number[]>([]) },
  {
    weight: 4,
    arbitrary: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }),
  },
  { weight: 1, arbitrary: fc.constantFrom<number[]>([0], [2, 0]) },
);
const STEPS = 12;
/** Leaf shapes, initial params and a grads sequence for them. */
const problem = fc.array(shape, { minLength: 0, maxLength: PATHS.length }).chain((shapes) => {
  const n = shapes.reduce((a, s) => a + size(s), 0);
  return fc.record({
    shapes: fc.constant(shapes),
    p0: fc.array(value, { minLength: n, maxLength: n }),
    grads: fc.array(fc.array(value, { minLength: n, maxLength: n }), {
      minLength: STEPS,
      maxLength: STEPS,
    }),
  });
});

function treeOf(shapes: readonly (readonly number[])[], values: readonly number[]): ParamTree {
  let at = 0;
  return buildTree(
    shapes.map((s) => {
      const n = size(s);
      const t = tf.tensor(values.slice(at, at + n), s as number[], 'float32');
      at += n;
      return t;
    }),
  );
}

/** The float32 bits of every tensor leaf, concatenated in flatten order; the numbers apart. */
function bits(t: Tree<unknown>): { bits: number[]; numbers: number[] } {
  const out: number[] = [];
  const numbers: number[] = [];
  for (const l of tree.leaves(t)) {
    if (l instanceof tf.Tensor) {
      const d = l.dataSync() as Float32Array;
      out.push(...new Uint32Array(d.buffer, d.byteOffset, d.length));
    } else if (typeof l === 'number') numbers.push(l);
  }
  return { bits: out, numbers };
}

function expectSameBits(a: Tree<unknown>, b: Tree<unknown>, what: string): void {
  const x = bits(a);
  const y = bits(b);
  expect(x.numbers, `${what}: numbers`).toEqual(y.numbers);
  expect(x.bits.length, `${what}: length`).toBe(y.bits.length);
  const i = x.bits.findIndex((v, k) => v !== y.bits[k]);
  if (i >= 0) throw new Error(`${what}: element ${i} differs: bits ${x.bits[i]} vs ${y.bits[i]}`);
}

/** Runs both for the steps of `pr`, comparing updates, params and state after every step. */
function compare(
  make: () => GradientTransformation,
  makeRef: () => GradientTransformation,
  pr: { shapes: number[][]; p0: number[]; grads: number[][] },
): void {
  const opt = make();
  const ref = makeRef();
  let p = treeOf(pr.shapes, pr.p0);
  let q = treeOf(pr.shapes, pr.p0);
  let s: OptState = opt.init(p);
  let r: OptState = ref.init(q);
  expectSameBits(s, r, 'init');
  pr.grads.forEach((g, step) => {
    const gp = treeOf(pr.shapes, g);
    const a = opt.update(gp, s, p);
    const b = ref.update(gp, r, q);
    expectSameBits(a.updates, b.updates, `step ${step}: updates`);
    expectSameBits(a.state, b.state, `step ${step}: state`);
    const pn = applyUpdates(p, a.updates);
    const qn = perLeafApplyUpdates(q, b.updates);
    expectSameBits(pn, qn, `step ${step}: params`);
    tree.dispose([gp, p, q, s, r, a.updates, b.updates]);
    p = pn;
    q = qn;
    s = a.state;
    r = b.state;
  });
  tree.dispose([p, q, s, r]);
}

const isBias = (path: string): boolean => path.endsWith('bias');
const lrSchedule = warmupCosineDecay({
  initValue: 0,
  peakValue: 0.05,
  warmupSteps: 3,
  decaySteps: 9,
});
const double: GradientTransformation = {
  init: () => ({}),
  update: (grads, state) => ({
    updates: tree.map<tf.Tensor, tf.Tensor>(grads, (g) => tf.mul(g, 2)) as typeof grads,
    state,
  }),
};

type Case = readonly [string, () => GradientTransformation, () => GradientTransformation];
const CASES: readonly Case[] = [
  ['adam', () => adam({ learningRate: 0.01 }), () => perLeafAdam({ learningRate: 0.01 })],
  [
    'adam, schedule, betas, eps, epsRoot',
    () => adam({ learningRate: lrSchedule, b1: 0.8, b2: 0.99, eps: 1e-3, epsRoot: 1e-4 }),
    () => perLeafAdam({ learningRate: lrSchedule, b1: 0.8, b2: 0.99, eps: 1e-3, epsRoot: 1e-4 }),
  ],
  [
    'adamw',
    () => adamw({ learningRate: 0.01, weightDecay: 0.1 }),
    () => perLeafAdamw({ learningRate: 0.01, weightDecay: 0.1 }),
  ],
  [
    'adamw, mask: not biases',
    () => adamw({ learningRate: 0.01, weightDecay: 0.5, mask: (p) => !isBias(p) }),
    () => perLeafAdamw({ learningRate: 0.01, weightDecay: 0.5, mask: (p) => !isBias(p) }),
  ],
  [
    'adamw, mask: nothing decayed',
    () => adamw({ learningRate: 0.01, mask: () => false }),
    () => perLeafAdamw({ learningRate: 0.01, mask: () => false }),
  ],
  ['sgd', () => sgd({ learningRate: 0.1 }), () => perLeafSgd({ learningRate: 0.1 })],
  [
    'sgd, momentum, schedule',
    () =>
      sgd({
        learningRate: exponentialDecay({ initValue: 0.1, transitionSteps: 2, decayRate: 0.5 }),
        momentum: 0.9,
      }),
    () =>
      perLeafSgd({
        learningRate: exponentialDecay({ initValue: 0.1, transitionSteps: 2, decayRate: 0.5 }),
        momentum: 0.9,
      }),
  ],
  [
    'sgd, nesterov',
    () => sgd({ learningRate: 0.1, momentum: 0.5, nesterov: true }),
    () => perLeafSgd({ learningRate: 0.1, momentum: 0.5, nesterov: true }),
  ],
  ['rmsprop', () => rmsprop({ learningRate: 0.01 }), () => perLeafRmsprop({ learningRate: 0.01 })],
  [
    'rmsprop, centered, momentum',
    () => rmsprop({ learningRate: 0.01, decay: 0.8, eps: 1e-6, centered: true, momentum: 0.9 }),
    () =>
      perLeafRmsprop({ learningRate: 0.01, decay: 0.8, eps: 1e-6, centered: true, momentum: 0.9 }),
  ],
  [
    'rmsprop, momentum',
    () => rmsprop({ learningRate: 0.01, momentum: 0.5 }),
    () => perLeafRmsprop({ learningRate: 0.01, momentum: 0.5 }),
  ],
  [
    'chain(clipByGlobalNorm, adam)',
    () => chain(clipByGlobalNorm(0.5), adam({ learningRate: lrSchedule })),
    () => perLeafChain(perLeafClipByGlobalNorm(0.5), perLeafAdam({ learningRate: lrSchedule })),
  ],
  [
    'chain(sgd momentum, clipByGlobalNorm): the norm in the middle of a run',
    () => chain(sgd({ learningRate: 1, momentum: 0.9 }), clipByGlobalNorm(0.1)),
    () =>
      perLeafChain(perLeafSgd({ learningRate: 1, momentum: 0.9 }), perLeafClipByGlobalNorm(0.1)),
  ],
  [
    'chain(scaleByAdam, a tree transform, addDecayedWeights, scaleByLearningRate)',
    () =>
      chain(
        scaleByAdam(),
        double,
        addDecayedWeights({ weightDecay: 0.1, mask: isBias }),
        scaleByLearningRate(0.1),
      ),
    () =>
      perLeafChain(
        perLeafScaleByAdam(),
        double,
        perLeafAddDecayedWeights(0.1, isBias),
        perLeafScale(0.1),
      ),
  ],
  [
    'chain(identity, chain(), scale(schedule))',
    () =>
      chain(
        identity(),
        chain(),
        scale((c) => 1 / (c + 1)),
      ),
    () =>
      perLeafChain(
        perLeafIdentity(),
        perLeafChain(),
        perLeafScale((c) => 1 / (c + 1), 1),
      ),
  ],
  [
    'scaleByAdam',
    () => scaleByAdam({ epsRoot: 1e-8 }),
    () => perLeafScaleByAdam(0.9, 0.999, 1e-8, 1e-8),
  ],
  ['scaleByRms', () => scaleByRms(), () => perLeafScaleByRms()],
  ['scaleByStddev', () => scaleByStddev(), () => perLeafScaleByStddev()],
  ['trace', () => trace({ decay: 0.5 }), () => perLeafTrace(0.5)],
  ['trace, nesterov', () => trace({ decay: 0.5, nesterov: true }), () => perLeafTrace(0.5, true)],
  [
    'addDecayedWeights',
    () => addDecayedWeights({ weightDecay: 0.1, mask: isBias }),
    () => perLeafAddDecayedWeights(0.1, isBias),
  ],
  ['clipByGlobalNorm', () => clipByGlobalNorm(1), () => perLeafClipByGlobalNorm(1)],
  ['identity', () => identity(), () => perLeafIdentity()],
];

describe('the flat optimizers are bit-identical to the per-leaf ones', () => {
  for (const [name, make, makeRef] of CASES) {
    it(name, () => {
      fc.assert(
        fc.property(problem, (pr) => compare(make, makeRef, pr)),
        { numRuns: 15 },
      );
    });
  }

  it('on the trees of a Bayesian MLP, over 50 adam and adamw steps', () => {
    const shapes = [[13, 16], [16], [16, 1], [1], [], [13, 16], [16], [16, 1]];
    const n = shapes.reduce((a, s) => a + size(s), 0);
    const rand = fc.sample(fc.array(value, { minLength: n, maxLength: n }), {
      numRuns: 51,
      seed: 1,
    });
    const pr = { shapes, p0: rand[0] as number[], grads: rand.slice(1) };
    compare(
      () => adam({ learningRate: 0.01 }),
      () => perLeafAdam({ learningRate: 0.01 }),
      pr,
    );
    compare(
      () => adamw({ learningRate: 0.01, mask: (p) => !isBias(p) }),
      () => perLeafAdamw({ learningRate: 0.01, mask: (p) => !isBias(p) }),
      pr,
    );
  });
});

describe('kernels per step', () => {
  /** The kernels of one update + applyUpdates. */
  async function kernels(opt: GradientTransformation, shapes: number[][]): Promise<number> {
    const params = treeOf(
      shapes,
      new Array<number>(shapes.reduce((a, s) => a + size(s), 0)).fill(1),
    );
    const state = opt.init(params);
    const prof = await tf.profile(() => {
      const r = opt.update(params, state, params);
      const next = applyUpdates(params, r.updates);
      tree.dispose([r.updates, r.state, next]);
    });
    tree.dispose([params, state]);
    return prof.kernels.length;
  }

  it('adam: a constant, plus a Reshape in and out per leaf of rank != 1, plus applyUpdates', async () => {
    // 1-D leaves only: no Reshape; the count does not depend on how many leaves there are
    const vectors = (k: number): number[][] => Array.from({ length: k }, (_, i) => [i + 1]);
    // Concat, 13 of Adam, 1 of the learning rate, SplitV, and one Add per leaf (applyUpdates)
    expect(await kernels(adam({ learningRate: 0.1 }), vectors(2))).toBe(16 + 2);
    expect(await kernels(adam({ learningRate: 0.1 }), vectors(8))).toBe(16 + 8);
    // two matrices: a Reshape each to pack, and one each to unpack
    expect(await kernels(adam({ learningRate: 0.1 }), [[2, 3], [3], [3, 1], [1]])).toBe(16 + 4 + 4);
    // the per-leaf implementation: 15 kernels per leaf
    expect(await kernels(perLeafAdam({ learningRate: 0.1 }), vectors(8))).toBe(15 * 8);
  });

  it('plain sgd stays leaf by leaf (one Multiply per leaf, no concatenation)', async () => {
    const shapes = [[2, 3], [3], [], [4]];
    // before: an Identity (the clone of identity()) and a Multiply per leaf
    expect(await kernels(perLeafSgd({ learningRate: 0.1 }), shapes)).toBe(3 * 4);
    expect(await kernels(sgd({ learningRate: 0.1 }), shapes)).toBe(2 * 4);
  });
});

describe('through trainStep', () => {
  it('training a Bayesian MLP with adam: the same losses and params, bit for bit', async () => {
    const { layers, random, transforms } = await import('../../src');
    const model = layers.serial({
      hidden: layers.bayesianLinear({ inFeatures: 4, outFeatures: 8 }),
      act: layers.relu(),
      out: layers.bayesianLinear({ inFeatures: 8, outFeatures: 1 }),
    });
    const lik = transforms.gaussianNll();
    const k = random.key(3);
    const x = random.normal(random.foldIn(k, 1), [16, 4]);
    const y = random.normal(random.foldIn(k, 2), [16, 1]);
    const train = (opt: GradientTransformation) => {
      const params = { model: model.init(k, [-1, 4]).params, likelihood: lik.init() };
      const step = transforms.trainStep(transforms.elbo(model, lik, { numSamples: 2 }), opt);
      let state = { params, optState: opt.init(params), step: 0 };
      const losses: number[] = [];
      const before = tf.memory().numTensors;
      for (let i = 0; i < 30; i++) {
        const r = step(state, x, y, random.foldIn(k, 100 + i), 0.01);
        state = r.state;
        losses.push(r.loss);
        expect(tf.memory().numTensors).toBe(before);
      }
      return { losses, state };
    };
    const a = train(adam({ learningRate: 0.02 }));
    const b = train(perLeafAdam({ learningRate: 0.02 }));
    expect(a.losses).toEqual(b.losses);
    expectSameBits(a.state.params, b.state.params, 'params');
    expectSameBits(a.state.optState, b.state.optState, 'state');
    tree.dispose([a.state.params, a.state.optState, b.state.params, b.state.optState, x, y]);
  });
});
