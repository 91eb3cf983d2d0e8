/** Wrapper of `kernels/elementwise.wgsl`: add, mul (with suffix broadcast), scale, GELU, ReLU. */
import { broadcastSizes, elementwiseSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { type KernelContext, f32, u32 } from '../context.js';
import { forEachRowChunk } from './indexing.js';
import { operandVariant } from './types.js';

const OPS = { add: 0, mul: 1, scale: 2, gelu: 3, relu: 4 } as const;
const WORKGROUP_SIZE = 256;

/** `b` is absent for unary ops; a b shorter than a repeats over a's leading dims. */
function run(ctx: KernelContext, op: keyof typeof OPS, a: Tensor, b: Tensor | undefined, scalar: number): Tensor {
  const out = ctx.output(a.shape);
  const operand = b ?? ctx.placeholder('f32');
  // Beyond the binding limit: rows of b's length where b repeats (b read whole), else elements.
  const rowLength = b && b.size < a.size ? b.size : 1;
  const operands = [
    { tensor: a, rowElements: rowLength },
    { tensor: operand, rowElements: b?.size === a.size ? 1 : 0 },
    { tensor: out, rowElements: rowLength, written: true },
  ];
  forEachRowChunk(ctx, op, a.size / rowLength, operands, ({ rows, bindings }) => {
    const size = rows * rowLength;
    ctx.record({
      variant: { file: 'elementwise', entryPoint: 'main', ...operandVariant({ OperandType: operand }), constants: { OP: OPS[op], WORKGROUP_SIZE }, include: ['activation'] },
      params: [u32(size), u32(b?.size === a.size ? size : rowLength), f32(scalar)],
      bindings,
      workgroups: ctx.grid(Math.ceil(size / WORKGROUP_SIZE)),
    });
  });
  return out;
}

export function binary(ctx: KernelContext, op: 'add' | 'mul', a: Tensor, b: Tensor): Tensor {
  broadcastSizes(op, a, b);
  return run(ctx, op, a, b, 0);
}

export function unary(ctx: KernelContext, op: 'scale' | 'gelu' | 'relu', x: Tensor, scalar = 0): Tensor {
  elementwiseSizes(op, x);
  return run(ctx, op, x, undefined, scalar);
}
