/**
 * The per-leaf optimizers as they were before the flat (one buffer over all leaves)
 * implementation: the same tf ops, in the same order, leaf by leaf, with moment trees shaped like
 * the params. Kept as the reference that `flat.test.ts` compares the library against bit for bit,
 * and as the "before" side of `bench/optim.ts` (its kernel counts are those of the old code).
 * No validation: the inputs are trusted.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tree from '../../src/params/tree';
import type { ParamTree } from '../../src/params/tree';
import type { GradientTransformation, OptState, Schedule } from '../../src/optim';

type Lr = number | Schedule;
type T = GradientTransformation<OptState>;
type Rec = Readonly<Record<string, unknown>>;

const tidy = <R>(f: () => R): R => tf.tidy(f as () => tf.TensorContainer) as R;
const EMPTY = Object.freeze({});

/** `f` leaf by leaf over trees of the first one's structure. */
function zip<P extends ParamTree>(
  ref: P,
  others: readonly ParamTree[],
  f: (ls: tf.Tensor[], path: string) => tf.Tensor,
): P {
  const ls = others.map((o) => tree.leaves<tf.Tensor>(o));
  let i = 0;
  return tree.map<tf.Tensor, tf.Tensor>(ref, (l, path) => {
    const row = [l, ...ls.map((x) => x[i] as tf.Tensor)];
    i++;
    return f(row, path);
  }) as P;
}
const zeros = (p: ParamTree): ParamTree =>
  tree.map<tf.Tensor, tf.Tensor>(p, (x) => tf.zerosLike(x));
const cloneTree = <P extends ParamTree>(t: P): P =>
  tree.map<tf.Tensor, tf.Tensor>(t, (x) => tf.clone(x)) as P;
const mapT = <P extends ParamTree>(t: P, f: (x: tf.Tensor) => tf.Tensor): P =>
  tree.map<tf.Tensor, tf.Tensor>(t, f) as P;

export function perLeafChain(...ts: readonly T[]): T {
  return {
    init: (params) => tidy(() => Object.freeze(ts.map((t) => t.init(params)))),
    update: (grads, state, params) =>
      tidy(() => {
        const states = state as readonly OptState[];
        if (ts.length === 0) return { updates: cloneTree(grads), state };
        let updates = grads;
        const next: OptState[] = [];
        ts.forEach((t, i) => {
          const r = t.update(updates, states[i] as OptState, params);
          updates = r.updates;
          next.push(r.state);
        });
        return { updates, state: Object.freeze(next) };
      }),
  };
}

export function perLeafIdentity(): T {
  return { init: () => EMPTY, update: (g, s) => tidy(() => ({ updates: cloneTree(g), state: s })) };
}

export function perLeafScale(lr: Lr, sign = -1): T {
  if (typeof lr === 'function') {
    return {
      init: () => Object.freeze({ count: 0 }),
      update: (g, s) => {
        const count = (s as Rec).count as number;
        const f = sign * lr(count);
        return tidy(() => ({
          updates: mapT(g, (x) => tf.mul(x, f)),
          state: Object.freeze({ count: count + 1 }),
        }));
      },
    };
  }
  const f = sign * lr;
  return {
    init: () => EMPTY,
    update: (g, s) => tidy(() => ({ updates: mapT(g, (x) => tf.mul(x, f)), state: s })),
  };
}

export function perLeafTrace(decay: number, nesterov = false): T {
  return {
    init: (p) => tidy(() => Object.freeze({ trace: zeros(p) })),
    update: (g, s) =>
      tidy(() => {
        const next = zip(g, [(s as Rec).trace as ParamTree], ([a, t]) =>
          tf.add(a as tf.Tensor, tf.mul(t as tf.Tensor, decay)),
        );
        const updates = nesterov
          ? zip(g, [next], ([a, t]) => tf.add(a as tf.Tensor, tf.mul(t as tf.Tensor, decay)))
          : cloneTree(next);
        return { updates, state: Object.freeze({ trace: next }) };
      }),
  };
}

export function perLeafScaleByAdam(b1 = 0.9, b2 = 0.999, eps = 1e-8, epsRoot = 0): T {
  return {
    init: (p) => tidy(() => Object.freeze({ count: 0, mu: zeros(p), nu: zeros(p) })),
    update: (g, s) => {
      const st = s as Rec;
      const count = (st.count as number) + 1;
      const c1 = 1 - b1 ** count;
      const c2 = 1 - b2 ** count;
      return tidy(() => {
        const mu = zip(g, [st.mu as ParamTree], ([x, m]) =>
          tf.add(tf.mul(x as tf.Tensor, 1 - b1), tf.mul(m as tf.Tensor, b1)),
        );
        const nu = zip(g, [st.nu as ParamTree], ([x, v]) =>
          tf.add(tf.mul(tf.square(x as tf.Tensor), 1 - b2), tf.mul(v as tf.Tensor, b2)),
        );
        const updates = zip(mu, [nu], ([m, v]) =>
          tf.div(
            tf.div(m as tf.Tensor, c1),
            tf.add(tf.sqrt(tf.add(tf.div(v as tf.Tensor, c2), epsRoot)), eps),
          ),
        ) as typeof g;
        return { updates, state: Object.freeze({ count, mu, nu }) };
      });
    },
  };
}

export function perLeafScaleByRms(decay = 0.9, eps = 1e-8): T {
  return {
    init: (p) => tidy(() => Object.freeze({ nu: zeros(p) })),
    update: (g, s) =>
      tidy(() => {
        const nu = zip(g, [(s as Rec).nu as ParamTree], ([x, v]) =>
          tf.add(tf.mul(tf.square(x as tf.Tensor), 1 - decay), tf.mul(v as tf.Tensor, decay)),
        );
        const updates = zip(g, [nu], ([x, v]) =>
          tf.mul(x as tf.Tensor, tf.rsqrt(tf.add(v as tf.Tensor, eps))),
        );
        return { updates, state: Object.freeze({ nu }) };
      }),
  };
}

export function perLeafScaleByStddev(decay = 0.9, eps = 1e-8): T {
  return {
    init: (p) => tidy(() => Object.freeze({ mu: zeros(p), nu: zeros(p) })),
    update: (g, s) =>
      tidy(() => {
        const st = s as Rec;
        const mu = zip(g, [st.mu as ParamTree], ([x, m]) =>
          tf.add(tf.mul(x as tf.Tensor, 1 - decay), tf.mul(m as tf.Tensor, decay)),
        );
        const nu = zip(g, [st.nu as ParamTree], ([x, v]) =>
          tf.add(tf.mul(tf.square(x as tf.Tensor), 1 - decay), tf.mul(v as tf.Tensor, decay)),
        );
        const updates = zip(g, [mu, nu], ([x, m, v]) =>
          tf.mul(
            x as tf.Tensor,
            tf.rsqrt(tf.add(tf.sub(v as tf.Tensor, tf.square(m as tf.Tensor)), eps)),
          ),
        );
        return { updates, state: Object.freeze({ mu, nu }) };
      }),
  };
}

export function perLeafAddDecayedWeights(wd: number, mask?: (path: string) => boolean): T {
  return {
    init: () => EMPTY,
    update: (g, s, params) =>
      tidy(() => ({
        updates: zip(g, [params as ParamTree], ([u, p], path) =>
          mask === undefined || mask(path)
            ? tf.add(u as tf.Tensor, tf.mul(p as tf.Tensor, wd))
            : tf.clone(u as tf.Tensor),
        ),
        state: s,
      })),
  };
}

export function perLeafClipByGlobalNorm(maxNorm: number): T {
  return {
    init: () => EMPTY,
    update: (grads, state) =>
      tidy(() => {
        const g = cloneTree(grads);
        const ls = tree.leaves<tf.Tensor>(g);
        if (ls.length === 0) return { updates: g, state };
        const norm = tf.sqrt(tf.addN(ls.map((x) => tf.sum(tf.square(x)))));
        const factor = tf.where(tf.less(norm, maxNorm), tf.scalar(1), tf.div(maxNorm, norm));
        return { updates: mapT(g, (x) => tf.mul(x, factor)), state };
      }),
  };
}

export interface RefAdamOptions {
  readonly learningRate: Lr;
  readonly b1?: number;
  readonly b2?: number;
  readonly eps?: number;
  readonly epsRoot?: number;
}

export const perLeafAdam = (o: RefAdamOptions): T =>
  perLeafChain(perLeafScaleByAdam(o.b1, o.b2, o.eps, o.epsRoot), perLeafScale(o.learningRate));

export const perLeafAdamw = (
  o: RefAdamOptions & { weightDecay?: number; mask?: (path: string) => boolean },
): T =>
  perLeafChain(
    perLeafScaleByAdam(o.b1, o.b2, o.eps, o.epsRoot),
    perLeafAddDecayedWeights(o.weightDecay ?? 1e-4, o.mask),
    perLeafScale(o.learningRate),
  );

export const perLeafSgd = (o: { learningRate: Lr; momentum?: number; nesterov?: boolean }): T =>
  perLeafChain(
    (o.momentum ?? 0) === 0
      ? perLeafIdentity()
      : perLeafTrace(o.momentum as number, o.nesterov ?? false),
    perLeafScale(o.learningRate),
  );

export const perLeafRmsprop = (o: {
  learningRate: Lr;
  decay?: number;
  eps?: number;
  momentum?: number;
  centered?: boolean;
}): T =>
  perLeafChain(
    o.centered ? perLeafScaleByStddev(o.decay, o.eps) : perLeafScaleByRms(o.decay, o.eps),
    perLeafScale(o.learningRate),
    (o.momentum ?? 0) === 0 ? perLeafIdentity() : perLeafTrace(o.momentum as number, false),
  );

/** `applyUpdates`: one add per leaf. */
export function perLeafApplyUpdates<P extends ParamTree>(params: P, updates: P): P {
  return tidy(() => zip(params, [updates], ([p, u]) => tf.add(p as tf.Tensor, u as tf.Tensor)));
}
