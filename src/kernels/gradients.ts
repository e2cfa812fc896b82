/**
 * Gradients of the convolution kernels `Conv2D`, `Conv3D` and `DepthwiseConv2dNative`, written
 * with forward convolutions, that replace tfjs-core's own gradient configs.
 *
 * Why: tfjs's conv gradients compute the filter gradient with `Conv2DBackpropFilter` /
 * `Conv3DBackpropFilterV2` / `DepthwiseConv2dNativeBackpropFilter`; the cpu backend runs the 2-d
 * one 20-40x slower than a forward convolution of the same size (bench/results/wasm-kernels.md),
 * the wasm backend lacks or miscomputes them, and tfjs rejects dilation > 1 outright. With the
 * gradients below, a conv2d's forward + backward is 7-15x faster on cpu and 2-3x faster on wasm
 * (bench/results/conv.md). Here:
 *
 * - the filter gradient `dW[k, ci, co] = sum_{n, o} x[n, o*s - before + k*d, ci] dy[n, o, co]`
 *   is ONE forward convolution of the input transposed to `[Cin, ...spatial, N]` (batch and
 *   channels swapped) with the output gradient transposed to `[...out, N, Cout]` as the filter:
 *   the conv's dilation is the forward stride and its stride the forward dilation; the output
 *   `[Cin, ...k, Cout]` is transposed back. Where the forward conv has both a stride and a
 *   dilation above 1 (tfjs ops allow one of the two), dy is zero-interleaved by the stride instead;
 * - the input gradient is a forward convolution of dy, zero-interleaved by the stride and
 *   padded, with the spatially flipped filter and the forward dilation: always for dilation > 1,
 *   and on wasm (see `inputGradByConv`); otherwise the backend's own `Conv2DBackpropInput` /
 *   `Conv3DBackpropInputV2` / `DepthwiseConv2dNativeBackpropInput`, given explicit padding that
 *   reproduces the forward geometry;
 * - `NCHW` / `NCDHW` inputs are transposed to channels-last and back.
 *
 * tfjs calls a registered gradient after the kernel ran (and after its test-mode leak check), with
 * the inputs the config names in `inputsToSave`; the engine runs it inside its own scope, and the
 * functions below also run in `tf.tidy`, so intermediates are freed at once. Second-order
 * gradients are built from differentiable ops but not tested.
 */
import * as tf from '@tensorflow/tfjs-core';

type Pair = [number, number];
type Pad = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;

/** Marks the gradient configs of this module (shared by every copy of the package). */
const MARK = Symbol.for('blitz-ts.convGradient');

// ---------------------------------------------------------------------------------------------
// Attribute parsing (attrs arrive as the loosely typed `NamedAttrMap`).

function fail(kernel: string, what: string): never {
  throw new Error(`${kernel} gradient (blitz-ts): ${what}`);
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** An integer or `n` integers as `n` integers (`dilations` defaults to 1). */
function tupleAttr(kernel: string, attrs: tf.NamedAttrMap, name: string, n: number): number[] {
  const v: unknown = attrs[name] ?? (name === 'dilations' ? 1 : undefined);
  if (isInt(v)) return new Array<number>(n).fill(v);
  if (Array.isArray(v) && v.length === n && v.every(isInt)) return [...v];
  return fail(kernel, `attribute '${name}' must be an integer or ${n} integers, got ${String(v)}`);
}

function padAttr(kernel: string, attrs: tf.NamedAttrMap): Pad {
  const v: unknown = attrs['pad'];
  if (v === 'same' || v === 'valid' || isInt(v)) return v;
  if (Array.isArray(v) && v.every((p) => Array.isArray(p) && p.length === 2 && p.every(isInt))) {
    return v as tf.backend_util.ExplicitPadding;
  }
  return fail(kernel, `attribute 'pad' must be 'same', 'valid', a number or explicit pairs`);
}

function roundingAttr(kernel: string, attrs: tf.NamedAttrMap): Rounding {
  const v: unknown = attrs['dimRoundingMode'];
  if (v === undefined || v === null) return undefined;
  if (v === 'floor' || v === 'round' || v === 'ceil') return v;
  return fail(kernel, `attribute 'dimRoundingMode' must be floor, round or ceil`);
}

/** Whether the data format puts channels first (`NCHW`, `NCDHW`). */
function channelsFirstAttr(kernel: string, attrs: tf.NamedAttrMap): boolean {
  const v: unknown = attrs['dataFormat'] ?? 'NHWC';
  if (v === 'NHWC' || v === 'NDHWC' || v === 'channelsLast') return false;
  if (v === 'NCHW' || v === 'NCDHW' || v === 'channelsFirst') return true;
  return fail(kernel, `unknown dataFormat ${String(v)}`);
}

// ---------------------------------------------------------------------------------------------
// Shape helpers, any rank.

/**
 * The window `[start, start + length)` of each axis (`windows[i] = [start, length]`), zeros
 * where it lies outside the tensor: a crop, a zero pad, or both.
 */
function window(t: tf.Tensor, windows: readonly Pair[]): tf.Tensor {
  const lo = t.shape.map((n, i) => Math.min(n, Math.max(0, windows[i]?.[0] ?? 0)));
  const hi = t.shape.map((n, i) => {
    const [start = 0, len = n] = windows[i] ?? [];
    return Math.max(lo[i] ?? 0, Math.min(n, start + len));
  });
  const outShape = t.shape.map((n, i) => windows[i]?.[1] ?? n);
  if (hi.some((h, i) => h <= (lo[i] ?? 0))) return tf.zeros(outShape, t.dtype);
  const size = hi.map((h, i) => h - (lo[i] ?? 0));
  const cropped = size.some((n, i) => n !== t.shape[i]) ? tf.slice(t, lo, size) : t;
  const pads = t.shape.map((_, i): Pair => {
    const [start = 0] = windows[i] ?? [];
    return [(lo[i] ?? 0) - start, (outShape[i] ?? 0) - (size[i] ?? 0) - ((lo[i] ?? 0) - start)];
  });
  return pads.some(([b, a]) => b > 0 || a > 0) ? tf.pad(cropped, pads) : cropped;
}

/** `window` on the spatial axes `1..r` of `[N, ...spatial, C]`. */
const spatialWindow = (t: tf.Tensor, windows: readonly Pair[]): tf.Tensor =>
  window(t, [[0, t.shape[0] ?? 0], ...windows, [0, t.shape[t.rank - 1] ?? 0]]);

/** Inserts `s - 1` zeros after every element along `axis`: length `L -> L * s`. */
function interleave(t: tf.Tensor, axis: number, s: number): tf.Tensor {
  if (s === 1) return t;
  const shape = t.shape;
  const withOne = tf.reshape(t, [...shape.slice(0, axis + 1), 1, ...shape.slice(axis + 1)]);
  const pads = withOne.shape.map((_, i): Pair => (i === axis + 1 ? [0, s - 1] : [0, 0]));
  return tf.reshape(tf.pad(withOne, pads), [
    ...shape.slice(0, axis),
    (shape[axis] ?? 0) * s,
    ...shape.slice(axis + 1),
  ]);
}

/**
 * Zero-interleaves axes `first .. first + s.length - 1` by `s` and crops the trailing zeros:
 * length `L -> (L - 1) * s + 1` (the "dilated" tensor).
 */
function dilateAxes(t: tf.Tensor, first: number, s: readonly number[]): tf.Tensor {
  return s.reduce((acc, si, i) => {
    if (si === 1) return acc;
    const axis = first + i;
    const len = acc.shape[axis] ?? 0;
    const windows = acc.shape.map((n, j): Pair => (j === axis ? [0, (len - 1) * si + 1] : [0, n]));
    return window(interleave(acc, axis, si), windows);
  }, t);
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);
const prod = (xs: readonly number[]): number => xs.reduce((a, b) => a * b, 1);

/**
 * Cuts the axes of `t` into consecutive blocks at `cuts` and puts the blocks in `order`: a
 * transpose of at most `cuts.length + 1` axes between two reshapes (the backends transpose low
 * ranks much faster: wasm's transpose above rank 4 and cpu's index arithmetic are slow).
 */
function permuteBlocks(t: tf.Tensor, cuts: readonly number[], order: readonly number[]): tf.Tensor {
  const bounds = [0, ...cuts, t.rank];
  const blocks = bounds.slice(1).map((end, i) => t.shape.slice(bounds[i], end));
  const moved = tf.transpose(
    tf.reshape(
      t,
      blocks.map((b) => prod(b)),
    ),
    [...order],
  );
  return tf.reshape(
    moved,
    order.flatMap((i) => blocks[i] ?? []),
  );
}

/** A forward convolution of rank 1..3 (channels-last), on `Conv2D` or `Conv3D`. */
function convN(
  x: tf.Tensor,
  f: tf.Tensor,
  strides: readonly number[],
  dilations: readonly number[],
): tf.Tensor {
  if (f.rank === 4) {
    return tf.conv2d(
      x as tf.Tensor4D,
      f as tf.Tensor4D,
      strides as Pair,
      'valid',
      'NHWC',
      dilations as Pair,
    );
  }
  return tf.conv3d(
    x as tf.Tensor5D,
    f as tf.Tensor5D,
    strides as [number, number, number],
    'valid',
    'NDHWC',
    dilations as [number, number, number],
  );
}

// ---------------------------------------------------------------------------------------------
// The geometry every gradient below shares.

interface Geometry {
  /** Filter spatial sizes, strides, dilations and the padding before each spatial axis. */
  readonly k: readonly number[];
  readonly s: readonly number[];
  readonly d: readonly number[];
  readonly before: readonly number[];
}

/**
 * The input window of the filter gradient along each spatial axis: the conv slides dy (dilated by
 * the forward stride) over it with the forward dilation as its stride and must give exactly `k`
 * outputs, the first at the forward padding `before`: `[-before, (k-1)*d + (O-1)*s + 1]`.
 */
const filterGradWindows = (g: Geometry, dyShape: readonly number[]): Pair[] =>
  g.k.map((k, i): Pair => {
    const [s, d, b, o] = [g.s[i] ?? 1, g.d[i] ?? 1, g.before[i] ?? 0, dyShape[i + 1] ?? 0];
    return [-b, (k - 1) * d + (o - 1) * s + 1];
  });

/**
 * The window of the stride-interleaved dy for the input gradient by a stride-1 conv with the
 * flipped filter: `dx[h] = sum_j dyd[h + before - (k-1-j)*d] wflip[j]`, so the window starts at
 * `before - (k-1)*d` and spans `in + (k-1)*d`.
 */
const inputGradWindows = (g: Geometry, inShape: readonly number[]): Pair[] =>
  g.k.map((k, i): Pair => {
    const [d, b, n] = [g.d[i] ?? 1, g.before[i] ?? 0, inShape[i + 1] ?? 0];
    return [b - (k - 1) * d, n + (k - 1) * d];
  });

/**
 * On wasm, a 2-d filter gradient without dilation goes to the `Conv2DBackpropFilter` kernel of
 * src/kernels/wasm.ts, which runs it as one patch-matrix product where that is small (the forward
 * conv below is slow for a first layer's few input channels and large output), else as below;
 * undefined where the geometry is not one that explicit padding reproduces.
 */
function wasmFilterGrad(x: tf.Tensor, dy: tf.Tensor, g: Geometry): tf.Tensor | undefined {
  if (tf.getBackend() !== 'wasm' || g.k.length !== 2 || g.d.some((v) => v !== 1)) return undefined;
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm') === undefined) return undefined;
  const pads = g.k.map((k, i): Pair => {
    const [s, b, n, o] = [g.s[i] ?? 1, g.before[i] ?? 0, x.shape[i + 1] ?? 0, dy.shape[i + 1] ?? 0];
    return [b, Math.max(0, (o - 1) * s + k - n - b)];
  });
  const fits = pads.every(([b, a], i) => {
    const [k, s, n, o] = [g.k[i] ?? 1, g.s[i] ?? 1, x.shape[i + 1] ?? 0, dy.shape[i + 1] ?? 0];
    return b >= 0 && Math.floor((n + b + a - k) / s) + 1 === o;
  });
  if (!fits) return undefined;
  const [h = [0, 0], w = [0, 0]] = pads;
  const filterShape = [g.k[0] ?? 1, g.k[1] ?? 1, x.shape[3] ?? 0, dy.shape[3] ?? 0];
  return tf.engine().runKernel(
    'Conv2DBackpropFilter',
    { x, dy },
    {
      strides: [g.s[0] ?? 1, g.s[1] ?? 1],
      pad: [[0, 0], h, w, [0, 0]],
      dataFormat: 'NHWC',
      filterShape,
    },
  ) as tf.Tensor;
}

/**
 * `convFilterGrad(x, dy, g) -> dW [...k, Cin, Cout]` for channels-last `x [N, ...in, Cin]` and
 * `dy [N, ...out, Cout]`: one forward conv (see the module doc).
 */
function convFilterGrad(x: tf.Tensor, dy: tf.Tensor, g: Geometry): tf.Tensor {
  const r = g.k.length;
  const byKernel = wasmFilterGrad(x, dy, g);
  if (byKernel !== undefined) return byKernel;
  const xT = permuteBlocks(x, [1, r + 1], [2, 1, 0]); // [Cin, ...in, N]
  let dyT = permuteBlocks(dy, [1, r + 1], [1, 0, 2]); // [...out, N, Cout]
  const both = g.s.some((v) => v > 1) && g.d.some((v) => v > 1);
  if (both) dyT = dilateAxes(dyT, 0, g.s);
  const xp = spatialWindow(xT, filterGradWindows(g, dy.shape));
  const out = convN(xp, dyT, g.d, both ? g.s.map(() => 1) : g.s); // [Cin, ...k, Cout]
  return permuteBlocks(out, [1, r + 1], [1, 0, 2]);
}

/**
 * `convInputGradByConv(inShape, dy, filter, g) -> dx`: a stride-1 forward conv of dy
 * (zero-interleaved by the stride, padded / cropped) with the spatially flipped, transposed
 * filter and the forward dilation. `filter` is `[...k, Cin, Cout]`.
 */
function convInputGradByConv(
  inShape: readonly number[],
  dy: tf.Tensor,
  filter: tf.Tensor,
  g: Geometry,
): tf.Tensor {
  const r = g.k.length;
  const dyd = g.s.reduce((acc, s, i) => interleave(acc, i + 1, s), dy);
  const dyp = spatialWindow(dyd, inputGradWindows(g, inShape));
  const flipped = permuteBlocks(tf.reverse(filter, range(0, r)), [r, r + 1], [0, 2, 1]);
  return convN(
    dyp,
    flipped,
    g.s.map(() => 1),
    g.d,
  );
}

/**
 * Whether the input gradient of a dilation-1 conv is computed as a forward conv rather than by the
 * backend's backprop-input kernel. Measured on LeNet- and VGG-like shapes: on wasm, whose
 * `Conv2DBackpropInput` is a plain loop while its forward conv is XNNPACK, the forward conv is
 * 2-10x faster even with the stride's zeros; on cpu the backprop-input kernel is 1.3-5x faster
 * than the forward formulation. Other backends keep their native kernels.
 */
const inputGradByConv = (): boolean => tf.getBackend() === 'wasm';

/** `NCHW`-style `[N, C, ...sp]` to `[N, ...sp, C]`. */
const toLast = (t: tf.Tensor): tf.Tensor => permuteBlocks(t, [1, 2], [0, 2, 1]);
/** The shape of `toLast(t)`. */
const shapeLast = (s: readonly number[]): number[] => [s[0] ?? 0, ...s.slice(2), s[1] ?? 0];
/** `[N, ...sp, C]` to `[N, C, ...sp]`. */
const toFirst = (t: tf.Tensor): tf.Tensor => permuteBlocks(t, [1, t.rank - 1], [0, 2, 1]);

// ---------------------------------------------------------------------------------------------
// Conv2D.

function conv2dGrad(dy: tf.Tensor, saved: tf.Tensor[], attrs: tf.NamedAttrMap) {
  const kernel = 'Conv2D';
  const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
  const strides = tupleAttr(kernel, attrs, 'strides', 2) as Pair;
  const dilations = tupleAttr(kernel, attrs, 'dilations', 2) as Pair;
  const pad = padAttr(kernel, attrs);
  const rounding = roundingAttr(kernel, attrs);
  const first = channelsFirstAttr(kernel, attrs);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape,
    filter.shape,
    strides,
    dilations,
    pad,
    rounding,
    false,
    first ? 'channelsFirst' : 'channelsLast',
  );
  const g: Geometry = {
    k: [info.filterHeight, info.filterWidth],
    s: strides,
    d: dilations,
    before: [info.padInfo.top, info.padInfo.left],
  };
  const byConv = dilations.some((v) => v > 1) || inputGradByConv();
  return {
    x: () =>
      tf.tidy(() => {
        const dyl = first ? toLast(dy) : dy;
        const inShape = first ? shapeLast(x.shape) : x.shape;
        const dx = byConv
          ? convInputGradByConv(inShape, dyl, filter, g)
          : backpropInput2d(inShape, dyl as tf.Tensor4D, filter, g);
        return first ? toFirst(dx) : dx;
      }),
    filter: () => tf.tidy(() => convFilterGrad(first ? toLast(x) : x, first ? toLast(dy) : dy, g)),
  };
}

/**
 * The input gradient of a dilation-1 conv2d by the backend's `Conv2DBackpropInput`, given
 * explicit padding that reproduces the forward geometry exactly (`before` as in the forward conv;
 * input rows that no output reads are cut off and get a zero gradient), so that it does not
 * depend on how the backend resolves `'same'` or a numeric pad.
 */
function backpropInput2d(
  inShape: readonly number[],
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  g: Geometry,
  depthwise = false,
): tf.Tensor {
  const used = g.k.map((k, i) => {
    const [s, b, o, n] = [g.s[i] ?? 1, g.before[i] ?? 0, dy.shape[i + 1] ?? 0, inShape[i + 1] ?? 0];
    const needed = (o - 1) * s + k - b; // input rows up to the last one an output reads
    return { n: Math.min(n, needed), after: Math.max(0, needed - n) };
  });
  const [h, w] = used as [{ n: number; after: number }, { n: number; after: number }];
  const [batch = 0, , , c = 0] = inShape;
  if (h.n <= 0 || w.n <= 0) return tf.zeros(inShape as number[]);
  const usedShape: [number, number, number, number] = [batch, h.n, w.n, c];
  const pad: tf.backend_util.ExplicitPadding = [
    [0, 0],
    [g.before[0] ?? 0, h.after],
    [g.before[1] ?? 0, w.after],
    [0, 0],
  ];
  const dx = depthwise
    ? (tf.engine().runKernel('DepthwiseConv2dNativeBackpropInput', { dy, filter }, {
        strides: g.s,
        pad,
        dilations: [1, 1],
        inputShape: usedShape,
      } as never) as tf.Tensor)
    : tf.conv2dTranspose(dy, filter, usedShape, g.s as Pair, pad);
  return spatialWindow(
    dx,
    inShape.slice(1, 3).map((n): Pair => [0, n]),
  );
}

// ---------------------------------------------------------------------------------------------
// Conv3D.

function conv3dGrad(dy: tf.Tensor, saved: tf.Tensor[], attrs: tf.NamedAttrMap) {
  const kernel = 'Conv3D';
  const [x, filter] = saved as [tf.Tensor5D, tf.Tensor5D];
  const strides = tupleAttr(kernel, attrs, 'strides', 3) as [number, number, number];
  const dilations = tupleAttr(kernel, attrs, 'dilations', 3) as [number, number, number];
  const pad = padAttr(kernel, attrs);
  if (typeof pad === 'object') fail(kernel, `attribute 'pad' must be 'same', 'valid' or a number`);
  const first = channelsFirstAttr(kernel, attrs);
  const info = tf.backend_util.computeConv3DInfo(
    x.shape,
    filter.shape,
    strides,
    dilations,
    pad,
    false,
    first ? 'channelsFirst' : 'channelsLast',
  );
  const g: Geometry = {
    k: [info.filterDepth, info.filterHeight, info.filterWidth],
    s: strides,
    d: dilations,
    before: [info.padInfo.front, info.padInfo.top, info.padInfo.left],
  };
  const byConv = dilations.some((v) => v > 1) || typeof pad !== 'string' || inputGradByConv();
  return {
    x: () =>
      tf.tidy(() => {
        const dyl = first ? toLast(dy) : dy;
        const inShape = first ? shapeLast(x.shape) : x.shape;
        const dx = !byConv
          ? tf.conv3dTranspose(
              dyl as tf.Tensor5D,
              filter,
              inShape as [number, number, number, number, number],
              strides,
              pad,
            )
          : convInputGradByConv(inShape, dyl, filter, g);
        return first ? toFirst(dx) : dx;
      }),
    filter: () => tf.tidy(() => convFilterGrad(first ? toLast(x) : x, first ? toLast(dy) : dy, g)),
  };
}

// ---------------------------------------------------------------------------------------------
// DepthwiseConv2dNative (channels-last only, as the op). Filter [KH, KW, C, M], output channel
// c*M + m.

/**
 * The filter gradient: one depthwise conv of batch 1 whose channels are the (channel, example)
 * pairs: x `[N,H,W,C] -> [1,H,W,C*N]`, dy `[N,OH,OW,C*M] -> filter [OH,OW,C*N,M]`, dilation =
 * forward stride, stride = forward dilation; output `[1,KH,KW,C*N*M]` summed over N.
 */
function depthwiseFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, m: number, g: Geometry): tf.Tensor {
  const [n, h, w, c] = x.shape;
  const [, oh, ow] = dy.shape;
  const [kh = 1, kw = 1] = g.k;
  const xr = tf.reshape(permuteBlocks(x, [1], [1, 0]), [1, h, w, c * n]);
  let f = tf.reshape(permuteBlocks(tf.reshape(dy, [n, oh, ow, c, m]), [1, 4], [1, 0, 2]), [
    oh,
    ow,
    c * n,
    m,
  ]);
  const both = g.s.some((v) => v > 1) && g.d.some((v) => v > 1);
  if (both) f = dilateAxes(f, 0, g.s);
  const xp = spatialWindow(xr, filterGradWindows(g, dy.shape));
  const out = tf.depthwiseConv2d(
    xp as tf.Tensor4D,
    f as tf.Tensor4D,
    g.d as Pair,
    'valid',
    'NHWC',
    (both ? [1, 1] : g.s) as Pair,
  ); // [1, KH, KW, C*N*M]
  return n === 1 ? tf.reshape(out, [kh, kw, c, m]) : tf.sum(tf.reshape(out, [kh, kw, c, n, m]), 3);
}

/**
 * The input gradient for dilation > 1: a stride-1 depthwise conv of dy (zero-interleaved by the
 * stride) with the flipped filter `[KH,KW,C*M,1]` and the forward dilation, summed over M.
 */
function depthwiseInputGradByConv(
  inShape: readonly number[],
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  g: Geometry,
): tf.Tensor {
  const [n = 0, h = 0, w = 0, c = 0] = inShape;
  const [kh, kw, , m] = filter.shape;
  const dyd = g.s.reduce<tf.Tensor>((acc, s, i) => interleave(acc, i + 1, s), dy);
  const dyp = spatialWindow(dyd, inputGradWindows(g, inShape));
  const flipped = tf.reshape(tf.reverse(filter, [0, 1]), [kh, kw, c * m, 1]);
  const out = tf.depthwiseConv2d(
    dyp as tf.Tensor4D,
    flipped as tf.Tensor4D,
    1,
    'valid',
    'NHWC',
    g.d as Pair,
  );
  return m === 1 ? out : tf.sum(tf.reshape(out, [n, h, w, c, m]), 4);
}

function depthwiseGrad(dy: tf.Tensor, saved: tf.Tensor[], attrs: tf.NamedAttrMap) {
  const kernel = 'DepthwiseConv2dNative';
  const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
  const strides = tupleAttr(kernel, attrs, 'strides', 2) as Pair;
  const dilations = tupleAttr(kernel, attrs, 'dilations', 2) as Pair;
  const pad = padAttr(kernel, attrs);
  const rounding = roundingAttr(kernel, attrs);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape,
    filter.shape,
    strides,
    dilations,
    pad,
    rounding,
    true,
  );
  const g: Geometry = {
    k: [info.filterHeight, info.filterWidth],
    s: strides,
    d: dilations,
    before: [info.padInfo.top, info.padInfo.left],
  };
  const byConv = dilations.some((v) => v > 1) || inputGradByConv();
  const m = filter.shape[3];
  return {
    x: () =>
      tf.tidy(() =>
        byConv
          ? depthwiseInputGradByConv(x.shape, dy as tf.Tensor4D, filter, g)
          : backpropInput2d(x.shape, dy as tf.Tensor4D, filter, g, true),
      ),
    filter: () => tf.tidy(() => depthwiseFilterGrad(x, dy as tf.Tensor4D, m, g)),
  };
}

// ---------------------------------------------------------------------------------------------
// Registration.

const CONFIGS: readonly tf.GradConfig[] = [
  { kernelName: 'Conv2D', inputsToSave: ['x', 'filter'], gradFunc: asGradFunc(conv2dGrad) },
  { kernelName: 'Conv3D', inputsToSave: ['x', 'filter'], gradFunc: asGradFunc(conv3dGrad) },
  {
    kernelName: 'DepthwiseConv2dNative',
    inputsToSave: ['x', 'filter'],
    gradFunc: asGradFunc(depthwiseGrad),
  },
].map((c) => Object.assign(c, { [MARK]: true }));

function asGradFunc(
  f: (
    dy: tf.Tensor,
    saved: tf.Tensor[],
    attrs: tf.NamedAttrMap,
  ) => { x: () => tf.Tensor; filter: () => tf.Tensor },
): tf.GradFunc {
  return (dy, saved, attrs) => {
    if (Array.isArray(dy)) fail('conv', 'expected one output gradient');
    return f(dy, saved, attrs);
  };
}

/** The kernels whose gradient `registerConvGradients` replaces. */
export const CONV_GRADIENT_KERNELS: readonly string[] = Object.freeze(
  CONFIGS.map((c) => c.kernelName),
);

/** The configs that were registered before ours (tfjs's), by kernel name. */
const previous = new Map<string, tf.GradConfig | undefined>();

const isOurs = (c: tf.GradConfig | undefined): boolean => c !== undefined && MARK in c;

/**
 * `registerConvGradients() -> void`: replaces the gradients of `Conv2D` (also used by `conv1d`),
 * `Conv3D` and `DepthwiseConv2dNative` with forward-convolution gradients that are fast on every
 * backend (no `Conv2DBackpropFilter`) and support dilation > 1. Remembers the configs it replaces
 * (see `unregisterConvGradients`). Idempotent.
 *
 * @example
 * ```ts
 * registerConvGradients(); // done by the package on import
 * tf.grad((f) => tf.sum(tf.conv2d(x, f, 1, 'same', 'NHWC', 2)))(f); // dilation 2 works
 * ```
 */
export function registerConvGradients(): void {
  for (const config of CONFIGS) {
    const current = getGradientOrUndefined(config.kernelName);
    if (isOurs(current)) continue;
    previous.set(config.kernelName, current);
    tf.registerGradient(config);
  }
}

/**
 * `unregisterConvGradients() -> void`: puts back the gradient configs that
 * `registerConvGradients` replaced (tfjs's own), e.g. to compare with them in tests and
 * benchmarks. A no-op where ours are not registered.
 *
 * @example
 * ```ts
 * unregisterConvGradients();
 * const stock = tf.grad((f) => tf.sum(tf.conv2d(x, f, 1, 'same')))(f);
 * registerConvGradients();
 * ```
 */
export function unregisterConvGradients(): void {
  for (const config of CONFIGS) {
    const current = getGradientOrUndefined(config.kernelName);
    if (!isOurs(current)) continue;
    const before = previous.get(config.kernelName);
    if (before === undefined) tf.unregisterGradient(config.kernelName);
    else tf.registerGradient(before);
  }
}

function getGradientOrUndefined(kernelName: string): tf.GradConfig | undefined {
  return tf.getGradient(kernelName) ?? undefined;
}
