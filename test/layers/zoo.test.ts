/**
 * The model zoo: LeNet-5 and VGG build the documented parameter trees and output
 * `[batch, numClasses]`, their batched pass equals a loop of `apply` calls, VGG's conv means
 * start with the reference's He fan-out initialisation, and bad options are all reported at once.
 * VGG runs at a reduced width (`widthFactor`) on 32x32 inputs to stay fast.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { foldIn, key, uniformArray } from '../../src/params/random';
import { dispose, get, leaves, paths, type ParamTree } from '../../src/params/tree';
import { bayesianConv2d } from '../../src/layers/conv';
import { ConfigError } from '../../src/errors';
import { bayesianLeNet5, bayesianVGG, VGG_CONFIGS } from '../../src/layers/zoo';
import { loopSamples, vmapSamples } from '../../src/transforms/elbo';
import { expectClose, meanStd, vals } from '../helpers/reference';

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

/** Leaf paths and shapes of a parameter tree. */
function shapes(params: ParamTree): Record<string, number[]> {
  const ls = leaves(params) as tf.Tensor[];
  return Object.fromEntries(paths(params).map((p, i) => [p, (ls[i] as tf.Tensor).shape]));
}

const image = (seed: number, shape: number[]): tf.Tensor =>
  tf.tensor(
    uniformArray(
      key(seed),
      shape.reduce((a, b) => a * b, 1),
    ),
    shape,
  );

describe('bayesianLeNet5', () => {
  it('has the reference layout: documented paths and shapes, fc1 of 256 inputs for 28x28', () => {
    const model = bayesianLeNet5();
    expect(model.outputShape([-1, 28, 28, 1])).toEqual([-1, 10]);
    const { params, outputShape } = model.init(key(0), [-1, 28, 28, 1]);
    expect(outputShape).toEqual([-1, 10]);
    const s = shapes(params);
    expect(s).toEqual({
      'conv1.bias.mu': [6],
      'conv1.bias.rho': [6],
      'conv1.kernel.mu': [5, 5, 1, 6],
      'conv1.kernel.rho': [5, 5, 1, 6],
      'conv2.bias.mu': [16],
      'conv2.bias.rho': [16],
      'conv2.kernel.mu': [5, 5, 6, 16],
      'conv2.kernel.rho': [5, 5, 6, 16],
      'fc1.bias.mu': [120],
      'fc1.bias.rho': [120],
      'fc1.kernel.mu': [256, 120],
      'fc1.kernel.rho': [256, 120],
      'fc2.bias.mu': [84],
      'fc2.bias.rho': [84],
      'fc2.kernel.mu': [120, 84],
      'fc2.kernel.rho': [120, 84],
      'fc3.bias.mu': [10],
      'fc3.bias.rho': [10],
      'fc3.kernel.mu': [84, 10],
      'fc3.kernel.rho': [84, 10],
    });
    const layers = (model.config['layers'] as { key: string; kind: string }[]).map(
      (l) => `${l.key}:${l.kind}`,
    );
    expect(layers).toEqual([
      'conv1:bayesianConv2d',
      'relu1:relu',
      'pool1:maxPool2d',
      'conv2:bayesianConv2d',
      'relu2:relu',
      'pool2:maxPool2d',
      'flatten:flatten',
      'fc1:bayesianLinear',
      'relu3:relu',
      'fc2:bayesianLinear',
      'relu4:relu',
      'fc3:bayesianLinear',
    ]);
    const x = image(1, [2, 28, 28, 1]);
    const { out, kl } = model.apply(params, x, { key: key(2) });
    expect(out.shape).toEqual([2, 10]);
    expect(Number.isFinite(kl.dataSync()[0])).toBe(true);
    dispose([params, x, out, kl]);
  });

  it('sizes fc1 from inputSize and inChannels (classic 32x32x3: 400 inputs), numClasses out', () => {
    const model = bayesianLeNet5({ inChannels: 3, inputSize: 32, numClasses: 7, name: 'net' });
    expect(model.name).toBe('net');
    const { params, outputShape } = model.init(key(0), [-1, 32, 32, 3]);
    expect(outputShape).toEqual([-1, 7]);
    expect((get(params, 'fc1.kernel.mu') as tf.Tensor).shape).toEqual([400, 120]);
    expect((get(params, 'conv1.kernel.mu') as tf.Tensor).shape).toEqual([5, 5, 3, 6]);
    dispose(params);
    const rect = bayesianLeNet5({ inputSize: [16, 28] });
    expect(rect.outputShape([-1, 16, 28, 1])).toEqual([-1, 10]);
  });

  it('vmapSamples == a loop of apply calls (16x16, the smallest input)', () => {
    const model = bayesianLeNet5({ inputSize: 16, posteriorRhoInit: -3 });
    const { params } = model.init(key(3), [-1, 16, 16, 1]);
    const x = image(4, [2, 16, 16, 1]);
    const v = vmapSamples(model, 3)(params, x, { key: key(5) });
    const l = loopSamples(model, 3)(params, x, { key: key(5) });
    expect(v.out.shape).toEqual([3, 2, 10]);
    expectClose(vals(v.out), vals(l.out), 1e-4, 1e-5, 'out');
    expectClose(vals(v.kl), vals(l.kl), 1e-4, 1e-2, 'kl');
    dispose([params, x, v, l]);
  });

  it('passes the Bayesian options to every Bayesian layer and reports all problems at once', () => {
    const model = bayesianLeNet5({ inputSize: 16, priorSigma1: 0.5, freeze: true });
    const cfgs = model.config['layers'] as { key: string; config: Record<string, unknown> }[];
    for (const c of cfgs.filter((l) => /^(conv|fc)/.test(l.key))) {
      expect(c.config['priorSigma1']).toBe(0.5);
      expect(c.config['freeze']).toBe(true);
    }
    const e = errorOf(() =>
      bayesianLeNet5({ inputSize: 12, numClasses: 0, priorPi: 2, extra: 1 } as never),
    );
    expect(e).toBeInstanceOf(ConfigError);
    const problems = (e as ConfigError).problems.join('\n');
    expect((e as ConfigError).problems).toHaveLength(4);
    expect(problems).toMatch(/unknown option 'extra'/);
    expect(problems).toMatch(/numClasses/);
    expect(problems).toMatch(/inputSize 12 is too small.*at least 16/);
    expect(problems).toMatch(/priorPi/);
  });
});

describe('bayesianVGG', () => {
  const convNames = (depth: 11 | 13 | 16 | 19): string[] => {
    const names: string[] = [];
    let b = 1;
    let i = 0;
    for (const v of VGG_CONFIGS[depth]) {
      if (v === 'M') {
        b++;
        i = 0;
      } else names.push(`conv${b}_${++i}`);
    }
    return names;
  };

  it('VGG-11 has the reference layout: features (8 convs, 5 pools), flatten, 3 classifier layers', () => {
    const full = bayesianVGG({ depth: 11 });
    expect(full.outputShape([-1, 32, 32, 3])).toEqual([-1, 10]);
    const features = (
      full.config['layers'] as { key: string; config: Record<string, unknown> }[]
    )[0]?.config['layers'] as { key: string; kind: string; config: Record<string, unknown> }[];
    expect(features.map((l) => l.key)).toEqual([
      'conv1_1', 'relu1_1', 'pool1',
      'conv2_1', 'relu2_1', 'pool2',
      'conv3_1', 'relu3_1', 'conv3_2', 'relu3_2', 'pool3',
      'conv4_1', 'relu4_1', 'conv4_2', 'relu4_2', 'pool4',
      'conv5_1', 'relu5_1', 'conv5_2', 'relu5_2', 'pool5',
    ]); // prettier-ignore
    const convs = features.filter((l) => l.kind === 'bayesianConv2d');
    expect(convs.map((l) => l.config['outChannels'])).toEqual([
      64, 128, 256, 256, 512, 512, 512, 512,
    ]);

    const model = bayesianVGG({ depth: 11, widthFactor: 1 / 16 });
    const { params, outputShape } = model.init(key(0), [-1, 32, 32, 3]);
    expect(outputShape).toEqual([-1, 10]);
    const s = shapes(params);
    expect(Object.keys(s)).toHaveLength(8 * 4 + 3 * 4);
    expect(s['features.conv1_1.kernel.mu']).toEqual([3, 3, 3, 4]);
    expect(s['features.conv1_1.bias.rho']).toEqual([4]);
    expect(s['features.conv3_2.kernel.mu']).toEqual([3, 3, 16, 16]);
    expect(s['features.conv5_2.kernel.rho']).toEqual([3, 3, 32, 32]);
    expect(s['classifier.fc1.kernel.mu']).toEqual([32, 32]);
    expect(s['classifier.fc2.kernel.mu']).toEqual([32, 32]);
    expect(s['classifier.fc3.kernel.mu']).toEqual([32, 10]);
    const x = image(1, [2, 32, 32, 3]);
    const { out, kl } = model.apply(params, x, { key: key(2) });
    expect(out.shape).toEqual([2, 10]);
    expect(Number.isFinite(kl.dataSync()[0])).toBe(true);
    dispose([params, x, out, kl]);
  });

  it('depths 13, 16, 19 follow configurations B, D, E', () => {
    for (const depth of [13, 16, 19] as const) {
      const model = bayesianVGG({ depth, widthFactor: 1 / 64, numClasses: 3, inChannels: 1 });
      const { params, outputShape } = model.init(key(depth), [-1, 32, 32, 1]);
      expect(outputShape).toEqual([-1, 3]);
      const convs = paths(params)
        .filter((p) => p.endsWith('.kernel.mu') && p.startsWith('features.'))
        .map((p) => p.split('.')[1]);
      expect(convs.sort()).toEqual(convNames(depth).sort());
      expect(convs).toHaveLength(depth - 3);
      dispose(params);
    }
  });

  it('sizes the classifier from inputSize (64x64: 2x2 cells after 5 pools)', () => {
    const model = bayesianVGG({ depth: 11, widthFactor: 1 / 16, inputSize: 64 });
    const { params } = model.init(key(0), [-1, 64, 64, 3]);
    expect((get(params, 'classifier.fc1.kernel.mu') as tf.Tensor).shape).toEqual([32 * 4, 32]);
    dispose(params);
  });

  it('vmapSamples == a loop of apply calls (tiny VGG-11)', () => {
    const model = bayesianVGG({ depth: 11, widthFactor: 1 / 32, posteriorRhoInit: -3 });
    const { params } = model.init(key(3), [-1, 32, 32, 3]);
    const x = image(4, [2, 32, 32, 3]);
    const v = vmapSamples(model, 2)(params, x, { key: key(5) });
    const l = loopSamples(model, 2)(params, x, { key: key(5) });
    expect(v.out.shape).toEqual([2, 2, 10]);
    expectClose(vals(v.out), vals(l.out), 1e-4, 1e-5, 'out');
    expectClose(vals(v.kl), vals(l.kl), 1e-4, 1e-2, 'kl');
    dispose([params, x, v, l]);
  });

  it("initialises conv means as the reference: N(0, 2 / (3 * 3 * out)), bias means 0, rho the layer's own", () => {
    const model = bayesianVGG({ depth: 11, widthFactor: 1 / 4 });
    const k = key(7);
    const { params } = model.init(k, [-1, 32, 32, 3]);
    const cfg = VGG_CONFIGS[11];
    let inC = 3;
    let i = 0;
    convNames(11).forEach((name) => {
      while (cfg[i] === 'M') i++;
      const out = Math.round((cfg[i++] as number) / 4);
      const mu = vals(get(params, `features.${name}.kernel.mu`) as tf.Tensor);
      const n = mu.length;
      expect(n).toBe(9 * inC * out);
      const { mean, std } = meanStd(mu);
      const target = Math.sqrt(2 / (9 * out));
      // sampling error of a std estimate: about target / sqrt(2n); allow 4 of them
      expect(Math.abs(std / target - 1)).toBeLessThan(4 / Math.sqrt(2 * n));
      expect(Math.abs(mean)).toBeLessThan((4 * target) / Math.sqrt(n));
      expect(vals(get(params, `features.${name}.bias.mu`) as tf.Tensor).every((v) => v === 0)).toBe(
        true,
      );
      inC = out;
    });
    // rho is exactly what the conv layer itself draws (the features are child 0, conv1_1 child 0)
    const plain = bayesianConv2d({ inChannels: 3, outChannels: 16, kernelSize: 3, padding: 1 });
    const ref = plain.init(foldIn(foldIn(k, 0), 0), [-1, 32, 32, 3]).params as ParamTree;
    expect(vals(get(params, 'features.conv1_1.kernel.rho') as tf.Tensor)).toEqual(
      vals(get(ref, 'kernel.rho') as tf.Tensor),
    );
    // linear layers keep their own init: mu ~ N(0, 0.1)
    const fc = meanStd(vals(get(params, 'classifier.fc2.kernel.mu') as tf.Tensor));
    expect(Math.abs(fc.std / 0.1 - 1)).toBeLessThan(0.05);
    dispose([params, ref]);
    // heInit: false keeps the conv's N(0, 0.1)
    const plainInit = bayesianVGG({ depth: 11, widthFactor: 1 / 16, heInit: false });
    const p2 = plainInit.init(key(8), [-1, 32, 32, 3]).params;
    const c = meanStd(vals(get(p2, 'features.conv5_1.kernel.mu') as tf.Tensor));
    expect(Math.abs(c.std / 0.1 - 1)).toBeLessThan(0.1);
    dispose(p2);
  });

  it('adds dropout before fc1 and fc2 when asked (the reference has it commented out)', () => {
    const none = bayesianVGG({ depth: 11, widthFactor: 1 / 64 });
    const keysOf = (m: typeof none): string[] =>
      (
        (m.config['layers'] as { config: Record<string, unknown> }[])[2]?.config['layers'] as {
          key: string;
        }[]
      ).map((l) => l.key);
    expect(keysOf(none)).toEqual(['fc1', 'relu1', 'fc2', 'relu2', 'fc3']);
    const withDrop = bayesianVGG({ depth: 11, widthFactor: 1 / 64, dropRate: 0.5 });
    expect(keysOf(withDrop)).toEqual([
      'dropout1',
      'fc1',
      'relu1',
      'dropout2',
      'fc2',
      'relu2',
      'fc3',
    ]);
  });

  it('reports every bad option at once, and leaks nothing', () => {
    const e = errorOf(() =>
      bayesianVGG({
        depth: 12 as 11,
        inputSize: 16,
        widthFactor: 0,
        dropRate: 1,
        heInit: 'yes' as unknown as boolean,
        colour: true,
      } as never),
    );
    expect(e).toBeInstanceOf(ConfigError);
    const problems = (e as ConfigError).problems;
    expect(problems).toHaveLength(6);
    expect(problems.join('\n')).toMatch(/depth must be 11, 13, 16 or 19, got 12/);
    expect(problems.join('\n')).toMatch(
      /inputSize 16 does not survive VGG's 5 2x2 max pools.*at least 32/,
    );
    const before = tf.memory().numTensors;
    const model = bayesianVGG({ depth: 11, widthFactor: 1 / 64 });
    const { params } = model.init(key(0), [-1, 32, 32, 3]);
    const x = tf.ones([1, 32, 32, 3]);
    const r = model.apply(params, x, { key: key(1) });
    dispose([params, x, r]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
