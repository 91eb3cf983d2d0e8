/**
 * A checkpoint with a NaN: instead of "beam search ended without a finished hypothesis", the
 * pipeline names the first stage whose output is not finite and the weight that holds the NaN.
 * The test plants one NaN in a copy of the shipped demo model (f16 weights) in a temp dir.
 */
import { copyFile, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countNonFinite, namedTensors } from '../../../src/models/ofa/diagnose.js';
import { OfaPipeline } from '../../../src/pipeline.js';
import { CpuBackend } from '../../../src/backend/cpu/cpu-backend.js';
import { webgpuBackend } from '../../helpers/webgpu.js';

const DEMO = join(import.meta.dirname, '../../../weights/ofa-tiny-demo');
const IMAGE = join(import.meta.dirname, '../../fixtures/preprocess/photo-97x61.png');

/** Overwrites element `index` of the f16 tensor `name` in a safetensors file with a NaN. */
async function plantNaN(file: string, name: string, index: number): Promise<void> {
  const bytes = await readFile(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const entry = header[name]!;
  expect(entry.dtype).toBe('F16');
  const handle = await open(file, 'r+');
  try {
    await handle.write(Uint8Array.of(0x00, 0x7e), 0, 2, 8 + headerLength + entry.data_offsets[0] + 2 * index);
  } finally {
    await handle.close();
  }
}

describe('diagnosing a checkpoint with a NaN', () => {
  let dir: string;
  let ofa: OfaPipeline;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mue-nan-'));
    for (const file of ['weights.safetensors', 'config.json']) await copyFile(join(DEMO, file), join(dir, file));
    await plantNaN(join(dir, 'weights.safetensors'), 'encoder.layers.2.fc1.weight', 17);
    ofa = await OfaPipeline.load(dir, { backend: await webgpuBackend() });
  });
  afterAll(async () => {
    ofa?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  const diagnosis =
    /the model's output is not finite: encoder\.layers\.2 is the first stage whose output is not finite \(\d+ NaN of \d+ values, the first at element \d+\); weights that are not finite: encoder\.layers\.2\.ffn\.fc1\.weight \(1 NaN of 262144 values, the first at element 17\)$/;

  it('caption names the layer and the weight', async () => {
    const error = await ofa.caption(IMAGE, { beamSize: 2, maxLenB: 2 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/^caption: beam search ended without a finished hypothesis: /);
    expect((error as Error).message).toMatch(diagnosis);
  });

  it('entail names them too', async () => {
    const error = await ofa.entail(IMAGE, 'a dog').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/^entail: the answer scores are not finite: /);
    expect((error as Error).message).toMatch(diagnosis);
  });
});

describe('diagnosis helpers', () => {
  it('counts NaN and infinities and finds the first', () => {
    expect(countNonFinite([1, 2, 3])).toBeUndefined();
    expect(countNonFinite([1, Infinity, NaN, -Infinity, NaN])).toEqual({ nan: 2, infinite: 2, total: 5, first: 1 });
  });

  it('names tensors by their place in a weight tree, a tied tensor once', () => {
    const cpu = new CpuBackend();
    const shared = cpu.upload(new Float32Array(2), [2]);
    const tree = { encoder: { embedTokens: shared, layers: [{ fc1: { weight: cpu.upload(new Float32Array(1), [1]) } }] }, decoder: { outputProjection: shared } };
    expect(namedTensors(tree).map(([name]) => name)).toEqual(['encoder.embedTokens', 'encoder.layers.0.fc1.weight']);
  });
});
