/**
 * The CPU backend: the readable definition of every op and the oracle the WebGPU kernels are
 * tested against. Ops run synchronously in plain loops; the math of each lives in the module
 * named after its family, and this class only validates (through `shapes.ts`), unwraps storage
 * and wraps results.
 *
 * Storage is a Float32Array for f32 and f16 tensors (f16 uploads are widened once; their values
 * stay exactly representable in f16, so the dtype remains 'f16') and an Int32Array for i32.
 */
import type {
  AttentionOptions,
  Backend,
  Conv2dOptions,
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
  elementwiseSizes,
  gatherSizes,
  lastDimSizes,
  layerNormSizes,
  matmulSizes,
  pool2dSizes,
  sliceSizes,
  topkSizes,
  transposeSizes,
  uploadDType,
} from '../shapes.js';
import { halvesToFloats } from '../../half.js';
import { type DType, type HostArray, type Shape, Tensor, shapeToString } from '../../tensor.js';
import * as attentionOps from './attention.js';
import * as elementwise from './elementwise.js';
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

  // ---- storage and lifetime -------------------------------------------------------------------

  upload(data: Float32Array | Int32Array | Uint16Array, shape: Shape, dtype?: DType): Tensor {
    const resolved = uploadDType(data, shape, dtype);
    return this.#create(shape, resolved, data instanceof Uint16Array ? halvesToFloats(data) : data.slice());
  }

  async read(t: Tensor): Promise<HostArray> {
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

  flush(): void {}

  async sync(): Promise<void> {}

  destroy(): void {
    for (const t of [...this.#live]) t.dispose();
  }

  #create(shape: Shape, dtype: DType, data: HostArray): Tensor {
    const t = new Tensor(this, [...shape], dtype, new CpuStorage(data));
    this.#live.add(t);
    this.#scopes.track(t);
    return t;
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
    const out = linear.matmul(sizes, {
      a: this.#floats(a),
      b: this.#floats(b),
      transposeB: options.transposeB ?? false,
      bias: this.#optionalFloats(options.bias),
      activation: options.activation ?? 'none',
      residual: this.#optionalFloats(options.residual),
    });
    return this.#create(sizes.outShape, 'f32', out);
  }

  // ---- elementwise ----------------------------------------------------------------------------

  add(a: Tensor, b: Tensor): Tensor {
    const { inner } = broadcastSizes('add', a, b);
    const out = elementwise.broadcastBinary(this.#floats(a), this.#floats(b), inner, (x, y) => x + y);
    return this.#create(a.shape, 'f32', out);
  }

  mul(a: Tensor, b: Tensor): Tensor {
    const { inner } = broadcastSizes('mul', a, b);
    const out = elementwise.broadcastBinary(this.#floats(a), this.#floats(b), inner, (x, y) => x * y);
    return this.#create(a.shape, 'f32', out);
  }

  scale(a: Tensor, s: number): Tensor {
    elementwiseSizes('scale', a);
    return this.#create(a.shape, 'f32', elementwise.map(this.#floats(a), (x) => x * s));
  }

  gelu(x: Tensor): Tensor {
    elementwiseSizes('gelu', x);
    return this.#create(x.shape, 'f32', elementwise.map(this.#floats(x), elementwise.gelu));
  }

  relu(x: Tensor): Tensor {
    elementwiseSizes('relu', x);
    return this.#create(x.shape, 'f32', elementwise.map(this.#floats(x), elementwise.relu));
  }

  // ---- normalisation and reductions over the last dimension ----------------------------------

  layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number): Tensor {
    const sizes = layerNormSizes(x, weight, bias);
    const out = reductions.layerNorm(sizes, this.#floats(x), this.#floats(weight), this.#floats(bias), eps);
    return this.#create(x.shape, 'f32', out);
  }

  softmax(x: Tensor): Tensor {
    const sizes = lastDimSizes('softmax', x);
    return this.#create(x.shape, 'f32', reductions.softmax(sizes, this.#floats(x)));
  }

  logSoftmax(x: Tensor): Tensor {
    const sizes = lastDimSizes('logSoftmax', x);
    return this.#create(x.shape, 'f32', reductions.logSoftmax(sizes, this.#floats(x)));
  }

  argmax(x: Tensor): Tensor {
    const sizes = lastDimSizes('argmax', x);
    return this.#create(x.shape.slice(0, -1), 'i32', reductions.argmax(sizes, this.#floats(x)));
  }

  topk(x: Tensor, k: number): TopK {
    const { outShape, ...sizes } = topkSizes(x, k);
    const { values, indices } = reductions.topk(sizes, k, this.#floats(x));
    return { values: this.#create(outShape, 'f32', values), indices: this.#create(outShape, 'i32', indices) };
  }

  cosineSimilarity(a: Tensor, b: Tensor): Tensor {
    const sizes = cosineSizes(a, b);
    return this.#create([sizes.batch], 'f32', reductions.cosineSimilarity(sizes, this.#floats(a), this.#floats(b)));
  }

  // ---- indexing ---------------------------------------------------------------------------------

  gather(table: Tensor, ids: Tensor): Tensor {
    const { outShape, ...sizes } = gatherSizes(table, ids);
    return this.#create(outShape, 'f32', indexing.gather(sizes, this.#floats(table), this.#ints(ids)));
  }

  slice(x: Tensor, axis: number, start: number, end: number): Tensor {
    const { outShape, ...sizes } = sliceSizes(x, axis, start, end);
    const out = indexing.slice(sizes, x.shape[sizes.axis]!, start, end, this.#data(x));
    return this.#create(outShape, x.dtype, out);
  }

  concat(xs: readonly Tensor[], axis: number): Tensor {
    const { outShape, ...sizes } = concatSizes(xs, axis);
    const parts = xs.map((x) => ({ data: this.#data(x), length: x.shape[sizes.axis]! }));
    return this.#create(outShape, xs[0]!.dtype, indexing.concat(sizes, parts, outShape[sizes.axis]!));
  }

  transpose(x: Tensor, perm: readonly number[]): Tensor {
    const { outShape } = transposeSizes(x, perm);
    return this.#create(outShape, x.dtype, indexing.transpose(this.#data(x), x.shape, perm));
  }

  // ---- vision -----------------------------------------------------------------------------------

  conv2d(x: Tensor, w: Tensor, options: Conv2dOptions = {}): Tensor {
    const sizes = conv2dSizes(x, w, options);
    const out = vision.conv2d(sizes, {
      x: this.#floats(x),
      w: this.#floats(w),
      bias: this.#optionalFloats(options.bias),
      residual: this.#optionalFloats(options.residual),
      activation: options.activation ?? 'none',
    });
    return this.#create(sizes.outShape, 'f32', out);
  }

  maxPool2d(x: Tensor, options: Pool2dOptions): Tensor {
    const sizes = pool2dSizes(x, options);
    return this.#create(sizes.outShape, 'f32', vision.maxPool2d(sizes, options, this.#floats(x)));
  }

  // ---- attention --------------------------------------------------------------------------------

  attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
    const sizes = attentionSizes(q, k, v, options);
    const out = attentionOps.attention(sizes, {
      q: this.#floats(q),
      k: this.#floats(k),
      v: this.#floats(v),
      scale: options.scale,
      causal: options.causal ?? false,
      bias: this.#optionalFloats(options.bias),
      keyPaddingMask: options.keyPaddingMask && this.#ints(options.keyPaddingMask),
    });
    return this.#create(q.shape, 'f32', out);
  }
}
