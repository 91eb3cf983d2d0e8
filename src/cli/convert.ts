/** `mue convert IN OUT.safetensors`: an OFA PyTorch checkpoint to safetensors (src/models/ofa/convert.ts). */
import { Command, Option } from 'commander';
import { type ConversionSummary, type OfaWeightDType, convertOfaCheckpoint } from '../models/ofa/convert.js';
import { type CliIo, duration, print } from './common.js';

/** Names listed before the rest is summed up as "… and N more". */
const LISTED_NAMES = 6;

function listNames(names: readonly string[]): string {
  const shown = names.slice(0, LISTED_NAMES).join(', ');
  return names.length > LISTED_NAMES ? `${shown}, … and ${names.length - LISTED_NAMES} more` : shown;
}

function printSummary(io: CliIo, input: string, output: string, dtype: OfaWeightDType, summary: ConversionSummary, ms: number): void {
  print(io, `converted ${input} (${summary.layout} state dict) → ${output} in ${duration(ms)}`);
  print(io, `  tensors written: ${summary.tensorsWritten} (${dtype})`);
  if (summary.layout === 'fairseq') print(io, `  renamed to the port's names: ${summary.renamed}`);
  print(io, `  dropped: ${summary.dropped.length}${summary.dropped.length > 0 ? ` (${listNames(summary.dropped)})` : ''}`);
  const aliases = Object.entries(summary.aliases);
  if (aliases.length === 0) {
    print(io, '  tied weights: none stored once');
  } else {
    for (const [alias, stored] of aliases) print(io, `  tied: ${alias} → ${stored} (stored once)`);
  }
  print(io, `  to load it, put the model's config.json beside ${output} (the checkpoint's own config is not converted)`);
}

export function convertCommand(io: CliIo): Command {
  return new Command('convert')
    .description('convert an OFA PyTorch checkpoint (fairseq or Hugging Face) to safetensors under the port\'s names')
    .argument('<in>', 'the PyTorch checkpoint (.pt or pytorch_model.bin)')
    .argument('<out>', 'the .safetensors file to write (atomically: nothing is left behind on failure)')
    .addOption(
      new Option('--dtype <dtype>', 'weight type: f32 keeps every value, f16 halves the size')
        .choices(['f32', 'f16'])
        .default('f32'),
    )
    .action(async (input: string, output: string, flags: { dtype: OfaWeightDType }) => {
      if (!output.endsWith('.safetensors')) {
        throw new Error(`output ${output}: the name must end in .safetensors (the model loader recognises files by it)`);
      }
      const started = performance.now();
      const summary = await convertOfaCheckpoint(input, output, { dtype: flags.dtype });
      printSummary(io, input, output, flags.dtype, summary, performance.now() - started);
    });
}
