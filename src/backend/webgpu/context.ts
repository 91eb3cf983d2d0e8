/**
 * What a kernel wrapper needs from the WebGPU backend: output tensors from the pool and a way to
 * record a dispatch. Recording is cheap and synchronous; `flush` turns everything recorded since
 * the last submit into one command encoder and one submission.
 *
 * Binding convention of every kernel file: `@binding(0)` is a uniform `Params` struct of 4-byte
 * scalars in declaration order, `@binding(1..n)` are the tensors in the order given.
 *
 * Gates (`unlessAll`): while a gate is open, every recorded dispatch is marked with it. At flush,
 * at the gate's place in the recording (after the work that computed its `done` flags), one
 * `exit.gate_dispatch` dispatch writes the indirect arguments of the gate's dispatches into an
 * arguments buffer (STORAGE | INDIRECT): their workgroup counts, taken from the parameter buffer,
 * or zeros when every flag is set. The gated dispatches are encoded with
 * `dispatchWorkgroupsIndirect`, so the decision never leaves the device and the forward pass stays
 * one submission. Usage scopes in a compute pass are per dispatch: the gate kernel may write the
 * arguments buffer as storage in the same pass whose later dispatches read it as INDIRECT.
 * Copies (hence reads) and submits are refused while a gate is open; gates do not nest.
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

/**
 * Elements `offset .. offset + length` of a tensor, bound alone: for tensors whose buffer exceeds
 * the storage binding limit (OFA's token table). The byte offset must be a multiple of the
 * device's `minStorageBufferOffsetAlignment` (256); the bound size is the range's bytes rounded up
 * to 16 (kernels read vec4 arrays) within the buffer. Indices in the kernel start at the range.
 */
export interface TensorRange {
  tensor: Tensor;
  offset: number;
  length: number;
}

/** A tensor bound whole (its entire pooled buffer) or a range of it. */
export type Binding = Tensor | TensorRange;

export const bindingTensor = (b: Binding): Tensor => (b instanceof Tensor ? b : b.tensor);

export interface KernelContextOptions {
  /**
   * The largest storage binding in bytes, when lower than the device's
   * `maxStorageBufferBindingSize` (tests use it to split operands without 128 MiB buffers).
   */
  maxBindingBytes?: number;
}

export interface Dispatch {
  variant: KernelVariant;
  params: readonly ParamValue[];
  /** Tensors (or ranges of them) bound at 1, 2, ... (inputs and outputs alike). */
  bindings: readonly Binding[];
  /** Workgroup counts; see `grid` for counts beyond the per-dimension limit. */
  workgroups: readonly [number, number?, number?];
}

/** One `unlessAll`: its flags and the workgroup counts (x, y, z each) of the dispatches inside it. */
interface Gate {
  pipeline: GPUComputePipeline;
  done: GPUBuffer;
  flags: number;
  counts: number[];
}

/** Where a flush placed a gate: its first word in the arguments buffer and its parameter slices. */
interface GateLayout {
  base: number;
  params: { offset: number; size: number };
  counts: { offset: number; size: number };
}

type Recorded =
  | {
      kind: 'dispatch';
      pipeline: GPUComputePipeline;
      paramsOffset: number;
      paramsSize: number;
      buffers: GPUBufferBinding[];
      workgroups: readonly [number, number?, number?];
      /** A gated dispatch: its arguments are words `word..word+2` of the gate's counts. */
      gated?: { gate: Gate; word: number };
    }
  | { kind: 'copy'; source: GPUBuffer; target: GPUBuffer; size: number }
  | { kind: 'gate'; gate: Gate };

/** Also a valid storage-binding offset: WebGPU caps minStorageBufferOffsetAlignment at 256. */
const UNIFORM_ALIGNMENT = 256;

/** The kernel that writes a gate's indirect arguments (`Element` only completes the file). */
const GATE_WORKGROUP_SIZE = 64;
const GATE_KERNEL: KernelVariant = { file: 'exit', entryPoint: 'gate_dispatch', aliases: { Element: 'f32' }, constants: { WORKGROUP_SIZE: GATE_WORKGROUP_SIZE } };

export class KernelContext {
  readonly #records: Recorded[] = [];
  #params = new ArrayBuffer(64 * 1024);
  #paramsUsed = 0;
  #paramsBuffer: GPUBuffer | undefined;
  #errorChecks: Promise<GPUError | null>[] = [];
  #recording = false;
  #placeholders = new Map<DType, Tensor>();
  #gate: Gate | undefined;
  #argsBuffer: GPUBuffer | undefined;
  #submissions = 0;

  constructor(
    readonly backend: Backend,
    readonly device: GPUDevice,
    readonly capabilities: DeviceCapabilities,
    readonly pool: BufferPool,
    readonly pipelines: PipelineCache,
    private readonly track: (t: Tensor) => void,
    private readonly checkUsable: () => void,
    private readonly options: KernelContextOptions = {},
  ) {}

  /** The largest storage binding in bytes: the device's limit, or the lower `maxBindingBytes`. */
  get maxBindingBytes(): number {
    const device = this.device.limits.maxStorageBufferBindingSize;
    return Math.min(device, this.options.maxBindingBytes ?? device);
  }

  get recording(): boolean {
    return this.#recording;
  }

  /** Command buffers submitted so far (one per flush that had work): a test hook. */
  get submissions(): number {
    return this.#submissions;
  }

  /** Throws while a gate is open: `what` would need the host to wait for the device. */
  refuseInsideGate(what: string): void {
    if (this.#gate) throw new Error(`${what}: not allowed inside unlessAll (its decision must not wait for the host)`);
  }

  /**
   * Runs `fn` with every dispatch it records gated by the i32 flags `done` (validated by the
   * caller): they run only if some flag is zero when the device reaches them.
   */
  gate<T>(done: Tensor, fn: () => T): T {
    this.checkUsable();
    if (this.#gate) throw new Error('unlessAll: cannot be nested (a gate is already open)');
    if (done.disposed) throw new Error('unlessAll: the done flags were disposed');
    this.#beginRecording();
    const gate: Gate = { pipeline: this.pipelines.get(GATE_KERNEL), done: done.storage as GPUBuffer, flags: done.size, counts: [] };
    this.#records.push({ kind: 'gate', gate });
    this.#gate = gate;
    try {
      return fn();
    } finally {
      this.#gate = undefined;
    }
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
    const buffers = d.bindings.map((b, i) => this.#bufferBinding(`${d.variant.file}.${d.variant.entryPoint}`, i + 1, b));
    const pipeline = this.pipelines.get(d.variant);
    const params = this.#writeParams(d.params);
    const gate = this.#gate;
    let gated: { gate: Gate; word: number } | undefined;
    if (gate) {
      gated = { gate, word: gate.counts.length };
      gate.counts.push(d.workgroups[0], d.workgroups[1] ?? 1, d.workgroups[2] ?? 1);
    }
    this.#records.push({ kind: 'dispatch', pipeline, paramsOffset: params.offset, paramsSize: params.size, buffers, workgroups: d.workgroups, gated });
  }

  recordCopy(source: GPUBuffer, target: GPUBuffer, size: number): void {
    this.checkUsable();
    this.refuseInsideGate('copying a buffer (reading a tensor)');
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
    this.refuseInsideGate('submitting');
    if (!this.#recording) return;
    this.#recording = false;
    const records = this.#records.splice(0);
    if (records.length > 0) {
      const layouts = this.#layOutGates(records);
      const params = this.#uploadParams();
      const args = layouts.size > 0 ? this.#argsBufferFor(layouts) : undefined;
      const encoder = this.device.createCommandEncoder();
      let pass: GPUComputePassEncoder | undefined;
      const bind = (pipeline: GPUComputePipeline, entries: GPUBindGroupEntry[]): GPUComputePassEncoder => {
        pass ??= encoder.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }));
        return pass;
      };
      for (const r of records) {
        if (r.kind === 'copy') {
          pass?.end();
          pass = undefined;
          encoder.copyBufferToBuffer(r.source, 0, r.target, 0, r.size);
          continue;
        }
        if (r.kind === 'gate') {
          const layout = layouts.get(r.gate);
          if (!layout) continue; // nothing was recorded inside it
          const words = r.gate.counts.length;
          const [x, y] = this.grid(Math.ceil(words / GATE_WORKGROUP_SIZE));
          bind(r.gate.pipeline, [
            { binding: 0, resource: { buffer: params, ...layout.params } },
            { binding: 1, resource: { buffer: r.gate.done } },
            { binding: 2, resource: { buffer: params, ...layout.counts } },
            { binding: 3, resource: { buffer: args! } },
          ]).dispatchWorkgroups(x, y);
          continue;
        }
        const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: params, offset: r.paramsOffset, size: r.paramsSize } }];
        r.buffers.forEach((resource, i) => entries.push({ binding: i + 1, resource }));
        const p = bind(r.pipeline, entries);
        if (r.gated) p.dispatchWorkgroupsIndirect(args!, (layouts.get(r.gated.gate)!.base + r.gated.word) * 4);
        else p.dispatchWorkgroups(r.workgroups[0], r.workgroups[1] ?? 1, r.workgroups[2] ?? 1);
      }
      pass?.end();
      this.device.queue.submit([encoder.finish()]);
      this.#submissions++;
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

  /** Validates one binding (disposal, range, alignment, the binding limit) and returns its buffer slice. */
  #bufferBinding(kernel: string, index: number, b: Binding): GPUBufferBinding {
    const t = bindingTensor(b);
    const what = `${kernel}: binding ${index} (${t.dtype} tensor ${JSON.stringify(t.shape)})`;
    if (t.disposed) throw new Error(`${what} was disposed`);
    const buffer = t.storage as GPUBuffer;
    const limit = this.maxBindingBytes;
    if (b instanceof Tensor) {
      if (buffer.size > limit) {
        throw new Error(`${what}: its ${buffer.size}-byte buffer exceeds the storage binding limit of ${limit} bytes (maxStorageBufferBindingSize); the op must bind ranges of it`);
      }
      return { buffer };
    }
    const { offset, length } = b;
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 1 || offset + length > t.size) {
      throw new Error(`${what}: range of ${length} elements at ${offset} is not within its ${t.size} elements`);
    }
    const bytesPerElement = BYTES_PER_ELEMENT[t.dtype];
    const byteOffset = offset * bytesPerElement;
    const alignment = this.device.limits.minStorageBufferOffsetAlignment;
    if (byteOffset % alignment !== 0) {
      throw new Error(`${what}: range offset ${offset} elements = ${byteOffset} bytes is not a multiple of minStorageBufferOffsetAlignment (${alignment} bytes)`);
    }
    const size = Math.min(Math.ceil((length * bytesPerElement) / 16) * 16, buffer.size - byteOffset);
    if (size > limit) {
      throw new Error(`${what}: range of ${size} bytes exceeds the storage binding limit of ${limit} bytes (maxStorageBufferBindingSize)`);
    }
    return { buffer, offset: byteOffset, size };
  }

  #beginRecording(): void {
    if (this.#recording) return;
    this.#recording = true;
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
  }

  /** Writes one dispatch's parameters into the arena. */
  #writeParams(params: readonly ParamValue[]): { offset: number; size: number } {
    const size = Math.max(16, Math.ceil((params.length * 4) / 16) * 16);
    const offset = this.#reserveParams(size);
    const view = new DataView(this.#params, offset, size);
    params.forEach((p, i) => {
      if ('u32' in p) view.setUint32(i * 4, p.u32, true);
      else if ('i32' in p) view.setInt32(i * 4, p.i32, true);
      else view.setFloat32(i * 4, p.f32, true);
    });
    return { offset, size };
  }

  /**
   * Places each gate that gated something: its words in the arguments buffer (one region per gate,
   * in recording order) and, in the parameter arena, its kernel's parameters and the workgroup
   * counts it copies (or zeroes).
   */
  #layOutGates(records: readonly Recorded[]): Map<Gate, GateLayout> {
    const layouts = new Map<Gate, GateLayout>();
    let base = 0;
    for (const r of records) {
      if (r.kind !== 'gate' || r.gate.counts.length === 0) continue;
      const { counts, flags } = r.gate;
      const params = this.#writeParams([u32(counts.length), u32(flags), u32(base), u32(0)]);
      const countsSlice = this.#writeParams(counts.map(u32));
      layouts.set(r.gate, { base, params, counts: { offset: countsSlice.offset, size: counts.length * 4 } });
      base += counts.length;
    }
    return layouts;
  }

  /** The arguments buffer, big enough for every gate laid out (reused across submits: queue order). */
  #argsBufferFor(layouts: ReadonlyMap<Gate, GateLayout>): GPUBuffer {
    let words = 0;
    for (const [gate] of layouts) words += gate.counts.length;
    const bytes = Math.max(256, Math.ceil((words * 4) / 256) * 256);
    if (!this.#argsBuffer || this.#argsBuffer.size < bytes) {
      this.#argsBuffer?.destroy();
      this.#argsBuffer = this.device.createBuffer({ label: 'unlessAll arguments', size: Math.max(bytes, 2 * (this.#argsBuffer?.size ?? 0)), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.INDIRECT });
    }
    return this.#argsBuffer;
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

  /**
   * One write of all parameters of this submission (queue order makes reusing the buffer safe).
   * STORAGE usage too: gate kernels read their workgroup counts from it as a storage slice.
   */
  #uploadParams(): GPUBuffer {
    const size = Math.ceil(this.#paramsUsed / UNIFORM_ALIGNMENT) * UNIFORM_ALIGNMENT;
    if (!this.#paramsBuffer || this.#paramsBuffer.size < size) {
      this.#paramsBuffer?.destroy();
      this.#paramsBuffer = this.device.createBuffer({ size: Math.max(size, this.#params.byteLength), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    }
    this.device.queue.writeBuffer(this.#paramsBuffer, 0, this.#params, 0, size);
    return this.#paramsBuffer;
  }
}
