/**
 * Type-level tests of the optimizers and the training loop: `GradientTransformation` is generic in
 * the params (updates have the type of the grads), and `trainStep` / `fit` take the params type
 * `P` from the LOSS, rejecting params of another type. The compiler checks these (`npm run
 * typecheck` compiles this file: a failing `expectTypeOf` or an unused `@ts-expect-error` is a
 * compile error); the runtime part checks that the typed code runs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  adam,
  adamw,
  addDecayedWeights,
  applyUpdates,
  chain,
  clipByGlobalNorm,
  identity,
  minibatchWeight,
  rmsprop,
  scale,
  scaleByAdam,
  scaleByLearningRate,
  sgd,
  trace,
  type AdamState,
  type EmptyState,
  type GradientTransformation,
  type ScaleByAdamState,
  type SgdState,
  type TransformResult,
} from '../../src/optim';
import { key, type Key } from '../../src/params/random';
import { dispose } from '../../src/params/tree';
import { fit, trainStep, type FitResult, type TrainState } from '../../src/transforms/train';

type P = { readonly w: tf.Tensor; readonly b: tf.Tensor };
type Q = { readonly v: tf.Tensor };

const lossP = (p: P, x: tf.Tensor): tf.Scalar => tf.sum(tf.add(tf.mul(p.w, x), p.b)) as tf.Scalar;
const fitLossP = (p: P, x: tf.Tensor, _y: tf.Tensor, _k: Key, w: number): tf.Scalar =>
  tf.add(tf.sum(tf.square(tf.sub(p.w, tf.mean(x)))), tf.mul(tf.sum(tf.square(p.b)), w));

/** Never run: the types, and the lines that must NOT compile. */
function typeChecks(params: P, grads: P, other: Q, x: tf.Tensor): void {
  // every transformation: updates of the grads' type
  const opts: GradientTransformation[] = [
    sgd({ learningRate: 0.1, momentum: 0.9 }),
    adam({ learningRate: 1e-3 }),
    adamw({ learningRate: 1e-3, mask: (path) => !path.endsWith('b') }),
    rmsprop({ learningRate: 1e-3, centered: true }),
    chain(clipByGlobalNorm(1), adam({ learningRate: 1e-3 })),
    addDecayedWeights({ weightDecay: 1e-4, mask: (path) => path === 'w' }),
    scale(0.5),
    scaleByLearningRate((count) => 1 / (1 + count)),
    trace({ decay: 0.9 }),
    identity(),
  ];
  for (const opt of opts) {
    const r = opt.update(grads, opt.init(params), params);
    expectTypeOf(r.updates).toEqualTypeOf<P>();
    expectTypeOf(applyUpdates(params, r.updates)).toEqualTypeOf<P>();
  }
  const a = adam({ learningRate: 1e-3 });
  const s = a.init(params);
  expectTypeOf(s).toEqualTypeOf<AdamState>();
  expectTypeOf(a.update(grads, s)).toEqualTypeOf<TransformResult<AdamState, P>>();
  // one optimizer serves any model: the same instance on Q
  expectTypeOf(a.update(other, a.init(other)).updates).toEqualTypeOf<Q>();
  // chain's state is the tuple of its transforms' states
  const c = chain(clipByGlobalNorm(1), scaleByAdam(), scaleByLearningRate(1e-3));
  expectTypeOf(c.init(params)).toMatchTypeOf<
    readonly [EmptyState, ScaleByAdamState, EmptyState | { readonly count: number }]
  >();
  expectTypeOf(c.update(grads, c.init(params), params).updates).toEqualTypeOf<P>();

  // @ts-expect-error the updates must have the params' type
  applyUpdates(params, other);
  // @ts-expect-error grads and params of different types
  a.update(grads, s, other);
  // @ts-expect-error the state of another optimizer
  a.update(grads, sgd({ learningRate: 1 }).init(params));

  // trainStep: P and the state's params are the loss's
  const step = trainStep(lossP, a);
  const state: TrainState<P, AdamState> = { params, optState: s, step: 0 };
  expectTypeOf(step(state, x).state).toEqualTypeOf<TrainState<P, AdamState>>();
  const otherState: TrainState<Q, AdamState> = { params: other, optState: s, step: 0 };
  // @ts-expect-error trainStep's state holds the loss's params
  step(otherState, x);

  // fit: P is the loss's; params of another type do not compile
  const common = { x, y: x, key: key(0), epochs: 1, batchSize: 2 };
  expectTypeOf(fit({ loss: fitLossP, optimizer: a, params, ...common })).toEqualTypeOf<
    Promise<FitResult<P, AdamState>>
  >();
  // @ts-expect-error fit takes the loss's params, not another model's
  void fit({ loss: fitLossP, optimizer: a, params: other, ...common });
  // @ts-expect-error nor a tree missing one of the loss's leaves
  void fit({ loss: fitLossP, optimizer: a, params: { w: params.w }, ...common });
  void fit({
    loss: fitLossP,
    optimizer: a,
    params,
    // @ts-expect-error nor an optimizer state of another optimizer
    optState: sgd({ learningRate: 1 }).init(params),
    ...common,
  });
  // P is inferred from the loss, not from params: a params value of a subtype gives the loss's P
  const wider: P & { readonly extra: tf.Tensor } = { ...params, extra: x };
  expectTypeOf(fit({ loss: fitLossP, optimizer: a, params: wider, ...common })).toEqualTypeOf<
    Promise<FitResult<P, AdamState>>
  >();
  // the callbacks see the loss's P too
  void fit({
    loss: fitLossP,
    optimizer: a,
    params,
    ...common,
    klWeight: ({ batchIndex, numBatches, batchSize }) =>
      minibatchWeight(batchIndex, numBatches) / batchSize,
    onEpoch: (info) => {
      expectTypeOf(info.params).toEqualTypeOf<P>();
    },
  });
}

describe('optimizer and fit types', () => {
  it('the typed code runs: one adam for two models, and fit on the loss params', async () => {
    expect(typeof typeChecks).toBe('function');
    const opt = adam({ learningRate: 0.1 });
    const p: P = { w: tf.ones([2]), b: tf.zeros([2]) };
    const q: Q = { v: tf.ones([3]) };
    const sp = opt.init(p);
    const sq = opt.init(q);
    const up = opt.update(p, sp, p);
    const uq = opt.update(q, sq, q);
    const p2: P = applyUpdates(p, up.updates);
    const q2: Q = applyUpdates(q, uq.updates);
    expect(p2.w.shape).toEqual([2]);
    expect(q2.v.shape).toEqual([3]);
    const x = tf.ones([4, 2]);
    const r: FitResult<P, SgdState> = await fit({
      loss: fitLossP,
      optimizer: sgd({ learningRate: 0.1 }),
      params: p2,
      x,
      y: x,
      key: key(1),
      epochs: 1,
      batchSize: 2,
      progress: false,
    });
    expect(r.step).toBe(2);
    dispose([p, q, sp, sq, up.updates, uq.updates, up.state, uq.state, q2, r.params, x]);
  });
});
