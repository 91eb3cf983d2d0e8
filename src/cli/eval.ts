/**
 * `mue eval [DATA]`: MuE measured over an evaluation split as the paper measures it — the task's
 * score, the score retained against no exit, layers per stream, layer compute skipped and wall
 * time, for one exit setting, a sweep (with its Pareto front and plot), or the settings of a
 * reference run of the authors' exit rule, compared item by item (src/eval/).
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { readCaptionSplit, readEntailmentSplit, type EvalTask } from '../eval/dataset.js';
import {
  type EvalSetting,
  type EvaluateOptions,
  type SettingResult,
  evaluateCaptions,
  evaluateEntailment,
} from '../eval/evaluate.js';
import { sweepPlotSvg } from '../eval/plot.js';
import { type ReferenceAgreement, compareWithReference, readReference, referenceSettings, referenceSplit } from '../eval/reference.js';
import { DEFAULT_GRID, NO_EXIT_SETTING, givenSetting, sweepSettings } from '../eval/sweep.js';
import { type TableFormat, kindTable, paretoTable, settingsTable } from '../eval/table.js';
import { writeFileAtomically } from '../io/atomic-file.js';
import { type EncoderMode, configFromJson } from '../models/ofa/config.js';
import type { OfaPipeline } from '../pipeline.js';
import {
  type CliIo,
  type ModelFlags,
  PACKAGE_ROOT,
  backendOption,
  duration,
  imageSizeOption,
  notice,
  openPipeline,
  positiveInteger,
  print,
  terminalProgress,
  weightsOption,
} from './common.js';
import { threshold } from './exits.js';

/** The split shipped with the package (data/shapes-eval/README.md). */
export const DEFAULT_SPLIT = join(PACKAGE_ROOT, 'data', 'shapes-eval');

/** The share of items that must agree with a reference in every setting. */
export const REFERENCE_AGREEMENT = 0.98;

interface EvalFlags extends ModelFlags {
  task: EvalTask;
  encoder?: EncoderMode;
  exitImage?: number;
  exitText?: number;
  exitDecoder?: number;
  sweep?: boolean;
  grid: number[];
  reference?: string;
  tolerance: number;
  batch: number;
  limit?: number;
  beam: number;
  markdown?: boolean;
  out?: string;
  plot?: string;
}

function thresholdList(value: string): number[] {
  const values = value.split(',').map((part) => threshold(part));
  if (values.length === 0) throw new InvalidArgumentError('expected thresholds separated by commas');
  return values;
}

export function evalCommand(io: CliIo): Command {
  return new Command('eval')
    .description(
      'evaluate a split with MuE exits: score, score retained, layers per stream, compute skipped and wall time per setting',
    )
    .addArgument(new Argument('[data]', 'a folder with items.jsonl and its images').default(DEFAULT_SPLIT, 'the shipped data/shapes-eval'))
    .addOption(new Option('--task <task>', 'entail (accuracy) or caption (CIDEr-D, BLEU-4)').choices(['entail', 'caption']).default('entail'))
    .addOption(weightsOption())
    .addOption(backendOption())
    .addOption(imageSizeOption())
    .addOption(
      new Option(
        '--encoder <layout>',
        "run the checkpoint's encoder as MuE's decomposed streams or as OFA's joint encoder (default: its config.json)",
      ).choices(['decomposed', 'joint']),
    )
    .addOption(new Option('--exit-image <T>', 'one setting: the image stream threshold (beside no exit)').argParser(threshold))
    .addOption(new Option('--exit-text <T>', 'one setting: the text stream threshold').argParser(threshold))
    .addOption(new Option('--exit-decoder <T>', 'one setting: the decoder threshold').argParser(threshold))
    .option('--sweep', "no exit, the authors' setting for the task and the --grid; prints the Pareto front")
    .addOption(
      new Option('--grid <list>', 'the sweep grid: thresholds tried for each stream, every combination')
        .argParser(thresholdList)
        .default([...DEFAULT_GRID], DEFAULT_GRID.join(',')),
    )
    .option(
      '--reference <file>',
      "entailment: compare item by item with a reference run of the authors' exit rule (its settings; config.json beside it)",
    )
    .addOption(new Option('--tolerance <x>', 'largest similarity difference that agrees with --reference').argParser(Number).default(1e-4))
    .addOption(new Option('--batch <n>', 'items per call').argParser(positiveInteger).default(1))
    .addOption(new Option('--limit <n>', 'the first n items (captions: images)').argParser(positiveInteger))
    .addOption(new Option('--beam <n>', 'captions: beam size').argParser(positiveInteger).default(5))
    .option('--json', 'print the results (without per-item records) as JSON')
    .option('--markdown', 'print the tables as Markdown')
    .option('--out <file>', 'write one JSON line per item and setting: image, hypothesis/label or caption, pred, layers, sims')
    .option('--plot <file>', 'draw score retained against compute skipped and against wall time saved (SVG)')
    .action(async (data: string, flags: EvalFlags) => runEval(io, data, flags));
}

/** The settings the flags ask for (before anything is loaded). */
function settingsOf(flags: EvalFlags): EvalSetting[] {
  const given = (['exitImage', 'exitText', 'exitDecoder'] as const).filter((key) => flags[key] !== undefined);
  if (flags.reference !== undefined) {
    if (flags.sweep || given.length > 0) throw new Error('--reference runs the reference\'s own settings: drop --sweep and --exit-*');
    if (flags.task !== 'entail') throw new Error('--reference compares entailment runs: drop --task caption');
    if (flags.encoder !== undefined) throw new Error("--reference runs the encoder layout of the reference's config.json: drop --encoder");
    return [];
  }
  if (flags.sweep) {
    if (given.length > 0) throw new Error('--sweep runs its own settings: drop --exit-image, --exit-text, --exit-decoder');
    return sweepSettings(flags.task, flags.grid);
  }
  if (given.length === 0) return [NO_EXIT_SETTING];
  const never = 2;
  return [
    NO_EXIT_SETTING,
    givenSetting({ image: flags.exitImage ?? never, text: flags.exitText ?? never, decoder: flags.exitDecoder ?? never }),
  ];
}

async function runEval(io: CliIo, data: string, flags: EvalFlags): Promise<void> {
  let settings = settingsOf(flags);
  if (flags.plot !== undefined && !flags.plot.endsWith('.svg')) throw new Error(`--plot ${flags.plot}: the plot is an SVG file (.svg)`);
  if (!Number.isFinite(flags.tolerance) || flags.tolerance < 0) throw new Error(`--tolerance must be a number ≥ 0, got ${flags.tolerance}`);

  // Everything read and checked before the model loads.
  const reference = flags.reference === undefined ? undefined : await readReference(flags.reference);
  const referenceMode = reference ? await referenceEncoderMode(reference.file) : undefined;
  const entailmentSplit = flags.task === 'entail' ? await readEntailmentSplit(data, { limit: reference ? undefined : flags.limit }) : undefined;
  const captionSplit = flags.task === 'caption' ? await readCaptionSplit(data, { limit: flags.limit }) : undefined;
  const split = reference && entailmentSplit ? referenceSplit(reference, entailmentSplit, flags.limit) : entailmentSplit;
  if (reference) settings = referenceSettings(reference);
  const itemCount = split?.items.length ?? captionSplit!.items.length;

  const { pipeline, close } = await openPipeline(io, flags, referenceMode?.encoderMode ?? flags.encoder);
  try {
    if (referenceMode) checkReferenceConfig(pipeline, referenceMode.config, reference!.file);
    const what = flags.task === 'entail' ? 'entailment' : 'captions';
    notice(
      io,
      `evaluating ${what} on ${data}: ${itemCount} ${flags.task === 'entail' ? 'items' : 'images'} × ${settings.length} ` +
        `setting${settings.length === 1 ? '' : 's'} on ${pipeline.backend.name}, batch ${flags.batch}`,
    );
    const progress = progressBar(io);
    const options: EvaluateOptions = {
      settings,
      batch: flags.batch,
      search: { beamSize: flags.beam },
      onProgress: progress.update,
    };
    const started = performance.now();
    let results: SettingResult[];
    try {
      results = split ? await evaluateEntailment(pipeline, split, options) : await evaluateCaptions(pipeline, captionSplit!, options);
    } finally {
      progress.stop();
    }
    notice(io, `evaluated in ${duration(performance.now() - started)}`);
    const agreements = reference ? results.map((r) => compareWithReference(reference, r.setting.name, r.records, flags.tolerance)) : undefined;

    if (flags.out !== undefined) await writeRecords(flags.out, results);
    if (flags.plot !== undefined) {
      const title = `MuE on ${data.replace(`${PACKAGE_ROOT}`, '')}: ${what}, ${pipeline.backend.name}, batch ${flags.batch}`;
      const svg = await sweepPlotSvg(results, { title });
      await writeFileAtomically(flags.plot, (write) => write(new TextEncoder().encode(svg)));
    }
    const meta = { data, task: flags.task, backend: pipeline.backend.name, imageSize: pipeline.imageSize, batch: flags.batch };
    if (flags.json) {
      const summaries = results.map(({ records: _records, ...summary }) => summary);
      print(io, JSON.stringify({ ...meta, results: summaries, ...(agreements && { reference: agreements }) }, null, 2));
    } else {
      printTables(io, results, agreements, flags.markdown ? 'markdown' : 'text', flags.tolerance);
    }
    if (agreements) {
      const short = agreements.filter((a) => a.agreeing < REFERENCE_AGREEMENT * a.items);
      if (short.length > 0) {
        throw new Error(
          `reference: fewer than ${100 * REFERENCE_AGREEMENT}% of the items agree in ${short.map((a) => a.setting).join(', ')}`,
        );
      }
    }
  } finally {
    close();
  }
}

function printTables(
  io: CliIo,
  results: readonly SettingResult[],
  agreements: readonly ReferenceAgreement[] | undefined,
  format: TableFormat,
  tolerance: number,
): void {
  for (const line of settingsTable(results, format)) print(io, line);
  if (results.length > 2) {
    print(io, '');
    print(io, 'Pareto front (score against compute skipped):');
    for (const line of paretoTable(results, format)) print(io, line);
  }
  if (results[0]?.task === 'entail') {
    print(io, '');
    print(io, 'accuracy per kind:');
    for (const line of kindTable(results, format)) print(io, line);
  }
  if (agreements) {
    print(io, '');
    print(io, `agreement with the reference (same prediction, layers per stream, similarities within ${tolerance}):`);
    for (const a of agreements) {
      const pct = (n: number): string => `${n}/${a.items} (${((100 * n) / a.items).toFixed(1)}%)`;
      print(
        io,
        `  ${a.setting.padEnd(14)} agree ${pct(a.agreeing)}; prediction ${pct(a.samePrediction)}, layers ${pct(a.sameLayers)}, ` +
          `similarities ${pct(a.sameSimilarities)}; max |Δ sim| ${a.maxSimilarityDiff.toExponential(2)}`,
      );
      for (const d of a.disagreements) print(io, `    ${d.image} "${d.hypothesis}": ours ${d.ours}; reference ${d.reference}`);
    }
  }
}

/** The reference's config.json (beside the reference file): the encoder layout it ran. */
async function referenceEncoderMode(file: string): Promise<{ encoderMode: EncoderMode; config: unknown }> {
  const path = join(dirname(file), 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new Error(`reference ${file}: needs the model config it ran beside it, ${path} (${(error as Error).message})`);
  }
  return { encoderMode: configFromJson(json, path).encoderMode, config: json };
}

/** The loaded model must be the reference's (the same config but for what --weights cannot say). */
function checkReferenceConfig(pipeline: OfaPipeline, json: unknown, file: string): void {
  const expected = configFromJson(json, join(dirname(file), 'config.json'));
  const differing = (Object.keys(expected) as (keyof typeof expected)[]).filter(
    (key) => JSON.stringify(expected[key]) !== JSON.stringify(pipeline.config[key]),
  );
  if (differing.length > 0) {
    throw new Error(
      `reference ${file}: --weights ${pipeline.weights} differs from the reference's config.json in ${differing.join(', ')}`,
    );
  }
  const imageSize = typeof json === 'object' && json !== null ? Reflect.get(json, 'image_size') : undefined;
  if (imageSize !== undefined && imageSize !== pipeline.imageSize) {
    throw new Error(`reference ${file}: ran ${imageSize}-pixel images, but this run resizes to ${pipeline.imageSize} (drop --image-size)`);
  }
}

/** One JSON line per item (per setting, with `setting`, when there are several), written atomically. */
async function writeRecords(file: string, results: readonly SettingResult[]): Promise<void> {
  const lines = results.flatMap((r) =>
    r.records.map((record) => JSON.stringify(results.length > 1 ? { setting: r.setting.name, ...record } : record)),
  );
  await writeFileAtomically(file, (write) => write(new TextEncoder().encode(`${lines.join('\n')}\n`)));
}

/** A progress bar on stderr when it is a terminal, else a line at every tenth of the runs. */
function progressBar(io: CliIo): { update: (done: number, total: number) => void; stop: () => void } {
  const bar = terminalProgress(io, 'evaluating [{bar}] {percentage}% | {value}/{total} runs | {eta_formatted} left');
  let tenths = 0;
  return {
    update: (done, total) => {
      if (io.stderr.isTTY) {
        bar.update(done, total);
        return;
      }
      const reached = Math.floor((10 * done) / total);
      if (reached > tenths && done < total) notice(io, `evaluated ${done}/${total} runs (${Math.round((100 * done) / total)}%)`);
      tenths = reached;
    },
    stop: bar.stop,
  };
}
