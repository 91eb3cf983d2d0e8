/**
 * The settings a sweep runs, and the Pareto front of its results.
 *
 * A sweep is the plain model (no exit: the baseline every other setting is compared with), the
 * authors' setting for the task (mue-spec §5: SNLI-VE 0.7 / 0.99 / 0.7, captions 0.99 / 0.7 / 0.9,
 * image / text / decoder) and a grid: every combination of the grid's thresholds over the three
 * streams.
 */
import type { EvalTask } from './dataset.js';
import type { EvalSetting, SettingResult, Thresholds } from './evaluate.js';

/** The thresholds of the authors' evaluation scripts (`img_thres`, `txt_thres`, `decoder_thres`). */
export const AUTHORS_THRESHOLDS: Readonly<Record<EvalTask, Thresholds>> = {
  entail: { image: 0.7, text: 0.99, decoder: 0.7 },
  caption: { image: 0.99, text: 0.7, decoder: 0.9 },
};

/** The default grid: 0.7–0.9 spans exiting after one to three of four layers on OFA-tiny-shaped models. */
export const DEFAULT_GRID: readonly number[] = [0.7, 0.8, 0.9];

export const NO_EXIT_SETTING: EvalSetting = { name: 'no exit', thresholds: null, origin: 'no exit' };

/** `0.7/0.99/0.7` (image/text/decoder). */
export function thresholdsLabel(t: Thresholds): string {
  return `${t.image}/${t.text}/${t.decoder}`;
}

export function givenSetting(thresholds: Thresholds): EvalSetting {
  return { name: thresholdsLabel(thresholds), thresholds, origin: 'given' };
}

/** No exit, the authors' setting, then the grid (image-major). */
export function sweepSettings(task: EvalTask, grid: readonly number[] = DEFAULT_GRID): EvalSetting[] {
  for (const t of grid) {
    if (!Number.isFinite(t)) throw new RangeError(`sweep grid: thresholds must be finite numbers, got ${t}`);
  }
  const values = [...new Set(grid)].sort((a, b) => a - b);
  const authors = AUTHORS_THRESHOLDS[task];
  const settings: EvalSetting[] = [
    NO_EXIT_SETTING,
    { name: `authors ${thresholdsLabel(authors)}`, thresholds: authors, origin: 'authors' },
  ];
  for (const image of values) {
    for (const text of values) {
      for (const decoder of values) {
        const thresholds = { image, text, decoder };
        settings.push({ name: thresholdsLabel(thresholds), thresholds, origin: 'grid' });
      }
    }
  }
  return settings;
}

/**
 * The results no other result beats on both counts — at least as much compute skipped and at
 * least as high a score, one of them strictly — by compute skipped, ascending.
 */
export function paretoFront(results: readonly SettingResult[]): SettingResult[] {
  const dominated = (r: SettingResult): boolean =>
    results.some(
      (o) =>
        o !== r &&
        o.computeSkipped >= r.computeSkipped &&
        o.score >= r.score &&
        (o.computeSkipped > r.computeSkipped || o.score > r.score),
    );
  return results.filter((r) => !dominated(r)).sort((a, b) => a.computeSkipped - b.computeSkipped);
}
