/**
 * What a kernel wrapper needs from the WebGPU backend: output tensors from the pool and a way to
 * record a dispatch. Recording is cheap and synchronous; `flush` turns everything recorded since
 * the last submit into one command encoder and one submission.
 *
 * Binding convention of every kernel file: `@binding(0)` is a uniform `Params` struct of 4-byte
 * scalars in declaration order, `@binding(1..n)` are the tensors in the order given.
 *
 * Gates (`unlessAll`, see `kernels/gate.wgsl`): every kernel binds a gate word as a uniform at
 * `@group(1) @binding(0)` and returns at once when it is non-zero. While `unlessAll` runs, every
 * recorded dispatch is marked with its gate. A single flag is its own gate word: the gate's
 * dispatches bind the flag's buffer (pooled buffers have UNIFORM usage for this), e.g. the
 * `allDone` word of `decideExit`. For several flags, at flush each such gate gets a slot in the
 * submission's gate buffer (UNIFORM | STORAGE), and at the gate's place in the recording (after
 * the work that computed its flags) one `select.close_gate` dispatch writes the slot: 1 when every
 * flag is set. Dispatches outside gates bind a word that is always 0. So the decision never
 * leaves the device and the forward pass stays one submission.
 * Usage scopes in a compute pass are per dispatch: the gate kernel may write the slot as storage
 * in the same pass whose later dispatches read it as a uniform.
 * Copies (hence reads) and submits are refused while a gate is open; gates do not nest.
 */
import { BYTES_PER_ELEMENT, type DType, type Shape, Tensor, shapeToString, sizeOf } from '../../tensor.js';
import type { Backend } from '../backend.js';
import type { BufferPool } from './buffer-pool.js';
import type { DeviceCapabilities } from './device.js';
import type { KernelVariant, PipelineCache } from './kernels.js';
import type { DispatchLabel, DispatchProfiler } from './profiler.js';
import { BindGroupCache } from './bind-groups.js';
import { mapForRead } from './wait.js';

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

/** One `unlessAll`: its flags, its kernel's parameters, and whether a dispatch was recorded inside it. */
interface Gate {
  done: GPUBuffer;
  /** The flags are one word, bound directly; else `close_gate` writes a slot from them. */
  direct: boolean;
  /** close_gate's parameters (several flags). */
  params?: { offset: number; size: number };
  used: boolean;
}

type Recorded =
  | {
      kind: 'dispatch';
      pipeline: GPUComputePipeline;
      paramsOffset: number;
      paramsSize: number;
      buffers: GPUBufferBinding[];
      workgroups: readonly [number, number?, number?];
      /** Recorded inside this `unlessAll`. */
      gate?: Gate;
      /** Set while profiling (`profiler.ts`). */
      label?: DispatchLabel;
    }
  | CopyRecord
  | { kind: 'gate'; gate: Gate };

/** A read's copy into the staging buffer that the flush lays out for all reads it submits. */
interface CopyRecord {
  kind: 'copy';
  source: GPUBuffer;
  size: number;
  target?: GPUBuffer;
  targetOffset: number;
}

interface PendingRead {
  copy: CopyRecord;
  resolve: (bytes: ArrayBuffer) => void;
  reject: (error: unknown) => void;
}

/** Also a valid storage-binding offset: WebGPU caps minStorageBufferOffsetAlignment at 256. */
const UNIFORM_ALIGNMENT = 256;

/** A gate's word is bound as 16 bytes (a uniform binding's minimum on some devices). */
const GATE_WORD_BYTES = 16;

/** The kernel that closes a gate (`Element` only completes the file). */
const GATE_KERNEL: KernelVariant = { file: 'select', entryPoint: 'close_gate', aliases: { Element: 'f32' } };

export class KernelContext {
  readonly #records: Recorded[] = [];
  #params = new ArrayBuffer(64 * 1024);
  #paramsUsed = 0;
  #paramsBuffer: GPUBuffer | undefined;
  #errorChecks: Promise<GPUError | null>[] = [];
  #recording = false;
  #placeholders = new Map<DType, Tensor>();
  #gate: Gate | undefined;
  /** One slot (`UNIFORM_ALIGNMENT` bytes) per gate of a submission; reused across submits (queue order). */
  #gateBuffer: GPUBuffer | undefined;
  /** Bind groups of the gate buffer's slots, per pipeline (auto layouts are per pipeline) and slot. */
  readonly #slotGroups = new Map<GPUComputePipeline, GPUBindGroup[]>();
  /** Bind groups of one-flag gates, per pipeline and flag buffer. */
  readonly #wordGroups = new Map<GPUComputePipeline, WeakMap<GPUBuffer, GPUBindGroup>>();
  /** The always-open gate of dispatches outside `unlessAll`, and its bind group per pipeline. */
  #openGate: GPUBuffer | undefined;
  readonly #openGateGroups = new Map<GPUComputePipeline, GPUBindGroup>();
  #submissions = 0;
  /** Reads recorded since the last flush. */
  #pendingReads: PendingRead[] = [];
  /** Attached by `WebGpuBackend.profile`: dispatches are timed one by one. */
  profiler: DispatchProfiler | undefined;
  #bindGroups: BindGroupCache | undefined;

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
    const direct = done.size === 1;
    const gate: Gate = { done: done.storage as GPUBuffer, direct, params: direct ? undefined : this.#writeParams([u32(done.size)]), used: false };
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
    if (bytes > this.pool.maxBytes) {
      throw new Error(
        `tensor ${shapeToString(shape)} ${dtype} (${bytes} bytes) exceeds the largest buffer this device allows ` +
          `(maxBufferSize, ${this.device.limits.maxBufferSize} bytes)`,
      );
    }
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
    if (gate) gate.used = true;
    const label = this.profiler?.label(d.variant.file, d.variant.entryPoint, d.params, d.workgroups);
    this.#records.push({ kind: 'dispatch', pipeline, paramsOffset: params.offset, paramsSize: params.size, buffers, workgroups: d.workgroups, gate, label });
    // Without timestamps, profile mode times each dispatch as a submission of its own (not inside a gate, which cannot submit).
    if (label && !this.profiler!.timestamps && !gate) {
      this.flush();
      this.profiler!.submittedAlone(label);
    }
  }

  /**
   * Records a copy of the first `size` bytes of `source` (a multiple of 4) for reading back; the
   * promise gives them once the device has run everything recorded before. The reads recorded
   * before one flush share one staging buffer, one submission and one map, and the flush happens
   * at the latest when the current run of JavaScript ends: reads started together (a step's
   * log-probabilities and its exit report) cost one round trip.
   */
  readBack(source: GPUBuffer, size: number): Promise<ArrayBuffer> {
    this.checkUsable();
    this.refuseInsideGate('copying a buffer (reading a tensor)');
    this.#beginRecording();
    const copy: CopyRecord = { kind: 'copy', source, size, targetOffset: 0 };
    this.#records.push(copy);
    const bytes = new Promise<ArrayBuffer>((resolve, reject) => this.#pendingReads.push({ copy, resolve, reject }));
    if (this.#pendingReads.length === 1) {
      queueMicrotask(() => {
        try {
          this.flush();
        } catch (error) {
          for (const read of this.#pendingReads.splice(0)) read.reject(error);
        }
      });
    }
    return bytes;
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
    const reads = this.#pendingReads.splice(0);
    let staging: GPUBuffer | undefined;
    try {
      staging = reads.length > 0 ? this.#layOutReads(reads) : undefined;
      if (records.length > 0) this.#submit(records);
    } catch (error) {
      // The reads it took can no longer be delivered.
      staging?.destroy();
      for (const read of reads) read.reject(error);
      throw error;
    }
    this.#paramsUsed = 0;
    this.#errorChecks.push(this.device.popErrorScope(), this.device.popErrorScope());
    this.pool.submitted();
    if (staging) void this.#deliver(staging, reads);
  }

  /** Encodes `records` (gates laid out, reads' targets set) in one command encoder and submits it. */
  #submit(records: readonly Recorded[]): void {
    const slots = this.#gateSlots(records);
    const params = this.#uploadParams();
    if (slots.size > 0) this.#reserveGateSlots(slots.size);
    const gateGroup = (pipeline: GPUComputePipeline, gate: Gate | undefined): GPUBindGroup => {
      if (!gate) return this.#openGateGroup(pipeline);
      return gate.direct ? this.#wordGroup(pipeline, gate.done) : this.#slotGroup(pipeline, slots.get(gate)!);
    };
    const gatePipeline = slots.size > 0 ? this.pipelines.get(GATE_KERNEL) : undefined;
    const encoder = this.device.createCommandEncoder();
    const labels = records.flatMap((r) => (r.kind === 'dispatch' && r.label ? [r.label] : []));
    const timestamps = this.profiler?.timestamps && labels.length > 0 ? this.profiler.submission(labels) : undefined;
    let timed = 0;
    let pass: GPUComputePassEncoder | undefined;
    const bindGroups = (this.#bindGroups ??= new BindGroupCache(this.device));
    /** Binds `slices` at bindings 0, 1, … of group 0 and the gate at group 1. */
    const bind = (pipeline: GPUComputePipeline, slices: GPUBufferBinding[], gate?: Gate, label?: DispatchLabel): GPUComputePassEncoder => {
      if (timestamps && label) {
        // Profile mode: a pass of its own, whose beginning and end are timestamped.
        pass?.end();
        pass = encoder.beginComputePass({ timestampWrites: timestamps.writes(timed++) });
      }
      pass ??= encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroups.get(pipeline, slices));
      pass.setBindGroup(1, gateGroup(pipeline, gate));
      return pass;
    };
    for (const r of records) {
      if (r.kind === 'copy') {
        pass?.end();
        pass = undefined;
        encoder.copyBufferToBuffer(r.source, 0, r.target!, r.targetOffset, r.size);
        continue;
      }
      if (r.kind === 'gate') {
        const slot = slots.get(r.gate);
        if (slot === undefined) continue; // nothing was recorded inside it, or its one flag is the word
        bind(gatePipeline!, [{ buffer: params, ...r.gate.params! }, { buffer: r.gate.done }, this.#slotOf(slot)]).dispatchWorkgroups(1);
        continue;
      }
      bind(r.pipeline, [{ buffer: params, offset: r.paramsOffset, size: r.paramsSize }, ...r.buffers], r.gate, r.label).dispatchWorkgroups(r.workgroups[0], r.workgroups[1] ?? 1, r.workgroups[2] ?? 1);
      if (timestamps && r.label) {
        pass!.end();
        pass = undefined;
      }
    }
    pass?.end();
    timestamps?.resolve(encoder);
    this.device.queue.submit([encoder.finish()]);
    timestamps?.submitted();
    this.#submissions++;
  }

  /** One staging buffer for `reads`, each copy's place in it set. */
  #layOutReads(reads: readonly PendingRead[]): GPUBuffer {
    let size = 0;
    for (const { copy } of reads) {
      copy.targetOffset = size;
      size += copy.size;
    }
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    for (const { copy } of reads) copy.target = staging;
    return staging;
  }

  /** Maps the staging buffer once the submission is done and hands each read its bytes. */
  async #deliver(staging: GPUBuffer, reads: readonly PendingRead[]): Promise<void> {
    try {
      await this.checkErrors();
      await mapForRead(staging);
      const all = staging.getMappedRange();
      for (const { copy, resolve } of reads) resolve(all.slice(copy.targetOffset, copy.targetOffset + copy.size));
      staging.unmap();
    } catch (error) {
      for (const read of reads) read.reject(error);
    } finally {
      staging.destroy();
    }
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

  /** Numbers the gates that gated something, in recording order: their slots in the gate buffer. */
  #gateSlots(records: readonly Recorded[]): Map<Gate, number> {
    const slots = new Map<Gate, number>();
    for (const r of records) if (r.kind === 'gate' && r.gate.used && !r.gate.direct) slots.set(r.gate, slots.size);
    return slots;
  }

  #slotOf(slot: number): GPUBufferBinding {
    return { buffer: this.#gateBuffer!, offset: slot * UNIFORM_ALIGNMENT, size: GATE_WORD_BYTES };
  }

  /** Makes the gate buffer hold at least `slots` slots. */
  #reserveGateSlots(slots: number): void {
    const bytes = slots * UNIFORM_ALIGNMENT;
    if (!this.#gateBuffer || this.#gateBuffer.size < bytes) {
      this.#gateBuffer?.destroy();
      const size = Math.max(bytes, 2 * (this.#gateBuffer?.size ?? 0));
      this.#gateBuffer = this.device.createBuffer({ label: 'unlessAll gates', size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.STORAGE });
      this.#slotGroups.clear();
    }
  }

  /** The bind group of the gate buffer's slot `slot` for `pipeline` (made once: creating them per dispatch cost more than the gates saved). */
  #slotGroup(pipeline: GPUComputePipeline, slot: number): GPUBindGroup {
    let groups = this.#slotGroups.get(pipeline);
    if (!groups) this.#slotGroups.set(pipeline, (groups = []));
    groups[slot] ??= this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(1), entries: [{ binding: 0, resource: this.#slotOf(slot) }] });
    return groups[slot];
  }

  /** The bind group of a one-flag gate (the flag's pooled buffer) for `pipeline`, kept while the buffer lives. */
  #wordGroup(pipeline: GPUComputePipeline, word: GPUBuffer): GPUBindGroup {
    let groups = this.#wordGroups.get(pipeline);
    if (!groups) this.#wordGroups.set(pipeline, (groups = new WeakMap()));
    let group = groups.get(word);
    if (!group) {
      group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(1), entries: [{ binding: 0, resource: { buffer: word, size: GATE_WORD_BYTES } }] });
      groups.set(word, group);
    }
    return group;
  }

  #openGateGroup(pipeline: GPUComputePipeline): GPUBindGroup {
    let group = this.#openGateGroups.get(pipeline);
    if (!group) {
      // Buffers start zeroed: the gate stays open.
      this.#openGate ??= this.device.createBuffer({ label: 'open gate', size: GATE_WORD_BYTES, usage: GPUBufferUsage.UNIFORM });
      group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(1), entries: [{ binding: 0, resource: { buffer: this.#openGate } }] });
      this.#openGateGroups.set(pipeline, group);
    }
    return group;
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
