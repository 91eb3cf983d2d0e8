/**
 * Early-exit ops on WebGPU against the CPU backend (exceeds, where), and the gate of `unlessAll`:
 * every kernel recorded inside it returns at once on a closed gate word, set on the device when every
 * flag is set, decided on the device inside the same submission.
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { floatsToHalves } from '../../src/half.js';
import { type Shape, type Tensor, sizeOf } from '../../src/tensor.js';
import { expectClose } from '../helpers/compare.js';
import { createRng, randomFloats } from '../helpers/random.js';
import { webgpuBackend, webgpuBackendWith } from '../helpers/webgpu.js';
import { evaluate } from '../helpers/evaluate.js';

const cpu = new CpuBackend();
const gpu = await webgpuBackend();
const fallback = await webgpuBackendWith({ subgroups: false });
/** The exit rule's reductions: with subgroups where the device has them, and the workgroup-memory fallback. */
const paths: [string, Backend][] = [['workgroup-memory reductions', fallback]];
if (gpu.capabilities.subgroups) paths.unshift(['subgroup reductions', gpu]);

async function expectSameOnBoth(op: (b: Backend) => Tensor): Promise<number[]> {
  const [actual, expected] = [await evaluate(gpu, op), await evaluate(cpu, op)];
  expect(Array.from(actual)).toEqual(Array.from(expected));
  return Array.from(actual);
}

const f32 = (k: Backend, values: ArrayLike<number>, shape: Shape = [values.length]): Tensor => k.upload(Float32Array.from(values), shape);
const i32 = (k: Backend, values: ArrayLike<number>, shape: Shape = [values.length]): Tensor => k.upload(Int32Array.from(values), shape);

function nextF32(v: number, direction: 1 | -1): number {
  const bits = new Int32Array(new Float32Array([v]).buffer)[0]!;
  return new Float32Array(new Int32Array([bits + (v >= 0 ? direction : -direction)]).buffer)[0]!;
}

describe('exceeds', () => {
  const edges = [0.5, nextF32(0.5, 1), nextF32(0.5, -1), Math.fround(0.7), nextF32(Math.fround(0.7), 1), Math.fround(0.1), nextF32(Math.fround(0.1), -1), NaN, -NaN, Infinity, -Infinity, 0, -0, 1, 3.4e38];

  it.each([0.5, 0.7, 0.1, 0, 1, -Infinity, Infinity, 1e39, -1e-45])('matches the CPU at threshold %d, edges included (equal never exceeds, NaN never)', async (threshold) => {
    await expectSameOnBoth((k) => k.exceeds(f32(k, edges), threshold));
  });

  it('matches the CPU on many samples, with flags', async () => {
    const rng = createRng(11);
    const x = randomFloats(1000, rng, 0.6, 0.8);
    const flags = Int32Array.from({ length: 1000 }, (_, i) => (i % 7 === 0 ? 1 + (i % 3) : 0));
    const out = await expectSameOnBoth((k) => k.exceeds(f32(k, x), 0.7, i32(k, flags)));
    expect(out.filter((v) => v === 1).length).toBeGreaterThan(150);
    expect(out.every((v, i) => v === 1 || flags[i] === 0)).toBe(true);
  });
});

describe('decideExit', () => {
  // [5, 1, 257]: five beams' token states, one span each (one dispatch); [1, 300, 77] and
  // [2, 3, 5000]: several spans per sample (a second dispatch finishes them).
  describe.each(paths)('%s', (_, backend) => {
    it.each([[[5, 1, 257]], [[1, 300, 77]], [[2, 3, 5000]], [[3, 2]]] as [Shape][])('matches the CPU on %j', async (shape) => {
      const batch = shape[0]!;
      const rng = createRng(sizeOf(shape) + 5);
      const previous = randomFloats(sizeOf(shape), rng);
      // Samples move by different amounts, so that their similarities spread around the threshold.
      const length = sizeOf(shape) / batch;
      const computed = previous.map((v, i) => v + (0.2 + 0.5 * Math.floor(i / length)) * (rng() - 0.5));
      for (const doneBefore of [undefined, Array.from({ length: batch }, (_, b) => b % 2)]) {
        const op = (k: Backend, threshold: number) => {
          const flags = doneBefore && i32(k, doneBefore);
          return k.decideExit(f32(k, previous, shape), f32(k, computed, shape), threshold, flags);
        };
        const similarities = Array.from(await evaluate(cpu, (k) => op(k, 2).similarity));
        // A threshold between two samples' similarities, far from both: the decisions cannot round differently.
        const sorted = [...similarities].sort((x, y) => x - y);
        const threshold = batch === 1 ? sorted[0]! - 0.01 : (sorted[0]! + sorted[1]!) / 2;
        expect(batch === 1 || sorted[1]! - sorted[0]! > 1e-3, 'test setup: similarities spread').toBe(true);
        for (const part of ['state', 'done', 'allDone'] as const) {
          const [actual, expected] = [await evaluate(backend, (k) => op(k, threshold)[part]), await evaluate(cpu, (k) => op(k, threshold)[part])];
          expect(Array.from(actual), part).toEqual(Array.from(expected));
        }
        // f32 sums of up to 15000 products in a different order: ~1e-6 relative.
        expectClose(await evaluate(backend, (k) => op(k, threshold).similarity), similarities, { atol: 2e-6 }, 'similarity');
      }
    });
  });

  it('flags every stopped sample whatever its similarity (one that turned around included)', async () => {
    const shape: Shape = [4, 1, 33];
    const previous = randomFloats(4 * 33, createRng(21));
    const computed = previous.map((v, i) => (i < 33 ? v : -v));
    const decision = (k: Backend) => k.decideExit(f32(k, previous, shape), f32(k, computed, shape), 0.5, i32(k, [0, 0, 1, 1])).done;
    expect(Array.from(await evaluate(gpu, decision))).toEqual([1, 0, 1, 1]);
    expect(Array.from(await evaluate(cpu, decision))).toEqual([1, 0, 1, 1]);
    const allDone = (k: Backend) => k.decideExit(f32(k, previous, shape), f32(k, previous, shape), 0.5, i32(k, [0, 0, 1, 1])).allDone;
    expect(Array.from(await evaluate(gpu, allDone))).toEqual([1]);
  });
});

describe('where', () => {
  const rng = createRng(12);
  const a = randomFloats(3 * 5 * 7, rng);
  const b = randomFloats(3 * 5 * 7, rng);

  it('selects per sample with a [B] condition and per batch with [1]', async () => {
    for (const condition of [[1, 0, 3], [0, 0, 0], [1, 1, 1]]) {
      await expectSameOnBoth((k) => k.where(i32(k, condition), f32(k, a, [3, 5, 7]), f32(k, b, [3, 5, 7])));
    }
    for (const condition of [[1], [0]]) {
      await expectSameOnBoth((k) => k.where(i32(k, condition), f32(k, a, [3, 5, 7]), f32(k, b, [3, 5, 7])));
      await expectSameOnBoth((k) => k.where(i32(k, condition), f32(k, a, [105]), f32(k, b, [105])));
    }
  });

  it('keeps f16 (odd element counts included) and i32 operands', async () => {
    const ha = floatsToHalves(a.subarray(0, 3 * 7));
    const hb = floatsToHalves(b.subarray(0, 3 * 7));
    await expectSameOnBoth((k) => k.where(i32(k, [0, 1, 0]), k.upload(ha, [3, 7], 'f16'), k.upload(hb, [3, 7], 'f16')));
    const t = gpu.where(i32(gpu, [1]), gpu.upload(ha, [21], 'f16'), gpu.upload(hb, [21], 'f16'));
    expect(t.dtype).toBe(gpu.capabilities.f16 ? 'f16' : 'f32');
    await expectSameOnBoth((k) => k.where(i32(k, [0, 1]), i32(k, [1, 2, 3, 4], [2, 2]), i32(k, [-1, -2, -3, -4], [2, 2])));
  });

  it('refuses what the CPU refuses', () => {
    const x = f32(gpu, a, [3, 5, 7]);
    expect(() => gpu.where(i32(gpu, [1, 0]), x, x)).toThrow('where: condition [2] needs a and b of [2, ...], got [3, 5, 7]');
    expect(() => gpu.exceeds(f32(gpu, [1, 2], [1, 2]), 0)).toThrow('exceeds: x must be [B], got [1, 2]');
    expect(() => gpu.unlessAll(f32(gpu, [1]), () => 0)).toThrow('unlessAll: done must be i32, got f32');
  });
});

describe('unlessAll', () => {
  const rng = createRng(13);
  const x = randomFloats(4 * 16 * 32, rng);
  const w = randomFloats(32 * 32, rng, -0.2, 0.2);
  const gamma = randomFloats(32, rng, 0.5, 1.5);
  /** A small layer: several kernels, a scratch buffer inside topk-free ops, a released intermediate. */
  const layer = (k: Backend, h: Tensor, wt: Tensor, g: Tensor): Tensor =>
    k.tidy(() => k.layerNorm(k.matmul(h, wt, { activation: 'gelu', residual: h }), g, g, 1e-5));

  it('runs fn when some flag is zero: bit-identical to calling it directly', async () => {
    const direct = await evaluate(gpu, (k) => layer(k, f32(k, x, [4, 16, 32]), f32(k, w, [32, 32]), f32(k, gamma)));
    for (const done of [[0, 0, 0, 0], [1, 1, 0, 1]]) {
      const gated = await evaluate(gpu, (k) => {
        const h = f32(k, x, [4, 16, 32]);
        const [wt, g] = [f32(k, w, [32, 32]), f32(k, gamma)];
        return k.unlessAll(i32(k, done), () => layer(k, h, wt, g));
      });
      expect(Array.from(gated)).toEqual(Array.from(direct));
    }
  });

  it('does not run gated dispatches when every flag is set (their output buffer keeps its old contents)', async () => {
    const n = 1000;
    const [a, b] = [f32(gpu, randomFloats(n, rng)), f32(gpu, randomFloats(n, rng))];
    const sum = Array.from(await cpu.add(f32(cpu, await a.read()), f32(cpu, await b.read())).read());
    for (const [done, expected] of [[[1, 1], 'sentinel'], [[0, 1], 'sum']] as const) {
      // A buffer holding a sentinel goes back to the pool after a submit; the next output of its size
      // (the gated add) gets that very buffer.
      const sentinel = f32(gpu, new Float32Array(n).fill(-12345));
      await gpu.sync();
      const buffer = sentinel.storage;
      sentinel.dispose();
      const flags = i32(gpu, done);
      const y = gpu.unlessAll(flags, () => gpu.add(a, b));
      expect(y.storage, 'pool reuse (test setup)').toBe(buffer);
      const out = Array.from(await y.read());
      expect(out).toEqual(expected === 'sentinel' ? new Array(n).fill(-12345) : sum);
      // What model code does with it: where(done, kept, new) is the kept state either way.
      const kept = Array.from(await a.read());
      const selected = await gpu.where(flags, a.reshape([2, n / 2]), y.reshape([2, n / 2])).read();
      expect(Array.from(selected)).toEqual(kept.map((v, i) => (done[Math.floor(i / (n / 2))] ? v : sum[i])));
      [flags, y].forEach((t) => t.dispose());
    }
  });

  it('skipping a heavy chain takes a fraction of running it (20 matmuls of 512³)', async () => {
    const m = f32(gpu, randomFloats(512 * 512, rng, -0.05, 0.05), [512, 512]);
    const chain = (flags: Tensor): Tensor =>
      gpu.tidy(() =>
        gpu.unlessAll(flags, () => {
          let h = m;
          for (let i = 0; i < 20; i++) h = gpu.matmul(h, m);
          return h;
        }),
      );
    const time = async (done: number): Promise<number> => {
      const flags = i32(gpu, [done]);
      const start = performance.now();
      const out = chain(flags);
      await out.read();
      const elapsed = performance.now() - start;
      [flags, out].forEach((t) => t.dispose());
      return elapsed;
    };
    await time(0); // compiles the pipelines
    const run = Math.min(await time(0), await time(0));
    const skipped = Math.min(await time(1), await time(1));
    expect(skipped, `skipped ${skipped.toFixed(1)} ms vs run ${run.toFixed(1)} ms`).toBeLessThan(0.3 * run);
  });

  it('decides from a tensor computed in the same submission (cosineSimilarity → exceeds → unlessAll → where)', async () => {
    const shape: Shape = [3, 16, 32];
    const prev = randomFloats(sizeOf(shape), rng);
    // Sample 0 barely changes (exits at 0.99), sample 1 changes a lot, sample 2 exited before.
    const next = prev.map((v, i) => (i < 512 ? v + 0.001 : i < 1024 ? -v : v));
    const step = (k: Backend, all: boolean): Tensor => {
      const [h0, h1] = [f32(k, prev, shape), f32(k, next, shape)];
      const exited = i32(k, all ? [1, 1, 1] : [0, 0, 1]);
      const done = k.exceeds(k.cosineSimilarity(h1, h0), 0.99, exited);
      const h2 = k.unlessAll(done, () => layer(k, h1, f32(k, w, [32, 32]), f32(k, gamma)));
      return k.where(done, h1, h2);
    };
    for (const all of [false, true]) {
      const before = gpu.submissions;
      const result = gpu.tidy(() => step(gpu, all));
      expect(gpu.submissions, 'no submission before the read').toBe(before);
      const actual = await result.read();
      expect(gpu.submissions).toBe(before + 1);
      result.dispose();
      // Exited samples (0: similarity > 0.99; 2: flagged before) keep their state exactly; sample 1
      // ran the layer (f32 on both backends, in a different order of summation).
      const expected = await evaluate(cpu, (k) => step(k, all));
      expectClose(actual, expected, { atol: 1e-5, rtol: 1e-5 }, 'gated layer');
      const ranLayer = (i: number): boolean => !all && i >= 512 && i < 1024;
      expect(Array.from(actual).filter((v, i) => !ranLayer(i) && v !== next[i])).toEqual([]);
      if (!all) expect(Array.from(actual.subarray(512, 1024)).filter((v, i) => v === next[512 + i]).length).toBeLessThan(10);
    }
  });

  it('gates several regions of one submission independently, and 2-D grids', async () => {
    const big = 2 * 2_200_000; // where_select needs more than 65535 workgroups of 64: x and y
    const a = f32(gpu, new Float32Array(big).fill(1), [2, big / 2]);
    const b = f32(gpu, new Float32Array(big).fill(2), [2, big / 2]);
    // 3000 floats: a size class of the pool that the small tensors below do not share.
    const input = f32(gpu, new Float32Array(3000).fill(1));
    const skipped = f32(gpu, new Float32Array(3000).fill(-7));
    await gpu.sync();
    const buffer = skipped.storage;
    skipped.dispose();
    const before = gpu.submissions;
    const first = gpu.unlessAll(i32(gpu, [1]), () => gpu.scale(input, 2));
    const second = gpu.unlessAll(i32(gpu, [0, 1]), () => gpu.where(i32(gpu, [0, 1]), a, b));
    const third = gpu.unlessAll(i32(gpu, [0]), () => gpu.scale(f32(gpu, [1, 2]), 3));
    const empty = gpu.unlessAll(i32(gpu, [0]), () => gpu.add(f32(gpu, [], [0]), f32(gpu, [], [0])));
    expect(first.storage, 'pool reuse (test setup)').toBe(buffer);
    const out = await second.read();
    expect(gpu.submissions).toBe(before + 1);
    expect([out[0], out[big / 2 - 1], out[big / 2], out[big - 1]]).toEqual([2, 2, 1, 1]);
    expect(Array.from(await first.read())).toEqual(new Array(3000).fill(-7));
    expect(Array.from(await third.read())).toEqual([3, 6]);
    expect(empty.shape).toEqual([0]);
    [a, b, input, first, second, third, empty].forEach((t) => t.dispose());
  });

  it('refuses nesting, reads, copies and submits inside a gate; the gate closes when fn throws', async () => {
    const done = i32(gpu, [0]);
    const t = f32(gpu, [1, 2]);
    expect(() => gpu.unlessAll(done, () => gpu.unlessAll(done, () => 0))).toThrow('unlessAll: cannot be nested (a gate is already open)');
    let read: Promise<unknown> | undefined;
    let sync: Promise<unknown> | undefined;
    gpu.unlessAll(done, () => {
      read = t.read();
      sync = gpu.sync();
      expect(() => gpu.flush()).toThrow('not allowed inside unlessAll');
    });
    await expect(read).rejects.toThrow('read: not allowed inside unlessAll');
    await expect(sync).rejects.toThrow('not allowed inside unlessAll');
    expect(() =>
      gpu.unlessAll(done, () => {
        gpu.scale(t, 2);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    // The gate is closed and the work recorded before the throw still resolves.
    expect(Array.from(await gpu.scale(t, 4).read())).toEqual([4, 8]);
    expect(Array.from(await gpu.unlessAll(done, () => gpu.scale(t, 0.5)).read())).toEqual([0.5, 1]);
    [done, t].forEach((x) => x.dispose());
  });
});
