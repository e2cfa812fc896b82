/**
 * The SIMD path of BlitzGaussianSample / BlitzGaussianSampleGrad on wasm (heapSimd's
 * gaussSampleFwd / gaussSampleBwd) against the float64 JS loops that remain the fallback
 * (`gaussianSampleJs`, `gaussianSampleGradJs`): sigma over a dense sweep of rho (rounded once: the float32
 * nearest softplus), w bit for
 * bit given the SIMD sigma, the KL terms and the gradients within 2e-6 of the scale of their sums (beyond one ulp and
 * what w's neighbouring values allow),
 * for sizes with tails, 1 to 4 samples, both prior kinds, with and without dw / dkl.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../../src/index';
import { heapSimd, type HeapSimd } from '../../src/kernels/heapSimd';
import { gaussianSampleGradJs, gaussianSampleJs } from '../../src/kernels/wasm';
import {
  normalPrior,
  priorKernelSpec,
  scaleMixturePrior,
  type Prior,
} from '../../src/params/distributions';

interface WasmBackend {
  readonly wasm: {
    readonly asm: { readonly memory: WebAssembly.Memory };
    _malloc(bytes: number): number;
    _free(ptr: number): void;
  };
}

let be: WasmBackend;
let kernels: HeapSimd;

beforeAll(async () => {
  await useBackend('wasm');
  be = tf.backend() as unknown as WasmBackend;
  const k = heapSimd(be.wasm.asm.memory);
  if (k === undefined) throw new Error('heapSimd is unavailable on the wasm backend');
  kernels = k;
});

afterAll(async () => {
  await useBackend('cpu');
});

const fr = Math.fround;
const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

function softplus64(x: number): number {
  if (x < -36) return x < -104 ? 0 : Math.exp(x);
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}
const sigmoid64 = (x: number): number => (x < -104 ? 0 : 1 / (1 + Math.exp(-x)));

/** The float32 ulp at |x| (subnormals: 2^-149). */
function ulp(x: number): number {
  const a = Math.abs(fr(x));
  if (a < 2 ** -126) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

const spec = (p: Prior): number[] => [...(priorKernelSpec(p) as readonly number[])];
const PRIORS: readonly [string, number[]][] = [
  ['scale mixture (0.5, 1, 0.002)', spec(scaleMixturePrior(0.5, 1, 0.002))],
  ['scale mixture, narrow first (0.3, 0.01, 2)', spec(scaleMixturePrior(0.3, 0.01, 2))],
  ['normal (0.3, 0.7)', spec(normalPrior(0.3, 0.7))],
  ['no KL', [0, 0, 0, 0, 0]],
];

/** Deterministic uniforms in [0, 1) (mulberry32). */
function uniforms(seed: number, n: number): Float64Array {
  let a = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
  return out;
}
/** Standard normals (Box-Muller) as float32. */
function normals(seed: number, n: number): Float32Array {
  const u = uniforms(seed, 2 * n);
  return Float32Array.from({ length: n }, (_, i) => {
    const r = Math.sqrt(-2 * Math.log(1 - (u[2 * i] as number)));
    return r * Math.cos(2 * Math.PI * (u[2 * i + 1] as number));
  });
}

interface Case {
  readonly n: number;
  readonly S: number;
  /** rho over [-120, 40] ('wide') or around the usual posterior scales, [-8, -3] ('usual'). */
  readonly rhoRange: 'wide' | 'usual';
  readonly muScale: number;
  readonly seed: number;
}

function inputs(c: Case): { mu: Float32Array; rho: Float32Array; eps: Float32Array } {
  const [lo, hi] = c.rhoRange === 'wide' ? [-120, 40] : [-8, -3];
  const rho = Float32Array.from(uniforms(c.seed, c.n), (u) => lo + (hi - lo) * u);
  const mu = normals(c.seed + 1, c.n).map((x) => fr(x * c.muScale));
  const eps = normals(c.seed + 2, c.S * c.n);
  return { mu, rho, eps };
}

const caseArb = fc.record({
  n: fc.integer({ min: 1, max: 37 }),
  S: fc.integer({ min: 1, max: 4 }),
  rhoRange: fc.constantFrom('wide' as const, 'usual' as const),
  muScale: fc.constantFrom(0.01, 0.1, 1),
  seed: fc.integer({ min: 0, max: 2 ** 30 }),
});

/** sigma = softplus(rho) from the SIMD kernel: w with mu = 0, eps = 1. */
function simdSigma(rho: Float32Array): Float32Array {
  const n = rho.length;
  return tf.tidy(() => {
    const [w] = tf
      .engine()
      .runKernel(
        'BlitzGaussianSample',
        { mu: tf.zeros([n]), rho: tf.tensor1d(rho), eps: tf.ones([1, n]) },
        { prior: [0, 0, 0, 0, 0] },
      ) as tf.Tensor[];
    return (w as tf.Tensor).dataSync() as Float32Array;
  });
}

/** The forward pass's checks for one case and prior. */
function checkForward(c: Case, prior: number[]): void {
  const { n, S } = c;
  const { mu, rho, eps } = inputs(c);
  const [w, kl] = tf.tidy(() =>
    (
      tf
        .engine()
        .runKernel(
          'BlitzGaussianSample',
          { mu: tf.tensor1d(mu), rho: tf.tensor1d(rho), eps: tf.tensor2d(eps, [S, n]) },
          { prior },
        ) as tf.Tensor[]
    ).map((t) => t.dataSync() as Float32Array),
  ) as [Float32Array, Float32Array];
  // the reference: the JS loops on one array [mu, rho, eps, w, kl]
  const arr = new Float32Array(2 * n + 2 * S * n + S);
  arr.set(mu, 0);
  arr.set(rho, n);
  arr.set(eps, 2 * n);
  gaussianSampleJs(arr, 0, n, 2 * n, 2 * n + S * n, 2 * n + 2 * S * n, n, S, prior);
  const wRef = arr.subarray(2 * n + S * n, 2 * n + 2 * S * n);
  const klRef = arr.subarray(2 * n + 2 * S * n);
  const sigma = simdSigma(rho);
  const [kind = 0, a = 0, b = 0, cc = 0, d = 0] = prior;
  for (let s = 0; s < S; s++) {
    let scale = 0;
    for (let i = 0; i < n; i++) {
      const j = s * n + i;
      const e = eps[j] as number;
      const sg = sigma[i] as number;
      const ref = softplus64(rho[i] as number);
      // sigma within half an ulp of float64 (rounded once); w bit for bit given sigma, and
      // close to the JS w
      if (!(Math.abs(sg - ref) <= 0.5 * ulp(ref))) expect(sg).toBe(ref);
      if (w[j] !== fr((mu[i] as number) + fr(sg * e)))
        expect(w[j]).toBe(fr((mu[i] as number) + fr(sg * e)));
      const dw = Math.abs((w[j] as number) - (wRef[j] as number));
      if (!(dw <= 2 * ulp(sg * e) + ulp(wRef[j] as number))) expect(w[j]).toBe(wRef[j]);
      const wi = wRef[j] as number;
      const r = rho[i] as number;
      const logP =
        kind === 1 ? cc - 0.5 * b * (wi - a) ** 2 : a + b * wi * wi + softplus64(cc * wi * wi + d);
      scale += Math.abs(r < -20 ? r : Math.log(ref)) + 0.5 * e * e + HALF_LOG_2PI + Math.abs(logP);
    }
    const err = Math.abs((kl[s] as number) - (klRef[s] as number));
    if (kind === 0) expect(kl[s]).toBe(0);
    else {
      worst.kl = Math.max(worst.kl, Math.max(0, err - ulp(klRef[s] as number)) / scale);
      worst.klOfKl = Math.max(worst.klOfKl, err / Math.abs(klRef[s] as number));
    }
  }
}

/** The backward pass's checks for one case and prior, with or without dw and dkl. */
function checkBackward(c: Case, prior: number[], withDw: boolean, withDkl: boolean): void {
  const { n, S } = c;
  const { mu, rho, eps } = inputs(c);
  const dw = normals(c.seed + 3, S * n);
  const dkl = Float32Array.from(normals(c.seed + 4, S), (x) => fr(1 + x));
  const [dmu, drho] = tf.tidy(() =>
    (
      tf.engine().runKernel(
        'BlitzGaussianSampleGrad',
        {
          mu: tf.tensor1d(mu),
          rho: tf.tensor1d(rho),
          eps: tf.tensor2d(eps, [S, n]),
          ...(withDw ? { dw: tf.tensor2d(dw, [S, n]) } : {}),
          ...(withDkl ? { dkl: tf.tensor1d(dkl) } : {}),
        },
        { prior },
      ) as tf.Tensor[]
    ).map((t) => t.dataSync() as Float32Array),
  ) as [Float32Array, Float32Array];
  // [mu, rho, eps, dw, dkl, dmu, drho]
  const o = [0, n, 2 * n, 2 * n + S * n, 2 * n + 2 * S * n, 2 * n + 2 * S * n + S];
  const arr = new Float32Array(4 * n + 2 * S * n + S);
  arr.set(mu, o[0]);
  arr.set(rho, o[1]);
  arr.set(eps, o[2]);
  arr.set(dw, o[3]);
  arr.set(dkl, o[4]);
  const [MU, RHO, EPS, DW, DKL, DMU] = o as [number, number, number, number, number, number];
  const DRHO = DMU + n;
  gaussianSampleGradJs(
    arr,
    MU,
    RHO,
    EPS,
    withDw ? DW : -1,
    withDkl ? DKL : -1,
    DMU,
    DRHO,
    n,
    S,
    prior,
  );
  const [kind = 0, a = 0, b = 0, cc = 0, d = 0] = prior;
  const g = (s: number): number => (withDkl && kind !== 0 ? (dkl[s] as number) : 0);
  let gAbs = 0;
  for (let s = 0; s < S; s++) gAbs += Math.abs(g(s));
  for (let i = 0; i < n; i++) {
    const r = rho[i] as number;
    const sp = softplus64(r);
    const sg = sigmoid64(r);
    const sigma = fr(sp);
    let sm = 0;
    let sr = 0;
    // what the neighbouring w allow (absolute)
    let wm = 0;
    let wr = 0;
    for (let s = 0; s < S; s++) {
      const e = eps[s * n + i] as number;
      const wi = fr((mu[i] as number) + fr(sigma * e));
      const dlogp = kind === 1 ? -b * (wi - a) : 2 * wi * (b + cc * sigmoid64(cc * wi * wi + d));
      // the KL term through w moves with w: sigma (half an ulp, as the JS path's, but the two
      // float64 evaluations may round a near-midpoint apart) may round w to its neighbour, and
      // the scale mixture's slope d dlogp / dw is up to ~1e6 (c = -125000)
      const r2 = sigmoid64(cc * wi * wi + d);
      const slope =
        kind === 2 ? Math.abs(2 * (b + cc * r2)) + 4 * cc * cc * wi * wi * r2 * (1 - r2) : b;
      const t = (withDw ? Math.abs(dw[s * n + i] as number) : 0) + Math.abs(g(s) * dlogp);
      // (w = mu + sigma eps may cancel: the rounding of the sum is that of its larger term)
      const wUlp = ulp(Math.max(Math.abs(mu[i] as number), Math.abs(sigma * e)));
      const tw = Math.abs(g(s)) * slope * (wUlp + 2 * ulp(sigma * e));
      sm += t;
      sr += t * Math.abs(e);
      wm += tw;
      wr += tw * Math.abs(e);
    }
    const dls = r < -20 ? 1 : sg / sp;
    const dmuRef = arr[DMU + i] as number;
    const drhoRef = arr[DRHO + i] as number;
    // beyond one float32 ulp of the result (and 1e-40: sigmoid(rho) is subnormal below -87)
    const em = Math.max(0, Math.abs((dmu[i] as number) - dmuRef) - ulp(dmuRef) - wm) / (sm || 1);
    const er =
      Math.max(0, Math.abs((drho[i] as number) - drhoRef) - ulp(drhoRef) - wr * sg - 1e-40) /
      (sr * sg + gAbs * dls || 1);
    worst.dmu = Math.max(worst.dmu, em);
    worst.drho = Math.max(worst.drho, er);
  }
}

/**
 * The largest errors seen, beyond one float32 ulp of the result (and, for the gradients, what w's
 * neighbouring float32 values allow), relative to the scales of the sums; `klOfKl`: the KL's
 * error relative to itself (reported only: BLITZ_GAUSS_ERRORS=1 prints them).
 */
const worst = { kl: 0, dmu: 0, drho: 0, klOfKl: 0 };

describe('BlitzGaussianSample on wasm: the SIMD kernels against the float64 JS loops', () => {
  it('sigma = softplus(rho), the float32 nearest the float64 value over a dense sweep of [-120, 40]', () => {
    const n = 1 << 18;
    const S = 1;
    const bytes = 4 * (3 * n) + 16 + 48 * S + 64 * (S + 1);
    const base = be.wasm._malloc(bytes + 16);
    try {
      const at = (base + 15) & ~15;
      const [MU, RHO, EPS, W] = [at, at + 4 * n, at + 8 * n, at + 8 * n];
      const work = at + 12 * n;
      let worst = 0;
      let differ = 0;
      for (let part = 0; part < 8; part++) {
        let heap = new Float32Array(be.wasm.asm.memory.buffer);
        for (let i = 0; i < n; i++) {
          heap[RHO / 4 + i] = -120 + (160 * (part * n + i)) / (8 * n);
          heap[MU / 4 + i] = 0;
          heap[EPS / 4 + i] = 1;
        }
        // w over eps (the same place: w = sigma where eps = 1 is read before it is written)
        kernels.gaussSampleFwd(MU, RHO, EPS, W, n, S, 0, 0, 0, 0, work);
        heap = new Float32Array(be.wasm.asm.memory.buffer);
        for (let i = 0; i < n; i++) {
          const ref = softplus64(heap[RHO / 4 + i] as number);
          const got = heap[W / 4 + i] as number;
          worst = Math.max(worst, Math.abs(got - ref) / ulp(ref));
          if (got !== fr(ref)) differ++;
        }
      }
      // rounded once from a float64 evaluation: the float32 nearest softplus at every point
      expect(worst).toBeLessThanOrEqual(0.5);
      expect(differ).toBe(0);
    } finally {
      be.wasm._free(base);
    }
  });

  it.each(PRIORS)('%s: w and kl', (_name, prior) => {
    fc.assert(
      fc.property(caseArb, (c) => checkForward(c, prior)),
      { numRuns: 60 },
    );
  });

  it.each(PRIORS)('%s: dmu and drho, with and without dw and dkl', (_name, prior) => {
    fc.assert(
      fc.property(caseArb, fc.boolean(), fc.boolean(), (c, withDw, withDkl) =>
        checkBackward(c, prior, withDw, withDkl),
      ),
      { numRuns: 60 },
    );
  });

  it('large n (1e5, S = 3, the usual scales)', () => {
    const c: Case = { n: 100003, S: 3, rhoRange: 'usual', muScale: 0.1, seed: 5 };
    checkForward(c, PRIORS[0]?.[1] as number[]);
    checkBackward(c, PRIORS[0]?.[1] as number[], true, true);
  });

  it('the errors, relative to the scales of the sums, are below 2e-6', () => {
    if (process.env['BLITZ_GAUSS_ERRORS']) console.log(JSON.stringify(worst));
    expect(worst.kl).toBeLessThan(2e-6);
    expect(worst.dmu).toBeLessThan(2e-6);
    expect(worst.drho).toBeLessThan(2e-6);
  });
});
