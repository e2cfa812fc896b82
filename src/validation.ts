/**
 * Config validation for layers, optimizers, schedules, KL weights, priors and transforms: every
 * check is a `Validation` (fp-ts `Either` whose left is a non-empty list of problems), checks are
 * combined with fp-ts's validation applicative so that ALL problems are collected, and `validate`
 * throws ONE `ConfigError` (from `./errors`) that names the owner and lists them.
 *
 * Two ways to hand checks to `validate`, one accumulation:
 * - a list of `Check`s (`validate('dense1', [positiveInt('inFeatures', n), ...])`) when only
 *   the verdict matters;
 * - a record of `Validation`s (`validate('adam', { b1: checkNumber('b1', o.b1, range) })`), which
 *   returns the record of checked values, typed.
 */
import * as E from 'fp-ts/Either';
import * as RA from 'fp-ts/ReadonlyArray';
import * as RNEA from 'fp-ts/ReadonlyNonEmptyArray';
import { pipe } from 'fp-ts/function';
import { ConfigError, show } from './errors';

// ---------------------------------------------------------------------------------------------
// The applicative and validate
// ---------------------------------------------------------------------------------------------

/** A checked value: `right(value)`, or `left` with the (non-empty) list of its problems. */
export type Validation<A> = E.Either<RNEA.ReadonlyNonEmptyArray<string>, A>;

/** A check whose value does not matter: `right` when it holds, `left` with its messages. */
export type Check = Validation<void>;

/** The values of a record of validations. */
export type Validated<R> = { [K in keyof R]: R[K] extends Validation<infer A> ? A : never };

/** The `ConfigError` (sub)class `validate` throws, e.g. `OptimConfigError`. */
export type ConfigErrorClass = new (owner: string, problems: readonly string[]) => ConfigError;

/** Accumulates the problems of every check instead of stopping at the first. */
const V = E.getApplicativeValidation(RNEA.getSemigroup<string>());

const ok: Check = E.right(undefined);

/**
 * `check(cond, message) -> Check`: `right` when `cond` holds, else `left([message])`.
 *
 * @example
 * ```ts
 * check(outFeatures % groups === 0, `outFeatures must be divisible by groups (${groups})`);
 * ```
 */
export const check = (cond: boolean, message: string): Check =>
  cond ? ok : E.left(RNEA.of(message));

/**
 * `validateAll(validations) -> Validation<values>`: all values, or the problems of every failed
 * validation (in order). The one accumulation behind `validate`.
 *
 * @example
 * ```ts
 * validateAll([checkNumber('a', 1, {}), checkNumber('b', NaN, {})]); // left(['b must be ...'])
 * ```
 */
export function validateAll<A>(validations: readonly Validation<A>[]): Validation<readonly A[]> {
  return pipe(
    validations,
    RA.traverse(V)((v) => v),
  );
}

const isList = (c: unknown): c is readonly Check[] => Array.isArray(c);

/**
 * `validate(owner, checks, ErrorClass = ConfigError) -> void | values`: runs every check and
 * throws ONE `ConfigError` (or the given subclass) naming `owner` and listing every problem when
 * any failed. Given a list of `Check`s it returns nothing; given a record of `Validation`s it
 * returns the record of checked values.
 *
 * @example
 * ```ts
 * validate('dense1', [positiveInt('inFeatures', 0), isBool('bias', 'yes')]);
 * // ConfigError: dense1: invalid configuration (2 problems): ...
 * const { b1 } = validate('adam', { b1: checkNumber('b1', 0.9, { min: 0, max: 1, maxOpen: true }) });
 * ```
 */
export function validate(
  owner: string,
  checks: readonly Check[],
  ErrorClass?: ConfigErrorClass,
): void;
export function validate<R extends Readonly<Record<string, Validation<unknown>>>>(
  owner: string,
  checks: R,
  ErrorClass?: ConfigErrorClass,
): Validated<R>;
export function validate(
  owner: string,
  checks: readonly Check[] | Readonly<Record<string, Validation<unknown>>>,
  ErrorClass: ConfigErrorClass = ConfigError,
): unknown {
  const list = isList(checks);
  const keys = isList(checks) ? [] : Object.keys(checks);
  const all = validateAll<unknown>(
    isList(checks) ? checks : keys.map((k) => checks[k] as Validation<unknown>),
  );
  if (E.isLeft(all)) throw new ErrorClass(owner, all.left);
  if (list) return undefined;
  const values: Record<string, unknown> = {};
  keys.forEach((k, i) => {
    values[k] = all.right[i];
  });
  return values;
}

/**
 * `optionsRecord(options) -> record`: `options` as a record of unknowns for reading options
 * that may be absent or of the wrong type (a JavaScript caller); `{}` for a non-object.
 *
 * @example
 * ```ts
 * const o = optionsRecord(options);
 * validate('trace', { decay: checkNumber('decay', o.decay, { min: 0, max: 1, maxOpen: true }) });
 * ```
 */
export function optionsRecord(options: unknown): Readonly<Record<string, unknown>> {
  return typeof options === 'object' && options !== null
    ? (options as Readonly<Record<string, unknown>>)
    : {};
}

// ---------------------------------------------------------------------------------------------
// List-style checks (layers)
// ---------------------------------------------------------------------------------------------

/**
 * `positiveInt(name, v) -> Check`: an integer >= 1.
 *
 * @example
 * ```ts
 * positiveInt('outFeatures', 0); // left(['outFeatures must be a positive integer, got 0'])
 * ```
 */
export const positiveInt = (name: string, v: unknown): Check =>
  check(
    typeof v === 'number' && Number.isInteger(v) && v >= 1,
    `${name} must be a positive integer, got ${show(v)}`,
  );

/**
 * `nonNegativeInt(name, v) -> Check`: an integer >= 0.
 *
 * @example
 * ```ts
 * nonNegativeInt('padding', -1); // left(['padding must be a non-negative integer, got -1'])
 * ```
 */
export const nonNegativeInt = (name: string, v: unknown): Check =>
  check(
    typeof v === 'number' && Number.isInteger(v) && v >= 0,
    `${name} must be a non-negative integer, got ${show(v)}`,
  );

/**
 * `positive(name, v) -> Check`: a finite number > 0.
 *
 * @example
 * ```ts
 * positive('priorSigma1', 0); // left(['priorSigma1 must be a positive finite number, got 0'])
 * ```
 */
export const positive = (name: string, v: unknown): Check =>
  check(
    typeof v === 'number' && Number.isFinite(v) && v > 0,
    `${name} must be a positive finite number, got ${show(v)}`,
  );

/**
 * `finite(name, v) -> Check`: a finite number.
 *
 * @example
 * ```ts
 * finite('mu', NaN); // left(['mu must be a finite number, got NaN'])
 * ```
 */
export const finite = (name: string, v: unknown): Check =>
  check(
    typeof v === 'number' && Number.isFinite(v),
    `${name} must be a finite number, got ${show(v)}`,
  );

/**
 * `inRange(name, v, lo, hi) -> Check`: a number with `lo <= v <= hi`.
 *
 * @example
 * ```ts
 * inRange('priorPi', 2, 0, 1); // left(['priorPi must be in [0, 1], got 2'])
 * ```
 */
export const inRange = (name: string, v: unknown, lo: number, hi: number): Check =>
  check(
    typeof v === 'number' && v >= lo && v <= hi,
    `${name} must be in [${lo}, ${hi}], got ${show(v)}`,
  );

/**
 * `isBool(name, v) -> Check`: `true` or `false`.
 *
 * @example
 * ```ts
 * isBool('bias', 'yes'); // left(['bias must be true or false, got "yes"'])
 * ```
 */
export const isBool = (name: string, v: unknown): Check =>
  check(typeof v === 'boolean', `${name} must be true or false, got ${show(v)}`);

/**
 * `oneOf(name, v, allowed) -> Check`: one of the allowed strings.
 *
 * @example
 * ```ts
 * oneOf('kl', 'exact', ['mc', 'closed']); // left(["kl must be one of 'mc', 'closed', got \"exact\""])
 * ```
 */
export const oneOf = (name: string, v: unknown, allowed: readonly string[]): Check =>
  check(
    typeof v === 'string' && allowed.includes(v),
    `${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${show(v)}`,
  );

const unknownKeysOf = (opts: object, allowed: readonly string[]): string[] =>
  Object.keys(opts).filter((k) => !allowed.includes(k));

/**
 * `knownKeys(opts, allowed) -> Check`: rejects options the layer does not know (typos), all in
 * one problem: `unknown options 'a', 'b'; known: ...`.
 *
 * @example
 * ```ts
 * knownKeys({ kernel_size: 3 }, ['kernelSize']); // left(["unknown option 'kernel_size'; known: kernelSize"])
 * ```
 */
export const knownKeys = (opts: object, allowed: readonly string[]): Check => {
  const unknown = unknownKeysOf(opts, allowed);
  return check(
    unknown.length === 0,
    `unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')}; known: ${allowed.join(', ')}`,
  );
};

// ---------------------------------------------------------------------------------------------
// Record-style checks (optimizers, schedules, KL weights): they return the checked value
// ---------------------------------------------------------------------------------------------

/** An allowed numeric range, rendered in messages by `describeRange`, e.g. `[0, 1)`. */
export interface NumberRange {
  readonly min?: number;
  readonly max?: number;
  readonly minOpen?: boolean;
  readonly maxOpen?: boolean;
  readonly integer?: boolean;
}

/**
 * `describeRange(range) -> string`, e.g. `'a finite number in [0, 1)'`.
 *
 * @example
 * ```ts
 * describeRange({ min: 0, max: 1, maxOpen: true }); // 'a finite number in [0, 1)'
 * describeRange({ integer: true, min: 1 }); // 'an integer >= 1'
 * ```
 */
export function describeRange(r: NumberRange): string {
  const kind = r.integer ? 'an integer' : 'a finite number';
  if (r.min !== undefined && r.max !== undefined) {
    return `${kind} in ${r.minOpen ? '(' : '['}${r.min}, ${r.max}${r.maxOpen ? ')' : ']'}`;
  }
  if (r.min !== undefined) return `${kind} ${r.minOpen ? '>' : '>='} ${r.min}`;
  if (r.max !== undefined) return `${kind} ${r.maxOpen ? '<' : '<='} ${r.max}`;
  return kind;
}

/**
 * `isInRange(v, range) -> boolean`: `v` is a finite number in `range` (an integer if asked).
 *
 * @example
 * ```ts
 * isInRange(1, { min: 0, max: 1, maxOpen: true }); // false
 * ```
 */
export function isInRange(v: number, r: NumberRange): boolean {
  return (
    Number.isFinite(v) &&
    (!r.integer || Number.isInteger(v)) &&
    (r.min === undefined || (r.minOpen ? v > r.min : v >= r.min)) &&
    (r.max === undefined || (r.maxOpen ? v < r.max : v <= r.max))
  );
}

/**
 * `checkNumber(name, value, range) -> Validation<number>`.
 *
 * @example
 * ```ts
 * checkNumber('b1', 1.5, { min: 0, max: 1, maxOpen: true });
 * // left(['b1 must be a finite number in [0, 1), got 1.5'])
 * ```
 */
export function checkNumber(name: string, value: unknown, range: NumberRange): Validation<number> {
  return typeof value === 'number' && isInRange(value, range)
    ? E.right(value)
    : E.left([`${name} must be ${describeRange(range)}, got ${show(value)}`]);
}

/**
 * `checkBoolean(name, value) -> Validation<boolean>`.
 *
 * @example
 * ```ts
 * checkBoolean('nesterov', 1); // left(['nesterov must be a boolean, got 1'])
 * ```
 */
export function checkBoolean(name: string, value: unknown): Validation<boolean> {
  return typeof value === 'boolean'
    ? E.right(value)
    : E.left([`${name} must be a boolean, got ${show(value)}`]);
}

/**
 * `checkFunction<F>(name, value) -> Validation<F>`.
 *
 * @example
 * ```ts
 * checkFunction<Schedule>('schedule', 3); // left(['schedule must be a function, got 3'])
 * ```
 */
export function checkFunction<F>(name: string, value: unknown): Validation<F> {
  return typeof value === 'function'
    ? E.right(value as F)
    : E.left([`${name} must be a function, got ${show(value)}`]);
}

/**
 * `checkOptionalFunction<F>(name, value) -> Validation<F | undefined>`.
 *
 * @example
 * ```ts
 * checkOptionalFunction('mask', undefined); // right(undefined)
 * ```
 */
export function checkOptionalFunction<F>(name: string, value: unknown): Validation<F | undefined> {
  return value === undefined || typeof value === 'function'
    ? E.right(value as F | undefined)
    : E.left([`${name} must be a function or undefined, got ${show(value)}`]);
}

/**
 * `checkKnownKeys(options, known) -> Validation<true>`: the options must be an object without
 * names the function does not know (typos such as `lr`); one problem per unknown name.
 *
 * @example
 * ```ts
 * checkKnownKeys({ lr: 1 }, ['learningRate']);
 * // left(["unknown option 'lr' (known options: learningRate)"])
 * ```
 */
export function checkKnownKeys(options: unknown, known: readonly string[]): Validation<true> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    return E.left([`the options must be an object, got ${show(options)}`]);
  }
  const problems = unknownKeysOf(options, known).map(
    (k) => `unknown option '${k}' (known options: ${known.join(', ')})`,
  );
  return RA.isNonEmpty(problems) ? E.left(problems) : E.right(true);
}
