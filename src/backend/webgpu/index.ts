/** Creating the WebGPU backend: on a device of our own, or on one handed in by an embedder. */
import { adoptDevice, requestDevice } from './device.js';
import { loadKernelSources } from './kernels.js';
import { WebGpuBackend } from './webgpu-backend.js';

export { WebGpuBackend } from './webgpu-backend.js';
export type { DeviceCapabilities } from './device.js';

export interface WebGpuBackendOptions {
  /** Use this device (e.g. the embedder's) instead of requesting one. */
  device?: GPUDevice;
  /** Where the `.wgsl` files are served from, for bundlers that move them. */
  kernelsUrl?: URL;
  /** How to pick the adapter when requesting a device, e.g. `{ featureLevel: 'compatibility' }`. */
  adapter?: GPURequestAdapterOptions;
}

export async function createWebGpuBackend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  const [acquired, sources] = await Promise.all([
    options.device ? adoptDevice(options.device) : requestDevice(options.adapter),
    loadKernelSources(options.kernelsUrl),
  ]);
  return new WebGpuBackend(acquired, sources);
}
