/**
 * MOPED (Krishnan et al. 2020, "Specifying Weight Priors in Bayesian Deep Neural Networks with
 * Empirical Bayes"): a Bayesian model initialised from a trained deterministic one, and
 * `toBayesian`, which turns a deterministic model into its Bayesian twin with the same
 * parameter-tree layout (bayesian-torch's `dnn_to_bnn`).
 *
 * - `toBayesian(model, inputShape, options?)`: `dense` becomes `bayesianLinear` (same name, same
 *   `kernel [in, out]` / `bias [out]` keys), `serial` and `parallel` are rebuilt around their
 *   converted children (same keys), layers without parameters (activations, flatten, dropout,
 *   pooling, `fn`, ...) and layers that already are Bayesian stay as they are; any other layer
 *   with parameters is a `ConfigError` naming its path. `options` (the shared Bayesian options:
 *   prior, estimator, ...) go to every converted layer.
 * - `mopedParams(bayesParams, weights, options?)`: every posterior `{ mu, rho }` of the Bayesian
 *   tree gets `mu := w` and `sigma = softplus(rho) := max(delta |w|, minSigma)` from the
 *   deterministic weights `w` at the same path; any other tensor (a deterministic part) is the
 *   trained one. Missing, extra or mis-shaped entries are errors naming the path.
 * - `moped(model, weights, inputShape, options?)`: both, returning `{ model, params }`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import { key as makeKey } from '../params/random';
import { flatten, freeze, type ParamTree } from '../params/tree';
import { ConfigError, ParamError, ShapeError, fmtShape } from '../errors';
import { check, validate } from '../validation';
import { CHILDREN, parallel, serial } from './combinators';
import { BAYESIAN_OPTION_NAMES, type BayesianOptions } from './bayesian';
import { bayesianLinear } from './linear';
import type { AnyLayer, Shape } from './types';

/** The options of `mopedParams` / `moped`. */
export interface MopedOptions {
  /** `sigma := delta |w|`. Default 0.1 (the paper's). */
  readonly delta?: number;
  /** The smallest sigma (for weights at or near 0). Default 1e-5. */
  readonly minSigma?: number;
}

const isGaussian = (x: unknown): x is { mu: tf.Tensor; rho: tf.Tensor } =>
  typeof x === 'object' &&
  x !== null &&
  (x as { mu?: unknown }).mu instanceof tf.Tensor &&
  (x as { rho?: unknown }).rho instanceof tf.Tensor;

const join = (a: string, b: string): string => (a ? `${a}.${b}` : b);

/** `rho` with `softplus(rho) = s` for `s > 0`: `s + log(1 - e^-s)` (= log(e^s - 1), stably). */
const inverseSoftplus = (s: tf.Tensor): tf.Tensor => tf.add(s, tf.log(tf.neg(tf.expm1(tf.neg(s)))));

/**
 * `mopedParams(bayesParams, weights, options?) -> params`: the Bayesian parameters `bayesParams`
 * (only their structure and shapes are read) with every posterior set from the deterministic
 * `weights` at the same path: `mu := w`, `rho := softplus^-1(max(delta |w|, minSigma))`.
 *
 * @throws ParamError naming the path of a missing or extra entry; ShapeError for a mis-shaped one;
 *   ConfigError for a bad `delta` / `minSigma`.
 * @example
 * ```ts
 * const params = mopedParams(bayesModel.init(random.key(0), [-1, 13]).params, trained, { delta: 0.05 });
 * ```
 */
export function mopedParams<P>(bayesParams: P, weights: unknown, options: MopedOptions = {}): P {
  const delta = options.delta ?? 0.1;
  const minSigma = options.minSigma ?? 1e-5;
  validate('mopedParams', [
    check(
      Number.isFinite(delta) && delta > 0,
      `delta must be a positive number, got ${String(delta)}`,
    ),
    check(
      Number.isFinite(minSigma) && minSigma > 0,
      `minSigma must be a positive number, got ${String(minSigma)}`,
    ),
  ]);
  const leaf = (w: unknown, shape: readonly number[], path: string): tf.Tensor => {
    if (!(w instanceof tf.Tensor)) {
      throw new ParamError(
        path || '(root)',
        `the deterministic weights have ${w === undefined ? 'no entry' : `a ${typeof w}`} here; expected a tensor of shape ${fmtShape(shape)} (pass the params of the model toBayesian converted).`,
      );
    }
    if (w.shape.join(',') !== shape.join(',')) {
      throw new ShapeError(
        path,
        `the deterministic weight has shape ${fmtShape(w.shape)}; the Bayesian model expects ${fmtShape(shape)}.`,
      );
    }
    return w;
  };
  const walk = (b: unknown, w: unknown, path: string): unknown => {
    if (isGaussian(b)) {
      const t = leaf(w, b.mu.shape, path);
      return {
        mu: tf.clone(t),
        rho: tidy(() => inverseSoftplus(tf.maximum(tf.mul(tf.abs(t), delta), minSigma))),
      };
    }
    if (b instanceof tf.Tensor) return tf.clone(leaf(w, b.shape, path));
    if (Array.isArray(b)) {
      if (!Array.isArray(w) || w.length !== b.length) {
        throw new ParamError(
          path || '(root)',
          `expected an array of ${b.length} entries in the deterministic weights.`,
        );
      }
      return b.map((x, i) => walk(x, w[i], join(path, String(i))));
    }
    if (typeof b === 'object' && b !== null) {
      const wo = (typeof w === 'object' && w !== null ? w : {}) as Record<string, unknown>;
      if (w === undefined || w === null || typeof w !== 'object') {
        if (Object.keys(b).length === 0) return b;
        throw new ParamError(path || '(root)', 'the deterministic weights have no entry here.');
      }
      const extra = Object.keys(wo).filter((k) => !(k in (b as object)));
      if (extra.length > 0) {
        throw new ParamError(
          join(path, extra[0] as string),
          `the deterministic weights have entries the Bayesian model has not (${extra.join(', ')}): is it the model toBayesian converted?`,
        );
      }
      return Object.fromEntries(
        Object.entries(b).map(([k, v]) => [k, walk(v, wo[k], join(path, k))]),
      );
    }
    return b;
  };
  // (a throw inside the scope disposes what was made before it)
  return freeze(tidy(() => walk(bayesParams, weights, '') as ParamTree)) as P;
}

/** A layer's parameters at `inputShape` are empty (it has none). */
function hasNoParams(layer: AnyLayer, inputShape: unknown, path: string): boolean {
  const { params } = layer.init(makeKey(0), inputShape as never, path);
  const n = flatten(params as ParamTree).leaves.length;
  tf.dispose(params as tf.TensorContainer);
  return n === 0;
}

/**
 * `toBayesian(model, inputShape, options?) -> model`: the Bayesian twin of a deterministic model
 * (`dense` -> `bayesianLinear`, `serial` / `parallel` rebuilt, parameter-free and Bayesian layers
 * kept), with the same parameter-tree layout; `options` go to every converted layer.
 *
 * @throws ConfigError naming the path of a layer with parameters and no Bayesian twin, or for
 *   options that are not Bayesian options.
 * @example
 * ```ts
 * const net = serial({ h: dense({ units: 32 }), act: relu(), out: dense({ units: 1 }) });
 * const bnn = toBayesian(net, [-1, 13], { prior: normalPrior(0, 1) });
 * ```
 */
export function toBayesian(
  model: AnyLayer,
  inputShape: unknown,
  options: BayesianOptions = {},
): AnyLayer {
  const unknown = Object.keys(options).filter(
    (k) => !(BAYESIAN_OPTION_NAMES as readonly string[]).includes(k),
  );
  if (unknown.length > 0) {
    throw new ConfigError('toBayesian', [
      `unknown option(s) ${unknown.join(', ')}: only the shared Bayesian options (${BAYESIAN_OPTION_NAMES.join(', ')}) apply to every converted layer`,
    ]);
  }
  const convert = (layer: AnyLayer, shape: unknown, path: string): AnyLayer => {
    const children = (
      layer as unknown as { [CHILDREN]?: readonly (readonly [string, AnyLayer])[] }
    )[CHILDREN];
    if (layer.kind === 'serial' && children) {
      let s = shape;
      const rebuilt: Record<string, AnyLayer> = {};
      for (const [k, child] of children) {
        const p = join(path, k);
        rebuilt[k] = convert(child, s, p);
        s = child.outputShape(s as never, p);
      }
      return serial(rebuilt as never, { name: layer.name }) as unknown as AnyLayer;
    }
    if (layer.kind === 'parallel' && children) {
      const shapes = shape as readonly unknown[];
      const rebuilt: Record<string, AnyLayer> = {};
      children.forEach(([k, child], i) => {
        rebuilt[k] = convert(child, shapes[i], join(path, k));
      });
      return parallel(rebuilt as never, { name: layer.name }) as unknown as AnyLayer;
    }
    if (layer.kind === 'dense') {
      const s = shape as Shape;
      const cfg = layer.config as { units: number; bias: boolean };
      return bayesianLinear({
        ...options,
        inFeatures: s[s.length - 1] as number,
        outFeatures: cfg.units,
        bias: cfg.bias,
        name: layer.name,
      }) as unknown as AnyLayer;
    }
    if (layer.kind.startsWith('bayesian') || hasNoParams(layer, shape, path)) return layer;
    throw new ConfigError(`toBayesian (at '${path || layer.name}')`, [
      `layer '${layer.name}' (${layer.kind}) has parameters and no Bayesian twin; toBayesian converts dense (to bayesianLinear) inside serial and parallel, and keeps parameter-free and Bayesian layers: build this part with its Bayesian layer directly`,
    ]);
  };
  return convert(model, inputShape, '');
}

/**
 * `moped(model, weights, inputShape, options?) -> { model, params }`: the Bayesian twin of the
 * deterministic `model` (`toBayesian`, with `options.bayesian`) and its parameters from the
 * trained `weights` (`mopedParams`, with `delta` / `minSigma`): in mean mode the twin computes
 * exactly what `model` does with `weights`.
 *
 * @example
 * ```ts
 * const { model: bnn, params } = moped(net, trained, [-1, 13], { delta: 0.1 });
 * ```
 */
export function moped(
  model: AnyLayer,
  weights: unknown,
  inputShape: unknown,
  options: MopedOptions & { readonly bayesian?: BayesianOptions } = {},
): { model: AnyLayer; params: ParamTree } {
  const bnn = toBayesian(model, inputShape, options.bayesian ?? {});
  const { params: shapeOnly } = bnn.init(makeKey(0), inputShape as never);
  try {
    const params = mopedParams(shapeOnly as ParamTree, weights, options);
    return { model: bnn, params };
  } finally {
    tf.dispose(shapeOnly as tf.TensorContainer);
  }
}
