/**
 * The op interface: one signature per op, implemented by the CPU backend (the readable
 * definition, used as the oracle in tests) and the WebGPU backend (hand-written WGSL kernels).
 *
 * Ops are called synchronously and return tensors of the same backend. On WebGPU an op only
 * records a dispatch; work is submitted in one command encoder when a result is read (or on
 * `flush`), so a whole forward pass is one submission. Shape rules and their error messages live
 * in `shapes.ts` and are shared by both backends.
 *
 * Conventions: tensors are row-major; activations are f32; weight operands (matmul's `b`, biases,
 * layer-norm affine parameters, embedding tables, conv filters) may be f16; ids are i32.
 */
import type { DType, HostArray, Shape, Tensor } from '../tensor.js';

export type Activation = 'none' | 'relu' | 'gelu';

export interface MatmulOptions {
  /** `b` is stored `[..., N, K]` (PyTorch `Linear.weight`), computing A·Bᵀ. Default false: `[..., K, N]`. */
  transposeB?: boolean;
  /** `[N]`, added to every output row. */
  bias?: Tensor;
  /** Applied after the bias. */
  activation?: Activation;
  /** `[..., M, N]` like the output, added last (after the activation). */
  residual?: Tensor;
}

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  /** `[Cout]` (a folded batch norm's shift). */
  bias?: Tensor;
  /** `[B, Cout, Ho, Wo]`, added after the bias and before the activation (ResNet's shortcut). */
  residual?: Tensor;
  /** `'relu'` or `'none'` (default). */
  activation?: Exclude<Activation, 'gelu'>;
}

export interface Pool2dOptions {
  kernel: number;
  stride: number;
  padding: number;
}

export interface AttentionOptions {
  /** Number of heads; head h owns channels `[h·dh, (h+1)·dh)` of q, k and v. */
  heads: number;
  /** Multiplies q·kᵀ before the bias is added. */
  scale: number;
  /** Additive bias `[H, Tq, Tk]` shared by the batch, or `[B, H, Tq, Tk]`. */
  bias?: Tensor;
  /** i32 `[B, Tk]`: keys where it is non-zero are excluded (−∞). */
  keyPaddingMask?: Tensor;
  /** Query i may see key j only when j ≤ i + (Tk − Tq) (so a single query sees every cached key). */
  causal?: boolean;
}

export interface TopK {
  values: Tensor;
  indices: Tensor;
}

/** What `decideExit` returns: the states carried forward, the similarities, the done flags. */
export interface ExitDecision {
  /** `[B, ...]`: `computed` for the samples still going, `previous` (the exit state) for the others. */
  state: Tensor;
  /** f32 `[B]`: cos(flatten(state[b]), flatten(previous[b])). */
  similarity: Tensor;
  /** i32 `[B]`: 1 for the samples that stop after this layer or had stopped before. */
  done: Tensor;
  /**
   * i32 `[1]`: 1 when every sample is done. `unlessAll(allDone, …)` gates the next layer as
   * `unlessAll(done, …)` would, and a single flag is a gate the WebGPU kernels read directly.
   */
  allDone: Tensor;
}

export interface Backend {
  readonly name: 'cpu' | 'webgpu';

  /**
   * The most elements one tensor of `dtype` may hold: on WebGPU what the device's largest buffer
   * (`maxBufferSize`) holds, on the CPU a typed array's longest length.
   */
  maxTensorElements(dtype: DType): number;
  /** Copies host data into a new tensor. f16 data is given as IEEE half bits (Uint16Array). */
  upload(data: Float32Array | Int32Array | Uint16Array, shape: Shape, dtype?: DType): Tensor;
  /** Waits for queued work and returns a tensor's values (f16 is widened to f32). */
  read(t: Tensor): Promise<HostArray>;
  /** Frees a tensor's storage (called by `Tensor.dispose`). */
  release(t: Tensor): void;
  /**
   * Runs `fn` and frees every tensor created inside it, except those reachable from its result
   * (a tensor, or an array or object of tensors, one level deep).
   */
  tidy<T>(fn: () => T): T;
  /** Submits recorded work without waiting (a no-op on the CPU). */
  flush(): void;
  /** Waits until all submitted work has finished. */
  sync(): Promise<void>;
  /** Releases the device and every tensor. */
  destroy(): void;

  // ---- linear algebra -------------------------------------------------------------------------
  /** `a [..., M, K]` · `b [K, N]` (shared) or `b [..., K, N]` (batched like a); see options. */
  matmul(a: Tensor, b: Tensor, options?: MatmulOptions): Tensor;

  // ---- elementwise ----------------------------------------------------------------------------
  /** a + b, where b's shape equals a's or is a suffix of it (broadcast over leading dims). */
  add(a: Tensor, b: Tensor): Tensor;
  /** a · b elementwise, broadcasting like `add`. */
  mul(a: Tensor, b: Tensor): Tensor;
  /** a · s. */
  scale(a: Tensor, s: number): Tensor;
  /** Exact GELU, x·Φ(x) with the erf form. */
  gelu(x: Tensor): Tensor;
  relu(x: Tensor): Tensor;

  // ---- normalisation and reductions over the last dimension ----------------------------------
  /**
   * (x − mean) / sqrt(var + eps) · weight + bias, over the last dim (population variance); plus
   * `residual` (x's shape) when given, the sum that closes a residual block around a normalised output.
   */
  layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number, residual?: Tensor): Tensor;
  softmax(x: Tensor): Tensor;
  logSoftmax(x: Tensor): Tensor;
  /** i32 index of the largest value over the last dim (the first one on ties). */
  argmax(x: Tensor): Tensor;
  /** The k largest values over the last dim, descending (lower index first on ties). */
  topk(x: Tensor, k: number): TopK;
  /** Cosine similarity of a and b per sample: `[B, ...]` → `[B]`, each sample flattened. */
  cosineSimilarity(a: Tensor, b: Tensor): Tensor;

  // ---- indexing ---------------------------------------------------------------------------------
  /** Rows of `table [R, C]` picked by i32 `ids [...]` → `[..., C]`. */
  gather(table: Tensor, ids: Tensor): Tensor;
  /** Elements `start ≤ i < end` along `axis`. */
  slice(x: Tensor, axis: number, start: number, end: number): Tensor;
  /** Joins tensors along `axis`; all other dims must agree. */
  concat(xs: readonly Tensor[], axis: number): Tensor;
  /** Reorders dimensions: output dim i is input dim `perm[i]` (rank ≤ 4). */
  transpose(x: Tensor, perm: readonly number[]): Tensor;
  /**
   * A per-head bias looked up by relative position, heads first: `out[h, i, j] = table[index[i, j], h]`,
   * plus `base[h, i, j]` when given; `table [R, H]` (f32 or f16), i32 `index [Tq, Tk]`,
   * `base [H, Tq, Tk]` → `[H, Tq, Tk]`. A gather, a transpose and a sum as one op.
   */
  relativeBias(table: Tensor, index: Tensor, base?: Tensor): Tensor;

  // ---- vision -----------------------------------------------------------------------------------
  /** NCHW convolution: `x [B, Cin, H, W]`, `w [Cout, Cin, kh, kw]` → `[B, Cout, Ho, Wo]`. */
  conv2d(x: Tensor, w: Tensor, options?: Conv2dOptions): Tensor;
  /** Max pooling over NCHW windows; padded cells never win. */
  maxPool2d(x: Tensor, options: Pool2dOptions): Tensor;

  // ---- attention --------------------------------------------------------------------------------
  /**
   * Fused multi-head attention: `q [B, Tq, H·dh]`, `k, v [B or 1, Tk, H·dh]` (a batch of 1 is
   * shared by every query sample, e.g. encoder states across beams) → `[B, Tq, H·dh]`,
   * softmax(scale·q·kᵀ + bias + masks)·v per head, accumulated in f32.
   */
  attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor;

  // ---- early exiting (MuE): decisions that stay on the device ----------------------------------
  /**
   * MuE's exit rule after one layer, per sample b of f32 states `previous` (the layer's input) and
   * `computed` (its output), both `[B, ...]` (mue-spec.md §2–3):
   *
   *     state[b]      = doneBefore[b] ≠ 0 ? previous[b] : computed[b]
   *     similarity[b] = cos(flatten(state[b]), flatten(previous[b]))
   *     done[b]       = similarity[b] > threshold  or  doneBefore[b] ≠ 0
   *     allDone       = every done[b]
   *
   * which is `where`, `cosineSimilarity` and `exceeds` in one (one dispatch on WebGPU for the
   * decoder's per-token states). `doneBefore` is i32 `[B]`; without it no sample had stopped.
   */
  decideExit(previous: Tensor, computed: Tensor, threshold: number, doneBefore?: Tensor): ExitDecision;
  /** i32 `[B]`: 1 where `x [B] > threshold` or where `flags [B]` is already non-zero, else 0. */
  exceeds(x: Tensor, threshold: number, flags?: Tensor): Tensor;
  /**
   * Per sample: `out[b] = condition[b] ≠ 0 ? a[b] : b[b]` for `a`, `b` of one shape `[B, ...]`;
   * `condition` is i32 `[B]`, or `[1]` for one decision shared by the whole batch.
   */
  where(condition: Tensor, a: Tensor, b: Tensor): Tensor;
  /**
   * Runs `fn` unless every element of the i32 flags `done` is non-zero. The WebGPU backend decides
   * on the device: every kernel `fn` records returns at once on a closed gate word (one flag is
   * its own word; several are reduced to one by a small kernel), so no read-back interrupts the
   * submission. Tensors `fn`
   * creates hold unspecified values when it was skipped: combine them with `where`. Not nestable;
   * `fn` must not read tensors back.
   */
  unlessAll<T>(done: Tensor, fn: () => T): T;
}
