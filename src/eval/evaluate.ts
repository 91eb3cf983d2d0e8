/**
 * MuE measured as the paper measures it: a split run through a pipeline under several exit
 * settings, each scored on the task (accuracy or CIDEr-D), with the layers each stream ran, the
 * share of layer compute skipped (the paper's expected time reduction) and the wall time.
 *
 * Settings run item-major: each chunk of `batch` items (one call of the pipeline's batch API, in
 * which each sample decides alone) goes through every setting before the next chunk, so that a
 * shared machine's drift touches every setting alike and the wall-time ratios are paired; the
 * order of the settings rotates from chunk to chunk. Each chunk is first run untimed once per kind
 * of run (plain, with checks): without that, whichever setting ran an item first paid for it (in a
 * 30-item sweep the plain run, always first, was 12% slower than a setting that skipped nothing).
 *
 * Compute skipped is `exitReport`'s (src/mue/report.ts) over all the split's stream reports at
 * once: each stream's layers weighted by the tokens they process (image patches, prompt tokens,
 * decoded tokens × beams), summed over the items.
 */
import type { EntailmentLabel } from '../generate/tasks.js';
import { type StreamReport, exitReport } from '../mue/report.js';
import type {
  CaptionOptions,
  CaptionResult,
  EntailmentResult,
  ExitSettings,
  OfaPipeline,
  PipelineExitReport,
} from '../pipeline.js';
import { corpusBleu } from './bleu.js';
import { ciderD } from './cider.js';
import type { CaptionItem, EntailmentItem, EvalSplit, EvalTask } from './dataset.js';
import { ptbTokenize } from './ptb.js';

/** Cosine-similarity thresholds per stream (above 1: never exits). */
export interface Thresholds {
  image: number;
  text: number;
  decoder: number;
}

/** Where a setting comes from: what the plot colours it by. */
export type SettingOrigin = 'no exit' | 'authors' | 'grid' | 'given';

export interface EvalSetting {
  name: string;
  /** `null`: the plain model, without exit checks. */
  thresholds: Thresholds | null;
  origin: SettingOrigin;
}

export interface StreamLayers {
  image: number;
  text: number;
  /** Entailment: the prompt pass's layers. Captions: the mean over decoded tokens and beams. */
  decoder: number;
}

/** One item under one setting (`--out`). */
export interface ItemRecord {
  image: string;
  hypothesis?: string;
  label?: EntailmentLabel;
  /** The reference caption (a list when the split has several for the image). */
  caption?: string | string[];
  /** The label or the caption the model gave. */
  pred: string;
  layers: StreamLayers;
  /**
   * With exit checks: cos(h_i, h_{i−1}) after each layer run, per encoder stream and (entailment)
   * for the decoder's prompt pass.
   */
  sims?: { image: number[]; text: number[]; decoder?: number[] };
}

export interface KindAccuracy {
  items: number;
  accuracy: number;
}

export interface SettingResult {
  setting: EvalSetting;
  task: EvalTask;
  items: number;
  /** The headline score: accuracy (entailment) or CIDEr-D (captions). */
  score: number;
  /** Entailment: accuracy per item `kind`. */
  byKind?: Record<string, KindAccuracy>;
  /** Captions: pycocoevalcap's BLEU-4 and the share of captions equal to a reference (PTB tokens). */
  bleu4?: number;
  exactMatch?: number;
  meanLayers: StreamLayers;
  /** Token-weighted layer compute run over that of every layer (1 without exits). */
  layersFraction: number;
  computeSkipped: number;
  wallMs: number;
  msPerItem: number;
  itemsPerSecond: number;
  /**
   * `score` over the no-exit setting's (the plain model, else a setting whose thresholds are all
   * above 1), when the run has one and it scored above 0.
   */
  retained?: number;
  /** 1 − ms per item over the no-exit setting's. */
  wallSaved?: number;
  records: ItemRecord[];
}

export interface EvaluateOptions {
  settings: readonly EvalSetting[];
  /** Items per pipeline call (default 1). */
  batch?: number;
  /** Captions: beam search options (default OFA's: beam 5, max length 16). */
  search?: Omit<CaptionOptions, 'exits'>;
  /** After each call: items run so far over items × settings. */
  onProgress?: (done: number, total: number) => void;
  /** Run each chunk untimed once per kind of run (plain, with checks) before timing it (default true). */
  warmup?: boolean;
}

/** What one task needs from the pipeline and how its items become records. */
interface TaskRun<Item, Output extends { exitReport?: PipelineExitReport }> {
  task: EvalTask;
  /** One pipeline call for a chunk of items (the batch API; each sample decides alone). */
  call(pipeline: OfaPipeline, items: readonly Item[], exits: ExitSettings | false): Promise<Output[]>;
  record(item: Item, output: Output, layers: StreamLayers, report: PipelineExitReport | undefined): ItemRecord;
  score(items: readonly Item[], records: readonly ItemRecord[]): Pick<SettingResult, 'score' | 'byKind' | 'bleu4' | 'exactMatch'>;
}

/** Entailment over a split: accuracy, overall and per kind. */
export function evaluateEntailment(
  pipeline: OfaPipeline,
  split: EvalSplit<EntailmentItem>,
  options: EvaluateOptions,
): Promise<SettingResult[]> {
  const run: TaskRun<EntailmentItem, EntailmentResult> = {
    task: 'entail',
    call: (p, items, exits) =>
      p.entailBatch(
        items.map((item) => ({ image: item.path, hypothesis: item.hypothesis, premise: item.premise })),
        { exits },
      ),
    record: (item, output, layers, report) => ({
      image: item.image,
      hypothesis: item.hypothesis,
      label: item.label,
      pred: output.label,
      layers,
      ...(report && { sims: { ...encoderSimilarities(report), decoder: firstSample(report.decoder[0]!) } }),
    }),
    score: (items, records) => {
      const correct = records.map((r, i) => r.pred === items[i]!.label);
      const byKind: Record<string, KindAccuracy> = {};
      for (const kind of [...new Set(items.map((item) => item.kind))].sort()) {
        const hits = correct.filter((_, i) => items[i]!.kind === kind);
        byKind[kind] = { items: hits.length, accuracy: share(hits) };
      }
      return { score: share(correct), byKind };
    },
  };
  return evaluateSplit(pipeline, split.items, run, options);
}

/** Captioning over a split: CIDEr-D (the score), BLEU-4 and exact match, as pycocoevalcap. */
export function evaluateCaptions(
  pipeline: OfaPipeline,
  split: EvalSplit<CaptionItem>,
  options: EvaluateOptions,
): Promise<SettingResult[]> {
  const run: TaskRun<CaptionItem, CaptionResult> = {
    task: 'caption',
    call: (p, items, exits) =>
      p.captionBatch(
        items.map((item) => item.path),
        { ...options.search, exits },
      ),
    record: (item, output, layers, report) => ({
      image: item.image,
      caption: item.captions.length === 1 ? item.captions[0]! : item.captions,
      pred: output.text,
      layers,
      ...(report && { sims: encoderSimilarities(report) }),
    }),
    score: (items, records) => {
      const candidates = records.map((r) => ptbTokenize(r.pred));
      const references = items.map((item) => item.captions.map(ptbTokenize));
      const exact = candidates.map((c, i) => references[i]!.some((ref) => ref.join(' ') === c.join(' ')));
      return {
        score: ciderD(candidates, references).score,
        bleu4: corpusBleu(candidates, references)[3]!,
        exactMatch: share(exact),
      };
    },
  };
  return evaluateSplit(pipeline, split.items, run, options);
}

interface Tally {
  records: ItemRecord[];
  encoder: StreamReport[];
  decoder: StreamReport[];
  wallMs: number;
}

async function evaluateSplit<Item, Output extends { exitReport?: PipelineExitReport }>(
  pipeline: OfaPipeline,
  items: readonly Item[],
  run: TaskRun<Item, Output>,
  options: EvaluateOptions,
): Promise<SettingResult[]> {
  const { settings } = options;
  const batch = options.batch ?? 1;
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`batch must be a positive integer, got ${batch}`);
  if (settings.length === 0) throw new Error('evaluate: no settings to run');
  if (items.length === 0) throw new Error('evaluate: the split has no items');
  const fullLayers: StreamLayers = {
    image: pipeline.config.encoderLayers,
    text: pipeline.config.encoderLayers,
    decoder: pipeline.config.decoderLayers,
  };
  const exitsOf = (setting: EvalSetting): ExitSettings | false => setting.thresholds ?? false;

  const chunks: Item[][] = [];
  for (let i = 0; i < items.length; i += batch) chunks.push(items.slice(i, i + batch));

  // One setting of each kind of run (plain, with checks) for the warm-up calls.
  const kinds = [...new Map(settings.map((s) => [s.thresholds === null, s])).values()];

  const tallies: Tally[] = settings.map(() => ({ records: [], encoder: [], decoder: [], wallMs: 0 }));
  const total = items.length * settings.length;
  let done = 0;
  for (const [c, chunk] of chunks.entries()) {
    // What new inputs cost on their first run (kernels for a new prompt length or batch shape)
    // is paid untimed, once per kind of run, before any setting is timed on them.
    if (options.warmup ?? true) for (const setting of kinds) await run.call(pipeline, chunk, exitsOf(setting));
    for (let k = 0; k < settings.length; k++) {
      // Each chunk starts with another setting, so that order effects fall on every setting alike.
      const s = (c + k) % settings.length;
      const setting = settings[s]!;
      const tally = tallies[s]!;
      const start = performance.now();
      const outputs = await run.call(pipeline, chunk, exitsOf(setting));
      tally.wallMs += performance.now() - start;
      chunk.forEach((item, i) => {
        const output = outputs[i]!;
        const report = output.exitReport;
        if (report) {
          tally.encoder.push(...report.encoder);
          tally.decoder.push(...report.decoder);
        }
        tally.records.push(run.record(item, output, report ? streamLayers(report) : fullLayers, report));
      });
      done += chunk.length;
      options.onProgress?.(done, total);
    }
  }

  const results = settings.map((setting, s): SettingResult => {
    const { records, encoder, decoder, wallMs } = tallies[s]!;
    const layersFraction = setting.thresholds === null ? 1 : exitReport(encoder, decoder, wallMs).layersFraction;
    const msPerItem = wallMs / items.length;
    return {
      setting,
      task: run.task,
      items: items.length,
      ...run.score(items, records),
      meanLayers: {
        image: mean(records.map((r) => r.layers.image)),
        text: mean(records.map((r) => r.layers.text)),
        decoder: mean(records.map((r) => r.layers.decoder)),
      },
      layersFraction,
      computeSkipped: 1 - layersFraction,
      wallMs,
      msPerItem,
      itemsPerSecond: 1000 / msPerItem,
      records,
    };
  });
  // The plain model, else a setting that checks but never exits (thresholds above 1).
  const baseline =
    results.find((r) => r.setting.thresholds === null) ??
    results.find((r) => Object.values(r.setting.thresholds!).every((t) => t > 1));
  if (baseline) {
    for (const r of results) {
      if (baseline.score > 0) r.retained = r.score / baseline.score;
      r.wallSaved = 1 - r.msPerItem / baseline.msPerItem;
    }
  }
  return results;
}

/** The layers each stream ran in one call (batch 1: the first sample's). */
function streamLayers(report: PipelineExitReport): StreamLayers {
  const stream = (name: string): number => report.encoder.find((s) => s.stream === name)?.layersRun[0] ?? NaN;
  return {
    image: stream('image'),
    text: stream('text'),
    decoder: mean(report.decoder.flatMap((s) => s.layersRun)),
  };
}

function encoderSimilarities(report: PipelineExitReport): { image: number[]; text: number[] } {
  const of = (name: string): number[] => {
    const stream = report.encoder.find((s) => s.stream === name);
    return stream ? firstSample(stream) : [];
  };
  return { image: of('image'), text: of('text') };
}

/** A stream's similarity after each layer it ran, for its first sample. */
function firstSample(stream: StreamReport): number[] {
  return stream.similarities.slice(0, stream.layersRun[0]).map((row) => row[0]!);
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

function share(flags: readonly boolean[]): number {
  return flags.length === 0 ? NaN : flags.filter(Boolean).length / flags.length;
}
