/**
 * JAX-compatible counter-based PRNG: threefry2x32 (20 rounds) on uint32 words, in plain
 * TypeScript, in JAX's "partitionable" mode (`jax_threefry_partitionable=True`, the default since
 * JAX 0.5).
 *
 * What matches JAX, and how:
 *
 * - `key(seed)` is `[seed >> 32, seed & 0xffffffff]` of the seed as a 64-bit two's-complement
 *   integer, i.e. `jax.random.key(seed)` **with `jax_enable_x64=True`**. JAX's default (32-bit)
 *   mode first truncates a Python int seed to int32, which gives the same key for seeds in
 *   `[0, 2^32)` but `[0, seed mod 2^32]` for negative seeds and seeds `>= 2^32`.
 * - `split(k, n)[i]` and `foldIn(k, i)` are both `threefry2x32(k, [0, i])`, so they agree.
 * - `bits(k, n)[i]` is `b0 ^ b1` where `[b0, b1] = threefry2x32(k, [hi(i), lo(i)])`, the counter
 *   being the 64-bit flat index `i`. A draw of `m` values is therefore a prefix of a draw of
 *   `n > m` values with the same key, and element `i` of a shaped draw is element `i` of the
 *   row-major flattening.
 * - `uniform`: `((bits >>> 9) | 0x3f800000) as float32 - 1`, times `maxval - minval`, plus
 *   `minval` (one fused multiply-add, as XLA compiles it), clamped below at `minval`; bit-exact.
 * - `normal`: `sqrt(2) * erfinv(u)` with `u` uniform in `[nextafter(-1, 0), 1)` and `erfinv` the
 *   float32 Giles polynomial, emulating XLA:CPU's float32 code step by step with `Math.fround`
 *   (its log1p/log expansions and FMAs included). The contract is "within 4 ulp of JAX"; against
 *   JAX 0.10.2 on x86-64 CPU it is bit-exact for all 2^23 possible uniform inputs.
 * - `bernoulli(k, shape, p)` is `uniform < p` (float32), `rademacher` is `2 * bernoulli(0.5) - 1`.
 *
 * Samplers return a `Float32Array` (the `...Array` functions) or a float32 tensor built from one
 * (one upload per draw). The bit generation and the uniform and normal transforms run as
 * WebAssembly SIMD kernels where the platform has them (normalWasm.ts), else as plain JS; the
 * two give the same bits.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fillBits as fillBitsKernel, fillNormal, fillUniform01 } from './normalWasm';

declare const keyBrand: unique symbol;

/**
 * `Key = readonly [k0: uint32, k1: uint32]` (branded)
 *
 * A PRNG key: two uint32 words, the same words as `jax.random.key_data(key)`. Keys are frozen
 * arrays; make them with {@link key}, {@link split}, {@link foldIn} or {@link wrapKey}.
 *
 * @example
 * ```ts
 * const k: Key = key(0);
 * const [kw, kb] = split(k);
 * ```
 */
export type Key = readonly [number, number] & { readonly [keyBrand]: true };

/**
 * `new KeyError(message) -> Error`
 *
 * Thrown for a bad key, seed, count, shape or sampler argument; the message names the function
 * and says what to pass.
 *
 * @example
 * ```ts
 * try { split(key(0), 0); } catch (e) { if (e instanceof KeyError) console.error(e.message); }
 * // split: expected the count n to be an integer >= 1, got the number 0
 * ```
 */
export class KeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyError';
  }
}

// ---------------------------------------------------------------------------------------------
// validation helpers

const TWO_32 = 4294967296;
const INT64_MIN = -(2n ** 63n);
const UINT64_END = 2n ** 64n;

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (x === undefined) return 'undefined';
  if (typeof x === 'number') return `the number ${String(x)}`;
  if (typeof x === 'bigint') return `the bigint ${String(x)}n`;
  if (typeof x === 'string')
    return `the string ${JSON.stringify(x.length > 40 ? x.slice(0, 40) + '...' : x)}`;
  if (typeof x === 'boolean') return `the boolean ${String(x)}`;
  if (typeof x === 'function') return 'a function';
  if (Array.isArray(x)) {
    const items = x.slice(0, 4).map((v: unknown) => (typeof v === 'number' ? String(v) : typeof v));
    return `an array of length ${x.length} [${items.join(', ')}${x.length > 4 ? ', ...' : ''}]`;
  }
  if (ArrayBuffer.isView(x))
    return `a ${x.constructor.name} (use random.wrapKey(words) for raw words)`;
  if (x instanceof tf.Tensor) return `a tf.Tensor of shape [${x.shape.join(', ')}]`;
  const name = (x as { constructor?: { name?: string } }).constructor?.name;
  return name !== undefined && name !== 'Object' ? `an instance of ${name}` : 'an object';
}

function isUint32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < TWO_32;
}

function makeKey(k0: number, k1: number): Key {
  return Object.freeze([k0 >>> 0, k1 >>> 0]) as unknown as Key;
}

function checkCount(n: unknown, where: string, min: number): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
    throw new KeyError(
      `${where}: expected the count n to be an integer >= ${min}, got ${describe(n)}`,
    );
  }
  return n;
}

function checkShape(shape: unknown, where: string): number {
  if (!Array.isArray(shape)) {
    throw new KeyError(
      `${where}: expected a shape (an array of non-negative integers, e.g. [2, 3]), got ${describe(shape)}`,
    );
  }
  let size = 1;
  for (let d = 0; d < shape.length; d++) {
    const s: unknown = shape[d];
    if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0) {
      throw new KeyError(
        `${where}: expected a shape of non-negative integers, got [${shape.map(String).join(', ')}] ` +
          `(dimension ${d} is ${String(s)}; batch dimensions written as -1 must be resolved first)`,
      );
    }
    size *= s;
  }
  if (!Number.isSafeInteger(size)) {
    throw new KeyError(`${where}: shape [${shape.join(', ')}] has more than 2^53 elements`);
  }
  return size;
}

function checkProbability(p: unknown, where: string): number {
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) {
    throw new KeyError(`${where}: expected a probability p in [0, 1], got ${describe(p)}`);
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// keys

/**
 * `key(seed: number | bigint) -> Key`
 *
 * The key for an integer seed, as `jax.random.key(seed)` / `jax.random.PRNGKey(seed)` with 64-bit
 * seeds: the seed is read as a 64-bit two's-complement integer and split into
 * `[high 32 bits, low 32 bits]`. Accepts safe integers (`Number.isSafeInteger`) and bigints in
 * `[-(2^63), 2^64)` (a bigint in `[2^63, 2^64)` is taken as the unsigned 64-bit pattern).
 *
 * Note: JAX in its default 32-bit mode truncates seeds to int32 first, so it agrees with this
 * function only for seeds in `[0, 2^32)`.
 *
 * @throws KeyError for NaN, non-integers, unsafe numbers or bigints out of range.
 * @example
 * ```ts
 * const k = key(42);           // [0, 42]
 * key(-1);                      // [0xffffffff, 0xffffffff]
 * key(2n ** 40n);              // [256, 0]
 * ```
 */
export function key(seed: number | bigint): Key {
  if (typeof seed === 'bigint') {
    if (seed < INT64_MIN || seed >= UINT64_END) {
      throw new KeyError(
        `key: expected a seed in [-(2^63), 2^64) as a bigint, got ${String(seed)}n`,
      );
    }
    const u = BigInt.asUintN(64, seed);
    return makeKey(Number(u >> 32n), Number(u & 0xffffffffn));
  }
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) {
    throw new KeyError(
      `key: expected an integer seed: a safe integer number in [-(2^53 - 1), 2^53 - 1] ` +
        `or a bigint in [-(2^63), 2^64), got ${describe(seed)}`,
    );
  }
  // Exact for safe integers: division by a power of two, floor, then ToUint32 (mod 2^32).
  return makeKey(Math.floor(seed / TWO_32) >>> 0, seed >>> 0);
}

/**
 * `isKey(x: unknown) -> x is Key`
 *
 * True when `x` is an array of exactly two uint32 integers (the shape of a key). Frozen-ness is
 * not required, so raw JAX key data such as `[0, 42]` is accepted.
 *
 * @example
 * ```ts
 * isKey(key(0));        // true
 * isKey([0, 1.5]);      // false
 * ```
 */
export function isKey(x: unknown): x is Key {
  return Array.isArray(x) && x.length === 2 && isUint32(x[0]) && isUint32(x[1]);
}

/**
 * `assertKey(x: unknown, where: string) -> Key`
 *
 * Returns `x` typed as a key, or throws a KeyError that names `where` and says how to get a key.
 *
 * @example
 * ```ts
 * const k = assertKey(ctx.key, 'Linear.apply');
 * ```
 */
export function assertKey(x: unknown, where: string): Key {
  if (!isKey(x)) {
    throw new KeyError(
      `${where}: expected a PRNG key from random.key(seed) / split / foldIn, got ${describe(x)}`,
    );
  }
  return x;
}

/**
 * `keyData(k: Key) -> Uint32Array`
 *
 * A copy of the two words of the key (as `jax.random.key_data`).
 *
 * @example
 * ```ts
 * keyData(key(1)); // Uint32Array [0, 1]
 * ```
 */
export function keyData(k: Key): Uint32Array {
  const kk = assertKey(k, 'keyData');
  return Uint32Array.of(kk[0], kk[1]);
}

/**
 * `wrapKey(words: ArrayLike<number>) -> Key`
 *
 * The key made of two given uint32 words (as `jax.random.wrap_key_data`), e.g. words saved with
 * {@link keyData} or printed by `jax.random.key_data`.
 *
 * @throws KeyError unless `words` has length 2 and both are integers in [0, 2^32).
 * @example
 * ```ts
 * const k = wrapKey(Uint32Array.of(0, 42)); // equal to key(42)
 * ```
 */
export function wrapKey(words: ArrayLike<number>): Key {
  const ok =
    words !== null &&
    typeof words === 'object' &&
    words.length === 2 &&
    isUint32(words[0]) &&
    isUint32(words[1]);
  if (!ok) {
    throw new KeyError(
      `wrapKey: expected two uint32 words (integers in [0, 2^32)), got ${describe(words)}`,
    );
  }
  return makeKey(words[0] as number, words[1] as number);
}

// ---------------------------------------------------------------------------------------------
// threefry2x32

/**
 * `threefry2x32(key: [k0, k1], counter: [c0, c1]) -> [b0, b1]`
 *
 * One block of the Threefry-2x32 hash with 20 rounds (Salmon et al. 2011, Random123), on uint32
 * words; the primitive under every other function here (JAX's `threefry2x32_p`).
 *
 * @example
 * ```ts
 * threefry2x32([0, 0], [0, 0]); // [0x6b200159, 0x99ba4efe] (Random123 known answer)
 * ```
 */
export function threefry2x32(
  key: readonly [number, number],
  counter: readonly [number, number],
): [number, number] {
  for (const [name, pair] of [
    ['key', key],
    ['counter', counter],
  ] as const) {
    if (!Array.isArray(pair) || pair.length !== 2 || !isUint32(pair[0]) || !isUint32(pair[1])) {
      throw new KeyError(
        `threefry2x32: expected the ${name} as two uint32 words, got ${describe(pair)}`,
      );
    }
  }
  const out = new Uint32Array(2);
  block(key[0], key[1], counter[0], counter[1], out, 0);
  return [out[0] as number, out[1] as number];
}

/** Threefry-2x32 rotation constants: groups 1, 3, 5 use the first four, groups 2, 4 the rest. */
const ROTATIONS = [13, 15, 26, 6, 17, 29, 16, 24] as const;

/** One threefry block (the readable form of the loop in `fillBlocks`): `out[at..at+1] = b0, b1`. */
function block(k0: number, k1: number, c0: number, c1: number, out: Uint32Array, at: number): void {
  const ks = [k0 | 0, k1 | 0, (k0 ^ k1 ^ 0x1bd11bda) | 0] as const;
  let x0 = (c0 + ks[0]) | 0;
  let x1 = (c1 + ks[1]) | 0;
  for (let g = 0; g < 5; g++) {
    for (let r = 0; r < 4; r++) {
      const s = ROTATIONS[(g & 1) * 4 + r] as number;
      x0 = (x0 + x1) | 0;
      x1 = ((x1 << s) | (x1 >>> (32 - s))) ^ x0;
    }
    x0 = (x0 + (ks[(g + 1) % 3] as number)) | 0;
    x1 = (x1 + (ks[(g + 2) % 3] as number) + g + 1) | 0;
  }
  out[at] = x0;
  out[at + 1] = x1;
}

/**
 * `out[i] = b0 ^ b1` of `threefry2x32(k, [hi(i), lo(i)])` for `i < n`: counters are the 64-bit
 * flat index `i` as `[floor(i / 2^32), i mod 2^32]` (JAX's `iota_2x32_shape`). The loop is
 * normalWasm.ts's: WebAssembly SIMD where available, else plain JS.
 */
function fillBits(k: Key, n: number, out: Uint32Array): void {
  fillBitsKernel(k[0], k[1], n, out);
}

/** The counts for which `split` returns a tuple type. */
type TupleCount = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12 | 13 | 14 | 15 | 16;
/**
 * `n` keys: a tuple when `n` is a literal from 1 to 16 (`split(k, 3)` is `[Key, Key, Key]`),
 * else `Key[]`.
 */
export type Keys<N extends number> = N extends TupleCount ? KeyTuple<N, []> : Key[];
type KeyTuple<N extends number, T extends Key[]> = T['length'] extends N
  ? T
  : KeyTuple<N, [...T, Key]>;

/**
 * `split(k: Key, n = 2) -> Key[]` (a tuple `[Key, Key, Key]` for a literal `n`, e.g. `split(k, 3)`)
 *
 * `n` new keys, as `jax.random.split(k, n)` in partitionable mode: key `i` is
 * `threefry2x32(k, [0, i])`, so `split(k, n)[i]` equals `foldIn(k, i)` and the first `m` keys do
 * not depend on `n`.
 *
 * @throws KeyError if `k` is not a key or `n` is not an integer >= 1.
 * @example
 * ```ts
 * const [k1, k2] = split(key(0));
 * const keys = split(k1, 5);
 * ```
 */
export function split(k: Key): [Key, Key];
export function split<N extends number>(k: Key, n: N): Keys<N>;
export function split(k: Key, n: number = 2): Key[] {
  const kk = assertKey(k, 'split');
  const count = checkCount(n, 'split', 1);
  const keys = new Array<Key>(count);
  const out = new Uint32Array(2);
  for (let i = 0; i < count; i++) {
    // counter [hi(i), lo(i)] of the 64-bit index i, as in fillBits
    block(kk[0], kk[1], Math.floor(i / TWO_32), i >>> 0, out, 0);
    keys[i] = makeKey(out[0] as number, out[1] as number);
  }
  return keys;
}

/**
 * `foldIn(k: Key, data: number) -> Key`
 *
 * A new key from `k` and an integer `data` in `[0, 2^32)`, as `jax.random.fold_in`:
 * `threefry2x32(k, [0, data])`. Negative data is rejected, as JAX does (it raises
 * OverflowError); to fold in a signed int32 `x`, pass `x >>> 0`.
 *
 * @throws KeyError if `k` is not a key or `data` is not an integer in [0, 2^32).
 * @example
 * ```ts
 * const child = foldIn(parentKey, 3); // the key of child 3 of a combinator
 * ```
 */
export function foldIn(k: Key, data: number): Key {
  const kk = assertKey(k, 'foldIn');
  if (!isUint32(data)) {
    const hint =
      typeof data === 'number' && Number.isInteger(data) && data < 0 && data >= -(2 ** 31)
        ? ` (for a signed int32 pass data >>> 0 = ${data >>> 0})`
        : '';
    throw new KeyError(
      `foldIn: expected data to be an integer in [0, 2^32), got ${describe(data)}${hint}`,
    );
  }
  const out = new Uint32Array(2);
  block(kk[0], kk[1], 0, data, out, 0);
  return makeKey(out[0] as number, out[1] as number);
}

// ---------------------------------------------------------------------------------------------
// samplers on typed arrays

/**
 * `bits(k: Key, n: number) -> Uint32Array`
 *
 * `n` random uint32 words, as `jax.random.bits(k, (n,), jnp.uint32)`: word `i` is `b0 ^ b1` of
 * `threefry2x32(k, [hi(i), lo(i)])`.
 *
 * @throws KeyError if `k` is not a key or `n` is not an integer >= 0.
 * @example
 * ```ts
 * const words = bits(key(0), 8);
 * ```
 */
export function bits(k: Key, n: number): Uint32Array {
  const kk = assertKey(k, 'bits');
  const count = checkCount(n, 'bits', 0);
  const out = new Uint32Array(count);
  fillBits(kk, count, out);
  return out;
}

/** Float32 storage whose buffer first receives the random bits (no second allocation). */
function bitsInPlace(k: Key, n: number): { f: Float32Array; u: Uint32Array } {
  const f = new Float32Array(n);
  const u = new Uint32Array(f.buffer, f.byteOffset, n);
  fillBits(k, n, u);
  return { f, u };
}

/** 2^-23: `(bits >>> 9) * 2^-23` is exactly JAX's `bitcast((bits >>> 9) | 0x3f800000) - 1`. */
const MANTISSA_UNIT = 1.1920928955078125e-7;

/**
 * `fround(p + c)` rounded once, for an exact double `p` (a product of two float32 values) and a
 * float32 `c`: the float32 result of the FMA. When `p + c` is not exact in double and the double
 * sum lands on a float32 midpoint, the tie is broken by the sign of the lost error (TwoSum).
 */
function fmaF32(p: number, c: number): number {
  const s = p + c;
  const r = Math.fround(s);
  if (r !== s) {
    const t = s - p;
    const err = p - (s - t) + (c - t);
    if (err !== 0) {
      const other = s + (s - r); // the other float32 neighbour, if s is a midpoint
      if (Math.fround(other) === other) {
        return err > 0 ? Math.max(r, other) : Math.min(r, other);
      }
    }
  }
  return r;
}

function uniformInto(
  k: Key,
  n: number,
  minval: number,
  maxval: number,
  where: string,
): Float32Array {
  if (typeof minval !== 'number' || typeof maxval !== 'number') {
    throw new KeyError(
      `${where}: expected numbers minval and maxval, got ${describe(minval)}, ${describe(maxval)}`,
    );
  }
  const lo = Math.fround(minval);
  const hi = Math.fround(maxval);
  const scale = Math.fround(hi - lo);
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || !Number.isFinite(scale) || !(lo <= hi)) {
    throw new KeyError(
      `${where}: expected finite float32 bounds with minval <= maxval, got minval = ${minval}, maxval = ${maxval}`,
    );
  }
  if (lo === 0 && scale === 1) {
    const f = new Float32Array(n);
    fillUniform01(k[0], k[1], n, f);
    return f;
  }
  const { f, u } = bitsInPlace(k, n);
  for (let i = 0; i < n; i++) {
    // JAX (XLA:CPU) fuses `floats * (maxval - minval) + minval` into one FMA.
    const v = fmaF32(((u[i] as number) >>> 9) * MANTISSA_UNIT * scale, lo);
    f[i] = v < lo ? lo : v;
  }
  return f;
}

/**
 * `uniformArray(k: Key, n: number, minval = 0, maxval = 1) -> Float32Array`
 *
 * `n` float32 values uniform in `[minval, maxval)`, bit for bit `jax.random.uniform(k, (n,),
 * jnp.float32, minval, maxval)`. The bounds are rounded to float32 first, as JAX does; for bounds
 * where `maxval - minval` rounds up in float32 a value can round to `maxval` itself, as in JAX.
 *
 * @throws KeyError if `k` is not a key, `n` is not an integer >= 0, or the bounds are not finite
 * with `minval <= maxval`.
 * @example
 * ```ts
 * const u = uniformArray(key(0), 1000, -1, 1);
 * ```
 */
export function uniformArray(
  k: Key,
  n: number,
  minval: number = 0,
  maxval: number = 1,
): Float32Array {
  const kk = assertKey(k, 'uniformArray');
  const count = checkCount(n, 'uniformArray', 0);
  return uniformInto(kk, count, minval, maxval, 'uniformArray');
}

// ---------------------------------------------------------------------------------------------
// normal: float32 arithmetic as JAX's XLA:CPU kernel does it (normalWasm.ts's normalFromBitsJs
// says which operations, in which order; its WebAssembly kernel does the same ones)

function normalInto(k: Key, n: number): Float32Array {
  const f = new Float32Array(n);
  fillNormal(k[0], k[1], n, f);
  return f;
}

/**
 * `normalArray(k: Key, n: number) -> Float32Array`
 *
 * `n` standard normal float32 values, `jax.random.normal(k, (n,), jnp.float32)` to within a few
 * ulp (`sqrt(2) * erfinv(u)`, `u` uniform in `(-1, 1)`).
 *
 * @throws KeyError if `k` is not a key or `n` is not an integer >= 0.
 * @example
 * ```ts
 * const eps = normalArray(foldIn(k, 0), 784 * 100);
 * ```
 */
export function normalArray(k: Key, n: number): Float32Array {
  const kk = assertKey(k, 'normalArray');
  const count = checkCount(n, 'normalArray', 0);
  return normalInto(kk, count);
}

/**
 * `normalArrayInto(k: Key, out: Float32Array) -> out`: `normalArray(k, out.length)` written into
 * `out` (e.g. a slice of a larger buffer), without allocating.
 *
 * @example
 * ```ts
 * const buf = new Float32Array(8);
 * normalArrayInto(key(0), buf.subarray(0, 4)); normalArrayInto(key(1), buf.subarray(4));
 * ```
 */
export function normalArrayInto(k: Key, out: Float32Array): Float32Array {
  const kk = assertKey(k, 'normalArrayInto');
  fillNormal(kk[0], kk[1], out.length, out);
  return out;
}

function rademacherInto(k: Key, n: number): Float32Array {
  const { f, u } = bitsInPlace(k, n);
  // JAX: 2 * (uniform < 0.5) - 1, and uniform < 0.5 exactly when the top bit is 0.
  for (let i = 0; i < n; i++) f[i] = (u[i] as number) >>> 31 === 0 ? 1 : -1;
  return f;
}

/**
 * `rademacherArray(k: Key, n: number) -> Float32Array`
 *
 * `n` values `+1` or `-1` with probability 1/2 each, as `jax.random.rademacher(k, (n,),
 * jnp.float32)` (`2 * bernoulli(k, 0.5) - 1`).
 *
 * @throws KeyError if `k` is not a key or `n` is not an integer >= 0.
 * @example
 * ```ts
 * const signs = rademacherArray(key(0), 64); // Flipout sign vectors
 * ```
 */
export function rademacherArray(k: Key, n: number): Float32Array {
  const kk = assertKey(k, 'rademacherArray');
  const count = checkCount(n, 'rademacherArray', 0);
  return rademacherInto(kk, count);
}

function bernoulliInto(k: Key, n: number, p: number): Float32Array {
  const { f, u } = bitsInPlace(k, n);
  const pf = Math.fround(p);
  for (let i = 0; i < n; i++) f[i] = ((u[i] as number) >>> 9) * MANTISSA_UNIT < pf ? 1 : 0;
  return f;
}

/**
 * `bernoulliArray(k: Key, n: number, p: number) -> Float32Array`
 *
 * `n` values `1` (with probability `p`) or `0`, as `jax.random.bernoulli(k, p, (n,))`: value `i`
 * is `uniform_i < float32(p)`.
 *
 * @throws KeyError if `k` is not a key, `n` is not an integer >= 0 or `p` is not in [0, 1].
 * @example
 * ```ts
 * const keep = bernoulliArray(key(0), 100, 0.9); // a dropout mask with keepProb 0.9
 * ```
 */
export function bernoulliArray(k: Key, n: number, p: number): Float32Array {
  const kk = assertKey(k, 'bernoulliArray');
  const count = checkCount(n, 'bernoulliArray', 0);
  return bernoulliInto(kk, count, checkProbability(p, 'bernoulliArray'));
}

// ---------------------------------------------------------------------------------------------
// samplers as tensors

function toTensor(values: Float32Array, shape: readonly number[]): tf.Tensor {
  return tf.tensor(values, shape.slice(), 'float32');
}

/**
 * `uniform(k: Key, shape: number[], minval = 0, maxval = 1) -> tf.Tensor`
 *
 * A float32 tensor of the given shape, uniform in `[minval, maxval)`; bit for bit
 * `jax.random.uniform(k, shape, jnp.float32, minval, maxval)` (row-major), uploaded once.
 *
 * @throws KeyError for a bad key, a shape that is not non-negative integers, or bad bounds.
 * @example
 * ```ts
 * const u = uniform(key(0), [2, 3], -1, 1);
 * ```
 */
export function uniform(
  k: Key,
  shape: readonly number[],
  minval: number = 0,
  maxval: number = 1,
): tf.Tensor {
  const kk = assertKey(k, 'uniform');
  const n = checkShape(shape, 'uniform');
  return toTensor(uniformInto(kk, n, minval, maxval, 'uniform'), shape);
}

/**
 * `normal(k: Key, shape: number[]) -> tf.Tensor`
 *
 * A float32 tensor of standard normal values, `jax.random.normal(k, shape, jnp.float32)` within a
 * few ulp; equal to `normalArray(k, size)` reshaped, uploaded once.
 *
 * @throws KeyError for a bad key or a shape that is not non-negative integers.
 * @example
 * ```ts
 * const eps = normal(foldIn(layerKey, 0), [784, 100]);
 * ```
 */
export function normal(k: Key, shape: readonly number[]): tf.Tensor {
  const kk = assertKey(k, 'normal');
  const n = checkShape(shape, 'normal');
  return toTensor(normalInto(kk, n), shape);
}

/**
 * `rademacher(k: Key, shape: number[]) -> tf.Tensor`
 *
 * A float32 tensor of `+1` / `-1` values, as `jax.random.rademacher(k, shape, jnp.float32)`.
 *
 * @throws KeyError for a bad key or a shape that is not non-negative integers.
 * @example
 * ```ts
 * const signIn = rademacher(k, [batch, inFeatures]);
 * ```
 */
export function rademacher(k: Key, shape: readonly number[]): tf.Tensor {
  const kk = assertKey(k, 'rademacher');
  const n = checkShape(shape, 'rademacher');
  return toTensor(rademacherInto(kk, n), shape);
}

/**
 * `bernoulli(k: Key, shape: number[], p: number) -> tf.Tensor`
 *
 * A float32 tensor of `1` (probability `p`) and `0` values, as
 * `jax.random.bernoulli(k, p, shape).astype(jnp.float32)`.
 *
 * @throws KeyError for a bad key, a bad shape, or `p` outside [0, 1].
 * @example
 * ```ts
 * const mask = bernoulli(k, [32, 128], keepProb);
 * ```
 */
export function bernoulli(k: Key, shape: readonly number[], p: number): tf.Tensor {
  const kk = assertKey(k, 'bernoulli');
  const n = checkShape(shape, 'bernoulli');
  return toTensor(bernoulliInto(kk, n, checkProbability(p, 'bernoulli')), shape);
}
