/**
 * `mue convert CHECKPOINT OUT`: an OFA PyTorch checkpoint to a model folder (weights.safetensors
 * + config.json, src/models/ofa/convert.ts) that `caption --weights OUT` loads as is, or to a
 * single .safetensors file.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import type { WriteProgress } from '../io/safetensors.js';
import {
  type ConversionSummary,
  type OfaWeightDType,
  CONFIG_FILE,
  convertOfaCheckpoint,
  mueThresholdsOf,
} from '../models/ofa/convert.js';
import { type CliIo, duration, print, requirePath, terminalProgress } from './common.js';

/** Names listed before the rest is summed up as "… and N more". */
const LISTED_NAMES = 6;

/** File names that look like a checkpoint, not a model folder: refused as outputs. */
const CHECKPOINT_SUFFIX = /\.(bin|pt|pth|ckpt|pkl)$/i;

/** The checkpoint inside a Hugging Face model folder given as input. */
const HUGGING_FACE_CHECKPOINT = 'pytorch_model.bin';

function listNames(names: readonly string[]): string {
  const shown = names.slice(0, LISTED_NAMES).join(', ');
  return names.length > LISTED_NAMES ? `${shown}, … and ${names.length - LISTED_NAMES} more` : shown;
}

function printSummary(io: CliIo, input: string, output: string, dtype: OfaWeightDType, summary: ConversionSummary, ms: number): void {
  print(io, `converted ${input} (${summary.layout} state dict) → ${output} in ${duration(ms)}`);
  print(io, `  wrote: ${[summary.weights, summary.configFile].filter(Boolean).join(', ')}`);
  print(io, `  tensors written: ${summary.tensorsWritten} (${dtype})`);
  if (summary.layout === 'fairseq') print(io, `  renamed to the port's names: ${summary.renamed}`);
  print(io, `  dropped: ${summary.dropped.length}${summary.dropped.length > 0 ? ` (${listNames(summary.dropped)})` : ''}`);
  const aliases = Object.entries(summary.aliases);
  if (aliases.length === 0) {
    print(io, '  tied weights: none stored once');
  } else {
    for (const [alias, stored] of aliases) print(io, `  tied: ${alias} → ${stored} (stored once)`);
  }
  const { config } = summary;
  if (!config) {
    print(io, `  config: none in the checkpoint; put the model's ${CONFIG_FILE} beside ${summary.weights}`);
    return;
  }
  const json = config.json;
  const shape =
    `${String(json['d_model'])} wide, ${String(json['encoder_layers'])}+${String(json['decoder_layers'])} layers, ` +
    `${String(json['resnet_type'])}, vocabulary ${String(json['vocab_size'])}` +
    (json['patch_image_size'] !== undefined ? `, images ${String(json['patch_image_size'])}×${String(json['patch_image_size'])}` : '') +
    (json['mue_decomposed_encoder'] === true ? ', MuE decomposed encoder' : '');
  const written = summary.configFile ?? `the metadata of ${summary.weights}`;
  print(io, `  config: from ${config.source} (${shape}) → ${written}`);
  const thresholds = mueThresholdsOf(config);
  if (thresholds) {
    const flags = (['image', 'text', 'decoder'] as const)
      .filter((stream) => thresholds[stream] !== undefined)
      .map((stream) => `--exit-${stream} ${thresholds[stream]}`)
      .join(' ');
    print(io, `  MuE thresholds it was run with: ${flags} (give them to caption or entail to exit early)`);
  }
  print(io, `  next: mue caption IMAGE --weights ${output}`);
}

/** A checkpoint file, or a Hugging Face model folder holding pytorch_model.bin. */
async function checkpointPath(input: string): Promise<string> {
  await requirePath(input, 'checkpoint');
  if (!(await stat(input)).isDirectory()) return input;
  const inside = join(input, HUGGING_FACE_CHECKPOINT);
  await requirePath(inside, `checkpoint ${input} is a folder, and`);
  return inside;
}

export function convertCommand(io: CliIo): Command {
  return new Command('convert')
    .description(
      "convert an OFA PyTorch checkpoint (fairseq .pt, or Hugging Face pytorch_model.bin with its config.json) to a model folder: weights.safetensors under the port's names and config.json",
    )
    .argument('<checkpoint>', 'the PyTorch checkpoint (.pt, pytorch_model.bin, or a folder holding pytorch_model.bin)')
    .argument(
      '<out>',
      'the model folder to write (created if missing; weights.safetensors and config.json, written atomically), or a .safetensors file',
    )
    .addOption(
      new Option('--dtype <dtype>', 'weight type: f32 keeps every value, f16 halves the size')
        .choices(['f32', 'f16'])
        .default('f32'),
    )
    .action(async (input: string, output: string, flags: { dtype: OfaWeightDType }) => {
      if (CHECKPOINT_SUFFIX.test(output)) {
        throw new Error(
          `output ${output}: give a folder (weights.safetensors and config.json are written into it) or a file name ending in .safetensors`,
        );
      }
      const checkpoint = await checkpointPath(input);
      const existing = await stat(output).catch(() => undefined);
      if (existing?.isFile() && !output.endsWith('.safetensors')) {
        throw new Error(`output ${output}: a file is there; give a folder or a file name ending in .safetensors`);
      }
      const started = performance.now();
      const progress = terminalProgress(io, 'converting [{bar}] {percentage}% | {value}/{total} MB');
      const megabytes = (bytes: number): number => Number((bytes / 1e6).toFixed(1));
      const onProgress = ({ writtenBytes, totalBytes }: WriteProgress): void =>
        progress.update(megabytes(writtenBytes), megabytes(totalBytes));
      let summary: ConversionSummary;
      try {
        summary = await convertOfaCheckpoint(checkpoint, output, { dtype: flags.dtype, onProgress });
      } finally {
        progress.stop();
      }
      printSummary(io, checkpoint, output, flags.dtype, summary, performance.now() - started);
    });
}
