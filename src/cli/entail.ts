/** `mue entail IMAGE HYPOTHESIS`: OFA's SNLI-VE recipe (ofa-arch.md §7.3) through the library pipeline. */
import { Command } from 'commander';
import { ENTAILMENT_ANSWERS } from '../generate/tasks.js';
import {
  type CliIo,
  type ModelFlags,
  backendOption,
  imageSizeOption,
  notice,
  openPipeline,
  print,
  requirePath,
  timingLine,
  weightsOption,
} from './common.js';

interface EntailFlags extends ModelFlags {
  premise?: string;
}

export function entailCommand(io: CliIo): Command {
  return new Command('entail')
    .description('decide whether an image entails, contradicts or is neutral to a hypothesis (answers yes / no / maybe)')
    .argument('<image>', 'a PNG or JPEG file')
    .argument('<hypothesis>', 'the statement to test against the image')
    .option('--premise <text>', "a premise caption, for checkpoints fine-tuned with OFA's --add-caption prompt")
    .addOption(weightsOption())
    .addOption(backendOption())
    .addOption(imageSizeOption())
    .option('--json', 'print the whole result (label, probabilities, prompt ids, timing) as JSON')
    .action(async (image: string, hypothesis: string, flags: EntailFlags) => {
      await requirePath(image, 'image');
      const { pipeline, close } = await openPipeline(io, flags);
      try {
        const result = await pipeline.entail(image, hypothesis, { premise: flags.premise });
        if (flags.json) {
          const { backend, imageSize } = pipeline;
          print(io, JSON.stringify({ image, hypothesis, backend: backend.name, imageSize, ...result }, null, 2));
        } else {
          const odds = ENTAILMENT_ANSWERS.map(({ label, text }) => `${text.trim()} ${result.probabilities[label].toFixed(3)}`);
          print(io, `${result.label} (${odds.join(', ')})`);
          notice(io, timingLine(result.timing, pipeline.backend.name, pipeline.imageSize));
        }
      } finally {
        close();
      }
    });
}
