/**
 * src/kernels/heapSimd.ts: the WebAssembly SIMD matrix-vector product on the tfjs wasm backend's
 * own memory, against a float64 plain loop (error bound) and against a float32 emulation of the
 * documented order of the sum (bit for bit), for small and large sizes, offsets that are not
 * 16-byte aligned, bias and clamp variants; and on memory that grew after the module was made.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../../src/index';
import { heapSimd, type HeapSimd } from '../../src/kernels/heapSimd';
import { HEAP_SIMD_ACCS } from '../../src/kernels/heapSimdBytes';

/** The parts of tfjs-backend-wasm 4.22's BackendWasm that the tests use. */
interface WasmBackend {
  readonly wasm: {
    readonly asm: { readonly memory: WebAssembly.Memory };
    _malloc(bytes: number): number;
    _free(ptr: number): void;
  };
  readonly dataIdMap: { get(id: object): { memoryOffset: number } | undefined };
}

let be: WasmBackend;
let memory: WebAssembly.Memory;
let kernels: HeapSimd;

beforeAll(async () => {
  await useBackend('wasm');
  be = tf.backend() as unknown as WasmBackend;
  memory = be.wasm.asm.memory;
  const k = heapSimd(memory);
  if (k === undefined) throw new Error('heapSimd is unavailable on the wasm backend');
  kernels = k;
});

afterAll(async () => {
  await useBackend('cpu');
});

/** Deterministic float32 values in [-1, 1) from a seed (mulberry32), some of them exactly 0. */
function values(seed: number, n: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    out[i] = u < 0.03 ? 0 : 2 * u - 1;
  }
  return out;
}

const fr = Math.fround;

/**
 * The documented order of the kernel's sum for one row, in float32 (bit-exact): A f32x4
 * accumulators over whole blocks of 4A values, the blocks of 4 left to c_0, c_1, ..., the
 * accumulators added pairwise, the lanes pairwise, then the last K mod 4 products in order.
 */
function orderedDot(a: Float32Array, row: number, b: Float32Array, K: number): number {
  const A = HEAP_SIMD_ACCS;
  const c = Array.from({ length: A }, () => [0, 0, 0, 0]);
  const kA = K - (K % (4 * A));
  const k4 = K - (K % 4);
  const p = (k: number): number => fr((a[row * K + k] as number) * (b[k] as number));
  const addTo = (h: number, k: number): void => {
    const ch = c[h] as number[];
    for (let j = 0; j < 4; j++) ch[j] = fr((ch[j] as number) + p(k + j));
  };
  for (let k = 0; k < kA; k += 4 * A) for (let h = 0; h < A; h++) addTo(h, k + 4 * h);
  for (let k = kA, h = 0; k < k4; k += 4, h++) addTo(h, k);
  const combine = (hs: number[]): number[] =>
    hs.length === 1
      ? (c[hs[0] as number] as number[])
      : ((x, y) => x.map((xj, j) => fr(xj + (y[j] as number))))(
          combine(hs.slice(0, hs.length / 2)),
          combine(hs.slice(hs.length / 2)),
        );
  const v = combine([...Array(A).keys()]);
  let s = fr(fr((v[0] as number) + (v[1] as number)) + fr((v[2] as number) + (v[3] as number)));
  for (let k = k4; k < K; k++) s = fr(s + p(k));
  return s;
}

interface Case {
  readonly M: number;
  readonly K: number;
  /** Byte shifts of a, b, out and bias from 16-byte aligned addresses (multiples of 4). */
  readonly shifts: readonly [number, number, number, number];
  readonly bias: 'none' | 'scalar' | 'row';
  readonly act: 'linear' | 'relu' | 'relu6';
  readonly seed: number;
}

const ACT = { linear: [-Infinity, Infinity], relu: [0, Infinity], relu6: [0, 6] } as const;

/**
 * Runs matVec on heap buffers laid out as `c` says (from `_malloc`, at offsets `base + shift`)
 * and checks every output: bit-equal to the documented float32 order, and within
 * 1e-5 * (sum |a b| + |bias|) of the float64 plain loop (both clamped).
 */
function check(c: Case): void {
  const { M, K, shifts, bias, act } = c;
  const a = values(c.seed, M * K);
  // scale b so that relu6 clamps some rows from above
  const b = values(c.seed + 1, K).map((x) => fr(x * 4));
  const biasLen = bias === 'row' ? M : 1;
  const biasVals = values(c.seed + 2, biasLen);
  const biasStride = bias === 'row' ? 4 : 0;
  const [lo, hi] = ACT[act];

  const bytes = [M * K * 4, K * 4, M * 4, biasLen * 4];
  const ptrs = bytes.map((n) => be.wasm._malloc(n + 32));
  try {
    const off = ptrs.map((p, i) => ((p + 15) & ~15) + (shifts[i] as number));
    const [aOff, bOff, outOff, biasOff] = off as [number, number, number, number];
    let heap = new Float32Array(memory.buffer);
    heap.set(a, aOff / 4);
    heap.set(b, bOff / 4);
    heap.set(biasVals, biasOff / 4);
    heap.fill(NaN, outOff / 4, outOff / 4 + M);
    kernels.matVec(aOff, bOff, outOff, M, K, bias === 'none' ? 0 : biasOff, lo, hi, biasStride);
    heap = new Float32Array(memory.buffer);
    const out = heap.slice(outOff / 4, outOff / 4 + M);
    for (let m = 0; m < M; m++) {
      const bm = bias === 'none' ? 0 : (biasVals[bias === 'row' ? m : 0] as number);
      let ref = 0;
      let scale = Math.abs(bm);
      for (let k = 0; k < K; k++) {
        const t = (a[m * K + k] as number) * (b[k] as number);
        ref += t;
        scale += Math.abs(t);
      }
      ref = Math.min(Math.max(ref + bm, lo), hi);
      const got = out[m] as number;
      const exact = fr(Math.min(Math.max(fr(orderedDot(a, m, b, K) + bm), lo), hi));
      if (!Object.is(got, exact) || !(Math.abs(got - ref) <= 1e-5 * scale)) {
        throw new Error(
          `row ${m} of ${JSON.stringify(c)}: got ${got}, documented order ${exact}, float64 ${ref}`,
        );
      }
    }
  } finally {
    ptrs.forEach((p) => be.wasm._free(p));
  }
}

const shiftArb = fc.constantFrom(0, 4, 8, 12);
const caseArb = (M: fc.Arbitrary<number>, K: fc.Arbitrary<number>): fc.Arbitrary<Case> =>
  fc.record({
    M,
    K,
    shifts: fc.tuple(shiftArb, shiftArb, shiftArb, shiftArb),
    bias: fc.constantFrom('none', 'scalar', 'row'),
    act: fc.constantFrom('linear', 'relu', 'relu6'),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  });

describe('heapSimd', () => {
  it('heapSimdBytes.ts is what scripts/gen-heap-wasm.mjs makes of its source', () => {
    const out = execFileSync(process.execPath, ['scripts/gen-heap-wasm.mjs', '--check'], {
      cwd: path.resolve(__dirname, '../..'),
      encoding: 'utf8',
    });
    expect(out).toMatch(/is up to date/);
  });

  it('is made once per memory, a shared one (the threaded build) included', () => {
    expect(heapSimd(memory)).toBe(kernels);
    const own = new WebAssembly.Memory({ initial: 1 });
    const k = heapSimd(own);
    expect(k).toBeDefined();
    expect(k).not.toBe(kernels);
    expect(heapSimd(own)).toBe(k);
    const shared = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    expect(shared.buffer).toBeInstanceOf(SharedArrayBuffer);
    const ks = heapSimd(shared);
    expect(ks).toBeDefined();
    expect(heapSimd(shared)).toBe(ks);
    // the same code on the shared memory: the same bits as on a non-shared one
    const fs = new Float32Array(shared.buffer);
    const fo = new Float32Array(own.buffer);
    for (const arr of [fs, fo]) {
      arr.set([0.1, -2, 3.5, 4e-3, 5, -6.25, 0.3, 1e3], 1);
      arr.set([1.5, 0.5, -1, 0.125], 9);
    }
    ks?.matVec(4, 36, 64, 2, 4, 0, -Infinity, Infinity);
    k?.matVec(4, 36, 64, 2, 4, 0, -Infinity, Infinity);
    expect([fs[16], fs[17]]).toEqual([fo[16], fo[17]]);
    expect(fs[16]).toBe(fr(fr(fr(0.15) + fr(-1)) + fr(fr(-3.5) + fr(5e-4))));
  });

  it('works on any memory; out of bounds it throws', () => {
    const own = new WebAssembly.Memory({ initial: 1 });
    const k = heapSimd(own) as HeapSimd;
    const f = new Float32Array(own.buffer);
    f.set([1, 2, 3, 4, 5, 6], 1); // a = [[1, 2, 3], [4, 5, 6]] at byte 4
    f.set([1, 0.5, -1], 9); // b at byte 36
    f[20] = 0.25; // bias at byte 80
    k.matVec(4, 36, 48, 2, 3, 80, -Infinity, Infinity);
    expect([f[12], f[13]]).toEqual([1 + 1 - 3 + 0.25, 4 + 2.5 - 6 + 0.25]);
    k.matVec(4, 36, 48, 2, 3, 0, 0, 0.2);
    expect([f[12], f[13]]).toEqual([0, fr(0.2)]);
    k.matVec(4, 36, 48, 2, 0, 80, -Infinity, Infinity); // K = 0: the bias
    expect([f[12], f[13]]).toEqual([0.25, 0.25]);
    f[12] = 7;
    k.matVec(4, 36, 48, 0, 3, 80, -Infinity, Infinity); // M = 0: nothing
    expect(f[12]).toBe(7);
    expect(() => k.matVec(65536 - 8, 0, 0, 1, 4, 0, -Infinity, Infinity)).toThrow(
      WebAssembly.RuntimeError,
    );
  });

  it('K = 0..9 and M = 1..7: bit-equal to the documented order, close to float64', () => {
    fc.assert(
      fc.property(caseArb(fc.integer({ min: 1, max: 7 }), fc.integer({ min: 0, max: 9 })), (c) =>
        check(c),
      ),
      { numRuns: 400 },
    );
  });

  it('every K in 1..40 and M in 1..9 once, all variants', () => {
    let seed = 1;
    for (let K = 1; K <= 40; K++) {
      for (let M = 1; M <= 9; M++) {
        const shifts = [(4 * K) % 16, (4 * M) % 16, (8 * K) % 16, 12] as const;
        const bias = (['none', 'scalar', 'row'] as const)[(K + M) % 3] ?? 'none';
        const act = (['linear', 'relu', 'relu6'] as const)[(K * M) % 3] ?? 'linear';
        check({ M, K, shifts, bias, act, seed: seed++ });
      }
    }
  });

  it('random sizes up to M = 64, K = 300', () => {
    fc.assert(
      fc.property(caseArb(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 300 })), (c) =>
        check(c),
      ),
      { numRuns: 100 },
    );
  });

  it('M = 1000, K = 512 (and 513, 1027)', () => {
    check({ M: 1000, K: 512, shifts: [4, 8, 12, 0], bias: 'none', act: 'linear', seed: 7 });
    check({ M: 1000, K: 512, shifts: [0, 0, 0, 0], bias: 'scalar', act: 'relu', seed: 8 });
    check({ M: 1001, K: 513, shifts: [12, 4, 8, 4], bias: 'row', act: 'relu6', seed: 9 });
    check({ M: 37, K: 1027, shifts: [8, 12, 4, 8], bias: 'row', act: 'linear', seed: 10 });
  });

  it('on tensors, and on memory that grew after the first call', () => {
    const M = 33;
    const K = 21;
    const offsetOf = (t: tf.Tensor): number => {
      const d = be.dataIdMap.get(t.dataId);
      if (d === undefined) throw new Error('no data');
      return d.memoryOffset;
    };
    const expected = (aT: tf.Tensor, bT: tf.Tensor): Float32Array => {
      const a = aT.dataSync() as Float32Array;
      const b = bT.dataSync() as Float32Array;
      return Float32Array.from({ length: M }, (_, m) => orderedDot(a, m, b, K));
    };
    const a = tf.tensor(values(11, M * K), [M, K]);
    const b = tf.tensor(values(12, K), [K, 1]);
    const out = tf.zeros([M]);
    kernels.matVec(offsetOf(a), offsetOf(b), offsetOf(out), M, K, 0, -Infinity, Infinity);
    expect(out.dataSync()).toEqual(expected(a, b));

    // a tensor bigger than the whole memory makes it grow; the module must see the new pages
    const before = memory.buffer.byteLength;
    const bigLen = before / 4 + (1 << 20);
    const big = tf.fill([bigLen], 0.5);
    expect(memory.buffer.byteLength).toBeGreaterThan(before);
    const end = offsetOf(big) + bigLen * 4;
    expect(end).toBeGreaterThan(before);
    // a, b and out in the big tensor's last bytes (beyond the old memory's end)
    const aOff = end - (M * K + K + M) * 4;
    expect(aOff).toBeGreaterThanOrEqual(before);
    const heap = new Float32Array(memory.buffer);
    const aVals = values(13, M * K);
    const bVals = values(14, K);
    heap.set(aVals, aOff / 4);
    heap.set(bVals, aOff / 4 + M * K);
    const outOff = aOff + (M * K + K) * 4;
    kernels.matVec(aOff, aOff + M * K * 4, outOff, M, K, 0, -Infinity, Infinity);
    const got = new Float32Array(memory.buffer, outOff, M).slice();
    expect(got).toEqual(Float32Array.from({ length: M }, (_, m) => orderedDot(aVals, m, bVals, K)));
    // and the first tensors, again
    kernels.matVec(offsetOf(a), offsetOf(b), offsetOf(out), M, K, 0, -Infinity, Infinity);
    expect(out.dataSync()).toEqual(expected(a, b));
    tf.dispose([a, b, out, big]);
  });
});

describe('lstmCellFwd / gruCellFwd (the recurrent cells forward)', () => {
  const ulp = (x: number): number => {
    const a = Math.abs(fr(x));
    return a < 2 ** -126 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(a)) - 23);
  };
  const sig64 = (x: number): number => 1 / (1 + Math.exp(-x));

  it('sigmoid within 2.5, tanh within 2 float32 ulp over a dense sweep of [-40, 40], the specials exact', () => {
    const own = new WebAssembly.Memory({ initial: 64 });
    const k = heapSimd(own) as HeapSimd;
    const H = 1 << 14;
    const n = 1;
    const [PRE, C0, HO, CO, ACT] = [0, 16 * H, 20 * H, 24 * H, 28 * H];
    const f = new Float32Array(own.buffer);
    const specials = [
      0,
      -0,
      Infinity,
      -Infinity,
      1e-30,
      -1e-30,
      88,
      -88,
      104,
      -104,
      0.5493,
      -0.5493,
    ];
    let worstS = 0;
    let worstT = 0;
    for (let part = 0; part < 8; part++) {
      const xs = Float32Array.from({ length: H }, (_, i) =>
        part === 0 && i < specials.length
          ? (specials[i] as number)
          : -40 + (80 * (part * H + i)) / (8 * H),
      );
      for (let g = 0; g < 4; g++) f.set(xs, PRE / 4 + g * H);
      f.fill(0, C0 / 4, C0 / 4 + H);
      k.lstmCellFwd(PRE, C0, HO, CO, ACT, n, 4 * H);
      for (let i = 0; i < H; i++) {
        const x = xs[i] as number;
        const si = f[ACT / 4 + i] as number;
        const tg = f[ACT / 4 + 2 * H + i] as number;
        const [s64, t64] = [sig64(x), Math.tanh(x)];
        worstS = Math.max(worstS, Math.abs(si - s64) / ulp(s64));
        worstT = Math.max(worstT, Math.abs(tg - t64) / ulp(t64));
        if (!Number.isFinite(x) || x === 0 || Math.abs(x) >= 88) {
          expect(tg).toBe(fr(t64));
          expect(si).toBe(fr(s64));
        }
      }
    }
    // measured: 2.02 and 1.48 ulp
    expect(worstS).toBeLessThanOrEqual(2.5);
    expect(worstT).toBeLessThanOrEqual(2);
    // NaN stays NaN
    f.fill(NaN, PRE / 4, PRE / 4 + 4 * H);
    k.lstmCellFwd(PRE, C0, HO, CO, ACT, n, 16);
    expect([f[ACT / 4], f[ACT / 4 + 2], f[HO / 4]].every(Number.isNaN)).toBe(true);
  });

  it('the cells against float64 for rows of H = 4..16 (every state, every act plane)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (n, h4, seed) => {
          const own = new WebAssembly.Memory({ initial: 1 });
          const k = heapSimd(own) as HeapSimd;
          const H = 4 * h4;
          const f = new Float32Array(own.buffer);
          let s = seed >>> 0;
          const rnd = () => {
            s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
            return s / 2 ** 32 - 0.5;
          };
          const PRE = 0;
          const ST = 4 * 4 * n * H;
          const [HO, CO, ACT] = [ST + 4 * n * H, ST + 8 * n * H, ST + 12 * n * H];
          for (let i = 0; i < 4 * n * H; i++) f[i] = fr(8 * rnd());
          for (let i = 0; i < n * H; i++) f[ST / 4 + i] = fr(2 * rnd());
          const pre = (r: number, g: number, j: number) => f[r * 4 * H + g * H + j] as number;
          const st = (e: number) => f[ST / 4 + e] as number;
          k.lstmCellFwd(PRE, ST, HO, CO, ACT, n, 4 * H);
          const m = n * H;
          const close = (got: number, want: number, scale = 1) =>
            expect(Math.abs(got - want)).toBeLessThanOrEqual(
              4e-7 * Math.max(scale, Math.abs(want)),
            );
          for (let r = 0; r < n; r++)
            for (let j = 0; j < H; j++) {
              const e = r * H + j;
              const [i, fg, g, o] = [
                sig64(pre(r, 0, j)),
                sig64(pre(r, 1, j)),
                Math.tanh(pre(r, 2, j)),
                sig64(pre(r, 3, j)),
              ];
              const c = fg * st(e) + i * g;
              [i, fg, g, o, Math.tanh(c)].forEach((v, p) =>
                close(f[ACT / 4 + p * m + e] as number, v),
              );
              close(f[CO / 4 + e] as number, c, 2);
              close(f[HO / 4 + e] as number, o * Math.tanh(c));
            }
          k.gruCellFwd(PRE, ST, HO, ACT, n, 4 * H);
          for (let r = 0; r < n; r++)
            for (let j = 0; j < H; j++) {
              const e = r * H + j;
              const [rr, z, p] = [sig64(pre(r, 0, j)), sig64(pre(r, 1, j)), pre(r, 3, j)];
              const nn = Math.tanh(pre(r, 2, j) + rr * p);
              [rr, z, nn, p].forEach((v, q) => close(f[ACT / 4 + q * m + e] as number, v));
              close(f[HO / 4 + e] as number, nn + z * (st(e) - nn), 2);
            }
        },
      ),
      { numRuns: 60 },
    );
  });
});
