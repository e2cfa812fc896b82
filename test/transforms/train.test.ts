import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bayesianLinear, relu, serial } from '../../src/layers';
import { adam, minibatchWeight, sgd, type AdamState, type SgdState } from '../../src/optim';
import { foldIn, key, uniformArray } from '../../src/params/random';
import { clone, dispose, leaves, paths } from '../../src/params/tree';
import {
  TrainingError,
  elbo,
  fit,
  gaussianNll,
  mse,
  permutation,
  predictive,
  trainStep,
  type BatchInfo,
  type FitOptions,
  type TrainState,
} from '../../src/transforms';
import { ConfigError, ParamError } from '../../src/errors';
import { trackTensors } from '../helpers/memory';
import { expectBitIdentical } from '../helpers/reference';

const model = serial({
  hidden: bayesianLinear({ inFeatures: 1, outFeatures: 8, posteriorRhoInit: -4 }),
  act: relu(),
  out: bayesianLinear({ inFeatures: 8, outFeatures: 1, posteriorRhoInit: -4 }),
});

function data(n: number) {
  const xs = uniformArray(key(100), n, -1, 1);
  const x = tf.tensor2d(xs, [n, 1]);
  const y = tf.tensor2d(
    xs.map((v) => Math.sin(3 * v)),
    [n, 1],
  );
  return { x, y };
}

const initParams = (lik: ReturnType<typeof gaussianNll>, seed = 0) => ({
  model: model.init(key(seed), [-1, 1]).params,
  likelihood: lik.init(),
});

describe('trainStep', () => {
  it('does not grow the tensor count over 200 steps, and lowers the loss', async () => {
    const lik = gaussianNll();
    const opt = adam({ learningRate: 1e-2 });
    const step = trainStep(elbo(model, lik, { numSamples: 2 }), opt);
    const { x, y } = data(16);
    const params = initParams(lik);
    let state: TrainState<ReturnType<typeof initParams>, AdamState> = {
      params,
      optState: opt.init(params),
      step: 0,
    };
    const losses: number[] = [];
    const k = key(1);
    const growth = await trackTensors(
      (i) => {
        const r = step(state, x, y, foldIn(k, i + 1), 1 / 16);
        state = r.state;
        losses.push(r.loss);
      },
      { steps: 200, warmup: 1 },
    );
    expect(growth.growth).toBe(0);
    expect(new Set(growth.perStep).size).toBe(1);
    expect(state.step).toBe(201);
    const first = losses.slice(0, 10).reduce((a, b) => a + b) / 10;
    const last = losses.slice(-10).reduce((a, b) => a + b) / 10;
    expect(last).toBeLessThan(first);
    dispose([state.params, state.optState as never, x, y]);
  });

  it('a NaN input throws TrainingError and leaves the state passed in usable', () => {
    const lik = gaussianNll();
    const opt = adam({ learningRate: 1e-2 });
    const step = trainStep(elbo(model, lik), opt);
    const params = initParams(lik);
    const state = { params, optState: opt.init(params), step: 3 };
    const snapshot = clone(params);
    const x = tf.tensor2d([[0.5], [NaN]]);
    const y = tf.tensor2d([[1], [2]]);
    const before = tf.memory().numTensors;
    let err: unknown;
    try {
      step(state, x, y, key(0), 0.5);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TrainingError);
    expect((err as TrainingError).step).toBe(3);
    expect(Number.isNaN((err as TrainingError).loss)).toBe(true);
    expect((err as Error).message).toMatch(/Argument #1 .*NaN/);
    expect((err as TrainingError).state).toBe(state); // the last good state travels with the error
    expect(tf.memory().numTensors).toBe(before);
    // nothing disposed, nothing changed
    for (const t of leaves(state.params)) expect((t as tf.Tensor).isDisposed).toBe(false);
    const ps = paths(params);
    leaves(params).forEach((t, i) =>
      expectBitIdentical(t as tf.Tensor, leaves(snapshot)[i] as tf.Tensor, ps[i]),
    );
    // and it can be used for a good step
    const xGood = tf.tensor2d([[0.5], [0.1]]);
    const r = step(state, xGood, y, key(0), 0.5);
    expect(Number.isFinite(r.loss)).toBe(true);
    expect(r.state.step).toBe(4);
    for (const t of leaves(state.params)) expect((t as tf.Tensor).isDisposed).toBe(true); // ownership taken
    dispose([r.state.params, r.state.optState as never, snapshot, x, y, xGood]);
  });
});

describe('predictive and fit: memory', () => {
  it('repeated predictive calls do not grow the tensor count', async () => {
    const { params } = model.init(key(0), [-1, 1]);
    const x = tf.ones([5, 1]);
    const growth = await trackTensors(
      (i) => predictive(model, params, x, { key: key(i + 10), numSamples: 4 }),
      { steps: 20, release: (p) => dispose([p.mean, p.std, p.samples]) },
    );
    expect(growth.growth).toBe(0);
    dispose([params, x]);
  });

  it('fit keeps the tensor count flat over epochs and across calls', async () => {
    const lik = mse();
    const { x, y } = data(20);
    const counts: number[] = [];
    const run = () =>
      fit({
        loss: elbo(model, lik),
        optimizer: adam({ learningRate: 1e-2 }),
        params: { model: model.init(key(0), [-1, 1]).params, likelihood: lik.init() },
        x,
        y,
        key: key(3),
        epochs: 6,
        batchSize: 6,
        progress: false,
        onEpoch: () => {
          counts.push(tf.memory().numTensors);
        },
      });
    const growth = await trackTensors(run, {
      steps: 3,
      release: (r) => dispose([r.params, r.optState as never]),
    });
    expect(growth.growth).toBe(0);
    expect(new Set(counts).size).toBe(1);
    dispose([x, y]);
  });
});

describe('fit', () => {
  it('from a fixed key is reproducible bit for bit; another key differs', async () => {
    const lik = gaussianNll();
    const { x, y } = data(24);
    const run = (seed: number) =>
      fit({
        loss: elbo(model, lik, { numSamples: 2 }),
        optimizer: adam({ learningRate: 2e-2 }),
        params: initParams(lik),
        x,
        y,
        key: key(seed),
        epochs: 4,
        batchSize: 8,
        progress: false,
      });
    const a = await run(5);
    const b = await run(5);
    const c = await run(6);
    expect(a.step).toBe(12);
    expect(a.history.length).toBe(4);
    expect(a.history).toEqual(b.history);
    const ps = paths(a.params);
    leaves(a.params).forEach((t, i) =>
      expectBitIdentical(t as tf.Tensor, leaves(b.params)[i] as tf.Tensor, ps[i]),
    );
    expect(c.history).not.toEqual(a.history);
    dispose([
      a.params,
      b.params,
      c.params,
      a.optState as never,
      b.optState as never,
      c.optState as never,
      x,
      y,
    ]);
  });

  it('follows its documented schedule: shuffles, minibatches, step keys and klWeight', async () => {
    const lik = mse();
    const N = 10;
    const x = tf.tensor2d(
      Array.from({ length: N }, (_, i) => i),
      [N, 1],
    );
    const y = tf.zeros([N, 1]);
    const inner = elbo(model, lik);
    for (const shuffle of [true, false]) {
      for (const weighted of [true, false]) {
        const seen: { xs: number[]; k: readonly number[]; w: number }[] = [];
        const infos: BatchInfo[] = [];
        const k = key(42);
        const r = await fit({
          loss: (p: Parameters<typeof inner>[0], xb, yb, kb, w) => {
            seen.push({ xs: Array.from(xb.dataSync()), k: [...kb], w });
            return inner(p, xb, yb, kb, w);
          },
          optimizer: adam({ learningRate: 1e-3 }),
          params: { model: model.init(key(0), [-1, 1]).params, likelihood: lik.init() },
          x,
          y,
          key: k,
          epochs: 2,
          batchSize: 4,
          shuffle,
          progress: false,
          ...(weighted
            ? {
                klWeight: (b: BatchInfo) => {
                  infos.push(b);
                  return 0.1 * (b.batchIndex + 1);
                },
              }
            : {}),
        });
        expect(seen.length).toBe(6);
        expect(r.step).toBe(6);
        for (let e = 0; e < 2; e++) {
          const ke = foldIn(k, e);
          const order = shuffle
            ? Array.from(permutation(foldIn(ke, 0), N))
            : Array.from({ length: N }, (_, i) => i);
          for (let b = 0; b < 3; b++) {
            const call = seen[e * 3 + b]!;
            expect(call.xs).toEqual(order.slice(4 * b, 4 * b + 4));
            expect(call.k).toEqual([...foldIn(foldIn(ke, 1), b)]);
            expect(call.w).toBeCloseTo(weighted ? 0.1 * (b + 1) : 1 / N, 12);
            if (weighted)
              expect(infos[e * 3 + b]).toEqual({
                epoch: e,
                batchIndex: b,
                numBatches: 3,
                batchSize: b < 2 ? 4 : 2, // this batch's size: the last one is smaller
                numExamples: N,
                step: e * 3 + b,
              });
          }
        }
        dispose([r.params, r.optState as never]);
      }
    }
    dispose([x, y]);
  });

  it('stops early when onEpoch returns false, and validates its options', async () => {
    const lik = mse();
    const { x, y } = data(10);
    const r = await fit({
      loss: elbo(model, lik),
      optimizer: adam({ learningRate: 1e-2 }),
      params: { model: model.init(key(0), [-1, 1]).params, likelihood: lik.init() },
      x,
      y,
      key: key(0),
      epochs: 10,
      batchSize: 5,
      progress: false,
      onEpoch: ({ epoch }) => epoch < 1,
    });
    expect(r.history.length).toBe(2);
    expect(r.step).toBe(4);
    dispose([r.params, r.optState as never]);
    const bad = {
      loss: elbo(model, lik),
      optimizer: adam({ learningRate: 1e-2 }),
      params: {} as never,
      x,
      y: tf.zeros([3, 1]),
      key: key(0),
      epochs: -1,
      batchSize: 0,
    };
    // one ConfigError naming fit and listing every problem, one per line
    await expect(fit(bad)).rejects.toThrow(ConfigError);
    await expect(fit(bad)).rejects.toThrow(
      /^fit: invalid configuration \(3 problems\).*x has 10 examples but y has 3.*epochs.*batchSize/s,
    );
    dispose([x, y, bad.y]);
  });

  it('hands its last good state over with a TrainingError (nothing lost, nothing leaked)', async () => {
    const lik = mse();
    const x = tf.tensor2d([[0.1], [0.2], [0.3], [NaN]]);
    const y = tf.zeros([4, 1]);
    const before = tf.memory().numTensors;
    let err: unknown;
    try {
      await fit({
        loss: elbo(model, lik),
        optimizer: adam({ learningRate: 1e-2 }),
        params: { model: model.init(key(0), [-1, 1]).params, likelihood: lik.init() },
        x,
        y,
        key: key(0),
        epochs: 2,
        batchSize: 2,
        shuffle: false,
        progress: false,
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TrainingError);
    const st = (err as TrainingError).state;
    expect(st.step).toBe(1); // the first minibatch trained, the second (with the NaN) did not
    for (const t of leaves(st.params)) expect((t as tf.Tensor).isDisposed).toBe(false);
    dispose([st.params, st.optState as never]);
    expect(tf.memory().numTensors).toBe(before);
    dispose([x, y]);
  });
});

describe('fit: the KL weight of a minibatch', () => {
  // A step's loss is `mean NLL of the batch + klWeight * KL`: Blundell et al.'s F_i = pi_i KL +
  // (summed NLL of the batch) divided by the batch size B_i. Over an epoch, sum_i B_i * loss_i
  // must be the full objective, dataset NLL + KL, i.e. sum_i B_i * klWeight_i = sum_i pi_i = 1.
  type P = { readonly w: tf.Tensor };
  const N = 10; // batchSize 4: batches of 4, 4 and 2
  const KL = 3.25;

  /** One epoch with a loss `mean(x_batch) + klWeight * KL`; what each step saw. */
  async function epoch(klWeight: FitOptions<P, SgdState>['klWeight']) {
    const x = tf.tensor2d(
      Array.from({ length: N }, (_, i) => i + 1),
      [N, 1],
    );
    const y = tf.zeros([N, 1]);
    const steps: { size: number; meanNll: number; w: number }[] = [];
    const loss = (p: P, xb: tf.Tensor, _yb: tf.Tensor, _k: unknown, w: number): tf.Scalar => {
      const xs = Array.from(xb.dataSync());
      steps.push({ size: xs.length, meanNll: xs.reduce((a, v) => a + v, 0) / xs.length, w });
      return tf.add(tf.mean(xb), tf.add(w * KL, tf.mul(tf.sum(p.w), 0))) as tf.Scalar;
    };
    const r = await fit({
      loss,
      optimizer: sgd({ learningRate: 0 }),
      params: { w: tf.zeros([1]) },
      x,
      y,
      key: key(3),
      epochs: 1,
      batchSize: 4,
      progress: false,
      ...(klWeight === undefined ? {} : { klWeight }),
    });
    dispose([r.params, x, y]);
    const objective = steps.reduce((a, s) => a + s.size * (s.meanNll + s.w * KL), 0);
    const klPaid = steps.reduce((a, s) => a + s.size * s.w, 0);
    return { steps, objective, klPaid };
  }

  it('as documented, minibatchWeight(i, M) / batchSize pays the KL once per epoch (exactly)', async () => {
    const r = await epoch(
      ({ batchIndex, numBatches, batchSize }) =>
        minibatchWeight(batchIndex, numBatches) / batchSize,
    );
    expect(r.steps.map((s) => s.size)).toEqual([4, 4, 2]);
    // klWeight_i = pi_i / B_i with pi = (4/7, 2/7, 1/7) and B = (4, 4, 2): the last batch's own size
    expect(r.steps.map((s) => s.w)).toEqual([4 / 7 / 4, 2 / 7 / 4, 1 / 7 / 2]);
    expect(r.klPaid).toBeCloseTo(1, 14);
    expect(r.objective).toBeCloseTo(55 + KL, 12); // dataset NLL (1 + ... + 10) + KL
  });

  it('the default 1 / N pays it once per epoch too; minibatchWeight alone over-weights it', async () => {
    const byDefault = await epoch(undefined);
    expect(byDefault.klPaid).toBeCloseTo(1, 14);
    expect(byDefault.objective).toBeCloseTo(55 + KL, 12);
    // the use the docs used to show: pi_i on the MEAN NLL weighs the KL B_i times too much
    const old = await epoch(({ batchIndex, numBatches }) =>
      minibatchWeight(batchIndex, numBatches),
    );
    expect(old.klPaid).toBeCloseTo((4 * 4 + 4 * 2 + 2 * 1) / 7, 12);
    expect(old.klPaid).toBeGreaterThan(3);
  });
});

describe('fit: params', () => {
  it('a params leaf that is not a live tensor throws a ParamError naming its path', async () => {
    const x = tf.zeros([4, 1]);
    const y = tf.zeros([4, 1]);
    const loss = (p: { a: { b: tf.Tensor } }, xb: tf.Tensor): tf.Scalar =>
      tf.sum(tf.mul(p.a.b, tf.mean(xb))) as tf.Scalar;
    const common = { loss, optimizer: sgd({ learningRate: 0.1 }), x, y, key: key(0) };
    const dead = tf.ones([1]);
    dead.dispose();
    const errs = await Promise.all(
      [{ a: { b: dead } }, { a: { b: 3 as never } }].map((params) =>
        fit({ ...common, params, epochs: 1, batchSize: 2 }).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    );
    for (const e of errs) {
      expect(e).toBeInstanceOf(ParamError);
      expect((e as ParamError).path).toBe('a.b');
    }
    expect((errs[0] as Error).message).toMatch(/^a\.b: fit: the params leaf is a disposed tensor/);
    expect((errs[1] as Error).message).toMatch(/^a\.b: fit: the params leaf is 3; expected a live/);
    dispose([x, y]);
  });
});

describe('permutation', () => {
  it('is a permutation of 0..n-1, determined by the key (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 31 }),
        fc.integer({ min: 0, max: 200 }),
        (seed, n) => {
          const p = permutation(key(seed), n);
          expect(p.length).toBe(n);
          expect(Array.from(p).sort((a, b) => a - b)).toEqual(
            Array.from({ length: n }, (_, i) => i),
          );
          expect(Array.from(permutation(key(seed), n))).toEqual(Array.from(p));
          if (n >= 20) expect(Array.from(permutation(key(seed + 1), n))).not.toEqual(Array.from(p));
        },
      ),
      { numRuns: 30 },
    );
    // it is the argsort of uniformArray(key, n)
    const u = uniformArray(key(4), 50);
    const ref = Array.from({ length: 50 }, (_, i) => i).sort((a, b) => u[a]! - u[b]! || a - b);
    expect(Array.from(permutation(key(4), 50))).toEqual(ref);
  });
});
