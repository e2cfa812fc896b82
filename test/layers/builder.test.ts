/**
 * The layer builders: a NEW Bayesian layer written with `bayesianLayer` (a Bayesian bilinear
 * layer, as in the README) gets the whole contract — init, the three steps, both modes, the KL
 * estimators, the batch rule, the noise substitute, validation — checked against float64
 * references; and `deterministicLayer`'s parameter-free layers.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  layers,
  laplacePrior,
  normalPrior,
  random,
  scaleMixturePrior,
  transforms,
  tree,
  type CustomPrior,
  type GaussianParams,
  type Key,
  type Prior,
} from '../../src';
import type { BayesianOptions, NoiseFn, Shape } from '../../src/layers';
import {
  expectClose,
  logMixture64,
  logNormal64,
  num,
  softplus64,
  vals,
} from '../helpers/reference';

/** `y_k = x1ᵀ W_k x2 + b_k` on `[x1 [..., in1], x2 [..., in2]]`: the README's example layer. */
function bayesianBilinear(
  o: { in1: number; in2: number; out: number; name?: string } & BayesianOptions,
) {
  const { in1, in2, out } = o;
  return layers.bayesianLayer({
    kind: 'bayesianBilinear',
    name: o.name,
    options: o,
    optionNames: ['in1', 'in2', 'out', 'name'],
    weights: {
      kernel: { shape: [in1, in2 * out], index: 0 }, // W[i, j * out + k] = W_k[i, j]
      bias: { shape: [out], index: 1 },
    },
    outputShape: ([s1]: readonly [Shape, Shape]) => [...s1.slice(0, -1), out],
    forward: (w, [x1, x2]: readonly [tf.Tensor, tf.Tensor]) => {
      const lead = x1.shape.slice(0, -1);
      const t = tf.reshape(tf.matMul(tf.reshape(x1, [-1, in1]), w.kernel), [-1, in2, out]);
      const y = tf.sum(tf.mul(tf.reshape(x2, [-1, in2, 1]), t), 1);
      return tf.reshape(tf.add(y, w.bias), [...lead, out]);
    },
  });
}

/** float64 bilinear: x1 [B, in1], x2 [B, in2], W [in1, in2 * out] row-major, b [out]. */
function bilinear64(
  x1: number[][],
  x2: number[][],
  W: number[],
  b: number[],
  in2: number,
  out: number,
): number[] {
  const y: number[] = [];
  for (let n = 0; n < x1.length; n++) {
    for (let k = 0; k < out; k++) {
      let acc = b[k] as number;
      (x1[n] as number[]).forEach((a, i) =>
        (x2[n] as number[]).forEach((c, j) => {
          acc += a * (W[i * in2 * out + j * out + k] as number) * c;
        }),
      );
      y.push(acc);
    }
  }
  return y;
}

const matrix = (rows: number, cols: number, seed: number): number[][] => {
  const u = random.uniformArray(random.key(seed), rows * cols);
  return Array.from({ length: rows }, (_, r) =>
    Array.from({ length: cols }, (_, c) => 2 * (u[r * cols + c] ?? 0) - 1),
  );
};

describe('bayesianLayer: a Bayesian bilinear layer written with the builder', () => {
  const in1 = 3;
  const in2 = 2;
  const out = 2;
  const layer = bayesianBilinear({ in1, in2, out, name: 'bil' });
  const x1a = matrix(4, in1, 1);
  const x2a = matrix(4, in2, 2);

  it('has the contract: init from the key, mean mode, sampling from foldIn(key, index), the MC KL', () => {
    tf.tidy(() => {
      const { params, outputShape } = layer.init(random.key(0), [
        [-1, in1],
        [-1, in2],
      ]);
      expect(outputShape).toEqual([-1, out]);
      expectTypeOf(params.kernel.mu).toEqualTypeOf<tf.Tensor>();
      expectTypeOf(params.bias.rho).toEqualTypeOf<tf.Tensor>();
      expect(params.kernel.mu.shape).toEqual([in1, in2 * out]);
      // init: mu ~ N(0, 0.1), rho ~ N(-6, 0.1) from split(foldIn(key, index))
      const [kMu, kRho] = random.split(random.foldIn(random.key(0), 1));
      expectClose(vals(params.bias.mu), vals(tf.mul(random.normal(kMu, [out]), 0.1)), 1e-7);
      expectClose(
        vals(params.bias.rho),
        vals(tf.add(tf.mul(random.normal(kRho, [out]), 0.1), -6)),
        1e-7,
      );
      const x: [tf.Tensor, tf.Tensor] = [tf.tensor2d(x1a), tf.tensor2d(x2a)];
      const mu = vals(params.kernel.mu);
      const bmu = vals(params.bias.mu);
      // mean mode: the float64 bilinear map of the means, KL 0
      const m = layer.apply(params, x, { mode: 'mean' });
      expectClose(vals(m.out), bilinear64(x1a, x2a, mu, bmu, in2, out), 1e-5, 1e-6, 'mean');
      expect(num(m.kl)).toBe(0);
      // a sample: w = mu + softplus(rho) eps, eps from foldIn(key, index); KL = log q - log p
      const k = random.key(7);
      const s = layer.apply(params, x, { key: k });
      const eK = random.normalArray(random.foldIn(k, 0), mu.length);
      const eB = random.normalArray(random.foldIn(k, 1), out);
      const rK = vals(params.kernel.rho);
      const rB = vals(params.bias.rho);
      const wK = mu.map((v, i) => v + softplus64(rK[i] ?? 0) * (eK[i] ?? 0));
      const wB = bmu.map((v, i) => v + softplus64(rB[i] ?? 0) * (eB[i] ?? 0));
      expectClose(vals(s.out), bilinear64(x1a, x2a, wK, wB, in2, out), 1e-5, 1e-6, 'sample');
      let kl = 0;
      for (const [w, m0, r] of [
        [wK, mu, rK],
        [wB, bmu, rB],
      ] as const) {
        w.forEach((wi, i) => {
          kl +=
            logNormal64(wi, m0[i] ?? 0, softplus64(r[i] ?? 0)) - logMixture64(wi, 0.5, 1, 0.002);
        });
      }
      expect(Math.abs(num(s.kl) - kl)).toBeLessThan(1e-3 * (1 + Math.abs(kl)));
      // klDivergence alone is the same KL; the steps compose to apply
      expect(num(layer.klDivergence(params, { key: k }))).toBeCloseTo(num(s.kl), 4);
      const d = layer.sample(params, k);
      expectClose(vals(layer.forward(d.weights, x)), vals(s.out), 1e-6, 1e-7, 'steps');
    });
  });

  it('closed-form KL with a normal prior, freeze, the noise substitute', () => {
    tf.tidy(() => {
      const closed = bayesianBilinear({ in1, in2, out, prior: normalPrior(0, 0.5), kl: 'closed' });
      const { params } = closed.init(random.key(3), [
        [-1, in1],
        [-1, in2],
      ]);
      const x: [tf.Tensor, tf.Tensor] = [tf.tensor2d(x1a), tf.tensor2d(x2a)];
      let ref = 0;
      for (const p of [params.kernel, params.bias]) {
        const m = vals(p.mu);
        const r = vals(p.rho);
        m.forEach((mi, i) => {
          const s = softplus64(r[i] ?? 0);
          ref += Math.log(0.5 / s) + (s * s + mi * mi) / (2 * 0.25) - 0.5;
        });
      }
      expect(num(closed.apply(params, x, { key: random.key(1) }).kl)).toBeCloseTo(ref, 3);
      // freeze: the means unless the context says otherwise
      const frozen = bayesianBilinear({ in1, in2, out, freeze: true });
      const { params: pf } = frozen.init(random.key(3), [
        [-1, in1],
        [-1, in2],
      ]);
      const fm = frozen.apply(pf, x);
      expect(num(fm.kl)).toBe(0);
      const zero: NoiseFn = (_path, shape) => tf.zeros([...shape]);
      const z = frozen.apply(pf, x, { mode: 'sample', noise: zero });
      expectClose(vals(z.out), vals(fm.out), 1e-6, 1e-7, 'zero noise = means');
      expect(() => frozen.apply(pf, x, { mode: 'sample', noise: () => tf.zeros([1]) })).toThrow(
        /bayesianBilinear\.kernel: ctx\.noise returned shape \[1\]/,
      );
      expect(() => frozen.apply(pf, x, { mode: 'sample' })).toThrow(layers.MissingKeyError);
    });
  });

  it('vmapSamples == loopSamples == a loop of apply, also with a noise that depends on the sample', () => {
    const model = layers.serial([layer, layers.relu()]);
    const { params } = model.init(random.key(0), [
      [-1, in1],
      [-1, in2],
    ]);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 1000 }), (S, seed) => {
        tf.tidy(() => {
          const x: [tf.Tensor, tf.Tensor] = [tf.tensor2d(x1a), tf.tensor2d(x2a)];
          const k = random.key(seed);
          const v = transforms.vmapSamples(model, S)(params, x, { key: k });
          const l = transforms.loopSamples(model, S)(params, x, { key: k });
          expectClose(vals(v.out), vals(l.out), 1e-5, 1e-6, 'vmap vs loop');
          expectClose(vals(v.kl), vals(l.kl), 1e-4, 1e-4, 'kl');
          const one = model.apply(params, x, { key: random.foldIn(k, S - 1) });
          const last = tf.slice(v.out, [S - 1, 0, 0], [1, -1, -1]);
          expectClose(vals(last), vals(one.out), 1e-5, 1e-6, 'sample S-1 = apply');
          // a substituted noise: sample s gets eps = s / 4 everywhere; loop and vmap ask alike
          const noise: NoiseFn = (_p, shape, s) => tf.fill([...shape], s / 4);
          const vn = transforms.vmapSamples(model, S)(params, x, { noise });
          const ln = transforms.loopSamples(model, S)(params, x, { noise });
          expectClose(vals(vn.out), vals(ln.out), 1e-5, 1e-6, 'noise: vmap vs loop');
          expectClose(vals(vn.kl), vals(ln.kl), 1e-4, 1e-4, 'noise: kl');
          if (S > 1) {
            const a = vals(tf.slice(vn.out, [0, 0, 0], [1, -1, -1]));
            const b = vals(tf.slice(vn.out, [1, 0, 0], [1, -1, -1]));
            expect(a).not.toEqual(b);
          }
        });
      }),
      { numRuns: 8 },
    );
    tree.dispose(params);
  });

  it('is trained by the ELBO: gradients match finite differences, memory stays flat', () => {
    const model = layers.serial({ bil: layer });
    const lik = transforms.mse();
    const params = {
      model: model.init(random.key(5), [
        [-1, in1],
        [-1, in2],
      ]).params,
      likelihood: lik.init(),
    };
    const x: [tf.Tensor, tf.Tensor] = [tf.tensor2d(x1a), tf.tensor2d(x2a)];
    const y = tf.ones([4, out]);
    const loss = transforms.elbo(model, lik, { numSamples: 2 });
    const k: Key = random.key(9);
    const before = tf.memory().numTensors;
    const { grads, value } = transforms.valueAndGrad(loss)(params, x, y, k, 0.01);
    // central differences of the loss in float32 on a few kernel means
    const g = vals(grads.model.bil.kernel.mu);
    const mu0 = vals(params.model.bil.kernel.mu);
    for (const i of [0, 5, 11]) {
      const at = (d: number): number =>
        tf.tidy(() => {
          const m = mu0.slice();
          m[i] = (m[i] ?? 0) + d;
          const p = {
            ...params,
            model: {
              bil: {
                ...params.model.bil,
                kernel: { mu: tf.tensor(m, [in1, in2 * out]), rho: params.model.bil.kernel.rho },
              },
            },
          };
          return num(loss(p, x, y, k, 0.01));
        });
      const fd = (at(1e-2) - at(-1e-2)) / 2e-2;
      expect(Math.abs((g[i] ?? 0) - fd)).toBeLessThan(2e-2 * (1 + Math.abs(fd)));
    }
    tf.dispose([value]);
    for (const t of [
      grads.model.bil.kernel.mu,
      grads.model.bil.kernel.rho,
      grads.model.bil.bias.mu,
      grads.model.bil.bias.rho,
    ])
      t.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([...x, y]);
  });

  it('validates its options with the shared Bayesian checks, all problems at once', () => {
    let e: unknown;
    try {
      bayesianBilinear({ in1, in2, out, priorSigma1: -1, kl: 'exact' as 'mc', typo: 1 } as never);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(layers.ConfigError);
    const problems = (e as layers.ConfigError).problems.join('\n');
    expect(problems).toMatch(/unknown option 'typo'/);
    expect(problems).toMatch(/priorSigma1 must be a positive finite number/);
    expect(problems).toMatch(/kl must be one of 'mc', 'closed'/);
  });
});

describe('the hand-written gradients of the sample and the Monte Carlo KL', () => {
  it('equal autodiff through the same computation, single and batched, for each built-in prior', () => {
    // the same prior without dLogDensity takes the autodiff path
    const autodiffOf = (p: Prior): CustomPrior => ({
      name: `${p.name} (autodiff)`,
      logProb: (w) => p.logProb(w),
      logDensity: (w) => (p.logDensity as (w: tf.Tensor) => tf.Tensor)(w),
    });
    const priors: Prior[] = [
      scaleMixturePrior(0.5, 1, 0.002),
      scaleMixturePrior(0.25, 0.1, 1.5),
      normalPrior(0.1, 0.3),
      laplacePrior(0, 0.2),
    ];
    for (const prior of priors) {
      for (const rho of [-7, -1, -25]) {
        const mk = (pr: CustomPrior) =>
          layers.serial({
            a: layers.bayesianLinear({
              inFeatures: 3,
              outFeatures: 4,
              prior: pr,
              posteriorRhoInit: rho,
            }),
            t: layers.tanh(),
            b: layers.bayesianLinear({
              inFeatures: 4,
              outFeatures: 1,
              prior: pr,
              posteriorRhoInit: rho,
            }),
          });
        const fast = mk(prior);
        const slow = mk(autodiffOf(prior));
        const lik = transforms.mse();
        const params = { model: fast.init(random.key(3), [-1, 3]).params, likelihood: lik.init() };
        const x = tf.tensor2d(matrix(5, 3, 4));
        const y = tf.ones([5, 1]);
        for (const numSamples of [1, 3]) {
          for (const sampler of ['vmap', 'loop'] as const) {
            const g1 = transforms.grad(transforms.elbo(fast, lik, { numSamples, sampler }))(
              params,
              x,
              y,
              random.key(8),
              0.3,
            );
            const g2 = transforms.grad(transforms.elbo(slow, lik, { numSamples, sampler }))(
              params,
              x,
              y,
              random.key(8),
              0.3,
            );
            for (const path of ['a.kernel', 'a.bias', 'b.kernel', 'b.bias'] as const) {
              const [l, w] = path.split('.') as ['a' | 'b', 'kernel' | 'bias'];
              const gf = g1.model[l][w];
              const gs = g2.model[l][w];
              for (const part of ['mu', 'rho'] as const) {
                const a = vals((gf as GaussianParams)[part]);
                const b = vals((gs as GaussianParams)[part]);
                const scale = Math.max(1e-6, ...b.map(Math.abs));
                expectClose(
                  a,
                  b,
                  2e-3,
                  2e-4 * scale,
                  `${prior.name} rho ${rho} S ${numSamples} ${sampler} ${path}.${part}`,
                );
              }
            }
            tree.dispose([g1, g2]);
          }
        }
        tree.dispose(params);
        tf.dispose([x, y]);
      }
    }
  });
});

describe('bayesianLayer: the weight declarations are checked', () => {
  it('rejects a fold-in index used twice and a bad shape, naming the weights', () => {
    let e: unknown;
    try {
      layers.bayesianLayer({
        kind: 'twoWeights',
        options: {},
        weights: { a: { shape: [2], index: 0 }, b: { shape: [2, 0], index: 0 } },
        outputShape: (s: Shape) => s,
        forward: (w, x: tf.Tensor) => tf.add(x, tf.add(w.a, tf.sum(w.b))),
      });
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(layers.ConfigError);
    const text = (e as layers.ConfigError).message;
    expect(text).toMatch(/twoWeights 'twoWeights' \(its weight declarations\)/);
    expect(text).toMatch(/weight 'a': index must be .* used by no other weight/);
    expect(text).toMatch(/weight 'b': index/);
    expect(text).toMatch(/weight 'b': shape must be positive integers, got \[2, 0\]/);
  });
});

describe('deterministicLayer', () => {
  it('gives a parameter-free layer the whole contract: {} params, KL 0, a batch rule', () => {
    const square = layers.deterministicLayer({
      kind: 'square',
      name: 'sq',
      forward: (_p: layers.EmptyParams, x: tf.Tensor) => tf.square(x),
      batch: 'leading',
    });
    const looped = layers.deterministicLayer({
      kind: 'squareLoop',
      name: 'sq',
      forward: (_p: layers.EmptyParams, x: tf.Tensor) => tf.square(x),
    });
    expect(looped.applyBatched).toBeUndefined();
    tf.tidy(() => {
      const { params, outputShape } = square.init(random.key(0), [-1, 3]);
      expect(params).toEqual({});
      expect(outputShape).toEqual([-1, 3]);
      const x = tf.tensor2d([[1, -2, 3]]);
      const r = square.apply(params, x);
      expect(vals(r.out)).toEqual([1, 4, 9]);
      expect(num(r.kl)).toBe(0);
      expect(num(square.klDivergence(params))).toBe(0);
      const model = layers.serial([
        layers.bayesianLinear({ inFeatures: 3, outFeatures: 2 }),
        square,
      ]);
      const loopModel = layers.serial([
        layers.bayesianLinear({ inFeatures: 3, outFeatures: 2 }),
        looped,
      ]);
      const p = model.init(random.key(1), [-1, 3]).params;
      const v = transforms.vmapSamples(model, 3)(p, x, { key: random.key(2) });
      const l = transforms.vmapSamples(loopModel, 3)(p, x, { key: random.key(2) });
      expectClose(vals(v.out), vals(l.out), 1e-6, 1e-7, 'leading rule = loop fallback');
    });
  });
});
