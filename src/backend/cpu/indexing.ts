/** Ops that move elements without arithmetic: they keep the element type (f16 stays f16). */
import type { HostArray, Shape } from '../../tensor.js';
import type { AxisSizes } from '../shapes.js';

/** A zeroed array of the same element type as `like`. */
function emptyLike(like: HostArray, length: number): HostArray {
  return like instanceof Int32Array ? new Int32Array(length) : new Float32Array(length);
}

/** Row `ids[i]` of `table [rows, cols]` for every id; ids are checked because a bad one would read past the table. */
export function gather(
  { rows, cols }: { rows: number; cols: number },
  table: Float32Array,
  ids: Int32Array,
): Float32Array {
  const out = new Float32Array(ids.length * cols);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= rows) {
      throw new Error(`gather: id ${id} at position ${i} is out of range for a table of ${rows} rows`);
    }
    out.set(table.subarray(id * cols, (id + 1) * cols), i * cols);
  }
  return out;
}

/** `out[h, e] = table[index[e], h] (+ base[h, e])` for e over the [Tq, Tk] positions; ids are checked like gather's. */
export function relativeBias(
  { rows, heads, perHead }: { rows: number; heads: number; perHead: number },
  table: Float32Array,
  index: Int32Array,
  base: Float32Array | undefined,
): Float32Array {
  const out = new Float32Array(heads * perHead);
  for (let e = 0; e < perHead; e++) {
    const id = index[e]!;
    if (id < 0 || id >= rows) throw new Error(`relativeBias: index ${id} at position ${e} is out of range for a table of ${rows} rows`);
    for (let h = 0; h < heads; h++) out[h * perHead + e] = table[id * heads + h]! + (base ? base[h * perHead + e]! : 0);
  }
  return out;
}

/** x seen as [outer, length, inner]: keeps `start ≤ i < end` of the middle dimension. */
export function slice(
  { outer, inner }: AxisSizes,
  length: number,
  start: number,
  end: number,
  x: HostArray,
): HostArray {
  const block = (end - start) * inner;
  const out = emptyLike(x, outer * block);
  for (let o = 0; o < outer; o++) {
    const from = (o * length + start) * inner;
    out.set(x.subarray(from, from + block), o * block);
  }
  return out;
}

export interface ConcatPart {
  data: HostArray;
  /** The part's size along the concatenation axis. */
  length: number;
}

/** Parts seen as [outer, lengthᵢ, inner], joined into [outer, total, inner]. */
export function concat({ outer, inner }: AxisSizes, parts: readonly ConcatPart[], total: number): HostArray {
  const out = emptyLike(parts[0]!.data, outer * total * inner);
  let offset = 0;
  for (const { data, length } of parts) {
    const block = length * inner;
    for (let o = 0; o < outer; o++) {
      out.set(data.subarray(o * block, (o + 1) * block), (o * total + offset) * inner);
    }
    offset += length;
  }
  return out;
}

/** Output dimension i walks input dimension perm[i]. */
export function transpose(x: HostArray, shape: Shape, perm: readonly number[]): HostArray {
  // Leading unit dimensions make every rank ≤ 4 a rank-4 problem with one loop nest.
  const lead = 4 - shape.length;
  const shape4 = [...Array<number>(lead).fill(1), ...shape];
  const perm4 = [...Array.from({ length: lead }, (_, i) => i), ...perm.map((p) => p + lead)];
  const strides4 = [shape4[1]! * shape4[2]! * shape4[3]!, shape4[2]! * shape4[3]!, shape4[3]!, 1];
  const [n0, n1, n2, n3] = perm4.map((p) => shape4[p]!) as [number, number, number, number];
  const [s0, s1, s2, s3] = perm4.map((p) => strides4[p]!) as [number, number, number, number];
  const out = emptyLike(x, x.length);
  let o = 0;
  for (let i0 = 0; i0 < n0; i0++) {
    for (let i1 = 0; i1 < n1; i1++) {
      for (let i2 = 0; i2 < n2; i2++) {
        const base = i0 * s0 + i1 * s1 + i2 * s2;
        for (let i3 = 0; i3 < n3; i3++) out[o++] = x[base + i3 * s3]!;
      }
    }
  }
  return out;
}
