/**
 * Bayesian recurrent layers: `bayesianLSTM` and `bayesianGRU` (the reference's `BayesianLSTM` and
 * `BayesianGRU`), written with the Bayesian layer builder `bayesianLayer`; the adapter
 * `lastTimeStep()`; and the recurrent state.
 *
 * Input and output. A recurrent layer reads a sequence `x [batch, time, inFeatures]`, or
 * `{ x, state }` to start from a given state instead of zeros. Its `apply` returns the output
 * sequence `[batch, time, outFeatures]` (the hidden state at every step) as `out`, so that the
 * sequence flows on inside `serial` (stack recurrent layers, then `lastTimeStep()` for the last
 * hidden state, then a read-out). The final state (`{ h, c }` for the LSTM, `{ h }` for the GRU)
 * comes from the layer's `applyWithState(params, input, ctx)`, which returns
 * `{ out, state, kl }`, or from `forward(weights, x, state?)`. Feeding that state back as
 * `{ x: nextChunk, state }` continues the sequence: with the same weights (the same key, or mean
 * mode) a sequence run in two halves gives the output of one run (truncated back-propagation
 * through time, streaming prediction).
 *
 * Sampling. ONE weight sample per sequence: every time step of a call uses the same sampled
 * weights (the reference samples once per forward pass too), and the KL term is that of this one
 * sample. Weights and their keys (init from `foldIn(initKey, index)`, noise from
 * `foldIn(layerKey, index)`): `weightIh [in, G*H]` index 0, `weightHh [H, G*H]` index 1,
 * `bias [G*H]` index 2, the LSTM's `peephole [3, H]` index 3 (with `peephole: true`), the GRU's
 * `biasHn [H]` index 4 (the candidate's hidden-side bias `b_hn`); G = 4 for the LSTM, 3 for the
 * GRU; tfjs layout, `x W`. Each index is fixed, so `bias: false` (which drops `bias` and `biasHn`)
 * does not shift the others.
 *
 * In a batched pass (`vmapSamples`) the input `{ x, state }` either has the leading sample axis as
 * a whole (`x [S, batch, time, in]`, each state entry `[S, batch, H]`, or a shared `[batch, H]`)
 * or not (`x [batch, time, in]`, state `[batch, H]`), as `loopSamples` would see it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import type { GaussianParams } from '../params/distributions';
import type { ParamTree } from '../params/tree';
import {
  bayesianLayer,
  ctxPath,
  type BayesianLayer,
  type BayesianOptions,
  type SampledCtx,
  type WeightDecl,
} from './bayesian';
import { isBool, knownKeys, positiveInt, validate } from '../validation';
import { ShapeError, fmtShape } from '../errors';
import { deterministicLayer, type EmptyParams } from './stateless';
import type { Applied, ApplyCtx, Layer, Shape } from './types';

// ---------------------------------------------------------------------------------------------
// Public types

/** The state of an LSTM: hidden `h` and cell `c`, each `[batch, outFeatures]`. */
export type LstmState = { readonly h: tf.Tensor; readonly c: tf.Tensor };

/** The state of a GRU: hidden `h [batch, outFeatures]`. */
export type GruState = { readonly h: tf.Tensor };

/** A recurrent layer's input with an initial state (`state` omitted: zeros). */
export interface RnnInput<S> {
  /** The sequence `[batch, time, inFeatures]`. */
  readonly x: tf.Tensor;
  /** The state before the first step; each tensor `[batch, outFeatures]`. */
  readonly state?: S;
}

/** What a recurrent layer accepts: a sequence, or a sequence with an initial state. */
export type RnnIn<S> = tf.Tensor | RnnInput<S>;

/** The output sequence `[batch, time, outFeatures]` and the state after the last step. */
export interface RecurrentOutput<S> {
  readonly out: tf.Tensor;
  readonly state: S;
}

/** `applyWithState`'s result: the output sequence, the final state and the KL term. */
export interface AppliedWithState<S> extends Applied<tf.Tensor> {
  readonly state: S;
}

/** Options shared by `bayesianLSTM` and `bayesianGRU` (the reference's arguments, camelCased). */
export interface BayesianRecurrentOptions extends BayesianOptions {
  /** Features per time step of the input. */
  readonly inFeatures: number;
  /** Hidden size (features per time step of the output). */
  readonly outFeatures: number;
  /** Whether the gates have biases. Default true (and `false` works, unlike the reference). */
  readonly bias?: boolean;
  /** The layer's name (its key in a parent's parameter tree). */
  readonly name?: string;
}

/** Options of `bayesianLSTM`. */
export interface BayesianLSTMOptions extends BayesianRecurrentOptions {
  /**
   * Peephole connections (Gers et al. 2002; Graves 2013): diagonal cell-to-gate weights, the
   * input and forget gates see `c[t-1]`, the output gate sees `c[t]`. Default false.
   */
  readonly peephole?: boolean;
}

/** Options of `bayesianGRU`. */
export type BayesianGRUOptions = BayesianRecurrentOptions;

/** Parameters of `bayesianLSTM`: a posterior per weight tensor. */
export type BayesianLSTMParams = {
  readonly weightIh: GaussianParams;
  readonly weightHh: GaussianParams;
  readonly bias?: GaussianParams;
  readonly peephole?: GaussianParams;
};

/** Concrete weights of `bayesianLSTM` (a sample or the means). */
export type LstmWeights = {
  /** `[inFeatures, 4H]`, gate blocks in the order i, f, g (cell candidate), o. */
  readonly weightIh: tf.Tensor;
  /** `[H, 4H]`, same gate order. */
  readonly weightHh: tf.Tensor;
  /** `[4H]`. */
  readonly bias?: tf.Tensor;
  /** `[3, H]`: rows `w_ci`, `w_cf`, `w_co`. */
  readonly peephole?: tf.Tensor;
};

/** Parameters of `bayesianGRU`. */
export type BayesianGRUParams = {
  readonly weightIh: GaussianParams;
  readonly weightHh: GaussianParams;
  readonly bias?: GaussianParams;
  readonly biasHn?: GaussianParams;
};

/** Concrete weights of `bayesianGRU`. */
export type GruWeights = {
  /** `[inFeatures, 3H]`, gate blocks in the order r (reset), z (update), n (candidate). */
  readonly weightIh: tf.Tensor;
  /** `[H, 3H]`, same gate order. */
  readonly weightHh: tf.Tensor;
  /** `[3H]`: `b_r`, `b_z` and the candidate's input-side bias `b_in`. */
  readonly bias?: tf.Tensor;
  /** `[H]`: the candidate's hidden-side bias `b_hn`, inside the reset product. */
  readonly biasHn?: tf.Tensor;
};

/**
 * A Bayesian recurrent layer: a Bayesian layer over sequences (`sample` / `mean` / `draw`, the
 * batch rule, the KL term) whose `forward` also takes and returns the recurrent state.
 */
export interface BayesianRecurrentLayer<P extends ParamTree, W, S>
  extends Omit<BayesianLayer<P, W, RnnIn<S>, tf.Tensor>, 'forward'> {
  /** `forward(weights, x, state?) -> { out, state }`: runs the recurrence with given weights. */
  forward(weights: W, x: tf.Tensor, state?: S): RecurrentOutput<S>;
  /** `applyWithState(params, input, ctx?) -> { out, state, kl }`: `apply` plus the final state. */
  applyWithState(params: P, input: RnnIn<S>, ctx?: ApplyCtx): AppliedWithState<S>;
  /** `zeroState(batchSize) -> state`: the all-zeros state that a call without a state starts from. */
  zeroState(batchSize: number): S;
}

/** `bayesianLSTM(...)`'s layer type. */
export type BayesianLSTMLayer = BayesianRecurrentLayer<BayesianLSTMParams, LstmWeights, LstmState>;

/** `bayesianGRU(...)`'s layer type. */
export type BayesianGRULayer = BayesianRecurrentLayer<BayesianGRUParams, GruWeights, GruState>;

// ---------------------------------------------------------------------------------------------
// The recurrences. They run on S posterior samples at once (`h [S, B, H]`; a single weight sample
// is S = 1) as ONE kernel per call with a hand-written backward pass through time. Autodiff through
// the steps cost ~130 kernels per step (each op's generic gradient, with its reshapes, casts and
// clones) and, on wasm, hit the slow paths that src/kernels/wasm.ts replaces; the kernel runs ~12
// tfjs ops per step forward and ~10 backward, and on wasm (fused cells, below) 2 and 2.
//
// One step, for all samples and gates at once (gate blocks of H columns, tfjs layout `x W`):
//
//   a = [x_t, 1, h]                    [S, B, K1]     (K1 = F + 1 + H; no 1 without bias)
//   pre = a [W_ih; b; W_hh]            [S, B, 4H]     one batched matMul (S products)
//
// then the four gate blocks are split off the last axis. The GRU's blocks are [r, z, n_x, n_h]
// (input weights [W_r, W_z, W_n, 0], recurrent ones [U_r, U_z, 0, U_n], biases
// [b_r, b_z, b_in, b_hn]), so one product gives r and z whole and n's two parts apart.
//
// Backward. The forward pass keeps the activations of all steps as `[T, S, B, H]` stacks and the
// rows `a` of all steps; the backward pass turns the stacks into the factors that map `dh` and
// `dc` to the pre-activation gradients (a few ops on whole stacks, not per step), walks the steps
// back with one product per step for the recurrent gradient `dpre W_hh^T` (which also sums the
// gates), and gets all weight gradients from ONE product of all steps at the end, `a^T dpre`
// contracted over the T * B rows.
//
// On wasm (without peepholes) the elementwise part of a step, forward and backward, is one fused
// kernel of src/kernels/wasm.ts (`BlitzLSTMCell`, ...), which also writes the next step's `a`
// (and, for the weight gradient, its transpose), so a step is a matMul and a cell kernel each way.
//
// tfjs-cpu copies a slice along any axis but the first (and transposes, and broadcasts over a
// size-1 axis) element by element through index arithmetic, 100-1000x slower than a contiguous
// copy; on cpu the kernel therefore splits and unstacks along inner axes with contiguous row
// copies of its own (`splitAxis`), elsewhere with tfjs's ops (on wasm, the replacements in
// src/kernels/wasm.ts, which copy rows too).

type StateRec = Readonly<Record<string, tf.Tensor>>;

/** The weights the recurrences read (a sample, with or without the leading sample axis). */
type RnnWeights = {
  readonly weightIh: tf.Tensor;
  readonly weightHh: tf.Tensor;
  readonly bias?: tf.Tensor;
  readonly peephole?: tf.Tensor;
  readonly biasHn?: tf.Tensor;
};

/** Sizes of one recurrence call. */
interface Dims {
  readonly S: number;
  readonly B: number;
  readonly T: number;
  readonly F: number;
  readonly H: number;
}

/** The recurrence's inputs (`G` = 4 for the LSTM, 3 for the GRU). */
interface RecInputs {
  /** The sequence, `[B, T, F]` (shared by the samples) or `[S, B, T, F]`. */
  readonly x: tf.Tensor;
  /** `[S, F, G * H]`. */
  readonly wx: tf.Tensor;
  /** `[S, H, G * H]`. */
  readonly wh: tf.Tensor;
  /** `[S, 1, G * H]`. */
  readonly b?: tf.Tensor;
  /** The GRU's `b_hn`, `[S, 1, H]` (with `b` only). */
  readonly bhn?: tf.Tensor;
  /** `[S, B, H]`. */
  readonly h0: tf.Tensor;
  /** `[S, B, H]` (LSTM). */
  readonly c0?: tf.Tensor;
  /** LSTM peepholes `[S, 3, H]`: `w_ci`, `w_cf`, `w_co`. */
  readonly p?: tf.Tensor;
}

type RecName = keyof RecInputs;
const REC_NAMES: readonly RecName[] = ['x', 'wx', 'wh', 'b', 'bhn', 'h0', 'c0', 'p'];

const sig = tf.sigmoid;
const one = (t: tf.Tensor): tf.Tensor => tf.sub(1, t);
const size = (shape: readonly number[]): number => shape.reduce((a, d) => a * d, 1);

/**
 * `splitAxis(t, sizes, axis, squeeze?)`: `tf.split` (squeezed pieces: `tf.unstack`); on cpu by
 * contiguous row copies (tfjs-cpu would copy element by element for any axis but the first).
 */
function splitAxis(
  t: tf.Tensor,
  sizes: readonly number[],
  axis: number,
  squeeze = false,
): tf.Tensor[] {
  if (axis === 0 || tf.getBackend() !== 'cpu' || t.dtype !== 'float32') {
    return squeeze ? tf.unstack(t, axis) : tf.split(t, [...sizes], axis);
  }
  const vals = t.dataSync() as Float32Array;
  const outer = size(t.shape.slice(0, axis));
  const inner = size(t.shape.slice(axis + 1));
  const row = (t.shape[axis] as number) * inner;
  let at = 0;
  return sizes.map((s) => {
    const out = new Float32Array(outer * s * inner);
    const from = at * inner;
    for (let r = 0; r < outer; r++) {
      const o = r * row + from;
      out.set(vals.subarray(o, o + s * inner), r * s * inner);
    }
    at += s;
    const shape = [...t.shape];
    if (squeeze) shape.splice(axis, 1);
    else shape[axis] = s;
    return tf.tensor(out, shape, 'float32');
  });
}

/** `tf.unstack(t, axis)`, by `splitAxis`. */
const unstackAxis = (t: tf.Tensor, axis: number): tf.Tensor[] =>
  splitAxis(t, Array<number>(t.shape[axis] as number).fill(1), axis, true);

/** The GRU's weights padded to four blocks: `[..., 3H] -> [..., 4H]` (`[r, z, n, 0]`). */
const padInput = (w: tf.Tensor, H: number): tf.Tensor =>
  tf.concat([w, tf.zeros([...w.shape.slice(0, -1), H])], -1);

/** The GRU's recurrent weights `[S, H, 3H] -> [S, H, 4H]` (`[U_r, U_z, 0, U_n]`). */
function padRecurrent(w: tf.Tensor, H: number): tf.Tensor {
  const [rz, n] = splitAxis(w, [2 * H, H], 2) as [tf.Tensor, tf.Tensor];
  return tf.concat([rz, tf.zeros([...w.shape.slice(0, -1), H]), n], 2);
}

/** The input and recurrent weights in four blocks, `[S, F, 4H]` and `[S, H, 4H]`. */
const fourBlocks = (lstm: boolean, H: number, inp: RecInputs) => ({
  wx: lstm ? inp.wx : padInput(inp.wx, H),
  wh: lstm ? inp.wh : padRecurrent(inp.wh, H),
});

/** The step's weights `[W_ih; b; W_hh]`, `[S, K1, 4H]`. */
function stepWeights(lstm: boolean, { S, H }: Dims, inp: RecInputs): tf.Tensor {
  const { wx, wh } = fourBlocks(lstm, H, inp);
  let b = inp.b;
  if (b && !lstm) b = tf.concat([b, inp.bhn ?? tf.zeros([S, 1, H])], 2);
  return tf.concat(b ? [wx, b, wh] : [wx, wh], 1);
}

/** The step inputs `[x_t, 1]`, T tensors `[S, B, F (+ 1)]` (a shared x repeated per sample). */
function stepInputs(x: tf.Tensor, { S, B, T }: Dims, bias: boolean): tf.Tensor[] {
  let xs = x;
  if (bias) xs = tf.concat([xs, tf.ones([...xs.shape.slice(0, -1), 1])], -1);
  if (xs.rank === 3) {
    const one4 = tf.reshape(xs, [1, B, T, xs.shape[2] as number]);
    xs = S === 1 ? one4 : tf.concat(Array<tf.Tensor>(S).fill(one4), 0);
  }
  return unstackAxis(xs, 2);
}

/** The peepholes `[S, 3, H]` broadcast over the batch (rank-1 matMuls): 3 x `[S, B, H]`. */
function peepholes(p: tf.Tensor, S: number, B: number): tf.Tensor[] {
  const ones = tf.ones([S, B, 1]);
  return splitAxis(p, [1, 1, 1], 1).map((w) => tf.matMul(ones, w));
}

interface Forward {
  /** `[S, B, T, H]`: the hidden state after each step. */
  readonly out: tf.Tensor;
  readonly h: tf.Tensor;
  readonly c?: tf.Tensor;
  /** What `backward` needs (with `keep`): the activation stacks, the states, the rows `a`. */
  readonly saved: tf.Tensor[];
}

/**
 * Whether this call runs the fused cell kernels of src/kernels/wasm.ts (on wasm, without
 * peepholes): the elementwise part of a step as one kernel forward and one backward.
 */
const fusedCells = (p: tf.Tensor | undefined): boolean =>
  p === undefined &&
  tf.getBackend() === 'wasm' &&
  tf.getKernel('BlitzLSTMCell', 'wasm') !== undefined;

/** Runs a kernel of src/kernels/wasm.ts (inputs that are undefined left out). */
function cellKernel(
  name: string,
  inputs: Record<string, tf.Tensor | undefined>,
  attrs: tf.NamedAttrMap = {},
): tf.Tensor[] {
  const given: tf.NamedTensorMap = {};
  for (const [k, t] of Object.entries(inputs)) if (t !== undefined) given[k] = t;
  return tf.engine().runKernel(name, given, attrs) as tf.Tensor[];
}

function forward(lstm: boolean, fused: boolean, d: Dims, inp: RecInputs, keep: boolean): Forward {
  const { S, B, T, H } = d;
  const W = stepWeights(lstm, d, inp);
  const xs = stepInputs(inp.x, d, inp.b !== undefined);
  const pp = inp.p ? peepholes(inp.p, S, B) : undefined;
  let h = inp.h0;
  let c = inp.c0 as tf.Tensor;
  const hs: tf.Tensor[] = [];
  const as: tf.Tensor[] = [];
  // activations per step: LSTM i, f, g, o, tanh(c); GRU r, z, n, h U_n + b_hn (fused: one
  // [G, S, B, H] tensor per step)
  const acts: tf.Tensor[][] = [[], [], [], [], []];
  const states: tf.Tensor[] = [lstm ? c : h];
  let a = tf.concat([xs[0] as tf.Tensor, h], 2);
  // fused: the rows a of all steps are kept transposed, [S, K1, B] per step (see wasm.ts)
  if (keep && fused) as.push(tf.transpose(a, [0, 2, 1]));
  for (let t = 0; t < T; t++) {
    const pre = tf.matMul(a, W);
    if (keep && !fused) as.push(a);
    let step: tf.Tensor[];
    if (fused) {
      const x = xs[t + 1];
      const attrs = { transposed: keep };
      const outs = lstm
        ? cellKernel('BlitzLSTMCell', { pre, c, x }, attrs)
        : cellKernel('BlitzGRUCell', { pre, h: h, x }, attrs);
      [h] = outs as [tf.Tensor];
      if (lstm) c = outs[1] as tf.Tensor;
      const k = lstm ? 2 : 1;
      step = [outs[k] as tf.Tensor];
      a = outs[k + 1] as tf.Tensor;
      if (keep && x) as.push(outs[k + 2] as tf.Tensor);
      if (lstm) states.push(c);
      else if (t < T - 1) states.push(h);
    } else {
      const [p0, p1, p2, p3] = splitAxis(pre, [H, H, H, H], 2) as [
        tf.Tensor,
        tf.Tensor,
        tf.Tensor,
        tf.Tensor,
      ];
      if (lstm) {
        const i = sig(pp ? tf.add(p0, tf.mul(c, pp[0] as tf.Tensor)) : p0);
        const f = sig(pp ? tf.add(p1, tf.mul(c, pp[1] as tf.Tensor)) : p1);
        const g = tf.tanh(p2);
        c = tf.add(tf.mul(f, c), tf.mul(i, g));
        const o = sig(pp ? tf.add(p3, tf.mul(c, pp[2] as tf.Tensor)) : p3);
        const tc = tf.tanh(c);
        h = tf.mul(o, tc);
        step = [i, f, g, o, tc];
        states.push(c);
      } else {
        const r = sig(p0);
        const z = sig(p1);
        const n = tf.tanh(tf.add(p2, tf.mul(r, p3)));
        h = tf.add(n, tf.mul(z, tf.sub(h, n)));
        step = [r, z, n, p3];
        if (t < T - 1) states.push(h);
      }
      if (t < T - 1) a = tf.concat([xs[t + 1] as tf.Tensor, h], 2);
    }
    if (keep) step.forEach((s, k) => (acts[k] as tf.Tensor[]).push(s));
    hs.push(h);
  }
  const out = tf.stack(hs, 2);
  if (!keep) return { out, h, c: lstm ? c : undefined, saved: [] };
  // LSTM: the cell states c_0..c_T; GRU: the hidden states before each step
  const saved = [...acts.filter((l) => l.length > 0), states].map((l) => tf.stack(l));
  saved.push(tf.concat(as, fused ? 2 : 1));
  return { out, h, c: lstm ? c : undefined, saved };
}

/** The weight and state gradients, and (lazily: the input is often data) the input's. */
type RecGrads = Record<Exclude<RecName, 'x'>, tf.Tensor | undefined> & { x: () => tf.Tensor };

/**
 * Gradients of the recurrence's inputs from the gradients of its outputs (`dOut [S, B, T, H]`,
 * `dh`, `dc` of the final state) and `forward`'s saved tensors.
 */
function backward(
  lstm: boolean,
  fused: boolean,
  d: Dims,
  inp: RecInputs,
  bias: boolean,
  [dOut, dhT, dcT]: readonly tf.Tensor[],
  saved: readonly tf.Tensor[],
): RecGrads {
  const { S, B, T, F, H } = d;
  const { wx, wh } = fourBlocks(lstm, H, inp);
  const dys = unstackAxis(dOut as tf.Tensor, 2);
  const dpres: tf.Tensor[] = new Array<tf.Tensor>(T);
  let dh = dhT as tf.Tensor;
  let dc: tf.Tensor | undefined;
  let dp: tf.Tensor | undefined;
  if (fused) {
    // per step one cell kernel (dpre, and dc or the GRU's dh z for the step before) and the
    // recurrent product
    const [ACT, ST] = saved as [tf.Tensor, tf.Tensor];
    const act = tf.unstack(ACT);
    const st = tf.unstack(ST);
    let extra: tf.Tensor | undefined;
    if (lstm) dc = dcT as tf.Tensor;
    for (let t = T - 1; t >= 0; t--) {
      const [dpre, next] = (
        lstm
          ? cellKernel('BlitzLSTMCellGrad', { dy: dys[t], dh, dc, act: act[t], cPrev: st[t] })
          : cellKernel('BlitzGRUCellGrad', {
              dy: dys[t],
              dh,
              dhz: extra,
              act: act[t],
              hPrev: st[t],
            })
      ) as [tf.Tensor, tf.Tensor];
      dpres[t] = dpre;
      if (lstm) dc = next;
      else extra = next;
      dh = tf.matMul(dpre, wh, false, true);
    }
    if (extra) dh = tf.add(dh, extra);
  } else {
    dh = tf.add(dys[T - 1] as tf.Tensor, dh);
  }
  /** `dh_prev` from the step's `dpre [S, B, 4H]`: `dpre W_hh^T` plus `extra`. */
  const recurrent = (dpre: tf.Tensor, t: number, extra: tf.Tensor[]): tf.Tensor => {
    const parts = [tf.matMul(dpre, wh, false, true), ...extra];
    if (t > 0) parts.push(dys[t - 1] as tf.Tensor);
    return parts.length === 1 ? (parts[0] as tf.Tensor) : tf.addN(parts);
  };
  if (fused) {
    // done above
  } else if (lstm) {
    const [I, Fg, G, O, TC, C] = saved as [
      tf.Tensor,
      tf.Tensor,
      tf.Tensor,
      tf.Tensor,
      tf.Tensor,
      tf.Tensor,
    ];
    const cPrev = tf.slice(C, 0, T);
    // dpre_o = dh * tc o (1 - o); dc += dh * o (1 - tc^2); dpre_{i,f,g} = dc * (g i (1 - i),
    // c_prev f (1 - f), i (1 - g^2)); dc_prev = dc * f
    const fo = tf.unstack(tf.mul(TC, tf.mul(O, one(O))));
    const fc = tf.unstack(tf.mul(O, one(tf.square(TC))));
    const fi = tf.unstack(tf.mul(G, tf.mul(I, one(I))));
    const ff = tf.unstack(tf.mul(cPrev, tf.mul(Fg, one(Fg))));
    const fg = tf.unstack(tf.mul(I, one(tf.square(G))));
    const fs = tf.unstack(Fg);
    const pp = inp.p ? peepholes(inp.p, S, B) : undefined;
    const cAll = pp ? tf.unstack(C) : [];
    const pg: tf.Tensor[][] = [[], [], []];
    dc = dcT as tf.Tensor;
    for (let t = T - 1; t >= 0; t--) {
      const dpo = tf.mul(dh, fo[t] as tf.Tensor);
      let dct: tf.Tensor = tf.add(dc, tf.mul(dh, fc[t] as tf.Tensor));
      if (pp) dct = tf.add(dct, tf.mul(dpo, pp[2] as tf.Tensor));
      const dpi = tf.mul(dct, fi[t] as tf.Tensor);
      const dpf = tf.mul(dct, ff[t] as tf.Tensor);
      const dpg = tf.mul(dct, fg[t] as tf.Tensor);
      dc = tf.mul(dct, fs[t] as tf.Tensor);
      if (pp) {
        dc = tf.addN([dc, tf.mul(dpi, pp[0] as tf.Tensor), tf.mul(dpf, pp[1] as tf.Tensor)]);
        const [cp, cn] = [cAll[t] as tf.Tensor, cAll[t + 1] as tf.Tensor];
        pg[0]?.push(tf.mul(dpi, cp));
        pg[1]?.push(tf.mul(dpf, cp));
        pg[2]?.push(tf.mul(dpo, cn));
      }
      const dpre = tf.concat([dpi, dpf, dpg, dpo], 2);
      dpres[t] = dpre;
      dh = recurrent(dpre, t, []);
    }
    if (pp) {
      // sum over the steps, then over the batch by a rank-1 matMul: [S, 1, H] each
      const ones = tf.ones([S, 1, B]);
      dp = tf.concat(
        pg.map((l) => tf.matMul(ones, tf.addN(l))),
        1,
      );
    }
  } else {
    const [R, Z, N, PN, HP] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    // h = n + z (h_prev - n): dpre_n = dh (1 - z)(1 - n^2), dpre_r = dpre_n pn r (1 - r),
    // d(h U_n + b_hn) = dpre_n r, dpre_z = dh (h_prev - n) z (1 - z), dh_prev += dh z
    const fn = tf.unstack(tf.mul(one(Z), one(tf.square(N))));
    const fr = tf.unstack(tf.mul(PN, tf.mul(R, one(R))));
    const fz = tf.unstack(tf.mul(tf.sub(HP, N), tf.mul(Z, one(Z))));
    const rs = tf.unstack(R);
    const zs = tf.unstack(Z);
    for (let t = T - 1; t >= 0; t--) {
      const dpn = tf.mul(dh, fn[t] as tf.Tensor);
      const dpre = tf.concat(
        [
          tf.mul(dpn, fr[t] as tf.Tensor),
          tf.mul(dh, fz[t] as tf.Tensor),
          dpn,
          tf.mul(dpn, rs[t] as tf.Tensor),
        ],
        2,
      );
      dpres[t] = dpre;
      dh = recurrent(dpre, t, [tf.mul(dh, zs[t] as tf.Tensor)]);
    }
  }
  // all steps at once: dpre as [S, T * B, 4H] (rows t * B + b, the stacked a's order)
  const DP = tf.concat(dpres, 1);
  // a^T dpre: the rows a as kept, [S, T * B, K1] or (fused) transposed [S, K1, T * B]
  const dW = tf.matMul(saved[saved.length - 1] as tf.Tensor, DP, !fused, false);
  const parts = splitAxis(dW, bias ? [F, 1, H] : [F, H], 1);
  let dwx = parts[0] as tf.Tensor;
  let db = bias ? parts[1] : undefined;
  let dwh = parts[parts.length - 1] as tf.Tensor;
  let dbhn: tf.Tensor | undefined;
  if (!lstm) {
    // back to three blocks: drop the padding, b_hn is the recurrent n block's bias
    dwx = splitAxis(dwx, [3 * H, H], 2)[0] as tf.Tensor;
    const [rz, , n] = splitAxis(dwh, [2 * H, H, H], 2) as [tf.Tensor, tf.Tensor, tf.Tensor];
    dwh = tf.concat([rz, n], 2);
    if (db) [db, dbhn] = splitAxis(db, [3 * H, H], 2);
  }
  // the input: dpre W_ih^T, rows t * B + b back to the sequence's [B, T] (summed over the
  // samples when they share it)
  const dx = (): tf.Tensor => {
    let g = tf.matMul(DP, wx, false, true); // [S, T * B, F]
    if (inp.x.rank === 3) g = S === 1 ? g : tf.expandDims(tf.addN(tf.unstack(g)), 0);
    const lead = g.shape[0] as number;
    const steps = splitAxis(tf.reshape(g, [lead, T, B, F]), Array<number>(T).fill(1), 1, true);
    const seq = tf.stack(steps, 2); // [lead, B, T, F]
    return inp.x.rank === 3 ? tf.reshape(seq, [B, T, F]) : seq;
  };
  return { x: dx, wx: dwx, wh: dwh, b: db, bhn: dbhn, h0: dh, c0: dc, p: dp };
}

// The recurrence as a kernel (registered on first use for the active backend, computed with tfjs
// ops, so it runs wherever they do) with a registered gradient. A kernel, not `tf.customGrad`:
// `customGrad`'s `save` of tensors made in its forward pass trips tfjs's test-mode kernel leak
// check, and its gradient is computed for every input, also the (usually constant) sequence.
// Its outputs after the state are what the backward pass needs (tfjs saves them for the gradient;
// it also hands the gradient a zero `dy` for each of them).

/** Kernel names by cell (the LSTM with peepholes saves one more input). */
const kernelName = (lstm: boolean, peephole: boolean, fused: boolean): string =>
  (fused ? 'BlitzFused' : 'Blitz') +
  (lstm ? (peephole ? 'PeepholeLSTMSequence' : 'LSTMSequence') : 'GRUSequence');

/** A backend's reference counting (cpu and wasm have it). */
interface RefCounting {
  incRef(dataId: tf.DataId): void;
}

/** The kernel's inputs as tensors (a bare `TensorInfo` gets one more reference, see wasm.ts). */
function inputsOf(given: tf.NamedTensorInfoMap, backend: RefCounting): RecInputs {
  const out: Partial<Record<RecName, tf.Tensor>> = {};
  for (const n of REC_NAMES) {
    const info = given[n];
    if (info === undefined) continue;
    if (info instanceof tf.Tensor) out[n] = info;
    else {
      out[n] = tf.engine().makeTensorFromTensorInfo(info);
      backend.incRef(info.dataId);
    }
  }
  return out as RecInputs;
}

const dimsOf = (attrs: tf.NamedAttrMap): Dims => attrs as unknown as Dims;

function registerRecurrence(
  lstm: boolean,
  peephole: boolean,
  fused: boolean,
  backendName: string,
): string {
  const name = kernelName(lstm, peephole, fused);
  const toSave: RecName[] = peephole ? ['x', 'wx', 'wh', 'p'] : ['x', 'wx', 'wh'];
  // outputs: out, h (, c), then forward's saved tensors (the activation stacks: 5 for the LSTM,
  // 4 for the GRU, one when fused; the states; the rows a)
  const nState = lstm ? 3 : 2;
  const nOut = nState + (fused ? 1 : lstm ? 5 : 4) + 2;
  if (tf.getKernel(name, backendName) === undefined) {
    tf.registerKernel({
      kernelName: name,
      backendName,
      kernelFunc: ({ inputs, backend: be, attrs }) => {
        const backend = be as RefCounting;
        const d = dimsOf(attrs ?? {});
        const outs = tf.tidy(() => {
          const f = forward(lstm, fused, d, inputsOf(inputs, backend), true);
          return [f.out, f.h, ...(lstm ? [f.c as tf.Tensor] : []), ...f.saved];
        });
        return outs.map((t) => {
          backend.incRef(t.dataId);
          const info: tf.TensorInfo = { dataId: t.dataId, shape: t.shape, dtype: t.dtype };
          t.dispose();
          return info;
        });
      },
    });
  }
  if (tf.getGradient(name) === undefined) {
    tf.registerGradient({
      kernelName: name,
      inputsToSave: toSave,
      outputsToSave: Array.from({ length: nOut }, (_, i) => i >= nState),
      gradFunc: (dys, saved, attrs) => {
        const d = dimsOf(attrs);
        const names = REC_NAMES.filter((n) => attrs[`has_${n}`] === true);
        const inp = Object.fromEntries(toSave.map((n, i) => [n, saved[i]])) as unknown as RecInputs;
        const bias = attrs['has_b'] === true;
        const ds = dys as tf.Tensor[];
        const g = backward(lstm, fused, d, inp, bias, ds, saved.slice(toSave.length));
        const grads: Record<string, () => tf.Tensor> = {};
        for (const n of names) grads[n] = n === 'x' ? g.x : () => g[n] as tf.Tensor;
        return grads;
      },
    });
  }
  return name;
}

/** The outputs of the recurrence: the hidden state after each step, the final state. */
interface RecOutputs {
  readonly out: tf.Tensor;
  readonly h: tf.Tensor;
  readonly c?: tf.Tensor;
}

/**
 * The recurrence as one op. Recorded for a gradient (the tape is on) it is the kernel, whose
 * gradient is `backward`; otherwise the plain forward pass.
 */
function recurrenceOp(lstm: boolean, d: Dims, inp: RecInputs): RecOutputs {
  const fused = fusedCells(inp.p);
  if (!tf.engine().isTapeOn()) {
    return tidy(() => {
      const { out, h, c } = forward(lstm, fused, d, inp, false);
      return c ? { out, h, c } : { out, h };
    });
  }
  const name = registerRecurrence(lstm, inp.p !== undefined, fused, tf.getBackend());
  const inputs: tf.NamedTensorMap = {};
  const attrs: Record<string, number | boolean> = { ...d };
  for (const n of REC_NAMES) {
    const t = inp[n];
    if (t !== undefined) inputs[n] = t;
    attrs[`has_${n}`] = t !== undefined;
  }
  const outs = tf.engine().runKernel(name, inputs, attrs) as tf.Tensor[];
  tf.dispose(outs.slice(lstm ? 3 : 2));
  const [out, h, c] = outs as [tf.Tensor, tf.Tensor, tf.Tensor];
  return lstm ? { out, h, c } : { out, h };
}

// ---------------------------------------------------------------------------------------------
// The shared implementation: what the builder needs besides the weights (input checks, the
// deterministic, sampled and mean-mode forward passes), and the recurrent layer on top of it.

/** One recurrent cell type. */
interface Cell<S extends StateRec> {
  readonly kind: 'bayesianLSTM' | 'bayesianGRU';
  /** Gate blocks in the weight matrices (the recurrence pads the GRU's to four, see above). */
  readonly gates: 3 | 4;
  readonly stateKeys: readonly (keyof S & string)[];
}

const LSTM_CELL: Cell<LstmState> = {
  kind: 'bayesianLSTM',
  gates: 4,
  stateKeys: ['h', 'c'],
};

const GRU_CELL: Cell<GruState> = { kind: 'bayesianGRU', gates: 3, stateKeys: ['h'] };

const isTensor = (x: unknown): x is tf.Tensor => x instanceof tf.Tensor;

const hasShape = (t: tf.Tensor, shape: readonly number[]): boolean =>
  t.rank === shape.length && t.shape.every((d, i) => d === shape[i]);

function describe(x: unknown): string {
  if (isTensor(x)) return `a tensor ${fmtShape(x.shape)}`;
  if (x === null || x === undefined) return String(x);
  if (typeof x === 'object') return `an object with keys [${Object.keys(x).join(', ')}]`;
  return typeof x;
}

/** The recurrence of one cell configuration, and the passes the builder and the layer use. */
interface Recurrence<S extends StateRec> {
  readonly outputShape: (inputShape: Shape, path: string) => Shape;
  /** Throws `ShapeError` naming `path` for a bad sequence or state. */
  readonly checkInput: (input: RnnIn<S>, path: string, batched: boolean) => void;
  /** The recurrence on a checked input; `S` given: weights with the leading sample axis. */
  readonly run: (
    w: RnnWeights,
    input: RnnIn<S>,
    S?: number,
  ) => { readonly out: tf.Tensor; readonly state: S };
  /** Mean mode in a batched pass: the samples share the weights. */
  readonly forwardMean: (
    w: RnnWeights,
    input: RnnIn<S>,
    ctx: SampledCtx,
  ) => { readonly out: tf.Tensor; readonly batched: boolean };
  readonly zeroState: (batchSize: number) => S;
}

function recurrence<S extends StateRec>(
  cell: Cell<S>,
  where: string,
  inF: number,
  H: number,
): Recurrence<S> {
  const G = cell.gates;

  const outputShape = (inputShape: Shape, path: string): Shape => {
    if (!Array.isArray(inputShape) || inputShape.length !== 3 || inputShape[2] !== inF) {
      throw new ShapeError(
        path,
        `expected input of shape [batch, time, ${inF}] (inFeatures = ${inF}), got ${Array.isArray(inputShape) ? fmtShape(inputShape) : String(inputShape)}.`,
      );
    }
    return [inputShape[0] as number, inputShape[1] as number, H];
  };

  /** `x` or `{ x, state }` (after `checkInput`). */
  const split = (input: RnnIn<S>): { x: tf.Tensor; state?: S } =>
    isTensor(input) ? { x: input } : { x: input.x, state: input.state };

  /**
   * The sequence: rank 3 (rank 4 with the sample axis when `batched`), `inFeatures` last, at
   * least one step; each state entry `[B, H]`, or (batched) `[S, B, H]`.
   */
  const checkInput = (input: RnnIn<S>, path: string, batched: boolean): void => {
    let x: unknown = input;
    let state: unknown;
    if (!isTensor(input) && typeof input === 'object' && input !== null && 'x' in input) {
      x = input.x;
      state = input.state;
    }
    const rank = batched ? 4 : 3;
    const want = batched ? `[samples, batch, time, ${inF}]` : `[batch, time, ${inF}]`;
    if (!isTensor(x)) {
      throw new ShapeError(
        path,
        `expected a sequence tensor ${want} or { x, state }, got ${describe(input)}.`,
      );
    }
    if (x.rank !== rank || x.shape[rank - 1] !== inF || (x.shape[rank - 2] as number) < 1) {
      throw new ShapeError(
        path,
        `expected a sequence of shape ${want} (inFeatures = ${inF}, at least one time step), got ${fmtShape(x.shape)}.`,
      );
    }
    if (state === undefined) return;
    if (typeof state !== 'object' || state === null) {
      throw new ShapeError(
        path,
        `state must be { ${cell.stateKeys.join(', ')} }, got ${describe(state)}.`,
      );
    }
    const B = x.shape[rank - 3] as number;
    const S = batched ? (x.shape[0] as number) : undefined;
    for (const k of cell.stateKeys) {
      const t = (state as Record<string, unknown>)[k];
      const ok =
        isTensor(t) && (hasShape(t, [B, H]) || (S !== undefined && hasShape(t, [S, B, H])));
      if (!ok) {
        throw new ShapeError(
          `${path}.state.${k}`,
          `expected the initial state's '${k}' of shape [${B}, ${H}] (batch, outFeatures)` +
            `${S === undefined ? '' : ` or [${S}, ${B}, ${H}] (one per sample)`}, got ${describe(t)}.`,
        );
      }
    }
  };

  /**
   * The recurrence. Unbatched: `w` has the weights' own shapes and `x [B, T, in]`. Batched
   * (`S` given): `w` has a leading sample axis, `x [B, T, in]` (shared) or `[S, B, T, in]`.
   */
  const run = (w: RnnWeights, input: RnnIn<S>, S?: number): { out: tf.Tensor; state: S } =>
    tidy(() => {
      const { x, state } = split(input);
      // one weight sample is S = 1 with a leading sample axis added (one code path)
      const SS = S ?? 1;
      const lead = (t: tf.Tensor): tf.Tensor => (S === undefined ? tf.expandDims(t, 0) : t);
      const xBatched = S !== undefined && x.rank === 4;
      const [B, T] = (xBatched ? x.shape.slice(1, 3) : x.shape.slice(0, 2)) as [number, number];
      // the initial state [S, B, H]: zeros, or the given one (a shared one reaches the samples by a
      // leading-axis broadcast, the fast path on cpu)
      const state0: Record<string, tf.Tensor> = {};
      for (const k of cell.stateKeys) {
        const t = state?.[k];
        if (t === undefined) state0[k] = lead(tf.zeros(S === undefined ? [B, H] : [S, B, H]));
        else state0[k] = lead(S !== undefined && t.rank === 2 ? tf.add(tf.zeros([S, B, H]), t) : t);
      }
      const GH = G * H;
      const b = w.bias ? tf.reshape(lead(w.bias), [SS, 1, GH]) : undefined;
      const lstm = cell.kind === 'bayesianLSTM';
      const r = recurrenceOp(
        lstm,
        { S: SS, B, T, F: inF, H },
        {
          x,
          wx: lead(w.weightIh),
          wh: lead(w.weightHh),
          b,
          bhn: b && !lstm && w.biasHn ? tf.reshape(lead(w.biasHn), [SS, 1, H]) : undefined,
          h0: state0['h'] as tf.Tensor,
          c0: state0['c'],
          p: w.peephole ? lead(w.peephole) : undefined,
        },
      );
      const finalState: StateRec = r.c ? { h: r.h, c: r.c } : { h: r.h };
      const out = r.out;
      const drop = (t: tf.Tensor): tf.Tensor => (S === undefined ? tf.squeeze(t, [0]) : t);
      return {
        out: drop(out),
        state: Object.fromEntries(Object.entries(finalState).map(([k, t]) => [k, drop(t)])) as S,
      };
    });

  const forwardMean = (
    w: RnnWeights,
    input: RnnIn<S>,
    ctx: SampledCtx,
  ): { out: tf.Tensor; batched: boolean } =>
    tidy(() => {
      if (!ctx.batched) return { out: run(w, input).out, batched: false };
      // one input per sample and the same weights: fold the sample axis into the batch
      const { x, state } = split(input);
      const [S, B, T] = x.shape as [number, number, number, number];
      const folded = state
        ? (Object.fromEntries(
            cell.stateKeys.map((k) => {
              const t = state[k] as tf.Tensor;
              const all = t.rank === 2 ? tf.add(tf.zeros([S, B, H]), t) : t;
              return [k, tf.reshape(all, [S * B, H])];
            }),
          ) as S)
        : undefined;
      const res = run(w, { x: tf.reshape(x, [S * B, T, inF]), state: folded });
      return { out: tf.reshape(res.out, [S, B, T, H]), batched: true };
    });

  const zeroState = (batchSize: number): S => {
    validate(where, [positiveInt('zeroState batchSize', batchSize)]);
    return tidy(
      () => Object.fromEntries(cell.stateKeys.map((k) => [k, tf.zeros([batchSize, H])])) as S,
    );
  };

  return { outputShape, checkInput, run, forwardMean, zeroState };
}

/**
 * `recurrentLayer(core, rec) -> BayesianRecurrentLayer`: the builder's layer `core` (whose `apply`
 * returns the output sequence) with the state-aware steps: `forward(weights, x, state?)`,
 * `applyWithState` (on the builder's `draw`, so it samples exactly the weights `apply` does) and
 * `zeroState`.
 */
function recurrentLayer<P extends ParamTree, W extends RnnWeights, S extends StateRec>(
  core: BayesianLayer<P, W, RnnIn<S>, tf.Tensor>,
  rec: Recurrence<S>,
): BayesianRecurrentLayer<P, W, S> {
  const layer: BayesianRecurrentLayer<P, W, S> = {
    ...core,
    forward: (weights: W, x: tf.Tensor, state?: S): RecurrentOutput<S> =>
      tidy(() => {
        const input: RnnIn<S> = state === undefined ? x : { x, state };
        rec.checkInput(input, core.name, false);
        return rec.run(weights, input);
      }),
    applyWithState: (params: P, input: RnnIn<S>, ctx?: ApplyCtx): AppliedWithState<S> =>
      tidy(() => {
        rec.checkInput(input, ctxPath(ctx, core.name), false);
        const { weights, kl } = core.draw(params, ctx);
        const { out, state } = rec.run(weights, input);
        return { out, state, kl };
      }),
    zeroState: rec.zeroState,
  };
  return Object.freeze(layer);
}

/** The options of `bayesianLSTM` / `bayesianGRU` before any is read (a non-object: one error). */
function checkOptionsObject(options: unknown, where: string): void {
  if (options === null || typeof options !== 'object') {
    validate(where, [positiveInt('inFeatures', undefined), positiveInt('outFeatures', undefined)]);
  }
}

type LstmDecls = {
  readonly weightIh: WeightDecl;
  readonly weightHh: WeightDecl;
  readonly bias: WeightDecl | undefined;
  readonly peephole: WeightDecl | undefined;
};

type GruDecls = {
  readonly weightIh: WeightDecl;
  readonly weightHh: WeightDecl;
  readonly bias: WeightDecl | undefined;
  readonly biasHn: WeightDecl | undefined;
};

/**
 * `bayesianLSTM(options) -> Layer`: a Bayes-by-Backprop LSTM (the reference's `BayesianLSTM`).
 *
 * Input `[batch, time, inFeatures]` or `{ x, state: { h, c } }`; `apply` returns the output
 * sequence `[batch, time, outFeatures]`, `applyWithState` also the final `{ h, c }`. Defaults
 * (the reference's): `bias = true`, `peephole = false`, `priorSigma1 = 1`, `priorSigma2 = 0.002`,
 * `priorPi = 0.5`, `posteriorMuInit = 0`, `posteriorRhoInit = -6`, `freeze = false`,
 * `kl = 'mc'`, `name = 'bayesianLSTM'`.
 *
 * Weights (tfjs layout): `weightIh [in, 4H]`, `weightHh [H, 4H]`, `bias [4H]` with gate blocks
 * i, f, g (cell candidate), o; with `peephole: true` also `peephole [3, H]` (rows `w_ci`, `w_cf`,
 * `w_co`), Bayesian like the others. The cell is the standard one (Graves 2013, eq. 7-11):
 * `i = σ(x Wi + h Ui + w_ci ⊙ c_prev + b_i)`, `f = σ(x Wf + h Uf + w_cf ⊙ c_prev + b_f)`,
 * `c = f ⊙ c_prev + i ⊙ tanh(x Wg + h Ug + b_g)`, `o = σ(x Wo + h Uo + w_co ⊙ c + b_o)`,
 * `h = o ⊙ tanh(c)` (without peepholes the `w_c*` terms are absent). The reference's peephole
 * variant feeds `c` through the full `weight_hh` matrix in its sampled path and `h` in its frozen
 * path; that inconsistency is not reproduced.
 *
 * @example
 * ```ts
 * const model = serial([
 *   bayesianLSTM({ inFeatures: 1, outFeatures: 16 }),
 *   lastTimeStep(),
 *   bayesianLinear({ inFeatures: 16, outFeatures: 1 }),
 * ]);
 * const { params } = model.init(random.key(0), [-1, 24, 1]);
 * const { out } = model.apply(params, tf.zeros([8, 24, 1]), { key: random.key(1) }); // [8, 1]
 * ```
 */
export function bayesianLSTM(options: BayesianLSTMOptions): BayesianLSTMLayer {
  const name = options?.name ?? LSTM_CELL.kind;
  const where = `${LSTM_CELL.kind} '${name}'`;
  checkOptionsObject(options, where);
  const inF = options.inFeatures;
  const H = options.outFeatures;
  const useBias = options.bias ?? true;
  const usePeephole = options.peephole ?? false;
  const rec = recurrence(LSTM_CELL, where, inF, H);
  const weights: LstmDecls = {
    weightIh: { shape: [inF, 4 * H], index: 0 },
    weightHh: { shape: [H, 4 * H], index: 1 },
    bias: useBias ? { shape: [4 * H], index: 2 } : undefined,
    peephole: usePeephole === true ? { shape: [3, H], index: 3 } : undefined,
  };
  const core = bayesianLayer<LstmDecls, RnnIn<LstmState>, tf.Tensor>({
    kind: LSTM_CELL.kind,
    name,
    options,
    optionNames: ['inFeatures', 'outFeatures', 'bias', 'peephole', 'name'],
    checks: [
      positiveInt('inFeatures', inF),
      positiveInt('outFeatures', H),
      isBool('bias', useBias),
      isBool('peephole', usePeephole),
    ],
    config: { inFeatures: inF, outFeatures: H, bias: useBias, peephole: usePeephole, name },
    weights,
    outputShape: rec.outputShape,
    checkInput: rec.checkInput,
    forward: (w, input) => rec.run(w, input).out,
    forwardSampled: (w, input, ctx) => rec.run(w, input, ctx.numSamples).out,
    forwardMean: rec.forwardMean,
  });
  return recurrentLayer<BayesianLSTMParams, LstmWeights, LstmState>(core, rec);
}

/**
 * `bayesianGRU(options) -> Layer`: a Bayes-by-Backprop GRU (the reference's `BayesianGRU`).
 *
 * Input `[batch, time, inFeatures]` or `{ x, state: { h } }`; `apply` returns the output
 * sequence `[batch, time, outFeatures]`, `applyWithState` also the final `{ h }`. Defaults as
 * `bayesianLSTM` (no peephole option), `name = 'bayesianGRU'`.
 *
 * Weights: `weightIh [in, 3H]`, `weightHh [H, 3H]` with gate blocks r (reset), z (update), n
 * (candidate): exactly three (the reference allocates and regularises a fourth block of each that
 * it never uses); the reference's four bias blocks as `bias [3H]` (`b_r`, `b_z`, `b_in`) and
 * `biasHn [H]` (`b_hn`, noise key `foldIn(layerKey, 4)`), both Bayesian and both absent with
 * `bias: false`. The cell: `r = σ(x Wr + h Ur + b_r)`, `z = σ(x Wz + h Uz + b_z)`,
 * `n = tanh(x Wn + b_in + r ⊙ (h Un + b_hn))`, `h = (1 - z) ⊙ n + z ⊙ h_prev`; `b_hn` sits inside
 * the reset product, so it cannot be folded into `b_in`.
 *
 * @example
 * ```ts
 * const gru = bayesianGRU({ inFeatures: 8, outFeatures: 16 });
 * const { params } = gru.init(random.key(0), [-1, 10, 8]);
 * const { out, state } = gru.applyWithState(params, tf.zeros([4, 10, 8]), { key: random.key(1) });
 * const next = gru.apply(params, { x: tf.zeros([4, 5, 8]), state }, { key: random.key(1) });
 * ```
 */
export function bayesianGRU(options: BayesianGRUOptions): BayesianGRULayer {
  const name = options?.name ?? GRU_CELL.kind;
  const where = `${GRU_CELL.kind} '${name}'`;
  checkOptionsObject(options, where);
  const inF = options.inFeatures;
  const H = options.outFeatures;
  const useBias = options.bias ?? true;
  const rec = recurrence(GRU_CELL, where, inF, H);
  const weights: GruDecls = {
    weightIh: { shape: [inF, 3 * H], index: 0 },
    weightHh: { shape: [H, 3 * H], index: 1 },
    bias: useBias ? { shape: [3 * H], index: 2 } : undefined,
    // its own index: `bias` keeps its shape and keys; 3 is the LSTM's peephole
    biasHn: useBias ? { shape: [H], index: 4 } : undefined,
  };
  const core = bayesianLayer<GruDecls, RnnIn<GruState>, tf.Tensor>({
    kind: GRU_CELL.kind,
    name,
    options,
    optionNames: ['inFeatures', 'outFeatures', 'bias', 'name'],
    checks: [
      positiveInt('inFeatures', inF),
      positiveInt('outFeatures', H),
      isBool('bias', useBias),
    ],
    config: { inFeatures: inF, outFeatures: H, bias: useBias, name },
    weights,
    outputShape: rec.outputShape,
    checkInput: rec.checkInput,
    forward: (w, input) => rec.run(w, input).out,
    forwardSampled: (w, input, ctx) => rec.run(w, input, ctx.numSamples).out,
    forwardMean: rec.forwardMean,
  });
  return recurrentLayer<BayesianGRUParams, GruWeights, GruState>(core, rec);
}

// ---------------------------------------------------------------------------------------------
// lastTimeStep

/**
 * `lastTimeStep(opts?) -> Layer`: `[batch, time, features] -> [batch, features]`, the last step of
 * a sequence (for an LSTM or GRU output, the final hidden state `h`). Works on any leading axes:
 * it takes the last entry of the second-to-last axis.
 *
 * @example
 * ```ts
 * serial([bayesianGRU({ inFeatures: 4, outFeatures: 8 }), lastTimeStep(), dense({ units: 2 })]);
 * ```
 */
export function lastTimeStep(opts: { name?: string } = {}): Layer<EmptyParams> {
  const name = opts.name ?? 'lastTimeStep';
  validate(`lastTimeStep '${name}'`, [knownKeys(opts, ['name'])]);
  return deterministicLayer<EmptyParams, tf.Tensor, tf.Tensor, Shape, Shape>({
    kind: 'lastTimeStep',
    name,
    outputShape: (s: Shape, path: string): Shape => {
      if (!Array.isArray(s) || s.length < 2) {
        throw new ShapeError(
          path,
          `expected a sequence [batch, time, features], got ${Array.isArray(s) ? fmtShape(s) : String(s)}.`,
        );
      }
      return [...s.slice(0, -2), s[s.length - 1] as number];
    },
    forward: (_p, x, ctx) => {
      if (!isTensor(x) || x.rank < 2 || (x.shape[x.rank - 2] as number) < 1) {
        throw new ShapeError(
          ctx.path,
          `expected a sequence tensor [batch, time, features] with at least one step, got ${describe(x)}.`,
        );
      }
      const axis = x.rank - 2;
      const T = x.shape[axis] as number;
      const begin = x.shape.map((_, i) => (i === axis ? T - 1 : 0));
      const size = x.shape.map((d, i) => (i === axis ? 1 : d));
      return tf.squeeze(tf.slice(x, begin, size), [axis]);
    },
    // the last step of the second-to-last axis, whatever the leading axes
    batch: 'leading',
  });
}
