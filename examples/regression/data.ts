/** Data for the regression example: the diabetes CSV and the toy curve of the BBB paper. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { transforms, type Key } from 'blitz-ts';

const here = path.dirname(fileURLToPath(import.meta.url));

/** A table of numbers read from a CSV with a header row. */
export interface Table {
  readonly columns: readonly string[];
  readonly rows: readonly (readonly number[])[];
}

/** `readCsv(file) -> Table`: numeric CSV; a malformed cell names its row and column. */
export function readCsv(file: string): Table {
  const text = readFileSync(file, 'utf8').trim();
  const [header, ...lines] = text.split(/\r?\n/);
  if (!header) throw new Error(`${file}: empty file`);
  const columns = header.split(',').map((c) => c.trim());
  const rows = lines.map((line, i) => {
    const cells = line.split(',');
    if (cells.length !== columns.length) {
      throw new Error(
        `${file}: row ${i + 2} has ${cells.length} cells, expected ${columns.length}`,
      );
    }
    return cells.map((c, j) => {
      const v = Number(c);
      if (c.trim() === '' || !Number.isFinite(v)) {
        throw new Error(`${file}: row ${i + 2}, column '${columns[j]}': not a number: '${c}'`);
      }
      return v;
    });
  });
  return { columns, rows };
}

/** A standardised regression split: features and targets as plain arrays, with the scalers. */
export interface RegressionSplit {
  readonly xTrain: number[][];
  readonly yTrain: number[];
  readonly xTest: number[][];
  readonly yTest: number[];
  /** Target mean and standard deviation (of the training part), to report in original units. */
  readonly yMean: number;
  readonly yStd: number;
  readonly featureNames: readonly string[];
}

function meanStd(values: readonly number[]): [number, number] {
  const m = values.reduce((a, b) => a + b, 0) / values.length;
  const v = values.reduce((a, b) => a + (b - m) ** 2, 0) / values.length;
  return [m, Math.sqrt(v) || 1];
}

/**
 * `diabetes(key, testShare) -> RegressionSplit`: the diabetes data set, shuffled with `key`,
 * split, and standardised with the training part's statistics.
 */
export function diabetes(key: Key, testShare = 0.2): RegressionSplit {
  const t = readCsv(path.join(here, '../data/diabetes.csv'));
  const target = t.columns.indexOf('target');
  if (target < 0) throw new Error('diabetes.csv: no target column');
  const order = transforms.permutation(key, t.rows.length);
  const nTest = Math.round(t.rows.length * testShare);
  const rows = Array.from(order, (i) => t.rows[i] ?? []);
  const test = rows.slice(0, nTest);
  const train = rows.slice(nTest);
  const featureIdx = t.columns.map((_, j) => j).filter((j) => j !== target);
  const cell = (r: readonly number[], j: number): number => r[j] ?? NaN;
  const stats = featureIdx.map((j) => meanStd(train.map((r) => cell(r, j))));
  const scale = (r: readonly number[]): number[] =>
    featureIdx.map((j, k) => {
      const [m, sd] = stats[k] ?? [NaN, NaN];
      return (cell(r, j) - m) / sd;
    });
  const [yMean, yStd] = meanStd(train.map((r) => cell(r, target)));
  return {
    xTrain: train.map(scale),
    yTrain: train.map((r) => (cell(r, target) - yMean) / yStd),
    xTest: test.map(scale),
    yTest: test.map((r) => (cell(r, target) - yMean) / yStd),
    yMean,
    yStd,
    featureNames: featureIdx.map((j) => t.columns[j] ?? ''),
  };
}

/** The toy curve lives in ./toy (browser-safe); re-exported here for existing imports. */
export { TOY_NOISE_STD, toyCurve } from './toy';
