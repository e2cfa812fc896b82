/**
 * Pooling layers, channels-last (NWC, NHWC, NDHWC): `maxPool1d/2d/3d`, `avgPool1d/2d/3d` and
 * `globalAvgPool`. Deterministic: no parameters, KL 0.
 *
 * Padding, per spatial axis:
 * - `'valid'`: no padding; `out = floor((L - k) / s) + 1`.
 * - `'same'` (TensorFlow's): `out = ceil(L / s)`; the `max((out - 1) s + k - L, 0)` padded cells
 *   are split with the smaller half before. Padded cells are ignored: a max pool never picks them
 *   and an average pool divides by the number of real cells in the window (as `tf.avgPool`).
 * - an integer `p` or a tuple of them (PyTorch's): `p` cells on both sides,
 *   `out = floor((L + 2p - k) / s) + 1`, `p <= floor(k / 2)`. A max pool pads with `-Infinity`
 *   (padded cells never win, as `nn.MaxPool*d`); an average pool pads with zeros that COUNT in the
 *   divisor (`nn.AvgPool*d`'s default `count_include_pad=True`), so the divisor is always `k`.
 *
 * Every layer pads explicitly and then pools with tfjs's `'valid'` kernels, so the semantics (and
 * the gradients) are the same on every backend; 1d pooling runs as 2d pooling with a unit axis.
 * Batch rule (`vmapSamples`): a sampled input `[S, B, ...]` is folded to `[S * B, ...]`, pooled
 * and unfolded; an input without the sample axis is pooled as it is and stays un-batched.
 */
import * as tf from '@tensorflow/tfjs-core';
import { check, knownKeys, validate, type Check } from '../validation';
import { ShapeError, fmtShape, show } from '../errors';
import { deterministicLayer, type EmptyParams } from './stateless';
import type { Layer, Shape } from './types';

type Empty = EmptyParams;

/** Padding of a pooling layer: `'valid'`, `'same'`, or cells per side (one int or one per axis). */
export type PoolPadding = 'valid' | 'same' | number | readonly number[];

/** Options of the pooling layers. */
export interface PoolOptions {
  /** Window size: one int for every spatial axis or one per axis. */
  readonly poolSize: number | readonly number[];
  /** Step between windows: one int or one per axis. Default: `poolSize`. */
  readonly stride?: number | readonly number[];
  /** `'valid'` (default), `'same'`, or cells of padding per side (see the module doc). */
  readonly padding?: PoolPadding;
  /** The layer's name (its key in a parent's parameter tree). Default: the layer kind. */
  readonly name?: string;
}

/** A pooling layer: no parameters. */
export type PoolLayer = Layer<Empty>;

type PoolType = 'max' | 'avg';
type Rank = 1 | 2 | 3;

const AXES: Record<Rank, readonly string[]> = {
  1: ['length'],
  2: ['height', 'width'],
  3: ['depth', 'height', 'width'],
};

const isPosInt = (v: unknown): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 1;
const isNonNegInt = (v: unknown): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** An int or an `n`-tuple of ints satisfying `ok`, as an `n`-tuple; undefined when invalid. */
function asTuple(v: unknown, n: number, ok: (x: unknown) => boolean): number[] | undefined {
  if (ok(v)) return new Array<number>(n).fill(v as number);
  if (Array.isArray(v) && v.length === n && v.every(ok)) return [...(v as number[])];
  return undefined;
}

/** The window geometry along each spatial axis for one input size. */
interface Geometry {
  readonly before: readonly number[];
  readonly after: readonly number[];
  readonly out: readonly number[];
}

interface Resolved {
  readonly k: readonly number[];
  readonly s: readonly number[];
  /** `'valid'`, `'same'` or cells per side per axis. */
  readonly padding: 'valid' | 'same' | readonly number[];
}

/** `geometry(sizes, resolved) -> Geometry`, or a message saying which axis does not fit. */
function geometry(sizes: readonly number[], r: Resolved, rank: Rank): Geometry | string {
  const before: number[] = [];
  const after: number[] = [];
  const out: number[] = [];
  for (let a = 0; a < rank; a++) {
    const L = sizes[a] as number;
    const k = r.k[a] as number;
    const s = r.s[a] as number;
    if (r.padding === 'same') {
      const o = Math.ceil(L / s);
      const total = Math.max((o - 1) * s + k - L, 0);
      before.push(Math.floor(total / 2));
      after.push(total - Math.floor(total / 2));
      out.push(o);
    } else {
      const p = r.padding === 'valid' ? 0 : (r.padding[a] as number);
      if (L + 2 * p < k) {
        const axis = AXES[rank][a] as string;
        return `the window (${k}) does not fit the ${axis} ${L}${p > 0 ? ` padded by ${p} on each side` : ''}; use a smaller poolSize, padding 'same', or a larger input.`;
      }
      before.push(p);
      after.push(p);
      out.push(Math.floor((L + 2 * p - k) / s) + 1);
    }
  }
  return { before, after, out };
}

/**
 * The divisor correction of an average pool with `'same'` padding: `k / (real cells in the
 * window)` per output position, as a `[1, ...out, 1]` constant.
 */
function sameAvgScale(sizes: readonly number[], r: Resolved, g: Geometry): tf.Tensor {
  const perAxis = g.out.map((o, a) => {
    const L = sizes[a] as number;
    const k = r.k[a] as number;
    const s = r.s[a] as number;
    const b = g.before[a] as number;
    return Array.from({ length: o }, (_, i) => {
      const start = i * s - b;
      return k / (Math.min(start + k, L) - Math.max(start, 0));
    });
  });
  const n = g.out.reduce((x, y) => x * y, 1);
  const buf = new Float32Array(n);
  for (let flat = 0; flat < n; flat++) {
    let rest = flat;
    let v = 1;
    for (let a = perAxis.length - 1; a >= 0; a--) {
      const o = g.out[a] as number;
      v *= (perAxis[a] as number[])[rest % o] as number;
      rest = Math.floor(rest / o);
    }
    buf[flat] = v;
  }
  return tf.tensor(buf, [1, ...g.out, 1]);
}

/**
 * A 'valid' 3d max pool as two 2d max pools: over (height, width) with the depth folded into the
 * batch, then over the depth. The maximum is separable, and the cell that receives the gradient
 * is the same (the first maximum in row-major window order). tfjs-backend-wasm 4.22's `MaxPool3D`
 * starts its running maximum at the smallest POSITIVE float, so it returns 1.2e-38 for a window
 * of negative values; 2d pooling has no such bug on any backend.
 */
function maxPool3dSeparable(
  x: tf.Tensor,
  k: readonly [number, number, number],
  s: readonly [number, number, number],
): tf.Tensor {
  const [n, d, h, w, c] = x.shape as [number, number, number, number, number];
  const hw = tf.maxPool(
    tf.reshape(x, [n * d, h, w, c]) as tf.Tensor4D,
    [k[1], k[2]],
    [s[1], s[2]],
    'valid',
  );
  const [, ho, wo] = hw.shape as [number, number, number, number];
  const dd = tf.maxPool(
    tf.reshape(hw, [n, d, ho * wo, c]) as tf.Tensor4D,
    [k[0], 1],
    [s[0], 1],
    'valid',
  );
  return tf.reshape(dd, [n, dd.shape[1] as number, ho, wo, c]);
}

/** Pools `x [N, ...spatial, C]` (rank `rank + 2`) with the geometry `g`. */
function poolFolded(x: tf.Tensor, type: PoolType, rank: Rank, r: Resolved, g: Geometry): tf.Tensor {
  const padded = g.before.some((b) => b > 0) || g.after.some((a) => a > 0);
  const h = padded
    ? tf.pad(
        x,
        [[0, 0], ...g.before.map((b, a): [number, number] => [b, g.after[a] as number]), [0, 0]],
        type === 'max' ? -Infinity : 0,
      )
    : x;
  let y: tf.Tensor;
  if (rank === 3) {
    const k = r.k as [number, number, number];
    const s = r.s as [number, number, number];
    y =
      type === 'max' ? maxPool3dSeparable(h, k, s) : tf.avgPool3d(h as tf.Tensor5D, k, s, 'valid');
  } else {
    const k = (rank === 1 ? [1, r.k[0]] : r.k) as [number, number];
    const s = (rank === 1 ? [1, r.s[0]] : r.s) as [number, number];
    const h4 = (rank === 1 ? tf.expandDims(h, 1) : h) as tf.Tensor4D;
    const y4 = type === 'max' ? tf.maxPool(h4, k, s, 'valid') : tf.avgPool(h4, k, s, 'valid');
    y = rank === 1 ? tf.squeeze(y4, [1]) : y4;
  }
  if (type === 'avg' && r.padding === 'same' && padded) {
    y = tf.mul(y, sameAvgScale(x.shape.slice(1, rank + 1), r, g));
  }
  return y;
}

function makePool(rank: Rank, type: PoolType, options: PoolOptions): PoolLayer {
  const kind = `${type}Pool${rank}d`;
  const name = options?.name ?? kind;
  const where = `${kind} '${name}'`;
  if (options === null || typeof options !== 'object') {
    validate(where, [
      check(false, `expected an options object { poolSize, ... }, got ${show(options)}`),
    ]);
  }
  const k = asTuple(options.poolSize, rank, isPosInt);
  const s = options.stride === undefined ? k : asTuple(options.stride, rank, isPosInt);
  const pad = options.padding ?? 'valid';
  const padTuple = pad === 'valid' || pad === 'same' ? undefined : asTuple(pad, rank, isNonNegInt);
  const axes = AXES[rank].join(', ');
  const checks: Check[] = [
    knownKeys(options, ['poolSize', 'stride', 'padding', 'name']),
    check(
      k !== undefined,
      `poolSize must be a positive integer or ${rank} of them (${axes}), got ${show(options.poolSize)}`,
    ),
    check(
      options.stride === undefined || s !== undefined,
      `stride must be a positive integer or ${rank} of them (${axes}), got ${show(options.stride)}`,
    ),
    check(
      pad === 'valid' || pad === 'same' || padTuple !== undefined,
      `padding must be 'valid', 'same', or a non-negative integer or ${rank} of them (${axes}), got ${show(pad)}`,
    ),
    check(
      typeof name === 'string' && name.length > 0,
      `name must be a non-empty string, got ${show(name)}`,
    ),
  ];
  if (k !== undefined && padTuple !== undefined) {
    checks.push(
      check(
        padTuple.every((p, a) => p <= Math.floor((k[a] as number) / 2)),
        `padding ${show(pad)} must be at most half the window (${show(k.map((v) => Math.floor(v / 2)))}), so that every window holds a real cell`,
      ),
    );
  }
  validate(where, checks);
  const resolved: Resolved = {
    k: k as number[],
    s: s as number[],
    padding: padTuple ?? (pad as 'valid' | 'same'),
  };
  const dims = `[batch, ${axes}, channels]`;

  const geometryOrThrow = (sizes: readonly number[], path: string, got: Shape): Geometry => {
    const g = geometry(sizes, resolved, rank);
    if (typeof g === 'string') throw new ShapeError(path, `input ${fmtShape(got)}: ${g}`);
    return g;
  };

  const outputShape = (inputShape: Shape, path?: string): Shape => {
    const p = path ?? name;
    if (!Array.isArray(inputShape) || inputShape.length !== rank + 2) {
      throw new ShapeError(
        p,
        `expected an input of shape ${dims}, got ${fmtShape(inputShape ?? [])}.`,
      );
    }
    const sizes = inputShape.slice(1);
    if (sizes.some((d) => !isPosInt(d))) {
      throw new ShapeError(
        p,
        `expected an input of shape ${dims} with known positive sizes, got ${fmtShape(inputShape)}.`,
      );
    }
    const g = geometryOrThrow(sizes.slice(0, rank), p, inputShape);
    return [inputShape[0] as number, ...g.out, inputShape[rank + 1] as number];
  };

  /** Pools `x [...lead, ...spatial, C]` with `lead` of `leadRank` axes (folded into one). */
  const pool = (x: tf.Tensor, leadRank: number, path: string): tf.Tensor => {
    const want = leadRank === 1 ? dims : `[samples, batch, ${axes}, channels]`;
    if (!(x instanceof tf.Tensor) || x.rank !== leadRank + rank + 1) {
      throw new ShapeError(
        path,
        `expected an input of shape ${want}, got ${x instanceof tf.Tensor ? fmtShape(x.shape) : String(x)}.`,
      );
    }
    const lead = x.shape.slice(0, leadRank);
    const rest = x.shape.slice(leadRank);
    const g = geometryOrThrow(rest.slice(0, rank), path, x.shape);
    const n = lead.reduce((a, b) => a * b, 1);
    const folded = leadRank === 1 ? x : tf.reshape(x, [n, ...rest]);
    const y = poolFolded(folded, type, rank, resolved, g);
    return leadRank === 1 ? y : tf.reshape(y, [...lead, ...y.shape.slice(1)]);
  };

  return deterministicLayer({
    kind,
    name,
    config: {
      poolSize: Object.freeze([...resolved.k]),
      stride: Object.freeze([...resolved.s]),
      padding:
        typeof resolved.padding === 'string'
          ? resolved.padding
          : Object.freeze([...resolved.padding]),
    },
    outputShape,
    forward: (_p: Empty, x: tf.Tensor, ctx) => pool(x, 1, ctx.path),
    batch: (_p, x, ctx) => ({ out: pool(x, ctx.batched ? 2 : 1, ctx.path), batched: ctx.batched }),
  });
}

/**
 * `maxPool1d({ poolSize, stride = poolSize, padding = 'valid' }) -> Layer`: the maximum over
 * windows along the length of `[batch, length, channels]` (PyTorch's `nn.MaxPool1d`,
 * channels-last). Integer padding pads with `-Infinity`: padded cells never win.
 *
 * @example
 * ```ts
 * const pool = maxPool1d({ poolSize: 2 });
 * pool.apply({}, tf.tensor3d([1, 3, 2, 0], [1, 4, 1])).out; // [[[3], [2]]]
 * ```
 */
export const maxPool1d = (options: PoolOptions): PoolLayer => makePool(1, 'max', options);

/**
 * `maxPool2d({ poolSize, stride = poolSize, padding = 'valid' }) -> Layer`: the maximum over
 * windows of `[batch, height, width, channels]` (PyTorch's `nn.MaxPool2d`, channels-last).
 * Integer padding pads with `-Infinity`: padded cells never win.
 *
 * @example
 * ```ts
 * serial([bayesianConv2d({ inChannels: 1, outChannels: 6, kernelSize: 5 }), relu(), maxPool2d({ poolSize: 2 })]);
 * ```
 */
export const maxPool2d = (options: PoolOptions): PoolLayer => makePool(2, 'max', options);

/**
 * `maxPool3d({ poolSize, stride = poolSize, padding = 'valid' }) -> Layer`: the maximum over
 * windows of `[batch, depth, height, width, channels]` (PyTorch's `nn.MaxPool3d`, channels-last).
 *
 * @example
 * ```ts
 * const pool = maxPool3d({ poolSize: [1, 2, 2] }); // [b, 4, 8, 8, c] -> [b, 4, 4, 4, c]
 * ```
 */
export const maxPool3d = (options: PoolOptions): PoolLayer => makePool(3, 'max', options);

/**
 * `avgPool1d({ poolSize, stride = poolSize, padding = 'valid' }) -> Layer`: the mean over windows
 * along the length of `[batch, length, channels]` (PyTorch's `nn.AvgPool1d`, channels-last).
 * Integer padding adds zeros that count in the mean (`count_include_pad=True`); `'same'` padding
 * averages the real cells only.
 *
 * @example
 * ```ts
 * const pool = avgPool1d({ poolSize: 2 });
 * pool.apply({}, tf.tensor3d([1, 3, 2, 0], [1, 4, 1])).out; // [[[2], [1]]]
 * ```
 */
export const avgPool1d = (options: PoolOptions): PoolLayer => makePool(1, 'avg', options);

/**
 * `avgPool2d({ poolSize, stride = poolSize, padding = 'valid' }) -> Layer`: the mean over windows
 * of `[batch, height, width, channels]` (PyTorch's `nn.AvgPool2d`, channels-last). Integer
 * padding adds zeros that count in the mean; `'same'` padding averages the real cells only.
 *
 * @example
 * ```ts
 * const pool = avgPool2d({ poolSize: 3, stride: 1, padding: 1 }); // keeps height and width
 * ```
 */
export const avgPool2d = (options: PoolOptions): PoolLayer => makePool(2, 'avg', options);

/**
 * `avgPool3d({ poolSize, stride = poolSize, padding = 'valid' }) -> Layer`: the mean over windows
 * of `[batch, depth, height, width, channels]` (PyTorch's `nn.AvgPool3d`, channels-last).
 *
 * @example
 * ```ts
 * const pool = avgPool3d({ poolSize: 2, padding: 'same' });
 * ```
 */
export const avgPool3d = (options: PoolOptions): PoolLayer => makePool(3, 'avg', options);

/**
 * `globalAvgPool({ name }) -> Layer`: `[batch, ...spatial, channels] -> [batch, channels]`, the
 * mean over every spatial axis (any number of them, at least one).
 *
 * @example
 * ```ts
 * serial([bayesianConv2d({ inChannels: 3, outChannels: 8, kernelSize: 3 }), relu(), globalAvgPool(), bayesianLinear({ inFeatures: 8, outFeatures: 10 })]);
 * ```
 */
export function globalAvgPool(options: { name?: string } = {}): PoolLayer {
  const name = options?.name ?? 'globalAvgPool';
  validate(`globalAvgPool '${name}'`, [
    knownKeys(options ?? {}, ['name']),
    check(
      typeof name === 'string' && name.length > 0,
      `name must be a non-empty string, got ${show(name)}`,
    ),
  ]);
  const dims = '[batch, ...spatial, channels] (at least one spatial axis)';
  const outputShape = (s: Shape, path?: string): Shape => {
    const p = path ?? name;
    if (!Array.isArray(s) || s.length < 3) {
      throw new ShapeError(p, `expected an input of shape ${dims}, got ${fmtShape(s ?? [])}.`);
    }
    if (s.slice(1).some((d) => !isPosInt(d))) {
      throw new ShapeError(
        p,
        `expected known positive sizes after the batch axis, got ${fmtShape(s)}.`,
      );
    }
    return [s[0] as number, s[s.length - 1] as number];
  };
  const pool = (x: tf.Tensor, leadRank: number, path: string): tf.Tensor => {
    if (!(x instanceof tf.Tensor) || x.rank < leadRank + 2) {
      const want = leadRank === 1 ? dims : `[samples, ${dims.slice(1)}`;
      throw new ShapeError(
        path,
        `expected an input of shape ${want}, got ${x instanceof tf.Tensor ? fmtShape(x.shape) : String(x)}.`,
      );
    }
    const axes = Array.from({ length: x.rank - 1 - leadRank }, (_, i) => leadRank + i);
    return tf.mean(x, axes);
  };
  return deterministicLayer({
    kind: 'globalAvgPool',
    name,
    outputShape,
    forward: (_p: Empty, x: tf.Tensor, ctx) => pool(x, 1, ctx.path),
    batch: (_p, x, ctx) => ({ out: pool(x, ctx.batched ? 2 : 1, ctx.path), batched: ctx.batched }),
  });
}
