import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  bayesianLinear,
  dense,
  dropout,
  fanInConcat,
  fanInSum,
  fanOut,
  flatten,
  fn,
  parallel,
  relu,
  serial,
  sigmoid,
  softplus,
  tanh,
  type AnyLayer,
} from '../../src/layers';
import { foldIn, key, uniformArray } from '../../src/params/random';
import { dispose } from '../../src/params/tree';
import { loopSamples, vmapSamples } from '../../src/transforms';
import { expectClose, vals } from '../helpers/reference';

type Block =
  | { kind: 'bayes'; out: number; bias: boolean; freeze: boolean; rhoInit: number }
  | { kind: 'act'; which: 'relu' | 'tanh' | 'sigmoid' | 'softplus' }
  | { kind: 'dense'; out: number }
  | { kind: 'dropout'; rate: number }
  | { kind: 'loopFn' }
  | { kind: 'branch'; merge: 'concat' | 'sum'; a: number; b: number; bRelu: boolean };

const width = fc.integer({ min: 1, max: 4 });
const blockArb: fc.Arbitrary<Block> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('bayes' as const),
      out: width,
      bias: fc.boolean(),
      freeze: fc.boolean(),
      rhoInit: fc.constantFrom(-3, -1, 0),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('act' as const),
      which: fc.constantFrom(
        'relu' as const,
        'tanh' as const,
        'sigmoid' as const,
        'softplus' as const,
      ),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ kind: fc.constant('dense' as const), out: width }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('dropout' as const),
      rate: fc.constantFrom(0, 0.25, 0.5),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ kind: fc.constant('loopFn' as const) }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('branch' as const),
      merge: fc.constantFrom('concat' as const, 'sum' as const),
      a: width,
      b: width,
      bRelu: fc.boolean(),
    }),
    weight: 2,
  },
);

const configArb = fc.record({
  inWidth: width,
  flattenFirst: fc.boolean(),
  blocks: fc.array(blockArb, { minLength: 1, maxLength: 4 }),
  batch: fc.integer({ min: 1, max: 3 }),
  S: fc.integer({ min: 1, max: 4 }),
  mode: fc.constantFrom(undefined, 'sample' as const, 'mean' as const),
  training: fc.boolean(),
  seed: fc.integer({ min: 0, max: 2 ** 31 }),
});

/** Builds the layer of a block for input width `d`; returns it and its output width. */
function build(b: Block, d: number, i: number): [AnyLayer, number] {
  const name = `b${i}`;
  switch (b.kind) {
    case 'bayes':
      return [
        bayesianLinear({
          inFeatures: d,
          outFeatures: b.out,
          bias: b.bias,
          freeze: b.freeze,
          posteriorRhoInit: b.rhoInit,
          name,
        }),
        b.out,
      ];
    case 'act':
      return [{ relu, tanh, sigmoid, softplus }[b.which]({ name }), d];
    case 'dense':
      return [dense({ units: b.out, name }), b.out];
    case 'dropout':
      return [dropout({ dropRate: b.rate, name }), d];
    case 'loopFn':
      // depends on the whole tensor, so applying it to [S, ...] at once would be wrong: the
      // batched pass must fall back to one call per sample
      return [fn((x) => tf.sub(x, tf.mean(x)), { name }), d];
    case 'branch': {
      const bw = b.merge === 'sum' ? b.a : b.bRelu ? d : b.b;
      const left = bayesianLinear({ inFeatures: d, outFeatures: b.a, posteriorRhoInit: -1 });
      const right =
        b.bRelu && b.merge === 'concat'
          ? relu()
          : serial([
              relu(),
              bayesianLinear({ inFeatures: d, outFeatures: bw, posteriorRhoInit: -1 }),
            ]);
      const merge = b.merge === 'concat' ? fanInConcat() : fanInSum();
      return [
        serial([fanOut(2), parallel({ left, right }), merge], { name }),
        b.merge === 'concat' ? b.a + bw : b.a,
      ];
    }
  }
}

describe('vmapSamples == loopSamples == a loop of apply with foldIn(key, s)', () => {
  it('for random model configurations (property)', () => {
    fc.assert(
      fc.property(configArb, (c) => {
        const layers: Record<string, AnyLayer> = {};
        let d = c.inWidth * (c.flattenFirst ? 2 : 1);
        if (c.flattenFirst) layers['flat'] = flatten();
        c.blocks.forEach((b, i) => {
          const [l, out] = build(b, d, i);
          layers[`l${i}`] = l;
          d = out;
        });
        const model = serial(layers);
        const inShape = c.flattenFirst ? [c.batch, 2, c.inWidth] : [c.batch, c.inWidth];
        const { params, outputShape } = model.init(key(c.seed), [-1, ...inShape.slice(1)]);
        expect(outputShape).toEqual([-1, d]);
        const size = inShape.reduce((a, b) => a * b, 1);
        const x = tf.tensor(uniformArray(key(c.seed + 1), size, -2, 2), inShape);
        const k = key(c.seed + 2);
        const ctx = { key: k, training: c.training, ...(c.mode ? { mode: c.mode } : {}) };
        const before = tf.memory().numTensors;
        const v = vmapSamples(model, c.S)(params, x, ctx);
        const l = loopSamples(model, c.S)(params, x, ctx);
        expect(v.out.shape).toEqual([c.S, c.batch, d]);
        expect(v.kl.shape).toEqual([c.S]);
        expect(l.out.shape).toEqual(v.out.shape);
        expectClose(vals(v.out), vals(l.out), 1e-5, 1e-5, 'out vmap vs loop');
        const lk = vals(l.kl);
        expectClose(vals(v.kl), lk, 1e-5, 1e-4, 'kl vmap vs loop');
        for (let s = 0; s < c.S; s++) {
          const r = model.apply(params, x, { ...ctx, key: foldIn(k, s) });
          const vs = tf.tidy(() => vals(tf.gather(v.out, s)));
          expectClose(vs, vals(r.out), 1e-5, 1e-5, `out sample ${s}`);
          expectClose([vals(v.kl)[s]!], vals(r.kl), 1e-5, 1e-4, `kl sample ${s}`);
          // klDivergence threads the keys exactly as apply does
          const kd = model.klDivergence(params, { ...ctx, key: foldIn(k, s) });
          expectClose(vals(kd), vals(r.kl), 1e-5, 1e-4, `klDivergence sample ${s}`);
          dispose([r, kd]);
        }
        dispose([v, l]);
        expect(tf.memory().numTensors).toBe(before);
        dispose([params, x]);
      }),
      { numRuns: 30 },
    );
  });

  it('samples differ from each other (the per-sample keys are used)', () => {
    const model = serial({
      h: bayesianLinear({ inFeatures: 2, outFeatures: 2, posteriorRhoInit: 0 }),
    });
    const { params } = model.init(key(0), [-1, 2]);
    const x = tf.ones([1, 2]);
    const { out, kl } = vmapSamples(model, 3)(params, x, { key: key(1) });
    const o = vals(out);
    expect(o[0]).not.toBe(o[2]);
    expect(o[2]).not.toBe(o[4]);
    expect(new Set(vals(kl)).size).toBe(3);
    // mean mode: all samples equal, no key needed, KL 0
    const m = vmapSamples(model, 3)(params, x, { mode: 'mean' });
    const mv = vals(m.out);
    expect(mv.slice(0, 2)).toEqual(mv.slice(2, 4));
    expect(vals(m.kl)).toEqual([0, 0, 0]);
    expect(() => vmapSamples(model, 3)(params, x)).toThrow(/key/);
    expect(() => vmapSamples(model, 0)).toThrow(ConfigError);
    // a single example without a batch axis: [in] -> [S, out]
    const x1 = tf.tensor1d([0.5, -1]);
    const one = vmapSamples(model, 3)(params, x1, { key: key(1) });
    expect(one.out.shape).toEqual([3, 2]);
    const loop1 = loopSamples(model, 3)(params, x1, { key: key(1) });
    expectClose(vals(one.out), vals(loop1.out), 1e-5, 1e-6, 'rank-1 input');
    dispose([x1, one, loop1]);
    dispose([params, x, out, kl, m]);
  });
});
