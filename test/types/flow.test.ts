/**
 * Type-level tests: the types flow from the layers through composition into the transforms. The
 * assertions are checked by the compiler (`npm run typecheck` compiles this file; a failing
 * `expectTypeOf` or an unused `@ts-expect-error` is a compile error); the runtime part only
 * checks that the code it types runs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { layers, optim, random, transforms, tree, type GaussianParams, type Key } from '../../src';

const mlp = () =>
  layers.serial({
    hidden: layers.bayesianLinear({ inFeatures: 1, outFeatures: 4 }),
    act: layers.relu(),
    out: layers.bayesianLinear({ inFeatures: 4, outFeatures: 1 }),
  });

const convNet = () =>
  layers.serial({
    conv: layers.bayesianConv1d({ inChannels: 1, outChannels: 2, kernelSize: 3 }),
    flat: layers.flatten(),
  });

/** Never run: lines that must NOT compile. */
function mustNotCompile(): void {
  const model = mlp();
  const other = convNet();
  const lik = transforms.gaussianNll();
  const k = random.key(0);
  const p = model.init(k, [-1, 1]).params;
  const po = other.init(k, [-1, 8, 1]).params;
  const x = tf.zeros([2, 1]);
  // @ts-expect-error the params of another model
  model.apply(po, x, { key: k });
  // @ts-expect-error a typo in a parameter path
  void p.hiden;
  // @ts-expect-error vmapSamples takes the model's params
  transforms.vmapSamples(model, 2)(po, x, { key: k });
  // @ts-expect-error predictive takes the model's params
  transforms.predictive(model, po, x, { key: k });
  const loss = transforms.elbo(model, lik);
  // @ts-expect-error the ELBO takes { model, likelihood } of this model and likelihood
  loss({ model: po, likelihood: lik.init() }, x, x, k, 1);
  // @ts-expect-error nor a tree without the likelihood's params
  loss({ model: p, likelihood: {} }, x, x, k, 1);
  const step = transforms.trainStep(loss, optim.adam({ learningRate: 1e-2 }));
  const opt = optim.adam({ learningRate: 1e-2 });
  const bad = { model: po, likelihood: lik.init() };
  // @ts-expect-error trainStep's state holds the loss's params
  step({ params: bad, optState: opt.init(bad), step: 0 }, x, x, k, 1);
  void transforms.fit({
    loss,
    optimizer: opt,
    // @ts-expect-error fit takes the loss's params, not another model's
    params: bad,
    x,
    y: x,
    key: k,
    epochs: 1,
    batchSize: 1,
  });
  // @ts-expect-error split(k, 3) is a tuple of three keys
  const [, , , k4] = random.split(k, 3);
  void k4;
}

describe('types flow', () => {
  it('serial records type their params; split, gaussianNll and the transforms keep the types', () => {
    expect(typeof mustNotCompile).toBe('function');
    const model = mlp();
    const [kInit, kLoss] = random.split(random.key(0), 2);
    expectTypeOf(kInit).toEqualTypeOf<Key>();
    expectTypeOf(random.split(kInit)).toEqualTypeOf<[Key, Key]>();
    expectTypeOf(random.split(kInit, 3)).toEqualTypeOf<[Key, Key, Key]>();
    const n: number = 5;
    expectTypeOf(random.split(kInit, n)).toEqualTypeOf<Key[]>();
    const { params } = model.init(kInit, [-1, 1]);
    expectTypeOf(params.hidden.kernel.mu).toEqualTypeOf<tf.Tensor>();
    expectTypeOf(params.hidden.bias).toEqualTypeOf<GaussianParams | undefined>();
    expectTypeOf(params.act).toEqualTypeOf<layers.EmptyParams>();
    expectTypeOf<layers.ParamsOf<typeof model>>().toEqualTypeOf(params);
    const lik = transforms.gaussianNll({ initStd: 0.5 });
    const lp = lik.init();
    // noiseStd is not optional on gaussianNll's likelihood: no `!` or cast needed
    const sigma = lik.noiseStd(lp);
    expectTypeOf(sigma).toEqualTypeOf<tf.Scalar>();
    const loss = transforms.elbo(model, lik, { numSamples: 2 });
    type P = transforms.ElboParams<typeof params, typeof lp>;
    const all: P = { model: params, likelihood: lp };
    expectTypeOf(loss)
      .parameter(0)
      .toEqualTypeOf<transforms.ElboParams<typeof params, typeof lp>>();
    // the optimizer's updates have the params' type
    const opt = optim.adam({ learningRate: 1e-2 });
    const { value, grads } = transforms.valueAndGrad(loss)(
      all,
      tf.zeros([2, 1]),
      tf.zeros([2, 1]),
      kLoss,
      0.5,
    );
    const u = opt.update(grads, opt.init(all), all);
    expectTypeOf(u.updates).toEqualTypeOf<P>();
    const next = optim.applyUpdates(all, u.updates);
    expectTypeOf(next).toEqualTypeOf<P>();
    expectTypeOf(next.model.out.kernel.rho).toEqualTypeOf<tf.Tensor>();
    const step = transforms.trainStep(loss, opt);
    expectTypeOf(step).parameter(0).toEqualTypeOf<transforms.TrainState<P, optim.AdamState>>();
    expect(sigma.dataSync()[0]).toBeCloseTo(0.5, 5);
    tf.dispose([value, sigma]);
    tree.dispose([grads, u.updates, next, u.state, params, lp]);
  });
});
