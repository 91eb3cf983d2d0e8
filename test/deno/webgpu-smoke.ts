/**
 * Runs under Deno (`deno run --unstable-sloppy-imports --allow-read --allow-env`), with Deno's
 * own WebGPU (`navigator.gpu`) instead of Dawn's Node binding: every kernel family once against
 * the CPU backend. Prints one JSON line: `{ adapter, subgroups, results: [{ op, maxAbsDiff }] }`.
 */
import type { Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { createWebGpuBackend } from '../../src/backend/webgpu/index.js';
import type { Tensor } from '../../src/tensor.js';
import { maxAbsDiff } from '../helpers/compare.js';
import { createRng, randomFloats } from '../helpers/random.js';

const cpu = new CpuBackend();
const gpu = await createWebGpuBackend();
const rng = createRng(2024);

const x = randomFloats(2 * 37 * 64, rng);
const w = randomFloats(48 * 64, rng);
const bias = randomFloats(48, rng);
const gamma = randomFloats(64, rng, 0.5, 1.5);
const image = randomFloats(1 * 3 * 19 * 17, rng);
const filters = randomFloats(8 * 3 * 3 * 3, rng);
const ids = Int32Array.from([3, 0, 47, 12]);

const cases: [string, (b: Backend) => Tensor][] = [
  ['matmul', (b) => b.matmul(b.upload(x, [2, 37, 64]), b.upload(w, [48, 64]), { transposeB: true, bias: b.upload(bias, [48]), activation: 'gelu' })],
  ['layerNorm', (b) => b.layerNorm(b.upload(x, [74, 64]), b.upload(gamma, [64]), b.upload(gamma, [64]), 1e-5)],
  ['logSoftmax', (b) => b.logSoftmax(b.upload(x, [37, 128]))],
  ['attention', (b) => b.attention(b.upload(x, [2, 37, 64]), b.upload(x, [2, 37, 64]), b.upload(x, [2, 37, 64]), { heads: 4, scale: 0.125, causal: true })],
  // 70 queries: attention as GEMMs (ops/attention.ts), on gemm_tiled where there are no subgroups.
  ['attention GEMMs', (b) => b.attention(b.upload(x.subarray(0, 2 * 70 * 32), [2, 70, 32]), b.upload(w, [1, 96, 32]), b.upload(w.map((v) => -v), [1, 96, 32]), { heads: 2, scale: 0.25, causal: true })],
  ['conv2d', (b) => b.conv2d(b.upload(image, [1, 3, 19, 17]), b.upload(filters, [8, 3, 3, 3]), { stride: 2, padding: 1, activation: 'relu' })],
  ['maxPool2d', (b) => b.maxPool2d(b.upload(image, [1, 3, 19, 17]), { kernel: 3, stride: 2, padding: 1 })],
  ['gather', (b) => b.gather(b.upload(w, [48, 64]), b.upload(ids, [4]))],
  ['transpose', (b) => b.transpose(b.upload(x, [2, 37, 64]), [2, 0, 1])],
  ['cosineSimilarity', (b) => b.cosineSimilarity(b.upload(x, [2, 37, 64]), b.upload(x.map((v) => v + 0.1), [2, 37, 64]))],
];

const results = [];
for (const [op, run] of cases) {
  const [expected, actual] = await Promise.all([cpu, gpu].map((b) => b.tidy(() => run(b)).read()));
  results.push({ op, maxAbsDiff: maxAbsDiff(actual!, expected!) });
}
console.log(JSON.stringify({ adapter: gpu.capabilities.adapterDescription, subgroups: gpu.capabilities.subgroups, results }));
gpu.destroy();
