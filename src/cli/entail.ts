/** `mue entail IMAGE HYPOTHESIS`: OFA's SNLI-VE recipe (ofa-arch.md §7.3) through the library pipeline. */
import { Command } from 'commander';
import { ENTAILMENT_ANSWERS, type EntailmentTruncation } from '../generate/tasks.js';
import {
  type CliIo,
  type ImageFlags,
  type ModelFlags,
  backendOption,
  decodeImageFile,
  imageSizeOption,
  maxPixelsOption,
  notice,
  openPipeline,
  print,
  timingLine,
  weightsOption,
} from './common.js';
import { type ExitFlags, exitOptions, exitSettingsFromFlags, exitSummary, exitTrace } from './exits.js';

interface EntailFlags extends ModelFlags, ExitFlags, ImageFlags {
  premise?: string;
}

export function entailCommand(io: CliIo): Command {
  const command = new Command('entail')
    .description('decide whether an image entails, contradicts or is neutral to a hypothesis (answers yes / no / maybe)')
    .argument('<image>', 'a PNG, JPEG, WebP, GIF or BMP file')
    .argument('<hypothesis>', 'the statement to test against the image')
    .option('--premise <text>', "a premise caption, for checkpoints fine-tuned with OFA's --add-caption prompt")
    .addOption(weightsOption())
    .addOption(backendOption())
    .addOption(imageSizeOption())
    .addOption(maxPixelsOption())
    .option('--json', 'print the whole result (label, probabilities, prompt ids, timing, exit report) as JSON');
  for (const option of exitOptions('one decision per layer over the whole prompt pass, as in the authors\' SNLI-VE evaluation')) {
    command.addOption(option);
  }
  return command.action(async (image: string, hypothesis: string, flags: EntailFlags) => {
    const exits = exitSettingsFromFlags(flags);
    const decoded = await decodeImageFile(image, flags);
    const { pipeline, close } = await openPipeline(io, flags);
    try {
      const result = await pipeline.entail(decoded, hypothesis, { premise: flags.premise, exits });
      if (result.truncated.length > 0) notice(io, truncationNotice(result.truncated));
      if (flags.trace && result.exitReport) for (const line of exitTrace(result.exitReport)) io.stderr.write(`${line}\n`);
      if (flags.json) {
        const { backend, imageSize } = pipeline;
        print(io, JSON.stringify({ image, hypothesis, backend: backend.name, imageSize, ...result }, null, 2));
      } else {
        const odds = ENTAILMENT_ANSWERS.map(({ label, text }) => `${text.trim()} ${result.probabilities[label].toFixed(3)}`);
        print(io, `${result.label} (${odds.join(', ')})`);
        notice(io, timingLine(result.timing, pipeline.backend.name, pipeline.imageSize));
        if (result.exitReport) notice(io, exitSummary(result.exitReport));
      }
    } finally {
      close();
    }
  });
}

/** One line: what OFA's word limit dropped from the hypothesis or premise. */
export function truncationNotice(cuts: readonly EntailmentTruncation[]): string {
  const counts = cuts.map(({ text, words }) => `the ${text} has ${words} words`).join(' and ');
  const kept = cuts[0]!.keptWords;
  return `${counts}; only the first ${kept} of ${cuts.length === 1 ? 'them' : 'each'} are read, as in OFA's SNLI-VE evaluation (max_src_length)`;
}
