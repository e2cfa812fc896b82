/**
 * The digits example's figure: test digits drawn as 8x8 heatmaps, each next to a bar chart of
 * its posterior predictive distribution with the true label's bar marked. Vega-Lite, rendered
 * headless to SVG.
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';

/** One panel: the pixels (row-major, in [0, 1]), the predictive probabilities and the label. */
export interface DigitPanel {
  readonly pixels: ArrayLike<number>;
  readonly side: number;
  readonly probs: readonly number[];
  readonly label: number;
  /** Predictive entropy in nats. */
  readonly entropy: number;
}

/** `uncertainDigitsChart(title, panels, columns = 3) -> Promise<svg>`. */
export async function uncertainDigitsChart(
  title: string,
  panels: readonly DigitPanel[],
  columns = 3,
): Promise<string> {
  const cell = 12;
  const views = panels.map((p, n) => {
    const pixels = Array.from(p.pixels, (ink, i) => ({
      row: Math.floor(i / p.side),
      col: i % p.side,
      ink,
    }));
    const predicted = p.probs.indexOf(Math.max(...p.probs));
    const bars = p.probs.map((prob, c) => ({
      digit: c,
      prob,
      isTrue: c === p.label,
    }));
    return {
      title: {
        text: `#${n + 1}: true ${p.label}, predicted ${predicted} (${(p.probs[predicted] ?? NaN).toFixed(2)})`,
        subtitle: `entropy ${p.entropy.toFixed(2)} nats`,
        fontSize: 11,
        subtitleFontSize: 10,
      },
      spacing: 6,
      hconcat: [
        {
          data: { values: pixels },
          width: cell * p.side,
          height: cell * p.side,
          mark: { type: 'rect' as const },
          encoding: {
            x: { field: 'col', type: 'ordinal' as const, axis: null },
            y: { field: 'row', type: 'ordinal' as const, axis: null },
            color: {
              field: 'ink',
              type: 'quantitative' as const,
              scale: { domain: [0, 1], range: ['#ffffff', '#000000'] },
              legend: null,
            },
          },
        },
        {
          data: { values: bars },
          width: 150,
          height: cell * p.side,
          mark: { type: 'bar' as const },
          encoding: {
            x: {
              field: 'digit',
              type: 'ordinal' as const,
              title: null,
              axis: { labelAngle: 0 },
            },
            y: {
              field: 'prob',
              type: 'quantitative' as const,
              scale: { domain: [0, 1] },
              title: 'p(digit)',
            },
            color: {
              condition: { test: 'datum.isTrue', value: '#e45756' },
              value: '#4c78a8',
            },
          },
        },
      ],
    };
  });
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: title,
      subtitle: 'bars: posterior predictive probabilities; red bar: the true label',
    },
    background: 'white',
    columns,
    spacing: 24,
    concat: views,
    resolve: { scale: { color: 'independent' } },
  };
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}
