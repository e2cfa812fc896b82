/**
 * Posterior sampling and the ELBO: `vmapSamples` (S posterior samples in one batched pass), `elbo`
 * (the reference's `sample_elbo`), `klDivergence` (`nn_kl_divergence`) and `predictive`
 * (`mfvi_forward`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import { foldIn, isKey, type Key } from '../params/random';
import type { ParamTree } from '../params/tree';
import { applyLayerBatched, tileSamples } from '../layers/batching';
import { ConfigError, MissingKeyError } from '../errors';
import { check, positiveInt, validate } from '../validation';
import type { AnyLayer, ApplyCtx, InputOf, OutputOf, ParamsOf } from '../layers/types';
import type { Likelihood } from './likelihoods';

/** The context of `vmapSamples`: as `ApplyCtx` (the key is split into per-sample keys). */
export type SamplesCtx = Omit<ApplyCtx, 'path' | 'sample'>;

/** What `vmapSamples` and `loopSamples` return: `S` outputs `[S, ...]` and their KL terms `[S]`. */
export interface Samples<Out> {
  readonly out: Out;
  readonly kl: tf.Tensor1D;
}

function checkSamples(what: string, S: unknown): number {
  validate(what, [positiveInt('numSamples', S)]);
  return S as number;
}

function checkKeyArg(what: string, key: unknown): Key | undefined {
  if (key === undefined) return undefined;
  if (!isKey(key)) {
    throw new TypeError(
      `${what}: key must be a PRNG key from random.key(seed), got ${String(key)}.`,
    );
  }
  return key;
}

/**
 * `vmapSamples(model, S) -> (params, x, ctx) -> { out: [S, ...], kl: [S] }`: S posterior
 * samples in one batched pass through the layers' batch rules (a loop for layers without one).
 * Sample `s` uses `foldIn(ctx.key, s)` (and `ctx.noise` is asked for sample `s`), so `out[s]`
 * equals `model.apply(params, x, { key: foldIn(ctx.key, s) }).out` to float tolerance. The
 * params type is the model's.
 *
 * @example
 * ```ts
 * const { out, kl } = vmapSamples(model, 8)(params, x, { key: random.key(0) }); // out [8, batch, 1]
 * ```
 */
export function vmapSamples<M extends AnyLayer>(
  model: M,
  numSamples: number,
): (params: ParamsOf<M>, x: InputOf<M>, ctx?: SamplesCtx) => Samples<OutputOf<M>> {
  const S = checkSamples('vmapSamples', numSamples);
  return (params, x, ctx = {}) =>
    tidy(() => {
      const key = checkKeyArg('vmapSamples', ctx.key);
      return samplesFrom(model, params, x, ctx, key, 0, S);
    });
}

/**
 * `samplesInPasses(model, params, x, ctx, S, perPass) -> [S, ...]`: the outputs of `S` posterior
 * samples in batched passes of at most `perPass` samples (sample `s` uses `foldIn(ctx.key, s)`,
 * as in one pass), concatenated; the activations of one pass are all that is alive at a time.
 */
export function samplesInPasses<M extends AnyLayer>(
  model: M,
  params: ParamsOf<M>,
  x: InputOf<M>,
  ctx: SamplesCtx,
  numSamples: number,
  perPass: number,
): tf.Tensor {
  return tidy(() => {
    const key = checkKeyArg('predictive', ctx.key);
    const parts: tf.Tensor[] = [];
    for (let first = 0; first < numSamples; first += perPass) {
      const n = Math.min(perPass, numSamples - first);
      parts.push(samplesFrom(model, params, x, ctx, key, first, n).out as tf.Tensor);
    }
    return parts.length === 1 ? (parts[0] as tf.Tensor) : tf.concat(parts);
  });
}

/** Samples `[first, first + S)` in one batched pass: sample `s` uses `foldIn(key, s)`. */
function samplesFrom<M extends AnyLayer>(
  model: M,
  params: ParamsOf<M>,
  x: InputOf<M>,
  ctx: SamplesCtx,
  key: Key | undefined,
  first: number,
  S: number,
): Samples<OutputOf<M>> {
  return tidy(() => {
    const { key: _k, ...rest } = ctx;
    const keys =
      key === undefined ? undefined : Array.from({ length: S }, (_, s) => foldIn(key, first + s));
    const r = applyLayerBatched(model, params, x, {
      ...rest,
      keys,
      numSamples: S,
      batched: false,
      firstSample: first,
    });
    return { out: r.batched ? r.out : tileSamples(r.out, S), kl: r.kl };
  });
}

/**
 * `loopSamples(model, S) -> (params, x, ctx) -> { out: [S, ...], kl: [S] }`: the same as
 * `vmapSamples` computed by S separate `apply` calls (the reference's loop; call `s` gets the key
 * `foldIn(key, s)` and `ctx.sample = s`). For checking and for models whose batched pass would not
 * fit in memory.
 *
 * @example
 * ```ts
 * const { out } = loopSamples(model, 8)(params, x, { key: random.key(0) });
 * ```
 */
export function loopSamples<M extends AnyLayer>(
  model: M,
  numSamples: number,
): (params: ParamsOf<M>, x: InputOf<M>, ctx?: SamplesCtx) => Samples<OutputOf<M>> {
  const S = checkSamples('loopSamples', numSamples);
  return (params, x, ctx = {}) =>
    tidy(() => {
      const key = checkKeyArg('loopSamples', ctx.key);
      const outs: tf.Tensor[] = [];
      const kls: tf.Scalar[] = [];
      for (let s = 0; s < S; s++) {
        const r = model.apply(params, x, {
          ...ctx,
          key: key === undefined ? undefined : foldIn(key, s),
          sample: s,
        });
        outs.push(r.out as tf.Tensor);
        kls.push(r.kl);
      }
      return { out: tf.stack(outs) as OutputOf<M>, kl: tf.stack(kls) as tf.Tensor1D };
    });
}

/** Options of `elbo`. */
export interface ElboOptions {
  /** Posterior samples per step (the reference's `sample_nbr`). Default 1. */
  readonly numSamples?: number;
  /** `'vmap'` (default): one batched pass; `'loop'`: S `apply` calls. Same result. */
  readonly sampler?: 'vmap' | 'loop';
  /** Extra context for the model (e.g. `{ training: true }` for dropout). */
  readonly ctx?: Omit<SamplesCtx, 'key'>;
}

/** The parameters an ELBO is a function of: the model's and the likelihood's. */
export type ElboParams<MP extends ParamTree = ParamTree, LP extends ParamTree = ParamTree> = {
  readonly model: MP;
  readonly likelihood: LP;
};

/** The parts of the ELBO loss, as returned by `elboDetailed`. */
export interface ElboParts {
  /** `nll + klWeight * kl`, the loss that is minimised. */
  readonly loss: tf.Scalar;
  /** The likelihood part: mean NLL over samples and examples. */
  readonly nll: tf.Scalar;
  /** The complexity part: mean KL over samples (not yet weighted). */
  readonly kl: tf.Scalar;
  /** The predictions, `[S, ...]`. */
  readonly predictions: tf.Tensor;
}

function checkKlWeight(w: unknown): number {
  validate('elbo', [
    check(
      typeof w === 'number' && Number.isFinite(w) && w >= 0,
      `klWeight must be a finite number >= 0 (e.g. 1 / numExamples), got ${String(w)}`,
    ),
  ]);
  return w as number;
}

/** The ELBO as a function of `{ model, likelihood }` params and a batch. */
export type ElboFn<P extends ParamTree, In, R> = (
  params: P,
  x: In,
  y: tf.Tensor,
  key: Key,
  klWeight: number,
) => R;

/**
 * `elboDetailed(model, likelihood, opts?) -> (params, x, y, key, klWeight) -> ElboParts`: the
 * reference's `sample_elbo` with its parts: over `numSamples` posterior draws, the mean of
 * `nll + klWeight * kl`, where `nll` is the likelihood's mean NLL of the batch and `kl` the
 * model's KL term. With a per-example NLL, `klWeight = 1 / numExamples` gives the per-example
 * negative ELBO. The params type `{ model, likelihood }` is the model's and the likelihood's.
 *
 * @example
 * ```ts
 * const parts = elboDetailed(model, gaussianNll())(params, x, y, random.key(0), 1 / 442);
 * ```
 */
export function elboDetailed<M extends AnyLayer, LP extends ParamTree>(
  model: M,
  likelihood: Likelihood<LP>,
  opts: ElboOptions = {},
): ElboFn<ElboParams<ParamsOf<M>, LP>, InputOf<M>, ElboParts> {
  const S = checkSamples('elbo', opts.numSamples ?? 1);
  const run = (opts.sampler ?? 'vmap') === 'vmap' ? vmapSamples(model, S) : loopSamples(model, S);
  return (params, x, y, key, klWeight) =>
    tidy(() => {
      if (key === undefined)
        throw new MissingKeyError('elbo', 'the ELBO (it samples the posterior)');
      const w = checkKlWeight(klWeight);
      if (
        !params ||
        typeof params !== 'object' ||
        !('model' in params) ||
        !('likelihood' in params)
      ) {
        throw new TypeError(
          'elbo: params must be { model, likelihood } (the model’s init().params and the likelihood’s init()).',
        );
      }
      const { out, kl } = run(params.model, x, { ...opts.ctx, key });
      const predictions = out as tf.Tensor;
      const nll = likelihood.nll(params.likelihood, predictions, y);
      const klMean = tf.mean(kl) as tf.Scalar;
      const loss = tf.add(nll, tf.mul(klMean, w)) as tf.Scalar;
      return { loss, nll, kl: klMean, predictions };
    });
}

/**
 * `elbo(model, likelihood, opts?) -> (params, x, y, key, klWeight) -> loss`: the scalar loss of
 * `elboDetailed`, ready for `valueAndGrad`.
 *
 * @example
 * ```ts
 * const loss = elbo(model, mse(), { numSamples: 3 });
 * const { value, grads } = valueAndGrad(loss)(params, x, y, random.key(0), 1 / n);
 * ```
 */
export function elbo<M extends AnyLayer, LP extends ParamTree>(
  model: M,
  likelihood: Likelihood<LP>,
  opts: ElboOptions = {},
): ElboFn<ElboParams<ParamsOf<M>, LP>, InputOf<M>, tf.Scalar> {
  const detailed = elboDetailed(model, likelihood, opts);
  return (params, x, y, key, klWeight) => tidy(() => detailed(params, x, y, key, klWeight).loss);
}

/**
 * `klDivergence(model, params, key) -> scalar`: the model's KL term at one posterior sample drawn
 * with `key` (the reference's `nn_kl_divergence`); the same value `apply` with that key returns.
 *
 * @example
 * ```ts
 * const kl = klDivergence(model, params, random.key(0));
 * ```
 */
export function klDivergence<M extends AnyLayer>(
  model: M,
  params: ParamsOf<M>,
  key: Key,
  ctx: Omit<ApplyCtx, 'key'> = {},
): tf.Scalar {
  if (checkKeyArg('klDivergence', key) === undefined) {
    throw new MissingKeyError('klDivergence', 'the KL estimate');
  }
  return model.klDivergence(params, { ...ctx, key });
}

/** Posterior samples per batched pass of `predictive` (see `PredictiveOptions.samplesPerPass`). */
export const DEFAULT_SAMPLES_PER_PASS = 16;

/** Options of `predictive`. */
export interface PredictiveOptions {
  /** The key of the posterior samples (sample `s` uses `foldIn(key, s)`). */
  readonly key: Key;
  /** Posterior samples (>= 2). Default 10. */
  readonly numSamples?: number;
  /** `'vmap'` (default): batched passes; `'loop'`: S `apply` calls. Same result. */
  readonly sampler?: 'vmap' | 'loop';
  /**
   * With `'vmap'`: at most this many posterior samples per batched pass (default 16), so that the
   * activations of a pass stay bounded (`samplesPerPass * batch * width` floats per layer) however
   * many samples are drawn; the result does not depend on it.
   */
  readonly samplesPerPass?: number;
  /** Extra context for the model. */
  readonly ctx?: Omit<SamplesCtx, 'key'>;
}

/** What `predictive` returns: statistics over posterior samples, along axis 0. */
export interface Predictive {
  /** Mean over samples. */
  readonly mean: tf.Tensor;
  /** Standard deviation over samples (unbiased, as the reference's `torch.std`): the epistemic part. */
  readonly std: tf.Tensor;
  /** The samples `[S, ...]`. */
  readonly samples: tf.Tensor;
}

/**
 * `predictive(model, params, x, { key, numSamples }) -> { mean, std, samples }`: Monte Carlo
 * prediction over posterior samples (the reference's `mfvi_forward`). `std` is the unbiased
 * sample standard deviation over samples, so `numSamples >= 2`.
 *
 * @example
 * ```ts
 * const { mean, std } = predictive(model, params.model, xTest, { key: random.key(7), numSamples: 100 });
 * ```
 */
export function predictive<M extends AnyLayer>(
  model: M,
  params: ParamsOf<M>,
  x: InputOf<M>,
  opts: PredictiveOptions,
): Predictive {
  const S = checkSamples('predictive', opts?.numSamples ?? 10);
  if (S < 2) {
    throw new ConfigError('predictive', [
      `numSamples must be at least 2 for a standard deviation, got ${S}`,
    ]);
  }
  if (checkKeyArg('predictive', opts?.key) === undefined) {
    throw new MissingKeyError('predictive', 'Monte Carlo prediction');
  }
  const perPass = opts.samplesPerPass ?? DEFAULT_SAMPLES_PER_PASS;
  validate('predictive', [positiveInt('samplesPerPass', perPass)]);
  const ctx: SamplesCtx = { ...opts.ctx, key: opts.key, computeKl: false };
  return tidy(() => {
    const out =
      (opts.sampler ?? 'vmap') === 'loop'
        ? (loopSamples(model, S)(params, x, ctx).out as tf.Tensor)
        : samplesInPasses(model, params, x, ctx, S, perPass);
    const mean = tf.mean(out, 0);
    const variance = tf.div(tf.sum(tf.squaredDifference(out, mean), 0), S - 1);
    return { mean, std: tf.sqrt(variance), samples: out };
  });
}
