/**
 * Optimizers as chains of gradient transformations, with the semantics of optax: `sgd`, `adam`,
 * `adamw`, `rmsprop`, and their building blocks `scaleByAdam`, `scaleByRms`, `scaleByStddev`.
 *
 * Every optimizer returns the NEGATED step as its updates (add them with `applyUpdates`). As in
 * optax, NaN or Infinity in the gradients propagates into the updates and into the moment
 * estimates of the state; nothing is filtered.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  checkBoolean,
  checkKnownKeys,
  checkNumber,
  checkOptionalFunction,
  optionsRecord,
  type NumberRange,
} from '../validation';
import {
  makeChain,
  checkLearningRate,
  flatTransform,
  identity,
  makeAddDecayedWeights,
  makeLearningRate,
  makeTrace,
  Packed,
  requireCount,
  requireFields,
  requireFlat,
  validateOptions,
  zerosFlat,
  type EmptyState,
  type GradientTransformation,
  type LearningRate,
  type LearningRateState,
  type TraceState,
} from './transform';

const UNIT_HALF_OPEN: NumberRange = { min: 0, max: 1, maxOpen: true };
const NON_NEGATIVE: NumberRange = { min: 0 };

// ---------------------------------------------------------------------------------------------
// States and options
// ---------------------------------------------------------------------------------------------

// The moments are flat: ONE float32 buffer `[n]` over the `n` scalars of the params (their leaves
// concatenated in flatten order, as `tree.leaves` lists them), not trees shaped like the params,
// so that a step runs its arithmetic once over all leaves (see ./flat.ts). Element by element the
// arithmetic is the per-leaf one, bit for bit.

/**
 * The state of `scaleByAdam`: the update count and the first and second moments, each one flat
 * buffer `[n]` over all the params' scalars (leaves in flatten order).
 */
export type ScaleByAdamState = {
  readonly count: number;
  readonly mu: tf.Tensor1D;
  readonly nu: tf.Tensor1D;
};
/** The state of `scaleByRms`: the running mean of the squared gradients (flat, `[n]`). */
export type ScaleByRmsState = { readonly nu: tf.Tensor1D };
/**
 * The state of `scaleByStddev`: the running means of the gradients and of their squares (flat,
 * `[n]` each).
 */
export type ScaleByStddevState = { readonly mu: tf.Tensor1D; readonly nu: tf.Tensor1D };

/** The state of `sgd`: `[momentum (empty without momentum), learning rate]`. */
export type SgdState = readonly [TraceState | EmptyState, LearningRateState];
/** The state of `adam`: `[scaleByAdam, learning rate]`. */
export type AdamState = readonly [ScaleByAdamState, LearningRateState];
/** The state of `adamw`: `[scaleByAdam, weight decay (empty), learning rate]`. */
export type AdamWState = readonly [ScaleByAdamState, EmptyState, LearningRateState];
/** The state of `rmsprop`: `[rms or stddev, learning rate, momentum (empty without)]`. */
export type RmspropState = readonly [
  ScaleByRmsState | ScaleByStddevState,
  LearningRateState,
  TraceState | EmptyState,
];

/** Options of `scaleByAdam`. */
export interface ScaleByAdamOptions {
  /** Decay of the first moment, in [0, 1). Default 0.9. */
  readonly b1?: number;
  /** Decay of the second moment, in [0, 1). Default 0.999. */
  readonly b2?: number;
  /** Added to the square root of the second moment, >= 0. Default 1e-8. */
  readonly eps?: number;
  /** Added to the second moment inside the square root, >= 0. Default 0. */
  readonly epsRoot?: number;
}

/** Options of `sgd`. */
export interface SgdOptions {
  /** The step size (>= 0) or a schedule of it. */
  readonly learningRate: LearningRate;
  /** Momentum coefficient in [0, 1); 0 (the default) means plain SGD. */
  readonly momentum?: number;
  /** Nesterov momentum. Default false. */
  readonly nesterov?: boolean;
}

/** Options of `adam`. */
export interface AdamOptions extends ScaleByAdamOptions {
  /** The step size (>= 0) or a schedule of it. */
  readonly learningRate: LearningRate;
}

/** Options of `adamw`. */
export interface AdamWOptions extends AdamOptions {
  /** Decoupled weight-decay coefficient, >= 0. Default 1e-4 (as optax). */
  readonly weightDecay?: number;
  /** `mask(path)` true for the leaves that are decayed (e.g. not biases). Default: all. */
  readonly mask?: (path: string) => boolean;
}

/** Options of `scaleByRms` and `scaleByStddev`. */
export interface ScaleByRmsOptions {
  /** Decay of the running averages, in [0, 1). Default 0.9. */
  readonly decay?: number;
  /** Added to the second moment inside the square root, >= 0. Default 1e-8. */
  readonly eps?: number;
}

/** Options of `rmsprop`. */
export interface RmspropOptions extends ScaleByRmsOptions {
  /** The step size (>= 0) or a schedule of it. */
  readonly learningRate: LearningRate;
  /** Momentum coefficient in [0, 1), applied after the learning rate (as optax). Default 0. */
  readonly momentum?: number;
  /** Divide by the running standard deviation instead of the running RMS. Default false. */
  readonly centered?: boolean;
}

const ADAM_KEYS = ['b1', 'b2', 'eps', 'epsRoot'] as const;

function adamChecks(o: Readonly<Record<string, unknown>>) {
  return {
    b1: checkNumber('b1', o.b1 ?? 0.9, UNIT_HALF_OPEN),
    b2: checkNumber('b2', o.b2 ?? 0.999, UNIT_HALF_OPEN),
    eps: checkNumber('eps', o.eps ?? 1e-8, NON_NEGATIVE),
    epsRoot: checkNumber('epsRoot', o.epsRoot ?? 0, NON_NEGATIVE),
  };
}

function rmsChecks(o: Readonly<Record<string, unknown>>) {
  return {
    decay: checkNumber('decay', o.decay ?? 0.9, UNIT_HALF_OPEN),
    eps: checkNumber('eps', o.eps ?? 1e-8, NON_NEGATIVE),
  };
}

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

/**
 * `scaleByAdam({ b1 = 0.9, b2 = 0.999, eps = 1e-8, epsRoot = 0 }) ->
 * GradientTransformation<ScaleByAdamState>`: optax `scale_by_adam`. With `t` the new count,
 * `mu = b1 mu + (1 - b1) g`, `nu = b2 nu + (1 - b2) g^2`,
 * `updates = (mu / (1 - b1^t)) / (sqrt(nu / (1 - b2^t) + epsRoot) + eps)`.
 * The bias corrections are computed in JS from the count in the state.
 *
 * @example
 * ```ts
 * const myAdam = chain(scaleByAdam({ b2: 0.99 }), scaleByLearningRate(1e-3));
 * ```
 */
export function scaleByAdam(
  options: ScaleByAdamOptions = {},
): GradientTransformation<ScaleByAdamState> {
  const o = optionsRecord(options);
  const cfg = validateOptions('scaleByAdam', {
    known: checkKnownKeys(options, ADAM_KEYS),
    ...adamChecks(o),
  });
  return makeScaleByAdam('scaleByAdam', cfg);
}

function makeScaleByAdam(
  owner: string,
  { b1, b2, eps, epsRoot }: { b1: number; b2: number; eps: number; epsRoot: number },
): GradientTransformation<ScaleByAdamState> {
  return flatTransform<ScaleByAdamState>(
    owner,
    (params) =>
      Object.freeze({ count: 0, mu: zerosFlat(owner, params), nu: zerosFlat(owner, params) }),
    {
      needsFlat: true,
      update: (g, state, ctx) => {
        requireFields(owner, state, ['count', 'mu', 'nu']);
        const count = requireCount(owner, state.count) + 1;
        const c1 = 1 - b1 ** count;
        const c2 = 1 - b2 ** count;
        const m = requireFlat(owner, 'mu', state.mu, ctx.layout);
        const v = requireFlat(owner, 'nu', state.nu, ctx.layout);
        const x = g.flat();
        const mu = tf.add(tf.mul(x, 1 - b1), tf.mul(m, b1)) as tf.Tensor1D;
        const nu = tf.add(tf.mul(tf.square(x), 1 - b2), tf.mul(v, b2)) as tf.Tensor1D;
        const updates = tf.div(
          tf.div(mu, c1),
          tf.add(tf.sqrt(tf.add(tf.div(nu, c2), epsRoot)), eps),
        );
        return {
          updates: Packed.ofFlat(ctx.layout, updates),
          state: Object.freeze({ count, mu, nu }),
        };
      },
    },
  );
}

/**
 * `scaleByRms({ decay = 0.9, eps = 1e-8 }) -> GradientTransformation<ScaleByRmsState>`: optax
 * `scale_by_rms` with `initial_scale = 0`: `nu = decay nu + (1 - decay) g^2`,
 * `updates = g / sqrt(nu + eps)`.
 *
 * @example
 * ```ts
 * const myRmsprop = chain(scaleByRms({ decay: 0.99 }), scaleByLearningRate(1e-3));
 * ```
 */
export function scaleByRms(
  options: ScaleByRmsOptions = {},
): GradientTransformation<ScaleByRmsState> {
  const o = optionsRecord(options);
  const cfg = validateOptions('scaleByRms', {
    known: checkKnownKeys(options, ['decay', 'eps']),
    ...rmsChecks(o),
  });
  return makeScaleByRms('scaleByRms', cfg.decay, cfg.eps);
}

function makeScaleByRms(
  owner: string,
  decay: number,
  eps: number,
): GradientTransformation<ScaleByRmsState> {
  return flatTransform<ScaleByRmsState>(
    owner,
    (params) => Object.freeze({ nu: zerosFlat(owner, params) }),
    {
      needsFlat: true,
      update: (g, state, ctx) => {
        requireFields(owner, state, ['nu']);
        const v = requireFlat(owner, 'nu', state.nu, ctx.layout);
        const x = g.flat();
        const nu = tf.add(tf.mul(tf.square(x), 1 - decay), tf.mul(v, decay)) as tf.Tensor1D;
        const updates = tf.mul(x, tf.rsqrt(tf.add(nu, eps)));
        return { updates: Packed.ofFlat(ctx.layout, updates), state: Object.freeze({ nu }) };
      },
    },
  );
}

/**
 * `scaleByStddev({ decay = 0.9, eps = 1e-8 }) -> GradientTransformation<ScaleByStddevState>`:
 * optax `scale_by_stddev` with `initial_scale = 0`: `mu = decay mu + (1 - decay) g`,
 * `nu = decay nu + (1 - decay) g^2`, `updates = g / sqrt(nu - mu^2 + eps)`.
 *
 * @example
 * ```ts
 * const centeredRmsprop = chain(scaleByStddev(), scaleByLearningRate(1e-3));
 * ```
 */
export function scaleByStddev(
  options: ScaleByRmsOptions = {},
): GradientTransformation<ScaleByStddevState> {
  const o = optionsRecord(options);
  const cfg = validateOptions('scaleByStddev', {
    known: checkKnownKeys(options, ['decay', 'eps']),
    ...rmsChecks(o),
  });
  return makeScaleByStddev('scaleByStddev', cfg.decay, cfg.eps);
}

function makeScaleByStddev(
  owner: string,
  decay: number,
  eps: number,
): GradientTransformation<ScaleByStddevState> {
  return flatTransform<ScaleByStddevState>(
    owner,
    (params) => Object.freeze({ mu: zerosFlat(owner, params), nu: zerosFlat(owner, params) }),
    {
      needsFlat: true,
      update: (g, state, ctx) => {
        requireFields(owner, state, ['mu', 'nu']);
        const m = requireFlat(owner, 'mu', state.mu, ctx.layout);
        const v = requireFlat(owner, 'nu', state.nu, ctx.layout);
        const x = g.flat();
        const mu = tf.add(tf.mul(x, 1 - decay), tf.mul(m, decay)) as tf.Tensor1D;
        const nu = tf.add(tf.mul(tf.square(x), 1 - decay), tf.mul(v, decay)) as tf.Tensor1D;
        const updates = tf.mul(x, tf.rsqrt(tf.add(tf.sub(nu, tf.square(mu)), eps)));
        return {
          updates: Packed.ofFlat(ctx.layout, updates),
          state: Object.freeze({ mu, nu }),
        };
      },
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Optimizers
// ---------------------------------------------------------------------------------------------

/**
 * `sgd({ learningRate, momentum = 0, nesterov = false }) -> GradientTransformation<SgdState>`:
 * optax `sgd`: `chain(trace({ decay: momentum, nesterov }), scaleByLearningRate(learningRate))`
 * (no trace when `momentum` is 0). Without momentum, `updates = -learningRate * g`.
 *
 * @example
 * ```ts
 * const opt = sgd({ learningRate: 0.01, momentum: 0.9, nesterov: true });
 * let state = opt.init(params);
 * const { updates, state: next } = opt.update(grads, state);
 * const nextParams = applyUpdates(params, updates);
 * ```
 */
export function sgd(options: SgdOptions): GradientTransformation<SgdState> {
  const o = optionsRecord(options);
  const cfg = validateOptions('sgd', {
    known: checkKnownKeys(options, ['learningRate', 'momentum', 'nesterov']),
    learningRate: checkLearningRate('learningRate', o.learningRate),
    momentum: checkNumber('momentum', o.momentum ?? 0, UNIT_HALF_OPEN),
    nesterov: checkBoolean('nesterov', o.nesterov ?? false),
  });
  const momentum: GradientTransformation<TraceState | EmptyState> =
    cfg.momentum === 0 ? identity() : makeTrace('sgd', cfg.momentum, cfg.nesterov);
  return makeChain('sgd', [momentum, makeLearningRate(cfg.learningRate)] as const);
}

/**
 * `adam({ learningRate, b1 = 0.9, b2 = 0.999, eps = 1e-8, epsRoot = 0 }) ->
 * GradientTransformation<AdamState>`: optax `adam`, i.e.
 * `chain(scaleByAdam({ b1, b2, eps, epsRoot }), scaleByLearningRate(learningRate))`, with bias
 * correction: `updates = -lr * mu_hat / (sqrt(nu_hat + epsRoot) + eps)`.
 *
 * @example
 * ```ts
 * const opt = adam({ learningRate: warmupCosineDecay({ initValue: 0, peakValue: 1e-3,
 *   warmupSteps: 100, decaySteps: 10_000 }) });
 * ```
 */
export function adam(options: AdamOptions): GradientTransformation<AdamState> {
  const o = optionsRecord(options);
  const cfg = validateOptions('adam', {
    known: checkKnownKeys(options, ['learningRate', ...ADAM_KEYS]),
    learningRate: checkLearningRate('learningRate', o.learningRate),
    ...adamChecks(o),
  });
  return makeChain('adam', [
    makeScaleByAdam('adam', cfg),
    makeLearningRate(cfg.learningRate),
  ] as const);
}

/**
 * `adamw({ learningRate, b1, b2, eps, epsRoot, weightDecay = 1e-4, mask? }) ->
 * GradientTransformation<AdamWState>`: optax `adamw`, Adam with decoupled weight decay:
 * `updates = -lr * (adamDirection + weightDecay * params)` on the leaves where `mask(path)` holds
 * (all by default). `update` requires `params` as its third argument and throws otherwise.
 *
 * @example
 * ```ts
 * const opt = adamw({ learningRate: 1e-3, weightDecay: 1e-2, mask: (p) => !p.endsWith('bias') });
 * const { updates, state: next } = opt.update(grads, state, params);
 * ```
 */
export function adamw(options: AdamWOptions): GradientTransformation<AdamWState> {
  const o = optionsRecord(options);
  const cfg = validateOptions('adamw', {
    known: checkKnownKeys(options, ['learningRate', ...ADAM_KEYS, 'weightDecay', 'mask']),
    learningRate: checkLearningRate('learningRate', o.learningRate),
    ...adamChecks(o),
    weightDecay: checkNumber('weightDecay', o.weightDecay ?? 1e-4, NON_NEGATIVE),
    mask: checkOptionalFunction<(path: string) => boolean>('mask', o.mask),
  });
  return makeChain('adamw', [
    makeScaleByAdam('adamw', cfg),
    makeAddDecayedWeights('adamw', cfg.weightDecay, cfg.mask),
    makeLearningRate(cfg.learningRate),
  ] as const);
}

/**
 * `rmsprop({ learningRate, decay = 0.9, eps = 1e-8, momentum = 0, centered = false }) ->
 * GradientTransformation<RmspropState>`: optax `rmsprop` (`initial_scale = 0`, eps inside the
 * square root): `chain(centered ? scaleByStddev : scaleByRms, scaleByLearningRate(lr),
 * trace({ decay: momentum }))` (no trace when `momentum` is 0).
 *
 * @example
 * ```ts
 * const opt = rmsprop({ learningRate: 1e-3, centered: true, momentum: 0.9 });
 * ```
 */
export function rmsprop(options: RmspropOptions): GradientTransformation<RmspropState> {
  const o = optionsRecord(options);
  const cfg = validateOptions('rmsprop', {
    known: checkKnownKeys(options, ['learningRate', 'decay', 'eps', 'momentum', 'centered']),
    learningRate: checkLearningRate('learningRate', o.learningRate),
    ...rmsChecks(o),
    momentum: checkNumber('momentum', o.momentum ?? 0, UNIT_HALF_OPEN),
    centered: checkBoolean('centered', o.centered ?? false),
  });
  const scaleBy: GradientTransformation<ScaleByRmsState | ScaleByStddevState> = cfg.centered
    ? makeScaleByStddev('rmsprop', cfg.decay, cfg.eps)
    : makeScaleByRms('rmsprop', cfg.decay, cfg.eps);
  const momentum: GradientTransformation<TraceState | EmptyState> =
    cfg.momentum === 0 ? identity() : makeTrace('rmsprop', cfg.momentum, false);
  return makeChain('rmsprop', [scaleBy, makeLearningRate(cfg.learningRate), momentum] as const);
}
