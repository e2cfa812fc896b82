/**
 * The gradient kernels that src/kernels/wasm.ts supplies to (or replaces on) the wasm backend:
 * gradients on wasm must agree with the cpu backend (or, where the cpu kernel ignores an
 * attribute, with an independent formulation), and must not leak tensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/setup';
import { useBackend } from '../../src/backend';
import { registerWasmKernels } from '../../src/kernels';
import { resolveBayesian, sampleWeight, sampleWeightBatched } from '../../src/layers/bayesian';
import { laplacePrior, normalPrior } from '../../src/params/distributions';
import { foldIn, key } from '../../src/params/random';

type Backend = 'cpu' | 'wasm';
type Pad2 = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;

const RUNS = 20;
const SUPPLIED = [
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
];
const REPLACED = [
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
];
const MARK = Symbol.for('blitz-ts.wasmKernel');

beforeAll(async () => {
  await useBackend('wasm');
});

afterAll(async () => {
  await useBackend('cpu');
});

// ---------------------------------------------------------------------------------------------
// Helpers.

/** Deterministic values in [-1, 1) from a seed (mulberry32), identical on every backend. */
function values(seed: number, n: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** A float32 tensor of `shape` with the values of `seed`. */
function randn(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(values(seed, size(shape)), shape);
}

/** Runs `f` on `backend` and returns its outputs as plain arrays (and disposes them). */
async function runOn(
  backend: Backend,
  f: () => tf.Tensor | tf.Tensor[],
): Promise<{ shape: number[]; data: Float32Array }[]> {
  await useBackend(backend);
  const outs = tf.tidy(f);
  const list = Array.isArray(outs) ? outs : [outs];
  const res = list.map((t) => ({ shape: t.shape, data: Float32Array.from(t.dataSync()) }));
  tf.dispose(list);
  return res;
}

/** Max abs difference, relative to the largest magnitude of `expected`. */
function relErr(actual: Float32Array, expected: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i] ?? 0;
    diff = Math.max(diff, Math.abs((actual[i] ?? NaN) - e));
    scale = Math.max(scale, Math.abs(e));
  }
  return Number.isNaN(diff) ? Infinity : diff / Math.max(scale, 1e-6);
}

function expectClose(
  actual: { shape: number[]; data: Float32Array }[],
  expected: { shape: number[]; data: Float32Array }[],
  tol = 1e-4,
): void {
  expect(actual.length).toBe(expected.length);
  expected.forEach((e, i) => {
    const a = actual[i];
    expect(a?.shape).toEqual(e.shape);
    expect(relErr(a?.data ?? new Float32Array(), e.data)).toBeLessThanOrEqual(tol);
  });
}

/** Runs `f` on cpu and on wasm and asserts that the outputs agree. */
async function expectBackendsAgree(f: () => tf.Tensor | tf.Tensor[], tol = 1e-4): Promise<void> {
  const cpu = await runOn('cpu', f);
  const wasm = await runOn('wasm', f);
  expectClose(wasm, cpu, tol);
}

/** `sum(y * r)` for a fixed random `r`, so that dy = r whatever y's values are. */
const probe = (y: tf.Tensor, seed: number): tf.Scalar => tf.sum(tf.mul(y, randn(y.shape, seed)));

/** Output length of a conv/pool along one axis (tfjs's rules), or 0 if it is empty. */
function outLen(len: number, k: number, s: number, pad: 'same' | 'valid' | Pair): number {
  if (pad === 'same') return Math.ceil(len / s);
  const [b, a] = pad === 'valid' ? [0, 0] : pad;
  const span = len + b + a - k;
  return span < 0 ? 0 : Math.floor(span / s) + 1;
}
type Pair = [number, number];

/** Spatial config of a 2D conv/pool: sizes, kernel, strides and one of the four padding kinds. */
interface Spatial2 {
  readonly h: number;
  readonly w: number;
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: number;
  readonly pad: Pad2;
}

// A numeric pad is only used with square kernels and equal strides: for other shapes tfjs-core
// itself computes a wrong output width (it uses the filter height and stride for both axes).
const spatial2 = (maxK = 3, maxS = 3): fc.Arbitrary<Spatial2> =>
  fc
    .record({
      h: fc.integer({ min: 3, max: 9 }),
      w: fc.integer({ min: 3, max: 9 }),
      kh: fc.integer({ min: 1, max: maxK }),
      kw: fc.integer({ min: 1, max: maxK }),
      sh: fc.integer({ min: 1, max: maxS }),
      sw: fc.integer({ min: 1, max: maxS }),
      padKind: fc.constantFrom('same', 'valid', 'number', 'explicit'),
      p: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 4, maxLength: 4 }),
    })
    .map(({ h, w, kh, kw, sh, sw, padKind, p }): Spatial2 => {
      const [p0 = 0, p1 = 0, p2 = 0, p3 = 0] = p;
      if (padKind === 'number') return { h, w, kh, kw: kh, sh, sw: sh, pad: p0 };
      const pad: Pad2 =
        padKind === 'explicit'
          ? [
              [0, 0],
              [p0, p1],
              [p2, p3],
              [0, 0],
            ]
          : padKind === 'same'
            ? 'same'
            : 'valid';
      return { h, w, kh, kw, sh, sw, pad };
    })
    .filter((c) => outSizes2(c).every((o) => o > 0));

function outSizes2({ h, w, kh, kw, sh, sw, pad }: Spatial2): [number, number] {
  if (typeof pad === 'number') {
    return [outLen(h, kh, sh, [pad, pad]), outLen(w, kw, sw, [pad, pad])];
  }
  if (typeof pad === 'object') {
    return [outLen(h, kh, sh, pad[1]), outLen(w, kw, sw, pad[2])];
  }
  return [outLen(h, kh, sh, pad), outLen(w, kw, sw, pad)];
}

/** Zero-interleaves the two leading axes of a filter: the dilation-1 equivalent of dilation d. */
function dilateFilter(f: tf.Tensor4D, [dh, dw]: Pair): tf.Tensor4D {
  const [kh, kw, c, m] = f.shape;
  const rows = tf.reshape(
    tf.pad(tf.reshape(f, [kh, 1, kw, c, m]), [
      [0, 0],
      [0, dh - 1],
      [0, 0],
      [0, 0],
      [0, 0],
    ]),
    [kh * dh, kw, c, m],
  );
  const trimmedRows = tf.slice(rows, 0, (kh - 1) * dh + 1);
  const cols = tf.reshape<tf.Rank.R4>(
    tf.pad(tf.reshape(trimmedRows, [(kh - 1) * dh + 1, kw, 1, c, m]), [
      [0, 0],
      [0, 0],
      [0, dw - 1],
      [0, 0],
      [0, 0],
    ]),
    [(kh - 1) * dh + 1, kw * dw, c, m],
  );
  return tf.slice(cols, [0, 0, 0, 0], [-1, (kw - 1) * dw + 1, -1, -1]);
}

// ---------------------------------------------------------------------------------------------

describe('registration', () => {
  it('registers the missing kernels and replaces the wrong ones for wasm', async () => {
    await useBackend('wasm');
    const names = new Set(tf.getKernelsForBackend('wasm').map((k) => k.kernelName));
    for (const name of [...SUPPLIED, ...REPLACED]) {
      expect(names.has(name)).toBe(true);
      expect(MARK in tf.getKernel(name, 'wasm')).toBe(true);
    }
  });

  it('is idempotent: registering again changes nothing and warns about nothing', () => {
    const before = [...SUPPLIED, ...REPLACED].map((n) => tf.getKernel(n, 'wasm'));
    const warnings: unknown[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args);
    try {
      registerWasmKernels();
      registerWasmKernels();
    } finally {
      console.warn = warn;
    }
    expect(warnings).toEqual([]);
    expect([...SUPPLIED, ...REPLACED].map((n) => tf.getKernel(n, 'wasm'))).toEqual(before);
  });
});

describe('conv2d gradients on wasm agree with cpu', () => {
  it('input and filter gradients of conv2d (strides, same/valid/number/explicit padding)', async () => {
    await fc.assert(
      fc.asyncProperty(
        spatial2(),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.nat(),
        async (c, n, cin, cout, seed) => {
          await expectBackendsAgree(() => {
            const x = randn([n, c.h, c.w, cin], seed) as tf.Tensor4D;
            const f = randn([c.kh, c.kw, cin, cout], seed + 1) as tf.Tensor4D;
            const loss = (x: tf.Tensor, f: tf.Tensor) =>
              probe(tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, [c.sh, c.sw], c.pad), seed + 2);
            return tf.grads(loss)([x, f]);
          });
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('gradients of conv1d (stride, same/valid)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 4, max: 12 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom<'same' | 'valid'>('same', 'valid'),
        fc.nat(),
        async (n, len, k, s, pad, seed) => {
          await expectBackendsAgree(() => {
            const x = randn([n, len, 2], seed) as tf.Tensor3D;
            const f = randn([k, 2, 3], seed + 1) as tf.Tensor3D;
            const loss = (x: tf.Tensor, f: tf.Tensor) =>
              probe(tf.conv1d(x as tf.Tensor3D, f as tf.Tensor3D, s, pad), seed + 2);
            return tf.grads(loss)([x, f]);
          });
        },
      ),
      { numRuns: 6 },
    );
  });

  it('gradients of conv2dTranspose and of a fused conv2d with bias and relu', async () => {
    await expectBackendsAgree(() => {
      const x = randn([2, 4, 5, 3], 1) as tf.Tensor4D;
      const f = randn([3, 3, 2, 3], 2) as tf.Tensor4D;
      const b = randn([2], 3);
      const t = (x: tf.Tensor, f: tf.Tensor) =>
        probe(tf.conv2dTranspose(x as tf.Tensor4D, f as tf.Tensor4D, [2, 9, 11, 2], 2, 'valid'), 4);
      const fused = (x: tf.Tensor, f: tf.Tensor, b: tf.Tensor) =>
        probe(
          tf.fused.conv2d({
            x: x as tf.Tensor4D,
            filter: tf.transpose(f, [0, 1, 3, 2]) as tf.Tensor4D,
            strides: 1,
            pad: 'same',
            bias: b,
            activation: 'relu',
          }),
          5,
        );
      return [...tf.grads(t)([x, f]), ...tf.grads(fused)([x, f, b])];
    });
  });

  it('Conv2DBackpropFilter kernel: NHWC and NCHW, dimRoundingMode', async () => {
    await fc.assert(
      fc.asyncProperty(
        spatial2(),
        fc.constantFrom<'NHWC' | 'NCHW'>('NHWC', 'NCHW'),
        fc.constantFrom<'floor' | 'round' | 'ceil' | undefined>(
          undefined,
          'floor',
          'round',
          'ceil',
        ),
        fc.nat(),
        async (c, dataFormat, rounding, seed) => {
          const dimRoundingMode = typeof c.pad === 'number' ? rounding : undefined;
          const nchw = dataFormat === 'NCHW';
          // explicit padding is given in the data format's axis order
          const pad: Pad2 =
            nchw && typeof c.pad === 'object' ? [c.pad[0], c.pad[3], c.pad[1], c.pad[2]] : c.pad;
          const info = tf.backend_util.computeConv2DInfo(
            [2, c.h, c.w, 3],
            [c.kh, c.kw, 3, 2],
            [c.sh, c.sw],
            1,
            c.pad,
            dimRoundingMode,
          );
          fc.pre(info.outHeight > 0 && info.outWidth > 0);
          await expectBackendsAgree(() => {
            const x = randn(nchw ? [2, 3, c.h, c.w] : [2, c.h, c.w, 3], seed);
            const dy = randn(
              nchw ? [2, 2, info.outHeight, info.outWidth] : [2, info.outHeight, info.outWidth, 2],
              seed + 1,
            );
            const attrs = {
              strides: [c.sh, c.sw],
              pad,
              dataFormat,
              filterShape: [c.kh, c.kw, 3, 2],
              ...(dimRoundingMode === undefined ? {} : { dimRoundingMode }),
            };
            return tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs) as tf.Tensor;
          });
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('depthwise and separable conv gradients on wasm agree with cpu', () => {
  it('input and filter gradients of depthwiseConv2d (channel multiplier, strides, padding)', async () => {
    await fc.assert(
      fc.asyncProperty(
        spatial2(),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.nat(),
        async (c, n, ch, mult, seed) => {
          const cfg = c;
          await expectBackendsAgree(() => {
            const x = randn([n, c.h, c.w, ch], seed);
            const f = randn([c.kh, c.kw, ch, mult], seed + 1);
            const loss = (x: tf.Tensor, f: tf.Tensor) =>
              probe(
                tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, [cfg.sh, cfg.sw], cfg.pad),
                seed + 2,
              );
            return tf.grads(loss)([x, f]);
          });
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('gradients of separableConv2d', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 }),
        fc.constantFrom<'same' | 'valid'>('same', 'valid'),
        fc.nat(),
        async (s, pad, seed) => {
          await expectBackendsAgree(() => {
            const x = randn([2, 7, 6, 3], seed);
            const dw = randn([3, 3, 3, 2], seed + 1);
            const pw = randn([1, 1, 6, 4], seed + 2);
            const loss = (x: tf.Tensor, dw: tf.Tensor, pw: tf.Tensor) =>
              probe(
                tf.separableConv2d(x as tf.Tensor4D, dw as tf.Tensor4D, pw as tf.Tensor4D, s, pad),
                seed + 3,
              );
            return tf.grads(loss)([x, dw, pw]);
          });
        },
      ),
      { numRuns: 4 },
    );
  });

  it('depthwise kernels with dilation > 1 equal the dilation-1 kernels on a zero-interleaved filter', async () => {
    // tfjs's cpu depthwise backprop kernels ignore `dilations`, so the reference is the cpu kernel
    // at dilation 1 with the filter's taps spread apart by zeros.
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 5, max: 9 }),
        fc.integer({ min: 5, max: 9 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom<'same' | 'valid'>('same', 'valid'),
        fc.nat(),
        async (h, w, kh, kw, dh, dw, pad, seed) => {
          const d: Pair = [dh, dw];
          const kd: Pair = [(kh - 1) * dh + 1, (kw - 1) * dw + 1];
          fc.pre(pad === 'same' || (h >= kd[0] && w >= kd[1]));
          const [oh, ow] = [outLen(h, kd[0], 1, pad), outLen(w, kd[1], 1, pad)];
          const xShape = [2, h, w, 2];
          const run = (dilated: boolean) => () => {
            const x = randn(xShape, seed);
            const f = randn([kh, kw, 2, 2], seed + 1) as tf.Tensor4D;
            const dy = randn([2, oh, ow, 4], seed + 2);
            const attrs = { strides: [1, 1], pad, dilations: dilated ? d : [1, 1] };
            const fd = dilated ? f : dilateFilter(f, d);
            const dx = tf
              .engine()
              .runKernel(
                'DepthwiseConv2dNativeBackpropInput',
                { dy, filter: fd },
                { ...attrs, inputShape: xShape },
              ) as tf.Tensor;
            const dfFull = tf
              .engine()
              .runKernel(
                'DepthwiseConv2dNativeBackpropFilter',
                { x, dy },
                { ...attrs, filterShape: fd.shape },
              ) as tf.Tensor;
            const df = dilated
              ? dfFull
              : tf.stridedSlice(dfFull, [0, 0, 0, 0], dfFull.shape, [dh, dw, 1, 1]);
            return [dx, df];
          };
          const cpu = await runOn('cpu', run(false));
          const wasm = await runOn('wasm', run(true));
          expectClose(wasm, cpu);
        },
      ),
      { numRuns: 8 },
    );
  });
});

describe('conv3d and pooling gradients on wasm agree with cpu', () => {
  it('input and filter gradients of conv3d', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.tuple(
          fc.integer({ min: 2, max: 5 }),
          fc.integer({ min: 2, max: 5 }),
          fc.integer({ min: 2, max: 5 }),
        ),
        fc.tuple(
          fc.integer({ min: 1, max: 2 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 2 }),
        ),
        fc.tuple(
          fc.integer({ min: 1, max: 2 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 2 }),
        ),
        fc.constantFrom<'same' | 'valid'>('same', 'valid'),
        fc.integer({ min: 1, max: 3 }),
        fc.nat(),
        async (dims, k, s, pad, cin, seed) => {
          fc.pre(pad === 'same' || dims.every((d, i) => d >= (k[i] ?? 1)));
          await expectBackendsAgree(() => {
            const x = randn([2, ...dims, cin], seed);
            const f = randn([...k, cin, 2], seed + 1);
            const loss = (x: tf.Tensor, f: tf.Tensor) =>
              probe(tf.conv3d(x as tf.Tensor5D, f as tf.Tensor5D, s, pad), seed + 2);
            return tf.grads(loss)([x, f]);
          });
        },
      ),
      { numRuns: 8 },
    );
  });

  it('gradients of maxPool and avgPool, including ties (relu zeros)', async () => {
    await fc.assert(
      fc.asyncProperty(
        spatial2(3, 3).filter((c) => typeof c.pad !== 'object'),
        fc.boolean(),
        fc.nat(),
        async (c, ties, seed) => {
          await expectBackendsAgree(() => {
            const raw = randn([2, c.h, c.w, 2], seed);
            const x = ties ? tf.relu(raw) : raw;
            const pad = c.pad as 'same' | 'valid' | number;
            const size: Pair = [c.kh, c.kw];
            const s: Pair = [c.sh, c.sw];
            const max = (x: tf.Tensor) =>
              probe(tf.maxPool(x as tf.Tensor4D, size, s, pad), seed + 1);
            const avg = (x: tf.Tensor) =>
              probe(tf.avgPool(x as tf.Tensor4D, size, s, pad), seed + 2);
            return [tf.grad(max)(x), tf.grad(avg)(x)];
          });
        },
      ),
      { numRuns: RUNS },
    );
  });

  // tfjs's cpu MaxPool3DGrad is itself wrong when the window's height and width differ (it
  // indexes window positions with the height for the width) and sends the gradient of a tie to
  // the last maximum, so maxPool3d is checked against a plain loop that, like the 2D kernels and
  // TensorFlow's MaxPoolGrad, sends it to the first maximum in row-major window order.
  it('gradients of maxPool3d (against a plain loop) and avgPool3d (against cpu), with ties', async () => {
    await fc.assert(
      fc.asyncProperty(
        t3(2, 5),
        t3(1, 3),
        t3(1, 3),
        fc.constantFrom<'same' | 'valid'>('same', 'valid'),
        fc.boolean(),
        fc.nat(),
        async (dims, k, s, pad, ties, seed) => {
          fc.pre(pad === 'same' || dims.every((d, i) => d >= (k[i] ?? 1)));
          await checkPool3d(dims, k, s, pad, ties, seed);
        },
      ),
      { numRuns: 10 },
    );
  });

  it('gradients of maxPool3d and maxPool2d: non-overlapping and 1x1 windows', async () => {
    const cases3: [T3, T3, T3, 'same' | 'valid'][] = [
      [[2, 2, 2], [1, 1, 1], [1, 1, 1], 'same'],
      [[4, 4, 4], [2, 2, 2], [2, 2, 2], 'valid'],
      [[5, 3, 4], [3, 1, 2], [3, 2, 2], 'same'],
    ];
    for (const [dims, k, s, pad] of cases3) await checkPool3d(dims, k, s, pad, true, 3);
    for (const [k, s] of [
      [1, 1],
      [2, 2],
      [1, 3],
      [2, 3],
    ] as const) {
      await expectBackendsAgree(() =>
        tf.grad((t: tf.Tensor) => probe(tf.maxPool(t as tf.Tensor4D, k, s, 'same'), 4))(
          tf.relu(randn([2, 7, 6, 3], 5)),
        ),
      );
    }
  });
});

type T3 = [number, number, number];
const t3 = (min: number, max: number): fc.Arbitrary<T3> =>
  fc.tuple(fc.integer({ min, max }), fc.integer({ min, max }), fc.integer({ min, max }));

/** maxPool3d's gradient on wasm against `maxPool3dGradLoop`, avgPool3d's against cpu. */
async function checkPool3d(
  dims: T3,
  k: T3,
  s: T3,
  pad: 'same' | 'valid',
  ties: boolean,
  seed: number,
): Promise<void> {
  const shape = [2, ...dims, 2];
  const raw = values(seed, size(shape));
  const x = ties ? raw.map((v) => Math.max(v, 0)) : raw;
  const info = tf.backend_util.computePool3DInfo(
    shape as [number, number, number, number, number],
    k,
    s,
    1,
    pad,
  );
  const outShape = info.outShape;
  const dy = values(seed + 1, size(outShape));
  const expected = maxPool3dGradLoop(x, shape, dy, outShape, k, s, [
    info.padInfo.front,
    info.padInfo.top,
    info.padInfo.left,
  ]);
  const [max] = await runOn('wasm', () =>
    tf.grad((t: tf.Tensor) =>
      tf.sum(tf.mul(tf.maxPool3d(t as tf.Tensor5D, k, s, pad), tf.tensor(dy, outShape))),
    )(tf.tensor(x, shape)),
  );
  expect(relErr(max?.data ?? new Float32Array(), expected)).toBeLessThanOrEqual(1e-6);
  await expectBackendsAgree(() =>
    tf.grad((t: tf.Tensor) => probe(tf.avgPool3d(t as tf.Tensor5D, k, s, pad), seed + 2))(
      tf.tensor(x, shape),
    ),
  );
}

/** dx of maxPool3d by loops: each output's dy goes to the first maximum of its window. */
function maxPool3dGradLoop(
  x: Float32Array,
  shape: number[],
  dy: Float32Array,
  outShape: number[],
  k: readonly number[],
  s: readonly number[],
  before: readonly number[],
): Float32Array {
  const [n = 0, d = 0, h = 0, w = 0, c = 0] = shape;
  const [, od = 0, oh = 0, ow = 0] = outShape;
  const [kd = 1, kh = 1, kw = 1] = k;
  const [sd = 1, sh = 1, sw = 1] = s;
  const [pf = 0, pt = 0, pl = 0] = before;
  const at = (b: number, i: number, j: number, l: number, ch: number) =>
    (((b * d + i) * h + j) * w + l) * c + ch;
  const dx = new Float32Array(x.length);
  for (let b = 0; b < n; b++)
    for (let i = 0; i < od; i++)
      for (let j = 0; j < oh; j++)
        for (let l = 0; l < ow; l++)
          for (let ch = 0; ch < c; ch++) {
            let best = -Infinity;
            let where = -1;
            for (let a = 0; a < kd; a++)
              for (let e = 0; e < kh; e++)
                for (let f = 0; f < kw; f++) {
                  const [zi, zj, zl] = [i * sd - pf + a, j * sh - pt + e, l * sw - pl + f];
                  if (zi < 0 || zi >= d || zj < 0 || zj >= h || zl < 0 || zl >= w) continue;
                  const v = x[at(b, zi, zj, zl, ch)] ?? -Infinity;
                  if (v > best) [best, where] = [v, at(b, zi, zj, zl, ch)];
                }
            if (where >= 0) {
              dx[where] = (dx[where] ?? 0) + (dy[(((b * od + i) * oh + j) * ow + l) * c + ch] ?? 0);
            }
          }
  return dx;
}

describe('gather gradient and UnsortedSegmentSum', () => {
  it('gradient of gather with repeated indices, axis 0 and 1', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 1 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 10 }),
        fc.nat(),
        async (rows, cols, axis, picks, seed) => {
          const shape = [rows, cols, 2];
          const extent = shape[axis] ?? 1;
          const indices = picks.map((p) => p % extent);
          await expectBackendsAgree(() => {
            const x = randn(shape, seed);
            const idx = tf.tensor1d(indices, 'int32');
            return tf.grad((x: tf.Tensor) => probe(tf.gather(x, idx, axis), seed + 1))(x);
          });
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('UnsortedSegmentSum sums rows per segment and drops ids outside [0, numSegments)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 6 }),
        fc.array(fc.integer({ min: -3, max: 9 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 3 }),
        fc.nat(),
        async (numSegments, ids, width, seed) => {
          const data = values(seed, ids.length * width);
          const expected = new Float32Array(numSegments * width);
          ids.forEach((id, i) => {
            if (id < 0 || id >= numSegments) return;
            for (let j = 0; j < width; j++) {
              const at = id * width + j;
              expected[at] = (expected[at] ?? 0) + (data[i * width + j] ?? 0);
            }
          });
          const [out] = await runOn('wasm', () => {
            const x = tf.tensor2d(data, [ids.length, width]);
            const segmentIds = tf.tensor1d(ids, 'int32');
            return tf
              .engine()
              .runKernel('UnsortedSegmentSum', { x, segmentIds }, { numSegments }) as tf.Tensor;
          });
          expect(out?.shape).toEqual([numSegments, width]);
          expect(relErr(out?.data ?? new Float32Array(), expected)).toBeLessThanOrEqual(1e-6);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('UnsortedSegmentSum: NaN in a dropped row does not leak; int32 data keeps its dtype', async () => {
    await useBackend('wasm');
    const out = tf.tidy(() =>
      tf.unsortedSegmentSum(
        tf.tensor2d([1, 2, NaN, Infinity, 5, 6], [3, 2]),
        tf.tensor1d([1, -1, 1], 'int32'),
        2,
      ),
    );
    expect(Array.from(out.dataSync())).toEqual([0, 0, 6, 8]);
    out.dispose();
    const ints = tf.tidy(() =>
      tf.unsortedSegmentSum(tf.tensor1d([3, 4, 5], 'int32'), tf.tensor1d([0, 0, 2], 'int32'), 3),
    );
    expect(ints.dtype).toBe('int32');
    expect(Array.from(ints.dataSync())).toEqual([7, 0, 5]);
    ints.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// The replacements of slow wasm kernels: the same values as cpu (BatchMatMul and Tanh up to float
// rounding), every case of shape, axis and transposition the tfjs ops produce.

/** Runs `f` on cpu and on wasm and asserts equal outputs (bit for bit: copies). */
async function expectBackendsEqual(f: () => tf.Tensor | tf.Tensor[]): Promise<void> {
  const cpu = await runOn('cpu', f);
  const wasm = await runOn('wasm', f);
  expect(wasm.map((t) => t.shape)).toEqual(cpu.map((t) => t.shape));
  wasm.forEach((t, i) => expect(Array.from(t.data)).toEqual(Array.from(cpu[i]?.data ?? [])));
}

/** `x` as `dtype` (bool by comparison: wasm's own float-to-bool cast keeps the low byte). */
const ofType = (x: tf.Tensor, dtype: tf.DataType): tf.Tensor =>
  dtype === 'bool' ? tf.greater(x, 0) : tf.cast(tf.mul(x, 10), dtype);

const shapeArb = (rank: number, max = 4): fc.Arbitrary<number[]> =>
  fc.array(fc.integer({ min: 1, max }), { minLength: rank, maxLength: rank });

describe('BatchMatMul on wasm (XNNPACK for every batch and transposition) agrees with cpu', () => {
  it('batched, broadcast and transposed products', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<[number[], number[]]>(
          [[], []],
          [[3], [3]],
          [[3], []],
          [[], [3]],
          [[1], [4]],
          [[4], [1]],
          [
            [1, 3],
            [4, 3],
          ],
          [
            [4, 3],
            [1, 3],
          ],
          [
            [2, 2],
            [2, 2],
          ],
        ),
        fc.boolean(),
        fc.boolean(),
        shapeArb(3, 9),
        fc.nat(),
        async ([ba, bb], ta, tb, [m = 1, k = 1, n = 1], seed) => {
          await expectBackendsAgree(() => {
            const a = randn([...ba, ...(ta ? [k, m] : [m, k])], seed);
            const b = randn([...bb, ...(tb ? [n, k] : [k, n])], seed + 1);
            return tf.matMul(a, b, ta, tb);
          }, 1e-5);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a reused b (its transposed, packed entries cached) and a b disposed and reallocated', async () => {
    for (const [tb, batch] of [
      [false, [3]],
      [true, [3]],
      [true, []],
      [false, [2, 2]],
    ] as [boolean, number[]][]) {
      for (let round = 0; round < 3; round++) {
        await expectBackendsAgree(() => {
          const b = randn([...batch, ...(tb ? [5, 4] : [4, 5])], 10 + round);
          return [0, 1, 2, 3].map((i) => tf.matMul(randn([...batch, 3, 4], i), b, false, tb));
        }, 1e-5);
      }
    }
  });

  it('empty and zero-width products', async () => {
    await expectBackendsEqual(() => [
      tf.matMul(tf.zeros([2, 0, 3]), tf.zeros([2, 3, 4])),
      tf.matMul(tf.ones([2, 3, 0]), tf.ones([2, 0, 4])),
      tf.matMul(tf.ones([3, 0]), tf.ones([4, 0]), false, true),
    ]);
  });
});

type Act = 'linear' | 'relu' | 'relu6' | 'elu' | 'sigmoid' | 'leakyrelu' | 'prelu';

describe('_FusedMatMul on wasm (bias and relu inside XNNPACK; the rest after) agrees with cpu', () => {
  it('every bias layout, activation and transposition, values and gradients', async () => {
    await fc.assert(
      fc.asyncProperty(
        // bias: none, [N], [1, N], one row per batch entry [B, 1, N], a full [M, N] (general path)
        fc.constantFrom<'none' | 'n' | '1n' | 'rows' | 'full'>('none', 'n', '1n', 'rows', 'full'),
        fc.constantFrom<Act>('linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu', 'prelu'),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 1, max: 4 }),
        shapeArb(3, 9),
        fc.nat(),
        async (biasKind, act, ta, tb, batch, [m = 1, k = 1, n = 1], seed) => {
          await expectBackendsAgree(() => {
            const a = randn([batch, ...(ta ? [k, m] : [m, k])], seed);
            const b = randn([batch, ...(tb ? [n, k] : [k, n])], seed + 1);
            const biasShape = { none: [], n: [n], '1n': [1, n], rows: [batch, 1, n], full: [m, n] }[
              biasKind
            ];
            const bias = biasKind === 'none' ? undefined : randn(biasShape, seed + 2);
            const alpha = act === 'prelu' ? randn([n], seed + 3) : undefined;
            const dy = randn([batch, m, n], seed + 4);
            const f = (x: tf.Tensor, y: tf.Tensor, c?: tf.Tensor): tf.Tensor =>
              tf.fused.matMul({
                a: x,
                b: y,
                bias: c,
                activation: act,
                transposeA: ta,
                transposeB: tb,
                preluActivationWeights: alpha,
                leakyreluAlpha: 0.3,
              });
            const loss = (x: tf.Tensor, y: tf.Tensor, c?: tf.Tensor): tf.Scalar =>
              tf.sum(tf.mul(f(x, y, c), dy));
            const grads = bias
              ? tf.grads((x: tf.Tensor, y: tf.Tensor, c: tf.Tensor) => loss(x, y, c))([a, b, bias])
              : tf.grads((x: tf.Tensor, y: tf.Tensor) => loss(x, y))([a, b]);
            return [f(a, b, bias), ...grads];
          }, 1e-5);
        },
      ),
      { numRuns: 80 },
    );
  });

  it('a zero-width product is the bias, clamped', async () => {
    await expectBackendsEqual(() => [
      tf.fused.matMul({ a: tf.ones([2, 3, 0]), b: tf.ones([2, 0, 4]), bias: randn([2, 1, 4], 1) }),
      tf.fused.matMul({
        a: tf.ones([2, 3, 0]),
        b: tf.ones([2, 0, 4]),
        bias: randn([4], 2),
        activation: 'relu',
      }),
    ]);
  });
});

describe('BlitzGaussianSample (the batched Bayesian core on wasm) agrees with the ops on cpu', () => {
  type Opts = Parameters<typeof resolveBayesian>[0];
  const priors: [string, Opts][] = [
    ['scale mixture (default)', {}],
    ['scale mixture, narrow first', { priorSigma1: 0.01, priorSigma2: 2, priorPi: 0.3 }],
    ['scale mixture pi = 1', { priorPi: 1 }],
    ['normal prior', { prior: normalPrior(0.3, 0.7) }],
    ['laplace prior (no kernel: the op path on both)', { prior: laplacePrior(0, 0.5) }],
    ['closed-form KL (no kernel)', { prior: normalPrior(0, 1), kl: 'closed' }],
  ];
  it.each(priors)('%s: samples, KL and the gradients of mu and rho', async (_name, opts) => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        shapeArb(2, 6),
        fc.boolean(),
        fc.nat(),
        async (S, shape, computeKl, seed) => {
          const r = resolveBayesian(opts, -3, 't');
          const keys = Array.from({ length: S }, (_, s) => foldIn(key(seed), s));
          await expectBackendsAgree(() => {
            // rho over the softplus tail and far below it; mu around 0
            const mu = tf.mul(randn(shape, seed), 0.5);
            const rho = tf.sub(tf.mul(randn(shape, seed + 1), 12), 8);
            const dw = randn([S, ...shape], seed + 2);
            const dkl = randn([S], seed + 3);
            const f = (m: tf.Tensor, p: tf.Tensor) => {
              const o = sampleWeightBatched(
                { mu: m, rho: p },
                keys,
                S,
                't',
                r,
                undefined,
                computeKl,
              );
              return {
                w: o.w,
                kl: o.kl,
                loss: tf.add(tf.sum(tf.mul(o.w, dw)), tf.sum(tf.mul(o.kl, dkl))),
              };
            };
            const { w, kl } = f(mu, rho);
            const grads = tf.grads((m: tf.Tensor, p: tf.Tensor) => f(m, p).loss as tf.Scalar)([
              mu,
              rho,
            ]);
            const single = sampleWeight({ mu, rho }, keys[0], 't', r, undefined, computeKl);
            return [w, kl, ...grads, single.w, tf.reshape(single.kl, [1])];
          }, 2e-5);
        },
      ),
      { numRuns: 12 },
    );
  });

  it('one sample equals sample s of the batched kernel bit for bit, and leaves no tensors', async () => {
    await useBackend('wasm');
    const r = resolveBayesian({}, -3, 't');
    const mu = randn([4, 3], 1);
    const rho = tf.sub(randn([4, 3], 2), 3);
    const keys = [0, 1, 2].map((s) => foldIn(key(7), s));
    const before = tf.memory().numTensors;
    const b = sampleWeightBatched({ mu, rho }, keys, 3, 't', r);
    const ws = tf.unstack(b.w);
    const kls = b.kl.dataSync();
    keys.forEach((k, s) => {
      const one = sampleWeight({ mu, rho }, k, 't', r);
      expect(Array.from(one.w.dataSync())).toEqual(Array.from((ws[s] as tf.Tensor).dataSync()));
      expect(one.kl.dataSync()[0]).toBe(kls[s]);
      tf.dispose([one.w, one.kl]);
    });
    tf.dispose([b.w, b.kl, ...ws]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([mu, rho]);
  });
});

describe('Sum on wasm (leading and trailing axes on the heap, in float64) agrees with cpu', () => {
  it('every axis set of ranks 1-5, keepDims, empty axes and zero-size inputs', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc
          .integer({ min: 1, max: 5 })
          .chain((rank) =>
            fc.tuple(
              shapeArb(rank, 5),
              fc.subarray([...Array(rank).keys()]),
              fc.boolean(),
              fc.boolean(),
            ),
          ),
        fc.nat(),
        async ([shape, axes, keepDims, negative], seed) => {
          const ax = negative ? axes.map((a) => a - shape.length) : axes;
          await expectBackendsAgree(
            () => [
              tf.sum(randn(shape, seed), ax, keepDims),
              tf.sum(tf.cast(tf.mul(randn(shape, seed), 10), 'int32'), ax, keepDims),
            ],
            // the package's own kernel (trailing axes) sums in float32
            1e-4,
          );
        },
      ),
      { numRuns: 80 },
    );
    await expectBackendsEqual(() => [
      tf.sum(tf.zeros([0, 3]), 0),
      tf.sum(tf.zeros([3, 0]), 1),
      tf.sum(tf.ones([2, 3]), []),
    ]);
  });
});

describe('Slice, Unpack, SplitV, Concat, Pack on wasm (copies in place) equal cpu', () => {
  it('slices and splits along any axis, any dtype', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.nat(),
        fc.constantFrom<tf.DataType>('float32', 'int32', 'bool'),
        fc.nat(),
        async (rank, axisSeed, dtype, seed) => {
          const shape = Array.from(values(seed, rank), (v) => 1 + Math.floor((v + 1) * 2.5));
          const axis = axisSeed % rank;
          const len = shape[axis] as number;
          const r = values(seed + 1, 2 * rank);
          const begin = shape.map((d, i) => Math.floor(((r[i] ?? 0) + 1) * 0.5 * d) % d);
          const size = shape.map((d, i) =>
            Math.max(1, Math.floor(((r[rank + i] ?? 0) + 1) * 0.5 * (d - (begin[i] ?? 0)))),
          );
          const cut = Math.floor(len / 2);
          await expectBackendsEqual(() => {
            const x = ofType(randn(shape, seed), dtype);
            return [
              tf.slice(x, begin, size),
              ...tf.unstack(x, axis),
              ...tf.split(x, cut > 0 ? [cut, len - cut] : [len], axis),
            ];
          });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('concat and stack along any axis (negative too), any dtype, empty inputs', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.nat(),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom<tf.DataType>('float32', 'int32', 'bool'),
        fc.nat(),
        async (rank, axisSeed, count, dtype, seed) => {
          const shape = Array.from(values(seed, rank), (v) => 1 + Math.floor((v + 1) * 2));
          const axis = axisSeed % rank;
          await expectBackendsEqual(() => {
            const parts = Array.from({ length: count }, (_, i) => {
              const s = [...shape];
              s[axis] = 1 + ((seed + i) % 3);
              return ofType(randn(s, seed + i), dtype);
            });
            const same = parts.map((_, i) => ofType(randn(shape, seed + 7 * i), dtype));
            const empty = [...shape];
            empty[axis] = 0;
            return [
              tf.concat(parts, axis),
              tf.concat([...parts, tf.zeros(empty, dtype)], axis - rank),
              tf.stack(same, axis),
              tf.stack(same, -1 - axis),
            ];
          });
        },
      ),
      { numRuns: 40 },
    );
  });

  it('string tensors still work (the package kernels)', async () => {
    await useBackend('wasm');
    const s = tf.tensor2d(['a', 'b', 'c', 'd'], [2, 2]);
    expect(tf.slice(s, [0, 1], [2, 1]).arraySync()).toEqual([['b'], ['d']]);
    expect(tf.unstack(s).map((t) => t.arraySync())).toEqual([
      ['a', 'b'],
      ['c', 'd'],
    ]);
    expect(tf.concat([s, s], 1).arraySync()).toEqual([
      ['a', 'b', 'a', 'b'],
      ['c', 'd', 'c', 'd'],
    ]);
    tf.disposeVariables();
  });
});

describe('Identity and Tanh on wasm', () => {
  it('a clone shares the data (no copy) and outlives its source', async () => {
    await useBackend('wasm');
    const before = tf.memory().numDataBuffers;
    const x = tf.tensor1d([1, 2, 3]);
    const y = tf.clone(x);
    expect(tf.memory().numDataBuffers).toBe(before + 1);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
    y.dispose();
    expect(tf.memory().numDataBuffers).toBe(before);
  });

  it('tanh within 3 ulp of cpu (Math.tanh) over the float range, exact at the specials', async () => {
    const xs = new Float32Array(40000);
    for (let i = 0; i < xs.length; i++) {
      const e = -30 + (i % 2000) * 0.0175; // |x| from 1e-9 to ~3e6, both signs
      xs[i] = (i % 2 === 0 ? 1 : -1) * Math.pow(2, e) * (1 + (i % 7) / 7);
    }
    const specials = [0, -0, Infinity, -Infinity, NaN, 7.9, -7.9, 9.1, 1e-30];
    const [w] = await runOn('wasm', () => tf.tanh(tf.tensor1d([...xs, ...specials])));
    const got = w?.data ?? new Float32Array();
    let worst = 0;
    for (let i = 0; i < xs.length; i++) {
      const want = Math.fround(Math.tanh(xs[i] ?? 0));
      const ulp = Math.max(Math.abs(want) * 2 ** -23, 2 ** -149);
      worst = Math.max(worst, Math.abs((got[i] ?? NaN) - want) / ulp);
    }
    expect(worst).toBeLessThanOrEqual(3);
    const tail = Array.from(got.subarray(xs.length));
    expect(tail.slice(0, 4)).toEqual([0, -0, 1, -1]);
    expect(Object.is(tail[1], -0)).toBe(true);
    expect(Number.isNaN(tail[4])).toBe(true);
    expect(tail[7]).toBe(1);
    expect(tail[8]).toBe(Math.fround(1e-30));
  });
});

describe('fused recurrent cells (BlitzLSTMCell, BlitzGRUCell and their gradients)', () => {
  const sig64 = (v: number): number => 1 / (1 + Math.exp(-v));

  it('equal float64 references of one step, forward and backward', async () => {
    await useBackend('wasm');
    for (const [S, B, H, F] of [
      [1, 1, 1, 1],
      [2, 3, 4, 2],
      [3, 5, 8, 3],
    ] as const) {
      const n = S * B * H;
      const pre = values(1, S * B * 4 * H).map((v) => 3 * v);
      const st = values(2, n);
      const xv = values(3, S * B * F);
      const dy = values(4, n);
      const dh = values(5, n);
      const dc = values(6, n);
      const at = (r: number, g: number, j: number) => pre[r * 4 * H + g * H + j] as number;
      const ref = {
        h: [] as number[],
        c: [] as number[],
        dpre: [] as number[],
        dcp: [] as number[],
      };
      const gru = { h: [] as number[], dpre: [] as number[], dhz: [] as number[] };
      for (let r = 0; r < S * B; r++)
        for (let j = 0; j < H; j++) {
          const e = r * H + j;
          // LSTM
          const [i, f, g, o] = [
            sig64(at(r, 0, j)),
            sig64(at(r, 1, j)),
            Math.tanh(at(r, 2, j)),
            sig64(at(r, 3, j)),
          ];
          const c = f * (st[e] ?? 0) + i * g;
          const tc = Math.tanh(c);
          ref.h[e] = o * tc;
          ref.c[e] = c;
          const dhe = (dy[e] ?? 0) + (dh[e] ?? 0);
          const dct = (dc[e] ?? 0) + dhe * o * (1 - tc * tc);
          [ref.dpre[r * 4 * H + j], ref.dpre[r * 4 * H + H + j]] = [
            dct * g * i * (1 - i),
            dct * (st[e] ?? 0) * f * (1 - f),
          ];
          [ref.dpre[r * 4 * H + 2 * H + j], ref.dpre[r * 4 * H + 3 * H + j]] = [
            dct * i * (1 - g * g),
            dhe * tc * o * (1 - o),
          ];
          ref.dcp[e] = dct * f;
          // GRU
          const [rr, z, pn] = [sig64(at(r, 0, j)), sig64(at(r, 1, j)), at(r, 3, j)];
          const nn = Math.tanh(at(r, 2, j) + rr * pn);
          gru.h[e] = nn + z * ((st[e] ?? 0) - nn);
          const dhg = (dy[e] ?? 0) + (dh[e] ?? 0) + (dc[e] ?? 0);
          const dpn = dhg * (1 - z) * (1 - nn * nn);
          gru.dpre[r * 4 * H + j] = dpn * pn * rr * (1 - rr);
          gru.dpre[r * 4 * H + H + j] = dhg * ((st[e] ?? 0) - nn) * z * (1 - z);
          gru.dpre[r * 4 * H + 2 * H + j] = dpn;
          gru.dpre[r * 4 * H + 3 * H + j] = dpn * rr;
          gru.dhz[e] = dhg * z;
        }
      const run = (name: string, inputs: Record<string, tf.Tensor>, attrs = {}): Float32Array[] => {
        const outs = tf.engine().runKernel(name, inputs, attrs) as tf.Tensor[];
        const res = outs.map((t) => Float32Array.from(t.dataSync()));
        tf.dispose(outs);
        return res;
      };
      const before = tf.memory();
      const t = {
        pre: tf.tensor3d(pre, [S, B, 4 * H]),
        s: tf.tensor3d(st, [S, B, H]),
        x: tf.tensor3d(xv, [S, B, F]),
        dy: tf.tensor3d(dy, [S, B, H]),
        dh: tf.tensor3d(dh, [S, B, H]),
        dc: tf.tensor3d(dc, [S, B, H]),
      };
      const close = (a: Float32Array | undefined, b: number[]) =>
        expect(relErr(a ?? new Float32Array(), Float32Array.from(b))).toBeLessThanOrEqual(2e-6);
      const [h, c, act, a, aT] = run(
        'BlitzLSTMCell',
        { pre: t.pre, c: t.s, x: t.x },
        { transposed: true },
      );
      close(h, ref.h);
      close(c, ref.c);
      // a = [x, h] and its transpose per sample
      const K = F + H;
      for (let r = 0; r < S * B; r++)
        for (let k = 0; k < K; k++) {
          const v = k < F ? (xv[r * F + k] ?? 0) : (h?.[r * H + k - F] ?? 0);
          expect(a?.[r * K + k]).toBe(Math.fround(v));
          const [s0, b0] = [Math.floor(r / B), r % B];
          expect(aT?.[s0 * K * B + k * B + b0]).toBe(Math.fround(v));
        }
      const actT = tf.tensor4d(act ?? new Float32Array(), [5, S, B, H]);
      const [dpre, dcp] = run('BlitzLSTMCellGrad', {
        dy: t.dy,
        dh: t.dh,
        dc: t.dc,
        act: actT,
        cPrev: t.s,
      });
      close(dpre, ref.dpre);
      close(dcp, ref.dcp);
      const [gh, gact] = run('BlitzGRUCell', { pre: t.pre, h: t.s });
      close(gh, gru.h);
      const gactT = tf.tensor4d(gact ?? new Float32Array(), [4, S, B, H]);
      const [gdpre, dhz] = run('BlitzGRUCellGrad', {
        dy: t.dy,
        dh: t.dh,
        dhz: t.dc,
        act: gactT,
        hPrev: t.s,
      });
      close(gdpre, gru.dpre);
      close(dhz, gru.dhz);
      tf.dispose([...Object.values(t), actT, gactT]);
      expect(tf.memory().numTensors).toBe(before.numTensors);
      expect(tf.memory().numDataBuffers).toBe(before.numDataBuffers);
    }
  });
});

describe('memory', () => {
  it('numTensors and numDataBuffers stay flat over 20 gradient calls on wasm', async () => {
    await useBackend('wasm');
    const x = randn([2, 7, 6, 3], 1) as tf.Tensor4D;
    const f = randn([3, 3, 3, 4], 2) as tf.Tensor4D;
    const dwf = randn([3, 3, 3, 2], 3) as tf.Tensor4D;
    const x5 = randn([1, 4, 5, 4, 2], 4) as tf.Tensor5D;
    const f5 = randn([2, 2, 2, 2, 3], 5) as tf.Tensor5D;
    const table = randn([6, 4], 6);
    const idx = tf.tensor1d([0, 5, 5, 2], 'int32');
    const step = (): tf.Tensor[] =>
      tf.tidy(() => [
        ...tf.grads((x: tf.Tensor, f: tf.Tensor) =>
          tf.sum(tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 2, 'same')),
        )([x, f]),
        ...tf.grads((x: tf.Tensor, f: tf.Tensor) =>
          tf.sum(tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, 'valid')),
        )([x, dwf]),
        ...tf.grads((x: tf.Tensor, f: tf.Tensor) =>
          tf.sum(tf.conv3d(x as tf.Tensor5D, f as tf.Tensor5D, 2, 'same')),
        )([x5, f5]),
        tf.grad((x: tf.Tensor) => tf.sum(tf.maxPool(x as tf.Tensor4D, 2, 2, 'same')))(x),
        tf.grad((x: tf.Tensor) => tf.sum(tf.maxPool3d(x as tf.Tensor5D, 2, 1, 'valid')))(x5),
        tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, idx)))(table),
      ]);
    tf.dispose(step());
    const before = tf.memory();
    const counts: number[] = [];
    for (let i = 0; i < 20; i++) {
      tf.dispose(step());
      counts.push(tf.memory().numTensors);
    }
    const after = tf.memory();
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.numDataBuffers).toBe(before.numDataBuffers);
    expect(new Set(counts).size).toBe(1);
    tf.dispose([x, f, dwf, x5, f5, table, idx]);
  });

  it('a kernel given bare TensorInfos neither frees nor leaks them', async () => {
    await useBackend('wasm');
    const x = randn([1, 5, 5, 2], 7);
    const dy = randn([1, 3, 3, 2], 8);
    const bare = (t: tf.Tensor): tf.TensorInfo => ({
      dataId: t.dataId,
      shape: t.shape,
      dtype: t.dtype,
    });
    const attrs = { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', filterShape: [3, 3, 2, 2] };
    const expected = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs) as tf.Tensor;
    const before = tf.memory();
    const out = tf
      .engine()
      .runKernel(
        'Conv2DBackpropFilter',
        { x: bare(x), dy: bare(dy) } as unknown as tf.NamedTensorMap,
        attrs,
      ) as tf.Tensor;
    expect(relErr(out.dataSync() as Float32Array, expected.dataSync() as Float32Array)).toBe(0);
    out.dispose();
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numDataBuffers).toBe(before.numDataBuffers);
    // the inputs are intact
    expect(Array.from(x.dataSync())).toEqual(Array.from(values(7, 50)));
    tf.dispose([x, dy, expected]);
  });
});
