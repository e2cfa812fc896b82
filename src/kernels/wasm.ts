/**
 * Gradient kernels for the wasm backend (`@tensorflow/tfjs-backend-wasm` 4.22), written with
 * tfjs-core forward ops that the wasm backend has and computes correctly.
 *
 * Missing on wasm (registered unless a kernel of that name is already registered):
 *
 * | kernel                                | needed by the gradient of                          |
 * | ------------------------------------- | -------------------------------------------------- |
 * | `Conv2DBackpropFilter`                | conv1d, conv2d, separableConv2d, conv2dTranspose   |
 * | `DepthwiseConv2dNativeBackpropFilter` | depthwiseConv2d, separableConv2d                   |
 * | `DepthwiseConv2dNativeBackpropInput`  | depthwiseConv2d, separableConv2d                   |
 * | `UnsortedSegmentSum`                  | gather (embeddings)                                |
 *
 * Present on wasm but wrong (replaced; checked against the cpu backend and a plain-loop
 * reference): `MaxPoolGrad` and `MaxPool3DGrad` route the gradient to wrong positions for most
 * shapes; `Conv3DBackpropInputV2` is wrong for any shape with more than one channel and
 * `Conv3DBackpropFilterV2` for strides > 1. The wasm package registers these when it is imported,
 * which happens after this module runs, so the replacements are installed by a `setupFunc` (tfjs
 * calls the `setupFunc` of every kernel registered for a backend each time that backend is set),
 * and at once if the wasm package is already loaded. The other kernels those gradients call
 * (`Conv2DBackpropInput`, `AvgPoolGrad`, `AvgPool3DGrad`, `Transpose`, `ScatterNd`, ...) are the
 * wasm package's own and agree with cpu.
 *
 * Present on wasm, correct, but pathologically slow (replaced the same way; each section below
 * says why): `BatchMatMul` (XNNPACK only for unbatched, untransposed products, a scalar loop at
 * ~2 GFLOP/s otherwise, which is every product in a gradient), `Slice`, `Unpack`, `SplitV` (each
 * slice copied the whole input first), `Concat`, `Pack` (a typed-array object per copied row),
 * `Tanh` (scalar `tanhf`) and `Identity` (a copy, for every tensor tfjs saves for a gradient).
 * They work on the wasm heap directly. Supplied besides: the fused LSTM and GRU cells that
 * src/layers/rnn.ts runs on wasm (`BlitzLSTMCell`, `BlitzLSTMCellGrad`, `BlitzGRUCell`,
 * `BlitzGRUCellGrad`).
 *
 * How a kernel built from ops hands its result to the engine: the ops run inside `tf.tidy`, which
 * disposes every intermediate; the one result tensor survives the tidy, the kernel adds a backend
 * reference to its data (`backend.incRef`, as the wasm `Reshape` kernel does) and disposes the
 * tensor, so the data (refCount 1) is owned by the `TensorInfo` that the kernel returns and that
 * the engine wraps in the output tensor. No copy is made and nothing else stays alive. Ops called
 * inside a kernel are not recorded on the gradient tape (tfjs stops recording while a kernel
 * runs), so these kernels need no gradients of their own.
 */
import * as tf from '@tensorflow/tfjs-core';
import { heapSimd, type HeapSimd } from './heapSimd';

type Pair = [number, number];
type Pad = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
type RoundingMode = 'floor' | 'round' | 'ceil' | undefined;
type DataFormat = 'NHWC' | 'NCHW';
type Shape4 = [number, number, number, number];
type Shape5 = [number, number, number, number, number];

/** What the kernels need from the backend object they are given. */
interface RefCountingBackend {
  incRef(dataId: tf.DataId): void;
}

const BACKEND = 'wasm';
/** Marks the kernel configs of this module (shared by every copy of the package in a process). */
const MARK = Symbol.for('blitz-ts.wasmKernel');

// ---------------------------------------------------------------------------------------------
// Attribute and input parsing (kernel attrs arrive as the loosely typed `NamedAttrMap`).

function fail(kernel: string, what: string): never {
  throw new Error(`${kernel} (blitz-ts wasm kernel): ${what}`);
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

function attr(kernel: string, attrs: tf.NamedAttrMap | undefined, name: string): unknown {
  const v = attrs?.[name];
  if (v === undefined) fail(kernel, `missing attribute '${name}'`);
  return v;
}

/** An integer or a tuple of `n` integers, as a tuple. `dilations` defaults to 1. */
function tupleAttr(
  kernel: string,
  attrs: tf.NamedAttrMap | undefined,
  name: string,
  n: number,
): number[] {
  const v: unknown = attrs?.[name] ?? (name === 'dilations' ? 1 : undefined);
  if (isInt(v)) return new Array<number>(n).fill(v);
  if (Array.isArray(v) && v.length === n && v.every(isInt)) return [...v];
  return fail(kernel, `attribute '${name}' must be an integer or ${n} integers, got ${String(v)}`);
}

const pairAttr = (kernel: string, attrs: tf.NamedAttrMap | undefined, name: string): Pair => {
  const [a = 1, b = 1] = tupleAttr(kernel, attrs, name, 2);
  return [a, b];
};

function padAttr(kernel: string, attrs: tf.NamedAttrMap | undefined): Pad {
  const v = attr(kernel, attrs, 'pad');
  if (v === 'same' || v === 'valid' || isInt(v)) return v;
  const isPadPair = (p: unknown): p is Pair =>
    Array.isArray(p) && p.length === 2 && isInt(p[0]) && isInt(p[1]);
  if (Array.isArray(v) && v.length === 4 && v.every(isPadPair)) {
    return v as tf.backend_util.ExplicitPadding;
  }
  return fail(kernel, `attribute 'pad' must be 'same', 'valid', a number or 4 pairs`);
}

function samePadAttr(kernel: string, attrs: tf.NamedAttrMap | undefined): 'same' | 'valid' {
  const v = attr(kernel, attrs, 'pad');
  if (v === 'same' || v === 'valid') return v;
  return fail(kernel, `attribute 'pad' must be 'same' or 'valid'`);
}

function roundingAttr(kernel: string, attrs: tf.NamedAttrMap | undefined): RoundingMode {
  const v: unknown = attrs?.['dimRoundingMode'];
  if (v === undefined || v === null) return undefined;
  if (v === 'floor' || v === 'round' || v === 'ceil') return v;
  return fail(kernel, `attribute 'dimRoundingMode' must be floor, round or ceil`);
}

function dataFormatAttr(kernel: string, attrs: tf.NamedAttrMap | undefined): DataFormat {
  const v: unknown = attrs?.['dataFormat'] ?? 'NHWC';
  if (v === 'NHWC' || v === 'NCHW') return v;
  return fail(kernel, `attribute 'dataFormat' must be NHWC or NCHW, got ${String(v)}`);
}

function shapeAttr(kernel: string, attrs: tf.NamedAttrMap | undefined, name: string, rank: number) {
  const v = attr(kernel, attrs, name);
  if (Array.isArray(v) && v.length === rank && v.every(isInt)) return [...v];
  return fail(kernel, `attribute '${name}' must be ${rank} integers, got ${String(v)}`);
}

const shape4 = (s: readonly number[]): Shape4 => [s[0] ?? 0, s[1] ?? 0, s[2] ?? 0, s[3] ?? 0];
const shape5 = (s: readonly number[]): Shape5 => [
  s[0] ?? 0,
  s[1] ?? 0,
  s[2] ?? 0,
  s[3] ?? 0,
  s[4] ?? 0,
];

function hasIncRef(backend: unknown): backend is RefCountingBackend {
  return (
    typeof backend === 'object' &&
    backend !== null &&
    typeof (backend as { incRef?: unknown }).incRef === 'function'
  );
}

/**
 * An input as a `tf.Tensor`. The engine passes the op's tensors; a caller of `runKernel` may pass
 * bare `TensorInfo`s, which get a tensor of their own holding one more backend reference, so that
 * disposing it (by the enclosing tidy) leaves the caller's data alone.
 */
function inputTensor(
  kernel: string,
  inputs: tf.NamedTensorInfoMap,
  name: string,
  rank: number,
  backend: RefCountingBackend,
): tf.Tensor {
  const info = inputs[name];
  if (info === undefined) fail(kernel, `missing input '${name}'`);
  if (rank > 0 && info.shape.length !== rank) {
    fail(kernel, `input '${name}' must be rank ${rank}, got shape [${info.shape}]`);
  }
  if (info instanceof tf.Tensor) return info;
  const t = tf.engine().makeTensorFromTensorInfo(info);
  backend.incRef(info.dataId);
  return t;
}

type Body = (inputs: readonly tf.Tensor[], attrs: tf.NamedAttrMap | undefined) => tf.Tensor;

/**
 * A kernel config whose body computes its output with tfjs ops. `inputs` names the inputs and
 * their ranks (0: any); `body` gets them as tensors in that order and returns the output tensor.
 * Intermediates are disposed; the output's data is handed to the engine without a copy.
 */
function opsKernel(
  kernelName: string,
  inputs: readonly (readonly [string, number])[],
  body: Body,
): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = ({ inputs: given, backend, attrs }) => {
    if (!hasIncRef(backend)) fail(kernelName, 'the backend has no incRef(dataId)');
    const out = tf.tidy(() => {
      const args = inputs.map(([n, rank]) => inputTensor(kernelName, given, n, rank, backend));
      const result = body(args, attrs);
      // never hand out (and then dispose) a tensor the caller owns
      return args.includes(result) ? tf.clone(result) : result;
    });
    backend.incRef(out.dataId);
    const info: tf.TensorInfo = { dataId: out.dataId, shape: out.shape, dtype: out.dtype };
    out.dispose();
    return info;
  };
  const config: tf.KernelConfig & { [MARK]: true } = {
    kernelName,
    backendName: BACKEND,
    kernelFunc,
    setupFunc: () => installReplacements(),
    [MARK]: true,
  };
  return config;
}

const isOurs = (config: tf.KernelConfig | undefined): boolean =>
  config !== undefined && MARK in config;

// ---------------------------------------------------------------------------------------------
// Shape helpers (any rank).

/**
 * Pads (positive amounts, with `value`) or crops (negative amounts) each axis of `t` by
 * `[before, after]`: the window `[-before, length + after)` of each axis, `value` outside the
 * tensor (also where a crop at one end reaches past a pad at the other).
 */
function padCrop<T extends tf.Tensor>(t: T, pads: readonly Pair[], value = 0): T {
  const starts = pads.map(([b]) => -b);
  const outShape = t.shape.map((d, i) => d + (pads[i]?.[0] ?? 0) + (pads[i]?.[1] ?? 0));
  const lo = t.shape.map((d, i) => Math.min(d, Math.max(0, starts[i] ?? 0)));
  const hi = t.shape.map((d, i) =>
    Math.max(lo[i] ?? 0, Math.min(d, (starts[i] ?? 0) + (outShape[i] ?? 0))),
  );
  if (hi.some((h, i) => h <= (lo[i] ?? 0))) return tf.fill(outShape, value, t.dtype) as T;
  const size = hi.map((h, i) => h - (lo[i] ?? 0));
  const cropped = size.some((n, i) => n !== t.shape[i]) ? tf.slice(t, lo, size) : t;
  const positive = t.shape.map((_, i): Pair => {
    const before = (lo[i] ?? 0) - (starts[i] ?? 0);
    return [before, (outShape[i] ?? 0) - (size[i] ?? 0) - before];
  });
  return (
    positive.some(([b, a]) => b > 0 || a > 0) ? tf.pad(cropped, positive, value) : cropped
  ) as T;
}

/**
 * Inserts `s - 1` zeros after every element along `axis` (the caller crops the trailing ones):
 * length `L -> L * s`.
 */
function interleave<T extends tf.Tensor>(t: T, axis: number, s: number): T {
  if (s === 1) return t;
  const shape = t.shape;
  const withOne = tf.reshape(t, [...shape.slice(0, axis + 1), 1, ...shape.slice(axis + 1)]);
  const pads = withOne.shape.map((_, i): Pair => (i === axis + 1 ? [0, s - 1] : [0, 0]));
  const lengthened = (shape[axis] ?? 0) * s;
  return tf.reshape(tf.pad(withOne, pads), [
    ...shape.slice(0, axis),
    lengthened,
    ...shape.slice(axis + 1),
  ]) as T;
}

/** Interleaves the spatial axes `1..strides.length` by their strides. */
function interleaveSpatial<T extends tf.Tensor>(t: T, strides: readonly number[]): T {
  return strides.reduce<T>((acc, s, i) => interleave(acc, i + 1, s), t);
}

/**
 * Padding of the input, along one axis, for "filter gradient as a forward conv": the conv slides
 * dy (dilated by the forward stride) over the padded input with the forward dilation as its
 * stride and must produce exactly `k` outputs, the first at the forward padding `before`.
 */
function filterGradPads(
  inSize: number,
  outSize: number,
  k: number,
  s: number,
  d: number,
  before: number,
): Pair {
  return [before, (k - 1) * d + (outSize - 1) * s + 1 - inSize - before];
}

/** Crops an NHWC tensor where the pads are negative; returns the rest as explicit conv padding. */
function cropToPads(
  x: tf.Tensor4D,
  [h, w]: [Pair, Pair],
): { x: tf.Tensor4D; pad: tf.backend_util.ExplicitPadding } {
  const neg = (p: Pair): Pair => [Math.min(0, p[0]), Math.min(0, p[1])];
  const pos = (p: Pair): Pair => [Math.max(0, p[0]), Math.max(0, p[1])];
  const [, n1 = 0, n2 = 0] = x.shape;
  if (n1 + neg(h)[0] + neg(h)[1] <= 0 || n2 + neg(w)[0] + neg(w)[1] <= 0) {
    // the crop at one end reaches past the pad at the other: no split into crop + conv padding
    const none: Pair = [0, 0];
    return { x: padCrop(x, [none, h, w, none]), pad: [none, none, none, none] };
  }
  return { x: padCrop(x, [[0, 0], neg(h), neg(w), [0, 0]]), pad: [[0, 0], pos(h), pos(w), [0, 0]] };
}

function conv2dInfo(
  inShape: Shape4,
  filterShape: Shape4,
  strides: Pair,
  dilations: Pair,
  pad: Pad,
  rounding: RoundingMode,
  depthwise: boolean,
) {
  return tf.backend_util.computeConv2DInfo(
    inShape,
    filterShape,
    strides,
    dilations,
    pad,
    rounding,
    depthwise,
    'channelsLast',
  );
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropFilter: dW[kh,kw,ci,co] = sum_{n,oh,ow} x[n, oh*s - top + kh*d, ..., ci] dy[n,oh,ow,co]
// is a forward conv of x transposed to [Cin, H, W, N] (batch and channels swapped) with dy
// transposed to [OH, OW, N, Cout] as the filter, dilation = forward stride, stride = forward
// dilation; output [Cin, KH, KW, Cout] -> [KH, KW, Cin, Cout].

function conv2dFilterGrad(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: Shape4,
  strides: Pair,
  pad: Pad,
  rounding: RoundingMode,
  dataFormat: DataFormat,
): tf.Tensor4D {
  const nchw = dataFormat === 'NCHW';
  const xT = tf.transpose(x, nchw ? [1, 2, 3, 0] : [3, 1, 2, 0]);
  const dyT = tf.transpose(dy, nchw ? [2, 3, 0, 1] : [1, 2, 0, 3]);
  const [cin, h, w, n] = xT.shape;
  const [oh, ow] = dyT.shape;
  // explicit padding comes in the data format's axis order; the geometry is computed as NHWC
  const padNhwc: Pad = nchw && typeof pad === 'object' ? [pad[0], pad[2], pad[3], pad[1]] : pad;
  const info = conv2dInfo([n, h, w, cin], filterShape, strides, [1, 1], padNhwc, rounding, false);
  const { x: xc, pad: explicit } = cropToPads(xT, [
    filterGradPads(h, oh, info.filterHeight, strides[0], 1, info.padInfo.top),
    filterGradPads(w, ow, info.filterWidth, strides[1], 1, info.padInfo.left),
  ]);
  const out = tf.conv2d(xc, dyT, 1, explicit, 'NHWC', strides); // [Cin, KH, KW, Cout]
  return tf.transpose(out, [1, 2, 0, 3]);
}

const conv2dBackpropFilterByConv = opsKernel(
  'Conv2DBackpropFilter',
  [
    ['x', 4],
    ['dy', 4],
  ],
  ([x, dy], attrs) => {
    const k = 'Conv2DBackpropFilter';
    return conv2dFilterGrad(
      x as tf.Tensor4D,
      dy as tf.Tensor4D,
      shape4(shapeAttr(k, attrs, 'filterShape', 4)),
      pairAttr(k, attrs, 'strides'),
      padAttr(k, attrs),
      roundingAttr(k, attrs),
      dataFormatAttr(k, attrs),
    );
  },
);

// The same gradient as one matrix product for ONE input channel where the patch matrix is small
// enough (NHWC, at most IM2COL_MAX floats): `dW [KH*KW, Cout] = P^T [KH*KW, N*OH*OW] @ dy
// [N*OH*OW, Cout]`, the transposed patches built on the heap (a copy of x per kernel offset, zeros
// for padding) and the product run by XNNPACK (matMulHeap). A first layer's filter gradient (one
// input channel, a large output: LeNet's [64, 28, 28, 1] -> [64, 24, 24, 18]) is a forward conv
// with a [24, 24, 64, 18] filter and a 5x5 output in the form above, which XNNPACK runs at a fifth
// of its matmul speed; as a product it takes 3.4 instead of 5.9 ms. With more input channels the
// forward conv is as fast or faster (measured for 2, 3 and 6 channels: 0.5-2.7x), so it stays.
const IM2COL_MAX = 1 << 23;

function conv2dFilterGradIm2col(
  be: HeapBackend,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
): tf.TensorInfo {
  const k = 'Conv2DBackpropFilter';
  const [N, H, W, C] = x.shape as Shape4;
  const { outHeight: OH, outWidth: OW, outChannels: CO, filterHeight: KH, filterWidth: KW } = info;
  const { strideHeight: sh, strideWidth: sw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const rows = KH * KW * C;
  const cols = N * OH * OW;
  const pt = be.makeOutput([rows, cols], 'float32');
  const { arr } = heapOf(be, 'float32');
  const xAt = start(be, x, 2);
  let dst = start(be, pt, 2);
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      for (let ci = 0; ci < C; ci++) {
        for (let n = 0; n < N; n++) {
          for (let oh = 0; oh < OH; oh++, dst += OW) {
            const ih = oh * sh - top + kh;
            if (ih < 0 || ih >= H) {
              arr.fill(0, dst, dst + OW);
              continue;
            }
            const row = xAt + (n * H + ih) * W * C + ci;
            for (let ow = 0; ow < OW; ow++) {
              const iw = ow * sw - left + kw;
              arr[dst + ow] = iw < 0 || iw >= W ? 0 : (arr[row + iw * C] as number);
            }
          }
        }
      }
    }
  }
  const out = matMulHeap(k, be, pt, { ...dy, shape: [cols, CO] }, false, false);
  be.disposeData(pt.dataId);
  return { ...out, shape: [KH, KW, C, CO] };
}

const conv2dBackpropFilterConfig = heapKernel('Conv2DBackpropFilter', (args) => {
  const { inputs, backend, attrs } = args;
  const k = 'Conv2DBackpropFilter';
  const x = inputs['x'];
  const dy = inputs['dy'];
  if (x === undefined || dy === undefined) fail(k, "missing input 'x' or 'dy'");
  if (
    x.shape.length === 4 &&
    dy.shape.length === 4 &&
    x.dtype === 'float32' &&
    dy.dtype === 'float32' &&
    dataFormatAttr(k, attrs) === 'NHWC'
  ) {
    const filterShape = shape4(shapeAttr(k, attrs, 'filterShape', 4));
    const info = conv2dInfo(
      x.shape as Shape4,
      filterShape,
      pairAttr(k, attrs, 'strides'),
      [1, 1],
      padAttr(k, attrs),
      roundingAttr(k, attrs),
      false,
    );
    const [n = 0, , , c = 0] = x.shape;
    const size = info.filterHeight * info.filterWidth * c * n * info.outHeight * info.outWidth;
    if (
      c === 1 &&
      size > 0 &&
      size <= IM2COL_MAX &&
      dy.shape[1] === info.outHeight &&
      dy.shape[2] === info.outWidth &&
      dy.shape[3] === info.outChannels
    ) {
      return conv2dFilterGradIm2col(heapBackend(k, backend), x, dy, info);
    }
  }
  return conv2dBackpropFilterByConv.kernelFunc(args);
});

// ---------------------------------------------------------------------------------------------
// DepthwiseConv2dNativeBackpropFilter: one depthwise conv of batch 1 whose channels are the
// (channel, example) pairs: x [N,H,W,C] -> [1,H,W,C*N], dy [N,OH,OW,C*M] -> filter [OH,OW,C*N,M];
// dilation = forward stride, stride = forward dilation; output [1,KH,KW,C*N*M] summed over N.

function depthwiseFilterGrad(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: Shape4,
  strides: Pair,
  dilations: Pair,
  pad: Pad,
  rounding: RoundingMode,
): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const [, oh, ow] = dy.shape;
  const [kh, kw, , m] = filterShape;
  const info = conv2dInfo(x.shape, filterShape, strides, dilations, pad, rounding, true);
  const xr = tf.reshape<tf.Rank.R4>(tf.transpose(x, [1, 2, 3, 0]), [1, h, w, c * n]);
  const f = tf.reshape<tf.Rank.R4>(
    tf.transpose(tf.reshape(dy, [n, oh, ow, c, m]), [1, 2, 3, 0, 4]),
    [oh, ow, c * n, m],
  );
  const { x: xc, pad: explicit } = cropToPads(xr, [
    filterGradPads(h, oh, kh, strides[0], dilations[0], info.padInfo.top),
    filterGradPads(w, ow, kw, strides[1], dilations[1], info.padInfo.left),
  ]);
  const out = tf.depthwiseConv2d(xc, f, dilations, explicit, 'NHWC', strides); // [1,KH,KW,C*N*M]
  return tf.sum(tf.reshape(out, [kh, kw, c, n, m]), 3);
}

const depthwiseBackpropFilterConfig = opsKernel(
  'DepthwiseConv2dNativeBackpropFilter',
  [
    ['x', 4],
    ['dy', 4],
  ],
  ([x, dy], attrs) => {
    const k = 'DepthwiseConv2dNativeBackpropFilter';
    return depthwiseFilterGrad(
      x as tf.Tensor4D,
      dy as tf.Tensor4D,
      shape4(shapeAttr(k, attrs, 'filterShape', 4)),
      pairAttr(k, attrs, 'strides'),
      pairAttr(k, attrs, 'dilations'),
      padAttr(k, attrs),
      roundingAttr(k, attrs),
    );
  },
);

// ---------------------------------------------------------------------------------------------
// DepthwiseConv2dNativeBackpropInput: dx[h] = sum_k dyd[h + top - k*d] W[k] with dyd = dy
// zero-interleaved by the stride, i.e. a stride-1 depthwise conv of dyd (padded or cropped) with
// the spatially flipped filter [KH,KW,C*M,1] and the forward dilation, summed over the multiplier.

function depthwiseInputGrad(
  inputShape: Shape4,
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  strides: Pair,
  dilations: Pair,
  pad: Pad,
  rounding: RoundingMode,
): tf.Tensor4D {
  const [n, h, w, c] = inputShape;
  const [kh, kw, , m] = filter.shape;
  const [, oh, ow] = dy.shape;
  const info = conv2dInfo(inputShape, filter.shape, strides, dilations, pad, rounding, true);
  const dyd = interleaveSpatial(dy, strides); // [N, OH*sh, OW*sw, C*M]
  const before = (k: number, d: number, top: number): number => (k - 1) * d - top;
  const bh = before(kh, dilations[0], info.padInfo.top);
  const bw = before(kw, dilations[1], info.padInfo.left);
  const { x: dyc, pad: explicit } = cropToPads(dyd, [
    [bh, h + (kh - 1) * dilations[0] - bh - oh * strides[0]],
    [bw, w + (kw - 1) * dilations[1] - bw - ow * strides[1]],
  ]);
  const flipped = tf.reshape<tf.Rank.R4>(tf.reverse(filter, [0, 1]), [kh, kw, c * m, 1]);
  const out = tf.depthwiseConv2d(dyc, flipped, 1, explicit, 'NHWC', dilations); // [N,H,W,C*M]
  return m === 1 ? out : tf.sum(tf.reshape(out, [n, h, w, c, m]), 4);
}

const depthwiseBackpropInputConfig = opsKernel(
  'DepthwiseConv2dNativeBackpropInput',
  [
    ['dy', 4],
    ['filter', 4],
  ],
  ([dy, filter], attrs) => {
    const k = 'DepthwiseConv2dNativeBackpropInput';
    return depthwiseInputGrad(
      shape4(shapeAttr(k, attrs, 'inputShape', 4)),
      dy as tf.Tensor4D,
      filter as tf.Tensor4D,
      pairAttr(k, attrs, 'strides'),
      pairAttr(k, attrs, 'dilations'),
      padAttr(k, attrs),
      roundingAttr(k, attrs),
    );
  },
);

// ---------------------------------------------------------------------------------------------
// UnsortedSegmentSum: scatterND (which accumulates repeated indices) into [numSegments + 1, ...];
// ids outside [0, numSegments) go to the scratch row numSegments, which is sliced off, so they
// are dropped (as TensorFlow drops negative ids) and NaN/Inf in their rows cannot leak. segmentIds
// may have any shape that is a prefix of x's shape. The output has x's dtype.

function segmentSum(x: tf.Tensor, segmentIds: tf.Tensor, numSegments: number): tf.Tensor {
  const k = segmentIds.rank;
  if (x.rank < k || segmentIds.shape.some((d, i) => d !== x.shape[i])) {
    fail(
      'UnsortedSegmentSum',
      `segmentIds shape [${segmentIds.shape}] must be a prefix of x shape [${x.shape}]`,
    );
  }
  const rest = x.shape.slice(k);
  const rows = segmentIds.size;
  if (numSegments === 0 || rows === 0) return tf.zeros([numSegments, ...rest], x.dtype);
  const ids = tf.reshape(segmentIds.dtype === 'int32' ? segmentIds : tf.cast(segmentIds, 'int32'), [
    rows,
  ]);
  const valid = tf.logicalAnd(tf.greaterEqual(ids, 0), tf.less(ids, numSegments));
  const target = tf.where(valid, ids, tf.scalar(numSegments, 'int32'));
  const updates = tf.reshape(x, [rows, ...rest]);
  const summed = tf.scatterND(tf.reshape(target, [rows, 1]), updates, [numSegments + 1, ...rest]);
  return tf.slice(summed, 0, numSegments);
}

const unsortedSegmentSumConfig = opsKernel(
  'UnsortedSegmentSum',
  [
    ['x', 0],
    ['segmentIds', 0],
  ],
  ([x, segmentIds], attrs) => {
    const numSegments = attr('UnsortedSegmentSum', attrs, 'numSegments');
    if (!isInt(numSegments) || numSegments < 0) {
      fail('UnsortedSegmentSum', 'numSegments must be a non-negative integer');
    }
    return segmentSum(x as tf.Tensor, segmentIds as tf.Tensor, numSegments);
  },
);

// ---------------------------------------------------------------------------------------------
// MaxPoolGrad / MaxPool3DGrad. The first maximum of each window in row-major window order (as
// tfjs's cpu MaxPoolGrad and TensorFlow choose: a strictly greater value replaces the running
// maximum, so padding, NaN and a window of -Infinity never win, and such a window passes no
// gradient) receives dy. Computed on the heap in one pass over the input: per output position,
// the running maximum and its position for all channels at once (contiguous reads along C), then
// dy scattered into the zeroed dx. Overlapping windows (a stride below the filter size) sum their
// shares in float64 first, as the cpu backend does. (The first version built this from slices,
// pads, compares and selects: ~40 kernels and 24 ms for LeNet's two pools where this takes ~2.)

/** `[N, D, H, W, C]` geometry of a max pool (a 2-D pool has `D = 1`). */
interface PoolDims {
  readonly n: number;
  readonly c: number;
  readonly inS: readonly [number, number, number];
  readonly outS: readonly [number, number, number];
  readonly filter: readonly [number, number, number];
  readonly strides: readonly [number, number, number];
  readonly before: readonly [number, number, number];
}

function maxPoolGradHeap(
  kernel: string,
  backend: unknown,
  dy: tf.TensorInfo,
  x: tf.TensorInfo,
  g: PoolDims,
) {
  const be = heapBackend(kernel, backend);
  if (dy.dtype !== 'float32' || x.dtype !== 'float32') {
    fail(kernel, `'dy' and 'input' must be float32, got ${dy.dtype} and ${x.dtype}`);
  }
  const { n: N, c: C, inS, outS, filter, strides, before } = g;
  const [D, H, W] = inS;
  const [OD, OH, OW] = outS;
  const [fd, fh, fw] = filter;
  const [sd, sh, sw] = strides;
  const [bd, bh, bw] = before;
  const out = be.makeOutput([...x.shape], 'float32');
  const size = N * D * H * W * C;
  const { arr } = heapOf(be, 'float32');
  const xAt = start(be, x, 2);
  const dyAt = start(be, dy, 2);
  const dxAt = start(be, out, 2);
  const overlap = fd > sd || fh > sh || fw > sw;
  const acc = overlap ? new Float64Array(size) : undefined;
  if (!overlap) arr.fill(0, dxAt, dxAt + size);
  // one output row at a time: the running maxima of its OW * C outputs, window offset by offset
  const row = OW * C;
  const best = new Float64Array(row);
  const pos = new Int32Array(row);
  let dyRow = dyAt;
  for (let n = 0; n < N; n++) {
    for (let od = 0; od < OD; od++) {
      const d0 = od * sd - bd;
      for (let oh = 0; oh < OH; oh++, dyRow += row) {
        const h0 = oh * sh - bh;
        best.fill(-Infinity);
        pos.fill(-1);
        for (let d = Math.max(d0, 0), de = Math.min(d0 + fd, D); d < de; d++) {
          for (let h = Math.max(h0, 0), he = Math.min(h0 + fh, H); h < he; h++) {
            const rowBase = ((n * D + d) * H + h) * W;
            for (let kw = 0; kw < fw; kw++) {
              for (let ow = 0; ow < OW; ow++) {
                const w = ow * sw - bw + kw;
                if (w < 0 || w >= W) continue;
                const at = (rowBase + w) * C;
                const j = ow * C;
                for (let c = 0; c < C; c++) {
                  const v = arr[xAt + at + c] as number;
                  if (v > (best[j + c] as number)) {
                    best[j + c] = v;
                    pos[j + c] = at + c;
                  }
                }
              }
            }
          }
        }
        for (let j = 0; j < row; j++) {
          const p = pos[j] as number;
          if (p < 0) continue;
          const v = arr[dyRow + j] as number;
          if (acc !== undefined) acc[p] = (acc[p] as number) + v;
          else arr[dxAt + p] = v;
        }
      }
    }
  }
  if (acc !== undefined) arr.set(acc, dxAt);
  return out;
}

const dims3 = <T>(xs: readonly T[], fill: T): [T, T, T] => {
  const [a = fill, b = fill, c = fill] = xs.length === 2 ? [fill, ...xs] : xs;
  return [a, b, c];
};

function poolInput(kernel: string, inputs: tf.NamedTensorInfoMap, name: string, rank: number) {
  const t = inputs[name];
  if (t === undefined) fail(kernel, `missing input '${name}'`);
  if (t.shape.length !== rank) {
    fail(kernel, `input '${name}' must be rank ${rank}, got shape [${t.shape}]`);
  }
  return t;
}

const maxPoolGradConfig = heapKernel('MaxPoolGrad', ({ inputs, backend, attrs }) => {
  const k = 'MaxPoolGrad';
  const dy = poolInput(k, inputs, 'dy', 4);
  const x = poolInput(k, inputs, 'input', 4);
  const xShape = x.shape as Shape4;
  const info = tf.backend_util.computePool2DInfo(
    xShape,
    pairAttr(k, attrs, 'filterSize'),
    pairAttr(k, attrs, 'strides'),
    1,
    padAttr(k, attrs),
    roundingAttr(k, attrs),
  );
  return maxPoolGradHeap(k, backend, dy, x, {
    n: xShape[0],
    c: xShape[3],
    inS: [1, xShape[1], xShape[2]],
    outS: dims3(dy.shape.slice(1, 3), 1),
    filter: [1, info.filterHeight, info.filterWidth],
    strides: [1, info.strideHeight, info.strideWidth],
    before: [0, info.padInfo.top, info.padInfo.left],
  });
});

const maxPool3dGradConfig = heapKernel('MaxPool3DGrad', ({ inputs, backend, attrs }) => {
  const k = 'MaxPool3DGrad';
  const dy = poolInput(k, inputs, 'dy', 5);
  const x = poolInput(k, inputs, 'input', 5);
  const xShape = x.shape as Shape5;
  const pad = padAttr(k, attrs);
  if (typeof pad === 'object') fail(k, `attribute 'pad' must be 'same', 'valid' or a number`);
  const [fd = 1, fh = 1, fw = 1] = tupleAttr(k, attrs, 'filterSize', 3);
  const [sd = 1, sh = 1, sw = 1] = tupleAttr(k, attrs, 'strides', 3);
  const info = tf.backend_util.computePool3DInfo(
    xShape,
    [fd, fh, fw],
    [sd, sh, sw],
    1,
    pad,
    roundingAttr(k, attrs),
  );
  return maxPoolGradHeap(k, backend, dy, x, {
    n: xShape[0],
    c: xShape[4],
    inS: [xShape[1], xShape[2], xShape[3]],
    outS: dims3(dy.shape.slice(1, 4), 1),
    filter: [info.filterDepth, info.filterHeight, info.filterWidth],
    strides: [info.strideDepth, info.strideHeight, info.strideWidth],
    before: [info.padInfo.front, info.padInfo.top, info.padInfo.left],
  });
});

// ---------------------------------------------------------------------------------------------
// Conv3DBackpropFilterV2 / Conv3DBackpropInputV2: as the 2D ones, with conv3d (which takes no
// explicit padding, so the input is padded or cropped first).

const conv3dBackpropFilterConfig = opsKernel(
  'Conv3DBackpropFilterV2',
  [
    ['x', 5],
    ['dy', 5],
  ],
  ([x, dy], attrs) => {
    const k = 'Conv3DBackpropFilterV2';
    const xs = x as tf.Tensor5D;
    const filterShape = shape5(shapeAttr(k, attrs, 'filterShape', 5));
    const strides = tupleAttr(k, attrs, 'strides', 3);
    const [sd = 1, sh = 1, sw = 1] = strides;
    const info = tf.backend_util.computeConv3DInfo(
      xs.shape,
      filterShape,
      [sd, sh, sw],
      1,
      samePadAttr(k, attrs),
    );
    const xT = tf.transpose(xs, [4, 1, 2, 3, 0]); // [Cin, D, H, W, N]
    const dyT = tf.transpose(dy as tf.Tensor5D, [1, 2, 3, 0, 4]); // [OD, OH, OW, N, Cout]
    const starts = [info.padInfo.front, info.padInfo.top, info.padInfo.left];
    const pads = [0, 1, 2].map((i) =>
      filterGradPads(
        xT.shape[i + 1] ?? 0,
        dyT.shape[i] ?? 0,
        filterShape[i] ?? 1,
        strides[i] ?? 1,
        1,
        starts[i] ?? 0,
      ),
    );
    const xp = padCrop(xT, [[0, 0], ...pads, [0, 0]]);
    const out = tf.conv3d(xp, dyT, 1, 'valid', 'NDHWC', [sd, sh, sw]); // [Cin, KD, KH, KW, Cout]
    return tf.transpose(out, [1, 2, 3, 0, 4]);
  },
);

const conv3dBackpropInputConfig = opsKernel(
  'Conv3DBackpropInputV2',
  [
    ['dy', 5],
    ['filter', 5],
  ],
  ([dy, filter], attrs) => {
    const k = 'Conv3DBackpropInputV2';
    const f = filter as tf.Tensor5D;
    const dys = dy as tf.Tensor5D;
    const inputShape = shape5(shapeAttr(k, attrs, 'inputShape', 5));
    const strides = tupleAttr(k, attrs, 'strides', 3);
    const [sd = 1, sh = 1, sw = 1] = strides;
    const info = tf.backend_util.computeConv3DInfo(
      inputShape,
      f.shape,
      [sd, sh, sw],
      1,
      samePadAttr(k, attrs),
    );
    const starts = [info.padInfo.front, info.padInfo.top, info.padInfo.left];
    const dyd = interleaveSpatial(dys, strides); // [N, OD*sd, OH*sh, OW*sw, Cout]
    const pads = [0, 1, 2].map((i): Pair => {
      const kk = f.shape[i] ?? 1;
      const b = kk - 1 - (starts[i] ?? 0);
      return [b, (inputShape[i + 1] ?? 0) + kk - 1 - b - (dyd.shape[i + 1] ?? 0)];
    });
    const dyp = padCrop(dyd, [[0, 0], ...pads, [0, 0]]);
    const flipped = tf.transpose(tf.reverse(f, [0, 1, 2]), [0, 1, 2, 4, 3]); // [KD,KH,KW,Cout,Cin]
    return tf.conv3d(dyp, flipped, 1, 'valid');
  },
);

// ---------------------------------------------------------------------------------------------
// Kernels that work on the wasm heap directly: faster replacements of correct but slow wasm
// kernels. They use these parts of tfjs-backend-wasm 4.22's `BackendWasm`: `dataIdMap` (each
// tensor's heap offset and C++ tensor id), `makeOutput`, `typedArrayFromHeap`, `disposeData`,
// `incRef`, `dataIdNextNumber` (the id counter), and of its module `cwrap`, `HEAPU8` and
// `tfjs.registerTensor` / `tfjs.disposeData`. A view (a C++ tensor id registered over part of
// another tensor's buffer, freed with `tfjs.disposeData`, which does not free memory) lets the C++
// kernels read and write one batch entry in place.

/** One tensor's entry in the wasm backend's data map. */
interface WasmData {
  readonly id: number;
  readonly memoryOffset: number;
  readonly shape: readonly number[];
  readonly dtype: tf.DataType;
}

type Cwrapped = (...args: unknown[]) => void;

interface WasmModule {
  readonly HEAPU8: Uint8Array;
  /** The instance's exports; `memory` is the heap's `WebAssembly.Memory`. */
  readonly asm?: { readonly memory?: unknown };
  /** The threaded build's memory: imported (shared), so not among `asm`'s exports. */
  readonly wasmMemory?: unknown;
  _malloc(bytes: number): number;
  _free(offset: number): void;
  cwrap(name: string, ret: null, args: readonly string[]): Cwrapped;
  readonly tfjs: {
    registerTensor(id: number, size: number, memoryOffset: number): void;
    disposeData(id: number): void;
  };
}

/** What the heap kernels need from the backend object they are given. */
interface HeapBackend extends RefCountingBackend {
  readonly wasm: WasmModule;
  readonly dataIdMap: {
    get(dataId: tf.DataId): WasmData | undefined;
    has(dataId: tf.DataId): boolean;
  };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: tf.DataId): boolean;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

function heapBackend(kernel: string, backend: unknown): HeapBackend {
  const b = backend as Partial<HeapBackend> | null;
  const ok =
    typeof b === 'object' &&
    b !== null &&
    typeof b.makeOutput === 'function' &&
    typeof b.typedArrayFromHeap === 'function' &&
    typeof b.disposeData === 'function' &&
    typeof b.incRef === 'function' &&
    typeof b.dataIdNextNumber === 'number' &&
    typeof b.dataIdMap?.get === 'function' &&
    typeof b.dataIdMap.has === 'function' &&
    typeof b.wasm?.cwrap === 'function' &&
    typeof b.wasm._malloc === 'function' &&
    typeof b.wasm._free === 'function' &&
    typeof b.wasm.tfjs?.registerTensor === 'function' &&
    typeof b.wasm.tfjs.disposeData === 'function';
  if (!ok) fail(kernel, 'the backend is not a tfjs-backend-wasm 4.x BackendWasm');
  return b as HeapBackend;
}

function dataOf(kernel: string, be: HeapBackend, t: tf.TensorInfo): WasmData {
  const d = be.dataIdMap.get(t.dataId);
  if (d === undefined) fail(kernel, 'an input has no data on the wasm backend');
  return d;
}

const sizeOf = (shape: readonly number[]): number => shape.reduce((a, d) => a * d, 1);

/** The wasm package's own kernel functions, kept when a replacement takes their place. */
const originals = new Map<string, tf.KernelFunc>();

function original(kernel: string): tf.KernelFunc {
  const f = originals.get(kernel);
  if (f === undefined) fail(kernel, "the wasm package's own kernel was not found");
  return f;
}

/** A raw heap-level kernel config (marked as this module's, installing the replacements). */
function heapKernel(kernelName: string, kernelFunc: tf.KernelFunc): tf.KernelConfig {
  const config: tf.KernelConfig & { [MARK]: true } = {
    kernelName,
    backendName: BACKEND,
    kernelFunc,
    setupFunc: () => installReplacements(),
    [MARK]: true,
  };
  return config;
}

// Slice, Unpack, SplitV. The wasm package's Slice starts with `backend.readSync(x)`, which copies
// the WHOLE input out of the heap (`HEAPU8.slice`) before taking the slice; Unpack and SplitV call
// it once per output, so unstacking T steps copies the input T times (quadratic: unstacking the
// [32, 3, 32, 64] gradient of a 32-step recurrence moved 25 MB). These read the input in place.

type HeapArray = Float32Array | Int32Array | Uint8Array;

/** The dtypes whose data the wasm backend keeps on the heap (strings: the package's kernels). */
const onHeap = (dtype: tf.DataType): boolean =>
  dtype === 'float32' || dtype === 'int32' || dtype === 'bool';

/** The whole heap as elements of `dtype`, and the shift from byte offsets to element indices. */
function heapOf(be: HeapBackend, dtype: tf.DataType): { arr: HeapArray; shift: number } {
  const buf = be.wasm.HEAPU8.buffer;
  if (dtype === 'float32') return { arr: new Float32Array(buf), shift: 2 };
  if (dtype === 'int32') return { arr: new Int32Array(buf), shift: 2 };
  return { arr: new Uint8Array(buf), shift: 0 };
}

/** Copies `n` elements within the heap (short runs element by element: no call per run). */
function copyRun(arr: HeapArray, dst: number, src: number, n: number): void {
  if (n > 32) arr.copyWithin(dst, src, src + n);
  else for (let k = 0; k < n; k++) arr[dst + k] = arr[src + k] as number;
}

/** A tensor's first element, as an index into `heapOf`'s array. */
const start = (be: HeapBackend, t: tf.TensorInfo, shift: number): number =>
  dataOf('heap kernel', be, t).memoryOffset >> shift;

/**
 * Copies the box `begin + [0, size)` of `x` (row-major, `shape`, from heap index `src`) to heap
 * index `dst`: trailing axes that the box spans whole are merged with the last partial one into
 * one contiguous run per copy.
 */
function copyBox(
  arr: HeapArray,
  src: number,
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  dst: number,
): void {
  const rank = shape.length;
  if (rank === 0) {
    copyRun(arr, dst, src, 1);
    return;
  }
  // axes j..rank-1 form one run: every axis after j is spanned whole
  let j = rank - 1;
  while (j > 0 && size[j] === shape[j]) j--;
  let inner = 1;
  for (let i = j + 1; i < rank; i++) inner *= shape[i] ?? 1;
  const run = (size[j] ?? 1) * inner;
  const strides = new Array<number>(j).fill(0);
  let st = (shape[j] ?? 1) * inner;
  for (let i = j - 1; i >= 0; i--) {
    strides[i] = st;
    st *= shape[i] ?? 1;
  }
  const base = src + (begin[j] ?? 0) * inner;
  const rows = sizeOf(size.slice(0, j));
  if (run === 0 || rows === 0) return;
  const idx = new Array<number>(j).fill(0);
  for (let r = 0, o = dst; r < rows; r++, o += run) {
    let off = base;
    for (let i = 0; i < j; i++) off += ((begin[i] ?? 0) + (idx[i] ?? 0)) * (strides[i] ?? 0);
    copyRun(arr, o, off, run);
    for (let i = j - 1; i >= 0; i--) {
      const v = (idx[i] ?? 0) + 1;
      if (v < (size[i] ?? 0)) {
        idx[i] = v;
        break;
      }
      idx[i] = 0;
    }
  }
}

/** Slices of `x`, each `begin_i + [0, size_i)`, as new outputs (made before any heap view). */
function heapSlices(
  be: HeapBackend,
  x: tf.TensorInfo,
  boxes: readonly { begin: number[]; size: number[] }[],
): tf.TensorInfo[] {
  const outs = boxes.map(({ size }) => be.makeOutput(size, x.dtype));
  const { arr, shift } = heapOf(be, x.dtype);
  const src = start(be, x, shift);
  boxes.forEach(({ begin, size }, i) => {
    const out = outs[i] as tf.TensorInfo;
    if (sizeOf(size) > 0) copyBox(arr, src, x.shape, begin, size, start(be, out, shift));
  });
  return outs;
}

/**
 * The inputs side by side along `axis` (all of one dtype, equal shapes but along `axis`), into a
 * new output of `outShape`: for each index of the axes before `axis`, one run per input.
 */
function heapConcat(
  be: HeapBackend,
  inputs: readonly tf.TensorInfo[],
  axis: number,
  outShape: number[],
): tf.TensorInfo {
  const dtype = (inputs[0] as tf.TensorInfo).dtype;
  const out = be.makeOutput(outShape, dtype);
  const outer = sizeOf(outShape.slice(0, axis));
  const parts = inputs
    .map((t) => ({ t, inner: sizeOf(t.shape.slice(axis)) }))
    .filter((p) => p.inner > 0);
  if (outer === 0 || parts.length === 0) return out;
  const { arr, shift } = heapOf(be, dtype);
  let o = start(be, out, shift);
  const srcs = parts.map((p) => start(be, p.t, shift));
  for (let r = 0; r < outer; r++) {
    parts.forEach((p, i) => {
      copyRun(arr, o, (srcs[i] as number) + r * p.inner, p.inner);
      o += p.inner;
    });
  }
  return out;
}

const sliceConfig = heapKernel('Slice', (args) => {
  const { inputs, attrs, backend } = args;
  const x = inputs['x'];
  if (x === undefined) fail('Slice', "missing input 'x'");
  if (!onHeap(x.dtype)) return original('Slice')(args);
  const be = heapBackend('Slice', backend);
  const a = attrs as unknown as { begin: number | number[]; size?: number | number[] };
  const [begin = [], size = []] = tf.slice_util.parseSliceParams(x, a.begin, a.size);
  return heapSlices(be, x, [{ begin, size }])[0] as tf.TensorInfo;
});

const unpackConfig = heapKernel('Unpack', (args) => {
  const { inputs, attrs, backend } = args;
  const x = inputs['value'];
  if (x === undefined) fail('Unpack', "missing input 'value'");
  if (!onHeap(x.dtype)) return original('Unpack')(args);
  const be = heapBackend('Unpack', backend);
  const rank = x.shape.length;
  let axis = (attrs as unknown as { axis: number }).axis;
  if (axis < 0) axis += rank;
  const n = x.shape[axis] ?? 0;
  const outShape = x.shape.filter((_, i) => i !== axis);
  const size = x.shape.map((d, i) => (i === axis ? 1 : d));
  const boxes = Array.from({ length: n }, (_, k) => ({
    begin: x.shape.map((_, i) => (i === axis ? k : 0)),
    size,
  }));
  return heapSlices(be, x, boxes).map(({ dataId, dtype }) => ({ dataId, dtype, shape: outShape }));
});

const splitVConfig = heapKernel('SplitV', (args) => {
  const { inputs, attrs, backend } = args;
  const x = inputs['x'];
  if (x === undefined) fail('SplitV', "missing input 'x'");
  if (!onHeap(x.dtype)) return original('SplitV')(args);
  const be = heapBackend('SplitV', backend);
  const a = attrs as unknown as { numOrSizeSplits: number | number[]; axis: number | number[] };
  const axis = tf.util.parseAxisParam(a.axis, x.shape)[0] ?? 0;
  const sizes = tf.backend_util.prepareSplitSize(x, a.numOrSizeSplits, axis);
  let at = 0;
  const boxes = sizes.map((s) => {
    const begin = x.shape.map((_, i) => (i === axis ? at : 0));
    at += s;
    return { begin, size: x.shape.map((d, i) => (i === axis ? s : d)) };
  });
  return heapSlices(be, x, boxes);
});

// Concat, Pack. The wasm package's copy one run per row and input through `subarray` + `set`
// (a typed-array object per run): concatenating a step's [S, B, F] and [S, B, H] took ~100 us.
// These copy short runs element by element and long ones with `copyWithin`, within the heap.

const concatConfig = heapKernel('Concat', (args) => {
  const { inputs, attrs, backend } = args;
  const list = Object.values(inputs).filter((t): t is tf.TensorInfo => t !== undefined);
  const first = list[0];
  if (first === undefined) fail('Concat', 'no inputs');
  if (!onHeap(first.dtype)) return original('Concat')(args);
  const be = heapBackend('Concat', backend);
  const a = attrs as unknown as { axis: number | number[] };
  const axis = tf.util.parseAxisParam(a.axis, first.shape)[0] ?? 0;
  const shapes = list.map((t) => t.shape);
  tf.backend_util.assertParamsConsistent(shapes, axis);
  const outShape = tf.backend_util.computeOutShape(shapes, axis);
  const nonEmpty = list.filter((t) => sizeOf(t.shape) > 0);
  if (nonEmpty.length === 1) {
    const x = nonEmpty[0] as tf.TensorInfo;
    be.incRef(x.dataId);
    return { dataId: x.dataId, shape: outShape, dtype: x.dtype };
  }
  return heapConcat(be, list, axis, outShape);
});

const packConfig = heapKernel('Pack', (args) => {
  const { inputs, attrs, backend } = args;
  const list = Object.values(inputs).filter((t): t is tf.TensorInfo => t !== undefined);
  const first = list[0];
  if (first === undefined) fail('Pack', 'no inputs');
  if (!onHeap(first.dtype)) return original('Pack')(args);
  const be = heapBackend('Pack', backend);
  const rank = first.shape.length;
  let axis = (attrs as unknown as { axis: number }).axis;
  if (axis < 0) axis += rank + 1;
  for (const t of list) {
    tf.util.assertShapesMatch(
      first.shape,
      t.shape,
      'All tensors passed to stack must have matching shapes',
    );
    tf.util.assert(
      t.dtype === first.dtype,
      () => 'All tensors passed to stack must have matching dtypes',
    );
  }
  const outShape = [...first.shape.slice(0, axis), list.length, ...first.shape.slice(axis)];
  if (list.length === 1) {
    be.incRef(first.dataId);
    return { dataId: first.dataId, shape: outShape, dtype: first.dtype };
  }
  return heapConcat(be, list, axis, outShape);
});

// Tanh. The wasm package's is a scalar loop over C's float `tanhf` (~16 ns an element, up to 2 ulp
// from the exact value). This one evaluates Eigen's rational approximation of tanh (numerator of
// degree 13, denominator 6; `generic_fast_tanh_float`) in double precision, ~4 ns an element:
// relative error <= 1.3e-7 (<= 3 ulp of float32; 80% of values round exactly as `Math.tanh`, the
// cpu backend's). Beyond |x| = 7.9, where the approximation was not fitted, `1 - 2 exp(-2|x|)`;
// below |x| = 4e-4, x.
const T1 = 4.89352455891786e-3;
const T3 = 6.37261928875436e-4;
const T5 = 1.48572235717979e-5;
const T7 = 5.12229709037114e-8;
const T9 = -8.60467152213735e-11;
const T11 = 2.00018790482477e-13;
const T13 = -2.76076847742355e-16;
const U0 = 4.89352518554385e-3;
const U2 = 2.268434632439e-3;
const U4 = 1.18534705686654e-4;
const U6 = 1.19825839466702e-6;

/** tanh(x) to float32 accuracy (see above). */
function fastTanh(x: number): number {
  const x2 = x * x;
  // tanh x = x (1 - x^2 / 3 + ...): x to float32 precision
  if (x2 < 1.6e-7) return x;
  if (!(x2 <= 62.41)) {
    if (x !== x) return x; // NaN
    return x > 0 ? 1 - 2 * Math.exp(-2 * x) : 2 * Math.exp(2 * x) - 1;
  }
  const p = x * (T1 + x2 * (T3 + x2 * (T5 + x2 * (T7 + x2 * (T9 + x2 * (T11 + x2 * T13))))));
  return p / (U0 + x2 * (U2 + x2 * (U4 + x2 * U6)));
}

const tanhConfig = heapKernel('Tanh', (args) => {
  const { inputs, backend } = args;
  const x = inputs['x'];
  if (x === undefined) fail('Tanh', "missing input 'x'");
  if (x.dtype !== 'float32') return original('Tanh')(args);
  const be = heapBackend('Tanh', backend);
  const out = be.makeOutput([...x.shape], 'float32');
  const { arr } = heapOf(be, 'float32');
  const src = start(be, x, 2);
  const dst = start(be, out, 2);
  for (let i = 0, n = sizeOf(x.shape); i < n; i++) arr[dst + i] = fastTanh(arr[src + i] as number);
  return out;
});

// Sum. The wasm package's Sum moves the reduced axes last with its Transpose kernel first, which
// above rank 4 is an index-arithmetic loop: summing the sample axis of a [3, 5, 5, 6, 16] kernel
// gradient took 0.7 ms for 7200 outputs. A float32 sum over LEADING axes (the samples, the batch)
// into at least 16 outputs is one pass over the heap here (0.07 ms for that one), accumulated in
// float64 as the cpu backend does (then rounded to float32 once). Everything else goes to the
// package's kernel, which is fast where no transpose is needed (trailing axes) or the outputs
// are few (a short inner loop in JS costs more than its transpose). An empty sum is zeros here:
// the package's kernel leaves its output uninitialised.
const sumConfig = heapKernel('Sum', (args) => {
  const { inputs, backend, attrs } = args;
  const x = inputs['x'];
  if (x === undefined) fail('Sum', "missing input 'x'");
  if (x.dtype !== 'float32') return original('Sum')(args);
  const { axis, keepDims } = attrs as unknown as { axis: number | number[]; keepDims: boolean };
  const axes = tf.util.parseAxisParam(axis, [...x.shape]).sort((p, q) => p - q);
  const n = axes.length;
  const prefix = axes.every((a, i) => a === i);
  const kept = sizeOf(x.shape.filter((_, i) => !axes.includes(i)));
  const reduced = sizeOf(axes.map((a) => x.shape[a] ?? 1));
  // (the package's kernel leaves the output of an empty sum uninitialised)
  if (reduced !== 0 && (!prefix || n === 0 || kept < 16)) return original('Sum')(args);
  const be = heapBackend('Sum', backend);
  const outShape = keepDims
    ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d))
    : x.shape.filter((_, i) => !axes.includes(i));
  const out = be.makeOutput(outShape, 'float32');
  const { arr } = heapOf(be, 'float32');
  const src = start(be, x, 2);
  const dst = start(be, out, 2);
  if (reduced === 0) {
    arr.fill(0, dst, dst + kept);
    return out;
  }
  const acc = new Float64Array(kept);
  for (let i = 0; i < reduced; i++) {
    const row = src + i * kept;
    for (let j = 0; j < kept; j++) acc[j] = (acc[j] as number) + (arr[row + j] as number);
  }
  arr.set(acc, dst);
  return out;
});

// Identity. The wasm package's Identity copies the data; tensors are immutable, so the cpu
// backend's (one more reference to the same data) is enough. tfjs clones every tensor it saves
// for a gradient (and `Cast`'s gradient is a clone), so on wasm each saved tensor was a copy.
const identityConfig = heapKernel('Identity', ({ inputs, backend }) => {
  const x = inputs['x'];
  if (x === undefined) fail('Identity', "missing input 'x'");
  if (!hasIncRef(backend)) fail('Identity', 'the backend has no incRef(dataId)');
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
});

// BatchMatMul. tfjs-backend-wasm 4.22 (src/cc/batch_mat_mul_impl.cc, `fused_batch_mat_mul`)
// calls XNNPACK's fully-connected operator only when both operands have batch 1 and neither is
// transposed; every other case (any batch > 1, transposeA or transposeB, so every matMul in a
// gradient) runs `slow_batch_matmul`, a scalar blocked triple loop that walks `b` by columns:
// ~1.5-3 GFLOP/s against XNNPACK's ~30. This kernel transposes a transposed operand explicitly
// (the wasm Transpose kernel, linear in its size), then runs XNNPACK on contiguous 2-D blocks: a
// batched `a` against a shared `b` as one `[batch * M, K] x [K, N]` product, otherwise one product
// per batch entry on views of the operands and the output.
//
// XNNPACK packs `b` (the weights of its fully-connected operator) when the operator is created
// and caches the operator by the C++ id of `b`, until that id is disposed. A `b` that is used
// again (the recurrent weights at every step of a sequence, forward and backward) keeps its batch
// entries (transposed if need be, in a buffer outside the tensor store) as ids in a small cache, so
// that each is transposed and packed once instead of at every call: a `b` enters the cache the
// second time it is seen, the least recently used of `B_CACHE_SIZE` entries is evicted, and an
// entry whose tensor has been disposed is released at the next call (tensors are immutable: a live
// data id always has the same values).

/** The wasm module's C functions that the heap kernels call. */
interface WasmFns {
  readonly fusedMatMul: Cwrapped;
  readonly transpose: Cwrapped;
  readonly sigmoid: Cwrapped;
}

const wasmFns = new WeakMap<WasmModule, WasmFns>();

function wasmFunctions(be: HeapBackend): WasmFns {
  let f = wasmFns.get(be.wasm);
  if (f === undefined) {
    const n = 'number';
    const arr = 'array';
    f = {
      fusedMatMul: be.wasm.cwrap('_FusedMatMul', null, [n, arr, n, n, arr, n, n, n, n, n, n, n, n]),
      transpose: be.wasm.cwrap('Transpose', null, [n, arr, n, n, n, arr, n]),
      sigmoid: be.wasm.cwrap('Sigmoid', null, [n, n]),
    };
    wasmFns.set(be.wasm, f);
  }
  return f;
}

const int32Bytes = (xs: readonly number[]): Uint8Array => new Uint8Array(new Int32Array(xs).buffer);

/** A C++ tensor id over `size` floats of the heap at byte `offset` (dispose with `dropView`). */
function view(be: HeapBackend, offset: number, size: number): number {
  const id = be.dataIdNextNumber++;
  be.wasm.tfjs.registerTensor(id, size, offset);
  return id;
}

const dropView = (be: HeapBackend, id: number): void => be.wasm.tfjs.disposeData(id);

/** `[batch, r, c] -> [batch, c, r]` of the float32 buffer `id` into the buffer `outId`. */
function transposeInto(
  be: HeapBackend,
  id: number,
  batch: number,
  r: number,
  c: number,
  outId: number,
) {
  const shape = batch === 1 ? [r, c] : [batch, r, c];
  const perm = batch === 1 ? [1, 0] : [0, 2, 1];
  const { transpose } = wasmFunctions(be);
  transpose(id, int32Bytes(shape), shape.length, 0, outId, int32Bytes(perm), perm.length);
}

/** `[batch, r, c] -> [batch, c, r]` of a float32 buffer, as a new output. */
function transposeLast2(be: HeapBackend, id: number, batch: number, r: number, c: number) {
  const out = be.makeOutput([batch, c, r], 'float32');
  transposeInto(be, id, batch, r, c, (be.dataIdMap.get(out.dataId) as WasmData).id);
  return out;
}

/** A cached `b`: one id per batch entry, over the tensor or over `raw` (its transpose). */
interface BEntry {
  readonly wasm: WasmModule;
  readonly dataId: tf.DataId;
  readonly key: string;
  readonly ids: readonly number[];
  /** Heap offset of the transposed copy (0: none). */
  readonly raw: number;
}

const B_CACHE_SIZE = 8;
/** Most recently used first. */
let bCache: BEntry[] = [];
/** The `b` operands seen once (data id and key), most recent first: candidates for the cache. */
let bSeen: { readonly dataId: tf.DataId; readonly key: string }[] = [];

function releaseB(e: BEntry): void {
  for (const id of e.ids) e.wasm.tfjs.disposeData(id);
  if (e.raw !== 0) e.wasm._free(e.raw);
}

/** Releases the entries whose tensor is gone (entries of another, disposed, module are dropped). */
function sweepB(be: HeapBackend): void {
  bCache = bCache.filter((e) => {
    if (e.wasm !== be.wasm) return false;
    if (be.dataIdMap.has(e.dataId)) return true;
    releaseB(e);
    return false;
  });
  bSeen = bSeen.filter((e) => be.dataIdMap.has(e.dataId));
}

/** The cached ids of `b`'s untransposed `[K, N]` batch entries, or undefined (not cached). */
function cachedB(
  be: HeapBackend,
  b: tf.TensorInfo,
  batchB: number,
  K: number,
  N: number,
  transposeB: boolean,
): readonly number[] | undefined {
  sweepB(be);
  const key = `${batchB},${K},${N},${transposeB}`;
  const at = bCache.findIndex((e) => e.dataId === b.dataId && e.key === key);
  if (at >= 0) {
    const e = bCache[at] as BEntry;
    if (at > 0) bCache = [e, ...bCache.slice(0, at), ...bCache.slice(at + 1)];
    return e.ids;
  }
  const seen = bSeen.findIndex((e) => e.dataId === b.dataId && e.key === key);
  if (seen < 0) {
    bSeen = [{ dataId: b.dataId, key }, ...bSeen.slice(0, B_CACHE_SIZE - 1)];
    return undefined;
  }
  bSeen = bSeen.filter((_, i) => i !== seen);
  const d = dataOf('BatchMatMul', be, b);
  const size = K * N;
  let base = d.memoryOffset;
  let raw = 0;
  if (transposeB) {
    raw = be.wasm._malloc(batchB * size * 4) >>> 0;
    const rawId = view(be, raw, batchB * size);
    transposeInto(be, d.id, batchB, N, K, rawId);
    dropView(be, rawId);
    base = raw;
  }
  const ids = Array.from({ length: batchB }, (_, j) => view(be, base + j * size * 4, size));
  bCache = [{ wasm: be.wasm, dataId: b.dataId, key, ids, raw }, ...bCache];
  while (bCache.length > B_CACHE_SIZE) releaseB(bCache.pop() as BEntry);
  return ids;
}

/** The SIMD heap kernels over this backend's memory (undefined: not available, e.g. no SIMD). */
function heapSimdOf(be: HeapBackend): HeapSimd | undefined {
  const memory = be.wasm.asm?.memory ?? be.wasm.wasmMemory;
  return memory instanceof WebAssembly.Memory ? heapSimd(memory) : undefined;
}

/** XNNPACK's output clamp for an activation of `_FusedMatMul` (tfjs's `FusableActivation` codes). */
const CLAMPED_ACTIVATIONS: Readonly<Record<string, number>> = { linear: 0, relu: 1, relu6: 2 };

/** A bias and clamp fused into the products: `bias` is `[N]` for all, or one `[N]` per entry. */
interface Epilogue {
  readonly bias: tf.TensorInfo | undefined;
  readonly perEntry: boolean;
  readonly activation: number;
}

/**
 * `a @ b` (+ bias, clamped) on the heap, `[...outer, M, N]`; see the section comment. `epilogue`
 * (from `_FusedMatMul`) adds a bias of `N` values (shared) or of `[batch, 1, N]` (one row per batch
 * entry) and applies relu / relu6, inside XNNPACK's fully-connected operator.
 */
function matMulHeap(
  k: string,
  be: HeapBackend,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  epilogue?: Epilogue,
): tf.TensorInfo {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new Error(`${k} for non non-float32 tensors not yet supported.`);
  }
  const ra = a.shape.length;
  const rb = b.shape.length;
  const K = (transposeA ? a.shape[ra - 2] : a.shape[ra - 1]) ?? 0;
  const kb = (transposeB ? b.shape[rb - 1] : b.shape[rb - 2]) ?? 0;
  const M = (transposeA ? a.shape[ra - 1] : a.shape[ra - 2]) ?? 0;
  const N = (transposeB ? b.shape[rb - 2] : b.shape[rb - 1]) ?? 0;
  const batchA = sizeOf(a.shape.slice(0, -2));
  const batchB = sizeOf(b.shape.slice(0, -2));
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(
    a.shape.slice(0, -2),
    b.shape.slice(0, -2),
  );
  tf.util.assert(
    K === kb,
    () =>
      `Error in matMul: inner shapes (${K}) and (${kb}) of Tensors with shapes ${a.shape} and ` +
      `${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
  );
  const batch = Math.max(batchA, batchB);
  const out = be.makeOutput([batch, M, N], 'float32');
  const outShape = [...outer, M, N];
  if (batch * M * N === 0) return { ...out, shape: outShape };
  const bias = epilogue?.bias;
  const activation = epilogue?.activation ?? 0;
  if (K === 0) {
    const o = be.typedArrayFromHeap(out) as Float32Array;
    if (bias === undefined) o.fill(0);
    else {
      const bv = be.typedArrayFromHeap(bias) as Float32Array;
      const lo = activation === 0 ? -Infinity : 0;
      const hi = activation === 2 ? 6 : Infinity;
      for (let i = 0; i < batch; i++) {
        const at = epilogue?.perEntry === true ? i * N : 0;
        for (let m = 0; m < M; m++) {
          for (let j = 0; j < N; j++) {
            o[(i * M + m) * N + j] = Math.min(Math.max(bv[at + j] as number, lo), hi);
          }
        }
      }
    }
    return { ...out, shape: outShape };
  }
  const temps: tf.TensorInfo[] = [];
  const views: number[] = [];
  // a as a contiguous, untransposed [batchA, M, K] buffer
  let dA = dataOf(k, be, a);
  if (transposeA) {
    const tt = transposeLast2(be, dA.id, batchA, K, M);
    temps.push(tt);
    dA = dataOf(k, be, tt);
  }
  const simd = N === 1 ? heapSimdOf(be) : undefined;
  if (simd !== undefined) {
    // one output column: the SIMD matrix-vector product (XNNPACK's tiles of 8 columns would do
    // 8x the work); b [K, 1] and its transpose [1, K] are the same K values
    const dB = dataOf(k, be, b);
    const O = dataOf(k, be, out);
    const bo = bias === undefined ? 0 : dataOf(k, be, bias).memoryOffset;
    const lo = activation === 0 ? -Infinity : 0;
    const hi = activation === 2 ? 6 : Infinity;
    const each = epilogue?.perEntry === true && batch > 1;
    for (let i = 0; i < batch; i++) {
      simd.matVec(
        dA.memoryOffset + (i % batchA) * M * K * 4,
        dB.memoryOffset + (i % batchB) * K * 4,
        O.memoryOffset + i * M * 4,
        M,
        K,
        bias === undefined ? 0 : bo + (each ? i * 4 : 0),
        lo,
        hi,
        0,
      );
    }
    for (const t of temps) be.disposeData(t.dataId);
    return { ...out, shape: outShape };
  }
  // b's batch entries as untransposed [K, N] buffers
  let bIds: readonly number[] | undefined =
    batchB > 1 || transposeB ? cachedB(be, b, batchB, K, N, transposeB) : undefined;
  if (bIds === undefined) {
    let dB = dataOf(k, be, b);
    if (transposeB) {
      const tt = transposeLast2(be, dB.id, batchB, N, K);
      temps.push(tt);
      dB = dataOf(k, be, tt);
    }
    const { id, memoryOffset } = dB;
    bIds =
      batchB === 1
        ? [id]
        : Array.from({ length: batchB }, (_, j) => {
            const v = view(be, memoryOffset + j * K * N * 4, K * N);
            views.push(v);
            return v;
          });
  }
  // the bias: one id for all products, or one view per batch entry
  const dBias = bias === undefined ? undefined : dataOf(k, be, bias);
  const perEntry = epilogue?.perEntry === true && batch > 1;
  const biasIds: readonly number[] =
    dBias === undefined
      ? [0]
      : perEntry
        ? Array.from({ length: batch }, (_, i) => {
            const v = view(be, dBias.memoryOffset + i * N * 4, N);
            views.push(v);
            return v;
          })
        : [dBias.id];
  const O = dataOf(k, be, out);
  const { fusedMatMul } = wasmFunctions(be);
  const run = (aId: number, rows: number, bId: number, oId: number, biasId: number): void =>
    fusedMatMul(
      aId,
      int32Bytes([1, rows, K]),
      3,
      bId,
      int32Bytes([1, K, N]),
      3,
      false,
      false,
      activation,
      biasId,
      0,
      0,
      oId,
    );
  if (batchB === 1 && !perEntry) {
    // [batch * M, K] x [K, N]: the batch entries of a are consecutive rows
    run(dA.id, batch * M, bIds[0] as number, O.id, biasIds[0] as number);
  } else {
    for (let i = 0; i < batch; i++) {
      const ai = batchA === 1 ? dA.id : view(be, dA.memoryOffset + (i % batchA) * M * K * 4, M * K);
      const oi = view(be, O.memoryOffset + i * M * N * 4, M * N);
      run(ai, M, bIds[i % batchB] as number, oi, biasIds[perEntry ? i : 0] as number);
      if (ai !== dA.id) dropView(be, ai);
      dropView(be, oi);
    }
  }
  for (const v of views) dropView(be, v);
  for (const t of temps) be.disposeData(t.dataId);
  return { ...out, shape: outShape };
}

const batchMatMulConfig = heapKernel('BatchMatMul', ({ inputs, backend, attrs }) => {
  const k = 'BatchMatMul';
  const be = heapBackend(k, backend);
  const a = inputs['a'];
  const b = inputs['b'];
  if (a === undefined || b === undefined) fail(k, "missing input 'a' or 'b'");
  const { transposeA, transposeB } = attrs as unknown as {
    transposeA: boolean;
    transposeB: boolean;
  };
  return matMulHeap(k, be, a, b, transposeA, transposeB);
});

// _FusedMatMul (tf.fused.matMul: a product, a bias, an activation). The wasm package's takes only
// a rank-1 bias and, like its BatchMatMul, runs the scalar loop for every batched or transposed
// product. This one runs the products above with the bias and a relu / relu6 clamp inside
// XNNPACK's operator (no pass over the output to add a bias or clamp it): a bias of `N` values, or
// one row per batch entry (`[..., batch, 1, N]`, the layout of a bias per posterior sample). Any
// other bias shape and the activations XNNPACK cannot clamp (prelu, leakyrelu, sigmoid, elu) are
// computed as the product above followed by tfjs ops.

/** How the bias of a `_FusedMatMul` meets the output `[...outer, M, N]`, or undefined (other). */
function biasLayout(bias: tf.TensorInfo, outer: readonly number[], N: number): boolean | undefined {
  const s = bias.shape;
  if (sizeOf(s) === N && (s.length === 0 ? N === 1 : s[s.length - 1] === N)) return false;
  const batch = sizeOf([...outer]);
  if (
    s.length >= 2 &&
    s[s.length - 1] === N &&
    s[s.length - 2] === 1 &&
    sizeOf(s.slice(0, -2)) === batch &&
    s.slice(0, -2).join() === outer.slice(outer.length - (s.length - 2)).join() &&
    outer.slice(0, outer.length - (s.length - 2)).every((d) => d === 1)
  ) {
    return true;
  }
  return undefined;
}

const fusedMatMulConfig = heapKernel('_FusedMatMul', ({ inputs, backend, attrs }) => {
  const k = '_FusedMatMul';
  const be = heapBackend(k, backend);
  const a = inputs['a'];
  const b = inputs['b'];
  if (a === undefined || b === undefined) fail(k, "missing input 'a' or 'b'");
  const { transposeA, transposeB, activation, leakyreluAlpha } = attrs as unknown as {
    transposeA: boolean;
    transposeB: boolean;
    activation: string;
    leakyreluAlpha?: number;
  };
  const bias = inputs['bias'];
  const prelu = inputs['preluActivationWeights'];
  const rb = b.shape.length;
  const N = (transposeB ? b.shape[rb - 2] : b.shape[rb - 1]) ?? 0;
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(
    a.shape.slice(0, -2),
    b.shape.slice(0, -2),
  );
  const clamp = CLAMPED_ACTIVATIONS[activation];
  const layout = bias === undefined ? false : biasLayout(bias, outer, N);
  if (clamp !== undefined && layout !== undefined) {
    return matMulHeap(k, be, a, b, transposeA, transposeB, {
      bias,
      perEntry: layout,
      activation: clamp,
    });
  }
  // the general case: the product, then the bias and the activation as ops
  const product = matMulHeap(k, be, a, b, transposeA, transposeB);
  const result = tf.tidy(() => {
    const t = tf.engine().makeTensorFromTensorInfo(product);
    const asTensor = (info: tf.TensorInfo): tf.Tensor => {
      const x = tf.engine().makeTensorFromTensorInfo(info);
      be.incRef(info.dataId);
      return x;
    };
    let y: tf.Tensor = bias === undefined ? t : tf.add(t, asTensor(bias));
    if (activation === 'relu') y = tf.relu(y);
    else if (activation === 'relu6') y = tf.relu6(y);
    else if (activation === 'elu') y = tf.elu(y);
    else if (activation === 'sigmoid') y = tf.sigmoid(y);
    else if (activation === 'leakyrelu') y = tf.leakyRelu(y, leakyreluAlpha ?? 0.2);
    else if (activation === 'prelu') {
      if (prelu === undefined) fail(k, "activation 'prelu' needs 'preluActivationWeights'");
      y = tf.prelu(y, asTensor(prelu));
    } else if (activation !== 'linear') fail(k, `unknown activation '${activation}'`);
    return y === t ? tf.clone(t) : y;
  });
  be.disposeData(product.dataId);
  be.incRef(result.dataId);
  const info: tf.TensorInfo = { dataId: result.dataId, shape: result.shape, dtype: result.dtype };
  result.dispose();
  return info;
});

// ---------------------------------------------------------------------------------------------
// Fused recurrent cells (src/layers/rnn.ts runs them on wasm): the elementwise part of one LSTM or
// GRU step, forward and backward, as one kernel instead of ~10 tfjs ops. The gate pre-activations
// `pre [S, B, 4H]` (gate blocks of H columns) come from the step's matMul. The forward, where H is
// a multiple of 4 and WebAssembly SIMD is there, is heapSimd's lstmCellFwd / gruCellFwd (float32,
// 4 columns at a time, sigmoid and tanh within ~2 ulp; 8.6 -> 2.6 ms for the 32 steps of the LSTM
// benchmark's train step); otherwise the sigmoids are the wasm package's (XNNPACK), the tanhs
// `fastTanh`, the rest a loop over the heap in double precision, each stored value rounded to
// float32. The backward is that loop.
//
//   BlitzLSTMCell     {pre, c, x?} -> [h, c, act [5, S, B, H] (i, f, g, o, tanh c), a?, aT?]
//   BlitzLSTMCellGrad {dy, dh?, dc, act, cPrev} -> [dpre [S, B, 4H], dcPrev]
//   BlitzGRUCell      {pre, h, x?} -> [h, act [4, S, B, H] (r, z, n, h U_n + b_hn), a?, aT?]
//   BlitzGRUCellGrad  {dy, dh?, dhz?, act, hPrev} -> [dpre, dhz = dh * z]
//
// `x [S, B, F']` given: `a = [x, h]`, the next step's matMul input, and with the attribute
// `transposed: true` also `aT`, its transpose `[S, F' + H, B]` (the weight gradient's operand, built
// step by step while it is in cache: transposing all steps at once costs ~7 ns an element, mostly
// cache misses). `dh`, `dhz`: gradient parts of
// the step's output h added to `dy` (the recurrent `dpre W_hh^T` of the step after, and the GRU's
// direct `dh z` of the step after). Not differentiable (the recurrence's gradient calls the grad
// kernels).

const fround = Math.fround;

/** Element index of a float32 tensor in `heapOf(be, 'float32').arr`. */
const f32At = (be: HeapBackend, t: tf.TensorInfo | undefined): number =>
  t === undefined ? -1 : start(be, t, 2);

/** The float32 inputs of a cell kernel, checked: `pre`-like `[S, B, 4H]` and `[S, B, H]` ones. */
function cellInputs(
  kernel: string,
  inputs: tf.NamedTensorInfoMap,
  wide: string,
  names: readonly string[],
): { S: number; B: number; H: number } {
  const w = inputs[wide];
  if (w === undefined || w.shape.length !== 3) fail(kernel, `input '${wide}' must be rank 3`);
  const [S = 0, B = 0, G = 0] = w.shape;
  const H = G / 4;
  for (const n of names) {
    const t = inputs[n];
    if (t === undefined) continue;
    if (t.dtype !== 'float32') fail(kernel, `input '${n}' must be float32`);
  }
  return { S, B, H };
}

/** `sigmoid(pre)` into a scratch output (dispose it). */
function scratchSigmoid(be: HeapBackend, pre: tf.TensorInfo): tf.TensorInfo {
  const sig = be.makeOutput([...pre.shape], 'float32');
  wasmFunctions(be).sigmoid(dataOf('cell', be, pre).id, dataOf('cell', be, sig).id);
  return sig;
}

/** Writes `a = [x, h]` row by row (x `[n, F']`, h `[n, H]`). */
/**
 * Writes `a = [x, h]` row by row (x `[S, B, F']`, h `[S, B, H]`) and, at `aT >= 0`, its transpose
 * per sample `[S, F' + H, B]`.
 */
function writeA(
  arr: HeapArray,
  [a, aT]: readonly [number, number],
  x: number,
  h: number,
  [S, B, F, H]: readonly [number, number, number, number],
): void {
  const K = F + H;
  for (let r = 0; r < S * B; r++) {
    copyRun(arr, a + r * K, x + r * F, F);
    copyRun(arr, a + r * K + F, h + r * H, H);
  }
  if (aT < 0) return;
  for (let s = 0; s < S; s++) {
    const src = a + s * B * K;
    const dst = aT + s * K * B;
    for (let b = 0; b < B; b++)
      for (let k = 0; k < K; k++) arr[dst + k * B + b] = arr[src + b * K + k] as number;
  }
}

/** The outputs `a` and (attribute `transposed`) `aT` of a cell kernel given `x`. */
function aOutputs(
  be: HeapBackend,
  x: tf.TensorInfo | undefined,
  attrs: tf.NamedAttrMap | undefined,
  [S, B, H]: readonly [number, number, number],
): tf.TensorInfo[] {
  if (x === undefined) return [];
  const K = (x.shape[2] ?? 0) + H;
  const a = be.makeOutput([S, B, K], 'float32');
  return attrs?.['transposed'] === true ? [a, be.makeOutput([S, K, B], 'float32')] : [a];
}

const lstmCellConfig = heapKernel('BlitzLSTMCell', ({ inputs, backend, attrs }) => {
  const k = 'BlitzLSTMCell';
  const be = heapBackend(k, backend);
  const { S, B, H } = cellInputs(k, inputs, 'pre', ['pre', 'c', 'x']);
  const n = S * B;
  const pre = inputs['pre'] as tf.TensorInfo;
  const x = inputs['x'];
  const F = x ? (x.shape[2] ?? 0) : 0;
  const h = be.makeOutput([S, B, H], 'float32');
  const c = be.makeOutput([S, B, H], 'float32');
  const act = be.makeOutput([5, S, B, H], 'float32');
  const as = aOutputs(be, x, attrs, [S, B, H]);
  const simd = H % 4 === 0 ? heapSimdOf(be) : undefined;
  if (simd) {
    const at = (t: tf.TensorInfo | undefined) => 4 * f32At(be, t);
    simd.lstmCellFwd(at(pre), at(inputs['c']), at(h), at(c), at(act), n, 4 * H);
    if (x) {
      const { arr } = heapOf(be, 'float32');
      writeA(arr, [f32At(be, as[0]), f32At(be, as[1])], f32At(be, x), f32At(be, h), [S, B, F, H]);
    }
    return [h, c, act, ...as];
  }
  const sig = scratchSigmoid(be, pre);
  const { arr } = heapOf(be, 'float32');
  const [P, SG, C0, HO, CO, A] = [pre, sig, inputs['c'], h, c, act].map((t) => f32At(be, t)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const m = n * H;
  for (let r = 0; r < n; r++) {
    const g4 = r * 4 * H;
    for (let j = 0; j < H; j++) {
      const e = r * H + j;
      const i = arr[SG + g4 + j] as number;
      const f = arr[SG + g4 + H + j] as number;
      const g = fround(fastTanh(arr[P + g4 + 2 * H + j] as number));
      const o = arr[SG + g4 + 3 * H + j] as number;
      const cn = fround(f * (arr[C0 + e] as number) + i * g);
      const tc = fround(fastTanh(cn));
      arr[CO + e] = cn;
      arr[HO + e] = o * tc;
      arr[A + e] = i;
      arr[A + m + e] = f;
      arr[A + 2 * m + e] = g;
      arr[A + 3 * m + e] = o;
      arr[A + 4 * m + e] = tc;
    }
  }
  if (x) writeA(arr, [f32At(be, as[0]), f32At(be, as[1])], f32At(be, x), HO, [S, B, F, H]);
  be.disposeData(sig.dataId);
  return [h, c, act, ...as];
});

const lstmCellGradConfig = heapKernel('BlitzLSTMCellGrad', ({ inputs, backend }) => {
  const k = 'BlitzLSTMCellGrad';
  const be = heapBackend(k, backend);
  const dy = inputs['dy'];
  if (dy === undefined || dy.shape.length !== 3) fail(k, "input 'dy' must be rank 3");
  const [S = 0, B = 0, H = 0] = dy.shape;
  const n = S * B;
  const dpre = be.makeOutput([S, B, 4 * H], 'float32');
  const dcPrev = be.makeOutput([S, B, H], 'float32');
  const { arr } = heapOf(be, 'float32');
  const DY = f32At(be, dy);
  const DH = f32At(be, inputs['dh']);
  const DC = f32At(be, inputs['dc']);
  const A = f32At(be, inputs['act']);
  const CP = f32At(be, inputs['cPrev']);
  const DP = f32At(be, dpre);
  const DCP = f32At(be, dcPrev);
  const m = n * H;
  for (let r = 0; r < n; r++) {
    const g4 = r * 4 * H;
    for (let j = 0; j < H; j++) {
      const e = r * H + j;
      const dh = (arr[DY + e] as number) + (DH < 0 ? 0 : (arr[DH + e] as number));
      const i = arr[A + e] as number;
      const f = arr[A + m + e] as number;
      const g = arr[A + 2 * m + e] as number;
      const o = arr[A + 3 * m + e] as number;
      const tc = arr[A + 4 * m + e] as number;
      const dc = (arr[DC + e] as number) + dh * o * (1 - tc * tc);
      arr[DP + g4 + j] = dc * g * i * (1 - i);
      arr[DP + g4 + H + j] = dc * (arr[CP + e] as number) * f * (1 - f);
      arr[DP + g4 + 2 * H + j] = dc * i * (1 - g * g);
      arr[DP + g4 + 3 * H + j] = dh * tc * o * (1 - o);
      arr[DCP + e] = dc * f;
    }
  }
  return [dpre, dcPrev];
});

const gruCellConfig = heapKernel('BlitzGRUCell', ({ inputs, backend, attrs }) => {
  const k = 'BlitzGRUCell';
  const be = heapBackend(k, backend);
  const { S, B, H } = cellInputs(k, inputs, 'pre', ['pre', 'h', 'x']);
  const n = S * B;
  const pre = inputs['pre'] as tf.TensorInfo;
  const x = inputs['x'];
  const F = x ? (x.shape[2] ?? 0) : 0;
  const h = be.makeOutput([S, B, H], 'float32');
  const act = be.makeOutput([4, S, B, H], 'float32');
  const as = aOutputs(be, x, attrs, [S, B, H]);
  const simd = H % 4 === 0 ? heapSimdOf(be) : undefined;
  if (simd) {
    const at = (t: tf.TensorInfo | undefined) => 4 * f32At(be, t);
    simd.gruCellFwd(at(pre), at(inputs['h']), at(h), at(act), n, 4 * H);
    if (x) {
      const { arr } = heapOf(be, 'float32');
      writeA(arr, [f32At(be, as[0]), f32At(be, as[1])], f32At(be, x), f32At(be, h), [S, B, F, H]);
    }
    return [h, act, ...as];
  }
  const sig = scratchSigmoid(be, pre);
  const { arr } = heapOf(be, 'float32');
  const [P, SG, H0, HO, A] = [pre, sig, inputs['h'], h, act].map((t) => f32At(be, t)) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const m = n * H;
  for (let r = 0; r < n; r++) {
    const g4 = r * 4 * H;
    for (let j = 0; j < H; j++) {
      const e = r * H + j;
      const rr = arr[SG + g4 + j] as number;
      const z = arr[SG + g4 + H + j] as number;
      const pn = arr[P + g4 + 3 * H + j] as number;
      const nn = fround(fastTanh(fround((arr[P + g4 + 2 * H + j] as number) + fround(rr * pn))));
      const hp = arr[H0 + e] as number;
      arr[HO + e] = nn + z * (hp - nn);
      arr[A + e] = rr;
      arr[A + m + e] = z;
      arr[A + 2 * m + e] = nn;
      arr[A + 3 * m + e] = pn;
    }
  }
  if (x) writeA(arr, [f32At(be, as[0]), f32At(be, as[1])], f32At(be, x), HO, [S, B, F, H]);
  be.disposeData(sig.dataId);
  return [h, act, ...as];
});

const gruCellGradConfig = heapKernel('BlitzGRUCellGrad', ({ inputs, backend }) => {
  const k = 'BlitzGRUCellGrad';
  const be = heapBackend(k, backend);
  const dy = inputs['dy'];
  if (dy === undefined || dy.shape.length !== 3) fail(k, "input 'dy' must be rank 3");
  const [S = 0, B = 0, H = 0] = dy.shape;
  const n = S * B;
  const dpre = be.makeOutput([S, B, 4 * H], 'float32');
  const dhz = be.makeOutput([S, B, H], 'float32');
  const { arr } = heapOf(be, 'float32');
  const DY = f32At(be, dy);
  const DH = f32At(be, inputs['dh']);
  const DZ = f32At(be, inputs['dhz']);
  const A = f32At(be, inputs['act']);
  const HP = f32At(be, inputs['hPrev']);
  const DP = f32At(be, dpre);
  const DHZ = f32At(be, dhz);
  const m = n * H;
  for (let r = 0; r < n; r++) {
    const g4 = r * 4 * H;
    for (let j = 0; j < H; j++) {
      const e = r * H + j;
      let dh = arr[DY + e] as number;
      if (DH >= 0) dh += arr[DH + e] as number;
      if (DZ >= 0) dh += arr[DZ + e] as number;
      const rr = arr[A + e] as number;
      const z = arr[A + m + e] as number;
      const nn = arr[A + 2 * m + e] as number;
      const pn = arr[A + 3 * m + e] as number;
      const dpn = dh * (1 - z) * (1 - nn * nn);
      arr[DP + g4 + j] = dpn * pn * rr * (1 - rr);
      arr[DP + g4 + H + j] = dh * ((arr[HP + e] as number) - nn) * z * (1 - z);
      arr[DP + g4 + 2 * H + j] = dpn;
      arr[DP + g4 + 3 * H + j] = dpn * rr;
      arr[DHZ + e] = dh * z;
    }
  }
  return [dpre, dhz];
});

// ---------------------------------------------------------------------------------------------
// The Bayesian core of a batched pass (src/layers/bayesian.ts, `sampleWeightBatched` on wasm): the
// S weight samples of one Gaussian posterior and their Monte Carlo KL terms in one kernel, and
// their gradient in one more, instead of ~30 tfjs ops forward and ~25 backward per weight.
//
//   BlitzGaussianSample     {mu, rho, eps [S, ...]} attrs {prior} -> [w [S, ...], kl [S]]
//   BlitzGaussianSampleGrad {dw, dkl, mu, rho, eps} attrs {prior} -> [dmu, drho]
//
// w = mu + sigma * eps with sigma = softplus(rho), as float32 operations (the product rounded,
// then the sum); log sigma = log(softplus(rho)), = rho below LOG_SOFTPLUS_TAIL (as `logSoftplus`);
// kl[s] = log q(w_s) - log p(w_s) = -sum(log sigma) - sum(eps_s^2) / 2 - n log(2 pi) / 2 -
// sum(log p(w_s)). The prior is one of two element-wise log-densities, given as numbers
// (`prior = [kind, a, b, c, d]`; kind 0: no KL, the output is zeros):
//   1 normal:  log p = c - b (w - a)^2 / 2,            d/dw = -b (w - a)
//   2 mixture: log p = a + b w^2 + softplus(c w^2 + d), d/dw = 2 w (b + c sigmoid(c w^2 + d))
// The gradient: dw' = dw - dkl[s] dlogp(w) (the KL through w), dmu = sum_s dw', drho = sum_s dw'
// eps sigmoid(rho) - sum_s dkl[s] dlog(sigma)/drho, with dlog(sigma)/drho = sigmoid(rho) /
// softplus(rho) (1 below the tail). Sums, transcendental functions and the KL in float64, each
// stored value rounded to float32 once.

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);
const LOG_SIGMA_TAIL = -20;
/**
 * log(1 + e^x) in float64 without overflow; e^x itself below -36 (where log1p(y) = y to double
 * precision), and 0 below -104, where e^x (< 7e-46) rounds to 0 in float32 and, added to terms of
 * order 1 in a double sum, changes nothing: the scale mixture's narrow component sits there for
 * almost every weight, and the call then costs no transcendental function.
 */
function softplus64(x: number): number {
  if (x < -36) return x < -104 ? 0 : Math.exp(x);
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}
/** 1 / (1 + e^-x) in float64 (0 below -104, as above). */
function sigmoid64(x: number): number {
  if (x < -104) return 0;
  const e = Math.exp(-Math.abs(x));
  return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

function priorAttr(kernel: string, attrs: tf.NamedAttrMap | undefined): number[] {
  const p = attrs?.['prior'];
  if (!Array.isArray(p) || p.length !== 5 || !p.every((v) => typeof v === 'number')) {
    fail(kernel, "attribute 'prior' must be [kind, a, b, c, d]");
  }
  const kind = p[0] as number;
  if (kind !== 0 && kind !== 1 && kind !== 2) fail(kernel, `unknown prior kind ${kind}`);
  return p as number[];
}

function sampleInputs(kernel: string, inputs: tf.NamedTensorInfoMap) {
  const mu = inputs['mu'];
  const rho = inputs['rho'];
  const eps = inputs['eps'];
  if (mu === undefined || rho === undefined || eps === undefined) {
    fail(kernel, "missing input 'mu', 'rho' or 'eps'");
  }
  const n = sizeOf(mu.shape);
  const S = eps.shape[0] ?? 0;
  if (
    [mu, rho, eps].some((t) => t.dtype !== 'float32') ||
    sizeOf(rho.shape) !== n ||
    eps.shape.slice(1).join() !== mu.shape.join()
  ) {
    fail(kernel, `expected float32 mu, rho [${mu.shape}] and eps [S, ${mu.shape}]`);
  }
  return { mu, rho, eps, n, S };
}

/**
 * The float64 JS loops of `BlitzGaussianSample` on the float32 array `arr` (the heap, or a test's
 * own array): `w` (`S n` values at index `W`) and `kl` (`S` values at `KL`) from `mu`, `rho`
 * (`n` values at `MU`, `RHO`) and `eps` (`S n` at `EPS`); `prior` as the kernel's attribute. The
 * kernel's path without the SIMD module (no WebAssembly SIMD), and the tests'
 * reference.
 * @internal
 */
export function gaussianSampleJs(
  arr: Float32Array,
  MU: number,
  RHO: number,
  EPS: number,
  W: number,
  KL: number,
  n: number,
  S: number,
  prior: readonly number[],
): void {
  const [kind = 0, a = 0, b = 0, c = 0, d = 0] = prior;
  const sigma = new Float32Array(n);
  let sumLogSigma = 0;
  for (let i = 0; i < n; i++) {
    const r = arr[RHO + i] as number;
    const sp = softplus64(r);
    sigma[i] = sp;
    sumLogSigma += r < LOG_SIGMA_TAIL ? r : Math.log(sp);
  }
  for (let s = 0; s < S; s++) {
    const e0 = EPS + s * n;
    const w0 = W + s * n;
    let e2 = 0;
    let logP = 0;
    for (let i = 0; i < n; i++) {
      const e = arr[e0 + i] as number;
      const wi = fround((arr[MU + i] as number) + fround((sigma[i] as number) * e));
      arr[w0 + i] = wi;
      if (kind === 0) continue;
      e2 += e * e;
      if (kind === 1) {
        const z = wi - a;
        logP += c - 0.5 * b * z * z;
      } else {
        const w2 = wi * wi;
        logP += a + b * w2 + softplus64(c * w2 + d);
      }
    }
    arr[KL + s] = kind === 0 ? 0 : -sumLogSigma - 0.5 * e2 - n * HALF_LOG_2PI - logP;
  }
}

/**
 * The float64 JS loops of `BlitzGaussianSampleGrad` on `arr`, as `gaussianSampleJs`: `dmu`,
 * `drho` (`n` values at `DMU`, `DRHO`) from `dw` (`S n` at `DW`; -1: none), `dkl` (`S` at
 * `DKL`; -1: none) and the sample's inputs.
 * @internal
 */
export function gaussianSampleGradJs(
  arr: Float32Array,
  MU: number,
  RHO: number,
  EPS: number,
  DW: number,
  DKL: number,
  DMU: number,
  DRHO: number,
  n: number,
  S: number,
  prior: readonly number[],
): void {
  const [kind = 0, a = 0, b = 0, c = 0, d = 0] = prior;
  const g = new Float64Array(S);
  let gSum = 0;
  for (let s = 0; s < S; s++) {
    g[s] = DKL < 0 || kind === 0 ? 0 : (arr[DKL + s] as number);
    gSum += g[s] as number;
  }
  for (let i = 0; i < n; i++) {
    const r = arr[RHO + i] as number;
    // softplus and sigmoid from one exponential
    const ex = Math.exp(-Math.abs(r));
    const sp = (r > 0 ? r : 0) + Math.log1p(ex);
    const sg = r >= 0 ? 1 / (1 + ex) : ex / (1 + ex);
    const sigma = fround(sp);
    const m = arr[MU + i] as number;
    let dm = 0;
    let dr = 0;
    for (let s = 0; s < S; s++) {
      const e = arr[EPS + s * n + i] as number;
      let gw = DW < 0 ? 0 : (arr[DW + s * n + i] as number);
      const gk = g[s] as number;
      if (gk !== 0) {
        const wi = fround(m + fround(sigma * e));
        let dlogp: number;
        if (kind === 1) dlogp = -b * (wi - a);
        else {
          const w2 = wi * wi;
          dlogp = 2 * wi * (b + c * sigmoid64(c * w2 + d));
        }
        gw -= gk * dlogp;
      }
      dm += gw;
      dr += gw * e;
    }
    const dLogSigma = r < LOG_SIGMA_TAIL ? 1 : sg / sp;
    arr[DMU + i] = dm;
    arr[DRHO + i] = dr * sg - gSum * dLogSigma;
  }
}

/** Runs `f(work)` on `bytes` of heap scratch (8-byte aligned), freed after. */
function withScratch<T>(be: HeapBackend, bytes: number, f: (work: number) => T): T {
  const work = be.wasm._malloc(bytes) >>> 0;
  try {
    return f(work);
  } finally {
    be.wasm._free(work);
  }
}

const gaussianSampleConfig = heapKernel('BlitzGaussianSample', ({ inputs, backend, attrs }) => {
  const k = 'BlitzGaussianSample';
  const be = heapBackend(k, backend);
  const { mu, rho, eps, n, S } = sampleInputs(k, inputs);
  const prior = priorAttr(k, attrs);
  const w = be.makeOutput([S, ...mu.shape], 'float32');
  const kl = be.makeOutput([S], 'float32');
  const [MU, RHO, EPS, W, KL] = [mu, rho, eps, w, kl].map((t) => f32At(be, t)) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const simd = heapSimdOf(be);
  if (simd === undefined) {
    gaussianSampleJs(heapOf(be, 'float32').arr as Float32Array, MU, RHO, EPS, W, KL, n, S, prior);
    return [w, kl];
  }
  const [kind = 0, a = 0, b = 0, c = 0, d = 0] = prior;
  withScratch(be, 16 + 48 * S + 64 * (S + 1), (work) => {
    simd.gaussSampleFwd(4 * MU, 4 * RHO, 4 * EPS, 4 * W, n, S, kind, a, c, d, work);
    // the views after the call: _malloc may have grown the memory
    const buf = be.wasm.HEAPU8.buffer;
    const sums = new Float64Array(buf, work, 2 + 6 * S);
    const arr = new Float32Array(buf);
    const sumLogSigma = (sums[0] as number) + (sums[1] as number);
    for (let s = 0; s < S; s++) {
      const at = (j: number): number =>
        (sums[2 + 6 * s + j] as number) + (sums[3 + 6 * s + j] as number);
      const logP = kind === 1 ? n * c - 0.5 * b * at(2) : n * a + b * at(2) + at(4);
      arr[KL + s] = kind === 0 ? 0 : -sumLogSigma - 0.5 * at(0) - n * HALF_LOG_2PI - logP;
    }
  });
  return [w, kl];
});

const gaussianSampleGradConfig = heapKernel(
  'BlitzGaussianSampleGrad',
  ({ inputs, backend, attrs }) => {
    const k = 'BlitzGaussianSampleGrad';
    const be = heapBackend(k, backend);
    const { mu, rho, eps, n, S } = sampleInputs(k, inputs);
    const prior = priorAttr(k, attrs);
    const dw = inputs['dw'];
    const dkl = inputs['dkl'];
    if (dw !== undefined && sizeOf(dw.shape) !== S * n) fail(k, `'dw' must have ${S * n} values`);
    if (dkl !== undefined && sizeOf(dkl.shape) !== S) fail(k, `'dkl' must have ${S} values`);
    const dmu = be.makeOutput([...mu.shape], 'float32');
    const drho = be.makeOutput([...rho.shape], 'float32');
    const [MU, RHO, EPS, DW, DKL, DMU, DRHO] = [mu, rho, eps, dw, dkl, dmu, drho].map((t) =>
      f32At(be, t),
    ) as [number, number, number, number, number, number, number];
    const simd = heapSimdOf(be);
    if (simd === undefined) {
      const { arr } = heapOf(be, 'float32');
      gaussianSampleGradJs(arr as Float32Array, MU, RHO, EPS, DW, DKL, DMU, DRHO, n, S, prior);
      return [dmu, drho];
    }
    const [kind = 0, a = 0, b = 0, c = 0, d = 0] = prior;
    withScratch(be, ((8 * S + 15) & -16) + 64 * (S + 2), (work) => {
      const buf = be.wasm.HEAPU8.buffer;
      const arr = new Float32Array(buf);
      const g = new Float64Array(buf, work, S);
      let gSum = 0;
      for (let s = 0; s < S; s++) {
        g[s] = DKL < 0 || kind === 0 ? 0 : (arr[DKL + s] as number);
        gSum += g[s] as number;
      }
      const dwAt = DW < 0 ? 0 : 4 * DW;
      simd.gaussSampleBwd(
        4 * MU,
        4 * RHO,
        4 * EPS,
        dwAt,
        4 * DMU,
        4 * DRHO,
        n,
        S,
        kind,
        a,
        b,
        c,
        d,
        gSum,
        work,
      );
    });
    return [dmu, drho];
  },
);

/** The gradient of `BlitzGaussianSample` (registered with the kernels). */
const gaussianSampleGradient: tf.GradConfig = {
  kernelName: 'BlitzGaussianSample',
  inputsToSave: ['mu', 'rho', 'eps'],
  gradFunc: (dys, saved, attrs) => {
    const [dw, dkl] = dys as tf.Tensor[];
    const [mu, rho, eps] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
    // both at once, here: the engine runs each input's gradient function in its own tidy
    const [dmu, drho] = tf
      .engine()
      .runKernel(
        'BlitzGaussianSampleGrad',
        { dw: dw as tf.Tensor, dkl: dkl as tf.Tensor, mu, rho, eps },
        attrs,
      ) as [tf.Tensor, tf.Tensor];
    return { mu: () => dmu, rho: () => drho, eps: () => tf.zerosLike(eps) };
  },
};

// ---------------------------------------------------------------------------------------------

/** The kernels the wasm backend lacks; registered by `registerWasmKernels` unless present. */
export const WASM_SUPPLIED_KERNELS: readonly string[] = Object.freeze([
  'Conv2DBackpropFilter',
  'DepthwiseConv2dNativeBackpropFilter',
  'DepthwiseConv2dNativeBackpropInput',
  'UnsortedSegmentSum',
  'BlitzLSTMCell',
  'BlitzLSTMCellGrad',
  'BlitzGRUCell',
  'BlitzGRUCellGrad',
  'BlitzGaussianSample',
  'BlitzGaussianSampleGrad',
]);

/**
 * The wasm backend's own kernels that this module replaces: the first four compute wrong results;
 * the others are correct but pathologically slow (see their section above), and their
 * replacements compute the same values (BatchMatMul up to float rounding: XNNPACK's summation
 * order).
 */
export const WASM_REPLACED_KERNELS: readonly string[] = Object.freeze([
  'MaxPoolGrad',
  'MaxPool3DGrad',
  'Conv3DBackpropFilterV2',
  'Conv3DBackpropInputV2',
  'BatchMatMul',
  '_FusedMatMul',
  'Slice',
  'Unpack',
  'SplitV',
  'Concat',
  'Pack',
  'Tanh',
  'Sum',
  'Identity',
]);

const SUPPLIED: readonly tf.KernelConfig[] = [
  conv2dBackpropFilterConfig,
  gaussianSampleConfig,
  gaussianSampleGradConfig,
  depthwiseBackpropFilterConfig,
  depthwiseBackpropInputConfig,
  unsortedSegmentSumConfig,
  lstmCellConfig,
  lstmCellGradConfig,
  gruCellConfig,
  gruCellGradConfig,
];

const REPLACEMENTS: readonly tf.KernelConfig[] = [
  maxPoolGradConfig,
  maxPool3dGradConfig,
  conv3dBackpropFilterConfig,
  conv3dBackpropInputConfig,
  batchMatMulConfig,
  fusedMatMulConfig,
  sliceConfig,
  unpackConfig,
  splitVConfig,
  concatConfig,
  packConfig,
  tanhConfig,
  sumConfig,
  identityConfig,
];

/** Puts the replacements in place of the wasm package's kernels; a no-op once they are there. */
function installReplacements(): void {
  for (const config of REPLACEMENTS) {
    const current = tf.getKernel(config.kernelName, BACKEND);
    if (isOurs(current)) continue;
    if (current !== undefined) {
      originals.set(config.kernelName, current.kernelFunc);
      tf.unregisterKernel(config.kernelName, BACKEND);
    }
    tf.registerKernel(config);
  }
}

/**
 * `registerWasmKernels() -> void`: registers, for the backend named `'wasm'`, the gradient
 * kernels that the wasm backend lacks (`WASM_SUPPLIED_KERNELS`) and arranges for the wasm
 * package's wrong ones (`WASM_REPLACED_KERNELS`) to be replaced as soon as the wasm package is
 * loaded (now if it already is, else when the wasm backend is set). Does not load the wasm
 * package. Idempotent: kernels already registered under these names by this module (or another
 * copy of it) are left alone, and a missing kernel that someone else registered is not replaced.
 *
 * @example
 * ```ts
 * registerWasmKernels();
 * await useBackend('wasm');
 * tf.grad((w) => tf.conv2d(x, w, 1, 'same').sum())(w); // works on wasm
 * ```
 */
export function registerWasmKernels(): void {
  for (const config of SUPPLIED) {
    if (tf.getKernel(config.kernelName, BACKEND) === undefined) tf.registerKernel(config);
  }
  if (tf.getGradient(gaussianSampleGradient.kernelName) === undefined) {
    tf.registerGradient(gaussianSampleGradient);
  }
  const wasmLoaded = REPLACEMENTS.some((c) => tf.getKernel(c.kernelName, BACKEND) !== undefined);
  if (wasmLoaded) installReplacements();
}
