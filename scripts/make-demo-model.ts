/**
 * Writes the demo model: the golden OFA-tiny-shaped random-weight model (weights/ofa-tiny-random)
 * with its token table grown from 1000 ids to OFA's 59,457, so that captioning and entailment
 * (whose prompts and answers are ids of that vocabulary, e.g. " yes" = 4420) run end to end.
 *
 *   npx tsx scripts/make-demo-model.ts [outDir]        (default: weights/ofa-tiny-demo)
 *
 * Every tensor is copied unchanged but `encoder.embed_tokens.weight` (shared with the decoder's
 * input embedding and output projection): its first 1000 rows are kept and the other 58,457 are
 * drawn uniformly from a seeded generator with the same standard deviation as the kept rows.
 * The output is byte-for-byte reproducible (weights/ofa-tiny-demo/README.md gives its sha256).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { floatsToHalves } from '../src/half.js';
import { SafetensorsFile, type TensorEntry, writeSafetensors } from '../src/io/safetensors.js';
import { OFA_VOCAB_SIZE } from '../src/text/bpe.js';
import { createRng } from '../test/helpers/random.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const GOLDEN = join(ROOT, 'weights/ofa-tiny-random');
const DEFAULT_OUT = join(ROOT, 'weights/ofa-tiny-demo');
const TOKEN_TABLE = 'encoder.embed_tokens.weight';
const SEED = 2024;
const IMAGE_SIZE = 256;

/** Standard deviation of the values (population). */
function spread(values: Float32Array): number {
  let sum = 0;
  let squares = 0;
  for (const v of values) {
    sum += v;
    squares += v * v;
  }
  const mean = sum / values.length;
  return Math.sqrt(squares / values.length - mean * mean);
}

interface Manifest {
  config: Record<string, unknown>;
  image_size: number;
  tied_weight_aliases: Record<string, string>;
}

async function main(outDir: string): Promise<void> {
  const manifest = JSON.parse(await readFile(join(GOLDEN, 'manifest.json'), 'utf8')) as Manifest;
  if (manifest.image_size !== IMAGE_SIZE) {
    throw new Error(`${GOLDEN}/manifest.json: image_size ${manifest.image_size}, expected ${IMAGE_SIZE}`);
  }
  await mkdir(outDir, { recursive: true });
  const source = await SafetensorsFile.open(join(GOLDEN, 'weights.safetensors'));
  try {
    const entries: TensorEntry[] = [];
    for (const [name, info] of source.tensors) {
      if (name !== TOKEN_TABLE) {
        entries.push({ name, dtype: info.dtype, shape: info.shape, data: await source.readBytes(name) });
        continue;
      }
      const [rows, width] = info.shape as [number, number];
      if (info.dtype !== 'F16' || rows >= OFA_VOCAB_SIZE) {
        throw new Error(`${TOKEN_TABLE}: expected an F16 table of fewer than ${OFA_VOCAB_SIZE} rows, got ${info.dtype} [${info.shape}]`);
      }
      const table = await source.readFloat32(name);
      const grown = new Float32Array(OFA_VOCAB_SIZE * width);
      grown.set(table);
      const rng = createRng(SEED);
      // Uniform on [−a, a] has standard deviation a/√3.
      const a = spread(table) * Math.sqrt(3);
      for (let i = rows * width; i < grown.length; i++) grown[i] = (2 * rng() - 1) * a;
      entries.push({ name, dtype: 'F16', shape: [OFA_VOCAB_SIZE, width], data: floatsToHalves(grown) });
    }
    if (!entries.some((entry) => entry.name === TOKEN_TABLE)) throw new Error(`${GOLDEN}: no ${TOKEN_TABLE}`);
    await writeSafetensors(join(outDir, 'weights.safetensors'), entries, {
      tied_weight_aliases: JSON.stringify(manifest.tied_weight_aliases),
    });
  } finally {
    await source.close();
  }
  const config = { ...manifest.config, vocab_size: OFA_VOCAB_SIZE, image_size: IMAGE_SIZE };
  await writeFile(join(outDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  process.stdout.write(`wrote ${join(outDir, 'weights.safetensors')} and config.json\n`);
}

const outDir = process.argv[2] === undefined ? DEFAULT_OUT : resolve(process.argv[2]);
await main(outDir);
