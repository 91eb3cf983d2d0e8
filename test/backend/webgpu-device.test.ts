/**
 * Device failures: a lost device makes the call that hits it fail with the reason, and a new
 * backend can be created afterwards.
 */
import { describe, expect, it } from 'vitest';
import { createWebGpuBackend } from '../../src/backend/webgpu/index.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

describe('WebGPU device failures', () => {
  it('reports a lost device from the next call, and a new backend works', async () => {
    const backend = await createWebGpuBackend();
    const x = backend.upload(new Float32Array([1, -1]), [2]);
    // The embedder (or the driver) loses the device under the backend's feet.
    backend.device.destroy();
    await backend.device.lost;
    expect(() => backend.relu(x)).toThrow(/WebGPU device lost \(destroyed: .*\); create a new backend/);
    await expect(backend.read(x)).rejects.toThrow(/device lost/);

    const fresh = await createWebGpuBackend();
    const y = fresh.relu(fresh.upload(new Float32Array([1, -1]), [2]));
    expect(Array.from(await y.read())).toEqual([1, 0]);
    fresh.destroy();
  });

  it('refuses to use a destroyed backend', async () => {
    const backend = await createWebGpuBackend();
    backend.destroy();
    expect(() => backend.upload(new Float32Array([1]), [1])).toThrow(/destroyed/);
  });
});
