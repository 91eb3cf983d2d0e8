/**
 * The tables `mue eval` prints: one row per setting (score, retained, layers per stream, compute
 * skipped, wall time), the Pareto front, and entailment accuracy per kind — as aligned text for
 * a terminal or as Markdown for a README.
 */
import type { SettingResult } from './evaluate.js';
import { paretoFront } from './sweep.js';

export type TableFormat = 'text' | 'markdown';

interface Column {
  header: string;
  cell: (r: SettingResult) => string;
  /** Numbers align right. */
  numeric?: boolean;
}

const percent = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '—' : `${(100 * x).toFixed(1)}%`);
const fixed = (digits: number) => (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '—' : x.toFixed(digits));
const layers = (r: SettingResult): string => [r.meanLayers.image, r.meanLayers.text, r.meanLayers.decoder].map(fixed(2)).join(' / ');

function columns(results: readonly SettingResult[]): Column[] {
  const caption = results[0]?.task === 'caption';
  const front = new Set(paretoFront(results));
  return [
    { header: 'setting (image/text/decoder)', cell: (r) => r.setting.name },
    caption
      ? { header: 'CIDEr-D', cell: (r) => fixed(3)(r.score), numeric: true }
      : { header: 'accuracy', cell: (r) => percent(r.score), numeric: true },
    { header: 'retained', cell: (r) => percent(r.retained), numeric: true },
    ...(caption
      ? [
          { header: 'BLEU-4', cell: (r: SettingResult) => fixed(3)(r.bleu4), numeric: true },
          { header: 'exact', cell: (r: SettingResult) => percent(r.exactMatch), numeric: true },
        ]
      : []),
    { header: 'layers image / text / decoder', cell: layers, numeric: true },
    { header: 'compute skipped', cell: (r) => percent(r.computeSkipped), numeric: true },
    { header: 'ms/item', cell: (r) => fixed(1)(r.msPerItem), numeric: true },
    { header: 'items/s', cell: (r) => fixed(2)(r.itemsPerSecond), numeric: true },
    { header: 'wall saved', cell: (r) => percent(r.wallSaved), numeric: true },
    { header: 'Pareto', cell: (r) => (front.has(r) ? '★' : '') },
  ];
}

function render(header: readonly string[], rows: readonly string[][], numeric: readonly boolean[], format: TableFormat): string[] {
  if (format === 'markdown') {
    const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
    return [line(header), line(numeric.map((n) => (n ? '---:' : '---'))), ...rows.map(line)];
  }
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, c) => (numeric[c] ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

/** One row per setting, in the order given, the Pareto front starred. */
export function settingsTable(results: readonly SettingResult[], format: TableFormat = 'text'): string[] {
  return rowsTable(columns(results), results, format);
}

/** The Pareto front of score against compute skipped, by compute skipped. */
export function paretoTable(results: readonly SettingResult[], format: TableFormat = 'text'): string[] {
  const cols = columns(results).filter((c) => c.header !== 'Pareto');
  return rowsTable(cols, paretoFront(results), format);
}

function rowsTable(cols: readonly Column[], rows: readonly SettingResult[], format: TableFormat): string[] {
  return render(
    cols.map((c) => c.header),
    rows.map((r) => cols.map((c) => c.cell(r))),
    cols.map((c) => c.numeric === true),
    format,
  );
}

/** Entailment: accuracy per item kind (columns) for each setting (rows). */
export function kindTable(results: readonly SettingResult[], format: TableFormat = 'text'): string[] {
  const kinds = [...new Set(results.flatMap((r) => Object.keys(r.byKind ?? {})))].sort();
  const count = (kind: string): number => results[0]?.byKind?.[kind]?.items ?? 0;
  return render(
    ['setting', ...kinds.map((k) => `${k} (${count(k)})`)],
    results.map((r) => [r.setting.name, ...kinds.map((k) => percent(r.byKind?.[k]?.accuracy))]),
    [false, ...kinds.map(() => true)],
    format,
  );
}
