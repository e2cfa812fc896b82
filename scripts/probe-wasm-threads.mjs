#!/usr/bin/env node
/**
 * Probe: can @tensorflow/tfjs-backend-wasm 4.22's threaded-SIMD binary run under plain Node 20
 * (worker_threads) without patching node_modules?
 *
 *   node scripts/probe-wasm-threads.mjs            # runs every case in its own child process
 *   node scripts/probe-wasm-threads.mjs <case>     # one case, prints one JSON line
 *
 * Cases (a backend initialises once per process, hence one child each; ~1-2 s each):
 *   default        nothing changed (Node: WASM_HAS_MULTITHREAD_SUPPORT is false -> SIMD binary)
 *   forced         flag forced true, no shim (fails: ERR_WORKER_PATH)
 *   shim2-noglue   shim without rewriting the "load" Blob (worker dies: ENOENT blob:nodedata:...)
 *   shim2-blobsrc  shim, Blob's own text written to a file (worker dies: require$$0 not defined)
 *   shim2-nocpus   shim without the os.cpus() report (works, but capped at 1 thread)
 *   simd           flag forced false: the single-threaded SIMD binary, reference for results
 *   shim1, shim2   full shim, setThreadsCount(1|2): timings and bit-for-bit comparison
 * Line numbers below are in node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.node.js.
 */
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout } from 'node:timers';
import { fileURLToPath } from 'node:url';
import { Worker as NodeWorker } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const self = fileURLToPath(import.meta.url);
const CASES = [
  'default',
  'forced',
  'shim2-noglue',
  'shim2-blobsrc',
  'shim2-nocpus',
  'simd',
  'shim1',
  'shim2',
];

/**
 * Makes the threaded glue's pthread pool work in Node. Three things stop it without this:
 * 1. tfjs's locateFile hands the glue a `blob:nodedata:...` URL for the pthread worker script
 *    (tf-backend-wasm.node.js:9324-9330) and the glue does `new Worker(url)` (line 8145) with
 *    `Worker = worker_threads.Worker` (line 7741): Node throws ERR_WORKER_PATH.
 * 2. The "load" message sends `mainScriptUrlOrBlob`, a Blob of `factory.toString()` (line 9363),
 *    which the worker imports with `importScripts` = eval(fs.readFileSync(url)): no such file,
 *    and the rollup'd factory's source refers to bundle-scope names (require$$0, commonjsGlobal).
 * The shim: a `Worker` class that runs the package's own worker script (wasm-out/...worker.js,
 * which has a Node branch) via `eval: true`, and rewrites the Blob to the on-disk Emscripten glue
 * (wasm-out/tfjs-backend-wasm-threaded-simd.js). Installed as an accessor on globalThis whose
 * setter ignores the glue's `commonjsGlobal.Worker = nodeWorkerThreads.Worker`. (3: below.)
 * Call before tf.setBackend('wasm'), with the flag forced true and setThreadsCount(threads);
 * returns an uninstall function for after it resolves (the pool of 8 workers exists by then).
 */
export function installWasmThreadsShim(
  threads,
  { rewriteGlue = true, fakeCpus = true, blobToFile = false } = {},
) {
  const pkgDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  const glue = path.join(pkgDir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = require(
    path.join(pkgDir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.worker.js'),
  );
  // Same escaping tfjs applies before making its Blob (a raw "\n" sits inside a string literal).
  const workerSource = wasmWorkerContents.replace(/\n/g, '\\n');
  class PthreadWorker extends NodeWorker {
    constructor(_url, options) {
      super(workerSource, { ...options, eval: true });
    }
    // The glue ref()s a worker while its pthread runs (line 8005): pthreadpool's threads never
    // end, so Node would never exit. They only ever wait for work the main thread hands them
    // synchronously, so keep them unref'd.
    ref() {}
    postMessage(msg, transfer) {
      if (blobToFile && msg?.cmd === 'load' && typeof msg.urlOrBlob !== 'string') {
        // Probe only: what tfjs meant the worker to load (the Blob's text) as a real file.
        const file = path.join(os.tmpdir(), `tfjs-wasm-glue-${process.pid}.js`);
        msg.urlOrBlob.text().then((t) => {
          writeFileSync(file, t);
          super.postMessage({ ...msg, urlOrBlob: file }, transfer);
        });
        return;
      }
      if (rewriteGlue && msg && msg.cmd === 'load' && typeof msg.urlOrBlob !== 'string') {
        msg = { ...msg, urlOrBlob: glue };
      }
      return super.postMessage(msg, transfer);
    }
  }
  const had = Object.getOwnPropertyDescriptor(globalThis, 'Worker');
  Object.defineProperty(globalThis, 'Worker', {
    configurable: true,
    get: () => PthreadWorker,
    set: () => {}, // swallow the glue's `commonjsGlobal.Worker = nodeWorkerThreads.Worker`
  });
  // 3. The C++ side caps the pool at emscripten_num_logical_cores() / 2 (backend.cc:
  //    init_with_threads_count: min(max(n,1), 8, num_cores), num_cores = logical/2, "hyperthreads"),
  //    and in Node that is os.cpus().length (line 8236). On a 2-CPU box that caps it at 1 thread.
  //    Report >= 2*threads CPUs while the module initialises (num_cores is a C++ static, read once).
  const realCpus = os.cpus;
  if (fakeCpus)
    os.cpus = () => {
      const r = realCpus.call(os);
      return r.length >= 2 * threads
        ? r
        : Array.from({ length: 2 * threads }, (_, i) => r[i % r.length]);
    };
  return () => {
    os.cpus = realCpus;
    if (had) Object.defineProperty(globalThis, 'Worker', had);
    else delete globalThis.Worker;
  };
}

function seeded(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

function fnv(arr) {
  const u = new Uint32Array(arr.buffer, arr.byteOffset, arr.length);
  let h = 0x811c9dc5;
  for (const x of u) h = Math.imul(h ^ x, 16777619) >>> 0;
  return h.toString(16);
}

async function runCase(name) {
  const tf = require('@tensorflow/tfjs-core');
  const wasm = require('@tensorflow/tfjs-backend-wasm');
  const out = { case: name };
  out.detectedMultithread = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  out.detectedSimd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  let uninstall = () => {};
  if (name !== 'default' && name !== 'simd') tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  if (name === 'simd') tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  if (name.startsWith('shim')) {
    const n = Number(name.slice(4, 5));
    wasm.setThreadsCount(n);
    uninstall = installWasmThreadsShim(n, {
      rewriteGlue: !name.endsWith('-noglue'),
      fakeCpus: !name.endsWith('-nocpus'),
      blobToFile: name.endsWith('-blobsrc'),
    });
  }
  const errs = [];
  const [origErr, origWarn] = [console.error, console.warn];
  console.error = console.warn = (...a) => errs.push(a.map(String).join(' ').split('\n')[0]);
  let t0 = performance.now();
  try {
    // A pthread that fails to load never answers: bound the wait (setBackend would hang).
    out.setBackend = await Promise.race([
      tf.setBackend('wasm'),
      new Promise((r) => setTimeout(() => r('timed out after 10 s'), 10_000).unref()),
    ]);
  } catch (e) {
    out.setBackend = `threw: ${e?.message ?? e}`;
  } finally {
    console.error = origErr;
    console.warn = origWarn;
    uninstall();
  }
  out.initMs = Math.round(performance.now() - t0);
  if (errs.length) out.initErrors = errs.slice(0, 3);
  if (out.setBackend !== true) return out;
  const mod = tf.backend().wasm;
  out.binary = 'PThread' in mod ? 'threaded-simd' : 'simd-or-plain';
  out.threads = wasm.getThreadsCount();
  if ('PThread' in mod)
    out.pthreadPool = mod.PThread.unusedWorkers.length + mod.PThread.runningWorkers.length;

  // Small exact-comparison ops (hash of the float bits).
  const a = tf.tensor2d(seeded(64 * 96, 1), [64, 96]);
  const b = tf.tensor2d(seeded(96 * 80, 2), [96, 80]);
  out.matmulHash = fnv(tf.matMul(a, b).dataSync());
  const x = tf.tensor4d(seeded(2 * 17 * 19 * 8, 3), [2, 17, 19, 8]);
  const f = tf.tensor4d(seeded(3 * 3 * 8 * 16, 4), [3, 3, 8, 16]);
  out.conv2dHash = fnv(tf.conv2d(x, f, 1, 'same').dataSync());

  // Timing: median of 5 (after 1 warm-up), plus process CPU time / wall time over the 5 runs
  // (process.cpuUsage counts every thread, so ~2 means the pthread pool did half the work).
  out.cpuPerWall = {};
  const time = (fn, key) => {
    fn().dispose();
    const ts = [];
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    for (let i = 0; i < 5; i++) {
      t0 = performance.now();
      const r = fn();
      r.dataSync();
      ts.push(performance.now() - t0);
      r.dispose();
    }
    const c = process.cpuUsage(c0);
    out.cpuPerWall[key] =
      Math.round(((c.user + c.system) / 1000 / (performance.now() - w0)) * 100) / 100;
    ts.sort((p, q) => p - q);
    return Math.round(ts[2] * 10) / 10; // median
  };
  const A = tf.tensor2d(seeded(1024 * 1024, 5), [1024, 1024]);
  const B = tf.tensor2d(seeded(1024 * 1024, 6), [1024, 1024]);
  out.matmul1024Ms = time(() => tf.matMul(A, B), 'matmul');
  const A5 = tf.tensor2d(seeded(512 * 512, 10), [512, 512]);
  out.matmul512TransposedMs = time(() => tf.matMul(A5, A5, false, true), 'matmulT'); // slow_batch_matmul path
  const X = tf.tensor4d(seeded(8 * 64 * 64 * 32, 7), [8, 64, 64, 32]);
  const F = tf.tensor4d(seeded(3 * 3 * 32 * 64, 8), [3, 3, 32, 64]);
  out.conv2dMs = time(() => tf.conv2d(X, F, 1, 'same'), 'conv2d');
  // Big outputs read back after the heap has grown (shared memory: JS views must follow growth).
  out.bigHashes = `${fnv(tf.matMul(A, B).dataSync())}/${fnv(tf.conv2d(X, F, 1, 'same').dataSync())}`;
  out.heapMB = Math.round(mod.HEAPU8.length / 2 ** 20);
  out.rssMB = Math.round(process.memoryUsage().rss / 2 ** 20);
  const D = tf.tensor2d(seeded(256 * 2048, 9), [256, 2048]);
  out.addMs = time(() => tf.add(D, D), 'add'); // elementwise: not an XNNPACK op
  return out;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === self;
const arg = isMain ? process.argv[2] : undefined;
if (!isMain) {
  // imported (for installWasmThreadsShim): run nothing
} else if (arg) {
  const r = await runCase(arg);
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
  process.exit(0); // pthread workers are unref'd, but exit explicitly anyway
} else {
  console.log(`node ${process.version}; cases run in child processes`);
  const results = {};
  for (const c of CASES) {
    const p = spawnSync(process.execPath, [self, c], { encoding: 'utf8', timeout: 60_000 });
    const line = (p.stdout || '').split('\n').find((l) => l.startsWith('RESULT '));
    const errLine = (p.stderr || '').split('\n').find((l) => /Error|error/.test(l));
    results[c] = line
      ? JSON.parse(line.slice(7))
      : { case: c, processDied: p.status ?? p.signal, firstErrorLine: errLine?.trim() };
    rmSync(path.join(os.tmpdir(), `tfjs-wasm-glue-${p.pid}.js`), { force: true }); // blobsrc
    console.log(JSON.stringify(results[c]));
  }
  const s = results.simd,
    t1 = results.shim1,
    t2 = results.shim2;
  if (s?.matmulHash && t2?.matmulHash) {
    const same = (k) => (t2[k] === s[k] ? 'identical' : 'DIFFERENT');
    console.log(
      `threaded(2) vs simd, bit for bit: small matMul ${same('matmulHash')}, ` +
        `small conv2d ${same('conv2dHash')}, 1024 matMul/8x64x64x32 conv2d ${same('bigHashes')}`,
    );
  }
  if (t1?.matmul1024Ms && t2?.matmul1024Ms) {
    console.log(
      `speed-up 1->2 threads: matMul 1024^3 x${(t1.matmul1024Ms / t2.matmul1024Ms).toFixed(2)}, ` +
        `conv2d x${(t1.conv2dMs / t2.conv2dMs).toFixed(2)}, 512 matMul(b^T) x${(t1.matmul512TransposedMs / t2.matmul512TransposedMs).toFixed(2)}`,
    );
  }
}
