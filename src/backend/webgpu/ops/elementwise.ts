/** Wrapper of `kernels/elementwise.wgsl`: add, mul (with suffix broadcast), scale, GELU, ReLU. */
import { broadcastSizes, elementwiseSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { type KernelContext, f32, u32 } from '../context.js';
import { operandVariant } from './types.js';

const OPS = { add: 0, mul: 1, scale: 2, gelu: 3, relu: 4 } as const;
const WORKGROUP_SIZE = 256;

function run(ctx: KernelContext, op: keyof typeof OPS, a: Tensor, b: Tensor, inner: number, scalar: number): Tensor {
  const out = ctx.output(a.shape);
  ctx.record({
    variant: { file: 'elementwise', entryPoint: 'main', ...operandVariant({ OperandType: b }), constants: { OP: OPS[op], WORKGROUP_SIZE }, include: ['activation'] },
    params: [u32(a.size), u32(inner), f32(scalar)],
    bindings: [a, b, out],
    workgroups: ctx.grid(Math.ceil(a.size / WORKGROUP_SIZE)),
  });
  return out;
}

export function binary(ctx: KernelContext, op: 'add' | 'mul', a: Tensor, b: Tensor): Tensor {
  const { inner } = broadcastSizes(op, a, b);
  return run(ctx, op, a, b, Math.max(inner, 1), 0);
}

export function unary(ctx: KernelContext, op: 'scale' | 'gelu' | 'relu', x: Tensor, scalar = 0): Tensor {
  elementwiseSizes(op, x);
  return run(ctx, op, x, ctx.placeholder('f32'), 1, scalar);
}
