/**
 * matmul on WebGPU against the CPU backend on seeded random data: sizes that fill no tile or quad
 * evenly, OFA's shapes, batched and shared b, b stored [N, K], f16 b and bias, and every epilogue.
 * Every test runs on both GEMM kernels: the adapter's own choice (register blocking on lavapipe)
 * and the workgroup-memory tiling of GPUs, forced by a second backend on the same device whose
 * capabilities claim a hardware adapter.
 */
import { describe, expect, it } from 'vitest';
import type { Activation, Backend, MatmulOptions } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { floatsToHalves } from '../../src/half.js';
import type { Tensor } from '../../src/tensor.js';
import { expectClose } from '../helpers/compare.js';
import { type Rng, createRng, randomFloats } from '../helpers/random.js';
import { gemmPaths } from '../helpers/webgpu.js';
import { evaluate } from '../helpers/evaluate.js';

const cpu = new CpuBackend();
const paths = await gemmPaths();

/**
 * Operands are uniform in [−1, 1). The kernels sum K products in f32, the CPU in f64: the f32
 * rounding error grows like 2⁻²⁴·K/7 (≈ 1e-5 at K = 1024, 3e-5 at K = 4096; f16 b is widened
 * exactly on both sides), so atol 1e-4 plus rtol 1e-4 of outputs of size ~√(K/9) holds for K ≤ 4096.
 */
const TOLERANCE = { atol: 1e-4, rtol: 1e-4 };

interface Case {
  /** Leading batch dims of a (and of b when batched). */
  batch?: number[];
  m: number;
  k: number;
  n: number;
  transposeB?: boolean;
  batchedB?: boolean;
  f16B?: boolean;
  bias?: 'f32' | 'f16';
  activation?: Activation;
  residual?: boolean;
}

/** Draws the operands of `c` from a generator seeded by its description, and compares both backends. */
async function expectMatmulMatches(backend: Backend, c: Case): Promise<void> {
  const label = JSON.stringify(c);
  const rng: Rng = createRng([...label].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) >>> 0, 7));
  const batch = c.batch ?? [];
  const batchSize = batch.reduce((p, d) => p * d, 1);
  const aShape = [...batch, c.m, c.k];
  const bShape = [...(c.batchedB ? batch : []), ...(c.transposeB ? [c.n, c.k] : [c.k, c.n])];
  const a = randomFloats(batchSize * c.m * c.k, rng);
  const b = randomFloats((c.batchedB ? batchSize : 1) * c.k * c.n, rng);
  const bias = c.bias && randomFloats(c.n, rng);
  const residual = c.residual ? randomFloats(batchSize * c.m * c.n, rng) : undefined;
  const op = (be: Backend): Tensor => {
    const options: MatmulOptions = { transposeB: c.transposeB ?? false, activation: c.activation ?? 'none' };
    if (bias) options.bias = c.bias === 'f16' ? be.upload(floatsToHalves(bias), [c.n], 'f16') : be.upload(bias, [c.n]);
    if (residual) options.residual = be.upload(residual, [...batch, c.m, c.n]);
    const bTensor = c.f16B ? be.upload(floatsToHalves(b), bShape, 'f16') : be.upload(b, bShape);
    return be.matmul(be.upload(a, aShape), bTensor, options);
  };
  const actual = await evaluate(backend, op);
  expect(actual.length).toBe(batchSize * c.m * c.n);
  expectClose(actual, await evaluate(cpu, op), TOLERANCE, `matmul ${label}`);
}

describe.each(paths)('matmul with the %s', (_, backend) => {
  // Odd sizes fill no 4×4 block, 64×64 tile or quad of k; K % 4 ≠ 0 takes the element-wise reads.
  it.each([
    [1, 1, 1],
    [3, 5, 7],
    [17, 33, 65],
    [63, 129, 31],
    [70, 36, 20], // K and N multiples of 4: quad-aligned reads, M past one tile of rows
  ])('matches the CPU on %i×%i×%i, b as [K, N] and as [N, K]', async (m, k, n) => {
    await expectMatmulMatches(backend, { m, k, n });
    await expectMatmulMatches(backend, { m, k, n, transposeB: true });
  });

  it.each([
    ['an encoder linear layer', { m: 268, k: 256, n: 1024, transposeB: true, bias: 'f32', activation: 'gelu' }],
    ['an f16 projection', { m: 908, k: 768, n: 768, transposeB: true, f16B: true, bias: 'f16', residual: true }],
    ['a classifier (one row)', { m: 1, k: 1024, n: 1000, transposeB: true, bias: 'f32' }],
    ['the decoder output projection (5 beams, the whole vocabulary)', { m: 5, k: 256, n: 59457, transposeB: true, f16B: true }],
    ['an f16 [K, N] weight with N % 4 ≠ 0', { m: 9, k: 64, n: 50, f16B: true, bias: 'f16', activation: 'relu' }],
  ] as [string, Case][])('matches the CPU on %s', async (_, c) => {
    await expectMatmulMatches(backend, c);
  });

  it.each([false, true])('batches a with b shared or batched (b as [N, K]: %s)', async (transposeB) => {
    await expectMatmulMatches(backend, { batch: [2, 3], m: 7, k: 12, n: 9, transposeB, bias: 'f32', residual: true });
    await expectMatmulMatches(backend, { batch: [2, 3], m: 7, k: 12, n: 9, transposeB, batchedB: true, residual: true });
    await expectMatmulMatches(backend, { batch: [4], m: 5, k: 8, n: 16, transposeB, batchedB: true, f16B: true });
  });

  // bias (none, f32, f16) × activation × residual: the epilogue is activation(x + bias) + residual.
  const epilogues = (['none', 'f32', 'f16'] as const).flatMap((bias) =>
    (['none', 'relu', 'gelu'] as const).flatMap((activation) => [false, true].map((residual) => ({ bias, activation, residual }))),
  );
  it.each(epilogues)('fuses the epilogue: bias $bias, activation $activation, residual $residual', async (e) => {
    const bias = e.bias === 'none' ? undefined : e.bias;
    await expectMatmulMatches(backend, { batch: [2], m: 6, k: 20, n: 11, transposeB: true, bias, activation: e.activation, residual: e.residual });
  });

  it('returns the epilogue of zero sums when K = 0', async () => {
    await expectMatmulMatches(backend, { m: 3, k: 0, n: 5, bias: 'f32', activation: 'gelu' });
  });

  it('refuses what the CPU refuses, with the same message', () => {
    const a = backend.upload(new Float32Array(6), [2, 3]);
    const b = backend.upload(new Float32Array(8), [4, 2]);
    expect(() => backend.matmul(a, b)).toThrow('matmul: inner dimensions differ: a [2, 3] · b [4, 2]');
    a.dispose();
    b.dispose();
  });
});
