/**
 * What a kernel wrapper needs from the WebGPU backend: output tensors from the pool and a way to
 * record a dispatch. Recording is cheap and synchronous; `flush` turns everything recorded since
 * the last submit into one command encoder and one submission.
 *
 * Binding convention of every kernel file: `@binding(0)` is a uniform `Params` struct of 4-byte
 * scalars in declaration order, `@binding(1..n)` are the tensors in the order given.
 */
import { BYTES_PER_ELEMENT, type DType, type Shape, Tensor, sizeOf } from '../../tensor.js';
import type { Backend } from '../backend.js';
import type { BufferPool } from './buffer-pool.js';
import type { DeviceCapabilities } from './device.js';
import type { KernelVariant, PipelineCache } from './kernels.js';

export type ParamValue = { u32: number } | { i32: number } | { f32: number };
export const u32 = (value: number): ParamValue => ({ u32: value });
export const i32 = (value: number): ParamValue => ({ i32: value });
export const f32 = (value: number): ParamValue => ({ f32: value });

export interface Dispatch {
  variant: KernelVariant;
  params: readonly ParamValue[];
  /** Tensors bound at 1, 2, ... (inputs and outputs alike). */
  bindings: readonly Tensor[];
  /** Workgroup counts; see `grid` for counts beyond the per-dimension limit. */
  workgroups: readonly [number, number?, number?];
}

type Recorded =
  | { kind: 'dispatch'; pipeline: GPUComputePipeline; paramsOffset: number; paramsSize: number; buffers: GPUBuffer[]; workgroups: readonly [number, number?, number?] }
  | { kind: 'copy'; source: GPUBuffer; target: GPUBuffer; size: number };

const UNIFORM_ALIGNMENT = 256;

export class KernelContext {
  readonly #records: Recorded[] = [];
  #params = new ArrayBuffer(64 * 1024);
  #paramsUsed = 0;
  #paramsBuffer: GPUBuffer | undefined;
  #errorChecks: Promise<GPUError | null>[] = [];
  #recording = false;
  #placeholders = new Map<DType, Tensor>();

  constructor(
    readonly backend: Backend,
    readonly device: GPUDevice,
    readonly capabilities: DeviceCapabilities,
    readonly pool: BufferPool,
    readonly pipelines: PipelineCache,
    private readonly track: (t: Tensor) => void,
    private readonly checkUsable: () => void,
  ) {}

  get recording(): boolean {
    return this.#recording;
  }

  /** A new pooled tensor; its contents are undefined until a dispatch writes it. */
  output(shape: Shape, dtype: DType = 'f32', forUpload = false): Tensor {
    this.checkUsable();
    this.#beginRecording();
    const bytes = Math.max(4, sizeOf(shape) * BYTES_PER_ELEMENT[dtype]);
    const t = new Tensor(this.backend, shape, dtype, this.pool.acquire(bytes, forUpload));
    this.track(t);
    return t;
  }

  /** A small tensor to bind where a kernel's optional operand is absent (an override flag says so). */
  placeholder(dtype: DType): Tensor {
    let t = this.#placeholders.get(dtype);
    if (!t) {
      t = new Tensor(this.backend, [1], dtype, this.pool.acquire(4, false));
      this.#placeholders.set(dtype, t);
    }
    return t;
  }

  record(d: Dispatch): void {
    this.checkUsable();
    this.#beginRecording();
    if (d.workgroups.some((n) => n === 0)) return;
    const limit = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (d.workgroups.some((n) => n !== undefined && n > limit)) {
      throw new Error(`${d.variant.file}.${d.variant.entryPoint}: ${d.workgroups.join('×')} workgroups exceed the device limit ${limit} per dimension`);
    }
    const paramsSize = Math.max(16, Math.ceil((d.params.length * 4) / 16) * 16);
    const paramsOffset = this.#reserveParams(paramsSize);
    const view = new DataView(this.#params, paramsOffset, paramsSize);
    d.params.forEach((p, i) => {
      if ('u32' in p) view.setUint32(i * 4, p.u32, true);
      else if ('i32' in p) view.setInt32(i * 4, p.i32, true);
      else view.setFloat32(i * 4, p.f32, true);
    });
    const buffers = d.bindings.map((t) => {
      if (t.disposed) throw new Error(`${d.variant.file}.${d.variant.entryPoint}: an operand tensor ${JSON.stringify(t.shape)} was disposed`);
      return t.storage as GPUBuffer;
    });
    this.#records.push({ kind: 'dispatch', pipeline: this.pipelines.get(d.variant), paramsOffset, paramsSize, buffers, workgroups: d.workgroups });
  }

  recordCopy(source: GPUBuffer, target: GPUBuffer, size: number): void {
    this.checkUsable();
    this.#beginRecording();
    this.#records.push({ kind: 'copy', source, target, size });
  }

  /** Splits a 1-D workgroup count over x and y when it exceeds the per-dimension limit. */
  grid(count: number): [number, number] {
    const limit = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (count <= limit) return [count, 1];
    const y = Math.ceil(count / limit);
    return [Math.ceil(count / y), y];
  }

  /** Encodes and submits everything recorded since the last submit. */
  flush(): void {
    if (!this.#recording) return;
    this.#recording = false;
    const records = this.#records.splice(0);
    if (records.length > 0) {
      const params = this.#uploadParams();
      const encoder = this.device.createCommandEncoder();
      let pass: GPUComputePassEncoder | undefined;
      for (const r of records) {
        if (r.kind === 'copy') {
          pass?.end();
          pass = undefined;
          encoder.copyBufferToBuffer(r.source, 0, r.target, 0, r.size);
          continue;
        }
        pass ??= encoder.beginComputePass();
        const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: params, offset: r.paramsOffset, size: r.paramsSize } }];
        r.buffers.forEach((buffer, i) => entries.push({ binding: i + 1, resource: { buffer } }));
        pass.setPipeline(r.pipeline);
        pass.setBindGroup(0, this.device.createBindGroup({ layout: r.pipeline.getBindGroupLayout(0), entries }));
        pass.dispatchWorkgroups(r.workgroups[0], r.workgroups[1] ?? 1, r.workgroups[2] ?? 1);
      }
      pass?.end();
      this.device.queue.submit([encoder.finish()]);
    }
    this.#paramsUsed = 0;
    this.#errorChecks.push(this.device.popErrorScope(), this.device.popErrorScope());
    this.pool.submitted();
  }

  /** Throws the first WebGPU error (validation, out of memory, internal) raised since the last check. */
  async checkErrors(): Promise<void> {
    const checks = this.#errorChecks.splice(0);
    const errors = (await Promise.all(checks)).filter((e): e is GPUError => e !== null);
    const first = errors[0];
    if (first) {
      const kind = first.constructor.name === 'GPUOutOfMemoryError' ? 'out of memory' : 'error';
      throw new Error(`WebGPU ${kind}: ${first.message}`);
    }
  }

  #beginRecording(): void {
    if (this.#recording) return;
    this.#recording = true;
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
  }

  #reserveParams(size: number): number {
    const offset = Math.ceil(this.#paramsUsed / UNIFORM_ALIGNMENT) * UNIFORM_ALIGNMENT;
    if (offset + size > this.#params.byteLength) {
      const grown = new ArrayBuffer(Math.max(this.#params.byteLength * 2, offset + size));
      new Uint8Array(grown).set(new Uint8Array(this.#params));
      this.#params = grown;
    }
    this.#paramsUsed = offset + size;
    return offset;
  }

  /** One write of all parameters of this submission (queue order makes reusing the buffer safe). */
  #uploadParams(): GPUBuffer {
    const size = Math.ceil(this.#paramsUsed / UNIFORM_ALIGNMENT) * UNIFORM_ALIGNMENT;
    if (!this.#paramsBuffer || this.#paramsBuffer.size < size) {
      this.#paramsBuffer?.destroy();
      this.#paramsBuffer = this.device.createBuffer({ size: Math.max(size, this.#params.byteLength), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    }
    this.device.queue.writeBuffer(this.#paramsBuffer, 0, this.#params, 0, size);
    return this.#paramsBuffer;
  }
}
