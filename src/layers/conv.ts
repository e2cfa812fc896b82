/**
 * Convolutions: `bayesianConv1d/2d/3d`, the reference's `BayesianConv1d/2d/3d` (Bayes by Backprop
 * with a diagonal Gaussian posterior over the filter and the bias), and their deterministic
 * companions `conv1d/2d/3d`. Channels-last layouts (NWC, NHWC, NDHWC); filters
 * `[...kernelSize, inChannels / groups, outChannels]`. The computation is in `./convOps`; the
 * gradients of the conv kernels are `kernels/gradients.ts`'s (fast on every backend, dilation > 1
 * included).
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import type { GaussianParams } from '../params/distributions';
import { foldIn, uniform, type Key } from '../params/random';
import {
  BAYESIAN_DEFAULTS,
  bayesianLayer,
  validateBayesian,
  type BayesianLayer,
  type BayesianOptions,
} from './bayesian';
import { perSample } from './batching';
import { deterministicLayer } from './stateless';
import { check, isBool, knownKeys, positiveInt, validate, type Check } from '../validation';
import {
  convBatchedInput,
  convLeading,
  convSharedInput,
  outputSpatial,
  type ConvGeometry,
  type PadPair,
} from './convOps';
import { ParamError, ShapeError, fmtShape, show } from '../errors';
import type { Layer, Shape } from './types';

// ---------------------------------------------------------------------------------------------
// Options.

/** The number of spatial axes of a convolution. */
export type ConvRank = 1 | 2 | 3;

/** `R` numbers: `[number]`, `[number, number]` or `[number, number, number]`. */
export type Tuple<R extends ConvRank> = R extends 1
  ? readonly [number]
  : R extends 2
    ? readonly [number, number]
    : readonly [number, number, number];

/** One size for every spatial axis, or one per axis. */
export type IntOrTuple<R extends ConvRank> = number | Tuple<R>;

/** Per spatial axis: symmetric padding `p`, or `[before, after]`. */
export type AxisPadding = number | readonly [number, number];

/**
 * Zero padding: an integer (symmetric, on every spatial axis, as PyTorch's `padding`), one entry
 * per spatial axis (an integer, symmetric, or `[before, after]`), `'valid'` (none) or `'same'`
 * (output size `ceil(in / stride)`, TensorFlow's rule; for stride 1 the same as PyTorch's
 * `'same'`, the odd pixel going after).
 */
export type ConvPadding<R extends ConvRank> =
  | number
  | 'same'
  | 'valid'
  | (R extends 1
      ? readonly [AxisPadding]
      : R extends 2
        ? readonly [AxisPadding, AxisPadding]
        : readonly [AxisPadding, AxisPadding, AxisPadding]);

/** The geometry options shared by Bayesian and deterministic convolutions. */
export interface ConvGeometryOptions<R extends ConvRank> {
  /** The kernel's spatial size. */
  readonly kernelSize: IntOrTuple<R>;
  /** Number of groups: input and output channels split into `groups` independent convs. Default 1. */
  readonly groups?: number;
  /** Default 1. */
  readonly stride?: IntOrTuple<R>;
  /** Default 0. */
  readonly padding?: ConvPadding<R>;
  /** Spacing between kernel taps. Default 1. Works together with stride > 1. */
  readonly dilation?: IntOrTuple<R>;
  /** Whether the layer has a bias. Default true. */
  readonly bias?: boolean;
  /** The layer's name (its key in a parent's parameter tree). */
  readonly name?: string;
}

/** Options of `bayesianConv1d/2d/3d` (the reference's `BayesianConvNd` arguments, camelCased). */
export interface BayesianConvOptions<R extends ConvRank>
  extends ConvGeometryOptions<R>,
    BayesianOptions {
  /** Input channels (the last axis of the input). */
  readonly inChannels: number;
  /** Output channels. */
  readonly outChannels: number;
}

/** Options of `bayesianConv1d`. */
export type BayesianConv1dOptions = BayesianConvOptions<1>;
/** Options of `bayesianConv2d`. */
export type BayesianConv2dOptions = BayesianConvOptions<2>;
/** Options of `bayesianConv3d`. */
export type BayesianConv3dOptions = BayesianConvOptions<3>;

/** Options of `conv1d/2d/3d`: the input channels come from the input shape at `init`. */
export interface ConvOptions<R extends ConvRank> extends ConvGeometryOptions<R> {
  /** Output channels. */
  readonly filters: number;
}

/** Options of `conv1d`. */
export type Conv1dOptions = ConvOptions<1>;
/** Options of `conv2d`. */
export type Conv2dOptions = ConvOptions<2>;
/** Options of `conv3d`. */
export type Conv3dOptions = ConvOptions<3>;

/** Parameters of a Bayesian convolution: a posterior per weight tensor. */
export type BayesianConvParams = {
  /** `[...kernelSize, inChannels / groups, outChannels]`. */
  readonly kernel: GaussianParams;
  /** `[outChannels]`. */
  readonly bias?: GaussianParams;
};

/** Concrete weights of a convolution (a posterior sample, the means, or a deterministic conv's). */
export type ConvWeights = {
  readonly kernel: tf.Tensor;
  readonly bias?: tf.Tensor;
};

/** Parameters of `conv1d/2d/3d`. */
export type ConvParams = ConvWeights;

/** A Bayesian convolution is a `Layer` with its three steps exposed (`sample` / `mean` / `forward`). */
export type BayesianConvLayer = BayesianLayer<BayesianConvParams, ConvWeights>;

// ---------------------------------------------------------------------------------------------
// Validation and normalisation of the geometry options.

const GEOMETRY_OPTION_NAMES = [
  'kernelSize',
  'groups',
  'stride',
  'padding',
  'dilation',
  'bias',
  'name',
] as const;

const isInt = (v: unknown, min: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min;

/** An integer >= `min`, or `rank` of them. */
function intOrTupleCheck(name: string, v: unknown, rank: number, min: number): Check {
  const ok =
    isInt(v, min) || (Array.isArray(v) && v.length === rank && v.every((e) => isInt(e, min)));
  const what = min === 0 ? 'non-negative' : 'positive';
  return check(
    ok,
    `${name} must be a ${what} integer or ${rank} ${what} integers (one per spatial axis), got ${show(v)}`,
  );
}

function paddingCheck(v: unknown, rank: number): Check {
  const axisOk = (e: unknown): boolean =>
    isInt(e, 0) || (Array.isArray(e) && e.length === 2 && e.every((p) => isInt(p, 0)));
  const ok =
    v === 'same' ||
    v === 'valid' ||
    isInt(v, 0) ||
    (Array.isArray(v) && v.length === rank && v.every(axisOk));
  return check(
    ok,
    `padding must be 'same', 'valid', a non-negative integer, or ${rank} entries (one per spatial ` +
      `axis) each a non-negative integer or [before, after], got ${show(v)}`,
  );
}

const toTuple = (v: number | readonly number[], rank: number): number[] =>
  typeof v === 'number' ? new Array<number>(rank).fill(v) : [...v];

function toPadding(v: unknown, rank: number): ConvGeometry['padding'] {
  if (v === 'same') return 'same';
  if (v === 'valid' || v === undefined) return new Array<PadPair>(rank).fill([0, 0]);
  if (typeof v === 'number') return new Array<PadPair>(rank).fill([v, v]);
  return (v as readonly AxisPadding[]).map(
    (e): PadPair => (typeof e === 'number' ? [e, e] : [e[0], e[1]]),
  );
}

/** The geometry checks (shared by Bayesian and deterministic convolutions). */
function geometryChecks(o: ConvGeometryOptions<ConvRank>, rank: number): Check[] {
  return [
    intOrTupleCheck('kernelSize', o.kernelSize, rank, 1),
    positiveInt('groups', o.groups ?? 1),
    intOrTupleCheck('stride', o.stride ?? 1, rank, 1),
    paddingCheck(o.padding ?? 0, rank),
    intOrTupleCheck('dilation', o.dilation ?? 1, rank, 1),
    isBool('bias', o.bias ?? true),
  ];
}

/** `channels must be divisible by groups` for a channel count that is itself valid. */
function divisibleCheck(name: string, channels: unknown, groups: unknown): Check {
  if (!isInt(channels, 1) || !isInt(groups, 1)) return check(true, '');
  return check(
    channels % groups === 0,
    `${name} (${channels}) must be divisible by groups (${groups})`,
  );
}

function geometryOf(o: ConvGeometryOptions<ConvRank>, rank: number): ConvGeometry {
  return Object.freeze({
    rank,
    kernel: toTuple(o.kernelSize, rank),
    stride: toTuple(o.stride ?? 1, rank),
    dilation: toTuple(o.dilation ?? 1, rank),
    padding: toPadding(o.padding ?? 0, rank),
    groups: o.groups ?? 1,
  });
}

/** The plain-data description of a geometry for `config`. */
const geometryConfig = (g: ConvGeometry): Record<string, unknown> => ({
  kernelSize: [...g.kernel],
  groups: g.groups,
  stride: [...g.stride],
  padding: g.padding === 'same' ? 'same' : g.padding.map(([b, a]) => [b, a]),
  dilation: [...g.dilation],
});

const LAYOUTS = ['', 'NWC', 'NHWC', 'NDHWC'] as const;
const SPATIAL_NAMES = [[], ['length'], ['height', 'width'], ['depth', 'height', 'width']] as const;

/** `[batch, length, C]`-style description of the expected input. */
const expectedShape = (rank: number, channels: number | string, lead = 'batch'): string =>
  `[${[lead, ...(SPATIAL_NAMES[rank] ?? []), channels].join(', ')}]`;

/**
 * Checks `[..., ...spatial, C]` (`spatial` of known or unknown size): the channel count and that
 * the convolution has at least one output position; returns the output spatial sizes.
 */
function checkSpatial(
  path: string,
  g: ConvGeometry,
  shape: readonly number[],
  inChannels: number,
  leadRank: number,
  lead = 'batch',
): number[] {
  const r = g.rank;
  const layout = `${LAYOUTS[r]}; inChannels = ${inChannels}`;
  if (shape.length !== leadRank + r + 1 || shape[shape.length - 1] !== inChannels) {
    throw new ShapeError(
      path,
      `expected input of shape ${expectedShape(r, inChannels, lead)} (${layout}), got ${fmtShape(shape)}.`,
    );
  }
  const spatial = shape.slice(leadRank, leadRank + r);
  if (spatial.some((n) => n !== -1 && !(Number.isInteger(n) && n >= 1))) {
    throw new ShapeError(path, `spatial sizes must be positive integers, got ${fmtShape(shape)}.`);
  }
  const out = outputSpatial(g, spatial);
  if (out.some((n, i) => spatial[i] !== -1 && n < 1)) {
    const eff = g.kernel.map((k, i) => (k - 1) * (g.dilation[i] ?? 1) + 1);
    throw new ShapeError(
      path,
      `input ${fmtShape(shape)} is too small: spatial size ${fmtShape(spatial)} with padding ` +
        `${JSON.stringify(g.padding)} is smaller than the dilated kernel ${fmtShape(eff)}, so the ` +
        'convolution has no output. Use a larger input, more padding or a smaller kernel.',
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Bayesian convolutions.

const KIND = ['', 'bayesianConv1d', 'bayesianConv2d', 'bayesianConv3d'] as const;

function makeBayesianConv<R extends ConvRank>(
  rank: R,
  options: BayesianConvOptions<R>,
): BayesianConvLayer {
  const kind = KIND[rank];
  const name = options?.name ?? kind;
  if (options === null || typeof options !== 'object') {
    validate(`${kind} '${name}'`, [
      positiveInt('inChannels', undefined),
      positiveInt('outChannels', undefined),
      intOrTupleCheck('kernelSize', undefined, rank, 1),
    ]);
  }
  // the geometry is normalised after validation, so validate before declaring the weights
  validateBayesian(
    `${kind} '${name}'`,
    options,
    ['inChannels', 'outChannels', ...GEOMETRY_OPTION_NAMES],
    [
      positiveInt('inChannels', options.inChannels),
      positiveInt('outChannels', options.outChannels),
      ...geometryChecks(options, rank),
      divisibleCheck('inChannels', options.inChannels, options.groups ?? 1),
      divisibleCheck('outChannels', options.outChannels, options.groups ?? 1),
    ],
  );
  const g = geometryOf(options, rank);
  const inC = options.inChannels;
  const outC = options.outChannels;
  const useBias = options.bias ?? true;

  const checkInput = (x: tf.Tensor, path: string, batched: boolean): void => {
    if (!(x instanceof tf.Tensor)) {
      throw new ShapeError(
        path,
        `expected a tensor input of shape ${expectedShape(rank, inC)}, got ${String(x)}.`,
      );
    }
    if (batched) checkSpatial(path, g, x.shape, inC, 2, 'samples, batch');
    else checkSpatial(path, g, x.shape, inC, 1);
  };

  return bayesianLayer({
    kind,
    name,
    options,
    rhoDefault:
      rank === 1
        ? BAYESIAN_DEFAULTS.posteriorRhoInitLinear
        : BAYESIAN_DEFAULTS.posteriorRhoInitOther,
    config: { inChannels: inC, outChannels: outC, ...geometryConfig(g), bias: useBias, name },
    weights: {
      kernel: { shape: [...g.kernel, inC / g.groups, outC], index: 0 },
      bias: useBias ? { shape: [outC], index: 1 } : undefined,
    },
    outputShape: (inputShape: Shape, path: string): Shape => {
      const out = checkSpatial(path, g, inputShape, inC, 1);
      return [inputShape[0] as number, ...out, outC];
    },
    checkInput,
    forward: (weights, x) =>
      tidy(() => {
        const y = convLeading(x, weights.kernel, g);
        return weights.bias ? tf.add(y, weights.bias) : y;
      }),
    forwardSampled: (w, x, ctx) => sampledConv(x, w.kernel, w.bias, g, ctx.batched),
    // linear in (kernel, bias), examples first and channels last: flipout and local apply
    linearInWeights: true,
  });
}

/**
 * The batched forward pass of `S` weight samples `w [S, ...k, Cin/G, Cout]`, `b [S, Cout]`
 * (measured in bench/results/conv.md):
 *
 * - a shared input (the first conv of a model): ONE conv with the samples concatenated along the
 *   output channels (`convSharedInput`), forward + backward 1.1-1.6x faster than a loop on wasm,
 *   on a par on cpu;
 * - an input with the sample axis, depthwise layer (rank <= 2): ONE depthwise conv over the samples
 *   stacked on the channel axis (`convBatchedInput`), 1.4x faster than the loop on wasm; but on
 *   cpu, whose convs are plain loops (one wide conv costs what S narrow ones do) and whose
 *   transposes are slow, 1.2-1.5x slower than the loop, so cpu loops;
 * - otherwise a loop over samples: tfjs has no grouped conv, so a conv with `S * groups` groups
 *   is `S * groups` convs plus the layout transposes (0.6-0.8x the loop's speed).
 */
function sampledConv(
  x: tf.Tensor,
  w: tf.Tensor,
  b: tf.Tensor | undefined,
  g: ConvGeometry,
  batched: boolean,
): tf.Tensor {
  if (!batched) return convSharedInput(x, w, b, g);
  const cinG = w.shape[g.rank + 1] as number;
  if (g.rank <= 2 && cinG === 1 && tf.getBackend() !== 'cpu') return convBatchedInput(x, w, b, g);
  return perSample({ kernel: w, bias: b }, x, true, (ws, xi) => {
    const y = convLeading(xi, ws.kernel, g);
    return ws.bias ? tf.add(y, ws.bias) : y;
  });
}

/**
 * `bayesianConv1d(options) -> Layer`: the reference's `BayesianConv1d`, on `[batch, length,
 * inChannels]` (NWC). Filter `[kernelSize, inChannels / groups, outChannels]`, bias
 * `[outChannels]`; the filter's noise comes from `foldIn(layerKey, 0)`, the bias's from
 * `foldIn(layerKey, 1)`.
 *
 * Defaults (the reference's): `groups = 1`, `stride = 1`, `padding = 0`, `dilation = 1`,
 * `bias = true`, `priorSigma1 = 1`, `priorSigma2 = 0.002`, `priorPi = 0.5`,
 * `posteriorMuInit = 0`, `posteriorRhoInit = -7`, `freeze = false`, `kl = 'mc'`.
 *
 * @example
 * ```ts
 * const layer = bayesianConv1d({ inChannels: 2, outChannels: 8, kernelSize: 3, padding: 1 });
 * const { params } = layer.init(random.key(0), [-1, 50, 2]);
 * const { out, kl } = layer.apply(params, tf.ones([4, 50, 2]), { key: random.key(1) }); // [4, 50, 8]
 * ```
 */
export function bayesianConv1d(options: BayesianConv1dOptions): BayesianConvLayer {
  return makeBayesianConv(1, options);
}

/**
 * `bayesianConv2d(options) -> Layer`: the reference's `BayesianConv2d`, on `[batch, height,
 * width, inChannels]` (NHWC). Filter `[kh, kw, inChannels / groups, outChannels]`, bias
 * `[outChannels]`; `groups = inChannels` is a depthwise conv (one tfjs `depthwiseConv2d`).
 *
 * Defaults (the reference's): `groups = 1`, `stride = 1`, `padding = 0`, `dilation = 1`,
 * `bias = true`, `priorSigma1 = 1`, `priorSigma2 = 0.002`, `priorPi = 0.5`,
 * `posteriorMuInit = 0`, `posteriorRhoInit = -6`, `freeze = false`, `kl = 'mc'`.
 *
 * @example
 * ```ts
 * const conv = bayesianConv2d({ inChannels: 1, outChannels: 6, kernelSize: 5, padding: 2 });
 * const { params } = conv.init(random.key(0), [-1, 28, 28, 1]);
 * const { out } = conv.apply(params, images, { key: random.key(1) }); // [batch, 28, 28, 6]
 * ```
 */
export function bayesianConv2d(options: BayesianConv2dOptions): BayesianConvLayer {
  return makeBayesianConv(2, options);
}

/**
 * `bayesianConv3d(options) -> Layer`: the reference's `BayesianConv3d`, on `[batch, depth,
 * height, width, inChannels]` (NDHWC). Filter `[kd, kh, kw, inChannels / groups, outChannels]`,
 * bias `[outChannels]`.
 *
 * Defaults (the reference's): `groups = 1`, `stride = 1`, `padding = 0`, `dilation = 1`,
 * `bias = true`, `priorSigma1 = 1`, `priorSigma2 = 0.002`, `priorPi = 0.5`,
 * `posteriorMuInit = 0`, `posteriorRhoInit = -6`, `freeze = false`, `kl = 'mc'`.
 *
 * @example
 * ```ts
 * const conv = bayesianConv3d({ inChannels: 1, outChannels: 4, kernelSize: 3, padding: 'same' });
 * const { params } = conv.init(random.key(0), [-1, 8, 8, 8, 1]);
 * const { out } = conv.apply(params, volumes, { key: random.key(1) }); // [batch, 8, 8, 8, 4]
 * ```
 */
export function bayesianConv3d(options: BayesianConv3dOptions): BayesianConvLayer {
  return makeBayesianConv(3, options);
}

// ---------------------------------------------------------------------------------------------
// Deterministic convolutions.

const DET_KIND = ['', 'conv1d', 'conv2d', 'conv3d'] as const;

function makeConv<R extends ConvRank>(rank: R, options: ConvOptions<R>): Layer<ConvParams> {
  const kind = DET_KIND[rank];
  const name = options?.name ?? kind;
  const where = `${kind} '${name}'`;
  validate(where, [
    knownKeys(options ?? {}, ['filters', ...GEOMETRY_OPTION_NAMES]),
    positiveInt('filters', options?.filters),
    ...geometryChecks(options ?? ({} as ConvOptions<R>), rank),
    divisibleCheck('filters', options?.filters, options?.groups ?? 1),
  ]);
  const g = geometryOf(options, rank);
  const filters = options.filters;
  const useBias = options.bias ?? true;

  const inChannelsOf = (inputShape: Shape, path: string): number => {
    const c = inputShape[inputShape.length - 1];
    if (inputShape.length !== rank + 2 || c === undefined || !(c >= 1)) {
      throw new ShapeError(
        path,
        `expected input of shape ${expectedShape(rank, 'channels')} (${LAYOUTS[rank]}), got ${fmtShape(inputShape)}.`,
      );
    }
    if (c % g.groups !== 0) {
      throw new ShapeError(
        path,
        `the input has ${c} channels, which is not divisible by groups (${g.groups}).`,
      );
    }
    return c;
  };

  const outputShape = (inputShape: Shape, path?: string): Shape => {
    const p = path ?? name;
    const inC = inChannelsOf(inputShape, p);
    const out = checkSpatial(p, g, inputShape, inC, 1);
    return [inputShape[0] as number, ...out, filters];
  };

  const forward = (p: ConvParams, x: tf.Tensor, path: string, leadRank: number): tf.Tensor => {
    if (!(p?.kernel instanceof tf.Tensor) || (useBias && !(p.bias instanceof tf.Tensor))) {
      throw new ParamError(
        path,
        `expected { kernel${useBias ? ', bias' : ''} } tensors; pass the params from init().`,
      );
    }
    const inC = (p.kernel.shape[rank] as number) * g.groups;
    if (!(x instanceof tf.Tensor)) {
      throw new ShapeError(path, `expected a tensor input, got ${String(x)}.`);
    }
    checkSpatial(path, g, x.shape, inC, leadRank, leadRank === 2 ? 'samples, batch' : 'batch');
    const y = convLeading(x, p.kernel, g);
    return p.bias ? tf.add(y, p.bias) : y;
  };

  return deterministicLayer({
    kind,
    name,
    config: { filters, ...geometryConfig(g), bias: useBias },
    outputShape,
    init(key: Key, inputShape: Shape, path: string): ConvParams {
      const inC = inChannelsOf(inputShape, path);
      const receptive = g.kernel.reduce((a, b) => a * b, 1);
      // Glorot-uniform, as dense (Keras's fans for a grouped filter [...k, in/groups, out])
      const limit = Math.sqrt(6 / (receptive * (inC / g.groups) + receptive * filters));
      const kernel = uniform(foldIn(key, 0), [...g.kernel, inC / g.groups, filters], -limit, limit);
      return useBias ? { kernel, bias: tf.zeros([filters]) } : { kernel };
    },
    forward: (p, x: tf.Tensor, ctx) => forward(p, x, ctx.path, 1),
    // the samples fold into the batch axis: one conv
    batch: (p, x, ctx) => ({
      out: forward(p, x, ctx.path, ctx.batched ? 2 : 1),
      batched: ctx.batched,
    }),
  });
}

/**
 * `conv1d({ filters, kernelSize, groups, stride, padding, dilation, bias }) -> Layer`: a
 * deterministic 1-d convolution on `[batch, length, channels]` (NWC); the input channels are
 * taken from the input shape at `init`. Kernel `[kernelSize, channels / groups, filters]`
 * initialised Glorot-uniform from `foldIn(key, 0)`, bias 0. Defaults: `groups = 1`, `stride = 1`,
 * `padding = 0`, `dilation = 1`, `bias = true`.
 *
 * @example
 * ```ts
 * const layer = conv1d({ filters: 8, kernelSize: 3, padding: 'same' });
 * const { params } = layer.init(random.key(0), [-1, 100, 1]); // kernel [3, 1, 8]
 * ```
 */
export function conv1d(options: Conv1dOptions): Layer<ConvParams> {
  return makeConv(1, options);
}

/**
 * `conv2d({ filters, kernelSize, groups, stride, padding, dilation, bias }) -> Layer`: a
 * deterministic 2-d convolution on `[batch, height, width, channels]` (NHWC); the input channels
 * are taken from the input shape at `init`. Defaults as `conv1d`.
 *
 * @example
 * ```ts
 * const layer = conv2d({ filters: 16, kernelSize: 3, stride: 2, padding: 1 });
 * const { params, outputShape } = layer.init(random.key(0), [-1, 28, 28, 1]); // [-1, 14, 14, 16]
 * ```
 */
export function conv2d(options: Conv2dOptions): Layer<ConvParams> {
  return makeConv(2, options);
}

/**
 * `conv3d({ filters, kernelSize, groups, stride, padding, dilation, bias }) -> Layer`: a
 * deterministic 3-d convolution on `[batch, depth, height, width, channels]` (NDHWC); the input
 * channels are taken from the input shape at `init`. Defaults as `conv1d`.
 *
 * @example
 * ```ts
 * const layer = conv3d({ filters: 4, kernelSize: [3, 3, 3], padding: 'same' });
 * const { params } = layer.init(random.key(0), [-1, 8, 8, 8, 2]); // kernel [3, 3, 3, 2, 4]
 * ```
 */
export function conv3d(options: Conv3dOptions): Layer<ConvParams> {
  return makeConv(3, options);
}
