/**
 * The model zoo: Bayesian versions of classic convolutional networks, as in the reference
 * library: `bayesianLeNet5` (its MNIST example `bayesian_LeNet_mnist.py`) and `bayesianVGG`
 * (`blitz/models/b_vgg.py`: VGG 11, 13, 16, 19). Each is a `serial` model with named children,
 * channels-last (`[batch, height, width, channels]` in, logits `[batch, numClasses]` out).
 *
 * Flattening is channels-last (`[h, w, c]` order, not PyTorch's `[c, h, w]`): a converted
 * reference checkpoint needs its first linear layer's rows permuted.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import { foldIn, normal, type Key } from '../params/random';
import { freeze as freezeTree, type ParamTree } from '../params/tree';
import { BAYESIAN_OPTION_NAMES, bayesianChecks, type BayesianOptions } from './bayesian';
import { serial } from './combinators';
import { check, isBool, knownKeys, positiveInt, validate, type Check } from '../validation';
import { bayesianConv2d } from './conv';
import { dropout, flatten, relu } from './deterministic';
import { ParamError, show } from '../errors';
import { bayesianLinear } from './linear';
import { maxPool2d } from './pooling';
import type { AnyLayer, Shape } from './types';

/** The Bayesian options shared by every Bayesian layer of a zoo model. */
function bayesianPart(o: BayesianOptions): BayesianOptions {
  const out: Record<string, unknown> = {};
  for (const k of BAYESIAN_OPTION_NAMES) {
    const v = (o as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = v;
  }
  return out as BayesianOptions;
}

/** An image size: one int (square) or `[height, width]`. */
export type ImageSize = number | readonly [number, number];

function sizePair(v: unknown): [number, number] | undefined {
  const ok = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 1;
  if (ok(v)) return [v, v];
  if (Array.isArray(v) && v.length === 2 && ok(v[0]) && ok(v[1])) return [v[0], v[1]];
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// LeNet-5

/** Options of `bayesianLeNet5`: sizes, and the Bayesian options of every layer. */
export interface BayesianLeNet5Options extends BayesianOptions {
  /** Input channels. Default 1. */
  readonly inChannels?: number;
  /** Output classes. Default 10. */
  readonly numClasses?: number;
  /** Input height and width (one int: square). Default 28 (MNIST); at least 16. */
  readonly inputSize?: ImageSize;
  /** The model's name. Default `'lenet5'`. */
  readonly name?: string;
}

/** The spatial size after LeNet's `conv 5x5 (valid) -> max pool 2` stage, or 0 if none is left. */
const lenetStage = (s: number): number => (s >= 5 ? Math.floor((s - 4) / 2) : 0);

/**
 * `bayesianLeNet5(options?) -> Layer`: the reference's Bayesian LeNet-5 (its MNIST example):
 *
 * ```
 * conv1  bayesianConv2d(inChannels -> 6, 5x5)   relu1  pool1 maxPool2d(2)
 * conv2  bayesianConv2d(6 -> 16, 5x5)           relu2  pool2 maxPool2d(2)
 * flatten
 * fc1    bayesianLinear(16 * h * w -> 120)      relu3
 * fc2    bayesianLinear(120 -> 84)              relu4
 * fc3    bayesianLinear(84 -> numClasses)
 * ```
 *
 * where `h = floor((floor((H - 4) / 2) - 4) / 2)` (and `w` alike): 4 for 28x28, so `fc1` has 256
 * inputs as in the reference. Parameters: `conv1.kernel.mu [5, 5, inChannels, 6]`, `conv1.bias.mu
 * [6]`, ..., `fc3.kernel.mu [84, numClasses]`; the Bayesian options (`priorSigma1`, `freeze`,
 * `prior`, ...) apply to every Bayesian layer, with each layer's own defaults otherwise.
 *
 * @example
 * ```ts
 * const model = bayesianLeNet5(); // MNIST: [batch, 28, 28, 1] -> [batch, 10]
 * const { params } = model.init(random.key(0), [-1, 28, 28, 1]);
 * const loss = elbo(model, softmaxCrossEntropy());
 * ```
 */
export function bayesianLeNet5(options: BayesianLeNet5Options = {}) {
  const o = options ?? {};
  const name = o.name ?? 'lenet5';
  const inChannels = o.inChannels ?? 1;
  const numClasses = o.numClasses ?? 10;
  const size = sizePair(o.inputSize ?? 28);
  const after = size?.map((s) => lenetStage(lenetStage(s)));
  validate(`bayesianLeNet5 '${name}'`, [
    knownKeys(o, ['inChannels', 'numClasses', 'inputSize', 'name', ...BAYESIAN_OPTION_NAMES]),
    positiveInt('inChannels', inChannels),
    positiveInt('numClasses', numClasses),
    check(
      size !== undefined,
      `inputSize must be a positive integer or [height, width], got ${show(o.inputSize)}`,
    ),
    check(
      after === undefined || after.every((s) => s >= 1),
      `inputSize ${show(o.inputSize)} is too small: two 5x5 convolutions, each followed by a 2x2 max pool, need at least 16 pixels per side`,
    ),
    ...bayesianChecks(o),
  ]);
  const b = bayesianPart(o);
  const [h, w] = after as [number, number];
  return serial(
    {
      conv1: bayesianConv2d({ inChannels, outChannels: 6, kernelSize: 5, name: 'conv1', ...b }),
      relu1: relu({ name: 'relu1' }),
      pool1: maxPool2d({ poolSize: 2, name: 'pool1' }),
      conv2: bayesianConv2d({ inChannels: 6, outChannels: 16, kernelSize: 5, name: 'conv2', ...b }),
      relu2: relu({ name: 'relu2' }),
      pool2: maxPool2d({ poolSize: 2, name: 'pool2' }),
      flatten: flatten({ name: 'flatten' }),
      fc1: bayesianLinear({ inFeatures: 16 * h * w, outFeatures: 120, name: 'fc1', ...b }),
      relu3: relu({ name: 'relu3' }),
      fc2: bayesianLinear({ inFeatures: 120, outFeatures: 84, name: 'fc2', ...b }),
      relu4: relu({ name: 'relu4' }),
      fc3: bayesianLinear({ inFeatures: 84, outFeatures: numClasses, name: 'fc3', ...b }),
    },
    { name },
  );
}

// ---------------------------------------------------------------------------------------------
// VGG

/** The VGG depths and their configurations (Simonyan and Zisserman 2015, table 1: A, B, D, E). */
export const VGG_CONFIGS: Readonly<Record<11 | 13 | 16 | 19, readonly (number | 'M')[]>> =
  Object.freeze({
    11: Object.freeze([64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'] as const),
    13: Object.freeze([
      64,
      64,
      'M',
      128,
      128,
      'M',
      256,
      256,
      'M',
      512,
      512,
      'M',
      512,
      512,
      'M',
    ] as const),
    16: Object.freeze([
      64,
      64,
      'M',
      128,
      128,
      'M',
      256,
      256,
      256,
      'M',
      512,
      512,
      512,
      'M',
      512,
      512,
      512,
      'M',
    ] as const),
    19: Object.freeze([
      64,
      64,
      'M',
      128,
      128,
      'M',
      256,
      256,
      256,
      256,
      'M',
      512,
      512,
      512,
      512,
      'M',
      512,
      512,
      512,
      512,
      'M',
    ] as const),
  });

/** Options of `bayesianVGG`. */
export interface BayesianVGGOptions extends BayesianOptions {
  /** 11, 13, 16 or 19 (configurations A, B, D, E). */
  readonly depth: 11 | 13 | 16 | 19;
  /** Input channels. Default 3. */
  readonly inChannels?: number;
  /** Output classes. Default 10 (the reference's `out_nodes`). */
  readonly numClasses?: number;
  /** Input height and width (one int: square). Default 32 (CIFAR-10); at least 32 (5 pools). */
  readonly inputSize?: ImageSize;
  /**
   * Scales every width (conv channels and the classifier's 512 hidden units), rounded, at least
   * 1. Default 1 (the reference's widths); e.g. 1/8 for quick experiments and tests.
   */
  readonly widthFactor?: number;
  /**
   * Dropout before `fc1` and `fc2`, where the reference has `nn.Dropout()` commented out.
   * Default 0: no dropout layers, as the reference.
   */
  readonly dropRate?: number;
  /**
   * Initialise each conv kernel's posterior mean He/Kaiming fan-out, `mu ~ N(0, 2 / n)` with
   * `n = kh * kw * outChannels`, and its bias mean to 0, as the reference's `VGG.__init__`.
   * Default true; false keeps the layers' own `N(posteriorMuInit, 0.1)`.
   */
  readonly heInit?: boolean;
  /** The model's name. Default `'vgg{depth}'`. */
  readonly name?: string;
}

/** `fold-in` tag of the key that draws the He-initialised conv means (0 and 1 are the layer's). */
const HE_INIT_KEY = 2;

type GaussianLeaf = { readonly mu: tf.Tensor; readonly rho: tf.Tensor };
type ConvParams = { readonly kernel: GaussianLeaf; readonly bias?: GaussianLeaf };

/**
 * `heFanOutInit(conv, fanOut) -> Layer`: the conv layer with its `init` replaced by the
 * reference VGG's: kernel `mu ~ N(0, 2 / fanOut)` drawn from `foldIn(key, 2)`, bias `mu = 0`,
 * `rho` as the layer draws it. Everything else is the layer's own.
 */
function heFanOutInit(conv: AnyLayer, fanOut: number): AnyLayer {
  const std = Math.sqrt(2 / fanOut);
  const layer: AnyLayer = {
    ...conv,
    config: Object.freeze({ ...conv.config, muInit: `normal(0, sqrt(2 / ${fanOut}))` }),
    init(key: Key, inputShape: Shape, path?: string) {
      const r = conv.init(key, inputShape, path) as { params: ConvParams; outputShape: Shape };
      const p = r.params;
      if (!(p?.kernel?.mu instanceof tf.Tensor)) {
        tf.dispose(p as unknown as tf.TensorContainer);
        throw new ParamError(path ?? conv.name, 'expected conv params { kernel: { mu, rho } }.');
      }
      const params = tidy(() => {
        const kernel = {
          mu: tf.mul(normal(foldIn(key, HE_INIT_KEY), p.kernel.mu.shape), std),
          rho: p.kernel.rho,
        };
        return p.bias
          ? { kernel, bias: { mu: tf.zerosLike(p.bias.mu), rho: p.bias.rho } }
          : { kernel };
      });
      p.kernel.mu.dispose();
      p.bias?.mu.dispose();
      return { params: freezeTree(params as ParamTree) as ConvParams, outputShape: r.outputShape };
    },
  };
  return Object.freeze(layer);
}

/**
 * `bayesianVGG({ depth, inChannels = 3, numClasses = 10, inputSize = 32, ... }) -> Layer`: the
 * reference's Bayesian VGG (`blitz/models/b_vgg.py`, without batch norm):
 *
 * ```
 * features    per block b = 1..5 of the configuration (A, B, D, E for depth 11, 13, 16, 19):
 *             conv{b}_{i}  bayesianConv2d(c -> c', 3x3, padding 1)   relu{b}_{i}
 *             pool{b}      maxPool2d(2)
 * flatten
 * classifier  fc1 bayesianLinear(512 * h * w -> 512)  relu1
 *             fc2 bayesianLinear(512 -> 512)          relu2
 *             fc3 bayesianLinear(512 -> numClasses)
 * ```
 *
 * with `h = floor(H / 32)` (and `w` alike): 1 for the reference's 32x32 inputs, so `fc1` has 512
 * inputs as there. Conv kernel means start He/Kaiming fan-out, `N(0, 2 / (3 * 3 * outChannels))`,
 * and conv bias means at 0, as the reference initialises them (`heInit`); the `rho`s and the
 * linear layers use the layers' defaults. Parameter paths: `features.conv1_1.kernel.mu
 * [3, 3, inChannels, 64]`, ..., `classifier.fc3.bias.rho [numClasses]`.
 *
 * @example
 * ```ts
 * const model = bayesianVGG({ depth: 11 }); // CIFAR-10: [batch, 32, 32, 3] -> [batch, 10]
 * const small = bayesianVGG({ depth: 11, widthFactor: 1 / 8, numClasses: 100 });
 * const { params } = small.init(random.key(0), [-1, 32, 32, 3]);
 * ```
 */
export function bayesianVGG(options: BayesianVGGOptions) {
  const o = (options ?? {}) as BayesianVGGOptions;
  const depth = o.depth;
  const name = o.name ?? `vgg${String(depth)}`;
  const inChannels = o.inChannels ?? 3;
  const numClasses = o.numClasses ?? 10;
  const widthFactor = o.widthFactor ?? 1;
  const dropRate = o.dropRate ?? 0;
  const heInit = o.heInit ?? true;
  const size = sizePair(o.inputSize ?? 32);
  const cfg = VGG_CONFIGS[depth as 11];
  const pools = 5;
  const checks: Check[] = [
    knownKeys(o, [
      'depth',
      'inChannels',
      'numClasses',
      'inputSize',
      'widthFactor',
      'dropRate',
      'heInit',
      'name',
      ...BAYESIAN_OPTION_NAMES,
    ]),
    check(cfg !== undefined, `depth must be 11, 13, 16 or 19, got ${String(depth)}`),
    positiveInt('inChannels', inChannels),
    positiveInt('numClasses', numClasses),
    check(
      size !== undefined,
      `inputSize must be a positive integer or [height, width], got ${show(o.inputSize)}`,
    ),
    check(
      size === undefined || size.every((s) => s >= 2 ** pools),
      `inputSize ${show(o.inputSize)} does not survive VGG's ${pools} 2x2 max pools (each halves the size): it must be at least ${2 ** pools}`,
    ),
    check(
      typeof widthFactor === 'number' && Number.isFinite(widthFactor) && widthFactor > 0,
      `widthFactor must be a positive finite number, got ${String(widthFactor)}`,
    ),
    check(
      typeof dropRate === 'number' && dropRate >= 0 && dropRate < 1,
      `dropRate must be in [0, 1), got ${String(dropRate)}`,
    ),
    isBool('heInit', heInit),
    ...bayesianChecks(o),
  ];
  validate(`bayesianVGG '${name}'`, checks);
  const b = bayesianPart(o);
  const width = (c: number): number => Math.max(1, Math.round(c * widthFactor));

  const features: Record<string, AnyLayer> = {};
  let channels = inChannels;
  let block = 1;
  let inBlock = 0;
  for (const v of cfg) {
    if (v === 'M') {
      features[`pool${block}`] = maxPool2d({ poolSize: 2, name: `pool${block}` });
      block += 1;
      inBlock = 0;
      continue;
    }
    inBlock += 1;
    const out = width(v);
    const id = `${block}_${inBlock}`;
    const conv = bayesianConv2d({
      inChannels: channels,
      outChannels: out,
      kernelSize: 3,
      padding: 1,
      bias: true,
      name: `conv${id}`,
      ...b,
    });
    features[`conv${id}`] = heInit ? heFanOutInit(conv, 3 * 3 * out) : conv;
    features[`relu${id}`] = relu({ name: `relu${id}` });
    channels = out;
  }
  const [h, w] = (size as [number, number]).map((s) => Math.floor(s / 2 ** pools)) as [
    number,
    number,
  ];
  const hidden = width(512);
  const drop = (i: number): Record<string, AnyLayer> =>
    dropRate > 0 ? { [`dropout${i}`]: dropout({ dropRate, name: `dropout${i}` }) } : {};
  const classifier: Record<string, AnyLayer> = {
    ...drop(1),
    fc1: bayesianLinear({ inFeatures: channels * h * w, outFeatures: hidden, name: 'fc1', ...b }),
    relu1: relu({ name: 'relu1' }),
    ...drop(2),
    fc2: bayesianLinear({ inFeatures: hidden, outFeatures: hidden, name: 'fc2', ...b }),
    relu2: relu({ name: 'relu2' }),
    fc3: bayesianLinear({ inFeatures: hidden, outFeatures: numClasses, name: 'fc3', ...b }),
  };
  return serial(
    {
      features: serial(features, { name: 'features' }),
      flatten: flatten({ name: 'flatten' }),
      classifier: serial(classifier, { name: 'classifier' }),
    },
    { name },
  );
}
