/**
 * The PRNG's hot loops: threefry2x32-20 bit generation and the bits -> float32 uniform and
 * bits -> standard normal transforms, as WebAssembly SIMD kernels (normalWasmBytes.ts, made by
 * scripts/gen-normal-wasm.mjs) with the plain-JS code as the fallback where WebAssembly or its
 * SIMD is not available.
 *
 * Both paths give the same bits for every input: threefry is integer arithmetic, and every
 * float32 step of the transforms is the same IEEE operation in the same order (the JS code rounds
 * each double result with `Math.fround`; the kernels use f32x4 operations for single float32
 * operations and f64x2 for XLA's fused multiply-adds, exactly as the JS code does them in double;
 * see the generator). test/params/random.test.ts checks them against each other on every one of
 * the 2^23 inputs of the normal transform, and on random keys and sizes.
 *
 * The module keeps its own memory (6 pages, 384 KiB, fixed): the kernels' scratch for chunks of
 * 1024 values, and a buffer for the results of one call (up to 64Ki values), which the JS side
 * copies out. The module (under 6 KB) is compiled once, synchronously, on first use; where a
 * synchronous compile is refused (Chrome's main thread limits `new WebAssembly.Module` to small
 * modules: 4 KB in older versions, 8 MB in current ones) or fails otherwise, it is compiled
 * asynchronously and the JS path is used until it is ready (for good if that fails too, e.g.
 * under a content security policy without 'wasm-unsafe-eval'). Results do not depend on which
 * path runs.
 */
import { BIG_OFFSET, BIG_VALUES, NORMAL_WASM_BASE64 } from './normalWasmBytes';

const TWO_32 = 4294967296;

// ---------------------------------------------------------------------------------------------
// the WebAssembly kernels

/**
 * The module's exports: each call handles n <= BIG_VALUES values, the counters [hi, lo + j]
 * (lo + n <= 2^32), and leaves its results in `big` (BIG_OFFSET in the module's memory).
 */
interface Exports {
  readonly mem: WebAssembly.Memory;
  /** The bits b0 ^ b1 of threefry2x32([k0, k1], [hi, lo + j]). */
  bits(k0: number, k1: number, hi: number, lo: number, n: number): void;
  /** The float32 uniforms in [0, 1) of those bits, (bits >>> 9) * 2^-23. */
  uniforms(k0: number, k1: number, hi: number, lo: number, n: number): void;
  /** The standard normals of those bits (as normalFromBitsJs). */
  normals(k0: number, k1: number, hi: number, lo: number, n: number): void;
  /** The standard normals of the bits already in `big`, in place. */
  normalsFromBits(n: number): void;
}

interface Kernels {
  readonly ex: Exports;
  readonly u32: Uint32Array;
  readonly f32: Float32Array;
}

function decodeBase64(s: string): Uint8Array<ArrayBuffer> {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const value = new Uint8Array(128);
  for (let i = 0; i < 64; i++) value[alphabet.charCodeAt(i)] = i;
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  for (let i = 0, j = 0; i < s.length; i += 4) {
    const v =
      ((value[s.charCodeAt(i)] as number) << 18) |
      ((value[s.charCodeAt(i + 1)] as number) << 12) |
      ((value[s.charCodeAt(i + 2)] as number) << 6) |
      (value[s.charCodeAt(i + 3)] as number);
    out[j++] = v >>> 16;
    if (j < out.length) out[j++] = (v >>> 8) & 0xff;
    if (j < out.length) out[j++] = v & 0xff;
  }
  return out;
}

function wrap(instance: WebAssembly.Instance): Kernels {
  const ex = instance.exports as unknown as Exports;
  // the memory has a fixed size (minimum = maximum), so these views stay valid
  return {
    ex,
    u32: new Uint32Array(ex.mem.buffer, BIG_OFFSET, BIG_VALUES),
    f32: new Float32Array(ex.mem.buffer, BIG_OFFSET, BIG_VALUES),
  };
}

/** 'wasm': the kernels run; 'pending': compiling asynchronously; 'js': the fallback for good. */
export type KernelState = 'wasm' | 'pending' | 'js';

let kernels: Kernels | null = null;
let state: KernelState | 'untried' = 'untried';
let forceJs = false;

function load(): void {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    if (typeof WebAssembly !== 'object' || typeof WebAssembly.validate !== 'function') {
      state = 'js';
      return;
    }
    bytes = decodeBase64(NORMAL_WASM_BASE64);
    // false where fixed-width SIMD is not supported (validation rejects the v128 instructions)
    if (!WebAssembly.validate(bytes)) {
      state = 'js';
      return;
    }
  } catch {
    state = 'js';
    return;
  }
  try {
    kernels = wrap(new WebAssembly.Instance(new WebAssembly.Module(bytes), {}));
    state = 'wasm';
  } catch {
    // e.g. a synchronous compile refused on a browser's main thread: try asynchronously, with
    // the JS path meanwhile
    state = 'pending';
    try {
      WebAssembly.instantiate(bytes, {}).then(
        (r) => {
          kernels = wrap(r.instance);
          state = 'wasm';
        },
        () => {
          state = 'js';
        },
      );
    } catch {
      state = 'js';
    }
  }
}

function active(): Kernels | null {
  if (state === 'untried') load();
  return forceJs ? null : kernels;
}

/**
 * `kernelState() -> 'wasm' | 'pending' | 'js'`: which path the samplers take (loads the module on
 * first call). Internal: for tests and benchmarks.
 */
export function kernelState(): KernelState {
  if (state === 'untried') load();
  return forceJs ? 'js' : (state as KernelState);
}

/**
 * `useJsKernels(on: boolean)`: force the plain-JS path (true) or allow the WebAssembly one
 * (false, the default). Internal: for tests and benchmarks that compare the two.
 */
export function useJsKernels(on: boolean): void {
  forceJs = on;
}

// ---------------------------------------------------------------------------------------------
// the JS kernels (the fallback, and the reference the WebAssembly kernels are tested against)

/**
 * The hot loop: for `c = 0 .. len-1`, hash the counter `[hi, lo + c]` (`lo + len <= 2^32`) and
 * write `b0 ^ b1` to `out[offset + c]`. All 20 rounds are unrolled and done on int32 values; the
 * typed array store wraps to uint32.
 */
function fillBlocksJs(
  k0: number,
  k1: number,
  hi: number,
  lo: number,
  len: number,
  out: Uint32Array,
  offset: number,
): void {
  const ks0 = k0 | 0;
  const ks1 = k1 | 0;
  const ks2 = (k0 ^ k1 ^ 0x1bd11bda) | 0;
  const ks2p1 = (ks2 + 1) | 0;
  const ks0p2 = (ks0 + 2) | 0;
  const ks1p3 = (ks1 + 3) | 0;
  const ks2p4 = (ks2 + 4) | 0;
  const ks0p5 = (ks0 + 5) | 0;
  const x0init = (hi + ks0) | 0;
  const x1init = (lo + ks1) | 0;
  for (let c = 0; c < len; c++) {
    let x0 = x0init;
    let x1 = (x1init + c) | 0;
    // group 1: rotations 13, 15, 26, 6
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 13) | (x1 >>> 19)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 15) | (x1 >>> 17)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 26) | (x1 >>> 6)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 6) | (x1 >>> 26)) ^ x0;
    x0 = (x0 + ks1) | 0;
    x1 = (x1 + ks2p1) | 0;
    // group 2: rotations 17, 29, 16, 24
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 17) | (x1 >>> 15)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 29) | (x1 >>> 3)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 16) | (x1 >>> 16)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 24) | (x1 >>> 8)) ^ x0;
    x0 = (x0 + ks2) | 0;
    x1 = (x1 + ks0p2) | 0;
    // group 3
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 13) | (x1 >>> 19)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 15) | (x1 >>> 17)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 26) | (x1 >>> 6)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 6) | (x1 >>> 26)) ^ x0;
    x0 = (x0 + ks0) | 0;
    x1 = (x1 + ks1p3) | 0;
    // group 4
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 17) | (x1 >>> 15)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 29) | (x1 >>> 3)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 16) | (x1 >>> 16)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 24) | (x1 >>> 8)) ^ x0;
    x0 = (x0 + ks1) | 0;
    x1 = (x1 + ks2p4) | 0;
    // group 5
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 13) | (x1 >>> 19)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 15) | (x1 >>> 17)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 26) | (x1 >>> 6)) ^ x0;
    x0 = (x0 + x1) | 0;
    x1 = ((x1 << 6) | (x1 >>> 26)) ^ x0;
    x0 = (x0 + ks2) | 0;
    x1 = (x1 + ks0p5) | 0;
    out[offset + c] = x0 ^ x1;
  }
}

// ---------------------------------------------------------------------------------------------
// normal: float32 arithmetic as JAX's XLA:CPU kernel does it
//
// JAX computes `sqrt(2) * erf_inv(u)`; XLA expands `erf_inv` (f32) into Giles' polynomial with
// `w = -log1p(-u*u)`, `log1p` into a Cephes rational (|x| < sqrt(2) - 1) or `log(1 + x)`, and
// `log` into Eigen's Cephes-based `plog_float`; LLVM contracts `a * b + c` into fused
// multiply-adds. Each step below is that float32 operation: `fr(a * b)` is the float32 product
// (a product of two float32 values is exact in double), `fr(a * b + c)` the float32 FMA (exact
// product, one double rounding of the sum, then one float32 rounding; the double rounding cannot
// change the float32 result unless the sum spans more than 53 bits), `fr(a + b)` the float32 sum.
// The result was compared with JAX 0.10.2 (jax_threefry_partitionable, XLA:CPU with FMA) for
// every one of the 2^23 possible uniform inputs: all bit-identical. JAX on other hardware (GPU,
// CPUs without FMA) rounds some steps differently and can differ by a few ulp.
//
// The WebAssembly kernel (scripts/gen-normal-wasm.mjs) does the same operations in the same
// order; keep the two in step.

const fr = Math.fround;
/** nextafter(-1, 0) in float32 = -(1 - 2^-24): the lower bound of JAX's `_normal_real` uniform. */
const NORMAL_LO = -(1 - 2 ** -24);

// The constants in the loops below are the float32 values (written out exactly, so that no
// rounding happens at run time) of these published coefficients:
//  - Giles, erfinv, w < 5:  2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
//    0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941;
//    w >= 5: -0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
//    -0.0076224613, 0.00943887047, 1.00167406, 2.83297682.
//  - XLA log1p for |t| < sqrt(2) - 1 = 0.41421356237309504880 (Cephes): numerator
//    4.5270000862445199635215E-5, 4.9854102823193375972212E-1, 6.5787325942061044846969E0,
//    2.9911919328553073277375E1, 6.0949667980987787057556E1, 5.7112963590585538103336E1,
//    2.0039553499201281259648E1; denominator 1, 1.5062909083469192043167E1,
//    8.3047565967967209469434E1, 2.2176239823732856465394E2, 3.0909872225312059774938E2,
//    2.1642788614495947685003E2, 6.0118660497603843919306E1.
//  - Eigen plog_float (Cephes logf): sqrt(1/2) = 0.707106781186547524, p0..p8 = 7.0376836292E-2,
//    -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1, -1.6668057665E-1,
//    2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1; ln 2 = 0.693359375 - 2.12194440e-4.
//  - sqrt(2) = 1.4142135381698608 in float32.

const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

// Block scratch for normalFromBitsJs: three short passes per block keep more independent work in
// flight than one long dependent chain per element (about 1.5x faster in V8); the code is
// written inline, without helper calls, for the same reason.
const BLOCK = 2048;
const blockX = new Float64Array(BLOCK);
const blockW = new Float64Array(BLOCK);

/**
 * `normalFromBitsJs(u, f, n)`: `f[i]` = the standard normal of the random bits `u[i]`, for
 * `i < n` (`u` and `f` may share their buffer). Only `u[i] >>> 9` matters: 2^23 inputs.
 */
export function normalFromBitsJs(u: Uint32Array, f: Float32Array, n: number): void {
  for (let base = 0; base < n; base += BLOCK) {
    const len = Math.min(BLOCK, n - base);
    // 1. u uniform in [lo, 1): fma((bits >>> 9) * 2^-23, 1 - lo, lo), where fround(1 - lo) = 2:
    //    the product is exact and the sum is rounded once, never below lo (no clamp needed).
    for (let j = 0; j < len; j++) {
      const x = fr(((u[base + j] as number) >>> 9) * 2.384185791015625e-7 + NORMAL_LO);
      blockX[j] = x;
      blockW[j] = fr(x * x);
    }
    // 2. w = -log1p(t) with t = -u*u, as XLA expands log1p.
    for (let j = 0; j < len; j++) {
      const t = -(blockW[j] as number);
      let lg: number;
      if (-t < 0.4142135679721832) {
        // Cephes rational: t - t^2/2 + t^3 * N(t) / D(t)
        let num = fr(0.00004527000055531971 * t + 0.4985410273075104);
        let den = fr(t + 15.062909126281738);
        num = fr(num * t + 6.578732490539551);
        den = fr(den * t + 83.04756927490234);
        num = fr(num * t + 29.91191864013672);
        den = fr(den * t + 221.7624053955078);
        num = fr(num * t + 60.949668884277344);
        den = fr(den * t + 309.0987243652344);
        num = fr(num * t + 57.11296463012695);
        den = fr(den * t + 216.427886962890625);
        num = fr(num * t + 20.039552688598633);
        den = fr(den * t + 60.11865997314453);
        const t2 = fr(t * t);
        const q = fr(fr(t * t2) * fr(num / den));
        lg = fr(t + fr(-0.5 * t2 + q)); // -0.5 * t2 is exact
      } else {
        // log(1 + t), Eigen's plog_float: frexp, Cephes polynomial, e * ln 2 in two parts
        scratchF[0] = 1 + t; // the float32 store rounds 1 + t
        const b = scratchU[0] as number;
        let e = ((b >>> 23) & 0xff) - 126;
        scratchU[0] = (b & 0x807fffff) | 0x3f000000; // mantissa in [0.5, 1)
        let x = scratchF[0] as number;
        if (x < 0.7071067690849304) {
          e -= 1;
          x = fr(fr(x - 1) + x);
        } else {
          x = fr(x - 1);
        }
        const x2 = fr(x * x);
        const x3 = fr(x2 * x);
        let y = fr(0.07037683576345444 * x - 0.11514610052108765);
        let y1 = fr(-0.12420140951871872 * x + 0.14249323308467865);
        let y2 = fr(0.2000071406364441 * x - 0.24999994039535522);
        y = fr(y * x + 0.11676998436450958);
        y1 = fr(y1 * x - 0.16668057441711426);
        y2 = fr(y2 * x + 0.3333333134651184);
        y = fr(y * x3 + y1);
        y = fr(y * x3 + y2);
        y = fr(y * x3 + fr(e * -0.00021219444170128554));
        x = fr(x - 0.5 * x2); // 0.5 * x2 is exact
        x = fr(x + y);
        lg = fr(x + e * 0.693359375); // e * 0.693359375 is exact
      }
      blockW[j] = -lg;
    }
    // 3. sqrt(2) * erfinv(u): Giles' polynomial in w, times u; the float32 store rounds the
    //    last product.
    for (let j = 0; j < len; j++) {
      const w0 = blockW[j] as number;
      let p: number;
      if (w0 < 5) {
        const w = fr(w0 - 2.5);
        p = fr(2.810226362726098e-8 * w + 3.432739390518691e-7);
        p = fr(p * w - 0.000003523387704262859);
        p = fr(p * w - 0.000004391506536194356);
        p = fr(p * w + 0.00021858086984138936);
        p = fr(p * w - 0.001253725029528141);
        p = fr(p * w - 0.004177681636065245);
        p = fr(p * w + 0.24664072692394257);
        p = fr(p * w + 1.5014094114303589);
      } else {
        const w = fr(fr(Math.sqrt(w0)) - 3);
        p = fr(-0.0002002142573473975 * w + 0.0001009505576803349);
        p = fr(p * w + 0.0013493432197719812);
        p = fr(p * w - 0.003673428436741233);
        p = fr(p * w + 0.005739507731050253);
        p = fr(p * w - 0.007622461300343275);
        p = fr(p * w + 0.00943887047469616);
        p = fr(p * w + 1.0016740560531616);
        p = fr(p * w + 2.832976818084717);
      }
      f[base + j] = 1.4142135381698608 * fr(p * (blockX[j] as number));
    }
  }
}

/**
 * `normalFromBitsWasm(u, f, n) -> boolean`: as {@link normalFromBitsJs} with the WebAssembly
 * kernel; false (and nothing written) when the kernel is not available. For tests.
 */
export function normalFromBitsWasm(u: Uint32Array, f: Float32Array, n: number): boolean {
  const k = active();
  if (k === null) return false;
  for (let base = 0; base < n; base += BIG_VALUES) {
    const len = Math.min(BIG_VALUES, n - base);
    k.u32.set(u.subarray(base, base + len));
    k.ex.normalsFromBits(len);
    f.set(k.f32.subarray(0, len), base);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// the samplers' entry points: the WebAssembly kernels where available, else the JS ones

/**
 * The length of the run of counters from `c` (a 64-bit flat index, `[hi, lo]` = `[floor(c /
 * 2^32), c mod 2^32]` as JAX's `iota_2x32_shape`) that stays within one high word, at most `max`.
 */
function runLength(c: number, left: number, max: number): number {
  return Math.min(left, TWO_32 - (c % TWO_32), max);
}

/** The JS bits of counters `start .. start + n - 1` into `out`, in runs of one high word. */
function fillBitsJs(k0: number, k1: number, n: number, out: Uint32Array, start: number): void {
  for (let at = 0; at < n; ) {
    const c = start + at;
    const len = runLength(c, n - at, TWO_32);
    fillBlocksJs(k0, k1, Math.floor(c / TWO_32), c % TWO_32, len, out, at);
    at += len;
  }
}

/**
 * `out[i] = b0 ^ b1` of `threefry2x32([k0, k1], [hi(c), lo(c)])` for the counters
 * `c = start + i`, `i < n` (`start + n <= 2^53`).
 */
export function fillBits(
  k0: number,
  k1: number,
  n: number,
  out: Uint32Array,
  start: number = 0,
): void {
  const k = active();
  if (k === null) {
    fillBitsJs(k0, k1, n, out, start);
    return;
  }
  for (let at = 0; at < n; ) {
    const c = start + at;
    const len = runLength(c, n - at, BIG_VALUES);
    k.ex.bits(k0, k1, Math.floor(c / TWO_32), c % TWO_32, len);
    out.set(len === BIG_VALUES ? k.u32 : k.u32.subarray(0, len), at);
    at += len;
  }
}

/** 2^-23: `(bits >>> 9) * 2^-23` is exactly JAX's `bitcast((bits >>> 9) | 0x3f800000) - 1`. */
const MANTISSA_UNIT = 1.1920928955078125e-7;

/** `f[i]` = the float32 uniform in [0, 1) of the bits of counter `i`, for `i < n`. */
export function fillUniform01(k0: number, k1: number, n: number, f: Float32Array): void {
  const k = active();
  if (k === null) {
    const u = new Uint32Array(f.buffer, f.byteOffset, n);
    fillBitsJs(k0, k1, n, u, 0);
    for (let i = 0; i < n; i++) f[i] = ((u[i] as number) >>> 9) * MANTISSA_UNIT;
    return;
  }
  for (let at = 0; at < n; ) {
    const len = runLength(at, n - at, BIG_VALUES);
    k.ex.uniforms(k0, k1, Math.floor(at / TWO_32), at % TWO_32, len);
    f.set(len === BIG_VALUES ? k.f32 : k.f32.subarray(0, len), at);
    at += len;
  }
}

/** `f[i]` = the standard normal of the bits of counter `i`, for `i < n`. */
export function fillNormal(k0: number, k1: number, n: number, f: Float32Array): void {
  const k = active();
  if (k === null) {
    const u = new Uint32Array(f.buffer, f.byteOffset, n);
    fillBitsJs(k0, k1, n, u, 0);
    normalFromBitsJs(u, f, n);
    return;
  }
  for (let at = 0; at < n; ) {
    const len = runLength(at, n - at, BIG_VALUES);
    k.ex.normals(k0, k1, Math.floor(at / TWO_32), at % TWO_32, len);
    f.set(len === BIG_VALUES ? k.f32 : k.f32.subarray(0, len), at);
    at += len;
  }
}
