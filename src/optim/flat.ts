/**
 * @internal One flat buffer over all the leaves of a tree: the optimizers' fast path, as
 * multi-tensor apply in PyTorch. The arithmetic of a transformation is element-wise, so running it
 * once on the concatenation of the leaves computes exactly (bit for bit) what running it leaf by
 * leaf computes, with a handful of kernels instead of a handful per leaf: on wasm and cpu the cost
 * of a small optimizer step is the dispatch of its kernels, not its arithmetic.
 *
 * The stateful transformations (`scaleByAdam`, `scaleByRms`, `scaleByStddev`, `trace`) keep their
 * moments as flat 1-D buffers across steps (`[n]` for params of `n` scalars, in flatten order), so
 * a step only concatenates the grads (one `Concat`, plus a `Reshape` per leaf of rank != 1) and
 * splits the updates back (one `SplitV`, plus a `Reshape` per such leaf). The element-wise
 * stateless steps (`scale`, learning rates, `clipByGlobalNorm`'s scaling, `addDecayedWeights`)
 * work on whichever form they are handed: the flat buffer when there is one (or when a later step
 * will need it), leaf by leaf otherwise, so that a chain of them alone (plain sgd) never pays for
 * a concatenation.
 *
 * A transformation that has such a flat step is registered with `withFlatStep`; `chain` runs
 * consecutive flat-capable transformations as one run (`runSteps`): concatenate once, every step
 * on the buffer, split once.
 */
import * as tf from '@tensorflow/tfjs-core';
import { show } from '../errors';
import * as tree from '../params/tree';
import type { ParamTree, TreeDef } from '../params/tree';
import type { GradientTransformation, OptState } from './transform';

const where = (path: string): string => `'${path || '<root>'}'`;

/** @internal A tree's leaf as a tensor, or a `TreeError` naming its path. */
export function requireTensor(owner: string, name: string, leaf: unknown, path: string): tf.Tensor {
  if (leaf instanceof tf.Tensor) return leaf;
  throw new tree.TreeError(
    path,
    `${owner}: ${name} at ${where(path)} is ${show(leaf)}; expected a tf.Tensor.`,
  );
}

/** @internal Where each leaf of a tree lies in its flat buffer (flatten order). */
export interface Layout {
  readonly treedef: TreeDef;
  /** The leaves' dotted paths (computed on first use: only masks need them). */
  readonly paths: readonly string[];
  readonly shapes: readonly (readonly number[])[];
  readonly sizes: readonly number[];
  /** The total number of scalars: the length of the flat buffer. */
  readonly size: number;
}

/** @internal The layout and the tensor leaves of `t` (a `TreeError` names a non-tensor leaf). */
export function layoutOf(
  owner: string,
  name: string,
  t: ParamTree,
): { readonly layout: Layout; readonly leaves: readonly tf.Tensor[] } {
  const { leaves: raw, treedef } = tree.flatten<unknown>(t);
  let paths: string[] | undefined;
  const pathsOf = (): string[] => (paths ??= raw.length === 0 ? [] : tree.paths<unknown>(t));
  const leaves = raw.map((l, i) =>
    l instanceof tf.Tensor ? l : requireTensor(owner, name, l, pathsOf()[i] as string),
  );
  const sizes = leaves.map((l) => l.size);
  const layout: Layout = {
    treedef,
    get paths() {
      return pathsOf();
    },
    shapes: leaves.map((l) => l.shape),
    sizes,
    size: sizes.reduce((a, b) => a + b, 0),
  };
  return { layout, leaves };
}

/** @internal Fresh zeros for a flat buffer over the leaves of `params` (call inside a tidy). */
export function zerosFlat(owner: string, params: ParamTree): tf.Tensor1D {
  return tf.zeros([layoutOf(owner, 'params', params).layout.size]);
}

/**
 * @internal Checks a flat state buffer: a tensor of shape `[layout.size]`; otherwise a
 * `TreeError` at the state field (`mu`, `nu`, `trace`) saying what `init` returns.
 */
export function requireFlat(owner: string, field: string, x: unknown, layout: Layout): tf.Tensor {
  if (x instanceof tf.Tensor && x.rank === 1 && x.size === layout.size) return x;
  throw new tree.TreeError(
    field,
    `${owner}: state.${field} is ${show(x)}, but the grads have ${layout.size} scalars in ` +
      `${layout.sizes.length} leaves: state.${field} must be the flat float32 buffer ` +
      `[${layout.size}] over the leaves (flatten order) that init returns for params shaped like ` +
      `the grads; pass the state that init or the previous update returned.`,
  );
}

/**
 * @internal `tf.where(cond, a, b)` for operands of one shape, as the one `Select` kernel (`tf.where`
 * first broadcasts each operand, an `Identity` kernel each when the shapes already agree).
 */
export function select(cond: tf.Tensor, a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const same = (x: tf.Tensor): boolean =>
    x.rank === a.rank && x.shape.every((d, i) => d === a.shape[i]);
  if (!same(cond) || !same(b) || cond.dtype !== 'bool' || a.dtype !== b.dtype) {
    return tf.where(cond, a, b);
  }
  return tf.engine().runKernel(tf.Select, { condition: cond, t: a, e: b }) as tf.Tensor;
}

const flatLeaf = (l: tf.Tensor): tf.Tensor => (l.rank === 1 ? l : tf.reshape(l, [l.size]));

/** The leaves as one 1-D buffer: a `Reshape` per leaf of rank != 1 and one `Concat`. */
function pack(leaves: readonly tf.Tensor[]): tf.Tensor {
  if (leaves.length === 0) return tf.zeros([0]);
  if (leaves.length === 1) return flatLeaf(leaves[0] as tf.Tensor);
  return tf.concat(leaves.map(flatLeaf), 0);
}

/** The inverse of `pack`: one `SplitV` and a `Reshape` per leaf of rank != 1. */
function unpack(flat: tf.Tensor, layout: Layout): tf.Tensor[] {
  const n = layout.sizes.length;
  const shaped = (x: tf.Tensor, i: number): tf.Tensor => {
    const shape = layout.shapes[i] as number[];
    return shape.length === 1 ? x : tf.reshape(x, shape);
  };
  if (n === 0) return [];
  if (n === 1) return [shaped(flat, 0)];
  return tf.split(flat, layout.sizes as number[], 0).map(shaped);
}

/**
 * @internal A value flowing through a run of flat steps: the leaves, the flat buffer, or both
 * (each computed from the other on first use and kept).
 */
export class Packed {
  private flatT: tf.Tensor | undefined;
  private leavesT: readonly tf.Tensor[] | undefined;

  private constructor(
    readonly layout: Layout,
    flat: tf.Tensor | undefined,
    leaves: readonly tf.Tensor[] | undefined,
  ) {
    this.flatT = flat;
    this.leavesT = leaves;
  }

  static ofLeaves(layout: Layout, leaves: readonly tf.Tensor[]): Packed {
    return new Packed(layout, undefined, leaves);
  }

  static ofFlat(layout: Layout, flat: tf.Tensor): Packed {
    return new Packed(layout, flat, undefined);
  }

  /** Whether the flat buffer is at hand (no concatenation needed). */
  get hasFlat(): boolean {
    return this.flatT !== undefined;
  }

  /** The flat buffer `[layout.size]`. */
  flat(): tf.Tensor {
    this.flatT ??= pack(this.leavesT as readonly tf.Tensor[]);
    return this.flatT;
  }

  /** The leaves, shaped as in the tree, in flatten order. */
  leaves(): readonly tf.Tensor[] {
    this.leavesT ??= unpack(this.flatT as tf.Tensor, this.layout);
    return this.leavesT;
  }

  /**
   * An element-wise `f` (e.g. a multiplication by a scalar): once on the flat buffer when it is
   * at hand or `preferFlat` (a later step needs it anyway), else leaf by leaf. Either way every
   * element gets the same arithmetic.
   */
  map(f: (x: tf.Tensor) => tf.Tensor, preferFlat: boolean): Packed {
    if (this.hasFlat || preferFlat) return Packed.ofFlat(this.layout, f(this.flat()));
    return Packed.ofLeaves(this.layout, this.leaves().map(f));
  }
}

/** @internal What a flat step sees besides its input: the layout and the params. */
export interface FlatContext {
  readonly layout: Layout;
  /** The params (packed lazily, once per run), or `undefined` when `update` got none. */
  params(): Packed | undefined;
}

/** @internal The flat form of a transformation's `update`. */
export interface FlatStep<S extends OptState = OptState> {
  /** Whether `update` takes the flat buffer (the stateful steps: their state is flat). */
  readonly needsFlat: boolean;
  /**
   * `update(g, state, ctx, flatAhead)`: the transformation's update on a packed value;
   * `flatAhead` says that a later step of the run needs the flat buffer (pack now rather than
   * work leaf by leaf). Runs inside the caller's tidy; must not dispose its inputs.
   */
  update(
    g: Packed,
    state: S,
    ctx: FlatContext,
    flatAhead: boolean,
  ): { readonly updates: Packed; readonly state: S };
}

const FLAT_STEPS = new WeakMap<object, FlatStep>();

/** @internal Registers the flat step of `t` (returned as is). */
export function withFlatStep<S extends OptState>(
  t: GradientTransformation<S>,
  step: FlatStep<S>,
): GradientTransformation<S> {
  FLAT_STEPS.set(t, step as unknown as FlatStep);
  return t;
}

/** @internal The flat step of `t`, if it has one. */
export function flatStepOf(t: GradientTransformation): FlatStep | undefined {
  return FLAT_STEPS.get(t);
}

/** `ahead[i]`: whether a step after `i` needs the flat buffer (or `after` says one does). */
export function needsFlatAfter(steps: readonly FlatStep[], after = false): boolean[] {
  const ahead: boolean[] = new Array<boolean>(steps.length);
  let acc = after;
  for (let i = steps.length - 1; i >= 0; i--) {
    ahead[i] = acc;
    acc = acc || (steps[i] as FlatStep).needsFlat;
  }
  return ahead;
}

const tensorsIn = (t: unknown): tf.Tensor[] =>
  tree
    .leaves<unknown>(t as tree.Tree<unknown>)
    .filter((l): l is tf.Tensor => l instanceof tf.Tensor);

/**
 * @internal Runs flat steps in order on `grads` (call inside a tidy, after checking `params`
 * against `grads`): pack once, each step, unpack once. Returns the updates (as a tree of the
 * grads' structure; a leaf that is also a grads leaf or a state tensor is cloned, so that updates
 * are fresh and share nothing with the state) and the steps' next states. A step never returns
 * a params leaf as an update.
 */
export function runSteps<P extends ParamTree>(
  owner: string,
  steps: readonly FlatStep[],
  grads: P,
  states: readonly OptState[],
  params: P | undefined,
): { readonly updates: P; readonly states: readonly OptState[] } {
  const { layout, leaves } = layoutOf(owner, 'grads', grads);
  let packedParams: Packed | undefined;
  const ctx: FlatContext = {
    layout,
    params: () => {
      if (params === undefined) return undefined;
      packedParams ??= Packed.ofLeaves(layout, layoutOf(owner, 'params', params).leaves);
      return packedParams;
    },
  };
  const ahead = needsFlatAfter(steps);
  let v = Packed.ofLeaves(layout, leaves);
  const next: OptState[] = [];
  steps.forEach((s, i) => {
    const r = s.update(v, states[i] as OptState, ctx, ahead[i] as boolean);
    v = r.updates;
    next.push(r.state);
  });
  // the steps return fresh tensors, the grads' leaves (passed through) or their own state's
  const taken = new Set<tf.Tensor>([...leaves, ...tensorsIn(states), ...tensorsIn(next)]);
  const out = v.leaves().map((l) => (taken.has(l) ? tf.clone(l) : l));
  // the grads' structure with fresh tensor leaves: a P
  return { updates: tree.unflatten(layout.treedef, out) as P, states: next };
}
