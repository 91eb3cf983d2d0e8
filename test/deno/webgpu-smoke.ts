/**
 * Runs under Deno (`deno run --allow-read --allow-env --allow-sys`), with Deno's own WebGPU
 * (`navigator.gpu`, wgpu) instead of Dawn's Node binding: the kernel smoke test, every kernel
 * family once against the CPU backend. Prints one JSON line: `{ adapter, subgroups, subgroupShuffle, results }`.
 */
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { createWebGpuBackend } from '../../src/backend/webgpu/index.js';
import { kernelSmoke } from '../helpers/kernel-smoke.js';

const gpu = await createWebGpuBackend();
const results = await kernelSmoke(gpu, new CpuBackend());
const { adapterDescription: adapter, subgroups, subgroupShuffle } = gpu.capabilities;
console.log(JSON.stringify({ adapter, subgroups, subgroupShuffle, results }));
gpu.destroy();
