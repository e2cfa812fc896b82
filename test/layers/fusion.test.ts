/**
 * serial fuses `relu()` into the Bayesian linear layer before it in a batched pass (the bias and
 * the relu inside the matmul: one fused matMul). Checked against the same model with the relu
 * kept apart (wrapped in its own serial, which is not a fusible activation), and against
 * loopSamples: outputs, KL and gradients, in sample and mean mode, with a shared and a batched
 * input, and with a relu that has no layer to fuse into.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { foldIn, key } from '../../src/params/random';
import { dispose } from '../../src/params/tree';
import { bayesianLinear, dense, relu, serial, tanh } from '../../src/layers';
import { loopSamples, vmapSamples } from '../../src/transforms';
import { expectClose, vals } from '../helpers/reference';

const fused = () =>
  serial({
    a: bayesianLinear({ inFeatures: 3, outFeatures: 5, posteriorRhoInit: -2 }),
    act: relu(),
    b: bayesianLinear({ inFeatures: 5, outFeatures: 2, posteriorRhoInit: -2 }),
  });

const apart = () =>
  serial({
    a: bayesianLinear({ inFeatures: 3, outFeatures: 5, posteriorRhoInit: -2 }),
    act: serial({ relu: relu() }),
    b: bayesianLinear({ inFeatures: 5, outFeatures: 2, posteriorRhoInit: -2 }),
  });

describe('relu fused into the bayesian linear layer before it (batched pass)', () => {
  it('equals the unfused model and the loop: outputs, KL and gradients', () => {
    const k = key(11);
    const m1 = fused();
    const m2 = apart();
    const { params } = m1.init(k, [-1, 3]);
    const p2 = { a: params.a, act: { relu: {} }, b: params.b };
    const x = tf.randomUniform([7, 3], -2, 2, 'float32', 4);
    for (const mode of ['sample', 'mean'] as const) {
      const ctx = { key: foldIn(k, 1), mode };
      const y1 = vmapSamples(m1, 4)(params, x, ctx);
      const y2 = vmapSamples(m2, 4)(p2, x, ctx);
      const y3 = loopSamples(m1, 4)(params, x, ctx);
      expectClose(vals(y1.out), vals(y2.out), 1e-5);
      expectClose(vals(y1.out), vals(y3.out), 1e-5);
      expectClose(vals(y1.kl), vals(y2.kl), 1e-5);
      expect(Math.min(...vals(y1.out))).toBeGreaterThan(-50); // finite
      tf.dispose([y1.out, y1.kl, y2.out, y2.kl, y3.out, y3.kl]);
    }
    // gradients with respect to every leaf (the relu's through the fused matmul's gradient)
    const loss = (m: typeof m1 | typeof m2, p: unknown) => (mu: tf.Tensor, rho: tf.Tensor) => {
      const pp = p as typeof params;
      const q = { ...pp, a: { ...pp.a, kernel: { mu, rho } } } as never;
      const { out, kl } = vmapSamples(m, 3)(q, x, { key: foldIn(k, 2) });
      return tf.add(tf.sum(tf.square(out)), tf.sum(kl)) as tf.Scalar;
    };
    const { mu, rho } = params.a.kernel;
    const g1 = tf.grads(loss(m1, params))([mu, rho]);
    const g2 = tf.grads(loss(m2, p2))([mu, rho]);
    g1.forEach((g, i) => expectClose(vals(g), vals(g2[i] as tf.Tensor), 1e-4));
    tf.dispose([...g1, ...g2, x]);
    dispose(params);
  });

  it('with a batched input (a layer with the sample axis before), and a relu with nothing to fuse into', () => {
    const k = key(12);
    const model = serial({
      first: bayesianLinear({ inFeatures: 2, outFeatures: 3, posteriorRhoInit: -2 }),
      t: tanh(),
      second: bayesianLinear({ inFeatures: 3, outFeatures: 4, posteriorRhoInit: -2 }),
      r: relu(),
      d: dense({ units: 2 }),
      r2: relu(),
    });
    const { params } = model.init(k, [-1, 2]);
    const x = tf.randomUniform([5, 2], -2, 2, 'float32', 5);
    const ctx = { key: foldIn(k, 3) };
    const v = vmapSamples(model, 3)(params, x, ctx);
    const l = loopSamples(model, 3)(params, x, ctx);
    expectClose(vals(v.out), vals(l.out), 1e-5);
    expect(vals(v.out).every((e) => e >= 0)).toBe(true);
    tf.dispose([v.out, v.kl, l.out, l.kl, x]);
    dispose(params);
  });

  it('leaves no tensors behind', () => {
    const k = key(13);
    const model = fused();
    const { params } = model.init(k, [-1, 3]);
    const x = tf.ones([4, 3]);
    const run = () => {
      const y = vmapSamples(model, 2)(params, x, { key: k });
      tf.dispose([y.out, y.kl]);
    };
    run();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) run();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(x);
    dispose(params);
  });
});
