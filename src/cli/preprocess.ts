/**
 * `mue preprocess IMAGE --out FILE.safetensors`: what the model sees of an image — OFA's
 * preprocessing (decode as Pillow does, bicubic resize to S×S, normalise) written as safetensors,
 * to debug an input or compare it with Python's.
 */
import { Command, Option } from 'commander';
import { preprocessImage } from '../image/preprocess.js';
import { writeSafetensors } from '../io/safetensors.js';
import { type CliIo, type ImageFlags, maxPixelsOption, positiveInteger, print, readImageFile } from './common.js';

/** The fine-tuned caption and SNLI-VE checkpoints' input size. */
const DEFAULT_SIZE = 480;

interface PreprocessFlags extends ImageFlags {
  size: number;
  out: string;
}

export function preprocessCommand(io: CliIo): Command {
  return new Command('preprocess')
    .description('write the model input made from an image (as OFA preprocesses it with Pillow) to a safetensors file')
    .argument('<image>', 'a PNG, JPEG, WebP, GIF or BMP file')
    .addOption(
      new Option('--size <pixels>', 'side S of the square model input (256 for tiny and medium pretraining)')
        .argParser(positiveInteger)
        .default(DEFAULT_SIZE),
    )
    .requiredOption('--out <file>', 'the .safetensors file to write (atomically): resized_uint8 [S, S, 3] U8 and pixels [1, 3, S, S] F32')
    .addOption(maxPixelsOption())
    .action(async (image: string, flags: PreprocessFlags) => {
      if (!flags.out.endsWith('.safetensors')) throw new Error(`output ${flags.out}: the name must end in .safetensors`);
      const bytes = await readImageFile(image);
      const { size } = flags;
      const { pixels, resized } = await preprocessImage(bytes, size, image, { maxPixels: flags.maxPixels });
      await writeSafetensors(
        flags.out,
        [
          { name: 'resized_uint8', dtype: 'U8', shape: [size, size, 3], data: resized.data },
          { name: 'pixels', dtype: 'F32', shape: [1, 3, size, size], data: pixels },
        ],
        { source: image, pipeline: 'Pillow 9.4 decode + convert("RGB") -> resize((S, S), BICUBIC) -> /255 -> (x - 0.5) / 0.5, CHW' },
      );
      print(io, `${image} → ${flags.out}: resized_uint8 [${size}, ${size}, 3], pixels [1, 3, ${size}, ${size}]`);
    });
}
