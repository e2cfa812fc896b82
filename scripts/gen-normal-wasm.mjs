// Generates src/params/normalWasmBytes.ts: the WebAssembly SIMD kernels behind
// src/params/normalWasm.ts (threefry2x32-20 bits, bits -> uniform, bits -> JAX's standard normal),
// as base64 bytes, so that the library needs no build step and no runtime dependency.
//
//   node scripts/gen-normal-wasm.mjs           write src/params/normalWasmBytes.ts
//   node scripts/gen-normal-wasm.mjs --check   exit 1 if that file is not what this script makes
//   node scripts/gen-normal-wasm.mjs --wat     print the module as WebAssembly text
//
// The module is written here as WebAssembly text (folded s-expressions, made by the functions
// below, which unroll the threefry rounds and the polynomial steps) and assembled by the small
// assembler at the end of this file, which knows exactly the instructions used (its output is
// byte-identical to wabt's wat2wasm on this text). Every float32 step of normalWasm.ts's JS code
// (normalFromBitsJs) is the same IEEE operation here, in the same order:
//
// - `Math.fround(a op b)` for one operation on float32 values (+, -, *, /, sqrt) is the float32
//   operation (f32x4.*): the double result rounded to float32 equals the float32 result, since
//   53 >= 2 * 24 + 2 (double rounding is innocuous for these operations);
// - `Math.fround(a * b + c)` (XLA's fused multiply-add, which the JS code does in double) is the
//   same in f64x2: f64x2.mul (exact: a product of two float32 values), f64x2.add (one double
//   rounding), then f32x4.demote_f64x2_zero (one float32 rounding); where the chain goes on, the
//   value is promoted back to f64 (exact). Wasm has FMA only in relaxed-simd; none is used.
//
// test/params/random.test.ts compares the two paths on all 2^23 inputs of the transform.
//
// Speed (see bench/results/prng.md): the fused multiply-add steps are most of the work, each one
// a multiply, an add and the two conversions of the rounding, on f64x2 (2 values). The kernels
// are therefore written as passes over a chunk of values in the module's memory, each pass a
// loop of short independent iterations (a few steps of a chain for 2 values, or the float32 work
// for 4), which the processor overlaps; a whole chain per iteration would wait on each step's
// latency (about 11 cycles). log1p has two forms by lane (Cephes' rational where
// -t < sqrt(2) - 1, about 64% of values, else log(1 + t)): the values are partitioned into two
// packed lists, each form runs on its own list only, and the merge puts them back in order.
//
// The exports (bits, uniforms, normals, normalsFromBits) take up to BIG_VALUES values a call,
// run the kernels chunk by chunk over them and leave the results in BIG, so that the JS side
// makes one call and one copy per 64Ki values. Memory: the kernels' scratch arrays of CHUNK
// values, then BIG; 6 pages, fixed (exported as `mem`).
import { Buffer } from 'node:buffer';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TextEncoder } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const target = path.join(root, 'src/params/normalWasmBytes.ts');

/** Values per pass of the kernels (the size of their scratch arrays). */
export const CHUNK = 1024;
/** Room after each array for the loops' rounding up and the partition's whole-vector stores. */
const PAD = 32;
const STRIDE = (CHUNK + PAD) * 4;

// ---------------------------------------------------------------------------------------------
// memory: arrays of CHUNK + PAD values, float32 (OUT first, at 0) or f64 (names ending in 64)

// prettier-ignore
const ARRAYS = [
  'OUT', 'X', 'T', 'LT', 'N', 'D', 'CR', 'XM', 'X3', 'EC', 'XH', 'EL', 'Y', 'Z', 'RR', 'LR', 'W',
  'WA', 'TL', 'MASK', 'CT64', 'WA64', 'SHUF',
];
// CT, the Cephes list, is T packed in place; Giles' P reuses T once CT is consumed. EXP is the
// second half of the shuffle tables.
const ALIAS = { CT: 'T', P: 'T' };
const is64 = (a) => a.endsWith('64');
const OFFSETS = new Map();
{
  let off = 0;
  for (const a of ARRAYS) {
    OFFSETS.set(a, off);
    off += is64(a) ? 2 * STRIDE : STRIDE;
  }
  OFFSETS.set('', off);
}
/** The byte offset of an array. */
function at(a) {
  if (a === 'EXP') return at('SHUF') + 256;
  const o = OFFSETS.get(ALIAS[a] ?? a);
  if (o === undefined) throw new Error(`no array ${a}`);
  return o;
}
/** Values per export call: their results (or bits) go to BIG, for the JS side to copy at once. */
export const BIG_VALUES = 65536;
const BIG = Math.ceil(OFFSETS.get('') / 65536) * 65536;
const PAGES = (BIG + 4 * BIG_VALUES) / 65536;

// ---------------------------------------------------------------------------------------------
// text helpers

const get = (n) => `(local.get $${n})`;
const set = (n, e) => `(local.set $${n} ${e})`;
const op = (name, ...args) => `(${name} ${args.join(' ')})`;

/** A constant, checked to be exactly a float32 value (as the JS code's literals are). */
function f32(v) {
  if (Math.fround(v) !== v) throw new Error(`${v} is not a float32 value`);
  return v;
}

/** A function's constants: one splatted local per value, set once in the function's prologue. */
class Consts {
  constructor() {
    this.map = new Map();
  }
  /** `shape` is f64x2, f32x4 or i32x4. */
  ref(shape, v) {
    const k = `${shape}:${shape === 'i32x4' ? v | 0 : f32(v)}`;
    let name = this.map.get(k);
    if (name === undefined) {
      name = `kc${this.map.size}`;
      this.map.set(k, name);
    }
    return get(name);
  }
  d(v) {
    return this.ref('f64x2', v);
  }
  f(v) {
    return this.ref('f32x4', v);
  }
  i(v) {
    return this.ref('i32x4', v);
  }
  has(name) {
    return [...this.map.values()].includes(name);
  }
  locals() {
    return [...this.map.values()].map((n) => `(local $${n} v128)`).join(' ');
  }
  prologue() {
    return [...this.map.entries()]
      .map(([k, n]) => {
        const [shape, v] = k.split(':');
        const scalar = { f64x2: 'f64', f32x4: 'f32', i32x4: 'i32' }[shape];
        return set(n, `(${shape}.splat (${scalar}.const ${v}))`);
      })
      .join('\n  ');
  }
}

/** float32 rounding of an f64x2 value, kept as f64x2 (exact both ways after the demote). */
const round = (v) => op('f64x2.promote_low_f32x4', op('f32x4.demote_f64x2_zero', v));
/** `a * b + c` in f64 (`a * b - |c|` for a negative c, as the JS code writes it). */
function fmaD(K, a, b, c) {
  return c < 0
    ? op('f64x2.sub', op('f64x2.mul', a, b), K.d(-c))
    : op('f64x2.add', op('f64x2.mul', a, b), K.d(c));
}

let loopCount = 0;
/** A loop over the bytes `[0, $end)`, `step` bytes per iteration, `$p` the byte offset. */
function loop(step, body, end = 'end') {
  const l = `$L${loopCount++}`;
  return `(local.set $p (i32.const 0))
  (block ${l}x (br_if ${l}x (i32.eqz (local.get $${end})))
  (loop ${l}
  ${body.join('\n  ')}
  (local.set $p (i32.add (local.get $p) (i32.const ${step})))
  (br_if ${l} (i32.lt_u (local.get $p) (local.get $${end})))))`;
}
/** f32x4 passes: 4 float32 values of an array at `$p`. */
const ld = (a) => `(v128.load offset=${at(a)} ${get('p')})`;
const st = (a, v) => `(v128.store offset=${at(a)} ${get('p')} ${v})`;
/**
 * f64x2 passes: 2 values at `$p` (f64 arrays at `2 * $p`), float32 ones widened to f64 (exact);
 * stored rounded to float32.
 */
const ldh = (a, extra = 0) =>
  is64(a)
    ? `(v128.load offset=${at(a) + 2 * extra} (i32.add ${get('p')} ${get('p')}))`
    : op('f64x2.promote_low_f32x4', `(v128.load64_zero offset=${at(a) + extra} ${get('p')})`);
const sth = (a, v, extra = 0) =>
  `(v128.store64_lane offset=${at(a) + extra} 0 ${get('p')} ${op('f32x4.demote_f64x2_zero', v)})`;
/** f32x4 passes: 4 values at `$base + $p` (the caller's source or destination). */
const ldAt = (base) => `(v128.load (i32.add ${get(base)} ${get('p')}))`;
const stAt = (base, v) => `(v128.store (i32.add ${get(base)} ${get('p')}) ${v})`;
const vecPass = (body, end) => loop(16, body, end);
const halfPass = (body, end) => loop(8, body, end);

// ---------------------------------------------------------------------------------------------
// threefry2x32-20: the bits of counter [hi, lo + j] are b0 ^ b1 of threefry2x32([k0, k1],
// [hi, lo + j]), 4 counters per vector. One pass per group of 4 rounds (and its key injection),
// the state x0, x1 kept in OUT and X between passes: short chains again (20 rounds of about 6
// cycles latency each would leave the processor waiting).

const ROT = [13, 15, 26, 6, 17, 29, 16, 24];

function rotl(v, r) {
  // 16 and 24 are whole bytes: one byte swizzle (by a mask held in a local; V8 would rebuild an
  // i8x16.shuffle's mask every time) instead of two shifts and an or
  if (r === 16) return op('i8x16.swizzle', v, get('rot16'));
  if (r === 24) return op('i8x16.swizzle', v, get('rot24'));
  return op(
    'v128.or',
    op('i32x4.shl', v, `(i32.const ${r})`),
    op('i32x4.shr_u', v, `(i32.const ${32 - r})`),
  );
}

/**
 * The bits of counters [hi, lo + j] for j < n (n <= CHUNK, lo + n <= 2^32): to `dst`
 * (toNormal = 0), or on through the normal kernel's first step into X and T (toNormal = 1).
 */
function fillFunc() {
  const K = new Consts();
  const ks = ['ks0', 'ks1', 'ks2'];
  const passes = [];
  for (let g = 0; g < 5; g++) {
    const body =
      g === 0
        ? [
            set('x0', get('x0init')),
            set('x1', get('ctr')),
            set('ctr', op('i32x4.add', get('ctr'), K.i(4))),
          ]
        : [set('x0', ld('OUT')), set('x1', ld('X'))];
    for (let r = 0; r < 4; r++) {
      body.push(set('x0', op('i32x4.add', get('x0'), get('x1'))));
      body.push(set('x1', op('v128.xor', rotl(get('x1'), ROT[(g & 1) * 4 + r]), get('x0'))));
    }
    body.push(set('x0', op('i32x4.add', get('x0'), get(ks[(g + 1) % 3]))));
    body.push(set('x1', op('i32x4.add', get('x1'), get(`inj${g}`))));
    if (g < 4) {
      passes.push(vecPass([...body, st('OUT', get('x0')), st('X', get('x1'))]));
    } else {
      const bits = op('v128.xor', get('x0'), get('x1'));
      passes.push(`(if (local.get $toNormal) (then
  ${vecPass([...body, ...uniformSteps(K, bits)])})
  (else
  ${vecPass([...body, stAt('dst', bits)])}))`);
    }
  }
  const locals = ['ks0', 'ks1', 'ks2', 'x0init', 'ctr', 'rot24', 'rot16', 'x0', 'x1', 'x']
    .concat([0, 1, 2, 3, 4].map((g) => `inj${g}`))
    .map((n) => `(local $${n} v128)`)
    .join(' ');
  const ks2 = '(i32.xor (i32.xor (local.get $k0) (local.get $k1)) (i32.const 0x1bd11bda))';
  const prologue = [
    set('ks0', op('i32x4.splat', get('k0'))),
    set('ks1', op('i32x4.splat', get('k1'))),
    set('ks2', op('i32x4.splat', ks2)),
    set('x0init', op('i32x4.splat', '(i32.add (local.get $hi) (local.get $k0))')),
    set(
      'ctr',
      op(
        'i32x4.add',
        op('i32x4.splat', '(i32.add (local.get $lo) (local.get $k1))'),
        '(v128.const i32x4 0 1 2 3)',
      ),
    ),
    set('rot24', '(v128.const i32x4 0x00030201 0x04070605 0x080b0a09 0x0c0f0e0d)'),
    set('rot16', '(v128.const i32x4 0x01000302 0x05040706 0x09080b0a 0x0d0c0f0e)'),
    // the injection after group g: x0 += ks[(g + 1) % 3], x1 += ks[(g + 2) % 3] + g + 1
    ...[0, 1, 2, 3, 4].map((g) =>
      set(`inj${g}`, op('i32x4.add', get(ks[(g + 2) % 3]), K.i(g + 1))),
    ),
    set('end', '(i32.shl (local.get $n) (i32.const 2))'),
  ];
  return `(func $fill (param $k0 i32) (param $k1 i32) (param $hi i32) (param $lo i32)
  (param $n i32) (param $toNormal i32) (param $dst i32) (local $p i32) (local $end i32) ${locals}
  ${K.locals()}
  ${K.prologue()}
  ${prologue.join('\n  ')}
  ${passes.join('\n  ')})`;
}

// ---------------------------------------------------------------------------------------------
// bits -> float32 uniform in [0, 1), from `src` to `dst`: (bits >>> 9) * 2^-23

function uniformFunc() {
  const K = new Consts();
  const v = op(
    'f32x4.mul',
    op('f32x4.convert_i32x4_s', op('i32x4.shr_u', ldAt('src'), '(i32.const 9)')),
    K.f(2 ** -23),
  );
  return `(func $uniform (param $n i32) (param $src i32) (param $dst i32) (local $p i32)
  (local $end i32) ${K.locals()}
  ${K.prologue()}
  (local.set $end (i32.shl (local.get $n) (i32.const 2)))
  ${vecPass([stAt('dst', v)])})`;
}

// ---------------------------------------------------------------------------------------------
// bits -> standard normal, into OUT

/**
 * The fused multiply-add chains, as statements on arrays: `{ dst, reads, f }` computes
 * `dst = fr(f(v))` where `v(a)` is the current value of array `a` (f64x2). `rounds` lists the
 * rounds (one step of each chain, the chains independent); `group` consecutive rounds make one
 * pass. Within a pass, values stay in locals (rounded where they are used again) and each array
 * written is stored once, at the end (the store rounds). `widen` names f64 arrays that the first
 * pass fills from a float32 one, for the later passes to read without conversion.
 */
function chainPasses(rounds, group, end, widen = {}) {
  const out = [];
  for (let r0 = 0; r0 < rounds.length; r0 += group) {
    const stmts = rounds.slice(r0, r0 + group).flat();
    const b = [];
    const cur = new Map(); // array -> the local holding its current value
    const v = (a) => {
      if (!cur.has(a)) {
        const l = `in${a}`;
        if (r0 === 0 && a in widen) {
          b.push(set(l, ldh(widen[a])));
          b.push(`(v128.store offset=${at(a)} (i32.add ${get('p')} ${get('p')}) ${get(l)})`);
        } else b.push(set(l, ldh(a)));
        cur.set(a, l);
      }
      return get(cur.get(a));
    };
    stmts.forEach((s, i) => {
      const expr = s.f(v);
      const usedLater = stmts.slice(i + 1).some((later) => later.reads.includes(s.dst));
      const l = `c${i}`;
      b.push(set(l, usedLater ? round(expr) : expr));
      cur.set(s.dst, l);
    });
    for (const a of new Set(stmts.map((s) => s.dst))) b.push(sth(a, get(cur.get(a))));
    out.push(halfPass(b, end));
  }
  return out.join('\n  ');
}

/** `dst = c0 * src + c1` (the first step of a Horner chain). */
const first = (K, dst, c0, src, c1) => ({
  dst,
  reads: [src],
  f: (v) => fmaD(K, K.d(c0), v(src), c1),
});
/** `dst = acc * src + c` (`c` a constant or an array). */
const step = (K, dst, acc, src, c) => ({
  dst,
  reads: typeof c === 'string' ? [acc, src, c] : [acc, src],
  f: (v) =>
    typeof c === 'string'
      ? op('f64x2.add', op('f64x2.mul', v(acc), v(src)), v(c))
      : fmaD(K, v(acc), v(src), c),
});

/**
 * Step 1 (f32x4): u = fma(bits >>> 9, 2^-22, lo) in [lo, 1) (the product is exact, so two
 * float32 operations), X = u, T = t = -fr(u * u).
 */
function uniformSteps(K, bits) {
  const x = op(
    'f32x4.add',
    op(
      'f32x4.mul',
      op('f32x4.convert_i32x4_s', op('i32x4.shr_u', bits, '(i32.const 9)')),
      K.f(2 ** -22),
    ),
    K.f(-(1 - 2 ** -24)),
  );
  return [
    set('x', x),
    st('X', get('x')),
    st('T', op('f32x4.neg', op('f32x4.mul', get('x'), get('x')))),
  ];
}

/**
 * The partition, 4 values at a time: value j goes to the Cephes list CT when -t < sqrt(2) - 1
 * (in float32), else to the log list LT. The lanes' 4-bit mask (kept in MASK for the merge)
 * picks, from a table of 16 byte shuffles (SHUF), the one that packs the chosen lanes to the
 * front; the packed vector is stored whole at the list's end, which then grows by the number of
 * lanes chosen (the lanes after it are overwritten by the next store). CT is T itself, packed in
 * place (stored at or before the 4 values just read).
 */
function partitionPass(K) {
  return `(local.set $nc (i32.const 0))
  (local.set $nl (i32.const 0))
  ${vecPass([
    set('t', ld('T')),
    `(local.set $c (i32x4.bitmask (f32x4.gt (local.get $t) ${K.f(-0.4142135679721832)})))`,
    set('sh', `(v128.load offset=${at('SHUF')} (i32.shl (local.get $c) (i32.const 4)))`),
    set(
      'sh2',
      `(v128.load offset=${at('SHUF')} (i32.shl (i32.xor (local.get $c) (i32.const 15)) (i32.const 4)))`,
    ),
    `(v128.store offset=${at('CT')} (local.get $nc) (i8x16.swizzle (local.get $t) (local.get $sh)))`,
    `(v128.store offset=${at('LT')} (local.get $nl) (i8x16.swizzle (local.get $t) (local.get $sh2)))`,
    `(i32.store8 offset=${at('MASK')} (i32.shr_u (local.get $p) (i32.const 4)) (local.get $c))`,
    '(local.set $c (i32.shl (i32.popcnt (local.get $c)) (i32.const 2)))',
    '(local.set $nc (i32.add (local.get $nc) (local.get $c)))',
    '(local.set $nl (i32.add (local.get $nl) (i32.sub (i32.const 16) (local.get $c))))',
  ])}
  ;; the lists' passes run over whole groups of 8 (the arrays have room for it)
  (local.set $endc (i32.and (i32.add (local.get $nc) (i32.const 28)) (i32.const -32)))
  (local.set $endl (i32.and (i32.add (local.get $nl) (i32.const 28)) (i32.const -32)))`;
}

/**
 * The byte shuffles of the partition and the merge: SHUF entry k packs the lanes i with bit i of
 * k set to the front; EXP entry k undoes it (lane i takes packed lane popcount(k & (2^i - 1))
 * where bit i is set, else 0: an index >= 16 swizzles to 0).
 */
function shuffleTables() {
  const shuf = [];
  const exp = [];
  const bytes = (lane) => [4 * lane, 4 * lane + 1, 4 * lane + 2, 4 * lane + 3];
  for (let k = 0; k < 16; k++) {
    const lanes = [0, 1, 2, 3].filter((i) => (k >> i) & 1);
    const entry = lanes.flatMap(bytes);
    while (entry.length < 16) entry.push(0xff);
    shuf.push(...entry);
    for (let i = 0; i < 4; i++)
      exp.push(...((k >> i) & 1 ? bytes(lanes.indexOf(i)) : [0xff, 0xff, 0xff, 0xff]));
  }
  const hex = (bs) => bs.map((b) => '\\' + b.toString(16).padStart(2, '0')).join('');
  return `(data (i32.const ${at('SHUF')}) "${hex(shuf)}${hex(exp)}")`;
}

/** Cephes (f64x2 chains): N, D = the numerator and denominator of the rational in t. */
function cephesChains(K, opts) {
  const num = [
    6.578732490539551, 29.91191864013672, 60.949668884277344, 57.11296463012695, 20.039552688598633,
  ];
  const den = [
    83.04756927490234, 221.7624053955078, 309.0987243652344, 216.427886962890625, 60.11865997314453,
  ];
  const rounds = [
    [
      first(K, 'N', 0.00004527000055531971, 'CT64', 0.4985410273075104),
      { dst: 'D', reads: ['CT64'], f: (v) => op('f64x2.add', v('CT64'), K.d(15.062909126281738)) },
    ],
    ...num.map((c, i) => [step(K, 'N', 'N', 'CT64', c), step(K, 'D', 'D', 'CT64', den[i])]),
  ];
  return chainPasses(rounds, opts.group, 'endc', { CT64: 'CT' });
}

/** Cephes (f32x4): CR = w = -(t + (-0.5 * t^2 + t^3 * (N / D))) (-0.5 * t^2 is exact). */
function cephesFinish(K) {
  return vecPass(
    [
      set('t', ld('CT')),
      set('t2', op('f32x4.mul', get('t'), get('t'))),
      set(
        'q',
        op('f32x4.mul', op('f32x4.mul', get('t'), get('t2')), op('f32x4.div', ld('N'), ld('D'))),
      ),
      st(
        'CR',
        op(
          'f32x4.neg',
          op(
            'f32x4.add',
            get('t'),
            op('f32x4.add', op('f32x4.mul', K.f(-0.5), get('t2')), get('q')),
          ),
        ),
      ),
    ],
    'endc',
  );
}

/**
 * log(1 + t), Eigen's plog_float, before its polynomial (f32x4): 1 + t > 0 for every input, so
 * its bits >>> 23 are the biased exponent e; the mantissa x goes to [0.5, 1), then to x - 1,
 * plus x where it is below sqrt(1/2) (else plus 0: exact, as x - 1 is never 0), and e - 1 there.
 * XM = x, X3 = x^3, EC = fr(e * -2.12194440e-4), XH = x - 0.5 * x^2 (the product exact),
 * EL = e * 0.693359375 (exact).
 */
function logPrelim(K) {
  return vecPass(
    [
      set('s', op('f32x4.add', K.f(1), ld('LT'))),
      set('e', op('i32x4.sub', op('i32x4.shr_u', get('s'), '(i32.const 23)'), K.i(126))),
      set('m', op('v128.or', op('v128.and', get('s'), K.i(0x807fffff)), K.i(0x3f000000))),
      set('mask', op('f32x4.lt', get('m'), K.f(0.7071067690849304))),
      set('e', op('i32x4.add', get('e'), get('mask'))),
      set(
        'm',
        op('f32x4.add', op('f32x4.sub', get('m'), K.f(1)), op('v128.and', get('m'), get('mask'))),
      ),
      st('XM', get('m')),
      set('x2', op('f32x4.mul', get('m'), get('m'))),
      st('X3', op('f32x4.mul', get('x2'), get('m'))),
      set('ef', op('f32x4.convert_i32x4_s', get('e'))),
      st('EC', op('f32x4.mul', get('ef'), K.f(-0.00021219444170128554))),
      st('XH', op('f32x4.sub', get('m'), op('f32x4.mul', K.f(0.5), get('x2')))),
      st('EL', op('f32x4.mul', get('ef'), K.f(0.693359375))),
    ],
    'endl',
  );
}

/** log (f64x2 chains): Y = the polynomial in x (and x^3), plus EC. */
function logChains(K, opts) {
  const rounds = [
    [
      first(K, 'Y', 0.07037683576345444, 'XM', -0.11514610052108765),
      first(K, 'Z', -0.12420140951871872, 'XM', 0.14249323308467865),
      first(K, 'RR', 0.2000071406364441, 'XM', -0.24999994039535522),
    ],
    [
      step(K, 'Y', 'Y', 'XM', 0.11676998436450958),
      step(K, 'Z', 'Z', 'XM', -0.16668057441711426),
      step(K, 'RR', 'RR', 'XM', 0.3333333134651184),
    ],
    [step(K, 'Y', 'Y', 'X3', 'Z')],
    [step(K, 'Y', 'Y', 'X3', 'RR')],
    [step(K, 'Y', 'Y', 'X3', 'EC')],
  ];
  return chainPasses(rounds, opts.group, 'endl');
}

/** log (f32x4): LR = w = -(((x - 0.5 * x^2) + Y) + e * 0.693359375). */
function logFinish() {
  return vecPass(
    [st('LR', op('f32x4.neg', op('f32x4.add', op('f32x4.add', ld('XH'), ld('Y')), ld('EL'))))],
    'endl',
  );
}

/**
 * The merge (f32x4), the partition undone: W = w for each group of 4, from the next lanes of the
 * two lists (unpacked with EXP by the group's mask); WA = fr(w - 2.5); and TL lists the groups
 * where a lane has w >= 5 (|u| > 0.9966, about 0.34% of values), for Giles' other polynomial.
 */
function mergePass(K) {
  const unpack = (list, mask) =>
    op(
      'i8x16.swizzle',
      `(v128.load offset=${at(list)} (local.get $n${list === 'CR' ? 'c' : 'l'}))`,
      `(v128.load offset=${at('EXP')} (i32.shl ${mask} (i32.const 4)))`,
    );
  return `(local.set $nc (i32.const 0))
  (local.set $nl (i32.const 0))
  (local.set $nt (i32.const 0))
  ${vecPass([
    `(local.set $c (i32.load8_u offset=${at('MASK')} (i32.shr_u (local.get $p) (i32.const 4))))`,
    set(
      'w0',
      op(
        'v128.or',
        unpack('CR', '(local.get $c)'),
        unpack('LR', '(i32.xor (local.get $c) (i32.const 15))'),
      ),
    ),
    '(local.set $c (i32.shl (i32.popcnt (local.get $c)) (i32.const 2)))',
    '(local.set $nc (i32.add (local.get $nc) (local.get $c)))',
    '(local.set $nl (i32.add (local.get $nl) (i32.sub (i32.const 16) (local.get $c))))',
    st('W', get('w0')),
    st('WA', op('f32x4.sub', get('w0'), K.f(2.5))),
    `(if (v128.any_true (f32x4.ge (local.get $w0) ${K.f(5)})) (then
  (i32.store offset=${at('TL')} (local.get $nt) (local.get $p))
  (local.set $nt (i32.add (local.get $nt) (i32.const 4)))))`,
  ])}`;
}

const GILES_LO = [
  3.432739390518691e-7, -0.000003523387704262859, -0.000004391506536194356, 0.00021858086984138936,
  -0.001253725029528141, -0.004177681636065245, 0.24664072692394257, 1.5014094114303589,
];
const GILES_HI = [
  0.0001009505576803349, 0.0013493432197719812, -0.003673428436741233, 0.005739507731050253,
  -0.007622461300343275, 0.00943887047469616, 1.0016740560531616, 2.832976818084717,
];

/** Horner's scheme in f64x2 on local `w`, into local `p`: c0 * w + cs[0], then p * w + cs[i]. */
function horner(K, c0, cs, w, p) {
  const b = [set(p, round(fmaD(K, K.d(c0), get(w), cs[0])))];
  for (let i = 1; i < cs.length; i++) {
    const v = fmaD(K, get(p), get(w), cs[i]);
    b.push(set(p, i === cs.length - 1 ? v : round(v)));
  }
  return b;
}

/**
 * Giles' polynomial P (f64x2 chains): in w - 2.5 for every value; then, for the groups of 4 in
 * TL, in fr(fr(sqrt(w)) - 3) for their lanes with w >= 5.
 */
function gilesPasses(K, opts) {
  const rounds = [
    [first(K, 'P', 2.810226362726098e-8, 'WA64', GILES_LO[0])],
    ...GILES_LO.slice(1).map((c) => [step(K, 'P', 'P', 'WA64', c)]),
  ];
  const half = (extra) => [
    set('w0', ldh('W', extra)),
    set('wh', round(op('f64x2.sub', round(op('f64x2.sqrt', get('w0'))), K.d(3)))),
    ...horner(K, -0.0002002142573473975, GILES_HI, 'wh', 'ph'),
    sth(
      'P',
      op('v128.bitselect', ldh('P', extra), get('ph'), op('f64x2.lt', get('w0'), K.d(5))),
      extra,
    ),
  ];
  const tail = `(local.set $i (i32.const 0))
  (block $tailx (br_if $tailx (i32.eqz (local.get $nt)))
  (loop $tail
  (local.set $p (i32.load offset=${at('TL')} (local.get $i)))
  ${[...half(0), ...half(8)].join('\n  ')}
  (local.set $i (i32.add (local.get $i) (i32.const 4)))
  (br_if $tail (i32.lt_u (local.get $i) (local.get $nt)))))`;
  return [chainPasses(rounds, opts.group, 'end', { WA64: 'WA' }), tail].join('\n  ');
}

/** dst = sqrt(2) * fr(P * u) (f32x4; the float32 multiply rounds the last product). */
function outputPass(K) {
  return vecPass([
    stAt('dst', op('f32x4.mul', K.f(1.4142135381698608), op('f32x4.mul', ld('P'), ld('X')))),
  ]);
}

/**
 * The standard normal of the bits of value j < n, to `dst`: the bits that fill(..., 1) left as X
 * and T (src = 0), or the bits at `src`. Values past n (up to a multiple of 8) are computed from
 * whatever the scratch holds and never read.
 */
function normalFunc(opts) {
  const K = new Consts();
  const skip = opts.skip ?? [];
  const passes = [
    ['uniform', () => `(if (local.get $src) (then\n  ${vecPass(uniformSteps(K, ldAt('src')))}))`],
    ['partition', () => partitionPass(K)],
    ['cephesChains', () => cephesChains(K, opts)],
    ['cephesFinish', () => cephesFinish(K)],
    ['logPrelim', () => logPrelim(K)],
    ['logChains', () => logChains(K, opts)],
    ['logFinish', () => logFinish()],
    ['merge', () => mergePass(K)],
    ['giles', () => gilesPasses(K, opts)],
    ['output', () => outputPass(K)],
  ]
    .map(([name, f]) => (skip.includes(name) ? '' : f()))
    .join('\n  ');
  const scalars = ['p', 'i', 'end', 'nc', 'nl', 'nt', 'endc', 'endl', 'c'];
  // every other local is a v128 scratch value
  const scratch = [
    ...new Set([...passes.matchAll(/\(local\.(?:get|set|tee) \$(\w+)\)/g)].map((m) => m[1])),
  ]
    .filter((n) => !['n', 'src', 'dst'].includes(n) && !scalars.includes(n) && !K.has(n))
    .map((n) => `(local $${n} v128)`)
    .join(' ');
  return `(func $normal (param $n i32) (param $src i32) (param $dst i32)
  ${scalars.map((n) => `(local $${n} i32)`).join(' ')} ${scratch} ${K.locals()}
  ${K.prologue()}
  ;; whole groups of 8 values (the arrays have room for the rounding up)
  (local.set $end (i32.and (i32.add (i32.shl (local.get $n) (i32.const 2)) (i32.const 28)) (i32.const -32)))
  ${passes})`;
}

/**
 * The exports: each runs its kernels chunk by chunk over `n <= BIG_VALUES` values (counters
 * [hi, lo + j], `lo + n <= 2^32`), the results going to BIG, so that the JS side makes one call
 * and one copy per 64Ki values.
 */
function drivers() {
  const keyed = '(param $k0 i32) (param $k1 i32) (param $hi i32) (param $lo i32) (param $n i32)';
  const counter =
    '(local.get $k0) (local.get $k1) (local.get $hi) (i32.add (local.get $lo) (i32.shr_u (local.get $c) (i32.const 2)))';
  const dst = `(i32.add (i32.const ${BIG}) (local.get $c))`;
  const driver = (
    name,
    params,
    body,
  ) => `(func (export "${name}") ${params} (local $c i32) (local $rem i32) (local $len i32)
  (block $none (br_if $none (i32.eqz (local.get $n)))
  (loop $chunks
  (local.set $rem (i32.sub (local.get $n) (i32.shr_u (local.get $c) (i32.const 2))))
  (local.set $len (select (i32.const ${CHUNK}) (local.get $rem) (i32.lt_u (i32.const ${CHUNK}) (local.get $rem))))
  ${body.join('\n  ')}
  (local.set $c (i32.add (local.get $c) (i32.const ${4 * CHUNK})))
  (br_if $chunks (i32.lt_u (local.get $c) (i32.shl (local.get $n) (i32.const 2)))))))`;
  return [
    driver('bits', keyed, [`(call $fill ${counter} (local.get $len) (i32.const 0) ${dst})`]),
    driver('uniforms', keyed, [
      `(call $fill ${counter} (local.get $len) (i32.const 0) (i32.const ${at('OUT')}))`,
      `(call $uniform (local.get $len) (i32.const ${at('OUT')}) ${dst})`,
    ]),
    driver('normals', keyed, [
      `(call $fill ${counter} (local.get $len) (i32.const 1) (i32.const 0))`,
      `(call $normal (local.get $len) (i32.const 0) ${dst})`,
    ]),
    driver('normalsFromBits', '(param $n i32)', [`(call $normal (local.get $len) ${dst} ${dst})`]),
  ].join('\n');
}

/**
 * Tuning: `group`, the rounds of a chain per pass; `skip`, passes left out (to time the others;
 * the results are then wrong). The defaults are what normalWasmBytes.ts holds.
 */
export const DEFAULTS = { group: 2, skip: [] };

/** The module as WebAssembly text. */
export function moduleText(options = {}) {
  const opts = { ...DEFAULTS, ...options };
  loopCount = 0;
  return `(module
(memory (export "mem") ${PAGES} ${PAGES})
${fillFunc()}
${uniformFunc()}
${normalFunc(opts)}
${drivers()}
${shuffleTables()})`;
}

// ---------------------------------------------------------------------------------------------
// a small assembler for the text above: folded instructions only, the opcodes listed below
// (scripts/gen-heap-wasm.mjs uses it too, with a memory import: `(import "m" "f" (memory min))`)

const SIMD = 0xfd;
// name -> [prefix or null, opcode, immediate kind, natural alignment (log2) for memory ops]
const OPS = {
  block: [null, 0x02, 'block'],
  loop: [null, 0x03, 'block'],
  if: [null, 0x04, 'block'],
  br: [null, 0x0c, 'label'],
  br_if: [null, 0x0d, 'label'],
  call: [null, 0x10, 'func'],
  select: [null, 0x1b],
  'local.get': [null, 0x20, 'local'],
  'local.set': [null, 0x21, 'local'],
  'i32.load': [null, 0x28, 'mem', 2],
  'f32.load': [null, 0x2a, 'mem', 2],
  'f64.load': [null, 0x2b, 'mem', 3],
  'i32.load8_u': [null, 0x2d, 'mem', 0],
  'i32.store': [null, 0x36, 'mem', 2],
  'f32.store': [null, 0x38, 'mem', 2],
  'f64.store': [null, 0x39, 'mem', 3],
  'i32.store8': [null, 0x3a, 'mem', 0],
  'i32.const': [null, 0x41, 'i32'],
  'f32.const': [null, 0x43, 'f32'],
  'f64.const': [null, 0x44, 'f64'],
  'i32.eqz': [null, 0x45],
  'i32.eq': [null, 0x46],
  'i32.ne': [null, 0x47],
  'i32.lt_u': [null, 0x49],
  'i32.gt_u': [null, 0x4b],
  'i32.ge_u': [null, 0x4f],
  'i32.add': [null, 0x6a],
  'i32.sub': [null, 0x6b],
  'i32.mul': [null, 0x6c],
  'i32.and': [null, 0x71],
  'i32.popcnt': [null, 0x69],
  'i32.xor': [null, 0x73],
  'i32.shl': [null, 0x74],
  'i32.shr_u': [null, 0x76],
  'f64.ne': [null, 0x62],
  'f32.add': [null, 0x92],
  'f32.mul': [null, 0x94],
  'f32.min': [null, 0x96],
  'f32.max': [null, 0x97],
  'f64.neg': [null, 0x9a],
  'f64.add': [null, 0xa0],
  'memory.copy': [0xfc, 0x0a, 'memidx2'],
  'memory.fill': [0xfc, 0x0b, 'memidx1'],
  'v128.load': [SIMD, 0x00, 'mem', 4],
  'v128.store': [SIMD, 0x0b, 'mem', 4],
  'v128.const': [SIMD, 0x0c, 'v128'],
  'i8x16.shuffle': [SIMD, 0x0d, 'shuffle'],
  'i8x16.swizzle': [SIMD, 0x0e],
  'i32x4.splat': [SIMD, 0x11],
  'f32x4.splat': [SIMD, 0x13],
  'f64x2.splat': [SIMD, 0x14],
  'f32x4.extract_lane': [SIMD, 0x1f, 'lane'],
  'f64x2.extract_lane': [SIMD, 0x21, 'lane'],
  'i32x4.gt_s': [SIMD, 0x3b],
  'f32x4.lt': [SIMD, 0x43],
  'f32x4.gt': [SIMD, 0x44],
  'f32x4.ge': [SIMD, 0x46],
  'f64x2.lt': [SIMD, 0x49],
  'v128.and': [SIMD, 0x4e],
  'v128.andnot': [SIMD, 0x4f],
  'v128.or': [SIMD, 0x50],
  'v128.xor': [SIMD, 0x51],
  'v128.bitselect': [SIMD, 0x52],
  'v128.any_true': [SIMD, 0x53],
  'v128.store64_lane': [SIMD, 0x5b, 'memlane', 3],
  'v128.load64_zero': [SIMD, 0x5d, 'mem', 3],
  'f32x4.demote_f64x2_zero': [SIMD, 0x5e],
  'f64x2.promote_low_f32x4': [SIMD, 0x5f],
  'f32x4.nearest': [SIMD, 0x6a],
  'i32x4.bitmask': [SIMD, 0xa4],
  'i32x4.shl': [SIMD, 0xab],
  'i32x4.shr_s': [SIMD, 0xac],
  'i32x4.shr_u': [SIMD, 0xad],
  'i32x4.add': [SIMD, 0xae],
  'i32x4.sub': [SIMD, 0xb1],
  'i64x2.extend_low_i32x4_s': [SIMD, 0xc7],
  'i64x2.extend_high_i32x4_s': [SIMD, 0xc8],
  'f32x4.abs': [SIMD, 0xe0],
  'f32x4.neg': [SIMD, 0xe1],
  'f32x4.add': [SIMD, 0xe4],
  'f32x4.sub': [SIMD, 0xe5],
  'f32x4.mul': [SIMD, 0xe6],
  'f32x4.div': [SIMD, 0xe7],
  'f32x4.pmax': [SIMD, 0xeb],
  'f64x2.sqrt': [SIMD, 0xef],
  'f64x2.add': [SIMD, 0xf0],
  'f64x2.sub': [SIMD, 0xf1],
  'f64x2.mul': [SIMD, 0xf2],
  'f64x2.div': [SIMD, 0xf3],
  'f64x2.pmax': [SIMD, 0xf7],
  'f64x2.gt': [SIMD, 0x4a],
  'f64x2.abs': [SIMD, 0xec],
  'f64x2.neg': [SIMD, 0xed],
  'f64x2.nearest': [SIMD, 0x94],
  'i64x2.shl': [SIMD, 0xcb],
  'i64x2.add': [SIMD, 0xce],
  'i32x4.trunc_sat_f64x2_s_zero': [SIMD, 0xfc],
  'i32x4.trunc_sat_f32x4_s': [SIMD, 0xf8],
  'f32x4.convert_i32x4_s': [SIMD, 0xfa],
};
const VALTYPE = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b };

/** A text string's contents with its escapes (hex bytes, backslash, quote, n) decoded, as latin-1. */
function watString(body) {
  return body.replace(/\\([0-9a-fA-F]{2}|\\|"|n)/g, (_, e) =>
    e === 'n' ? '\n' : e.length === 2 ? String.fromCharCode(parseInt(e, 16)) : e,
  );
}

function tokenize(src) {
  const tokens = [];
  const re = /\s+|;;[^\n]*|(\()|(\))|("(?:[^"\\]|\\.)*")|([^\s()";]+)/y;
  let m;
  while (re.lastIndex < src.length && (m = re.exec(src)) !== null) {
    if (m[1] || m[2]) tokens.push(m[1] ?? m[2]);
    else if (m[3]) tokens.push({ str: watString(m[3].slice(1, -1)) });
    else if (m[4]) tokens.push(m[4]);
  }
  if (re.lastIndex !== src.length) throw new Error(`cannot tokenize at ${re.lastIndex}`);
  return tokens;
}

function parse(tokens) {
  let i = 0;
  function node() {
    const t = tokens[i++];
    if (t !== '(') {
      if (t === ')') throw new Error('unexpected )');
      return t;
    }
    const list = [];
    while (tokens[i] !== ')') {
      if (i >= tokens.length) throw new Error('unclosed (');
      list.push(node());
    }
    i++;
    return list;
  }
  const out = node();
  if (i !== tokens.length) throw new Error('trailing tokens');
  return out;
}

function uleb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(v) {
  let n = BigInt(v);
  const out = [];
  for (;;) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && (b & 0x40) === 0) || (n === -1n && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const bytesOf = (Ctor, vals) => [...new Uint8Array(Ctor.from(vals).buffer)];
const vec = (items) => [...uleb(items.length), ...items.flat()];
const name = (s) => vec([...new TextEncoder().encode(s)]);
const section = (id, body) => [id, ...uleb(body.length), ...body];

function int(tok) {
  const v = Number(tok);
  if (!Number.isInteger(v)) throw new Error(`expected an integer, got ${tok}`);
  return v;
}

function assembleFunc(f, types, funcNames) {
  const params = [];
  const locals = [];
  const results = [];
  const names = new Map();
  let exportName = null;
  const body = [];
  for (const item of f.slice(1)) {
    if (typeof item === 'string') continue; // the function's $name
    if ((item[0] === 'param' || item[0] === 'local') && names.has(item[1])) {
      throw new Error(`duplicate local ${item[1]}`);
    }
    if (Array.isArray(item) && item[0] === 'export') exportName = item[1].str;
    else if (Array.isArray(item) && item[0] === 'param') {
      names.set(item[1], params.length);
      params.push(item[2]);
    } else if (Array.isArray(item) && item[0] === 'result') results.push(item[1]);
    else if (Array.isArray(item) && item[0] === 'local') {
      names.set(item[1], -1 - locals.length);
      locals.push(item[2]);
    } else body.push(item);
  }
  const localIndex = (tok) => {
    const v = names.get(tok);
    if (v === undefined) throw new Error(`unknown local ${tok}`);
    return v >= 0 ? v : params.length - 1 - v;
  };
  const labels = [];
  const code = [];
  function emit(ins) {
    if (!Array.isArray(ins)) throw new Error(`expected a folded instruction, got ${ins}`);
    const [opname, ...rest] = ins;
    const spec = OPS[opname];
    if (spec === undefined) throw new Error(`unknown instruction ${opname}`);
    const [prefix, opcode, kind, align] = spec;
    const encodeOp = () => (prefix === null ? [opcode] : [prefix, ...uleb(opcode)]);
    if (kind === 'block') {
      let j = 0;
      const label = typeof rest[0] === 'string' && rest[0].startsWith('$') ? rest[j++] : null;
      if (opname === 'if') {
        const cond = [];
        while (j < rest.length && rest[j][0] !== 'then') cond.push(rest[j++]);
        cond.forEach(emit);
        code.push(0x04, 0x40);
        labels.push(label);
        for (const part of rest.slice(j)) {
          if (part[0] === 'else') code.push(0x05);
          part.slice(1).forEach(emit);
        }
      } else {
        code.push(opcode, 0x40);
        labels.push(label);
        rest.slice(j).forEach(emit);
      }
      labels.pop();
      code.push(0x0b);
      return;
    }
    // immediates are the leading atoms, operands the lists after them
    const imm = [];
    let j = 0;
    while (j < rest.length && !Array.isArray(rest[j])) imm.push(rest[j++]);
    rest.slice(j).forEach(emit);
    code.push(...encodeOp());
    switch (kind) {
      case undefined:
        if (imm.length) throw new Error(`${opname} takes no immediates`);
        break;
      case 'local':
        code.push(...uleb(localIndex(imm[0])));
        break;
      case 'lane':
        if (imm.length !== 1) throw new Error(`${opname}: one lane index`);
        code.push(int(imm[0]));
        break;
      case 'func': {
        const index = funcNames.get(imm[0]);
        if (index === undefined) throw new Error(`unknown function ${imm[0]}`);
        code.push(...uleb(index));
        break;
      }
      case 'label': {
        const depth = labels.length - 1 - labels.lastIndexOf(imm[0]);
        if (labels.lastIndexOf(imm[0]) < 0) throw new Error(`unknown label ${imm[0]}`);
        code.push(...uleb(depth));
        break;
      }
      case 'i32':
        code.push(...sleb(int(imm[0]) | 0));
        break;
      case 'f32':
        code.push(...bytesOf(Float32Array, [f32(Number(imm[0]))]));
        break;
      case 'f64':
        code.push(...bytesOf(Float64Array, [Number(imm[0])]));
        break;
      case 'v128':
        if (imm[0] !== 'i32x4' || imm.length !== 5) throw new Error('v128.const: i32x4 only');
        code.push(
          ...bytesOf(
            Int32Array,
            imm.slice(1).map((x) => int(x) | 0),
          ),
        );
        break;
      case 'shuffle':
        if (imm.length !== 16) throw new Error(`${opname}: 16 lane indices`);
        code.push(...imm.map(int));
        break;
      case 'memidx1':
      case 'memidx2':
        // memory 0 (memory.copy: destination and source)
        if (imm.length) throw new Error(`${opname} takes no immediates`);
        code.push(...(kind === 'memidx2' ? [0x00, 0x00] : [0x00]));
        break;
      case 'mem':
      case 'memlane': {
        let offset = 0;
        const rest = [];
        for (const a of imm) {
          if (a.startsWith('offset=')) offset = int(a.slice(7));
          else rest.push(a);
        }
        if (rest.length !== (kind === 'memlane' ? 1 : 0))
          throw new Error(`${opname}: bad immediates`);
        code.push(...uleb(align), ...uleb(offset), ...rest.map(int));
        break;
      }
      default:
        throw new Error(kind);
    }
  }
  body.forEach(emit);
  code.push(0x0b);
  const sig = JSON.stringify([params, results]);
  if (!types.includes(sig)) types.push(sig);
  // locals run-length encoded by type
  const groups = [];
  for (const t of locals) {
    const last = groups[groups.length - 1];
    if (last && last[1] === t) last[0]++;
    else groups.push([1, t]);
  }
  const localBytes = vec(groups.map(([c, t]) => [...uleb(c), VALTYPE[t]]));
  const fbody = [...localBytes, ...code];
  return { type: types.indexOf(sig), exportName, body: [...uleb(fbody.length), ...fbody] };
}

export function assemble(text) {
  const mod = parse(tokenize(text));
  if (mod[0] !== 'module') throw new Error('expected (module ...)');
  const types = [];
  const funcs = [];
  const exports = [];
  let memory = null;
  const imports = [];
  const datas = [];
  const funcNames = new Map();
  mod
    .slice(1)
    .filter((field) => field[0] === 'func')
    .forEach((field, i) => {
      if (typeof field[1] === 'string') funcNames.set(field[1], i);
    });
  const limits = (lims) =>
    lims.length === 2 ? [0x01, ...uleb(lims[0]), ...uleb(lims[1])] : [0x00, ...uleb(lims[0])];
  for (const field of mod.slice(1)) {
    if (field[0] === 'import') {
      // memory imports only: (import "module" "field" (memory min [max]))
      const [, mname, fname, desc] = field;
      // (import "module" "field" (memory min max shared)): a shared memory (threads proposal)
      if (!Array.isArray(desc) || desc[0] !== 'memory' || desc.slice(1).some(Array.isArray))
        throw new Error('import: (memory min [max] [shared]) only');
      if (memory !== null) throw new Error('one memory only');
      memory = 'imported';
      const shared = desc[desc.length - 1] === 'shared';
      const lims = desc.slice(1, shared ? -1 : undefined).map(int);
      if (shared && lims.length !== 2) throw new Error('a shared memory needs a maximum');
      const enc = limits(lims);
      if (shared) enc[0] = 0x03;
      imports.push([...name(mname.str), ...name(fname.str), 0x02, ...enc]);
    } else if (field[0] === 'memory') {
      if (memory !== null) throw new Error('one memory only');
      const ex = field.find((x) => Array.isArray(x) && x[0] === 'export');
      const lims = field
        .filter((x) => !Array.isArray(x))
        .slice(1)
        .map(int);
      memory = limits(lims);
      if (ex) exports.push([...name(ex[1].str), 0x02, 0x00]);
    } else if (field[0] === 'data') {
      const [, offsetExpr, text] = field;
      if (offsetExpr[0] !== 'i32.const') throw new Error('data: (i32.const offset) only');
      const bytes = [...text.str].map((ch) => ch.charCodeAt(0));
      datas.push([0x00, 0x41, ...sleb(int(offsetExpr[1])), 0x0b, ...vec(bytes.map((b) => [b]))]);
    } else if (field[0] === 'func') {
      const f = assembleFunc(field, types, funcNames);
      if (f.exportName !== null) exports.push([...name(f.exportName), 0x00, ...uleb(funcs.length)]);
      funcs.push(f);
    } else throw new Error(`unknown module field ${field[0]}`);
  }
  const typeSec = vec(
    types.map((s) => {
      const [params, results] = JSON.parse(s);
      return [
        0x60,
        ...vec(params.map((t) => [VALTYPE[t]])),
        ...vec(results.map((t) => [VALTYPE[t]])),
      ];
    }),
  );
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, typeSec),
    ...(imports.length ? section(2, vec(imports)) : []),
    ...section(3, vec(funcs.map((f) => uleb(f.type)))),
    ...(Array.isArray(memory) ? section(5, vec([memory])) : []),
    ...section(7, vec(exports)),
    ...section(10, vec(funcs.map((f) => f.body))),
    ...(datas.length ? section(11, vec(datas)) : []),
  ];
  return new Uint8Array(bytes);
}

// ---------------------------------------------------------------------------------------------

function fileText(bytes) {
  const b64 = Buffer.from(bytes).toString('base64');
  const lines = b64.match(/.{1,96}/g) ?? [];
  return `// Generated by scripts/gen-normal-wasm.mjs (node scripts/gen-normal-wasm.mjs); do not edit.
// The WebAssembly SIMD kernels of normalWasm.ts: ${bytes.length} bytes.

/** Values per kernel pass inside the module. */
export const CHUNK = ${CHUNK};

/** Values per call of the module's exports, and the byte offset of their results (BIG). */
export const BIG_VALUES = ${BIG_VALUES};
export const BIG_OFFSET = ${BIG};

/** The module, base64. */
export const NORMAL_WASM_BASE64 =
${lines.map((l) => `  '${l}'`).join(' +\n')};
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
  if (!globalThis.WebAssembly.validate(bytes))
    throw new Error('the assembled module does not validate');
  const want = fileText(bytes);
  if (process.argv.includes('--check')) {
    let have = '';
    try {
      have = readFileSync(target, 'utf8');
    } catch {
      // missing: stale
    }
    if (have !== want) {
      console.error(
        `${path.relative(root, target)} is stale: run node scripts/gen-normal-wasm.mjs`,
      );
      process.exit(1);
    }
    console.log(`${path.relative(root, target)} is up to date (${bytes.length} bytes)`);
  } else {
    writeFileSync(target, want);
    console.log(`wrote ${path.relative(root, target)} (${bytes.length} bytes)`);
  }
}
