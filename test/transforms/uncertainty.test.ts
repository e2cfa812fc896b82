/**
 * The uncertainty toolkit against direct float64 computations: expected entropy, mutual
 * information (with entropy = aleatoric + epistemic), the Brier score, the reliability diagram
 * (its ECE equal to expectedCalibrationError's), the normal quantile and the regression
 * calibration curve.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import '../../src/setup';
import {
  brierScore,
  calibrationCurve,
  expectedCalibrationError,
  expectedEntropy,
  mutualInformation,
  normalQuantile,
  predictiveEntropy,
  reliabilityDiagram,
} from '../../src/transforms';
import { ShapeError } from '../../src/layers';

/** Random probability rows [S, B, C] (float32 values, float64 sums), from a seed. */
function sampleProbs(S: number, B: number, C: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const out = new Float32Array(S * B * C);
  for (let r = 0; r < S * B; r++) {
    const e = Array.from({ length: C }, () => Math.exp(6 * (rnd() - 0.5)));
    const z = e.reduce((a, b) => a + b, 0);
    e.forEach((v, c) => (out[r * C + c] = v / z));
  }
  return out;
}

const H = (p: ArrayLike<number>): number => {
  let h = 0;
  for (let i = 0; i < p.length; i++) {
    const v = p[i] as number;
    if (v > 0) h -= v * Math.log(v);
  }
  return h;
};

describe('expectedEntropy and mutualInformation', () => {
  it('equal float64 loops, and entropy of the mean = aleatoric + epistemic', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 2, max: 5 }),
        fc.nat(),
        (S, B, C, seed) => {
          const d = sampleProbs(S, B, C, seed);
          const t = tf.tensor3d(d, [S, B, C]);
          const ee = expectedEntropy(t).dataSync();
          const mi = mutualInformation(t).dataSync();
          const total = predictiveEntropy(tf.mean(t, 0) as tf.Tensor2D).dataSync();
          for (let b = 0; b < B; b++) {
            let e = 0;
            const mean = new Float64Array(C);
            for (let s = 0; s < S; s++) {
              const row = d.subarray((s * B + b) * C, (s * B + b + 1) * C);
              e += H(row) / S;
              row.forEach((v, c) => (mean[c] = (mean[c] as number) + v / S));
            }
            const m = Math.max(0, H(mean) - e);
            expect(Math.abs((ee[b] as number) - e)).toBeLessThan(2e-6);
            expect(Math.abs((mi[b] as number) - m)).toBeLessThan(4e-6);
            expect(mi[b]).toBeGreaterThanOrEqual(0);
            expect(
              Math.abs((total[b] as number) - ((ee[b] as number) + (mi[b] as number))),
            ).toBeLessThan(4e-6);
          }
          tf.dispose(t);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('one sample, or identical samples: no epistemic part', () => {
    const d = sampleProbs(1, 3, 4, 1);
    const same = new Float32Array([...d, ...d, ...d]);
    const mi = mutualInformation(tf.tensor3d(same, [3, 3, 4])).dataSync();
    mi.forEach((v) => expect(v).toBeLessThan(1e-6));
    // two confident samples that disagree: MI = log 2
    const two = tf.tensor3d([1, 0, 0, 1], [2, 1, 2]);
    expect(mutualInformation(two).dataSync()[0]).toBeCloseTo(Math.LN2, 6);
    expect(expectedEntropy(two).dataSync()[0]).toBe(0);
    expect(() => mutualInformation(tf.ones([2, 3]))).toThrow(ShapeError);
  });
});

describe('brierScore and reliabilityDiagram', () => {
  it('equal float64 loops; the diagram ECE is expectedCalibrationError', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 2, max: 6 }),
        fc.integer({ min: 1, max: 20 }),
        fc.nat(),
        (B, C, M, seed) => {
          const d = sampleProbs(1, B, C, seed);
          const labels = Array.from({ length: B }, (_, i) => (i * 7 + seed) % C);
          const probs = tf.tensor2d(d, [B, C]);
          let brier = 0;
          const count = new Float64Array(M);
          const conf = new Float64Array(M);
          const acc = new Float64Array(M);
          for (let i = 0; i < B; i++) {
            const row = Array.from(d.subarray(i * C, (i + 1) * C));
            row.forEach((v, c) => (brier += (v - (c === labels[i] ? 1 : 0)) ** 2));
            const top = Math.max(...row);
            // the bin by a linear search of the edges ((m/M, (m+1)/M])
            let m = 0;
            while (m < M - 1 && top > (m + 1) / M) m++;
            count[m] = (count[m] as number) + 1;
            conf[m] = (conf[m] as number) + top;
            if (row.indexOf(top) === labels[i]) acc[m] = (acc[m] as number) + 1;
          }
          expect(brierScore(probs, labels)).toBeCloseTo(brier / B, 10);
          const diagram = reliabilityDiagram(probs, labels, { bins: M });
          expect(diagram.bins).toHaveLength(M);
          let ece = 0;
          let mce = 0;
          diagram.bins.forEach((bin, m) => {
            const n = count[m] as number;
            expect(bin.count).toBe(n);
            expect(bin.lower).toBeCloseTo(m / M, 12);
            expect(bin.upper).toBeCloseTo((m + 1) / M, 12);
            if (n > 0) {
              expect(bin.confidence).toBeCloseTo((conf[m] as number) / n, 10);
              expect(bin.accuracy).toBeCloseTo((acc[m] as number) / n, 10);
              const gap = Math.abs((acc[m] as number) / n - (conf[m] as number) / n);
              ece += (n / B) * gap;
              mce = Math.max(mce, gap);
            } else {
              expect(bin.confidence).toBeNaN();
            }
          });
          expect(diagram.ece).toBeCloseTo(ece, 10);
          expect(diagram.mce).toBeCloseTo(mce, 10);
          expect(expectedCalibrationError(probs, labels, { bins: M })).toBe(diagram.ece);
          tf.dispose(probs);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('the documented examples', () => {
    expect(brierScore(tf.tensor2d([[0.8, 0.2]]), [0])).toBeCloseTo(0.08, 6);
    expect(brierScore(tf.tensor2d([[0, 1]]), [0])).toBe(2);
  });
});

describe('normalQuantile and calibrationCurve', () => {
  it('normalQuantile: published values, symmetry, and Phi(z) = p by quadrature', () => {
    expect(normalQuantile(0.975)).toBeCloseTo(1.959963984540054, 8);
    expect(normalQuantile(0.995)).toBeCloseTo(2.5758293035489, 8);
    expect(normalQuantile(0.5)).toBe(0);
    expect(normalQuantile(0.8413447460685429)).toBeCloseTo(1, 8);
    expect(normalQuantile(1e-10)).toBeCloseTo(-6.361340902404056, 6);
    for (const p of [0.001, 0.02, 0.3, 0.7, 0.99]) {
      expect(normalQuantile(p)).toBeCloseTo(-normalQuantile(1 - p), 8);
      // Phi(z) by Simpson's rule on the density from 0
      const z = normalQuantile(p);
      const n = 2000;
      const h = z / n;
      let sum = 0;
      for (let i = 0; i <= n; i++) {
        const w = i === 0 || i === n ? 1 : i % 2 ? 4 : 2;
        sum += w * Math.exp(-0.5 * (i * h) ** 2);
      }
      expect(0.5 + (sum * h) / 3 / Math.sqrt(2 * Math.PI)).toBeCloseTo(p, 9);
    }
    expect(() => normalQuantile(0)).toThrow(RangeError);
    expect(() => normalQuantile(1)).toThrow(RangeError);
  });

  it('calibrationCurve: counts against direct float64 loops; a calibrated Gaussian sits on the diagonal', () => {
    const n = 20000;
    let s = 12345;
    const rnd = () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return (s + 0.5) / 2 ** 32;
    };
    // y ~ N(mean, std^2) by Box-Muller
    const mean = Float32Array.from({ length: n }, () => 3 * rnd() - 1);
    const std = Float32Array.from({ length: n }, () => 0.2 + rnd());
    const y = Float32Array.from(
      mean,
      (m, i) =>
        m + (std[i] as number) * Math.sqrt(-2 * Math.log(rnd())) * Math.cos(2 * Math.PI * rnd()),
    );
    const curve = calibrationCurve(tf.tensor1d(mean), tf.tensor1d(std), tf.tensor1d(y));
    expect(curve.map((c) => c.level)).toEqual([
      0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99,
    ]);
    for (const { level, observed } of curve) {
      const z = normalQuantile((1 + level) / 2);
      let inside = 0;
      for (let i = 0; i < n; i++)
        if (Math.abs((y[i] as number) - (mean[i] as number)) / (std[i] as number) <= z) inside++;
      expect(observed).toBe(inside / n);
      // binomial standard error at n = 20000: at most 0.0036; 5 of them
      expect(Math.abs(observed - level)).toBeLessThan(0.018);
    }
    // twice too narrow: below the diagonal everywhere
    const narrow = calibrationCurve(
      tf.tensor1d(mean),
      tf.tensor1d(std.map((v) => v / 2)),
      tf.tensor1d(y),
      [0.5, 0.9],
    );
    narrow.forEach(({ level, observed }) => expect(observed).toBeLessThan(level - 0.1));
    expect(() => calibrationCurve(tf.ones([2]), tf.ones([2]), tf.ones([2]), [1.5])).toThrow(
      RangeError,
    );
  });
});
