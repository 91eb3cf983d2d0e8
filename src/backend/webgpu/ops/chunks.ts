/**
 * Work over tensors beyond the storage binding limit (`maxStorageBufferBindingSize`: 128 MiB on
 * lavapipe and by default in browsers). Within OFA's limits such tensors occur: the token table
 * of OFA-base as the output projection (183 MB), the logits of 565 beams or of a 565-token
 * teacher-forced pass ([565, 59457] f32), the encoder's position biases [H, N, N] for long
 * prompts on the larger models, the caches of many beams.
 *
 * An op splits its work into chunks of rows and binds each operand's rows of a chunk as a range
 * (`TensorRange`, context.ts). Ranges start on the device's `minStorageBufferOffsetAlignment`, so
 * a chunk holds a multiple of a granule of rows that keeps every operand's offset aligned. While
 * every buffer fits one binding an op gets a single chunk of whole tensors: the usual path is
 * unchanged. Kernels index from the start of what is bound, so a chunk is the same dispatch on
 * fewer rows.
 */
import { BYTES_PER_ELEMENT, type Tensor, shapeToString } from '../../../tensor.js';
import type { Binding, KernelContext } from '../context.js';

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const lcm = (a: number, b: number): number => (a / gcd(a, b)) * b;

/** Bytes a binding of `elements` elements of `t` covers: kernels read vec4 arrays, so a multiple of 16. */
const boundBytes = (t: Tensor, elements: number): number => Math.ceil((elements * BYTES_PER_ELEMENT[t.dtype]) / 16) * 16;

/** The most bytes one range may cover (ranges are bound in multiples of 16 bytes). */
const rangeCapacity = (ctx: KernelContext): number => Math.floor(ctx.maxBindingBytes / 16) * 16;

const describe = (t: Tensor): string => `${t.dtype} tensor ${shapeToString(t.shape)} (${t.size * BYTES_PER_ELEMENT[t.dtype]} bytes)`;

const limitText = (ctx: KernelContext): string => `the storage binding limit of ${ctx.maxBindingBytes} bytes (maxStorageBufferBindingSize)`;

/** Whether `t` fits one storage binding (bound as a range when its pooled buffer is larger). */
export function fitsOneBinding(ctx: KernelContext, t: Tensor): boolean {
  return boundBytes(t, t.size) <= ctx.maxBindingBytes;
}

/** Whether `t`'s pooled buffer can be bound whole. */
const bufferFits = (ctx: KernelContext, t: Tensor): boolean => (t.storage as GPUBuffer).size <= ctx.maxBindingBytes;

/** `t` as one binding: the tensor, or a range of all of it when only its pooled buffer is too big. */
export function wholeBinding(ctx: KernelContext, op: string, t: Tensor): Binding {
  if (bufferFits(ctx, t)) return t;
  if (!fitsOneBinding(ctx, t)) throw new Error(`${op}: ${describe(t)} is read whole and exceeds ${limitText(ctx)}`);
  return { tensor: t, offset: 0, length: t.size };
}

/**
 * One operand of work split along rows: `rowElements` of its elements (from element 0) belong to
 * each row, or 0 for an operand that every chunk reads whole (a weight, a broadcast bias).
 * `written`: the work writes it (an output), so rows staged through a temporary are copied back.
 */
export interface RowOperand {
  tensor: Tensor;
  rowElements: number;
  written?: boolean;
}

/** Rows `start .. start + rows` of some work and how to bind each operand for them (in the order given). */
export interface RowChunk {
  start: number;
  rows: number;
  bindings: Binding[];
}

const rowBytes = ({ tensor, rowElements }: RowOperand): number => rowElements * BYTES_PER_ELEMENT[tensor.dtype];

/** Rows per chunk (0: not even `step` rows fit), the alignment step, and the operand with the widest rows. */
function chunking(ctx: KernelContext, operands: readonly RowOperand[], granule: number): { chunkRows: number; step: number; widest?: RowOperand } {
  const alignment = ctx.device.limits.minStorageBufferOffsetAlignment;
  const split = operands.filter(({ rowElements }) => rowElements > 0);
  const step = split.reduce((g, o) => lcm(g, alignment / gcd(rowBytes(o), alignment)), granule);
  const widest = split.reduce<RowOperand | undefined>((w, o) => (w === undefined || rowBytes(o) > rowBytes(w) ? o : w), undefined);
  if (widest === undefined) return { chunkRows: Infinity, step };
  return { chunkRows: Math.floor(rangeCapacity(ctx) / (step * rowBytes(widest))) * step, step, widest };
}

/** Whether `splitRows` can split work over these operands (at least one aligned granule of rows fits). */
export function canSplitRows(ctx: KernelContext, operands: readonly RowOperand[], granule = 1): boolean {
  if (operands.every(({ tensor }) => bufferFits(ctx, tensor))) return true;
  const wholeFit = operands.every(({ tensor, rowElements }) => rowElements > 0 || fitsOneBinding(ctx, tensor));
  return wholeFit && chunking(ctx, operands, granule).chunkRows > 0;
}

/**
 * Rows per chunk when the rows are staged through temporaries (any start): the most whole rows
 * of every operand that one binding holds. Throws when not even one row fits.
 */
export function stagedChunkRows(ctx: KernelContext, op: string, operands: readonly RowOperand[]): number {
  const split = operands.filter(({ rowElements }) => rowElements > 0);
  const widest = split.reduce((w, o) => (rowBytes(o) > rowBytes(w) ? o : w), split[0]!);
  const rows = Math.floor(rangeCapacity(ctx) / rowBytes(widest));
  if (rows === 0) throw new Error(`${op}: one row of ${describe(widest.tensor)} (${rowBytes(widest)} bytes) exceeds ${limitText(ctx)}`);
  return rows;
}

/**
 * Splits `rows` rows of work into the fewest chunks whose operands each fit one binding: one chunk
 * binding the tensors whole while their buffers fit, else chunks of the largest multiple of the
 * alignment granule (at least `granule` rows, e.g. to keep GEMM columns in whole quads) that fits,
 * the last one shorter. Throws when even one granule of rows, or an operand read whole, does not fit.
 */
export function splitRows(ctx: KernelContext, op: string, rows: number, operands: readonly RowOperand[], granule = 1): RowChunk[] {
  if (operands.every(({ tensor }) => bufferFits(ctx, tensor))) return [{ start: 0, rows, bindings: operands.map(({ tensor }) => tensor) }];
  const { chunkRows, step, widest } = chunking(ctx, operands, granule);
  if (chunkRows === 0) {
    throw new Error(
      `${op}: ${step} rows of ${describe(widest!.tensor)} (${step * rowBytes(widest!)} bytes; rows of fewer would not start on ` +
        `minStorageBufferOffsetAlignment, ${ctx.device.limits.minStorageBufferOffsetAlignment} bytes) exceed ${limitText(ctx)}`,
    );
  }
  const whole = operands.map(({ tensor, rowElements }) => (rowElements === 0 ? wholeBinding(ctx, op, tensor) : undefined));
  const chunks: RowChunk[] = [];
  for (let start = 0; start < rows; start += chunkRows) {
    const count = Math.min(chunkRows, rows - start);
    const bindings = operands.map(({ tensor, rowElements }, i) => whole[i] ?? { tensor, offset: start * rowElements, length: count * rowElements });
    chunks.push({ start, rows: count, bindings });
  }
  return chunks;
}

/**
 * A strided copy of `rows` segments of `length` elements: segment r goes from
 * `source[sourceStart + r·sourceStride]` to `target[targetStart + r·targetStride]` (slices and
 * concatenations along an axis, seen with the axis and everything after it flattened).
 */
export interface StridedCopy {
  rows: number;
  length: number;
  sourceStride: number;
  targetStride: number;
  sourceStart: number;
  targetStart: number;
}

/** A part of a strided copy and the ranges it binds; its starts are relative to them. */
export interface CopyPiece {
  source: Binding;
  target: Binding;
  copy: StridedCopy;
}

/**
 * Splits a strided copy into pieces whose source and target spans each fit one binding: groups of
 * whole segments, or, where one segment is too long, parts of a segment. Each range starts at
 * the aligned element at or before the first one it needs; the offset from there is the piece's
 * start, so any copy can be split (aligned starts are multiples of 4 elements: vec4 copies stay so).
 */
export function copyPieces(ctx: KernelContext, source: Tensor, target: Tensor, copy: StridedCopy): CopyPiece[] {
  if (bufferFits(ctx, source) && bufferFits(ctx, target)) return [{ source, target, copy }];
  const alignment = ctx.device.limits.minStorageBufferOffsetAlignment;
  const sides = [
    { tensor: source, stride: copy.sourceStride, start: copy.sourceStart },
    { tensor: target, stride: copy.targetStride, start: copy.targetStart },
  ].map((side) => {
    const bytes = BYTES_PER_ELEMENT[side.tensor.dtype];
    return { ...side, aligned: alignment / bytes, capacity: rangeCapacity(ctx) / bytes };
  });
  type Side = (typeof sides)[number];
  // The most whole segments a range can hold, the worst-case alignment slack included (0: not one).
  const segmentsFitting = (side: Side): number => {
    const room = side.capacity - (copy.length + side.aligned - 1);
    if (room < 0) return 0;
    return side.stride === 0 ? copy.rows : Math.floor(room / side.stride) + 1;
  };
  const pieces: CopyPiece[] = [];
  const add = (row: number, rows: number, column: number, length: number): void => {
    const [from, to] = sides.map((side) => {
      const first = side.start + row * side.stride + column;
      const offset = first - (first % side.aligned);
      return { binding: { tensor: side.tensor, offset, length: first - offset + (rows - 1) * side.stride + length }, start: first - offset };
    }) as [{ binding: Binding; start: number }, { binding: Binding; start: number }];
    pieces.push({ source: from.binding, target: to.binding, copy: { ...copy, rows, length, sourceStart: from.start, targetStart: to.start } });
  };
  const rowsPerPiece = Math.min(copy.rows, ...sides.map(segmentsFitting));
  if (rowsPerPiece > 0) {
    for (let row = 0; row < copy.rows; row += rowsPerPiece) add(row, Math.min(rowsPerPiece, copy.rows - row), 0, copy.length);
    return pieces;
  }
  // One segment is longer than a binding: parts of whole quads, one segment at a time.
  const partLength = Math.floor(Math.min(...sides.map((side) => side.capacity - side.aligned + 1)) / 4) * 4;
  for (let row = 0; row < copy.rows; row++) {
    for (let column = 0; column < copy.length; column += partLength) add(row, 1, column, Math.min(partLength, copy.length - column));
  }
  return pieces;
}
