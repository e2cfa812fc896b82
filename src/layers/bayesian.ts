/**
 * The Bayesian layer core: the options every Bayesian layer shares and their defaults, the
 * sampling and KL term of one weight's diagonal Gaussian posterior (single and batched over
 * posterior samples, built on `params/distributions`), and `bayesianLayer`, the builder that every
 * Bayesian layer (linear, conv1d/2d/3d, LSTM, GRU, embedding) is written with.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import {
  gaussianInit,
  gaussianLogProbAtNoise,
  logSoftplus,
  gaussianReparam,
  LOG_SOFTPLUS_TAIL,
  priorKernelSpec,
  scaleMixturePrior,
  toPrior,
  type CustomPrior,
  type GaussianParams,
  type Prior,
  type PriorKernelSpec,
} from '../params/distributions';
import { foldIn, normalArray, normalArrayInto, rademacherArray, type Key } from '../params/random';
import { freeze as freezeTree, type ParamTree } from '../params/tree';
import {
  type Check,
  check,
  finite,
  inRange,
  isBool,
  knownKeys,
  oneOf,
  positive,
  validate,
} from '../validation';
import { ConfigError, MissingKeyError, ParamError, ShapeError, fmtShape, show } from '../errors';
import {
  applyActivation,
  markFusesActivation,
  perSample,
  zeroKl,
  type BatchCtx,
  type BatchRule,
  type FusedActivation,
} from './batching';
import type { Applied, ApplyCtx, Layer, NoiseFn, Shape } from './types';

/**
 * The options every Bayesian layer takes (the reference's `prior_sigma_1`, `prior_sigma_2`,
 * `prior_pi`, `posterior_mu_init`, `posterior_rho_init`, `freeze`, `prior_dist`), plus `kl`.
 */
export interface BayesianOptions {
  /** Sigma of the first (wide) mixture component. Default 1. */
  readonly priorSigma1?: number;
  /** Sigma of the second (narrow) mixture component. Default 0.002. */
  readonly priorSigma2?: number;
  /** Weight of the first component, in [0, 1]. Default 0.5. */
  readonly priorPi?: number;
  /** Mean of the initial posterior means: `mu ~ N(posteriorMuInit, 0.1)`. Default 0. */
  readonly posteriorMuInit?: number;
  /** Mean of the initial `rho`: `rho ~ N(posteriorRhoInit, 0.1)`. Default -7 (Linear, Conv1d) or -6. */
  readonly posteriorRhoInit?: number;
  /** Use the posterior means (deterministic) unless the context's `mode` says otherwise. Default false. */
  readonly freeze?: boolean;
  /** A prior replacing the scale mixture: any object with `logProb(w)` (optionally `klFrom`). */
  readonly prior?: CustomPrior;
  /**
   * How the KL term is computed. `'mc'` (default, the reference's behaviour): the single-sample
   * estimate `log q(w) - log p(w)` at the very weights used in the forward pass; works with every
   * prior. `'closed'`: the exact KL; needs a prior with a closed form (`normalPrior`).
   */
  readonly kl?: 'mc' | 'closed';
  /**
   * How a weight sample is drawn from its posterior `(mu, sigma = softplus(rho))`.
   * `'reparam'` (default, the reference's): `w = mu + sigma * eps`, `eps ~ N(0, I)`.
   * `'radial'` (Farquhar et al. 2020, "Radial Bayesian Neural Networks"):
   * `w = mu + sigma * (eps / |eps|) * r` with `r ~ N(0, 1)` (one radius per weight tensor and
   * sample, the norm over the whole tensor): the posterior's mass lies at distance ~sigma from
   * its mean in every dimension count instead of at ~sigma sqrt(n), so that each coordinate
   * varies by sigma / sqrt(n). Its KL is the Monte Carlo `log q(w) - log p(w)` with the radial
   * density `log q(w) = -sum log sigma + log(2 phi(r)) - log|S^(n-1)| - (n - 1) log|r|` (the
   * paper's entropy term plus its constant, so the value is an unbiased KL estimate); needs
   * `kl: 'mc'`. A substituted `ctx.noise` is taken as `(eps / |eps|) * r` itself.
   *
   * Two estimators sample the output rather than the weights, for the layers whose output is
   * linear in their weights (`bayesianLinear`, `bayesianConv1d/2d/3d`; others reject them):
   * `'flipout'` (Wen et al. 2018): `y = f(mu, x) + f(delta, x * sIn) * sOut` with one weight
   * perturbation `delta = sigma * eps` per sample and Rademacher signs per example and
   * channel (`sIn` like `x` and `sOut` like `y`, with the axes between the first and the last
   * broadcast: per example and channel for convolutions, as TFP): each example sees its own
   * weight perturbation, pseudo-independent of the others', so gradients vary less; the KL is
   * that of `mu + delta`. `'local'` (local reparameterization, Kingma et al. 2015): the
   * pre-activations drawn from their Gaussian, `y = f(mu, x) + sqrt(f(sigma^2, x^2)) * epsOut`,
   * independent per output element; the KL is the Monte Carlo one at an independent weight
   * sample. Their extra noise: signs from `foldIn(layer key, FLIPOUT_IN / FLIPOUT_OUT)`, `epsOut`
   * from `foldIn(layer key, LOCAL_OUT)` per sample (or `ctx.noise` at the paths
   * `'<layer>.flipoutIn'`, `'<layer>.flipoutOut'` (their signs are taken), `'<layer>.localOut'`).
   */
  readonly estimator?: Estimator;
}

/** The estimators (`BayesianOptions.estimator`). */
export type Estimator = 'reparam' | 'radial' | 'flipout' | 'local';
/** Every `Estimator`, for checks and docs. */
export const ESTIMATORS: readonly Estimator[] = ['reparam', 'radial', 'flipout', 'local'];
/** The estimators that sample the output of a layer linear in its weights. */
const OUTPUT_ESTIMATORS: readonly Estimator[] = ['flipout', 'local'];
/** `foldIn` data of the output estimators' noise (the weights use their small indices). */
export const FLIPOUT_IN = 0x666c6970;
export const FLIPOUT_OUT = 0x666c6971;
export const LOCAL_OUT = 0x6c6f6361;

/** The option names of `BayesianOptions`, for unknown-option checks. */
export const BAYESIAN_OPTION_NAMES = [
  'priorSigma1',
  'priorSigma2',
  'priorPi',
  'posteriorMuInit',
  'posteriorRhoInit',
  'freeze',
  'prior',
  'kl',
  'estimator',
] as const;

/** The reference defaults, in one table (DESIGN.md, "Reference defaults"). */
export const BAYESIAN_DEFAULTS = Object.freeze({
  priorSigma1: 1,
  priorSigma2: 0.002,
  priorPi: 0.5,
  posteriorMuInit: 0,
  /** Linear and Conv1d; the other layers use -6. */
  posteriorRhoInitLinear: -7,
  posteriorRhoInitOther: -6,
  freeze: false,
  kl: 'mc' as const,
  estimator: 'reparam' as Estimator,
  /** Standard deviation of the initial `mu` and `rho` around their means. */
  initStd: 0.1,
});

/** Bayesian options with defaults filled in and the prior built. */
export interface ResolvedBayesian {
  readonly priorSigma1: number;
  readonly priorSigma2: number;
  readonly priorPi: number;
  readonly posteriorMuInit: number;
  readonly posteriorRhoInit: number;
  readonly freeze: boolean;
  readonly kl: 'mc' | 'closed';
  readonly estimator: Estimator;
  readonly prior: Prior;
  /** Plain-data description for `config`. */
  readonly priorName: string;
}

/**
 * `bayesianChecks(opts, rhoDefault) -> Check[]`: the validation checks of the shared options
 * (collected with the layer's own checks so that one error lists everything).
 */
export function bayesianChecks(opts: BayesianOptions): Check[] {
  const checks: Check[] = [
    positive('priorSigma1', opts.priorSigma1 ?? BAYESIAN_DEFAULTS.priorSigma1),
    positive('priorSigma2', opts.priorSigma2 ?? BAYESIAN_DEFAULTS.priorSigma2),
    inRange('priorPi', opts.priorPi ?? BAYESIAN_DEFAULTS.priorPi, 0, 1),
    finite('posteriorMuInit', opts.posteriorMuInit ?? BAYESIAN_DEFAULTS.posteriorMuInit),
    finite('posteriorRhoInit', opts.posteriorRhoInit ?? 0),
    isBool('freeze', opts.freeze ?? false),
    oneOf('kl', opts.kl ?? 'mc', ['mc', 'closed']),
    oneOf('estimator', opts.estimator ?? BAYESIAN_DEFAULTS.estimator, ESTIMATORS),
  ];
  if (opts.estimator === 'radial' && opts.kl === 'closed') {
    checks.push(
      check(
        false,
        "kl: 'closed' is the KL of a Gaussian posterior; estimator 'radial' has a radial one: use kl: 'mc'",
      ),
    );
  }
  if (opts.prior !== undefined) {
    checks.push(
      check(
        opts.prior !== null &&
          typeof opts.prior === 'object' &&
          typeof opts.prior.logProb === 'function',
        'prior must be an object with a logProb(w) method (e.g. normalPrior(0, 1))',
      ),
    );
  }
  const wantsClosed = opts.kl === 'closed';
  if (wantsClosed && opts.estimator !== 'radial') {
    const hasClosed =
      opts.prior !== undefined
        ? typeof opts.prior?.klFrom === 'function'
        : (opts.priorPi ?? BAYESIAN_DEFAULTS.priorPi) === 1 ||
          (opts.priorPi ?? BAYESIAN_DEFAULTS.priorPi) === 0;
    checks.push(
      check(
        hasClosed,
        "kl: 'closed' needs a prior with a closed-form KL (normalPrior, or a custom prior with " +
          "klFrom); the scale-mixture prior has none: use kl: 'mc'",
      ),
    );
  }
  return checks;
}

/** `resolveBayesian(opts, rhoDefault, where) -> ResolvedBayesian` (after validation). */
export function resolveBayesian(
  opts: BayesianOptions,
  rhoDefault: number,
  where: string,
): ResolvedBayesian {
  const priorSigma1 = opts.priorSigma1 ?? BAYESIAN_DEFAULTS.priorSigma1;
  const priorSigma2 = opts.priorSigma2 ?? BAYESIAN_DEFAULTS.priorSigma2;
  const priorPi = opts.priorPi ?? BAYESIAN_DEFAULTS.priorPi;
  const prior =
    opts.prior !== undefined
      ? toPrior(opts.prior, where)
      : scaleMixturePrior(priorPi, priorSigma1, priorSigma2);
  return Object.freeze({
    priorSigma1,
    priorSigma2,
    priorPi,
    posteriorMuInit: opts.posteriorMuInit ?? BAYESIAN_DEFAULTS.posteriorMuInit,
    posteriorRhoInit: opts.posteriorRhoInit ?? rhoDefault,
    freeze: opts.freeze ?? BAYESIAN_DEFAULTS.freeze,
    kl: opts.kl ?? BAYESIAN_DEFAULTS.kl,
    estimator: opts.estimator ?? BAYESIAN_DEFAULTS.estimator,
    prior,
    priorName: prior.name,
  });
}

/** `resolvedConfig(r) -> plain data` for a layer's `config`. */
export function resolvedConfig(r: ResolvedBayesian): Record<string, unknown> {
  return {
    priorSigma1: r.priorSigma1,
    priorSigma2: r.priorSigma2,
    priorPi: r.priorPi,
    posteriorMuInit: r.posteriorMuInit,
    posteriorRhoInit: r.posteriorRhoInit,
    freeze: r.freeze,
    kl: r.kl,
    estimator: r.estimator,
    prior: r.priorName,
  };
}

/** `resolveMode(ctx, freeze) -> 'sample' | 'mean'`: the context decides, else the layer's freeze. */
export function resolveMode(
  ctx: { mode?: 'sample' | 'mean' } | undefined,
  freeze: boolean,
): 'sample' | 'mean' {
  return ctx?.mode ?? (freeze ? 'mean' : 'sample');
}

/** `joinPath(a, b)`: dotted path join. */
export const joinPath = (a: string | undefined, b: string): string => (a ? `${a}.${b}` : b);

/** `ctxPath(ctx, name)`: the layer's path for errors (its own name when used alone). */
export const ctxPath = (ctx: { readonly path?: string } | undefined, name: string): string =>
  ctx?.path ?? name;

/** Checks a `{ mu, rho }` leaf pair at `path` against the expected shape. */
export function checkGaussian(p: unknown, path: string, shape: Shape): GaussianParams {
  const g = p as Partial<GaussianParams> | undefined;
  if (!g || !(g.mu instanceof tf.Tensor) || !(g.rho instanceof tf.Tensor)) {
    throw new ParamError(
      path,
      `expected { mu, rho } tensors of shape ${fmtShape(shape)} here; got ${describeLeaf(p)}. ` +
        'Pass the params returned by this layer’s init().',
    );
  }
  for (const [name, t] of [
    ['mu', g.mu],
    ['rho', g.rho],
  ] as const) {
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ParamError(
        `${path}.${name}`,
        `expected shape ${fmtShape(shape)}, got ${fmtShape(t.shape)}. Were these params made for another layer configuration?`,
      );
    }
  }
  return g as GaussianParams;
}

function describeLeaf(p: unknown): string {
  if (p === undefined) return 'nothing';
  if (p instanceof tf.Tensor) return `a tensor ${fmtShape(p.shape)}`;
  if (typeof p === 'object' && p !== null)
    return `an object with keys [${Object.keys(p).join(', ')}]`;
  return String(p);
}

// ---------------------------------------------------------------------------------------------
// One weight: its posterior sample and KL term (single, and batched over S posterior samples).

/** Which part of a weight is in the KL term: all of it, none, or all but some rows (axis 0). */
export type KlSelection = boolean | { readonly excludeRows: readonly number[] };

function checkedNoise(eps: unknown, path: string, shape: Shape): tf.Tensor {
  if (!(eps instanceof tf.Tensor) || eps.shape.join(',') !== shape.join(',')) {
    throw new ShapeError(
      path,
      `ctx.noise returned ${eps instanceof tf.Tensor ? `shape ${fmtShape(eps.shape)}` : String(eps)}; expected a tensor of shape ${fmtShape(shape)}.`,
    );
  }
  return eps;
}

/** The rows of axis 0 that stay in the KL, and a 0/1 mask of the weight's shape. */
interface RowSelection {
  readonly kept: Int32Array;
  readonly rowSize: number;
  readonly excluded: ReadonlySet<number>;
}

function rowSelection(shape: Shape, sel: KlSelection | undefined): RowSelection | undefined {
  if (sel === undefined || typeof sel === 'boolean' || sel.excludeRows.length === 0) {
    return undefined;
  }
  const rows = shape[0] as number;
  const bad = sel.excludeRows.filter((i) => !(Number.isInteger(i) && i >= 0 && i < rows));
  if (bad.length > 0) {
    throw new ConfigError('bayesianLayer', [
      `kl.excludeRows must hold row indices in [0, ${rows}) of a weight of shape ${fmtShape(shape)}, got ${bad.join(', ')}`,
    ]);
  }
  const excluded = new Set(sel.excludeRows);
  const kept = Int32Array.from({ length: rows }, (_, i) => i).filter((i) => !excluded.has(i));
  return { kept, rowSize: shape.slice(1).reduce((a, b) => a * b, 1), excluded };
}

/** `[...shape]` (or `[S, ...shape]`): 1 on the kept rows, 0 on the excluded ones (JS-built). */
function rowMask(shape: Shape, rs: RowSelection, S?: number): tf.Tensor {
  const rows = shape[0] as number;
  const m = new Float32Array(rows * rs.rowSize).fill(1);
  for (const r of rs.excluded) m.fill(0, r * rs.rowSize, (r + 1) * rs.rowSize);
  if (S === undefined) return tf.tensor(m, shape as number[], 'float32');
  const all = new Float32Array(S * m.length);
  for (let s = 0; s < S; s++) all.set(m, s * m.length);
  return tf.tensor(all, [S, ...shape], 'float32');
}

function sumOfSquares(a: Float32Array, from: number, to: number, rs?: RowSelection): number {
  let s = 0;
  if (!rs) {
    for (let i = from; i < to; i++) s += (a[i] as number) * (a[i] as number);
    return s;
  }
  for (const r of rs.kept) {
    const o = from + r * rs.rowSize;
    for (let i = o; i < o + rs.rowSize; i++) s += (a[i] as number) * (a[i] as number);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// The radial estimator: the noise eps (drawn as for 'reparam') becomes (eps / |eps|) r.

/** The radius of a radial sample is drawn from `foldIn(weight key, RADIAL_RADIUS)`. */
const RADIAL_RADIUS = 0x72616469;

/**
 * `log Gamma(x)` for x > 0 (float64, ~1e-13): Stirling's series at x + k >= 8, shifted down by
 * the recurrence.
 */
export function logGamma(x: number): number {
  let shift = 0;
  let z = x;
  while (z < 8) {
    shift += Math.log(z);
    z += 1;
  }
  const z2 = 1 / (z * z);
  const series =
    (1 / z) * (1 / 12 - z2 * (1 / 360 - z2 * (1 / 1260 - z2 * (1 / 1680 - z2 / 1188))));
  return (z - 0.5) * Math.log(z) - z + 0.5 * Math.log(2 * Math.PI) + series - shift;
}

/**
 * Turns `buf[from .. from + n)` (standard normals) into a radial noise `(eps / |eps|) r` in place,
 * the norm and the scaling over the KL's rows only when `rs` leaves rows out (the others, outside
 * the KL and the posterior's radial part, keep their normal noise), `r` from `key`.
 */
function radialize(
  buf: Float32Array,
  from: number,
  n: number,
  rs: RowSelection | undefined,
  key: Key,
): void {
  const norm = Math.sqrt(sumOfSquares(buf, from, from + n, rs));
  const radius = normalArray(foldIn(key, RADIAL_RADIUS), 1)[0] as number;
  const scale = norm > 0 ? radius / norm : 0;
  const scaleRun = (a: number, b: number) => {
    for (let i = a; i < b; i++) buf[i] = (buf[i] as number) * scale;
  };
  if (!rs) scaleRun(from, from + n);
  else for (const r of rs.kept) scaleRun(from + r * rs.rowSize, from + (r + 1) * rs.rowSize);
}

/**
 * `log q_radial(w) - log q_gauss(w)` at a sample whose noise has `sum(eps'^2) = rho2` over `D`
 * dimensions: the radial density (sigma = 1) at radius rho is `2 phi(rho) / (|S^(D-1)|
 * rho^(D-1))`, `|S^(D-1)| = 2 pi^(D/2) / Gamma(D/2)`, against `prod phi(eps'_i)`: what turns the
 * Gaussian Monte Carlo KL at the same noise into the radial one (0 for D = 1).
 */
export function radialLogCorrection(D: number, rho2: number): number {
  if (D === 1) return 0;
  return (
    -0.5 * Math.log(2 * Math.PI) +
    0.5 * D * Math.LN2 +
    logGamma(0.5 * D) -
    0.5 * (D - 1) * Math.log(rho2)
  );
}

/** The number of weights in the KL (`rs` leaves rows out). */
const klSize = (n: number, rs: RowSelection | undefined): number =>
  rs ? rs.kept.length * rs.rowSize : n;

/**
 * `klTerm(post, w, logSigma, sumEps2, r, rs, S?) -> kl`: the KL term of one weight at its sample
 * `w` (`[...shape]`, or `[S, ...shape]` with `S` given, then the result is `[S]`): the prior's
 * closed form, or the Monte Carlo estimate `log q(w) - log p(w)` with `log q` from the noise
 * (`gaussianLogProbAtNoise`); `rs` leaves rows out.
 */
function klTerm(
  post: GaussianParams,
  w: tf.Tensor,
  logSigma: tf.Tensor,
  sumEps2: number | tf.Tensor,
  r: ResolvedBayesian,
  rs: RowSelection | undefined,
  S?: number,
): tf.Tensor {
  const shape = post.mu.shape;
  const keptRows = (t: tf.Tensor): tf.Tensor => tf.gather(t, tf.tensor1d(rs?.kept ?? [], 'int32'));
  if (r.kl === 'closed' && r.prior.klFrom) {
    const kl = r.prior.klFrom(rs ? { mu: keptRows(post.mu), rho: keptRows(post.rho) } : post);
    return S === undefined ? kl : tf.tile(tf.reshape(kl, [1]), [S]);
  }
  const n = rs ? rs.kept.length * rs.rowSize : post.mu.size;
  const sumLogSigma = rs ? tf.sum(tf.mul(logSigma, rowMask(shape, rs))) : tf.sum(logSigma);
  const logQ = gaussianLogProbAtNoise(sumLogSigma, sumEps2, n);
  // the prior's density at the kept rows only (gathered, never masked: a density of -Infinity at
  // an excluded row must not reach the sum)
  let logP: tf.Tensor;
  if (S === undefined) {
    logP = r.prior.logProb(rs ? keptRows(w) : w);
  } else if (r.prior.logDensity) {
    const kept = rs ? tf.gather(w, tf.tensor1d(rs.kept, 'int32'), 1) : w;
    logP = tf.sum(tf.reshape(r.prior.logDensity(kept), [S, -1]), 1);
  } else {
    logP = tf.stack(tf.unstack(w).map((ws) => r.prior.logProb(rs ? keptRows(ws) : ws)));
  }
  return tf.sub(logQ, logP);
}

// ---------------------------------------------------------------------------------------------
// Hand-written gradients of the sample and of the Monte Carlo KL. Autodiff through the ~20
// element-wise ops of `w = mu + softplus(rho) eps` and `log q(w) - log p(w)` costs, besides each
// op's gradient (reshapes, casts, broadcast sums), a copy of every tensor the tape saves for the
// backward pass (an `Identity` kernel per saved input: about as many kernels as the ops
// themselves). Here `tf.customGrad` ops of `(mu, rho)` compute the same forward values with the
// tape off (inside the op, in a `tidy`, so nothing is saved and nothing leaks) and carry the
// gradient in closed form; the backward recomputes what it needs from mu, rho and the noise (kept
// as the JS array it was drawn into), and nothing is `save`d.

/** Whether the hand-written gradients apply: key-drawn noise, a training pass, a prior with a derivative. */
function handWritten(
  r: ResolvedBayesian,
  rs: RowSelection | undefined,
  computeKl: boolean,
  kl: KlSelection,
): boolean {
  if (!computeKl || rs !== undefined) return false;
  if (kl === false) return true;
  return r.kl === 'mc' && r.prior.logDensity !== undefined && r.prior.dLogDensity !== undefined;
}

/** The noise of the forward pass again, from its JS array: `[...shape]` or `[S, ...shape]`. */
const noiseTensor = (buf: Float32Array, shape: readonly number[], S?: number): tf.Tensor =>
  tf.tensor(buf, S === undefined ? [...shape] : [S, ...shape], 'float32');

/**
 * `w = mu + softplus(rho) * eps` (`gaussianReparam`, the noise from `buf`; `[S, ...]` when
 * batched) as an op of `(mu, rho)` with the gradient `dmu = dw`, `drho = dw * eps *
 * sigmoid(rho)` (summed over the samples).
 */
function reparamWithGrad(post: GaussianParams, buf: Float32Array, S?: number): tf.Tensor {
  const shape = post.mu.shape;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [mu, rho] = args as [tf.Tensor, tf.Tensor];
    return {
      value: tf.tidy(() => gaussianReparam({ mu, rho }, noiseTensor(buf, shape, S)).w),
      gradFunc: (dy: tf.Tensor) => {
        const dRho = tf.mul(dy, tf.mul(noiseTensor(buf, shape, S), tf.sigmoid(rho)));
        return S === undefined ? [tf.clone(dy), dRho] : [tf.sum(dy, 0), tf.sum(dRho, 0)];
      },
    };
  });
  return op(post.mu, post.rho) as tf.Tensor;
}

/**
 * The Monte Carlo KL `log q(w) - log p(w)` of a sample `w` (the output of `reparamWithGrad`), with
 * `log q(w) = -sum(log sigma) - sum(eps^2)/2 - n log(2 pi)/2` (as `klTerm`: a scalar, or `[S]`),
 * as an op of `(rho, w)` with its gradient in closed form: `dKL/dw = -p'(w)/p(w)` (which flows on
 * through `w` to mu and rho) and the direct `dKL/drho = -dlog(sigma)/drho`, where `w` is
 * recomputed in the backward pass from `mu`, `rho` and the noise `buf`, and
 * `dlog(sigma)/drho = sigmoid(rho) / softplus(rho)` (1 below `LOG_SOFTPLUS_TAIL`, as
 * `logSoftplus`).
 */
function mcKlWithGrad(
  post: GaussianParams,
  w: tf.Tensor,
  buf: Float32Array,
  sumEps2: number | tf.Tensor,
  r: ResolvedBayesian,
  S?: number,
): tf.Tensor {
  const shape = post.rho.shape;
  const { prior } = r;
  const dLogDensity = prior.dLogDensity as (w: tf.Tensor) => tf.Tensor;
  const logDensity = prior.logDensity as (w: tf.Tensor) => tf.Tensor;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [rh, ws] = args as [tf.Tensor, tf.Tensor];
    return {
      value: tf.tidy(() => {
        const logQ = gaussianLogProbAtNoise(tf.sum(logSoftplus(rh)), sumEps2, rh.size);
        const logP =
          S === undefined ? prior.logProb(ws) : tf.sum(tf.reshape(logDensity(ws), [S, -1]), 1);
        return tf.sub(logQ, logP);
      }),
      gradFunc: (g: tf.Tensor) => {
        // w again from mu, rho and the noise (the sample tensor itself may be gone by now: the
        // scope that made it returned only what was computed from it)
        const sp = tf.softplus(rh);
        const wAgain = tf.add(post.mu, tf.mul(sp, noiseTensor(buf, shape, S)));
        const gs = S === undefined ? g : tf.reshape(g, [S, ...shape.map(() => 1)]);
        const dW = tf.neg(tf.mul(dLogDensity(wAgain), gs));
        const dLogSigma = tf.where(
          tf.less(rh, LOG_SOFTPLUS_TAIL),
          tf.onesLike(rh),
          tf.div(tf.sigmoid(rh), sp),
        );
        const dRho = tf.neg(tf.mul(dLogSigma, S === undefined ? g : tf.sum(g)));
        return [dRho, dW];
      },
    };
  });
  return op(post.rho, w) as tf.Tensor;
}

/**
 * `sampleWeight(post, key, path, r, noise?, computeKl?, sample?, kl?) -> { w, kl }`: one
 * posterior sample `w = mu + softplus(rho) * eps` (`gaussianReparam`), `eps ~ N(0, I)` from `key`
 * (or from `noise(path, shape, sample)`), and its KL term (closed form, or `log q(w) - log p(w)`
 * with `log q` from the noise: `sum(eps^2)` is a constant computed in JS from the noise).
 */
export function sampleWeight(
  post: GaussianParams,
  key: Key | undefined,
  path: string,
  r: ResolvedBayesian,
  noise?: NoiseFn,
  computeKl = true,
  sample = 0,
  kl: KlSelection = true,
): { w: tf.Tensor; kl: tf.Scalar } {
  const shape = post.mu.shape;
  const n = post.mu.size;
  const rs = rowSelection(shape, kl);
  const radial = r.estimator === 'radial' && computeKl && kl !== false;
  let rho2 = 0;
  const draw = (): { w: tf.Tensor; kl: tf.Scalar } => {
    const given = noise?.(path, shape, sample);
    let eps: tf.Tensor;
    // sum(eps^2), read only where the Monte Carlo KL needs it (a substituted noise would cost a
    // read-back from the device otherwise)
    let sumEps2: () => number;
    if (given === undefined) {
      if (key === undefined) throw new MissingKeyError(path, 'sampling this weight');
      const buf = normalArray(key, n);
      if (r.estimator === 'radial') radialize(buf, 0, n, rs, key);
      sumEps2 = () => sumOfSquares(buf, 0, n, rs);
      if (radial) rho2 = sumEps2();
      eps = tf.tensor(buf, shape, 'float32');
      // (one sample of the batched kernel: the same bits as sample s of a batched pass)
      const one = coreKernel(
        post,
        tf.reshape(eps, [1, ...shape]),
        r,
        rs,
        computeKl && kl !== false,
      );
      if (one !== undefined) {
        return { w: tf.reshape(one.w, shape), kl: tf.reshape(one.kl, []) as tf.Scalar };
      }
      if (handWritten(r, rs, computeKl, kl)) {
        const w = reparamWithGrad(post, buf);
        if (kl === false) return { w, kl: tf.scalar(0) };
        return { w, kl: mcKlWithGrad(post, w, buf, sumEps2(), r) as tf.Scalar };
      }
    } else {
      const e = checkedNoise(given, path, shape);
      eps = e;
      sumEps2 = () =>
        tidy(
          () => tf.sum(tf.square(rs ? tf.mul(e, rowMask(shape, rs)) : e)).dataSync()[0] as number,
        );
      if (radial) rho2 = sumEps2();
    }
    const { w, logSigma } = gaussianReparam(post, eps);
    if (!computeKl || kl === false) return { w, kl: tf.scalar(0) };
    const needsEps = !(r.kl === 'closed' && r.prior.klFrom);
    return { w, kl: klTerm(post, w, logSigma, needsEps ? sumEps2() : 0, r, rs) as tf.Scalar };
  };
  return tidy(() => {
    const out = draw();
    if (!radial) return out;
    return { w: out.w, kl: tf.add(out.kl, radialLogCorrection(klSize(n, rs), rho2)) as tf.Scalar };
  });
}

/**
 * On wasm, the S samples and their Monte Carlo KL terms (the prior a built-in one,
 * `priorKernelSpec`; no excluded rows) as ONE kernel with a one-kernel gradient
 * (`BlitzGaussianSample`, src/kernels/wasm.ts), instead of ~30 ops forward and ~25 backward;
 * undefined elsewhere.
 */
function coreKernel(
  post: GaussianParams,
  eps: tf.Tensor,
  r: ResolvedBayesian,
  rs: RowSelection | undefined,
  withKl: boolean,
): { w: tf.Tensor; kl: tf.Tensor1D } | undefined {
  if (tf.getBackend() !== 'wasm' || tf.getKernel('BlitzGaussianSample', 'wasm') === undefined) {
    return undefined;
  }
  let prior: PriorKernelSpec = [0, 0, 0, 0, 0];
  if (withKl) {
    const spec = priorKernelSpec(r.prior);
    if (r.kl !== 'mc' || rs !== undefined || spec === undefined) return undefined;
    prior = spec;
  }
  const [w, kl] = tf
    .engine()
    .runKernel(
      'BlitzGaussianSample',
      { mu: post.mu, rho: post.rho, eps },
      { prior: [...prior] },
    ) as [tf.Tensor, tf.Tensor1D];
  return { w, kl };
}

/**
 * `sampleWeightBatched(post, keys, S, path, r, noise?, computeKl?, kl?) -> { w: [S, ...], kl: [S] }`:
 * `S` posterior samples at once; sample `s` draws its noise from `keys[s]` (or
 * `noise(path, shape, s)`) exactly as `sampleWeight` would, and all the noise is uploaded in one
 * tensor.
 */
export function sampleWeightBatched(
  post: GaussianParams,
  keys: readonly Key[] | undefined,
  numSamples: number,
  path: string,
  r: ResolvedBayesian,
  noise?: NoiseFn,
  computeKl = true,
  kl: KlSelection = true,
  firstSample = 0,
): { w: tf.Tensor; kl: tf.Tensor1D } {
  const shape = post.mu.shape;
  const S = numSamples;
  const n = post.mu.size;
  const rs = rowSelection(shape, kl);
  const radial = r.estimator === 'radial' && computeKl && kl !== false;
  const rho2 = new Float64Array(S);
  const draw = (): { w: tf.Tensor; kl: tf.Tensor1D } => {
    const given = noise
      ? Array.from({ length: S }, (_, s) => noise(path, shape, firstSample + s))
      : undefined;
    let eps: tf.Tensor;
    let sumEps2: tf.Tensor1D;
    if (given === undefined || given.every((e) => e === undefined)) {
      if (keys === undefined) throw new MissingKeyError(path, 'sampling this weight');
      const buf = new Float32Array(S * n);
      const sums = new Float32Array(S);
      keys.forEach((k, s) => {
        normalArrayInto(k, buf.subarray(s * n, (s + 1) * n));
        if (r.estimator === 'radial') radialize(buf, s * n, n, rs, k);
        rho2[s] = sumOfSquares(buf, s * n, (s + 1) * n, rs);
        sums[s] = rho2[s] as number;
      });
      eps = tf.tensor(buf, [S, ...shape], 'float32');
      const one = coreKernel(post, eps, r, rs, computeKl && kl !== false);
      if (one !== undefined) return one;
      sumEps2 = tf.tensor1d(sums);
      if (handWritten(r, rs, computeKl, kl)) {
        const w = reparamWithGrad(post, buf, S);
        if (kl === false) return { w, kl: tf.zeros([S]) as tf.Tensor1D };
        return { w, kl: mcKlWithGrad(post, w, buf, sumEps2, r, S) as tf.Tensor1D };
      }
    } else {
      eps = tf.stack(given.map((e, s) => checkedNoise(e, `${path} (sample ${s})`, shape)));
      const sq = tf.square(rs ? tf.mul(eps, rowMask(shape, rs, S)) : eps);
      sumEps2 = tf.sum(tf.reshape(sq, [S, -1]), 1) as tf.Tensor1D;
      if (radial) rho2.set(sumEps2.dataSync());
    }
    const { w, logSigma } = gaussianReparam(post, eps);
    if (!computeKl || kl === false) return { w, kl: tf.zeros([S]) as tf.Tensor1D };
    return { w, kl: klTerm(post, w, logSigma, sumEps2, r, rs, S) as tf.Tensor1D };
  };
  return tidy(() => {
    const out = draw();
    if (!radial) return out;
    const D = klSize(n, rs);
    const corr = Float32Array.from(rho2, (v) => radialLogCorrection(D, v));
    return { w: out.w, kl: tf.add(out.kl, tf.tensor1d(corr)) as tf.Tensor1D };
  });
}

/**
 * `validateBayesian(where, options, optionNames?, checks) -> void`: validates a Bayesian layer's
 * options: the unknown-option check (when `optionNames`, the layer's own option names, are
 * given), `name`, the layer's own `checks` and the shared Bayesian options, all at once; throws
 * ONE `ConfigError` listing every problem. `bayesianLayer` calls it; a layer that must validate
 * before it can declare its weights (e.g. the convolutions' geometry) calls it first.
 *
 * @example
 * ```ts
 * validateBayesian("myLayer 'a'", opts, ['units', 'name'], [positiveInt('units', opts.units)]);
 * ```
 */
export function validateBayesian(
  where: string,
  options: BayesianOptions & { readonly name?: unknown },
  optionNames: readonly string[] | undefined,
  checks: readonly Check[],
): void {
  validate(where, [
    ...(optionNames ? [knownKeys(options, [...optionNames, ...BAYESIAN_OPTION_NAMES])] : []),
    check(
      options.name === undefined || (typeof options.name === 'string' && options.name !== ''),
      `name must be a non-empty string, got ${String(options.name)}`,
    ),
    ...checks,
    ...bayesianChecks(options),
  ]);
}

// ---------------------------------------------------------------------------------------------
// The builder.

/** One weight tensor of a Bayesian layer, as the layer declares it. */
export interface WeightDecl {
  /** The weight's shape. */
  readonly shape: Shape;
  /**
   * Its keys: the posterior is initialised from `foldIn(initKey, index)` and its noise drawn from
   * `foldIn(layerKey, index)`. Fixed per weight, so that an absent optional weight does not shift
   * the others.
   */
  readonly index: number;
  /**
   * Whether the weight is in the KL term: `true` (default), `false`, or `{ excludeRows }`: all but
   * these rows of axis 0 (e.g. an embedding's padding row, which never reaches the output).
   */
  readonly kl?: KlSelection;
  /** The mean of its initial `mu` (default: the layer's `posteriorMuInit`). */
  readonly muInit?: number;
  /** The mean of its initial `rho` (default: the layer's `posteriorRhoInit`). */
  readonly rhoInit?: number;
}

/** A layer's weight declarations, by name; an `undefined` entry is an absent optional weight. */
export type WeightDecls = { readonly [name: string]: WeightDecl | undefined };

type RequiredKeys<D> = { [K in keyof D]-?: undefined extends D[K] ? never : K }[keyof D];
type OptionalKeys<D> = { [K in keyof D]-?: undefined extends D[K] ? K : never }[keyof D];
type Simplify<T> = { [K in keyof T]: T[K] } & unknown;

/** The parameters of a layer with weights `D`: a posterior `{ mu, rho }` per weight. */
export type PosteriorsOf<D> = Simplify<
  { readonly [K in RequiredKeys<D>]: GaussianParams } & {
    readonly [K in OptionalKeys<D>]?: GaussianParams;
  }
>;

/** Concrete weights (a posterior sample or the means) of a layer with weights `D`. */
export type WeightsOf<D> = Simplify<
  { readonly [K in RequiredKeys<D>]: tf.Tensor } & { readonly [K in OptionalKeys<D>]?: tf.Tensor }
>;

/** What a layer's sampled-weights rule knows about the batched pass. */
export interface SampledCtx {
  /** The number of posterior samples `S`: every weight has the leading axis `[S, ...]`. */
  readonly numSamples: number;
  /** Whether the input has the leading sample axis `[S, ...]` (else one input for all samples). */
  readonly batched: boolean;
  /** The layer's path, for errors. */
  readonly path: string;
  /**
   * With `fusesActivation: true` in the spec: the activation `forwardSampled` must apply to its
   * output (`serial` fused the activation layer that follows into this one).
   */
  readonly activation?: FusedActivation;
}

/** The context of `sample`: where the noise comes from, and whether to compute the KL. */
export interface SampleCtx {
  readonly noise?: NoiseFn;
  readonly path?: string;
  readonly computeKl?: boolean;
  /** The posterior sample index passed to `noise` (default 0). */
  readonly sample?: number;
}

/** What a Bayesian layer declares; `bayesianLayer(spec)` builds the rest. */
export interface BayesianLayerSpec<D extends WeightDecls, In, Out, InShape, OutShape> {
  /** The layer type, e.g. `'bayesianLinear'`. */
  readonly kind: string;
  /** The layer's name (its key in a parent's parameter tree). Default `kind`. */
  readonly name?: string;
  /** The user's options: the shared Bayesian options are read (and validated) from here. */
  readonly options: BayesianOptions;
  /** The layer's own option names; with them, unknown options are rejected. */
  readonly optionNames?: readonly string[];
  /** The layer's own config checks, reported together with the Bayesian options' problems. */
  readonly checks?: readonly Check[];
  /** The default `posteriorRhoInit`. Default -6 (the reference's for all but Linear and Conv1d). */
  readonly rhoDefault?: number;
  /** The layer's own plain-data configuration (the resolved Bayesian options are added). */
  readonly config?: Readonly<Record<string, unknown>>;
  /** The weight tensors. */
  readonly weights: D;
  /** The output shape for an input shape; throws `ShapeError` naming `path`. */
  readonly outputShape: (inputShape: InShape, path: string) => OutShape;
  /** Throws `ShapeError` naming `path` for a bad input (`batched`: it has the sample axis). */
  readonly checkInput?: (x: In, path: string, batched: boolean) => void;
  /** The deterministic computation with concrete weights. */
  readonly forward: (weights: WeightsOf<D>, x: In) => Out;
  /**
   * The batch rule: S sampled weights (each `[S, ...shape]`) meet the input (`[S, ...]` when
   * `ctx.batched`, else shared); returns `[S, ...]`. Default: `forward` per sample
   * (`perSample`).
   */
  readonly forwardSampled?: (weights: WeightsOf<D>, x: In, ctx: SampledCtx) => Out;
  /**
   * Whether `forwardSampled` applies `ctx.activation` (relu / relu6) to its output, e.g. fused
   * into its matmul; `serial` then lets this layer compute a following `relu()` layer in a batched
   * pass. Default false. (Mean mode and the per-sample fallback apply it after `forward`.)
   */
  readonly fusesActivation?: boolean;
  /**
   * Whether `forward(w, x)` is linear in the weights jointly (the bias as a weight on an input of
   * ones: `f(a w1 + b w2, x) = a f(w1, x) + b f(w2, x)`) and keeps the input's first and last axes
   * as example and channel axes: what the estimators `'flipout'` and `'local'` need. Default false
   * (they are rejected).
   */
  readonly linearInWeights?: boolean;
  /**
   * Mean mode in a batched pass: one set of weights meets an input that may have the sample axis;
   * returns the output and whether it has the sample axis. Default: `forward(weights, x)`, keeping
   * the input's batching (so `forward` must treat extra leading axes as batch axes).
   */
  readonly forwardMean?: (
    weights: WeightsOf<D>,
    x: In,
    ctx: SampledCtx,
  ) => { readonly out: Out; readonly batched: boolean };
}

/** A Bayesian layer: a `Layer` with its three pure steps and the mode-resolved draw. */
export interface BayesianLayer<
  P extends ParamTree,
  W,
  In = tf.Tensor,
  Out = tf.Tensor,
  InShape = Shape,
  OutShape = Shape,
> extends Layer<P, In, Out, InShape, OutShape> {
  /** `sample(params, key, ctx?) -> { weights, kl }`: one posterior sample of the weights and its KL. */
  sample(params: P, key: Key | undefined, ctx?: SampleCtx): { weights: W; kl: tf.Scalar };
  /** `mean(params) -> weights`: the posterior means (the frozen weights). */
  mean(params: P): W;
  /** `forward(weights, x) -> y`: the deterministic computation with concrete weights. */
  forward(weights: W, x: In): Out;
  /**
   * `draw(params, ctx?) -> { weights, kl }`: the weights `apply` uses in this context: the means
   * (KL 0) in mean mode, else a sample from `ctx.key`.
   */
  draw(params: P, ctx?: ApplyCtx): { weights: W; kl: tf.Scalar };
  readonly applyBatched: BatchRule<P, In, Out>;
  /** The declared weights (absent optional ones left out). */
  readonly weights: Readonly<Record<string, WeightDecl>>;
}

/**
 * `bayesianLayer(spec) -> BayesianLayer`: builds a Bayes-by-Backprop layer from what is specific
 * to it (its weights and its deterministic `forward`); every Bayesian layer of the library is
 * written with it. Provided: option validation (one `ConfigError` listing every problem) and
 * defaults (`BAYESIAN_DEFAULTS`); `init` (for weight `index`, `mu ~ N(muInit, 0.1)` and
 * `rho ~ N(rhoInit, 0.1)` from `foldIn(key, index)`); the steps `sample` / `mean` / `forward`;
 * `apply` in both modes (`ctx.mode`, else the `freeze` option; mean mode has KL 0); the batch rule
 * for `vmapSamples` (S samples, one noise upload per weight; the layer may say how S sampled
 * weights meet the input with `forwardSampled`, else `forward` runs per sample); `klDivergence`;
 * the `ctx.noise` substitute (path `'<layer path>.<weight name>'`); and the KL estimators
 * (`kl: 'mc'`, the reference's `log q(w) - log p(w)` at the weights used, or `'closed'`), for any
 * prior.
 *
 * @example
 * ```ts
 * // y = sum_ij x1_i W_kij x2_j + b_k: a Bayesian bilinear layer on [x1, x2]
 * const bilinear = (o: { in1: number; in2: number; out: number } & BayesianOptions) =>
 *   bayesianLayer({
 *     kind: 'bayesianBilinear',
 *     options: o,
 *     weights: { kernel: { shape: [o.in1, o.in2 * o.out], index: 0 }, bias: { shape: [o.out], index: 1 } },
 *     outputShape: ([s1]: readonly Shape[]) => [s1[0], o.out],
 *     forward: (w, [x1, x2]: tf.Tensor[]) => {
 *       const t = tf.reshape(tf.matMul(x1, w.kernel), [-1, o.in2, o.out]); // [B, in2, out]
 *       return tf.add(tf.sum(tf.mul(tf.expandDims(x2, 2), t), 1), w.bias);
 *     },
 *   });
 * ```
 */
export function bayesianLayer<
  D extends WeightDecls,
  In = tf.Tensor,
  Out = tf.Tensor,
  InShape = Shape,
  OutShape = Shape,
>(
  spec: BayesianLayerSpec<D, In, Out, InShape, OutShape>,
): BayesianLayer<PosteriorsOf<D>, WeightsOf<D>, In, Out, InShape, OutShape> {
  type P = PosteriorsOf<D>;
  type W = WeightsOf<D>;
  const name = spec.name ?? spec.kind;
  const where = `${spec.kind} '${name}'`;
  const options = spec.options;
  validateBayesian(where, options, spec.optionNames, spec.checks ?? []);
  const r = resolveBayesian(
    options,
    spec.rhoDefault ?? BAYESIAN_DEFAULTS.posteriorRhoInitOther,
    where,
  );
  if (OUTPUT_ESTIMATORS.includes(r.estimator) && spec.linearInWeights !== true) {
    throw new ConfigError(where, [
      `estimator '${r.estimator}' samples the output of a layer that is linear in its weights ` +
        `(bayesianLinear, bayesianConv1d/2d/3d); ${spec.kind} is not: use 'reparam' or 'radial'`,
    ]);
  }
  const decls = Object.entries(spec.weights).filter(
    (e): e is [string, WeightDecl] => e[1] !== undefined,
  );
  // the declarations themselves (a layer author's mistakes): distinct keys, real shapes
  const indices = decls.map(([, d]) => d.index);
  validate(`${where} (its weight declarations)`, [
    ...decls.map(([k, d]) =>
      check(
        Number.isInteger(d.index) &&
          d.index >= 0 &&
          indices.indexOf(d.index) === indices.lastIndexOf(d.index),
        `weight '${k}': index must be a non-negative integer used by no other weight (it picks the weight's keys), got ${show(d.index)}`,
      ),
    ),
    ...decls.map(([k, d]) =>
      check(
        Array.isArray(d.shape) && d.shape.every((n) => Number.isInteger(n) && n >= 1),
        `weight '${k}': shape must be positive integers, got ${show(d.shape)}`,
      ),
    ),
  ]);
  const { forward, checkInput } = spec;

  const checked = (params: P, path: string): P =>
    Object.fromEntries(
      decls.map(([k, d]) => [
        k,
        checkGaussian(
          (params as Record<string, unknown> | undefined)?.[k],
          `${path}.${k}`,
          d.shape,
        ),
      ]),
    ) as P;
  const post = (params: P, k: string): GaussianParams =>
    (params as Record<string, GaussianParams>)[k] as GaussianParams;

  const mean = (params: P): W =>
    Object.fromEntries(decls.map(([k]) => [k, post(params, k).mu])) as W;

  const sumKl = <T extends tf.Tensor>(kls: T[], zero: () => T): T =>
    kls.length === 0 ? zero() : kls.reduce((a, b) => tf.add(a, b) as T);

  const sample = (
    params: P,
    key: Key | undefined,
    ctx?: SampleCtx,
  ): { weights: W; kl: tf.Scalar } =>
    tidy(() => {
      const path = ctx?.path ?? name;
      const p = checked(params, path);
      const withKl = ctx?.computeKl !== false;
      const weights: Record<string, tf.Tensor> = {};
      const kls: tf.Scalar[] = [];
      for (const [k, d] of decls) {
        const s = sampleWeight(
          post(p, k),
          key === undefined ? undefined : foldIn(key, d.index),
          `${path}.${k}`,
          r,
          ctx?.noise,
          withKl,
          ctx?.sample ?? 0,
          d.kl ?? true,
        );
        weights[k] = s.w;
        if (d.kl !== false) kls.push(s.kl);
      }
      return { weights: weights as W, kl: sumKl(kls, () => tf.scalar(0)) };
    });

  const sampleBatched = (p: P, ctx: BatchCtx, path: string): { weights: W; kl: tf.Tensor1D } =>
    tidy(() => {
      const S = ctx.numSamples;
      const withKl = ctx.computeKl !== false;
      const weights: Record<string, tf.Tensor> = {};
      const kls: tf.Tensor1D[] = [];
      for (const [k, d] of decls) {
        const s = sampleWeightBatched(
          post(p, k),
          ctx.keys?.map((kk) => foldIn(kk, d.index)),
          S,
          `${path}.${k}`,
          r,
          ctx.noise,
          withKl,
          d.kl ?? true,
          ctx.firstSample ?? 0,
        );
        weights[k] = s.w;
        if (d.kl !== false) kls.push(s.kl);
      }
      return { weights: weights as W, kl: sumKl(kls, () => tf.zeros([S]) as tf.Tensor1D) };
    });

  const draw = (params: P, ctx?: ApplyCtx): { weights: W; kl: tf.Scalar } =>
    tidy(() => {
      const path = ctxPath(ctx, name);
      if (resolveMode(ctx, r.freeze) === 'mean') {
        return { weights: mean(checked(params, path)), kl: tf.scalar(0) };
      }
      return sample(params, ctx?.key, {
        noise: ctx?.noise,
        path,
        computeKl: ctx?.computeKl,
        sample: ctx?.sample,
      });
    });

  // -------------------------------------------------------------------------------------------
  // The output estimators ('flipout', 'local'): the layer is linear in its weights.
  const outputEstimator = OUTPUT_ESTIMATORS.includes(r.estimator);
  const fwd = forward as unknown as (w: Record<string, tf.Tensor>, x: tf.Tensor) => tf.Tensor;
  const mapW = (
    w: Readonly<Record<string, tf.Tensor | undefined>>,
    f: (t: tf.Tensor, k: string) => tf.Tensor,
  ): Record<string, tf.Tensor> =>
    Object.fromEntries(
      Object.entries(w)
        .filter((e): e is [string, tf.Tensor] => e[1] !== undefined)
        .map(([k, t]) => [k, f(t, k)]),
    );
  /** `x`'s shape with the axes between the first (examples) and the last (channels) as 1. */
  const signShape = (shape: readonly number[]): number[] =>
    shape.map((d, i) => (i === 0 || i === shape.length - 1 ? d : 1));
  /**
   * The estimator's own noise of `shape` for samples `first ..` (`S` of them with a leading
   * sample axis, or one without): `ctx.noise` at `<path>.<what>` where it answers, else drawn
   * from `foldIn(keys[s], data)`; `signs`: Rademacher (a substituted noise gives its signs).
   */
  const estimatorNoise = (
    keys: readonly Key[] | undefined,
    S: number | undefined,
    data: number,
    shape: number[],
    signs: boolean,
    at: string,
    noise: NoiseFn | undefined,
    first: number,
  ): tf.Tensor => {
    const count = shape.reduce((a, b) => a * b, 1);
    const n = S ?? 1;
    const given = noise ? Array.from({ length: n }, (_, s) => noise(at, shape, first + s)) : [];
    let all: tf.Tensor;
    if (given.every((g) => g === undefined)) {
      const buf = new Float32Array(n * count);
      for (let s = 0; s < n; s++) {
        const k = keys?.[s];
        if (k === undefined) throw new MissingKeyError(at, `drawing the '${r.estimator}' noise`);
        const kk = foldIn(k, data);
        buf.set(signs ? rademacherArray(kk, count) : normalArray(kk, count), s * count);
      }
      all = tf.tensor(buf, [n, ...shape], 'float32');
    } else {
      all = tf.stack(
        given.map((g, s) => {
          if (g === undefined) {
            const k = keys?.[s];
            if (k === undefined)
              throw new MissingKeyError(at, `drawing the '${r.estimator}' noise`);
            const kk = foldIn(k, data);
            return tf.tensor(signs ? rademacherArray(kk, count) : normalArray(kk, count), shape);
          }
          const e = checkedNoise(g, `${at} (sample ${first + s})`, shape);
          return signs ? tf.sub(tf.mul(tf.cast(tf.greaterEqual(e, 0), 'float32'), 2), 1) : e;
        }),
      );
    }
    return S === undefined ? tf.reshape(all, shape) : all;
  };
  const sigma2 = (p: P): Record<string, tf.Tensor> =>
    mapW(mean(p) as unknown as Record<string, tf.Tensor>, (_, k) =>
      tf.square(tf.softplus(post(p, k).rho)),
    );
  /** Broadcast a non-batched output over the sample axis. */
  const withSampleAxis = (m: { out: tf.Tensor; batched: boolean }): tf.Tensor =>
    m.batched ? m.out : tf.expandDims(m.out, 0);

  /** One sample's output under an output estimator (`weights`: the sample drawn for the KL). */
  const applyOutputEstimator = (
    p: P,
    weights: W,
    x: tf.Tensor,
    ctx: ApplyCtx | undefined,
  ): tf.Tensor => {
    const path = ctxPath(ctx, name);
    const keys = ctx?.key === undefined ? undefined : [ctx.key];
    const first = ctx?.sample ?? 0;
    const mu = mean(p) as unknown as Record<string, tf.Tensor>;
    const m = fwd(mu, x);
    if (r.estimator === 'flipout') {
      const w = weights as unknown as Record<string, tf.Tensor>;
      const delta = mapW(w, (t, k) => tf.sub(t, mu[k] as tf.Tensor));
      const sIn = estimatorNoise(
        keys,
        undefined,
        FLIPOUT_IN,
        signShape(x.shape),
        true,
        `${path}.flipoutIn`,
        ctx?.noise,
        first,
      );
      const y = fwd(delta, tf.mul(x, sIn));
      const sOut = estimatorNoise(
        keys,
        undefined,
        FLIPOUT_OUT,
        signShape(y.shape),
        true,
        `${path}.flipoutOut`,
        ctx?.noise,
        first,
      );
      return tf.add(m, tf.mul(y, sOut));
    }
    const v = fwd(sigma2(p), tf.square(x));
    const e = estimatorNoise(
      keys,
      undefined,
      LOCAL_OUT,
      v.shape,
      false,
      `${path}.localOut`,
      ctx?.noise,
      first,
    );
    return tf.add(m, tf.mul(tf.sqrt(tf.maximum(v, 1e-30)), e));
  };

  /** The batched pass under an output estimator. */
  const batchedOutputEstimator = (
    p: P,
    weights: W,
    x: tf.Tensor,
    ctx: BatchCtx,
    sctx: SampledCtx,
  ): tf.Tensor => {
    const S = ctx.numSamples;
    const path = sctx.path;
    const first = ctx.firstSample ?? 0;
    const mu = mean(p);
    const meanPass = (w: Record<string, tf.Tensor>, xs: tf.Tensor) =>
      spec.forwardMean
        ? (spec.forwardMean(w as unknown as W, xs as unknown as In, sctx) as unknown as {
            out: tf.Tensor;
            batched: boolean;
          })
        : { out: fwd(w, xs), batched: ctx.batched };
    const m = withSampleAxis(meanPass(mu as unknown as Record<string, tf.Tensor>, x));
    const exShape = ctx.batched ? x.shape.slice(1) : x.shape;
    if (r.estimator === 'flipout') {
      const mw = mu as unknown as Record<string, tf.Tensor>;
      const delta = mapW(weights as unknown as Record<string, tf.Tensor>, (t, k) =>
        tf.sub(t, mw[k] as tf.Tensor),
      );
      const sIn = estimatorNoise(
        ctx.keys,
        S,
        FLIPOUT_IN,
        signShape(exShape),
        true,
        `${path}.flipoutIn`,
        ctx.noise,
        first,
      );
      const xs = tf.mul(ctx.batched ? x : tf.expandDims(x, 0), sIn);
      const bctx: SampledCtx = { ...sctx, batched: true };
      const y = (spec.forwardSampled
        ? spec.forwardSampled(delta as unknown as W, xs as unknown as In, bctx)
        : perSample(delta, xs, true, (w, xi) =>
            fwd(w as Record<string, tf.Tensor>, xi),
          )) as unknown as tf.Tensor;
      const sOut = estimatorNoise(
        ctx.keys,
        S,
        FLIPOUT_OUT,
        signShape(y.shape.slice(1)),
        true,
        `${path}.flipoutOut`,
        ctx.noise,
        first,
      );
      return tf.add(m, tf.mul(y, sOut));
    }
    const v = withSampleAxis(meanPass(sigma2(p), tf.square(x)));
    const e = estimatorNoise(
      ctx.keys,
      S,
      LOCAL_OUT,
      v.shape.slice(1),
      false,
      `${path}.localOut`,
      ctx.noise,
      first,
    );
    return tf.add(m, tf.mul(tf.sqrt(tf.maximum(v, 1e-30)), e));
  };

  const applyBatched: BatchRule<P, In, Out> = (params, x, ctx) =>
    tidy(() => {
      const path = ctxPath(ctx, name);
      checkInput?.(x, path, ctx.batched);
      const p = checked(params, path);
      const activation = spec.fusesActivation === true ? ctx.activation : undefined;
      const sctx: SampledCtx = { numSamples: ctx.numSamples, batched: ctx.batched, path };
      const activated = (y: Out): Out =>
        activation === undefined ? y : (applyActivation(y as tf.Tensor, activation) as Out);
      if (resolveMode(ctx, r.freeze) === 'mean') {
        // the same weights for every sample: keep the input's batching (vmapSamples tiles at the end)
        const w = mean(p);
        const m = spec.forwardMean
          ? spec.forwardMean(w, x, sctx)
          : { out: forward(w, x), batched: ctx.batched };
        return { out: activated(m.out), kl: zeroKl(ctx.numSamples), batched: m.batched };
      }
      const { weights, kl } = sampleBatched(p, ctx, path);
      if (outputEstimator) {
        const y = batchedOutputEstimator(p, weights, x as unknown as tf.Tensor, ctx, sctx);
        return { out: activated(y as unknown as Out), kl, batched: true };
      }
      const out = spec.forwardSampled
        ? spec.forwardSampled(weights, x, { ...sctx, activation })
        : activated(
            perSample(
              weights as Readonly<Record<string, tf.Tensor | undefined>>,
              x,
              ctx.batched,
              (w, xs) => forward(w as W, xs),
            ),
          );
      return { out, kl, batched: true };
    });

  const layer: BayesianLayer<P, W, In, Out, InShape, OutShape> = {
    name,
    kind: spec.kind,
    config: Object.freeze({ ...spec.config, name, ...resolvedConfig(r) }),
    weights: Object.freeze(Object.fromEntries(decls)),
    outputShape: (inputShape: InShape, path?: string): OutShape =>
      spec.outputShape(inputShape, path ?? name),
    init(key: Key, inputShape: InShape, path?: string) {
      const outputShape = spec.outputShape(inputShape, path ?? name);
      const params = tidy(() =>
        Object.fromEntries(
          decls.map(([k, d]) => [
            k,
            gaussianInit(
              foldIn(key, d.index),
              d.shape,
              d.muInit ?? r.posteriorMuInit,
              d.rhoInit ?? r.posteriorRhoInit,
              BAYESIAN_DEFAULTS.initStd,
            ),
          ]),
        ),
      );
      return { params: freezeTree(params) as P, outputShape };
    },
    apply: (params: P, x: In, ctx?: ApplyCtx): Applied<Out> =>
      tidy(() => {
        checkInput?.(x, ctxPath(ctx, name), false);
        const { weights, kl } = draw(params, ctx);
        if (outputEstimator && resolveMode(ctx, r.freeze) === 'sample') {
          const p = checked(params, ctxPath(ctx, name));
          const y = applyOutputEstimator(p, weights, x as unknown as tf.Tensor, ctx);
          return { out: y as unknown as Out, kl };
        }
        return { out: forward(weights, x), kl };
      }),
    applyBatched,
    klDivergence: (params: P, ctx?: ApplyCtx): tf.Scalar =>
      tidy(() => {
        if (resolveMode(ctx, r.freeze) === 'mean') return tf.scalar(0);
        return sample(params, ctx?.key, {
          noise: ctx?.noise,
          path: ctxPath(ctx, name),
          sample: ctx?.sample,
        }).kl;
      }),
    sample,
    mean,
    forward,
    draw,
  };
  const frozen = Object.freeze(layer);
  return spec.fusesActivation === true ? markFusesActivation(frozen) : frozen;
}
