/**
 * Storages and tensors as a PyTorch checkpoint describes them: a storage is a flat run of
 * elements in the file, a tensor a strided view of one. Nothing is read until asked for, and
 * every read is checked against what one buffer can hold and against the storage before memory
 * is allocated, so a malformed layout is an error naming the storage, not a hang or a crash.
 */
import { MAX_BUFFER_BYTES } from './byte-source.js';

export class TorchTensorError extends Error {
  override name = 'TorchTensorError';
}

export type TorchDType =
  | 'float64'
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

export const TORCH_DTYPE_BYTES: Readonly<Record<TorchDType, number>> = Object.freeze({
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
});

/** Reads `byteLength` bytes starting `byteOffset` bytes into a storage's data, as stored. */
export type StorageReader = (byteOffset: number, byteLength: number) => Promise<Uint8Array<ArrayBuffer>>;

/** One storage of a checkpoint: a flat run of elements that tensors view. Read on demand. */
export class TorchStorage {
  constructor(
    /** The checkpoint's name for it (zip: the record under `data/`; legacy: the object id). */
    readonly key: string,
    readonly dtype: TorchDType,
    /** Number of elements. */
    readonly numel: number,
    /** Device it was saved from (`cpu`, `cuda:0`); the bytes are the same. */
    readonly location: string,
    private readonly read: StorageReader,
    readonly littleEndian: boolean,
  ) {}

  get byteLength(): number {
    return this.numel * TORCH_DTYPE_BYTES[this.dtype];
  }

  /** Elements [start, start + count) as little-endian bytes, in memory the caller owns. */
  async readElements(start: number, count: number): Promise<Uint8Array<ArrayBuffer>> {
    if (start < 0 || count < 0 || start + count > this.numel) {
      throw new TorchTensorError(
        `storage '${this.key}' holds ${this.numel} elements; elements ${start}..${start + count} requested`,
      );
    }
    const itemsize = TORCH_DTYPE_BYTES[this.dtype];
    checkBufferSize(count * itemsize, `elements ${start}..${start + count} of storage '${this.key}'`);
    const bytes = await this.read(start * itemsize, count * itemsize);
    if (!this.littleEndian) reverseEachElement(bytes, itemsize);
    return bytes;
  }
}

function reverseEachElement(bytes: Uint8Array, itemsize: number): void {
  for (let start = 0; start < bytes.length; start += itemsize) bytes.subarray(start, start + itemsize).reverse();
}

function checkBufferSize(byteLength: number, what: string): void {
  if (byteLength > MAX_BUFFER_BYTES) {
    throw new TorchTensorError(`${what}: ${byteLength} bytes, more than one buffer holds (${MAX_BUFFER_BYTES})`);
  }
}

/**
 * A tensor as a checkpoint describes it: a strided view of a storage. Nothing is read until
 * `contiguousBytes` is called; tensors sharing a storage share the same `TorchStorage` object.
 */
export class TorchTensor {
  readonly numel: number;
  /** The storage element the view reaches furthest (its first is `storageOffset`); −1 when empty. */
  readonly lastElement: number;

  constructor(
    readonly storage: TorchStorage,
    /** In elements. */
    readonly storageOffset: number,
    readonly shape: readonly number[],
    /** In elements, one per dimension. */
    readonly stride: readonly number[],
  ) {
    const isDim = (d: number): boolean => Number.isSafeInteger(d) && d >= 0;
    const layout = this.layout();
    if (shape.length !== stride.length || !shape.every(isDim) || !stride.every(isDim) || !isDim(storageOffset)) {
      throw new TorchTensorError(`invalid tensor layout: ${layout}`);
    }
    this.numel = shape.reduce((product, dim) => product * dim, 1);
    this.lastElement =
      this.numel === 0 ? -1 : shape.reduce((last, dim, axis) => last + (dim - 1) * stride[axis]!, storageOffset);
    if (!Number.isSafeInteger(this.numel) || !Number.isSafeInteger(this.lastElement)) {
      throw new TorchTensorError(`a tensor of ${layout} is beyond 2^53 elements`);
    }
    if (this.numel > 0 && this.lastElement >= storage.numel) {
      throw new TorchTensorError(
        `a tensor of ${layout} reaches element ${this.lastElement} of storage '${storage.key}', ` +
          `which has ${storage.numel}`,
      );
    }
  }

  get dtype(): TorchDType {
    return this.storage.dtype;
  }

  get storageKey(): string {
    return this.storage.key;
  }

  /** Row-major without gaps; dimensions of size 1 may have any stride, as in PyTorch. */
  get isContiguous(): boolean {
    let expected = 1;
    for (let axis = this.shape.length - 1; axis >= 0; axis--) {
      const dim = this.shape[axis]!;
      if (dim === 0) return true;
      if (dim !== 1 && this.stride[axis] !== expected) return false;
      expected *= dim;
    }
    return true;
  }

  /** Bytes of the tensor once contiguous. */
  get byteLength(): number {
    return this.numel * TORCH_DTYPE_BYTES[this.dtype];
  }

  /** Whether both describe the same elements of the same storage in the same layout. */
  sameView(other: TorchTensor): boolean {
    return (
      this.storage === other.storage &&
      this.storageOffset === other.storageOffset &&
      sameNumbers(this.shape, other.shape) &&
      sameNumbers(this.stride, other.stride)
    );
  }

  /**
   * The elements in row-major order as little-endian bytes, element-aligned, in memory the caller
   * owns. Reads only the span of the storage the view covers, so a small view of a large shared
   * storage stays cheap.
   *
   * A view with more elements than the storage span it covers repeats elements (a stride of 0,
   * or dimensions that overlap): parameters and buffers own their memory, so no state dict holds
   * one, and expanding it would cost memory out of proportion to the file. It is refused.
   */
  async contiguousBytes(): Promise<Uint8Array<ArrayBuffer>> {
    const itemsize = TORCH_DTYPE_BYTES[this.dtype];
    if (this.numel === 0) return new Uint8Array(0);
    const spanElements = this.lastElement - this.storageOffset + 1;
    if (this.numel > spanElements) {
      throw new TorchTensorError(
        `a tensor of ${this.layout()} has ${this.numel} elements but covers ${spanElements} of storage ` +
          `'${this.storage.key}': it repeats elements (stride 0 or overlapping dimensions), which a state dict never holds`,
      );
    }
    const read = await this.storage.readElements(this.storageOffset, spanElements);
    const span = read.byteOffset % itemsize === 0 ? read : read.slice();
    if (this.isContiguous) return span;

    // Copy in whole words of the element size so that the strided gather is one typed-array
    // assignment per element (or two for 8-byte elements), without reinterpreting values.
    const wordBytes = itemsize % 4 === 0 ? 4 : itemsize % 2 === 0 ? 2 : 1;
    const wordsPerElement = itemsize / wordBytes;
    const out = new Uint8Array(this.numel * itemsize);
    const from = wordsOf(span, wordBytes);
    const to = wordsOf(out, wordBytes);

    const rank = this.shape.length;
    const innerSize = this.shape[rank - 1]!;
    const innerStride = this.stride[rank - 1]! * wordsPerElement;
    const index = new Array<number>(rank - 1).fill(0);
    let source = 0;
    let target = 0;
    for (let row = 0; row < this.numel / innerSize; row++) {
      for (let i = 0, s = source * wordsPerElement; i < innerSize; i++, s += innerStride) {
        for (let w = 0; w < wordsPerElement; w++) to[target++] = from[s + w]!;
      }
      for (let axis = rank - 2; axis >= 0; axis--) {
        source += this.stride[axis]!;
        if (++index[axis]! < this.shape[axis]!) break;
        source -= this.stride[axis]! * this.shape[axis]!;
        index[axis] = 0;
      }
    }
    return out;
  }

  private layout(): string {
    return `size [${this.shape.join(', ')}], stride [${this.stride.join(', ')}] at storage offset ${this.storageOffset}`;
  }
}

function wordsOf(bytes: Uint8Array<ArrayBuffer>, wordBytes: number): Uint8Array | Uint16Array | Uint32Array {
  const length = bytes.byteLength / wordBytes;
  if (wordBytes === 4) return new Uint32Array(bytes.buffer, bytes.byteOffset, length);
  if (wordBytes === 2) return new Uint16Array(bytes.buffer, bytes.byteOffset, length);
  return bytes;
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}
