/**
 * `bayesianEmbedding`: the reference's `BayesianEmbedding`, a lookup table `weight
 * [numEmbeddings, embeddingDim]` with a diagonal Gaussian posterior; integer indices `[...]` map
 * to vectors `[..., embeddingDim]`. One table sample per call (all looked-up rows of a batch come
 * from the same sample), its noise from `foldIn(layerKey, 0)`. Written with `bayesianLayer`
 * (`./bayesian`): the layer declares its table (with the padding row left out of the KL), the
 * lookup (`forward`) and the lookup of S sampled tables at once (`forwardSampled`); sampling, the
 * KL term, both modes, `vmapSamples` and validation are the builder's.
 *
 * The options of PyTorch's `nn.Embedding`, and what they mean here:
 *
 * - `paddingIdx`: positions holding this index output zeros, and the table gets no gradient from
 *   them (the looked-up vectors are multiplied by a 0/1 mask, so the padding row's gradient is
 *   exactly 0). The padding row is also left out of the KL term: it never reaches the output, so
 *   it is not a random variable of the model; with it left out, its `mu` and `rho` get no
 *   gradient at all and stay as initialised (PyTorch likewise never updates the padding row; the
 *   reference keeps it in its KL, which only pulls an unused row towards the prior). Negative
 *   values count from the end, as in PyTorch.
 * - `maxNorm` / `normType`: each looked-up vector whose `normType`-norm exceeds `maxNorm` is
 *   scaled to norm `maxNorm` (`v * maxNorm / (norm + 1e-7)`, PyTorch's formula), keeping its
 *   direction. Parameters are immutable here: the OUTPUT is renormalised, on every call, and the
 *   gradient flows through the renormalisation. PyTorch instead rescales the rows of the weight
 *   tensor in place, without gradient; in the reference's frozen mode that weight is `weight_mu`
 *   itself, so its renormalisation permanently changes the posterior means (here `mu` never
 *   changes behind the optimizer's back).
 * - `scaleGradByFreq`: the table's gradient from each position is divided by the number of times
 *   its index occurs in the batch (the whole input tensor of the call; per posterior sample in a
 *   batched pass). The counts are computed in JS from the index data.
 * - `sparse`: tfjs has no sparse tensors. With `sparse: true` the table's gradient is built by ONE
 *   `scatterND` of the looked-up rows' gradients into a zero table (rows never looked up stay
 *   exactly 0), a cost proportional to the number of lookups, instead of gather's own gradient
 *   (`UnsortedSegmentSum`). The result is the same dense `[numEmbeddings, embeddingDim]` tensor
 *   (equal up to the order of summation), so an optimizer still sees a dense gradient (Adam's
 *   moments decay for every row, unlike PyTorch's `SparseAdam`). What changes is the cost on
 *   backends whose `UnsortedSegmentSum` is slow: tfjs-cpu's runs whole-tensor ops once per table
 *   row, O(numEmbeddings * lookups): a training step of the sequence-classification example takes
 *   about 217 ms of CPU with it and 120 ms with `sparse: true`. On wasm the library's
 *   `UnsortedSegmentSum` is itself one scatter, so both are alike there.
 *
 * Indices must be an int32 tensor. They are read on the JS side, once per call (a `dataSync`,
 * cheap on cpu and wasm, a GPU read-back on webgl), to check that each lies in
 * `[0, numEmbeddings)` (an `IndexError` names the layer's path, the bad index and its position:
 * tfjs's gather does not check on every backend), and for the padding mask and the counts of
 * `scaleGradByFreq`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import type { GaussianParams } from '../params/distributions';
import {
  BAYESIAN_DEFAULTS,
  bayesianLayer,
  type BayesianLayer,
  type BayesianOptions,
  type SampledCtx,
} from './bayesian';
import { IndexError, ShapeError, fmtShape } from '../errors';
import { check, isBool, positiveInt, validate } from '../validation';
import type { Shape } from './types';

/** Options of `bayesianEmbedding` (the reference's `BayesianEmbedding` arguments, camelCased). */
export interface BayesianEmbeddingOptions extends BayesianOptions {
  /** Size of the vocabulary (rows of the table). */
  readonly numEmbeddings: number;
  /** Length of each embedding vector. */
  readonly embeddingDim: number;
  /** Index whose positions output zeros and give no gradient; negative counts from the end. */
  readonly paddingIdx?: number;
  /** Renormalise looked-up vectors whose `normType`-norm exceeds this. */
  readonly maxNorm?: number;
  /** The p of the p-norm for `maxNorm` (positive; `Infinity` for the max-norm). Default 2. */
  readonly normType?: number;
  /** Divide the table gradient by each index's count in the batch. Default false. */
  readonly scaleGradByFreq?: boolean;
  /** Build the table gradient by one scatter of the looked-up rows (still dense). Default false. */
  readonly sparse?: boolean;
  /** The layer's name (its key in a parent's parameter tree). Default `'bayesianEmbedding'`. */
  readonly name?: string;
}

/** Parameters of `bayesianEmbedding`: the posterior of the table. */
export type BayesianEmbeddingParams = { readonly weight: GaussianParams };

/** A concrete table (a sample or the means): `weight [numEmbeddings, embeddingDim]`. */
export type EmbeddingWeights = { readonly weight: tf.Tensor };

/**
 * `bayesianEmbedding` is a `Layer` over int32 indices with its three steps exposed (`sample` /
 * `mean` / `forward(weights, indices) -> vectors [..., embeddingDim]`).
 */
export type BayesianEmbeddingLayer = BayesianLayer<BayesianEmbeddingParams, EmbeddingWeights>;

/** The index data of a call, read once: the flat indices and whether the padding index occurs. */
interface Lookup {
  readonly ids: Int32Array;
  readonly shape: readonly number[];
  readonly hasPadding: boolean;
}

/**
 * `renormRows(rows [M, D], maxNorm, p) -> rows`: scales each row whose p-norm exceeds `maxNorm`
 * by `maxNorm / (norm + 1e-7)` (PyTorch's factor), i.e. `rows * min(1, maxNorm / (norm + 1e-7))`.
 * Differentiable ops only (a comparison has no gradient in tfjs, so no `where`): the roots get a
 * `1e-30` offset so that their gradient stays finite at a zero row (the value changes by less
 * than float32 resolves for any row that is not zero).
 */
function renormRows(rows: tf.Tensor, maxNorm: number, p: number): tf.Tensor {
  const TINY = 1e-30;
  let norm: tf.Tensor;
  if (p === Infinity) {
    norm = tf.max(tf.abs(rows), -1, true);
  } else if (p === 1) {
    norm = tf.sum(tf.abs(rows), -1, true);
  } else if (p === 2) {
    norm = tf.sqrt(tf.add(tf.sum(tf.square(rows), -1, true), TINY));
  } else {
    const powered = tf.pow(tf.add(tf.abs(rows), TINY), p);
    norm = tf.pow(tf.add(tf.sum(powered, -1, true), TINY), 1 / p);
  }
  return tf.mul(rows, tf.minimum(1, tf.div(maxNorm, tf.add(norm, 1e-7))));
}

/**
 * `bayesianEmbedding(options) -> Layer`: a Bayes-by-Backprop embedding table.
 *
 * Defaults (the reference's): `paddingIdx = undefined`, `maxNorm = undefined`, `normType = 2`,
 * `scaleGradByFreq = false`, `sparse = false`, `priorSigma1 = 1`, `priorSigma2 = 0.002`,
 * `priorPi = 0.5`, `posteriorMuInit = 0`, `posteriorRhoInit = -6`, `freeze = false`,
 * `kl = 'mc'`. Input: int32 indices of any shape `[...]`; output `[..., embeddingDim]`. See the
 * module documentation for what `paddingIdx`, `maxNorm`, `scaleGradByFreq` and `sparse` do.
 *
 * @example
 * ```ts
 * const emb = bayesianEmbedding({ numEmbeddings: 100, embeddingDim: 8, paddingIdx: 0 });
 * const { params } = emb.init(random.key(0), [-1, 12]);
 * const ids = tf.tensor2d([[0, 0, 5, 7]], [1, 4], 'int32');
 * const { out } = emb.apply(params, ids, { key: random.key(1) }); // [1, 4, 8], zeros at [0, 0:2]
 * ```
 */
export function bayesianEmbedding(options: BayesianEmbeddingOptions): BayesianEmbeddingLayer {
  const name = options?.name ?? 'bayesianEmbedding';
  if (options === null || typeof options !== 'object') {
    validate(`bayesianEmbedding '${name}'`, [
      positiveInt('numEmbeddings', undefined),
      positiveInt('embeddingDim', undefined),
    ]);
  }
  const V = options.numEmbeddings;
  const D = options.embeddingDim;
  const normType = options.normType ?? 2;
  const vOk = typeof V === 'number' && Number.isInteger(V) && V >= 1;
  // (normalised before validation, harmlessly: bayesianLayer validates before using anything)
  const paddingIdx =
    options.paddingIdx === undefined
      ? undefined
      : typeof options.paddingIdx === 'number' && options.paddingIdx < 0
        ? options.paddingIdx + V
        : options.paddingIdx;
  const maxNorm = options.maxNorm;
  const scaleGradByFreq = options.scaleGradByFreq ?? false;
  const sparse = options.sparse ?? false;
  const customGradient = scaleGradByFreq || sparse;

  /** Checks that `x` is an int32 tensor (with a leading axis when `batched`). */
  const checkIndexTensor = (x: unknown, path: string, batched: boolean): tf.Tensor => {
    if (!(x instanceof tf.Tensor)) {
      throw new ShapeError(path, `expected an int32 tensor of indices, got ${typeof x}.`);
    }
    if (x.dtype !== 'int32') {
      throw new ShapeError(
        path,
        `indices must be an int32 tensor (e.g. tf.tensor(ids, shape, 'int32')), got dtype ${x.dtype} ${fmtShape(x.shape)}.`,
      );
    }
    if (batched && x.rank < 1) {
      throw new ShapeError(
        path,
        `expected batched indices [samples, ...] (one set per sample), got ${fmtShape(x.shape)}.`,
      );
    }
    return x;
  };

  /** Reads the indices (one `dataSync`) and checks that each lies in [0, V). */
  const readIndices = (x: tf.Tensor, path: string): Lookup => {
    const ids = x.dataSync() as Int32Array;
    let hasPadding = false;
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i] as number;
      if (v < 0 || v >= V) {
        const pos: number[] = [];
        let rest = i;
        for (let a = x.rank - 1; a >= 0; a--) {
          const d = x.shape[a] as number;
          pos.unshift(rest % d);
          rest = Math.floor(rest / d);
        }
        throw new IndexError(path, v, pos, V, { inputShape: x.shape, sizeName: 'numEmbeddings' });
      }
      if (v === paddingIdx) hasPadding = true;
    }
    return { ids, shape: x.shape, hasPadding };
  };

  // The indices of the current call, read by the input check (which knows the layer's path) and
  // taken by the lookup of the same call, so that they are read once per call. Keyed on the
  // tensor's id and its data (a tf.Variable keeps its id when assigned); a lookup without a
  // matching entry (`forward` called directly) reads and checks them itself.
  let pending:
    | { readonly id: number; readonly dataId: object; readonly lookup: Lookup }
    | undefined;

  const checkInput = (x: tf.Tensor, path: string, batched: boolean): void => {
    pending = undefined;
    const t = checkIndexTensor(x, path, batched);
    const lookup = readIndices(t, path);
    pending = { id: t.id, dataId: t.dataId, lookup };
  };

  /** The read indices of `x`: those of this call's input check, else read here (at `path`). */
  const takeLookup = (x: tf.Tensor, path: string, batched: boolean): Lookup => {
    const p = pending;
    if (p !== undefined && x instanceof tf.Tensor && p.id === x.id && p.dataId === x.dataId) {
      pending = undefined;
      return p.lookup;
    }
    return readIndices(checkIndexTensor(x, path, batched), path);
  };

  /** In a batched pass: the indices have the sample axis `[S, ...]`. */
  const checkSampleAxis = (x: tf.Tensor, ctx: SampledCtx): void => {
    if (ctx.batched && x.shape[0] !== ctx.numSamples) {
      throw new ShapeError(
        ctx.path,
        `expected batched indices [${ctx.numSamples}, ...] (one set per sample), got ${fmtShape(x.shape)}.`,
      );
    }
  };

  /**
   * Looks up rows of a table `[R, D]` (R = V, or S * V for S stacked sample tables) at `flat`
   * row indices: gather, or (scaleGradByFreq / sparse) gather with a custom gradient. The custom
   * gradient captures only JS arrays (never a tensor that could be disposed before the backward
   * pass) and uses no `save`.
   */
  const gatherRows = (table: tf.Tensor, flat: Int32Array): tf.Tensor => {
    const R = table.shape[0] as number;
    const idx = tf.tensor1d(flat, 'int32');
    if (!customGradient) return tf.gather(table, idx);
    let scales: Float32Array | undefined;
    if (scaleGradByFreq) {
      const counts = new Map<number, number>();
      for (const v of flat) counts.set(v, (counts.get(v) ?? 0) + 1);
      scales = Float32Array.from(flat, (v) => 1 / (counts.get(v) as number));
    }
    const M = flat.length;
    const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
      value: tf.gather(args[0] as tf.Tensor, idx),
      gradFunc: (dy: tf.Tensor) => {
        const ids = tf.tensor1d(flat, 'int32');
        const g = scales ? tf.mul(dy, tf.tensor2d(scales, [M, 1])) : dy;
        return sparse
          ? tf.scatterND(tf.reshape(ids, [M, 1]), g, [R, D])
          : tf.unsortedSegmentSum(g, ids, R);
      },
    }));
    return op(table);
  };

  /** The padding mask `[M, D]` of flat indices (1 where kept, 0 at padding positions). */
  const paddingMask = (ids: Int32Array): tf.Tensor => {
    const m = new Float32Array(ids.length * D).fill(1);
    ids.forEach((v, i) => {
      if (v === paddingIdx) m.fill(0, i * D, (i + 1) * D);
    });
    return tf.tensor2d(m, [ids.length, D]);
  };

  const renorm = (rows: tf.Tensor): tf.Tensor =>
    maxNorm === undefined ? rows : renormRows(rows, maxNorm, normType);

  /** The output of one table `[V, D]` for read indices (any leading axes are batch axes). */
  const lookup = (weight: tf.Tensor, lk: Lookup): tf.Tensor => {
    let y = renorm(gatherRows(weight, lk.ids));
    if (lk.hasPadding) y = tf.mul(y, paddingMask(lk.ids));
    return tf.reshape(y, [...lk.shape, D]);
  };

  /**
   * The output of S sampled tables `[S, V, D]` in one gather: sample `s` looks up row `s * V + i`
   * of the stacked tables `[S * V, D]`, with its own indices (`ctx.batched`, `[S, ...]`) or the
   * shared ones; the padding mask of shared indices reaches every sample by a leading-axis
   * broadcast.
   */
  const lookupSampled = (weight: tf.Tensor, lk: Lookup, ctx: SampledCtx): tf.Tensor => {
    const S = ctx.numSamples;
    const table = tf.reshape(weight, [S * V, D]);
    const N = ctx.batched ? lk.ids.length / S : lk.ids.length;
    const flat = new Int32Array(S * N);
    for (let s = 0; s < S; s++) {
      for (let i = 0; i < N; i++) {
        flat[s * N + i] = s * V + (lk.ids[ctx.batched ? s * N + i : i] as number);
      }
    }
    let rows = renorm(gatherRows(table, flat));
    if (lk.hasPadding) {
      rows = ctx.batched
        ? tf.mul(rows, paddingMask(lk.ids))
        : tf.mul(tf.reshape(rows, [S, N, D]), paddingMask(lk.ids));
    }
    const inner = ctx.batched ? lk.shape.slice(1) : lk.shape;
    return tf.reshape(rows, [S, ...inner, D]);
  };

  return bayesianLayer({
    kind: 'bayesianEmbedding',
    name,
    options,
    optionNames: [
      'numEmbeddings',
      'embeddingDim',
      'paddingIdx',
      'maxNorm',
      'normType',
      'scaleGradByFreq',
      'sparse',
      'name',
    ],
    checks: [
      positiveInt('numEmbeddings', V),
      positiveInt('embeddingDim', D),
      check(
        options.paddingIdx === undefined ||
          (typeof options.paddingIdx === 'number' &&
            Number.isInteger(options.paddingIdx) &&
            (!vOk || (options.paddingIdx >= -V && options.paddingIdx < V))),
        `paddingIdx must be an integer in [-numEmbeddings, numEmbeddings)${vOk ? ` = [${-V}, ${V})` : ''}, got ${String(options.paddingIdx)}`,
      ),
      check(
        options.maxNorm === undefined ||
          (typeof options.maxNorm === 'number' &&
            Number.isFinite(options.maxNorm) &&
            options.maxNorm > 0),
        `maxNorm must be a positive finite number, got ${String(options.maxNorm)}`,
      ),
      check(
        typeof normType === 'number' && normType > 0 && !Number.isNaN(normType),
        `normType must be a positive number (Infinity for the max-norm), got ${String(normType)}`,
      ),
      isBool('scaleGradByFreq', scaleGradByFreq),
      isBool('sparse', sparse),
    ],
    rhoDefault: BAYESIAN_DEFAULTS.posteriorRhoInitOther,
    config: {
      numEmbeddings: V,
      embeddingDim: D,
      paddingIdx: paddingIdx ?? null,
      maxNorm: maxNorm ?? null,
      normType,
      scaleGradByFreq,
      sparse,
      name,
    },
    weights: {
      // the padding row never reaches the output: it is left out of the KL (a one-row table keeps
      // its row, as before)
      weight: {
        shape: [V, D],
        index: 0,
        kl: paddingIdx !== undefined && V > 1 ? { excludeRows: [paddingIdx] } : true,
      },
    },
    outputShape: (inputShape: Shape, path: string): Shape => {
      if (!Array.isArray(inputShape)) {
        throw new ShapeError(path, `expected an index shape [...], got ${String(inputShape)}.`);
      }
      return [...inputShape, D];
    },
    checkInput,
    forward: (weights, x) => tidy(() => lookup(weights.weight, takeLookup(x, name, false))),
    forwardSampled: (weights, x, ctx) =>
      tidy(() => {
        const lk = takeLookup(x, ctx.path, ctx.batched);
        checkSampleAxis(x, ctx);
        return lookupSampled(weights.weight, lk, ctx);
      }),
    // one table for every sample: keep the input's batching
    forwardMean: (weights, x, ctx) =>
      tidy(() => {
        const lk = takeLookup(x, ctx.path, ctx.batched);
        checkSampleAxis(x, ctx);
        return { out: lookup(weights.weight, lk), batched: ctx.batched };
      }),
  });
}
