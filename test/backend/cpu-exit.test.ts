/**
 * Early-exit ops on the CPU backend: exceeds (strict, NaN never exceeds, flags stay set), the exit
 * rule decideExit (the composition of where, cosineSimilarity and exceeds), where
 * per sample or shared, and unlessAll, which skips on the CPU too (ops inside return zero-filled
 * tensors without computing; `computedOps` counts the ones that ran).
 */
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { floatsToHalves } from '../../src/half.js';
import { type Shape, type Tensor } from '../../src/tensor.js';

const cpu = new CpuBackend();

const f32 = (values: readonly number[], shape: Shape = [values.length]): Tensor => cpu.upload(Float32Array.from(values), shape);
const i32 = (values: readonly number[], shape: Shape = [values.length]): Tensor => cpu.upload(Int32Array.from(values), shape);
const values = async (t: Tensor): Promise<number[]> => Array.from(await t.read());

/** The next f32 above / below v. */
function nextF32(v: number, direction: 1 | -1): number {
  const bits = new Int32Array(new Float32Array([v]).buffer)[0]!;
  return new Float32Array(new Int32Array([bits + (v >= 0 ? direction : -direction)]).buffer)[0]!;
}

describe('exceeds', () => {
  it('is strict: a value equal to the threshold does not exceed it', async () => {
    expect(await values(cpu.exceeds(f32([0.25, 0.5, nextF32(0.5, 1), nextF32(0.5, -1), 2]), 0.5))).toEqual([0, 0, 1, 0, 1]);
  });

  it('compares the f32 value with the exact threshold (0.7 and 0.1 are not f32 numbers)', async () => {
    const below = Math.fround(0.7); // 0.699999988… < 0.7
    expect(await values(cpu.exceeds(f32([below, nextF32(below, 1)]), 0.7))).toEqual([0, 1]);
    const above = Math.fround(0.1); // 0.100000001… > 0.1
    expect(await values(cpu.exceeds(f32([above, nextF32(above, -1)]), 0.1))).toEqual([1, 0]);
  });

  it('never lets NaN exceed, even −∞; +∞ exceeds every finite threshold', async () => {
    expect(await values(cpu.exceeds(f32([NaN, -Infinity, 0]), -Infinity))).toEqual([0, 0, 1]);
    expect(await values(cpu.exceeds(f32([Infinity, 3.4e38]), 3.4e38))).toEqual([1, 0]);
    expect(await values(cpu.exceeds(f32([Infinity]), Infinity))).toEqual([0]);
  });

  it('keeps flags already set (a sample that exited stays exited)', async () => {
    const out = cpu.exceeds(f32([0.9, 0.1, 0.1, NaN]), 0.5, i32([0, 0, 1, 7]));
    expect(out.dtype).toBe('i32');
    expect(await values(out)).toEqual([1, 0, 1, 1]);
  });

  it('validates x, flags and the threshold', () => {
    expect(() => cpu.exceeds(f32([1, 2], [1, 2]), 0)).toThrow('exceeds: x must be [B], got [1, 2]');
    expect(() => cpu.exceeds(i32([1]), 0)).toThrow('exceeds: x must be f32, got i32');
    expect(() => cpu.exceeds(f32([1, 2]), 0, i32([1]))).toThrow('exceeds: flags must be [2], got [1]');
    expect(() => cpu.exceeds(f32([1]), 0, f32([1]))).toThrow('exceeds: flags must be i32, got f32');
    expect(() => cpu.exceeds(f32([1]), NaN)).toThrow('exceeds: threshold is NaN');
  });
});

describe('decideExit', () => {
  const previous = [1, 0, 0, 1, 2, 2, 3, -1];
  const computed = [1, 0.01, 0, -1, 2, 2.2, 3, 0];
  const shape = [4, 2];

  it('is where, cosineSimilarity and exceeds in one', async () => {
    for (const doneBefore of [undefined, [0, 0, 1, 0]]) {
      const flags = doneBefore && i32(doneBefore);
      const d = cpu.decideExit(f32(previous, shape), f32(computed, shape), 0.99, flags);
      const state = flags ? cpu.where(flags, f32(previous, shape), f32(computed, shape)) : f32(computed, shape);
      const similarity = cpu.cosineSimilarity(state, f32(previous, shape));
      expect(await values(d.state)).toEqual(await values(state));
      expect(await values(d.similarity)).toEqual(await values(similarity));
      expect(await values(d.done)).toEqual(await values(cpu.exceeds(similarity, 0.99, flags)));
    }
    // Sample 0 barely moves (stops), 1 turns around, 2 had stopped (keeps its state), 3 moves a little.
    const d = cpu.decideExit(f32(previous, shape), f32(computed, shape), 0.99, i32([0, 0, 1, 0]));
    expect(await values(d.done)).toEqual([1, 0, 1, 0]);
    expect(await values(d.allDone)).toEqual([0]);
    expect(await values(cpu.decideExit(f32(previous, shape), f32(previous, shape), 0.99).allDone)).toEqual([1]);
    expect((await values(d.state)).slice(4, 6)).toEqual([2, 2]);
    expect([d.state.dtype, d.similarity.dtype, d.done.dtype]).toEqual(['f32', 'f32', 'i32']);
  });

  it('validates the states, the flags and the threshold', () => {
    const x = f32(previous, shape);
    expect(() => cpu.decideExit(x, f32(previous, [8]), 0.5)).toThrow('decideExit: previous [4, 2] and computed [8] must be one shape [B, ...]');
    expect(() => cpu.decideExit(x, x, 0.5, i32([0, 0]))).toThrow('decideExit: doneBefore must be [4], got [2]');
    expect(() => cpu.decideExit(x, x, 0.5, f32([0, 0, 0, 0]))).toThrow('decideExit: doneBefore must be i32, got f32');
    expect(() => cpu.decideExit(i32([1, 2]), i32([1, 2]), 0.5)).toThrow('decideExit: previous must be f32, got i32');
    expect(() => cpu.decideExit(x, x, NaN)).toThrow('decideExit: threshold is NaN');
  });
});

describe('where', () => {
  it('selects per sample with a [B] condition', async () => {
    const a = f32([1, 2, 3, 4, 5, 6], [3, 2]);
    const b = f32([-1, -2, -3, -4, -5, -6], [3, 2]);
    expect(await values(cpu.where(i32([1, 0, 5]), a, b))).toEqual([1, 2, -3, -4, 5, 6]);
  });

  it('shares a [1] condition over the whole batch, any shape', async () => {
    const a = f32([1, 2, 3, 4], [2, 2]);
    const b = f32([5, 6, 7, 8], [2, 2]);
    expect(await values(cpu.where(i32([1]), a, b))).toEqual([1, 2, 3, 4]);
    expect(await values(cpu.where(i32([0]), a, b))).toEqual([5, 6, 7, 8]);
    expect(await values(cpu.where(i32([0]), f32([1, 2], [2]), f32([3, 4], [2])))).toEqual([3, 4]);
  });

  it('keeps f16 and i32 dtypes', async () => {
    const a = cpu.upload(floatsToHalves(Float32Array.from([0.5, 1.5, -2, 65504])), [2, 2], 'f16');
    const b = cpu.upload(floatsToHalves(Float32Array.from([0.25, 3, 4, -1])), [2, 2], 'f16');
    const out = cpu.where(i32([0, 1]), a, b);
    expect(out.dtype).toBe('f16');
    expect(await values(out)).toEqual([0.25, 3, -2, 65504]);
    const ids = cpu.where(i32([1, 0]), i32([1, 2, 3, 4], [2, 2]), i32([5, 6, 7, 8], [2, 2]));
    expect([ids.dtype, ...(await values(ids))]).toEqual(['i32', 1, 2, 7, 8]);
  });

  it('validates the condition and the operands', () => {
    const a = f32([1, 2, 3, 4, 5, 6], [3, 2]);
    expect(() => cpu.where(i32([1, 0]), a, a)).toThrow('where: condition [2] needs a and b of [2, ...], got [3, 2]');
    expect(() => cpu.where(i32([1, 0, 1], [3, 1]), a, a)).toThrow('where: condition must be [B] or [1], got [3, 1]');
    expect(() => cpu.where(f32([1, 0, 1]), a, a)).toThrow('where: condition must be i32, got f32');
    expect(() => cpu.where(i32([1, 0, 1]), a, f32([1, 2, 3, 4, 5, 6], [3, 2, 1]))).toThrow('where: a [3, 2] and b [3, 2, 1] differ');
    const half = cpu.upload(floatsToHalves(new Float32Array(6)), [3, 2], 'f16');
    expect(() => cpu.where(i32([1, 0, 1]), a, half)).toThrow('where: a and b must have one dtype, got f32 and f16');
  });
});

describe('unlessAll', () => {
  const layer = (x: Tensor, w: Tensor): Tensor => cpu.gelu(cpu.matmul(x, w));
  const x = f32([1, 2, 3, 4, 5, 6], [2, 3]);
  const w = f32([0.5, -1, 2, 0.25, 1, -0.5], [3, 2]);

  it('runs fn when some flag is zero: the same results as calling it directly', async () => {
    const direct = await values(layer(x, w));
    const before = cpu.computedOps;
    const gated = cpu.unlessAll(i32([1, 0]), () => layer(x, w));
    expect(cpu.computedOps - before).toBe(2);
    expect(await values(gated)).toEqual(direct);
  });

  it('skips fn’s arithmetic when every flag is set: zero-filled results of the right shapes', async () => {
    const before = cpu.computedOps;
    const out = cpu.unlessAll(i32([1, 3]), () => {
      const top = cpu.topk(x, 2);
      return { y: layer(x, w), values: top.values, indices: top.indices, sum: cpu.add(x, x) };
    });
    expect(cpu.computedOps).toBe(before);
    expect([out.y.shape, out.y.dtype, await values(out.y)]).toEqual([[2, 2], 'f32', [0, 0, 0, 0]]);
    expect([out.indices.shape, out.indices.dtype, out.values.dtype]).toEqual([[2, 2], 'i32', 'f32']);
    expect(await values(out.sum)).toEqual([0, 0, 0, 0, 0, 0]);
    // The caller combines with `where`: the kept state wins.
    expect(await values(cpu.where(i32([1]), x, out.sum))).toEqual([1, 2, 3, 4, 5, 6]);
    // Ops compute again after the gate.
    expect(await values(cpu.add(x, x))).toEqual([2, 4, 6, 8, 10, 12]);
  });

  it('still validates shapes and keeps uploads while skipping', async () => {
    expect(() => cpu.unlessAll(i32([1]), () => cpu.add(x, f32([1, 2], [2])))).toThrow(/cannot broadcast/);
    const uploaded = cpu.unlessAll(i32([1]), () => f32([7, 8]));
    expect(await values(uploaded)).toEqual([7, 8]);
  });

  it('treats empty flags as all done, and needs i32 flags', () => {
    const before = cpu.computedOps;
    cpu.unlessAll(i32([]), () => cpu.add(x, x));
    expect(cpu.computedOps).toBe(before);
    expect(() => cpu.unlessAll(f32([1]), () => 0)).toThrow('unlessAll: done must be i32, got f32');
  });

  it('refuses nesting, reads and flushes inside, and closes the gate when fn throws', async () => {
    expect(() => cpu.unlessAll(i32([0]), () => cpu.unlessAll(i32([0]), () => 0))).toThrow('unlessAll: cannot be nested');
    let read: Promise<unknown> | undefined;
    cpu.unlessAll(i32([0]), () => {
      read = x.read();
      expect(() => cpu.flush()).toThrow('flush: not allowed inside unlessAll');
    });
    await expect(read).rejects.toThrow('read: not allowed inside unlessAll');
    expect(() =>
      cpu.unlessAll(i32([1]), () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    // Neither open nor skipping any more.
    const before = cpu.computedOps;
    expect(await values(cpu.add(x, x))).toEqual([2, 4, 6, 8, 10, 12]);
    expect(cpu.computedOps).toBe(before + 1);
    expect(cpu.unlessAll(i32([0]), () => 5)).toBe(5);
  });
});
