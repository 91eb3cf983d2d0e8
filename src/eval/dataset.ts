/**
 * An evaluation split: a folder with `items.jsonl`, one JSON object per line, and the images it
 * names (paths relative to the folder) — the format of data/shapes-eval:
 *
 *     {"image": "0000.png", "hypothesis": "there is a blue square", "label": "entailment",
 *      "kind": "exist", "caption": "a blue square and a green circle and a yellow triangle"}
 *
 * Entailment reads `image`, `hypothesis`, `label` (`entailment`, `contradiction` or `neutral`),
 * and optionally `kind` (accuracy is also reported per kind) and `premise`. Captioning reads
 * `image` and `caption`, one reference or a list of them; items naming the same image are one
 * image whose references are all their captions (COCO style). Other fields are ignored.
 *
 * Node's `fs` and `path` are imported on use, so that the library still loads in browsers.
 */
import type { EntailmentLabel } from '../generate/tasks.js';
import { fileErrorReason } from '../io/byte-source.js';

export type EvalTask = 'entail' | 'caption';

export const EVAL_TASKS: readonly EvalTask[] = ['entail', 'caption'];

const LABELS: readonly EntailmentLabel[] = ['entailment', 'contradiction', 'neutral'];

/** The largest items.jsonl read (a split of a million items is far below it). */
export const MAX_ITEMS_FILE_BYTES = 256 * 1024 * 1024;

export interface EntailmentItem {
  /** The image as items.jsonl names it. */
  image: string;
  /** The image's path. */
  path: string;
  hypothesis: string;
  label: EntailmentLabel;
  /** What the item tests (`exist`, `count`, …); `all` when the split does not say. */
  kind: string;
  premise?: string;
}

export interface CaptionItem {
  image: string;
  path: string;
  /** The reference captions. */
  captions: string[];
}

export interface EvalSplit<Item> {
  /** The split's folder. */
  dir: string;
  items: Item[];
}

export interface ReadSplitOptions {
  /** The first `limit` items (captioning: images). */
  limit?: number;
}

interface Line {
  number: number;
  record: Record<string, unknown>;
}

interface Lines {
  file: string;
  lines: Line[];
  /** An item's image path, resolved against the split's folder. */
  pathOf: (image: string) => string;
}

/** Reads the entailment items of the split in `dir`; every problem names the file and line. */
export async function readEntailmentSplit(dir: string, options: ReadSplitOptions = {}): Promise<EvalSplit<EntailmentItem>> {
  const { file, lines, pathOf } = await readLines(dir);
  const items = lines.map(({ number, record }): EntailmentItem => {
    const where = `${file} line ${number}`;
    const hypothesis = requireString(record, 'hypothesis', where, 'entailment');
    const label = requireString(record, 'label', where, 'entailment');
    if (!LABELS.includes(label as EntailmentLabel)) {
      throw new Error(`${where}: "label" must be one of ${LABELS.join(', ')}, got ${JSON.stringify(label)}`);
    }
    const item: EntailmentItem = {
      ...imageOf(record, pathOf, where),
      hypothesis,
      label: label as EntailmentLabel,
      kind: optionalString(record, 'kind', where) ?? 'all',
    };
    const premise = optionalString(record, 'premise', where);
    if (premise !== undefined) item.premise = premise;
    return item;
  });
  const chosen = limited(items, options.limit);
  await requireImages(chosen, file);
  return { dir, items: chosen };
}

/** Reads the caption items of the split in `dir`, one per image, references gathered. */
export async function readCaptionSplit(dir: string, options: ReadSplitOptions = {}): Promise<EvalSplit<CaptionItem>> {
  const { file, lines, pathOf } = await readLines(dir);
  const byImage = new Map<string, CaptionItem>();
  for (const { number, record } of lines) {
    const where = `${file} line ${number}`;
    const { image, path } = imageOf(record, pathOf, where);
    const value = record['caption'];
    const captions = typeof value === 'string' ? [value] : value;
    if (!Array.isArray(captions) || captions.length === 0 || captions.some((c) => typeof c !== 'string' || c.trim() === '')) {
      throw new Error(
        `${where}: captioning needs "caption": a non-empty string or a non-empty list of them, got ${describe(value)}`,
      );
    }
    const item = byImage.get(path) ?? { image, path, captions: [] };
    item.captions.push(...(captions as string[]));
    byImage.set(path, item);
  }
  const chosen = limited([...byImage.values()], options.limit);
  await requireImages(chosen, file);
  return { dir, items: chosen };
}

async function readLines(dir: string): Promise<Lines> {
  const { readFile, stat } = await import('node:fs/promises');
  const { join, resolve } = await import('node:path');
  const info = await stat(dir).catch((error: unknown) => {
    throw new Error(`evaluation data ${dir}: ${fileErrorReason(error)}`);
  });
  if (!info.isDirectory()) throw new Error(`evaluation data ${dir}: expected a folder with items.jsonl and its images`);
  const file = join(dir, 'items.jsonl');
  const size = await stat(file).then(
    (s) => s.size,
    (error: unknown) => {
      throw new Error(`${file}: ${fileErrorReason(error)} (an evaluation split is a folder with items.jsonl, one JSON object per line)`);
    },
  );
  if (size > MAX_ITEMS_FILE_BYTES) {
    throw new Error(`${file}: ${size} bytes, more than the ${MAX_ITEMS_FILE_BYTES}-byte limit for an items file`);
  }
  const text = await readFile(file, 'utf8');
  const lines: Line[] = [];
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    let record: unknown;
    try {
      record = JSON.parse(raw);
    } catch (error) {
      throw new Error(`${file} line ${i + 1}: not valid JSON (${(error as Error).message})`);
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      throw new Error(`${file} line ${i + 1}: expected a JSON object, got ${describe(record)}`);
    }
    lines.push({ number: i + 1, record: record as Record<string, unknown> });
  });
  if (lines.length === 0) throw new Error(`${file}: no items`);
  return { file, lines, pathOf: (image) => resolve(dir, image) };
}

function imageOf(record: Record<string, unknown>, pathOf: (image: string) => string, where: string): { image: string; path: string } {
  const image = requireString(record, 'image', where, 'every item');
  return { image, path: pathOf(image) };
}

/** `purpose`: who needs the field, as in "entailment needs \"label\"". */
function requireString(record: Record<string, unknown>, key: string, where: string, purpose: string): string {
  const value = record[key];
  if (typeof value !== 'string' || value.trim() === '') {
    throw new Error(`${where}: ${purpose} needs "${key}" (a non-empty string), got ${describe(value)}`);
  }
  return value;
}

function optionalString(record: Record<string, unknown>, key: string, where: string): string | undefined {
  const value = record[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new Error(`${where}: "${key}" must be a string, got ${describe(value)}`);
  return value;
}

function limited<T>(items: T[], limit: number | undefined): T[] {
  if (limit === undefined) return items;
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`);
  return items.slice(0, limit);
}

/** Every image the chosen items name exists and is a file (checked before any model work). */
async function requireImages(items: readonly { image: string; path: string }[], file: string): Promise<void> {
  const { stat } = await import('node:fs/promises');
  const paths = [...new Set(items.map((item) => item.path))];
  await Promise.all(
    paths.map(async (path) => {
      const info = await stat(path).catch((error: unknown) => {
        throw new Error(`${file}: image ${path}: ${fileErrorReason(error)}`);
      });
      if (!info.isFile()) throw new Error(`${file}: image ${path} is not a file`);
    }),
  );
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
