import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  gaussianDraw,
  gaussianLogProb,
  gaussianLogProbAtNoise,
  gaussianSample,
  inverseSoftplus,
  klNormalNormal,
  laplacePrior,
  logSoftplus,
  normalPrior,
  scaleMixturePrior,
  softplus,
  toPrior,
} from '../../src/params/distributions';
import { key, normalArray } from '../../src/params/random';
import { ConfigError } from '../../src/errors';
import {
  LOG_2PI,
  dLogMixture64,
  dLogSoftplus64,
  expectClose,
  logMixture64,
  logNormal64,
  logSoftplus64,
  num,
  sigmoid64,
  softplus64,
  vals,
} from '../helpers/reference';

const f32 = (x: number): number => Math.fround(x);
const rhoArb = fc.double({ min: -300, max: 60, noNaN: true }).map(f32);
const smallArr = <T>(a: fc.Arbitrary<T>) => fc.array(a, { minLength: 1, maxLength: 6 });

/** d/dx of a tensor function summed, at each element of xs. */
function gradAt(f: (x: tf.Tensor) => tf.Tensor, xs: number[]): number[] {
  return tf.tidy(() => vals(tf.grad((x: tf.Tensor) => tf.sum(f(x)))(tf.tensor1d(xs))));
}

describe('softplus', () => {
  it('matches log1p(exp(x)) in float64 over the whole range, with no overflow', () => {
    fc.assert(
      fc.property(smallArr(rhoArb), (xs) => {
        const got = tf.tidy(() => vals(softplus(tf.tensor1d(xs))));
        // float32 relative accuracy; exp(x) of float32 x for x < -87 is subnormal / 0 in float32
        const ref = xs.map(softplus64).map((v) => (v < 1e-37 ? 0 : v));
        expectClose(got, ref, 2e-6, 1e-38, 'softplus');
      }),
      { numRuns: 30 },
    );
    const edge = tf.tidy(() => vals(softplus(tf.tensor1d([-7, 0, 100, 1e30, -1e30]))));
    expectClose(edge, [softplus64(-7), Math.LN2, 100, 1e30, 0], 2e-6, 0, 'edges');
  });

  it('has gradient sigmoid(x), also at 0 and in both tails', () => {
    const xs = [-200, -30, -5, -1e-3, 0, 1e-3, 2, 30, 200];
    expectClose(gradAt(softplus, xs), xs.map(sigmoid64), 1e-6, 1e-30, 'dsoftplus');
  });
});

describe('logSoftplus', () => {
  it('matches log(softplus(x)) in float64 on both branches (finite down to -300)', () => {
    fc.assert(
      fc.property(smallArr(rhoArb), (xs) => {
        const got = tf.tidy(() => vals(logSoftplus(tf.tensor1d(xs))));
        expect(got.every(Number.isFinite)).toBe(true);
        // float32: relative 2e-6 of the value, plus the absolute ulp of log near 0
        expectClose(got, xs.map(logSoftplus64), 2e-6, 1e-6, 'logSoftplus');
      }),
      { numRuns: 30 },
    );
    const v = tf.tidy(() => vals(logSoftplus(tf.tensor1d([-20.0001, -20, -19.9999, -30, -200]))));
    expectClose(v, [-20.0001, -20, -19.9999, -30, -200].map(logSoftplus64), 1e-6, 0, 'near -20');
  });

  it('custom gradient equals sigmoid(x)/softplus(x) in float64 (series branch below -20)', () => {
    fc.assert(
      fc.property(smallArr(rhoArb), (xs) => {
        const g = gradAt(logSoftplus, xs);
        expect(g.every(Number.isFinite)).toBe(true);
        expectClose(g, xs.map(dLogSoftplus64), 1e-5, 1e-7, 'dlogSoftplus');
      }),
      { numRuns: 30 },
    );
    // -20 is where the tail form starts: the gradient is still ~1 there, not counted twice
    const xs = [-200, -30, -20.5, -20, -19.5, -5, 0, 5];
    expectClose(gradAt(logSoftplus, xs), xs.map(dLogSoftplus64), 1e-5, 0, 'fixed points');
  });

  it('custom gradient matches central finite differences, including rho = -30 and -200', () => {
    const h = 1e-2;
    for (const rho of [-200, -30, -21, -19, -3, 0, 4]) {
      const fd = tf.tidy(() => {
        const [p, m] = vals(logSoftplus(tf.tensor1d([rho + h, rho - h])));
        return ((p as number) - (m as number)) / (2 * h);
      });
      const [g] = gradAt(logSoftplus, [rho]);
      expect(Math.abs((g as number) - fd), `rho=${rho}`).toBeLessThan(1e-2 * Math.abs(fd));
    }
  });

  it('chains: the gradient is dy * d logSoftplus', () => {
    const g = tf.tidy(() =>
      vals(
        tf.grad((x: tf.Tensor) => tf.sum(tf.mul(logSoftplus(x), tf.tensor1d([3, -2]))))(
          tf.tensor1d([-40, 1]),
        ),
      ),
    );
    expectClose(g, [3 * dLogSoftplus64(-40), -2 * dLogSoftplus64(1)], 1e-5, 0, 'chain');
  });
});

describe('inverseSoftplus', () => {
  it('inverts softplus (property)', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-6, max: 1e3, noNaN: true }), (s) => {
        const rho = inverseSoftplus(s);
        expect(Math.abs(softplus64(rho) - s)).toBeLessThanOrEqual(1e-9 * s);
      }),
      { numRuns: 30 },
    );
  });

  it('rejects non-positive and non-finite sigma', () => {
    for (const bad of [0, -1, NaN, Infinity])
      expect(() => inverseSoftplus(bad)).toThrow(RangeError);
  });
});

describe('Gaussian posterior', () => {
  it('gaussianSample is mu + softplus(rho) * eps and gaussianDraw uses normal(key)', () => {
    const mu = tf.tensor1d([0.5, -1, 2]);
    const rho = tf.tensor1d([-3, 0, 1]);
    const eps = tf.tensor1d([1, -2, 0.25]);
    const w = gaussianSample({ mu, rho }, eps);
    expectClose(
      vals(w),
      [0.5 + softplus64(-3), -1 - 2 * softplus64(0), 2 + 0.25 * softplus64(1)],
      1e-6,
      0,
      'sample',
    );
    const k = key(11);
    const { w: w2, eps: e2 } = gaussianDraw({ mu, rho }, k);
    expect(vals(e2)).toEqual(Array.from(normalArray(k, 3)));
    const ref = vals(e2).map((e, i) => [0.5, -1, 2][i]! + softplus64([-3, 0, 1][i]!) * e);
    expectClose(vals(w2), ref, 1e-6, 1e-7, 'draw');
    tf.dispose([mu, rho, eps, w, w2, e2]);
  });

  it('gaussianLogProb is the summed log-density, and equals gaussianLogProbAtNoise at w(eps)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.double({ min: -2, max: 2, noNaN: true }).map(f32),
            fc.double({ min: -6, max: 2, noNaN: true }).map(f32),
            fc.double({ min: -3, max: 3, noNaN: true }).map(f32),
          ),
          { minLength: 1, maxLength: 5 },
        ),
        (rows) => {
          const mu = rows.map((r) => r[0]);
          const rho = rows.map((r) => r[1]);
          const eps = rows.map((r) => r[2]);
          const ref = rows.reduce(
            (a, [m, r, e]) => a + logNormal64(m + softplus64(r) * e, m, softplus64(r)),
            0,
          );
          const refNoise = rows.reduce(
            (a, [, r, e]) => a - Math.log(softplus64(r)) - 0.5 * e * e - 0.5 * LOG_2PI,
            0,
          );
          expect(Math.abs(ref - refNoise)).toBeLessThan(1e-9 * (1 + Math.abs(ref)));
          tf.tidy(() => {
            const p = { mu: tf.tensor1d(mu), rho: tf.tensor1d(rho) };
            const e = tf.tensor1d(eps);
            const sumEps2 = eps.reduce((acc, v) => acc + v * v, 0);
            const atNoise = num(
              gaussianLogProbAtNoise(tf.sum(logSoftplus(p.rho)), sumEps2, rows.length),
            );
            expect(Math.abs(atNoise - refNoise)).toBeLessThan(
              1e-5 * (rows.length + Math.abs(refNoise)),
            );
            // the direct form divides by sigma: looser float32 tolerance
            const direct = num(gaussianLogProb(p, gaussianSample(p, e)));
            expect(Math.abs(direct - ref)).toBeLessThan(1e-3 * (rows.length + Math.abs(ref)));
            // same gradient w.r.t. mu and rho when w = mu + sigma * eps is differentiated through
            const g1 = tf.grads((m: tf.Tensor, r: tf.Tensor) =>
              gaussianLogProb({ mu: m, rho: r }, gaussianSample({ mu: m, rho: r }, e)),
            )([p.mu, p.rho]);
            const g2 = tf.grads((m: tf.Tensor, r: tf.Tensor) =>
              tf.add(
                gaussianLogProbAtNoise(tf.sum(logSoftplus(r)), sumEps2, rows.length),
                tf.mul(tf.sum(m), 0),
              ),
            )([p.mu, p.rho]);
            expectClose(vals(g1[1]!), vals(g2[1]!), 1e-3, 1e-4, 'd/drho');
            expectClose(vals(g1[0]!), vals(g2[0]!), 0, 1e-3, 'd/dmu');
            expectClose(
              vals(g2[1]!),
              rho.map((r) => -dLogSoftplus64(r)),
              1e-5,
              1e-7,
              'd/drho closed',
            );
          });
        },
      ),
      { numRuns: 20 },
    );
  });
});

describe('klNormalNormal', () => {
  const klRef = (m: number, s: number, pm: number, ps: number): number =>
    Math.log(ps / s) + (s * s + (m - pm) ** 2) / (2 * ps * ps) - 0.5;

  it('is >= 0, matches the float64 closed form and is 0 at q = p (property)', () => {
    fc.assert(
      fc.property(
        smallArr(
          fc.tuple(
            fc.double({ min: -3, max: 3, noNaN: true }),
            fc.double({ min: -8, max: 3, noNaN: true }),
          ),
        ),
        fc.double({ min: -1, max: 1, noNaN: true }),
        fc.double({ min: 0.05, max: 3, noNaN: true }),
        (rows, pm, ps) => {
          const mu = rows.map((r) => f32(r[0]));
          const rho = rows.map((r) => f32(r[1]));
          const got = tf.tidy(() =>
            num(klNormalNormal(tf.tensor1d(mu), logSoftplus(tf.tensor1d(rho)), pm, ps)),
          );
          const ref = mu.reduce((a, m, i) => a + klRef(m, softplus64(rho[i]!), pm, ps), 0);
          expect(got).toBeGreaterThanOrEqual(0);
          expect(Math.abs(got - ref)).toBeLessThan(2e-5 * (rows.length + ref));
          const self = tf.tidy(() =>
            num(
              klNormalNormal(
                tf.fill([rows.length], pm),
                tf.fill([rows.length], Math.log(ps)),
                pm,
                ps,
              ),
            ),
          );
          expect(Math.abs(self)).toBeLessThan(1e-5 * rows.length);
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe('priors', () => {
  const wArb = smallArr(fc.double({ min: -5, max: 5, noNaN: true }).map(f32));

  it('normalPrior: logProb / logDensity / klFrom are the closed forms', () => {
    fc.assert(
      fc.property(
        wArb,
        fc.double({ min: -1, max: 1, noNaN: true }),
        fc.double({ min: 0.1, max: 3, noNaN: true }),
        (ws, m, s) => {
          const prior = normalPrior(m, s);
          tf.tidy(() => {
            const w = tf.tensor1d(ws);
            expectClose(
              vals(prior.logDensity!(w)),
              ws.map((x) => logNormal64(x, m, s)),
              1e-5,
              1e-5,
              'density',
            );
            const lp = prior.logProb(w);
            expect(lp.rank).toBe(0);
            const ref = ws.reduce((a, x) => a + logNormal64(x, m, s), 0);
            expect(Math.abs(num(lp) - ref)).toBeLessThan(1e-5 * (ws.length + Math.abs(ref)));
            const q = { mu: w, rho: tf.fill([ws.length], -1) };
            const kl = num(prior.klFrom!(q));
            const klRef = ws.reduce((a, x) => {
              const sq = softplus64(-1);
              return a + Math.log(s / sq) + (sq * sq + (x - m) ** 2) / (2 * s * s) - 0.5;
            }, 0);
            expect(Math.abs(kl - klRef)).toBeLessThan(1e-5 * (ws.length + klRef));
          });
        },
      ),
      { numRuns: 20 },
    );
  });

  it('laplacePrior: logProb is sum(-|w - loc| / scale - log(2 scale))', () => {
    fc.assert(
      fc.property(
        wArb,
        fc.double({ min: -1, max: 1, noNaN: true }),
        fc.double({ min: 0.05, max: 3, noNaN: true }),
        (ws, loc, b) => {
          const ref = ws.reduce((a, x) => a - Math.abs(x - loc) / b - Math.log(2 * b), 0);
          const got = tf.tidy(() => num(laplacePrior(loc, b).logProb(tf.tensor1d(ws))));
          expect(Math.abs(got - ref)).toBeLessThan(1e-5 * (ws.length + Math.abs(ref)));
        },
      ),
      { numRuns: 20 },
    );
    expect(laplacePrior().klFrom).toBeUndefined();
  });

  it('scaleMixturePrior matches the float64 log-space reference (property)', () => {
    fc.assert(
      fc.property(
        smallArr(fc.double({ min: -8, max: 8, noNaN: true }).map(f32)),
        fc.double({ min: 0.01, max: 0.99, noNaN: true }),
        fc.double({ min: 0.1, max: 3, noNaN: true }),
        fc.double({ min: 1e-3, max: 0.5, noNaN: true }),
        (ws, pi, s1, s2) => {
          const prior = scaleMixturePrior(pi, s1, s2);
          const ref = ws.map((w) => logMixture64(w, pi, s1, s2));
          tf.tidy(() => {
            const w = tf.tensor1d(ws);
            const dens = vals(prior.logDensity!(w));
            expectClose(dens, ref, 1e-5, 1e-4, 'mixture density');
            const total = ref.reduce((a, b) => a + b, 0);
            const sumAbs = ref.reduce((a, b) => a + Math.abs(b), 0);
            expect(Math.abs(num(prior.logProb(w)) - total)).toBeLessThan(
              1e-5 * sumAbs + 1e-4 * ws.length,
            );
          });
        },
      ),
      { numRuns: 30 },
    );
  });

  it('scaleMixturePrior is finite and accurate in the far tails (sigma2 = 0.002)', () => {
    const ws = [5, 50, 1e3, -1e3, 0, 1e-3, 0.02];
    for (const [pi, s1, s2] of [
      [0.5, 1, 0.002],
      [0.25, 0.5, 0.002],
      [1e-6, 1, 0.002],
      [0.3, 0.002, 1], // the narrow component first
    ] as const) {
      const got = tf.tidy(() => vals(scaleMixturePrior(pi, s1, s2).logDensity!(tf.tensor1d(ws))));
      expect(got.every(Number.isFinite), `pi=${pi}`).toBe(true);
      expectClose(
        got,
        ws.map((w) => logMixture64(w, pi, s1, s2)),
        2e-6,
        1e-5,
        `tails pi=${pi}`,
      );
    }
  });

  it('scaleMixturePrior gradient matches the float64 derivative, also in the tails', () => {
    fc.assert(
      fc.property(
        smallArr(fc.double({ min: -3, max: 3, noNaN: true }).map(f32)),
        fc.double({ min: 0.05, max: 0.95, noNaN: true }),
        (ws, pi) => {
          const xs = [...ws, 0, 5, 50, 1e3, 0.004, -0.004];
          const prior = scaleMixturePrior(pi, 1, 0.002);
          const g = gradAt((x) => prior.logDensity!(x), xs);
          expect(g.every(Number.isFinite)).toBe(true);
          const ref = xs.map((w) => dLogMixture64(w, pi, 1, 0.002));
          const scale = Math.max(...ref.map(Math.abs));
          expectClose(g, ref, 1e-3, 1e-5 * scale, 'dmixture');
        },
      ),
      { numRuns: 20 },
    );
    // finite differences at a point where both components matter (float32, h = 1e-4)
    const w0 = 0.0075;
    const prior = scaleMixturePrior(0.5, 1, 0.002);
    const h = 1e-4;
    const [lp, lm] = tf.tidy(() => vals(prior.logDensity!(tf.tensor1d([w0 + h, w0 - h]))));
    const fd = ((lp as number) - (lm as number)) / (2 * h);
    const [g0] = gradAt((x) => prior.logProb(x), [w0]);
    expect(Math.abs((g0 as number) - fd)).toBeLessThan(2e-2 * Math.abs(fd));
    expect(Math.abs((g0 as number) - dLogMixture64(w0, 0.5, 1, 0.002))).toBeLessThan(
      1e-3 * Math.abs(fd),
    );
  });

  it('scaleMixturePrior with pi = 1 / pi = 0 is the wide / narrow normal (with a closed KL)', () => {
    const ws = [0, 0.001, 0.5, -3, 50];
    for (const [pi, s] of [
      [1, 0.7],
      [0, 0.002],
    ] as const) {
      const prior = scaleMixturePrior(pi, 0.7, 0.002);
      const got = tf.tidy(() => vals(prior.logDensity!(tf.tensor1d(ws))));
      expectClose(
        got,
        ws.map((w) => logNormal64(w, 0, s)),
        2e-6,
        1e-5,
        `pi=${pi}`,
      );
      expectClose(
        got,
        ws.map((w) => logMixture64(w, pi, 0.7, 0.002)),
        2e-6,
        1e-5,
        `pi=${pi} ref`,
      );
      expect(typeof prior.klFrom).toBe('function');
    }
    expect(scaleMixturePrior(0.5).klFrom).toBeUndefined();
  });

  it('rejects bad parameters with one ConfigError naming the prior and listing every problem', () => {
    expect(() => scaleMixturePrior(2, -1, 0)).toThrow(/pi.*\[0, 1\].*/s);
    try {
      scaleMixturePrior(2, -1, 0);
      expect.fail('no error');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const err = e as ConfigError;
      expect(err.owner).toBe('scaleMixturePrior');
      expect(err.message).toMatch(/^scaleMixturePrior: invalid configuration \(3 problems\)/);
      expect(err.problems).toEqual([
        'pi (priorPi) must be in [0, 1], got 2',
        'sigma1 (priorSigma1) must be a positive finite number, got -1',
        'sigma2 (priorSigma2) must be a positive finite number, got 0',
      ]);
    }
    expect(() => normalPrior(0, 0)).toThrow(/^normalPrior: .*\n.*sigma must be a positive/);
    expect(() => normalPrior(NaN, 1)).toThrow(/mu must be a finite number, got NaN/);
    expect(() => normalPrior(NaN, -1)).toThrow(/2 problems/);
    expect(() => laplacePrior(0, -2)).toThrow(ConfigError);
    expect(() => laplacePrior(0, -2)).toThrow(/^laplacePrior: .*\n.*scale must be a positive/);
    expect(() => laplacePrior(Infinity, 1)).toThrow(/loc must be a finite number, got Infinity/);
  });
});

describe('toPrior', () => {
  it('sums a custom element-wise logProb to a scalar and keeps klFrom', () => {
    const custom = {
      name: 'myPrior',
      logProb: (w: tf.Tensor) => tf.neg(tf.abs(w)),
      klFrom: (q: { mu: tf.Tensor }) => tf.square(q.mu),
    };
    const p = toPrior(custom, 'dense1');
    expect(p.name).toBe('myPrior');
    tf.tidy(() => {
      const w = tf.tensor1d([1, -2, 3]);
      const lp = p.logProb(w);
      expect(lp.rank).toBe(0);
      expect(num(lp)).toBeCloseTo(-6, 6);
      expect(num(p.klFrom!({ mu: w, rho: w }))).toBeCloseTo(14, 5);
    });
    expect(toPrior({ logProb: (w) => w }, 'x').klFrom).toBeUndefined();
    expect(toPrior({ logProb: (w) => w }, 'x').name).toBe('custom');
  });

  it('keeps an element-wise logDensity (normalPrior / laplacePrior passed as a custom prior)', () => {
    for (const prior of [normalPrior(0.2, 0.5), laplacePrior(-0.1, 2)]) {
      const p = toPrior(prior, 'layer');
      expect(typeof p.logDensity).toBe('function');
      tf.tidy(() => {
        const w = tf.tensor2d([
          [0.1, -2],
          [3, 0],
        ]);
        expect(vals(p.logDensity!(w))).toEqual(vals(prior.logDensity!(w)));
        expect(num(p.logProb(w))).toBeCloseTo(num(prior.logProb(w)), 5);
      });
    }
    expect(toPrior({ logProb: (w) => w }, 'x').logDensity).toBeUndefined();
  });

  it('throws a ConfigError naming where (the layer path) when logProb is missing', () => {
    expect(() => toPrior({} as never, 'layer hidden')).toThrow(ConfigError);
    expect(() => toPrior({} as never, 'layer hidden')).toThrow(/^layer hidden: /);
    expect(() => toPrior(null as never, 'h2')).toThrow(/^h2: .*\n.*logProb.*got null/);
    expect(() => toPrior({ logProb: 1 } as never, 'h3')).toThrow(/logProb.*got an object/);
  });
});
