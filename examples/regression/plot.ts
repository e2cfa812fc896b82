/** Plots for the examples: a predictive band chart rendered to SVG with Vega-Lite (headless). */
import * as vega from 'vega';
import * as vl from 'vega-lite';

/** Data of a band chart: the predictive mean and std on a grid, and observed points. */
export interface BandChart {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly grid: readonly number[];
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly points: readonly { x: number; y: number }[];
}

/** `bandChart(data) -> Promise<svg>`: observed points, the mean line and the ±1 / ±2 std bands. */
export async function bandChart(d: BandChart): Promise<string> {
  const band = d.grid.map((x, i) => {
    const m = d.mean[i] ?? NaN;
    const s = d.std[i] ?? NaN;
    return { x, mean: m, lo2: m - 2 * s, hi2: m + 2 * s, lo1: m - s, hi1: m + s };
  });
  const x = { field: 'x', type: 'quantitative' as const, title: d.xLabel };
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: d.title,
    width: 720,
    height: 360,
    background: 'white',
    layer: [
      {
        data: { values: band },
        mark: { type: 'area', opacity: 0.25, color: '#4c78a8' },
        encoding: {
          x,
          y: { field: 'lo2', type: 'quantitative', title: d.yLabel },
          y2: { field: 'hi2' },
        },
      },
      {
        data: { values: band },
        mark: { type: 'area', opacity: 0.35, color: '#4c78a8' },
        encoding: { x, y: { field: 'lo1', type: 'quantitative' }, y2: { field: 'hi1' } },
      },
      {
        data: { values: band },
        mark: { type: 'line', color: '#1f3b73', strokeWidth: 2 },
        encoding: { x, y: { field: 'mean', type: 'quantitative' } },
      },
      {
        data: { values: d.points.map((p) => ({ x: p.x, y: p.y })) },
        mark: { type: 'point', filled: true, size: 14, color: '#e45756', opacity: 0.7 },
        encoding: { x, y: { field: 'y', type: 'quantitative' } },
      },
    ],
  };
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}
