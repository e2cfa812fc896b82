/**
 * MOPED and toBayesian: the Bayesian twin of a deterministic model keeps its tree layout, in mean
 * mode reproduces the deterministic output bit for bit, and its posteriors have sigma = delta |w|;
 * bad weights are errors naming the path.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import '../../src/setup';
import {
  ConfigError,
  ParamError,
  ShapeError,
  bayesianLinear,
  dense,
  deterministicLayer,
  flatten,
  moped,
  mopedParams,
  parallel,
  relu,
  serial,
  toBayesian,
} from '../../src/layers';
import { normalPrior } from '../../src/params/distributions';
import { key } from '../../src/params/random';
import { dispose } from '../../src/params/tree';
import { expectBitIdentical, softplus64 } from '../helpers/reference';

const net = () =>
  serial({
    h: dense({ units: 16 }),
    act: relu(),
    out: dense({ units: 2 }),
  });

describe('toBayesian and moped', () => {
  it('the twin has the same tree layout, and in mean mode the deterministic output bit for bit', () => {
    const det = net();
    const { params: w } = det.init(key(1), [-1, 5]);
    const x = tf.randomUniform([7, 5], -2, 2, 'float32', 2);
    const want = det.apply(w, x).out;
    const { model, params } = moped(det, w, [-1, 5], { delta: 0.1 });
    expect(model.kind).toBe('serial');
    expect(Object.keys(params).sort()).toEqual(['act', 'h', 'out']);
    const p = params as Record<string, Record<string, { mu: tf.Tensor; rho: tf.Tensor }>>;
    expect(Object.keys(p['h'] ?? {}).sort()).toEqual(['bias', 'kernel']);
    const got = model.apply(params, x, { mode: 'mean' }).out as tf.Tensor;
    expectBitIdentical(got, want, 'mean mode');
    // sigma = max(delta |w|, minSigma): the bias (zeros at init) takes the floor
    const wk = (w as Record<string, Record<string, tf.Tensor>>)['h']?.['kernel'] as tf.Tensor;
    const mu = p['h']?.['kernel']?.mu as tf.Tensor;
    expectBitIdentical(mu, wk, 'mu = w');
    const rho = p['h']?.['kernel']?.rho.dataSync() as Float32Array;
    wk.dataSync().forEach((v, i) => {
      const want = Math.max(0.1 * Math.abs(v), 1e-5);
      expect(Math.abs(softplus64(rho[i] as number) - want)).toBeLessThanOrEqual(2e-6 * want);
    });
    const rb = p['h']?.['bias']?.rho.dataSync() as Float32Array;
    rb.forEach((r) => expect(softplus64(r) / 1e-5).toBeCloseTo(1, 4));
    // sampled outputs spread around the deterministic one, more with a larger delta
    const spread = (delta: number) => {
      const m = moped(det, w, [-1, 5], { delta });
      const outs = Array.from({ length: 30 }, (_, s) =>
        (m.model.apply(m.params, x, { key: key(100 + s) }).out as tf.Tensor).dataSync(),
      );
      let d = 0;
      const base = want.dataSync();
      for (const o of outs) o.forEach((v, i) => (d += Math.abs(v - (base[i] as number))));
      dispose(m.params);
      return d / outs.length;
    };
    const s1 = spread(0.01);
    const s2 = spread(0.1);
    expect(s1).toBeGreaterThan(0);
    expect(s2).toBeGreaterThan(5 * s1);
    dispose([params, w]);
  });

  it('converts inside parallel, keeps parameter-free and Bayesian layers, passes the options on', () => {
    const det = serial({
      two: parallel({
        a: dense({ units: 3 }),
        b: bayesianLinear({ inFeatures: 4, outFeatures: 3 }),
      }),
      flat: flatten(),
    });
    const bnn = toBayesian(
      det,
      [
        [-1, 2],
        [-1, 4],
      ],
      { prior: normalPrior(0, 0.3), estimator: 'flipout' },
    );
    const cfg = bnn.config as {
      layers: { config: { layers: { kind: string; config: Record<string, unknown> }[] } }[];
    };
    const inner = cfg.layers[0]?.config.layers ?? [];
    expect(inner.map((l) => l.kind)).toEqual(['bayesianLinear', 'bayesianLinear']);
    expect(inner[0]?.config).toMatchObject({ inFeatures: 2, outFeatures: 3, estimator: 'flipout' });
    expect(inner[1]?.config).toMatchObject({ estimator: 'reparam' }); // already Bayesian: kept
  });

  it('errors name the path: missing, extra, mis-shaped weights; layers without a twin; bad options', () => {
    const det = net();
    const { params: w } = det.init(key(1), [-1, 5]);
    const bnn = toBayesian(det, [-1, 5]);
    const { params: b } = bnn.init(key(0), [-1, 5]);
    const ww = w as Record<string, Record<string, tf.Tensor>>;
    const missing = { h: ww['h'], act: {}, out: { kernel: ww['out']?.['kernel'] } };
    expect(() => mopedParams(b, missing)).toThrow(ParamError);
    expect(() => mopedParams(b, missing)).toThrow(/out\.bias/);
    expect(() => mopedParams(b, { ...ww, extra: { k: tf.ones([1]) } })).toThrow(/extra/);
    const badShape = { ...ww, out: { kernel: tf.ones([3, 2]), bias: ww['out']?.['bias'] } };
    expect(() => mopedParams(b, badShape)).toThrow(ShapeError);
    expect(() => mopedParams(b, badShape)).toThrow(/out\.kernel.*\[3, 2\].*\[16, 2\]/);
    expect(() => mopedParams(b, w, { delta: -1 })).toThrow(ConfigError);
    const before = tf.memory().numTensors;
    expect(() => mopedParams(b, badShape)).toThrow();
    expect(tf.memory().numTensors).toBe(before); // nothing left behind by a failed call
    const custom = deterministicLayer({
      kind: 'scale',
      init: () => ({ s: tf.ones([1]) }),
      forward: (p: { s: tf.Tensor }, x: tf.Tensor) => tf.mul(x, p.s),
    });
    expect(() => toBayesian(serial({ h: dense({ units: 2 }), sc: custom }), [-1, 3])).toThrow(
      /at 'sc'[\s\S]*scale[\s\S]*no Bayesian twin/,
    );
    expect(() => toBayesian(det, [-1, 5], { units: 3 } as never)).toThrow(/unknown option/);
    dispose([w, b]);
  });
});
