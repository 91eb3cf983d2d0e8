/**
 * The CPU backend: the readable definition of every op and the oracle the WebGPU kernels are
 * tested against. Ops run synchronously in plain loops; the math of each lives in the module
 * named after its family, and this class only validates (through `shapes.ts`), unwraps storage
 * and wraps results.
 *
 * Storage is a Float32Array for f32 and f16 tensors (f16 uploads are widened once; their values
 * stay exactly representable in f16, so the dtype remains 'f16') and an Int32Array for i32.
 *
 * `unlessAll` skips on the CPU too: while its flags are all set, every op still validates its
 * operands and returns a tensor of the right shape and dtype, but zero-filled, without computing
 * (`#result` is the one place that decides). So model code runs unchanged on both backends and
 * both save the work.
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
import {
  attentionSizes,
  broadcastSizes,
  concatSizes,
  conv2dSizes,
  cosineSizes,
  decideExitSizes,
  elementwiseSizes,
  exceedsSizes,
  gatherSizes,
  lastDimSizes,
  layerNormSizes,
  matmulSizes,
  pool2dSizes,
  relativeBiasSizes,
  sliceSizes,
  topkSizes,
  transposeSizes,
  unlessAllSizes,
  uploadDType,
  whereSizes,
} from '../shapes.js';
import { halvesToFloats } from '../../half.js';
import { type DType, type HostArray, type Shape, Tensor, shapeToString, sizeOf } from '../../tensor.js';
import * as attentionOps from './attention.js';
import * as elementwise from './elementwise.js';
import * as exit from './exit.js';
import * as indexing from './indexing.js';
import * as linear from './linear.js';
import * as reductions from './reductions.js';
import * as vision from './vision.js';

/** A tensor's storage handle; `release` empties it so the array can be garbage collected. */
class CpuStorage {
  constructor(public data: HostArray | null) {}
}

export class CpuBackend implements Backend {
  readonly name = 'cpu';
  /** Every tensor created here and not yet released, for `destroy`. */
  readonly #live = new Set<Tensor>();
  readonly #scopes = new TensorScopes();
  /** Inside `unlessAll`: whether a gate is open, and whether it skips (all flags set). */
  #gateOpen = false;
  #skipping = false;
  #computedOps = 0;

  /**
   * How many op results have been computed (ops skipped inside `unlessAll` are not counted; an op
   * with two results, topk, counts once): a test hook.
   */
  get computedOps(): number {
    return this.#computedOps;
  }

  // ---- storage and lifetime -------------------------------------------------------------------

  /** V8's longest typed array on 64-bit hosts (every dtype is stored in 4-byte elements). */
  maxTensorElements(): number {
    return 2 ** 32;
  }

  upload(data: Float32Array | Int32Array | Uint16Array, shape: Shape, dtype?: DType): Tensor {
    const resolved = uploadDType(data, shape, dtype);
    return this.#create(shape, resolved, data instanceof Uint16Array ? halvesToFloats(data) : data.slice());
  }

  async read(t: Tensor): Promise<HostArray> {
    this.#refuseInsideGate('read');
    return this.#data(t).slice();
  }

  release(t: Tensor): void {
    // A view shares its owner's storage and frees nothing.
    if (t.owner) return;
    this.#storage(t).data = null;
    this.#live.delete(t);
  }

  tidy<T>(fn: () => T): T {
    return this.#scopes.run(fn);
  }

  flush(): void {
    this.#refuseInsideGate('flush');
  }

  async sync(): Promise<void> {
    this.#refuseInsideGate('sync');
  }

  destroy(): void {
    for (const t of [...this.#live]) t.dispose();
  }

  #create(shape: Shape, dtype: DType, data: HostArray): Tensor {
    const t = new Tensor(this, [...shape], dtype, new CpuStorage(data));
    this.#live.add(t);
    this.#scopes.track(t);
    return t;
  }

  /**
   * Wraps an op's results: runs `compute` and checks what it returns, or, while `unlessAll`
   * skips, returns zero-filled tensors of the given shapes and dtypes without running it.
   */
  #results(outputs: readonly (readonly [Shape, DType])[], compute: () => HostArray[]): Tensor[] {
    if (this.#skipping) {
      return outputs.map(([shape, dtype]) => this.#create(shape, dtype, dtype === 'i32' ? new Int32Array(sizeOf(shape)) : new Float32Array(sizeOf(shape))));
    }
    const data = compute();
    this.#computedOps++;
    return outputs.map(([shape, dtype], i) => {
      const d = data[i]!;
      if (d.length !== sizeOf(shape) || d instanceof Int32Array !== (dtype === 'i32')) {
        throw new Error(`internal: an op computed ${d.length} ${d.constructor.name} values for ${dtype} ${shapeToString(shape)}`);
      }
      return this.#create(shape, dtype, d);
    });
  }

  #result(shape: Shape, dtype: DType, compute: () => HostArray): Tensor {
    return this.#results([[shape, dtype]], () => [compute()])[0]!;
  }

  #refuseInsideGate(what: string): void {
    if (this.#gateOpen) throw new Error(`${what}: not allowed inside unlessAll (its decision must not wait for the host)`);
  }

  #storage(t: Tensor): CpuStorage {
    if (t.backend !== this || !(t.storage instanceof CpuStorage)) {
      throw new Error(`tensor ${shapeToString(t.shape)} belongs to another backend`);
    }
    return t.storage;
  }

  #data(t: Tensor): HostArray {
    const { data } = this.#storage(t);
    if (data === null || t.disposed) throw new Error('tensor was disposed');
    return data;
  }

  /** The values of an f32 or f16 tensor (shapes.ts has checked the dtype). */
  #floats(t: Tensor): Float32Array {
    const data = this.#data(t);
    if (!(data instanceof Float32Array)) throw new Error(`expected an f32 or f16 tensor, got ${t.dtype}`);
    return data;
  }

  #optionalFloats(t: Tensor | undefined): Float32Array | undefined {
    return t && this.#floats(t);
  }

  #ints(t: Tensor): Int32Array {
    const data = this.#data(t);
    if (!(data instanceof Int32Array)) throw new Error(`expected an i32 tensor, got ${t.dtype}`);
    return data;
  }

  // ---- linear algebra -------------------------------------------------------------------------

  matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
    const sizes = matmulSizes(a, b, options);
    return this.#result(sizes.outShape, 'f32', () =>
      linear.matmul(sizes, {
        a: this.#floats(a),
        b: this.#floats(b),
        transposeB: options.transposeB ?? false,
        bias: this.#optionalFloats(options.bias),
        activation: options.activation ?? 'none',
        residual: this.#optionalFloats(options.residual),
      }),
    );
  }

  // ---- elementwise ----------------------------------------------------------------------------

  add(a: Tensor, b: Tensor): Tensor {
    const { inner } = broadcastSizes('add', a, b);
    return this.#result(a.shape, 'f32', () => elementwise.broadcastBinary(this.#floats(a), this.#floats(b), inner, (x, y) => x + y));
  }

  mul(a: Tensor, b: Tensor): Tensor {
    const { inner } = broadcastSizes('mul', a, b);
    return this.#result(a.shape, 'f32', () => elementwise.broadcastBinary(this.#floats(a), this.#floats(b), inner, (x, y) => x * y));
  }

  scale(a: Tensor, s: number): Tensor {
    elementwiseSizes('scale', a);
    return this.#result(a.shape, 'f32', () => elementwise.map(this.#floats(a), (x) => x * s));
  }

  gelu(x: Tensor): Tensor {
    elementwiseSizes('gelu', x);
    return this.#result(x.shape, 'f32', () => elementwise.map(this.#floats(x), elementwise.gelu));
  }

  relu(x: Tensor): Tensor {
    elementwiseSizes('relu', x);
    return this.#result(x.shape, 'f32', () => elementwise.map(this.#floats(x), elementwise.relu));
  }

  // ---- normalisation and reductions over the last dimension ----------------------------------

  layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number, residual?: Tensor): Tensor {
    const sizes = layerNormSizes(x, weight, bias, residual);
    return this.#result(x.shape, 'f32', () =>
      reductions.layerNorm(sizes, this.#floats(x), this.#floats(weight), this.#floats(bias), eps, residual && this.#floats(residual)),
    );
  }

  softmax(x: Tensor): Tensor {
    const sizes = lastDimSizes('softmax', x);
    return this.#result(x.shape, 'f32', () => reductions.softmax(sizes, this.#floats(x)));
  }

  logSoftmax(x: Tensor): Tensor {
    const sizes = lastDimSizes('logSoftmax', x);
    return this.#result(x.shape, 'f32', () => reductions.logSoftmax(sizes, this.#floats(x)));
  }

  argmax(x: Tensor): Tensor {
    const sizes = lastDimSizes('argmax', x);
    return this.#result(x.shape.slice(0, -1), 'i32', () => reductions.argmax(sizes, this.#floats(x)));
  }

  topk(x: Tensor, k: number): TopK {
    const { outShape, ...sizes } = topkSizes(x, k);
    const [values, indices] = this.#results([[outShape, 'f32'], [outShape, 'i32']], () => {
      const top = reductions.topk(sizes, k, this.#floats(x));
      return [top.values, top.indices];
    });
    return { values: values!, indices: indices! };
  }

  cosineSimilarity(a: Tensor, b: Tensor): Tensor {
    const sizes = cosineSizes(a, b);
    return this.#result([sizes.batch], 'f32', () => reductions.cosineSimilarity(sizes, this.#floats(a), this.#floats(b)));
  }

  // ---- indexing ---------------------------------------------------------------------------------

  gather(table: Tensor, ids: Tensor): Tensor {
    const { outShape, ...sizes } = gatherSizes(table, ids);
    return this.#result(outShape, 'f32', () => indexing.gather(sizes, this.#floats(table), this.#ints(ids)));
  }

  slice(x: Tensor, axis: number, start: number, end: number): Tensor {
    const { outShape, ...sizes } = sliceSizes(x, axis, start, end);
    return this.#result(outShape, x.dtype, () => indexing.slice(sizes, x.shape[sizes.axis]!, start, end, this.#data(x)));
  }

  concat(xs: readonly Tensor[], axis: number): Tensor {
    const { outShape, ...sizes } = concatSizes(xs, axis);
    return this.#result(outShape, xs[0]!.dtype, () => {
      const parts = xs.map((x) => ({ data: this.#data(x), length: x.shape[sizes.axis]! }));
      return indexing.concat(sizes, parts, outShape[sizes.axis]!);
    });
  }

  transpose(x: Tensor, perm: readonly number[]): Tensor {
    const { outShape } = transposeSizes(x, perm);
    return this.#result(outShape, x.dtype, () => indexing.transpose(this.#data(x), x.shape, perm));
  }

  relativeBias(table: Tensor, index: Tensor, base?: Tensor): Tensor {
    const { outShape, ...sizes } = relativeBiasSizes(table, index, base);
    return this.#result(outShape, 'f32', () => indexing.relativeBias(sizes, this.#floats(table), this.#ints(index), base && this.#floats(base)));
  }

  // ---- vision -----------------------------------------------------------------------------------

  conv2d(x: Tensor, w: Tensor, options: Conv2dOptions = {}): Tensor {
    const sizes = conv2dSizes(x, w, options);
    return this.#result(sizes.outShape, 'f32', () =>
      vision.conv2d(sizes, {
        x: this.#floats(x),
        w: this.#floats(w),
        bias: this.#optionalFloats(options.bias),
        residual: this.#optionalFloats(options.residual),
        activation: options.activation ?? 'none',
      }),
    );
  }

  maxPool2d(x: Tensor, options: Pool2dOptions): Tensor {
    const sizes = pool2dSizes(x, options);
    return this.#result(sizes.outShape, 'f32', () => vision.maxPool2d(sizes, options, this.#floats(x)));
  }

  // ---- attention --------------------------------------------------------------------------------

  attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
    const sizes = attentionSizes(q, k, v, options);
    return this.#result(q.shape, 'f32', () =>
      attentionOps.attention(sizes, {
        q: this.#floats(q),
        k: this.#floats(k),
        v: this.#floats(v),
        scale: options.scale,
        causal: options.causal ?? false,
        bias: this.#optionalFloats(options.bias),
        keyPaddingMask: options.keyPaddingMask && this.#ints(options.keyPaddingMask),
      }),
    );
  }

  // ---- early exiting ----------------------------------------------------------------------------

  decideExit(previous: Tensor, computed: Tensor, threshold: number, doneBefore?: Tensor): ExitDecision {
    const sizes = decideExitSizes(previous, computed, threshold, doneBefore);
    const outputs = [[previous.shape, 'f32'], [[sizes.batch], 'f32'], [[sizes.batch], 'i32'], [[1], 'i32']] as const;
    const [state, similarity, done, allDone] = this.#results(outputs, () => {
      const d = exit.decideExit(sizes, this.#floats(previous), this.#floats(computed), threshold, doneBefore && this.#ints(doneBefore));
      return [d.state, d.similarity, d.done, d.allDone];
    });
    return { state: state!, similarity: similarity!, done: done!, allDone: allDone! };
  }

  exceeds(x: Tensor, threshold: number, flags?: Tensor): Tensor {
    exceedsSizes(x, threshold, flags);
    return this.#result(x.shape, 'i32', () => exit.exceeds(this.#floats(x), threshold, flags && this.#ints(flags)));
  }

  where(condition: Tensor, a: Tensor, b: Tensor): Tensor {
    const sizes = whereSizes(condition, a, b);
    return this.#result(a.shape, a.dtype, () => exit.where(sizes, this.#ints(condition), this.#data(a), this.#data(b)));
  }

  /**
   * Reads `done` on the host and runs `fn`, in skipping mode when every flag is set: its ops then
   * return zero-filled tensors (contents unspecified by the interface) without computing.
   */
  unlessAll<T>(done: Tensor, fn: () => T): T {
    unlessAllSizes(done);
    if (this.#gateOpen) throw new Error('unlessAll: cannot be nested (a gate is already open)');
    const skip = exit.allDone(this.#ints(done));
    this.#gateOpen = true;
    this.#skipping = skip;
    try {
      return fn();
    } finally {
      this.#gateOpen = false;
      this.#skipping = false;
    }
  }
}
