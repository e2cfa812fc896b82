/**
 * The synthetic token task of the sequence-classification example, drawn from a key: each
 * sequence of in-distribution tokens contains exactly one of K motifs (short token patterns) at a
 * random place among random filler; the label is which. Sequences have random lengths and are
 * left-padded with token 0. The out-of-distribution set is made of tokens the model never saw in
 * training (an unseen range of the vocabulary), so it contains no motif at all. Browser-safe.
 */
import { random, type Key } from 'blitz-ts';

const { foldIn, uniformArray } = random;

/** The task's settings (one place, so that the example and its test agree). */
export const TASK = Object.freeze({
  /** Vocabulary size: 0 is padding, [1, idTokens] in-distribution, the rest unseen. */
  vocab: 20,
  /** In-distribution tokens are 1..idTokens. */
  idTokens: 11,
  /** Number of motifs (classes). */
  numClasses: 3,
  /** Tokens per motif. */
  motifLength: 3,
  /** Padded sequence length, and the shortest unpadded one. */
  length: 12,
  minLength: 6,
  padding: 0,
});

/** A labelled set: flat int32 tokens `[n * length]` and labels `[n]`. */
export interface TokenSet {
  readonly x: Int32Array;
  readonly y: Int32Array;
  readonly n: number;
  readonly length: number;
}

/** The motifs and the three sets. */
export interface TokenTask {
  readonly motifs: readonly (readonly number[])[];
  readonly train: TokenSet;
  readonly test: TokenSet;
  /** Sequences of unseen tokens (labels are meaningless: -1). */
  readonly ood: TokenSet;
}

/** A stream of uniforms in [0, 1) from a key, refilled by `foldIn`. */
function stream(k: Key): () => number {
  let block = 0;
  let buf = uniformArray(foldIn(k, block), 256);
  let i = 0;
  return () => {
    if (i === buf.length) {
      block += 1;
      buf = uniformArray(foldIn(k, block), 256);
      i = 0;
    }
    return buf[i++] ?? NaN;
  };
}

const intIn = (u: () => number, lo: number, hi: number): number =>
  Math.min(hi, lo + Math.floor(u() * (hi - lo + 1)));

const contains = (seq: readonly number[], motif: readonly number[]): boolean =>
  seq.some((_, i) => motif.every((m, j) => seq[i + j] === m));

/** Left-pads `tokens` with the padding token to `length`. */
function padded(tokens: readonly number[], length: number): number[] {
  return [...new Array<number>(length - tokens.length).fill(TASK.padding), ...tokens];
}

function inDistribution(
  u: () => number,
  n: number,
  motifs: readonly (readonly number[])[],
): TokenSet {
  const L = TASK.length;
  const x = new Int32Array(n * L);
  const y = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    const label = r % TASK.numClasses;
    const motif = motifs[label] ?? [];
    let seq: number[];
    // filler tokens with the motif at a random place; redrawn if another motif appears too
    do {
      const len = intIn(u, TASK.minLength, L);
      seq = Array.from({ length: len }, () => intIn(u, 1, TASK.idTokens));
      const at = intIn(u, 0, len - motif.length);
      seq.splice(at, motif.length, ...motif);
    } while (motifs.some((m, k) => k !== label && contains(seq, m)));
    x.set(padded(seq, L), r * L);
    y[r] = label;
  }
  return { x, y, n, length: L };
}

function unseenTokens(u: () => number, n: number): TokenSet {
  const L = TASK.length;
  const x = new Int32Array(n * L);
  for (let r = 0; r < n; r++) {
    const len = intIn(u, TASK.minLength, L);
    const seq = Array.from({ length: len }, () => intIn(u, TASK.idTokens + 1, TASK.vocab - 1));
    x.set(padded(seq, L), r * L);
  }
  return { x, y: new Int32Array(n).fill(-1), n, length: L };
}

/**
 * `tokenTask(key, sizes) -> TokenTask`: K distinct motifs of in-distribution tokens, and the
 * train, test and out-of-distribution sets (classes balanced, in turn).
 */
export function tokenTask(
  key: Key,
  sizes: { train: number; test: number; ood: number } = { train: 1200, test: 300, ood: 300 },
): TokenTask {
  const u = stream(foldIn(key, 0));
  const motifs: number[][] = [];
  while (motifs.length < TASK.numClasses) {
    const m = Array.from({ length: TASK.motifLength }, () => intIn(u, 1, TASK.idTokens));
    if (!motifs.some((o) => o.join() === m.join())) motifs.push(m);
  }
  return {
    motifs,
    train: inDistribution(stream(foldIn(key, 1)), sizes.train, motifs),
    test: inDistribution(stream(foldIn(key, 2)), sizes.test, motifs),
    ood: unseenTokens(stream(foldIn(key, 3)), sizes.ood),
  };
}
