/**
 * Classification metrics against hand computations and independent float64 loops, and the
 * posterior predictive against a loop of `apply` calls with the documented keys.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { foldIn, key, uniformArray } from '../../src/params/random';
import { dispose } from '../../src/params/tree';
import { serial } from '../../src/layers/combinators';
import { relu } from '../../src/layers/deterministic';
import { bayesianLinear } from '../../src/layers/linear';
import { MissingKeyError, ShapeError } from '../../src/errors';
import type { AnyLayer, ApplyCtx } from '../../src/layers/types';
import type { BatchCtx } from '../../src/layers/batching';
import { ConfigError } from '../../src/errors';
import {
  accuracy,
  categoricalNll,
  expectedCalibrationError,
  predictiveEntropy,
  predictiveProbs,
} from '../../src/transforms/classification';
import { trackTensors } from '../helpers/memory';
import { expectClose, vals } from '../helpers/reference';

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

/** Random probability rows (normalised uniforms) and labels. */
const probsArb = fc
  .record({
    B: fc.integer({ min: 1, max: 40 }),
    C: fc.integer({ min: 2, max: 6 }),
    seed: fc.integer({ min: 0, max: 10_000 }),
    sharp: fc.constantFrom(1, 3, 8),
  })
  .map(({ B, C, seed, sharp }) => {
    const u = uniformArray(key(seed), B * C, 0.01, 1);
    const rows: number[][] = [];
    for (let i = 0; i < B; i++) {
      const r = Array.from({ length: C }, (_, c) => (u[i * C + c] as number) ** sharp);
      const s = r.reduce((a, b) => a + b, 0);
      rows.push(r.map((v) => Math.fround(v / s)));
    }
    const lu = uniformArray(foldIn(key(seed), 1), B);
    const labels = Array.from(lu, (v) => Math.min(C - 1, Math.floor(v * C)));
    return { rows, labels, B, C };
  });

describe('accuracy', () => {
  it('counts rows whose argmax (first on ties) is the label; labels as array or tensor', () => {
    tf.tidy(() => {
      const p = tf.tensor2d([
        [0.9, 0.1, 0],
        [0.4, 0.6, 0],
        [0.2, 0.4, 0.4], // tie between 1 and 2: class 1
        [0.3, 0.3, 0.4],
      ]);
      expect(accuracy(p, [0, 0, 1, 2])).toBe(0.75);
      expect(accuracy(p, tf.tensor1d([0, 1, 1, 2], 'int32'))).toBe(1);
      expect(accuracy(p, tf.tensor1d([1, 0, 2, 0]))).toBe(0);
      // logits work too (only the argmax counts)
      expect(
        accuracy(
          tf.tensor2d([
            [3, -1],
            [0, 5],
          ]),
          [0, 1],
        ),
      ).toBe(1);
    });
  });

  it('rejects labels of the wrong shape or out of range, naming the problem', () => {
    tf.tidy(() => {
      const p = tf.tensor2d([[0.5, 0.5]]);
      expect(errorOf(() => accuracy(p, [0, 1]))).toBeInstanceOf(ShapeError);
      expect(errorOf(() => accuracy(p, tf.tensor2d([[0]])))).toBeInstanceOf(ShapeError);
      expect(errorOf(() => accuracy(p, [2])).message).toMatch(/label #0 is 2; .*\[0, 1\]/);
      expect(errorOf(() => accuracy(p, [0.5])).message).toMatch(/integers/);
      expect(errorOf(() => accuracy(tf.tensor1d([0.5, 0.5]), [0]))).toBeInstanceOf(ShapeError);
    });
  });
});

describe('categoricalNll', () => {
  it('is the mean of -log p(label) (hand computation), Infinity at probability 0', () => {
    tf.tidy(() => {
      const p = tf.tensor2d([
        [0.5, 0.5],
        [0.25, 0.75],
      ]);
      expectClose([categoricalNll(p, [0, 1])], [(Math.LN2 + Math.log(4 / 3)) / 2], 1e-7);
      expectClose([categoricalNll(p, [1, 0])], [(Math.LN2 + Math.log(4)) / 2], 1e-7);
      expect(categoricalNll(tf.tensor2d([[1, 0]]), [1])).toBe(Infinity);
      expect(categoricalNll(tf.tensor2d([[1, 0]]), [0])).toBe(0);
    });
  });

  it('matches a float64 loop on random rows', () => {
    fc.assert(
      fc.property(probsArb, ({ rows, labels, B }) => {
        const ref =
          -rows.reduce((a, r, i) => a + Math.log(r[labels[i] as number] as number), 0) / B;
        const p = tf.tensor2d(rows);
        expectClose([categoricalNll(p, labels)], [ref], 1e-9);
        p.dispose();
      }),
      { numRuns: 30 },
    );
  });
});

describe('expectedCalibrationError', () => {
  it('hand computations', () => {
    tf.tidy(() => {
      // two rows at confidence 0.8, one right, one wrong: |0.5 - 0.8|
      expectClose(
        [
          expectedCalibrationError(
            tf.tensor2d([
              [0.8, 0.2],
              [0.8, 0.2],
            ]),
            [0, 1],
            { bins: 10 },
          ),
        ],
        [0.3],
        1e-6,
      );
      // certain and right: 0
      expect(
        expectedCalibrationError(
          tf.tensor2d([
            [1, 0],
            [0, 1],
          ]),
          [0, 1],
        ),
      ).toBe(0);
      // bins of 0.5: conf 0.6 (right) and 0.7 (wrong) share (0.5, 1]; 0.55 (right) too:
      // acc 2/3, conf (0.6 + 0.7 + 0.55) / 3
      const p = tf.tensor2d([
        [0.6, 0.4],
        [0.3, 0.7],
        [0.55, 0.45],
      ]);
      expectClose(
        [expectedCalibrationError(p, [0, 0, 0], { bins: 2 })],
        [Math.abs(2 / 3 - (0.6 + 0.7 + 0.55) / 3)],
        1e-6,
      );
      // 15 bins (default): 0.6 is in (8/15, 9/15], 0.7 in (10/15, 11/15], 0.55 in (8/15, 9/15]
      const e15 =
        (2 / 3) * Math.abs(1 - (0.6 + 0.55) / 2) + // bin 9: two right
        (1 / 3) * Math.abs(0 - 0.7); // bin 11: one wrong
      expectClose([expectedCalibrationError(p, [0, 0, 0])], [e15], 1e-6);
      // a confidence on a bin edge (0.5 with 2 bins) goes to the lower bin (m-1)/M < c <= m/M
      const edge = tf.tensor2d([
        [0.5, 0.5],
        [0.9, 0.1],
      ]);
      expectClose(
        [expectedCalibrationError(edge, [0, 0], { bins: 2 })],
        [0.5 * Math.abs(1 - 0.5) + 0.5 * Math.abs(1 - 0.9)],
        1e-6,
      );
    });
  });

  it('matches an independent float64 loop over bins; one bin gives |accuracy - mean confidence|', () => {
    fc.assert(
      fc.property(probsArb, fc.integer({ min: 1, max: 20 }), ({ rows, labels, B }, M) => {
        const conf = rows.map((r) => Math.max(...r));
        const pred = rows.map((r) => r.indexOf(Math.max(...r)));
        let ref = 0;
        for (let m = 1; m <= M; m++) {
          const lo = (m - 1) / M;
          const hi = m / M;
          const idx = conf.map((_, i) => i).filter((i) => conf[i]! > lo && conf[i]! <= hi);
          if (idx.length === 0) continue;
          const acc = idx.filter((i) => pred[i] === labels[i]).length / idx.length;
          const c = idx.reduce((a, i) => a + conf[i]!, 0) / idx.length;
          ref += (idx.length / B) * Math.abs(acc - c);
        }
        const p = tf.tensor2d(rows);
        expectClose([expectedCalibrationError(p, labels, { bins: M })], [ref], 1e-9, 1e-12);
        const acc = accuracy(p, labels);
        const meanConf = conf.reduce((a, b) => a + b, 0) / B;
        expectClose(
          [expectedCalibrationError(p, labels, { bins: 1 })],
          [Math.abs(acc - meanConf)],
          1e-9,
          1e-12,
        );
        p.dispose();
      }),
      { numRuns: 50 },
    );
  });

  it('rejects a bad bin count', () => {
    tf.tidy(() => {
      const p = tf.tensor2d([[0.5, 0.5]]);
      expect(errorOf(() => expectedCalibrationError(p, [0], { bins: 0 }))).toBeInstanceOf(
        ConfigError,
      );
    });
  });
});

describe('predictiveEntropy', () => {
  it('0 for a certain row, log C for a uniform one, the closed form otherwise', () => {
    tf.tidy(() => {
      const h = predictiveEntropy(
        tf.tensor2d([
          [1, 0, 0],
          [1 / 3, 1 / 3, 1 / 3],
          [0.2, 0.3, 0.5],
        ]),
      );
      expect(h.shape).toEqual([3]);
      const ref = -(0.2 * Math.log(0.2) + 0.3 * Math.log(0.3) + 0.5 * Math.log(0.5));
      expectClose(vals(h), [0, Math.log(3), ref], 1e-6, 1e-7);
    });
  });

  it('matches a float64 loop and stays in [0, log C]', () => {
    fc.assert(
      fc.property(probsArb, ({ rows, C }) => {
        tf.tidy(() => {
          const h = vals(predictiveEntropy(tf.tensor2d(rows)));
          const ref = rows.map((r) => -r.reduce((a, p) => a + (p > 0 ? p * Math.log(p) : 0), 0));
          expectClose(h, ref, 1e-5, 1e-6);
          h.forEach((v) => {
            expect(v).toBeGreaterThanOrEqual(-1e-6);
            expect(v).toBeLessThanOrEqual(Math.log(C) + 1e-5);
          });
        });
      }),
      { numRuns: 30 },
    );
  });
});

describe('predictiveProbs', () => {
  const model = serial({
    hidden: bayesianLinear({ inFeatures: 3, outFeatures: 5, posteriorRhoInit: -1 }),
    act: relu(),
    out: bayesianLinear({ inFeatures: 5, outFeatures: 4, posteriorRhoInit: -1 }),
  });

  it('is the mean over samples foldIn(key, s) of softmax(logits); vmap == loop', () => {
    const { params } = model.init(key(0), [-1, 3]);
    const x = tf.tensor2d(Array.from(uniformArray(key(1), 6 * 3, -2, 2)), [6, 3]);
    const k = key(5);
    const S = 4;
    const r = predictiveProbs(model, params, x, { key: k, numSamples: S });
    expect(r.probs.shape).toEqual([6, 4]);
    expect(r.sampleProbs.shape).toEqual([S, 6, 4]);
    const perSample = Array.from({ length: S }, (_, s) =>
      tf.tidy(() => vals(tf.softmax(model.apply(params, x, { key: foldIn(k, s) }).out))),
    );
    const ref = (perSample[0] as number[]).map(
      (_, i) => perSample.reduce((a, p) => a + (p[i] as number), 0) / S,
    );
    expectClose(vals(r.probs), ref, 1e-5, 1e-7, 'probs');
    expectClose(vals(r.sampleProbs), perSample.flat(), 1e-5, 1e-7, 'sampleProbs');
    tf.tidy(() => expectClose(vals(tf.sum(r.probs, 1)), new Array(6).fill(1), 1e-5));
    const l = predictiveProbs(model, params, x, { key: k, numSamples: S, sampler: 'loop' });
    expectClose(vals(l.probs), vals(r.probs), 1e-5, 1e-7, 'loop sampler');
    dispose([params, x, r, l]);
  });

  it('asks the model for no KL (computeKl: false) and passes the context on', () => {
    const seen: (boolean | undefined)[] = [];
    const spy: AnyLayer = {
      name: 'spy',
      kind: 'spy',
      config: {},
      outputShape: (s: readonly number[]) => s,
      init: (_k: unknown, s: readonly number[]) => ({ params: {}, outputShape: s }),
      apply: (_p: unknown, x: tf.Tensor, ctx?: ApplyCtx) => {
        seen.push(ctx?.computeKl);
        return { out: tf.clone(x), kl: tf.scalar(0) };
      },
      applyBatched: (_p: unknown, x: tf.Tensor, ctx: BatchCtx) => {
        seen.push(ctx.computeKl);
        expect(ctx.mode).toBe('mean');
        return { out: tf.clone(x), kl: tf.zeros([ctx.numSamples]), batched: ctx.batched };
      },
      klDivergence: () => tf.scalar(0),
    };
    const x = tf.tensor2d([[0, Math.log(3)]]);
    const r = predictiveProbs(spy, {}, x, { key: key(0), numSamples: 3, ctx: { mode: 'mean' } });
    expect(seen).toEqual([false]);
    expectClose(vals(r.probs), [0.25, 0.75], 1e-6);
    dispose([x, r]);
  });

  it('errors: missing key, bad numSamples, non-logit output', () => {
    const { params } = model.init(key(0), [-1, 3]);
    const x = tf.ones([2, 3]);
    const before = tf.memory().numTensors;
    expect(
      errorOf(() =>
        predictiveProbs(model, params, x, { numSamples: 2 } as unknown as { key: never }),
      ),
    ).toBeInstanceOf(MissingKeyError);
    expect(
      errorOf(() => predictiveProbs(model, params, x, { key: key(0), numSamples: 0 })),
    ).toBeInstanceOf(ConfigError);
    const x3 = tf.ones([2, 2, 3]);
    const e = errorOf(() => predictiveProbs(model, params, x3, { key: key(0), numSamples: 2 }));
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toMatch(/logits \[batch, classes\]/);
    x3.dispose();
    expect(tf.memory().numTensors).toBe(before);
    dispose([params, x]);
  });

  it('leaks nothing across calls', async () => {
    const { params } = model.init(key(0), [-1, 3]);
    const x = tf.ones([3, 3]);
    const g = await trackTensors(
      (i) => predictiveProbs(model, params, x, { key: key(i + 100), numSamples: 3 }),
      { steps: 5, release: (r) => dispose(r) },
    );
    expect(g.growth).toBe(0);
    dispose([params, x]);
  });
});
