/**
 * Writes a model folder of seeded random weights shaped like one of OFA's released sizes, for
 * measuring speed where no checkpoint is at hand (OFA-base and -large, the models MuE's paper
 * times, are 0.7–1.9 GB downloads that this machine cannot reach):
 *
 *   npx tsx scripts/make-random-model.ts --size base OUT_DIR [--image-size 480] [--dtype f16|f32]
 *                                        [--decomposed] [--seed 1]
 *
 * The names and shapes are the ones the loader expects of a checkpoint of that size
 * (`expectedOfaTensors`), the token embedding stored once (tied, as the converter stores it).
 * Values are drawn so that activations keep their scale through the depth, as a trained model's
 * do: linear and conv weights uniform with variance 1/fan-in, each ResNet block's last batch norm
 * scaled by 0.2 (so the residual sum grows slowly over ResNet-101's and -152's 30–50 blocks),
 * layer norms and batch norms near identity, embeddings and position tables of spread 0.02.
 * The answers are meaningless; the compute per layer, the share of the ResNet and the exits'
 * similarity checks are those of the real size. `--decomposed` marks MuE's decomposed encoder.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { floatsToHalves } from '../src/half.js';
import { type LazyTensorEntry, writeSafetensors } from '../src/io/safetensors.js';
import { configJsonFromFairseq, OFA_PRESETS, type OfaPresetName } from '../src/models/ofa/config.js';
import { CONFIG_FILE, TIED_EMBEDDING, TIED_EMBEDDING_ALIASES, WEIGHTS_FILE } from '../src/models/ofa/convert.js';
import { expectedOfaTensors } from '../src/models/ofa/weights.js';
import { OFA_VOCAB_SIZE } from '../src/text/bpe.js';
import { createRng, type Rng } from '../test/helpers/random.js';

const EMBEDDING_SPREAD = 0.02;
const RESIDUAL_BRANCH_SCALE = 0.2;

/** n values uniform on [centre − a, centre + a], a = spread·√3 (a uniform's deviation is a/√3). */
function uniform(n: number, rng: Rng, spread: number, centre = 0): Float32Array {
  const a = spread * Math.sqrt(3);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = centre + (2 * rng() - 1) * a;
  return out;
}

/** The values of one tensor, by what its name says it is. */
function drawTensor(name: string, shape: readonly number[], rng: Rng): Float32Array {
  const n = shape.reduce((product, d) => product * d, 1);
  const batchNorm = /\.(bn\d|downsample\.1)\.(weight|bias|running_mean|running_var)$/.exec(name);
  if (batchNorm) {
    const part = batchNorm[2];
    if (part === 'running_var') return uniform(n, rng, 0.05, 1);
    if (part === 'weight') return uniform(n, rng, 0.02, batchNorm[1] === 'bn3' ? RESIDUAL_BRANCH_SCALE : 1);
    return uniform(n, rng, 0.02);
  }
  if (shape.length === 1) {
    // Layer norm gains and NormFormer's head scales near 1; every bias near 0.
    const isGain = name.endsWith('.c_attn') || (/(norm|_ln|layernorm_embedding)[^.]*\.weight$/.test(name));
    return uniform(n, rng, 0.02, isGain ? 1 : 0);
  }
  const isLinearOrConv = /(proj|linear|fc\d|conv\d|downsample\.0)\.weight$/.test(name);
  if (isLinearOrConv) return uniform(n, rng, 1 / Math.sqrt(n / shape[0]!));
  return uniform(n, rng, EMBEDDING_SPREAD);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      size: { type: 'string' },
      'image-size': { type: 'string', default: '480' },
      dtype: { type: 'string', default: 'f16' },
      decomposed: { type: 'boolean', default: false },
      seed: { type: 'string', default: '1' },
    },
  });
  const size = values.size as OfaPresetName | undefined;
  if (size === undefined || !Object.hasOwn(OFA_PRESETS, size) || positionals.length !== 1) {
    throw new Error(`usage: make-random-model.ts --size ${Object.keys(OFA_PRESETS).join('|')} OUT_DIR [--image-size 480] [--dtype f16|f32] [--decomposed] [--seed 1]`);
  }
  if (values.dtype !== 'f16' && values.dtype !== 'f32') throw new Error(`--dtype: f16 or f32, got ${values.dtype}`);
  const imageSize = Number(values['image-size']);
  const seed = Number(values.seed);
  const outDir = resolve(positionals[0]!);

  const config = configJsonFromFairseq({ arch: `ofa_${size}`, patch_image_size: imageSize }, OFA_VOCAB_SIZE, `ofa_${size}`);
  if (values.decomposed) config['mue_decomposed_encoder'] = true;
  const expected = expectedOfaTensors({ ...OFA_PRESETS[size], vocabSize: OFA_VOCAB_SIZE });
  const stored = [...expected].filter(([name]) => !TIED_EMBEDDING_ALIASES.includes(name));
  // Each tensor draws from its own generator, so a tensor's values do not depend on the others'.
  const entries: LazyTensorEntry[] = stored.map(([name, { shape }], index) => ({
    name,
    dtype: values.dtype === 'f16' ? 'F16' : 'F32',
    shape,
    read: async () => {
      const drawn = drawTensor(name, shape, createRng(seed * 1_000_003 + index));
      return values.dtype === 'f16' ? floatsToHalves(drawn) : drawn;
    },
  }));
  await mkdir(outDir, { recursive: true });
  const aliases = Object.fromEntries(TIED_EMBEDDING_ALIASES.map((alias) => [alias, TIED_EMBEDDING]));
  await writeSafetensors(join(outDir, WEIGHTS_FILE), entries, { tied_weight_aliases: JSON.stringify(aliases) });
  await writeFile(join(outDir, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
  const parameters = stored.reduce((sum, [, { shape }]) => sum + shape.reduce((p, d) => p * d, 1), 0);
  process.stdout.write(`wrote ${outDir}: OFA-${size} shape, ${(parameters / 1e6).toFixed(1)}M parameters (${values.dtype}), image size ${imageSize}\n`);
}

await main();
