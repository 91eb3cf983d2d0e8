/**
 * conv2d as an implicit GEMM on the core kernels of `matmul.ts` (operands from
 * `kernels/conv2d.wgsl`), and max pooling (`kernels/pool.wgsl`).
 */
import type { Conv2dOptions, Pool2dOptions } from '../../backend.js';
import { conv2dSizes, pool2dSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { type KernelContext, u32 } from '../context.js';
import { forEachRowChunk } from './indexing.js';
import { recordGemm } from './matmul.js';

const POOL_WORKGROUP_SIZE = 64;

/** out[b] = w [Cout, Cin·kh·kw] · im2col(x[b]) [Cin·kh·kw, Ho·Wo], with bias, residual and ReLU fused. */
export function conv2d(ctx: KernelContext, x: Tensor, w: Tensor, options: Conv2dOptions = {}): Tensor {
  const s = conv2dSizes(x, w, options);
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
