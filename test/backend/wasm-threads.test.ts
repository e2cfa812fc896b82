/**
 * `useBackend('wasm', { threads })`: the option's validation, the once-per-process rule, and (in
 * child processes, since a process initialises the wasm module once) that threads = 2 starts the
 * threaded binary with 2 threads, gives results bit for bit equal to one thread (a matMul, a
 * conv2d and one Bayesian training step through the public API), lets the process exit by itself,
 * and that a threaded start that fails leaves the process usable on one thread.
 *
 * `BLITZ_TEST_WASM_KERNELS_THREADS=2 npx vitest run test/backend/wasm-threads.test.ts` also runs
 * test/backend/wasm-kernels.test.ts with the wasm backend on 2 threads (a few minutes).
 */
import * as tf from '@tensorflow/tfjs-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BackendError, useBackend, WASM_MAX_THREADS } from '../../src/backend';
import { ConfigError } from '../../src/errors';

const root = path.resolve(__dirname, '../..');

afterAll(async () => {
  await useBackend('cpu');
});

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe("useBackend's threads option", () => {
  it('rejects a thread count that is not an integer from 1 to 8, naming the option', async () => {
    for (const bad of [0, -1, 1.5, NaN, Infinity, WASM_MAX_THREADS + 1, '2', null, true]) {
      const e = await rejection(useBackend('wasm', { threads: bad as number }));
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).owner).toBe("useBackend('wasm')");
      expect((e as ConfigError).problems[0]).toMatch(/^threads must be /);
    }
    const e = await rejection(useBackend('wasm', { threads: 9 }));
    expect((e as Error).message).toContain('at most 8');
  });

  it('rejects threads for a backend other than wasm', async () => {
    for (const name of ['cpu', 'webgl', 'tensorflow'] as const) {
      const e = await rejection(useBackend(name, { threads: 2 }));
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as Error).message).toContain('threads is an option of the wasm backend only');
    }
    expect(tf.getBackend()).toBe('cpu'); // nothing changed
  });

  it('keeps the first thread count of the process and says so when another is asked for', async () => {
    // This file's process initialises wasm with the default (one thread) here.
    expect(await useBackend('wasm')).toBe('wasm');
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    expect(wasm.getThreadsCount()).toBe(1);
    expect(await useBackend('wasm', { threads: 1 })).toBe('wasm'); // the same count: fine
    await useBackend('cpu');
    const e = await rejection(useBackend('wasm', { threads: 2 }));
    expect(e).toBeInstanceOf(BackendError);
    expect((e as BackendError).code).toBe('INIT_FAILED');
    expect((e as Error).message).toContain('already initialised in this process with 1 thread');
    expect((e as Error).message).toContain("first useBackend('wasm', ...) call");
    expect(tf.getBackend()).toBe('cpu');
    expect(wasm.getThreadsCount()).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Child processes. Each prints one `RESULT {...}` line and must exit by itself (no process.exit).

const CHILD = `
import * as tf from '@tensorflow/tfjs-core';
import os from 'node:os';
import { layers, optim, random, transforms, useBackend } from './src/index.ts';
import { wasmThreadsFaults } from './src/backend.ts';

const threads = Number(process.env.THREADS);
const out = { cpusBefore: os.cpus().length };
const wasm = await import('@tensorflow/tfjs-backend-wasm');
if (process.env.BREAK_GLUE) {
  wasmThreadsFaults.glueFile = '/nonexistent/tfjs-backend-wasm-threaded-simd.js';
  await useBackend('cpu');
  try {
    await useBackend('wasm', { threads });
    out.failure = 'none';
  } catch (e) {
    out.failure = e.name + ' ' + e.code + ': ' + e.message;
  }
  out.afterFailure = tf.getBackend();
  out.backend = await useBackend('wasm');
} else {
  const t0 = performance.now();
  out.backend = await useBackend('wasm', { threads });
  out.initMs = Math.round(performance.now() - t0);
}
out.threads = wasm.getThreadsCount();
out.pthreads = 'PThread' in tf.backend().wasm;
out.workerGlobal = typeof globalThis.Worker;
out.cpusAfter = os.cpus().length;

function seeded(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}
function fnv(...arrs) {
  let h = 0x811c9dc5;
  for (const arr of arrs)
    for (const x of new Uint32Array(arr.buffer, arr.byteOffset, arr.length))
      h = Math.imul(h ^ x, 16777619) >>> 0;
  return h.toString(16);
}
const a = tf.tensor2d(seeded(256 * 384, 1), [256, 384]);
const b = tf.tensor2d(seeded(384 * 320, 2), [384, 320]);
out.matMul = fnv(tf.matMul(a, b).dataSync());
const x = tf.tensor4d(seeded(4 * 24 * 24 * 16, 3), [4, 24, 24, 16]);
const f = tf.tensor4d(seeded(3 * 3 * 16 * 32, 4), [3, 3, 16, 32]);
out.conv2d = fnv(tf.conv2d(x, f, 1, 'same').dataSync());

// One Bayesian training step (conv, dense, their gradients, adam) through the package entry.
const { serial, bayesianConv2d, bayesianLinear, relu, flatten } = layers;
const model = serial({
  conv: bayesianConv2d({ inChannels: 2, outChannels: 8, kernelSize: 3 }),
  act: relu(),
  flat: flatten(),
  out: bayesianLinear({ inFeatures: 8 * 10 * 10, outFeatures: 3 }),
});
const k = random.key(7);
const lik = transforms.mse();
const opt = optim.adam({ learningRate: 0.01 });
const params = { model: model.init(random.foldIn(k, 0), [-1, 12, 12, 2]).params, likelihood: lik.init() };
const xs = random.normal(random.foldIn(k, 1), [16, 12, 12, 2]);
const ys = random.normal(random.foldIn(k, 2), [16, 3]);
const step = transforms.trainStep(transforms.elbo(model, lik, { numSamples: 2 }), opt);
const r = step({ params, optState: opt.init(params), step: 0 }, xs, ys, random.foldIn(k, 3), 1 / 16);
out.loss = r.loss;
const leaves = [r.state.params.model.conv.kernel.mu, r.state.params.model.conv.kernel.rho,
  r.state.params.model.out.kernel.mu, r.state.params.model.out.kernel.rho];
out.trainStep = fnv(...leaves.map((t) => t.dataSync()));
process.stdout.write('RESULT ' + JSON.stringify(out) + '\\n');
`;

interface ChildResult {
  backend: string;
  threads: number;
  pthreads: boolean;
  workerGlobal: string;
  cpusBefore: number;
  cpusAfter: number;
  initMs?: number;
  failure?: string;
  afterFailure?: string;
  matMul: string;
  conv2d: string;
  loss: number;
  trainStep: string;
}

let dir = '';

/** Runs the child script with `env`; rejects unless it exits with 0 by itself within 60 s. */
function child(env: Record<string, string>): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    // `--input-type=module -e`: the script resolves its imports from the repository root.
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
      cwd: root,
      env: { ...process.env, ...env, NODE_OPTIONS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || signal !== null || !line) {
        reject(
          new Error(
            `child ${JSON.stringify(env)} ended with ${signal ?? `exit ${code}`}` +
              `${signal === 'SIGKILL' ? ' (killed after 60 s: it did not exit by itself)' : ''}:\n` +
              `${stdout}\n${stderr.split('\n').slice(-20).join('\n')}`,
          ),
        );
      } else {
        resolve(JSON.parse(line.slice('RESULT '.length)) as ChildResult);
      }
    });
  });
}

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('threads = 2 in Node (child processes)', () => {
  it('runs on 2 threads, bit for bit equal to 1 thread, exits by itself, falls back cleanly', async () => {
    const [one, two, broken] = await Promise.all([
      child({ THREADS: '1' }),
      child({ THREADS: '2' }),
      child({ THREADS: '2', BREAK_GLUE: '1' }),
    ]);
    expect(one).toMatchObject({ backend: 'wasm', threads: 1, pthreads: false });
    expect(two).toMatchObject({ backend: 'wasm', threads: 2, pthreads: true });
    // the shim is gone once the backend is up
    expect(two.workerGlobal).toBe('undefined');
    expect(two.cpusAfter).toBe(two.cpusBefore);
    expect(Number.isFinite(one.loss)).toBe(true);
    for (const k of ['matMul', 'conv2d', 'loss', 'trainStep'] as const) {
      expect(two[k], k).toBe(one[k]);
    }
    // a threaded start that fails rejects (the process lives), and one thread still works
    expect(broken.failure).toMatch(/^BackendError INIT_FAILED: .*could not be started in Node/);
    expect(broken.afterFailure).toBe('cpu'); // the backend active before
    expect(broken).toMatchObject({ backend: 'wasm', threads: 1, pthreads: false });
    expect(broken.trainStep).toBe(one.trainStep);
  }, 90_000);

  it.runIf(process.env.BLITZ_TEST_WASM_KERNELS_THREADS)(
    'test/backend/wasm-kernels.test.ts passes on the threaded wasm backend',
    async () => {
      if (!dir) dir = mkdtempSync(path.join(tmpdir(), 'blitz-wasm-threads-'));
      const threads = Number(process.env.BLITZ_TEST_WASM_KERNELS_THREADS);
      // An extra setup file that starts wasm on `threads` threads before the test file runs
      // (its own `useBackend('wasm')` then finds it initialised and keeps the count; useBackend
      // checks the count). It imports nothing by a bare name: resolved from the temporary
      // folder, a package would be a second copy.
      const setup = path.join(dir, 'threads-setup.ts');
      writeFileSync(
        setup,
        `import { useBackend } from ${JSON.stringify(path.join(root, 'src/backend.ts'))};\n` +
          `await useBackend('wasm', { threads: ${threads} });\n` +
          `console.log('wasm-kernels: the wasm backend runs on ${threads} threads');\n`,
      );
      const config = path.join(dir, 'vitest.threads.config.mjs');
      writeFileSync(
        config,
        `export default ${JSON.stringify({
          root,
          resolve: {
            alias: [{ find: 'blitz-ts', replacement: path.join(root, 'src/index.ts') }],
          },
          test: {
            include: ['test/backend/wasm-kernels.test.ts'],
            setupFiles: [path.join(root, 'test/setup.ts'), setup],
            testTimeout: 120_000,
            hookTimeout: 120_000,
            pool: 'forks',
          },
        })};\n`,
      );
      await new Promise<void>((resolve, reject) => {
        const p = spawn(
          process.execPath,
          [path.join(root, 'node_modules/vitest/vitest.mjs'), 'run', '--config', config],
          { cwd: root, env: { ...process.env }, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let output = '';
        p.stdout.on('data', (d: Buffer) => (output += d.toString()));
        p.stderr.on('data', (d: Buffer) => (output += d.toString()));
        p.on('close', (code) => {
          console.log(output);
          if (code === 0 && output.includes(`the wasm backend runs on ${threads} threads`))
            resolve();
          else reject(new Error(`wasm-kernels on ${threads} threads failed:\n${output}`));
        });
      });
    },
    900_000,
  );
});
