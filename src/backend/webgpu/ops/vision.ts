/**
 * conv2d as an implicit GEMM on the core kernels of `matmul.ts` (operands from
 * `kernels/conv2d.wgsl`), or for 3×3 convolutions with stride 1 and padding 1 (most of ResNet's
 * 3×3s) by Winograd's F(2×2, 3×3) around batched matmuls (`kernels/winograd.wgsl`); and max
 * pooling (`kernels/pool.wgsl`).
 */
import type { Conv2dOptions, Pool2dOptions } from '../../backend.js';
import { type Conv2dSizes, conv2dSizes, pool2dSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { roundedSize } from '../buffer-pool.js';
import { type KernelContext, u32 } from '../context.js';
import type { KernelVariant } from '../kernels.js';
import { forEachRowChunk } from './indexing.js';
import { matmul, recordGemm } from './matmul.js';
import { operandVariant } from './types.js';

const POOL_WORKGROUP_SIZE = 64;
const WINOGRAD_WORKGROUP_SIZE = 64;

/** out[b] = w [Cout, Cin·kh·kw] · im2col(x[b]) [Cin·kh·kw, Ho·Wo], with bias, residual and ReLU fused. */
export function conv2d(ctx: KernelContext, x: Tensor, w: Tensor, options: Conv2dOptions = {}): Tensor {
  const s = conv2dSizes(x, w, options);
  if (winogradFits(ctx, s, x)) return winogradConv2d(ctx, x, w, options, s);
  const k = s.cin * s.kh * s.kw;
  const n = s.ho * s.wo;
  const pointwise = s.kh === 1 && s.kw === 1 && s.stride === 1 && s.padding === 0;
  const out = ctx.output(s.outShape);
  // Images whose activations exceed a binding together (a batch of large images) run in chunks of images.
  const operands = [
    { tensor: x, rowElements: s.cin * s.h * s.w },
    { tensor: out, rowElements: s.cout * n, written: true },
    { tensor: options.residual ?? ctx.placeholder('f32'), rowElements: options.residual ? s.cout * n : 0 },
  ];
  forEachRowChunk(ctx, 'conv2d', s.batch, operands, ({ rows, bindings: [images, outputs, residual] }) => {
    recordGemm(ctx, {
      file: 'conv2d',
      batch: rows,
      m: s.cout,
      n,
      k,
      params: [u32(s.h), u32(s.w), u32(s.wo), u32(s.cin * s.h * s.w)],
      a: w,
      b: images!,
      operandTypes: { WeightType: w },
      constants: {
        KERNEL_H: s.kh,
        KERNEL_W: s.kw,
        STRIDE: s.stride,
        PADDING: s.padding,
        K_ALIGNED: Number(k % 4 === 0),
        POINTWISE_ALIGNED: Number(pointwise && n % 4 === 0),
      },
      transposeB: false,
      bias: options.bias,
      biasPerRow: true,
      residual: options.residual && residual,
      residualBeforeActivation: true,
      activation: options.activation ?? 'none',
      outShape: s.outShape,
      out: outputs,
    });
  });
  return out;
}

/** The tiles of Winograd's F(2×2, 3×3) over the images of `s`, padded to whole quads (one vec4 per 4 tiles). */
function winogradTiles(s: Conv2dSizes): { high: number; wide: number; count: number; padded: number } {
  const high = Math.ceil(s.h / 2);
  const wide = Math.ceil(s.w / 2);
  const count = s.batch * high * wide;
  return { high, wide, count, padded: Math.ceil(count / 4) * 4 };
}

/** A 3×3 convolution with stride 1 and padding 1 whose transformed operands each fit one binding. */
function winogradFits(ctx: KernelContext, s: Conv2dSizes, x: Tensor): boolean {
  if (s.kh !== 3 || s.kw !== 3 || s.stride !== 1 || s.padding !== 1) return false;
  const tiles = winogradTiles(s).padded;
  const largest = 16 * 4 * Math.max(s.cout * s.cin, s.cin * tiles, s.cout * tiles);
  const fits = (bytes: number): boolean => roundedSize(bytes) <= ctx.maxBindingBytes;
  return fits(largest) && fits(x.size * 4) && fits(s.batch * s.cout * s.ho * s.wo * 4);
}

/**
 * Winograd's F(2×2, 3×3): the filters and the input transformed into 16 planes, one batched matmul
 * `[16, Cout, Cin] · [16, Cin, T]` over the channels, and the products transformed back into
 * 2×2 output tiles with the bias, shortcut and ReLU (kernels/winograd.wgsl). 2.25× fewer
 * multiplications than the implicit GEMM, for 4 dispatches instead of 1 and the transformed
 * operands (4× the input and output) in memory.
 */
function winogradConv2d(ctx: KernelContext, x: Tensor, w: Tensor, options: Conv2dOptions, s: Conv2dSizes): Tensor {
  const tiles = winogradTiles(s);
  const { bias, residual } = options;
  const variant = (entryPoint: string): KernelVariant => ({
    file: 'winograd',
    entryPoint,
    ...operandVariant({ WeightType: w, BiasType: bias ?? ctx.placeholder('f32') }),
    constants: { WORKGROUP_SIZE: WINOGRAD_WORKGROUP_SIZE },
  });
  const record = (entryPoint: string, size: number, channels: number, bindings: Tensor[]): void =>
    ctx.record({
      variant: variant(entryPoint),
      params: [size, channels, s.cout, s.h, s.w, tiles.high, tiles.wide, tiles.count, tiles.padded, Number(bias !== undefined), Number(residual !== undefined), Number(options.activation === 'relu')].map(u32),
      bindings,
      workgroups: ctx.grid(Math.ceil(size / WINOGRAD_WORKGROUP_SIZE)),
    });
  const filters = ctx.output([16, s.cout, s.cin]);
  record('filter_transform', s.cout * s.cin, s.cin, [w, filters]);
  const input = ctx.output([16, s.cin, tiles.padded]);
  record('input_transform', (s.cin * tiles.padded) / 4, s.cin, [x, input]);
  const products = matmul(ctx, filters, input);
  filters.dispose();
  input.dispose();
  const out = ctx.output(s.outShape);
  record('output_transform', (s.cout * tiles.padded) / 4, s.cout, [products, bias ?? ctx.placeholder('f32'), residual ?? ctx.placeholder('f32'), out]);
  products.dispose();
  return out;
}

export function maxPool2d(ctx: KernelContext, x: Tensor, options: Pool2dOptions): Tensor {
  const s = pool2dSizes(x, options);
  const out = ctx.output(s.outShape);
  const operands = [
    { tensor: x, rowElements: s.h * s.w },
    { tensor: out, rowElements: s.ho * s.wo, written: true },
  ];
  forEachRowChunk(ctx, 'maxPool2d', s.planes, operands, ({ rows: planes, bindings }) => {
    const size = planes * s.ho * s.wo;
    ctx.record({
      variant: {
        file: 'pool',
        entryPoint: 'max_pool',
        constants: { KERNEL: options.kernel, STRIDE: options.stride, PADDING: options.padding, WORKGROUP_SIZE: POOL_WORKGROUP_SIZE },
      },
      params: [u32(size), u32(s.h), u32(s.w), u32(s.ho), u32(s.wo)],
      bindings,
      workgroups: ctx.grid(Math.ceil(size / POOL_WORKGROUP_SIZE)),
    });
  });
  return out;
}
