/** Early-exit decisions (MuE): the exit rule, thresholds, per-sample selection and the "all done" test. */
import type { WhereSizes } from '../shapes.js';
import { cosineSimilarity } from './reductions.js';

/** The exit rule after one layer (`Backend.decideExit`), on `[batch, length]` states. */
export function decideExit(
  sizes: { batch: number; length: number },
  previous: Float32Array,
  computed: Float32Array,
  threshold: number,
  doneBefore: Int32Array | undefined,
): { state: Float32Array; similarity: Float32Array; done: Int32Array; allDone: Int32Array } {
  const { batch, length } = sizes;
  const state = doneBefore ? where({ size: batch * length, inner: length }, doneBefore, previous, computed) : computed.slice();
  const similarity = cosineSimilarity(sizes, state, previous);
  const done = exceeds(similarity, threshold, doneBefore);
  return { state, similarity, done, allDone: Int32Array.of(allDone(done) ? 1 : 0) };
}

/** 1 where `x[i] > threshold` (never for NaN) or `flags[i] ≠ 0`, else 0. */
export function exceeds(x: Float32Array, threshold: number, flags: Int32Array | undefined): Int32Array {
  return Int32Array.from(x, (v, i) => (v > threshold || (flags !== undefined && flags[i] !== 0) ? 1 : 0));
}

/** `out[i] = condition[⌊i / inner⌋] ≠ 0 ? a[i] : b[i]` (a `[1]` condition has inner = size). */
export function where<T extends Float32Array | Int32Array>({ size, inner }: WhereSizes, condition: Int32Array, a: T, b: T): T {
  const out = a.slice() as T;
  for (let i = 0; i < size; i++) {
    if (condition[Math.floor(i / inner)] === 0) out[i] = b[i]!;
  }
  return out;
}

/** Whether every flag is non-zero (true for no flags). */
export function allDone(done: Int32Array): boolean {
  return done.every((flag) => flag !== 0);
}
