// Generates src/kernels/heapSimdBytes.ts: a small WebAssembly SIMD module that imports the
// tfjs-backend-wasm module's own memory (so it reads and writes tensors where they lie, without
// copies) and computes the matrix-vector product that BatchMatMul / _FusedMatMul need when there
// is one output column (N = 1), where XNNPACK's micro-kernel (8 output columns a tile) wastes 7/8
// of its work. It is loaded by src/kernels/heapSimd.ts.
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

/** The module as WebAssembly text. */
export function moduleText(options = {}) {
  const opts = { ...DEFAULTS, ...options };
  return `(module
(import "${IMPORT_MODULE}" "${IMPORT_NAME}" (memory 1))
${matVecFunc(opts.rows, opts.accs, opts.spread)})`;
}

function fileText(bytes, opts) {
  const b64 = Buffer.from(bytes).toString('base64');
  const lines = b64.match(/.{1,96}/g) ?? [];
  return `// Generated by scripts/gen-heap-wasm.mjs (node scripts/gen-heap-wasm.mjs); do not edit.
// The WebAssembly SIMD kernels of heapSimd.ts: ${bytes.length} bytes.

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
  const want = fileText(bytes, DEFAULTS);
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
