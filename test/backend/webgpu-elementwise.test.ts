/**
 * Elementwise ops and data movement on WebGPU against the CPU backend: add/mul with suffix
 * broadcast (f32 and f16 operands), scale, GELU, ReLU; gather, slice, concat, transpose and the
 * relative position bias for f32, f16 and i32 tensors. Data movement is exact; arithmetic is f32 on both sides (GELU on the
 * device takes Φ from an erfc fit with relative error < 1.2e-7; the CPU's erfc is exact to f64).
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { floatsToHalves } from '../../src/half.js';
import { type Shape, type Tensor, sizeOf } from '../../src/tensor.js';
import { expectClose } from '../helpers/compare.js';
import { createRng, randomFloats, randomInts } from '../helpers/random.js';
import { webgpuBackend } from '../helpers/webgpu.js';
import { evaluate } from '../helpers/evaluate.js';

const cpu = new CpuBackend();
const gpu = await webgpuBackend();

async function expectSameOnBoth(op: (b: Backend) => Tensor, tolerance: { atol?: number; rtol?: number }, label: string): Promise<void> {
  expectClose(await evaluate(gpu, op), await evaluate(cpu, op), tolerance, label);
}

const EXACT = { atol: 0 };

describe('elementwise', () => {
  // One f32 rounding per element on both sides: identical results.
  it.each([
    [[7], [7]],
    [[3, 5], [5]],
    [[2, 3, 257], [3, 257]],
    [[1000, 13], [13]],
  ] as [Shape, Shape][])('add and mul broadcast %j by %j', async (aShape, bShape) => {
    const rng = createRng(sizeOf(aShape));
    const a = randomFloats(sizeOf(aShape), rng, -3, 3);
    const b = randomFloats(sizeOf(bShape), rng, -3, 3);
    await expectSameOnBoth((k) => k.add(k.upload(a, aShape), k.upload(b, bShape)), EXACT, 'add');
    await expectSameOnBoth((k) => k.mul(k.upload(a, aShape), k.upload(b, bShape)), EXACT, 'mul');
  });

  it('adds an f16 operand (a bias stored as half precision)', async () => {
    const rng = createRng(3);
    const a = randomFloats(6 * 33, rng);
    const bias = floatsToHalves(randomFloats(33, rng));
    await expectSameOnBoth((k) => k.add(k.upload(a, [6, 33]), k.upload(bias, [33], 'f16')), EXACT, 'add f16');
  });

  it('scales, applies ReLU and exact GELU', async () => {
    const rng = createRng(4);
    const x = randomFloats(4099, rng, -8, 8);
    await expectSameOnBoth((k) => k.scale(k.upload(x, [4099]), 0.125), EXACT, 'scale');
    await expectSameOnBoth((k) => k.relu(k.upload(x, [4099])), EXACT, 'relu');
    // Relative error of Φ below 1.2e-7, plus f32 rounding of x·Φ.
    await expectSameOnBoth((k) => k.gelu(k.upload(x, [4099])), { atol: 4e-7, rtol: 1e-6 }, 'gelu');
  });

  it('covers more elements than one dispatch dimension holds (2-D grids)', async () => {
    const n = 65535 * 256 + 77;
    const x = new Float32Array(n).map((_, i) => (i % 1000) - 500);
    const out = await evaluate(gpu, (k) => k.relu(k.upload(x, [n])));
    expect(out[n - 1]).toBe(Math.max(x[n - 1]!, 0));
    expect(out[65535 * 256]).toBe(Math.max(x[65535 * 256]!, 0));
  });
});

describe('data movement', () => {
  it('gathers rows of f32 and f16 tables (embedding lookups)', async () => {
    const rng = createRng(5);
    const table = randomFloats(37 * 19, rng);
    const ids = Int32Array.from(randomInts(23, 0, 37, rng));
    await expectSameOnBoth((k) => k.gather(k.upload(table, [37, 19]), k.upload(ids, [23])), EXACT, 'gather f32');
    const half = floatsToHalves(table);
    await expectSameOnBoth((k) => k.gather(k.upload(half, [37, 19], 'f16'), k.upload(ids, [23])), EXACT, 'gather f16');
    await expectSameOnBoth((k) => k.gather(k.upload(table, [37, 19]), k.upload(ids, [1, 23])), EXACT, 'gather [1, n] ids');
  });

  it.each([
    [[10], 0, 3, 9],
    [[4, 9, 5], 1, 2, 7],
    [[4, 9, 5], 2, 0, 1],
    [[4, 9, 5], 0, 4, 4],
    // Every offset a multiple of 4 elements: copied by vec4s.
    [[3, 8, 12], 1, 4, 8],
    [[6, 16], 0, 2, 5],
  ] as [Shape, number, number, number][])('slices %j along %i from %i to %i', async (shape, axis, start, end) => {
    const x = randomFloats(sizeOf(shape), createRng(6));
    await expectSameOnBoth((k) => k.slice(k.upload(x, shape), axis, start, end), EXACT, 'slice');
  });

  it('concatenates along each axis, f32 and i32', async () => {
    const rng = createRng(7);
    const a = randomFloats(2 * 3 * 4, rng);
    const b = randomFloats(2 * 5 * 4, rng);
    await expectSameOnBoth((k) => k.concat([k.upload(a, [2, 3, 4]), k.upload(b, [2, 5, 4]), k.upload(a, [2, 3, 4])], 1), EXACT, 'concat axis 1');
    await expectSameOnBoth((k) => k.concat([k.upload(a, [2, 12]), k.upload(a, [2, 12])], 0), EXACT, 'concat axis 0');
    const halves = floatsToHalves(b);
    await expectSameOnBoth((k) => k.concat([k.upload(halves, [2, 5, 4], 'f16'), k.upload(halves, [2, 5, 4], 'f16')], 1), EXACT, 'concat f16 by vec4s');
    const ids = Int32Array.from({ length: 6 }, (_, i) => i - 3);
    const joined = await evaluate(gpu, (k) => k.concat([k.upload(ids, [2, 3]), k.upload(ids, [2, 3])], -1));
    expect(Array.from(joined)).toEqual([-3, -2, -1, -3, -2, -1, 0, 1, 2, 0, 1, 2]);
  });

  it.each([
    [[5, 7], [1, 0]],
    [[3, 4, 5], [1, 0, 2]],
    [[3, 4, 5], [2, 0, 1]],
    [[2, 3, 4, 5], [0, 2, 1, 3]],
    [[2, 3, 4, 5], [3, 2, 1, 0]],
  ] as [Shape, number[]][])('transposes %j by %j', async (shape, perm) => {
    const x = randomFloats(sizeOf(shape), createRng(8));
    await expectSameOnBoth((k) => k.transpose(k.upload(x, shape), perm), EXACT, 'transpose');
    const half = floatsToHalves(x);
    await expectSameOnBoth((k) => k.transpose(k.upload(half, shape, 'f16'), perm), EXACT, 'transpose f16');
  });

  // Tq·Tk odd (the last quad partial) and a multiple of 4; f32 and f16 tables; with and without a base.
  it.each([
    [3, 1, 5, 41],
    [4, 7, 9, 30],
    [4, 268, 268, 800],
  ])('looks up a relative position bias of %i heads over [%i, %i] in %i rows, heads first', async (heads, tq, tk, rows) => {
    const rng = createRng(heads * tq * tk);
    const table = randomFloats(rows * heads, rng);
    const index = Int32Array.from(randomInts(tq * tk, 0, rows, rng));
    const base = randomFloats(heads * tq * tk, rng, -4, 4);
    const lookup = (k: Backend, dtype: 'f32' | 'f16', withBase: boolean): Tensor =>
      k.relativeBias(
        dtype === 'f16' ? k.upload(floatsToHalves(table), [rows, heads], 'f16') : k.upload(table, [rows, heads]),
        k.upload(index, [tq, tk]),
        withBase ? k.upload(base, [heads, tq, tk]) : undefined,
      );
    // A lookup is exact; with a base, one f32 addition on both sides.
    for (const dtype of ['f32', 'f16'] as const) {
      for (const withBase of [false, true]) await expectSameOnBoth((k) => lookup(k, dtype, withBase), EXACT, `relativeBias ${dtype}${withBase ? ' + base' : ''}`);
    }
  });
});

describe('backend lifecycle', () => {
  it('reads back f16 and odd-length uploads unchanged', async () => {
    const values = new Float32Array([0.5, -2, 1024, 3]).subarray(0, 3);
    const t = gpu.upload(floatsToHalves(values), [3], 'f16');
    expect(Array.from(await t.read())).toEqual([0.5, -2, 1024]);
    t.dispose();
  });

  it('tidy frees intermediates and keeps the result', async () => {
    const before = gpu.memory.bytesInUse;
    const kept = gpu.tidy(() => {
      const x = gpu.upload(new Float32Array([1, -2, 3]), [3]);
      return gpu.relu(gpu.scale(x, 2));
    });
    expect(Array.from(await kept.read())).toEqual([2, 0, 6]);
    kept.dispose();
    expect(gpu.memory.bytesInUse).toBe(before);
  });

  it('refuses to read a disposed tensor', async () => {
    const t = gpu.upload(new Float32Array([1]), [1]);
    t.dispose();
    await expect(gpu.read(t)).rejects.toThrow(/disposed/);
  });

  it('reports shape errors like the CPU backend', () => {
    const a = gpu.upload(new Float32Array(6), [2, 3]);
    const b = gpu.upload(new Float32Array(4), [4]);
    expect(() => gpu.add(a, b)).toThrow(/cannot broadcast \[4\] to \[2, 3\]/);
    expect(() => cpu.add(cpu.upload(new Float32Array(6), [2, 3]), cpu.upload(new Float32Array(4), [4]))).toThrow(/cannot broadcast \[4\] to \[2, 3\]/);
  });
});
