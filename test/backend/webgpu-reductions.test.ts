/**
 * Row reductions on WebGPU against the CPU backend: layer norm, softmax, log-softmax, argmax,
 * top-k and cosine similarity, on seeded random data of odd sizes. Every test runs twice: with the
 * subgroup reductions (lavapipe has subgroups) and with the workgroup-memory fallback, forced by a
 * second backend on the same device whose capabilities deny subgroups.
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { WebGpuBackend } from '../../src/backend/webgpu/index.js';
import { floatsToHalves } from '../../src/half.js';
import type { HostArray, Shape } from '../../src/tensor.js';
import { expectClose } from '../helpers/compare.js';
import { type Rng, createRng, randomFloats } from '../helpers/random.js';
import { webgpuBackend, webgpuBackendWith } from '../helpers/webgpu.js';
import { evaluate } from '../helpers/evaluate.js';

const cpu = new CpuBackend();
const gpu = await webgpuBackend();
const fallback = await webgpuBackendWith({ subgroups: false });
const paths: [string, WebGpuBackend][] = [['workgroup-memory reductions', fallback]];
if (gpu.capabilities.subgroups) paths.unshift(['subgroup reductions', gpu]);
/** Layer norm's layouts: the adapter's own (a row per invocation on lavapipe) and a GPU's workgroup per row, with either reduction. */
const layerNormLayouts: [string, WebGpuBackend][] = [
  [gpu.capabilities.software ? 'a row per invocation (software adapters)' : 'the adapter’s layout', gpu],
  ['a workgroup per row and subgroup reductions', await webgpuBackendWith({ software: false })],
  ['a workgroup per row and workgroup-memory reductions', await webgpuBackendWith({ software: false, subgroups: false })],
];

/** Runs topk on `backend` and reads values and indices back. */
async function evaluateTopk(backend: Backend, x: Float32Array, shape: Shape, k: number): Promise<[HostArray, HostArray]> {
  const result = backend.tidy(() => backend.topk(backend.upload(x, shape), k));
  try {
    return [await result.values.read(), await result.indices.read()];
  } finally {
    result.values.dispose();
    result.indices.dispose();
  }
}

/** Uniform values in [−scale, scale) + offset. */
function values(n: number, rng: Rng, scale = 1, offset = 0): Float32Array {
  return randomFloats(n, rng, offset - scale, offset + scale);
}

/** Values on a coarse grid (multiples of 1/8 in [−2, 2)), so that rows are full of ties. */
function tiedValues(n: number, rng: Rng): Float32Array {
  return values(n, rng, 2).map((x) => Math.floor(x * 8) / 8);
}

/** [rows, cols] shapes from one column up to the vocabulary (59457). */
const ROW_SHAPES: Shape[] = [[3, 1], [4, 7], [5, 257], [2, 1000], [3, 59457]];

describe.each(layerNormLayouts)('layerNorm with %s', (_, backend) => {
  // O(1) outputs: f32 rounding in mean, variance and the affine map stays below 1e-5.
  const TOLERANCE = { atol: 1e-5, rtol: 1e-5 };

  it.each([[[3, 1]], [[4, 7]], [[2, 3, 257]], [[6, 768]], [[2, 1280]]] as [Shape][])('matches the CPU on %j', async (shape) => {
    const rng = createRng(shape.reduce((p, d) => p * d, 1));
    const cols = shape[shape.length - 1]!;
    const x = values(shape.reduce((p, d) => p * d, 1), rng, 3);
    const weight = values(cols, rng, 1, 1);
    const bias = values(cols, rng);
    const op = (b: Backend) => b.layerNorm(b.upload(x, shape), b.upload(weight, [cols]), b.upload(bias, [cols]), 1e-5);
    expectClose(await evaluate(backend, op), await evaluate(cpu, op), TOLERANCE, `layerNorm ${JSON.stringify(shape)}`);
  });

  it('stays accurate when the mean dwarfs the spread (two-pass variance)', async () => {
    const rng = createRng(11);
    const x = values(4 * 1000, rng, 0.01, 300);
    const ones = new Float32Array(1000).fill(1);
    const zeros = new Float32Array(1000);
    const op = (b: Backend) => b.layerNorm(b.upload(x, [4, 1000]), b.upload(ones, [1000]), b.upload(zeros, [1000]), 1e-5);
    // Rounding the mean to f32 (an ulp of 300 is 3e-5, 5e-3 of the std 0.0058) would fail this.
    expectClose(await evaluate(backend, op), await evaluate(cpu, op), { atol: 2e-5 }, 'layerNorm of offset rows');
  });

  it.each([[[3, 5]], [[2, 3, 256]], [[7, 1024]]] as [Shape][])('adds a residual after normalising, on %j', async (shape) => {
    const rng = createRng(shape.reduce((p, d) => p * d, 5));
    const size = shape.reduce((p, d) => p * d, 1);
    const cols = shape[shape.length - 1]!;
    const [x, residual] = [values(size, rng, 3), values(size, rng, 2)];
    const [weight, bias] = [values(cols, rng, 1, 1), values(cols, rng)];
    const op = (b: Backend) => b.layerNorm(b.upload(x, shape), b.upload(weight, [cols]), b.upload(bias, [cols]), 1e-5, b.upload(residual, shape));
    expectClose(await evaluate(backend, op), await evaluate(cpu, op), TOLERANCE, `layerNorm + residual ${JSON.stringify(shape)}`);
  });

  it('reads f16 weight and bias', async () => {
    const rng = createRng(12);
    const x = values(5 * 768, rng, 2);
    const weight = floatsToHalves(values(768, rng, 1, 1));
    const bias = floatsToHalves(values(768, rng));
    const op = (b: Backend) => b.layerNorm(b.upload(x, [5, 768]), b.upload(weight, [768], 'f16'), b.upload(bias, [768], 'f16'), 1e-5);
    expectClose(await evaluate(backend, op), await evaluate(cpu, op), TOLERANCE, 'layerNorm with f16 affine parameters');
  });
});

describe.each(paths)('%s', (_, backend) => {
  describe('softmax and logSoftmax', () => {
    it.each(ROW_SHAPES)('match the CPU on [%i, %i]', async (rows, cols) => {
      const rng = createRng(rows * cols + 1);
      const shape = [rows, cols];
      const x = values(rows * cols, rng, 10);
      const softmax = (b: Backend) => b.softmax(b.upload(x, shape));
      const logSoftmax = (b: Backend) => b.logSoftmax(b.upload(x, shape));
      // Probabilities ≤ 1: relative f32 rounding of exp and the sum, about 1e-6 of each value.
      expectClose(await evaluate(backend, softmax), await evaluate(cpu, softmax), { atol: 1e-7, rtol: 1e-5 }, 'softmax');
      // Log-probabilities down to about −31 (20 below the max, log 59457 ≈ 11): a few f32 ulps.
      expectClose(await evaluate(backend, logSoftmax), await evaluate(cpu, logSoftmax), { atol: 2e-5 }, 'logSoftmax');
    });

    it('ignores −∞ entries (masked tokens) and keeps them −∞ in log space', async () => {
      const x = Float32Array.from([-Infinity, 1, 2, -Infinity, 3, 0.5, -Infinity, -Infinity]);
      const softmax = (b: Backend) => b.softmax(b.upload(x, [2, 4]));
      const logSoftmax = (b: Backend) => b.logSoftmax(b.upload(x, [2, 4]));
      expectClose(await evaluate(backend, softmax), await evaluate(cpu, softmax), { atol: 1e-7, rtol: 1e-6 }, 'softmax');
      expectClose(await evaluate(backend, logSoftmax), await evaluate(cpu, logSoftmax), { atol: 1e-6 }, 'logSoftmax');
    });

    it('reads an f16 input', async () => {
      const x = floatsToHalves(values(3 * 257, createRng(13), 8));
      const op = (b: Backend) => b.logSoftmax(b.upload(x, [3, 257], 'f16'));
      expectClose(await evaluate(backend, op), await evaluate(cpu, op), { atol: 1e-5 }, 'logSoftmax of f16');
    });
  });

  describe('argmax and topk (exact: selection does no arithmetic)', () => {
    it.each(ROW_SHAPES)('argmax picks the first of tied maxima on [%i, %i]', async (rows, cols) => {
      const rng = createRng(rows * cols + 2);
      const x = tiedValues(rows * cols, rng);
      // Plant the row maximum twice, the first copy late in the row (in a later span of long rows).
      for (let r = 0; r < rows; r++) {
        const first = Math.floor(cols * 0.7);
        x[r * cols + first] = 5;
        x[r * cols + cols - 1] = 5;
      }
      const op = (b: Backend) => b.argmax(b.upload(x, [rows, cols]));
      const actual = await evaluate(backend, op);
      expect(actual).toEqual(await evaluate(cpu, op));
      expect(actual).toBeInstanceOf(Int32Array);
    });

    it('argmax of a vector is a scalar', async () => {
      const result = backend.tidy(() => backend.argmax(backend.upload(Float32Array.from([1, 3, 2, 3]), [4])));
      expect(result.shape).toEqual([]);
      expect(Array.from(await result.read())).toEqual([1]);
      result.dispose();
    });

    const TOPK_CASES: [number, number, number][] = [
      [4, 7, 1],
      [4, 7, 7],
      [3, 257, 3],
      [2, 1000, 10],
      [3, 59457, 10],
      [1, 5 * 59457, 10], // beam search: 2·beam over beam·vocabulary
    ];

    it.each(TOPK_CASES)('topk on [%i, %i] with k = %i: descending, lower index first on ties', async (rows, cols, k) => {
      const rng = createRng(rows * cols + k);
      const x = tiedValues(rows * cols, rng);
      const [values, indices] = await evaluateTopk(backend, x, [rows, cols], k);
      const [expectedValues, expectedIndices] = await evaluateTopk(cpu, x, [rows, cols], k);
      expect(values).toEqual(expectedValues);
      expect(indices).toEqual(expectedIndices);
    });

    it('treats −0 and +0 as equal values (a tie, won by the lower index)', async () => {
      const x = Float32Array.from([-1, 0, -0, -2, -0, 0]);
      const [values, indices] = await evaluateTopk(backend, x, [2, 3], 2);
      expect(Array.from(indices)).toEqual([1, 2, 1, 2]);
      expect(values.map((v) => Object.is(v, -0) ? 1 : 0)).toEqual(Float32Array.from([0, 1, 1, 0]));
    });

    it('topk ranks −∞ entries too, after every finite value', async () => {
      const x = Float32Array.from([-Infinity, 2, -Infinity, -1, -Infinity]);
      const [values, indices] = await evaluateTopk(backend, x, [1, 5], 4);
      expect(Array.from(values)).toEqual([2, -1, -Infinity, -Infinity]);
      expect(Array.from(indices)).toEqual([1, 3, 0, 2]);
    });
  });

  describe('cosineSimilarity', () => {
    // f32 accumulation over up to 691200 products in short strided sums: relative error ~1e-6.
    const TOLERANCE = { atol: 2e-6 };

    it.each([[[2, 1]], [[3, 7]], [[5, 257]], [[1, 900, 768]], [[2, 3, 5000]]] as [Shape][])('matches the CPU on %j', async (shape) => {
      const size = shape.reduce((p, d) => p * d, 1);
      const rng = createRng(size + 3);
      const a = values(size, rng);
      // b near a, as MuE's consecutive hidden states are (similarities around 0.99).
      const b = a.map((x) => x + 0.15 * (rng() - 0.5));
      const op = (be: Backend) => be.cosineSimilarity(be.upload(a, shape), be.upload(b, shape));
      const actual = await evaluate(backend, op);
      expect(actual.length).toBe(shape[0]);
      expectClose(actual, await evaluate(cpu, op), TOLERANCE, `cosineSimilarity ${JSON.stringify(shape)}`);
    });

    it('gives 0 for a zero vector (the norms are clamped to 1e-8) and reads f16', async () => {
      const a = Float32Array.from([0, 0, 0, 1, 2, 3]);
      const b = floatsToHalves(Float32Array.from([1, 2, 3, 1, 2, 3.5]));
      const op = (be: Backend) => be.cosineSimilarity(be.upload(a, [2, 3]), be.upload(b, [2, 3], 'f16'));
      const expected = await evaluate(cpu, op);
      expect(expected[0]).toBe(0);
      expectClose(await evaluate(backend, op), expected, { atol: 1e-7 }, 'cosineSimilarity');
    });
  });
});
