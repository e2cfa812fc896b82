/**
 * The browser demo: trains the regression example's Bayesian MLP on the toy curve of the BBB
 * paper in the page, on the backend picked in the page (webgl, wasm or cpu), and redraws the
 * predictive mean and the ±1 / ±2 std bands every few epochs.
 *
 *   npm run demo:browser                 # bundles this file, serves it on http://127.0.0.1:8080/
 *   npm run demo:browser -- --port 9000
 *
 * The page's state is on `window.__blitzDemo` (for tests). URL parameters prefill the form:
 * `?backend=wasm&seed=3&epochs=50&every=5&autostart=1`.
 */
import '@tensorflow/tfjs-backend-webgl'; // registers 'webgl'; useBackend then finds it by name
import * as tf from '@tensorflow/tfjs-core';
import { random, tree, useBackend } from 'blitz-ts';
import { backendArg } from '../args';
import { TOY_SETTINGS, toyGrid, toyProblem } from '../regression/toy';
import { predict, trainRegression } from '../regression/train';
import { draw, type Area } from './plot';

/** What the page exposes on `window.__blitzDemo`. */
export interface DemoState {
  status: 'idle' | 'training' | 'done' | 'stopped' | 'error';
  backend: string;
  seed: number;
  epoch: number;
  epochs: number;
  loss: number;
  history: number[];
  /** Median time of a training step over the epochs after the first (ms). */
  msPerStep: number;
  steps: number;
  redraws: number;
  /** Trained parameters by path (after a run). */
  params: Record<string, number[]>;
  /** tf.memory().numTensors after the run, everything disposed. */
  numTensors: number;
  /** The plot area in CSS pixels, relative to the canvas. */
  plotArea: Area | null;
  error: string;
}

const PREDICT_SAMPLES = 50;
const WASM_PATHS = new URL('wasm/', window.location.href).href;

/** `$(id, type) -> element`: the page's element `#id`, checked to be a `type`. */
const $ = <T extends HTMLElement>(id: string, type: new () => T): T => {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`index.html has no #${id} (a ${type.name})`);
  return el;
};
const ui = {
  form: $('controls', HTMLFormElement),
  backend: $('backend', HTMLSelectElement),
  seed: $('seed', HTMLInputElement),
  epochs: $('epochs', HTMLInputElement),
  every: $('every', HTMLInputElement),
  train: $('train', HTMLButtonElement),
  stop: $('stop', HTMLButtonElement),
  progress: $('progress', HTMLProgressElement),
  epoch: $('epoch', HTMLSpanElement),
  loss: $('loss', HTMLSpanElement),
  steptime: $('steptime', HTMLSpanElement),
  backendInfo: $('backendInfo', HTMLSpanElement),
  error: $('error', HTMLDivElement),
  canvas: $('plot', HTMLCanvasElement),
};

const state: DemoState = {
  status: 'idle',
  backend: '',
  seed: 0,
  epoch: 0,
  epochs: 0,
  loss: NaN,
  history: [],
  msPerStep: NaN,
  steps: 0,
  redraws: 0,
  params: {},
  numTensors: tf.memory().numTensors,
  plotArea: null,
  error: '',
};
Object.assign(window, { __blitzDemo: state });

let stopRequested = false;

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
};

function intField(input: HTMLInputElement, name: string, min: number): number {
  const v = Number(input.value);
  if (!Number.isInteger(v) || v < min) {
    throw new Error(`${name} must be an integer >= ${min}, got '${input.value}'`);
  }
  return v;
}

async function train(): Promise<void> {
  const backendName = backendArg(ui.backend.value, 'backend');
  const seed = intField(ui.seed, 'seed', 0);
  const epochs = intField(ui.epochs, 'epochs', 1);
  const every = intField(ui.every, 'redraw every', 1);
  Object.assign(state, {
    status: 'training',
    seed,
    epoch: 0,
    epochs,
    loss: NaN,
    history: [],
    msPerStep: NaN,
    steps: 0,
    redraws: 0,
    params: {},
    error: '',
  });
  ui.error.textContent = '';
  ui.epoch.textContent = `starting ${backendName}…`;
  ui.loss.textContent = '';
  ui.steptime.textContent = '';
  ui.progress.max = epochs;
  ui.progress.value = 0;

  state.backend = await useBackend(
    backendName,
    backendName === 'wasm' ? { wasmPaths: WASM_PATHS } : {},
  );
  ui.backendInfo.textContent = `backend ${state.backend}`;

  // The same keys as `npm run demo -- --seed <seed>` uses for the toy curve.
  const [kToy] = random.split(random.key(seed));
  const [kData, kTrain, kPred] = random.split(kToy, 3);
  const toy = toyProblem(kData, TOY_SETTINGS.points);
  const gx = toyGrid();
  const x = tf.tensor2d(toy.x, [toy.x.length, 1]);
  const y = tf.tensor2d(toy.y, [toy.y.length, 1]);
  const grid = tf.tensor2d(
    gx.map((v) => (v - toy.xMean) / toy.xStd),
    [gx.length, 1],
  );
  const title = (what: string) => `toy curve, seed ${seed}, ${state.backend}: ${what}`;
  state.plotArea = draw(ui.canvas, { points: toy.raw, title: title('initialising') });

  const redraw = (
    t: Parameters<typeof predict>[0],
    what: string,
    numSamples = PREDICT_SAMPLES,
  ): void => {
    const p = predict(t, grid, kPred, numSamples);
    const mean = Array.from(p.mean.dataSync(), (v) => v * toy.yStd + toy.yMean);
    const std = Array.from(p.total.dataSync(), (v) => v * toy.yStd);
    tf.dispose([p.mean, p.epistemic, p.total]);
    state.plotArea = draw(ui.canvas, { points: toy.raw, grid: gx, mean, std, title: title(what) });
    state.redraws++;
  };

  const epochMs: number[] = [];
  let lastMark = performance.now();
  let lastStep = 0;
  try {
    const trained = await trainRegression({
      key: kTrain,
      x,
      y,
      hidden: TOY_SETTINGS.hidden,
      epochs,
      batchSize: TOY_SETTINGS.batchSize,
      learningRate: TOY_SETTINGS.learningRate,
      numSamples: TOY_SETTINGS.numSamples,
      progress: false,
      onEpoch: (info, { model, likelihood }) => {
        const now = performance.now();
        const steps = info.step - lastStep;
        lastStep = info.step;
        epochMs.push((now - lastMark) / Math.max(1, steps));
        // the first epoch compiles shaders / warms up: leave it out once there are others
        state.msPerStep = median(epochMs.length > 1 ? epochMs.slice(1) : epochMs);
        state.epoch = info.epoch + 1;
        state.loss = info.loss;
        state.steps = info.step;
        state.history.push(info.loss);
        ui.progress.value = state.epoch;
        ui.epoch.textContent = `epoch ${state.epoch}/${epochs}`;
        ui.loss.textContent = `loss ${info.loss.toFixed(4)}`;
        ui.steptime.textContent = `${state.msPerStep.toFixed(1)} ms/step`;
        if (state.epoch % every === 0 || state.epoch === epochs) {
          redraw({ model, likelihood, params: info.params }, `epoch ${state.epoch}`);
        }
        lastMark = performance.now(); // drawing is not training time
        return !stopRequested;
      },
    });
    redraw(trained, `trained ${trained.history.length} epochs`, 2 * PREDICT_SAMPLES);
    const params = trained.params;
    const leaves = tree.leaves(params);
    state.params = Object.fromEntries(
      tree.paths(params).map((p, i) => [p, Array.from(leaves[i]?.dataSync() ?? [])]),
    );
    tree.dispose(params);
    state.status = stopRequested ? 'stopped' : 'done';
    ui.epoch.textContent = `${state.status}: ${state.epoch}/${epochs} epochs`;
  } finally {
    tf.dispose([x, y, grid]);
    state.numTensors = tf.memory().numTensors;
  }
}

function setRunning(running: boolean): void {
  for (const el of [ui.backend, ui.seed, ui.epochs, ui.every, ui.train]) el.disabled = running;
  ui.stop.disabled = !running;
}

function start(): void {
  if (state.status === 'training') return;
  stopRequested = false;
  setRunning(true);
  train()
    .catch((err: unknown) => {
      state.status = 'error';
      state.error = err instanceof Error ? err.message : String(err);
      ui.error.textContent = state.error;
      ui.epoch.textContent = 'failed';
    })
    .finally(() => setRunning(false));
}

ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  start();
});
ui.stop.addEventListener('click', () => {
  stopRequested = true;
});

// URL parameters prefill the form; autostart=1 trains right away.
const q = new URLSearchParams(window.location.search);
const backendParam = q.get('backend');
if (backendParam && Array.from(ui.backend.options).some((o) => o.value === backendParam)) {
  ui.backend.value = backendParam;
}
for (const [name, input] of [
  ['seed', ui.seed],
  ['epochs', ui.epochs],
  ['every', ui.every],
] as const) {
  const v = q.get(name);
  if (v !== null) input.value = v;
}
tf.enableProdMode();
state.plotArea = draw(ui.canvas, {
  points: { x: [], y: [0, 1] },
  title: 'press Train to fit the toy curve',
});
if (q.get('autostart') === '1') start();
