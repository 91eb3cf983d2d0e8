/** Wrappers of `kernels/layernorm.wgsl` and `kernels/softmax.wgsl`: one workgroup per row. */
import { lastDimSizes, layerNormSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { type KernelContext, f32, u32 } from '../context.js';
import { reductionVariant, rowWorkgroupSize } from './reductions.js';

export function layerNorm(ctx: KernelContext, x: Tensor, weight: Tensor, bias: Tensor, eps: number): Tensor {
  const { rows, cols } = layerNormSizes(x, weight, bias);
  const out = ctx.output(x.shape);
  const constants = { WORKGROUP_SIZE: rowWorkgroupSize(ctx) };
  ctx.record({
    variant: reductionVariant(ctx, 'layernorm', 'main', { WeightType: weight, BiasType: bias }, constants),
    params: [u32(rows), u32(cols), f32(eps)],
    bindings: [x, weight, bias, out],
    workgroups: ctx.grid(rows),
  });
  return out;
}

/** Softmax over the last dimension, or log-softmax when `log`. */
export function softmax(ctx: KernelContext, x: Tensor, log: boolean): Tensor {
  const { rows, cols } = lastDimSizes(log ? 'logSoftmax' : 'softmax', x);
  const out = ctx.output(x.shape);
  const constants = { WORKGROUP_SIZE: rowWorkgroupSize(ctx), LOG: log ? 1 : 0 };
  ctx.record({
    variant: reductionVariant(ctx, 'softmax', 'main', { Element: x }, constants),
    params: [u32(rows), u32(cols)],
    bindings: [x, out],
    workgroups: ctx.grid(rows),
  });
  return out;
}
