/**
 * The WebGPU backend: each op is a small typed wrapper (`ops/*.ts`) around one kernel family
 * (`kernels/*.wgsl`). Ops record dispatches; `read`, `flush` and `sync` submit them.
 */
import type {
  AttentionOptions,
  Backend,
  Conv2dOptions,
  ExitDecision,
  MatmulOptions,
  Pool2dOptions,
  TopK,
} from '../backend.js';
import { TensorScopes } from '../scopes.js';
import { uploadDType } from '../shapes.js';
import { BYTES_PER_ELEMENT, type DType, type HostArray, type Shape, Tensor, shapeToString } from '../../tensor.js';
import { halvesToFloats } from '../../half.js';
import { BufferPool } from './buffer-pool.js';
import { KernelContext, type KernelContextOptions } from './context.js';
import type { AcquiredDevice, DeviceCapabilities } from './device.js';
import { PipelineCache, type KernelSources } from './kernels.js';
import { type DispatchTiming, DispatchProfiler } from './profiler.js';
import { waitForQueue } from './wait.js';
import * as elementwise from './ops/elementwise.js';
import * as exit from './ops/exit.js';
import * as indexing from './ops/indexing.js';
import * as linear from './ops/matmul.js';
import * as normalization from './ops/normalization.js';
import * as reductions from './ops/reductions.js';
import * as relative from './ops/relative-bias.js';
import * as vision from './ops/vision.js';
import * as attention from './ops/attention.js';

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu';
  readonly device: GPUDevice;
  readonly capabilities: DeviceCapabilities;
  readonly #pool: BufferPool;
  readonly #scopes = new TensorScopes();
  readonly #ctx: KernelContext;
  #lostReason: string | undefined;
  #destroyed = false;

  /** `options.maxBindingBytes` lowers the storage binding limit below the device's (tests). */
  constructor({ device, capabilities }: AcquiredDevice, sources: KernelSources, options: KernelContextOptions = {}) {
    this.device = device;
    this.capabilities = capabilities;
    this.#pool = new BufferPool(device);
    this.#ctx = new KernelContext(this, device, capabilities, this.#pool, new PipelineCache(device, sources, capabilities.subgroupsDirective), (t) => this.#scopes.track(t), () => this.#checkUsable(), options);
    void device.lost.then((info) => {
      if (!this.#destroyed) this.#lostReason = `${info.reason ?? 'unknown'}: ${info.message}`;
    });
  }

  /** Command buffers submitted so far (a forward pass is one): a test hook. */
  get submissions(): number {
    return this.#ctx.submissions;
  }

  /** Bytes of pooled device memory: in use now, allocated, and the peak in use. */
  get memory(): BufferPool['stats'] {
    return this.#pool.stats;
  }

  #checkUsable(): void {
    if (this.#destroyed) throw new Error('this WebGPU backend was destroyed');
    if (this.#lostReason !== undefined) {
      throw new Error(`WebGPU device lost (${this.#lostReason}); create a new backend with createWebGpuBackend()`);
    }
  }

  maxTensorElements(dtype: DType): number {
    return Math.floor(this.#pool.maxBytes / BYTES_PER_ELEMENT[dtype]);
  }

  upload(data: Float32Array | Int32Array | Uint16Array, shape: Shape, dtype?: DType): Tensor {
    const requested = uploadDType(data, shape, dtype);
    // Without shader-f16 the device cannot read halves: widen them once here.
    const stored: Float32Array | Int32Array | Uint16Array = requested === 'f16' && !this.capabilities.f16 ? halvesToFloats(data as Uint16Array) : data;
    const storedType: DType = stored === data ? requested : 'f32';
    const t = this.#ctx.output(shape, storedType, true);
    // writeBuffer needs a multiple of 4 bytes: an odd number of halves gets one padding half.
    const bytes = new Uint8Array(stored.buffer as ArrayBuffer, stored.byteOffset, stored.byteLength);
    let padded = bytes;
    if (bytes.byteLength % 4 !== 0) {
      padded = new Uint8Array(bytes.byteLength + 2);
      padded.set(bytes);
    }
    if (padded.byteLength > 0) this.device.queue.writeBuffer(t.storage as GPUBuffer, 0, padded);
    return t;
  }

  /**
   * Copies `t` to a mappable buffer and maps it. Reads started together
   * (`Promise.all([a.read(), b.read()])`) share one submission and one map (`KernelContext.readBack`).
   */
  async read(t: Tensor): Promise<HostArray> {
    this.#checkUsable();
    if (t.disposed) throw new Error(`read: tensor ${shapeToString(t.shape)} was disposed`);
    this.#ctx.refuseInsideGate('read');
    const bytes = t.size * BYTES_PER_ELEMENT[t.dtype];
    const copy = await this.#ctx.readBack(t.storage as GPUBuffer, Math.max(4, Math.ceil(bytes / 4) * 4));
    this.#checkUsable();
    const data = copy.byteLength === bytes ? copy : copy.slice(0, bytes);
    if (t.dtype === 'i32') return new Int32Array(data);
    if (t.dtype === 'f16') return halvesToFloats(new Uint16Array(data));
    return new Float32Array(data);
  }

  release(t: Tensor): void {
    if (this.#destroyed) return;
    this.#pool.release(t.storage as GPUBuffer, this.#ctx.recording);
  }

  tidy<T>(fn: () => T): T {
    return this.#scopes.run(fn);
  }

  flush(): void {
    this.#checkUsable();
    this.#ctx.flush();
  }

  async sync(): Promise<void> {
    this.flush();
    await this.#ctx.checkErrors();
    await waitForQueue(this.device);
    this.#checkUsable();
  }

  /**
   * Runs `fn` in profile mode (`profiler.ts`) and returns its result with the device time of every
   * dispatch it recorded, labelled by kernel and by the `profileScope`s around it. Work recorded
   * before is submitted first and not profiled. `timestamps: false` times dispatches on the host
   * (one submission each), as on adapters without `timestamp-query`.
   */
  async profile<T>(fn: () => Promise<T>, { timestamps = this.device.features.has('timestamp-query') } = {}): Promise<{ result: T; dispatches: DispatchTiming[] }> {
    this.#checkUsable();
    if (this.#ctx.profiler) throw new Error('profile: already profiling');
    this.flush();
    const profiler = new DispatchProfiler(this.device, timestamps);
    this.#ctx.profiler = profiler;
    try {
      const result = await fn();
      this.flush();
      return { result, dispatches: await profiler.settle() };
    } finally {
      this.#ctx.profiler = undefined;
    }
  }

  /** Labels the dispatches `fn` records while profiling (scopes nest); otherwise just runs `fn`. */
  profileScope<T>(label: string, fn: () => T): T {
    const profiler = this.#ctx.profiler;
    return profiler ? profiler.scope(label, fn) : fn();
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#pool.trim();
    this.device.destroy();
  }

  matmul(a: Tensor, b: Tensor, options?: MatmulOptions): Tensor {
    return linear.matmul(this.#ctx, a, b, options);
  }

  add(a: Tensor, b: Tensor): Tensor {
    return elementwise.binary(this.#ctx, 'add', a, b);
  }

  mul(a: Tensor, b: Tensor): Tensor {
    return elementwise.binary(this.#ctx, 'mul', a, b);
  }

  scale(a: Tensor, s: number): Tensor {
    return elementwise.unary(this.#ctx, 'scale', a, s);
  }

  gelu(x: Tensor): Tensor {
    return elementwise.unary(this.#ctx, 'gelu', x);
  }

  relu(x: Tensor): Tensor {
    return elementwise.unary(this.#ctx, 'relu', x);
  }

  layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number, residual?: Tensor): Tensor {
    return normalization.layerNorm(this.#ctx, x, weight, bias, eps, residual);
  }

  softmax(x: Tensor): Tensor {
    return normalization.softmax(this.#ctx, x, false);
  }

  logSoftmax(x: Tensor): Tensor {
    return normalization.softmax(this.#ctx, x, true);
  }

  argmax(x: Tensor): Tensor {
    return reductions.argmax(this.#ctx, x);
  }

  topk(x: Tensor, k: number): TopK {
    return reductions.topk(this.#ctx, x, k);
  }

  cosineSimilarity(a: Tensor, b: Tensor): Tensor {
    return exit.cosineSimilarity(this.#ctx, a, b);
  }

  gather(table: Tensor, ids: Tensor): Tensor {
    return indexing.gather(this.#ctx, table, ids);
  }

  slice(x: Tensor, axis: number, start: number, end: number): Tensor {
    return indexing.slice(this.#ctx, x, axis, start, end);
  }

  concat(xs: readonly Tensor[], axis: number): Tensor {
    return indexing.concat(this.#ctx, xs, axis);
  }

  transpose(x: Tensor, perm: readonly number[]): Tensor {
    return indexing.transpose(this.#ctx, x, perm);
  }

  relativeBias(table: Tensor, index: Tensor, base?: Tensor): Tensor {
    return relative.relativeBias(this.#ctx, table, index, base);
  }

  conv2d(x: Tensor, w: Tensor, options?: Conv2dOptions): Tensor {
    return vision.conv2d(this.#ctx, x, w, options);
  }

  maxPool2d(x: Tensor, options: Pool2dOptions): Tensor {
    return vision.maxPool2d(this.#ctx, x, options);
  }

  attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
    return attention.attention(this.#ctx, q, k, v, options);
  }

  decideExit(previous: Tensor, computed: Tensor, threshold: number, doneBefore?: Tensor): ExitDecision {
    return exit.decideExit(this.#ctx, previous, computed, threshold, doneBefore);
  }

  exceeds(x: Tensor, threshold: number, flags?: Tensor): Tensor {
    return exit.exceeds(this.#ctx, x, threshold, flags);
  }

  where(condition: Tensor, a: Tensor, b: Tensor): Tensor {
    return exit.where(this.#ctx, condition, a, b);
  }

  unlessAll<T>(done: Tensor, fn: () => T): T {
    return exit.unlessAll(this.#ctx, done, fn);
  }
}
