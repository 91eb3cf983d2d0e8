/**
 * Storage buffers for tensors, recycled by size.
 *
 * Ops only record dispatches; they run when the recording is submitted. A buffer released while
 * recorded work may still read it can safely become the *output* of a later dispatch (dispatches
 * run in recording order), but not the target of `queue.writeBuffer`, which runs before the whole
 * submission. Such buffers are kept apart ("recycled while recording") until the next submit.
 *
 * Of the free buffers of a size, the pool hands out the one it made first. Which buffer a tensor
 * gets then depends only on which buffers are free, not on the order they were released in, so
 * a forward pass or a decoding step that runs again gets the same buffers as before, and finds
 * its bind groups made already (`bind-groups.ts`; making one costs more than most dispatches).
 */

/** Sizes are rounded up so that nearby shapes share buffers (sequence lengths grow while decoding). */
export function roundedSize(bytes: number): number {
  const minimum = 256;
  if (bytes <= minimum) return minimum;
  // Round to 1/8 of the next power of two: at most 12.5% waste.
  const step = Math.max(minimum, 2 ** Math.ceil(Math.log2(bytes)) / 8);
  return Math.ceil(bytes / step) * step;
}

/** Free buffers by size, each list ordered from the last made to the first (popped first). */
type Shelf = Map<number, GPUBuffer[]>;

export class BufferPool {
  readonly #free: Shelf = new Map();
  readonly #recycledWhileRecording: Shelf = new Map();
  /** Creation order of the pool's buffers. */
  readonly #serial = new WeakMap<GPUBuffer, number>();
  #made = 0;
  #bytesInUse = 0;
  #bytesAllocated = 0;
  #peakBytesInUse = 0;

  constructor(private readonly device: GPUDevice) {}

  /** The largest buffer the pool hands out: the device's maxBufferSize in whole 16-byte words. */
  get maxBytes(): number {
    return Math.floor(this.device.limits.maxBufferSize / 16) * 16;
  }

  /** A buffer of at least `bytes` (at most `maxBytes`); `forUpload` excludes buffers that recorded work may still read. */
  acquire(bytes: number, forUpload: boolean): GPUBuffer {
    const size = Math.min(roundedSize(bytes), this.maxBytes);
    const buffer = this.#free.get(size)?.pop() ?? (forUpload ? undefined : this.#recycledWhileRecording.get(size)?.pop());
    this.#bytesInUse += size;
    this.#peakBytesInUse = Math.max(this.#peakBytesInUse, this.#bytesInUse);
    if (buffer) return buffer;
    this.#bytesAllocated += size;
    // UNIFORM: a one-flag tensor may be the gate word of `unlessAll` (context.ts).
    const made = this.device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    this.#serial.set(made, this.#made++);
    return made;
  }

  release(buffer: GPUBuffer, recording: boolean): void {
    this.#shelve(recording ? this.#recycledWhileRecording : this.#free, buffer);
    this.#bytesInUse -= buffer.size;
  }

  /** Called after a submit: everything released so far may be written by uploads again. */
  submitted(): void {
    for (const buffers of this.#recycledWhileRecording.values()) {
      for (const buffer of buffers) this.#shelve(this.#free, buffer);
    }
    this.#recycledWhileRecording.clear();
  }

  /** Puts `buffer` in its place on the shelf: after the buffers made later than it. */
  #shelve(shelf: Shelf, buffer: GPUBuffer): void {
    const list = shelf.get(buffer.size) ?? [];
    const serial = this.#serial.get(buffer)!;
    let low = 0;
    let high = list.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.#serial.get(list[middle]!)! > serial) low = middle + 1;
      else high = middle;
    }
    list.splice(low, 0, buffer);
    shelf.set(buffer.size, list);
  }

  /** Frees pooled buffers that are not in use (e.g. between models). */
  trim(): void {
    for (const shelf of [this.#free, this.#recycledWhileRecording]) {
      for (const buffers of shelf.values()) {
        for (const b of buffers) {
          this.#bytesAllocated -= b.size;
          b.destroy();
        }
      }
      shelf.clear();
    }
  }

  get stats(): { bytesInUse: number; bytesAllocated: number; peakBytesInUse: number } {
    return { bytesInUse: this.#bytesInUse, bytesAllocated: this.#bytesAllocated, peakBytesInUse: this.#peakBytesInUse };
  }
}
