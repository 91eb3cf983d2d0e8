/**
 * Shape rules of every op, shared by both backends so that they accept and refuse the same
 * inputs with the same messages. Each function validates and returns the sizes a kernel needs.
 */
import type { AttentionOptions, Conv2dOptions, MatmulOptions, Pool2dOptions } from './backend.js';
import { type DType, type Shape, type Tensor, sameShape, shapeToString as s, sizeOf } from '../tensor.js';

function fail(op: string, message: string): never {
  throw new Error(`${op}: ${message}`);
}

function requireFloat(op: string, name: string, t: Tensor): void {
  if (t.dtype === 'i32') fail(op, `${name} must be f32 or f16, got i32`);
}

function requireDType(op: string, name: string, t: Tensor, dtype: DType): void {
  if (t.dtype !== dtype) fail(op, `${name} must be ${dtype}, got ${t.dtype}`);
}

function requireShape(op: string, name: string, t: Tensor, shape: Shape): void {
  if (!sameShape(t.shape, shape)) fail(op, `${name} must be ${s(shape)}, got ${s(t.shape)}`);
}

/** The array type that carries each dtype's host data (f16 as IEEE half bits). */
const UPLOAD_ARRAY: Record<DType, string> = { f32: 'Float32Array', f16: 'Uint16Array', i32: 'Int32Array' };

/** For upload: the array type must carry the dtype (inferred from it when omitted) and fill the shape. */
export function uploadDType(data: Float32Array | Int32Array | Uint16Array, shape: Shape, dtype?: DType): DType {
  const op = 'upload';
  const carried: DType = data instanceof Int32Array ? 'i32' : data instanceof Uint16Array ? 'f16' : 'f32';
  const resolved = dtype ?? carried;
  if (resolved !== carried) {
    fail(op, `${resolved} data must be a ${UPLOAD_ARRAY[resolved]}, got ${data.constructor.name}`);
  }
  if (data.length !== sizeOf(shape)) fail(op, `${data.length} values do not fill ${s(shape)}`);
  return resolved;
}

export function normalizeAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) fail(op, `axis ${axis} out of range for rank ${rank}`);
  return a;
}

export interface MatmulSizes {
  batch: number;
  m: number;
  k: number;
  n: number;
  /** Whether b has its own matrix per batch entry. */
  batchedB: boolean;
  outShape: Shape;
}

export function matmulSizes(a: Tensor, b: Tensor, o: MatmulOptions = {}): MatmulSizes {
  const op = 'matmul';
  if (a.rank < 2 || b.rank < 2) fail(op, `operands need rank ≥ 2, got ${s(a.shape)} and ${s(b.shape)}`);
  requireDType(op, 'a', a, 'f32');
  requireFloat(op, 'b', b);
  const m = a.shape[a.rank - 2]!;
  const k = a.shape[a.rank - 1]!;
  const [bk, n] = o.transposeB
    ? [b.shape[b.rank - 1]!, b.shape[b.rank - 2]!]
    : [b.shape[b.rank - 2]!, b.shape[b.rank - 1]!];
  if (bk !== k) {
    fail(op, `inner dimensions differ: a ${s(a.shape)} · b ${s(b.shape)}${o.transposeB ? 'ᵀ' : ''}`);
  }
  const batchDims = a.shape.slice(0, -2);
  const batch = sizeOf(batchDims);
  const batchedB = b.rank > 2;
  if (batchedB && !sameShape(b.shape.slice(0, -2), batchDims)) {
    fail(op, `batch dims of b ${s(b.shape)} do not match a ${s(a.shape)}`);
  }
  const outShape = [...batchDims, m, n];
  if (o.bias) {
    requireFloat(op, 'bias', o.bias);
    requireShape(op, 'bias', o.bias, [n]);
  }
  if (o.residual) {
    requireDType(op, 'residual', o.residual, 'f32');
    requireShape(op, 'residual', o.residual, outShape);
  }
  return { batch, m, k, n, batchedB, outShape };
}

/** For add/mul: b equals a's shape or a suffix of it; returns how many elements b repeats over. */
export function broadcastSizes(op: string, a: Tensor, b: Tensor): { size: number; inner: number } {
  requireDType(op, 'a', a, 'f32');
  requireFloat(op, 'b', b);
  const suffix = a.shape.slice(a.rank - b.rank);
  if (b.rank > a.rank || !sameShape(suffix, b.shape)) {
    fail(op, `cannot broadcast ${s(b.shape)} to ${s(a.shape)} (b must be a suffix of a's shape)`);
  }
  return { size: a.size, inner: b.size };
}

/** For unary elementwise ops (scale, activations): x is an f32 activation. */
export function elementwiseSizes(op: string, x: Tensor): { size: number } {
  requireDType(op, 'x', x, 'f32');
  return { size: x.size };
}

/** For ops over the last dimension: rows × cols. */
export function lastDimSizes(op: string, x: Tensor): { rows: number; cols: number } {
  if (x.rank < 1) fail(op, 'needs rank ≥ 1');
  requireFloat(op, 'x', x);
  const cols = x.shape[x.rank - 1]!;
  if (cols === 0) fail(op, `last dimension is empty in ${s(x.shape)}`);
  return { rows: x.size / cols, cols };
}

export function layerNormSizes(x: Tensor, weight: Tensor, bias: Tensor, residual?: Tensor): { rows: number; cols: number } {
  const sizes = lastDimSizes('layerNorm', x);
  requireDType('layerNorm', 'x', x, 'f32');
  requireFloat('layerNorm', 'weight', weight);
  requireFloat('layerNorm', 'bias', bias);
  requireShape('layerNorm', 'weight', weight, [sizes.cols]);
  requireShape('layerNorm', 'bias', bias, [sizes.cols]);
  if (residual) {
    requireDType('layerNorm', 'residual', residual, 'f32');
    requireShape('layerNorm', 'residual', residual, x.shape);
  }
  return sizes;
}

export function topkSizes(x: Tensor, k: number): { rows: number; cols: number; outShape: Shape } {
  const sizes = lastDimSizes('topk', x);
  if (!Number.isInteger(k) || k < 1 || k > sizes.cols) fail('topk', `k = ${k} must be in 1..${sizes.cols}`);
  return { ...sizes, outShape: [...x.shape.slice(0, -1), k] };
}

export function cosineSizes(a: Tensor, b: Tensor): { batch: number; length: number } {
  const op = 'cosineSimilarity';
  requireFloat(op, 'a', a);
  requireFloat(op, 'b', b);
  if (a.rank < 1 || !sameShape(a.shape, b.shape)) fail(op, `shapes differ: ${s(a.shape)} vs ${s(b.shape)}`);
  const batch = a.shape[0]!;
  return { batch, length: batch === 0 ? 0 : a.size / batch };
}

export function gatherSizes(table: Tensor, ids: Tensor): { rows: number; cols: number; outShape: Shape } {
  const op = 'gather';
  if (table.rank !== 2) fail(op, `table must be [rows, cols], got ${s(table.shape)}`);
  requireFloat(op, 'table', table);
  requireDType(op, 'ids', ids, 'i32');
  const [rows, cols] = table.shape as [number, number];
  return { rows, cols, outShape: [...ids.shape, cols] };
}

export function relativeBiasSizes(table: Tensor, index: Tensor, base?: Tensor): { rows: number; heads: number; perHead: number; outShape: Shape } {
  const op = 'relativeBias';
  if (table.rank !== 2) fail(op, `table must be [rows, heads], got ${s(table.shape)}`);
  requireFloat(op, 'table', table);
  if (index.rank !== 2) fail(op, `index must be [Tq, Tk], got ${s(index.shape)}`);
  requireDType(op, 'index', index, 'i32');
  const [rows, heads] = table.shape as [number, number];
  const outShape = [heads, ...index.shape];
  if (base) {
    requireDType(op, 'base', base, 'f32');
    requireShape(op, 'base', base, outShape);
  }
  return { rows, heads, perHead: index.size, outShape };
}

/** A tensor seen as [outer, axis, inner] around one axis. */
export interface AxisSizes {
  axis: number;
  outer: number;
  inner: number;
}

export function axisSizes(op: string, x: Tensor, axis: number): AxisSizes {
  const a = normalizeAxis(op, axis, x.rank);
  return { axis: a, outer: sizeOf(x.shape.slice(0, a)), inner: sizeOf(x.shape.slice(a + 1)) };
}

export function sliceSizes(x: Tensor, axis: number, start: number, end: number): AxisSizes & { outShape: Shape } {
  const sizes = axisSizes('slice', x, axis);
  const length = x.shape[sizes.axis]!;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > length || start > end) {
    fail('slice', `range ${start}..${end} out of bounds for axis ${sizes.axis} of ${s(x.shape)}`);
  }
  const outShape = x.shape.map((d, i) => (i === sizes.axis ? end - start : d));
  return { ...sizes, outShape };
}

export function concatSizes(xs: readonly Tensor[], axis: number): AxisSizes & { outShape: Shape } {
  const first = xs[0];
  if (!first) fail('concat', 'needs at least one tensor');
  const sizes = axisSizes('concat', first, axis);
  let total = 0;
  for (const x of xs) {
    const same = x.rank === first.rank && x.shape.every((d, i) => i === sizes.axis || d === first.shape[i]);
    if (!same) fail('concat', `shapes ${s(first.shape)} and ${s(x.shape)} differ outside axis ${sizes.axis}`);
    if (x.dtype !== first.dtype) fail('concat', `dtypes ${first.dtype} and ${x.dtype} differ`);
    total += x.shape[sizes.axis]!;
  }
  const outShape = first.shape.map((d, i) => (i === sizes.axis ? total : d));
  return { ...sizes, outShape };
}

export interface Conv2dSizes {
  batch: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  stride: number;
  padding: number;
  ho: number;
  wo: number;
  outShape: Shape;
}

export function conv2dSizes(x: Tensor, w: Tensor, o: Conv2dOptions = {}): Conv2dSizes {
  const op = 'conv2d';
  if (x.rank !== 4) fail(op, `x must be [B, Cin, H, W], got ${s(x.shape)}`);
  if (w.rank !== 4) fail(op, `w must be [Cout, Cin, kh, kw], got ${s(w.shape)}`);
  requireDType(op, 'x', x, 'f32');
  requireFloat(op, 'w', w);
  const [batch, cin, h, wd] = x.shape as [number, number, number, number];
  const [cout, wcin, kh, kw] = w.shape as [number, number, number, number];
  if (wcin !== cin) fail(op, `x has ${cin} channels but w expects ${wcin}`);
  const stride = o.stride ?? 1;
  const padding = o.padding ?? 0;
  if (!Number.isInteger(stride) || stride < 1) fail(op, `stride must be a positive integer, got ${stride}`);
  if (!Number.isInteger(padding) || padding < 0) fail(op, `padding must be a non-negative integer, got ${padding}`);
  const ho = Math.floor((h + 2 * padding - kh) / stride) + 1;
  const wo = Math.floor((wd + 2 * padding - kw) / stride) + 1;
  if (ho < 1 || wo < 1) fail(op, `kernel ${kh}×${kw} does not fit input ${h}×${wd} with padding ${padding}`);
  const outShape = [batch, cout, ho, wo];
  if (o.bias) {
    requireFloat(op, 'bias', o.bias);
    requireShape(op, 'bias', o.bias, [cout]);
  }
  if (o.residual) {
    requireDType(op, 'residual', o.residual, 'f32');
    requireShape(op, 'residual', o.residual, outShape);
  }
  return { batch, cin, h, w: wd, cout, kh, kw, stride, padding, ho, wo, outShape };
}

export interface Pool2dSizes {
  planes: number;
  h: number;
  w: number;
  ho: number;
  wo: number;
  outShape: Shape;
}

export function pool2dSizes(x: Tensor, o: Pool2dOptions): Pool2dSizes {
  const op = 'maxPool2d';
  if (x.rank !== 4) fail(op, `x must be [B, C, H, W], got ${s(x.shape)}`);
  requireDType(op, 'x', x, 'f32');
  const [b, c, h, w] = x.shape as [number, number, number, number];
  if (!Number.isInteger(o.kernel) || o.kernel < 1) fail(op, `kernel must be a positive integer, got ${o.kernel}`);
  if (!Number.isInteger(o.stride) || o.stride < 1) fail(op, `stride must be a positive integer, got ${o.stride}`);
  if (!Number.isInteger(o.padding) || o.padding < 0) {
    fail(op, `padding must be a non-negative integer, got ${o.padding}`);
  }
  if (o.padding * 2 > o.kernel) fail(op, `padding ${o.padding} exceeds half the kernel ${o.kernel}`);
  const ho = Math.floor((h + 2 * o.padding - o.kernel) / o.stride) + 1;
  const wo = Math.floor((w + 2 * o.padding - o.kernel) / o.stride) + 1;
  if (ho < 1 || wo < 1) fail(op, `window ${o.kernel} does not fit input ${h}×${w}`);
  return { planes: b * c, h, w, ho, wo, outShape: [b, c, ho, wo] };
}

export interface AttentionSizes {
  batch: number;
  heads: number;
  headDim: number;
  tq: number;
  tk: number;
  /** k and v have one sample shared by every query sample. */
  sharedKv: boolean;
  /** The bias has its own [H, Tq, Tk] block per sample. */
  batchedBias: boolean;
}

export function attentionSizes(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): AttentionSizes {
  const op = 'attention';
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.rank !== 3) fail(op, `${name} must be [B, T, H·dh], got ${s(t.shape)}`);
    requireDType(op, name, t, 'f32');
  }
  const [batch, tq, width] = q.shape as [number, number, number];
  const [kb, tk, kwidth] = k.shape as [number, number, number];
  if (!sameShape(k.shape, v.shape)) fail(op, `k ${s(k.shape)} and v ${s(v.shape)} differ`);
  if (kwidth !== width) fail(op, `q width ${width} differs from k width ${kwidth}`);
  if (kb !== batch && kb !== 1) fail(op, `k batch ${kb} must be 1 or q's batch ${batch}`);
  if (!Number.isInteger(o.heads) || o.heads < 1 || width % o.heads !== 0) {
    fail(op, `width ${width} is not divisible into ${o.heads} heads`);
  }
  let batchedBias = false;
  if (o.bias) {
    requireDType(op, 'bias', o.bias, 'f32');
    batchedBias = o.bias.rank === 4;
    requireShape(op, 'bias', o.bias, batchedBias ? [batch, o.heads, tq, tk] : [o.heads, tq, tk]);
  }
  if (o.keyPaddingMask) {
    requireDType(op, 'keyPaddingMask', o.keyPaddingMask, 'i32');
    requireShape(op, 'keyPaddingMask', o.keyPaddingMask, [kb, tk]);
  }
  return { batch, heads: o.heads, headDim: width / o.heads, tq, tk, sharedKv: kb === 1 && batch !== 1, batchedBias };
}

export function transposeSizes(x: Tensor, perm: readonly number[]): { outShape: Shape } {
  const op = 'transpose';
  if (x.rank > 4) fail(op, `rank ${x.rank} > 4 is not supported`);
  const sorted = [...perm].sort((p, q) => p - q);
  if (perm.length !== x.rank || sorted.some((p, i) => p !== i)) {
    fail(op, `[${perm.join(', ')}] is not a permutation of the ${x.rank} dims of ${s(x.shape)}`);
  }
  return { outShape: perm.map((p) => x.shape[p]!) };
}

// ---- early exiting ------------------------------------------------------------------------------

/** For exceeds: x is an f32 `[B]` (or `[1]`), the optional flags i32 of the same shape. */
export function exceedsSizes(x: Tensor, threshold: number, flags?: Tensor): { batch: number } {
  const op = 'exceeds';
  requireDType(op, 'x', x, 'f32');
  if (x.rank !== 1) fail(op, `x must be [B], got ${s(x.shape)}`);
  if (Number.isNaN(threshold)) fail(op, 'threshold is NaN');
  if (flags) {
    requireDType(op, 'flags', flags, 'i32');
    requireShape(op, 'flags', flags, x.shape);
  }
  return { batch: x.shape[0]! };
}

/** For decideExit: previous and computed f32 of one shape `[B, ...]`; doneBefore i32 `[B]`. */
export function decideExitSizes(previous: Tensor, computed: Tensor, threshold: number, doneBefore?: Tensor): { batch: number; length: number } {
  const op = 'decideExit';
  requireDType(op, 'previous', previous, 'f32');
  requireDType(op, 'computed', computed, 'f32');
  if (previous.rank < 1 || !sameShape(previous.shape, computed.shape)) {
    fail(op, `previous ${s(previous.shape)} and computed ${s(computed.shape)} must be one shape [B, ...]`);
  }
  if (Number.isNaN(threshold)) fail(op, 'threshold is NaN');
  const batch = previous.shape[0]!;
  if (doneBefore) {
    requireDType(op, 'doneBefore', doneBefore, 'i32');
    requireShape(op, 'doneBefore', doneBefore, [batch]);
  }
  return { batch, length: batch === 0 ? 0 : previous.size / batch };
}

export interface WhereSizes {
  size: number;
  /** Elements per decision: a sample's elements for a `[B]` condition, all of them for `[1]`. */
  inner: number;
}

/**
 * For where: condition is i32 `[B]` or `[1]`; a and b have one shape and one dtype (f32, f16 or
 * i32), whose first dim is B when the condition is `[B]` (B ≠ 1).
 */
export function whereSizes(condition: Tensor, a: Tensor, b: Tensor): WhereSizes {
  const op = 'where';
  requireDType(op, 'condition', condition, 'i32');
  if (condition.rank !== 1) fail(op, `condition must be [B] or [1], got ${s(condition.shape)}`);
  if (a.dtype !== b.dtype) fail(op, `a and b must have one dtype, got ${a.dtype} and ${b.dtype}`);
  if (!sameShape(a.shape, b.shape)) fail(op, `a ${s(a.shape)} and b ${s(b.shape)} differ`);
  const batch = condition.shape[0]!;
  if (batch === 1) return { size: a.size, inner: a.size };
  if (a.rank < 1 || a.shape[0] !== batch) {
    fail(op, `condition ${s(condition.shape)} needs a and b of [${batch}, ...], got ${s(a.shape)}`);
  }
  return { size: a.size, inner: batch === 0 ? 0 : a.size / batch };
}

/** For unlessAll: `done` holds i32 flags (any shape; an empty one counts as all done). */
export function unlessAllSizes(done: Tensor): { count: number } {
  requireDType('unlessAll', 'done', done, 'i32');
  return { count: done.size };
}
