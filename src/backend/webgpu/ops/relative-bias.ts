/** Wrapper of `kernels/relative-bias.wgsl`: OFA's relative position bias, heads first, in one dispatch. */
import { relativeBiasSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { type KernelContext, u32 } from '../context.js';
import { forEachRowChunk } from './indexing.js';
import { operandVariant } from './types.js';

const WORKGROUP_SIZE = 64;

/** Heads whose [Tq, Tk] blocks exceed the binding limit together run in chunks of heads. */
export function relativeBias(ctx: KernelContext, table: Tensor, index: Tensor, base?: Tensor): Tensor {
  const { rows, heads, perHead, outShape } = relativeBiasSizes(table, index, base);
  const out = ctx.output(outShape);
  const operands = [
    { tensor: table, rowElements: 0 },
    { tensor: index, rowElements: 0 },
    { tensor: base ?? ctx.placeholder('f32'), rowElements: base ? perHead : 0 },
    { tensor: out, rowElements: perHead, written: true },
  ];
  const variant = { file: 'relative-bias', entryPoint: 'main', ...operandVariant({ TableType: table }), constants: { WORKGROUP_SIZE } } as const;
  forEachRowChunk(ctx, 'relativeBias', heads, operands, ({ start, rows: count, bindings }) => {
    const quads = Math.ceil((count * perHead) / 4);
    ctx.record({
      variant,
      params: [quads, heads, perHead, rows, start, base ? 1 : 0, count * perHead].map(u32),
      bindings,
      workgroups: ctx.grid(Math.ceil(quads / WORKGROUP_SIZE)),
    });
  });
  return out;
}
