/**
 * A runnable OFA model with the real vocabulary for end-to-end tests of captioning and
 * entailment. The shipped weights/ofa-tiny-random cuts the token table to 1000 ids, which cannot
 * hold the prompts' or answers' ids (e.g. " yes" = 4420); this copies its weights and grows the
 * shared token table to OFA's 59,457 rows: the first 1000 unchanged, the rest seeded random
 * values with the same spread. The output is as meaningless as the original's, and as finite.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { floatsToHalves } from '../../src/half.js';
import { SafetensorsFile, type TensorEntry, writeSafetensors } from '../../src/io/safetensors.js';
import { OFA_VOCAB_SIZE } from '../../src/text/bpe.js';
import { createRng } from './random.js';

export const TINY_RANDOM = fileURLToPath(new URL('../fixtures/ofa-tiny-random', import.meta.url));
const TOKEN_TABLE = 'encoder.embed_tokens.weight';

export interface FullVocabModel {
  /** The model directory: weights.safetensors and config.json. */
  dir: string;
  remove(): Promise<void>;
}

/** Standard deviation of the values. */
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

/**
 * Writes the grown model into a fresh temporary directory. `configExtras` are merged into its
 * config.json (e.g. `{ image_size: 64 }`).
 */
export async function writeFullVocabModel(configExtras: Record<string, unknown> = {}): Promise<FullVocabModel> {
  const dir = await mkdtemp(join(tmpdir(), 'mue-full-vocab-'));
  const manifest = JSON.parse(await readFile(join(TINY_RANDOM, 'manifest.json'), 'utf8')) as {
    config: Record<string, unknown>;
    tied_weight_aliases: Record<string, string>;
  };
  const source = await SafetensorsFile.open(join(TINY_RANDOM, 'weights.safetensors'));
  try {
    const entries: TensorEntry[] = [];
    for (const [name, info] of source.tensors) {
      if (name !== TOKEN_TABLE) {
        entries.push({ name, dtype: info.dtype, shape: info.shape, data: await source.readBytes(name) });
        continue;
      }
      const [rows, width] = info.shape as [number, number];
      const table = await source.readFloat32(name);
      const std = spread(table);
      const grown = new Float32Array(OFA_VOCAB_SIZE * width);
      grown.set(table);
      const rng = createRng(2024);
      // Uniform on [−a, a] has standard deviation a/√3.
      const a = std * Math.sqrt(3);
      for (let i = rows * width; i < grown.length; i++) grown[i] = (2 * rng() - 1) * a;
      entries.push({ name, dtype: 'F16', shape: [OFA_VOCAB_SIZE, width], data: floatsToHalves(grown) });
    }
    await writeSafetensors(join(dir, 'weights.safetensors'), entries, {
      tied_weight_aliases: JSON.stringify(manifest.tied_weight_aliases),
    });
  } finally {
    await source.close();
  }
  const config = { ...manifest.config, vocab_size: OFA_VOCAB_SIZE, ...configExtras };
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(config, null, 1)}\n`);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
