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
// is S = 1). Every per-step slice is along a LEADING axis: tfjs-cpu copies a slice along any other
// axis element by element through index arithmetic (100-1000x slower than a contiguous one), so
// the gate blocks are not split off a `[.., 4H]` pre-activation; instead the weights are
// rearranged once per call into gate-major `[4 * S, K, H]` stacks (the GRU's three blocks padded
// to four, see `run`), each step computes its input and hidden products for all gates with two
// batched matMuls, and their sum `[4, S, B, H]` unstacks into contiguous gates. The output
// sequence is stacked time-major and transposed once (stacking along the time axis would make
// the gradient slice along it).

type StateRec = Readonly<Record<string, tf.Tensor>>;

/** The weights the recurrences read (a sample, with or without the leading sample axis). */
type RnnWeights = {
  readonly weightIh: tf.Tensor;
  readonly weightHh: tf.Tensor;
  readonly bias?: tf.Tensor;
  readonly peephole?: tf.Tensor;
  readonly biasHn?: tf.Tensor;
};

/** What a recurrence gets: the per-step gate pre-activations, peepholes, the initial state. */
interface ScanArgs {
  /** Time steps. */
  readonly T: number;
  /**
   * The gate pre-activations at step `t` from the state `h`: four tensors `[S, B, H]` (the LSTM's
   * i, f, g, o; the GRU's r, z, the input part of n with `b_in`, the hidden part of n with
   * `b_hn`).
   */
  readonly gates: (t: number, h: tf.Tensor) => tf.Tensor[];
  /** LSTM peepholes `w_ci`, `w_cf`, `w_co`, each `[S, B, H]`. */
  readonly peephole?: readonly [tf.Tensor, tf.Tensor, tf.Tensor];
  readonly state: StateRec;
}

type Scan = (a: ScanArgs) => { hs: tf.Tensor[]; state: StateRec };

/**
 * The LSTM (gate order i, f, g, o, as the reference and PyTorch):
 *   i = σ(x Wi + h Ui + b_i [+ w_ci ⊙ c_prev]),  f = σ(x Wf + h Uf + b_f [+ w_cf ⊙ c_prev]),
 *   g = tanh(x Wg + h Ug + b_g),  c = f ⊙ c_prev + i ⊙ g,
 *   o = σ(x Wo + h Uo + b_o [+ w_co ⊙ c]),  h = o ⊙ tanh(c).
 */
const lstmScan: Scan = ({ T, gates, peephole, state }) => {
  let h = state.h as tf.Tensor;
  let c = state.c as tf.Tensor;
  const hs: tf.Tensor[] = [];
  for (let t = 0; t < T; t++) {
    const [gi, gf, gg, go] = gates(t, h) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    const i = tf.sigmoid(peephole ? tf.add(gi, tf.mul(c, peephole[0])) : gi);
    const f = tf.sigmoid(peephole ? tf.add(gf, tf.mul(c, peephole[1])) : gf);
    c = tf.add(tf.mul(f, c), tf.mul(i, tf.tanh(gg)));
    const o = tf.sigmoid(peephole ? tf.add(go, tf.mul(c, peephole[2])) : go);
    h = tf.mul(o, tf.tanh(c));
    hs.push(h);
  }
  return { hs, state: { h, c } };
};

/**
 * The GRU, as the reference (gate order r, z, n; biases `b_r`, `b_z`, `b_in` and `b_hn`):
 *   r = σ(x Wr + h Ur + b_r),  z = σ(x Wz + h Uz + b_z),
 *   n = tanh(x Wn + b_in + r ⊙ (h Un + b_hn)),  h = (1 - z) ⊙ n + z ⊙ h_prev.
 * `b_hn` is not redundant: it is scaled by `r`. (PyTorch's `nn.GRU` is the same cell; its separate
 * input- and hidden-side biases of r and z only add up.) `gates` gives `x Wn + b_in` and
 * `h Un + b_hn` as the third and fourth blocks.
 */
const gruScan: Scan = ({ T, gates, state }) => {
  let h = state.h as tf.Tensor;
  const hs: tf.Tensor[] = [];
  for (let t = 0; t < T; t++) {
    const [gr, gz, xn, hn] = gates(t, h) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    const r = tf.sigmoid(gr);
    const z = tf.sigmoid(gz);
    const n = tf.tanh(tf.add(xn, tf.mul(r, hn)));
    h = tf.add(n, tf.mul(z, tf.sub(h, n)));
    hs.push(h);
  }
  return { hs, state: { h } };
};

/** `[S, K, G * H] -> [G * S, K, H]`: the gate blocks as a leading (gate-major) axis. */
function gateMajor(w: tf.Tensor, G: number, H: number): tf.Tensor3D {
  const [S, K] = w.shape as [number, number, number];
  return tf.reshape(tf.transpose(tf.reshape(w, [S, K, G, H]), [2, 0, 1, 3]), [
    G * S,
    K,
    H,
  ]) as tf.Tensor3D;
}

/**
 * `a [S, B, K]` (or a shared `[B, K]`) repeated for each of `G` gate blocks, `[G * S, B, K]`, by a
 * leading-axis concat: a contiguous copy forward, contiguous slices backward.
 */
function perGate(a: tf.Tensor, G: number, S: number): tf.Tensor3D {
  const parts =
    a.rank === 2 ? Array<tf.Tensor>(G * S).fill(tf.expandDims(a, 0)) : Array<tf.Tensor>(G).fill(a);
  return (parts.length === 1 ? parts[0] : tf.concat(parts)) as tf.Tensor3D;
}

// ---------------------------------------------------------------------------------------------
// The shared implementation: what the builder needs besides the weights (input checks, the
// deterministic, sampled and mean-mode forward passes), and the recurrent layer on top of it.

/** One recurrent cell type. */
interface Cell<S extends StateRec> {
  readonly kind: 'bayesianLSTM' | 'bayesianGRU';
  /** Gate blocks in the weight matrices (the GRU's are padded to four in `run`). */
  readonly gates: 3 | 4;
  readonly stateKeys: readonly (keyof S & string)[];
  readonly scan: Scan;
}

const LSTM_CELL: Cell<LstmState> = {
  kind: 'bayesianLSTM',
  gates: 4,
  stateKeys: ['h', 'c'],
  scan: lstmScan,
};

const GRU_CELL: Cell<GruState> = { kind: 'bayesianGRU', gates: 3, stateKeys: ['h'], scan: gruScan };

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
      // four gate blocks [4 * S, K, H]: the LSTM's i, f, g, o; for the GRU the input weights
      // [Wr, Wz, Wn, 0] and the recurrent ones [Ur, Uz, 0, Un] with the biases
      // [b_r, b_z, b_in, b_hn], so that one sum gives r and z whole and n's two parts apart
      let wx = gateMajor(lead(w.weightIh), G, H);
      let wh = gateMajor(lead(w.weightHh), G, H);
      let b4: tf.Tensor | undefined = w.bias
        ? tf.reshape(tf.transpose(tf.reshape(lead(w.bias), [SS, G, H]), [1, 0, 2]), [G * SS, 1, H])
        : undefined;
      if (G === 3) {
        const block = (t: tf.Tensor, g: number): tf.Tensor => tf.slice(t, g * SS, SS);
        wx = tf.concat([wx, tf.zeros([SS, inF, H])]) as tf.Tensor3D;
        wh = tf.concat([
          block(wh, 0),
          block(wh, 1),
          tf.zeros([SS, H, H]),
          block(wh, 2),
        ]) as tf.Tensor3D;
        if (b4) {
          const bhn = w.biasHn ? tf.reshape(lead(w.biasHn), [SS, 1, H]) : tf.zeros([SS, 1, H]);
          b4 = tf.concat([b4, bhn]);
        }
      }
      // the bias of each block, [4 * S, B, H], by a rank-1 batched matMul (no size-1 broadcast)
      const bias = b4
        ? tf.matMul(tf.ones([4 * SS, B, 1]) as tf.Tensor3D, b4 as tf.Tensor3D)
        : undefined;
      // time-major input: step t is a contiguous slice, [B, in] (shared) or [S, B, in]
      const xs = tf.unstack(xBatched ? tf.transpose(x, [2, 0, 1, 3]) : tf.transpose(x, [1, 0, 2]));
      let peephole: [tf.Tensor, tf.Tensor, tf.Tensor] | undefined;
      if (w.peephole) {
        // [S, 3, H] -> three [S, B, H], each by a rank-1 batched matMul
        const ones = tf.ones([SS, B, 1]) as tf.Tensor3D;
        peephole = tf
          .unstack(tf.transpose(lead(w.peephole), [1, 0, 2]))
          .map((p) => tf.matMul(ones, tf.reshape(p, [SS, 1, H]) as tf.Tensor3D)) as [
          tf.Tensor,
          tf.Tensor,
          tf.Tensor,
        ];
      }
      const gates = (t: number, h: tf.Tensor): tf.Tensor[] => {
        let pre: tf.Tensor = tf.add(
          tf.matMul(perGate(xs[t] as tf.Tensor, 4, SS), wx),
          tf.matMul(perGate(h, 4, SS), wh),
        );
        if (bias) pre = tf.add(pre, bias);
        return tf.unstack(tf.reshape(pre, [4, SS, B, H]));
      };
      const r = cell.scan({ T, gates, peephole, state: state0 });
      // time-major [T, S, B, H] -> [S, B, T, H] by one transpose (stacking along the time axis
      // would make the gradient slice along it)
      const out = tf.transpose(tf.stack(r.hs), [1, 2, 0, 3]);
      const drop = (t: tf.Tensor): tf.Tensor => (S === undefined ? tf.squeeze(t, [0]) : t);
      return {
        out: drop(out),
        state: Object.fromEntries(Object.entries(r.state).map(([k, t]) => [k, drop(t)])) as S,
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
