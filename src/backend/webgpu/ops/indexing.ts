/**
 * Wrapper of `kernels/indexing.wgsl`: gather, slice, concat, transpose. Each splits its work
 * where a tensor exceeds the storage binding limit (see `chunks.ts`).
 */
import { concatSizes, gatherSizes, sliceSizes, transposeSizes } from '../../shapes.js';
import type { DType, Shape, Tensor } from '../../../tensor.js';
import { type Binding, type KernelContext, type ParamValue, u32 } from '../context.js';
import type { KernelVariant } from '../kernels.js';
import { type RowChunk, type RowOperand, canSplitRows, copyPieces, splitRows, stagedChunkRows, wholeBinding } from './chunks.js';

const WORKGROUP_SIZE = 256;

const WGSL_TYPE: Record<DType, string> = { f32: 'f32', f16: 'f16', i32: 'i32' };

/** `width` 4: the kernel moves vec4s of the element types. */
function variant(entryPoint: string, source: DType, target: DType, width: 1 | 4 = 1): KernelVariant {
  const type = (dtype: DType): string => (width === 4 ? `vec4<${WGSL_TYPE[dtype]}>` : WGSL_TYPE[dtype]);
  return {
    file: 'indexing',
    entryPoint,
    enable: source === 'f16' || target === 'f16' ? ['f16'] : [],
    aliases: { Element: type(source), OutElement: type(target) },
    constants: { WORKGROUP_SIZE },
  };
}

function params(size: number, rest: readonly number[]): ParamValue[] {
  return [size, ...rest, ...Array<number>(8 - rest.length).fill(0)].map(u32);
}

/** Table rows per chunk of a table beyond the binding limit: a multiple of this (GEMM columns in whole tiles). */
export const TABLE_ROW_GRANULE = 64;

/**
 * Embedding lookup. A table beyond the binding limit is read in row chunks, one dispatch each:
 * a dispatch writes the output rows whose id falls in its chunk, and the first chunk's dispatch
 * also writes the zeros of ids outside the table, so every output row is written exactly once.
 * An output beyond the limit is written in chunks of ids, each through every table chunk.
 */
export function gather(ctx: KernelContext, table: Tensor, ids: Tensor): Tensor {
  const { rows, cols, outShape } = gatherSizes(table, ids);
  const out = ctx.output(outShape, 'f32');
  const idOperands = [
    { tensor: ids, rowElements: 1 },
    { tensor: out, rowElements: cols, written: true },
  ];
  forEachRowChunk(ctx, 'gather', ids.size, idOperands, ({ rows: idCount, bindings: [idRange, outRange] }) => {
    const tableOperands = [{ tensor: table, rowElements: cols }];
    forEachRowChunk(ctx, 'gather', rows, tableOperands, ({ start, rows: tableRows, bindings: [tableRange] }) => {
      ctx.record({
        variant: variant('gather', table.dtype, 'f32'),
        params: params(idCount * cols, [cols, rows, start, tableRows]),
        bindings: [tableRange!, outRange!, idRange!],
        workgroups: ctx.grid(Math.ceil((idCount * cols) / WORKGROUP_SIZE)),
      });
    }, TABLE_ROW_GRANULE);
  });
  return out;
}

/**
 * Copies `source` (seen as [outer, axisLength, inner]) into `target` starting at `targetStart`
 * along the axis, by vec4s where every offset and length allows; in pieces where either exceeds
 * the binding limit.
 */
export function copyBlock(ctx: KernelContext, source: Tensor, sourceStart: number, length: number, target: Tensor, targetStart: number, axis: number): void {
  const inner = source.shape.slice(axis + 1).reduce((p, d) => p * d, 1);
  const outer = source.shape.slice(0, axis).reduce((p, d) => p * d, 1);
  const pieces = copyPieces(ctx, source, target, {
    rows: outer,
    length: length * inner,
    sourceStride: source.shape[axis]! * inner,
    targetStride: target.shape[axis]! * inner,
    sourceStart: sourceStart * inner,
    targetStart: targetStart * inner,
  });
  for (const { source: from, target: to, copy } of pieces) {
    const layout = [copy.length, copy.sourceStride, copy.targetStride, copy.sourceStart, copy.targetStart];
    const width = layout.every((n) => n % 4 === 0) ? 4 : 1;
    const size = (copy.rows * copy.length) / width;
    ctx.record({
      variant: variant('copyBlock', source.dtype, target.dtype, width),
      params: params(size, layout.map((n) => n / width)),
      bindings: [from, to],
      workgroups: ctx.grid(Math.ceil(size / WORKGROUP_SIZE)),
    });
  }
}

/** Copies `length` elements of `source` from `sourceStart` into `target` at `targetStart` (both seen flat). */
function copyElements(ctx: KernelContext, source: Tensor, sourceStart: number, target: Tensor, targetStart: number, length: number): void {
  copyBlock(ctx, source.reshape([1, source.size]), sourceStart, length, target.reshape([1, target.size]), targetStart, 1);
}

/**
 * Runs `record` for chunks of `rows` rows of work (see `splitRows`): once with whole tensors while
 * they fit, else per chunk of ranges. Where no aligned granule of rows fits a binding (rows whose
 * bytes are not a multiple of the offset alignment, e.g. [N, N] blocks of odd N, larger than a
 * granule allows), the chunks are staged instead: each reads a copy of its operands' rows, and
 * writes `written` ones to temporaries copied into place after it.
 */
export function forEachRowChunk(ctx: KernelContext, op: string, rows: number, operands: readonly RowOperand[], record: (chunk: RowChunk) => void, granule = 1): void {
  if (canSplitRows(ctx, operands, granule)) {
    for (const chunk of splitRows(ctx, op, rows, operands, granule)) record(chunk);
    return;
  }
  const chunkRows = stagedChunkRows(ctx, op, operands);
  for (let start = 0; start < rows; start += chunkRows) {
    const count = Math.min(chunkRows, rows - start);
    const staged = operands.map(({ tensor, rowElements, written }) => {
      if (rowElements === 0) return undefined;
      const temporary = ctx.output([count * rowElements], tensor.dtype);
      if (!written) copyElements(ctx, tensor, start * rowElements, temporary, 0, count * rowElements);
      return temporary;
    });
    record({ start, rows: count, bindings: operands.map(({ tensor }, i) => (staged[i] ? wholeBinding(ctx, op, staged[i]) : wholeBinding(ctx, op, tensor))) });
    operands.forEach(({ tensor, rowElements, written }, i) => {
      if (written && staged[i]) copyElements(ctx, staged[i], 0, tensor, start * rowElements, count * rowElements);
      staged[i]?.dispose();
    });
  }
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
  const [first, second] = xs;
  const bindsWhole = (t: Tensor): boolean => (t.storage as GPUBuffer).size <= ctx.maxBindingBytes;
  if (xs.length === 2 && [first!, second!, out].every(bindsWhole)) {
    // One dispatch for two tensors (the key/value cache and a step's new token), not one each.
    const blocks = [first!, second!].map((x) => x.shape[sizes.axis]! * sizes.inner);
    const width = blocks.every((n) => n % 4 === 0) ? 4 : 1;
    const size = out.size / width;
    ctx.record({
      variant: variant('concatPair', first!.dtype, out.dtype, width),
      params: params(size, blocks.map((n) => n / width)),
      bindings: [first!, out, second!],
      workgroups: ctx.grid(Math.ceil(size / WORKGROUP_SIZE)),
    });
    return out;
  }
  let offset = 0;
  for (const x of xs) {
    const length = x.shape[sizes.axis]!;
    copyBlock(ctx, x, 0, length, out, offset, sizes.axis);
    offset += length;
  }
  return out;
}

/** One transpose dispatch: `source` holds a tensor of `shape`, `target` receives it permuted. */
function recordTranspose(ctx: KernelContext, source: Binding, shape: Shape, perm: readonly number[], target: Binding, dtype: DType): void {
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((p, d) => p * d, 1));
  const size = shape.reduce((p, d) => p * d, 1);
  const pad = 4 - shape.length;
  const dims = [...Array<number>(pad).fill(1), ...perm.map((p) => shape[p]!)];
  const sourceStrides = [...Array<number>(pad).fill(0), ...perm.map((p) => strides[p]!)];
  ctx.record({
    variant: variant('transpose', dtype, dtype),
    params: params(size, [...dims, ...sourceStrides]),
    bindings: [source, target],
    workgroups: ctx.grid(Math.ceil(size / WORKGROUP_SIZE)),
  });
}

/**
 * Beyond the binding limit (e.g. a relative position bias [N, N, H] → [H, N, N]) the source is
 * transposed in chunks of its first axis: a chunk is a range of the source and, permuted, a block
 * along that axis's place in the output — a range of it when the axis stays first, else a
 * temporary copied into place.
 */
export function transpose(ctx: KernelContext, x: Tensor, perm: readonly number[]): Tensor {
  const { outShape } = transposeSizes(x, perm);
  const out = ctx.output(outShape, x.dtype);
  // Size-1 axes moved around change nothing: the transpose of the others.
  const kept = x.shape.flatMap((d, axis) => (d === 1 ? [] : [axis]));
  const shape = kept.length > 0 ? kept.map((axis) => x.shape[axis]!) : [1];
  const keptPerm = kept.length > 0 ? perm.filter((p) => x.shape[p] !== 1).map((p) => kept.indexOf(p)) : [0];
  const rows = shape[0]!;
  const rowElements = x.size / rows;
  const axis = keptPerm.indexOf(0);
  const permutedShape = keptPerm.map((p) => shape[p]!);
  const operands: RowOperand[] = [{ tensor: x, rowElements }];
  if (axis === 0) operands.push({ tensor: out, rowElements, written: true });
  forEachRowChunk(ctx, 'transpose', rows, operands, ({ start, rows: count, bindings: [source, outRange] }) => {
    const chunkShape = [count, ...shape.slice(1)];
    if (axis === 0 || count === rows) {
      recordTranspose(ctx, source!, chunkShape, keptPerm, outRange ?? wholeBinding(ctx, 'transpose', out), x.dtype);
      return;
    }
    const block = ctx.output(permutedShape.map((d, i) => (i === axis ? count : d)), x.dtype);
    recordTranspose(ctx, source!, chunkShape, keptPerm, block, x.dtype);
    copyBlock(ctx, block, 0, count, out.reshape(permutedShape), start, axis);
    block.dispose();
  });
  return out;
}
