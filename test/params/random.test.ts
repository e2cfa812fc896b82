import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, it, expect, vi } from 'vitest';
import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import vectors from '../vectors/jax-random.json';
import {
  KeyError,
  assertKey,
  bernoulli,
  bernoulliArray,
  bits,
  foldIn,
  isKey,
  key,
  keyData,
  normal,
  normalArray,
  rademacher,
  rademacherArray,
  split,
  threefry2x32,
  uniform,
  uniformArray,
  wrapKey,
  type Key,
} from '../../src/params/random';
import {
  fillBits,
  kernelState,
  normalFromBitsJs,
  normalFromBitsWasm,
  useJsKernels,
} from '../../src/params/normalWasm';
import { BIG_VALUES, CHUNK } from '../../src/params/normalWasmBytes';

// ---------------------------------------------------------------------------------------------
// helpers

type Case = (typeof vectors.cases)[number];

const hexWord = (h: string): number => parseInt(h, 16) >>> 0;

/** The float32 bit pattern of `v` as 8 hex digits (the format of the vectors). */
function f32Hex(v: number): string {
  const u = new Uint32Array(Float32Array.of(v).buffer)[0] as number;
  return u.toString(16).padStart(8, '0');
}

/** Float32 values on a line of integers, so that the distance of two values counts ulps. */
function f32Ordinal(v: number): number {
  const i = new Int32Array(Float32Array.of(v).buffer)[0] as number;
  return i < 0 ? -(i & 0x7fffffff) : i;
}

const ulpDistance = (a: number, b: number): number => Math.abs(f32Ordinal(a) - f32Ordinal(b));

const hexToF32 = (h: string): number =>
  new Float32Array(Uint32Array.of(hexWord(h)).buffer)[0] as number;

const words = (k: Key): number[] => [k[0], k[1]];

function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i] as number;
  return s / xs.length;
}

function variance(xs: ArrayLike<number>): number {
  const m = mean(xs);
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += ((xs[i] as number) - m) ** 2;
  return s / xs.length;
}

const uint32 = fc.integer({ min: 0, max: 0xffffffff });
const anyKey = fc.tuple(uint32, uint32).map(([a, b]) => wrapKey([a, b]));

// ---------------------------------------------------------------------------------------------
// published and JAX-computed vectors (test/vectors/jax-random.json)

describe('vectors file', () => {
  it('has exactly the fields these tests check (a new field needs a new test)', () => {
    expect(Object.keys(vectors).sort()).toEqual(
      [
        'cases',
        'kat_source',
        'normal_100000_seed7_summary',
        'normal_per_split_key_seed0_n3_shape2',
        'source',
        'threefry2x32_kat',
      ].sort(),
    );
    const caseFields = [
      'bits8',
      'foldIn',
      'key',
      'normal2x3',
      'normal8',
      'normal8_hex',
      'seed',
      'split2',
      'split5',
      'uniform4_min-2_max3_hex',
      'uniform8',
      'uniform8_hex',
    ];
    for (const c of vectors.cases) expect(Object.keys(c).sort()).toEqual(caseFields);
    expect(Object.keys(vectors.normal_100000_seed7_summary).sort()).toEqual(
      ['first4_hex', 'mean', 'std', 'sum_hex_of_first_1000_as_float64'].sort(),
    );
    expect(vectors.source).toContain('jax_threefry_partitionable=True');
    expect(vectors.cases.length).toBeGreaterThanOrEqual(5);
  });
});

describe('threefry2x32', () => {
  it.each(vectors.threefry2x32_kat)(
    'matches the Random123 known answer for key $key, counter $counter',
    (kat) => {
      const k = kat.key.map(hexWord) as [number, number];
      const c = kat.counter.map(hexWord) as [number, number];
      expect(threefry2x32(k, c)).toEqual(kat.out.map(hexWord));
    },
  );

  it('rejects words that are not uint32', () => {
    expect(() => threefry2x32([0, -1], [0, 0])).toThrow(KeyError);
    expect(() => threefry2x32([0, 0], [0, 2 ** 32])).toThrow(/counter as two uint32 words/);
  });
});

describe.each(vectors.cases)('JAX vectors for seed $seed', (c: Case) => {
  const k = key(c.seed);

  it('key(seed) is [seed >> 32, seed & 0xffffffff]', () => {
    expect(words(k)).toEqual(c.key);
  });

  it('split(key) and split(key, 5) give JAX keys', () => {
    expect(split(k).map(words)).toEqual(c.split2);
    expect(split(k, 5).map(words)).toEqual(c.split5);
  });

  it('foldIn(key, data) gives JAX keys', () => {
    for (const [data, expected] of Object.entries(c.foldIn)) {
      expect(words(foldIn(k, Number(data))), `data ${data}`).toEqual(expected);
    }
  });

  it('bits(key, 8) is bit for bit', () => {
    expect(Array.from(bits(k, 8))).toEqual(c.bits8);
  });

  it('uniformArray(key, 8) is bit for bit (hex and decimal)', () => {
    const u = uniformArray(k, 8);
    expect(Array.from(u, f32Hex)).toEqual(c.uniform8_hex);
    expect(Array.from(u)).toEqual(c.uniform8.map(Math.fround));
  });

  it('uniformArray(key, 4, -2, 3) is bit for bit', () => {
    expect(Array.from(uniformArray(k, 4, -2, 3), f32Hex)).toEqual(c['uniform4_min-2_max3_hex']);
  });

  it('normalArray(key, 8) is within 4 ulp of JAX (the contract)', () => {
    const n = normalArray(k, 8);
    c.normal8_hex.forEach((h, i) => {
      expect(ulpDistance(n[i] as number, hexToF32(h)), `element ${i}`).toBeLessThanOrEqual(4);
    });
    c.normal8.forEach((v, i) => {
      expect(ulpDistance(n[i] as number, Math.fround(v)), `element ${i}`).toBeLessThanOrEqual(4);
    });
  });

  it('normalArray(key, 8) is in fact bit for bit (XLA:CPU float32 erfinv emulation)', () => {
    expect(Array.from(normalArray(k, 8), f32Hex)).toEqual(c.normal8_hex);
  });

  it('normal(key, [2, 3]) is the row-major reshape of the first 6 values', () => {
    const t = normal(k, [2, 3]);
    try {
      expect(t.shape).toEqual([2, 3]);
      expect(t.dtype).toBe('float32');
      const rows = t.arraySync() as number[][];
      rows.forEach((row, i) =>
        row.forEach((v, j) => {
          const expected = Math.fround(c.normal2x3[i]?.[j] as number);
          expect(ulpDistance(v, expected), `[${i}, ${j}]`).toBeLessThanOrEqual(4);
        }),
      );
    } finally {
      t.dispose();
    }
  });
});

describe('JAX summaries', () => {
  it('normal(key(7), [100000]): first values, mean, std, sum of the first 1000', () => {
    const s = vectors.normal_100000_seed7_summary;
    const n = normalArray(key(7), 100_000);
    s.first4_hex.forEach((h, i) =>
      expect(ulpDistance(n[i] as number, hexToF32(h))).toBeLessThanOrEqual(4),
    );
    // JAX reduced in float32; these are float64 reductions of the same values
    expect(Math.abs(mean(n) - s.mean)).toBeLessThan(1e-6);
    expect(Math.abs(Math.sqrt(variance(n)) - s.std)).toBeLessThan(1e-6);
    let sum = 0;
    for (let i = 0; i < 1000; i++) sum += n[i] as number;
    expect(Math.abs(sum - s.sum_hex_of_first_1000_as_float64)).toBeLessThan(1e-9);
  });

  it('normal(split(key(0), 3)[i], [2]) for each i', () => {
    const keys = split(key(0), 3);
    vectors.normal_per_split_key_seed0_n3_shape2.forEach((expected, i) => {
      const got = normalArray(keys[i] as Key, 2);
      expected.forEach((v, j) =>
        expect(ulpDistance(got[j] as number, Math.fround(v)), `key ${i}, value ${j}`).toBe(0),
      );
    });
  });
});

describe('normal against JAX on 1e6 draws', () => {
  // Computed with JAX 0.10.2 on CPU (x86-64, FMA), jax_threefry_partitionable=True:
  //   x = jax.random.normal(jax.random.key(seed), (1_000_000,), jnp.float32)
  // FNV-1a (32 bit) over the uint32 bit patterns of x, and the float64 sum of x. They pin the
  // rare code paths of the float32 log/log1p emulation that the 8-value vectors do not reach.
  it.each([
    [0, 0x2671ecea, 157.44328884338915],
    [123, 0xc42c21a5, -197.60402957085012],
  ])('key(%i): FNV-1a of the float32 bits and the float64 sum match JAX', (seed, hash, sum) => {
    const z = normalArray(key(seed), 1_000_000);
    const u = new Uint32Array(z.buffer, z.byteOffset, z.length);
    let h = 0x811c9dc5;
    let s = 0;
    for (let i = 0; i < u.length; i++) {
      h = Math.imul(h ^ (u[i] as number), 0x01000193) >>> 0;
      s += z[i] as number;
    }
    expect(Math.abs(s - sum)).toBeLessThan(1e-9);
    expect(h).toBe(hash);
  });
});

// ---------------------------------------------------------------------------------------------
// keys

describe('key', () => {
  it('reads seeds as 64-bit two’s complement (JAX with 64-bit seeds)', () => {
    expect(words(key(0))).toEqual([0, 0]);
    expect(words(key(-1))).toEqual([0xffffffff, 0xffffffff]);
    expect(words(key(-2))).toEqual([0xffffffff, 0xfffffffe]);
    expect(words(key(2 ** 32))).toEqual([1, 0]);
    expect(words(key(2 ** 40 + 5))).toEqual([256, 5]);
    expect(words(key(Number.MAX_SAFE_INTEGER))).toEqual([0x1fffff, 0xffffffff]);
    expect(words(key(-Number.MAX_SAFE_INTEGER))).toEqual([0xffe00000, 1]);
    expect(words(key(2n ** 63n - 1n))).toEqual([0x7fffffff, 0xffffffff]);
    expect(words(key(-(2n ** 63n)))).toEqual([0x80000000, 0]);
    expect(words(key(2n ** 64n - 1n))).toEqual([0xffffffff, 0xffffffff]);
  });

  it('gives the same key for a safe integer and its bigint', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), fc.boolean(), (s, neg) => {
        const seed = neg ? -s : s;
        expect(words(key(BigInt(seed)))).toEqual(words(key(seed)));
      }),
    );
  });

  it('rejects NaN, non-integers, unsafe numbers and out-of-range bigints, naming the range', () => {
    expect(() => key(Number.NaN)).toThrow(KeyError);
    expect(() => key(Number.NaN)).toThrow(/integer seed.*safe integer.*\[-\(2\^63\), 2\^64\)/);
    expect(() => key(1.5)).toThrow(/got the number 1\.5/);
    expect(() => key(Infinity)).toThrow(KeyError);
    expect(() => key(2 ** 53)).toThrow(/safe integer/);
    expect(() => key(2n ** 64n)).toThrow(/\[-\(2\^63\), 2\^64\)/);
    expect(() => key(-(2n ** 63n) - 1n)).toThrow(KeyError);
    expect(() => key('1' as unknown as number)).toThrow(/got the string "1"/);
  });

  it('returns frozen keys that isKey accepts', () => {
    const k = key(3);
    expect(Object.isFrozen(k)).toBe(true);
    expect(isKey(k)).toBe(true);
  });
});

describe('isKey / assertKey / keyData / wrapKey', () => {
  it('isKey accepts exactly arrays of two uint32 words', () => {
    expect(isKey([0, 42])).toBe(true);
    expect(isKey([0xffffffff, 0])).toBe(true);
    for (const bad of [
      [0],
      [0, 1, 2],
      [0, 1.5],
      [-1, 0],
      [0, 2 ** 32],
      ['0', 1],
      Uint32Array.of(0, 1),
      { 0: 0, 1: 1, length: 2 },
      null,
      undefined,
      42,
    ]) {
      expect(isKey(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('assertKey says where, what was given and how to get a key', () => {
    expect(() => assertKey({ seed: 1 }, 'Linear.apply')).toThrow(
      'Linear.apply: expected a PRNG key from random.key(seed) / split / foldIn, got an object',
    );
    expect(() => assertKey(undefined, 'apply')).toThrow(/apply: .* got undefined$/);
    expect(() => assertKey(7, 'x')).toThrow(/got the number 7$/);
    expect(() => assertKey([1, 2, 3], 'x')).toThrow(/got an array of length 3 \[1, 2, 3\]$/);
    const k = key(1);
    expect(assertKey(k, 'x')).toBe(k);
  });

  it('keyData returns a copy and wrapKey(keyData(k)) equals k', () => {
    fc.assert(
      fc.property(anyKey, (k) => {
        const d = keyData(k);
        expect(d).toBeInstanceOf(Uint32Array);
        expect(Array.from(d)).toEqual(words(k));
        const before = words(k);
        d[0] = (d[0] as number) ^ 1;
        expect(words(k)).toEqual(before);
        expect(words(wrapKey(keyData(k)))).toEqual(before);
      }),
    );
  });

  it('wrapKey validates its words', () => {
    expect(() => wrapKey([1])).toThrow(/two uint32 words/);
    expect(() => wrapKey([1, -1])).toThrow(KeyError);
    expect(() => wrapKey([1, 0.5])).toThrow(KeyError);
    expect(words(wrapKey(Uint32Array.of(0, 42)))).toEqual(words(key(42)));
  });
});

describe('split and foldIn', () => {
  it('split(k, n)[i] equals foldIn(k, i) (both are threefry2x32(k, [0, i]))', () => {
    fc.assert(
      fc.property(anyKey, fc.integer({ min: 1, max: 40 }), (k, n) => {
        const keys = split(k, n);
        expect(keys).toHaveLength(n);
        keys.forEach((ki, i) => {
          expect(words(ki)).toEqual(words(foldIn(k, i)));
          expect(words(ki)).toEqual(threefry2x32(k, [0, i]));
        });
      }),
    );
  });

  it('the first m keys of a split do not depend on n', () => {
    fc.assert(
      fc.property(
        anyKey,
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 20 }),
        (k, m, extra) => {
          expect(split(k, m).map(words)).toEqual(
            split(k, m + extra)
              .slice(0, m)
              .map(words),
          );
        },
      ),
    );
  });

  it('keys after a split differ from each other and from the parent', () => {
    fc.assert(
      fc.property(anyKey, fc.integer({ min: 2, max: 64 }), (k, n) => {
        const all = [k, ...split(k, n)].map((x) => `${x[0]},${x[1]}`);
        expect(new Set(all).size).toBe(n + 1);
      }),
    );
  });

  it('foldIn accepts data up to 2^32 - 1 and distinct data give distinct keys', () => {
    fc.assert(
      fc.property(anyKey, uint32, uint32, (k, a, b) => {
        fc.pre(a !== b);
        expect(words(foldIn(k, a))).not.toEqual(words(foldIn(k, b)));
      }),
    );
  });

  it('rejects bad counts, bad data and non-keys with messages', () => {
    const k = key(0);
    expect(() => split(k, 0)).toThrow(
      /split: expected the count n to be an integer >= 1, got the number 0/,
    );
    expect(() => split(k, -2)).toThrow(KeyError);
    expect(() => split(k, 1.5)).toThrow(/integer >= 1/);
    expect(() => split(k, Number.NaN)).toThrow(KeyError);
    expect(() => split({} as unknown as Key)).toThrow(
      /^split: expected a PRNG key from random\.key\(seed\) \/ split \/ foldIn, got an object$/,
    );
    expect(() => split([1, 2, 3] as unknown as Key)).toThrow(/split: .*array of length 3/);
    expect(() => split(42 as unknown as Key)).toThrow(KeyError);
    expect(() => foldIn(k, -1)).toThrow(/foldIn: expected data to be an integer in \[0, 2\^32\)/);
    expect(() => foldIn(k, -1)).toThrow(/pass data >>> 0 = 4294967295/);
    expect(() => foldIn(k, 2 ** 32)).toThrow(KeyError);
    expect(() => foldIn(k, 0.5)).toThrow(KeyError);
    expect(() => foldIn('k' as unknown as Key, 0)).toThrow(/^foldIn: expected a PRNG key/);
  });
});

// ---------------------------------------------------------------------------------------------
// samplers

describe('bits', () => {
  it('word i is b0 ^ b1 of threefry2x32(k, [0, i])', () => {
    fc.assert(
      fc.property(anyKey, fc.integer({ min: 0, max: 50 }), (k, n) => {
        const b = bits(k, n);
        expect(b).toBeInstanceOf(Uint32Array);
        expect(b).toHaveLength(n);
        b.forEach((w, i) => {
          const [b0, b1] = threefry2x32(k, [0, i]);
          expect(w).toBe((b0 ^ b1) >>> 0);
        });
      }),
    );
  });

  it('rejects negative and non-integer n', () => {
    expect(() => bits(key(0), -1)).toThrow(
      /bits: expected the count n to be an integer >= 0, got the number -1/,
    );
    expect(() => bits(key(0), 2.5)).toThrow(KeyError);
    expect(bits(key(0), 0)).toHaveLength(0);
  });
});

describe('prefix stability (partitionable counters)', () => {
  it('a draw of m values is the prefix of a draw of n > m values, for every sampler', () => {
    fc.assert(
      fc.property(
        anyKey,
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 1, max: 300 }),
        (k, m, extra) => {
          const n = m + extra;
          expect(Array.from(normalArray(k, m))).toEqual(
            Array.from(normalArray(k, n).subarray(0, m)),
          );
          expect(Array.from(uniformArray(k, m, -3, 5))).toEqual(
            Array.from(uniformArray(k, n, -3, 5).subarray(0, m)),
          );
          expect(Array.from(bits(k, m))).toEqual(Array.from(bits(k, n).subarray(0, m)));
          expect(Array.from(rademacherArray(k, m))).toEqual(
            Array.from(rademacherArray(k, n).subarray(0, m)),
          );
        },
      ),
      { numRuns: 50 },
    );
  });

  it('normal(k, [m]) is a prefix of normal(k, [n]) as tensors', () => {
    const k = key(11);
    const a = normal(k, [17]);
    const b = normal(k, [40]);
    try {
      expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()).slice(0, 17));
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});

describe('uniform', () => {
  it('stays in [minval, maxval] and below 1 for the default bounds', () => {
    fc.assert(
      fc.property(
        anyKey,
        fc.double({ min: -1e6, max: 1e6, noNaN: true }),
        fc.double({ min: 0, max: 1e6, noNaN: true }),
        (k, lo, width) => {
          const hi = lo + width;
          const u = uniformArray(k, 200, lo, hi);
          expect(Math.min(...u)).toBeGreaterThanOrEqual(Math.fround(lo));
          expect(Math.max(...u)).toBeLessThanOrEqual(Math.fround(hi));
          const d = uniformArray(k, 200);
          expect(Math.min(...d)).toBeGreaterThanOrEqual(0);
          expect(Math.max(...d)).toBeLessThan(1);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('has mean 1/2 and variance 1/12 within 5 sigma on 1e5 draws', () => {
    const n = 100_000;
    fc.assert(
      fc.property(anyKey, (k) => {
        const u = uniformArray(k, n);
        // sd of the mean: sqrt(1/12 / n); sd of the sample variance: sqrt((1/80 - 1/144) / n)
        expect(Math.abs(mean(u) - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / n));
        expect(Math.abs(variance(u) - 1 / 12)).toBeLessThan(5 * Math.sqrt((1 / 80 - 1 / 144) / n));
      }),
      { numRuns: 5 },
    );
  });

  it('rejects bad bounds', () => {
    expect(() => uniformArray(key(0), 3, 2, 1)).toThrow(/minval <= maxval/);
    expect(() => uniformArray(key(0), 3, 0, Infinity)).toThrow(KeyError);
    expect(() => uniformArray(key(0), 3, Number.NaN, 1)).toThrow(KeyError);
    expect(uniformArray(key(0), 3, 2, 2)).toEqual(Float32Array.of(2, 2, 2));
  });
});

describe('normal', () => {
  it('has mean 0 and variance 1 within 5 sigma on 1e5 draws', () => {
    const n = 100_000;
    fc.assert(
      fc.property(anyKey, (k) => {
        const z = normalArray(k, n);
        expect(Math.abs(mean(z))).toBeLessThan(5 / Math.sqrt(n));
        expect(Math.abs(variance(z) - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
        // all finite; the extreme possible value is sqrt(2) * erfinv(1 - 2^-23) ~ 5.42
        let largest = 0;
        for (const v of z) largest = Math.max(largest, Math.abs(v));
        expect(largest).toBeLessThan(5.5);
      }),
      { numRuns: 5 },
    );
  });

  it('returns empty arrays and tensors for zero sizes', () => {
    expect(normalArray(key(0), 0)).toHaveLength(0);
    const t = normal(key(0), [0, 3]);
    expect(t.shape).toEqual([0, 3]);
    t.dispose();
  });
});

describe('rademacher and bernoulli', () => {
  it('rademacher is +1 exactly where JAX uniform < 0.5, else -1', () => {
    fc.assert(
      fc.property(anyKey, fc.integer({ min: 0, max: 500 }), (k, n) => {
        const r = rademacherArray(k, n);
        const u = uniformArray(k, n);
        r.forEach((v, i) => expect(v).toBe((u[i] as number) < 0.5 ? 1 : -1));
      }),
      { numRuns: 30 },
    );
  });

  it('bernoulli is 1 exactly where JAX uniform < float32(p)', () => {
    fc.assert(
      fc.property(anyKey, fc.double({ min: 0, max: 1, noNaN: true }), (k, p) => {
        const b = bernoulliArray(k, 300, p);
        const u = uniformArray(k, 300);
        b.forEach((v, i) => expect(v).toBe((u[i] as number) < Math.fround(p) ? 1 : 0));
      }),
      { numRuns: 30 },
    );
  });

  it('bernoulli is 0 where the uniform equals p (strict <, as JAX)', () => {
    fc.assert(
      fc.property(anyKey, fc.integer({ min: 0, max: 99 }), (k, j) => {
        const p = uniformArray(k, 100)[j] as number;
        expect(bernoulliArray(k, 100, p)[j]).toBe(0);
      }),
    );
  });

  it('rademacher has mean 0 and bernoulli has mean p within 5 sigma on 1e5 draws', () => {
    const n = 100_000;
    fc.assert(
      fc.property(anyKey, fc.double({ min: 0.01, max: 0.99, noNaN: true }), (k, p) => {
        const r = rademacherArray(k, n);
        expect(r.every((v) => v === 1 || v === -1)).toBe(true);
        expect(Math.abs(mean(r))).toBeLessThan(5 / Math.sqrt(n));
        const b = bernoulliArray(foldIn(k, 1), n, p);
        expect(b.every((v) => v === 0 || v === 1)).toBe(true);
        expect(Math.abs(mean(b) - p)).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / n));
      }),
      { numRuns: 5 },
    );
  });

  it('bernoulli with p = 0 and p = 1 is constant; p outside [0, 1] is rejected', () => {
    expect(bernoulliArray(key(0), 1000, 0).every((v) => v === 0)).toBe(true);
    expect(bernoulliArray(key(0), 1000, 1).every((v) => v === 1)).toBe(true);
    expect(() => bernoulliArray(key(0), 3, 1.5)).toThrow(
      /probability p in \[0, 1\], got the number 1\.5/,
    );
    expect(() => bernoulliArray(key(0), 3, Number.NaN)).toThrow(KeyError);
    expect(() => bernoulli(key(0), [3], -0.1)).toThrow(KeyError);
  });
});

// ---------------------------------------------------------------------------------------------
// tensors

describe('tensor samplers', () => {
  const shapes = fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 0, maxLength: 4 });

  it('have the requested shape, float32 dtype, and equal the typed-array samplers', () => {
    fc.assert(
      fc.property(anyKey, shapes, (k, shape) => {
        const size = shape.reduce((a, b) => a * b, 1);
        const cases: [tf.Tensor, Float32Array][] = [
          [normal(k, shape), normalArray(k, size)],
          [uniform(k, shape, -1, 2), uniformArray(k, size, -1, 2)],
          [rademacher(k, shape), rademacherArray(k, size)],
          [bernoulli(k, shape, 0.3), bernoulliArray(k, size, 0.3)],
        ];
        for (const [t, expected] of cases) {
          expect(t.shape).toEqual(shape);
          expect(t.dtype).toBe('float32');
          expect(Array.from(t.dataSync())).toEqual(Array.from(expected));
          t.dispose();
        }
      }),
      { numRuns: 40 },
    );
  });

  it('leave no tensors behind once disposed', () => {
    const before = tf.memory().numTensors;
    const t = normal(key(0), [3, 4]);
    expect(tf.memory().numTensors).toBe(before + 1);
    t.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('reject shapes that are not non-negative integers, naming the dimension', () => {
    const k = key(0);
    expect(() => normal(k, [2, -1])).toThrow(
      /normal: expected a shape of non-negative integers, got \[2, -1\] \(dimension 1 is -1/,
    );
    expect(() => normal(k, [1.5])).toThrow(/dimension 0 is 1\.5/);
    expect(() => uniform(k, [Number.NaN])).toThrow(KeyError);
    expect(() => rademacher(k, 3 as unknown as number[])).toThrow(/expected a shape \(an array/);
    expect(() => bernoulli(k, [2, 2.5], 0.5)).toThrow(KeyError);
    expect(() => normal({} as unknown as Key, [2])).toThrow(/^normal: expected a PRNG key/);
  });
});

// ---------------------------------------------------------------------------------------------
// the WebAssembly SIMD kernels (normalWasm.ts) against the plain-JS path they replace

/** The float32 bit patterns of `f` (so that -0 and NaN payloads compare too). */
const bitsOf = (f: Float32Array): Uint32Array => new Uint32Array(f.buffer, f.byteOffset, f.length);

/** `run()` with the JS kernels forced, then restored. */
function withJs<T>(run: () => T): T {
  useJsKernels(true);
  try {
    return run();
  } finally {
    useJsKernels(false);
  }
}

/** FNV-1a (32 bit) of some uint32 words. */
function fnv1a(words: Uint32Array, h = 0x811c9dc5): number {
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ (words[i] as number), 0x01000193) >>> 0;
  return h;
}

describe('WebAssembly kernels', () => {
  it('are what Node 20 runs (fixed-width SIMD), so the comparisons below compare two paths', () => {
    expect(kernelState()).toBe('wasm');
    useJsKernels(true);
    expect(kernelState()).toBe('js');
    useJsKernels(false);
    expect(kernelState()).toBe('wasm');
  });

  it('normalWasmBytes.ts is what scripts/gen-normal-wasm.mjs makes of its source', () => {
    const out = execFileSync(process.execPath, ['scripts/gen-normal-wasm.mjs', '--check'], {
      cwd: path.resolve(__dirname, '../..'),
      encoding: 'utf8',
    });
    expect(out).toMatch(/is up to date/);
  });

  it('the normal transform is bit-identical to the JS one on all 2^23 inputs', () => {
    // only bits >>> 9 matter; the low 9 bits are filled with a pattern to show they are ignored
    const slice = 1 << 20;
    const u = new Uint32Array(slice);
    const js = new Float32Array(slice);
    const wasm = new Float32Array(slice);
    let mismatches = 0;
    let first = -1;
    let hJs = 0x811c9dc5;
    let hWasm = 0x811c9dc5;
    for (let base = 0; base < 1 << 23; base += slice) {
      for (let i = 0; i < slice; i++) u[i] = (((base + i) << 9) | (((base + i) * 37) & 511)) >>> 0;
      normalFromBitsJs(u, js, slice);
      expect(normalFromBitsWasm(u, wasm, slice)).toBe(true);
      const a = bitsOf(js);
      const b = bitsOf(wasm);
      for (let i = 0; i < slice; i++) {
        if (a[i] !== b[i]) {
          if (first < 0) first = base + i;
          mismatches++;
        }
      }
      hJs = fnv1a(a, hJs);
      hWasm = fnv1a(b, hWasm);
    }
    expect({ mismatches, first }).toEqual({ mismatches: 0, first: -1 });
    // and the table itself is pinned: the JS path's outputs for m = 0 .. 2^23 - 1, in order, as
    // compared with JAX 0.10.2 on all of them (see normalWasm.ts)
    expect(hJs.toString(16)).toBe('8c882731');
    expect(hWasm).toBe(hJs);
  });

  it('give the same bits as the JS path for any key and size (odd sizes, 0, 1, chunk edges)', () => {
    // CHUNK: the values per pass inside the module; BIG_VALUES: per call from JS
    const sizes = fc.oneof(
      fc.integer({ min: 0, max: 9 }),
      fc.integer({ min: 0, max: 3 * CHUNK + 7 }),
      fc.constantFrom(CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 3, 2 * CHUNK, 6656, 21_504),
      fc.constantFrom(BIG_VALUES - 1, BIG_VALUES, BIG_VALUES + 1, 2 * BIG_VALUES + 3),
    );
    fc.assert(
      fc.property(anyKey, sizes, (k, n) => {
        const samplers: [string, () => Float32Array | Uint32Array][] = [
          ['normal', () => normalArray(k, n)],
          ['bits', () => bits(k, n)],
          ['uniform [0, 1)', () => uniformArray(k, n)],
          ['uniform [-2, 3)', () => uniformArray(k, n, -2, 3)],
          ['rademacher', () => rademacherArray(k, n)],
          ['bernoulli', () => bernoulliArray(k, n, 0.3)],
        ];
        for (const [name, draw] of samplers) {
          const wasm = draw();
          const js = withJs(draw);
          expect(wasm.length, name).toBe(n);
          const w = wasm instanceof Float32Array ? bitsOf(wasm) : wasm;
          const j = js instanceof Float32Array ? bitsOf(js) : js;
          let first = -1;
          for (let i = 0; i < n && first < 0; i++) if (w[i] !== j[i]) first = i;
          expect(first, `${name}, n = ${n}: the first index that differs`).toBe(-1);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('give the same bits as the JS path for a large draw (1e6 + 3 normals)', () => {
    const k = key(2024);
    const n = 1_000_003;
    const wasm = normalArray(k, n);
    const js = withJs(() => normalArray(k, n));
    expect(fnv1a(bitsOf(wasm))).toBe(fnv1a(bitsOf(js)));
  });

  it('count across the 2^32 boundary of the counter as threefry2x32 does (both paths)', () => {
    fc.assert(
      fc.property(
        anyKey,
        fc.integer({ min: 0, max: 2 * CHUNK + 9 }),
        fc.integer({ min: 1, max: 3 * CHUNK }),
        (k, before, n) => {
          // counters 2^32 - before .. 2^32 - before + n - 1: [0, lo] words, then [1, lo]
          const start = 2 ** 32 - before;
          const wasm = new Uint32Array(n);
          fillBits(k[0], k[1], n, wasm, start);
          const js = new Uint32Array(n);
          withJs(() => fillBits(k[0], k[1], n, js, start));
          expect(Array.from(wasm)).toEqual(Array.from(js));
          for (const i of [0, before - 1, before, n - 1]) {
            if (i < 0 || i >= n) continue;
            const c = start + i;
            const [b0, b1] = threefry2x32([k[0], k[1]], [Math.floor(c / 2 ** 32), c % 2 ** 32]);
            expect(wasm[i], `counter ${c}`).toBe((b0 ^ b1) >>> 0);
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('fall back to JS where WebAssembly is missing or refuses the module, with the same values', async () => {
    const k = key(5);
    const expected = Array.from(bitsOf(normalArray(k, 1000)));
    try {
      // no WebAssembly at all
      vi.resetModules();
      vi.stubGlobal('WebAssembly', undefined);
      const none = await import('../../src/params/normalWasm');
      const r1 = await import('../../src/params/random');
      expect(Array.from(bitsOf(r1.normalArray(k, 1000)))).toEqual(expected);
      expect(none.kernelState()).toBe('js');
      // WebAssembly without fixed-width SIMD: the module does not validate
      vi.unstubAllGlobals();
      const real0 = WebAssembly;
      vi.resetModules();
      vi.stubGlobal('WebAssembly', { ...real0, validate: () => false });
      const noSimd = await import('../../src/params/normalWasm');
      const r0 = await import('../../src/params/random');
      expect(Array.from(bitsOf(r0.normalArray(k, 1000)))).toEqual(expected);
      expect(noSimd.kernelState()).toBe('js');
      // a synchronous compile refused (as on a browser's main thread): JS until the
      // asynchronous compile is done, then WebAssembly
      vi.unstubAllGlobals();
      const real = WebAssembly;
      vi.resetModules();
      vi.stubGlobal('WebAssembly', {
        ...real,
        validate: real.validate,
        instantiate: real.instantiate,
        Module: function Module() {
          throw new RangeError('WebAssembly.Compile is disallowed on the main thread');
        },
      });
      const later = await import('../../src/params/normalWasm');
      const r2 = await import('../../src/params/random');
      expect(Array.from(bitsOf(r2.normalArray(k, 1000)))).toEqual(expected);
      expect(later.kernelState()).toBe('pending');
      await vi.waitFor(() => expect(later.kernelState()).toBe('wasm'));
      expect(Array.from(bitsOf(r2.normalArray(k, 1000)))).toEqual(expected);
    } finally {
      vi.unstubAllGlobals();
      vi.resetModules();
    }
  });
});
