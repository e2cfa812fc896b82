/**
 * The errors of blitz-ts: layers, optimizers, schedules, KL weights, priors and transforms all
 * throw these. Each names where it comes from (a layer path such as `'encoder.dense1'`, or a
 * function such as `'adam'`) and says what to do. `show` and `fmtShape` render values and shapes
 * in messages the same way everywhere.
 */

/**
 * `show(value) -> string`: a value as an error message shows it: strings quoted (`"same"`),
 * numbers, booleans, `null` and `undefined` as themselves, short arrays of such values (or of
 * short arrays of them) by content (`[2, 3]`, `[[1, 2], [0, 0]]`), others as `an array of N`,
 * tensors as `a float32 tensor of shape [2, 3]`, functions as `a function`, other objects as
 * `an object`.
 *
 * @example
 * ```ts
 * show('same'); // '"same"'
 * show([2, 3]); // '[2, 3]'
 * show(() => 1); // 'a function'
 * `kernelSize must be a positive integer, got ${show(v)}`;
 * ```
 */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) {
    // short arrays of plain values (or of such arrays, e.g. padding [[1, 2], [0, 0]]) by content
    const plain = (v: unknown, depth: number): boolean =>
      v === null ||
      (typeof v !== 'object' && typeof v !== 'function') ||
      (Array.isArray(v) && depth < 2 && v.length <= 8 && v.every((e) => plain(e, depth + 1)));
    return plain(value, 0) ? `[${value.map(show).join(', ')}]` : `an array of ${value.length}`;
  }
  if (value === null || typeof value !== 'object') return String(value);
  const t = value as { readonly shape?: unknown; readonly dtype?: unknown };
  if (Array.isArray(t.shape) && typeof t.dtype === 'string') {
    return `a ${t.dtype} tensor of shape [${t.shape.join(', ')}]`;
  }
  return 'an object';
}

/**
 * `fmtShape(shape) -> string`: `[-1, 3]` as `[batch, 3]`.
 *
 * @example
 * ```ts
 * fmtShape([-1, 28, 28, 1]); // '[batch, 28, 28, 1]'
 * ```
 */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.map((d) => (d === -1 ? 'batch' : String(d))).join(', ')}]`;
}

const where = (path: string): string => path || '<model>';

/**
 * A configuration is invalid; `problems` lists every problem found, not just the first, each
 * naming the option and what it must be. `owner` (also `path`, and `layer` for compatibility) is
 * the layer path or the function whose configuration it is.
 *
 * `new ConfigError(owner, problems, subject = 'configuration')`.
 *
 * @example
 * ```ts
 * try {
 *   bayesianLinear({ inFeatures: 0, outFeatures: 2 });
 * } catch (e) {
 *   if (e instanceof ConfigError) console.log(e.owner, e.problems);
 * }
 * ```
 */
export class ConfigError extends Error {
  /** The layer path or function whose configuration is invalid, e.g. `'dense1'` or `'adam'`. */
  readonly owner: string;
  /** The same as `owner`: every error of this module has a `path`. */
  readonly path: string;
  /** The same as `owner` (the name of this field before optimizers threw `ConfigError`s). */
  readonly layer: string;
  /** One line per problem, e.g. `"b1 must be a finite number in [0, 1), got 1.5"`. */
  readonly problems: readonly string[];
  constructor(owner: string, problems: readonly string[], subject = 'configuration') {
    const n = problems.length;
    super(
      `${owner}: invalid ${subject} (${n} problem${n === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  - ${p}`).join('\n'),
    );
    this.name = 'ConfigError';
    this.owner = owner;
    this.path = owner;
    this.layer = owner;
    this.problems = Object.freeze([...problems]);
  }
}

/**
 * The options of an optimizer, schedule or KL-weight helper are invalid: a `ConfigError` whose
 * message reads `"<owner>: invalid options (N problems): ..."`.
 *
 * @example
 * ```ts
 * try {
 *   adam({ learningRate: -1 });
 * } catch (e) {
 *   e instanceof OptimConfigError && e instanceof ConfigError; // true
 * }
 * ```
 */
export class OptimConfigError extends ConfigError {
  constructor(owner: string, problems: readonly string[]) {
    super(owner, problems, 'options');
    this.name = 'OptimConfigError';
  }
}

/**
 * An input or parameter has the wrong shape for the layer at `path`.
 *
 * @example
 * ```ts
 * throw new ShapeError('dense1', `expected an input ${fmtShape([-1, 3])}, got ${fmtShape(x.shape)}`);
 * ```
 */
export class ShapeError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${where(path)}: ${message}`);
    this.name = 'ShapeError';
    this.path = path;
  }
}

/**
 * A layer needed a PRNG key (it samples) and none was passed.
 *
 * @example
 * ```ts
 * if (ctx.key === undefined) throw new MissingKeyError(path, 'sampling the weights');
 * ```
 */
export class MissingKeyError extends Error {
  readonly path: string;
  constructor(path: string, what: string) {
    super(
      `${where(path)}: ${what} needs a PRNG key. Pass one in the context, ` +
        "e.g. apply(params, x, { key: random.key(0) }), or use { mode: 'mean' } for the " +
        'deterministic posterior-mean output.',
    );
    this.name = 'MissingKeyError';
    this.path = path;
  }
}

/**
 * A parameter tree does not have what the layer at `path` expects (missing leaf, NaN, ...).
 *
 * @example
 * ```ts
 * throw new ParamError('dense1.kernel', 'missing; pass the params that init returned');
 * ```
 */
export class ParamError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${where(path)}: ${message}`);
    this.name = 'ParamError';
    this.path = path;
  }
}

/** What `IndexError` may add to its message. */
export interface IndexErrorContext {
  /** The shape of the index tensor, shown as `of the input [2, 3]`. */
  readonly inputShape?: readonly number[];
  /** The name of the size, shown as `(numEmbeddings = 4)`. */
  readonly sizeName?: string;
}

/**
 * An index is outside `[0, size)`, e.g. a token id of an embedding layer: the message names the
 * path, the bad index, its position in the input and the valid range.
 *
 * `new IndexError(path, index, position, size, context?)`.
 *
 * @example
 * ```ts
 * new IndexError('tok', 7, [1, 1], 4, { inputShape: [2, 3], sizeName: 'numEmbeddings' }).message;
 * // 'tok: index 7 at position [1, 1] of the input [2, 3] is out of range [0, 4) (numEmbeddings = 4).'
 * ```
 */
export class IndexError extends RangeError {
  readonly path: string;
  readonly index: number;
  /** The position of the bad index in the input, one coordinate per axis. */
  readonly position: number[];
  /** The number of valid indices: `[0, size)`. */
  readonly size: number;
  constructor(
    path: string,
    index: number,
    position: readonly number[],
    size: number,
    context: IndexErrorContext = {},
  ) {
    super(
      `${where(path)}: index ${index} at position [${position.join(', ')}]` +
        (context.inputShape ? ` of the input ${fmtShape(context.inputShape)}` : '') +
        ` is out of range [0, ${size})` +
        (context.sizeName ? ` (${context.sizeName} = ${size})` : '') +
        '.',
    );
    this.name = 'IndexError';
    this.path = path;
    this.index = index;
    this.position = [...position];
    this.size = size;
  }
}
