// Generates src/kernels/heapSimdBytes.ts: a small WebAssembly SIMD module that imports the
// tfjs-backend-wasm module's own memory (so it reads and writes tensors where they lie, without
// copies) and computes the matrix-vector product that BatchMatMul / _FusedMatMul need when there
// is one output column (N = 1), where XNNPACK's micro-kernel (8 output columns a tile) wastes 7/8
// of its work, and the per-element work of the Bayesian layers' BlitzGaussianSample(Grad)
// kernels (below). It is loaded by src/kernels/heapSimd.ts.
//
//   node scripts/gen-heap-wasm.mjs           write src/kernels/heapSimdBytes.ts
//   node scripts/gen-heap-wasm.mjs --check   exit 1 if that file is not what this script makes
//   node scripts/gen-heap-wasm.mjs --wat     print the module as WebAssembly text
//
// The text is assembled by scripts/gen-normal-wasm.mjs's assembler (folded instructions only).
//
// matVec(a, b, out, M, K, bias, lo, hi, biasStride), all pointers byte offsets into the memory
// (multiples of 4, no other alignment needed: wasm's v128.load/store accept any address; the
// alignment immediates are only hints):
//
//   out[m] = min(max(sum_k a[m*K + k] * b[k] + (bias ? bias[m*biasStride/4] : 0), lo), hi)
//
// for m < M, in float32.
//
// Rows go `rows` (R) at a time, sharing the loads of b; the rest (M mod R) one at a time, with
// the same operations for every row. Spread blocks (the default) take the rows i, i + Mq, ...,
// i + (R-1) Mq (Mq = floor(M / R)) for i = 0 .. Mq-1, rather than R adjacent rows: every stream of
// loads then runs through its own pages in ascending order. With adjacent rows (K*4 bytes apart,
// often in the same 4 KiB page) the hardware prefetcher lost track of the interleaved streams,
// and a matrix out of the caches was read at half the speed of one row at a time (measured on an
// AMD EPYC, Node 20: [16,1000,512] x [16,512,1] 1.6-1.8 ms with 4 adjacent rows, 0.9 ms one row
// at a time, 0.7 ms spread); in the caches, 4 rows a block are 1.4x faster than 1 (fewer loads
// of b per product).
//
// The order of the sum of a row, with A = `accs` f32x4 accumulators c_0 .. c_(A-1) (zero at
// first) and p_k = a[m*K + k] * b[k] rounded to float32 (no FMA):
//
//   - for each whole block of 4A values k = 4At .. 4At + 4A - 1, in order of t: c_h += p at
//     4At + 4h .. 4At + 4h + 3 (lane-wise), h < A;
//   - the whole blocks of 4 left (fewer than A): to c_0, c_1, ... in order;
//   - v = c_0 (A = 1), c_0 + c_1 (A = 2), (c_0 + c_1) + (c_2 + c_3) (A = 4);
//     s = (v_0 + v_1) + (v_2 + v_3);
//   - then s += p_k for each of the last K mod 4 values, in order;
//   - then s += bias, then the clamp (f32.max with lo, f32.min with hi: NaN stays NaN).
//
// Each partial sum thus adds about K / (4A) products in sequence: the rounding error is at most
// about (K / (4A) + 5) * 2^-24 * (sum_k |p_k| + |bias|). The shipped tuning is A = 1 (4 spread
// rows of 1 accumulator each were the fastest; 4 rows of 2 accumulators need more registers than
// x64 has, and were slower).
//
// gaussSampleFwd / gaussSampleBwd (see heapSimd.ts for their signatures and the layout of `work`)
// are the per-element work of src/kernels/wasm.ts's BlitzGaussianSample and its gradient, which
// keep their float64 JS loops as the reference and the fallback. Per weight (rho, mu) and sample
// (eps, dw), 8 elements an iteration as two interleaved vectors of 4 (one chain of ~100
// dependent float32 operations at a time left the processor waiting on their latencies); the
// last n mod 8 elements are copied to the scratch part of `work`, run through the same code with
// lane masks on the sums, and copied back.
//
// - sigma = softplus(rho) = max(rho, 0) + log1p(e^-|rho|) in float64 (f64x2, softplusSigma),
//   rounded once to float32: over a dense sweep of rho in [-120, 40] (8 Mi points) the float32
//   nearest the float64 value at every point, as the JS path's fround of Math.log1p/Math.exp (a
//   float32 evaluation, Cephes' expf and logf, was 1.63 ulp at worst and one ulp off for ~25% of
//   rho in [-20, 0.9]: with the scale mixture's steep KL slope that moved dmu by up to 8e-5 of its
//   scale against the cpu ops). e^-|rho| (for the sigmoid) is that float64 value rounded.
//   w = f32x4.add(mu, f32x4.mul(sigma, eps)): bit for bit the JS path's
//   fround(mu + fround(sigma * eps)) given the same sigma.
// - log sigma (the KL): Cephes' logf of the float32 sigma (rho itself below -20); the prior's
//   terms from w in float64 (kind 1: (w - a)^2; kind 2: w^2 and c w^2 + d), the mixture's
//   softplus(c w^2 + d) / sigmoid from its argument rounded to float32, taken as 0 below -87 (and
//   the whole vector skipped when no lane is above: the narrow component, c = -125000, is there
//   for most weights); subnormal operands cost ~100 cycles each (x86 microcode assists), and the
//   log1p polynomial's terms are also zeroed below e = 2^-40 for that reason. All sums in f64x2.
//   Measured against the float64 JS loops (test/kernels/gaussSample.test.ts; n 1..37 and 1e5,
//   S 1..4, rho in [-120, 40] and [-8, -3], scale mixture (0.5, 1, 0.002), (0.3, 0.01, 2) and
//   normal priors): kl within 1.2e-7 of itself, 1.5e-8 of the scale of its sums beyond one ulp.
// - the gradient: e^-|rho| once for softplus and sigmoid (float32, sigmoid ~2 ulp), the sums over
//   the samples and the KL terms in f64x2, rounded once. dmu and drho within 6e-7 and 1.6e-7 of
//   the scale of their sums (sum of |terms|) beyond one float32 ulp and beyond what w's
//   neighbouring float32 values give: with the scale mixture the KL's slope d dlogp / dw is
//   ~2.5e5 (|c|), so where sigma differs by an ulp and w = mu + sigma eps rounds to the other
//   neighbour, dmu moves by 2.5e5 * ulp(mu) (up to 8e-5 of the scale). The tfjs ops' sigma,
//   exp(logSoftplus(rho)), is itself an ulp or two off at times: the cpu-vs-wasm tests meet such
//   weights as rarely as they did with the JS path.
// - speed (AMD EPYC, Node 20, a busy 2-core machine; scale mixture (0.5, 1, 0.002), S = 3, mu in
//   +-0.1, rho in [-7, -6]), forward / backward: [3, 256, 120] 0.94 / 0.74 ms (the JS loops 2.9 /
//   2.5 ms; sigma in float32 was 0.77 / 0.61 ms), [3, 13, 512] 0.20 / 0.16 ms (0.59 / 0.53 ms).
//   Without the two interleaved vectors, the zeroing below -87 and the 2^-40 cut in log1p (float32
//   sigma): 1.5 / 1.3 ms on the first.
import { Buffer } from 'node:buffer';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assemble } from './gen-normal-wasm.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const target = path.join(root, 'src/kernels/heapSimdBytes.ts');

/** The memory import's module and field names (heapSimd.ts passes the Memory under them). */
const IMPORT_MODULE = 'env';
const IMPORT_NAME = 'memory';

/**
 * Tuning: `rows`, the rows of a block (1, 2, 4); `accs`, the f32x4 accumulators per row (1, 2, 4);
 * `spread`, blocks of rows Mq apart rather than adjacent ones. The defaults are what
 * heapSimdBytes.ts holds.
 */
export const DEFAULTS = { rows: 4, accs: 1, spread: true };

const get = (n) => `(local.get $${n})`;
const set = (n, e) => `(local.set $${n} ${e})`;
const op = (name, ...args) => `(${name} ${args.join(' ')})`;
const i32 = (v) => `(i32.const ${v})`;
const add = (x, y) => op('i32.add', x, y);
const ZERO = '(v128.const i32x4 0 0 0 0)';

/**
 * The code for one block of R rows, the first at $r0, the others $kb bytes (adjacent rows) or $sb
 * bytes (spread: Mq rows) after each other, A accumulators a row; results to $o + 4r (spread:
 * $o + r * $ob), bias at $bp + r * $bstride (spread: $bp + r * $bsb). $q0 .. point into the rows,
 * $qb into b, all advanced together; each $q ends at the start of its row's next row.
 */
function rowBlock(R, A, spread, tag) {
  const rowStep = spread ? 'sb' : 'kb';
  const rows = [...Array(R).keys()];
  const accs = [...Array(A).keys()];
  const acc = (r, h) => `c${r}${h}`;
  const ld = (ptr, h) => `(v128.load${h ? ` offset=${16 * h}` : ''} ${get(ptr)})`;
  const fma = (r, h, from) =>
    set(
      acc(r, h),
      op('f32x4.add', get(acc(r, h)), op('f32x4.mul', ld(`q${r}`, from), get(`bv${from}`))),
    );
  const advance = (bytes) =>
    [...rows.map((r) => `q${r}`), 'qb'].map((q) => set(q, add(get(q), i32(bytes))));
  /** v = c0 (A = 1), c0 + c1 (A = 2), (c0 + c1) + (c2 + c3) (A = 4) */
  const combine = (r, hs) =>
    hs.length === 1
      ? get(acc(r, hs[0]))
      : op(
          'f32x4.add',
          combine(r, hs.slice(0, hs.length / 2)),
          combine(r, hs.slice(hs.length / 2)),
        );
  return [
    set('q0', get('r0')),
    ...rows.slice(1).map((r) => set(`q${r}`, add(get(`q${r - 1}`), get(rowStep)))),
    set('qb', get('b')),
    ...rows.flatMap((r) => accs.map((h) => set(acc(r, h), ZERO))),
    // whole blocks of 4A values
    `(block $B${tag}x (br_if $B${tag}x (i32.eqz ${get('kA')}))
  (loop $B${tag}
  ${accs.map((h) => set(`bv${h}`, ld('qb', h))).join('\n  ')}
  ${rows.flatMap((r) => accs.map((h) => fma(r, h, h))).join('\n  ')}
  ${advance(16 * A).join('\n  ')}
  (br_if $B${tag} (i32.ne ${get('qb')} ${get('bA')}))))`,
    // up to A - 1 blocks of 4 left: to c0, c1, ...
    ...accs.slice(0, A - 1).map(
      (h) => `(if (i32.ne ${get('qb')} ${get('b4')}) (then
  ${set('bv0', ld('qb', 0))}
  ${rows.map((r) => fma(r, h, 0)).join('\n  ')}
  ${advance(16).join('\n  ')}))`,
    ),
    // the horizontal sums: (v0 + v1) + (v2 + v3)
    ...rows.flatMap((r) => {
      const lane = (j) => `(f32x4.extract_lane ${j} ${get('v')})`;
      return [
        set('v', combine(r, accs)),
        set(
          `s${r}`,
          op('f32.add', op('f32.add', lane(0), lane(1)), op('f32.add', lane(2), lane(3))),
        ),
      ];
    }),
    // the last K mod 4 values, one at a time
    `(block $T${tag}x (br_if $T${tag}x (i32.eqz (i32.sub ${get('qb')} ${get('bK')})))
  (loop $T${tag}
  ${set('bs', `(f32.load ${get('qb')})`)}
  ${rows
    .map((r) =>
      set(
        `s${r}`,
        op('f32.add', get(`s${r}`), op('f32.mul', `(f32.load ${get(`q${r}`)})`, get('bs'))),
      ),
    )
    .join('\n  ')}
  ${advance(4).join('\n  ')}
  (br_if $T${tag} (i32.ne ${get('qb')} ${get('bK')}))))`,
    // bias
    `(if ${get('bias')} (then
  ${rows
    .map((r) => {
      const step = spread ? 'bsb' : 'bstride';
      const at =
        r === 0
          ? get('bp')
          : add(get('bp'), r === 1 ? get(step) : op('i32.mul', get(step), i32(r)));
      return set(`s${r}`, op('f32.add', get(`s${r}`), `(f32.load ${at})`));
    })
    .join('\n  ')}))`,
    // clamp and store
    ...rows.map(
      (r) =>
        `(f32.store${r && !spread ? ` offset=${4 * r}` : ''} ${
          r && spread
            ? add(get('o'), r === 1 ? get('ob') : op('i32.mul', get('ob'), i32(r)))
            : get('o')
        } ${op('f32.min', op('f32.max', get(`s${r}`), get('lo')), get('hi'))})`,
    ),
  ];
}

function matVecFunc(R, A, spread) {
  if (![1, 2, 4].includes(R) || ![1, 2, 4].includes(A)) throw new Error('rows, accs: 1, 2 or 4');
  const vlocals = ['v'];
  for (let h = 0; h < A; h++) vlocals.push(`bv${h}`);
  for (let r = 0; r < R; r++) for (let h = 0; h < A; h++) vlocals.push(`c${r}${h}`);
  const ilocals = ['kb', 'kA', 'bA', 'b4', 'bK', 'qb', 'o', 'oend', 'bp', 'r0'];
  if (spread && R > 1) ilocals.push('sb', 'ob', 'bsb');
  for (let r = 0; r < R; r++) ilocals.push(`q${r}`);
  const flocals = ['bs'];
  for (let r = 0; r < R; r++) flocals.push(`s${r}`);
  const locals = [
    ...ilocals.map((n) => `(local $${n} i32)`),
    ...flocals.map((n) => `(local $${n} f32)`),
    ...vlocals.map((n) => `(local $${n} v128)`),
  ].join(' ');
  const mul = (x, c) => (c === 1 ? x : op('i32.mul', x, i32(c)));
  // pointer steps after a block of `rows` rows (the last row pointer is at the next row); in a
  // spread block, the rows are $sb bytes apart and only move on by one row
  const next = (rows, sp) => [
    set('o', add(get('o'), i32(sp ? 4 : 4 * rows))),
    set('r0', get(sp ? 'q0' : `q${rows - 1}`)),
    set('bp', add(get('bp'), mul(get('bstride'), sp ? 1 : rows))),
  ];
  const loopOver = (
    tag,
    count,
    rows,
    sp,
    after = [],
  ) => `(block $${tag}x (br_if $${tag}x (i32.eqz ${count}))
  ${set('oend', add(get('o'), op('i32.shl', count, i32(sp ? 2 : 2 + Math.log2(rows)))))}
  (loop $${tag}
  ${[...rowBlock(rows, A, sp, tag), ...next(rows, sp)].join('\n  ')}
  (br_if $${tag} (i32.ne ${get('o')} ${get('oend')})))
  ${after.join('\n  ')})`;
  const mq = op('i32.shr_u', get('m'), i32(Math.log2(R)));
  const sp = spread && R > 1;
  const spreadSetup = sp
    ? [
        set('sb', op('i32.mul', mq, get('kb'))),
        set('ob', op('i32.shl', mq, i32(2))),
        set('bsb', op('i32.mul', mq, get('bstride'))),
      ]
    : [];
  // after the spread blocks (rows i, i + Mq, ... for i < Mq, Mq = floor(M / R)), on to row R Mq
  const spreadAfter = sp
    ? [
        set('r0', get(`q${R - 1}`)),
        set('o', add(get('o'), mul(get('ob'), R - 1))),
        set('bp', add(get('bp'), mul(get('bsb'), R - 1))),
      ]
    : [];
  return `(func (export "matVec") (param $a i32) (param $b i32) (param $out i32) (param $m i32) (param $k i32) (param $bias i32) (param $lo f32) (param $hi f32) (param $bstride i32) ${locals}
  ${set('kb', op('i32.shl', get('k'), i32(2)))}
  ${set('kA', op('i32.shl', op('i32.and', get('k'), i32(-4 * A)), i32(2)))}
  ${set('bA', add(get('b'), get('kA')))}
  ${set('b4', add(get('b'), op('i32.shl', op('i32.and', get('k'), i32(-4)), i32(2))))}
  ${set('bK', add(get('b'), get('kb')))}
  ${set('o', get('out'))}
  ${set('r0', get('a'))}
  ${set('bp', get('bias'))}
  ${spreadSetup.join('\n  ')}
  ${loopOver('R', mq, R, sp, spreadAfter)}
  ${R > 1 ? loopOver('S', op('i32.and', get('m'), i32(R - 1)), 1, false) : ''})`;
}

// ---------------------------------------------------------------------------------------------
// gaussSampleFwd / gaussSampleBwd: the per-element work of BlitzGaussianSample(Grad)

/** A function's locals (declared on first use) and its splatted constants (set in the prologue). */
class Scope {
  constructor(params) {
    this.params = new Set(params);
    // the tail's lane masks, declared first: renameB renames only declared v128 locals
    this.locals = new Map(['mask', 'mlo', 'mhi'].map((m) => [m, 'v128']));
    this.consts = new Map();
  }
  /** `(local.set $name e)`, declaring `$name` (a v128 unless `type` says otherwise). */
  set(name, e, type = 'v128') {
    if (!this.params.has(name) && !this.locals.has(name)) this.locals.set(name, type);
    return set(name, e);
  }
  ref(shape, v) {
    if (shape === 'f32x4' && Math.fround(v) !== v) throw new Error(`${v} is not a float32 value`);
    const k = `${shape}:${v}`;
    let name = this.consts.get(k);
    if (name === undefined) {
      name = `k${this.consts.size}`;
      this.consts.set(k, name);
    }
    return get(name);
  }
  /** f32x4 constant (rounded to float32 here: the value is the float32 nearest `v`). */
  f(v) {
    return this.ref('f32x4', Math.fround(v));
  }
  i(v) {
    return this.ref('i32x4', v | 0);
  }
  /** f64x2 constant. */
  d(v) {
    return this.ref('f64x2', v);
  }
  decls() {
    return [
      ...[...this.locals].map(([n, t]) => `(local $${n} ${t})`),
      ...[...this.consts.values()].map((n) => `(local $${n} v128)`),
    ].join(' ');
  }
  /**
   * The constants, each or-ed with a zero that the compiler cannot see through (the sign bit of
   * the element count `$n`, which is below 2^30): V8 otherwise rebuilds a splatted constant at
   * every use (a move, a vmovd and a broadcast), rather than keeping it in a register or a stack
   * slot, which cost the loops here about a third of their time.
   */
  prologue() {
    this.locals.set('kz', 'v128');
    return [
      set('kz', '(i32x4.splat (i32.shr_u (local.get $n) (i32.const 31)))'),
      ...[...this.consts].map(([k, n]) => {
        const [shape, v] = k.split(':');
        const scalar = { i32x4: 'i32', f32x4: 'f32', f64x2: 'f64' }[shape];
        return set(n, op('v128.or', `(${shape}.splat (${scalar}.const ${v}))`, get('kz')));
      }),
    ].join('\n  ');
  }
}

const f4 = (name, ...args) => op(`f32x4.${name}`, ...args);
const d2 = (name, ...args) => op(`f64x2.${name}`, ...args);
/** Lanes 2, 3 of a v128 moved to lanes 0, 1. */
const high = (v) => op('i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7', v, v);
const lo64 = (v) => op('f64x2.promote_low_f32x4', v);
const hi64 = (v) => op('f64x2.promote_low_f32x4', high(v));
/** Two f64x2 values rounded to float32 into one f32x4 (lanes 0, 1 from `a`, 2, 3 from `b`). */
const join32 = (a, b) =>
  op(
    'i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23',
    op('f32x4.demote_f64x2_zero', a),
    op('f32x4.demote_f64x2_zero', b),
  );
const horner = (K, x, cs) =>
  cs.slice(1).reduce((acc, c) => f4('add', f4('mul', acc, get(x)), K.f(c)), K.f(cs[0]));

// Cephes' expf and logf (S. L. Moshier), in float32 arithmetic.
const LOG2E = Math.LOG2E;
const LN2_HI = 0.693359375;
const LN2_LO = -2.1219444e-4;
const EXP_P = [
  1.98756915e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
  5.0000001201e-1,
];
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1,
  -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
];
/** Below this, e^x is 0 in float32 (it is below 2^-150, half the smallest subnormal). */
const EXP_FLOOR = -104;
/**
 * The prior's terms take e^x as 0 below this (e^-87 = 1.6e-38, the smallest normal float32 is
 * 1.2e-38): their sums are of order 1 a term, and subnormal operands or results cost ~100 cycles
 * each on x86 (microcode assists), where the scale mixture's narrow component lies for most w.
 */
const PRIOR_FLOOR = -87;
/** 1.5 2^23: x + MAGIC rounds x (|x| < 2^22) to an integer, which is in the low mantissa bits. */
const MAGIC = 12582912;

/**
 * `$out = e^x` for x <= 0 (and NaN), x a local: x clamped to `floor`, t = x log2 e rounded to an
 * integer (by adding MAGIC), r = x - t ln2 (ln2 in two parts), e^r by Cephes' polynomial, times
 * 2^t: with `floor` EXP_FLOOR as two powers of two (each a normal float32, down to 2^-151: the one
 * rounding to a subnormal result is the last); with PRIOR_FLOOR as one, and 0 where x < floor.
 */
function expNeg(K, out, x, floor = EXP_FLOOR) {
  const scale = (n) => op('i32x4.add', op('i32x4.shl', n, i32(23)), K.i(127 << 23));
  return [
    K.set('xc', f4('pmax', get(x), K.f(floor))),
    K.set('xy', f4('add', f4('mul', get('xc'), K.f(LOG2E)), K.f(MAGIC))),
    K.set('xt', f4('sub', get('xy'), K.f(MAGIC))),
    K.set(
      'xr',
      f4(
        'sub',
        f4('sub', get('xc'), f4('mul', get('xt'), K.f(LN2_HI))),
        f4('mul', get('xt'), K.f(LN2_LO)),
      ),
    ),
    K.set(
      'xp',
      f4(
        'add',
        f4('add', f4('mul', horner(K, 'xr', EXP_P), f4('mul', get('xr'), get('xr'))), get('xr')),
        K.f(1),
      ),
    ),
    ...(floor === EXP_FLOOR
      ? [
          K.set('xn', op('i32x4.sub', get('xy'), K.i(0x4b400000))),
          K.set('xn1', op('i32x4.shr_s', get('xn'), i32(1))),
          K.set(
            out,
            f4(
              'mul',
              f4('mul', get('xp'), scale(get('xn1'))),
              scale(op('i32x4.sub', get('xn'), get('xn1'))),
            ),
          ),
        ]
      : [
          K.set(
            out,
            op('v128.and', f4('mul', get('xp'), scale(get('xy'))), f4('ge', get(x), K.f(floor))),
          ),
        ]),
  ];
}

/** Cephes' logf core: `$out = k ln2 + log(1 + f)`, f in [sqrt(1/2) - 1, sqrt(2) - 1], k float. */
function logCore(K, out, f, k, fp = f) {
  return [
    K.set('lz', f4('mul', get(fp), get(fp))),
    K.set(
      'ly',
      f4(
        'add',
        f4('mul', f4('mul', get(fp), get('lz')), horner(K, fp, LOG_P)),
        f4('mul', get(k), K.f(LN2_LO)),
      ),
    ),
    K.set('ly', f4('sub', get('ly'), f4('mul', get('lz'), K.f(0.5)))),
    K.set(out, f4('add', f4('add', get(f), get('ly')), f4('mul', get(k), K.f(LN2_HI)))),
  ];
}

/** `$out = log(1 + e)` for e in [0, 1]: f = e, or (e - 1) / 2 with k = 1 above sqrt(2) - 1. */
function log1p01(K, out, e) {
  return [
    K.set('lb', f4('gt', get(e), K.f(Math.SQRT2 - 1))),
    K.set(
      'lf',
      op('v128.bitselect', f4('mul', f4('sub', get(e), K.f(1)), K.f(0.5)), get(e), get('lb')),
    ),
    K.set('lk', op('v128.and', get('lb'), K.f(1))),
    // the polynomial's terms on 0 below e = 2^-40 (log(1 + e) = e in float32 there): e^2, e^3
    // would be subnormal below 2^-63 and 2^-42, and slow
    K.set('lp', op('v128.and', get('lf'), f4('gt', get(e), K.f(2 ** -40)))),
    ...logCore(K, out, 'lf', 'lk', 'lp'),
  ];
}

/** `$out = log(x)` for normal positive float32 x: x = m 2^k, m in [sqrt(1/2), sqrt(2)). */
function logPos(K, out, x) {
  return [
    K.set('lm', op('v128.or', op('v128.and', get(x), K.i(0x007fffff)), K.i(0x3f800000))),
    K.set('lb', f4('gt', get('lm'), K.f(Math.SQRT2))),
    K.set(
      'lf',
      f4('sub', op('v128.bitselect', f4('mul', get('lm'), K.f(0.5)), get('lm'), get('lb')), K.f(1)),
    ),
    K.set(
      'lk',
      op(
        'f32x4.convert_i32x4_s',
        op('i32x4.sub', op('i32x4.sub', op('i32x4.shr_u', get(x), i32(23)), K.i(127)), get('lb')),
      ),
    ),
    ...logCore(K, out, 'lf', 'lk'),
  ];
}

/**
 * `$sp = softplus(x) = max(x, 0) + log(1 + e^-|x|)`, leaving `$e = e^-|x|` (for a sigmoid).
 */
function softplus(K, sp, e, x, floor = EXP_FLOOR) {
  return [
    K.set('nx', op('v128.or', get(x), K.i(0x80000000 | 0))),
    ...expNeg(K, e, 'nx', floor),
    ...log1p01(K, 'l1', e),
    K.set(sp, f4('add', f4('pmax', get(x), K.f(0)), get('l1'))),
  ];
}

// e^x and log1p in float64 for sigma = softplus(rho), rounded once to float32.
const LN2_HI64 = 6.9314718036912381649e-1; // fdlibm's ln2 in two parts (the first has 32 bits)
const LN2_LO64 = 1.90821492927058770002e-10;
/** 1/k! for k = 11 down to 0: e^r for |r| <= ln2 / 2 within 7e-15 (the next term). */
const EXP_TAYLOR = Array.from({ length: 12 }, (_, j) => {
  let f = 1;
  for (let k = 2; k <= 11 - j; k++) f *= k;
  return 1 / f;
});
/** 1 / (2k + 1) for k = 7 down to 0: atanh(f) / f = sum f^2k / (2k + 1), |f| <= 3 - 2 sqrt 2. */
const ATANH_SERIES = Array.from({ length: 8 }, (_, j) => 1 / (2 * (7 - j) + 1));
const hornerD = (K, x, cs) =>
  cs.slice(1).reduce((acc, c) => d2('add', d2('mul', acc, get(x)), K.d(c)), K.d(cs[0]));

/**
 * `$sp = softplus(x)` rounded once to float32 from a float64 evaluation, and `$e = e^-|x|`
 * (float32, for a sigmoid), x a float32 local: per half (2 lanes), in f64x2, y = max(-|x|, -104)
 * (below, e^y and softplus round to 0 in float32), t = nearest(y log2 e), r = y - t ln2 (ln2 in
 * fdlibm's two parts), e^y = 2^t * sum_k r^k / k! (k <= 11); then log(1 + e) = k ln2 + 2 atanh(f)
 * with f = e / (e + 2) (k = 0) or, above sqrt 2 - 1, f = (e - 1) / (e + 3) (k = 1: (1 + e) / 2),
 * |f| <= 0.1716, the series to f^15 (the next term is 1e-14 of the sum); sp = max(x, 0) +
 * log(1 + e). The float64 value is within ~1e-14 of softplus, so the float32 rounding is exact
 * but where softplus lies within that of a midpoint between float32 values.
 */
function softplusSigma(K, sp, e, x) {
  const half = (h, xv) => {
    const v = (n) => `${n}${h}`;
    return [
      K.set(v('sx'), xv),
      K.set(v('sy'), d2('pmax', d2('neg', d2('abs', get(v('sx')))), K.d(-104))),
      K.set(v('st'), d2('nearest', d2('mul', get(v('sy')), K.d(Math.LOG2E)))),
      K.set(
        v('sr'),
        d2(
          'sub',
          d2('sub', get(v('sy')), d2('mul', get(v('st')), K.d(LN2_HI64))),
          d2('mul', get(v('st')), K.d(LN2_LO64)),
        ),
      ),
      K.set(
        v('se'),
        d2(
          'mul',
          hornerD(K, v('sr'), EXP_TAYLOR),
          op(
            'i64x2.shl',
            op(
              'i64x2.add',
              op('i64x2.extend_low_i32x4_s', op('i32x4.trunc_sat_f64x2_s_zero', get(v('st')))),
              K.i(1023),
            ),
            i32(52),
          ),
        ),
      ),
      K.set(v('sb'), d2('gt', get(v('se')), K.d(Math.SQRT2 - 1))),
      K.set(
        v('sf'),
        d2(
          'div',
          op('v128.bitselect', d2('sub', get(v('se')), K.d(1)), get(v('se')), get(v('sb'))),
          d2('add', get(v('se')), op('v128.bitselect', K.d(3), K.d(2), get(v('sb')))),
        ),
      ),
      K.set(v('sz'), d2('mul', get(v('sf')), get(v('sf')))),
      K.set(
        v('sl'),
        d2(
          'add',
          d2('mul', d2('add', get(v('sf')), get(v('sf'))), hornerD(K, v('sz'), ATANH_SERIES)),
          op('v128.and', get(v('sb')), K.d(Math.LN2)),
        ),
      ),
      K.set(v('sl'), d2('add', d2('pmax', get(v('sx')), K.d(0)), get(v('sl')))),
    ];
  };
  return [
    ...half('L', lo64(get(x))),
    ...half('H', hi64(get(x))),
    K.set(sp, join32(get('slL'), get('slH'))),
    K.set(e, join32(get('seL'), get('seH'))),
  ];
}

/** `$out = 1 / (1 + e^-x)` from `$e = e^-|x|`. */
const sigmoid = (K, out, x, e) =>
  K.set(
    out,
    f4(
      'div',
      op('v128.bitselect', K.f(1), get(e), f4('ge', get(x), K.f(0))),
      f4('add', get(e), K.f(1)),
    ),
  );

const addTo = (K, at, off, e) =>
  `(v128.store offset=${off} ${get(at)} ${d2('add', `(v128.load offset=${off} ${get(at)})`, e)})`;

const ALL = '(v128.const i32x4 -1 -1 -1 -1)';
const LOG_SIGMA_TAIL = -20;

/**
 * The loops work on two vectors of 4 elements at a time, A at the pointers and B 16 bytes on: the
 * statements for A are written once, with `offset=@` in their element loads and stores; B's are
 * the same text with its v128 locals renamed (`$x` -> `$x_b`, but for the constants and
 * `SHARED`) and offset 16, and the two lists are interleaved. Each vector is a chain of ~100
 * dependent float32 operations (exp, log1p, log); two independent chains side by side keep the
 * processor busy (one chain at a time waited on each step's latency: 1.6x slower).
 */
const SHARED = new Set(['ka', 'kb', 'knb', 'kc', 'kd', 'kgs', 'kz', 'sls']);
function renameB(K, text) {
  return text
    .replace(/\$([A-Za-z_]\w*)/g, (m, name) => {
      if (K.locals.get(name) !== 'v128' || SHARED.has(name) || /^k\d+$/.test(name)) return m;
      K.locals.set(`${name}_b`, 'v128');
      return `$${name}_b`;
    })
    .replace(/offset=@/g, 'offset=16');
}
const renameA = (text) => text.replace(/offset=@/g, 'offset=0');
/** The statements for A and B, interleaved. */
function both(K, list) {
  const a = list.map(renameA);
  const b = list.map((s) => renameB(K, s));
  return a.flatMap((s, j) => [s, b[j]]);
}
/** An expression for A plus the same for B (f64x2). */
const pair = (K, e) => d2('add', renameA(e), renameB(K, e));
/** An expression for A or the same for B (v128). */
const either = (K, e) => op('v128.or', renameA(e), renameB(K, e));
const block = (list) => list.join('\n  ');

/**
 * The loop over the blocks of 8 elements at byte offsets `$i` (pointers `ptrs` advanced by 32
 * each), then the tail (n mod 8 elements): `tailIn` copies the inputs' last values to the scratch
 * area `$scr` (zeroed first: `scrBytes`), points `ptrs` there and sets `$st` (the samples' stride)
 * to 32 and `$mask`, `$mask_b` (and `$mlo`, `$mhi`, their f64 halves) to the tail's lanes; `body`
 * runs once more, and `tailOut` copies the outputs back.
 */
function vectorLoop(K, ptrs, body, scrBytes, tailIn, tailOut) {
  const masks = ['mask', 'mlo', 'mhi', 'mask_b', 'mlo_b', 'mhi_b'];
  const lanes = (from) =>
    op(
      'i32x4.gt_s',
      op('i32x4.splat', op('i32.shr_u', get('tb'), i32(2))),
      `(v128.const i32x4 ${from} ${from + 1} ${from + 2} ${from + 3})`,
    );
  return [
    K.set('nb', op('i32.shl', get('n'), i32(2)), 'i32'),
    K.set('n8b', op('i32.and', get('nb'), i32(-32)), 'i32'),
    K.set('tb', op('i32.sub', get('nb'), get('n8b')), 'i32'),
    K.set('st', get('nb'), 'i32'),
    K.set('i', i32(0), 'i32'),
    ...masks.map((m) => K.set(m, ALL)),
    `(block $done (loop $L
  (if (i32.eq ${get('i')} ${get('n8b')}) (then
  (br_if $done (i32.eqz ${get('tb')}))
  (memory.fill ${get('scr')} (i32.const 0) ${scrBytes})
  ${block(tailIn)}
  ${set('st', i32(32))}
  ${set('i', i32(-1))}
  ${set('mask', lanes(0))}
  ${set('mask_b', lanes(4))}
  ${['', '_b']
    .flatMap((v) => [
      set(`mlo${v}`, op('i64x2.extend_low_i32x4_s', get(`mask${v}`))),
      set(`mhi${v}`, op('i64x2.extend_high_i32x4_s', get(`mask${v}`))),
    ])
    .join('\n  ')}))
  ${block(body)}
  (if (i32.eq ${get('i')} (i32.const -1)) (then
  ${block(tailOut)}
  (br $done)))
  ${[...ptrs, 'i'].map((p) => set(p, add(get(p), i32(32)))).join('\n  ')}
  (br $L)))`,
  ];
}

/** A loop over the samples, `$js` from 0 to `$s` - 1 (none if `$s` is 0). */
const sampleLoop = (K, tag, init, body, step) => [
  K.set('js', i32(0), 'i32'),
  ...init,
  `(block $${tag}x (br_if $${tag}x (i32.eqz ${get('s')}))
  (loop $${tag}
  ${block(body)}
  ${block(step)}
  ${set('js', add(get('js'), i32(1)))}
  (br_if $${tag} (i32.ne ${get('js')} ${get('s')}))))`,
];

/** memory.copy of `$tb` bytes for each sample (`$js`), source and destination strides given. */
const copySamples = (K, tag, dst, dstStride, src, srcStride) =>
  sampleLoop(
    K,
    tag,
    [K.set('cd', dst, 'i32'), K.set('cs', src, 'i32')],
    [`(memory.copy ${get('cd')} ${get('cs')} ${get('tb')})`],
    [set('cd', add(get('cd'), dstStride)), set('cs', add(get('cs'), srcStride))],
  );

const ld = (p) => `(v128.load offset=@ ${get(p)})`;
const st = (p, v) => `(v128.store offset=@ ${get(p)} ${v})`;
const f64Sig = (params, f64) =>
  params.map((p) => `(param $${p} ${f64.includes(p) ? 'f64' : 'i32'})`).join(' ');
/** Copies the tail's `$tb` bytes of `src` to `dst`. */
const copyTail = (dst, src) => `(memory.copy ${dst} ${add(get(src), get('n8b'))} ${get('tb')})`;

function gaussFwdFunc() {
  const params = ['mu', 'rho', 'eps', 'w', 'n', 's', 'kind', 'a', 'c', 'd', 'work'];
  const K = new Scope(params);
  const ptrs = ['pr', 'pm', 'pe', 'pw'];
  // log sigma for the KL: rho itself below the tail
  const logSigma = [
    ...logPos(K, 'lg', 'sg'),
    K.set(
      'lg',
      op(
        'v128.and',
        op('v128.bitselect', get('r'), get('lg'), f4('lt', get('r'), K.f(LOG_SIGMA_TAIL))),
        get('mask'),
      ),
    ),
  ];
  const sample = [
    K.set('ep', ld('qe')),
    K.set('wv', f4('add', get('m'), f4('mul', get('sg'), get('ep')))),
    st('qw', get('wv')),
  ];
  const halves = [
    K.set('em', op('v128.and', get('ep'), get('mask'))),
    K.set('el', lo64(get('em'))),
    K.set('eh', hi64(get('em'))),
    K.set('wl', lo64(get('wv'))),
    K.set('wh', hi64(get('wv'))),
  ];
  const sq = (x, y) => d2('add', d2('mul', get(x), get(x)), d2('mul', get(y), get(y)));
  const normal = [
    K.set('zl', op('v128.and', d2('sub', get('wl'), get('ka')), get('mlo'))),
    K.set('zh', op('v128.and', d2('sub', get('wh'), get('ka')), get('mhi'))),
  ];
  const mixture = [
    K.set('zl', d2('mul', get('wl'), get('wl'))),
    K.set('zh', d2('mul', get('wh'), get('wh'))),
    K.set(
      'x',
      join32(
        d2('add', d2('mul', get('kc'), get('zl')), get('kd')),
        d2('add', d2('mul', get('kc'), get('zh')), get('kd')),
      ),
    ),
    K.set('zl', op('v128.and', get('zl'), get('mlo'))),
    K.set('zh', op('v128.and', get('zh'), get('mhi'))),
  ];
  const mixSoftplus = [
    ...softplus(K, 'p', 'pe2', 'x', PRIOR_FLOOR),
    K.set('p', op('v128.and', get('p'), get('mask'))),
  ];
  const body = [
    ...both(K, [K.set('r', ld('pr')), ...softplusSigma(K, 'sg', 'e', 'r')]),
    `(if ${get('kind')} (then
  ${block(both(K, logSigma))}
  ${K.set('sls', d2('add', get('sls'), pair(K, d2('add', lo64(get('lg')), hi64(get('lg'))))))}))`,
    ...both(K, [K.set('m', ld('pm'))]),
    ...sampleLoop(
      K,
      'S',
      [
        K.set('qe', get('pe'), 'i32'),
        K.set('qw', get('pw'), 'i32'),
        K.set('qa', add(get('work'), i32(16)), 'i32'),
      ],
      [
        ...both(K, sample),
        `(if ${get('kind')} (then
  ${block(both(K, halves))}
  ${addTo(K, 'qa', 0, pair(K, sq('el', 'eh')))}
  (if (i32.eq ${get('kind')} (i32.const 1)) (then
  ${block(both(K, normal))}
  ${addTo(K, 'qa', 16, pair(K, sq('zl', 'zh')))}) (else
  ${block(both(K, mixture))}
  ${addTo(K, 'qa', 16, pair(K, d2('add', get('zl'), get('zh'))))}
  (if (v128.any_true ${either(K, op('v128.and', f4('ge', get('x'), K.f(PRIOR_FLOOR)), get('mask')))}) (then
  ${block(both(K, mixSoftplus))}
  ${addTo(K, 'qa', 32, pair(K, d2('add', lo64(get('p')), hi64(get('p')))))}))))))`,
      ],
      [
        set('qe', add(get('qe'), get('st'))),
        set('qw', add(get('qw'), get('st'))),
        set('qa', add(get('qa'), i32(48))),
      ],
    ),
  ];
  // scratch: rho, mu, eps (S), w (S), 32 bytes each
  const scrW = add(get('scr'), add(i32(64), op('i32.shl', get('s'), i32(5))));
  const loop = vectorLoop(
    K,
    ptrs,
    body,
    op('i32.shl', add(get('s'), i32(1)), i32(6)),
    [
      copyTail(get('scr'), 'rho'),
      copyTail(add(get('scr'), i32(32)), 'mu'),
      ...copySamples(
        K,
        'Ci',
        add(get('scr'), i32(64)),
        i32(32),
        add(get('eps'), get('n8b')),
        get('nb'),
      ),
      set('pr', get('scr')),
      set('pm', add(get('scr'), i32(32))),
      set('pe', add(get('scr'), i32(64))),
      set('pw', scrW),
    ],
    copySamples(K, 'Co', add(get('w'), get('n8b')), get('nb'), scrW, i32(32)),
  );
  const text = [
    K.set('ka', op('f64x2.splat', get('a'))),
    K.set('kc', op('f64x2.splat', get('c'))),
    K.set('kd', op('f64x2.splat', get('d'))),
    K.set('sls', ZERO),
    ...sampleLoop(
      K,
      'Z',
      [K.set('qa', add(get('work'), i32(16)), 'i32')],
      [0, 16, 32].map((o) => `(v128.store offset=${o} ${get('qa')} ${ZERO})`),
      [set('qa', add(get('qa'), i32(48)))],
    ),
    K.set('scr', add(get('work'), add(i32(16), op('i32.mul', get('s'), i32(48)))), 'i32'),
    ...['pr', 'rho', 'pm', 'mu', 'pe', 'eps', 'pw', 'w'].flatMap((x, j, all) =>
      j % 2 ? [] : [K.set(x, get(all[j + 1]), 'i32')],
    ),
    ...loop,
    `(v128.store ${get('work')} ${get('sls')})`,
  ];
  const prologue = K.prologue();
  return `(func (export "gaussSampleFwd") ${f64Sig(params, ['a', 'c', 'd'])} ${K.decls()}
  ${prologue}
  ${block(text)})`;
}

function gaussBwdFunc() {
  // prettier-ignore
  const params = ['mu', 'rho', 'eps', 'dw', 'dmu', 'drho', 'n', 's', 'kind', 'a', 'b', 'c', 'd', 'gsum', 'work'];
  const K = new Scope(params);
  const ptrs = ['pr', 'pm', 'pe', 'pd', 'pdm', 'pdr'];
  const perWeight = [
    K.set('r', ld('pr')),
    ...softplusSigma(K, 'sg', 'e', 'r'),
    sigmoid(K, 'sr', 'r', 'e'),
    K.set(
      'dls',
      op(
        'v128.bitselect',
        K.f(1),
        f4('div', get('sr'), get('sg')),
        f4('lt', get('r'), K.f(LOG_SIGMA_TAIL)),
      ),
    ),
    K.set('m', ld('pm')),
    ...['dml', 'dmh', 'drl', 'drh'].map((x) => K.set(x, ZERO)),
  ];
  const gw = [K.set('dv', ld('qd')), K.set('gwl', lo64(get('dv'))), K.set('gwh', hi64(get('dv')))];
  const noGw = [K.set('gwl', ZERO), K.set('gwh', ZERO)];
  const w = [
    K.set('ep', ld('qe')),
    K.set('wv', f4('add', get('m'), f4('mul', get('sg'), get('ep')))),
    K.set('wl', lo64(get('wv'))),
    K.set('wh', hi64(get('wv'))),
  ];
  const normal = [
    K.set('dl', d2('mul', get('knb'), d2('sub', get('wl'), get('ka')))),
    K.set('dh', d2('mul', get('knb'), d2('sub', get('wh'), get('ka')))),
  ];
  const mixture = [
    K.set('zl', d2('mul', get('wl'), get('wl'))),
    K.set('zh', d2('mul', get('wh'), get('wh'))),
    K.set(
      'x',
      join32(
        d2('add', d2('mul', get('kc'), get('zl')), get('kd')),
        d2('add', d2('mul', get('kc'), get('zh')), get('kd')),
      ),
    ),
    K.set('rs', ZERO),
  ];
  const mixSigmoid = [
    K.set('nx2', op('v128.or', get('x'), K.i(0x80000000 | 0))),
    ...expNeg(K, 'xe', 'nx2', PRIOR_FLOOR),
    sigmoid(K, 'rs', 'x', 'xe'),
  ];
  const mixD = ['wl', 'wh'].map((x, j) =>
    K.set(
      j ? 'dh' : 'dl',
      d2(
        'mul',
        d2('add', get(x), get(x)),
        d2('add', get('kb'), d2('mul', get('kc'), (j ? hi64 : lo64)(get('rs')))),
      ),
    ),
  );
  const kl = [
    K.set('gkv', op('f64x2.splat', get('gk'))),
    set('gwl', d2('sub', get('gwl'), d2('mul', get('gkv'), get('dl')))),
    set('gwh', d2('sub', get('gwh'), d2('mul', get('gkv'), get('dh')))),
  ];
  const sums = [
    set('dml', d2('add', get('dml'), get('gwl'))),
    set('dmh', d2('add', get('dmh'), get('gwh'))),
    set('drl', d2('add', get('drl'), d2('mul', get('gwl'), lo64(get('ep'))))),
    set('drh', d2('add', get('drh'), d2('mul', get('gwh'), hi64(get('ep'))))),
  ];
  const out = [
    st('pdm', join32(get('dml'), get('dmh'))),
    st(
      'pdr',
      join32(
        d2('sub', d2('mul', get('drl'), lo64(get('sr'))), d2('mul', get('kgs'), lo64(get('dls')))),
        d2('sub', d2('mul', get('drh'), hi64(get('sr'))), d2('mul', get('kgs'), hi64(get('dls')))),
      ),
    ),
  ];
  const body = [
    ...both(K, perWeight),
    ...sampleLoop(
      K,
      'S',
      [
        K.set('qe', get('pe'), 'i32'),
        K.set('qd', get('pd'), 'i32'),
        K.set('qg', get('work'), 'i32'),
      ],
      [
        `(if ${get('dw')} (then
  ${block(both(K, gw))}) (else
  ${block(both(K, noGw))}))`,
        ...both(K, w),
        K.set('gk', '(f64.load (local.get $qg))', 'f64'),
        `(if (f64.ne ${get('gk')} (f64.const 0)) (then
  (if (i32.eq ${get('kind')} (i32.const 1)) (then
  ${block(both(K, normal))}) (else
  ${block(both(K, mixture))}
  (if (v128.any_true ${either(K, f4('ge', get('x'), K.f(PRIOR_FLOOR)))}) (then
  ${block(both(K, mixSigmoid))}))
  ${block(both(K, mixD))}))
  ${block(both(K, kl))}))`,
        ...both(K, sums),
      ],
      [
        set('qe', add(get('qe'), get('st'))),
        set('qd', add(get('qd'), get('st'))),
        set('qg', add(get('qg'), i32(8))),
      ],
    ),
    ...both(K, out),
  ];
  // scratch: rho, mu, eps (S), dw (S), dmu, drho, 32 bytes each
  const scrD = add(get('scr'), add(i32(64), op('i32.shl', get('s'), i32(5))));
  const scrDm = add(get('scr'), add(i32(64), op('i32.shl', get('s'), i32(6))));
  const loop = vectorLoop(
    K,
    ptrs,
    body,
    op('i32.shl', add(get('s'), i32(2)), i32(6)),
    [
      copyTail(get('scr'), 'rho'),
      copyTail(add(get('scr'), i32(32)), 'mu'),
      ...copySamples(
        K,
        'Ci',
        add(get('scr'), i32(64)),
        i32(32),
        add(get('eps'), get('n8b')),
        get('nb'),
      ),
      `(if ${get('dw')} (then
  ${block(copySamples(K, 'Cd', scrD, i32(32), add(get('dw'), get('n8b')), get('nb')))}))`,
      set('pr', get('scr')),
      set('pm', add(get('scr'), i32(32))),
      set('pe', add(get('scr'), i32(64))),
      set('pd', scrD),
      set('pdm', scrDm),
      set('pdr', add(scrDm, i32(32))),
    ],
    [
      `(memory.copy ${add(get('dmu'), get('n8b'))} ${get('pdm')} ${get('tb')})`,
      `(memory.copy ${add(get('drho'), get('n8b'))} ${get('pdr')} ${get('tb')})`,
    ],
  );
  const text = [
    K.set('ka', op('f64x2.splat', get('a'))),
    K.set('knb', op('f64x2.splat', op('f64.neg', get('b')))),
    K.set('kb', op('f64x2.splat', get('b'))),
    K.set('kc', op('f64x2.splat', get('c'))),
    K.set('kd', op('f64x2.splat', get('d'))),
    K.set('kgs', op('f64x2.splat', get('gsum'))),
    K.set(
      'scr',
      add(get('work'), op('i32.and', add(op('i32.shl', get('s'), i32(3)), i32(15)), i32(-16))),
      'i32',
    ),
    ...['pr', 'rho', 'pm', 'mu', 'pe', 'eps', 'pd', 'dw', 'pdm', 'dmu', 'pdr', 'drho'].flatMap(
      (x, j, all) => (j % 2 ? [] : [K.set(x, get(all[j + 1]), 'i32')]),
    ),
    ...loop,
  ];
  const prologue = K.prologue();
  return `(func (export "gaussSampleBwd") ${f64Sig(params, ['a', 'b', 'c', 'd', 'gsum'])} ${K.decls()}
  ${prologue}
  ${block(text)})`;
}

// ---------------------------------------------------------------------------------------------
// The fused recurrent cells' forward (BlitzLSTMCell / BlitzGRUCell), in float32, 4 columns at a
// time (H a multiple of 4; the kernels keep their JS loops otherwise): the gate pre-activations
// `pre` [n, 4H] (gate blocks of H), the state [n, H], the outputs [n, H] and the activations'
// planes `act` [k, n, H]. sigmoid(x) = 1 / (1 + e^-x) or e^x / (1 + e^x) (expNeg of -|x|);
// tanh by Cephes' tanhf on |x|: |x| + |x|^3 P(x^2) below 0.5493, else (1 - e^-2|x|) /
// (1 + e^-2|x|); then the sign of x.

const TANH_P = [
  -5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1,
];
const SIGN = 0x80000000 | 0;

/** `$out = sigmoid($x)`. */
const sigmoidOf = (K, out, x) => [
  K.set('gnx', op('v128.or', get(x), K.i(SIGN))),
  ...expNeg(K, 'ge', 'gnx'),
  sigmoid(K, out, x, 'ge'),
];

/** `$out = tanh($x)`. */
const tanhOf = (K, out, x) => [
  K.set('tz', f4('abs', get(x))),
  K.set('tzz', f4('mul', get(x), get(x))),
  K.set(
    'tp',
    f4('add', f4('mul', f4('mul', horner(K, 'tzz', TANH_P), get('tzz')), get('tz')), get('tz')),
  ),
  K.set('tn', f4('mul', get('tz'), K.f(-2))),
  ...expNeg(K, 'te', 'tn'),
  K.set('tb', f4('div', f4('sub', K.f(1), get('te')), f4('add', K.f(1), get('te')))),
  // tanh |x|, then the sign of x (-0 stays -0)
  K.set(
    out,
    op(
      'v128.or',
      op('v128.bitselect', get('tp'), get('tb'), f4('lt', get('tz'), K.f(0.5493))),
      op('v128.and', get(x), K.i(SIGN)),
    ),
  ),
];

/**
 * The loop over rows `r < n` and columns (16 bytes a step) `j < hb` (= 4H bytes) of the cells:
 * `$qp` = the row of `pre` plus j, `$qe` = the row's byte offset in the [n, H] arrays plus j.
 */
const cellLoop = (K, body) => [
  K.set('rp', get('pre'), 'i32'),
  K.set('re', i32(0), 'i32'),
  K.set('r', i32(0), 'i32'),
  `(block $Rx (br_if $Rx (i32.eqz ${get('n')})) (br_if $Rx (i32.eqz ${get('hb')}))
  (loop $R
  ${K.set('j', i32(0), 'i32')}
  (loop $C
  ${K.set('qp', add(get('rp'), get('j')), 'i32')}
  ${K.set('qe', add(get('re'), get('j')), 'i32')}
  ${block(body)}
  ${set('j', add(get('j'), i32(16)))}
  (br_if $C (i32.ne ${get('j')} ${get('hb')})))
  ${set('rp', add(get('rp'), op('i32.shl', get('hb'), i32(2))))}
  ${set('re', add(get('re'), get('hb')))}
  ${set('r', add(get('r'), i32(1)))}
  (br_if $R (i32.ne ${get('r')} ${get('n')}))))`,
];

const ldAt = (p, off) => `(v128.load ${off ? add(get(p), get(off)) : get(p)})`;
const stAt = (base, off, v) => `(v128.store ${add(get(base), get(off))} ${v})`;

/**
 * lstmCellFwd(pre, c0, ho, co, act, n, hb): i, f, o = sigmoid of gate blocks 0, 1, 3, g = tanh
 * of block 2, c = f c0 + i g, h = o tanh(c); act = [i, f, g, o, tanh c] (planes n hb bytes apart).
 */
function lstmFwdFunc() {
  const params = ['pre', 'c0', 'ho', 'co', 'act', 'n', 'hb'];
  const K = new Scope(params);
  const body = [
    K.set('x', ldAt('qp')),
    ...sigmoidOf(K, 'vi', 'x'),
    K.set('x', ldAt('qp', 'hb')),
    ...sigmoidOf(K, 'vf', 'x'),
    K.set('x', ldAt('qp', 'hb2')),
    ...tanhOf(K, 'vg', 'x'),
    K.set('x', ldAt('qp', 'hb3')),
    ...sigmoidOf(K, 'vo', 'x'),
    K.set(
      'vc',
      f4(
        'add',
        f4('mul', get('vf'), `(v128.load ${add(get('c0'), get('qe'))})`),
        f4('mul', get('vi'), get('vg')),
      ),
    ),
    ...tanhOf(K, 'vt', 'vc'),
    stAt('co', 'qe', get('vc')),
    stAt('ho', 'qe', f4('mul', get('vo'), get('vt'))),
    K.set('qa', add(get('act'), get('qe')), 'i32'),
    ...['vi', 'vf', 'vg', 'vo', 'vt'].map(
      (v, k) => `(v128.store ${k ? add(get('qa'), get(`m${k}`)) : get('qa')} ${get(v)})`,
    ),
  ];
  const text = [
    K.set('hb2', op('i32.shl', get('hb'), i32(1)), 'i32'),
    K.set('hb3', add(get('hb2'), get('hb')), 'i32'),
    K.set('m1', op('i32.mul', get('n'), get('hb')), 'i32'),
    ...[2, 3, 4].map((k) => K.set(`m${k}`, add(get(`m${k - 1}`), get('m1')), 'i32')),
    ...cellLoop(K, body),
  ];
  const prologue = K.prologue();
  return `(func (export "lstmCellFwd") ${f64Sig(params, [])} ${K.decls()}
  ${prologue}
  ${block(text)})`;
}

/**
 * gruCellFwd(pre, h0, ho, act, n, hb): r, z = sigmoid of gate blocks 0, 1, p = block 3 (h U_n +
 * b_hn), n = tanh(block 2 + r p), h = n + z (h0 - n); act = [r, z, n, p].
 */
function gruFwdFunc() {
  const params = ['pre', 'h0', 'ho', 'act', 'n', 'hb'];
  const K = new Scope(params);
  const body = [
    K.set('x', ldAt('qp')),
    ...sigmoidOf(K, 'vr', 'x'),
    K.set('x', ldAt('qp', 'hb')),
    ...sigmoidOf(K, 'vz', 'x'),
    K.set('vp', ldAt('qp', 'hb3')),
    K.set('x', f4('add', ldAt('qp', 'hb2'), f4('mul', get('vr'), get('vp')))),
    ...tanhOf(K, 'vn', 'x'),
    stAt(
      'ho',
      'qe',
      f4(
        'add',
        get('vn'),
        f4('mul', get('vz'), f4('sub', `(v128.load ${add(get('h0'), get('qe'))})`, get('vn'))),
      ),
    ),
    K.set('qa', add(get('act'), get('qe')), 'i32'),
    ...['vr', 'vz', 'vn', 'vp'].map(
      (v, k) => `(v128.store ${k ? add(get('qa'), get(`m${k}`)) : get('qa')} ${get(v)})`,
    ),
  ];
  const text = [
    K.set('hb2', op('i32.shl', get('hb'), i32(1)), 'i32'),
    K.set('hb3', add(get('hb2'), get('hb')), 'i32'),
    K.set('m1', op('i32.mul', get('n'), get('hb')), 'i32'),
    ...[2, 3].map((k) => K.set(`m${k}`, add(get(`m${k - 1}`), get('m1')), 'i32')),
    ...cellLoop(K, body),
  ];
  const prologue = K.prologue();
  return `(func (export "gruCellFwd") ${f64Sig(params, [])} ${K.decls()}
  ${prologue}
  ${block(text)})`;
}

/** The module as WebAssembly text. */
export function moduleText(options = {}) {
  const opts = { ...DEFAULTS, ...options };
  return `(module
(import "${IMPORT_MODULE}" "${IMPORT_NAME}" ${opts.shared ? '(memory 1 65536 shared)' : '(memory 1)'})
${matVecFunc(opts.rows, opts.accs, opts.spread)}
${gaussFwdFunc()}
${gaussBwdFunc()}
${lstmFwdFunc()}
${gruFwdFunc()})`;
}

function fileText(bytes, sharedBytes, opts) {
  const b64lines = (b) =>
    Buffer.from(b)
      .toString('base64')
      .match(/.{1,96}/g) ?? [];
  const lines = b64lines(bytes);
  const sharedLines = b64lines(sharedBytes);
  return `// Generated by scripts/gen-heap-wasm.mjs (node scripts/gen-heap-wasm.mjs); do not edit.
// The WebAssembly SIMD kernels of heapSimd.ts: ${bytes.length} bytes (the same code on a shared
// memory import, for tfjs's threaded build: ${sharedBytes.length} bytes).

/** The module's one import, the memory: \`{ [MODULE]: { [NAME]: memory } }\`. */
export const HEAP_SIMD_IMPORT_MODULE = '${IMPORT_MODULE}';
export const HEAP_SIMD_IMPORT_NAME = '${IMPORT_NAME}';

/**
 * matVec's tuning (see the generator): rows per block (the rest, M mod ROWS, one at a time),
 * f32x4 accumulators per row (the order of the sum depends on it), and whether a block's rows
 * are floor(M / ROWS) rows apart.
 */
export const HEAP_SIMD_ROWS = ${opts.rows};
export const HEAP_SIMD_ACCS = ${opts.accs};
export const HEAP_SIMD_SPREAD = ${opts.spread};

/** The module, base64. */
export const HEAP_SIMD_BASE64 =
${lines.map((l) => `  '${l}'`).join(' +\n')};

/**
 * The same module with its memory import shared (\`(memory 1 65536 shared)\`), for the memory of
 * tfjs's threaded build (a SharedArrayBuffer), base64.
 */
export const HEAP_SIMD_SHARED_BASE64 =
${sharedLines.map((l) => `  '${l}'`).join(' +\n')};
`;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const text = moduleText();
  if (process.argv.includes('--wat')) {
    console.log(text);
    process.exit(0);
  }
  const bytes = assemble(text);
  const sharedBytes = assemble(moduleText({ shared: true }));
  for (const b of [bytes, sharedBytes])
    if (!globalThis.WebAssembly.validate(b))
      throw new Error('the assembled module does not validate');
  const want = fileText(bytes, sharedBytes, DEFAULTS);
  if (process.argv.includes('--check')) {
    let have = '';
    try {
      have = readFileSync(target, 'utf8');
    } catch {
      // missing: stale
    }
    if (have !== want) {
      console.error(`${path.relative(root, target)} is stale: run node scripts/gen-heap-wasm.mjs`);
      process.exit(1);
    }
    console.log(`${path.relative(root, target)} is up to date (${bytes.length} bytes)`);
  } else {
    writeFileSync(target, want);
    console.log(`wrote ${path.relative(root, target)} (${bytes.length} bytes)`);
  }
}
