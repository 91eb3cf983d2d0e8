/**
 * The WebGPU backend for kernel tests. CI runs on lavapipe (software Vulkan); where no adapter
 * exists at all the WebGPU suites fail with the install hint rather than pass vacuously.
 */
import type { KernelContextOptions } from '../../src/backend/webgpu/context.js';
import type { DeviceCapabilities } from '../../src/backend/webgpu/device.js';
import { WebGpuBackend, createWebGpuBackend } from '../../src/backend/webgpu/index.js';
import { loadKernelSources } from '../../src/backend/webgpu/kernels.js';

let shared: Promise<WebGpuBackend> | undefined;

/** One backend per test file (vitest isolates files), created on first use. */
export function webgpuBackend(): Promise<WebGpuBackend> {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  shared ??= createWebGpuBackend();
  return shared;
}

/**
 * A second backend on the shared device that believes the adapter has other capabilities, so a
 * test can force a kernel path the adapter would not pick (e.g. the tiled GEMM on lavapipe).
 */
export async function webgpuBackendWith(capabilities: Partial<DeviceCapabilities>, options?: KernelContextOptions): Promise<WebGpuBackend> {
  const gpu = await webgpuBackend();
  return new WebGpuBackend({ device: gpu.device, capabilities: { ...gpu.capabilities, ...capabilities } }, await loadKernelSources(), options);
}

/**
 * The GEMM kernels, named: the adapter's own choice, the workgroup-memory tiled one and, on a
 * software adapter with subgroups, the register GEMM as adapters without them run it.
 */
export async function gemmPaths(options?: KernelContextOptions): Promise<[string, WebGpuBackend][]> {
  const gpu = await webgpuBackend();
  const own = options ? await webgpuBackendWith({}, options) : gpu;
  const paths: [string, WebGpuBackend][] = [
    [gpu.capabilities.software ? 'register-blocked GEMM' : 'the adapter’s GEMM', own],
    ['workgroup-memory GEMM', await webgpuBackendWith({ software: false }, options)],
  ];
  // The register GEMM of software adapters without subgroups (Deno's and Firefox's WebGPU).
  if (gpu.capabilities.software && gpu.capabilities.subgroupShuffle) {
    paths.push(['register-blocked GEMM, uniform reads (no subgroups)', await webgpuBackendWith({ subgroups: false, subgroupShuffle: false }, options)]);
  }
  return paths;
}
