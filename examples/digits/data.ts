/** Data for the digits example: the 8x8 handwritten digits of UCI / scikit-learn. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { transforms, type Key } from 'blitz-ts';
import { readCsv } from '../regression/data';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Image side (pixels) and number of classes. */
export const SIDE = 8;
export const NUM_CLASSES = 10;

/** Images as pixel rows scaled to [0, 1] (row-major, `SIDE * SIDE` each) and labels 0..9. */
export interface DigitSet {
  readonly pixels: Float32Array;
  readonly labels: Int32Array;
  readonly count: number;
}

/** A train / test split. */
export interface DigitSplit {
  readonly train: DigitSet;
  readonly test: DigitSet;
}

let cache: DigitSet | undefined;

/** `loadDigits() -> DigitSet`: all 1797 digits, pixel values 0..16 divided by 16. */
export function loadDigits(): DigitSet {
  if (cache) return cache;
  const t = readCsv(path.join(here, '../data/digits.csv'));
  const label = t.columns.indexOf('label');
  if (label < 0 || t.columns.length !== SIDE * SIDE + 1) {
    throw new Error(`digits.csv: expected p0..p63 and label columns, got ${t.columns.length}`);
  }
  const n = t.rows.length;
  const pixels = new Float32Array(n * SIDE * SIDE);
  const labels = new Int32Array(n);
  t.rows.forEach((r, i) => {
    let j = 0;
    r.forEach((v, c) => {
      if (c !== label) pixels[i * SIDE * SIDE + j++] = v / 16;
    });
    labels[i] = r[label] ?? -1;
  });
  cache = { pixels, labels, count: n };
  return cache;
}

function subset(d: DigitSet, idx: ArrayLike<number>): DigitSet {
  const m = SIDE * SIDE;
  const pixels = new Float32Array(idx.length * m);
  const labels = new Int32Array(idx.length);
  Array.from(idx).forEach((j, i) => {
    pixels.set(d.pixels.subarray(j * m, (j + 1) * m), i * m);
    labels[i] = d.labels[j] ?? -1;
  });
  return { pixels, labels, count: idx.length };
}

/**
 * `splitDigits(key, testShare = 0.2, limit?) -> { train, test }`: a random split from `key` (the
 * first `round(n * testShare)` of a permutation are the test set); `limit` keeps only the first
 * `limit` digits of the permutation (quick runs and tests).
 */
export function splitDigits(key: Key, testShare = 0.2, limit?: number): DigitSplit {
  const all = loadDigits();
  const order = transforms.permutation(key, all.count);
  const used = limit === undefined ? order : order.subarray(0, Math.min(limit, all.count));
  const nTest = Math.round(used.length * testShare);
  return { test: subset(all, used.subarray(0, nTest)), train: subset(all, used.subarray(nTest)) };
}
