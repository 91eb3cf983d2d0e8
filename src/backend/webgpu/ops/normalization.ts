/**
 * Wrappers of `kernels/layernorm.wgsl` and `kernels/softmax.wgsl`: one workgroup per row; in
 * chunks of rows beyond the binding limit (e.g. the log-softmax of many beams' logits).
 */
import { lastDimSizes, layerNormSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { type KernelContext, f32, u32 } from '../context.js';
import { forEachRowChunk } from './indexing.js';
import { reductionVariant, rowWorkgroupSize } from './reductions.js';

/**
 * Software adapters get a row per invocation, in workgroups of one 8-lane SIMD chunk (lavapipe: the
 * encoder's 21 layer norms in 7.4 ms of device time against 17.2 with a 64-invocation workgroup per
 * row); GPUs a workgroup per row.
 */
const ROWS_PER_WORKGROUP = 8;

export function layerNorm(ctx: KernelContext, x: Tensor, weight: Tensor, bias: Tensor, eps: number, residual?: Tensor): Tensor {
  const { rows, cols } = layerNormSizes(x, weight, bias, residual);
  const out = ctx.output(x.shape);
  const perInvocation = ctx.capabilities.software;
  const constants = {
    WORKGROUP_SIZE: perInvocation ? ROWS_PER_WORKGROUP : rowWorkgroupSize(ctx),
    HAS_RESIDUAL: Number(residual !== undefined),
    COLS_ALIGNED: Number(cols % 4 === 0),
  };
  const operands = [
    { tensor: x, rowElements: cols },
    { tensor: weight, rowElements: 0 },
    { tensor: bias, rowElements: 0 },
    { tensor: residual ?? ctx.placeholder('f32'), rowElements: residual ? cols : 0 },
    { tensor: out, rowElements: cols, written: true },
  ];
  const variant = reductionVariant(ctx, 'layernorm', perInvocation ? 'row_per_invocation' : 'main', { WeightType: weight, BiasType: bias }, constants);
  forEachRowChunk(ctx, 'layerNorm', rows, operands, (chunk) => {
    ctx.record({
      variant,
      params: [u32(chunk.rows), u32(cols), f32(eps)],
      bindings: chunk.bindings,
      workgroups: ctx.grid(perInvocation ? Math.ceil(chunk.rows / ROWS_PER_WORKGROUP) : chunk.rows),
    });
  });
  return out;
}

/** Softmax over the last dimension, or log-softmax when `log`. */
export function softmax(ctx: KernelContext, x: Tensor, log: boolean): Tensor {
  const { rows, cols } = lastDimSizes(log ? 'logSoftmax' : 'softmax', x);
  const out = ctx.output(x.shape);
  const constants = { WORKGROUP_SIZE: rowWorkgroupSize(ctx), LOG: log ? 1 : 0 };
  const operands = [
    { tensor: x, rowElements: cols },
    { tensor: out, rowElements: cols, written: true },
  ];
  forEachRowChunk(ctx, log ? 'logSoftmax' : 'softmax', rows, operands, (chunk) => {
    ctx.record({
      variant: reductionVariant(ctx, 'softmax', 'main', { Element: x }, constants),
      params: [u32(chunk.rows), u32(cols)],
      bindings: chunk.bindings,
      workgroups: ctx.grid(chunk.rows),
    });
  });
  return out;
}
