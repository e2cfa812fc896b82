// The one validation module: checks accumulate (fp-ts validation applicative) into ONE
// ConfigError naming the owner; list-style and record-style checks share the accumulation.
import * as E from 'fp-ts/Either';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError, OptimConfigError } from '../src/errors';
import { laplacePrior } from '../src/params/distributions';
import { gaussianNll } from '../src/transforms/likelihoods';
import { sharpenedElbo } from '../src/transforms/sharpening';
import type { AnyLayer } from '../src/layers/types';
import {
  check,
  checkBoolean,
  checkFunction,
  checkKnownKeys,
  checkNumber,
  checkOptionalFunction,
  describeRange,
  finite,
  inRange,
  isBool,
  isInRange,
  knownKeys,
  nonNegativeInt,
  oneOf,
  optionsRecord,
  positive,
  positiveInt,
  validate,
  validateAll,
  type Check,
} from '../src/validation';

/** The error `f` throws. */
function errorOf(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    return e as ConfigError;
  }
  throw new Error('expected an error');
}

const problemsOf = (c: E.Either<readonly string[], unknown>): readonly string[] =>
  E.isLeft(c) ? c.left : [];

describe('validate with a list of checks', () => {
  it('returns nothing when every check holds', () => {
    expect(validate('dense1', [positiveInt('inFeatures', 3), isBool('bias', true)])).toBe(
      undefined,
    );
    expect(validate('empty', [])).toBe(undefined);
  });

  it('throws one ConfigError naming the owner with every problem, in order', () => {
    const e = errorOf(() =>
      validate('encoder.dense1', [
        positiveInt('inFeatures', 0),
        isBool('bias', true),
        isBool('freeze', 'yes'),
        oneOf('kl', 'exact', ['mc', 'closed']),
      ]),
    );
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.owner).toBe('encoder.dense1');
    expect(e.layer).toBe('encoder.dense1');
    expect(e.problems).toEqual([
      'inFeatures must be a positive integer, got 0',
      'freeze must be true or false, got "yes"',
      "kl must be one of 'mc', 'closed', got \"exact\"",
    ]);
    expect(e.message.startsWith('encoder.dense1: invalid configuration (3 problems):')).toBe(true);
  });

  it('fails iff some check fails, listing exactly the failed ones (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { maxLength: 12 }), (oks) => {
        const checks: Check[] = oks.map((ok, i) => check(ok, `check ${i} failed`));
        const expected = oks.flatMap((ok, i) => (ok ? [] : [`check ${i} failed`]));
        if (expected.length === 0) {
          expect(() => validate('owner', checks)).not.toThrow();
        } else {
          const e = errorOf(() => validate('owner', checks));
          expect(e.owner).toBe('owner');
          expect(e.problems).toEqual(expected);
        }
      }),
    );
  });

  it('throws the ConfigError subclass it is given', () => {
    const e = errorOf(() => validate('sgd', [check(false, 'bad')], OptimConfigError));
    expect(e).toBeInstanceOf(OptimConfigError);
    expect(e.message).toBe('sgd: invalid options (1 problem):\n  - bad');
  });
});

describe('validate with a record of validations', () => {
  it('returns the checked values, typed', () => {
    const cfg = validate('trace', {
      decay: checkNumber('decay', 0.9, { min: 0, max: 1, maxOpen: true }),
      nesterov: checkBoolean('nesterov', false),
      mask: checkOptionalFunction<(p: string) => boolean>('mask', undefined),
    });
    const decay: number = cfg.decay;
    const nesterov: boolean = cfg.nesterov;
    expect([decay, nesterov, cfg.mask]).toEqual([0.9, false, undefined]);
  });

  it('accumulates the problems of every field into one error', () => {
    const e = errorOf(() =>
      validate(
        'adam',
        {
          known: checkKnownKeys({ lr: 1, learningRate: 1 }, ['learningRate']),
          b1: checkNumber('b1', 1, { min: 0, max: 1, maxOpen: true }),
          b2: checkNumber('b2', 0.5, { min: 0, max: 1, maxOpen: true }),
          schedule: checkFunction('schedule', 3),
        },
        OptimConfigError,
      ),
    );
    expect(e).toBeInstanceOf(OptimConfigError);
    expect(e.owner).toBe('adam');
    expect(e.problems).toEqual([
      "unknown option 'lr' (known options: learningRate)",
      'b1 must be a finite number in [0, 1), got 1',
      'schedule must be a function, got 3',
    ]);
  });

  it('validateAll is the one accumulation: values in order, or every problem', () => {
    expect(validateAll([checkNumber('a', 1, {}), checkNumber('b', 2, {})])).toEqual(
      E.right([1, 2]),
    );
    expect(
      problemsOf(
        validateAll<unknown>([
          checkNumber('a', NaN, {}),
          checkNumber('b', 2, {}),
          checkBoolean('c', 0),
        ]),
      ),
    ).toEqual(['a must be a finite number, got NaN', 'c must be a boolean, got 0']);
  });
});

describe('the checks keep their messages', () => {
  it('list style', () => {
    expect(problemsOf(positiveInt('n', 1.5))).toEqual(['n must be a positive integer, got 1.5']);
    expect(problemsOf(nonNegativeInt('n', -1))).toEqual([
      'n must be a non-negative integer, got -1',
    ]);
    expect(problemsOf(nonNegativeInt('n', 0))).toEqual([]);
    expect(problemsOf(positive('s', 0))).toEqual(['s must be a positive finite number, got 0']);
    expect(problemsOf(positive('s', Infinity))).toHaveLength(1);
    expect(problemsOf(finite('m', NaN))).toEqual(['m must be a finite number, got NaN']);
    expect(problemsOf(inRange('p', 2, 0, 1))).toEqual(['p must be in [0, 1], got 2']);
    expect(problemsOf(inRange('p', NaN, 0, 1))).toHaveLength(1);
    expect(problemsOf(inRange('p', 1, 0, 1))).toEqual([]);
    expect(problemsOf(isBool('b', 1))).toEqual(['b must be true or false, got 1']);
    expect(problemsOf(oneOf('k', 'mc', ['mc']))).toEqual([]);
    expect(problemsOf(knownKeys({ a: 1, kernel_size: 3 }, ['a', 'kernelSize']))).toEqual([
      "unknown option 'kernel_size'; known: a, kernelSize",
    ]);
    expect(problemsOf(knownKeys({ x: 1, y: 2 }, ['a']))).toEqual([
      "unknown options 'x', 'y'; known: a",
    ]);
    expect(problemsOf(knownKeys({ a: 1 }, ['a']))).toEqual([]);
  });

  it('record style', () => {
    expect(describeRange({ min: 0, max: 1, maxOpen: true })).toBe('a finite number in [0, 1)');
    expect(describeRange({ min: 0, minOpen: true })).toBe('a finite number > 0');
    expect(describeRange({ max: 1, maxOpen: true })).toBe('a finite number < 1');
    expect(describeRange({ integer: true, min: 1 })).toBe('an integer >= 1');
    expect(describeRange({})).toBe('a finite number');
    expect(isInRange(1, { min: 0, max: 1, maxOpen: true })).toBe(false);
    expect(isInRange(1.5, { integer: true })).toBe(false);
    expect(isInRange(-Infinity, {})).toBe(false);
    expect(problemsOf(checkNumber('n', '3', { integer: true, min: 1 }))).toEqual([
      'n must be an integer >= 1, got "3"',
    ]);
    expect(problemsOf(checkOptionalFunction('mask', 3))).toEqual([
      'mask must be a function or undefined, got 3',
    ]);
    expect(problemsOf(checkKnownKeys([1], ['a']))).toEqual([
      'the options must be an object, got [1]',
    ]);
    expect(problemsOf(checkKnownKeys({ p: 1, q: 2 }, ['a']))).toHaveLength(2);
    expect(optionsRecord(undefined)).toEqual({});
    expect(optionsRecord({ a: 1 })).toEqual({ a: 1 });
  });
});

describe('the library validates through this module', () => {
  it('each throws one ConfigError naming its owner', () => {
    const cases: [string, () => unknown, RegExp][] = [
      ['laplacePrior', () => laplacePrior(NaN, 0), /loc.*\n.*scale/],
      ['gaussianNll', () => gaussianNll({ initStd: -1 }), /initStd/],
      [
        'sharpenedElbo',
        () => sharpenedElbo({} as AnyLayer, gaussianNll(), { numSamples: 0 }),
        /numSamples must be a positive integer, got 0/,
      ],
    ];
    for (const [owner, f, re] of cases) {
      const e = errorOf(f);
      expect(e).toBeInstanceOf(ConfigError);
      expect(e.owner).toBe(owner);
      expect(e.message.startsWith(`${owner}: invalid configuration`)).toBe(true);
      expect(e.message).toMatch(re);
    }
  });
});
