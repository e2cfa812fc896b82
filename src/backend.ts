/**
 * Backends by name. Library code never imports a backend; a program picks one at run time with
 * `useBackend(name)`, and the same code runs on each.
 */
import * as tf from '@tensorflow/tfjs-core';
import { importByName } from './dynamicImport';
import { ConfigError, show } from './errors';
import './setup';

/** The backends that `useBackend` knows. */
export type BackendName = 'cpu' | 'wasm' | 'webgl' | 'tensorflow' | 'tensorflow-gpu';

/** Why a backend could not be selected. */
export type BackendErrorCode =
  | 'UNKNOWN_BACKEND'
  | 'PACKAGE_MISSING'
  | 'NATIVE_LOAD_FAILED'
  | 'INIT_FAILED';

/** Error thrown by `useBackend`; `code` says which of the four failures it is. */
export class BackendError extends Error {
  readonly code: BackendErrorCode;
  readonly backend: string;
  constructor(
    code: BackendErrorCode,
    backend: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message);
    this.name = 'BackendError';
    this.code = code;
    this.backend = backend;
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** Options of `useBackend`. */
export interface UseBackendOptions {
  /**
   * wasm only: where the `.wasm` binaries are served from (a URL prefix ending in `/`, or a map
   * from file name to URL), passed to `setWasmPaths`. Needed in browser bundles; Node finds them.
   */
  readonly wasmPaths?: string | Readonly<Record<string, string>>;
  /**
   * wasm only: how many threads XNNPACK (wasm's matMul, conv and other XNNPACK kernels) runs on,
   * an integer from 1 to `WASM_MAX_THREADS` (8, the size of tfjs's pthread pool). Not given:
   * tfjs's choice, which in Node is one thread (the single-threaded SIMD binary) and in a
   * cross-origin isolated browser page its threaded binary. `1`: the single-threaded SIMD binary
   * everywhere. `> 1`: the threaded SIMD binary (in Node through a shim of blitz-ts, written for
   * tfjs-backend-wasm 4.22; in a browser the page must be cross-origin isolated). Results are
   * the same bit for bit. More threads than the machine has cores is allowed but only slows it.
   * The wasm module initialises once per process: choose `threads` at the first
   * `useBackend('wasm', ...)`; asking for another count later throws a `BackendError`.
   */
  readonly threads?: number;
}

/** The most threads `useBackend('wasm', { threads })` accepts: tfjs-backend-wasm's pool size. */
export const WASM_MAX_THREADS = 8;

interface BackendSpec {
  /** The name tfjs registers the backend under. */
  readonly tfName: string;
  /** The npm package that provides it. */
  readonly pkg: string;
  /** How the package gets installed, for the error message. */
  readonly install: string;
  /** Loads the package (which registers the backend as a side effect). */
  readonly load: () => Promise<unknown>;
  readonly note?: string;
}

// Optional peers are imported through a variable so that bundlers do not try to resolve them.
const importOptional = importByName;

const SPECS: Readonly<Record<BackendName, BackendSpec>> = {
  cpu: {
    tfName: 'cpu',
    pkg: '@tensorflow/tfjs-backend-cpu',
    install: 'npm install @tensorflow/tfjs-backend-cpu',
    load: () => Promise.resolve(), // registered by ./setup
  },
  wasm: {
    tfName: 'wasm',
    pkg: '@tensorflow/tfjs-backend-wasm',
    install: 'npm install @tensorflow/tfjs-backend-wasm',
    load: () => import('@tensorflow/tfjs-backend-wasm'),
  },
  webgl: {
    tfName: 'webgl',
    pkg: '@tensorflow/tfjs-backend-webgl',
    install: 'npm install @tensorflow/tfjs-backend-webgl',
    load: () => importOptional('@tensorflow/tfjs-backend-webgl'),
    note: 'webgl needs a browser (or another environment with a WebGL context).',
  },
  tensorflow: {
    tfName: 'tensorflow',
    pkg: '@tensorflow/tfjs-node',
    install: 'npm install @tensorflow/tfjs-node (its install step downloads libtensorflow)',
    load: () => importOptional('@tensorflow/tfjs-node'),
  },
  'tensorflow-gpu': {
    tfName: 'tensorflow',
    pkg: '@tensorflow/tfjs-node-gpu',
    install:
      'npm install @tensorflow/tfjs-node-gpu (its install step downloads libtensorflow with CUDA; needs an NVIDIA driver, CUDA and cuDNN)',
    load: () => importOptional('@tensorflow/tfjs-node-gpu'),
  },
};

/** The names `useBackend` accepts, in the order of the table in the README. */
export const BACKEND_NAMES: readonly BackendName[] = Object.freeze(
  Object.keys(SPECS) as BackendName[],
);

const isBackendName = (name: string): name is BackendName =>
  Object.prototype.hasOwnProperty.call(SPECS, name);

function isModuleNotFound(err: unknown, pkg: string): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { code, message } = err as { code?: unknown; message?: unknown };
  const notFound =
    code === 'ERR_MODULE_NOT_FOUND' ||
    code === 'MODULE_NOT_FOUND' ||
    (typeof message === 'string' &&
      /Cannot find (module|package)|Could not resolve|Failed to resolve module specifier|Failed to fetch dynamically imported module/.test(
        message,
      ));
  return notFound && typeof message === 'string' && message.includes(pkg);
}

/**
 * Classifies an error thrown while importing a backend package: a missing package, or a package
 * that is there but whose native part failed to load. Exported for tests.
 */
export function classifyLoadError(name: BackendName, err: unknown): BackendError {
  const spec = SPECS[name];
  const detail = err instanceof Error ? err.message : String(err);
  if (isModuleNotFound(err, spec.pkg)) {
    return new BackendError(
      'PACKAGE_MISSING',
      name,
      `useBackend('${name}'): the package ${spec.pkg} is not installed. ` +
        `It is an optional peer dependency of blitz-ts; install it with: ${spec.install}.`,
      { cause: err },
    );
  }
  return new BackendError(
    'NATIVE_LOAD_FAILED',
    name,
    `useBackend('${name}'): ${spec.pkg} is installed but failed to load: ${detail}. ` +
      `Reinstall it (npm rebuild ${spec.pkg}) and check that its native library matches this ` +
      `platform${name === 'tensorflow-gpu' ? ' and that the CUDA and cuDNN versions it needs are installed' : ''}.`,
    { cause: err },
  );
}

async function loadPackage(name: BackendName, opts: UseBackendOptions): Promise<unknown> {
  const spec = SPECS[name];
  if (tf.findBackendFactory(spec.tfName) != null && name !== 'wasm') return undefined;
  let mod: unknown;
  try {
    mod = await spec.load();
  } catch (err) {
    throw classifyLoadError(name, err);
  }
  if (name === 'wasm' && opts.wasmPaths !== undefined) {
    const setWasmPaths = (mod as { setWasmPaths?: (p: unknown) => void }).setWasmPaths;
    if (typeof setWasmPaths !== 'function') {
      throw new BackendError(
        'INIT_FAILED',
        name,
        `useBackend('wasm'): this ${spec.pkg} has no setWasmPaths.`,
      );
    }
    setWasmPaths(opts.wasmPaths);
  }
  return mod;
}

// ---------------------------------------------------------------------------------------------
// wasm threads

/** What `useBackend` uses of `@tensorflow/tfjs-backend-wasm`. */
interface WasmPackage {
  getThreadsCount(): number;
  setThreadsCount(n: number): void;
  readonly version_wasm?: string;
}

const MULTITHREAD_FLAG = 'WASM_HAS_MULTITHREAD_SUPPORT';
/** How long the threaded module may take to initialise (normally ~0.3 s) before it counts as failed. */
const THREADS_INIT_LIMIT_MS = 30_000;

/**
 * For tests only (not exported from the package entry): `glueFile` replaces the path of the
 * Emscripten glue that the pthread workers load, to make them fail on purpose.
 */
export const wasmThreadsFaults: { glueFile?: string } = {};

/** `threads` must be an integer in [1, WASM_MAX_THREADS], and only for wasm. */
function checkThreadsOption(name: BackendName, threads: unknown): void {
  if (threads === undefined) return;
  const owner = `useBackend('${name}')`;
  if (name !== 'wasm') {
    throw new ConfigError(
      owner,
      [
        `threads is an option of the wasm backend only, got threads: ${show(threads)} for '${name}' ` +
          "(use useBackend('wasm', { threads }), or leave threads out)",
      ],
      'options',
    );
  }
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1) {
    throw new ConfigError(
      owner,
      [`threads must be a positive integer (1 to ${WASM_MAX_THREADS}), got ${show(threads)}`],
      'options',
    );
  }
  if (threads > WASM_MAX_THREADS) {
    throw new ConfigError(
      owner,
      [
        `threads must be at most ${WASM_MAX_THREADS} (tfjs-backend-wasm caps XNNPACK's thread ` +
          `pool at ${WASM_MAX_THREADS}, the size of its pthread pool), got ${threads}`,
      ],
      'options',
    );
  }
}

/** The thread count the wasm module was initialised with in this process, if it was. */
function wasmThreadsNow(wasm: WasmPackage): number | undefined {
  try {
    return wasm.getThreadsCount(); // throws until a BackendWasm has been constructed
  } catch {
    return undefined;
  }
}

const plural = (n: number): string => `${n} thread${n === 1 ? '' : 's'}`;

function threadsError(threads: number, message: string, cause?: unknown): BackendError {
  return new BackendError(
    'INIT_FAILED',
    'wasm',
    `useBackend('wasm', { threads: ${threads} }): ${message}`,
    cause === undefined ? undefined : { cause },
  );
}

/** The shim that lets the threaded binary's pthread pool start under Node's worker_threads. */
interface NodeThreadsShim {
  /** Rejects when a pthread worker fails while the module initialises, or after the limit. */
  readonly failed: Promise<never>;
  /** Puts `globalThis.Worker` and `os.cpus` back (the pool of 8 workers exists by then). */
  uninstall(): void;
  /**
   * Ends the workers it made (after a failed initialisation: they would keep Node alive), whose
   * errors still arriving are then dropped.
   */
  terminate(): void;
}

interface CjsModule {
  readonly filename?: string;
  readonly exports?: unknown;
}

/**
 * Makes tfjs-backend-wasm 4.22's threaded SIMD binary start under plain Node (tfjs only uses it
 * in browsers: `WASM_HAS_MULTITHREAD_SUPPORT` is false in Node, flags_wasm.js). Three things stop
 * it, fixed while the module initialises (`scripts/probe-wasm-threads.mjs` shows each):
 * 1. tfjs hands the glue a `blob:` URL for the pthread worker script, and Node's `Worker` takes
 *    no `blob:` URL: `globalThis.Worker` becomes a `worker_threads.Worker` that evaluates the
 *    package's worker script (`wasm-out/...worker.js`, which has a Node branch) itself.
 * 2. The worker's "load" message carries a Blob of the bundled factory's source, which refers to
 *    names of tfjs's bundle: it is replaced by the path of the on-disk glue (`wasm-out/...js`).
 * 3. The C++ side caps the pool at `emscripten_num_logical_cores() / 2` = `os.cpus().length / 2`
 *    (1 on a 2-core machine): `os.cpus()` reports >= 2 * threads CPUs while it initialises.
 * Besides, `worker.ref()` is a no-op: XNNPACK's pthreads never end, and a ref'd worker would keep
 * Node from exiting (they only run work the main thread hands them synchronously). A worker that
 * fails while the module initialises rejects `failed` instead of killing the process (the glue
 * rethrows worker errors).
 */
async function installNodeThreadsShim(
  wasm: WasmPackage,
  threads: number,
): Promise<NodeThreadsShim> {
  type NodeModuleApi = typeof import('node:module');
  type NodeOs = typeof import('node:os');
  type NodePath = typeof import('node:path');
  type WorkerThreads = typeof import('node:worker_threads');
  const esm = <T>(ns: unknown): T => ((ns as { default?: T }).default ?? ns) as T;
  const [moduleNs, osNs, pathNs, workerNs] = await Promise.all([
    importByName('node:module'),
    importByName('node:os'),
    importByName('node:path'),
    importByName('node:worker_threads'),
  ]);
  const { createRequire } = esm<NodeModuleApi>(moduleNs);
  const os = esm<NodeOs>(osNs);
  const path = esm<NodePath>(pathNs);
  const NodeWorker = esm<WorkerThreads>(workerNs).Worker;

  // The package's folder: that of the copy actually loaded (found in the module cache by its
  // exports), else the one resolved from the working directory, if it is the same version.
  const req = createRequire(path.join(process.cwd(), 'index.js'));
  const loaded = Object.values(req.cache as Record<string, CjsModule | undefined>).find(
    (m) =>
      typeof m?.filename === 'string' &&
      (m.exports as Partial<WasmPackage> | undefined)?.getThreadsCount === wasm.getThreadsCount,
  );
  let dir: string | undefined;
  if (loaded?.filename) dir = path.dirname(path.dirname(loaded.filename));
  else {
    try {
      dir = path.dirname(req.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
    } catch {
      dir = undefined;
    }
  }
  const version = dir
    ? (req(path.join(dir, 'package.json')) as { version?: string }).version
    : undefined;
  if (!dir || version !== wasm.version_wasm) {
    throw threadsError(
      threads,
      `could not find the files of the loaded @tensorflow/tfjs-backend-wasm ${wasm.version_wasm ?? ''} ` +
        '(its wasm-out/ glue and worker script, which the threads shim needs).',
    );
  }
  const glue =
    wasmThreadsFaults.glueFile ?? path.join(dir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = req(
    path.join(dir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.worker.js'),
  ) as { wasmWorkerContents: string };
  // The same escaping tfjs applies before making its Blob (a raw "\n" sits in a string literal).
  const workerSource = wasmWorkerContents.replace(/\n/g, '\\n');

  let initializing = true;
  let abandoned = false; // after a failed start: the other workers' errors are expected
  let fail: (e: unknown) => void = () => {};
  const failed = new Promise<never>((_, reject) => {
    fail = reject;
  });
  failed.catch(() => {}); // raced by the caller; never left unhandled
  const made: InstanceType<WorkerThreads['Worker']>[] = [];

  class PthreadWorker extends NodeWorker {
    constructor(_url: unknown, options?: ConstructorParameters<WorkerThreads['Worker']>[1]) {
      // No execArgv: a worker inherits the parent's by default, and under `--input-type=module`
      // (or a loader's flags) the script would be read as an ES module, without `require`.
      super(workerSource, { ...options, eval: true, execArgv: [] });
      made.push(this);
    }
    override ref(): void {}
    override emit(event: string | symbol, ...args: unknown[]): boolean {
      if (event === 'error' && (initializing || abandoned)) {
        fail(args[0]);
        return true;
      }
      return super.emit(event, ...args);
    }
    override postMessage(
      value: unknown,
      transferList?: Parameters<InstanceType<WorkerThreads['Worker']>['postMessage']>[1],
    ): void {
      const msg = value as { cmd?: unknown; urlOrBlob?: unknown } | null;
      if (msg && msg.cmd === 'load' && typeof msg.urlOrBlob !== 'string') {
        value = { ...msg, urlOrBlob: glue };
      }
      super.postMessage(value, transferList);
    }
  }

  const had = Object.getOwnPropertyDescriptor(globalThis, 'Worker');
  Object.defineProperty(globalThis, 'Worker', {
    configurable: true,
    get: () => PthreadWorker,
    set: () => {}, // swallows the glue's `commonjsGlobal.Worker = nodeWorkerThreads.Worker`
  });
  const mutableOs = os as { cpus: NodeOs['cpus'] };
  const realCpus = mutableOs.cpus;
  mutableOs.cpus = () => {
    const r = realCpus.call(os);
    if (r.length >= 2 * threads || r.length === 0) return r;
    return Array.from({ length: 2 * threads }, (_, i) => r[i % r.length] as (typeof r)[number]);
  };
  const timer = setTimeout(
    () => fail(new Error(`it did not finish initialising within ${THREADS_INIT_LIMIT_MS / 1e3} s`)),
    THREADS_INIT_LIMIT_MS,
  );
  (timer as { unref?: () => void }).unref?.();
  return {
    failed,
    uninstall() {
      initializing = false;
      clearTimeout(timer);
      mutableOs.cpus = realCpus;
      if (had) Object.defineProperty(globalThis, 'Worker', had);
      else delete (globalThis as { Worker?: unknown }).Worker;
    },
    terminate() {
      abandoned = true;
      for (const w of made) void w.terminate();
    },
  };
}

/**
 * After a failed threaded initialisation: forget the stuck one (tfjs would keep waiting for it)
 * by registering the wasm factory again, so that `useBackend('wasm')` can still start the
 * single-threaded binary, and make the backend that was active before active again.
 */
async function abandonWasmInit(previous: string | undefined): Promise<void> {
  const entry = tf.engine().registryFactory['wasm'];
  if (entry) {
    tf.removeBackend('wasm');
    tf.registerBackend('wasm', entry.factory, entry.priority);
  }
  if (previous && previous !== 'wasm' && tf.findBackend(previous) != null) {
    await tf.setBackend(previous);
  }
}

/** Initialises the wasm backend with `threads > 1` threads, or throws saying why it cannot. */
async function initWasmThreaded(wasm: WasmPackage, threads: number): Promise<void> {
  const previous = tf.engine().backendName ?? undefined;
  if (!tf.env().getBool('IS_NODE')) {
    // Browsers: tfjs's own path (its threaded binary, its pthread workers from a Blob).
    if (!(await tf.env().getAsync(MULTITHREAD_FLAG))) {
      const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
      throw threadsError(
        threads,
        (isolated === false
          ? 'this page is not cross-origin isolated, so it has no SharedArrayBuffer and wasm cannot use threads.'
          : 'wasm threads (SharedArrayBuffer, WebAssembly threads) are not available here.') +
          ' Serve the page with the headers Cross-Origin-Opener-Policy: same-origin and ' +
          'Cross-Origin-Embedder-Policy: require-corp, or leave threads out (one thread).',
      );
    }
    wasm.setThreadsCount(threads);
    let ok = false;
    let cause: unknown;
    try {
      ok = await tf.setBackend('wasm');
    } catch (err) {
      cause = err;
    }
    if (!ok) {
      throw threadsError(
        threads,
        'the threaded wasm backend could not be initialised' +
          (cause instanceof Error ? `: ${cause.message}` : '.'),
        cause,
      );
    }
    return;
  }
  const version = wasm.version_wasm ?? 'unknown';
  if (!version.startsWith('4.22.')) {
    throw threadsError(
      threads,
      `threads in Node work through a shim written for @tensorflow/tfjs-backend-wasm 4.22.x, and ` +
        `${version} is loaded. Install 4.22, or leave threads out (one thread).`,
    );
  }
  const before = await tf.env().getAsync(MULTITHREAD_FLAG);
  const shim = await installNodeThreadsShim(wasm, threads);
  tf.env().set(MULTITHREAD_FLAG, true);
  wasm.setThreadsCount(threads);
  let ok = false;
  let cause: unknown;
  try {
    ok = await Promise.race([tf.setBackend('wasm'), shim.failed]);
  } catch (err) {
    cause = err;
  } finally {
    shim.uninstall();
  }
  if (!ok) {
    shim.terminate();
    tf.env().set(MULTITHREAD_FLAG, before);
    wasm.setThreadsCount(-1); // tfjs's default
    await abandonWasmInit(previous);
    const detail =
      cause instanceof Error
        ? cause.message
        : cause === undefined
          ? "tf.setBackend('wasm') returned false (tfjs logs why as a warning unless in prod mode)"
          : String(cause);
    throw threadsError(
      threads,
      `the threaded wasm binary could not be started in Node${detail ? `: ${detail}` : ''}. ` +
        "Nothing else changed: useBackend('wasm') without threads still gives the single-threaded binary.",
      cause,
    );
  }
}

/** A threaded initialisation under way (a second `useBackend` call waits for it). */
let wasmThreadsPending: Promise<unknown> | undefined;

/**
 * The `threads` part of `useBackend('wasm', { threads })`: true when it initialised and activated
 * the threaded backend, false when the ordinary path is to activate wasm (already initialised
 * with `threads`, or `threads` is 1).
 */
async function selectWasmThreads(wasm: WasmPackage, threads: number): Promise<boolean> {
  while (wasmThreadsPending) await wasmThreadsPending.catch(() => {});
  const now = wasmThreadsNow(wasm);
  if (now !== undefined) {
    if (now === threads) return false; // initialised as asked: just activate it
    throw threadsError(
      threads,
      `the wasm backend was already initialised in this process with ${plural(now)}, and tfjs ` +
        'cannot initialise its wasm module again. Choose threads at the first ' +
        "useBackend('wasm', ...) call of the process (before anything else uses the wasm " +
        'backend), or run the work that needs another thread count in another process.',
    );
  }
  if (threads === 1) {
    tf.env().set(MULTITHREAD_FLAG, false); // the single-threaded SIMD binary, in browsers too
    return false;
  }
  const p = initWasmThreaded(wasm, threads);
  wasmThreadsPending = p;
  try {
    await p;
  } finally {
    wasmThreadsPending = undefined;
  }
  const got = wasm.getThreadsCount();
  if (got !== threads) {
    throw threadsError(
      threads,
      `the wasm backend started with ${plural(got)} instead` +
        (tf.env().getBool('IS_NODE')
          ? '.'
          : ' (tfjs caps the count at navigator.hardwareConcurrency / 2 in browsers).') +
        ' It stays so in this process.',
    );
  }
  return true;
}

/**
 * `useBackend(name, options?) -> Promise<name>`: loads the backend's package if needed, makes it
 * the active tfjs backend, waits until it is ready and returns the active backend's name.
 *
 * Errors (`BackendError`, with `code`): `UNKNOWN_BACKEND` for a name not in `BACKEND_NAMES`;
 * `PACKAGE_MISSING` when the optional package is not installed (the message says what to
 * install); `NATIVE_LOAD_FAILED` when the package is there but its native part does not load;
 * `INIT_FAILED` when tfjs cannot initialise it here (e.g. webgl without a WebGL context, or
 * `threads` that cannot take effect: see `UseBackendOptions.threads`). An invalid `threads`
 * (not an integer from 1 to `WASM_MAX_THREADS`, or given for another backend than wasm) throws a
 * `ConfigError` naming it.
 *
 * @example
 * ```ts
 * import { useBackend } from 'blitz-ts';
 * await useBackend('wasm'); // 'wasm'
 * // or, at the process's first wasm call: XNNPACK on 2 threads (Node and isolated pages)
 * await useBackend('wasm', { threads: 2 });
 * ```
 */
export async function useBackend(
  name: BackendName,
  options: UseBackendOptions = {},
): Promise<string> {
  if (typeof name !== 'string' || !isBackendName(name)) {
    throw new BackendError(
      'UNKNOWN_BACKEND',
      String(name),
      `useBackend(${JSON.stringify(name)}): unknown backend. Use one of: ${BACKEND_NAMES.join(', ')}.`,
    );
  }
  checkThreadsOption(name, options.threads);
  const mod = await loadPackage(name, options);
  const spec = SPECS[name];
  if (name === 'wasm' && options.threads !== undefined) {
    if (await selectWasmThreads(mod as WasmPackage, options.threads)) {
      await tf.ready();
      return tf.getBackend();
    }
  }
  let ok = false;
  let cause: unknown;
  try {
    ok = await tf.setBackend(spec.tfName);
  } catch (err) {
    cause = err;
  }
  if (!ok) {
    throw new BackendError(
      'INIT_FAILED',
      name,
      `useBackend('${name}'): ${spec.pkg} is loaded but the backend could not be initialised here` +
        (cause instanceof Error ? `: ${cause.message}` : '') +
        (spec.note ? `. ${spec.note}` : '.'),
      { cause },
    );
  }
  await tf.ready();
  return tf.getBackend();
}

/** One row of `backendReport`. */
export interface BackendStatus {
  readonly name: BackendName;
  readonly available: boolean;
  /** Why not, when not available. */
  readonly reason?: string;
}

/**
 * `backendReport() -> Promise<BackendStatus[]>`: tries each backend in turn and says which can be
 * used here and why the others cannot. Leaves the backend that was active before active again.
 *
 * @example
 * ```ts
 * for (const b of await backendReport()) console.log(b.name, b.available ? 'yes' : b.reason);
 * ```
 */
export async function backendReport(): Promise<BackendStatus[]> {
  const before = tf.getBackend();
  const rows: BackendStatus[] = [];
  for (const name of BACKEND_NAMES) {
    try {
      await useBackend(name);
      rows.push({ name, available: true });
    } catch (err) {
      rows.push({
        name,
        available: false,
        reason: err instanceof Error ? err.message : String(err),
      });
    }
  }
  if (before) await tf.setBackend(before);
  return rows;
}
