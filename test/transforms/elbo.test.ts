import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  MissingKeyError,
  bayesianLinear,
  type NoiseFn,
  serial,
  tanh,
  type BayesianLinearParams,
} from '../../src/layers';
import { foldIn, key, normalArray, type Key } from '../../src/params/random';
import { dispose, get, paths, leaves } from '../../src/params/tree';
import {
  elbo,
  elboDetailed,
  gaussianNll,
  klDivergence,
  loopSamples,
  mse,
  predictive,
  valueAndGrad,
  valueAndGradWithAux,
} from '../../src/transforms';
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

const IN = 2;
const HID = 3;
const makeModel = () =>
  serial({
    hidden: bayesianLinear({
      inFeatures: IN,
      outFeatures: HID,
      posteriorRhoInit: -2,
      posteriorMuInit: 0.2,
    }),
    act: tanh(),
    out: bayesianLinear({ inFeatures: HID, outFeatures: 1, posteriorRhoInit: -2 }),
  });

type Flat = Record<string, number[]>;

/** The noise of sample s of weight `layer.part` (layer index i in the serial model). */
function epsOf(k: Key, s: number, layerIndex: number, part: 0 | 1, n: number): number[] {
  return Array.from(normalArray(foldIn(foldIn(foldIn(k, s), layerIndex), part), n));
}

/**
 * The ELBO of the model above in float64: mean over samples of the likelihood's mean NLL plus
 * klWeight times the mean MC KL (log q - log p with the default scale-mixture prior).
 */
function elbo64(
  p: Flat,
  x: number[][],
  y: number[],
  k: Key,
  S: number,
  klWeight: number,
  lik: 'mse' | 'gaussian',
): number {
  const layers = [
    { name: 'hidden', index: 0, inF: IN, outF: HID },
    { name: 'out', index: 2, inF: HID, outF: 1 },
  ];
  let nllSum = 0;
  let klSum = 0;
  for (let s = 0; s < S; s++) {
    const w: Record<string, number[]> = {};
    for (const l of layers) {
      for (const [part, idx] of [
        ['kernel', 0],
        ['bias', 1],
      ] as const) {
        const mu = p[`${l.name}.${part}.mu`]!;
        const rho = p[`${l.name}.${part}.rho`]!;
        const eps = epsOf(k, s, l.index, idx, mu.length);
        const ws = mu.map((m, i) => m + softplus64(rho[i]!) * eps[i]!);
        w[`${l.name}.${part}`] = ws;
        ws.forEach((wi, i) => {
          const logQ = -logSoftplus64(rho[i]!) - 0.5 * eps[i]! ** 2 - 0.5 * LOG_2PI;
          klSum += logQ - logMixture64(wi, 0.5, 1, 0.002);
        });
      }
    }
    x.forEach((row, b) => {
      const h = Array.from({ length: HID }, (_, j) =>
        Math.tanh(
          row.reduce((a, xi, i) => a + xi * w['hidden.kernel']![i * HID + j]!, 0) +
            w['hidden.bias']![j]!,
        ),
      );
      const pred = h.reduce((a, hj, j) => a + hj * w['out.kernel']![j]!, 0) + w['out.bias']![0]!;
      const r2 = (pred - y[b]!) ** 2;
      if (lik === 'mse') nllSum += r2;
      else {
        const sig = softplus64(p['noise.rho']![0]!);
        nllSum += Math.log(sig) + r2 / (2 * sig * sig) + 0.5 * LOG_2PI;
      }
    });
  }
  return nllSum / (S * x.length) + (klWeight * klSum) / S;
}

/** Central finite differences of a float64 function of a flat parameter record. */
function fd64(f: (p: Flat) => number, p: Flat, h = 1e-6): Flat {
  const out: Flat = {};
  for (const [name, v] of Object.entries(p)) {
    out[name] = v.map((_, i) => {
      const plus = { ...p, [name]: v.map((x, j) => (j === i ? x + h : x)) };
      const minus = { ...p, [name]: v.map((x, j) => (j === i ? x - h : x)) };
      return (f(plus) - f(minus)) / (2 * h);
    });
  }
  return out;
}

describe('elbo gradients vs finite differences (float64 reference with the same noise)', () => {
  for (const lik of ['mse', 'gaussian'] as const) {
    it(`d ELBO / d(mu, rho) with ${lik === 'mse' ? 'mse' : 'gaussianNll'} (property over keys)`, () => {
      const model = makeModel();
      const likelihood = lik === 'mse' ? mse() : gaussianNll({ initStd: 0.7 });
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 1e6 }),
          fc.integer({ min: 1, max: 3 }),
          fc.double({ min: 0, max: 0.2, noNaN: true }),
          (seed, S, klWeight) => {
            const params = {
              model: model.init(key(seed), [-1, IN]).params,
              likelihood: likelihood.init(),
            };
            const x = [
              [0.5, -1],
              [1.5, 0.25],
              [-0.7, 0.8],
            ];
            const y = [0.3, -0.4, 1.1];
            const xT = tf.tensor2d(x);
            const yT = tf.tensor2d(y, [3, 1]);
            const k = key(seed + 7);
            const loss = elbo(model, likelihood as never, { numSamples: S });
            const { value, grads } = valueAndGrad(loss)(params, xT, yT, k, klWeight);
            const names = paths(params);
            const flat: Flat = {};
            names.forEach((n, i) => {
              flat[n.replace(/^(model|likelihood)\./, '')] = vals(leaves(params)[i] as tf.Tensor);
            });
            const f = (p: Flat) => elbo64(p, x, y, k, S, klWeight, lik);
            const ref = f(flat);
            expect(Math.abs(num(value) - ref)).toBeLessThan(2e-5 * (1 + Math.abs(ref)));
            const fd = fd64(f, flat);
            for (const n of names) {
              const g = vals(get(grads, n) as tf.Tensor);
              const r = fd[n.replace(/^(model|likelihood)\./, '')]!;
              const scale = Math.max(1e-3, ...r.map(Math.abs));
              expectClose(g, r, 2e-3, 2e-4 * scale, n);
            }
            dispose([params, value, grads, xT, yT]);
          },
        ),
        { numRuns: 6 },
      );
    });
  }

  it('float32 central differences (step 1e-2) on rho agree with the gradient to ~1e-2', () => {
    const model = makeModel();
    const lik = gaussianNll();
    const params = { model: model.init(key(1), [-1, IN]).params, likelihood: lik.init() };
    const x = tf.tensor2d([
      [0.5, -1],
      [1, 2],
    ]);
    const y = tf.tensor2d([0.1, -0.2], [2, 1]);
    const k = key(5);
    const loss = elbo(model, lik, { numSamples: 2 });
    const { value, grads } = valueAndGrad(loss)(params, x, y, k, 0.1);
    const rho = (params.model['hidden'] as BayesianLinearParams).kernel.rho;
    const base = vals(rho);
    const g = vals(
      ((grads.model as Record<string, unknown>)['hidden'] as BayesianLinearParams).kernel.rho,
    );
    const h = 1e-2;
    for (let i = 0; i < base.length; i++) {
      const at = (d: number) =>
        tf.tidy(() => {
          const r = tf.tensor(
            base.map((v, j) => (j === i ? v + d : v)),
            rho.shape,
          );
          const hidden = { ...(params.model['hidden'] as BayesianLinearParams) };
          const p2 = {
            model: {
              ...params.model,
              hidden: { ...hidden, kernel: { mu: hidden.kernel.mu, rho: r } },
            },
            likelihood: params.likelihood,
          };
          return num(loss(p2, x, y, k, 0.1));
        });
      const fd = (at(h) - at(-h)) / (2 * h);
      expect(Math.abs((g[i] as number) - fd), `rho[${i}]`).toBeLessThan(1e-2 * Math.abs(fd) + 2e-3);
    }
    dispose([params, value, grads, x, y]);
  });

  it("sampler 'loop' gives the same loss and gradients as 'vmap'", () => {
    const model = makeModel();
    const lik = gaussianNll();
    const params = { model: model.init(key(3), [-1, IN]).params, likelihood: lik.init() };
    const x = tf.tensor2d([
      [0.5, -1],
      [1, 2],
    ]);
    const y = tf.tensor2d([0.1, -0.2], [2, 1]);
    const a = valueAndGrad(elbo(model, lik, { numSamples: 4 }))(params, x, y, key(9), 0.05);
    const b = valueAndGrad(elbo(model, lik, { numSamples: 4, sampler: 'loop' }))(
      params,
      x,
      y,
      key(9),
      0.05,
    );
    expect(Math.abs(num(a.value) - num(b.value))).toBeLessThan(1e-5 * Math.abs(num(b.value)));
    for (const n of paths(params)) {
      expectClose(
        vals(get(a.grads, n) as tf.Tensor),
        vals(get(b.grads, n) as tf.Tensor),
        1e-4,
        1e-6,
        n,
      );
    }
    dispose([params, a, b, x, y]);
  });
});

describe('elbo, elboDetailed, klDivergence', () => {
  const model = makeModel();
  const lik = mse();

  it('elboDetailed: loss = nll + klWeight * mean KL, predictions [S, B, 1], nll = mse of them', () => {
    const params = { model: model.init(key(0), [-1, IN]).params, likelihood: lik.init() };
    const x = tf.tensor2d([
      [1, 2],
      [3, 4],
      [0, 1],
    ]);
    const y = tf.tensor2d([1, 0, -1], [3, 1]);
    const parts = elboDetailed(model, lik, { numSamples: 3 })(params, x, y, key(4), 0.25);
    expect(parts.predictions.shape).toEqual([3, 3, 1]);
    const { out, kl } = loopSamples(model, 3)(params.model, x, { key: key(4) });
    expectClose(vals(parts.predictions), vals(out), 1e-5, 1e-6, 'predictions');
    const klMean = vals(kl).reduce((a, b) => a + b) / 3;
    expect(Math.abs(num(parts.kl) - klMean)).toBeLessThan(1e-5 * Math.abs(klMean));
    const pred = vals(out);
    const yv = [1, 0, -1];
    const nll = pred.reduce((a, p, i) => a + (p - yv[i % 3]!) ** 2, 0) / 9;
    expect(Math.abs(num(parts.nll) - nll)).toBeLessThan(1e-5 * (1 + nll));
    expect(Math.abs(num(parts.loss) - (nll + 0.25 * klMean))).toBeLessThan(
      1e-5 * (1 + Math.abs(nll + 0.25 * klMean)),
    );
    expect(num(elbo(model, lik, { numSamples: 3 })(params, x, y, key(4), 0.25))).toBe(
      num(parts.loss),
    );
    dispose([params, parts, out, kl, x, y]);
  });

  it('elboDetailed parts can be returned as aux of valueAndGradWithAux (loss included, no leak)', () => {
    const params = { model: model.init(key(0), [-1, IN]).params, likelihood: lik.init() };
    const x = tf.ones([2, IN]);
    const y = tf.zeros([2, 1]);
    const start = tf.memory().numTensors;
    const detailed = elboDetailed(model, lik, { numSamples: 2 });
    const r = valueAndGradWithAux((p: typeof params) => {
      const parts = detailed(p, x, y, key(1), 0.5);
      return [parts.loss, parts] as const;
    })(params);
    expect(r.value.isDisposed).toBe(false);
    expect(num(r.aux.loss)).toBe(num(r.value));
    expect(Math.abs(num(r.aux.nll) + 0.5 * num(r.aux.kl) - num(r.value))).toBeLessThan(
      1e-5 * Math.abs(num(r.value)),
    );
    expect(r.aux.predictions.shape).toEqual([2, 2, 1]);
    dispose([r.value, r.grads, r.aux as never]);
    expect(tf.memory().numTensors).toBe(start);
    dispose([params, x, y]);
  });

  it('opts.ctx.noise substitutes the noise: zero noise gives the mean network', () => {
    const params = { model: model.init(key(0), [-1, IN]).params, likelihood: lik.init() };
    const x = tf.tensor2d([[1, -1]]);
    const y = tf.tensor2d([[0.5]]);
    for (const sampler of ['vmap', 'loop'] as const) {
      const parts = elboDetailed(model, lik, {
        numSamples: 2,
        sampler,
        ctx: { noise: (_p, shape) => tf.zeros([...shape]) },
      })(params, x, y, key(1), 1);
      const meanOut = model.apply(params.model, x, { mode: 'mean' }).out;
      expectClose(
        vals(parts.predictions),
        [...vals(meanOut), ...vals(meanOut)],
        1e-6,
        1e-7,
        sampler,
      );
      const klAt0 = model.klDivergence(params.model, {
        noise: (_p, shape) => tf.zeros([...shape]),
      });
      expect(Math.abs(num(parts.kl) - num(klAt0))).toBeLessThan(1e-4 * Math.abs(num(klAt0)));
      dispose([parts, meanOut, klAt0]);
    }
    dispose([params, x, y]);
  });

  it('klDivergence(model, params, key) equals the KL that apply returns with that key', () => {
    const { params } = model.init(key(2), [-1, IN]);
    const x = tf.ones([1, IN]);
    for (const seed of [0, 1, 2]) {
      const a = klDivergence(model, params, key(seed));
      const b = model.apply(params, x, { key: key(seed) }).kl;
      expect(Math.abs(num(a) - num(b))).toBeLessThan(1e-5 * Math.abs(num(b)));
    }
    expect(() => klDivergence(model, params, undefined as never)).toThrow(MissingKeyError);
    dispose([params, x]);
  });

  it('rejects a missing key, a bad klWeight, bad params and bad numSamples', () => {
    const params = { model: model.init(key(0), [-1, IN]).params, likelihood: lik.init() };
    const x = tf.ones([2, IN]);
    const y = tf.ones([2, 1]);
    const before = tf.memory().numTensors;
    const loss = elbo(model, lik);
    expect(() => loss(params, x, y, undefined as never, 1)).toThrow(MissingKeyError);
    expect(() => loss(params, x, y, key(0), -1)).toThrow(/klWeight/);
    expect(() => loss(params, x, y, key(0), NaN)).toThrow(ConfigError);
    expect(() => loss(params.model as never, x, y, key(0), 1)).toThrow(/\{ model, likelihood \}/);
    expect(() => loss(params, x, y, [1, 2, 3] as never, 1)).toThrow(TypeError);
    expect(() => elbo(model, lik, { numSamples: 0 })).toThrow(ConfigError);
    expect(() => elbo(model, lik, { numSamples: 1.5 })).toThrow(/numSamples/);
    expect(tf.memory().numTensors).toBe(before);
    dispose([params, x, y]);
  });
});

describe('predictive', () => {
  const model = makeModel();

  it('runs in passes of samplesPerPass samples: the same result, bounded peak memory', async () => {
    const { params } = model.init(key(0), [-1, IN]);
    const x = tf.randomUniform([64, IN], -1, 1, 'float32', 1);
    const S = 40;
    const one = predictive(model, params, x, { key: key(5), numSamples: S, samplesPerPass: S });
    // a noise that depends on the sample index: each pass must ask for its own samples
    const noise: NoiseFn = (_p, shape, s) => tf.fill([...shape], (s % 7) / 7 - 0.4);
    const oneN = predictive(model, params, x, {
      key: key(5),
      numSamples: S,
      samplesPerPass: S,
      ctx: { noise },
    });
    for (const per of [1, 3, 16]) {
      const r = predictive(model, params, x, { key: key(5), numSamples: S, samplesPerPass: per });
      expectClose(vals(r.samples), vals(one.samples), 1e-6, 1e-7, `samples, ${per} per pass`);
      expectClose(vals(r.std), vals(one.std), 1e-5, 1e-7, `std, ${per} per pass`);
      const rn = predictive(model, params, x, {
        key: key(5),
        numSamples: S,
        samplesPerPass: per,
        ctx: { noise },
      });
      expectClose(vals(rn.samples), vals(oneN.samples), 1e-6, 1e-7, `noise, ${per} per pass`);
      tf.dispose([r.mean, r.std, r.samples, rn.mean, rn.std, rn.samples]);
    }
    // the activations of a wide layer dominate: they live for one pass at a time
    const wide = serial({
      h: bayesianLinear({ inFeatures: IN, outFeatures: 128 }),
      act: tanh(),
      out: bayesianLinear({ inFeatures: 128, outFeatures: 1 }),
    });
    const pw = wide.init(key(1), [-1, IN]).params;
    const peak = async (per: number): Promise<number> =>
      (
        await tf.profile(() => {
          const r = predictive(wide, pw, x, { key: key(5), numSamples: S, samplesPerPass: per });
          tf.dispose([r.mean, r.std, r.samples]);
        })
      ).peakBytes;
    const before = tf.memory().numTensors;
    expect(await peak(4)).toBeLessThan((await peak(S)) / 3);
    expect(tf.memory().numTensors).toBe(before);
    expect(() =>
      predictive(model, params, x, { key: key(5), numSamples: S, samplesPerPass: 0 }),
    ).toThrow(ConfigError);
    tf.dispose([one.mean, one.std, one.samples, oneN.mean, oneN.std, oneN.samples, x]);
    dispose([params, pw]);
  });

  it('mean / std are those of the loopSamples outputs (unbiased std), for either sampler', () => {
    const { params } = model.init(key(0), [-1, IN]);
    const x = tf.tensor2d([
      [0, 1],
      [2, -1],
    ]);
    const S = 6;
    const { out } = loopSamples(model, S)(params, x, { key: key(3) });
    const o = vals(out);
    const B = 2;
    const mean = [0, 1].map(
      (b) => Array.from({ length: S }, (_, s) => o[s * B + b]!).reduce((a, v) => a + v) / S,
    );
    const std = [0, 1].map((b) =>
      Math.sqrt(
        Array.from({ length: S }, (_, s) => (o[s * B + b]! - mean[b]!) ** 2).reduce(
          (a, v) => a + v,
        ) /
          (S - 1),
      ),
    );
    for (const sampler of ['vmap', 'loop'] as const) {
      const p = predictive(model, params, x, { key: key(3), numSamples: S, sampler });
      expect(p.samples.shape).toEqual([S, B, 1]);
      expect(p.mean.shape).toEqual([B, 1]);
      expectClose(vals(p.mean), mean, 1e-5, 1e-6, `mean ${sampler}`);
      expectClose(vals(p.std), std, 1e-3, 1e-6, `std ${sampler}`);
      expect(vals(p.std).every((s) => s > 0)).toBe(true);
      dispose(p as never);
    }
    dispose([params, x, out]);
  });

  it('rejects numSamples < 2 and a missing key', () => {
    const { params } = model.init(key(0), [-1, IN]);
    const x = tf.ones([1, IN]);
    expect(() => predictive(model, params, x, { key: key(0), numSamples: 1 })).toThrow(
      /at least 2/,
    );
    expect(() => predictive(model, params, x, { key: key(0), numSamples: 0 })).toThrow(ConfigError);
    expect(() => predictive(model, params, x, {} as never)).toThrow(MissingKeyError);
    const same = [
      predictive(model, params, x, { key: key(1) }),
      predictive(model, params, x, { key: key(1) }),
    ];
    expectBitIdentical(same[0]!.samples, same[1]!.samples, 'same key');
    expect(same[0]!.samples.shape[0]).toBe(10); // documented default
    dispose([params, x, same as never]);
  });
});
