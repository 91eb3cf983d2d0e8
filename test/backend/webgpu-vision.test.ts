/**
 * conv2d and maxPool2d on WebGPU against the CPU backend on seeded random data: 1×1, 3×3 and the
 * 7×7 stem, strides 1 and 2, odd spatial sizes, ResNet's fused bias / shortcut / ReLU, f16 filters.
 * 3×3 convolutions with stride 1 and padding 1 run as Winograd's F(2×2, 3×3): odd sizes leave
 * partial 2×2 tiles at the edges, and tile counts that are not a multiple of 4 pad the transforms.
 * conv2d runs on both GEMM kernels, like matmul's tests: the adapter's own choice (register
 * blocking on lavapipe) and the workgroup-memory tiling of GPUs, forced by a second backend on
 * the same device whose capabilities claim a hardware adapter.
 */
import { describe, expect, it } from 'vitest';
import type { Backend, Conv2dOptions, Pool2dOptions } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { floatsToHalves } from '../../src/half.js';
import type { Tensor } from '../../src/tensor.js';
import { expectClose } from '../helpers/compare.js';
import { createRng, randomFloats } from '../helpers/random.js';
import { gemmPaths, webgpuBackend } from '../helpers/webgpu.js';
import { evaluate } from '../helpers/evaluate.js';

const cpu = new CpuBackend();
const gpu = await webgpuBackend();
const paths = await gemmPaths();

/**
 * Inputs and filters are uniform in [−1, 1); each output sums K = Cin·kh·kw ≤ 1152 products, in
 * f32 here and f64 on the CPU: rounding error ~2⁻²⁴·K/7 ≤ 2e-5, so atol 1e-4 + rtol 1e-4 as for matmul.
 */
const TOLERANCE = { atol: 1e-4, rtol: 1e-4 };

interface ConvCase {
  /** x: [B, Cin, H, W]. */
  x: [number, number, number, number];
  cout: number;
  kernel: number;
  stride?: number;
  padding?: number;
  bias?: 'f32' | 'f16';
  residual?: boolean;
  relu?: boolean;
  f16Weights?: boolean;
}

async function expectConvMatches(backend: Backend, c: ConvCase): Promise<void> {
  const label = JSON.stringify(c);
  const rng = createRng([...label].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) >>> 0, 5));
  const [batch, cin, h, w] = c.x;
  const stride = c.stride ?? 1;
  const padding = c.padding ?? 0;
  const ho = Math.floor((h + 2 * padding - c.kernel) / stride) + 1;
  const wo = Math.floor((w + 2 * padding - c.kernel) / stride) + 1;
  const x = randomFloats(batch * cin * h * w, rng);
  const weights = randomFloats(c.cout * cin * c.kernel * c.kernel, rng);
  const bias = c.bias && randomFloats(c.cout, rng);
  const residual = c.residual ? randomFloats(batch * c.cout * ho * wo, rng) : undefined;
  const wShape = [c.cout, cin, c.kernel, c.kernel];
  const op = (be: Backend): Tensor => {
    const options: Conv2dOptions = { stride, padding, activation: c.relu ? 'relu' : 'none' };
    if (bias) options.bias = c.bias === 'f16' ? be.upload(floatsToHalves(bias), [c.cout], 'f16') : be.upload(bias, [c.cout]);
    if (residual) options.residual = be.upload(residual, [batch, c.cout, ho, wo]);
    const filter = c.f16Weights ? be.upload(floatsToHalves(weights), wShape, 'f16') : be.upload(weights, wShape);
    return be.conv2d(be.upload(x, c.x), filter, options);
  };
  const actual = await evaluate(backend, op);
  expect(actual.length).toBe(batch * c.cout * ho * wo);
  expectClose(actual, await evaluate(cpu, op), TOLERANCE, `conv2d ${label}`);
}

describe.each(paths)('conv2d with the %s', (_, backend) => {
  it.each([
    ['1×1 (a plain matmul per image: H·W % 4 = 0)', { x: [2, 12, 6, 10], cout: 20, kernel: 1 }],
    ['1×1 on an odd image', { x: [1, 9, 5, 7], cout: 6, kernel: 1 }],
    ['1×1 with stride 2 (ResNet’s downsampling shortcut)', { x: [2, 16, 9, 11], cout: 24, kernel: 1, stride: 2 }],
    ['3×3, stride 1, padding 1', { x: [1, 8, 13, 11], cout: 12, kernel: 3, padding: 1 }],
    ['3×3, stride 2, padding 1', { x: [2, 5, 15, 12], cout: 7, kernel: 3, stride: 2, padding: 1 }],
    ['the 7×7 stem: stride 2, padding 3 on 3 channels', { x: [1, 3, 33, 29], cout: 16, kernel: 7, stride: 2, padding: 3 }],
    ['3×3 without padding', { x: [1, 4, 7, 9], cout: 5, kernel: 3 }],
    ['3×3 Winograd on a batch of odd images (75 tiles), f16 filter and bias', { x: [3, 5, 9, 9], cout: 6, kernel: 3, padding: 1, f16Weights: true, bias: 'f16', residual: true, relu: true }],
    ['3×3 Winograd on a 1×1 image (one partial tile)', { x: [1, 7, 1, 1], cout: 3, kernel: 3, padding: 1 }],
  ] as [string, ConvCase][])('matches the CPU on %s', async (_, c) => {
    await expectConvMatches(backend, c);
  });

  it.each([
    ['a bottleneck’s 1×1 expansion', { x: [1, 64, 15, 15], cout: 256, kernel: 1, bias: 'f32', residual: true, relu: true }],
    ['a stage-2 3×3', { x: [1, 128, 16, 16], cout: 128, kernel: 3, padding: 1, bias: 'f32', relu: true }],
    ['a 1×1 reduction with f16 filter and bias', { x: [1, 256, 12, 12], cout: 64, kernel: 1, bias: 'f16', relu: true, f16Weights: true }],
  ] as [string, ConvCase][])('matches the CPU on ResNet shapes: %s', async (_, c) => {
    await expectConvMatches(backend, c);
  });

  // The shortcut is added before the ReLU (ResNet), after the bias.
  it.each([
    { bias: undefined, residual: false, relu: true },
    { bias: 'f32', residual: false, relu: false },
    { bias: undefined, residual: true, relu: false },
    { bias: 'f32', residual: true, relu: true },
    { bias: 'f16', residual: true, relu: true },
  ] as Pick<ConvCase, 'bias' | 'residual' | 'relu'>[])('fuses bias $bias, residual $residual, ReLU $relu', async (epilogue) => {
    await expectConvMatches(backend, { x: [2, 6, 7, 5], cout: 9, kernel: 3, padding: 1, ...epilogue });
  });

  it('refuses what the CPU refuses, with the same message', () => {
    const x = backend.upload(new Float32Array(2 * 3 * 4 * 4), [2, 3, 4, 4]);
    const w = backend.upload(new Float32Array(5 * 2 * 3 * 3), [5, 2, 3, 3]);
    expect(() => backend.conv2d(x, w)).toThrow('conv2d: x has 3 channels but w expects 2');
    x.dispose();
    w.dispose();
  });
});

describe('maxPool2d', () => {
  // Selection does no arithmetic: exact. All-negative inputs would lose to zero padding if it were read.
  it.each([
    [[1, 1, 1, 1], { kernel: 1, stride: 1, padding: 0 }],
    [[2, 3, 9, 7], { kernel: 3, stride: 2, padding: 1 }],
    [[1, 4, 8, 8], { kernel: 2, stride: 2, padding: 0 }],
    [[1, 2, 6, 5], { kernel: 3, stride: 1, padding: 1 }],
    [[1, 64, 31, 29], { kernel: 3, stride: 2, padding: 1 }],
  ] as [[number, number, number, number], Pool2dOptions][])('matches the CPU on %j with %j; padding never wins', async (shape, options) => {
    const size = shape.reduce((p, d) => p * d, 1);
    const x = randomFloats(size, createRng(size), -2, -1);
    const op = (be: Backend) => be.maxPool2d(be.upload(x, shape), options);
    const actual = await evaluate(gpu, op);
    expect(actual.every((v) => v < 0)).toBe(true);
    expect(actual).toEqual(await evaluate(cpu, op));
  });
});
