import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../../src/backend/cpu/cpu-backend.js';
import { SafetensorsFile, type TensorEntry, encodeSafetensors } from '../../../src/io/safetensors.js';
import { configFromJson } from '../../../src/models/ofa/config.js';
import { loadOfaWeights } from '../../../src/models/ofa/weights.js';
import { verifyGolden } from '../../../src/models/ofa/verify.js';

const GOLDEN = fileURLToPath(new URL('../../fixtures/ofa-tiny-random', import.meta.url));

describe('verifyGolden on the CPU backend (OFA authors’ HF port, tiny random weights)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ofa-verify-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('matches every golden tensor within 1e-4 and picks the same greedy ids', async () => {
    const out = join(dir, 'engine.safetensors');
    const result = await verifyGolden(new CpuBackend(), GOLDEN, { out });
    expect(result.rows.map((row) => row.name).sort()).toEqual([
      'decoder.hidden_states.0',
      'decoder.hidden_states.1',
      'decoder.hidden_states.2',
      'decoder.hidden_states.3',
      'decoder.hidden_states.4',
      'decoder.logits',
      'encoder.hidden_states.0',
      'encoder.hidden_states.1',
      'encoder.hidden_states.2',
      'encoder.hidden_states.3',
      'encoder.hidden_states.4',
      'encoder.last_hidden_state',
      'encoder.position_embedding',
      'greedy.step_logits',
    ]);
    for (const row of result.rows) expect(row.maxAbsDiff, row.name).toBeLessThanOrEqual(1e-4);
    expect(result.greedy.actual).toEqual(result.greedy.expected);
    expect(result.ok).toBe(true);

    // The written file holds the engine's tensors under the golden names, plus the greedy ids.
    const written = await SafetensorsFile.open(out);
    try {
      expect(written.info('encoder.last_hidden_state').shape).toEqual([1, 268, 256]);
      expect([...(await written.readFloat32('greedy.tokens'))]).toEqual(result.greedy.expected);
    } finally {
      await written.close();
    }
  });
});

describe('loadOfaWeights', () => {
  let entries: TensorEntry[];
  const config = (async () => {
    const manifest = JSON.parse(await readFile(join(GOLDEN, 'manifest.json'), 'utf8')) as { config: unknown };
    return configFromJson(manifest.config, 'manifest.json config');
  })();

  beforeAll(async () => {
    const file = await SafetensorsFile.open(join(GOLDEN, 'weights.safetensors'));
    try {
      entries = [];
      for (const [name, info] of file.tensors) {
        entries.push({ name, dtype: info.dtype, shape: info.shape, data: await file.readBytes(name) });
      }
    } finally {
      await file.close();
    }
  });

  /** The golden checkpoint with some tensors replaced or removed, as an in-memory file. */
  function variant(change: (entries: TensorEntry[]) => TensorEntry[], metadata?: Record<string, string>) {
    return SafetensorsFile.fromBytes(encodeSafetensors(change([...entries]), metadata), 'variant.safetensors');
  }

  it('names a missing tensor and its expected shape', async () => {
    const file = await variant((all) => all.filter((e) => e.name !== 'encoder.layers.2.fc1.weight'));
    await expect(loadOfaWeights(new CpuBackend(), file, await config)).rejects.toThrow(
      "variant.safetensors: not an OFA checkpoint for this config: missing tensor 'encoder.layers.2.fc1.weight', " +
        'expected shape [1024, 256]',
    );
  });

  it('names a misshapen tensor with the expected and found shapes, and lists every problem', async () => {
    const file = await variant((all) =>
      all.map((e) =>
        e.name === 'decoder.layers.1.fc2.weight'
          ? { ...e, shape: [256, 1000], data: new Uint16Array(256 * 1000) }
          : e.name === 'encoder.embed_images.layer2.0.bn2.running_var'
            ? { ...e, shape: [64], data: new Uint16Array(64) }
            : e,
      ),
    );
    const loading = loadOfaWeights(new CpuBackend(), file, await config);
    await expect(loading).rejects.toThrow(/2 problems/);
    await expect(loading).rejects.toThrow(
      "tensor 'decoder.layers.1.fc2.weight' has shape [256, 1000], expected [256, 1024]",
    );
    await expect(loading).rejects.toThrow(
      "tensor 'encoder.embed_images.layer2.0.bn2.running_var' has shape [64], expected [128]",
    );
  });

  it('names a tied tensor through its alias', async () => {
    const file = await variant((all) => all.filter((e) => e.name !== 'encoder.embed_tokens.weight'));
    const loading = loadOfaWeights(new CpuBackend(), file, await config);
    await expect(loading).rejects.toThrow("missing tensor 'encoder.embed_tokens.weight', expected shape [1000, 256]");
    await expect(loading).rejects.toThrow(
      "missing tensor 'decoder.output_projection.weight' (tied to 'encoder.embed_tokens.weight'), " +
        'expected shape [1000, 256]',
    );
  });

  it('ties the decoder embeddings to the encoder table without aliases, and reports unexpected names', async () => {
    const file = await variant((all) => [
      ...all,
      { name: 'encoder.extra_head.weight', dtype: 'F32', shape: [2], data: new Float32Array(2) },
      { name: 'encoder.embed_images.bn1.num_batches_tracked', dtype: 'I64', shape: [], data: new BigInt64Array(1) },
    ]);
    const progress: number[] = [];
    const weights = await loadOfaWeights(new CpuBackend(), file, await config, {
      onProgress: ({ loadedBytes }) => progress.push(loadedBytes),
    });
    expect(weights.unexpectedNames).toEqual(['encoder.extra_head.weight']);
    expect(weights.decoder.embedTokens).toBe(weights.encoder.embedTokens);
    expect(weights.decoder.outputProjection).toBe(weights.encoder.embedTokens);
    // F16 stays f16; folded tensors become f32.
    expect(weights.encoder.layers[0]!.ffn.fc1.weight.dtype).toBe('f16');
    expect(weights.encoder.layers[0]!.selfAttn.out.weight.dtype).toBe('f32');
    expect(weights.encoder.resnet.stem.bias.dtype).toBe('f32');
    expect(weights.encoder.layers[0]!.relativeBiasTable.shape).toEqual([511 + 6892 + 1, 4]);
    expect(progress.at(-1)).toBeGreaterThan(30e6);
    weights.dispose();
  });
});
