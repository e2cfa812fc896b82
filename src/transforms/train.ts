/**
 * Training: a step helper that owns the parameter and optimizer-state trees it is handed, and a
 * small `fit` loop over shuffled minibatches drawn from a key.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tidy } from '../params/scope';
import { importByName } from '../dynamicImport';
import { ParamError, show } from '../errors';
import { applyUpdates, type GradientTransformation, type OptState } from '../optim';
import { foldIn, isKey, uniformArray, type Key } from '../params/random';
import { leaves, map as mapTree, type ParamTree, type Tree } from '../params/tree';
import { check, isBool, knownKeys, nonNegativeInt, positiveInt, validate } from '../validation';
import { nonFinitePaths, valueAndGrad } from './grad';

/** Parameters, optimizer state and step count: what a training step consumes and returns. */
export interface TrainState<P extends ParamTree, S extends OptState> {
  readonly params: P;
  readonly optState: S;
  readonly step: number;
}

/**
 * A training step produced a non-finite loss. The state passed in is left intact.
 *
 * @example
 * ```ts
 * try {
 *   ({ state } = step(state, x, y, k, w));
 * } catch (e) {
 *   if (e instanceof TrainingError) state = e.state; // the last good state, still valid
 * }
 * ```
 */
export class TrainingError<
  P extends ParamTree = ParamTree,
  S extends OptState = OptState,
> extends Error {
  readonly step: number;
  readonly loss: number;
  /**
   * The last good state: the one passed to the failing step, still valid and now owned by whoever
   * catches the error (`fit` hands its params and optimizer state over this way).
   */
  readonly state: TrainState<P, S>;
  constructor(step: number, loss: number, detail: string, state: TrainState<P, S>) {
    super(
      `training step ${step}: the loss is ${loss}. ${detail}` +
        'Nothing was updated: the params and optimizer state passed in are still valid. ' +
        'Typical fixes: a smaller learning rate, clipByGlobalNorm, standardised inputs and targets.',
    );
    this.name = 'TrainingError';
    this.step = step;
    this.loss = loss;
    this.state = state;
  }
}

function tensorsOf(t: Tree<unknown>): tf.Tensor[] {
  return leaves(t).filter((l): l is tf.Tensor => l instanceof tf.Tensor);
}

/** Disposes the tensors of `old` that are not also in `keep` (optimizers may pass leaves through). */
function disposeReplaced(old: Tree<unknown>, keep: Tree<unknown>): void {
  const kept = new Set(tensorsOf(keep).map((t) => t.id));
  for (const t of tensorsOf(old)) if (!kept.has(t.id) && !t.isDisposed) t.dispose();
}

function describeNonFinite(params: ParamTree, args: readonly unknown[]): string {
  const parts: string[] = [];
  const badParams = nonFinitePaths(params);
  if (badParams.length > 0) parts.push(`Non-finite parameters already: ${badParams.join(', ')}. `);
  args.forEach((a, i) => {
    if (a instanceof tf.Tensor && a.dtype === 'float32' && nonFinitePaths(a).length > 0) {
      parts.push(`Argument #${i + 1} (shape [${a.shape.join(', ')}]) contains NaN or Infinity. `);
    }
  });
  return parts.join('');
}

/**
 * `trainStep<P, S, A>(loss: (params: P, ...args: A) -> Scalar, optimizer) ->
 * (state: TrainState<P, S>, ...args: A) -> { state, loss }`: one gradient step inside
 * `tf.tidy`; the params type `P` is the loss's. It takes ownership of `state.params` and
 * `state.optState` and disposes them; the returned state is the caller's. A non-finite loss
 * throws a `TrainingError` and leaves the state passed in untouched.
 *
 * @example
 * ```ts
 * const step = trainStep(elbo(model, mse()), adam({ learningRate: 1e-2 }));
 * let state = { params, optState: opt.init(params), step: 0 };
 * ({ state } = step(state, x, y, random.foldIn(key, 0), 1 / n));
 * ```
 */
export function trainStep<P extends ParamTree, S extends OptState, A extends unknown[]>(
  loss: (params: P, ...args: A) => tf.Scalar,
  optimizer: GradientTransformation<S>,
): (state: TrainState<P, S>, ...args: A) => { state: TrainState<P, S>; loss: number } {
  const vg = valueAndGrad(loss);
  return (state, ...args) => {
    const r = tidy(() => {
      const { value, grads } = vg(state.params, ...args);
      const u = optimizer.update(grads, state.optState, state.params);
      const params = applyUpdates(state.params, u.updates);
      return { params, optState: u.state, value };
    });
    const value = r.value.dataSync()[0] as number;
    r.value.dispose();
    if (!Number.isFinite(value)) {
      disposeReplaced(r.params, state.params);
      disposeReplaced(r.optState, state.optState);
      throw new TrainingError(state.step, value, describeNonFinite(state.params, args), state);
    }
    disposeReplaced(state.params, r.params);
    disposeReplaced(state.optState, r.optState);
    return { state: { params: r.params, optState: r.optState, step: state.step + 1 }, loss: value };
  };
}

/** Where a minibatch is in training: the argument of a `klWeight` function. */
export interface BatchInfo {
  readonly epoch: number;
  /** The minibatch's index in the epoch, `0 .. numBatches - 1`. */
  readonly batchIndex: number;
  /** Minibatches per epoch, `ceil(numExamples / batchSize)`. */
  readonly numBatches: number;
  /**
   * The number of examples in THIS minibatch: the `batchSize` option, except for a smaller last
   * batch when it does not divide `numExamples`.
   */
  readonly batchSize: number;
  /** The number of training examples `N` (`x.shape[0]`). */
  readonly numExamples: number;
  /** Steps taken before this one. */
  readonly step: number;
}

/** What `onEpoch` receives. */
export interface EpochInfo<P extends ParamTree> {
  readonly epoch: number;
  /** Mean loss over the epoch's minibatches. */
  readonly loss: number;
  readonly step: number;
  /** The current parameters (still owned by `fit`: read, do not dispose). */
  readonly params: P;
}

/**
 * Options of `fit`. The params type `P` is the loss's: `params` (and the result) must be of the
 * type of the loss's first parameter, and is not used to infer it.
 */
export interface FitOptions<P extends ParamTree, S extends OptState> {
  /**
   * `(params, x, y, key, klWeight) -> loss`, e.g. `elbo(model, likelihood)`; its first parameter's
   * type is `P` (an inline arrow function must annotate it: `(p: MyParams, x, y, k, w) => ...`).
   */
  readonly loss: (params: P, x: tf.Tensor, y: tf.Tensor, key: Key, klWeight: number) => tf.Scalar;
  readonly optimizer: GradientTransformation<S>;
  /** Initial parameters, of the loss's params type; `fit` takes ownership. */
  readonly params: NoInfer<P>;
  /** Initial optimizer state; default `optimizer.init(params)`. `fit` takes ownership. */
  readonly optState?: NoInfer<S>;
  /** Inputs `[N, ...]` and targets `[N, ...]`; not disposed. */
  readonly x: tf.Tensor;
  readonly y: tf.Tensor;
  /** Drives shuffling (epoch `e`: `foldIn(foldIn(key, e), 0)`) and each step's posterior noise. */
  readonly key: Key;
  readonly epochs: number;
  readonly batchSize: number;
  /**
   * The KL weight of each step: a number >= 0, or a function of the batch (`BatchInfo`). The
   * loss of a step is `mean NLL of the batch + klWeight * KL` (the likelihoods reduce by the
   * mean), i.e. Blundell et al.'s minibatch objective `F_i = pi_i KL - sum log p(y | x, w)`
   * divided by the batch size: `klWeight = pi_i / batchSize`. Default `1 / N`
   * (`pi_i = batchSize / N`), the per-example ELBO. Blundell's eq. 9 weights
   * `pi_i = minibatchWeight(i, M)` are therefore
   * `({ batchIndex, numBatches, batchSize }) => minibatchWeight(batchIndex, numBatches) / batchSize`
   * (with `batchSize` the size of THIS batch); over an epoch `sum_i klWeight_i * batchSize_i = 1`,
   * so the KL is paid once per pass over the data, as with `1 / N`.
   */
  readonly klWeight?: number | ((b: BatchInfo) => number);
  /** Shuffle each epoch. Default true. */
  readonly shuffle?: boolean;
  /** Called after each epoch; return `false` to stop early. */
  readonly onEpoch?: (info: EpochInfo<P>) => void | boolean | Promise<void | boolean>;
  /** A progress bar on stderr. Default: when stderr is a terminal. */
  readonly progress?: boolean;
}

/** What `fit` returns: the trained state (the caller's to dispose) and the loss per epoch. */
export interface FitResult<P extends ParamTree, S extends OptState> {
  readonly params: P;
  readonly optState: S;
  readonly step: number;
  readonly history: readonly number[];
}

/**
 * `permutation(key, n) -> Int32Array`: a random permutation of 0..n-1 (argsort of
 * `uniformArray(key, n)`, ties broken by index), the same on every backend.
 *
 * @example
 * ```ts
 * permutation(random.key(0), 5); // e.g. Int32Array [3, 0, 4, 1, 2]
 * ```
 */
export function permutation(key: Key, n: number): Int32Array {
  const u = uniformArray(key, n);
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => (u[a] as number) - (u[b] as number) || a - b);
  return Int32Array.from(idx);
}

interface Bar {
  start(total: number, value: number, payload?: Record<string, unknown>): void;
  update(value: number, payload?: Record<string, unknown>): void;
  stop(): void;
}

async function makeBar(enabled: boolean | undefined): Promise<Bar | undefined> {
  const isNode = typeof process !== 'undefined' && typeof process.stderr === 'object';
  const on = enabled ?? (isNode && Boolean(process.stderr.isTTY));
  if (!on || !isNode) return undefined;
  // by name: a browser bundle must not follow this Node-only package
  const cli = (await importByName('cli-progress')) as {
    default?: { SingleBar: new (o: object) => Bar };
    SingleBar?: new (o: object) => Bar;
  };
  const SingleBar = cli.SingleBar ?? cli.default?.SingleBar;
  if (!SingleBar) return undefined;
  return new SingleBar({
    format: 'training |{bar}| epoch {value}/{total} | loss {loss} | {rate} steps/s',
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: false,
  });
}

const FIT_KEYS = [
  'loss',
  'optimizer',
  'params',
  'optState',
  'x',
  'y',
  'key',
  'epochs',
  'batchSize',
  'klWeight',
  'shuffle',
  'onEpoch',
  'progress',
];

/** Checks `fit`'s options (one `ConfigError` listing every problem) and params; returns `N`. */
function checkFitOptions<P extends ParamTree, S extends OptState>(o: FitOptions<P, S>): number {
  const isTensor = (t: unknown): t is tf.Tensor => t instanceof tf.Tensor;
  const N = isTensor(o.x) ? o.x.shape[0] : undefined;
  const w: unknown = o.klWeight;
  const isFn = (f: unknown): boolean => typeof f === 'function';
  const opt: unknown = o.optimizer;
  validate('fit', [
    knownKeys(o, FIT_KEYS),
    check(
      isFn(o.loss),
      `loss must be a function (params, x, y, key, klWeight) => tf.Scalar such as elbo(model, likelihood), got ${show(o.loss)}`,
    ),
    check(
      typeof opt === 'object' &&
        opt !== null &&
        isFn((opt as GradientTransformation).init) &&
        isFn((opt as GradientTransformation).update),
      `optimizer must be a gradient transformation { init, update } such as adam({ learningRate: 1e-3 }), got ${show(opt)}`,
    ),
    check(isTensor(o.x) && o.x.rank >= 1, `x must be a tf.Tensor [N, ...], got ${show(o.x)}`),
    check(isTensor(o.y) && o.y.rank >= 1, `y must be a tf.Tensor [N, ...], got ${show(o.y)}`),
    check(
      N === undefined || !isTensor(o.y) || o.y.shape[0] === N,
      `x has ${N} examples but y has ${isTensor(o.y) ? o.y.shape[0] : '?'}; pass one target row per input row`,
    ),
    check(N === undefined || N >= 1, 'x has no examples'),
    check(isKey(o.key), `key must be a PRNG key from random.key(seed), got ${show(o.key)}`),
    nonNegativeInt('epochs', o.epochs),
    positiveInt('batchSize', o.batchSize),
    check(
      w === undefined || isFn(w) || (typeof w === 'number' && Number.isFinite(w) && w >= 0),
      `klWeight must be a finite number >= 0 or a function of the batch, e.g. ` +
        `({ batchIndex, numBatches, batchSize }) => minibatchWeight(batchIndex, numBatches) / batchSize, got ${show(w)}`,
    ),
    ...(o.shuffle === undefined ? [] : [isBool('shuffle', o.shuffle)]),
    ...(o.progress === undefined ? [] : [isBool('progress', o.progress)]),
    check(
      o.onEpoch === undefined || isFn(o.onEpoch),
      `onEpoch must be a function, got ${show(o.onEpoch)}`,
    ),
  ]);
  mapTree<unknown, null>(o.params, (leaf, path) => {
    if (!(leaf instanceof tf.Tensor) || leaf.isDisposed) {
      throw new ParamError(
        path,
        `fit: the params leaf is ${leaf instanceof tf.Tensor ? 'a disposed tensor' : show(leaf)}; ` +
          'expected a live tf.Tensor: pass the params that model.init returned (fit takes ' +
          'ownership of them and of optState).',
      );
    }
    return null;
  });
  return N as number;
}

/**
 * `fit<P, S>(options: FitOptions<P, S>) -> Promise<FitResult<P, S>>`: trains for `epochs` passes
 * over `(x, y)` in shuffled minibatches; `P` is the params type of `options.loss`. Reproducible
 * from `key`: epoch `e` shuffles with `foldIn(foldIn(key, e), 0)` and step `b` of it draws
 * posterior noise with `foldIn(foldIn(foldIn(key, e), 1), b)`. Takes ownership of `params` /
 * `optState`. Invalid options throw one `ConfigError` (owner `'fit'`) listing every problem; a
 * params leaf that is not a live tensor throws a `ParamError` naming its path.
 *
 * @example
 * ```ts
 * const { params: trained } = await fit({
 *   loss: elbo(model, gaussianNll()), optimizer: adam({ learningRate: 1e-2 }),
 *   params, x, y, key: random.key(0), epochs: 100, batchSize: 32,
 *   // Blundell et al.'s minibatch KL weights, in the units of the mean-reduced NLL:
 *   klWeight: ({ batchIndex, numBatches, batchSize }) =>
 *     minibatchWeight(batchIndex, numBatches) / batchSize,
 * });
 * ```
 */
export async function fit<P extends ParamTree, S extends OptState>(
  o: FitOptions<P, S>,
): Promise<FitResult<P, S>>;
/**
 * `fit(options)` where TypeScript cannot take `P` from the loss alone: a loss made by a generic
 * call (`elbo(model, likelihood)`) next to a callback whose parameter is not annotated
 * (`onEpoch: ({ epoch }) => ...`) fixes `P` before the loss is seen. Then `P` is inferred from
 * `params` too, and the loss must still accept them.
 *
 * @example
 * ```ts
 * await fit({ loss: elbo(model, lik), params, onEpoch: ({ epoch }) => epoch < 10, ...rest });
 * ```
 */
export async function fit<P extends ParamTree, S extends OptState>(
  o: FitOptions<P, S> & { readonly params: P },
): Promise<FitResult<P, S>>;
export async function fit<P extends ParamTree, S extends OptState>(
  o: FitOptions<P, S>,
): Promise<FitResult<P, S>> {
  const N = checkFitOptions(o);

  const step = trainStep(o.loss, o.optimizer);
  let state: TrainState<P, S> = {
    params: o.params,
    optState: o.optState ?? o.optimizer.init(o.params),
    step: 0,
  };
  const numBatches = Math.ceil(N / o.batchSize);
  const history: number[] = [];
  const bar = await makeBar(o.progress);
  bar?.start(o.epochs, 0, { loss: '-', rate: '-' });
  try {
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      const t0 = Date.now();
      const ke = foldIn(o.key, epoch);
      const order =
        o.shuffle === false
          ? Int32Array.from({ length: N }, (_, i) => i)
          : permutation(foldIn(ke, 0), N);
      const kSteps = foldIn(ke, 1);
      let total = 0;
      for (let b = 0; b < numBatches; b++) {
        const idx = tf.tensor1d(
          order.subarray(b * o.batchSize, Math.min(N, (b + 1) * o.batchSize)),
          'int32',
        );
        const xb = tf.gather(o.x, idx);
        const yb = tf.gather(o.y, idx);
        idx.dispose();
        try {
          const w =
            typeof o.klWeight === 'function'
              ? o.klWeight({
                  epoch,
                  batchIndex: b,
                  numBatches,
                  batchSize: xb.shape[0] as number,
                  numExamples: N,
                  step: state.step,
                })
              : (o.klWeight ?? 1 / N);
          const r = step(state, xb, yb, foldIn(kSteps, b), w);
          state = r.state;
          total += r.loss;
        } finally {
          xb.dispose();
          yb.dispose();
        }
      }
      const loss = total / numBatches;
      history.push(loss);
      bar?.update(epoch + 1, {
        loss: loss.toPrecision(5),
        rate: ((numBatches * 1000) / Math.max(1, Date.now() - t0)).toFixed(0),
      });
      const goOn = await o.onEpoch?.({ epoch, loss, step: state.step, params: state.params });
      if (goOn === false) break;
      await new Promise((resolve) => setTimeout(resolve, 0)); // let a browser repaint
    }
  } finally {
    bar?.stop();
  }
  return { params: state.params, optState: state.optState, step: state.step, history };
}
