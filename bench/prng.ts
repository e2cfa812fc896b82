/**
 * PRNG throughput: `npx tsx bench/prng.ts [--n 1000000] [--reps 15] [--no-browser]`.
 *
 * Tables, printed and written to `bench/results/prng.md`:
 *
 * 1. each sampler on `n` values, on the path the library takes here (the WebAssembly SIMD kernels
 *    of src/params/normalWasm.ts where the platform has them);
 * 2. the hot paths on the sizes that matter (6656 = a 13x512 kernel, 21.5k = one training step
 *    of the 13-512-1 regression MLP with 3 samples, 1e6), WebAssembly against the plain-JS
 *    fallback (the code the kernels replaced, unchanged), the two run alternately so that both
 *    see the same machine load;
 * 3. the normals of table 2 in headless Chromium (when it is installed), on the page's main
 *    thread and in a worker, with a check that they are the bits Node draws.
 *
 * A time is the median (and the best) of `reps` samples after 3 warm-up rounds; a sample repeats
 * the call until it has run for at least 2 ms.
 */
import { build } from 'esbuild';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '../src/setup';
import {
  bernoulliArray,
  bits,
  foldIn,
  key,
  normal,
  normalArray,
  rademacherArray,
  split,
  uniformArray,
} from '../src/params/random';
import { fillNormal, kernelState, useJsKernels } from '../src/params/normalWasm';
import { findChromium, launchChromium } from '../test/browser/harness';

const here = dirname(fileURLToPath(import.meta.url));

function argValue(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`${name}: expected a positive integer`);
  return v;
}

const n = argValue('--n', 1_000_000);
const reps = argValue('--reps', 15);
const SIZES = [6656, 21_504, 1_000_000];

let sink = 0;
/** One sample: ms per call of `run`, repeated until at least 2 ms have passed. */
function sample(run: () => unknown): number {
  let calls = 0;
  const t0 = performance.now();
  let t = t0;
  do {
    sink += Number(run() !== undefined);
    calls++;
    t = performance.now();
  } while (t - t0 < 2);
  return (t - t0) / calls;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
const best = (xs: number[]): number => Math.min(...xs);
const mps = (count: number, ms: number): string => (count / ms / 1000).toFixed(1);

/** Samples of several runs, interleaved: one sample of each per round, after 3 warm-up rounds. */
function interleaved(runs: (() => unknown)[]): number[][] {
  const out = runs.map(() => [] as number[]);
  for (let r = 0; r < reps + 3; r++) {
    runs.forEach((run, i) => {
      const ms = sample(run);
      if (r >= 3) out[i]?.push(ms);
    });
  }
  return out;
}

/** `run()` on the plain-JS path. */
const onJs =
  (run: () => unknown): (() => unknown) =>
  () => {
    useJsKernels(true);
    try {
      return run();
    } finally {
      useJsKernels(false);
    }
  };

/** A row of table 2 or 3: million values per second, median (best), and the speed-up. */
function rateRow(op: string, m: number, js: number[], wasm: number[]): string {
  return (
    `| ${op} | ${m} | ${mps(m, median(js))} (${mps(m, best(js))}) | ` +
    `${mps(m, median(wasm))} (${mps(m, best(wasm))}) | ${(median(js) / median(wasm)).toFixed(1)}x |`
  );
}

// The Chromium page: the normals of table 2 on the page's main thread and in a worker, timed as
// here (the helpers above, repeated: the page is bundled on its own).
const PAGE = `
import { key, normalArray } from '../src/params/random';
import { fillNormal, kernelState, useJsKernels } from '../src/params/normalWasm';
let sink = 0;
function sample(run) {
  let calls = 0;
  const t0 = performance.now();
  let t = t0;
  do { sink += Number(run() !== undefined); calls++; t = performance.now(); } while (t - t0 < 2);
  return (t - t0) / calls;
}
function interleaved(runs, reps) {
  const out = runs.map(() => []);
  for (let r = 0; r < reps + 3; r++) runs.forEach((run, i) => { const ms = sample(run); if (r >= 3) out[i].push(ms); });
  return out;
}
const onJs = (run) => () => { useJsKernels(true); try { return run(); } finally { useJsKernels(false); } };
function fnv(f) {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  let h = 0x811c9dc5;
  for (let i = 0; i < u.length; i++) h = Math.imul(h ^ u[i], 0x01000193) >>> 0;
  return h;
}
globalThis.__prng = (reps, sizes) => {
  const k = key(0);
  const rows = [];
  // warm-up (the page's JS and the module's tier-up), both paths
  const warm = new Float32Array(21504);
  for (const t0 = performance.now(); performance.now() - t0 < 500; ) {
    fillNormal(k[0], k[1], warm.length, warm);
    onJs(() => normalArray(k, 6656))();
  }
  for (const [op, draw] of [
    ['normals into a buffer (the kernel)', (buf) => fillNormal(k[0], k[1], buf.length, buf)],
    ['normalArray (a new array a call)', (buf) => normalArray(k, buf.length)],
  ]) {
    for (const n of sizes) {
      const buf = new Float32Array(n);
      const [wasm, js] = interleaved([() => draw(buf), onJs(() => draw(buf))], reps);
      rows.push({ op, n, js, wasm });
    }
  }
  return { state: kernelState(), hash: fnv(normalArray(k, 1000000)), rows, sink };
};
`;

interface PageResult {
  state: string;
  hash: number;
  rows: { op: string; n: number; js: number[]; wasm: number[] }[];
}

/** Table 3, or why it is missing. */
async function chromiumRows(nodeHash: number): Promise<string[]> {
  const exe = findChromium();
  if (!exe) return ['Chromium not found (apt-get install -y chromium): no browser rows.'];
  const r = await build({
    stdin: { contents: PAGE, resolveDir: here, loader: 'ts', sourcefile: 'prng-page.ts' },
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2020',
    write: false,
    logLevel: 'silent',
  });
  const code = r.outputFiles[0]?.text ?? '';
  const browser = await launchChromium(exe);
  try {
    const page = await browser.newPage();
    await page.setContent('<!doctype html><meta charset="utf-8"><title>prng</title>');
    await page.addScriptTag({ content: code });
    const browserReps = Math.min(reps, 9);
    console.log('timing Chromium, main thread ...');
    const main = await page.evaluate(
      ([k, s]) =>
        (globalThis as unknown as { __prng: (reps: number, sizes: number[]) => PageResult }).__prng(
          k,
          s,
        ),
      [browserReps, SIZES] as const,
    );
    console.log('timing Chromium, worker ...');
    const worker = await page.evaluate(
      ([src, k, s]) => {
        const body = `${src}\nself.onmessage = (e) => self.postMessage(globalThis.__prng(e.data[0], e.data[1]));`;
        const w = new Worker(URL.createObjectURL(new Blob([body], { type: 'text/javascript' })));
        return new Promise<PageResult>((resolve) => {
          w.onmessage = (e: MessageEvent<PageResult>) => resolve(e.data);
          w.postMessage([k, s]);
        });
      },
      [code, browserReps, SIZES] as const,
    );
    const lines = [
      `Chromium ${browser.version()} (headless), the page's main thread and a worker; kernels: ` +
        `${main.state} (main thread), ${worker.state} (worker). normalArray(key(0), 1e6) is ` +
        `${main.hash === nodeHash && worker.hash === nodeHash ? 'bit for bit' : 'NOT'} what Node ` +
        `draws (FNV-1a ${main.hash.toString(16)}); median (best) of ${browserReps} samples.`,
      '',
      '| where | op | n | JS | WebAssembly | speed-up |',
      '| --- | --- | ---: | ---: | ---: | ---: |',
    ];
    for (const [where, res] of [
      ['main thread', main],
      ['worker', worker],
    ] as const) {
      for (const row of res.rows)
        lines.push(`| ${where} ${rateRow(row.op, row.n, row.js, row.wasm)}`);
    }
    return lines;
  } finally {
    await browser.close();
  }
}

/** FNV-1a (32 bit) of the float32 bit patterns. */
function fnv(f: Float32Array): number {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  let h = 0x811c9dc5;
  for (let i = 0; i < u.length; i++) h = Math.imul(h ^ (u[i] as number), 0x01000193) >>> 0;
  return h;
}

async function main(): Promise<void> {
  tf.env().set('IS_TEST', true); // only silences tfjs's "install tfjs-node" banner
  await tf.setBackend('cpu');
  await tf.ready();
  const k = key(0);
  const state = kernelState();
  const keyCount = Math.max(1, Math.floor(n / 10));
  const load0 = loadavg();

  // 1. every sampler on the default path
  const ops: [string, number, () => unknown][] = [
    ['bits (Uint32Array)', n, () => bits(k, n)],
    ['uniformArray [0, 1)', n, () => uniformArray(k, n)],
    ['uniformArray [-2, 3)', n, () => uniformArray(k, n, -2, 3)],
    ['normalArray', n, () => normalArray(k, n)],
    ['rademacherArray', n, () => rademacherArray(k, n)],
    ['bernoulliArray p = 0.3', n, () => bernoulliArray(k, n, 0.3)],
    [
      `normal tensor (${tf.getBackend()}, incl. upload)`,
      n,
      () => {
        const t = normal(k, [n]);
        t.dispose();
        return t.shape;
      },
    ],
    ['split (keys)', keyCount, () => split(k, keyCount)],
    [
      'foldIn (keys, one call each)',
      keyCount,
      () => {
        let last = k;
        for (let i = 0; i < keyCount; i++) last = foldIn(k, i);
        return last;
      },
    ],
  ];
  console.log('timing the samplers ...');
  const rows1 = ops.map(([op, count, run]) => {
    const ms = median(interleaved([run])[0] ?? []);
    return `| ${op} | ${count} | ${ms.toFixed(3)} | ${mps(count, ms)} |`;
  });

  // 2. WebAssembly against the JS fallback, alternately
  console.log('timing WebAssembly against JS ...');
  const rows2: string[] = [];
  const hot: [string, (buf: Float32Array) => unknown][] = [
    ['normals into a buffer (the kernel)', (buf) => fillNormal(k[0], k[1], buf.length, buf)],
    ['normalArray (a new array a call)', (buf) => normalArray(k, buf.length)],
    ['bits (a new array a call)', (buf) => bits(k, buf.length)],
    ['uniformArray [0, 1) (a new array a call)', (buf) => uniformArray(k, buf.length)],
  ];
  for (const [op, draw] of hot) {
    for (const m of SIZES) {
      const buf = new Float32Array(m);
      const [wasm = [], js = []] = interleaved([() => draw(buf), onJs(() => draw(buf))]);
      rows2.push(rateRow(op, m, js, wasm));
    }
  }
  const load1 = loadavg();

  // 3. Chromium
  const rows3 = process.argv.includes('--no-browser')
    ? ['(left out: --no-browser)']
    : await chromiumRows(fnv(normalArray(k, 1_000_000)));

  const cpu = cpus()[0]?.model ?? 'unknown cpu';
  const avg = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  const lines = [
    '# PRNG throughput',
    '',
    `Node ${process.version}, ${cpu} (${cpus().length} cores; load average ${avg(load0)} at ` +
      `start, ${avg(load1)} after the Node tables), ${new Date().toISOString().slice(0, 10)}; ` +
      `kernels: ${state}. Median of ${reps} samples after 3 warm-up rounds (a sample repeats ` +
      'the call for at least 2 ms); `npx tsx bench/prng.ts`.',
    '',
    '## Samplers (the default path)',
    '',
    '| op | n | ms (median) | million/s |',
    '| --- | ---: | ---: | ---: |',
    ...rows1,
    '',
    '## WebAssembly SIMD kernels against the plain-JS fallback',
    '',
    'Million values per second, median (best); the two paths alternate. The JS path is the code',
    'the kernels replaced; both give the same bits. "A new array a call" includes allocating the',
    "result, a zero-filled backing store outside V8's heap: in back-to-back calls the allocator",
    'often hands out fresh pages, and on this VM their page faults (perf: memset under',
    "V8's Heap::AllocateExternalBackingStore) cost up to about 11 ns a value, as much as the",
    'kernel; callers that fill buffers they keep see the kernel rate.',
    '',
    '| op | n | JS | WebAssembly | speed-up |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows2,
    '',
    '## In the browser',
    '',
    ...rows3,
    '',
  ];
  const table = lines.join('\n');
  console.log(table);
  if (sink < 0) console.log(sink); // keep results observable
  const out = join(here, 'results', 'prng.md');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, table);
  console.log(`written to ${out}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
