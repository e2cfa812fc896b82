// The one error module: every error names where it comes from (a layer path or a function), and
// the messages the layer tests rely on keep their exact form.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  IndexError,
  MissingKeyError,
  OptimConfigError,
  ParamError,
  ShapeError,
  fmtShape,
  show,
} from '../src/errors';
import * as blitz from '../src';

describe('ConfigError', () => {
  it('names its owner and lists every problem, one per line', () => {
    const e = new ConfigError('encoder.dense1', ['inFeatures must be a positive integer, got 0']);
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('ConfigError');
    expect(e.owner).toBe('encoder.dense1');
    expect(e.path).toBe('encoder.dense1');
    expect(e.layer).toBe('encoder.dense1');
    expect(e.message).toBe(
      'encoder.dense1: invalid configuration (1 problem):\n' +
        '  - inFeatures must be a positive integer, got 0',
    );
    const two = new ConfigError('adam', ['a', 'b'], 'options');
    expect(two.message).toBe('adam: invalid options (2 problems):\n  - a\n  - b');
  });

  it('keeps a frozen copy of the problems', () => {
    const problems = ['x must be 1'];
    const e = new ConfigError('f', problems);
    problems.push('later');
    expect(e.problems).toEqual(['x must be 1']);
    expect(Object.isFrozen(e.problems)).toBe(true);
  });

  it('names the owner and every problem, for any owner and problems (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }),
        fc.array(fc.string(), { minLength: 1, maxLength: 6 }),
        (owner, problems) => {
          const e = new ConfigError(owner, problems);
          expect(e.message.startsWith(`${owner}: invalid configuration (${problems.length} `)).toBe(
            true,
          );
          expect(e.message.split('\n').slice(1)).toEqual(problems.map((p) => `  - ${p}`));
          expect(e.problems).toEqual(problems);
        },
      ),
    );
  });
});

describe('OptimConfigError', () => {
  it('is a ConfigError whose message says "invalid options"', () => {
    const e = new OptimConfigError('sgd', ['momentum must be a finite number in [0, 1), got 1']);
    expect(e).toBeInstanceOf(ConfigError);
    expect(e).toBeInstanceOf(OptimConfigError);
    expect(e.name).toBe('OptimConfigError');
    expect(e.owner).toBe('sgd');
    expect(e.message).toMatch(/^sgd: invalid options \(1 problem\):\n {2}- momentum/);
  });

  it('is what the optimizers throw, and it names them', () => {
    for (const [owner, f] of [
      ['adam', () => blitz.optim.adam({ learningRate: -1 })],
      ['cosineDecay', () => blitz.optim.cosineDecay({ initValue: 1, decaySteps: 0 })],
      ['minibatchWeight', () => blitz.optim.minibatchWeight(3, 3)],
    ] as const) {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(blitz.ConfigError);
      expect(err).toBeInstanceOf(blitz.optim.OptimConfigError);
      expect((err as ConfigError).owner).toBe(owner);
      expect((err as Error).message.startsWith(`${owner}: `)).toBe(true);
    }
  });
});

describe('ShapeError, ParamError, MissingKeyError', () => {
  it('start with the path, or <model> for the root', () => {
    const s = new ShapeError('dense1', `expected ${fmtShape([-1, 3])}`);
    expect(s.message).toBe('dense1: expected [batch, 3]');
    expect(s.path).toBe('dense1');
    expect(s.name).toBe('ShapeError');
    expect(new ShapeError('', 'x').message).toBe('<model>: x');
    const p = new ParamError('dense1.kernel', 'missing');
    expect(p.message).toBe('dense1.kernel: missing');
    expect(p.path).toBe('dense1.kernel');
    expect(p.name).toBe('ParamError');
    expect(new ParamError('', 'm').message).toBe('<model>: m');
    const k = new MissingKeyError('lstm', 'sampling the weights');
    expect(k.path).toBe('lstm');
    expect(k.name).toBe('MissingKeyError');
    expect(k.message).toMatch(/^lstm: sampling the weights needs a PRNG key\. Pass one/);
    expect(k.message).toContain("{ mode: 'mean' }");
    expect(new MissingKeyError('', 'sampling').message).toMatch(/^<model>: sampling needs/);
  });
});

describe('IndexError', () => {
  it('is a RangeError naming path, index, position and the valid range', () => {
    const e = new IndexError('tok', 7, [1, 1], 4, {
      inputShape: [2, 3],
      sizeName: 'numEmbeddings',
    });
    expect(e).toBeInstanceOf(RangeError);
    expect(e.name).toBe('IndexError');
    expect(e.message).toBe(
      'tok: index 7 at position [1, 1] of the input [2, 3] is out of range [0, 4) (numEmbeddings = 4).',
    );
    expect([e.path, e.index, e.position, e.size]).toEqual(['tok', 7, [1, 1], 4]);
    expect(new IndexError('', -1, [0], 10).message).toBe(
      '<model>: index -1 at position [0] is out of range [0, 10).',
    );
  });

  it('copies the position', () => {
    const pos = [0, 2];
    const e = new IndexError('emb', 9, pos, 3);
    pos[0] = 5;
    expect(e.position).toEqual([0, 2]);
  });
});

describe('show and fmtShape', () => {
  it('render values the same way in every message', () => {
    expect(show('same')).toBe('"same"');
    expect(show(3)).toBe('3');
    expect(show(NaN)).toBe('NaN');
    expect(show(undefined)).toBe('undefined');
    expect(show(null)).toBe('null');
    expect(show(true)).toBe('true');
    expect(show([2, 3])).toBe('[2, 3]');
    expect(show(['a', 1])).toBe('["a", 1]');
    expect(show([1, 2, 3, 4, 5, 6, 7, 8, 9])).toBe('an array of 9');
    expect(
      show([
        [1, 2],
        [0, 0],
      ]),
    ).toBe('[[1, 2], [0, 0]]');
    expect(show([[[1]]])).toBe('an array of 1');
    expect(show([{ a: 1 }])).toBe('an array of 1');
    expect(show(() => 1)).toBe('a function');
    expect(show({ a: 1 })).toBe('an object');
    const t = tf.zeros([2, 3]);
    expect(show(t)).toBe('a float32 tensor of shape [2, 3]');
    t.dispose();
    expect(fmtShape([-1, 28, 28, 1])).toBe('[batch, 28, 28, 1]');
    expect(fmtShape([])).toBe('[]');
  });
});

describe('exports', () => {
  it('the package entry and blitz.layers export the same classes', () => {
    expect(blitz.ConfigError).toBe(ConfigError);
    expect(blitz.ShapeError).toBe(ShapeError);
    expect(blitz.MissingKeyError).toBe(MissingKeyError);
    expect(blitz.ParamError).toBe(ParamError);
    expect(blitz.IndexError).toBe(IndexError);
    expect(blitz.OptimConfigError).toBe(OptimConfigError);
    expect(blitz.optim.OptimConfigError).toBe(OptimConfigError);
    expect(blitz.layers.ConfigError).toBe(ConfigError);
    expect(blitz.layers.ShapeError).toBe(ShapeError);
  });
});
