// Contract of gradient transformations: purity, fresh outputs, no tensor growth, structure
// errors naming the path, and clipByGlobalNorm's invariants.
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { trackTensors } from '../helpers/memory';
import * as tree from '../../src/params/tree';
import { TreeError, type ParamTree, type Tree } from '../../src/params/tree';
import {
  adam,
  adamw,
  addDecayedWeights,
  applyUpdates,
  chain,
  clipByGlobalNorm,
  globalNorm,
  identity,
  rmsprop,
  scale,
  scaleByAdam,
  scaleByLearningRate,
  scaleByRms,
  scaleBySchedule,
  scaleByStddev,
  sgd,
  trace,
  warmupCosineDecay,
  type GradientTransformation,
  type OptState,
} from '../../src/optim';

const makeParams = (): ParamTree => ({
  dense: { kernel: tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]), bias: tf.tensor1d([0.5, -0.5]) },
  layers: [tf.scalar(2), tf.tensor1d([-1, 0, 1])],
});
const makeGrads = (k: number): ParamTree => ({
  dense: {
    kernel: tf.tensor2d([0.1, -0.2, 0.3, -0.4, 0.5, k], [3, 2]),
    bias: tf.tensor1d([k, -0.7]),
  },
  layers: [tf.scalar(0.25 * k), tf.tensor1d([1, -1, 0.5 * k])],
});

const OPTIMIZERS: readonly (readonly [string, () => GradientTransformation])[] = [
  ['sgd', () => sgd({ learningRate: 0.1 })],
  ['sgd momentum nesterov', () => sgd({ learningRate: 0.1, momentum: 0.9, nesterov: true })],
  ['sgd momentum', () => sgd({ learningRate: 0.1, momentum: 0.9 })],
  ['adam', () => adam({ learningRate: 0.01 })],
  ['adamw masked', () => adamw({ learningRate: 0.01, mask: (p) => !p.endsWith('bias') })],
  ['rmsprop', () => rmsprop({ learningRate: 0.01 })],
  [
    'rmsprop centered momentum',
    () => rmsprop({ learningRate: 0.01, centered: true, momentum: 0.9 }),
  ],
  [
    'chain(clip, adam with schedule)',
    () =>
      chain(
        clipByGlobalNorm(0.5),
        adam({
          learningRate: warmupCosineDecay({
            initValue: 0,
            peakValue: 0.01,
            warmupSteps: 3,
            decaySteps: 50,
          }),
        }),
      ),
  ],
  ['identity', () => identity()],
  ['chain()', () => chain()],
  ['trace', () => trace({ decay: 0.5 })],
  ['scale(schedule)', () => scale((c) => 1 / (c + 1))],
  ['scaleByAdam', () => scaleByAdam({ epsRoot: 1e-8 })],
  ['scaleByRms', () => scaleByRms()],
  ['scaleByStddev', () => scaleByStddev()],
  ['addDecayedWeights', () => addDecayedWeights({ weightDecay: 0.1 })],
];

/** A deep copy of a tree's containers (not frozen; tensors shared). */
function thaw<L>(t: Tree<L>): Tree<L> {
  if (Array.isArray(t)) return t.map((c: Tree<L>) => thaw(c));
  if (typeof t === 'object' && t !== null && !(t instanceof tf.Tensor)) {
    const out: Record<string, Tree<L>> = {};
    for (const [k, v] of Object.entries(t as Record<string, Tree<L>>)) out[k] = thaw(v);
    return out;
  }
  return t;
}

/** The tree with every tensor replaced by its shape and values (numbers kept). */
function snapshot(t: Tree<unknown>): unknown {
  return tree.map(t, (l) =>
    l instanceof tf.Tensor ? { shape: l.shape, values: Array.from(l.dataSync()) } : l,
  );
}

const tensorsOf = (t: Tree<unknown>): tf.Tensor[] =>
  tree.leaves(t).filter((l): l is tf.Tensor => l instanceof tf.Tensor);

describe('update is pure and returns fresh tensors', () => {
  for (const [name, make] of OPTIMIZERS) {
    it(name, () => {
      const opt = make();
      const params = makeParams();
      let state = opt.init(params);
      for (let k = 0; k < 2; k++) {
        const g = makeGrads(k);
        const r = opt.update(g, state, params);
        tree.dispose([g, state, r.updates]);
        state = r.state;
      }
      const grads = makeGrads(3);
      const stateIn = thaw(state) as OptState;
      const before = snapshot([params, grads, stateIn]);
      const { updates, state: next } = opt.update(grads, stateIn, params);

      // Inputs: not disposed, same values, same (unfrozen) containers, numbers unchanged.
      for (const t of tensorsOf([params, grads, stateIn])) expect(t.isDisposed).toBe(false);
      expect(snapshot([params, grads, stateIn])).toEqual(before);

      // Outputs: no input tensor is returned, and updates and state share no tensor.
      const inputs = new Set(tensorsOf([params, grads, stateIn]));
      const outputs = tensorsOf([updates, next]);
      for (const t of outputs) expect(inputs.has(t)).toBe(false);
      expect(new Set(outputs).size).toBe(outputs.length);

      // Outputs survive disposing every input, and updates survive disposing the state.
      tree.dispose([params, grads, stateIn]);
      expect(snapshot(updates)).toBeDefined();
      tree.dispose(next);
      expect(tensorsOf(updates).every((t) => !t.isDisposed)).toBe(true);
      expect(snapshot(updates)).toBeDefined();
      tree.dispose(updates);
    });
  }

  it('applyUpdates does not dispose its inputs and returns fresh tensors', () => {
    const params = makeParams();
    const updates = makeGrads(1);
    const before = snapshot([params, updates]);
    const next = applyUpdates(params, updates);
    expect(snapshot([params, updates])).toEqual(before);
    tree.dispose([params, updates]);
    expect((tree.get(next, 'layers.0') as tf.Tensor).dataSync()[0]).toBeCloseTo(2.25, 6);
    tree.dispose(next);
  });
});

describe('no tensor growth', () => {
  for (const [name, make] of OPTIMIZERS) {
    it(`${name}: 200 update + applyUpdates steps`, async () => {
      const opt = make();
      const target = makeGrads(2);
      let params = makeParams();
      let state = opt.init(params);
      const start = tf.memory().numTensors;
      const { growth, perStep } = await trackTensors(
        () => {
          const grads = tree.zipMap(params, target, (p, t) =>
            tf.tidy(() => tf.mul(tf.sub(p, t), 2)),
          );
          const r = opt.update(grads, state, params);
          const next = applyUpdates(params, r.updates);
          tree.dispose([params, state, grads, r.updates]);
          params = next;
          state = r.state;
        },
        { steps: 200, warmup: 2 },
      );
      expect(growth).toBe(0);
      expect(new Set(perStep).size).toBe(1);
      expect(tf.memory().numTensors).toBe(start);
      tree.dispose([params, state, target]);
    });
  }

  it('init allocates only its state (disposed, nothing is left)', () => {
    const params = makeParams();
    const n = tf.memory().numTensors;
    for (const [, make] of OPTIMIZERS) tree.dispose(make().init(params));
    expect(tf.memory().numTensors).toBe(n);
    tree.dispose(params);
  });
});

describe('structure errors name the path', () => {
  const expectTreeError = (f: () => unknown, path: string, ...parts: string[]): void => {
    let err: unknown;
    try {
      f();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TreeError);
    expect((err as TreeError).path).toBe(path);
    for (const p of parts) expect((err as Error).message).toContain(p);
  };

  it('grads with a different structure than the state', () => {
    const params = makeParams();
    for (const [name, make] of OPTIMIZERS) {
      if (name === 'identity' || name === 'chain()' || name === 'scale(schedule)') continue;
      const opt = make();
      const state = opt.init(params);
      const grads = { ...(params as object), dense: { kernel: tf.zeros([3, 2]) } } as ParamTree;
      expectTreeError(() => opt.update(grads, state, params), 'dense', "'dense'", 'bias');
      tree.dispose([state, grads]);
    }
    tree.dispose(params);
  });

  it('a state from other params: its flat moments have another length', () => {
    const opt = adam({ learningRate: 0.1 });
    const params = makeParams(); // 12 scalars in 4 leaves
    const other = { ...(params as object), layers: [tf.scalar(1)] } as ParamTree; // 9
    const state = opt.init(other);
    expectTreeError(
      () => opt.update(params, state, params),
      'mu',
      'adam',
      'state.mu',
      'shape [9]',
      '12 scalars in 4 leaves',
    );
    // a moment tree shaped like the params (not the flat buffer init returns) is refused too
    const treeState = [{ ...state[0], mu: params, nu: params }, state[1]];
    expectTreeError(() => opt.update(params, treeState as never, params), 'mu', 'adam', 'flat');
    tree.dispose([params, state, other]);
  });

  it('a leaf with another shape', () => {
    const opt = rmsprop({ learningRate: 0.1, centered: true });
    const params = makeParams();
    const state = opt.init(params);
    const grads = tree.map(params, (p, path) =>
      path === 'dense.bias' ? tf.zeros([3]) : tf.zerosLike(p),
    );
    // with the params (as trainStep passes them) the path is named
    expectTreeError(() => opt.update(grads, state, params), 'dense.bias', 'rmsprop', '[3]', '[2]');
    const blocks: GradientTransformation[] = [
      trace({ decay: 0.5 }),
      scaleByAdam(),
      scaleByRms(),
      scaleByStddev(),
    ];
    for (const t of blocks) {
      const s = t.init(params);
      expectTreeError(() => t.update(grads, s, params), 'dense.bias', '[3]', '[2]');
      tree.dispose(s);
    }
    // without them, the flat state's length does not match
    expectTreeError(() => opt.update(grads, state), 'mu', 'rmsprop', 'shape [12]', '13 scalars');
    expectTreeError(() => applyUpdates(params, grads), 'dense.bias', 'applyUpdates');
    tree.dispose([params, state, grads]);
  });

  it('a chain state of the wrong length', () => {
    const opt = chain(clipByGlobalNorm(1), sgd({ learningRate: 0.1 }));
    const params = makeParams();
    expectTreeError(() => opt.update(params, [{}] as never), '', 'chain', '2 states');
    tree.dispose(params);
  });

  it('a non-tensor leaf in the grads', () => {
    const opt = sgd({ learningRate: 0.1, momentum: 0.5 });
    const params = { a: tf.zeros([2]) };
    const state = opt.init(params);
    expectTreeError(() => opt.update({ a: 3 } as unknown as ParamTree, state), 'a', 'tf.Tensor');
    tree.dispose([params, state]);
  });

  it('adamw without params says how to pass them', () => {
    const opt = adamw({ learningRate: 0.1 });
    const params = makeParams();
    const state = opt.init(params);
    expect(() => opt.update(params, state)).toThrow(
      /adamw: .*needs the current params.*third argument/,
    );
    tree.dispose([params, state]);
  });

  it('a bad count in the state', () => {
    const opt = scaleByAdam();
    const params = { a: tf.zeros([2]) };
    const state = opt.init(params);
    expectTreeError(
      () => opt.update(params, { ...state, count: -1 }),
      'count',
      'scaleByAdam',
      '>= 0',
    );
    tree.dispose([params, state]);
  });
});

describe('clipByGlobalNorm', () => {
  const vec = fc.array(fc.double({ min: -10, max: 10, noNaN: true }), {
    minLength: 7,
    maxLength: 7,
  });
  const build = (v: readonly number[]): ParamTree => ({
    a: tf.tensor1d(v.slice(0, 3)),
    b: [tf.tensor2d(v.slice(3, 7), [2, 2])],
  });
  const values = (t: ParamTree): number[] =>
    tree.leaves(t).flatMap((x) => Array.from(x.dataSync()));

  it('leaves grads whose global norm is below maxNorm unchanged (bit for bit)', () => {
    fc.assert(
      fc.property(vec, fc.double({ min: 1.01, max: 100, noNaN: true }), (v, margin) => {
        const grads = build(v);
        const norm = Math.hypot(...values(grads));
        const opt = clipByGlobalNorm(norm === 0 ? 1 : norm * margin);
        const { updates } = opt.update(grads, opt.init(grads));
        expect(values(updates)).toEqual(values(grads));
        tree.dispose([grads, updates]);
      }),
    );
  });

  it('rescales larger grads to norm maxNorm, keeping the direction', () => {
    fc.assert(
      fc.property(vec, fc.double({ min: 0.01, max: 0.99, noNaN: true }), (v, frac) => {
        const grads = build(v);
        const g = values(grads);
        const norm = Math.hypot(...g);
        fc.pre(norm > 1e-3);
        const maxNorm = norm * frac;
        const opt = clipByGlobalNorm(maxNorm);
        const { updates } = opt.update(grads, opt.init(grads));
        const u = values(updates);
        expect(Math.hypot(...u)).toBeCloseTo(maxNorm, 4);
        u.forEach((x, i) => expect(x).toBeCloseTo(((g[i] as number) * maxNorm) / norm, 4));
        tree.dispose([grads, updates]);
      }),
    );
  });

  it('globalNorm is the Euclidean norm over all leaves, 0 for an empty tree', () => {
    const t = build([3, 4, 0, 0, 0, 12, 0]);
    const n = globalNorm(t);
    expect(n.dataSync()[0]).toBeCloseTo(13, 5);
    const z = globalNorm({});
    expect(z.dataSync()[0]).toBe(0);
    tree.dispose([t, n, z]);
  });

  it('propagates NaN in the grads, as optax does', () => {
    const grads = { a: tf.tensor1d([NaN, 1]) };
    const opt = clipByGlobalNorm(1);
    const { updates } = opt.update(grads, opt.init(grads));
    expect(Array.from((updates as { a: tf.Tensor }).a.dataSync()).every(Number.isNaN)).toBe(true);
    tree.dispose([grads, updates]);
  });
});

describe('building blocks', () => {
  it('scale, scaleByLearningRate (flip sign) and scaleBySchedule (count from 0)', () => {
    const g = { a: tf.tensor1d([1, -2]) };
    const val = (t: ParamTree): number[] => Array.from((t as { a: tf.Tensor }).a.dataSync());
    const s = scale(3);
    const r1 = s.update(g, s.init(g));
    expect(val(r1.updates)).toEqual([3, -6]);
    const lr = scaleByLearningRate(0.5);
    const r2 = lr.update(g, lr.init(g));
    expect(val(r2.updates)).toEqual([-0.5, 1]);
    const sch = scaleBySchedule((c) => c + 1);
    const s0 = sch.init(g);
    expect(s0).toEqual({ count: 0 });
    const a = sch.update(g, s0);
    const b = sch.update(g, a.state);
    expect(val(a.updates)).toEqual([1, -2]);
    expect(val(b.updates)).toEqual([2, -4]);
    expect(b.state).toEqual({ count: 2 });
    const noFlip = scaleByLearningRate((c) => 0.1 * (c + 1), false);
    const r3 = noFlip.update(g, noFlip.init(g));
    expect(val(r3.updates)[0]).toBeCloseTo(0.1, 6);
    tree.dispose([g, r1.updates, r2.updates, a.updates, b.updates, r3.updates]);
  });

  it('chain state is the tuple of the states', () => {
    const params = { a: tf.zeros([2]) };
    const opt = chain(
      scaleByAdam(),
      scaleByLearningRate((c) => 0.1 / (c + 1)),
    );
    const state = opt.init(params);
    expect(Array.isArray(state)).toBe(true);
    expect(state[0].count).toBe(0);
    expect(state[1]).toEqual({ count: 0 });
    const r = opt.update(params, state);
    expect(r.state[0].count).toBe(1);
    expect(r.state[1]).toEqual({ count: 1 });
    tree.dispose([params, state, r.updates, r.state]);
  });
});
