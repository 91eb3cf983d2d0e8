/**
 * Wrapper of `kernels/indexing.wgsl`: gather, slice, concat, transpose; and `rowChunks`, which
 * splits a matrix beyond the storage binding limit into row ranges bound one at a time.
 */
import { concatSizes, gatherSizes, sliceSizes, transposeSizes } from '../../shapes.js';
import { BYTES_PER_ELEMENT, type DType, type Tensor, shapeToString } from '../../../tensor.js';
import { type Binding, type KernelContext, type ParamValue, u32 } from '../context.js';
import type { KernelVariant } from '../kernels.js';

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

/** Rows `start .. start + rows` of a matrix and how to bind them (the tensor itself when it fits whole). */
export interface RowChunk {
  start: number;
  rows: number;
  binding: Binding;
}

/** Chunks hold a multiple of this many rows (more where the offset alignment needs it). */
const ROW_GRANULE = 64;

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const lcm = (a: number, b: number): number => (a / gcd(a, b)) * b;

/** Whether `t` fits one storage binding (bound as a range: its bytes rounded up to 16). */
export function fitsOneBinding(ctx: KernelContext, t: Tensor): boolean {
  return Math.ceil((t.size * BYTES_PER_ELEMENT[t.dtype]) / 16) * 16 <= ctx.maxBindingBytes;
}

/**
 * Splits the matrix `t`, seen as `rows` contiguous rows, into the fewest row ranges that each fit
 * one storage binding (`ctx.maxBindingBytes`): one chunk binding `t` whole when its buffer fits,
 * one range of all of it when only its pooled buffer is too big, else chunks of the largest
 * multiple of a 64-row granule that fits, the last one shorter. The granule grows where needed so
 * that every chunk starts on the device's storage offset alignment, both in `t` and in operands
 * split along the same rows with `alsoAligned` bytes per row (e.g. a bias: 2 or 4).
 */
export function rowChunks(ctx: KernelContext, op: string, t: Tensor, rows: number, alsoAligned: readonly number[] = []): RowChunk[] {
  const limit = ctx.maxBindingBytes;
  if ((t.storage as GPUBuffer).size <= limit) return [{ start: 0, rows, binding: t }];
  if (fitsOneBinding(ctx, t)) return [{ start: 0, rows, binding: { tensor: t, offset: 0, length: t.size } }];
  const rowElements = t.size / rows;
  const rowBytes = rowElements * BYTES_PER_ELEMENT[t.dtype];
  const alignment = ctx.device.limits.minStorageBufferOffsetAlignment;
  const granule = [rowBytes, ...alsoAligned].reduce((g, bytes) => lcm(g, alignment / gcd(bytes, alignment)), ROW_GRANULE);
  const chunkRows = Math.floor(Math.floor(limit / 16) * 16 / (granule * rowBytes)) * granule;
  if (chunkRows === 0) {
    throw new Error(`${op}: ${granule} rows of ${t.dtype} tensor ${shapeToString(t.shape)} (${granule * rowBytes} bytes) exceed the storage binding limit of ${limit} bytes (maxStorageBufferBindingSize)`);
  }
  const chunks: RowChunk[] = [];
  for (let start = 0; start < rows; start += chunkRows) {
    const count = Math.min(chunkRows, rows - start);
    chunks.push({ start, rows: count, binding: { tensor: t, offset: start * rowElements, length: count * rowElements } });
  }
  return chunks;
}

/**
 * Embedding lookup. A table beyond the binding limit is read in row chunks, one dispatch each:
 * a dispatch writes the output rows whose id falls in its chunk, and the first chunk's dispatch
 * also writes the zeros of ids outside the table, so every output row is written exactly once.
 */
export function gather(ctx: KernelContext, table: Tensor, ids: Tensor): Tensor {
  const { rows, cols, outShape } = gatherSizes(table, ids);
  const out = ctx.output(outShape, 'f32');
  for (const chunk of rowChunks(ctx, 'gather', table, rows)) {
    ctx.record({
      variant: variant('gather', table.dtype, 'f32'),
      params: params(out.size, [cols, rows, chunk.start, chunk.rows]),
      bindings: [chunk.binding, out, ids],
      workgroups: ctx.grid(Math.ceil(out.size / WORKGROUP_SIZE)),
    });
  }
  return out;
}

/**
 * Copies `source` (seen as [outer, axisLength, inner]) into `target` starting at `targetStart`
 * along the axis, by vec4s where every offset and length allows.
 */
function copyBlock(ctx: KernelContext, source: Tensor, sourceStart: number, length: number, target: Tensor, targetStart: number, axis: number): void {
  const inner = source.shape.slice(axis + 1).reduce((p, d) => p * d, 1);
  const outer = source.shape.slice(0, axis).reduce((p, d) => p * d, 1);
  const layout = [length * inner, source.shape[axis]! * inner, target.shape[axis]! * inner, sourceStart * inner, targetStart * inner];
  const width = layout.every((n) => n % 4 === 0) ? 4 : 1;
  const size = (outer * length * inner) / width;
  ctx.record({
    variant: variant('copyBlock', source.dtype, target.dtype, width),
    params: params(size, layout.map((n) => n / width)),
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
