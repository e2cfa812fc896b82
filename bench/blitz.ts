/**
 * blitz-ts against blitz (the Python library it ports) on blitz's own workloads, measured in ONE
 * run so that the ratios hold on a shared, noisy machine (issue 10):
 *
 *   1. regression: Bayesian MLP 13-512-1, batch 16, mse, 3 posterior samples, adam 0.01, KL 1/379
 *   2. lenet: bayesianLeNet5 on 28x28x1, batch 64, softmax cross-entropy (int32 labels), 3 samples,
 *      adam 0.001, KL 1/50000
 *   3. lstm: bayesianLSTM(8 -> 64) over 32 steps, batch 32, lastTimeStep, bayesianLinear 64 -> 1,
 *      mse, 3 samples, adam 0.001, KL 1/1024
 *   4. predict: predictive(regression MLP, 1000 inputs [1000, 13], 100 samples), read back
 *
 * A training call is one `trainStep(elbo(model, lik, { numSamples: 3 }), adam(...))` step (its
 * one loss read included); the shapes are those of ../shared/anchors/blitz_bench/bench_blitz.py,
 * the anchor measured against. Each round (default 3) runs that script once (`--threads 1
 * --rounds 1`, when BLITZ_SRC and /usr/bin/python3 with torch are there), then every workload on
 * every backend: warm-up, then >= 30 timed calls and >= 0.4 s; a workload whose round takes more
 * than 8 s gets one round (the anchor's rules). Headline: the median of the best undisturbed round.
 * Writes bench/results/blitz.md (full runs; partial ones print, or write to --out).
 *
 * `--threads N` (default 1): blitz-ts's wasm backend on N threads (`useBackend('wasm', { threads:
 * N })`, the threaded SIMD binary; the cpu backend has one thread whatever N is) and the anchor
 * with `--threads N` (torch and its BLAS pools on N threads), in the same run; a full run writes
 * bench/results/blitz-threads<N>.md instead (N > 1), leaving blitz.md as it is.
 *
 *   npm run bench:blitz                                        # blitz-ts only, says what is missing
 *   BLITZ_SRC=../shared/reference/blitz-0.2.8 npm run bench:blitz
 *   npm run bench:blitz -- --only lstm,predict --backend wasm --rounds 1
 *   npm run bench:blitz -- --threads 2                       # bench/results/blitz-threads2.md
 *
 * Flags: --only <regression,lenet,lstm,predict> (name prefixes), --backend <cpu,wasm>, --rounds N,
 * --min-steps N (timed calls per round, default 30, also passed to the anchor), --no-blitz (skip
 * Python), --out <file.md>, --threads N. `BLITZ_PROFILE_DUMP=<file>` appends every profiled call's
 * kernels (ms, name, input and output shapes; one call per block) to that file.
 */
import * as tf from '@tensorflow/tfjs-core';
import { spawn, spawnSync } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  layers,
  optim,
  random,
  transforms,
  tree,
  useBackend,
  type BackendName,
  type Key,
  type ParamTree,
} from 'blitz-ts';

// Prod mode for benchmarking: no debug checks or NaN checks on kernel outputs, no warnings.
tf.enableProdMode();

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const ANCHOR = path.resolve(root, '../shared/anchors/blitz_bench/bench_blitz.py');
const PYTHON = '/usr/bin/python3';

// ---------------------------------------------------------------------------------------------
// options

const WORKLOAD_NAMES = ['regression', 'lenet', 'lstm', 'predict'] as const;
type WorkloadName = (typeof WORKLOAD_NAMES)[number];
const BACKENDS = ['wasm', 'cpu'] as const;
type Be = (typeof BACKENDS)[number];

/** The anchor's timing rules (bench_blitz.py defaults). */
const RULES = {
  warmup: 10,
  warmupCapFirst: 2.0,
  warmupCapLater: 0.5,
  minSteps: 30,
  minTime: 0.4,
  maxSteps: 1000,
  roundBudget: 8.0,
  quickRound: 2.0,
  slowRound: 30,
  maxOthers: 0.15,
  retries: 2,
  timeBudget: 300,
};

interface Options {
  only: WorkloadName[];
  backends: Be[];
  rounds: number;
  blitz: boolean;
  out: string | undefined;
  full: boolean;
  /** wasm's and the anchor's threads (`--threads N`, default 1). */
  threads: number;
}

function usage(msg: string): never {
  console.error(
    `${msg}\nusage: tsx bench/blitz.ts [--only ${WORKLOAD_NAMES.join(',')}] ` +
      `[--backend ${BACKENDS.join(',')}] [--rounds N] [--min-steps N] [--no-blitz] [--out file.md] ` +
      '[--threads N]',
  );
  process.exit(2);
}

function parseOptions(argv: readonly string[]): Options {
  let only: WorkloadName[] = [...WORKLOAD_NAMES];
  let backends: Be[] = [...BACKENDS];
  let rounds = 3;
  let blitz = true;
  let out: string | undefined;
  let threads = 1;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const [flag, inline] = a.includes('=')
      ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
      : [a];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') usage(`${flag} needs a value`);
      return v;
    };
    if (flag === '--only') {
      const ps = value().split(',').filter(Boolean);
      only = WORKLOAD_NAMES.filter((n) => ps.some((p) => n.startsWith(p)));
      if (only.length === 0) usage(`--only ${ps.join(',')} matches no workload`);
    } else if (flag === '--backend' || flag === '--backends') {
      const bs = value().split(',').filter(Boolean);
      for (const b of bs)
        if (!(BACKENDS as readonly string[]).includes(b)) usage(`unknown backend ${b}`);
      backends = BACKENDS.filter((b) => bs.includes(b));
    } else if (flag === '--rounds') {
      rounds = Number(value());
      if (!Number.isInteger(rounds) || rounds < 1) usage('--rounds must be an integer >= 1');
    } else if (flag === '--min-steps') {
      RULES.minSteps = Number(value());
      if (!Number.isInteger(RULES.minSteps) || RULES.minSteps < 1)
        usage('--min-steps must be an integer >= 1');
    } else if (flag === '--threads') {
      threads = Number(value());
      if (!Number.isInteger(threads) || threads < 1 || threads > 8)
        usage('--threads must be an integer from 1 to 8');
    } else if (flag === '--no-blitz') {
      blitz = false;
    } else if (flag === '--out') {
      out = path.resolve(value());
    } else if (flag === '--help' || flag === '-h') {
      usage('bench/blitz.ts: blitz-ts vs blitz, one thread (or --threads N), one run');
    } else {
      usage(`unknown argument ${a}`);
    }
  }
  const full = only.length === WORKLOAD_NAMES.length && backends.length === BACKENDS.length;
  return { only, backends, rounds, blitz, out, full, threads };
}

// ---------------------------------------------------------------------------------------------
// workloads through the public API

interface Runner {
  /** One timed call. */
  call(): void;
  /** Disposes everything the workload made. */
  dispose(): void;
}

interface WorkloadSpec {
  readonly name: WorkloadName;
  /** The anchor's workload name. */
  readonly blitz: string;
  readonly title: string;
  readonly setup: () => Runner;
}

type Batch = readonly [tf.Tensor, tf.Tensor];

interface StepResult<P extends ParamTree, S extends optim.OptState> {
  state: transforms.TrainState<P, S>;
  loss: number;
}

/** A training workload: one `trainStep` per call, batches cycled, a fresh key per step. */
function trainRunner<P extends ParamTree, S extends optim.OptState>(
  step: (
    state: transforms.TrainState<P, S>,
    x: tf.Tensor,
    y: tf.Tensor,
    key: Key,
    klWeight: number,
  ) => StepResult<P, S>,
  init: transforms.TrainState<P, S>,
  batches: readonly Batch[],
  klWeight: number,
  key: Key,
): Runner {
  let state = init;
  let i = 0;
  return {
    call() {
      const [x, y] = batches[i % batches.length] as Batch;
      state = step(state, x, y, random.foldIn(key, i), klWeight).state;
      i++;
    },
    dispose() {
      tree.dispose(state.params);
      tree.dispose(state.optState);
      for (const b of batches) tf.dispose([...b]);
    },
  };
}

function regressor() {
  const { serial, bayesianLinear, relu } = layers;
  return serial({
    blinear1: bayesianLinear({ inFeatures: 13, outFeatures: 512, name: 'blinear1' }),
    relu: relu(),
    blinear2: bayesianLinear({ inFeatures: 512, outFeatures: 1, name: 'blinear2' }),
  });
}

/**
 * The anchor's regression data: 379 rows (Boston's train split) of 13 standard-normal features,
 * y = X w + 0.3 noise, standardised; shuffled into 23 batches of 16 (drop_last), cycled.
 */
function regressionBatches(k: Key): Batch[] {
  const n = 379;
  const bs = 16;
  const X = random.normal(random.foldIn(k, 1), [n, 13]);
  const y = tf.tidy(() => {
    const w = random.normal(random.foldIn(k, 2), [13, 1]);
    const noise = random.normal(random.foldIn(k, 3), [n, 1]);
    const raw = tf.add(tf.matMul(X, w), tf.mul(noise, 0.3));
    const { mean, variance } = tf.moments(raw);
    return tf.div(tf.sub(raw, mean), tf.sqrt(variance));
  });
  const perm = transforms.permutation(random.foldIn(k, 4), n);
  const out: Batch[] = [];
  for (let i = 0; i + bs <= n; i += bs) {
    const idx = tf.tensor1d(perm.subarray(i, i + bs), 'int32');
    out.push([tf.gather(X, idx), tf.gather(y, idx)]);
    idx.dispose();
  }
  tf.dispose([X, y]);
  return out;
}

function setupRegression(): Runner {
  const k = random.key(0);
  const model = regressor();
  const lik = transforms.mse();
  const opt = optim.adam({ learningRate: 0.01 });
  const params = {
    model: model.init(random.foldIn(k, 0), [-1, 13]).params,
    likelihood: lik.init(),
  };
  const step = transforms.trainStep(transforms.elbo(model, lik, { numSamples: 3 }), opt);
  const init = { params, optState: opt.init(params), step: 0 };
  return trainRunner(step, init, regressionBatches(k), 1 / 379, random.foldIn(k, 5));
}

function setupLenet(): Runner {
  const k = random.key(1);
  const model = layers.bayesianLeNet5();
  const lik = transforms.softmaxCrossEntropy();
  const opt = optim.adam({ learningRate: 0.001 });
  const params = {
    model: model.init(random.foldIn(k, 0), [-1, 28, 28, 1]).params,
    likelihood: lik.init(),
  };
  const step = transforms.trainStep(transforms.elbo(model, lik, { numSamples: 3 }), opt);
  const init = { params, optState: opt.init(params), step: 0 };
  const batches: Batch[] = [];
  for (let b = 0; b < 4; b++) {
    const kb = random.foldIn(k, 10 + b);
    const x = random.uniform(random.foldIn(kb, 0), [64, 28, 28, 1]);
    const u = random.uniformArray(random.foldIn(kb, 1), 64);
    const labels = Int32Array.from(u, (v) => Math.min(9, Math.floor(v * 10)));
    batches.push([x, tf.tensor1d(labels, 'int32')]);
  }
  return trainRunner(step, init, batches, 1 / 50000, random.foldIn(k, 5));
}

function setupLstm(): Runner {
  const k = random.key(2);
  const { serial, bayesianLSTM, lastTimeStep, bayesianLinear } = layers;
  const model = serial({
    lstm: bayesianLSTM({ inFeatures: 8, outFeatures: 64, name: 'lstm' }),
    last: lastTimeStep(),
    linear: bayesianLinear({ inFeatures: 64, outFeatures: 1, name: 'linear' }),
  });
  const lik = transforms.mse();
  const opt = optim.adam({ learningRate: 0.001 });
  const params = {
    model: model.init(random.foldIn(k, 0), [-1, 32, 8]).params,
    likelihood: lik.init(),
  };
  const step = transforms.trainStep(transforms.elbo(model, lik, { numSamples: 3 }), opt);
  const init = { params, optState: opt.init(params), step: 0 };
  const batches: Batch[] = [];
  for (let b = 0; b < 4; b++) {
    const kb = random.foldIn(k, 10 + b);
    batches.push([
      random.normal(random.foldIn(kb, 0), [32, 32, 8]),
      random.normal(random.foldIn(kb, 1), [32, 1]),
    ]);
  }
  return trainRunner(step, init, batches, 1 / 1024, random.foldIn(k, 5));
}

function setupPredict(): Runner {
  const k = random.key(3);
  const model = regressor();
  const { params } = model.init(random.foldIn(k, 0), [-1, 13]);
  const x = random.normal(random.foldIn(k, 1), [1000, 13]);
  let i = 0;
  return {
    call() {
      const p = transforms.predictive(model, params, x, {
        key: random.foldIn(k, 100 + i++),
        numSamples: 100,
      });
      p.mean.dataSync();
      p.std.dataSync();
      tf.dispose([p.mean, p.std, p.samples]);
    },
    dispose() {
      tree.dispose(params);
      x.dispose();
    },
  };
}

const WORKLOADS: readonly WorkloadSpec[] = [
  {
    name: 'regression',
    blitz: 'regression/blitz/s3',
    title: 'regression: Bayesian MLP 13-512-1, batch 16, mse, 3 samples, train step',
    setup: setupRegression,
  },
  {
    name: 'lenet',
    blitz: 'lenet/blitz/s3',
    title: 'LeNet-5 28x28x1, batch 64, cross-entropy, 3 samples, train step',
    setup: setupLenet,
  },
  {
    name: 'lstm',
    blitz: 'lstm/blitz/s3',
    title:
      'LSTM(8 -> 64) x 32 steps, batch 32, last step -> Bayesian linear 64-1, 3 samples, train step',
    setup: setupLstm,
  },
  {
    name: 'predict',
    blitz: 'predict/blitz/no_grad',
    title: 'predict: 100 posterior samples x 1000 inputs of the regression MLP',
    setup: setupPredict,
  },
];

// ---------------------------------------------------------------------------------------------
// timing (the anchor's method) and the machine-quietness guard

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const CLK_TCK = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const v = Number(r.stdout?.trim());
  return Number.isFinite(v) && v > 0 ? v : 100;
})();

interface CpuSample {
  t: number;
  busy: number;
  own: number;
}

/** Busy CPU seconds of the whole machine (/proc/stat) and of this process, now. */
function cpuSample(): CpuSample | undefined {
  try {
    const v = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string)
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const busy = (v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0) + (v[7] ?? 0);
    const u = process.cpuUsage();
    return { t: performance.now() / 1e3, busy: busy / CLK_TCK, own: (u.user + u.system) / 1e6 };
  } catch {
    return undefined;
  }
}

/** Cores used by OTHER processes between two samples (0 where /proc/stat cannot be read). */
function othersCores(a: CpuSample | undefined, b: CpuSample | undefined): number {
  if (!a || !b || b.t <= a.t) return 0;
  return Math.max(0, (b.busy - a.busy - (b.own - a.own)) / (b.t - a.t));
}

let machineBusy = false;

/**
 * Waits (up to maxWait s, 1 s while the machine has stayed busy) until other processes use
 * < limit cores over 0.3 s.
 */
async function waitQuiet(limit = 0.1, maxWait = 3): Promise<number> {
  const t0 = performance.now();
  const cap = machineBusy ? Math.min(1, maxWait) : maxWait;
  for (;;) {
    const a = cpuSample();
    await sleep(300);
    const o = othersCores(a, cpuSample());
    machineBusy = o >= limit;
    if (o < limit || (performance.now() - t0) / 1e3 > cap) return o;
  }
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

/** bench_blitz.py's `bench`: capped warm-up, then >= minSteps calls and >= minTime seconds. */
function timeCalls(
  fn: () => void,
  warmupCap: number,
  afterWarmup: () => void,
): { times: number[]; warmup: number } {
  let w = 0;
  const w0 = performance.now();
  while (w < RULES.warmup && !(w >= 2 && (performance.now() - w0) / 1e3 > warmupCap)) {
    fn();
    w++;
  }
  afterWarmup();
  const times: number[] = [];
  const start = performance.now();
  for (;;) {
    const t0 = performance.now();
    fn();
    const t1 = performance.now();
    times.push(t1 - t0);
    const n = times.length;
    if (n >= RULES.maxSteps || (n >= RULES.minSteps && (t1 - start) / 1e3 >= RULES.minTime)) break;
  }
  return { times, warmup: w };
}

// ---------------------------------------------------------------------------------------------
// one round of one workload on one backend

interface Memory {
  tensors: number;
  bytes: number;
}

interface Profile {
  kernels: number;
  byCount: [string, number][];
  byTime: [string, number][];
  totalKernelMs: number;
  peakBytes: number;
  startBytes: number;
  newTensors: number;
}

interface Round {
  median: number;
  steps: number;
  warmup: number;
  others: number;
  disturbed: boolean;
  attempt: number;
  seconds: number;
  before: Memory;
  after: Memory;
  /** Tensors / bytes after disposing the workload, minus before setting it up. */
  leftover: Memory;
}

interface Result {
  rounds: Round[];
  profile?: Profile;
  skip: boolean;
  error?: string;
}

const mem = (): Memory => {
  const m = tf.memory();
  return { tensors: m.numTensors, bytes: m.numBytes };
};

async function profileCall(fn: () => void): Promise<Profile> {
  const startBytes = tf.memory().numBytes;
  const info = await tf.profile(() => {
    fn();
  });
  const dump = process.env['BLITZ_PROFILE_DUMP'];
  if (dump !== undefined && dump !== '') {
    const lines = info.kernels.map(
      (k) =>
        `${typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs.toFixed(3) : '?'}\t${k.name}\t` +
        `${JSON.stringify(k.inputShapes)} -> ${JSON.stringify(k.outputShapes)}`,
    );
    appendFileSync(dump, `${lines.join('\n')}\n\n`);
  }
  const count = new Map<string, number>();
  const time = new Map<string, number>();
  let total = 0;
  for (const k of info.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    count.set(k.name, (count.get(k.name) ?? 0) + 1);
    time.set(k.name, (time.get(k.name) ?? 0) + ms);
    total += ms;
  }
  const top = (m: Map<string, number>): [string, number][] =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);
  return {
    kernels: info.kernels.length,
    byCount: top(count),
    byTime: top(time),
    totalKernelMs: total,
    peakBytes: Number.isFinite(info.peakBytes) ? info.peakBytes : startBytes,
    startBytes,
    newTensors: info.newTensors,
  };
}

async function runRound(w: WorkloadSpec, res: Result, rnd: number, t0: number): Promise<Round> {
  const base = mem();
  const runner = w.setup();
  try {
    let before: Memory | undefined;
    let attempt = 0;
    let times: number[] = [];
    let warmup = 0;
    let others = 0;
    let disturbed = false;
    let seconds = 0;
    for (; ; attempt++) {
      const over = (performance.now() - t0) / 1e3 > RULES.timeBudget;
      await waitQuiet(0.1, over ? 1 : 3);
      const s0 = cpuSample();
      const ta = performance.now();
      const cap = rnd === 0 && attempt === 0 ? RULES.warmupCapFirst : RULES.warmupCapLater;
      // memory is read after the first attempt's warm-up: what the first calls cache is not growth
      const r = timeCalls(
        () => runner.call(),
        cap,
        () => {
          before ??= mem();
        },
      );
      seconds = (performance.now() - ta) / 1e3;
      others = othersCores(s0, cpuSample());
      times = r.times;
      warmup = r.warmup;
      disturbed = others > RULES.maxOthers;
      // only quick rounds are re-measured (a slow one would double the run for little)
      if (!disturbed || over || attempt >= RULES.retries || seconds > RULES.quickRound) break;
    }
    const after = mem();
    // a slow workload gets one round; while its rounds are all disturbed, another (unless very slow)
    if (seconds > RULES.roundBudget && (!disturbed || seconds > RULES.slowRound)) res.skip = true;
    if (!res.profile) res.profile = await profileCall(() => runner.call());
    const round = {
      median: median(times),
      steps: times.length,
      warmup,
      others,
      disturbed,
      attempt,
      seconds,
      before: before ?? after,
      after,
    };
    runner.dispose();
    const end = mem();
    return {
      ...round,
      leftover: { tensors: end.tensors - base.tensors, bytes: end.bytes - base.bytes },
    };
  } catch (e) {
    try {
      runner.dispose();
    } catch {
      // already disposed or never built
    }
    throw e;
  }
}

/** The headline: the median of the best (lowest-median) undisturbed round (else of any). */
function best(rounds: readonly Round[]): Round | undefined {
  const good = rounds.filter((r) => !r.disturbed);
  return [...(good.length ? good : rounds)].sort((a, b) => a.median - b.median)[0];
}

// ---------------------------------------------------------------------------------------------
// blitz through the anchor script

interface PyRound {
  median_ms: number;
  steps: number;
  disturbed: boolean;
  others_cores: number;
  seconds: number;
}
interface PyResult {
  median_ms: number;
  rounds: PyRound[];
}
interface PyDoc {
  meta: Record<string, unknown>;
  results: Record<string, PyResult>;
}

interface Blitz {
  /** Why blitz is not measured, when it is not. */
  missing?: string;
  src?: string;
  srcArg?: string;
  torch?: string;
  python?: string;
  meta?: Record<string, unknown>;
  rounds: Map<string, PyRound[]>;
  skip: Set<string>;
  failures: string[];
  tmp?: string;
}

function locateBlitz(opts: Options): Blitz {
  const b: Blitz = { rounds: new Map(), skip: new Set(), failures: [] };
  if (!opts.blitz) return { ...b, missing: '--no-blitz given' };
  const arg = process.env.BLITZ_SRC;
  if (!arg) {
    return {
      ...b,
      missing:
        'BLITZ_SRC is not set (e.g. BLITZ_SRC=../shared/reference/blitz-0.2.8: the blitz package, or a checkout containing blitz/)',
    };
  }
  const src = path.resolve(arg);
  const isDir = (p: string): boolean => existsSync(p) && statSync(p).isDirectory();
  if (!existsSync(ANCHOR)) return { ...b, missing: `the anchor script ${ANCHOR} is not there` };
  let root: string;
  let tmp: string | undefined;
  if (isDir(path.join(src, 'blitz'))) {
    root = src;
  } else if (isDir(path.join(src, 'modules')) && isDir(path.join(src, 'utils'))) {
    // BLITZ_SRC names the package itself (../shared/reference/blitz-0.2.8): the anchor wants the
    // folder that contains blitz/, so give it a temporary one with a link named blitz
    tmp = mkdtempSync(path.join(tmpdir(), 'bench-blitz-'));
    symlinkSync(src, path.join(tmp, 'blitz'), 'dir');
    root = tmp;
  } else {
    return {
      ...b,
      missing: `BLITZ_SRC=${arg}: neither it nor a blitz/ folder in it is the blitz package`,
    };
  }
  const probe = spawnSync(
    PYTHON,
    ['-c', 'import torch, numpy, platform; print(torch.__version__, platform.python_version())'],
    {
      encoding: 'utf8',
    },
  );
  if (probe.status !== 0) {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    const why = probe.error ? probe.error.message : (probe.stderr || '').trim().split('\n').pop();
    return {
      ...b,
      missing: `${PYTHON} cannot import torch and numpy (${why}); install Debian's python3-torch`,
    };
  }
  const [torch, python] = probe.stdout.trim().split(/\s+/);
  return { ...b, src: root, srcArg: arg, torch, python, tmp };
}

/** One anchor run (`--rounds 1`) over the blitz workloads not yet dropped as slow. */
async function runBlitzRound(b: Blitz, names: string[], threads: number): Promise<void> {
  const todo = names.filter((n) => !b.skip.has(n));
  if (!b.src || todo.length === 0) return;
  const out = path.join(
    b.tmp ?? mkdtempSync(path.join(tmpdir(), 'bench-blitz-')),
    `round-${Date.now()}.json`,
  );
  b.tmp ??= path.dirname(out);
  const args = [
    ANCHOR,
    ...['--threads', String(threads), '--rounds', '1', '--out', out, '--only', todo.join(',')],
  ];
  if (RULES.minSteps !== 30) args.push('--min-steps', String(RULES.minSteps));
  const env = { ...process.env, BLITZ_SRC: b.src };
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const p = spawn(PYTHON, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.on('data', (d: Buffer) => (output += d.toString()));
    p.stderr.on('data', (d: Buffer) => (output += d.toString()));
    p.on('error', (e) => resolve({ code: -1, output: output + e.message }));
    p.on('close', (c) => resolve({ code: c, output }));
  });
  if (code !== 0 || !existsSync(out)) {
    const tail = output.trim().split('\n').slice(-5).join('\n    ');
    b.failures.push(`exit ${code}: ${tail}`);
    console.log(`  blitz: the anchor failed (exit ${code}):\n    ${tail}`);
    return;
  }
  const doc = JSON.parse(readFileSync(out, 'utf8')) as PyDoc;
  rmSync(out, { force: true });
  b.meta = doc.meta;
  for (const n of todo) {
    const r = doc.results[n];
    if (!r) {
      b.failures.push(`no result for ${n}`);
      continue;
    }
    const list = b.rounds.get(n) ?? [];
    list.push(...r.rounds);
    b.rounds.set(n, list);
    const last = r.rounds[r.rounds.length - 1];
    if (last && last.seconds > RULES.roundBudget) {
      const quiet = (b.rounds.get(n) ?? []).some((x) => !x.disturbed);
      if (quiet || last.seconds > RULES.slowRound) b.skip.add(n);
    }
    console.log(
      `  blitz    ${n.padEnd(24)} ${fmtMs(r.median_ms).padStart(9)} ms  n=${last?.steps ?? '?'}` +
        `  others ${(last?.others_cores ?? 0).toFixed(2)} cores${last?.disturbed ? ' DISTURBED' : ''}`,
    );
  }
}

function bestPy(rounds: readonly PyRound[] | undefined): PyRound | undefined {
  if (!rounds || rounds.length === 0) return undefined;
  const good = rounds.filter((r) => !r.disturbed);
  return [...(good.length ? good : rounds)].sort((a, b) => a.median_ms - b.median_ms)[0];
}

// ---------------------------------------------------------------------------------------------
// report

function fmtMs(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}
const int = (v: number): string => Math.round(v).toLocaleString('en-US');
function fmtBytes(v: number): string {
  const a = Math.abs(v);
  return a >= 1e6
    ? `${(v / 1e6).toFixed(1)} MB`
    : a >= 1e3
      ? `${(v / 1e3).toFixed(1)} kB`
      : `${v} B`;
}

interface Machine {
  /** The commit and how many of src/'s files differ from it (others may be editing the tree). */
  tree: string;
  cpu: string;
  cores: number;
  loadStart: number[];
  loadEnd: number[];
  date: string;
}

/** `HEAD` and the count of changed files under src/, read without touching the index. */
function treeState(): string {
  const git = (args: string[]): string | undefined => {
    const r = spawnSync('git', ['--no-optional-locks', ...args], { cwd: root, encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : undefined;
  };
  const head = git(['rev-parse', '--short', 'HEAD']);
  if (!head) return 'not a git checkout';
  const changed = git(['status', '--porcelain', '--', 'src']);
  const n = changed ? changed.split('\n').filter(Boolean).length : 0;
  return `commit ${head}` + (n ? ` with ${n} changed file(s) under src/` : '');
}

function report(
  opts: Options,
  results: Map<string, Result>,
  blitz: Blitz,
  machine: Machine,
  seconds: number,
): string {
  const L: string[] = [];
  const la = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  const nThreads = opts.threads === 1 ? 'one thread' : `${opts.threads} threads`;
  L.push(`# blitz-ts vs blitz on blitz's own workloads (${nThreads}, measured in one run)`, '');
  L.push(
    `Generated by \`npm run bench:blitz\` (bench/blitz.ts) on ${machine.date}, in ${seconds.toFixed(0)} s. ` +
      `Machine: ${machine.cpu}, ${machine.cores} cores, load average ${la(machine.loadStart)} at the start and ` +
      `${la(machine.loadEnd)} at the end (the machine is shared: read the ratios, not the absolute times). ` +
      `Tree: ${machine.tree}.`,
    '',
  );
  const meta = blitz.meta ?? {};
  L.push(
    `- blitz-ts: Node ${process.version}, tfjs ${tf.version_core} (cpu and wasm backends via \`useBackend\`; ` +
      (opts.threads === 1
        ? 'both single-threaded in Node'
        : `wasm on ${opts.threads} threads, \`useBackend('wasm', { threads: ${opts.threads} })\` (the threaded ` +
          'SIMD binary: XNNPACK kernels such as matMul and conv2d run on the threads, the others on one), ' +
          'cpu single-threaded') +
      '), `tf.enableProdMode()` (no debug checks, as for benchmarking).',
  );
  if (blitz.missing) {
    L.push(`- blitz: **not measured**: ${blitz.missing}.`);
  } else {
    L.push(
      `- blitz: 0.2.8 from \`BLITZ_SRC=${blitz.srcArg}\`, torch ${blitz.torch}, Python ${blitz.python}, ` +
        `numpy ${String(meta.numpy ?? '?')}; threads: ${opts.threads} (\`--threads ${opts.threads}\`: ` +
        `torch.set_num_threads(${opts.threads}) and the BLAS/OpenMP pools, ` +
        `torch reports ${String(meta.threads ?? '?')} thread(s), OpenBLAS pool ${String(meta.openblas_threads ?? 'not found (torch is on another BLAS)')}); ` +
        `reference kernel torch.mm 256^3 best ${Number(meta.ref_best_ms ?? NaN).toFixed(3)} ms.`,
    );
    L.push(
      `- blitz timed by \`/usr/bin/python3 ../shared/anchors/blitz_bench/bench_blitz.py --threads ${opts.threads} --rounds 1 ` +
        `--only ${WORKLOADS.filter((w) => opts.only.includes(w.name))
          .map((w) => w.blitz)
          .join(',')}\`, ` +
        `run once per round, before that round's blitz-ts timings (${opts.rounds} rounds).`,
    );
    if (blitz.failures.length) L.push(`- blitz anchor problems: ${blitz.failures.join('; ')}.`);
  }
  L.push(
    `- Method (the anchor's): per workload and round, up to ${RULES.warmup} warm-up calls (cut after 2 once ` +
      `${RULES.warmupCapFirst} s have passed, ${RULES.warmupCapLater} s in later rounds), then >= ${RULES.minSteps} ` +
      `timed calls and >= ${RULES.minTime} s; a workload whose round takes > ${RULES.roundBudget} s gets one round ` +
      `(more while all its rounds are disturbed, unless a round takes > ${RULES.slowRound} s). ` +
      `A round during which other processes used > ${RULES.maxOthers} cores is disturbed and re-measured ` +
      `(up to ${RULES.retries} times, rounds under ${RULES.quickRound} s only). Headline: the median of the best undisturbed round.`,
    '- A training call is one `trainStep(elbo(model, lik, { numSamples: 3 }), adam(...))` step (one loss read, ' +
      'inherent to trainStep), batches cycled; a predict call is `predictive(model, params, x, { key, numSamples: 100 })` ' +
      'on x [1000, 13], mean and std read back, everything disposed.',
    '- kernels per call: `tf.profile` of one call after the timed ones; tensors / bytes: `tf.memory()` after the ' +
      "warm-up vs after the timed calls (flat = no growth); peak: `tf.profile`'s peakBytes (all live tensor bytes) " +
      'and, in brackets, above what was live before the call.',
    '',
  );
  if (blitz.meta && (meta.openblas_threads === null || meta.openblas_threads === undefined)) {
    L.push(
      `> **torch is not on OpenBLAS here** (the anchor found no OpenBLAS pool; its reference kernel, torch.mm ` +
        `256^3, took ${Number(meta.ref_best_ms ?? NaN).toFixed(2)} ms, against 0.30 ms with OpenBLAS in ` +
        "../shared/anchors/blitz_bench/torch_t1_example.json). Debian's python3-torch then runs its matmuls on " +
        "the reference BLAS (libblas3), so blitz is slower than in the issue's figures and the ratios below flatter " +
        'blitz-ts, most for the matmul-heavy LSTM and predict. With `libopenblas0` installed (it takes over ' +
        'libblas.so.3) the ratios are the ones that count.',
      '',
    );
  }
  L.push(
    '(* = the headline round was disturbed: every round of it saw other processes use more than ' +
      `${RULES.maxOthers} cores.)`,
    '',
  );
  for (const be of opts.backends) {
    L.push(`## ${be}`, '');
    L.push(
      '| workload | blitz (ms) | blitz-ts (ms) | blitz-ts / blitz | kernels per call | tensors before → after | bytes before → after | peak bytes of a call |',
      '| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |',
    );
    for (const w of WORKLOADS) {
      if (!opts.only.includes(w.name)) continue;
      const r = results.get(`${be}/${w.name}`);
      const py = bestPy(blitz.rounds.get(w.blitz));
      const b = r ? best(r.rounds) : undefined;
      const pyMs = py ? fmtMs(py.median_ms) + (py.disturbed ? '*' : '') : '-';
      if (!r || !b) {
        L.push(
          `| ${w.title} | ${pyMs} | ${r?.error ? `failed: ${r.error}` : '-'} | - | - | - | - | - |`,
        );
        continue;
      }
      const ratio = py ? `**${(b.median / py.median_ms).toFixed(2)}**` : '-';
      const p = r.profile;
      const flatT = b.before.tensors === b.after.tensors ? '' : ' **grows**';
      const flatB = b.before.bytes === b.after.bytes ? '' : ' **grows**';
      L.push(
        `| ${w.title} | ${pyMs} | ${fmtMs(b.median)}${b.disturbed ? '*' : ''} | ${ratio} | ${p ? int(p.kernels) : '-'} | ` +
          `${int(b.before.tensors)} → ${int(b.after.tensors)}${flatT} | ${int(b.before.bytes)} → ${int(b.after.bytes)}${flatB} | ` +
          `${p ? `${fmtBytes(p.peakBytes)} (+${fmtBytes(p.peakBytes - p.startBytes)})` : '-'} |`,
      );
    }
    L.push('');
  }
  L.push('## Kernels per call (`tf.profile` of one call)', '');
  L.push(
    '| backend | workload | kernels | top kernels by count | top kernels by time (ms) | kernel ms in all |',
    '| --- | --- | ---: | --- | --- | ---: |',
  );
  for (const be of opts.backends) {
    for (const w of WORKLOADS) {
      const p = results.get(`${be}/${w.name}`)?.profile;
      if (!opts.only.includes(w.name) || !p) continue;
      L.push(
        `| ${be} | ${w.name} | ${int(p.kernels)} | ${p.byCount.map(([n, c]) => `${n} ${c}`).join(', ')} | ` +
          `${p.byTime.map(([n, t]) => `${n} ${fmtMs(t)}`).join(', ')} | ${fmtMs(p.totalKernelMs)} |`,
      );
    }
  }
  L.push(
    '',
    'Kernel times are per kernel as tf.profile measures them; a `tf.customGrad` op shows as `unnamed scope`, and ' +
      'its time includes that of the kernels it runs, which are listed (and timed) on their own too.',
    '',
  );
  L.push('## Rounds', '');
  L.push(
    '| who | workload | round medians (ms) | calls in the best round | other processes (cores) per round | tensors / bytes left after dispose |',
    '| --- | --- | --- | --- | --- | --- |',
  );
  for (const w of WORKLOADS) {
    if (!opts.only.includes(w.name)) continue;
    const pr = blitz.rounds.get(w.blitz);
    if (pr?.length) {
      const bp = bestPy(pr);
      L.push(
        `| blitz | ${w.blitz} | ${pr.map((r) => fmtMs(r.median_ms) + (r.disturbed ? '*' : '')).join(', ')} | ` +
          `${bp?.steps ?? '-'} | ${pr.map((r) => r.others_cores.toFixed(2)).join(', ')} | |`,
      );
    }
    for (const be of opts.backends) {
      const r = results.get(`${be}/${w.name}`);
      if (!r?.rounds.length) continue;
      const leftover = r.rounds
        .map((x) => `${x.leftover.tensors} / ${x.leftover.bytes}`)
        .join(', ');
      L.push(
        `| blitz-ts ${be} | ${w.name} | ${r.rounds.map((x) => fmtMs(x.median) + (x.disturbed ? '*' : '')).join(', ')} | ` +
          `${best(r.rounds)?.steps ?? '-'} | ${r.rounds.map((x) => x.others.toFixed(2)).join(', ')} | ${leftover} |`,
      );
    }
  }
  L.push('', '(* = disturbed round: other processes used more than the limit while it ran.)', '');
  return L.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const t0 = performance.now();
  const machine: Machine = {
    tree: treeState(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown CPU',
    cores: cpus().length,
    loadStart: loadavg(),
    loadEnd: [],
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
  };
  const blitz = locateBlitz(opts);
  if (blitz.missing) console.log(`blitz is not measured: ${blitz.missing}.`);
  else
    console.log(`blitz: torch ${blitz.torch} (Python ${blitz.python}), BLITZ_SRC=${blitz.srcArg}`);
  const selected = WORKLOADS.filter((w) => opts.only.includes(w.name));
  const results = new Map<string, Result>();
  for (const be of opts.backends)
    for (const w of selected) results.set(`${be}/${w.name}`, { rounds: [], skip: false });
  try {
    for (let rnd = 0; rnd < opts.rounds; rnd++) {
      console.log(`round ${rnd + 1}/${opts.rounds}`);
      await runBlitzRound(
        blitz,
        selected.map((w) => w.blitz),
        opts.threads,
      );
      for (const be of opts.backends) {
        // wasm's thread count is fixed at its first initialisation: the same N every round
        await useBackend(be as BackendName, be === 'wasm' ? { threads: opts.threads } : {});
        for (const w of selected) {
          const res = results.get(`${be}/${w.name}`) as Result;
          if (res.skip) continue;
          try {
            const r = await runRound(w, res, rnd, t0);
            res.rounds.push(r);
            const grow = r.before.tensors !== r.after.tensors || r.before.bytes !== r.after.bytes;
            console.log(
              `  blitz-ts ${`${be}/${w.name}`.padEnd(24)} ${fmtMs(r.median).padStart(9)} ms  n=${r.steps}` +
                `  others ${r.others.toFixed(2)} cores${r.disturbed ? ' DISTURBED' : ''}` +
                `${res.profile && rnd === 0 ? `  ${res.profile.kernels} kernels` : ''}${grow ? '  MEMORY GROWS' : ''}`,
            );
          } catch (e) {
            res.error = e instanceof Error ? e.message.split('\n')[0] : String(e);
            res.skip = true;
            const stack =
              e instanceof Error && e.stack ? e.stack.split('\n').slice(1, 6).join('\n    ') : '';
            console.log(`  blitz-ts ${be}/${w.name} failed: ${res.error}\n    ${stack}`);
          }
        }
      }
    }
  } finally {
    if (blitz.tmp) rmSync(blitz.tmp, { recursive: true, force: true });
  }
  machine.loadEnd = loadavg();
  const seconds = (performance.now() - t0) / 1e3;
  const md = report(opts, results, blitz, machine, seconds);
  const openblas = blitz.meta?.openblas_threads;
  if (blitz.meta && (openblas === null || openblas === undefined)) {
    console.log(
      'note: torch is not on OpenBLAS here (the anchor found no OpenBLAS pool): blitz runs its matmuls on the ' +
        'reference BLAS and is slower than with libopenblas0 installed; the ratios flatter blitz-ts.',
    );
  }
  const file = opts.threads > 1 ? `blitz-threads${opts.threads}.md` : 'blitz.md';
  const out = opts.out ?? (opts.full ? path.join(here, 'results', file) : undefined);
  if (out) {
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, md);
    console.log(
      `\n${md}\nwritten to ${path.relative(process.cwd(), out)} (${seconds.toFixed(0)} s)`,
    );
  } else {
    console.log(
      `\n${md}\n(partial run: not written; pass --out FILE to keep it) (${seconds.toFixed(0)} s)`,
    );
  }
  if (blitz.missing) console.log(`blitz was not measured: ${blitz.missing}.`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
