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
 * (one upload per draw).
 */
import * as tf from '@tensorflow/tfjs-core';

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
 * The hot loop: for `c = 0 .. len-1`, hash the counter `[hi, c]` and write `b0 ^ b1` to
 * `out[offset + c]`. All 20 rounds are unrolled and done on int32 values; the typed array store
 * wraps to uint32.
 */
function fillBlocks(
  k0: number,
  k1: number,
  hi: number,
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
  for (let c = 0; c < len; c++) {
    let x0 = x0init;
    let x1 = (c + ks1) | 0;
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

/**
 * `out[i] = b0 ^ b1` of `threefry2x32(k, [hi(i), lo(i)])` for `i < n`: counters are the 64-bit
 * flat index `i` as `[floor(i / 2^32), i mod 2^32]` (JAX's `iota_2x32_shape`), so the loop runs
 * in chunks of 2^32 with a fixed high word.
 */
function fillBits(k: Key, n: number, out: Uint32Array): void {
  for (let base = 0, hi = 0; base < n; base += TWO_32, hi++) {
    fillBlocks(k[0], k[1], hi, Math.min(n - base, TWO_32), out, base);
  }
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
  const { f, u } = bitsInPlace(k, n);
  if (lo === 0 && scale === 1) {
    for (let i = 0; i < n; i++) f[i] = ((u[i] as number) >>> 9) * MANTISSA_UNIT;
  } else {
    for (let i = 0; i < n; i++) {
      // JAX (XLA:CPU) fuses `floats * (maxval - minval) + minval` into one FMA.
      const v = fmaF32(((u[i] as number) >>> 9) * MANTISSA_UNIT * scale, lo);
      f[i] = v < lo ? lo : v;
    }
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

// Block scratch for normalInto: three short passes per block keep more independent work in
// flight than one long dependent chain per element (about 1.5x faster in V8); the code is
// written inline, without helper calls, for the same reason.
const BLOCK = 2048;
const blockX = new Float64Array(BLOCK);
const blockW = new Float64Array(BLOCK);

function normalInto(k: Key, n: number): Float32Array {
  const { f, u } = bitsInPlace(k, n);
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
