/**
 * The MuE early-exit flags of `mue caption` and `mue entail`, and how their exit report prints:
 * one summary line (layers run per stream, average decoder layers per token, compute saved, wall
 * time) and, with `--trace`, the similarity after every layer of every stream and decoded token.
 */
import { InvalidArgumentError, Option } from 'commander';
import type { StreamReport } from '../mue/report.js';
import { type ExitSettings, NO_EXIT, type PipelineExitReport } from '../pipeline.js';
import { duration } from './common.js';

/** The flags as commander parses them. */
export interface ExitFlags {
  exitImage?: number;
  exitText?: number;
  exitDecoder?: number;
  /** `false` with `--no-exit`. */
  exit?: boolean;
  exitSite?: 'device' | 'host';
  exitScope?: 'per-sample' | 'batch';
  cacheFill?: 'copy' | 'project';
  trace?: boolean;
}

/** A cosine-similarity threshold flag's value. */
export function threshold(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) {
    throw new InvalidArgumentError('expected a number: a cosine-similarity threshold (above 1: never exit)');
  }
  return n;
}

/** `--exit-image T --exit-text T --exit-decoder T --no-exit --exit-site --exit-scope --cache-fill --trace`. */
export function exitOptions(decoderHelp: string): Option[] {
  return [
    new Option('--exit-image <T>', 'MuE: stop the image stream of the encoder once cos(layer in, layer out) > T').argParser(threshold),
    new Option('--exit-text <T>', 'MuE: stop the text stream of the encoder once cos(layer in, layer out) > T').argParser(threshold),
    new Option('--exit-decoder <T>', `MuE: stop the decoder once cos(layer in, layer out) > T (${decoderHelp})`).argParser(threshold),
    new Option(
      '--no-exit',
      `no exit checks at all (the default without --exit-*: the plain model); a threshold left out of --exit-* is ${NO_EXIT}: checked, never exits`,
    ),
    new Option(
      '--exit-site <site>',
      'where exit decisions are taken: on the device, no read-back per layer (default), or on the host',
    ).choices(['device', 'host']),
    new Option('--exit-scope <scope>', "one decision per beam (default), or one for all beams (the authors')").choices([
      'per-sample',
      'batch',
    ]),
    new Option(
      '--cache-fill <fill>',
      "decoder caches of the layers a beam skipped: copy the exit layer's (default, the authors') or project the exit state",
    ).choices(['copy', 'project']),
    new Option('--trace', 'print each layer\'s similarity and where each stream and decoded token stopped (stderr; implies the checks)'),
  ];
}

/** The request's exits from the flags: `false` for none; an error for flags that contradict. */
export function exitSettingsFromFlags(flags: ExitFlags): ExitSettings | false {
  const thresholds = (['exitImage', 'exitText', 'exitDecoder'] as const).filter((key) => flags[key] !== undefined);
  const modifiers = (['exitSite', 'exitScope', 'cacheFill'] as const).filter((key) => flags[key] !== undefined);
  const flag = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  if (flags.exit === false) {
    const given = [...thresholds, ...modifiers, ...(flags.trace ? ['trace'] : [])];
    if (given.length > 0) throw new Error(`--no-exit cannot be combined with ${given.map(flag).join(', ')}`);
    return false;
  }
  if (thresholds.length === 0 && !flags.trace) {
    if (modifiers.length > 0) {
      throw new Error(
        `${modifiers.map(flag).join(', ')} ${modifiers.length > 1 ? 'apply' : 'applies'} to exits: ` +
          'give a threshold (--exit-image, --exit-text, --exit-decoder) or --trace',
      );
    }
    return false;
  }
  return {
    image: flags.exitImage ?? NO_EXIT,
    text: flags.exitText ?? NO_EXIT,
    decoder: flags.exitDecoder ?? NO_EXIT,
    site: flags.exitSite,
    scope: flags.exitScope,
    cacheFill: flags.cacheFill,
  };
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

/** `3/4` for one sample, `3.4/4` (the mean) for several. */
function layersOf(report: StreamReport): string {
  const run = report.layersRun;
  const value = run.length === 1 ? String(run[0]) : mean(run).toFixed(1);
  return `${value}/${report.layers}`;
}

/**
 * `exits: image 3/4, text 4/4 layers; decoder 2.65/4 layers per token (17 tokens × 5 beams);
 * 31.2% of layer compute saved; wall 512.0 ms`.
 */
export function exitSummary(report: PipelineExitReport): string {
  const streams = report.encoder.filter((s) => s.stream !== 'joint').map((s) => `${s.stream} ${layersOf(s)}`);
  const joint = report.encoder.find((s) => s.stream === 'joint');
  const encoder = `${streams.join(', ')} layers${joint ? ` (joint encoder: ${layersOf(joint)} layers run)` : ''}`;
  let decoder = '';
  const tokens = report.decoder;
  if (tokens.length === 1 && tokens[0]!.tokens > 1) {
    // Entailment: one pass over the prompt.
    decoder = `decoder ${layersOf(tokens[0]!)} layers over the ${tokens[0]!.tokens}-token prompt`;
  } else if (tokens.length > 0) {
    const all = tokens.flatMap((t) => t.layersRun);
    const layers = tokens[0]!.layers;
    const beams = Math.max(...tokens.map((t) => t.layersRun.length));
    decoder =
      `decoder ${mean(all).toFixed(2)}/${layers} layers per token ` +
      `(${tokens.length} steps${beams > 1 ? ` × ${beams} beams` : ''})`;
  }
  const saved = `${(100 * report.computeSaved).toFixed(1)}% of layer compute saved`;
  return `exits: ${[encoder, decoder, saved, `wall ${duration(report.wallMs)}`].filter((p) => p !== '').join('; ')}`;
}

/**
 * One line per sample of a stream: `image  L1 0.571  L2 0.774  L3 0.852 ✓ exit (3/4 layers)`, or
 * `… (4/4 layers)` when it ran them all; a stream of several samples (beams) gets a line per sample.
 */
function traceLines(report: StreamReport, label: string, width: number): string[] {
  const lines: string[] = [];
  const samples = report.layersRun.length;
  for (let b = 0; b < samples; b++) {
    const run = report.layersRun[b]!;
    const cells: string[] = [];
    for (let l = 0; l < run; l++) {
      const row = report.similarities[l];
      const sim = row?.[b % row.length];
      if (sim === undefined) continue;
      cells.push(`L${l + 1} ${sim.toFixed(3)}`);
    }
    // A sample that ran every layer did not exit (whether or not the last similarity was above).
    const exited = run < report.layers;
    const end = exited ? ` ✓ exit (${run}/${report.layers} layers)` : `  (${run}/${report.layers} layers)`;
    const name = samples > 1 ? `  beam ${b + 1}` : label;
    lines.push(`${name.padEnd(width)}  ${cells.join('  ')}${end}`);
  }
  return lines;
}

function formatThreshold(t: number): string {
  return t > 1 ? `${Number(t.toFixed(3))} (never exits)` : t.toFixed(3);
}

/** The per-layer trace of a call (for stderr). */
export function exitTrace(report: PipelineExitReport): string[] {
  const { settings } = report;
  const lines: string[] = [];
  lines.push(
    `exit trace: cos(layer output, layer input) after each layer; thresholds image ${formatThreshold(settings.image)}, ` +
      `text ${formatThreshold(settings.text)}, decoder ${formatThreshold(settings.decoder)}` +
      ` (${report.encoderMode} encoder, decisions on the ${settings.site}, ${settings.scope})`,
  );
  const width = 10;
  for (const stream of report.encoder) {
    if (stream.stream === 'joint') {
      lines.push(`${'joint'.padEnd(width)}  ${layersOf(stream)} layers run (the encoder runs while either modality goes on)`);
      continue;
    }
    lines.push(...traceLines(stream, stream.stream, width));
  }
  report.decoder.forEach((token, i) => {
    const t = report.decoderThresholds[i] ?? settings.decoder;
    const name = token.tokens > 1 ? `decoder (${token.stream}, ${token.tokens} tokens)` : token.stream;
    if (token.layersRun.length > 1) {
      lines.push(`${name} (threshold ${formatThreshold(t)})`);
      lines.push(...traceLines(token, name, width));
    } else {
      lines.push(...traceLines(token, name, width).map((line) => `${line}   [threshold ${formatThreshold(t)}]`));
    }
  });
  return lines;
}
