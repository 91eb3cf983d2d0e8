/**
 * Profile mode: every dispatch recorded inside `profile` comes back once, in recording order,
 * labelled with its kernel, its shape and the scopes around it, with a device time; the results
 * are the same as without profiling. Both ways of timing: device timestamps (lavapipe has them)
 * and a submission per dispatch timed on the host (adapters without `timestamp-query`).
 */
import { describe, expect, it } from 'vitest';
import type { WebGpuBackend } from '../../src/backend/webgpu/index.js';
import type { Tensor } from '../../src/tensor.js';
import { createRng, randomFloats } from '../helpers/random.js';
import { webgpuBackend } from '../helpers/webgpu.js';

const gpu = await webgpuBackend();
const rng = createRng(11);
const x = gpu.upload(randomFloats(6 * 20, rng), [6, 20]);
const w = gpu.upload(randomFloats(12 * 20, rng), [12, 20]);
const gamma = gpu.upload(randomFloats(12, rng), [12]);
const beta = gpu.upload(randomFloats(12, rng), [12]);

/** A linear layer, then a layer norm and a ReLU in a nested scope. */
function block(backend: WebGpuBackend): Tensor {
  const h = backend.profileScope('linear', () => backend.matmul(x, w, { transposeB: true }));
  return backend.profileScope('norm', () => backend.profileScope('inner', () => backend.relu(backend.layerNorm(h, gamma, beta, 1e-5))));
}

describe.each([
  ['device timestamps', true],
  ['a submission per dispatch, timed on the host', false],
])('profile mode with %s', (_, timestamps) => {
  it('labels every dispatch by scope, kernel and shape, and computes the same result', async () => {
    const expected = await gpu.tidy(() => block(gpu)).read();
    const { result, dispatches } = await gpu.profile(async () => {
      const out = block(gpu);
      const values = await out.read();
      out.dispose();
      return values;
    }, { timestamps });
    expect(Array.from(result)).toEqual(Array.from(expected));
    expect(dispatches.map((d) => [d.scope, d.kernel.split('.')[0]])).toEqual([
      ['linear', 'matmul'],
      ['norm / inner', 'layernorm'],
      ['norm / inner', 'elementwise'],
    ]);
    expect(dispatches[0]!.shape).toBe('6×12×20'); // M×N×K
    for (const d of dispatches) expect(d.ms).toBeGreaterThanOrEqual(0);
    expect(dispatches.some((d) => d.ms > 0)).toBe(true);
  });
});

describe('profile mode', () => {
  it('does not profile work recorded before it, nor run inside another profile', async () => {
    const before = gpu.relu(x);
    const { dispatches } = await gpu.profile(async () => {
      await expect(gpu.profile(async () => {})).rejects.toThrow(/already profiling/);
    });
    expect(dispatches).toEqual([]);
    before.dispose();
  });

  it('leaves dispatches unlabelled and scopes inert outside profile', async () => {
    const out = gpu.profileScope('ignored', () => gpu.relu(x));
    expect(Array.from(await out.read())).toEqual(Array.from(await x.read()).map((v) => Math.max(v, 0)));
    out.dispose();
  });
});
