/**
 * The kernel suite's smoke test: every kernel family once, on small odd shapes, against the CPU
 * backend. It runs where the full suite cannot: under Deno's own WebGPU (test/deno/) and in web
 * pages (test/browser/), on whatever adapter the host offers. No Node import: it is bundled.
 */
import type { Backend } from '../../src/backend/backend.js';
import type { Tensor } from '../../src/tensor.js';
import { maxAbsDiff } from './compare.js';
import { createRng, randomFloats } from './random.js';

export interface SmokeResult {
  /** The op, named after the kernel family it exercises. */
  op: string;
  maxAbsDiff: number;
}

/** f32 on both sides, values O(1) (matmul sums 64 products): every op agrees within this. */
export const SMOKE_TOLERANCE = 1e-4;

type Case = [op: string, run: (b: Backend) => Tensor];

function smokeCases(): Case[] {
  const rng = createRng(2024);
  const x = randomFloats(2 * 37 * 64, rng);
  const w = randomFloats(48 * 64, rng);
  const bias = randomFloats(48, rng);
  const gamma = randomFloats(64, rng, 0.5, 1.5);
  const image = randomFloats(1 * 3 * 19 * 17, rng);
  const filters = randomFloats(8 * 3 * 3 * 3, rng);
  const ids = Int32Array.from([3, 0, 47, 12]);
  const shifted = x.map((v, i) => v + 0.02 * Math.sin(i));
  return [
    ['matmul', (b) => b.matmul(b.upload(x, [2, 37, 64]), b.upload(w, [48, 64]), { transposeB: true, bias: b.upload(bias, [48]), activation: 'gelu' })],
    ['elementwise', (b) => b.gelu(b.add(b.upload(x, [74, 64]), b.scale(b.upload(shifted, [74, 64]), 0.5)))],
    ['layerNorm', (b) => b.layerNorm(b.upload(x, [74, 64]), b.upload(gamma, [64]), b.upload(gamma, [64]), 1e-5)],
    ['logSoftmax', (b) => b.logSoftmax(b.upload(x, [37, 128]))],
    ['topk', (b) => b.topk(b.upload(x, [37, 128]), 5).values],
    ['attention', (b) => b.attention(b.upload(x, [2, 37, 64]), b.upload(x, [2, 37, 64]), b.upload(x, [2, 37, 64]), { heads: 4, scale: 0.125, causal: true })],
    // 70 queries: attention as GEMMs on software adapters (ops/attention.ts).
    ['attention GEMMs', (b) => b.attention(b.upload(x.subarray(0, 2 * 70 * 32), [2, 70, 32]), b.upload(w, [1, 96, 32]), b.upload(w.map((v) => -v), [1, 96, 32]), { heads: 2, scale: 0.25, causal: true })],
    ['conv2d', (b) => b.conv2d(b.upload(image, [1, 3, 19, 17]), b.upload(filters, [8, 3, 3, 3]), { stride: 2, padding: 1, activation: 'relu' })],
    // Stride 1, padding 1: Winograd's F(2×2, 3×3) (ops/vision.ts).
    ['conv2d Winograd', (b) => b.conv2d(b.upload(image, [1, 3, 19, 17]), b.upload(filters, [8, 3, 3, 3]), { padding: 1, bias: b.upload(gamma.subarray(0, 8), [8]) })],
    ['maxPool2d', (b) => b.maxPool2d(b.upload(image, [1, 3, 19, 17]), { kernel: 3, stride: 2, padding: 1 })],
    ['gather', (b) => b.gather(b.upload(w, [48, 64]), b.upload(ids, [4]))],
    ['transpose', (b) => b.transpose(b.upload(x, [2, 37, 64]), [2, 0, 1])],
    ['concat (two tensors)', (b) => b.concat([b.upload(x, [2, 37, 64]), b.upload(shifted.subarray(0, 2 * 5 * 64), [2, 5, 64])], 1)],
    ['relativeBias', (b) => b.relativeBias(b.upload(w.subarray(0, 48 * 4), [48, 4]), b.upload(Int32Array.from({ length: 6 * 9 }, (_, i) => (i * 7) % 48), [6, 9]), b.upload(x.subarray(0, 4 * 6 * 9), [4, 6, 9]))],
    ['cosineSimilarity', (b) => b.cosineSimilarity(b.upload(x, [2, 37, 64]), b.upload(x.map((v) => v + 0.1), [2, 37, 64]))],
    // The exit rule and a gate: sample 1 had stopped, so the gated layer's output is the state it kept.
    [
      'decideExit + unlessAll',
      (b) => {
        const previous = b.upload(x, [2, 37, 64]);
        const decision = b.decideExit(previous, b.upload(shifted, [2, 37, 64]), 0.9, b.upload(Int32Array.from([0, 1]), [2]));
        const layer = b.unlessAll(decision.allDone, () => b.relu(decision.state));
        return b.where(decision.done, decision.state, layer);
      },
    ],
  ];
}

/** Runs every case on `gpu` and `cpu` and compares. */
export async function kernelSmoke(gpu: Backend, cpu: Backend): Promise<SmokeResult[]> {
  const results: SmokeResult[] = [];
  for (const [op, run] of smokeCases()) {
    const [expected, actual] = await Promise.all([cpu, gpu].map((b) => b.tidy(() => run(b)).read()));
    results.push({ op, maxAbsDiff: maxAbsDiff(actual!, expected!) });
  }
  return results;
}
