/**
 * Getting a GPUDevice in Node (Dawn through npm `webgpu`), Deno and browsers (`navigator.gpu`),
 * or from an embedder, with the optional features our kernels use when the adapter has them.
 */
import { mapForRead } from './wait.js';

/** What the kernels may rely on, read from the adapter and device once. */
export interface DeviceCapabilities {
  /** `shader-f16`: f16 weights stay f16 on the device. */
  f16: boolean;
  /** WGSL's `subgroups` extension (`enable subgroups;`): reductions use subgroup operations. */
  subgroups: boolean;
  /**
   * `subgroupShuffle` works: the register GEMM shares rows through shuffles. Also where the
   * compiler has the shuffle builtins but not the extension (wgpu's naga: Deno; see `subgroupSupport`).
   */
  subgroupShuffle: boolean;
  /** Kernels using subgroups say `enable subgroups;`: false where the compiler refuses it (naga). */
  subgroupsDirective: boolean;
  /** The subgroup size where the adapter has one fixed size (lavapipe: 8), else undefined. */
  fixedSubgroupSize: number | undefined;
  /** Software rasteriser (lavapipe / SwiftShader): register blocking beats workgroup-memory tiling. */
  software: boolean;
  adapterDescription: string;
  limits: GPUSupportedLimits;
}

export interface AcquiredDevice {
  device: GPUDevice;
  capabilities: DeviceCapabilities;
}

const INSTALL_HINT =
  'WebGPU found no adapter. On a machine without a GPU, install a Vulkan software driver: on Debian ' +
  'bookworm `apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1` (Mesa ≥ 23; bookworm’s own ' +
  'Mesa 22 is too old for Dawn) and set XDG_RUNTIME_DIR (e.g. `export XDG_RUNTIME_DIR=/tmp/xdg-$USER`, an existing directory).';

/**
 * Dawn's instance for this process. It must stay referenced: if the GPU object is garbage
 * collected, Dawn tears the instance down while devices still deliver events to it (a crash).
 */
let dawnGpu: GPU | undefined;

/** `navigator.gpu` where the host has it (Deno, browsers), else Dawn's Node binding. */
async function findGpu(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (dawnGpu) return dawnGpu;
  let dawn: typeof import('webgpu');
  try {
    dawn = await import('webgpu');
  } catch (cause) {
    throw new Error('WebGPU is not available: no navigator.gpu and the npm package `webgpu` (Dawn for Node) failed to load', { cause });
  }
  // Dawn's Node binding expects its GPU* classes (GPUBufferUsage, ...) as globals, like a browser.
  Object.assign(globalThis, dawn.globals);
  // Timestamps at full resolution: Dawn rounds them to 65.5 µs by default (a browser's guard
  // against timing attacks), coarser than most kernels of a decoding step (profile mode).
  dawnGpu = dawn.create(['disable-dawn-features=timestamp_quantization']);
  return dawnGpu;
}

/** By name, or as the fallback adapter (Firefox names no adapter but marks lavapipe so). */
function isSoftwareAdapter(info: GPUAdapterInfo): boolean {
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return /llvmpipe|lavapipe|swiftshader|software|warp/.test(text) || (info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
}

function describe(info: GPUAdapterInfo): string {
  const named = [info.description || info.device, info.vendor, info.architecture].filter(Boolean).join(' / ');
  return named || (isSoftwareAdapter(info) ? 'unnamed fallback adapter (software)' : 'unnamed adapter');
}

/**
 * A subgroup shuffle, run to check that subgroups work: each invocation takes its right
 * neighbour's lane index. `ENABLE` is the directive, or nothing.
 */
const SHUFFLE_PROBE = `ENABLE
@group(0) @binding(0) var<storage, read_write> lanes: array<vec3<u32>, 32>;
@compute @workgroup_size(32)
fn main(@builtin(local_invocation_index) i: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32) {
  lanes[i] = vec3<u32>(lane, size, subgroupShuffle(lane, (lane + 1u) % size));
}`;

/**
 * What of subgroups a device with the `subgroups` feature has: the WGSL extension, when a shuffle
 * with `enable subgroups;` runs right; shuffles alone, when only one without it does (naga refuses
 * the directive and lacks parts of the extension, e.g. `subgroupElect`).
 */
async function subgroupSupport(device: GPUDevice): Promise<Pick<DeviceCapabilities, 'subgroups' | 'subgroupShuffle' | 'subgroupsDirective'>> {
  const none = { subgroups: false, subgroupShuffle: false, subgroupsDirective: true };
  if (!device.features.has('subgroups')) return none;
  for (const directive of [true, false]) {
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ label: 'subgroup probe', code: SHUFFLE_PROBE.replace('ENABLE', directive ? 'enable subgroups;' : '') });
    const pipeline = device.createComputePipeline({ label: 'subgroup probe', layout: 'auto', compute: { module, entryPoint: 'main' } });
    if (await device.popErrorScope()) continue;
    const size = 32 * 16;
    const lanes = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const readable = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: lanes } }] }));
      pass.dispatchWorkgroups(1);
      pass.end();
      encoder.copyBufferToBuffer(lanes, 0, readable, 0, size);
      device.queue.submit([encoder.finish()]);
      await mapForRead(readable);
      const words = new Uint32Array(readable.getMappedRange());
      let shuffles = true;
      for (let i = 0; i < 32; i++) {
        const [lane, width, neighbour] = [words[4 * i]!, words[4 * i + 1]!, words[4 * i + 2]!];
        shuffles &&= width > 0 && neighbour === (lane + 1) % width;
      }
      readable.unmap();
      return { subgroups: shuffles && directive, subgroupShuffle: shuffles, subgroupsDirective: directive };
    } finally {
      lanes.destroy();
      readable.destroy();
    }
  }
  return none;
}

async function capabilitiesOf(device: GPUDevice, info: GPUAdapterInfo): Promise<DeviceCapabilities> {
  const { subgroupMinSize, subgroupMaxSize } = info;
  return {
    f16: device.features.has('shader-f16'),
    ...(await subgroupSupport(device)),
    fixedSubgroupSize: subgroupMinSize !== undefined && subgroupMinSize === subgroupMaxSize ? subgroupMinSize : undefined,
    software: isSoftwareAdapter(info),
    adapterDescription: describe(info),
    limits: device.limits,
  };
}

/** Requests a device with the largest buffer limits the adapter offers (weights of OFA-base are > 128 MiB). */
export async function requestDevice(adapterOptions: GPURequestAdapterOptions = {}): Promise<AcquiredDevice> {
  const gpu = await findGpu();
  // A browser on OpenGL ES (Chromium's ANGLE) offers only a compatibility-mode adapter; its device
  // gets the limits requested below, e.g. 1024 invocations per workgroup rather than compat's 128.
  const options: GPURequestAdapterOptions = { powerPreference: 'high-performance', ...adapterOptions };
  const adapter = (await gpu.requestAdapter(options)) ?? (await gpu.requestAdapter({ ...options, featureLevel: 'compatibility' }));
  if (!adapter) throw new Error(INSTALL_HINT);
  const wanted: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];
  const listed = wanted.filter((f) => adapter.features.has(f));
  const a = adapter.limits;
  const descriptor = (requiredFeatures: GPUFeatureName[]): GPUDeviceDescriptor => ({
    requiredFeatures,
    requiredLimits: {
      maxBufferSize: a.maxBufferSize,
      maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: a.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: a.maxComputeWorkgroupSizeY,
      maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
      // The finest the adapter allows (lavapipe: 16 bytes, the default 256): operands beyond the
      // storage binding limit are bound in ranges that start on it (ops/chunks.ts).
      minStorageBufferOffsetAlignment: a.minStorageBufferOffsetAlignment,
    },
  });
  // Deno's WebGPU (wgpu) runs subgroup operations but does not list the feature (on lavapipe the
  // register GEMM is 2-3 times faster with them): ask for it anyway where it is not listed. An
  // implementation without it refuses the device, and we ask again without; subgroupSupport then
  // keeps it only if a shuffle runs right.
  let device: GPUDevice | undefined;
  if (!adapter.features.has('subgroups')) {
    device = await adapter.requestDevice(descriptor([...listed, 'subgroups'])).catch(() => undefined);
  }
  try {
    device ??= await adapter.requestDevice(descriptor(listed));
  } catch (cause) {
    throw new Error(`WebGPU adapter "${describe(adapter.info)}" refused to create a device`, { cause });
  }
  return { device, capabilities: await capabilitiesOf(device, adapter.info) };
}

/** Wraps a device handed in by an embedder; its features decide which kernel variants run. */
export async function adoptDevice(device: GPUDevice): Promise<AcquiredDevice> {
  return { device, capabilities: await capabilitiesOf(device, device.adapterInfo) };
}
