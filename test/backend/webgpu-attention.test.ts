/**
 * Attention on WebGPU against the CPU backend on seeded random data: odd sequence lengths and
 * head dims, every combination of bias, key padding mask and causal masking, k/v shared by the
 * batch, per-sample bias, and fully masked rows. Each case runs on three backends on the same
 * device whose capabilities force a method (see `attentionMethod` in ops/attention.ts):
 * - software (lavapipe's subgroups): attention as GEMMs on the register-blocked kernel, and the
 *   fused kernel with dense rows reading keys from global memory for tiny problems (Tq·Tk < 64);
 * - software without subgroups (Firefox's WebGPU): the same, the GEMMs reading rows of A at
 *   uniform addresses instead of sharing them through shuffles;
 * - a GPU: the fused kernel with workgroups sharing key and value tiles through workgroup memory
 *   (when there are ≥ 32 queries per head), and GEMMs for head dims it cannot hold (> 128).
 */
import { describe, expect, it } from 'vitest';
import type { AttentionOptions, Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { WebGpuBackend } from '../../src/backend/webgpu/index.js';
import type { HostArray } from '../../src/tensor.js';
import { expectClose } from '../helpers/compare.js';
import { type Rng, createRng, randomFloats } from '../helpers/random.js';
import { webgpuBackendWith } from '../helpers/webgpu.js';

const cpu = new CpuBackend();
const layouts: [string, WebGpuBackend][] = [
  ['dense rows', await webgpuBackendWith({ software: true })],
  ['shared key tiles', await webgpuBackendWith({ software: false })],
  ['software without subgroups', await webgpuBackendWith({ software: true, subgroups: false, subgroupShuffle: false })],
];

/** q, k, v, bias in [−1, 1): O(1) outputs, whose f32 rounding in dots and sums stays below 1e-5. */
const TOLERANCE = { atol: 1e-5 };

interface Case {
  batch: number;
  tq: number;
  tk: number;
  heads: number;
  headDim: number;
  /** k and v have batch 1, shared by every query sample. */
  sharedKv?: boolean;
  bias?: 'shared' | 'batched';
  /** Fraction of keys padded per k/v sample (at least the last key when > 0). */
  padding?: number;
  causal?: boolean;
}

function label(c: Case): string {
  const flags = [c.sharedKv && 'shared kv', c.bias && `${c.bias} bias`, c.padding && 'padding mask', c.causal && 'causal'];
  return `B ${c.batch}, Tq ${c.tq}, Tk ${c.tk}, H ${c.heads}, dh ${c.headDim}${flags.filter(Boolean).map((f) => `, ${f}`).join('')}`;
}

interface HostInputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  bias?: Float32Array;
  mask?: Int32Array;
}

function inputs(c: Case, rng: Rng): HostInputs {
  const width = c.heads * c.headDim;
  const kvBatch = c.sharedKv ? 1 : c.batch;
  const result: HostInputs = {
    q: randomFloats(c.batch * c.tq * width, rng),
    k: randomFloats(kvBatch * c.tk * width, rng),
    v: randomFloats(kvBatch * c.tk * width, rng),
  };
  if (c.bias) result.bias = randomFloats((c.bias === 'batched' ? c.batch : 1) * c.heads * c.tq * c.tk, rng);
  if (c.padding !== undefined) {
    result.mask = Int32Array.from({ length: kvBatch * c.tk }, (_, i) => (rng() < c.padding! || i % c.tk === c.tk - 1 ? 1 : 0));
  }
  return result;
}

async function run(backend: Backend, c: Case, host: HostInputs): Promise<HostArray> {
  const width = c.heads * c.headDim;
  const kvBatch = c.sharedKv ? 1 : c.batch;
  const out = backend.tidy(() => {
    const options: AttentionOptions = { heads: c.heads, scale: (2 * c.headDim) ** -0.5, causal: c.causal ?? false };
    if (host.bias) options.bias = backend.upload(host.bias, c.bias === 'batched' ? [c.batch, c.heads, c.tq, c.tk] : [c.heads, c.tq, c.tk]);
    if (host.mask) options.keyPaddingMask = backend.upload(host.mask, [kvBatch, c.tk]);
    const q = backend.upload(host.q, [c.batch, c.tq, width]);
    const k = backend.upload(host.k, [kvBatch, c.tk, width]);
    const v = backend.upload(host.v, [kvBatch, c.tk, width]);
    return backend.attention(q, k, v, options);
  });
  try {
    return await out.read();
  } finally {
    out.dispose();
  }
}

const CASES: Case[] = [
  // Encoder self-attention: shared relative-position bias, padded text keys.
  { batch: 1, tq: 268, tk: 268, heads: 12, headDim: 64, bias: 'shared', padding: 0.1 },
  { batch: 2, tq: 70, tk: 70, heads: 4, headDim: 80, bias: 'batched', padding: 0.2 },
  // Decoder cross-attention: one query per beam over encoder states shared by the beams.
  { batch: 5, tq: 1, tk: 268, heads: 4, headDim: 64, sharedKv: true, padding: 0.1 },
  { batch: 5, tq: 1, tk: 268, heads: 4, headDim: 64, sharedKv: true, bias: 'batched' },
  // With the shared position bias, the beams attend as the query rows of one sample (bias rows
  // repeating per sample); also with several queries per sample and odd sizes.
  { batch: 5, tq: 1, tk: 268, heads: 4, headDim: 64, sharedKv: true, bias: 'shared', padding: 0.1 },
  { batch: 3, tq: 7, tk: 45, heads: 2, headDim: 12, sharedKv: true, bias: 'shared', padding: 0.2 },
  // Decoder self-attention over the cache (causal admits every cached key for the newest query).
  { batch: 5, tq: 1, tk: 16, heads: 4, headDim: 64, causal: true },
  // Odd sizes: tiny and odd head dims, more queries than keys (early queries see no key: zeros).
  { batch: 3, tq: 17, tk: 5, heads: 1, headDim: 3, causal: true },
  { batch: 2, tq: 5, tk: 17, heads: 4, headDim: 64, bias: 'shared', padding: 0.3, causal: true },
  { batch: 1, tq: 1, tk: 1, heads: 1, headDim: 3 },
  { batch: 2, tq: 33, tk: 7, heads: 3, headDim: 5, sharedKv: true, bias: 'shared', causal: true },
  // Every key of some rows masked (padding 1): those rows output zeros.
  { batch: 2, tq: 40, tk: 9, heads: 2, headDim: 16, padding: 1 },
];

// The GEMM path's edges (≥ 64 queries, for the tiled GEMM too): Tk and dh not multiples of 4 (score
// rows padded, operands read element by element), dh 80, shared k/v with per-sample bias, a
// single key, fully masked rows, and a head dim beyond the fused kernel's 128.
CASES.push(
  { batch: 2, tq: 67, tk: 53, heads: 3, headDim: 80, sharedKv: true, bias: 'batched', padding: 0.2, causal: true },
  { batch: 3, tq: 65, tk: 70, heads: 2, headDim: 6, bias: 'shared', padding: 0.1 },
  { batch: 1, tq: 64, tk: 1, heads: 2, headDim: 5, causal: true },
  { batch: 2, tq: 64, tk: 9, heads: 2, headDim: 16, padding: 1 },
  { batch: 2, tq: 70, tk: 35, heads: 2, headDim: 160, sharedKv: true, padding: 0.2 },
);

// Every combination of bias, padding mask and causal masking on one size that tiles unevenly.
for (const bias of [undefined, 'shared', 'batched'] as const) {
  for (const padding of [undefined, 0.25]) {
    for (const causal of [false, true]) {
      if (bias === 'batched' && !causal) continue; // batched bias has its own cases above
      CASES.push({ batch: 2, tq: 40, tk: 37, heads: 4, headDim: 80, bias, padding, causal });
    }
  }
}

describe.each(layouts)('attention with %s', (_, backend) => {
  it.each(CASES.map((c) => [label(c), c] as const))('matches the CPU: %s', async (_name, c) => {
    const host = inputs(c, createRng(c.batch * 1000 + c.tq * 100 + c.tk * 10 + c.headDim));
    const expected = await run(cpu, c, host);
    expectClose(await run(backend, c, host), expected, TOLERANCE, label(c));
  });

  it('outputs zeros for a query whose keys are all masked', async () => {
    const c: Case = { batch: 2, tq: 3, tk: 4, heads: 2, headDim: 8, padding: 0 };
    const host = inputs(c, createRng(5));
    host.mask = Int32Array.from([1, 1, 1, 1, 0, 1, 0, 0]); // sample 0: every key padded
    const actual = await run(backend, c, host);
    const sampleSize = c.tq * c.heads * c.headDim;
    expect(Array.from(actual.subarray(0, sampleSize)).every((x) => x === 0)).toBe(true);
    expectClose(actual, await run(cpu, c, host), TOLERANCE, 'partly masked');
  });
});

const chunked = await webgpuBackendWith({ software: true }, { maxBindingBytes: 22_000 });

describe('attention as GEMMs in chunks of samples', () => {
  // A 22 000-byte binding limit: the scores (f32, rows padded to 4 keys) of one sample of 2 heads ×
  // 64 queries × 37 keys (20 KiB) fit, two do not; with 13 keys two samples fit, three do not. So
  // batches of 3 run in chunks of 1 or of 2 and 1 (offsets into q, k, v, the mask and the bias).
  const backend = chunked;
  const cases: Case[] = [
    { batch: 3, tq: 64, tk: 37, heads: 2, headDim: 8, bias: 'shared', padding: 0.2, causal: true },
    { batch: 3, tq: 64, tk: 37, heads: 2, headDim: 8, sharedKv: true, padding: 0.2 },
    { batch: 3, tq: 64, tk: 13, heads: 2, headDim: 8, bias: 'batched', padding: 0.3 },
  ];
  it.each(cases.map((c) => [label(c), c] as const))('matches the CPU: %s', async (_name, c) => {
    const host = inputs(c, createRng(c.batch * 1000 + c.tq * 100 + c.tk * 10 + c.headDim));
    expectClose(await run(backend, c, host), await run(cpu, c, host), TOLERANCE, label(c));
  });
});
