/**
 * Posterior sharpening (Fortunato, Blundell & Vinyals 2017, "Bayesian Recurrent Neural Networks",
 * arXiv:1704.02798, section 4 and its Algorithm 2), as a loss for training.
 *
 * What is implemented, exactly:
 *
 * - The hierarchical posterior `q(phi | theta, (x, y)) = N(phi; theta - eta ⊙ g, sigma0^2 I)`
 *   with `theta ~ q(theta) = N(mu, softplus(rho)^2)` (the usual Bayes-by-Backprop posterior) and
 *   `g = grad_theta(-log p(y | theta, x))` computed on the minibatch at the sampled `theta`; `eta`
 *   is a learned per-parameter vector (one tensor per weight tensor, in `params.sharpening.eta`),
 *   `sigma0` a scalar hyperparameter.
 * - The hierarchical prior `p(phi | theta) = N(phi; theta, sigma0^2 I)`, so that the sharpening
 *   KL has the closed form `KL(q(phi | theta, x, y) || p(phi | theta)) = sum (eta ⊙ g)^2 /
 *   (2 sigma0^2)` (two Gaussians with the same covariance).
 * - The loss of Algorithm 2 for one draw: `-log p(y | phi, x) + KL(q(phi|theta,x,y) || p(phi|theta))
 *   + KL(q(theta) || p(theta)) / C`, here in the library's per-example units:
 *   `nll(phi) + klSharpeningWeight * KLsharp + klWeight * KL(q(theta) || p(theta))`, where `nll` is
 *   the likelihood's mean NLL of the batch, `klWeight` the usual ELBO weight (e.g. `1 / N`) and
 *   `klSharpeningWeight` defaults to `1 / batchSize` (the sharpening KL belongs to one minibatch;
 *   dividing it by the batch size keeps the paper's ratio to the summed NLL). The KL of `theta` is
 *   each layer's own (Monte Carlo or closed form) at the sampled `theta`. Gradients reach `mu`,
 *   `rho` and `eta` through `phi` and through both KL terms.
 * - `g` is the gradient of the likelihood's MEAN NLL over the batch (the paper writes the summed
 *   NLL of the minibatch; a learned `eta` absorbs the factor, and the KL term is unchanged: with
 *   the sum, `eta` would be `batchSize` times smaller). `g` is computed with `valueAndGrad` and
 *   then treated as a constant: no gradient flows through `g` itself (that would be a
 *   second-order derivative; the algorithm only needs `g` to place `phi`).
 *
 * What is not: sharpening at prediction time (the paper sharpens on the previous minibatch when
 * evaluating a language model); predictions use `q(theta)` as usual (`predictive`). The paper
 * applies sharpening to recurrent networks, but nothing here is specific to them: every sampled
 * weight of any model built from this library's Bayesian layers can be sharpened (`select`
 * chooses which; by default all).
 *
 * How it is wired: the weights are substituted through the layers' `ctx.noise` hook. The noise of
 * `theta` is drawn here (posterior number `i` in sorted path order draws from `foldIn(kTheta, i)`),
 * `g` is obtained by differentiating the batch NLL with respect to that noise (`dNLL/deps = sigma ⊙
 * g`), and `phi` is reached with the noise `eps + (sigma0 * epsPhi - eta ⊙ g) / sigma`, so that the
 * layer's own `mu + sigma * noise` equals `phi` and its gradients with respect to `mu`, `rho` and
 * `eta` are those of `phi`. A weight's path in the model (`'lstm.weightIh'`) must be its path in
 * the parameter tree, as it is for every layer of this library.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import { logSoftplus, type GaussianParams } from '../params/distributions';
import { foldIn, isKey, normalArray, split, type Key } from '../params/random';
import type { ParamTree } from '../params/tree';
import { MissingKeyError, ParamError, ShapeError, fmtShape, show } from '../errors';
import { check, finite, knownKeys, positive, positiveInt, validate } from '../validation';
import type { AnyLayer, ApplyCtx, NoiseFn } from '../layers/types';
import { valueAndGrad } from './grad';
import type { SamplesCtx } from './elbo';
import type { Likelihood } from './likelihoods';

/** Where the sharpening parameters live: `eta`, one tensor per sharpened weight tensor. */
export type SharpeningParams = { readonly eta: ParamTree };

/** The parameters of a sharpened ELBO: the model's, the likelihood's, and `eta`. */
export type SharpenedElboParams<
  MP extends ParamTree = ParamTree,
  LP extends ParamTree = ParamTree,
> = {
  readonly model: MP;
  readonly likelihood: LP;
  readonly sharpening: SharpeningParams;
};

/** Options of `initSharpening`. */
export interface InitSharpeningOptions {
  /** The initial value of every entry of `eta`. Default 0.01 (a choice of this library). */
  readonly etaInit?: number;
  /** Which weights to sharpen, by path in the parameter tree (e.g. `'lstm.weightHh'`). Default all. */
  readonly select?: (path: string) => boolean;
}

/** Options of `sharpenedElbo`. */
export interface SharpenedElboOptions {
  /** Standard deviation of `q(phi | theta, x, y)` and of `p(phi | theta)`. Default 0.02 (ours). */
  readonly sigma0?: number;
  /** Draws of `(theta, phi)` per step, averaged. Default 1 (as Algorithm 2). */
  readonly numSamples?: number;
  /** Weight of the sharpening KL. Default `1 / batchSize` (`1 / x.shape[0]`). */
  readonly klSharpeningWeight?: number;
  /** Extra context for the model (e.g. `{ training: true }` for dropout). */
  readonly ctx?: Omit<SamplesCtx, 'key' | 'noise' | 'computeKl'>;
}

/** The parts of the sharpened loss (means over draws). */
export interface SharpenedElboParts {
  /** `nll + klWeight * kl + klSharpeningWeight * klSharpening`, the loss that is minimised. */
  readonly loss: tf.Scalar;
  /** The likelihood part at the sharpened weights `phi`. */
  readonly nll: tf.Scalar;
  /** The batch NLL at the unsharpened sample `theta` (for monitoring). */
  readonly nllTheta: tf.Scalar;
  /** `KL(q(theta) || p(theta))` at the sampled `theta`, unweighted. */
  readonly kl: tf.Scalar;
  /** `KL(q(phi | theta, x, y) || p(phi | theta)) = sum (eta ⊙ g)^2 / (2 sigma0^2)`, unweighted. */
  readonly klSharpening: tf.Scalar;
  /** The predictions at `phi`, `[S, ...]`. */
  readonly predictions: tf.Tensor;
}

/** One draw's weights, as trees shaped like `eta`. */
export interface SharpenedDraw {
  /** `theta = mu + sigma ⊙ eps`. */
  readonly theta: ParamTree;
  /** `g = grad_theta` of the batch's mean NLL at `theta` (a constant). */
  readonly grad: ParamTree;
  /** The mean of `q(phi | theta, x, y)`: `theta - eta ⊙ g`. */
  readonly phiMean: ParamTree;
  /** The sample `phi = theta - eta ⊙ g + sigma0 ⊙ epsPhi`. */
  readonly phi: ParamTree;
  /** The batch NLL at `theta`. */
  readonly nllTheta: tf.Scalar;
}

const DEFAULT_ETA = 0.01;
const DEFAULT_SIGMA0 = 0.02;

interface Posterior {
  readonly path: string;
  readonly post: GaussianParams;
}

function isPlainObject(x: unknown): x is Readonly<Record<string, unknown>> {
  if (typeof x !== 'object' || x === null) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

const isPosterior = (x: unknown): x is GaussianParams =>
  isPlainObject(x) && x.mu instanceof tf.Tensor && x.rho instanceof tf.Tensor;

/** Every `{ mu, rho }` node of a parameter tree with its dotted path, in sorted path order. */
function posteriors(t: unknown, prefix = ''): Posterior[] {
  if (isPosterior(t)) return [{ path: prefix, post: t }];
  const join = (k: string | number) => (prefix === '' ? String(k) : `${prefix}.${k}`);
  if (Array.isArray(t)) return t.flatMap((c, i) => posteriors(c, join(i)));
  if (isPlainObject(t)) {
    return Object.keys(t)
      .filter((k) => t[k] !== undefined)
      .sort()
      .flatMap((k) => posteriors(t[k], join(k)));
  }
  return [];
}

/** The tensor leaves of a tree with their dotted paths. */
function tensorLeaves(t: unknown, prefix = ''): [string, tf.Tensor][] {
  if (t instanceof tf.Tensor) return [[prefix, t]];
  const join = (k: string | number) => (prefix === '' ? String(k) : `${prefix}.${k}`);
  if (Array.isArray(t)) return t.flatMap((c, i) => tensorLeaves(c, join(i)));
  if (isPlainObject(t)) {
    return Object.keys(t)
      .sort()
      .flatMap((k) => tensorLeaves(t[k], join(k)));
  }
  return [];
}

/** A nested record from dotted paths (the shape of an `eta` tree). */
function nest(entries: readonly (readonly [string, tf.Tensor])[]): ParamTree {
  const root: Record<string, unknown> = {};
  for (const [path, t] of entries) {
    const parts = path === '' ? [] : path.split('.');
    if (parts.length === 0) return t; // the model is one weight tensor: unusual, but allowed
    let node = root;
    parts.slice(0, -1).forEach((p) => {
      node[p] = (node[p] as Record<string, unknown> | undefined) ?? {};
      node = node[p] as Record<string, unknown>;
    });
    node[parts[parts.length - 1] as string] = t;
  }
  return root as ParamTree;
}

/**
 * `initSharpening(modelParams, opts?) -> { eta }`: the sharpening parameters for a model's
 * parameters: for each `{ mu, rho }` posterior (those `select` keeps), a tensor of `mu`'s shape
 * filled with `etaInit`, in a tree keyed by the posterior's path.
 *
 * @example
 * ```ts
 * const params = {
 *   model: model.init(random.key(0), [-1, 24, 1]).params,
 *   likelihood: lik.init(),
 *   sharpening: initSharpening(modelParams, { etaInit: 0.01 }),
 * };
 * ```
 */
export function initSharpening(
  modelParams: ParamTree,
  opts: InitSharpeningOptions = {},
): SharpeningParams {
  const etaInit = opts.etaInit ?? DEFAULT_ETA;
  validate('initSharpening', [
    knownKeys(opts, ['etaInit', 'select']),
    finite('etaInit', etaInit),
    check(
      opts.select === undefined || typeof opts.select === 'function',
      `select must be a function (path) => boolean, got ${show(opts.select)}`,
    ),
  ]);
  const select = opts.select ?? (() => true);
  const found = posteriors(modelParams).filter((p) => select(p.path));
  if (found.length === 0) {
    throw new ParamError(
      '',
      'initSharpening: no { mu, rho } posterior to sharpen in these parameters' +
        (opts.select ? ' (select kept none)' : '') +
        '. Pass the params of a model made of Bayesian layers (model.init(...).params).',
    );
  }
  return Object.freeze({
    eta: nest(found.map((p) => [p.path, tf.fill(p.post.mu.shape, etaInit)] as const)),
  });
}

const ELBO_KEYS = ['sigma0', 'numSamples', 'klSharpeningWeight', 'ctx'];

/** Validates the options of `owner` (one `ConfigError` listing every problem). */
function checkOptions(
  owner: 'sharpenedElbo' | 'sharpen',
  o: SharpenedElboOptions,
): { sigma0: number; S: number } {
  const sigma0 = o.sigma0 ?? DEFAULT_SIGMA0;
  const S = o.numSamples ?? 1;
  const w = o.klSharpeningWeight;
  validate(owner, [
    knownKeys(o, ELBO_KEYS),
    positive('sigma0', sigma0),
    positiveInt('numSamples', S),
    check(
      w === undefined || (typeof w === 'number' && Number.isFinite(w) && w >= 0),
      `klSharpeningWeight must be a finite number >= 0, got ${show(w)}`,
    ),
    check(
      o.ctx === undefined || (typeof o.ctx === 'object' && o.ctx !== null),
      `ctx must be an object (e.g. { training: true }), got ${show(o.ctx)}`,
    ),
  ]);
  return { sigma0, S };
}

interface DrawResult {
  readonly entries: readonly Posterior[];
  readonly sharpened: readonly { path: string; index: number; eta: tf.Tensor }[];
  readonly eps: ReadonlyMap<string, tf.Tensor>;
  readonly grad: ReadonlyMap<string, tf.Tensor>;
  readonly epsPhi: ReadonlyMap<string, tf.Tensor>;
  readonly sigma: ReadonlyMap<string, tf.Tensor>;
  readonly nllTheta: tf.Scalar;
  /** The noise hook of a map of noises, for the model's weight paths. */
  readonly hook: (m: ReadonlyMap<string, tf.Tensor>) => NoiseFn;
  readonly kModel: Key;
}

/**
 * The first half of a sharpened step: draws `theta`'s noise, computes `g` at `theta` (detached)
 * and draws `phi`'s extra noise. Runs inside the caller's tidy.
 */
function draw(
  model: AnyLayer,
  likelihood: Likelihood<ParamTree>,
  params: SharpenedElboParams,
  x: tf.Tensor,
  y: tf.Tensor,
  k: Key,
  ctx: Omit<ApplyCtx, 'key' | 'noise' | 'computeKl' | 'path'>,
): DrawResult {
  const [kTheta, kPhi, kModel] = split(k, 3) as [Key, Key, Key];
  const entries = posteriors(params.model);
  const etaLeaves = new Map(tensorLeaves(params.sharpening?.eta));
  if (etaLeaves.size === 0) {
    throw new ParamError(
      'sharpening.eta',
      'sharpenedElbo: holds no tensors; make it with initSharpening(params.model).',
    );
  }
  const index = new Map(entries.map((e, i) => [e.path, i]));
  const sharpened = [...etaLeaves].map(([path, eta]) => {
    const i = index.get(path);
    if (i === undefined) {
      throw new ParamError(
        `sharpening.eta.${path}`,
        `sharpenedElbo: eta has an entry '${path}' but the model's parameters have no ` +
          `{ mu, rho } posterior there (posteriors: ${entries.map((e) => e.path).join(', ')}). ` +
          'Make eta with initSharpening(params.model).',
      );
    }
    const mu = (entries[i] as Posterior).post.mu;
    if (eta.shape.join(',') !== mu.shape.join(',')) {
      throw new ShapeError(
        `sharpening.eta.${path}`,
        `sharpenedElbo: eta has shape ${fmtShape(eta.shape)} but the posterior at ` +
          `model.${path} has ${fmtShape(mu.shape)}; make eta with initSharpening(params.model).`,
      );
    }
    return { path, index: i, eta };
  });
  const eps = new Map(
    entries.map((e, i) => [
      e.path,
      tf.tensor(normalArray(foldIn(kTheta, i), e.post.mu.size), e.post.mu.shape, 'float32'),
    ]),
  );
  const root = model.name;
  const hook =
    (m: ReadonlyMap<string, tf.Tensor>): NoiseFn =>
    (path: string) =>
      path.startsWith(`${root}.`) ? m.get(path.slice(root.length + 1)) : undefined;
  const runNll = (noise: NoiseFn): tf.Scalar => {
    const { out } = model.apply(params.model, x, {
      ...ctx,
      key: kModel,
      path: root,
      noise,
      computeKl: false,
    });
    return likelihood.nll(params.likelihood, out as tf.Tensor, y);
  };
  // g: the gradient of the batch NLL with respect to the sharpened weights at theta, through
  // their noise (dNLL/deps = sigma ⊙ dNLL/dtheta). The noise tensors are fresh (not computed from
  // the parameters), so this inner gradient does not involve the outer one.
  const vg = valueAndGrad((leaves: tf.Tensor[]) => {
    const m = new Map(eps);
    sharpened.forEach((s, j) => m.set(s.path, leaves[j] as tf.Tensor));
    return runNll(hook(m));
  });
  const { value: nllTheta, grads } = vg(sharpened.map((s) => eps.get(s.path) as tf.Tensor));
  const sigma = new Map<string, tf.Tensor>();
  const grad = new Map<string, tf.Tensor>();
  const epsPhi = new Map<string, tf.Tensor>();
  sharpened.forEach((s, j) => {
    const post = (entries[s.index] as Posterior).post;
    // exactly the sigma the layers use: exp(logSoftplus(rho))
    const sg = tf.exp(logSoftplus(post.rho));
    sigma.set(s.path, sg);
    // detach: a fresh tensor from the values, so that no gradient flows through g
    const g = tf.div((grads as tf.Tensor[])[j] as tf.Tensor, sg);
    grad.set(s.path, tf.tensor(g.dataSync(), g.shape, 'float32'));
    epsPhi.set(
      s.path,
      tf.tensor(normalArray(foldIn(kPhi, s.index), post.mu.size), post.mu.shape, 'float32'),
    );
  });
  return { entries, sharpened, eps, grad, epsPhi, sigma, nllTheta, hook, kModel };
}

function checkArgs(what: string, params: unknown, key: unknown): void {
  if (key === undefined) throw new MissingKeyError(what, 'posterior sharpening (it samples)');
  if (!isKey(key)) {
    throw new TypeError(`${what}: key must be a PRNG key from random.key(seed), got ${show(key)}.`);
  }
  if (
    !isPlainObject(params) ||
    !('model' in params) ||
    !('likelihood' in params) ||
    !('sharpening' in params)
  ) {
    throw new ParamError(
      '',
      `${what}: params must be { model, likelihood, sharpening } (model.init().params, ` +
        `likelihood.init() and initSharpening(modelParams)), got ${show(params)}.`,
    );
  }
}

/**
 * `sharpenedElboDetailed(model, likelihood, opts?) -> (params, x, y, key, klWeight) -> parts`:
 * the posterior-sharpening loss of Fortunato et al. (2017) and its parts, averaged over
 * `numSamples` draws (draw `s` uses `foldIn(key, s)`). `params` is `{ model, likelihood,
 * sharpening }`. See the module documentation for exactly what is computed.
 *
 * @example
 * ```ts
 * const parts = sharpenedElboDetailed(model, gaussianNll())(params, x, y, random.key(0), 1 / n);
 * ```
 */
export function sharpenedElboDetailed<MP extends ParamTree, LP extends ParamTree>(
  model: AnyLayer,
  likelihood: Likelihood<LP>,
  opts: SharpenedElboOptions = {},
): (
  params: SharpenedElboParams<MP, LP>,
  x: tf.Tensor,
  y: tf.Tensor,
  key: Key,
  klWeight: number,
) => SharpenedElboParts {
  const { sigma0, S } = checkOptions('sharpenedElbo', opts);
  return (params, x, y, key, klWeight) =>
    tidy(() => {
      checkArgs('sharpenedElbo', params, key);
      if (typeof klWeight !== 'number' || !Number.isFinite(klWeight) || klWeight < 0) {
        throw new RangeError(
          `sharpenedElbo: klWeight must be a finite number >= 0 (e.g. 1 / numExamples), got ${String(klWeight)}.`,
        );
      }
      const sharpWeight = opts.klSharpeningWeight ?? 1 / ((x.shape[0] as number) || 1);
      const ctx = opts.ctx ?? {};
      const parts = Array.from({ length: S }, (_, s) => {
        const d = draw(
          model,
          likelihood as Likelihood<ParamTree>,
          params as SharpenedElboParams,
          x,
          y,
          foldIn(key, s),
          ctx,
        );
        // phi through the noise: eps' = eps + (sigma0 * epsPhi - eta ⊙ g) / sigma
        const phiEps = new Map(d.eps);
        let klSharp: tf.Scalar = tf.scalar(0);
        for (const sp of d.sharpened) {
          const shift = tf.mul(sp.eta, d.grad.get(sp.path) as tf.Tensor);
          const step = tf.sub(tf.mul(d.epsPhi.get(sp.path) as tf.Tensor, sigma0), shift);
          phiEps.set(
            sp.path,
            tf.add(
              d.eps.get(sp.path) as tf.Tensor,
              tf.div(step, d.sigma.get(sp.path) as tf.Tensor),
            ),
          );
          klSharp = tf.add(klSharp, tf.div(tf.sum(tf.square(shift)), 2 * sigma0 * sigma0));
        }
        const { out } = model.apply(params.model, x, {
          ...ctx,
          key: d.kModel,
          path: model.name,
          noise: d.hook(phiEps),
          computeKl: false,
        });
        const nll = likelihood.nll(params.likelihood, out as tf.Tensor, y);
        const kl = model.klDivergence(params.model, {
          ...ctx,
          key: d.kModel,
          path: model.name,
          noise: d.hook(d.eps),
        });
        return { nll, nllTheta: d.nllTheta, kl, klSharp, out: out as tf.Tensor };
      });
      const meanOf = (f: (p: (typeof parts)[number]) => tf.Scalar): tf.Scalar =>
        tf.div(tf.addN(parts.map(f)), S) as tf.Scalar;
      const nll = meanOf((p) => p.nll);
      const kl = meanOf((p) => p.kl);
      const klSharpening = meanOf((p) => p.klSharp);
      const loss = tf.add(
        nll,
        tf.add(tf.mul(kl, klWeight), tf.mul(klSharpening, sharpWeight)),
      ) as tf.Scalar;
      return {
        loss,
        nll,
        nllTheta: meanOf((p) => p.nllTheta),
        kl,
        klSharpening,
        predictions: tf.stack(parts.map((p) => p.out)),
      };
    });
}

/**
 * `sharpenedElbo(model, likelihood, opts?) -> (params, x, y, key, klWeight) -> loss`: the scalar
 * loss of `sharpenedElboDetailed`, ready for `valueAndGrad`, `trainStep` and `fit` (whose params
 * are then `{ model, likelihood, sharpening }`).
 *
 * @example
 * ```ts
 * const lik = gaussianNll();
 * const modelParams = model.init(random.key(0), [-1, 24, 1]).params;
 * const params = { model: modelParams, likelihood: lik.init(), sharpening: initSharpening(modelParams) };
 * const r = await fit({ loss: sharpenedElbo(model, lik, { sigma0: 0.02 }), optimizer: adam(), params,
 *   x, y, key: random.key(1), epochs: 10, batchSize: 32 });
 * ```
 */
export function sharpenedElbo<MP extends ParamTree, LP extends ParamTree>(
  model: AnyLayer,
  likelihood: Likelihood<LP>,
  opts: SharpenedElboOptions = {},
): (
  params: SharpenedElboParams<MP, LP>,
  x: tf.Tensor,
  y: tf.Tensor,
  key: Key,
  klWeight: number,
) => tf.Scalar {
  const detailed = sharpenedElboDetailed<MP, LP>(model, likelihood, opts);
  return (params, x, y, key, klWeight) => tidy(() => detailed(params, x, y, key, klWeight).loss);
}

/**
 * `sharpen(model, likelihood, opts?) -> (params, x, y, key) -> { theta, grad, phiMean, phi,
 * nllTheta }`: one draw of the sharpened weights, as the loss with the same key's first draw
 * (`foldIn(key, 0)`) uses them, for inspection: trees shaped like `params.sharpening.eta`.
 *
 * @example
 * ```ts
 * const { theta, phiMean } = sharpen(model, mse())(params, x, y, random.key(3));
 * ```
 */
export function sharpen<MP extends ParamTree, LP extends ParamTree>(
  model: AnyLayer,
  likelihood: Likelihood<LP>,
  opts: Pick<SharpenedElboOptions, 'sigma0' | 'ctx'> = {},
): (params: SharpenedElboParams<MP, LP>, x: tf.Tensor, y: tf.Tensor, key: Key) => SharpenedDraw {
  const { sigma0 } = checkOptions('sharpen', opts);
  return (params, x, y, key) =>
    tidy(() => {
      checkArgs('sharpen', params, key);
      const d = draw(
        model,
        likelihood as Likelihood<ParamTree>,
        params as SharpenedElboParams,
        x,
        y,
        foldIn(key, 0),
        opts.ctx ?? {},
      );
      const theta: [string, tf.Tensor][] = [];
      const grad: [string, tf.Tensor][] = [];
      const phiMean: [string, tf.Tensor][] = [];
      const phi: [string, tf.Tensor][] = [];
      for (const sp of d.sharpened) {
        const post = (d.entries[sp.index] as Posterior).post;
        const th = tf.add(
          post.mu,
          tf.mul(d.sigma.get(sp.path) as tf.Tensor, d.eps.get(sp.path) as tf.Tensor),
        );
        const g = d.grad.get(sp.path) as tf.Tensor;
        const pm = tf.sub(th, tf.mul(sp.eta, g));
        theta.push([sp.path, th]);
        grad.push([sp.path, g]);
        phiMean.push([sp.path, pm]);
        phi.push([sp.path, tf.add(pm, tf.mul(d.epsPhi.get(sp.path) as tf.Tensor, sigma0))]);
      }
      return {
        theta: nest(theta),
        grad: nest(grad),
        phiMean: nest(phiMean),
        phi: nest(phi),
        nllTheta: d.nllTheta,
      };
    });
}
