/**
 * A reference run of MuE's exit rule by the authors' model code (test/fixtures/mue-reference:
 * the decomposed encoder at batch 1, entailment's prompt pass deciding once per layer over all
 * positions), and how an evaluation compares with it item by item: the same prediction, the same
 * layers per stream, and the similarity after every layer within a tolerance.
 *
 *     {"settings": {"none": {"image": 2, "text": 2, "decoder": 2}, "paper-ve": {…}, …},
 *      "items": [{"image", "hypothesis", "label", "kind",
 *                 "runs": {"none": {"pred", "layers": {image, text, decoder},
 *                                   "sims": {image: [...], text: [...], decoder: [...]}, "scores"}, …}}]}
 */
import type { EntailmentLabel } from '../generate/tasks.js';
import type { EntailmentItem, EvalSplit } from './dataset.js';
import type { EvalSetting, ItemRecord, StreamLayers, Thresholds } from './evaluate.js';

const STREAMS = ['image', 'text', 'decoder'] as const;

/** The largest reference file read. */
const MAX_REFERENCE_BYTES = 64 * 1024 * 1024;

export interface ReferenceRun {
  pred: EntailmentLabel;
  layers: StreamLayers;
  sims: { image: number[]; text: number[]; decoder: number[] };
}

export interface ReferenceItem {
  image: string;
  hypothesis: string;
  runs: Record<string, ReferenceRun>;
}

export interface MueReference {
  file: string;
  settings: Record<string, Thresholds>;
  items: ReferenceItem[];
}

/** How one setting's run compares with the reference's. */
export interface ReferenceAgreement {
  setting: string;
  items: number;
  samePrediction: number;
  sameLayers: number;
  /** Items whose every similarity is within the tolerance of the reference's. */
  sameSimilarities: number;
  /** Items with the same prediction, the same layers and the same similarities. */
  agreeing: number;
  /** The largest |Δ| between a similarity and the reference's, over the layers both ran. */
  maxSimilarityDiff: number;
  /** The first few items that do not agree, for the report. */
  disagreements: { image: string; hypothesis: string; ours: string; reference: string }[];
}

/** Reads and checks a reference file. */
export async function readReference(file: string): Promise<MueReference> {
  const { readFile, stat } = await import('node:fs/promises');
  const size = await stat(file).then(
    (s) => s.size,
    (error: unknown) => {
      throw new Error(`reference ${file}: ${error instanceof Error ? error.message : String(error)}`);
    },
  );
  if (size > MAX_REFERENCE_BYTES) throw new Error(`reference ${file}: ${size} bytes, more than the ${MAX_REFERENCE_BYTES}-byte limit`);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`reference ${file}: not valid JSON (${(error as Error).message})`);
  }
  const fail = (what: string): never => {
    throw new Error(`reference ${file}: ${what}`);
  };
  if (!isRecord(json) || !isRecord(json['settings']) || !Array.isArray(json['items'])) {
    return fail('expected {"settings": {...}, "items": [...]}');
  }
  const settings: Record<string, Thresholds> = {};
  for (const [name, t] of Object.entries(json['settings'])) {
    if (!isRecord(t) || !STREAMS.every((s) => typeof t[s] === 'number')) {
      return fail(`setting "${name}" needs numeric image, text and decoder thresholds`);
    }
    settings[name] = { image: t['image'] as number, text: t['text'] as number, decoder: t['decoder'] as number };
  }
  const items = json['items'].map((item: unknown, i): ReferenceItem => {
    if (!isRecord(item) || typeof item['image'] !== 'string' || typeof item['hypothesis'] !== 'string' || !isRecord(item['runs'])) {
      return fail(`item ${i} needs "image", "hypothesis" and "runs"`);
    }
    const runs = item['runs'];
    for (const name of Object.keys(settings)) {
      const run = runs[name];
      const ok =
        isRecord(run) &&
        typeof run['pred'] === 'string' &&
        isRecord(run['layers']) &&
        isRecord(run['sims']) &&
        STREAMS.every((s) => typeof (run['layers'] as Record<string, unknown>)[s] === 'number') &&
        STREAMS.every((s) => numberList((run['sims'] as Record<string, unknown>)[s]));
      if (!ok) fail(`item ${i} (${item['image']}): run "${name}" needs "pred", "layers" and "sims" per stream`);
    }
    return { image: item['image'], hypothesis: item['hypothesis'], runs: runs as Record<string, ReferenceRun> };
  });
  return { file, settings, items };
}

/** The reference's settings, thresholds as given (`none`'s are above 1: checks run, nothing exits). */
export function referenceSettings(reference: MueReference): EvalSetting[] {
  return Object.entries(reference.settings).map(([name, thresholds]) => ({ name, thresholds, origin: 'given' }));
}

/**
 * The split's items the reference ran, in the reference's order (each found by image and
 * hypothesis); `limit` keeps the first ones.
 */
export function referenceSplit(reference: MueReference, split: EvalSplit<EntailmentItem>, limit?: number): EvalSplit<EntailmentItem> {
  const byKey = new Map(split.items.map((item) => [`${item.image}\n${item.hypothesis}`, item]));
  const items = reference.items.slice(0, limit).map((ref) => {
    const item = byKey.get(`${ref.image}\n${ref.hypothesis}`);
    if (!item) {
      throw new Error(`reference ${reference.file}: item ${ref.image} "${ref.hypothesis}" is not in ${split.dir}/items.jsonl`);
    }
    return item;
  });
  return { dir: split.dir, items };
}

/**
 * Compares one setting's records (in the reference's item order) with the reference's runs of
 * that setting.
 */
export function compareWithReference(
  reference: MueReference,
  setting: string,
  records: readonly ItemRecord[],
  tolerance = 1e-4,
): ReferenceAgreement {
  if (!(setting in reference.settings)) throw new Error(`reference ${reference.file}: no setting "${setting}"`);
  const agreement: ReferenceAgreement = {
    setting,
    items: records.length,
    samePrediction: 0,
    sameLayers: 0,
    sameSimilarities: 0,
    agreeing: 0,
    maxSimilarityDiff: 0,
    disagreements: [],
  };
  records.forEach((record, i) => {
    const ref = reference.items[i]!;
    const run = ref.runs[setting]!;
    if (record.image !== ref.image || record.hypothesis !== ref.hypothesis) {
      throw new Error(`compareWithReference: record ${i} is ${record.image} "${record.hypothesis}", the reference's ${ref.image}`);
    }
    const samePrediction = record.pred === run.pred;
    const sameLayers = STREAMS.every((s) => record.layers[s] === run.layers[s]);
    let diff = 0;
    for (const s of STREAMS) {
      const ours = record.sims?.[s] ?? [];
      const theirs = run.sims[s];
      for (let l = 0; l < Math.min(ours.length, theirs.length); l++) diff = Math.max(diff, Math.abs(ours[l]! - theirs[l]!));
    }
    const sameSimilarities = diff <= tolerance;
    agreement.samePrediction += Number(samePrediction);
    agreement.sameLayers += Number(sameLayers);
    agreement.sameSimilarities += Number(sameSimilarities);
    agreement.maxSimilarityDiff = Math.max(agreement.maxSimilarityDiff, diff);
    if (samePrediction && sameLayers && sameSimilarities) {
      agreement.agreeing++;
    } else if (agreement.disagreements.length < 5) {
      const describe = (pred: string, layers: StreamLayers): string =>
        `${pred}, layers ${layers.image}/${layers.text}/${layers.decoder}`;
      agreement.disagreements.push({
        image: ref.image,
        hypothesis: ref.hypothesis,
        ours: `${describe(record.pred, record.layers)}, max |Δ sim| ${diff.toExponential(2)}`,
        reference: describe(run.pred, run.layers),
      });
    }
  });
  return agreement;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function numberList(value: unknown): boolean {
  return Array.isArray(value) && value.every((v) => typeof v === 'number');
}
