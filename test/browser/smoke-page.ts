/**
 * Bundled into a page by test/browser/browser.test.ts: the kernel smoke test on the page's WebGPU
 * (`navigator.gpu`), against the CPU backend in the same page. `?adapter=compatibility` asks for
 * a compatibility-mode adapter. The result lands on `window.smoke`.
 */
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { createWebGpuBackend } from '../../src/backend/webgpu/index.js';
import { type SmokeResult, kernelSmoke } from '../helpers/kernel-smoke.js';

declare global {
  interface Window {
    smoke: Promise<{ adapter: string; subgroups: boolean; subgroupShuffle: boolean; f16: boolean; software: boolean; results: SmokeResult[] }>;
  }
}

window.smoke = (async () => {
  const compatibility = new URLSearchParams(location.search).get('adapter') === 'compatibility';
  const gpu = await createWebGpuBackend(compatibility ? { adapter: { featureLevel: 'compatibility' } } : {});
  try {
    const results = await kernelSmoke(gpu, new CpuBackend());
    const { adapterDescription: adapter, subgroups, subgroupShuffle, f16, software } = gpu.capabilities;
    return { adapter, subgroups, subgroupShuffle, f16, software, results };
  } finally {
    gpu.destroy();
  }
})();
