/**
 * WebAssembly SIMD kernels that run on the memory of tfjs-backend-wasm itself: the module
 * (heapSimdBytes.ts, made by scripts/gen-heap-wasm.mjs, about 9 KB) imports the backend's
 * `WebAssembly.Memory`, so it reads and writes tensors where they lie (`memoryOffset` in the
 * backend's `dataIdMap`), without copies, and sees the memory's growth.
 *
 * `matVec` is the matrix-vector product for BatchMatMul / _FusedMatMul with one output column
 * (N = 1), which XNNPACK's kernel (8 output columns a tile) does at an eighth of its speed.
 * `gaussSampleFwd` / `gaussSampleBwd` are the per-element work of the Bayesian layers'
 * BlitzGaussianSample(Grad) kernels (softplus, log, the prior's terms, their float64 sums).
 *
 * On the threaded build's memory (a SharedArrayBuffer) the same code runs from a second module
 * whose memory import is shared: the kernels run on the calling (main) thread between the
 * backend's kernels, while the pool's threads wait, so nothing races, and the results are the
 * same bits as on one thread.
 *
 * `heapSimd(memory)` is undefined, and the caller keeps its other path, where WebAssembly or its
 * fixed-width SIMD is missing, or where
 * compiling or instantiating fails (e.g. under a content security policy without
 * 'wasm-unsafe-eval'). The module is compiled once, synchronously (current Chrome allows 8 MB on
 * the main thread; the older versions that allowed 4 KB refuse it, and everything takes the other
 * path there), and instantiated once per memory.
 */
import {
  HEAP_SIMD_BASE64,
  HEAP_SIMD_IMPORT_MODULE,
  HEAP_SIMD_IMPORT_NAME,
  HEAP_SIMD_SHARED_BASE64,
} from './heapSimdBytes';

/** The kernels, on one memory; every offset is a byte offset into it, a multiple of 4. */
export interface HeapSimd {
  /**
   * For `m < M`: `out[m] = min(max(sum_k a[m*K + k] * b[k] + bias_m, lo), hi)` in float32, with
   * `a` a row-major float32 `[M, K]` at `aOffset`, `b` `K` float32 values at `bOffset`, `out` `M`
   * float32 values at `outOffset` (which must not overlap `a` or `b`), and `bias_m` 0 where
   * `biasOffset` is 0, else the float32 at `biasOffset + m * biasStride` (`biasStride` in bytes,
   * default 0: one bias for every row). `lo` and `hi` as float32: `-Infinity, Infinity` for no
   * activation, `0, Infinity` for relu, `0, 6` for relu6 (a NaN sum stays NaN). Any `M >= 0`,
   * `K >= 0` (K = 0: the bias, clamped); offsets need no alignment beyond 4 bytes.
   *
   * The order of the sum of a row (the same for every row; each product `p_k` rounded to
   * float32, no fused multiply-add), as shipped (`HEAP_SIMD_ACCS = 1`; the generator documents
   * the other tunings): one f32x4 accumulator `c`, zero at first, whose lane `j` adds `p_k` for
   * `k = 4t + j` over the whole blocks of 4 in order of `t`; then `s = (c0 + c1) + (c2 + c3)`;
   * then the last `K mod 4` products one by one, in order; then the bias, then the clamp. The
   * rounding error is therefore at most about `(K / 4 + 5) * 2^-24 * (sum_k |p_k| + |bias_m|)`.
   * Every load stays inside `a`'s rows and `b` (nothing is read past their ends).
   *
   * Rows are taken 4 at a time, `floor(M / 4)` rows apart (so that each of the 4 streams of loads
   * runs through its own pages in order, which the hardware prefetcher follows: 4 adjacent rows
   * were read at half the speed), sharing the loads of `b`; the last `M mod 4` rows one at a time.
   *
   * The offsets and sizes are not checked (the call is the module's export itself): out of the
   * memory's bounds, the call throws a `WebAssembly.RuntimeError`.
   */
  matVec(
    aOffset: number,
    bOffset: number,
    outOffset: number,
    M: number,
    K: number,
    biasOffset: number,
    lo: number,
    hi: number,
    biasStride?: number,
  ): void;

  /**
   * The per-element work of `BlitzGaussianSample` (src/kernels/wasm.ts) on `n` weights and `S`
   * samples: for `i < n`, `sigma_i = softplus(rho_i)` as float32 (float32 polynomials, within
   * 1.63 float32 ulp of the float64 value, see the generator), and for `s < S`
   * `w[s n + i] = fround(mu_i + fround(sigma_i eps[s n + i]))` (bit-exact given sigma). With
   * `kind` 1 or 2, the sums, in float64, to `work` (float64 values: pairs of partial sums whose
   * total is the sum): `[0, 1]` sum_i log(sigma_i) (rho_i itself below -20); for each sample,
   * at `2 + 6s`: `[0, 1]` sum_i eps^2, `[2, 3]` sum_i (w - a)^2 (kind 1) or sum_i w^2 (kind 2),
   * `[4, 5]` sum_i softplus(c w^2 + d) (kind 2; 0 for kind 1). `kind` 0: w only.
   *
   * `work` is a scratch area of `16 + 48 S + 64 (S + 1)` bytes (8-byte aligned): the sums, then
   * the last `n mod 8` elements' copies. `w` must not overlap the inputs. Offsets unchecked.
   */
  gaussSampleFwd(
    muOffset: number,
    rhoOffset: number,
    epsOffset: number,
    wOffset: number,
    n: number,
    S: number,
    kind: number,
    a: number,
    c: number,
    d: number,
    workOffset: number,
  ): void;

  /**
   * The per-element work of `BlitzGaussianSampleGrad`: with `g_s` the float64 values at
   * `work + 8 s` (the KL's cotangents, 0 for none) and `gSum` their sum, `sigma_i`, `w` as in
   * `gaussSampleFwd`, `sg_i = sigmoid(rho_i)`, `dw'_s = dw[s n + i] (0 if dwOffset is 0) -
   * g_s dlogp(w[s n + i])` (dlogp for kind 1: `-b (w - a)`, kind 2: `2 w (b + c sigmoid(c w^2 +
   * d))`; the term is skipped where `g_s = 0`): `dmu_i = sum_s dw'_s`, `drho_i = (sum_s dw'_s
   * eps) sg_i - gSum dlog(sigma)/drho` (`sg_i / sigma_i`, 1 below rho = -20), in float64 from the
   * float32 sigma and sg, rounded once. `work`: the `S` float64 values, then (from the next
   * multiple of 16 bytes) `64 (S + 2)` bytes of scratch for the last `n mod 8` elements.
   */
  gaussSampleBwd(
    muOffset: number,
    rhoOffset: number,
    epsOffset: number,
    dwOffset: number,
    dmuOffset: number,
    drhoOffset: number,
    n: number,
    S: number,
    kind: number,
    a: number,
    b: number,
    c: number,
    d: number,
    gSum: number,
    workOffset: number,
  ): void;
  /**
   * The forward of one LSTM step's elementwise part, in float32, for `n` rows of `H` columns
   * (`hBytes = 4 H`, H a multiple of 4): from the gate pre-activations `pre` `[n, 4H]` (blocks i,
   * f, g, o) and the cell state `c0` `[n, H]`: `i, f, o = sigmoid`, `g = tanh`, `c = f c0 + i g`,
   * `h = o tanh(c)` into `ho`, `co`, and `[i, f, g, o, tanh c]` into `act` `[5, n, H]`. Sigmoid
   * from e^-|x| (Cephes' expf), tanh by Cephes' tanhf; each a few float32 ulp.
   */
  lstmCellFwd(
    preOffset: number,
    c0Offset: number,
    hOffset: number,
    cOffset: number,
    actOffset: number,
    n: number,
    hBytes: number,
  ): void;
  /**
   * The GRU step's forward, as `lstmCellFwd`: from `pre` `[n, 4H]` (blocks r, z, the input part
   * of n, `h U_n + b_hn`) and `h0` `[n, H]`: `r, z = sigmoid`, `n = tanh(pre_n + r p)`,
   * `h = n + z (h0 - n)` into `ho`, and `[r, z, n, p]` into `act` `[4, n, H]`.
   */
  gruCellFwd(
    preOffset: number,
    h0Offset: number,
    hOffset: number,
    actOffset: number,
    n: number,
    hBytes: number,
  ): void;
}

type Exports = Pick<
  HeapSimd,
  'matVec' | 'gaussSampleFwd' | 'gaussSampleBwd' | 'lstmCellFwd' | 'gruCellFwd'
>;

/** The compiled modules: [0] imports a non-shared memory, [1] a shared one. */
const compiled: [WebAssembly.Module | null | undefined, WebAssembly.Module | null | undefined] = [
  undefined,
  undefined,
];
const instances = new WeakMap<WebAssembly.Memory, HeapSimd | null>();

function decodeBase64(s: string): Uint8Array<ArrayBuffer> {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function compile(shared: boolean): WebAssembly.Module | null {
  try {
    if (typeof WebAssembly !== 'object' || typeof WebAssembly.validate !== 'function') return null;
    const bytes = decodeBase64(shared ? HEAP_SIMD_SHARED_BASE64 : HEAP_SIMD_BASE64);
    // false where fixed-width SIMD (or, for the shared variant, the threads proposal's shared
    // memory) is not supported: validation rejects the v128 instructions
    if (!WebAssembly.validate(bytes)) return null;
    return new WebAssembly.Module(bytes);
  } catch {
    return null;
  }
}

function isShared(memory: WebAssembly.Memory): boolean {
  return typeof SharedArrayBuffer === 'function' && memory.buffer instanceof SharedArrayBuffer;
}

/**
 * `heapSimd(memory)`: the kernels on `memory` (the tfjs wasm backend's `backend.wasm.asm.memory`),
 * or undefined where they cannot run there (no WebAssembly SIMD, or a failed
 * compile or instantiation). Cached per memory object.
 */
export function heapSimd(memory: WebAssembly.Memory): HeapSimd | undefined {
  const have = instances.get(memory);
  if (have !== undefined) return have ?? undefined;
  let result: HeapSimd | null = null;
  try {
    if (typeof WebAssembly === 'object' && memory instanceof WebAssembly.Memory) {
      const k = isShared(memory) ? 1 : 0;
      if (compiled[k] === undefined) compiled[k] = compile(k === 1);
      const module = compiled[k];
      if (module) {
        const instance = new WebAssembly.Instance(module, {
          [HEAP_SIMD_IMPORT_MODULE]: { [HEAP_SIMD_IMPORT_NAME]: memory },
        });
        const ex = instance.exports as unknown as Exports;
        result = {
          matVec: ex.matVec,
          gaussSampleFwd: ex.gaussSampleFwd,
          gaussSampleBwd: ex.gaussSampleBwd,
          lstmCellFwd: ex.lstmCellFwd,
          gruCellFwd: ex.gruCellFwd,
        };
      }
    }
  } catch {
    result = null;
  }
  instances.set(memory, result);
  return result ?? undefined;
}
