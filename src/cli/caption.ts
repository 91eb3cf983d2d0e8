/** `mue caption IMAGE`: OFA's caption recipe (ofa-arch.md §7.1) through the library pipeline. */
import { Command, Option } from 'commander';
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
  positiveInteger,
  print,
  timingLine,
  weightsOption,
} from './common.js';
import { type ExitFlags, exitOptions, exitSettingsFromFlags, exitSummary, exitTrace } from './exits.js';

interface CaptionFlags extends ModelFlags, ExitFlags, ImageFlags {
  beam: number;
}

export function captionCommand(io: CliIo): Command {
  const command = new Command('caption')
    .description('describe an image (beam search as in OFA\'s caption evaluation: max 16 tokens, no repeated 3-grams)')
    .argument('<image>', 'a PNG, JPEG, WebP, GIF or BMP file')
    .addOption(weightsOption())
    .addOption(backendOption())
    .addOption(new Option('--beam <n>', 'beam size').argParser(positiveInteger).default(5))
    .addOption(imageSizeOption())
    .addOption(maxPixelsOption())
    .option('--json', 'print the whole result (text, token ids, scores, timing, exit report) as JSON');
  for (const option of exitOptions("per step, on the authors' schedule: none in the first third of the 16 steps")) {
    command.addOption(option);
  }
  return command.action(async (image: string, flags: CaptionFlags) => {
    const exits = exitSettingsFromFlags(flags);
    const decoded = await decodeImageFile(image, flags);
    const { pipeline, close } = await openPipeline(io, flags);
    try {
      const result = await pipeline.caption(decoded, { beamSize: flags.beam, exits });
      if (flags.trace && result.exitReport) for (const line of exitTrace(result.exitReport)) io.stderr.write(`${line}\n`);
      if (flags.json) {
        const { backend, imageSize } = pipeline;
        print(io, JSON.stringify({ image, backend: backend.name, imageSize, ...result }, null, 2));
      } else {
        print(io, result.text);
        notice(io, timingLine(result.timing, pipeline.backend.name, pipeline.imageSize));
        if (result.exitReport) notice(io, exitSummary(result.exitReport));
      }
    } finally {
      close();
    }
  });
}
