/**
 * The WebGPU backend for kernel tests. CI runs on lavapipe (software Vulkan); where no adapter
 * exists at all the WebGPU suites fail with the install hint rather than pass vacuously.
 */
import { createWebGpuBackend, type WebGpuBackend } from '../../src/backend/webgpu/index.js';

let shared: Promise<WebGpuBackend> | undefined;

/** One backend per test file (vitest isolates files), created on first use. */
export function webgpuBackend(): Promise<WebGpuBackend> {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  shared ??= createWebGpuBackend();
  return shared;
}
