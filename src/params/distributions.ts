/**
 * Distributions over weights: the diagonal Gaussian posterior `{ mu, rho }` with
 * `sigma = softplus(rho)`, and the priors (scale mixture, normal, Laplace, or any object with a
 * `logProb`). Every density here is a SUM over elements, returned as a scalar tensor.
 */
import * as tf from '@tensorflow/tfjs-core';
import { normal, split, type Key } from './random';
import { show } from '../errors';
import { check, finite, inRange, positive, validate } from '../validation';

const LOG_2PI = Math.log(2 * Math.PI);

/** Parameters of a diagonal Gaussian posterior: `sigma = softplus(rho)`. */
export type GaussianParams = {
  readonly mu: tf.Tensor;
  readonly rho: tf.Tensor;
};

/**
 * `softplus(rho) -> sigma`: `log1p(exp(rho))` computed without overflow for large `rho` (it
 * returns `rho`) and without underflow to a wrong value for very negative `rho` (it returns
 * `exp(rho)`).
 *
 * @example
 * ```ts
 * softplus(tf.tensor([-7, 0, 100])); // ≈ [0.000911, 0.693147, 100]
 * ```
 */
export function softplus(rho: tf.Tensor): tf.Tensor {
  // tfjs's Softplus kernel (cpu, wasm, webgl) returns x above -log(eps) - 2 and exp(x) below
  // log(eps) + 2, log1p(exp(x)) in between: stable in both tails, one op; gradient sigmoid(x).
  return tf.softplus(rho);
}

// Below this, log(softplus(rho)) = rho + log1p(-exp(rho) / 2 + ...) = rho to float32 precision.
/** Below this, `logSoftplus(rho)` is `rho` (to float32 precision); its derivative there is 1. */
export const LOG_SOFTPLUS_TAIL = -20;

/**
 * `logSoftplus(rho) -> log(sigma)`: `log(softplus(rho))` without `log(0)`: for `rho < -20` it is
 * `rho` (the series `rho - exp(rho)/2 + ...` to float32 precision), so it stays finite down to any
 * `rho`; its gradient is `sigmoid(rho) / softplus(rho)` (1 in the tail).
 *
 * @example
 * ```ts
 * logSoftplus(tf.tensor([-200])); // ≈ [-200], not -Infinity
 * ```
 */
export function logSoftplus(rho: tf.Tensor): tf.Tensor {
  // log(softplus(max(rho, T))) - relu(T - rho): the direct form above T, and below it
  // log(softplus(T)) + (rho - T) = rho (to float32 precision). Built from differentiable ops only,
  // so tfjs's own gradients give sigmoid(rho) / softplus(rho) above T and 1 below (at rho = T
  // exactly, maximum passes the gradient and relu'(0) = 0, so it is not counted twice). No
  // tf.customGrad: its `save` clones the input, which the wasm backend copies into a new buffer
  // that tfjs's kernel leak check (test mode) reports as a leak, so gradients threw on wasm.
  return tf.tidy(() =>
    tf.sub(
      tf.log(tf.softplus(tf.maximum(rho, LOG_SOFTPLUS_TAIL))),
      tf.relu(tf.sub(LOG_SOFTPLUS_TAIL, rho)),
    ),
  );
}

/**
 * `inverseSoftplus(sigma) -> rho`: the `rho` whose softplus is `sigma` (for initialisation and
 * checkpoint conversion). `sigma` must be positive.
 *
 * @example
 * ```ts
 * inverseSoftplus(0.1); // ≈ -2.2522
 * ```
 */
export function inverseSoftplus(sigma: number): number {
  if (!(sigma > 0) || !Number.isFinite(sigma)) {
    throw new RangeError(`inverseSoftplus: sigma must be a positive finite number, got ${sigma}.`);
  }
  return sigma > 30 ? sigma : Math.log(Math.expm1(sigma));
}

/** `log(2 pi) / 2`. */
const HALF_LOG_2PI = 0.5 * LOG_2PI;

/**
 * `gaussianInit(key, shape, muInit, rhoInit, std = 0.1) -> { mu, rho }`: a fresh posterior with
 * `mu ~ N(muInit, std^2)` and `rho ~ N(rhoInit, std^2)`, from `split(key)` (mu from the first
 * key, rho from the second). The reference's initialisation of every Bayesian weight.
 *
 * @example
 * ```ts
 * const post = gaussianInit(random.key(0), [3, 2], 0, -7);
 * ```
 */
export function gaussianInit(
  key: Key,
  shape: readonly number[],
  muInit: number,
  rhoInit: number,
  std = 0.1,
): GaussianParams {
  const [kMu, kRho] = split(key);
  return tf.tidy(() => ({
    mu: tf.add(tf.mul(normal(kMu, shape), std), muInit),
    rho: tf.add(tf.mul(normal(kRho, shape), std), rhoInit),
  }));
}

/**
 * `gaussianReparam(params, eps) -> { w, logSigma }`: the reparameterised sample
 * `w = mu + sigma * eps` with `sigma = exp(logSoftplus(rho))`, and `log sigma` (which the Monte
 * Carlo KL reuses). `eps` may have extra leading (sample) axes: `[S, ...shape]` gives S samples.
 *
 * @example
 * ```ts
 * const { w, logSigma } = gaussianReparam({ mu, rho }, random.normal(k, mu.shape));
 * ```
 */
export function gaussianReparam(
  p: GaussianParams,
  eps: tf.Tensor,
): { w: tf.Tensor; logSigma: tf.Tensor } {
  return tf.tidy(() => {
    const logSigma = logSoftplus(p.rho);
    return { w: tf.add(p.mu, tf.mul(tf.exp(logSigma), eps)), logSigma };
  });
}

/**
 * `gaussianSample(params, eps) -> w`: `mu + softplus(rho) * eps` (the reparameterisation, as
 * `gaussianReparam`).
 *
 * @example
 * ```ts
 * const w = gaussianSample({ mu, rho }, random.normal(k, mu.shape));
 * ```
 */
export function gaussianSample(p: GaussianParams, eps: tf.Tensor): tf.Tensor {
  return tf.tidy(() => gaussianReparam(p, eps).w);
}

/**
 * `gaussianDraw(params, key) -> { w, eps }`: draws `eps ~ N(0, I)` from `key` (JAX-compatible
 * noise) and returns the sample and the noise.
 *
 * @example
 * ```ts
 * const { w } = gaussianDraw({ mu, rho }, random.key(0));
 * ```
 */
export function gaussianDraw(p: GaussianParams, key: Key): { w: tf.Tensor; eps: tf.Tensor } {
  return tf.tidy(() => {
    const eps = normal(key, p.mu.shape);
    return { w: gaussianSample(p, eps), eps };
  });
}

/**
 * `gaussianLogProb(params, w) -> scalar`: `sum log N(w; mu, softplus(rho)^2)`.
 *
 * @example
 * ```ts
 * gaussianLogProb({ mu, rho }, w);
 * ```
 */
export function gaussianLogProb(p: GaussianParams, w: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const sigma = softplus(p.rho);
    const z = tf.div(tf.sub(w, p.mu), sigma);
    return tf.sum(
      tf.sub(tf.sub(tf.mul(tf.square(z), -0.5), logSoftplus(p.rho)), HALF_LOG_2PI),
    ) as tf.Scalar;
  });
}

/**
 * `gaussianLogProbAtNoise(sumLogSigma, sumEps2, n) -> log q`: `log q(w)` of a diagonal Gaussian at
 * `w = mu + sigma * eps`, from `sum(log sigma)` (a scalar tensor, carrying the gradient), the sum
 * of the squared noise and the number `n` of elements:
 * `-sum(log sigma) - sum(eps^2) / 2 - n log(2 pi) / 2`. The standardised residual
 * `(w - mu) / sigma` is exactly `eps`, so this equals `gaussianLogProb(p, w)` with the same
 * gradient, without dividing by a tiny sigma. `sumEps2` is a number for one sample (the result is
 * a scalar) or a tensor `[S]` for S samples (the result is `[S]`); the noise is a constant.
 *
 * @example
 * ```ts
 * const logQ = gaussianLogProbAtNoise(tf.sum(logSoftplus(rho)), 3.2, rho.size);
 * ```
 */
export function gaussianLogProbAtNoise(
  sumLogSigma: tf.Tensor,
  sumEps2: number | tf.Tensor,
  n: number,
): tf.Tensor {
  return tf.tidy(() =>
    typeof sumEps2 === 'number'
      ? tf.neg(tf.add(sumLogSigma, 0.5 * sumEps2 + n * HALF_LOG_2PI))
      : tf.neg(tf.add(tf.mul(sumEps2, 0.5), tf.add(sumLogSigma, n * HALF_LOG_2PI))),
  );
}

/**
 * `klNormalNormal(mu, logSigma, priorMu, priorSigma) -> scalar`: the closed-form
 * `sum KL(N(mu, sigma^2) || N(priorMu, priorSigma^2))`; always `>= 0`.
 *
 * @example
 * ```ts
 * klNormalNormal(mu, logSoftplus(rho), 0, 1);
 * ```
 */
export function klNormalNormal(
  mu: tf.Tensor,
  logSigma: tf.Tensor,
  priorMu: number,
  priorSigma: number,
): tf.Scalar {
  return tf.tidy(() => {
    const var_ = tf.exp(tf.mul(logSigma, 2));
    const d2 = tf.square(tf.sub(mu, priorMu));
    const ratio = tf.div(tf.add(var_, d2), 2 * priorSigma * priorSigma);
    return tf.sum(tf.sub(tf.add(tf.sub(Math.log(priorSigma), logSigma), ratio), 0.5)) as tf.Scalar;
  });
}

/**
 * A prior over a weight tensor. `logProb(w)` is the summed log-density (a scalar). A Gaussian
 * prior also exposes `gaussian` so that the closed-form KL can be used.
 */
export interface Prior {
  /** A short description used in error messages and configs. */
  readonly name: string;
  /** `sum log p(w)`, a scalar tensor. */
  logProb(w: tf.Tensor): tf.Scalar;
  /**
   * Element-wise `log p(w)` (same shape as `w`), where the prior factorises over elements; lets a
   * batched pass sum per posterior sample without slicing.
   */
  logDensity?(w: tf.Tensor): tf.Tensor;
  /**
   * Element-wise `d log p(w) / dw` (same shape as `w`), where the prior has `logDensity`: with it
   * the Bayesian layers compute the Monte Carlo KL's gradient in closed form instead of by
   * autodiff through the density (fewer kernels per training step).
   */
  dLogDensity?(w: tf.Tensor): tf.Tensor;
  /**
   * Closed-form `sum KL(q || p)` for the diagonal Gaussian posterior `q`; present only where the
   * prior admits one.
   */
  klFrom?(q: GaussianParams): tf.Scalar;
}

/**
 * The element-wise log-density of a built-in prior as numbers, `[kind, a, b, c, d]`, for kernels
 * that compute it themselves (the wasm Bayesian-core kernel, src/kernels/wasm.ts): kind 1 normal,
 * `log p = c - b (w - a)^2 / 2`; kind 2 scale mixture, `log p = a + b w^2 + softplus(c w^2 + d)`.
 */
export type PriorKernelSpec = readonly [number, number, number, number, number];

const PRIOR_SPECS = new WeakMap<Prior, PriorKernelSpec>();

function withSpec<P extends Prior>(prior: P, spec: PriorKernelSpec): P {
  PRIOR_SPECS.set(prior, spec);
  return prior;
}

/** `priorKernelSpec(prior) -> [kind, a, b, c, d] | undefined`: see `PriorKernelSpec`. */
export const priorKernelSpec = (prior: Prior): PriorKernelSpec | undefined =>
  PRIOR_SPECS.get(prior);

/**
 * `normalPrior(mu = 0, sigma = 1) -> Prior`: an isotropic Gaussian prior; admits the closed-form
 * KL.
 *
 * @example
 * ```ts
 * bayesianLinear({ inFeatures: 3, outFeatures: 1, prior: normalPrior(0, 0.5), kl: 'closed' });
 * ```
 */
export function normalPrior(mu = 0, sigma = 1): Prior {
  validate('normalPrior', [finite('mu', mu), positive('sigma', sigma)]);
  const logSigma = Math.log(sigma);
  const logDensity = (w: tf.Tensor): tf.Tensor =>
    tf.tidy(() => {
      const z = tf.div(tf.sub(w, mu), sigma);
      return tf.sub(tf.mul(tf.square(z), -0.5), logSigma + 0.5 * LOG_2PI);
    });
  const spec: PriorKernelSpec = [1, mu, 1 / (sigma * sigma), -(logSigma + 0.5 * LOG_2PI), 0];
  return withSpec(
    Object.freeze({
      name: `normal(${mu}, ${sigma})`,
      logDensity,
      // -(w - mu) / sigma^2
      dLogDensity: (w: tf.Tensor): tf.Tensor =>
        tf.tidy(() => tf.mul(tf.sub(w, mu), -1 / (sigma * sigma))),
      logProb: (w: tf.Tensor): tf.Scalar => tf.tidy(() => tf.sum(logDensity(w)) as tf.Scalar),
      klFrom: (q: GaussianParams): tf.Scalar =>
        tf.tidy(() => klNormalNormal(q.mu, logSoftplus(q.rho), mu, sigma)),
    }),
    spec,
  );
}

/**
 * `laplacePrior(loc = 0, scale = 1) -> Prior`: `p(w) = exp(-|w - loc| / scale) / (2 scale)`.
 *
 * @example
 * ```ts
 * bayesianLinear({ inFeatures: 3, outFeatures: 1, prior: laplacePrior(0, 0.1) });
 * ```
 */
export function laplacePrior(loc = 0, scale = 1): Prior {
  validate('laplacePrior', [finite('loc', loc), positive('scale', scale)]);
  const logNorm = Math.log(2 * scale);
  const logDensity = (w: tf.Tensor): tf.Tensor =>
    tf.tidy(() => tf.sub(tf.div(tf.abs(tf.sub(w, loc)), -scale), logNorm));
  return Object.freeze({
    name: `laplace(${loc}, ${scale})`,
    logDensity,
    // -sign(w - loc) / scale (0 at w = loc, as the gradient of |.|)
    dLogDensity: (w: tf.Tensor): tf.Tensor =>
      tf.tidy(() => tf.mul(tf.sign(tf.sub(w, loc)), -1 / scale)),
    logProb: (w: tf.Tensor): tf.Scalar => tf.tidy(() => tf.sum(logDensity(w)) as tf.Scalar),
  });
}

/**
 * `scaleMixturePrior(pi, sigma1, sigma2) -> Prior`: the scale mixture of Blundell et al. (2015),
 * `pi N(0, sigma1^2) + (1 - pi) N(0, sigma2^2)`, with the log-density computed by log-sum-exp
 * (exact in the far tails; no `+1e-6` floor as in the Python reference). `pi` in `[0, 1]`.
 *
 * @example
 * ```ts
 * scaleMixturePrior(0.5, 1, 0.002).logProb(w);
 * ```
 */
export function scaleMixturePrior(pi = 0.5, sigma1 = 1, sigma2 = 0.002): Prior {
  validate('scaleMixturePrior', [
    inRange('pi (priorPi)', pi, 0, 1),
    positive('sigma1 (priorSigma1)', sigma1),
    positive('sigma2 (priorSigma2)', sigma2),
  ]);
  if (pi === 1 || pi === 0) {
    const sigma = pi === 1 ? sigma1 : sigma2;
    const base = normalPrior(0, sigma);
    const spec = priorKernelSpec(base) as PriorKernelSpec;
    return withSpec({ ...base, name: `scaleMixture(${pi}, ${sigma1}, ${sigma2})` }, spec);
  }
  const c1 = Math.log(pi) - Math.log(sigma1) - 0.5 * LOG_2PI;
  const c2 = Math.log(1 - pi) - Math.log(sigma2) - 0.5 * LOG_2PI;
  const h1 = -0.5 / (sigma1 * sigma1);
  const h2 = -0.5 / (sigma2 * sigma2);
  // log(e^a + e^b), a = c1 + h1 w^2 and b = c2 + h2 w^2, as base + softplus(other - base) with the
  // WIDER component as the base: then other - base <= log(...) stays bounded above, the softplus
  // kernel is exact in its tails, and in the far tails the result is the wide component's
  // log-density exactly (no cancellation, no -Infinity). Seven element-wise ops.
  const [cw, hw, cn, hn] = sigma1 >= sigma2 ? [c1, h1, c2, h2] : [c2, h2, c1, h1];
  const dh = hn - hw;
  const dc = cn - cw;
  const logDensity = (w: tf.Tensor): tf.Tensor =>
    tf.tidy(() => {
      const w2 = tf.square(w);
      return tf.add(tf.add(tf.mul(w2, hw), cw), tf.softplus(tf.add(tf.mul(w2, dh), dc)));
    });
  // d/dw = 2 w (hw + dh * sigmoid(w^2 dh + dc)): the responsibility of the narrow component
  const dLogDensity = (w: tf.Tensor): tf.Tensor =>
    tf.tidy(() => {
      const r = tf.sigmoid(tf.add(tf.mul(tf.square(w), dh), dc));
      return tf.mul(tf.mul(w, 2), tf.add(tf.mul(r, dh), hw));
    });
  return withSpec(
    Object.freeze({
      name: `scaleMixture(${pi}, ${sigma1}, ${sigma2})`,
      logDensity,
      dLogDensity,
      logProb: (w: tf.Tensor): tf.Scalar => tf.tidy(() => tf.sum(logDensity(w)) as tf.Scalar),
    }),
    [2, cw, hw, dh, dc],
  );
}

/** Anything with a `logProb` can serve as a prior: the shape a user object must have. */
export interface CustomPrior {
  readonly name?: string;
  logProb(w: tf.Tensor): tf.Tensor;
  /** Optional element-wise log-density (same shape as `w`), as `Prior.logDensity`. */
  logDensity?(w: tf.Tensor): tf.Tensor;
  /** Optional element-wise `d log p / dw`, as `Prior.dLogDensity` (used only with `logDensity`). */
  dLogDensity?(w: tf.Tensor): tf.Tensor;
  klFrom?(q: GaussianParams): tf.Tensor;
}

/**
 * `toPrior(custom, where) -> Prior`: checks a user-supplied prior and wraps it so that its
 * `logProb` is always summed to a scalar. Throws a `ConfigError` naming `where` (the layer
 * path) if `logProb` is missing.
 *
 * @example
 * ```ts
 * toPrior({ logProb: (w) => tf.neg(tf.abs(w)) }, 'dense1');
 * ```
 */
export function toPrior(custom: CustomPrior, where: string): Prior {
  validate(where, [
    check(
      custom !== null && typeof custom === 'object' && typeof custom.logProb === 'function',
      `prior must be an object with a logProb(w) method returning a tensor, got ${show(custom)} ` +
        '(e.g. normalPrior(0, 1), laplacePrior(0, 1), scaleMixturePrior(0.5, 1, 0.002))',
    ),
  ]);
  const klFrom = custom.klFrom;
  // Kept so that a batched pass over S posterior samples sums the element-wise density per
  // sample in one op (normalPrior and laplacePrior have one) instead of S logProb calls.
  const logDensity = custom.logDensity;
  // with it, the layers' KL gradient is in closed form (it must be the derivative of logDensity)
  const dLogDensity = typeof logDensity === 'function' ? custom.dLogDensity : undefined;
  return Object.freeze({
    name: custom.name ?? 'custom',
    logProb: (w: tf.Tensor): tf.Scalar => tf.tidy(() => tf.sum(custom.logProb(w)) as tf.Scalar),
    ...(typeof logDensity === 'function'
      ? { logDensity: (w: tf.Tensor): tf.Tensor => logDensity.call(custom, w) }
      : {}),
    ...(typeof dLogDensity === 'function'
      ? { dLogDensity: (w: tf.Tensor): tf.Tensor => dLogDensity.call(custom, w) }
      : {}),
    ...(typeof klFrom === 'function'
      ? {
          klFrom: (q: GaussianParams): tf.Scalar =>
            tf.tidy(() => tf.sum(klFrom.call(custom, q)) as tf.Scalar),
        }
      : {}),
  });
}
