/**
 * A tensor is a shape, an element type and a handle to storage owned by one backend.
 *
 * Tensors are row-major and contiguous. `reshape` is free (it shares storage); every other
 * transformation is an op of the backend that owns the tensor. Storage is released with
 * `dispose()` or, for intermediates, by the backend's `tidy` scope.
 */
import type { Backend } from './backend/backend.js';

/** Element types. Activations are always f32; weights may be f16; ids and indices are i32. */
export type DType = 'f32' | 'f16' | 'i32';

export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, f16: 2, i32: 4 };

export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeToString(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Host-side data of a tensor as read back from a backend: f16 and f32 both read as f32. */
export type HostArray = Float32Array | Int32Array;

export class Tensor {
  readonly size: number;
  #disposed = false;

  constructor(
    readonly backend: Backend,
    readonly shape: Shape,
    readonly dtype: DType,
    /** Backend-specific storage handle (a typed array on the CPU, a pooled GPUBuffer on WebGPU). */
    readonly storage: unknown,
    /** The tensor that owns `storage`; views share it and do not free it. */
    readonly owner?: Tensor,
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`invalid tensor shape ${shapeToString(shape)}`);
    }
    this.size = sizeOf(shape);
  }

  get rank(): number {
    return this.shape.length;
  }

  get disposed(): boolean {
    return this.#disposed || (this.owner?.disposed ?? false);
  }

  /** A view with another shape of the same number of elements; one dimension may be -1. */
  reshape(shape: Shape): Tensor {
    const known = shape.filter((d) => d !== -1);
    const inferred = shape.length - known.length;
    if (inferred > 1) throw new Error(`reshape ${shapeToString(shape)}: at most one -1`);
    const rest = sizeOf(known);
    const full = inferred ? shape.map((d) => (d === -1 ? this.size / rest : d)) : shape;
    if (sizeOf(full) !== this.size || !full.every(Number.isInteger)) {
      throw new Error(`cannot reshape ${shapeToString(this.shape)} (${this.size} elements) to ${shapeToString(shape)}`);
    }
    return new Tensor(this.backend, full, this.dtype, this.storage, this.owner ?? this);
  }

  /** Reads the values back to the host (waits for queued device work). */
  read(): Promise<HostArray> {
    return this.backend.read(this);
  }

  dispose(): void {
    if (this.owner || this.#disposed) return;
    this.#disposed = true;
    this.backend.release(this);
  }
}
