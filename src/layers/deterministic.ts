/**
 * Deterministic layers: dense, activations, flatten, dropout (key-driven), and `fn` to lift any
 * pure tensor function. Their KL term is 0.
 */
import * as tf from '@tensorflow/tfjs-core';
import { bernoulli, bernoulliArray, foldIn, uniform, type Key } from '../params/random';
import { check, inRange, isBool, knownKeys, positiveInt, validate } from '../validation';
import { MissingKeyError, ParamError, ShapeError, fmtShape } from '../errors';
import { deterministicLayer, type EmptyParams } from './stateless';
import { markFusibleActivation } from './batching';
import type { Layer, Shape } from './types';

type Empty = EmptyParams;

/** An element-wise (or last-axis) function as a parameter-free layer that works on any leading axes. */
function elementwise(
  kind: string,
  opts: { name?: string } | undefined,
  f: (x: tf.Tensor) => tf.Tensor,
): Layer<Empty> {
  return deterministicLayer({
    kind,
    name: nameOf(opts, kind),
    forward: (_p: Empty, x: tf.Tensor) => f(x),
    batch: 'leading',
  });
}

const nameOf = (opts: { name?: string } | undefined, dflt: string): string => opts?.name ?? dflt;

/**
 * `relu(opts?) -> Layer`: `max(x, 0)`.
 *
 * @example
 * ```ts
 * serial([bayesianLinear({ inFeatures: 1, outFeatures: 16 }), relu()]);
 * ```
 */
export const relu = (opts?: { name?: string }): Layer<Empty> =>
  markFusibleActivation(
    elementwise('relu', opts, (x) => tf.relu(x)),
    'relu',
  );

/**
 * `tanh(opts?) -> Layer`.
 *
 * @example
 * ```ts
 * serial([dense({ units: 8 }), tanh()]);
 * ```
 */
export const tanh = (opts?: { name?: string }): Layer<Empty> =>
  elementwise('tanh', opts, (x) => tf.tanh(x));

/**
 * `sigmoid(opts?) -> Layer`.
 *
 * @example
 * ```ts
 * serial([dense({ units: 1 }), sigmoid()]);
 * ```
 */
export const sigmoid = (opts?: { name?: string }): Layer<Empty> =>
  elementwise('sigmoid', opts, (x) => tf.sigmoid(x));

/**
 * `softplus(opts?) -> Layer`: `log(1 + exp(x))`.
 *
 * @example
 * ```ts
 * serial([dense({ units: 1 }), softplus()]);
 * ```
 */
export const softplus = (opts?: { name?: string }): Layer<Empty> =>
  elementwise('softplus', opts, (x) => tf.softplus(x));

/**
 * `softmax(opts?) -> Layer`: softmax over the last axis.
 *
 * @example
 * ```ts
 * serial([dense({ units: 10 }), softmax()]);
 * ```
 */
export const softmax = (opts?: { name?: string }): Layer<Empty> =>
  elementwise('softmax', opts, (x) => tf.softmax(x));

/**
 * `logSoftmax(opts?) -> Layer`: log-softmax over the last axis.
 *
 * @example
 * ```ts
 * serial([dense({ units: 10 }), logSoftmax()]);
 * ```
 */
export const logSoftmax = (opts?: { name?: string }): Layer<Empty> =>
  // logits - logSumExp rather than tf.logSoftmax (a customGrad with `save`: see likelihoods.ts)
  elementwise('logSoftmax', opts, (x) => tf.sub(x, tf.logSumExp(x, -1, true)));

/**
 * `flatten(opts?) -> Layer`: `[batch, d1, d2, ...] -> [batch, d1 * d2 * ...]`.
 *
 * @example
 * ```ts
 * serial([flatten(), bayesianLinear({ inFeatures: 64, outFeatures: 10 })]);
 * ```
 */
export function flatten(opts?: { name?: string }): Layer<Empty> {
  const name = nameOf(opts, 'flatten');
  const outputShape = (s: Shape, path: string): Shape => {
    if (s.length < 1)
      throw new ShapeError(path, `expected an input with a batch axis, got ${fmtShape(s)}.`);
    const rest = s.slice(1);
    if (rest.some((d) => d < 0)) {
      throw new ShapeError(path, `only the batch axis may be unknown, got ${fmtShape(s)}.`);
    }
    return [s[0] as number, rest.reduce((a, b) => a * b, 1)];
  };
  return deterministicLayer({
    kind: 'flatten',
    name,
    outputShape,
    forward: (_p: Empty, x: tf.Tensor) => tf.reshape(x, [x.shape[0] as number, -1]),
    batch: (_p, x, ctx) => ({
      out: ctx.batched
        ? tf.reshape(x, [x.shape[0] as number, x.shape[1] as number, -1])
        : tf.reshape(x, [x.shape[0] as number, -1]),
      batched: ctx.batched,
    }),
  });
}

/** Options of `dense`. */
export interface DenseOptions {
  /** Output features. */
  readonly units: number;
  /** Whether to add a bias. Default true. */
  readonly bias?: boolean;
  readonly name?: string;
}

/** Parameters of `dense`. */
export type DenseParams = {
  readonly kernel: tf.Tensor;
  readonly bias?: tf.Tensor;
};

/**
 * `dense({ units, bias }) -> Layer`: a deterministic linear layer `x W + b`; the input size is
 * taken from the input shape at `init`. Kernel initialised Glorot-uniform from the key, bias 0.
 *
 * @example
 * ```ts
 * const layer = dense({ units: 4 });
 * const { params } = layer.init(random.key(0), [-1, 3]);
 * ```
 */
export function dense(options: DenseOptions): Layer<DenseParams> {
  const name = nameOf(options, 'dense');
  validate(`dense '${name}'`, [
    knownKeys(options ?? {}, ['units', 'bias', 'name']),
    positiveInt('units', options?.units),
    isBool('bias', options?.bias ?? true),
  ]);
  const units = options.units;
  const useBias = options.bias ?? true;
  const outputShape = (s: Shape, path?: string): Shape => {
    const last = s[s.length - 1];
    if (s.length < 1 || last === undefined || last < 1) {
      throw new ShapeError(
        path ?? name,
        `expected input of shape [..., features], got ${fmtShape(s)}.`,
      );
    }
    return [...s.slice(0, -1), units];
  };
  const forward = (p: DenseParams, x: tf.Tensor, path: string): tf.Tensor => {
    if (!(p?.kernel instanceof tf.Tensor) || (useBias && !(p.bias instanceof tf.Tensor))) {
      throw new ParamError(
        path,
        `expected { kernel${useBias ? ', bias' : ''} } tensors; pass the params from init().`,
      );
    }
    const inF = p.kernel.shape[0] as number;
    if (x.shape[x.rank - 1] !== inF) {
      throw new ShapeError(
        path,
        `expected input of shape [..., ${inF}], got ${fmtShape(x.shape)}.`,
      );
    }
    const lead = x.shape.slice(0, -1);
    let y: tf.Tensor = tf.matMul(tf.reshape(x, [-1, inF]) as tf.Tensor2D, p.kernel as tf.Tensor2D);
    if (p.bias) y = tf.add(y, p.bias);
    return tf.reshape(y, [...lead, units]);
  };
  return deterministicLayer({
    kind: 'dense',
    name,
    config: { units, bias: useBias },
    outputShape,
    init(key: Key, inputShape: Shape): DenseParams {
      const inF = inputShape[inputShape.length - 1] as number;
      const limit = Math.sqrt(6 / (inF + units));
      const kernel = uniform(foldIn(key, 0), [inF, units], -limit, limit);
      return useBias ? { kernel, bias: tf.zeros([units]) } : { kernel };
    },
    forward: (p, x: tf.Tensor, ctx) => forward(p, x, ctx.path),
    batch: 'leading',
  });
}

/**
 * `dropout({ dropRate }) -> Layer`: in training (`ctx.training`), zeroes each element with
 * probability `dropRate` and scales the rest by `1 / (1 - dropRate)`; the mask is drawn from the
 * layer's key (`bernoulli(key, shape, keepProb)`), so it is reproducible. Identity otherwise.
 *
 * @example
 * ```ts
 * const out = model.apply(params, x, { key, training: true });
 * ```
 */
export function dropout(options: { dropRate: number; name?: string }): Layer<Empty> {
  const name = nameOf(options, 'dropout');
  validate(`dropout '${name}'`, [
    knownKeys(options ?? {}, ['dropRate', 'name']),
    inRange('dropRate', options?.dropRate, 0, 1),
    check(options?.dropRate !== 1, 'dropRate must be below 1 (1 would drop everything)'),
  ]);
  const dropRate = options.dropRate;
  const keepProb = 1 - dropRate;
  const mask = (key: Key | undefined, x: tf.Tensor, path: string): tf.Tensor => {
    if (key === undefined) throw new MissingKeyError(path, 'dropout in training mode');
    return tf.div(tf.mul(x, bernoulli(key, x.shape, keepProb)), keepProb);
  };
  return deterministicLayer({
    kind: 'dropout',
    name,
    config: { dropRate },
    forward: (_p: Empty, x: tf.Tensor, ctx) =>
      ctx.training && dropRate > 0 ? mask(ctx.key, x, ctx.path) : tf.clone(x),
    batch: (_p, x, ctx) => {
      if (!ctx.training || dropRate === 0) return { out: tf.clone(x), batched: ctx.batched };
      if (ctx.keys === undefined) throw new MissingKeyError(ctx.path, 'dropout in training mode');
      // sample s uses keys[s], exactly as apply would: one mask per sample, uploaded once
      const S = ctx.numSamples;
      const inner = ctx.batched ? x.shape.slice(1) : x.shape;
      const n = inner.reduce((a, b) => a * b, 1);
      const buf = new Float32Array(S * n);
      ctx.keys.forEach((k, s) => buf.set(bernoulliArray(k, n, keepProb), s * n));
      const m = tf.tensor(buf, [S, ...inner]);
      return { out: tf.div(tf.mul(x, m), keepProb), batched: true };
    },
  });
}

/** Options of `fn`. */
export interface FnOptions {
  readonly name?: string;
  /** The output shape for an input shape; default: unchanged. */
  readonly outputShape?: (inputShape: Shape) => Shape;
  /**
   * Declare that `f` works unchanged on inputs with extra leading dimensions (element-wise or
   * last-axis functions), so `vmapSamples` applies it once instead of looping over samples.
   */
  readonly batchAgnostic?: boolean;
}

/**
 * `fn(f, opts?) -> Layer`: lifts a pure tensor function into a parameter-free layer.
 *
 * @example
 * ```ts
 * const square = fn((x) => tf.square(x), { name: 'square', batchAgnostic: true });
 * ```
 */
export function fn(f: (x: tf.Tensor) => tf.Tensor, opts: FnOptions = {}): Layer<Empty> {
  if (typeof f !== 'function') {
    throw new TypeError(`fn: expected a function (x: tf.Tensor) => tf.Tensor, got ${typeof f}.`);
  }
  const name = opts.name ?? 'fn';
  const os = opts.outputShape;
  return deterministicLayer({
    kind: 'fn',
    name,
    ...(os ? { outputShape: (s: Shape) => os(s) } : {}),
    forward: (_p: Empty, x: tf.Tensor) => f(x),
    batch: opts.batchAgnostic ? 'leading' : 'loop',
  });
}
