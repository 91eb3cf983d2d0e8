import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { floatToHalf } from '../../../src/half.js';
import { SafetensorsFile } from '../../../src/io/safetensors.js';
import { loadTorchCheckpoint } from '../../../src/io/torch-checkpoint.js';
import {
  TIED_EMBEDDING as TIED,
  convertOfaCheckpoint,
  fairseqToPortName,
  isDroppedBuffer,
  readStateDict,
} from '../../../src/models/ofa/convert.js';
import { configFromJson } from '../../../src/models/ofa/config.js';
import { OfaPipeline } from '../../../src/pipeline.js';
import {
  type StorageSpec,
  type TensorSpec,
  PickleWriter,
  legacyCheckpoint,
} from '../../helpers/torch-checkpoint.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SMALL_CHECKPOINT = join(REPO_ROOT, 'test/fixtures/checkpoints/small.pt');
/** CI clones the repository with the project's shared data beside it; elsewhere these tests skip. */
const GOLDEN = join(REPO_ROOT, '../shared/golden');
const GOLDEN_CHECKPOINT = join(GOLDEN, 'checkpoints/ofa-tiny-random.bin');
const GOLDEN_WEIGHTS = join(GOLDEN, 'ofa-tiny-random/weights.safetensors');
const GOLDEN_MANIFEST = join(GOLDEN, 'ofa-tiny-random/manifest.json');
const hasGolden = existsSync(GOLDEN_CHECKPOINT) && existsSync(GOLDEN_WEIGHTS);

let workDir: string;
beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mue-convert-'));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('fairseqToPortName', () => {
  it('applies the renames of ofa-arch.md §6.6', () => {
    const renames: [string, string][] = [
      ['decoder.layers.3.self_attn_ln.weight', 'decoder.layers.3.self_attn_mid_layer_norm.weight'],
      ['decoder.layers.0.cross_attn_ln.bias', 'decoder.layers.0.cross_attn_mid_layer_norm.bias'],
      ['encoder.layers.11.attn_ln.weight', 'encoder.layers.11.self_attn_mid_layer_norm.weight'],
      ['encoder.layers.2.ffn_layernorm.bias', 'encoder.layers.2.ffn_layer_norm.bias'],
      ['decoder.layers.5.ffn_layernorm.weight', 'decoder.layers.5.ffn_layer_norm.weight'],
      ['decoder.layers.1.encoder_attn.k_proj.weight', 'decoder.layers.1.cross_attn.k_proj.weight'],
      ['decoder.layers.1.encoder_attn.c_attn', 'decoder.layers.1.cross_attn.c_attn'],
      ['decoder.layers.1.encoder_attn_layer_norm.weight', 'decoder.layers.1.cross_attn_layer_norm.weight'],
    ];
    expect(renames.map(([fairseq]) => fairseqToPortName(fairseq))).toEqual(renames.map(([, port]) => port));
  });

  it('keeps every name the two implementations share', () => {
    const shared = [
      'encoder.layers.0.self_attn.k_proj.weight',
      'encoder.layers.0.self_attn_layer_norm.weight',
      'encoder.layers.0.self_attn_mid_layer_norm.weight',
      'decoder.layers.0.cross_attn_layer_norm.bias',
      'encoder.embed_images.layer3.5.bn2.running_var',
      'encoder.token_rel_pos_table_list.0.weight',
      'encoder.pos_q_linear.weight',
      'decoder.self_pos_q_linear.bias',
      'decoder.layernorm_embedding.weight',
      'encoder.embed_tokens.weight',
      'decoder.output_projection.weight',
    ];
    expect(shared.map(fairseqToPortName)).toEqual(shared);
  });
});

describe('isDroppedBuffer', () => {
  it('drops integer buffers, version markers and _float_tensor, and nothing else', () => {
    const dropped = [
      'encoder.token_rp_bucket',
      'decoder.image_rp_bucket',
      'decoder.image_position_idx',
      'encoder.embed_images.layer1.0.downsample.1.num_batches_tracked',
      'encoder.version',
      'decoder.version',
      'decoder.embed_positions._float_tensor',
    ];
    const kept = [
      'encoder.embed_images.bn1.running_mean',
      'encoder.image_rel_pos_table_list.0.weight',
      'encoder.embed_image_positions.weight',
      'decoder.layers.0.self_attn.c_attn',
    ];
    expect(dropped.filter(isDroppedBuffer)).toEqual(dropped);
    expect(kept.filter(isDroppedBuffer)).toEqual([]);
  });
});

const bfloat16 = (value: number): number => new Uint16Array(new Float32Array([value]).buffer)[1]!;

function fairseqTensors(projection: Float32Array): TensorSpec[] {
  const embeddingValues = new Float32Array([1.5, -2, 0.25, 3, 7, -0.125]);
  const embedding: StorageSpec = { key: 'emb', type: 'FloatStorage', data: embeddingValues };
  return [
    { name: 'encoder.embed_tokens.weight', storage: embedding, shape: [3, 2] },
    { name: 'decoder.embed_tokens.weight', storage: embedding, shape: [3, 2] },
    {
      name: 'decoder.output_projection.weight',
      storage: { key: 'proj', type: 'FloatStorage', data: projection },
      shape: [3, 2],
    },
    { name: 'decoder.layers.0.ffn_layernorm.bias', storage: embedding, shape: [2], offset: 4 },
    {
      name: 'encoder.layers.0.attn_ln.weight',
      storage: { key: 'ln', type: 'BFloat16Storage', data: new Uint16Array([bfloat16(1), bfloat16(-2.5)]) },
      shape: [2],
    },
    {
      name: 'decoder.layers.0.encoder_attn.k_proj.weight',
      storage: { key: 'k', type: 'HalfStorage', data: new Uint16Array([0.5, -1, 2, 0.75].map(floatToHalf)) },
      shape: [2, 2],
    },
    {
      // A transposed view of float64 values.
      name: 'encoder.layers.0.fc1.weight',
      storage: { key: 'fc', type: 'DoubleStorage', data: new Float64Array([0, 0.5, 1, 1.5, 2, 2.5]) },
      shape: [3, 2],
      stride: [1, 3],
    },
    {
      name: 'encoder.token_rp_bucket',
      storage: { key: 'rp', type: 'LongStorage', data: new BigInt64Array(4) },
      shape: [2, 2],
    },
    {
      name: 'encoder.embed_images.bn1.num_batches_tracked',
      storage: { key: 'n', type: 'LongStorage', data: new BigInt64Array([7n]) },
      shape: [],
    },
    { name: 'encoder.version', storage: { key: 'v', type: 'FloatStorage', data: new Float32Array([3]) }, shape: [1] },
  ];
}

const EXPECTED_VALUES: Record<string, number[]> = {
  'encoder.embed_tokens.weight': [1.5, -2, 0.25, 3, 7, -0.125],
  'decoder.layers.0.ffn_layer_norm.bias': [7, -0.125],
  'encoder.layers.0.self_attn_mid_layer_norm.weight': [1, -2.5],
  'decoder.layers.0.cross_attn.k_proj.weight': [0.5, -1, 2, 0.75],
  'encoder.layers.0.fc1.weight': [0, 1.5, 0.5, 2, 1, 2.5],
};

async function writeCheckpoint(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(workDir, name);
  await writeFile(path, bytes);
  return path;
}

describe('convertOfaCheckpoint on a fairseq checkpoint', () => {
  it.each(['f32', 'f16'] as const)('renames, drops buffers, ties the embedding and converts to %s', async (dtype) => {
    const tied = new Float32Array([1.5, -2, 0.25, 3, 7, -0.125]);
    const input = await writeCheckpoint(`fairseq-${dtype}.pt`, legacyCheckpoint(fairseqTensors(tied), 'fairseq'));
    const output = join(workDir, `fairseq.${dtype}.safetensors`);
    const summary = await convertOfaCheckpoint(input, output, { dtype });

    expect(summary).toMatchObject({
      layout: 'fairseq',
      weights: output,
      configFile: undefined,
      config: undefined,
      tensorsWritten: 5,
      dropped: ['encoder.token_rp_bucket', 'encoder.embed_images.bn1.num_batches_tracked', 'encoder.version'],
      // decoder.embed_tokens shares the storage; output_projection is an equal copy.
      aliases: {
        'decoder.embed_tokens.weight': 'encoder.embed_tokens.weight',
        'decoder.output_projection.weight': 'encoder.embed_tokens.weight',
      },
      renamed: 3,
    });
    const file = await SafetensorsFile.open(output);
    try {
      expect(JSON.parse(file.metadata['tied_weight_aliases']!)).toEqual(summary.aliases);
      expect([...file.tensors.keys()].sort()).toEqual(Object.keys(EXPECTED_VALUES).sort());
      for (const [name, values] of Object.entries(EXPECTED_VALUES)) {
        expect(file.info(name).dtype).toBe(dtype === 'f16' ? 'F16' : 'F32');
        expect([...(await file.readFloat32(name))], name).toEqual(values);
      }
      expect(file.info('encoder.layers.0.fc1.weight').shape).toEqual([3, 2]);
    } finally {
      await file.close();
    }
  });

  it('stores an output projection that differs from the embedding under its own name', async () => {
    const untied = new Float32Array([1.5, -2, 0.25, 3, 7, 9]);
    const input = await writeCheckpoint('untied.pt', legacyCheckpoint(fairseqTensors(untied), 'fairseq'));
    const summary = await convertOfaCheckpoint(input, join(workDir, 'untied.safetensors'), { dtype: 'f32' });
    expect(summary.aliases).toEqual({ 'decoder.embed_tokens.weight': 'encoder.embed_tokens.weight' });
    const file = await SafetensorsFile.open(join(workDir, 'untied.safetensors'));
    expect([...(await file.readFloat32('decoder.output_projection.weight'))]).toEqual([...untied]);
    await file.close();
  });

  it('keeps the names of a Hugging Face state dict as they are', async () => {
    const tensors = fairseqTensors(new Float32Array(6)).filter((t) => t.name.includes('attn_ln'));
    const input = await writeCheckpoint('hf.bin', legacyCheckpoint(tensors, 'huggingface'));
    const summary = await convertOfaCheckpoint(input, join(workDir, 'hf.safetensors'), { dtype: 'f32' });
    expect(summary).toMatchObject({ layout: 'huggingface', tensorsWritten: 1, renamed: 0 });
  });

  it('refuses to round a weight that float16 cannot hold, naming it', async () => {
    const tensors = fairseqTensors(new Float32Array(6));
    const huge = new Float32Array([1, 2, 3, 4, 5, 1e6]);
    tensors[0] = { ...tensors[0]!, storage: { key: 'big', type: 'FloatStorage', data: huge } };
    const input = await writeCheckpoint('overflow.pt', legacyCheckpoint(tensors, 'fairseq'));
    const output = join(workDir, 'overflow.safetensors');
    await expect(convertOfaCheckpoint(input, output, { dtype: 'f16' })).rejects.toThrow(
      `${input}: 'encoder.embed_tokens.weight': element 5 = 1000000 overflows float16; convert with dtype f32`,
    );
    expect(existsSync(output)).toBe(false);
  });
});

describe('small.pt', () => {
  it('holds its state dict under model', async () => {
    const checkpoint = await loadTorchCheckpoint(SMALL_CHECKPOINT);
    try {
      const { layout, tensors } = readStateDict(checkpoint);
      expect(layout).toBe('fairseq');
      expect(tensors.size).toBe(10);
      expect(tensors.get('encoder.layer_norm.weight')?.dtype).toBe('bfloat16');
    } finally {
      await checkpoint.close();
    }
  });

  it('does not convert: a bool tensor is not a weight nor a known buffer', async () => {
    const output = join(workDir, 'small.safetensors');
    await expect(convertOfaCheckpoint(SMALL_CHECKPOINT, output, { dtype: 'f32' })).rejects.toThrow(
      `${SMALL_CHECKPOINT}: 'encoder.flag' is bool; only floating-point weights are converted`,
    );
  });
});

describe('convertOfaCheckpoint on the golden ofa-tiny-random pytorch_model.bin', () => {
  const reason = hasGolden ? '' : ' [skipped: ../shared/golden is not beside the repository]';

  it.skipIf(!hasGolden)(`reproduces weights.safetensors bit for bit with dtype f16${reason}`, async () => {
    const output = join(workDir, 'tiny.f16.safetensors');
    const summary = await convertOfaCheckpoint(GOLDEN_CHECKPOINT, output, { dtype: 'f16' });
    const manifest = JSON.parse(await readFile(GOLDEN_MANIFEST, 'utf8')) as {
      tied_weight_aliases: Record<string, string>;
    };
    expect(summary.layout).toBe('huggingface');
    expect(summary.aliases).toEqual(manifest.tied_weight_aliases);

    const [converted, golden] = await Promise.all([SafetensorsFile.open(output), SafetensorsFile.open(GOLDEN_WEIGHTS)]);
    try {
      expect(JSON.parse(converted.metadata['tied_weight_aliases']!)).toEqual(manifest.tied_weight_aliases);
      expect([...converted.tensors.keys()].sort()).toEqual([...golden.tensors.keys()].sort());
      expect(summary.tensorsWritten).toBe(golden.tensors.size);
      const mismatched: string[] = [];
      for (const [name, info] of golden.tensors) {
        const mine = converted.info(name);
        const same =
          mine.dtype === info.dtype &&
          mine.shape.join() === info.shape.join() &&
          Buffer.from(await converted.readBytes(name)).equals(await golden.readBytes(name));
        if (!same) mismatched.push(name);
      }
      expect(mismatched).toEqual([]);
    } finally {
      await converted.close();
      await golden.close();
      await rm(output);
    }
  });

  it.skipIf(!hasGolden)(`widens to the same values with dtype f32${reason}`, async () => {
    const output = join(workDir, 'tiny.f32.safetensors');
    await convertOfaCheckpoint(GOLDEN_CHECKPOINT, output, { dtype: 'f32' });
    const [converted, golden] = await Promise.all([SafetensorsFile.open(output), SafetensorsFile.open(GOLDEN_WEIGHTS)]);
    try {
      const mismatched: string[] = [];
      for (const name of golden.tensors.keys()) {
        const mine = await converted.readFloat32(name);
        const reference = await golden.readFloat32(name);
        const same =
          converted.info(name).dtype === 'F32' &&
          Buffer.from(mine.buffer, mine.byteOffset, mine.byteLength).equals(
            Buffer.from(reference.buffer, reference.byteOffset, reference.byteLength),
          );
        if (!same) mismatched.push(name);
      }
      expect(mismatched).toEqual([]);
    } finally {
      await converted.close();
      await golden.close();
      await rm(output);
    }
  });
});

/** The architecture arguments of an OFA-tiny fairseq run, as `cfg['model']` holds them (abridged). */
const TINY_ARGUMENTS = {
  arch: 'ofa_tiny',
  encoder_embed_dim: 2,
  decoder_embed_dim: 2,
  encoder_layers: 4,
  decoder_layers: 4,
  encoder_attention_heads: 2,
  decoder_attention_heads: 2,
  resnet_type: 'resnet50',
  patch_image_size: 480,
  scale_attn: true,
  scale_fc: true,
  scale_heads: true,
  no_scale_embedding: true,
  activation_fn: 'gelu',
  dropout: 0.1,
};

describe('convertOfaCheckpoint to a model folder', () => {
  it("writes weights.safetensors and config.json from cfg['model'], creating the folder", async () => {
    const input = await writeCheckpoint(
      'with-cfg.pt',
      legacyCheckpoint(fairseqTensors(new Float32Array(6)), 'fairseq', { modelArguments: TINY_ARGUMENTS }),
    );
    const output = join(workDir, 'new', 'model');
    const summary = await convertOfaCheckpoint(input, output, { dtype: 'f32' });
    expect(summary.weights).toBe(join(output, 'weights.safetensors'));
    expect(summary.configFile).toBe(join(output, 'config.json'));
    expect(summary.config?.source).toBe("cfg['model']");
    const config = JSON.parse(await readFile(join(output, 'config.json'), 'utf8')) as Record<string, unknown>;
    // Sizes the arguments give, the rest from the ofa_tiny preset; the vocabulary from the token table.
    expect(config).toMatchObject({
      vocab_size: 3,
      d_model: 2,
      encoder_attention_heads: 2,
      encoder_ffn_dim: 1024,
      resnet_type: 'resnet50',
      normformer: true,
      patch_image_size: 480,
    });
    expect(config).not.toHaveProperty('mue_decomposed_encoder');
    const file = await SafetensorsFile.open(summary.weights);
    expect(JSON.parse(file.metadata['config']!)).toEqual(config);
    await file.close();
  });

  it('marks a MuE run: decomposed encoder and the thresholds it was run with', async () => {
    const mue = { ...TINY_ARGUMENTS, img_thres: 0.99, txt_thres: 0.7, decoder_thres: 0.9 };
    const input = await writeCheckpoint('mue.pt', legacyCheckpoint(fairseqTensors(new Float32Array(6)), 'fairseq', { modelArguments: mue }));
    const summary = await convertOfaCheckpoint(input, join(workDir, 'mue-model'), { dtype: 'f32' });
    expect(summary.config?.json).toMatchObject({
      mue_decomposed_encoder: true,
      mue_exit_thresholds: { image: 0.99, text: 0.7, decoder: 0.9 },
    });
  });

  it('refuses arguments the engine does not implement, naming them, and writes nothing', async () => {
    const input = await writeCheckpoint(
      'scale-resids.pt',
      legacyCheckpoint(fairseqTensors(new Float32Array(6)), 'fairseq', { modelArguments: { ...TINY_ARGUMENTS, scale_resids: true } }),
    );
    const output = join(workDir, 'refused');
    await expect(convertOfaCheckpoint(input, output, { dtype: 'f32' })).rejects.toThrow(
      `${input}: cfg['model']: scale_resids is true; this engine implements OFA without residual scaling`,
    );
    expect(existsSync(output)).toBe(false);
  });

  it('needs a config for a folder, and says how to do without one', async () => {
    const input = await writeCheckpoint('no-cfg.pt', legacyCheckpoint(fairseqTensors(new Float32Array(6)), 'fairseq'));
    await expect(convertOfaCheckpoint(input, join(workDir, 'no-cfg'), { dtype: 'f32' })).rejects.toThrow(
      `${input}: no cfg['model'] or args, so the model's config is unknown; write weights.safetensors alone`,
    );
    expect(existsSync(join(workDir, 'no-cfg'))).toBe(false);
  });

  it('takes the config.json beside a Hugging Face checkpoint', async () => {
    const folder = join(workDir, 'hf-folder');
    await mkdir(folder);
    const tensors = fairseqTensors(new Float32Array(6)).filter((t) => !t.name.startsWith('encoder.layers'));
    const input = join(folder, 'pytorch_model.bin');
    await writeFile(input, legacyCheckpoint(tensors, 'huggingface'));
    const config = JSON.parse(await readFile(join(REPO_ROOT, 'weights/ofa-tiny-demo/config.json'), 'utf8')) as object;
    await writeFile(join(folder, 'config.json'), JSON.stringify(config));
    const summary = await convertOfaCheckpoint(input, join(workDir, 'hf-out'), { dtype: 'f32' });
    expect(summary.config?.source).toBe(join(folder, 'config.json'));
    expect(JSON.parse(await readFile(join(workDir, 'hf-out', 'config.json'), 'utf8'))).toEqual(config);
  });
});

describe.each(['fairseq-1gpu.pt', 'fairseq-1gpu-legacy.pt'])('a single-GPU fairseq checkpoint: %s', (name) => {
  const input = join(REPO_ROOT, 'test/fixtures/checkpoints', name);

  it("converts: every tensor equals model's entry, renamed; the config comes from cfg['model']", async () => {
    const output = join(workDir, `${name}.model`);
    const summary = await convertOfaCheckpoint(input, output, { dtype: 'f32' });
    expect(summary.config?.json).toMatchObject({ d_model: 256, vocab_size: 1000, resnet_type: 'resnet50', patch_image_size: 480 });
    const checkpoint = await loadTorchCheckpoint(input);
    const file = await SafetensorsFile.open(summary.weights);
    try {
      const { tensors } = readStateDict(checkpoint);
      const kept = [...tensors].filter(([source]) => !isDroppedBuffer(source));
      expect(kept.length).toBe(20);
      expect([...file.tensors.keys()].sort()).toEqual(kept.map(([source]) => fairseqToPortName(source)).sort());
      for (const [source, tensor] of kept) {
        const converted = await file.readBytes(fairseqToPortName(source));
        expect(tensor.dtype).toBe('float32');
        expect(Buffer.from(converted).equals(await tensor.contiguousBytes()), source).toBe(true);
      }
    } finally {
      await Promise.all([checkpoint.close(), file.close()]);
    }
  });
});

describe('classes off the pickle allow-list', () => {
  /** os.system('echo pwned'), builtins.eval('…') and subprocess.Popen(['touch', marker]). */
  const marker = (): string => join(workDir, 'pwned');
  const hostile = (pickle: PickleWriter): PickleWriter =>
    pickle
      .op('(')
      .call('os', 'system', [`touch ${marker()}`])
      .call('builtins', 'eval', [`open('${marker()}', 'w')`])
      .call('subprocess', 'Popen', [['touch', marker()]])
      .op('l');

  it('load as inert placeholders in extra_state: the checkpoint converts, nothing runs', async () => {
    const input = await writeCheckpoint(
      'hostile-extra.pt',
      legacyCheckpoint(fairseqTensors(new Float32Array(6)), 'fairseq', {
        extraState: (pickle) => hostile(pickle.op('}').str('meters')).op('s'),
      }),
    );
    const summary = await convertOfaCheckpoint(input, join(workDir, 'hostile-extra.safetensors'), { dtype: 'f32' });
    expect(summary.tensorsWritten).toBe(6);
    expect(existsSync(marker())).toBe(false);
  });

  it.each([
    ['os', 'system', "os.system('touch"],
    ['builtins', 'eval', "builtins.eval('open("],
    ['subprocess', 'Popen', "subprocess.Popen(['touch', "],
  ])('are refused by name inside model: %s.%s', async (module, name, shown) => {
    const argument = name === 'Popen' ? [['touch', marker()]] : [name === 'eval' ? `open('${marker()}', 'w')` : `touch ${marker()}`];
    const input = await writeCheckpoint(
      `hostile-${name}.pt`,
      legacyCheckpoint(fairseqTensors(new Float32Array(6)), 'fairseq', {
        modelEntry: (pickle) => pickle.str('encoder.evil').call(module, name, argument),
      }),
    );
    const output = join(workDir, `hostile-${name}.safetensors`);
    await expect(convertOfaCheckpoint(input, output, { dtype: 'f32' })).rejects.toThrow(
      `${input}: model['encoder.evil'] is an object of '${module}.${name}', a class off the pickle allow-list (${shown}`,
    );
    expect(existsSync(output)).toBe(false);
    expect(existsSync(marker())).toBe(false);
  });
});

describe('a converted model folder runs as is', () => {
  /** ofa-arch.md §6.6 backwards: the port's names as OFA's fairseq code spells them. */
  function portToFairseqName(name: string): string {
    return name
      .replace(/^(decoder\.layers\.\d+)\.self_attn_mid_layer_norm\./, '$1.self_attn_ln.')
      .replace(/^(decoder\.layers\.\d+)\.cross_attn_mid_layer_norm\./, '$1.cross_attn_ln.')
      .replace(/^(encoder\.layers\.\d+)\.self_attn_mid_layer_norm\./, '$1.attn_ln.')
      .replace(/\.ffn_layer_norm\./, '.ffn_layernorm.')
      .replace(/^(decoder\.layers\.\d+)\.cross_attn_layer_norm\./, '$1.encoder_attn_layer_norm.')
      .replace(/^(decoder\.layers\.\d+)\.cross_attn\./, '$1.encoder_attn.');
  }

  it('converts the demo model saved the fairseq way into the same model, which captions with its config as is', async () => {
    const demo = join(REPO_ROOT, 'weights/ofa-tiny-demo');
    const weights = await SafetensorsFile.open(join(demo, 'weights.safetensors'));
    const tensors: TensorSpec[] = [];
    const embedding: StorageSpec = { key: 'embedding', type: 'HalfStorage', data: await weights.readHalfBits(TIED) };
    for (const [name, info] of weights.tensors) {
      const storage = name === TIED ? embedding : { key: name, type: 'HalfStorage' as const, data: await weights.readHalfBits(name) };
      tensors.push({ name: portToFairseqName(name), storage, shape: info.shape });
    }
    // fairseq keeps the three views of the token table (one storage) and the integer buffers.
    for (const alias of ['decoder.embed_tokens.weight', 'decoder.output_projection.weight']) {
      tensors.push({ name: alias, storage: embedding, shape: weights.info(TIED).shape });
    }
    tensors.push({ name: 'encoder.token_rp_bucket', storage: { key: 'rp', type: 'LongStorage', data: new BigInt64Array(4) }, shape: [2, 2] });

    // A small image size, recorded in the arguments the way a fine-tuning run records 480.
    const modelArguments = { arch: 'ofa_tiny', patch_image_size: 32 };
    const input = await writeCheckpoint('demo-fairseq.pt', legacyCheckpoint(tensors, 'fairseq', { modelArguments }));
    const folder = join(workDir, 'demo-converted');
    const summary = await convertOfaCheckpoint(input, folder, { dtype: 'f16' });
    expect(summary.renamed).toBeGreaterThan(0);
    expect(summary.aliases).toEqual({ 'decoder.embed_tokens.weight': TIED, 'decoder.output_projection.weight': TIED });

    const converted = await SafetensorsFile.open(summary.weights);
    const original = await SafetensorsFile.open(join(demo, 'weights.safetensors'));
    try {
      expect([...converted.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
      for (const name of original.tensors.keys()) {
        expect(Buffer.from(await converted.readBytes(name)).equals(await original.readBytes(name)), name).toBe(true);
      }
    } finally {
      await Promise.all([converted.close(), original.close()]);
    }
    const demoConfig = configFromJson(JSON.parse(await readFile(join(demo, 'config.json'), 'utf8')));
    expect(configFromJson(JSON.parse(await readFile(join(folder, 'config.json'), 'utf8')))).toEqual(demoConfig);

    const pipeline = await OfaPipeline.load(folder, { backend: 'cpu' });
    try {
      expect(pipeline.imageSize).toBe(32);
      const { tokens } = await pipeline.caption(join(REPO_ROOT, 'test/fixtures/preprocess/photo-97x61.png'), {
        beamSize: 1,
        maxLenB: 2,
      });
      expect(tokens.length).toBeGreaterThan(0);
    } finally {
      pipeline.dispose();
    }
  });
});
