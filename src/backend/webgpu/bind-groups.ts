/**
 * Bind groups made once and reused. Creating one costs about 50 µs on Dawn over lavapipe (a
 * descriptor set allocated and written through the Node binding): more than most dispatches of a
 * decoding step take on the device, and 130 of them per step. A forward pass binds the same
 * buffer slices on every run (the pool hands out the same buffers in the same order, and each
 * submission lays its parameters out from offset 0), so after the first run nearly every group
 * is found here.
 *
 * Groups are keyed by pipeline and by the exact slices bound; buffers are numbered on first sight.
 * A destroyed buffer is never bound again, so its groups are never found again either: they are
 * only memory, and the cache is emptied whenever it holds more than `limit` groups.
 */
export class BindGroupCache {
  readonly #ids = new WeakMap<GPUBuffer, number>();
  #nextId = 0;
  readonly #groups = new Map<GPUComputePipeline, Map<string, GPUBindGroup>>();
  #size = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly limit = 4096,
  ) {}

  /** The group of `pipeline`'s bind group 0 with `slices` at bindings 0, 1, … */
  get(pipeline: GPUComputePipeline, slices: readonly GPUBufferBinding[]): GPUBindGroup {
    let key = '';
    for (const { buffer, offset, size } of slices) key += `${this.#id(buffer)}:${offset ?? 0}:${size ?? ''},`;
    let groups = this.#groups.get(pipeline);
    let group = groups?.get(key);
    if (group) return group;
    if (this.#size >= this.limit) {
      this.#groups.clear();
      this.#size = 0;
      groups = undefined;
    }
    if (!groups) this.#groups.set(pipeline, (groups = new Map()));
    group = this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: slices.map((resource, binding) => ({ binding, resource })),
    });
    groups.set(key, group);
    this.#size++;
    return group;
  }

  #id(buffer: GPUBuffer): number {
    let id = this.#ids.get(buffer);
    if (id === undefined) this.#ids.set(buffer, (id = this.#nextId++));
    return id;
  }
}
