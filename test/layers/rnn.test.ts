import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { useBackend } from '../../src/backend';
import { bayesianLinear } from '../../src/layers/linear';
import { serial } from '../../src/layers/combinators';
import { ConfigError, ShapeError } from '../../src/errors';
import {
  bayesianGRU,
  bayesianLSTM,
  lastTimeStep,
  type BayesianGRULayer,
  type BayesianLSTMLayer,
  type LstmState,
} from '../../src/layers/rnn';
import type { AnyLayer, NoiseFn } from '../../src/layers/types';
import { adam } from '../../src/optim/optimizers';
import { normalPrior } from '../../src/params/distributions';
import { foldIn, key, uniformArray } from '../../src/params/random';
import { dispose, leaves, paths, type ParamTree } from '../../src/params/tree';
import { elbo, loopSamples, vmapSamples } from '../../src/transforms/elbo';
import { valueAndGrad } from '../../src/transforms/grad';
import { mse } from '../../src/transforms/likelihoods';
import { trainStep } from '../../src/transforms/train';
import { trackTensors } from '../helpers/memory';
import {
  expectBitIdentical,
  expectClose,
  num,
  sigmoid64,
  softplus64,
  vals,
} from '../helpers/reference';
import { TEST_BACKEND } from '../setup';

afterAll(async () => {
  await useBackend(TEST_BACKEND);
});

type Cell = 'lstm' | 'gru';
type RnnLayer = BayesianLSTMLayer | BayesianGRULayer;

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

// ---------------------------------------------------------------------------------------------
// A float64 reference, written per step and per unit in plain JS.

interface RefWeights {
  ih: readonly number[]; // [F, G*H] row-major
  hh: readonly number[]; // [H, G*H]
  b?: readonly number[]; // [G*H]
  p?: readonly number[]; // [3, H]
  hn?: readonly number[]; // [H], the GRU's b_hn
}

interface RefOut {
  out: number[]; // [B, T, H]
  h: number[];
  c: number[];
}

function refRun(
  cell: Cell,
  x: readonly number[],
  [B, T, F, H]: readonly [number, number, number, number],
  w: RefWeights,
  h0?: readonly number[],
  c0?: readonly number[],
): RefOut {
  const G = cell === 'lstm' ? 4 : 3;
  let h = h0 ? [...h0] : new Array<number>(B * H).fill(0);
  let c = c0 ? [...c0] : new Array<number>(B * H).fill(0);
  const out = new Array<number>(B * T * H).fill(0);
  for (let t = 0; t < T; t++) {
    const hNext = new Array<number>(B * H).fill(0);
    const cNext = new Array<number>(B * H).fill(0);
    for (let b = 0; b < B; b++) {
      const xp = new Array<number>(G * H).fill(0);
      const hp = new Array<number>(G * H).fill(0);
      for (let j = 0; j < G * H; j++) {
        let s = w.b ? (w.b[j] as number) : 0;
        for (let f = 0; f < F; f++)
          s += (x[(b * T + t) * F + f] as number) * (w.ih[f * G * H + j] as number);
        xp[j] = s;
        let r = 0;
        for (let k = 0; k < H; k++) r += (h[b * H + k] as number) * (w.hh[k * G * H + j] as number);
        hp[j] = r;
      }
      for (let k = 0; k < H; k++) {
        const hPrev = h[b * H + k] as number;
        const pre = (g: number) => (xp[g * H + k] as number) + (hp[g * H + k] as number);
        let hNew: number;
        if (cell === 'lstm') {
          const cPrev = c[b * H + k] as number;
          const peep = (row: number, cv: number) => (w.p ? (w.p[row * H + k] as number) * cv : 0);
          const i = sigmoid64(pre(0) + peep(0, cPrev));
          const f = sigmoid64(pre(1) + peep(1, cPrev));
          const g = Math.tanh(pre(2));
          const cNew = f * cPrev + i * g;
          const o = sigmoid64(pre(3) + peep(2, cNew));
          hNew = o * Math.tanh(cNew);
          cNext[b * H + k] = cNew;
        } else {
          const r = sigmoid64(pre(0));
          const z = sigmoid64(pre(1));
          // n = tanh(x Wn + b_in + r * (h Un + b_hn)): b_hn is inside the reset product
          const bhn = w.hn ? (w.hn[k] as number) : 0;
          const n = Math.tanh((xp[2 * H + k] as number) + r * ((hp[2 * H + k] as number) + bhn));
          hNew = (1 - z) * n + z * hPrev;
        }
        hNext[b * H + k] = hNew;
        out[(b * T + t) * H + k] = hNew;
      }
    }
    h = hNext;
    c = cNext;
  }
  return { out, h, c };
}

/** Builds a layer of the given configuration. */
function makeLayer(
  cell: Cell,
  F: number,
  H: number,
  bias: boolean,
  peephole: boolean,
  name: string = cell,
): RnnLayer {
  return cell === 'lstm'
    ? bayesianLSTM({ inFeatures: F, outFeatures: H, bias, peephole, posteriorRhoInit: -2, name })
    : bayesianGRU({ inFeatures: F, outFeatures: H, bias, posteriorRhoInit: -2, name });
}

/** Deterministic noise per weight path, from JS arrays (so the reference knows it). */
function fixedNoise(seed: number): { noise: NoiseFn; eps: Map<string, Float32Array> } {
  const eps = new Map<string, Float32Array>();
  const noise: NoiseFn = (path, shape) => {
    const n = shape.reduce((a, d) => a * d, 1);
    let e = eps.get(path);
    if (!e) {
      e = uniformArray(foldIn(key(seed), eps.size), n, -2, 2);
      eps.set(path, e);
    }
    return tf.tensor(e, [...shape]);
  };
  return { noise, eps };
}

/** The sampled weights `mu + softplus(rho) * eps` in float64, per weight name. */
function sampledRef(params: ParamTree, name: string, eps: Map<string, Float32Array>): RefWeights {
  const p = params as Record<string, { mu: tf.Tensor; rho: tf.Tensor }>;
  const w = (k: string): number[] | undefined => {
    if (!p[k]) return undefined;
    const mu = vals(p[k].mu);
    const rho = vals(p[k].rho);
    const e = eps.get(`${name}.${k}`) as Float32Array;
    return mu.map((m, i) => m + softplus64(rho[i] as number) * (e[i] as number));
  };
  return {
    ih: w('weightIh')!,
    hh: w('weightHh')!,
    b: w('bias'),
    p: w('peephole'),
    hn: w('biasHn'),
  };
}

function meanRef(params: ParamTree): RefWeights {
  const p = params as Record<string, { mu: tf.Tensor } | undefined>;
  const w = (k: string) => (p[k] ? vals(p[k].mu) : undefined);
  return {
    ih: w('weightIh')!,
    hh: w('weightHh')!,
    b: w('bias'),
    p: w('peephole'),
    hn: w('biasHn'),
  };
}

const cfgArb = fc.record({
  cell: fc.constantFrom<Cell>('lstm', 'gru'),
  B: fc.integer({ min: 1, max: 3 }),
  T: fc.integer({ min: 1, max: 4 }),
  F: fc.integer({ min: 1, max: 3 }),
  H: fc.integer({ min: 1, max: 3 }),
  bias: fc.boolean(),
  peephole: fc.boolean(),
  withState: fc.boolean(),
  seed: fc.integer({ min: 0, max: 2 ** 30 }),
});

// ---------------------------------------------------------------------------------------------

describe('bayesianLSTM / bayesianGRU: numerics', () => {
  it('equal a float64 per-step reference (sampled and mean weights; bias, peephole, initial state)', () => {
    fc.assert(
      fc.property(cfgArb, (c) => {
        const layer = makeLayer(c.cell, c.F, c.H, c.bias, c.peephole, 'rnn');
        const { params } = layer.init(key(c.seed), [-1, c.T, c.F]);
        const xs = uniformArray(key(c.seed + 1), c.B * c.T * c.F, -2, 2);
        const h0 = uniformArray(key(c.seed + 2), c.B * c.H, -1, 1);
        const c0 = uniformArray(key(c.seed + 3), c.B * c.H, -1, 1);
        tf.tidy(() => {
          const x = tf.tensor3d(xs, [c.B, c.T, c.F]);
          const state = c.withState
            ? c.cell === 'lstm'
              ? { h: tf.tensor2d(h0, [c.B, c.H]), c: tf.tensor2d(c0, [c.B, c.H]) }
              : { h: tf.tensor2d(h0, [c.B, c.H]) }
            : undefined;
          const input = state ? { x, state } : x;
          const dims = [c.B, c.T, c.F, c.H] as const;
          const { noise, eps } = fixedNoise(c.seed);
          const s = (layer as BayesianLSTMLayer).applyWithState(params as never, input as never, {
            noise,
          });
          const want = refRun(
            c.cell,
            Array.from(xs),
            dims,
            sampledRef(params, 'rnn', eps),
            c.withState ? Array.from(h0) : undefined,
            c.withState ? Array.from(c0) : undefined,
          );
          expect(s.out.shape).toEqual([c.B, c.T, c.H]);
          expectClose(vals(s.out), want.out, 2e-5, 2e-5, 'sampled out');
          expectClose(vals(s.state.h), want.h, 2e-5, 2e-5, 'sampled h');
          if (c.cell === 'lstm') expectClose(vals(s.state.c), want.c, 2e-5, 2e-5, 'sampled c');
          // apply's out is applyWithState's out; the last step is h
          const a = layer.apply(params as never, input as never, { noise });
          expectBitIdentical(a.out, s.out, 'apply = applyWithState.out');
          expectClose(
            vals(lastTimeStep().apply({}, s.out).out),
            vals(s.state.h),
            0,
            0,
            'lastTimeStep = h',
          );
          // the noise paths name each weight, and the layer has exactly these weights
          const expected = ['rnn.weightIh', 'rnn.weightHh'];
          if (c.bias) expected.push('rnn.bias');
          if (c.bias && c.cell === 'gru') expected.push('rnn.biasHn');
          if (c.cell === 'lstm' && c.peephole) expected.push('rnn.peephole');
          expect([...eps.keys()].sort()).toEqual(expected.sort());
          // mean mode: the posterior means
          const m = (layer as BayesianLSTMLayer).applyWithState(params as never, input as never, {
            mode: 'mean',
          });
          const wantMean = refRun(
            c.cell,
            Array.from(xs),
            dims,
            meanRef(params),
            c.withState ? Array.from(h0) : undefined,
            c.withState ? Array.from(c0) : undefined,
          );
          expectClose(vals(m.out), wantMean.out, 2e-5, 2e-5, 'mean out');
          expect(num(m.kl)).toBe(0);
        });
        dispose(params);
      }),
      { numRuns: 25 },
    );
  });

  it('one call equals two halves with the state carried over (same key, and mean mode)', () => {
    fc.assert(
      fc.property(
        cfgArb.filter((c) => c.T >= 2),
        fc.integer({ min: 1, max: 3 }),
        (c, cutRaw) => {
          const cut = 1 + (cutRaw % (c.T - 1));
          const layer = makeLayer(c.cell, c.F, c.H, c.bias, c.peephole);
          const { params } = layer.init(key(c.seed), [-1, c.T, c.F]);
          tf.tidy(() => {
            const x = tf.tensor3d(uniformArray(key(c.seed + 1), c.B * c.T * c.F, -2, 2), [
              c.B,
              c.T,
              c.F,
            ]);
            const first = tf.slice(x, [0, 0, 0], [c.B, cut, c.F]);
            const second = tf.slice(x, [0, cut, 0], [c.B, c.T - cut, c.F]);
            for (const ctx of [{ key: key(c.seed + 5) }, { mode: 'mean' as const }]) {
              const l = layer as BayesianLSTMLayer;
              const whole = l.applyWithState(params as never, x, ctx);
              const a = l.applyWithState(params as never, first, ctx);
              const b = l.applyWithState(params as never, { x: second, state: a.state }, ctx);
              expectClose(vals(tf.concat([a.out, b.out], 1)), vals(whole.out), 1e-6, 1e-6, 'out');
              expectClose(vals(b.state.h), vals(whole.state.h), 1e-6, 1e-6, 'h');
              if (c.cell === 'lstm') {
                expectClose(vals(b.state.c), vals(whole.state.c), 1e-6, 1e-6, 'c');
              }
              // the same key samples the same weights: the KL of each half is that of the whole
              expect(num(b.kl)).toBe(num(whole.kl));
            }
          });
          dispose(params);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('gradients (mu, rho, initial state) equal float64 finite differences of the reference', () => {
    fc.assert(
      fc.property(
        cfgArb.map((c) => ({ ...c, withState: true })),
        (c) => {
          const layer = makeLayer(c.cell, c.F, c.H, c.bias, c.peephole, 'rnn');
          const { params } = layer.init(key(c.seed), [-1, c.T, c.F]);
          const dims = [c.B, c.T, c.F, c.H] as const;
          const xs = Array.from(uniformArray(key(c.seed + 1), c.B * c.T * c.F, -2, 2));
          const h0 = Array.from(uniformArray(key(c.seed + 2), c.B * c.H, -1, 1));
          const c0 = Array.from(uniformArray(key(c.seed + 3), c.B * c.H, -1, 1));
          const R1 = Array.from(uniformArray(key(c.seed + 4), c.B * c.T * c.H, -1, 1));
          const R2 = Array.from(uniformArray(key(c.seed + 6), c.B * c.H, -1, 1));
          const R3 = Array.from(uniformArray(key(c.seed + 7), c.B * c.H, -1, 1));
          const dot = (a: readonly number[], b: readonly number[]) =>
            a.reduce((s, v, i) => s + v * (b[i] as number), 0);
          const refLoss = (w: RefWeights, hh: number[], cc: number[]): number => {
            const r = refRun(c.cell, xs, dims, w, hh, cc);
            return dot(r.out, R1) + dot(r.h, R2) + (c.cell === 'lstm' ? dot(r.c, R3) : 0);
          };
          const { noise, eps } = fixedNoise(c.seed);
          const tree = {
            p: params,
            s:
              c.cell === 'lstm'
                ? { h: tf.tensor2d(h0, [c.B, c.H]), c: tf.tensor2d(c0, [c.B, c.H]) }
                : { h: tf.tensor2d(h0, [c.B, c.H]) },
          };
          const { value, grads } = valueAndGrad((t: typeof tree) => {
            const r = (layer as BayesianLSTMLayer).applyWithState(
              t.p as never,
              { x: tf.tensor3d(xs, [c.B, c.T, c.F]), state: t.s as LstmState },
              { noise },
            );
            let l = tf.add(
              tf.sum(tf.mul(r.out, tf.tensor3d(R1, [c.B, c.T, c.H]))),
              tf.sum(tf.mul(r.state.h, tf.tensor2d(R2, [c.B, c.H]))),
            );
            if (c.cell === 'lstm')
              l = tf.add(l, tf.sum(tf.mul(r.state.c, tf.tensor2d(R3, [c.B, c.H]))));
            return l as tf.Scalar;
          })(tree);
          const w = sampledRef(params, 'rnn', eps);
          expect(num(value)).toBeCloseTo(refLoss(w, h0, c0), 4);
          const fd = (f: (d: number) => number, hStep = 1e-6) =>
            (f(hStep) - f(-hStep)) / (2 * hStep);
          const g = grads as unknown as {
            p: Record<string, { mu: tf.Tensor; rho: tf.Tensor }>;
            s: Record<string, tf.Tensor>;
          };
          const rawParams = params as Record<string, { rho: tf.Tensor }>;
          for (const k of ['ih', 'hh', 'b', 'p', 'hn'] as const) {
            const arr = w[k];
            if (!arr) continue;
            const name = {
              ih: 'weightIh',
              hh: 'weightHh',
              b: 'bias',
              p: 'peephole',
              hn: 'biasHn',
            }[k];
            const gMu = vals(g.p[name]!.mu);
            const gRho = vals(g.p[name]!.rho);
            const rho = vals(rawParams[name]!.rho);
            const e = eps.get(`rnn.${name}`) as Float32Array;
            arr.forEach((_, i) => {
              const dw = fd((d) =>
                refLoss({ ...w, [k]: arr.map((v, j) => (j === i ? v + d : v)) }, h0, c0),
              );
              expectClose([gMu[i] as number], [dw], 2e-3, 2e-4, `d/dmu ${name}[${i}]`);
              // d/drho = d/dw * eps * sigmoid(rho)
              const dRho = dw * (e[i] as number) * sigmoid64(rho[i] as number);
              expectClose([gRho[i] as number], [dRho], 2e-3, 2e-4, `d/drho ${name}[${i}]`);
            });
          }
          h0.forEach((_, i) => {
            const d = fd((dd) =>
              refLoss(
                w,
                h0.map((v, j) => (j === i ? v + dd : v)),
                c0,
              ),
            );
            expectClose([vals(g.s.h!)[i] as number], [d], 2e-3, 2e-4, `d/dh0[${i}]`);
            if (c.cell === 'lstm') {
              const dc = fd((dd) =>
                refLoss(
                  w,
                  h0,
                  c0.map((v, j) => (j === i ? v + dd : v)),
                ),
              );
              expectClose([vals(g.s.c!)[i] as number], [dc], 2e-3, 2e-4, `d/dc0[${i}]`);
            }
          });
          dispose([tree, value, grads as never]);
        },
      ),
      { numRuns: 15 },
    );
  });
});

describe("bayesianGRU: the candidate's hidden-side bias b_hn", () => {
  /** The GRU's mean-mode params with `b_hn = d` (all units), `b_in` shifted by `dIn`, `b_r = br`. */
  function withBiases(
    params: ParamTree,
    H: number,
    { d, dIn = [] as readonly number[], br }: { d: number; dIn?: readonly number[]; br?: number },
  ): ParamTree {
    const p = params as Record<string, { mu: tf.Tensor; rho: tf.Tensor }>;
    const b = vals(p['bias']!.mu).map((v, j) => {
      if (br !== undefined && j < H) return br;
      return j >= 2 * H ? v + (dIn[j - 2 * H] ?? 0) : v;
    });
    return {
      ...p,
      bias: { mu: tf.tensor1d(b), rho: p['bias']!.rho },
      biasHn: { mu: tf.fill([H], d), rho: p['biasHn']!.rho },
    };
  }

  it('a nonzero b_hn changes the output exactly as the float64 reference says', () => {
    fc.assert(
      fc.property(
        cfgArb.map((c) => ({ ...c, cell: 'gru' as const, bias: true })),
        fc.double({ min: 0.3, max: 2, noNaN: true }),
        fc.boolean(),
        (c, d, neg) => {
          const gru = bayesianGRU({ inFeatures: c.F, outFeatures: c.H, name: 'rnn' });
          const { params } = gru.init(key(c.seed), [-1, c.T, c.F]);
          const xs = uniformArray(key(c.seed + 1), c.B * c.T * c.F, -2, 2);
          const h0 = uniformArray(key(c.seed + 2), c.B * c.H, -1, 1);
          const dims = [c.B, c.T, c.F, c.H] as const;
          const p = withBiases(params, c.H, { d: neg ? -d : d });
          tf.tidy(() => {
            const x = tf.tensor3d(xs, [c.B, c.T, c.F]);
            const input = c.withState ? { x, state: { h: tf.tensor2d(h0, [c.B, c.H]) } } : x;
            const h0Ref = c.withState ? Array.from(h0) : undefined;
            const m = gru.applyWithState(p as never, input as never, { mode: 'mean' });
            const want = refRun('gru', Array.from(xs), dims, meanRef(p), h0Ref);
            expectClose(vals(m.out), want.out, 2e-5, 2e-5, 'mean out with b_hn');
            // without b_hn (the reference's fourth bias block dropped) the output is another one
            const noHn = refRun(
              'gru',
              Array.from(xs),
              dims,
              { ...meanRef(p), hn: undefined },
              h0Ref,
            );
            const gap = Math.max(...want.out.map((v, i) => Math.abs(v - (noHn.out[i] as number))));
            expect(gap).toBeGreaterThan(1e-3);
            // sampled: the noise of b_hn reaches the output too
            const { noise, eps } = fixedNoise(c.seed);
            const s = gru.applyWithState(p as never, input as never, { noise });
            const wantS = refRun('gru', Array.from(xs), dims, sampledRef(p, 'rnn', eps), h0Ref);
            expectClose(vals(s.out), wantS.out, 2e-5, 2e-5, 'sampled out with b_hn');
            expect(eps.get('rnn.biasHn')?.length).toBe(c.H);
          });
          dispose([params, p]);
        },
      ),
      { numRuns: 20 },
    );
  });

  it('b_hn is scaled by r: b_hn = d equals b_in + r * d (one step), and is void when r = 0', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 2 ** 30 }),
        (F, H, seed) => {
          const gru = bayesianGRU({ inFeatures: F, outFeatures: H });
          const { params } = gru.init(key(seed), [-1, 1, F]);
          const xs = Array.from(uniformArray(key(seed + 1), F, -2, 2));
          const h0 = Array.from(uniformArray(key(seed + 2), H, -1, 1));
          const d = 1.5;
          const withHn = withBiases(params, H, { d });
          // r = sigmoid(x Wr + h Ur + b_r) in float64 (one sequence, one step)
          const w = meanRef(withHn);
          const r = Array.from({ length: H }, (_, k) => {
            let a = (w.b as readonly number[])[k] as number;
            for (let f = 0; f < F; f++) a += (xs[f] as number) * (w.ih[f * 3 * H + k] as number);
            for (let j = 0; j < H; j++) a += (h0[j] as number) * (w.hh[j * 3 * H + k] as number);
            return sigmoid64(a);
          });
          const folded = withBiases(params, H, { d: 0, dIn: r.map((rk) => rk * d) });
          const unscaled = withBiases(params, H, { d: 0, dIn: r.map(() => d) });
          const closed = withBiases(params, H, { d, br: -40 });
          const closedNoHn = withBiases(params, H, { d: 0, br: -40 });
          tf.tidy(() => {
            const input = { x: tf.tensor3d(xs, [1, 1, F]), state: { h: tf.tensor2d(h0, [1, H]) } };
            const run = (p: ParamTree) =>
              vals(gru.apply(p as never, input, { mode: 'mean' }).out) as number[];
            const a = run(withHn);
            expectClose(a, run(folded), 1e-5, 1e-6, 'b_hn = d is b_in + r d');
            const gap = Math.max(...a.map((v, i) => Math.abs(v - (run(unscaled)[i] as number))));
            expect(gap).toBeGreaterThan(1e-4); // ... not b_in + d (r < 1)
            expectClose(run(closed), run(closedNoHn), 0, 1e-6, 'r = 0: b_hn has no effect');
          });
          dispose([params, withHn, folded, unscaled, closed, closedNoHn]);
        },
      ),
      { numRuns: 20 },
    );
  });
});

describe('bayesianLSTM / bayesianGRU: layer contract', () => {
  it('has the reference defaults, three GRU gate blocks plus b_hn, and works with bias: false', () => {
    const lstm = bayesianLSTM({ inFeatures: 3, outFeatures: 4 });
    expect(lstm.config).toMatchObject({
      inFeatures: 3,
      outFeatures: 4,
      bias: true,
      peephole: false,
      priorSigma1: 1,
      priorSigma2: 0.002,
      priorPi: 0.5,
      posteriorMuInit: 0,
      posteriorRhoInit: -6,
      freeze: false,
      kl: 'mc',
      name: 'bayesianLSTM',
    });
    const { params, outputShape } = lstm.init(key(0), [-1, 7, 3]);
    expect(outputShape).toEqual([-1, 7, 4]);
    expect(paths(params)).toEqual([
      'bias.mu',
      'bias.rho',
      'weightHh.mu',
      'weightHh.rho',
      'weightIh.mu',
      'weightIh.rho',
    ]);
    expect(params.weightIh.mu.shape).toEqual([3, 16]);
    expect(params.weightHh.mu.shape).toEqual([4, 16]);
    expect(params.bias?.mu.shape).toEqual([16]);
    const gru = bayesianGRU({ inFeatures: 3, outFeatures: 4, bias: false });
    const g = gru.init(key(1), [-1, 5, 3]).params;
    expect(Object.keys(g).sort()).toEqual(['weightHh', 'weightIh']);
    expect(g.weightIh.mu.shape).toEqual([3, 12]);
    expect(g.weightHh.mu.shape).toEqual([4, 12]);
    const p = bayesianLSTM({ inFeatures: 2, outFeatures: 5, peephole: true }).init(
      key(2),
      [-1, 3, 2],
    ).params;
    expect(p.peephole?.mu.shape).toEqual([3, 5]);
    // the GRU's biases: bias [3H] (b_r, b_z, b_in) and biasHn [H] (b_hn), fold-in indices 2 and 4
    const gb = bayesianGRU({ inFeatures: 3, outFeatures: 4 });
    const gp = gb.init(key(1), [-1, 5, 3]).params;
    expect(paths(gp)).toEqual([
      'bias.mu',
      'bias.rho',
      'biasHn.mu',
      'biasHn.rho',
      'weightHh.mu',
      'weightHh.rho',
      'weightIh.mu',
      'weightIh.rho',
    ]);
    expect(gp.bias?.mu.shape).toEqual([12]);
    expect(gp.biasHn?.mu.shape).toEqual([4]);
    expect(Object.fromEntries(Object.entries(gb.weights).map(([k, d]) => [k, d.index]))).toEqual({
      weightIh: 0,
      weightHh: 1,
      bias: 2,
      biasHn: 4,
    });
    // without a bias the other weights keep their keys
    expectBitIdentical(gp.weightIh.mu, g.weightIh.mu, 'weightIh init independent of bias');
    expectBitIdentical(gp.weightHh.rho, g.weightHh.rho, 'weightHh init independent of bias');
    const x = tf.ones([2, 5, 3]);
    const r = gru.applyWithState(g, x, { key: key(3) });
    expect(r.out.shape).toEqual([2, 5, 4]);
    expect(vals(r.kl).every(Number.isFinite)).toBe(true);
    dispose([params, g, gp, p, x, r]);
  });

  it('mean mode is deterministic, needs no key, has KL 0, equals forward(mean(params)); freeze', () => {
    for (const cell of ['lstm', 'gru'] as const) {
      const layer = makeLayer(cell, 2, 3, true, true);
      const { params } = layer.init(key(4), [-1, 4, 2]);
      const x = tf.tensor3d(uniformArray(key(5), 2 * 4 * 2, -1, 1), [2, 4, 2]);
      const a = layer.apply(params as never, x, { mode: 'mean' });
      const b = layer.apply(params as never, x, { mode: 'mean', key: key(9) });
      const f = (layer as BayesianLSTMLayer).forward(
        (layer as BayesianLSTMLayer).mean(params as never),
        x,
      );
      expectBitIdentical(a.out, b.out, 'mean twice');
      expectBitIdentical(a.out, f.out, 'mean = forward(mean)');
      expect(num(a.kl)).toBe(0);
      const s = layer.apply(params as never, x, { key: key(9) });
      expect(Math.max(...vals(tf.abs(tf.sub(s.out, a.out))))).toBeGreaterThan(1e-4);
      const frozen =
        cell === 'lstm'
          ? bayesianLSTM({ inFeatures: 2, outFeatures: 3, peephole: true, freeze: true })
          : bayesianGRU({ inFeatures: 2, outFeatures: 3, freeze: true });
      const fz = frozen.apply(params as never, x);
      expectBitIdentical(fz.out, a.out, 'freeze: true without a key');
      expect(num(frozen.klDivergence(params as never))).toBe(0);
      dispose([params, x, a, b, f, s, fz]);
    }
  });

  it("computeKl: false skips the KL (same sample); kl: 'closed' is key-independent and >= 0", () => {
    for (const cell of ['lstm', 'gru'] as const) {
      const opts = {
        inFeatures: 2,
        outFeatures: 3,
        prior: normalPrior(0, 0.5),
        kl: 'closed' as const,
      };
      const layer = cell === 'lstm' ? bayesianLSTM({ ...opts, peephole: true }) : bayesianGRU(opts);
      const mc =
        cell === 'lstm'
          ? bayesianLSTM({ inFeatures: 2, outFeatures: 3, peephole: true })
          : bayesianGRU({ inFeatures: 2, outFeatures: 3 });
      const { params } = layer.init(key(1), [-1, 3, 2]);
      tf.tidy(() => {
        const x = tf.tensor3d(uniformArray(key(2), 2 * 3 * 2, -1, 1), [2, 3, 2]);
        const a = layer.apply(params as never, x, { key: key(3) });
        const b = layer.apply(params as never, x, { key: key(4) });
        expect(num(a.kl)).toBeGreaterThanOrEqual(0);
        expect(num(a.kl)).toBe(num(b.kl));
        const v = vmapSamples(layer, 3)(params, x, { key: key(3) });
        expectClose(vals(v.kl), [num(a.kl), num(a.kl), num(a.kl)], 1e-6, 0, 'closed per sample');
        const full = mc.apply(params as never, x, { key: key(3) });
        const noKl = mc.apply(params as never, x, { key: key(3), computeKl: false });
        expect(num(noKl.kl)).toBe(0);
        expect(num(full.kl)).not.toBe(0);
        expectBitIdentical(noKl.out, full.out, 'same sample without the KL');
      });
      dispose(params);
    }
  });

  it('config errors list every problem; the GRU has no peephole option', () => {
    const e = errorOf(() =>
      bayesianLSTM({
        inFeatures: 0,
        outFeatures: 1.5,
        peephole: 'yes' as never,
        priorPi: 3,
        bias: 1 as never,
        hidden_size: 4,
      } as never),
    );
    expect(e).toBeInstanceOf(ConfigError);
    const problems = (e as ConfigError).problems.join('\n');
    expect((e as ConfigError).problems.length).toBe(6);
    expect(problems).toMatch(/inFeatures must be a positive integer, got 0/);
    expect(problems).toMatch(/outFeatures must be a positive integer, got 1.5/);
    expect(problems).toMatch(/peephole must be true or false/);
    expect(problems).toMatch(/priorPi must be in \[0, 1\], got 3/);
    expect(problems).toMatch(/bias must be true or false/);
    expect(problems).toMatch(/unknown option 'hidden_size'/);
    expect(e.message).toContain("bayesianLSTM 'bayesianLSTM'");
    const g = errorOf(() =>
      bayesianGRU({ inFeatures: 2, outFeatures: 2, peephole: true, kl: 'closed' } as never),
    );
    expect((g as ConfigError).problems.length).toBe(2);
    expect(g.message).toMatch(/unknown option 'peephole'/);
    expect(g.message).toMatch(/kl: 'closed'/);
  });

  it('shape errors name the layer path, the expected and the actual shape', () => {
    const model = serial({
      enc: bayesianGRU({ inFeatures: 3, outFeatures: 2 }),
      last: lastTimeStep(),
    });
    expect(() => model.init(key(0), [-1, 5, 4])).toThrow(ShapeError);
    const { params } = model.init(key(0), [-1, 5, 3]);
    const x = tf.ones([2, 5, 4]);
    const e = errorOf(() => model.apply(params, x, { key: key(1) }));
    expect(e).toBeInstanceOf(ShapeError);
    expect((e as ShapeError).path).toBe('enc');
    expect(e.message).toContain('[batch, time, 3]');
    expect(e.message).toContain('[2, 5, 4]');
    const gru = bayesianGRU({ inFeatures: 3, outFeatures: 2, name: 'g' });
    const good = tf.ones([2, 5, 3]);
    const badH = tf.ones([3, 2]);
    const bad = errorOf(() =>
      gru.apply(params['enc'] as never, { x: good, state: { h: badH } }, { key: key(1) }),
    );
    expect(bad).toBeInstanceOf(ShapeError);
    expect((bad as ShapeError).path).toBe('g.state.h');
    expect(bad.message).toContain('[2, 2]');
    const empty = tf.ones([2, 0, 3]);
    const before = tf.memory().numTensors;
    expect(() => gru.apply(params['enc'] as never, empty, { key: key(1) })).toThrow(
      /at least one time step/,
    );
    expect(tf.memory().numTensors).toBe(before);
    dispose([params, x, good, empty, badH]);
  });

  it('lastTimeStep takes the last step of [..., T, F], also in a batched pass', () => {
    const l = lastTimeStep();
    expect(l.outputShape([-1, 7, 3])).toEqual([-1, 3]);
    const x = tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 3, 2]);
    const { out } = l.apply({}, x);
    expect(vals(out)).toEqual([5, 6, 11, 12]);
    const xs = tf.stack([x, tf.neg(x)]);
    const b = l.applyBatched!({}, xs, { numSamples: 2, batched: true });
    expect(b.out.shape).toEqual([2, 2, 2]);
    expect(vals(b.out)).toEqual([5, 6, 11, 12, -5, -6, -11, -12]);
    expect(() => l.apply({}, tf.ones([3]))).toThrow(ShapeError);
    dispose([x, out, xs, b.out, b.kl]);
  });
});

describe('bayesianLSTM / bayesianGRU: vmapSamples, training, backends', () => {
  const build = (cell: Cell, peephole: boolean, freeze: boolean, F: number, H: number): AnyLayer =>
    serial({
      rnn:
        cell === 'lstm'
          ? bayesianLSTM({ inFeatures: F, outFeatures: H, peephole, freeze, posteriorRhoInit: -2 })
          : bayesianGRU({ inFeatures: F, outFeatures: H, freeze, posteriorRhoInit: -2 }),
      last: lastTimeStep(),
      out: bayesianLinear({ inFeatures: H, outFeatures: 2, posteriorRhoInit: -2 }),
    });

  it('vmapSamples equals loopSamples (models and a bare layer with an initial state)', () => {
    fc.assert(
      fc.property(
        cfgArb,
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom(undefined, 'sample' as const, 'mean' as const),
        fc.boolean(),
        (c, S, mode, freeze) => {
          const model = build(c.cell, c.peephole, freeze, c.F, c.H);
          const { params } = model.init(key(c.seed), [-1, c.T, c.F]);
          tf.tidy(() => {
            const x = tf.tensor3d(uniformArray(key(c.seed + 1), c.B * c.T * c.F, -1, 1), [
              c.B,
              c.T,
              c.F,
            ]);
            const ctx = { key: key(c.seed + 2), mode };
            const v = vmapSamples(model, S)(params, x, ctx);
            const l = loopSamples(model, S)(params, x, ctx);
            expect(v.out.shape).toEqual([S, c.B, 2]);
            expectClose(vals(v.out), vals(l.out), 1e-5, 1e-5, 'out');
            expectClose(vals(v.kl), vals(l.kl), 1e-5, 1e-3, 'kl');
            // the bare recurrent layer with { x, state }: the sequence [S, B, T, H]
            const rnn = makeLayer(c.cell, c.F, c.H, c.bias, c.peephole);
            const p = rnn.init(key(c.seed + 3), [-1, c.T, c.F]).params;
            const state =
              c.cell === 'lstm'
                ? { h: tf.fill([c.B, c.H], 0.3), c: tf.fill([c.B, c.H], -0.2) }
                : { h: tf.fill([c.B, c.H], 0.3) };
            const input = c.withState ? { x, state } : x;
            const vr = vmapSamples(rnn, S)(p, input, ctx);
            const lr = loopSamples(rnn, S)(p, input, ctx);
            expect(vr.out.shape).toEqual([S, c.B, c.T, c.H]);
            expectClose(vals(vr.out), vals(lr.out), 1e-5, 1e-5, 'bare out');
            expectClose(vals(vr.kl), vals(lr.kl), 1e-5, 1e-3, 'bare kl');
            dispose(p);
          });
          dispose(params);
        },
      ),
      { numRuns: 20 },
    );
  });

  /**
   * A per-sample noise substitute for some weights (the others are drawn from the key): eps of
   * `path` in sample `s` from `foldIn(foldIn(key(seed), i), s)`, `i` the path's index in `paths`.
   * Records every call.
   */
  function perSampleNoise(
    seed: number,
    substituted: readonly string[],
  ): { noise: NoiseFn; calls: { path: string; shape: number[]; sample: number }[] } {
    const calls: { path: string; shape: number[]; sample: number }[] = [];
    const noise: NoiseFn = (path, shape, sample) => {
      calls.push({ path, shape: [...shape], sample });
      const i = substituted.indexOf(path);
      if (i < 0) return undefined;
      const n = shape.reduce((a, b) => a * b, 1);
      return tf.tensor(uniformArray(foldIn(foldIn(key(seed), i), sample), n, -2, 2), [...shape]);
    };
    return { noise, calls };
  }

  /** A loop of `apply`, sample `s` with `foldIn(key, s)` and `sample: s`; inputs per sample. */
  function applyLoop(
    layer: AnyLayer,
    params: ParamTree,
    inputs: (s: number) => unknown,
    S: number,
    ctx: { key: ReturnType<typeof key>; noise?: NoiseFn; mode?: 'sample' | 'mean' },
  ): { out: tf.Tensor; kl: tf.Tensor } {
    const outs: tf.Tensor[] = [];
    const kls: tf.Tensor[] = [];
    for (let s = 0; s < S; s++) {
      const r = layer.apply(params, inputs(s), { ...ctx, key: foldIn(ctx.key, s), sample: s });
      outs.push(r.out as tf.Tensor);
      kls.push(r.kl);
    }
    return { out: tf.stack(outs), kl: tf.stack(kls) };
  }

  it('vmapSamples equals a loop of apply with a per-sample ctx.noise (some weights substituted)', () => {
    fc.assert(
      fc.property(
        cfgArb,
        fc.integer({ min: 1, max: 3 }),
        fc.subarray(['weightIh', 'weightHh', 'bias', 'peephole', 'biasHn']),
        (c, S, sub) => {
          const rnn = makeLayer(c.cell, c.F, c.H, c.bias, c.peephole, 'rnn');
          const { params } = rnn.init(key(c.seed), [-1, c.T, c.F]);
          const declared = Object.keys(rnn.weights);
          const { noise, calls } = perSampleNoise(
            c.seed,
            sub.map((k) => `rnn.${k}`),
          );
          tf.tidy(() => {
            const x = tf.tensor3d(uniformArray(key(c.seed + 1), c.B * c.T * c.F, -1, 1), [
              c.B,
              c.T,
              c.F,
            ]);
            const state =
              c.cell === 'lstm'
                ? { h: tf.fill([c.B, c.H], 0.3), c: tf.fill([c.B, c.H], -0.2) }
                : { h: tf.fill([c.B, c.H], 0.3) };
            const input = c.withState ? { x, state } : x;
            const ctx = { key: key(c.seed + 2), noise };
            const v = vmapSamples(rnn, S)(params, input, ctx);
            // vmap asks for the noise of each weight once per sample, with the weight's own shape
            const want = declared.flatMap((k) =>
              Array.from({ length: S }, (_, s) => ({
                path: `rnn.${k}`,
                shape: [...(rnn.weights[k]?.shape ?? [])],
                sample: s,
              })),
            );
            const byPath = (a: { path: string; sample: number }, b: typeof a) =>
              a.path < b.path ? -1 : a.path > b.path ? 1 : a.sample - b.sample;
            expect([...calls].sort(byPath)).toEqual([...want].sort(byPath));
            calls.length = 0;
            const l = applyLoop(rnn, params, () => input, S, ctx);
            expect([...calls].sort(byPath)).toEqual([...want].sort(byPath));
            expect(v.out.shape).toEqual([S, c.B, c.T, c.H]);
            expectClose(vals(v.out), vals(l.out), 1e-5, 1e-5, 'out');
            expectClose(vals(v.kl), vals(l.kl), 1e-5, 1e-3, 'kl');
            // loopSamples is that loop
            const ls = loopSamples(rnn, S)(params, input, ctx);
            expectBitIdentical(ls.out, l.out, 'loopSamples out');
            expectBitIdentical(ls.kl, l.kl, 'loopSamples kl');
            // a substituted weight's noise differs between samples (not one eps for all)
            if (S > 1 && sub.includes('weightHh')) {
              const [a, b] = tf.unstack(v.out);
              expect(Math.max(...vals(tf.abs(tf.sub(a!, b!))))).toBeGreaterThan(1e-6);
            }
          });
          dispose(params);
        },
      ),
      { numRuns: 20 },
    );
  });

  it('a batched input { x [S, ...], state [S, ...] }: the batch rule equals the loop (sample and mean)', () => {
    fc.assert(
      fc.property(
        cfgArb,
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom('sample' as const, 'mean' as const),
        fc.boolean(),
        fc.boolean(),
        (c, S, mode, sharedState, withNoise) => {
          const rnn = makeLayer(c.cell, c.F, c.H, c.bias, c.peephole, 'rnn');
          const { params } = rnn.init(key(c.seed), [-1, c.T, c.F]);
          const { noise } = perSampleNoise(c.seed, ['rnn.weightHh', 'rnn.bias']);
          tf.tidy(() => {
            const x = tf.tensor4d(uniformArray(key(c.seed + 1), S * c.B * c.T * c.F, -1, 1), [
              S,
              c.B,
              c.T,
              c.F,
            ]);
            const st = (seed: number) =>
              sharedState
                ? tf.tensor2d(uniformArray(key(seed), c.B * c.H, -1, 1), [c.B, c.H])
                : tf.tensor3d(uniformArray(key(seed), S * c.B * c.H, -1, 1), [S, c.B, c.H]);
            const state: Record<string, tf.Tensor> =
              c.cell === 'lstm' ? { h: st(c.seed + 2), c: st(c.seed + 3) } : { h: st(c.seed + 2) };
            const input = c.withState ? { x, state } : x;
            const k = key(c.seed + 4);
            const b = rnn.applyBatched(params as never, input as never, {
              keys: Array.from({ length: S }, (_, s) => foldIn(k, s)),
              numSamples: S,
              batched: true,
              mode,
              ...(withNoise ? { noise } : {}),
            });
            const xs = tf.unstack(x);
            const states = Object.fromEntries(
              Object.entries(state).map(([n, t]) => [n, sharedState ? undefined : tf.unstack(t)]),
            );
            const inputAt = (s: number) => {
              if (!c.withState) return xs[s];
              const one = Object.fromEntries(
                Object.entries(state).map(([n, t]) => [n, states[n]?.[s] ?? t]),
              );
              return { x: xs[s], state: one };
            };
            const l = applyLoop(rnn, params, inputAt, S, {
              key: k,
              mode,
              ...(withNoise ? { noise } : {}),
            });
            expect(b.batched).toBe(true);
            expect(b.out.shape).toEqual([S, c.B, c.T, c.H]);
            expectClose(vals(b.out), vals(l.out), 1e-5, 1e-5, 'out');
            expectClose(vals(b.kl), vals(l.kl), 1e-5, 1e-3, 'kl');
            if (mode === 'mean') expect(vals(b.kl).every((v) => v === 0)).toBe(true);
          });
          dispose(params);
        },
      ),
      { numRuns: 20 },
    );
  });

  it('no tensor growth in apply, applyWithState, forward, zeroState and the batch rule', async () => {
    for (const cell of ['lstm', 'gru'] as const) {
      const rnn = makeLayer(cell, 2, 3, true, true, 'rnn');
      const { params } = rnn.init(key(0), [-1, 4, 2]);
      const x = tf.tensor3d(uniformArray(key(1), 2 * 4 * 2, -1, 1), [2, 4, 2]);
      const xs = tf.tensor4d(uniformArray(key(2), 3 * 2 * 4 * 2, -1, 1), [3, 2, 4, 2]);
      const { noise } = perSampleNoise(3, ['rnn.weightIh', 'rnn.biasHn', 'rnn.peephole']);
      const l = rnn as BayesianLSTMLayer;
      const growth = await trackTensors(
        (i) => {
          const k = foldIn(key(4), i + 10);
          const keys = [0, 1, 2].map((s) => foldIn(k, s));
          const state = l.zeroState(2);
          const a = l.apply(params as never, x, { key: k });
          const w = l.applyWithState(params as never, { x, state }, { key: k, noise });
          const f = l.forward(l.mean(params as never), x, w.state);
          const v = vmapSamples(rnn, 3)(params, { x, state }, { key: k, noise });
          const m = vmapSamples(rnn, 2)(params, x, { mode: 'mean' });
          const bs = rnn.applyBatched(params as never, xs, { keys, numSamples: 3, batched: true });
          const bm = rnn.applyBatched(params as never, xs, {
            numSamples: 3,
            batched: true,
            mode: 'mean',
          });
          return [state, a, w, f, v, m, bs, bm];
        },
        { steps: 5, release: (out) => dispose(out as never) },
      );
      expect(growth.growth).toBe(0);
      expect(new Set(growth.perStep).size).toBe(1);
      dispose([params, x, xs]);
    }
  });

  it('no tensor growth over training steps, and the loss goes down (LSTM and GRU)', async () => {
    for (const cell of ['lstm', 'gru'] as const) {
      const model = build(cell, cell === 'lstm', false, 2, 4);
      const lik = mse();
      const opt = adam({ learningRate: 0.02 });
      const step = trainStep(elbo(model, lik, { numSamples: 2 }), opt);
      const x = tf.tensor3d(uniformArray(key(1), 16 * 5 * 2, -1, 1), [16, 5, 2]);
      const y = tf.tidy(() =>
        tf.slice(tf.concat([tf.sum(x, [1]), tf.mean(x, [1])], 1), [0, 1], [16, 2]),
      );
      const params = { model: model.init(key(0), [-1, 5, 2]).params, likelihood: lik.init() };
      let state = { params, optState: opt.init(params), step: 0 };
      const losses: number[] = [];
      const growth = await trackTensors(
        (i) => {
          const r = step(state, x, y, foldIn(key(2), i + 1), 1 / 16);
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
      dispose([state.params as ParamTree, state.optState as never, x, y]);
    }
  });

  /** A few training steps from a seed, on the active backend; the trained leaves' values. */
  function trainShort(cell: Cell, seed: number): Float32Array[] {
    const model = build(cell, true, false, 2, 3);
    const lik = mse();
    const opt = adam({ learningRate: 0.02 });
    const step = trainStep(elbo(model, lik, { numSamples: 2 }), opt);
    const x = tf.tensor3d(uniformArray(key(seed), 8 * 4 * 2, -1, 1), [8, 4, 2]);
    const y = tf.tensor2d(uniformArray(key(seed + 1), 8 * 2, -1, 1), [8, 2]);
    const params = { model: model.init(key(seed + 2), [-1, 4, 2]).params, likelihood: lik.init() };
    let state = { params, optState: opt.init(params), step: 0 };
    for (let i = 0; i < 5; i++) state = step(state, x, y, foldIn(key(seed + 3), i), 1 / 8).state;
    const out = leaves(state.params as ParamTree).map((l) =>
      (l.dataSync() as Float32Array).slice(),
    );
    dispose([state.params as ParamTree, state.optState as never, x, y]);
    return out;
  }

  it('cpu and wasm agree on outputs, KL and gradients; training is reproducible on each', async () => {
    const results: Record<
      string,
      { out: number[]; kl: number[]; grads: number[][]; trained: Float32Array[][] }
    > = {};
    for (const backend of ['cpu', 'wasm'] as const) {
      await useBackend(backend);
      const r = {
        out: [] as number[],
        kl: [] as number[],
        grads: [] as number[][],
        trained: [] as Float32Array[][],
      };
      for (const cell of ['lstm', 'gru'] as const) {
        const model = build(cell, true, false, 3, 4);
        const { params } = model.init(key(7), [-1, 5, 3]);
        const x = tf.tensor3d(uniformArray(key(8), 2 * 5 * 3, -1, 1), [2, 5, 3]);
        const a = vmapSamples(model, 3)(params, x, { key: key(9) });
        r.out.push(...vals(a.out));
        r.kl.push(...vals(a.kl));
        const { value, grads } = valueAndGrad(
          (p: ParamTree) => tf.sum(vmapSamples(model, 2)(p, x, { key: key(10) }).out) as tf.Scalar,
        )(params);
        r.grads.push(...leaves(grads).map(vals));
        dispose([params, x, a.out, a.kl, value, grads]);
        const t1 = trainShort(cell, 20);
        const t2 = trainShort(cell, 20);
        t1.forEach((p, i) =>
          expect(Buffer.from(p.buffer).equals(Buffer.from(t2[i]!.buffer))).toBe(true),
        );
        r.trained.push(t1);
      }
      results[backend] = r;
    }
    const c = results['cpu']!;
    const w = results['wasm']!;
    expectClose(w.out, c.out, 1e-5, 1e-6, 'out');
    expectClose(w.kl, c.kl, 1e-5, 1e-3, 'kl');
    c.grads.forEach((g, i) => expectClose(w.grads[i]!, g, 1e-4, 1e-5, `grad leaf ${i}`));
    c.trained.forEach((t, i) =>
      t.forEach((leaf, j) =>
        expectClose(
          Array.from(w.trained[i]![j]!),
          Array.from(leaf),
          1e-3,
          1e-4,
          `trained ${i}.${j}`,
        ),
      ),
    );
  });
});

describe('bayesianLSTM / bayesianGRU: the fused recurrence', () => {
  afterAll(async () => {
    await useBackend(TEST_BACKEND);
  });

  /** Outputs, final state and gradients (params and initial state) of one batched pass. */
  function passWithGrads(cell: Cell, bias: boolean, batchedX: boolean): number[][] {
    const layer = makeLayer(cell, 3, 4, bias, false, 'rnn');
    const { params } = layer.init(key(11), [-1, 5, 3]);
    const S = 2;
    const xShape = batchedX ? [S, 2, 5, 3] : [2, 5, 3];
    const x = tf.tensor(
      uniformArray(
        key(12),
        xShape.reduce((a, b) => a * b),
        -1,
        1,
      ),
      xShape,
    );
    // a per-sample initial state with a per-sample input, a shared one with a shared input
    const sShape = batchedX ? [S, 2, 4] : [2, 4];
    const n = sShape.reduce((a, b) => a * b);
    const tree = {
      p: params,
      h: tf.tensor(uniformArray(key(13), n, -1, 1), sShape),
      c: tf.tensor(uniformArray(key(14), n, -1, 1), sShape),
    };
    const state = (t: typeof tree) => (cell === 'lstm' ? { h: t.h, c: t.c } : { h: t.h });
    const keys = Array.from({ length: S }, (_, s) => foldIn(key(15), s));
    const apply = (t: typeof tree): tf.Tensor =>
      batchedX
        ? layer.applyBatched(t.p as never, { x, state: state(t) } as never, {
            keys,
            numSamples: S,
            batched: true,
            mode: 'sample',
          }).out
        : vmapSamples(layer, S)(t.p, { x, state: state(t) } as never, { key: key(15) }).out;
    const out = apply(tree);
    const { value, grads } = valueAndGrad((t: typeof tree) => {
      const o = apply(t);
      const r = tf.sin(tf.reshape(tf.range(0, o.size), o.shape));
      return tf.sum(tf.mul(o, r)) as tf.Scalar;
    })(tree);
    const res = [vals(out), [num(value)], ...leaves(grads).map(vals)];
    if (cell === 'gru') res.pop(); // c is not an input of the GRU: its gradient is zero
    dispose([tree, x, out, value, grads as never]);
    return res;
  }

  it('on wasm, the fused cells equal the op-by-op recurrence (outputs, gradients, state)', async () => {
    await useBackend('wasm');
    const names = ['BlitzLSTMCell', 'BlitzLSTMCellGrad', 'BlitzGRUCell', 'BlitzGRUCellGrad'];
    const cells = tf.getKernelsForBackend('wasm').filter((k) => names.includes(k.kernelName));
    expect(cells.length).toBe(4);
    for (const cell of ['lstm', 'gru'] as const) {
      for (const [bias, batchedX] of [
        [true, false],
        [false, true],
      ] as const) {
        const fused = passWithGrads(cell, bias, batchedX);
        for (const n of names) tf.unregisterKernel(n, 'wasm');
        let ops: number[][];
        try {
          ops = passWithGrads(cell, bias, batchedX);
        } finally {
          cells.forEach((k) => tf.registerKernel(k));
        }
        expect(fused.length).toBe(ops.length);
        fused.forEach((f, i) => expectClose(f, ops[i]!, 1e-5, 1e-6, `${cell} part ${i}`));
      }
    }
  });

  it('costs a few kernels per step: one op for the sequence, with its own backward pass', async () => {
    for (const backend of ['cpu', 'wasm'] as const) {
      await useBackend(backend);
      for (const cell of ['lstm', 'gru'] as const) {
        const layer = makeLayer(cell, 3, 4, true, false, 'rnn');
        const { params } = layer.init(key(1), [-1, 4, 3]);
        const count = async (T: number): Promise<number> => {
          const x = tf.tensor3d(uniformArray(key(2), 2 * T * 3, -1, 1), [2, T, 3]);
          const info = await tf.profile(() => {
            const { value, grads } = valueAndGrad(
              (p: ParamTree) =>
                tf.sum(vmapSamples(layer, 3)(p as never, x, { key: key(3) }).out) as tf.Scalar,
            )(params);
            dispose([value, grads]);
          });
          x.dispose();
          return info.kernels.length;
        };
        const perStep = ((await count(12)) - (await count(4))) / 8;
        // fused cells on wasm: matMul + cell forward, cell gradient + matMul; the op-by-op
        // recurrence ~12 ops forward and ~10 backward (autodiff through the steps: ~130)
        expect(perStep).toBeLessThanOrEqual(backend === 'wasm' ? 6 : 30);
        dispose(params);
      }
    }
  });
});
