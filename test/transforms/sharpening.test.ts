import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { useBackend } from '../../src/backend';
import { serial } from '../../src/layers/combinators';
import { bayesianLinear } from '../../src/layers/linear';
import { bayesianGRU, bayesianLSTM, lastTimeStep } from '../../src/layers/rnn';
import type { AnyLayer } from '../../src/layers/types';
import { adam } from '../../src/optim/optimizers';
import { sigmoid64 } from '../helpers/reference';
import { foldIn, key, uniformArray } from '../../src/params/random';
import { dispose, get, leaves, paths, type ParamTree } from '../../src/params/tree';
import { valueAndGrad } from '../../src/transforms/grad';
import { mse } from '../../src/transforms/likelihoods';
import {
  initSharpening,
  sharpen,
  sharpenedElbo,
  sharpenedElboDetailed,
} from '../../src/transforms/sharpening';
import { trainStep } from '../../src/transforms/train';
import { trackTensors } from '../helpers/memory';
import { expectClose, num, vals } from '../helpers/reference';
import { TEST_BACKEND } from '../setup';
import { ConfigError, ParamError, ShapeError } from '../../src/errors';

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

afterAll(async () => {
  await useBackend(TEST_BACKEND);
});

const lik = mse();

const makeModel = (cell: 'lstm' | 'gru', rhoInit = -3): AnyLayer =>
  serial({
    rnn:
      cell === 'lstm'
        ? bayesianLSTM({ inFeatures: 2, outFeatures: 3, posteriorRhoInit: rhoInit })
        : bayesianGRU({ inFeatures: 2, outFeatures: 3, posteriorRhoInit: rhoInit }),
    last: lastTimeStep(),
    out: bayesianLinear({ inFeatures: 3, outFeatures: 1, posteriorRhoInit: rhoInit }),
  });

function data(seed: number, B = 6, T = 4) {
  const x = tf.tensor3d(uniformArray(key(seed), B * T * 2, -1, 1), [B, T, 2]);
  const y = tf.tensor2d(uniformArray(key(seed + 1), B, -1, 1), [B, 1]);
  return { x, y };
}

/** The model params with every sharpened posterior's `mu` replaced by the tree's leaf. */
function withMeans(modelParams: ParamTree, tree: ParamTree): ParamTree {
  const walk = (node: unknown, path: string): unknown => {
    if (node && typeof node === 'object' && 'mu' in node && 'rho' in node) {
      const n = node as { mu: tf.Tensor; rho: tf.Tensor };
      return { mu: get(tree, path) as tf.Tensor, rho: n.rho };
    }
    return Object.fromEntries(
      Object.entries(node as object).map(([k, v]) => [k, walk(v, path ? `${path}.${k}` : k)]),
    );
  };
  return walk(modelParams, '') as ParamTree;
}

/** The batch NLL (mean mode) at the weights of a tree shaped like eta. */
const nllAt = (
  model: AnyLayer,
  modelParams: ParamTree,
  tree: ParamTree,
  x: tf.Tensor,
  y: tf.Tensor,
) =>
  tf.tidy(() =>
    num(lik.nll({}, model.apply(withMeans(modelParams, tree), x, { mode: 'mean' }).out, y)),
  );

describe('posterior sharpening', () => {
  it('phi moves against the batch-NLL gradient: NLL(theta - eta g) < NLL(theta) for small eta, and g is that gradient', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('lstm' as const, 'gru' as const),
        fc.integer({ min: 0, max: 2 ** 30 }),
        fc.constantFrom(1e-3, 1e-2),
        (cell, seed, etaInit) => {
          const model = makeModel(cell);
          const mp = model.init(key(seed), [-1, 4, 2]).params;
          const params = {
            model: mp,
            likelihood: lik.init(),
            sharpening: initSharpening(mp, { etaInit }),
          };
          const { x, y } = data(seed + 1);
          const d = sharpen(model, lik)(params, x, y, key(seed + 2));
          expect(paths(d.theta)).toEqual(paths(params.sharpening.eta));
          const nllTheta = nllAt(model, mp, d.theta, x, y);
          const nllPhi = nllAt(model, mp, d.phiMean, x, y);
          expect(num(d.nllTheta)).toBeCloseTo(nllTheta, 5);
          expect(nllPhi).toBeLessThan(nllTheta);
          // phiMean = theta - eta * g, elementwise
          leaves(d.phiMean).forEach((pm, i) => {
            const th = vals(leaves(d.theta)[i]!);
            const g = vals(leaves(d.grad)[i]!);
            expectClose(
              vals(pm),
              th.map((t, j) => t - etaInit * g[j]!),
              1e-6,
              1e-7,
              'phiMean',
            );
          });
          // g is the gradient of the batch NLL with respect to the weights, at theta
          const { grads } = valueAndGrad((t: ParamTree) =>
            lik.nll({}, model.apply(withMeans(mp, t), x, { mode: 'mean' }).out, y),
          )(d.theta);
          leaves(grads).forEach((g, i) =>
            expectClose(vals(leaves(d.grad)[i]!), vals(g), 1e-3, 1e-6, `g ${paths(d.grad)[i]}`),
          );
          dispose([mp, params.sharpening.eta, x, y, d as never, grads]);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('the loss is nll(phi) + klWeight KL(theta) + KLsharp / B, finite, with KLsharp = sum (eta g)^2 / (2 sigma0^2)', () => {
    const model = makeModel('lstm');
    const mp = model.init(key(1), [-1, 4, 2]).params;
    const params = {
      model: mp,
      likelihood: lik.init(),
      sharpening: initSharpening(mp, { etaInit: 0.05 }),
    };
    const { x, y } = data(2);
    const sigma0 = 0.03;
    const k = key(3);
    const parts = sharpenedElboDetailed(model, lik, { sigma0 })(params, x, y, k, 0.01);
    const d = sharpen(model, lik, { sigma0 })(params, x, y, k);
    for (const v of [parts.loss, parts.nll, parts.kl, parts.klSharpening, parts.nllTheta]) {
      expect(Number.isFinite(num(v))).toBe(true);
    }
    // the likelihood at phi: the noise substitution reaches exactly phi
    expect(num(parts.nll)).toBeCloseTo(nllAt(model, mp, d.phi, x, y), 5);
    expect(num(parts.nllTheta)).toBeCloseTo(num(d.nllTheta), 6);
    const eta = leaves(params.sharpening.eta).map(vals);
    const klSharp =
      leaves(d.grad).reduce(
        (a, g, i) => a + vals(g).reduce((s, gj, j) => s + (eta[i]![j]! * gj) ** 2, 0),
        0,
      ) /
      (2 * sigma0 * sigma0);
    expect(num(parts.klSharpening)).toBeCloseTo(klSharp, 4);
    // KL(q(theta) || p(theta)) is the layers' KL at theta (the MC estimate at theta's noise)
    expect(num(parts.kl)).toBeGreaterThan(0);
    const want = num(parts.nll) + 0.01 * num(parts.kl) + num(parts.klSharpening) / 6;
    expect(num(parts.loss)).toBeCloseTo(want, 3);
    expect(parts.predictions.shape).toEqual([1, 6, 1]);
    dispose([mp, params.sharpening.eta, x, y, parts as never, d as never]);
  });

  it('gradients: mu gets dNLL/dphi, rho dNLL/dphi * eps * sigmoid(rho), eta -g dNLL/dphi + eta g^2 / (B sigma0^2)', () => {
    const model = makeModel('gru', -2);
    const mp = model.init(key(4), [-1, 4, 2]).params;
    const params = {
      model: mp,
      likelihood: lik.init(),
      sharpening: initSharpening(mp, { etaInit: 0.02 }),
    };
    const { x, y } = data(5);
    const sigma0 = 0.05;
    const k = key(6);
    const d = sharpen(model, lik, { sigma0 })(params, x, y, k);
    // with klWeight = 0 the KL of theta drops out
    const { value, grads } = valueAndGrad(sharpenedElbo(model, lik, { sigma0 }))(
      params,
      x,
      y,
      k,
      0,
    );
    expect(Number.isFinite(num(value))).toBe(true);
    const { grads: dPhi } = valueAndGrad((t: ParamTree) =>
      lik.nll({}, model.apply(withMeans(mp, t), x, { mode: 'mean' }).out, y),
    )(d.phi);
    const B = 6;
    paths(params.sharpening.eta).forEach((p, i) => {
      const gp = vals(leaves(dPhi)[i]!);
      const g = vals(leaves(d.grad)[i]!);
      const eta = vals(leaves(params.sharpening.eta)[i]!);
      const post = get(mp, p) as unknown as { mu: tf.Tensor; rho: tf.Tensor };
      const mu = vals(post.mu);
      const rho = vals(post.rho);
      const theta = vals(leaves(d.theta)[i]!);
      const gMu = vals(get(grads.model, `${p}.mu`) as tf.Tensor);
      const gRho = vals(get(grads.model, `${p}.rho`) as tf.Tensor);
      const gEta = vals(get(grads.sharpening.eta, p) as tf.Tensor);
      expectClose(gMu, gp, 2e-3, 1e-6, `d/dmu ${p}`);
      const eps = theta.map((t, j) => (t - mu[j]!) / Math.log1p(Math.exp(rho[j]!)));
      expectClose(
        gRho,
        gp.map((v, j) => v * eps[j]! * sigmoid64(rho[j]!)),
        2e-3,
        1e-6,
        `d/drho ${p}`,
      );
      const wantEta = gp.map((v, j) => -g[j]! * v + (eta[j]! * g[j]! ** 2) / (B * sigma0 * sigma0));
      expectClose(gEta, wantEta, 2e-3, 1e-7, `d/deta ${p}`);
    });
    expect(leaves(grads.sharpening.eta).some((t) => vals(t).some((v) => v !== 0))).toBe(true);
    dispose([mp, params.sharpening.eta, x, y, d as never, value, grads as never, dPhi]);
  });

  it('trains with trainStep: finite, no tensor growth, the loss goes down, eta learns', async () => {
    const model = makeModel('lstm');
    const mp = model.init(key(7), [-1, 4, 2]).params;
    const params = { model: mp, likelihood: lik.init(), sharpening: initSharpening(mp) };
    const eta0 = leaves(params.sharpening.eta).map(vals);
    const { x, y } = data(8, 12);
    const opt = adam({ learningRate: 0.02 });
    const step = trainStep(sharpenedElbo(model, lik, { numSamples: 2 }), opt);
    let state = { params, optState: opt.init(params), step: 0 };
    const losses: number[] = [];
    const growth = await trackTensors(
      (i) => {
        const r = step(state, x, y, foldIn(key(9), i + 1), 1 / 12);
        state = r.state;
        losses.push(r.loss);
      },
      { steps: 25 },
    );
    expect(growth.growth).toBe(0);
    expect(new Set(growth.perStep).size).toBe(1);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses.slice(-5).reduce((a, b) => a + b)).toBeLessThan(
      losses.slice(0, 5).reduce((a, b) => a + b),
    );
    const eta1 = leaves(state.params.sharpening.eta).map(vals);
    expect(eta1.some((e, i) => e.some((v, j) => v !== eta0[i]![j]))).toBe(true);
    dispose([state.params as never, state.optState as never, x, y]);
  });

  it('is reproducible bit for bit from a seed on cpu and on wasm, and the two agree', async () => {
    const run = () => {
      const model = makeModel('gru');
      const mp = model.init(key(11), [-1, 4, 2]).params;
      const params = {
        model: mp,
        likelihood: lik.init(),
        sharpening: initSharpening(mp, { etaInit: 0.02 }),
      };
      const { x, y } = data(12);
      const opt = adam({ learningRate: 0.02 });
      const step = trainStep(sharpenedElbo(model, lik), opt);
      let state = { params, optState: opt.init(params), step: 0 };
      for (let i = 0; i < 4; i++) state = step(state, x, y, foldIn(key(13), i), 1 / 6).state;
      const out = leaves(state.params as ParamTree).map((l) =>
        (l.dataSync() as Float32Array).slice(),
      );
      dispose([state.params as never, state.optState as never, x, y]);
      return out;
    };
    const res: Record<string, Float32Array[]> = {};
    for (const backend of ['cpu', 'wasm'] as const) {
      await useBackend(backend);
      const a = run();
      const b = run();
      a.forEach((p, i) =>
        expect(Buffer.from(p.buffer).equals(Buffer.from(b[i]!.buffer))).toBe(true),
      );
      res[backend] = a;
    }
    res['cpu']!.forEach((p, i) =>
      expectClose(Array.from(res['wasm']![i]!), Array.from(p), 1e-3, 1e-4, `leaf ${i}`),
    );
  });

  it('initSharpening: one eta per posterior (select), clear errors for wrong params and options', () => {
    const model = makeModel('lstm');
    const mp = model.init(key(0), [-1, 4, 2]).params;
    const all = initSharpening(mp, { etaInit: 0.5 });
    expect(paths(all.eta)).toEqual([
      'out.bias',
      'out.kernel',
      'rnn.bias',
      'rnn.weightHh',
      'rnn.weightIh',
    ]);
    expect(vals(get(all.eta, 'rnn.weightHh') as tf.Tensor).every((v) => v === 0.5)).toBe(true);
    const only = initSharpening(mp, { select: (p) => p.startsWith('rnn.') });
    expect(paths(only.eta)).toEqual(['rnn.bias', 'rnn.weightHh', 'rnn.weightIh']);
    expect(() => initSharpening(mp, { select: () => false })).toThrow(/no \{ mu, rho \} posterior/);
    const { x, y } = data(1);
    const loss = sharpenedElbo(model, lik);
    expect(() => loss({ model: mp, likelihood: {} } as never, x, y, key(0), 0.1)).toThrow(
      /params must be \{ model, likelihood, sharpening \}/,
    );
    const wrong = { eta: { rnn: { weightXx: tf.ones([2]) } } };
    expect(() => loss({ model: mp, likelihood: {}, sharpening: wrong }, x, y, key(0), 0.1)).toThrow(
      /'rnn.weightXx'/,
    );
    // errors about the params name their path in the { model, likelihood, sharpening } tree
    const bad = errorOf(() =>
      loss({ model: mp, likelihood: {}, sharpening: wrong }, x, y, key(0), 0.1),
    );
    expect(bad).toBeInstanceOf(ParamError);
    expect((bad as ParamError).path).toBe('sharpening.eta.rnn.weightXx');
    const shaped = { eta: { rnn: { weightHh: tf.ones([1, 1]) } } };
    const badShape = errorOf(() =>
      loss({ model: mp, likelihood: {}, sharpening: shaped }, x, y, key(0), 0.1),
    );
    expect(badShape).toBeInstanceOf(ShapeError);
    expect(badShape.message).toMatch(
      /^sharpening\.eta\.rnn\.weightHh: .*\[1, 1\].*model\.rnn\.weightHh/,
    );
    expect(() => sharpenedElbo(model, lik, { sigma: 0.1 } as never)).toThrow(ConfigError);
    expect(() => sharpenedElbo(model, lik, { sigma: 0.1 } as never)).toThrow(
      /unknown option 'sigma'/,
    );
    expect(() => initSharpening(mp, { etaInit: NaN })).toThrow(
      /^initSharpening: invalid configuration.*etaInit must be a finite number, got NaN/s,
    );
    dispose(shaped.eta.rnn.weightHh);
    expect(() => sharpenedElbo(model, lik, { sigma0: 0, numSamples: 1.5 })).toThrow(
      /^sharpenedElbo: invalid configuration \(2 problems\).*sigma0 must be a positive finite number.*numSamples must be a positive integer/s,
    );
    // only the selected weights move: the others' phi is theta
    const params = { model: mp, likelihood: {}, sharpening: only };
    const d = sharpen(model, lik)(params, x, y, key(2));
    expect(paths(d.phi)).toEqual(['rnn.bias', 'rnn.weightHh', 'rnn.weightIh']);
    const parts = sharpenedElboDetailed(model, lik, { sigma0: 1e-9 })(params, x, y, key(2), 0);
    expect(Number.isFinite(num(parts.loss))).toBe(true);
    dispose([mp, all.eta, only.eta, x, y, wrong.eta, d as never, parts as never]);
  });
});
