/** `mue caption IMAGE`: OFA's caption recipe (ofa-arch.md §7.1) through the library pipeline. */
import { Command, Option } from 'commander';
import {
  type CliIo,
  type ModelFlags,
  backendOption,
  imageSizeOption,
  notice,
  openPipeline,
  positiveInteger,
  print,
  requirePath,
  timingLine,
  weightsOption,
} from './common.js';

interface CaptionFlags extends ModelFlags {
  beam: number;
}

export function captionCommand(io: CliIo): Command {
  return new Command('caption')
    .description('describe an image (beam search as in OFA\'s caption evaluation: max 16 tokens, no repeated 3-grams)')
    .argument('<image>', 'a PNG or JPEG file')
    .addOption(weightsOption())
    .addOption(backendOption())
    .addOption(new Option('--beam <n>', 'beam size').argParser(positiveInteger).default(5))
    .addOption(imageSizeOption())
    .option('--json', 'print the whole result (text, token ids, scores, timing) as JSON')
    .action(async (image: string, flags: CaptionFlags) => {
      await requirePath(image, 'image');
      const { pipeline, close } = await openPipeline(io, flags);
      try {
        const result = await pipeline.caption(image, { beamSize: flags.beam });
        if (flags.json) {
          const { backend, imageSize } = pipeline;
          print(io, JSON.stringify({ image, backend: backend.name, imageSize, ...result }, null, 2));
        } else {
          print(io, result.text);
          notice(io, timingLine(result.timing, pipeline.backend.name, pipeline.imageSize));
        }
      } finally {
        close();
      }
    });
}
