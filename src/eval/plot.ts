/**
 * The sweep as the paper draws it: score retained against the share of layer compute skipped
 * (the expected time reduction) and against the wall time saved, one point per setting, the
 * Pareto front joined. A Vega-Lite chart rendered to SVG by Vega, headless (no canvas, no DOM).
 */
import type { TopLevelSpec } from 'vega-lite';
import type { SettingResult } from './evaluate.js';
import { paretoFront } from './sweep.js';

export interface PlotOptions {
  /** The chart's title, e.g. `MuE on data/shapes-eval: entailment, webgpu`. */
  title: string;
  /** A second title line. */
  subtitle?: string;
}

const ORIGINS = ['no exit', 'authors', 'grid', 'given'];
const COLOURS = ['#4c4c4c', '#d62728', '#1f77b4', '#2ca02c'];

/** The chart's specification (exported for tests and for other renderers). */
export function sweepPlotSpec(results: readonly SettingResult[], options: PlotOptions): TopLevelSpec {
  if (results.length === 0) throw new Error('sweep plot: no results to draw');
  const caption = results[0]!.task === 'caption';
  const scoreName = caption ? 'CIDEr-D' : 'accuracy';
  // Without a baseline that scored (no no-exit setting, or it scored 0), the raw score is drawn.
  const relative = results.every((r) => r.retained !== undefined);
  const front = new Set(paretoFront(results));
  const values = results.map((r) => ({
    name: r.setting.name,
    origin: r.setting.origin,
    score: relative ? r.retained : r.score,
    computeSkipped: r.computeSkipped,
    wallSaved: r.wallSaved ?? null,
    pareto: front.has(r),
  }));
  const y = {
    field: 'score',
    type: 'quantitative' as const,
    title: relative ? `${scoreName} retained (vs no exit)` : scoreName,
    axis: relative || !caption ? { format: '%' } : {},
    scale: { zero: false, padding: 12 },
  };
  const present = ORIGINS.filter((o) => results.some((r) => r.setting.origin === o));
  const colours = present.map((o) => COLOURS[ORIGINS.indexOf(o)]!);
  const panel = (field: 'computeSkipped' | 'wallSaved', title: string) => {
    const x = { field, type: 'quantitative' as const, title, axis: { format: '%' }, scale: { padding: 12 } };
    return {
      width: 340,
      height: 260,
      layer: [
        {
          transform: [{ filter: 'datum.pareto' }],
          mark: { type: 'line' as const, color: '#999999', strokeDash: [4, 3] },
          encoding: { x, y, order: { field } },
        },
        {
          mark: { type: 'point' as const, filled: true, size: 70, opacity: 0.85 },
          encoding: {
            x,
            y,
            color: { field: 'origin', type: 'nominal' as const, title: 'setting', scale: { domain: present, range: colours } },
            shape: { field: 'origin', type: 'nominal' as const, title: 'setting', scale: { domain: present } },
          },
        },
        {
          transform: [{ filter: "datum.origin != 'grid'" }],
          mark: { type: 'text' as const, align: 'left' as const, dx: 7, dy: -6, fontSize: 10 },
          encoding: { x, y, text: { field: 'name' } },
        },
      ],
    };
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: options.title, subtitle: options.subtitle ?? `dashed: the Pareto front of ${scoreName} against compute skipped` },
    data: { values },
    hconcat: [
      panel('computeSkipped', 'layer compute skipped (expected time reduction)'),
      panel('wallSaved', 'wall time saved (measured)'),
    ],
    config: { font: 'sans-serif', legend: { orient: 'bottom' } },
  };
}

/** The chart as an SVG document. */
export async function sweepPlotSvg(results: readonly SettingResult[], options: PlotOptions): Promise<string> {
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  const { spec } = vegaLite.compile(sweepPlotSpec(results, options));
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
