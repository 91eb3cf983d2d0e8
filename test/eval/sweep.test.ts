/**
 * Sweeps (src/eval/sweep.ts), their tables (table.ts) and plot (plot.ts) on hand-made results: the
 * settings a sweep runs, the Pareto front, the rows as text and Markdown, and the SVG chart with
 * its axes, legend and labels.
 */
import { describe, expect, it } from 'vitest';
import type { EvalSetting, SettingResult } from '../../src/eval/evaluate.js';
import { sweepPlotSpec, sweepPlotSvg } from '../../src/eval/plot.js';
import { AUTHORS_THRESHOLDS, NO_EXIT_SETTING, paretoFront, sweepSettings } from '../../src/eval/sweep.js';
import { kindTable, paretoTable, settingsTable } from '../../src/eval/table.js';

function result(setting: EvalSetting, score: number, computeSkipped: number, msPerItem: number): SettingResult {
  return {
    setting,
    task: 'entail',
    items: 10,
    score,
    byKind: { count: { items: 4, accuracy: score - 0.05 }, exist: { items: 6, accuracy: score + 0.05 } },
    meanLayers: { image: 4 * (1 - computeSkipped), text: 4, decoder: 3.5 },
    layersFraction: 1 - computeSkipped,
    computeSkipped,
    wallMs: 10 * msPerItem,
    msPerItem,
    itemsPerSecond: 1000 / msPerItem,
    retained: score / 0.8,
    wallSaved: 1 - msPerItem / 100,
    records: [],
  };
}

const grid = (name: string): EvalSetting => ({ name, thresholds: { image: 0.8, text: 0.8, decoder: 0.8 }, origin: 'grid' });
const authors: EvalSetting = { name: 'authors 0.7/0.99/0.7', thresholds: AUTHORS_THRESHOLDS.entail, origin: 'authors' };
const RESULTS = [
  result(NO_EXIT_SETTING, 0.8, 0, 100),
  result(authors, 0.79, 0.4, 70),
  result(grid('a'), 0.7, 0.3, 80), // dominated by authors (less skipped, lower score)
  result(grid('b'), 0.6, 0.6, 50),
  result(grid('c'), 0.6, 0.5, 55), // dominated by b (same score, less skipped)
];

describe('sweeps', () => {
  it("runs no exit, the authors' setting and every grid combination", () => {
    const settings = sweepSettings('caption', [0.9, 0.7, 0.9]);
    expect(settings.slice(0, 2)).toEqual([
      { name: 'no exit', thresholds: null, origin: 'no exit' },
      { name: 'authors 0.99/0.7/0.9', thresholds: { image: 0.99, text: 0.7, decoder: 0.9 }, origin: 'authors' },
    ]);
    expect(settings.slice(2).map((s) => s.name)).toEqual([
      '0.7/0.7/0.7',
      '0.7/0.7/0.9',
      '0.7/0.9/0.7',
      '0.7/0.9/0.9',
      '0.9/0.7/0.7',
      '0.9/0.7/0.9',
      '0.9/0.9/0.7',
      '0.9/0.9/0.9',
    ]);
    expect(sweepSettings('entail', [])[1]!.thresholds).toEqual({ image: 0.7, text: 0.99, decoder: 0.7 });
    expect(() => sweepSettings('entail', [Number.NaN])).toThrow(/finite numbers/);
  });

  it('keeps the settings no other beats on both score and compute skipped', () => {
    expect(paretoFront(RESULTS).map((r) => r.setting.name)).toEqual(['no exit', 'authors 0.7/0.99/0.7', 'b']);
  });

  it('prints a row per setting, the front, and accuracy per kind', () => {
    const text = settingsTable(RESULTS);
    expect(text[0]).toMatch(/^setting \(image\/text\/decoder\)\s+accuracy\s+retained\s+layers image \/ text \/ decoder\s+compute skipped\s+ms\/item\s+items\/s\s+wall saved\s+Pareto$/);
    expect(text[2]).toMatch(/^no exit\s+80\.0%\s+100\.0%\s+4\.00 \/ 4\.00 \/ 3\.50\s+0\.0%\s+100\.0\s+10\.00\s+0\.0%\s+★$/);
    expect(text[3]).toMatch(/^authors 0\.7\/0\.99\/0\.7\s+79\.0%\s+98\.8%\s+2\.40 \/ 4\.00 \/ 3\.50\s+40\.0%\s+70\.0\s+14\.29\s+30\.0%\s+★$/);
    expect(text[4]).not.toMatch(/★/);

    const markdown = settingsTable(RESULTS, 'markdown');
    expect(markdown[1]).toBe('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
    expect(markdown[6]).toBe('| c | 60.0% | 75.0% | 2.00 / 4.00 / 3.50 | 50.0% | 55.0 | 18.18 | 45.0% |  |');

    expect(paretoTable(RESULTS).slice(2).map((line) => line.split(/\s{2,}/)[0])).toEqual(['no exit', 'authors 0.7/0.99/0.7', 'b']);
    expect(kindTable(RESULTS, 'markdown').slice(0, 3)).toEqual([
      '| setting | count (4) | exist (6) |',
      '| --- | ---: | ---: |',
      '| no exit | 75.0% | 85.0% |',
    ]);
  });

  it('draws score retained against compute skipped and wall time saved (SVG)', async () => {
    const spec = sweepPlotSpec(RESULTS, { title: 'MuE on shapes-eval' });
    expect(JSON.stringify(spec)).toContain('accuracy retained (vs no exit)');
    const svg = await sweepPlotSvg(RESULTS, { title: 'MuE on shapes-eval: entailment' });
    expect(svg.startsWith('<svg')).toBe(true);
    for (const text of [
      'MuE on shapes-eval: entailment',
      'layer compute skipped (expected time reduction)',
      'wall time saved (measured)',
      'accuracy retained (vs no exit)',
      'authors 0.7/0.99/0.7', // labelled point
      'setting', // the legend's title
      'grid', // a legend entry
      '40%', // a percent tick
    ]) {
      expect(svg, text).toContain(text);
    }
    // Every setting is a point in each of the two panels.
    expect(svg.match(/aria-roledescription="point"/g)).toHaveLength(2 * RESULTS.length);
  });
});
