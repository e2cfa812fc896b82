/**
 * The demo's canvas plot: observed points, the predictive mean, and the ±1 / ±2 std bands.
 * Opaque fills in fixed colours, so a test can find the band in a screenshot by its colour.
 */

/** Colours as `[r, g, b]`. */
export type Rgb = readonly [number, number, number];

const rgb = (r: number, g: number, b: number): Rgb => [r, g, b];

export const COLORS = Object.freeze({
  band2: rgb(198, 219, 239), // ±2 std
  band1: rgb(158, 202, 225), // ±1 std
  mean: rgb(8, 81, 156),
  points: rgb(230, 85, 13),
  grid: rgb(236, 236, 236),
  axis: rgb(68, 68, 68),
});

/** The plot area inside the canvas, in CSS pixels. */
export interface Area {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/** What one frame shows (curve units). */
export interface Frame {
  readonly points: { readonly x: readonly number[]; readonly y: readonly number[] };
  /** The prediction grid, with mean and total std on it; absent before the first prediction. */
  readonly grid?: readonly number[];
  readonly mean?: readonly number[];
  readonly std?: readonly number[];
  readonly title: string;
}

const css = (c: Rgb): string => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;

export const X_RANGE = [-0.2, 1.2] as const;

/**
 * The y range: the data's widened by 0.5 each way, and stretched to show the band (at most 2.5
 * beyond the data's range; the rest is clipped).
 */
export function yRange(frame: Frame): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of frame.points.y) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  let [bandLo, bandHi] = [lo - 0.5, hi + 0.5];
  const { mean, std } = frame;
  if (mean && std) {
    mean.forEach((m, i) => {
      const s = 2 * (std[i] ?? NaN);
      if (Number.isFinite(m - s)) bandLo = Math.min(bandLo, m - s);
      if (Number.isFinite(m + s)) bandHi = Math.max(bandHi, m + s);
    });
  }
  return [Math.max(bandLo, lo - 2.5), Math.min(bandHi, hi + 2.5)];
}

/** `plotArea(width, height) -> Area`: margins for the legend (top) and the axes. */
export const plotArea = (width: number, height: number): Area => ({
  x: 52,
  y: 40,
  width: width - 52 - 16,
  height: height - 40 - 34,
});

/** Draws `frame` on `canvas` (sized for the device pixel ratio); returns the plot area. */
export function draw(canvas: HTMLCanvasElement, frame: Frame): Area {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * dpr)) {
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  const g = canvas.getContext('2d');
  if (!g) throw new Error('no 2d canvas context');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.fillStyle = '#fff';
  g.fillRect(0, 0, width, height);
  const a = plotArea(width, height);
  const [y0, y1] = yRange(frame);
  const px = (x: number) => a.x + ((x - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0])) * a.width;
  const py = (y: number) => a.y + a.height - ((y - y0) / (y1 - y0)) * a.height;

  // grid and ticks
  g.strokeStyle = css(COLORS.grid);
  g.lineWidth = 1;
  g.fillStyle = css(COLORS.axis);
  g.font = '11px system-ui, sans-serif';
  g.textAlign = 'center';
  g.textBaseline = 'top';
  for (let x = -0.2; x <= 1.2001; x += 0.2) {
    const X = Math.round(px(x)) + 0.5;
    g.beginPath();
    g.moveTo(X, a.y);
    g.lineTo(X, a.y + a.height);
    g.stroke();
    g.fillText(x.toFixed(1), X, a.y + a.height + 4);
  }
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (let y = Math.ceil(y0 * 2) / 2; y <= y1; y += 0.5) {
    const Y = Math.round(py(y)) + 0.5;
    g.beginPath();
    g.moveTo(a.x, Y);
    g.lineTo(a.x + a.width, Y);
    g.stroke();
    g.fillText(y.toFixed(1), a.x - 6, Y);
  }
  g.textAlign = 'center';
  g.textBaseline = 'bottom';
  g.fillText('x', a.x + a.width / 2, height - 2);

  g.save();
  g.beginPath();
  g.rect(a.x, a.y, a.width, a.height);
  g.clip();
  const { grid, mean, std } = frame;
  if (grid && mean && std) {
    // the band's edge at grid point i: mean ± k std
    const edge = (i: number, k: number) => py((mean[i] ?? NaN) + k * (std[i] ?? NaN));
    const band = (k: number, color: Rgb) => {
      g.fillStyle = css(color);
      g.beginPath();
      grid.forEach((x, i) => {
        if (i === 0) g.moveTo(px(x), edge(i, k));
        else g.lineTo(px(x), edge(i, k));
      });
      for (let i = grid.length - 1; i >= 0; i--) g.lineTo(px(grid[i] ?? NaN), edge(i, -k));
      g.closePath();
      g.fill();
    };
    band(2, COLORS.band2);
    band(1, COLORS.band1);
  }
  g.fillStyle = css(COLORS.points);
  frame.points.x.forEach((x, i) => {
    g.beginPath();
    g.arc(px(x), py(frame.points.y[i] ?? NaN), 1.6, 0, 2 * Math.PI);
    g.fill();
  });
  if (grid && mean) {
    g.strokeStyle = css(COLORS.mean);
    g.lineWidth = 2;
    g.beginPath();
    grid.forEach((x, i) => {
      const Y = py(mean[i] ?? NaN);
      if (i === 0) g.moveTo(px(x), Y);
      else g.lineTo(px(x), Y);
    });
    g.stroke();
  }
  g.restore();
  g.strokeStyle = css(COLORS.axis);
  g.lineWidth = 1;
  g.strokeRect(a.x + 0.5, a.y + 0.5, a.width - 1, a.height - 1);

  // title and legend above the plot area
  g.fillStyle = css(COLORS.axis);
  g.textAlign = 'left';
  g.textBaseline = 'alphabetic';
  g.font = '12px system-ui, sans-serif';
  g.fillText(frame.title, a.x, 14);
  let lx = a.x;
  const item = (label: string, draw: (x: number) => void) => {
    draw(lx);
    g.fillStyle = css(COLORS.axis);
    g.fillText(label, lx + 18, 32);
    lx += 18 + g.measureText(label).width + 18;
  };
  item('mean ± 2 std', (x) => {
    g.fillStyle = css(COLORS.band2);
    g.fillRect(x, 22, 14, 12);
  });
  item('mean ± 1 std', (x) => {
    g.fillStyle = css(COLORS.band1);
    g.fillRect(x, 22, 14, 12);
  });
  item('predictive mean', (x) => {
    g.fillStyle = css(COLORS.mean);
    g.fillRect(x, 27, 14, 2);
  });
  item('training data', (x) => {
    g.fillStyle = css(COLORS.points);
    g.beginPath();
    g.arc(x + 7, 28, 2.5, 0, 2 * Math.PI);
    g.fill();
  });
  return a;
}
