import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { useBackend } from '../../src/backend';
import { serial } from '../../src/layers/combinators';
import { flatten } from '../../src/layers/deterministic';
import { bayesianEmbedding, type BayesianEmbeddingOptions } from '../../src/layers/embedding';
import { ConfigError, IndexError, ShapeError } from '../../src/errors';
import { bayesianLinear } from '../../src/layers/linear';
import { lastTimeStep, bayesianGRU } from '../../src/layers/rnn';
import type { NoiseFn } from '../../src/layers/types';
import { adam } from '../../src/optim/optimizers';
import { normalPrior } from '../../src/params/distributions';
import { foldIn, key, uniformArray } from '../../src/params/random';
import { dispose, leaves, type ParamTree } from '../../src/params/tree';
import { elbo, loopSamples, vmapSamples } from '../../src/transforms/elbo';
import { valueAndGrad } from '../../src/transforms/grad';
import { softmaxCrossEntropy } from '../../src/transforms/likelihoods';
import { trainStep } from '../../src/transforms/train';
import { trackTensors } from '../helpers/memory';
import {
  LOG_2PI,
  expectBitIdentical,
  expectClose,
  logMixture64,
  logSoftplus64,
  num,
  softplus64,
  vals,
} from '../helpers/reference';
import { TEST_BACKEND } from '../setup';

afterAll(async () => {
  await useBackend(TEST_BACKEND);
});

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

/** Random int32 indices in [0, V) of the given shape, from a seed. */
function indices(seed: number, shape: number[], V: number): { data: Int32Array; t: tf.Tensor } {
  const n = shape.reduce((a, d) => a * d, 1);
  const data = Int32Array.from(uniformArray(key(seed), n, 0, V), (u) =>
    Math.min(V - 1, Math.floor(u)),
  );
  return { data, t: tf.tensor(data, shape, 'int32') };
}

/** Fixed noise from JS arrays, recorded per path. */
function fixedNoise(seed: number): { noise: NoiseFn; eps: Map<string, Float32Array> } {
  const eps = new Map<string, Float32Array>();
  const noise: NoiseFn = (path, shape) => {
    const n = shape.reduce((a, d) => a * d, 1);
    const e = eps.get(path) ?? uniformArray(foldIn(key(seed), eps.size), n, -2, 2);
    eps.set(path, e);
    return tf.tensor(e, [...shape]);
  };
  return { noise, eps };
}

const shapeArb = fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 });

describe('bayesianEmbedding: lookup', () => {
  it('matches a direct lookup of mu (mean) and of mu + softplus(rho) * eps (sampled)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 4 }),
        shapeArb,
        fc.integer({ min: 0, max: 2 ** 30 }),
        (V, D, shape, seed) => {
          const emb = bayesianEmbedding({
            numEmbeddings: V,
            embeddingDim: D,
            posteriorRhoInit: -1,
            name: 'emb',
          });
          const { params, outputShape } = emb.init(key(seed), [-1, ...shape.slice(1)]);
          expect(outputShape).toEqual([-1, ...shape.slice(1), D]);
          const { data, t } = indices(seed + 1, shape, V);
          const mu = vals(params.weight.mu);
          const rho = vals(params.weight.rho);
          tf.tidy(() => {
            const m = emb.apply(params, t, { mode: 'mean' });
            expect(m.out.shape).toEqual([...shape, D]);
            const wantMean = Array.from(data).flatMap((i) => mu.slice(i * D, (i + 1) * D));
            expect(vals(m.out)).toEqual(wantMean);
            const { noise, eps } = fixedNoise(seed);
            const s = emb.apply(params, t, { noise });
            const e = eps.get('emb.weight') as Float32Array;
            const w = mu.map((v, j) => v + softplus64(rho[j] as number) * (e[j] as number));
            const want = Array.from(data).flatMap((i) => w.slice(i * D, (i + 1) * D));
            expectClose(vals(s.out), want, 1e-6, 1e-6, 'sampled lookup');
            // the MC KL over the whole table (no padding): log q(w) - log p(w)
            const klRef = w.reduce(
              (a, wi, j) =>
                a +
                (-logSoftplus64(rho[j] as number) - 0.5 * (e[j] as number) ** 2 - 0.5 * LOG_2PI) -
                logMixture64(wi, 0.5, 1, 0.002),
              0,
            );
            expect(Math.abs(num(s.kl) - klRef)).toBeLessThan(1e-5 * Math.abs(klRef) + 1e-3);
          });
          dispose([params, t]);
        },
      ),
      { numRuns: 20 },
    );
  });

  it('paddingIdx: zeros at padding positions, zero gradient for the padding row, row left out of the KL', () => {
    for (const paddingIdx of [2, -3]) {
      const V = 5;
      const D = 3;
      const emb = bayesianEmbedding({
        numEmbeddings: V,
        embeddingDim: D,
        paddingIdx,
        posteriorRhoInit: -1,
        name: 'emb',
      });
      expect(emb.config['paddingIdx']).toBe(2);
      const { params } = emb.init(key(3), [-1, 4]);
      const data = [0, 2, 2, 4, 1, 2, 3, 0];
      const x = tf.tensor2d(data, [2, 4], 'int32');
      const R = tf.tensor3d(uniformArray(key(4), 2 * 4 * D, -1, 1), [2, 4, D]);
      for (const ctx of [{ mode: 'mean' as const }, { key: key(5) }]) {
        const { value, grads } = valueAndGrad((p: typeof params) => {
          const r = emb.apply(p, x, ctx);
          return tf.add(tf.sum(tf.mul(r.out, R)), r.kl) as tf.Scalar;
        })(params);
        const out = emb.apply(params, x, ctx).out;
        const o = vals(out);
        data.forEach((idx, pos) => {
          const row = o.slice(pos * D, (pos + 1) * D);
          if (idx === 2) expect(row.every((v) => v === 0)).toBe(true);
          else expect(row.some((v) => v !== 0)).toBe(true);
        });
        // the padding row's mu and rho get exactly no gradient, the others do
        const gMu = vals(grads.weight.mu);
        const gRho = vals(grads.weight.rho);
        expect(gMu.slice(2 * D, 3 * D).every((v) => v === 0)).toBe(true);
        expect(gRho.slice(2 * D, 3 * D).every((v) => v === 0)).toBe(true);
        for (const row of [0, 1, 3, 4]) {
          expect(gMu.slice(row * D, (row + 1) * D).some((v) => v !== 0)).toBe(true);
        }
        dispose([value, grads, out]);
      }
      // the KL is that of the other rows (float64 reference with the same noise)
      const { noise, eps } = fixedNoise(9);
      const r = emb.apply(params, x, { noise });
      const e = eps.get('emb.weight') as Float32Array;
      const mu = vals(params.weight.mu);
      const rho = vals(params.weight.rho);
      let klRef = 0;
      mu.forEach((m, j) => {
        if (Math.floor(j / D) === 2) return;
        const w = m + softplus64(rho[j] as number) * (e[j] as number);
        klRef +=
          -logSoftplus64(rho[j] as number) -
          0.5 * (e[j] as number) ** 2 -
          0.5 * LOG_2PI -
          logMixture64(w, 0.5, 1, 0.002);
      });
      expect(Math.abs(num(r.kl) - klRef)).toBeLessThan(1e-5 * Math.abs(klRef) + 1e-3);
      // and klDivergence agrees with apply
      expect(num(emb.klDivergence(params, { noise }))).toBeCloseTo(num(r.kl), 3);
      dispose([params, x, R, r]);
    }
  });

  it('paddingIdx with the closed-form KL leaves the padding row out too', () => {
    const opts = {
      numEmbeddings: 4,
      embeddingDim: 2,
      prior: normalPrior(0, 0.5),
      kl: 'closed' as const,
    };
    const withPad = bayesianEmbedding({ ...opts, paddingIdx: 0 });
    const { params } = withPad.init(key(1), [-1, 3]);
    const x = tf.tensor1d([1, 2, 3], 'int32');
    const full = num(bayesianEmbedding(opts).apply(params, x, { key: key(2) }).kl);
    const rowKl = tf.tidy(() =>
      num(
        normalPrior(0, 0.5).klFrom!({
          mu: tf.slice(params.weight.mu, [0, 0], [1, 2]),
          rho: tf.slice(params.weight.rho, [0, 0], [1, 2]),
        }),
      ),
    );
    expect(num(withPad.apply(params, x, { key: key(2) }).kl)).toBeCloseTo(full - rowKl, 4);
    dispose([params, x]);
  });

  it('maxNorm / normType: norms <= maxNorm, direction kept, short rows unchanged, finite gradients', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 3, 0.5, Infinity),
        fc.double({ min: 0.05, max: 1.5, noNaN: true }),
        fc.integer({ min: 0, max: 2 ** 30 }),
        (p, maxNorm, seed) => {
          const V = 6;
          const D = 4;
          const emb = bayesianEmbedding({
            numEmbeddings: V,
            embeddingDim: D,
            maxNorm,
            normType: p,
            posteriorMuInit: 0,
            posteriorRhoInit: 0,
          });
          const { params } = emb.init(key(seed), [-1, 5]);
          const { data, t } = indices(seed + 1, [3, 5], V);
          const pnorm = (v: number[]) =>
            p === Infinity
              ? Math.max(...v.map(Math.abs))
              : v.reduce((a, x) => a + Math.abs(x) ** p, 0) ** (1 / p);
          tf.tidy(() => {
            // a zero row (mean mode) must give finite gradients
            const zeroRow = {
              weight: {
                mu: tf.concat([
                  tf.zeros([1, D]),
                  tf.slice(tf.mul(params.weight.mu, 10), [1, 0], [V - 1, D]),
                ]),
                rho: params.weight.rho,
              },
            };
            for (const [pp, ctx] of [
              [params, { key: key(seed + 2) }],
              [zeroRow, { mode: 'mean' as const }],
            ] as const) {
              const { noise, eps } = fixedNoise(seed);
              const c = 'key' in ctx ? { noise } : ctx;
              const out = vals(emb.apply(pp, t, c).out);
              const table =
                'key' in ctx
                  ? vals(pp.weight.mu).map(
                      (m, j) =>
                        m +
                        softplus64(vals(pp.weight.rho)[j] as number) *
                          (eps.get('bayesianEmbedding.weight')![j] as number),
                    )
                  : vals(pp.weight.mu);
              Array.from(data).forEach((idx, pos) => {
                const got = out.slice(pos * D, (pos + 1) * D);
                const raw = table.slice(idx * D, (idx + 1) * D);
                const n = pnorm(raw);
                if (n > maxNorm) {
                  expect(pnorm(got)).toBeLessThanOrEqual(maxNorm * (1 + 1e-5));
                  expect(pnorm(got)).toBeGreaterThan(maxNorm * (1 - 1e-4));
                  // same direction: got = raw * s with s > 0
                  const s = maxNorm / (n + 1e-7);
                  expectClose(
                    got,
                    raw.map((v) => v * s),
                    1e-4,
                    1e-6,
                    'direction',
                  );
                } else {
                  expectClose(got, raw, 1e-6, 1e-7, 'unchanged');
                }
              });
              const g = tf.grad((mu: tf.Tensor) =>
                tf.sum(emb.apply({ weight: { mu, rho: pp.weight.rho } }, t, c).out),
              )(pp.weight.mu);
              expect(vals(g).every(Number.isFinite)).toBe(true);
            }
          });
          dispose([params, t]);
        },
      ),
      { numRuns: 20 },
    );
  });

  it('scaleGradByFreq divides each position’s table gradient by its index count; sparse gives the same gradient', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 6 }),
        fc.integer({ min: 1, max: 3 }),
        shapeArb,
        fc.integer({ min: 0, max: 2 ** 30 }),
        fc.constantFrom(undefined, 0),
        (V, D, shape, seed, paddingIdx) => {
          const { data, t } = indices(seed, shape, V);
          const dyArr = uniformArray(key(seed + 1), data.length * D, -1, 1);
          const counts = new Map<number, number>();
          data.forEach((i) => counts.set(i, (counts.get(i) ?? 0) + 1));
          const ref = (scale: boolean) => {
            const g = new Array<number>(V * D).fill(0);
            data.forEach((idx, pos) => {
              if (idx === paddingIdx) return;
              for (let d = 0; d < D; d++) {
                g[idx * D + d]! +=
                  (dyArr[pos * D + d] as number) / (scale ? (counts.get(idx) as number) : 1);
              }
            });
            return g;
          };
          const base = { numEmbeddings: V, embeddingDim: D, paddingIdx, posteriorRhoInit: -1 };
          const grads: Record<string, number[]> = {};
          for (const [name, o] of [
            ['dense', {}],
            ['sparse', { sparse: true }],
            ['freq', { scaleGradByFreq: true }],
            ['freqSparse', { scaleGradByFreq: true, sparse: true }],
          ] as const) {
            const emb = bayesianEmbedding({ ...base, ...o } as BayesianEmbeddingOptions);
            const { params } = emb.init(key(seed + 2), [-1, ...shape.slice(1)]);
            tf.tidy(() => {
              const dy = tf.tensor(dyArr, [...shape, D]);
              // mean mode: the gradient with respect to mu is the table's gradient
              const g = tf.grad((mu: tf.Tensor) =>
                tf.sum(
                  tf.mul(
                    emb.apply({ weight: { mu, rho: params.weight.rho } }, t, { mode: 'mean' }).out,
                    dy,
                  ),
                ),
              )(params.weight.mu);
              grads[name] = vals(g);
            });
            dispose(params);
          }
          expectClose(grads['dense']!, ref(false), 1e-5, 1e-6, 'dense');
          expectClose(grads['sparse']!, grads['dense']!, 1e-6, 1e-7, 'sparse = dense');
          expectClose(grads['freq']!, ref(true), 1e-5, 1e-6, 'scaled by 1/count');
          expectClose(grads['freqSparse']!, ref(true), 1e-5, 1e-6, 'scaled, sparse');
          t.dispose();
        },
      ),
      { numRuns: 20 },
    );
  });

  it('rejects out-of-range indices (naming layer, index and position) and non-int32 input', () => {
    const model = serial({ tok: bayesianEmbedding({ numEmbeddings: 4, embeddingDim: 2 }) });
    const { params } = model.init(key(0), [-1, 3]);
    const bad = tf.tensor2d([0, 1, 2, 3, 7, 1], [2, 3], 'int32');
    const neg = tf.tensor1d([0, -1], 'int32');
    const flt = tf.tensor1d([0, 1]);
    const before = tf.memory().numTensors;
    const e = errorOf(() => model.apply(params, bad, { key: key(1) }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e).toBeInstanceOf(IndexError);
    expect(e.message).toBe(
      'tok: index 7 at position [1, 1] of the input [2, 3] is out of range [0, 4) (numEmbeddings = 4).',
    );
    const e2 = errorOf(() => vmapSamples(model, 2)(params, neg, { key: key(1) }));
    expect(e2).toBeInstanceOf(IndexError);
    expect(e2.message).toMatch(/^tok: index -1 at position \[1\]/);
    const e3 = errorOf(() => model.apply(params, flt, { mode: 'mean' }));
    expect(e3).toBeInstanceOf(ShapeError);
    expect(e3.message).toMatch(/int32/);
    expect(tf.memory().numTensors).toBe(before);
    dispose([params, bad, neg, flt]);
  });

  it('config errors list every problem', () => {
    const e = errorOf(() =>
      bayesianEmbedding({
        numEmbeddings: 5,
        embeddingDim: 0,
        paddingIdx: 5,
        maxNorm: -1,
        normType: 0,
        scaleGradByFreq: 'yes' as never,
        sparse: 1 as never,
        padding_idx: 0,
      } as never),
    );
    expect(e).toBeInstanceOf(ConfigError);
    const problems = (e as ConfigError).problems;
    expect(problems.length).toBe(7);
    const text = problems.join('\n');
    expect(text).toMatch(/embeddingDim must be a positive integer, got 0/);
    expect(text).toMatch(/paddingIdx must be an integer in .* = \[-5, 5\), got 5/);
    expect(text).toMatch(/maxNorm must be a positive finite number, got -1/);
    expect(text).toMatch(/normType must be a positive number/);
    expect(text).toMatch(/scaleGradByFreq must be true or false/);
    expect(text).toMatch(/sparse must be true or false/);
    expect(text).toMatch(/unknown option 'padding_idx'/);
  });

  it('mean mode is deterministic, has KL 0 and equals forward(mean(params)); freeze', () => {
    const emb = bayesianEmbedding({
      numEmbeddings: 6,
      embeddingDim: 3,
      paddingIdx: 1,
      maxNorm: 0.1,
    });
    const { params } = emb.init(key(0), [-1, 4]);
    const x = tf.tensor2d([0, 1, 2, 5, 5, 4, 3, 1], [2, 4], 'int32');
    const a = emb.apply(params, x, { mode: 'mean' });
    const b = emb.apply(params, x, { mode: 'mean', key: key(3) });
    const f = emb.forward(emb.mean(params), x);
    expectBitIdentical(a.out, b.out, 'mean twice');
    expectBitIdentical(a.out, f, 'forward(mean)');
    expect(num(a.kl)).toBe(0);
    expect(emb.mean(params).weight).toBe(params.weight.mu);
    const frozen = bayesianEmbedding({
      numEmbeddings: 6,
      embeddingDim: 3,
      paddingIdx: 1,
      maxNorm: 0.1,
      freeze: true,
    });
    const fz = frozen.apply(params, x);
    expectBitIdentical(fz.out, a.out, 'freeze without key');
    dispose([params, x, a, b, f, fz]);
  });
});

describe('bayesianEmbedding: vmapSamples, training, backends', () => {
  const optsArb = fc.record({
    paddingIdx: fc.constantFrom(undefined, 0, 3),
    maxNorm: fc.constantFrom(undefined, 0.5),
    scaleGradByFreq: fc.boolean(),
    sparse: fc.boolean(),
    priorMode: fc.constantFrom('mixture', 'closed', 'custom'),
  });

  const makeEmb = (o: {
    paddingIdx?: number;
    maxNorm?: number;
    scaleGradByFreq: boolean;
    sparse: boolean;
    priorMode: string;
  }) =>
    bayesianEmbedding({
      numEmbeddings: 5,
      embeddingDim: 3,
      paddingIdx: o.paddingIdx,
      maxNorm: o.maxNorm,
      scaleGradByFreq: o.scaleGradByFreq,
      sparse: o.sparse,
      posteriorRhoInit: -1,
      ...(o.priorMode === 'closed' ? { prior: normalPrior(0, 1), kl: 'closed' as const } : {}),
      // a custom prior with logProb only (the per-sample fallback)
      ...(o.priorMode === 'custom'
        ? { prior: { name: 'l1', logProb: (w: tf.Tensor) => tf.mul(tf.abs(w), -3) } }
        : {}),
    });

  it('vmapSamples equals loopSamples, values and gradients (property)', () => {
    fc.assert(
      fc.property(
        optsArb,
        fc.integer({ min: 1, max: 3 }),
        shapeArb,
        fc.integer({ min: 0, max: 2 ** 30 }),
        fc.constantFrom(undefined, 'mean' as const),
        (o, S, shape, seed, mode) => {
          const emb = makeEmb(o);
          const { params } = emb.init(key(seed), [-1, ...shape.slice(1)]);
          const { t } = indices(seed + 1, shape, 5);
          tf.tidy(() => {
            const ctx = { key: key(seed + 2), mode };
            const v = vmapSamples(emb, S)(params, t, ctx);
            const l = loopSamples(emb, S)(params, t, ctx);
            expect(v.out.shape).toEqual([S, ...shape, 3]);
            expectClose(vals(v.out), vals(l.out), 1e-6, 1e-6, 'out');
            expectClose(vals(v.kl), vals(l.kl), 1e-5, 1e-3, 'kl');
            const R = tf.tensor(uniformArray(key(seed + 3), S * t.size * 3, -1, 1), [
              S,
              ...shape,
              3,
            ]);
            const loss = (run: typeof vmapSamples) => (p: typeof params) => {
              const r = run(emb, S)(p, t, ctx);
              return tf.add(tf.sum(tf.mul(r.out, R)), tf.sum(r.kl)) as tf.Scalar;
            };
            const gv = valueAndGrad(loss(vmapSamples))(params).grads;
            const gl = valueAndGrad(loss(loopSamples))(params).grads;
            expectClose(vals(gv.weight.mu), vals(gl.weight.mu), 1e-4, 1e-5, 'grad mu');
            expectClose(vals(gv.weight.rho), vals(gl.weight.rho), 1e-4, 1e-5, 'grad rho');
          });
          dispose([params, t]);
        },
      ),
      { numRuns: 20 },
    );
  });

  const classifier = () =>
    serial({
      emb: bayesianEmbedding({
        numEmbeddings: 8,
        embeddingDim: 4,
        paddingIdx: 0,
        scaleGradByFreq: true,
        posteriorRhoInit: -3,
      }),
      gru: bayesianGRU({ inFeatures: 4, outFeatures: 5, posteriorRhoInit: -3 }),
      last: lastTimeStep(),
      out: bayesianLinear({ inFeatures: 5, outFeatures: 3, posteriorRhoInit: -3 }),
    });

  it('no tensor growth over training steps, and the loss goes down', async () => {
    const model = classifier();
    const lik = softmaxCrossEntropy();
    const opt = adam({ learningRate: 0.03 });
    const step = trainStep(elbo(model, lik, { numSamples: 2 }), opt);
    const { data } = indices(1, [24, 6], 8);
    const x = tf.tensor2d(data, [24, 6], 'int32');
    const y = tf.tensor1d(
      Array.from({ length: 24 }, (_, i) => (data[i * 6 + 5] as number) % 3),
      'int32',
    );
    const params = { model: model.init(key(0), [-1, 6]).params, likelihood: lik.init() };
    let state: Parameters<typeof step>[0] = { params, optState: opt.init(params), step: 0 };
    const losses: number[] = [];
    const growth = await trackTensors(
      (i) => {
        const r = step(state, x, y, foldIn(key(2), i + 1), 1 / 24);
        state = r.state;
        losses.push(r.loss);
      },
      { steps: 40 },
    );
    expect(growth.growth).toBe(0);
    expect(new Set(growth.perStep).size).toBe(1);
    expect(losses.slice(-5).reduce((a, b) => a + b)).toBeLessThan(
      losses.slice(0, 5).reduce((a, b) => a + b),
    );
    dispose([state.params as ParamTree, state.optState as never, x, y]);
  });

  function trainShort(seed: number): Float32Array[] {
    const model = classifier();
    const lik = softmaxCrossEntropy();
    const opt = adam({ learningRate: 0.03 });
    const step = trainStep(elbo(model, lik, { numSamples: 2 }), opt);
    const { data } = indices(seed, [8, 5], 8);
    const x = tf.tensor2d(data, [8, 5], 'int32');
    const y = tf.tensor1d(
      Array.from({ length: 8 }, (_, i) => i % 3),
      'int32',
    );
    const params = { model: model.init(key(seed + 1), [-1, 5]).params, likelihood: lik.init() };
    let state: Parameters<typeof step>[0] = { params, optState: opt.init(params), step: 0 };
    for (let i = 0; i < 5; i++) state = step(state, x, y, foldIn(key(seed + 2), i), 1 / 8).state;
    const out = leaves(state.params as ParamTree).map((l) =>
      (l.dataSync() as Float32Array).slice(),
    );
    dispose([state.params as ParamTree, state.optState as never, x, y]);
    return out;
  }

  it('cpu and wasm agree (lookup, padding, maxNorm, gather gradient incl. scaleGradByFreq / sparse); training reproducible on each', async () => {
    const results: Record<string, { out: number[]; grads: number[][]; trained: Float32Array[] }> =
      {};
    for (const backend of ['cpu', 'wasm'] as const) {
      await useBackend(backend);
      const r = { out: [] as number[], grads: [] as number[][], trained: [] as Float32Array[] };
      for (const o of [
        { scaleGradByFreq: false, sparse: false, priorMode: 'mixture' },
        { paddingIdx: 2, maxNorm: 0.3, scaleGradByFreq: true, sparse: false, priorMode: 'mixture' },
        { paddingIdx: 0, scaleGradByFreq: true, sparse: true, priorMode: 'closed' },
      ]) {
        const emb = makeEmb(o);
        const { params } = emb.init(key(7), [-1, 4]);
        const x = tf.tensor2d([0, 2, 2, 4, 1, 3, 3, 3], [2, 4], 'int32');
        const R = tf.tensor4d(uniformArray(key(8), 2 * 2 * 4 * 3, -1, 1), [2, 2, 4, 3]);
        const { value, grads } = valueAndGrad((p: typeof params) => {
          const v = vmapSamples(emb, 2)(p, x, { key: key(9) });
          return tf.add(tf.sum(tf.mul(v.out, R)), tf.sum(v.kl)) as tf.Scalar;
        })(params);
        const a = emb.apply(params, x, { key: key(9) });
        r.out.push(...vals(a.out), num(a.kl), num(value));
        r.grads.push(vals(grads.weight.mu), vals(grads.weight.rho));
        dispose([params, x, R, value, grads, a]);
      }
      const t1 = trainShort(30);
      const t2 = trainShort(30);
      t1.forEach((p, i) =>
        expect(Buffer.from(p.buffer).equals(Buffer.from(t2[i]!.buffer))).toBe(true),
      );
      r.trained = t1;
      results[backend] = r;
    }
    const c = results['cpu']!;
    const w = results['wasm']!;
    expectClose(w.out, c.out, 1e-5, 1e-4, 'out, kl, loss');
    c.grads.forEach((g, i) => expectClose(w.grads[i]!, g, 1e-4, 1e-5, `grad ${i}`));
    c.trained.forEach((t, i) =>
      expectClose(Array.from(w.trained[i]!), Array.from(t), 1e-3, 1e-4, `trained ${i}`),
    );
  });
});

describe('bayesianEmbedding: built with bayesianLayer (padding row out of the KL, noise, paths)', () => {
  const V = 5;
  const D = 3;
  const PAD = 1;
  type PriorMode = 'mixture' | 'custom' | 'closed';
  // a custom prior without logDensity that does not factorise over rows, so that the KL is only
  // right if logProb is called on the kept rows (not "whole table minus the padding row")
  const customShapes: number[][] = [];
  const customPrior = {
    name: 'log1p',
    logProb: (w: tf.Tensor) => {
      customShapes.push([...w.shape]);
      return tf.neg(tf.log1p(tf.sum(tf.square(w))));
    },
  };
  const priorOpts = (mode: PriorMode) =>
    mode === 'closed'
      ? { prior: normalPrior(0, 0.5), kl: 'closed' as const }
      : mode === 'custom'
        ? { prior: customPrior }
        : {};
  const makeEmb = (mode: PriorMode, o: Partial<BayesianEmbeddingOptions> = {}) =>
    bayesianEmbedding({
      numEmbeddings: V,
      embeddingDim: D,
      paddingIdx: PAD,
      posteriorRhoInit: -1,
      name: 'emb',
      ...priorOpts(mode),
      ...o,
    });

  /** The noise of sample `s`: depends on the sample index; records every request. */
  const noiseOf = (seed: number, s: number): Float32Array =>
    uniformArray(foldIn(key(seed), s), V * D, -2, 2);
  function sampleNoise(seed: number): {
    noise: NoiseFn;
    calls: { path: string; shape: number[]; sample: number }[];
  } {
    const calls: { path: string; shape: number[]; sample: number }[] = [];
    const noise: NoiseFn = (path, shape, sample) => {
      calls.push({ path, shape: [...shape], sample });
      return tf.tensor(noiseOf(seed, sample), [...shape]);
    };
    return { noise, calls };
  }

  /** The KL of the table without row `excluded`, in float64, at the noise `eps` (mc modes). */
  function klRef64(
    mu: readonly number[],
    rho: readonly number[],
    eps: Float32Array,
    excluded: number | undefined,
    mode: PriorMode,
  ): number {
    let logQ = 0;
    let logPMix = 0;
    let sumW2 = 0;
    let closed = 0;
    mu.forEach((m, j) => {
      if (Math.floor(j / D) === excluded) return;
      const r = rho[j] as number;
      const e = eps[j] as number;
      const sigma = softplus64(r);
      const w = m + sigma * e;
      logQ += -logSoftplus64(r) - 0.5 * e * e - 0.5 * LOG_2PI;
      logPMix += logMixture64(w, 0.5, 1, 0.002);
      sumW2 += w * w;
      // KL(N(m, sigma^2) || N(0, 0.5^2))
      closed += Math.log(0.5) - logSoftplus64(r) + (sigma * sigma + m * m) / (2 * 0.25) - 0.5;
    });
    if (mode === 'closed') return closed;
    return logQ - (mode === 'mixture' ? logPMix : -Math.log1p(sumW2));
  }
  const klTol = (ref: number) => 1e-5 * Math.abs(ref) + 1e-4;

  it('the index error is an IndexError carrying the layer path inside a model (apply, vmapSamples, mean mode)', () => {
    const model = serial({
      model: serial({ emb: bayesianEmbedding({ numEmbeddings: 4, embeddingDim: 2 }) }),
    });
    const { params } = model.init(key(0), [-1, 3]);
    const bad = tf.tensor2d([0, 1, 2, 3, 7, 1], [2, 3], 'int32');
    const before = tf.memory().numTensors;
    const msg =
      'model.emb: index 7 at position [1, 1] of the input [2, 3] is out of range [0, 4) (numEmbeddings = 4).';
    for (const run of [
      () => model.apply(params, bad, { key: key(1) }),
      () => model.apply(params, bad, { mode: 'mean' }),
      () => vmapSamples(model, 3)(params, bad, { key: key(1) }),
      () => vmapSamples(model, 2)(params, bad, { mode: 'mean' }),
      () => loopSamples(model, 2)(params, bad, { key: key(1) }),
    ]) {
      const e = errorOf(run);
      expect(e).toBeInstanceOf(IndexError);
      expect(e).toBeInstanceOf(RangeError);
      const ie = e as IndexError;
      expect(ie.path).toBe('model.emb');
      expect(ie.index).toBe(7);
      expect(ie.position).toEqual([1, 1]);
      expect(ie.size).toBe(4);
      expect(ie.message).toBe(msg);
    }
    // forward alone names the layer itself
    const emb = bayesianEmbedding({ numEmbeddings: 4, embeddingDim: 2, name: 'tok' });
    const mu = tf.zeros([4, 2]);
    const e = errorOf(() => emb.forward({ weight: mu }, bad)) as IndexError;
    expect(e).toBeInstanceOf(IndexError);
    expect(e.path).toBe('tok');
    expect(tf.memory().numTensors).toBe(before + 1);
    dispose([params, bad, mu]);
  });

  it('a batched input without the sample axis S is a ShapeError naming the path', () => {
    const emb = makeEmb('mixture');
    const { params } = emb.init(key(0), [-1, 2]);
    const x = tf.tensor2d([0, 1, 2, 3, 4, 0], [3, 2], 'int32');
    for (const mode of [undefined, 'mean' as const]) {
      const e = errorOf(() =>
        emb.applyBatched(params, x, {
          keys: [key(1), key(2)],
          numSamples: 2,
          batched: true,
          path: 'm.emb',
          mode,
        }),
      );
      expect(e).toBeInstanceOf(ShapeError);
      expect(e.message).toMatch(/^m\.emb: expected batched indices \[2, \.\.\.\]/);
    }
    dispose([params, x]);
  });

  it('reads the indices once per call (apply, vmapSamples, klDivergence-free forward)', () => {
    const emb = makeEmb('mixture', { maxNorm: 0.5, scaleGradByFreq: true });
    const { params } = emb.init(key(0), [-1, 4]);
    const x = tf.tensor2d([0, 1, 1, 4, 2, 3, 1, 0], [2, 4], 'int32');
    const spy = vi.spyOn(x, 'dataSync');
    const runs: [string, () => unknown][] = [
      ['apply', () => emb.apply(params, x, { key: key(1) })],
      ['apply mean', () => emb.apply(params, x, { mode: 'mean' })],
      ['vmap', () => vmapSamples(emb, 3)(params, x, { key: key(1) })],
      ['vmap mean', () => vmapSamples(emb, 3)(params, x, { mode: 'mean' })],
      ['forward', () => emb.forward(emb.mean(params), x)],
      ['serial', () => serial({ emb }).apply({ emb: params }, x, { key: key(1) })],
    ];
    for (const [what, run] of runs) {
      spy.mockClear();
      tf.tidy(() => {
        run();
      });
      expect(spy.mock.calls.length, what).toBe(1);
    }
    spy.mockRestore();
    dispose([params, x]);
  });

  it('vmapSamples == loopSamples with a substituted per-sample noise and paddingIdx: out, KL (= float64 reference), gradients; padding row gets exactly 0', () => {
    for (const mode of ['mixture', 'custom', 'closed'] as const) {
      for (const extra of [
        {},
        { maxNorm: 0.4, scaleGradByFreq: true },
        { sparse: true, paddingIdx: -1 },
      ] as Partial<BayesianEmbeddingOptions>[]) {
        const emb = makeEmb(mode, extra);
        const pad = emb.config['paddingIdx'] as number;
        const { params } = emb.init(key(11), [-1, 4]);
        const mu = vals(params.weight.mu);
        const rho = vals(params.weight.rho);
        const data = [0, 1, 2, 4, 1, 3, 3, 4];
        const x = tf.tensor2d(data, [2, 4], 'int32');
        const S = 3;
        const R = tf.tensor(uniformArray(key(12), S * 8 * D, -1, 1), [S, 2, 4, D]);
        const what = `${mode} ${JSON.stringify(extra)}`;
        tf.tidy(() => {
          const nv = sampleNoise(5);
          const nl = sampleNoise(5);
          customShapes.length = 0;
          const v = vmapSamples(emb, S)(params, x, { noise: nv.noise });
          const customV = customShapes.splice(0);
          const l = loopSamples(emb, S)(params, x, { noise: nl.noise });
          // the noise is asked for the weight's own shape, once per sample
          expect(nv.calls).toEqual(
            [0, 1, 2].map((s) => ({ path: 'emb.weight', shape: [V, D], sample: s })),
          );
          expect(nl.calls).toEqual(nv.calls);
          // logProb of the kept rows only
          if (mode === 'custom') {
            expect(customV).toEqual([0, 1, 2].map(() => [V - 1, D]));
            expect(customShapes).toEqual([0, 1, 2].map(() => [V - 1, D]));
          }
          expect(v.out.shape).toEqual([S, 2, 4, D]);
          expectClose(vals(v.out), vals(l.out), 1e-6, 1e-6, `${what}: out`);
          const klV = vals(v.kl);
          const klL = vals(l.kl);
          for (let s = 0; s < S; s++) {
            const ref = klRef64(mu, rho, noiseOf(5, s), pad, mode);
            expect(Math.abs((klV[s] as number) - ref), `${what}: vmap kl ${s}`).toBeLessThan(
              klTol(ref),
            );
            expect(Math.abs((klL[s] as number) - ref), `${what}: loop kl ${s}`).toBeLessThan(
              klTol(ref),
            );
          }
          // the padding positions are zeros in every sample
          const o = vals(v.out);
          for (let s = 0; s < S; s++) {
            data.forEach((idx, pos) => {
              const row = o.slice((s * 8 + pos) * D, (s * 8 + pos + 1) * D);
              if (idx === pad) expect(row.every((z) => z === 0)).toBe(true);
            });
          }
          const loss = (run: typeof vmapSamples, n: NoiseFn) => (p: typeof params) => {
            const r = run(emb, S)(p, x, { noise: n });
            return tf.add(tf.sum(tf.mul(r.out, R)), tf.sum(r.kl)) as tf.Scalar;
          };
          const gv = valueAndGrad(loss(vmapSamples, sampleNoise(5).noise))(params).grads;
          const gl = valueAndGrad(loss(loopSamples, sampleNoise(5).noise))(params).grads;
          expectClose(vals(gv.weight.mu), vals(gl.weight.mu), 1e-4, 1e-5, `${what}: grad mu`);
          expectClose(vals(gv.weight.rho), vals(gl.weight.rho), 1e-4, 1e-5, `${what}: grad rho`);
          for (const g of [gv, gl]) {
            const gMu = vals(g.weight.mu);
            const gRho = vals(g.weight.rho);
            expect(gMu.slice(pad * D, (pad + 1) * D).every((z) => z === 0)).toBe(true);
            expect(gRho.slice(pad * D, (pad + 1) * D).every((z) => z === 0)).toBe(true);
            for (let row = 0; row < V; row++) {
              if (row === pad) continue;
              expect(gRho.slice(row * D, (row + 1) * D).some((z) => z !== 0)).toBe(true);
            }
          }
        });
        dispose([params, x, R]);
      }
    }
  });

  it('applyBatched with per-sample indices [S, ...] equals apply per sample (keys and padding)', () => {
    for (const mode of ['mixture', 'custom', 'closed'] as const) {
      const emb = makeEmb(mode, { maxNorm: 0.6 });
      const { params } = emb.init(key(21), [-1, 3]);
      const S = 2;
      const xs = tf.tensor3d([0, 1, 2, 1, 1, 4, 3, 0, 1, 2, 2, 2], [S, 2, 3], 'int32');
      const keys = [key(22), key(23)];
      tf.tidy(() => {
        const b = emb.applyBatched(params, xs, { keys, numSamples: S, batched: true });
        expect(b.batched).toBe(true);
        const parts = tf.unstack(xs);
        const loop = parts.map((xi, s) => emb.apply(params, xi, { key: keys[s], sample: s }));
        expectClose(vals(b.out), vals(tf.stack(loop.map((r) => r.out))), 1e-6, 1e-6, mode);
        expectClose(
          vals(b.kl),
          loop.map((r) => num(r.kl)),
          1e-5,
          1e-3,
          `${mode}: kl`,
        );
        const m = emb.applyBatched(params, xs, { numSamples: S, batched: true, mode: 'mean' });
        expect(m.batched).toBe(true);
        expectBitIdentical(m.out, emb.apply(params, xs, { mode: 'mean' }).out, 'mean');
        expect(vals(m.kl)).toEqual([0, 0]);
      });
      dispose([params, xs]);
    }
  });

  it('KL without the padding row vs float64 (apply and klDivergence; mc mixture, mc custom prior, closed normalPrior)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('mixture', 'custom', 'closed') as fc.Arbitrary<PriorMode>,
        fc.integer({ min: 0, max: V - 1 }),
        fc.integer({ min: 0, max: 2 ** 30 }),
        (mode, pad, seed) => {
          const emb = makeEmb(mode, { paddingIdx: pad });
          const noPad = makeEmb(mode, { paddingIdx: undefined });
          const { params } = emb.init(key(seed), [-1, 2]);
          const mu = vals(params.weight.mu);
          const rho = vals(params.weight.rho);
          const x = tf.tensor1d([pad, (pad + 1) % V], 'int32');
          tf.tidy(() => {
            const { noise } = sampleNoise(seed + 1);
            const eps = noiseOf(seed + 1, 0);
            const ref = klRef64(mu, rho, eps, pad, mode);
            expect(Math.abs(num(emb.apply(params, x, { noise }).kl) - ref)).toBeLessThan(
              klTol(ref),
            );
            expect(Math.abs(num(emb.klDivergence(params, { noise })) - ref)).toBeLessThan(
              klTol(ref),
            );
            // without paddingIdx the whole table is in the KL
            const full = klRef64(mu, rho, eps, undefined, mode);
            expect(Math.abs(num(noPad.apply(params, x, { noise }).kl) - full)).toBeLessThan(
              klTol(full),
            );
            // the sample index reaches the noise: sample 2 of a single apply
            const ref2 = klRef64(mu, rho, noiseOf(seed + 1, 2), pad, mode);
            if (mode !== 'closed') {
              expect(
                Math.abs(num(emb.apply(params, x, { noise, sample: 2 }).kl) - ref2),
              ).toBeLessThan(klTol(ref2));
            }
          });
          dispose([params, x]);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('KL with key-drawn noise: vmapSamples == loopSamples and the padding row gets exactly 0 gradient', () => {
    for (const mode of ['mixture', 'custom', 'closed'] as const) {
      const emb = makeEmb(mode, { scaleGradByFreq: true });
      const { params } = emb.init(key(31), [-1, 4]);
      const x = tf.tensor2d([0, 1, 2, 4, 1, 3, 3, 1], [2, 4], 'int32');
      tf.tidy(() => {
        const ctx = { key: key(32) };
        const v = vmapSamples(emb, 2)(params, x, ctx);
        const l = loopSamples(emb, 2)(params, x, ctx);
        expectClose(vals(v.kl), vals(l.kl), 1e-5, 1e-3, `${mode}: kl`);
        const g = valueAndGrad((p: typeof params) => {
          const r = vmapSamples(emb, 2)(p, x, ctx);
          return tf.add(tf.sum(r.out), tf.sum(r.kl)) as tf.Scalar;
        })(params).grads;
        const gk = valueAndGrad((p: typeof params) => emb.klDivergence(p, ctx))(params).grads;
        for (const gg of [g, gk]) {
          expect(
            vals(gg.weight.mu)
              .slice(PAD * D, (PAD + 1) * D)
              .every((z) => z === 0),
          ).toBe(true);
          expect(
            vals(gg.weight.rho)
              .slice(PAD * D, (PAD + 1) * D)
              .every((z) => z === 0),
          ).toBe(true);
        }
      });
      dispose([params, x]);
    }
  });

  it('a one-row table keeps its padding row in the KL (as before)', () => {
    const one = bayesianEmbedding({ numEmbeddings: 1, embeddingDim: 2, paddingIdx: 0 });
    const plain = bayesianEmbedding({ numEmbeddings: 1, embeddingDim: 2 });
    const { params } = one.init(key(0), [-1, 2]);
    const x = tf.tensor1d([0, 0], 'int32');
    tf.tidy(() => {
      const a = one.apply(params, x, { key: key(1) });
      expect(vals(a.out).every((z) => z === 0)).toBe(true);
      expect(num(a.kl)).toBe(num(plain.apply(params, x, { key: key(1) }).kl));
      expect(num(a.kl)).not.toBe(0);
    });
    dispose([params, x]);
  });

  it('no tensor growth: apply, vmapSamples, klDivergence, forward, gradients and errors', async () => {
    const emb = makeEmb('custom', { maxNorm: 0.5, scaleGradByFreq: true, sparse: true });
    const { params } = emb.init(key(0), [-1, 4]);
    const x = tf.tensor2d([0, 1, 2, 4, 1, 3, 3, 1], [2, 4], 'int32');
    const bad = tf.tensor1d([0, 9], 'int32');
    const flt = tf.tensor1d([0, 1]);
    const growth = await trackTensors(
      (i) => {
        const k = foldIn(key(1), i + 5);
        const { noise } = sampleNoise(i + 5);
        const outs = [
          emb.apply(params, x, { key: k }),
          emb.apply(params, x, { noise }),
          emb.apply(params, x, { mode: 'mean' }),
          vmapSamples(emb, 2)(params, x, { key: k }),
          vmapSamples(emb, 2)(params, x, { noise }),
          vmapSamples(emb, 2)(params, x, { mode: 'mean' }),
        ];
        const kl = emb.klDivergence(params, { key: k });
        const drawn = emb.sample(params, k);
        const f = emb.forward(drawn.weights, x);
        const g = valueAndGrad((p: typeof params) => {
          const r = vmapSamples(emb, 2)(p, x, { key: k });
          return tf.add(tf.sum(r.out), tf.sum(r.kl)) as tf.Scalar;
        })(params);
        for (const run of [
          () => emb.apply(params, bad, { key: k }),
          () => vmapSamples(emb, 2)(params, bad, { key: k }),
          () => emb.apply(params, flt, { key: k }),
        ]) {
          errorOf(run);
        }
        return { outs, kl, f, g, drawn };
      },
      {
        steps: 5,
        release: (o) => {
          dispose(o.outs.flatMap((r) => [r.out, r.kl]));
          dispose([o.kl, o.f, o.g.value, o.drawn.weights.weight, o.drawn.kl]);
          dispose(o.g.grads);
        },
      },
    );
    expect(growth.growth).toBe(0);
    dispose([params, x, bad, flt]);
  });

  it('no tensor growth over ELBO training steps (embedding + flatten + linear), loss goes down, padding row unchanged', async () => {
    const model = serial({
      emb: bayesianEmbedding({
        numEmbeddings: 8,
        embeddingDim: 4,
        paddingIdx: 0,
        scaleGradByFreq: true,
        posteriorRhoInit: -3,
      }),
      flat: flatten(),
      out: bayesianLinear({ inFeatures: 24, outFeatures: 3, posteriorRhoInit: -3 }),
    });
    const lik = softmaxCrossEntropy();
    const opt = adam({ learningRate: 0.03 });
    const step = trainStep(elbo(model, lik, { numSamples: 2 }), opt);
    const { data } = indices(1, [24, 6], 8);
    const x = tf.tensor2d(data, [24, 6], 'int32');
    const y = tf.tensor1d(
      Array.from({ length: 24 }, (_, i) => (data[i * 6 + 5] as number) % 3),
      'int32',
    );
    const params = { model: model.init(key(0), [-1, 6]).params, likelihood: lik.init() };
    const padMu = vals(params.model.emb.weight.mu).slice(0, 4);
    const padRho = vals(params.model.emb.weight.rho).slice(0, 4);
    let state: Parameters<typeof step>[0] = { params, optState: opt.init(params), step: 0 };
    const losses: number[] = [];
    const growth = await trackTensors(
      (i) => {
        const r = step(state, x, y, foldIn(key(2), i + 1), 1 / 24);
        state = r.state;
        losses.push(r.loss);
      },
      { steps: 30 },
    );
    expect(growth.growth).toBe(0);
    expect(new Set(growth.perStep).size).toBe(1);
    expect(losses.slice(-5).reduce((a, b) => a + b)).toBeLessThan(
      losses.slice(0, 5).reduce((a, b) => a + b),
    );
    // the padding row got no gradient at all: Adam leaves it exactly as initialised
    const trained = state.params as typeof params;
    expect(vals(trained.model.emb.weight.mu).slice(0, 4)).toEqual(padMu);
    expect(vals(trained.model.emb.weight.rho).slice(0, 4)).toEqual(padRho);
    dispose([state.params as ParamTree, state.optState as never, x, y]);
  });
});
