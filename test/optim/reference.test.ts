// Optimizers against scalar reference implementations written in plain JS doubles, step by step,
// from the optax update rules (independently of src/optim).
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as tree from '../../src/params/tree';
import type { ParamTree } from '../../src/params/tree';
import {
  adam,
  adamw,
  applyUpdates,
  chain,
  clipByGlobalNorm,
  cosineDecay,
  exponentialDecay,
  rmsprop,
  sgd,
  type GradientTransformation,
  type OptState,
} from '../../src/optim';

const STEPS = 20;
/** The test params: 9 scalars; flatten order is b (2), nested.s (1), w (6). */
const SIZE = 9;
const PATH_OF = ['b', 'b', 'nested.s', 'w', 'w', 'w', 'w', 'w', 'w'];

function build(v: readonly number[]): ParamTree {
  return {
    w: tf.tensor2d(v.slice(3, 9), [3, 2]),
    b: tf.tensor1d(v.slice(0, 2)),
    nested: { s: tf.scalar(v[2] as number) },
  };
}

function read(t: ParamTree): number[] {
  return tree.leaves(t).flatMap((x) => Array.from(x.dataSync()));
}

/** Runs `opt` for `grads.length` steps; returns the updates and the params after each step. */
function run(
  opt: GradientTransformation,
  p0: readonly number[],
  grads: readonly (readonly number[])[],
): { updates: number[][]; params: number[][] } {
  let params = build(p0);
  let state: OptState = opt.init(params);
  const updates: number[][] = [];
  const ps: number[][] = [];
  for (const g of grads) {
    const gt = build(g);
    const r = opt.update(gt, state, params);
    const next = applyUpdates(params, r.updates);
    updates.push(read(r.updates));
    ps.push(read(next));
    tree.dispose([params, state, gt, r.updates]);
    params = next;
    state = r.state;
  }
  tree.dispose([params, state]);
  return { updates, params: ps };
}

/** A float32 gradient value in [-2, 2] with at most 3 decimals (no subnormal squares). */
const gradValue = fc.integer({ min: -2000, max: 2000 }).map((k) => Math.fround(k / 1000));
const gradSeq = fc
  .array(fc.array(gradValue, { minLength: SIZE, maxLength: SIZE }), {
    minLength: STEPS,
    maxLength: STEPS,
  })
  .map((rows) => rows as readonly (readonly number[])[]);
const params0 = fc.array(gradValue, { minLength: SIZE, maxLength: SIZE });

/** Element-wise reference: `step(t, g, p)` returns the update of one scalar at step t. */
type ScalarOptimizer = () => (t: number, g: number, p: number) => number;

function reference(
  make: ScalarOptimizer,
  p0: readonly number[],
  grads: readonly (readonly number[])[],
): { updates: number[][]; params: number[][] } {
  const steps = p0.map(() => make());
  const p = [...p0];
  const updates: number[][] = [];
  const params: number[][] = [];
  grads.forEach((g, t) => {
    const u = p.map((pi, i) => (steps[i] as ReturnType<ScalarOptimizer>)(t, g[i] as number, pi));
    u.forEach((ui, i) => {
      p[i] = (p[i] as number) + ui;
    });
    updates.push(u);
    params.push([...p]);
  });
  return { updates, params };
}

/** |a - b| <= rtol * |b| + atol, element by element, with the first failure in the message. */
function expectClose(
  actual: readonly (readonly number[])[],
  expected: readonly (readonly number[])[],
  rtol: number,
  atol: number,
): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, t) =>
    row.forEach((a, i) => {
      const e = (expected[t] as readonly number[])[i] as number;
      if (!(Math.abs(a - e) <= rtol * Math.abs(e) + atol)) {
        throw new Error(`step ${t}, element ${i}: got ${a}, expected ${e}`);
      }
    }),
  );
}

const RUNS = { numRuns: 8 };

describe('adam matches a plain-JS reference', () => {
  const refAdam =
    (lr: (t: number) => number, b1: number, b2: number, eps: number, epsRoot: number) => () => {
      let m = 0;
      let v = 0;
      return (t: number, g: number) => {
        m = b1 * m + (1 - b1) * g;
        v = b2 * v + (1 - b2) * g * g;
        const mHat = m / (1 - b1 ** (t + 1));
        const vHat = v / (1 - b2 ** (t + 1));
        return -lr(t) * (mHat / (Math.sqrt(vHat + epsRoot) + eps));
      };
    };

  it('with defaults and a constant learning rate', () => {
    fc.assert(
      fc.property(params0, gradSeq, (p0, grads) => {
        const got = run(adam({ learningRate: 0.01 }), p0, grads);
        const want = reference(
          refAdam(() => 0.01, 0.9, 0.999, 1e-8, 0),
          p0,
          grads,
        );
        expectClose(got.updates, want.updates, 1e-5, 1e-8);
        expectClose(got.params, want.params, 1e-5, 1e-6);
      }),
      RUNS,
    );
  });

  it('with an exponential-decay schedule, other betas, eps and epsRoot', () => {
    // Closed form of the schedule, count 0 at the first update: 0.05 * 0.5^(t / 5).
    const lr = (t: number): number => 0.05 * 0.5 ** (t / 5);
    fc.assert(
      fc.property(params0, gradSeq, (p0, grads) => {
        const opt = adam({
          learningRate: exponentialDecay({ initValue: 0.05, transitionSteps: 5, decayRate: 0.5 }),
          b1: 0.8,
          b2: 0.99,
          eps: 1e-3,
          epsRoot: 1e-4,
        });
        const got = run(opt, p0, grads);
        const want = reference(refAdam(lr, 0.8, 0.99, 1e-3, 1e-4), p0, grads);
        expectClose(got.updates, want.updates, 1e-5, 1e-8);
      }),
      RUNS,
    );
  });
});

describe('sgd matches a plain-JS reference', () => {
  const refSgd = (lr: (t: number) => number, momentum: number, nesterov: boolean) => () => {
    let trace = 0;
    return (t: number, g: number) => {
      trace = g + momentum * trace;
      return -lr(t) * (nesterov ? g + momentum * trace : trace);
    };
  };

  for (const [momentum, nesterov] of [
    [0, false],
    [0.9, false],
    [0.9, true],
    [0.5, true],
  ] as const) {
    it(`momentum ${momentum}, nesterov ${nesterov}`, () => {
      fc.assert(
        fc.property(params0, gradSeq, (p0, grads) => {
          const got = run(sgd({ learningRate: 0.1, momentum, nesterov }), p0, grads);
          const want = reference(
            refSgd(() => 0.1, momentum, nesterov),
            p0,
            grads,
          );
          expectClose(got.updates, want.updates, 1e-5, 1e-6);
          expectClose(got.params, want.params, 1e-5, 1e-5);
        }),
        RUNS,
      );
    });
  }

  it('with a cosine schedule', () => {
    const lr = (t: number): number => 0.1 * 0.5 * (1 + Math.cos((Math.PI * Math.min(t, 15)) / 15));
    fc.assert(
      fc.property(params0, gradSeq, (p0, grads) => {
        const opt = sgd({
          learningRate: cosineDecay({ initValue: 0.1, decaySteps: 15 }),
          momentum: 0.9,
        });
        expectClose(
          run(opt, p0, grads).updates,
          reference(refSgd(lr, 0.9, false), p0, grads).updates,
          1e-5,
          1e-6,
        );
      }),
      RUNS,
    );
  });
});

describe('rmsprop matches a plain-JS reference', () => {
  const refRmsprop =
    (lr: number, decay: number, eps: number, momentum: number, centered: boolean) => () => {
      let mu = 0;
      let nu = 0;
      let trace = 0;
      return (_t: number, g: number) => {
        nu = decay * nu + (1 - decay) * g * g;
        mu = decay * mu + (1 - decay) * g;
        const step = -lr * (g / Math.sqrt((centered ? nu - mu * mu : nu) + eps));
        if (momentum === 0) return step;
        trace = step + momentum * trace;
        return trace;
      };
    };

  for (const [centered, momentum] of [
    [false, 0],
    [true, 0],
    [false, 0.9],
    [true, 0.9],
  ] as const) {
    it(`centered ${centered}, momentum ${momentum}`, () => {
      fc.assert(
        fc.property(params0, gradSeq, (p0, grads) => {
          const opt = rmsprop({ learningRate: 0.01, decay: 0.9, eps: 1e-6, momentum, centered });
          const got = run(opt, p0, grads);
          const want = reference(refRmsprop(0.01, 0.9, 1e-6, momentum, centered), p0, grads);
          expectClose(got.updates, want.updates, 1e-5, 1e-7);
        }),
        RUNS,
      );
    });
  }
});

describe('adamw matches a plain-JS reference', () => {
  const refAdamw =
    (lr: number, wd: number, decayed: (i: number) => boolean) => (i: number) => () => {
      let m = 0;
      let v = 0;
      return (t: number, g: number, p: number) => {
        m = 0.9 * m + 0.1 * g;
        v = 0.999 * v + 0.001 * g * g;
        const dir = m / (1 - 0.9 ** (t + 1)) / (Math.sqrt(v / (1 - 0.999 ** (t + 1))) + 1e-8);
        return -lr * (dir + (decayed(i) ? wd * p : 0));
      };
    };

  /** `reference` with a per-element factory (the mask depends on the element's path). */
  function referenceIndexed(
    make: (i: number) => ReturnType<ScalarOptimizer> extends infer F ? () => F : never,
    p0: readonly number[],
    grads: readonly (readonly number[])[],
  ) {
    let i = 0;
    return reference(() => make(i++)(), p0, grads);
  }

  it('without a mask (all leaves decayed)', () => {
    fc.assert(
      fc.property(params0, gradSeq, (p0, grads) => {
        const got = run(adamw({ learningRate: 0.01, weightDecay: 0.1 }), p0, grads);
        const want = referenceIndexed(
          refAdamw(0.01, 0.1, () => true),
          p0,
          grads,
        );
        expectClose(got.updates, want.updates, 1e-5, 1e-8);
        expectClose(got.params, want.params, 1e-5, 1e-6);
      }),
      RUNS,
    );
  });

  it('with a mask that decays only the w leaf (paths are dotted, e.g. nested.s)', () => {
    const seen = new Set<string>();
    const mask = (path: string): boolean => {
      seen.add(path);
      return path === 'w';
    };
    fc.assert(
      fc.property(params0, gradSeq, (p0, grads) => {
        const got = run(adamw({ learningRate: 0.01, weightDecay: 0.5, mask }), p0, grads);
        const want = referenceIndexed(
          refAdamw(0.01, 0.5, (i) => PATH_OF[i] === 'w'),
          p0,
          grads,
        );
        expectClose(got.updates, want.updates, 1e-5, 1e-8);
      }),
      RUNS,
    );
    expect([...seen].sort()).toEqual(['b', 'nested.s', 'w']);
  });

  it('default weightDecay is 1e-4 (differs from plain adam by lr * 1e-4 * p)', () => {
    const p0 = [1, -2, 3, 4, 5, 6, 7, 8, 9];
    const grads = [Array.from({ length: SIZE }, () => 0.5)];
    const a = run(adam({ learningRate: 0.1 }), p0, grads).updates[0] as number[];
    const w = run(adamw({ learningRate: 0.1 }), p0, grads).updates[0] as number[];
    w.forEach((wi, i) =>
      expect(wi - (a[i] as number)).toBeCloseTo(-0.1 * 1e-4 * (p0[i] as number), 7),
    );
  });
});

describe('chain(clipByGlobalNorm(c), sgd) equals manual clipping', () => {
  it('over random grads and thresholds, clipping or not', () => {
    fc.assert(
      fc.property(
        params0,
        fc.array(fc.array(gradValue, { minLength: SIZE, maxLength: SIZE }), {
          minLength: 5,
          maxLength: 5,
        }),
        fc.double({ min: 0.1, max: 6, noNaN: true }),
        (p0, grads, maxNorm) => {
          const opt = chain(clipByGlobalNorm(maxNorm), sgd({ learningRate: 0.1, momentum: 0.5 }));
          const got = run(opt, p0, grads);
          let trace = p0.map(() => 0);
          const want = grads.map((g) => {
            const norm = Math.sqrt(g.reduce((s, x) => s + x * x, 0));
            const clipped = norm < maxNorm ? g : g.map((x) => (x / norm) * maxNorm);
            trace = clipped.map((x, i) => x + 0.5 * (trace[i] as number));
            return trace.map((x) => -0.1 * x);
          });
          expectClose(got.updates, want, 1e-5, 1e-7);
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe('end to end', () => {
  it('adam minimises sum((p - target)^2) computed with tf.grads', () => {
    const target = { w: tf.tensor2d([1, -2, 3, 0.5, -0.25, 4], [3, 2]), b: tf.tensor1d([-3, 2]) };
    const loss = (ps: readonly tf.Tensor[]): tf.Scalar =>
      tf.addN(
        tree
          .leaves(target as ParamTree)
          .map((t, i) => tf.sum(tf.square(tf.sub(ps[i] as tf.Tensor, t)))),
      ) as tf.Scalar;
    type Params = { readonly w: tf.Tensor; readonly b: tf.Tensor };
    let params: Params = { w: tf.zeros([3, 2]), b: tf.zeros([2]) };
    const opt = adam({ learningRate: cosineDecay({ initValue: 0.2, decaySteps: 400 }) });
    let state = opt.init(params);
    const lossOf = (p: ParamTree): number =>
      tf.tidy(() => loss(tree.leaves(p)).dataSync()[0] as number);
    const initial = lossOf(params);
    for (let i = 0; i < 400; i++) {
      const { leaves, treedef } = tree.flatten(params);
      // unflatten rebuilds the params' structure but cannot know their type
      const grads = tree.unflatten(
        treedef,
        tf.tidy(() => tf.grads((...xs: tf.Tensor[]) => loss(xs))(leaves)),
      ) as Params;
      const r = opt.update(grads, state);
      const next: Params = applyUpdates(params, r.updates); // updates are Params too
      tree.dispose([params, state, grads, r.updates]);
      params = next;
      state = r.state;
    }
    const final = lossOf(params);
    expect(initial).toBeGreaterThan(30);
    expect(final).toBeLessThan(1e-4);
    tree.dispose([params, state, target as ParamTree]);
  });
});
