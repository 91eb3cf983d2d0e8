/** Wrapper of `kernels/indexing.wgsl`: gather, slice, concat, transpose. */
import { concatSizes, gatherSizes, sliceSizes, transposeSizes } from '../../shapes.js';
import type { DType, Tensor } from '../../../tensor.js';
import { type KernelContext, type ParamValue, u32 } from '../context.js';
import type { KernelVariant } from '../kernels.js';

const WORKGROUP_SIZE = 256;

const WGSL_TYPE: Record<DType, string> = { f32: 'f32', f16: 'f16', i32: 'i32' };

function variant(entryPoint: string, source: DType, target: DType): KernelVariant {
  return {
    file: 'indexing',
    entryPoint,
    enable: source === 'f16' || target === 'f16' ? ['f16'] : [],
    aliases: { Element: WGSL_TYPE[source], OutElement: WGSL_TYPE[target] },
    constants: { WORKGROUP_SIZE },
  };
}

function params(size: number, rest: readonly number[]): ParamValue[] {
  return [size, ...rest, ...Array<number>(8 - rest.length).fill(0)].map(u32);
}

export function gather(ctx: KernelContext, table: Tensor, ids: Tensor): Tensor {
  const { rows, cols, outShape } = gatherSizes(table, ids);
  const out = ctx.output(outShape, 'f32');
  ctx.record({
    variant: variant('gather', table.dtype, 'f32'),
    params: params(out.size, [cols, rows]),
    bindings: [table, out, ids],
    workgroups: ctx.grid(Math.ceil(out.size / WORKGROUP_SIZE)),
  });
  return out;
}

/** Copies `source` (seen as [outer, axisLength, inner]) into `target` starting at `targetStart` along the axis. */
function copyBlock(ctx: KernelContext, source: Tensor, sourceStart: number, length: number, target: Tensor, targetStart: number, axis: number): void {
  const inner = source.shape.slice(axis + 1).reduce((p, d) => p * d, 1);
  const outer = source.shape.slice(0, axis).reduce((p, d) => p * d, 1);
  const size = outer * length * inner;
  ctx.record({
    variant: variant('copyBlock', source.dtype, target.dtype),
    params: params(size, [length * inner, source.shape[axis]! * inner, target.shape[axis]! * inner, sourceStart * inner, targetStart * inner]),
    bindings: [source, target],
    workgroups: ctx.grid(Math.ceil(size / WORKGROUP_SIZE)),
  });
}

export function slice(ctx: KernelContext, x: Tensor, axis: number, start: number, end: number): Tensor {
  const sizes = sliceSizes(x, axis, start, end);
  const out = ctx.output(sizes.outShape, x.dtype);
  copyBlock(ctx, x, start, end - start, out, 0, sizes.axis);
  return out;
}

export function concat(ctx: KernelContext, xs: readonly Tensor[], axis: number): Tensor {
  const sizes = concatSizes(xs, axis);
  const out = ctx.output(sizes.outShape, xs[0]!.dtype);
  let offset = 0;
  for (const x of xs) {
    const length = x.shape[sizes.axis]!;
    copyBlock(ctx, x, 0, length, out, offset, sizes.axis);
    offset += length;
  }
  return out;
}

export function transpose(ctx: KernelContext, x: Tensor, perm: readonly number[]): Tensor {
  const { outShape } = transposeSizes(x, perm);
  const out = ctx.output(outShape, x.dtype);
  const strides = x.shape.map((_, i) => x.shape.slice(i + 1).reduce((p, d) => p * d, 1));
  const pad = 4 - x.rank;
  const dims = [...Array<number>(pad).fill(1), ...outShape];
  const sourceStrides = [...Array<number>(pad).fill(0), ...perm.map((p) => strides[p]!)];
  ctx.record({
    variant: variant('transpose', x.dtype, x.dtype),
    params: params(out.size, [...dims, ...sourceStrides]),
    bindings: [x, out],
    workgroups: ctx.grid(Math.ceil(out.size / WORKGROUP_SIZE)),
  });
  return out;
}
