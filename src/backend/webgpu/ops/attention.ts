/**
 * Multi-head attention, two ways (`attentionMethod` picks one):
 * - fused (`kernels/attention.wgsl`): flash-style, one invocation per query row with an online
 *   softmax, never materialising the scores. GPUs, and tiny problems (decoding steps over a short
 *   cache) where one dispatch beats three.
 * - GEMMs (software adapters): S = q·kᵀ as a batched GEMM over (sample, head), one row kernel
 *   (`kernels/attention-softmax.wgsl`) turning S into probabilities P in place, then O = P·v as a
 *   second batched GEMM writing straight into [B, Tq, H·dh]. Both run on the GEMM core
 *   (`recordGemm`: on lavapipe the register-blocked `gemm_registers`) with q, k and v read in place
 *   through head strides (`kernels/attention-operands.wgsl`). The scores [B·H, Tq, Tk rounded up
 *   to 4] are a pooled intermediate (40 MB for 12 heads of 908 tokens); batches whose scores
 *   exceed one storage binding (128 MiB on lavapipe: 4 such images) run in chunks of samples.
 *
 * Operands beyond the binding limit (see `chunks.ts`): many beams' caches run in chunks of samples
 * bound as ranges; a sample whose bias [H, Tq, Tk] or scores exceed a binding (an encoder over
 * thousands of tokens with many heads) runs in groups of heads.
 */
import type { AttentionOptions } from '../../backend.js';
import { type AttentionSizes, attentionSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { roundedSize } from '../buffer-pool.js';
import { type Binding, type KernelContext, f32, u32 } from '../context.js';
import { type RowOperand, canSplitRows, splitRows, wholeBinding } from './chunks.js';
import { concat, copyBlock, slice } from './indexing.js';
import { recordGemm } from './matmul.js';

/** The kernel keeps a query row and its accumulator in private arrays of this many elements. */
const MAX_HEAD_DIM = 128;

/** How the kernel is laid out on this adapter for these sizes. */
interface AttentionTuning {
  /** Query rows (invocations) per workgroup. */
  workgroupSize: number;
  /** Keys scored per step of the online softmax (at most the kernel's MAX_KEY_TILE, 64). */
  keyTile: number;
  /** Stage key and value tiles in workgroup memory, shared by the workgroup's queries. */
  shareKeyTiles: boolean;
}

/**
 * GPUs: workgroups of 64 queries share tiles of keys and values through workgroup memory (each key
 * is read once per 64 queries), sized to the adapter's workgroup storage; with fewer queries per
 * head (decoding: Tq = 1) most of such a group would idle, so groups shrink to a subgroup-sized 32
 * without tiles. Software rasterisers run a workgroup's invocations in SIMD chunks on one core and
 * gain nothing from workgroup memory (ordinary memory there) but pay for barriers: groups of one
 * 8-lane chunk (lavapipe measured 1.2 s for 908 tokens, 12 heads of 64 with groups of 8; 1.5 s
 * with 16, 2.0 s with 64).
 */
function tuning(ctx: KernelContext, { tq, headDim }: AttentionSizes): AttentionTuning {
  if (ctx.capabilities.software) return { workgroupSize: 8, keyTile: 16, shareKeyTiles: false };
  if (tq < 32) return { workgroupSize: 32, keyTile: 16, shareKeyTiles: false };
  const tileBytesPerKey = 2 * headDim * 4; // a key and a value, f32
  const keyTile = Math.min(32, Math.floor(ctx.capabilities.limits.maxComputeWorkgroupStorageSize / tileBytesPerKey));
  return { workgroupSize: 64, keyTile, shareKeyTiles: true };
}

export type AttentionMethod = 'fused' | 'gemm';

/** What one attention binds: the tensors, or ranges of them for a chunk of samples. */
interface AttentionOperands {
  q: Binding;
  k: Binding;
  v: Binding;
  bias?: Binding;
  mask?: Binding;
}

/**
 * Sizes as the kernels see them. `samplesAsRows`: the query rows of that many samples attend as
 * the rows of one sample (`tq` holds them all); the bias holds `tq / samplesAsRows` rows per head.
 */
interface AttendSizes extends AttentionSizes {
  samplesAsRows?: number;
}

export function attention(ctx: KernelContext, q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
  const sizes = attentionSizes(q, k, v, options);
  const perSample = sampleOperands(ctx, q, k, v, options, sizes);
  const chunks = canSplitRows(ctx, perSample) ? splitRows(ctx, 'attention', sizes.batch, perSample) : undefined;
  const operandsOf = ([qPart, kPart, vPart, biasPart, maskPart]: Binding[]): AttentionOperands => ({
    q: qPart!,
    k: kPart!,
    v: vPart!,
    bias: options.bias && biasPart,
    mask: options.keyPaddingMask && maskPart,
  });
  if (chunks?.length === 1) {
    // Samples that share one key/value sample (beams over one encoder output) attend as the query
    // rows of one sample: each head's GEMMs see M = samples·Tq rows at once instead of Tq per
    // sample (a decoding step's cross-attention: one GEMM of 5 rows per head, not 5 of 1 row
    // padded to 4), and the bias rows repeat per sample. Causal masks align each sample's queries
    // with its own keys, so they keep samples apart. The method is chosen per sample, so that a
    // sample's result does not depend on how many attend with it (MuE runs subsets of the beams).
    const folded: AttendSizes = { ...sizes, batch: 1, tq: sizes.batch * sizes.tq, sharedKv: false, samplesAsRows: sizes.batch };
    const foldable = sizes.sharedKv && !options.causal && !sizes.batchedBias && attentionMethod(ctx, sizes) === 'gemm' && samplesPerChunk(ctx, folded) === 1;
    if (foldable) return gemmAttention(ctx, operandsOf(chunks[0]!.bindings), options, folded);
    return attend(ctx, operandsOf(chunks[0]!.bindings), options, sizes);
  }
  const out = ctx.output([sizes.batch, sizes.tq, q.shape[2]!]);
  if (!chunks) {
    attendByHeads(ctx, q, k, v, options, sizes, out);
    return out;
  }
  // Chunks of samples bound as ranges, each result copied into place.
  for (const { start, rows, bindings } of chunks) {
    const part = attend(ctx, operandsOf(bindings), options, { ...sizes, batch: rows });
    copyBlock(ctx, part, 0, rows, out, start, 0);
    part.dispose();
  }
  return out;
}

/** q, k, v, bias and mask as operands split by samples (shared ones read whole; absent ones as placeholders). */
function sampleOperands(ctx: KernelContext, q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions, sizes: AttentionSizes): RowOperand[] {
  const { heads, tq, tk, batchedBias } = sizes;
  const width = q.shape[2]!;
  const perSampleKv = k.shape[0] !== 1;
  return [
    { tensor: q, rowElements: tq * width },
    { tensor: k, rowElements: perSampleKv ? tk * width : 0 },
    { tensor: v, rowElements: perSampleKv ? tk * width : 0 },
    { tensor: options.bias ?? ctx.placeholder('f32'), rowElements: options.bias && batchedBias ? heads * tq * tk : 0 },
    { tensor: options.keyPaddingMask ?? ctx.placeholder('i32'), rowElements: options.keyPaddingMask && perSampleKv ? tk : 0 },
  ];
}

/** One attention on the method that suits the adapter and sizes. */
function attend(ctx: KernelContext, operands: AttentionOperands, options: AttentionOptions, sizes: AttentionSizes): Tensor {
  return attentionMethod(ctx, sizes) === 'gemm' ? gemmAttention(ctx, operands, options, sizes) : fusedAttention(ctx, operands, options, sizes);
}

/**
 * Samples whose bias or scores exceed one binding (an encoder over thousands of tokens with many
 * heads: [H, N, N]), one at a time in groups of heads: the group's q, k, v and bias are copied
 * out, attended, and the result copied into the sample's columns of `out`.
 */
function attendByHeads(ctx: KernelContext, q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions, sizes: AttentionSizes, out: Tensor): void {
  const { batch, heads, headDim, tq, tk } = sizes;
  const fits = (bytes: number): boolean => roundedSize(bytes) <= ctx.maxBindingBytes;
  let group = heads;
  while (group > 0 && !(fits(group * tq * tk * 4) && fits(group * tq * scoreRowLength(tk) * 4))) group--;
  if (group === 0) {
    throw new Error(`attention: the scores of one head, [${tq}, ${tk}] f32, exceed the storage binding limit of ${ctx.maxBindingBytes} bytes (maxStorageBufferBindingSize)`);
  }
  /** Sample s (0 of a shared one) of `t`, [B or 1, ...]. */
  const sampleOf = (t: Tensor, s: number): Tensor => {
    const samples = t.shape[0]!;
    return samples === 1 ? t : slice(ctx, t, 0, Math.min(s, samples - 1), Math.min(s, samples - 1) + 1);
  };
  /** Sample s of `t` ([B or 1, T, H·dh]) with heads h .. h + count, as [1, T, count·dh]. */
  const headsOf = (t: Tensor, s: number, h: number, count: number): Tensor => {
    const sample = sampleOf(t, s);
    const length = t.shape[1]!;
    const part = slice(ctx, sample.reshape([1, length, heads, headDim]), 2, h, h + count);
    if (sample !== t) sample.dispose();
    return part.reshape([1, length, count * headDim]);
  };
  const outHeads = out.reshape([batch, tq, heads, headDim]);
  for (let s = 0; s < batch; s++) {
    const sampleOut = ctx.output([1, tq, heads, headDim]);
    for (let h = 0; h < heads; h += group) {
      const count = Math.min(group, heads - h);
      const [qs, ks, vs] = [q, k, v].map((t) => headsOf(t, s, h, count)) as [Tensor, Tensor, Tensor];
      let bias: Tensor | undefined;
      if (options.bias) {
        const sampleBias = sizes.batchedBias ? sampleOf(options.bias, s).reshape([heads, tq, tk]) : options.bias;
        bias = slice(ctx, sampleBias, 0, h, h + count);
        if (sampleBias.storage !== options.bias.storage) sampleBias.dispose();
      }
      const mask = options.keyPaddingMask && sampleOf(options.keyPaddingMask, s);
      const groupSizes = { ...sizes, batch: 1, heads: count, sharedKv: false, batchedBias: false };
      const operands = { q: wholeBinding(ctx, 'attention', qs), k: ks, v: vs, bias: bias && wholeBinding(ctx, 'attention', bias), mask };
      const part = attend(ctx, operands, options, groupSizes);
      copyBlock(ctx, part.reshape([1, tq, count, headDim]), 0, count, sampleOut, h, 2);
      for (const t of [qs, ks, vs, bias, part]) t?.dispose();
      if (mask !== options.keyPaddingMask) mask?.dispose();
    }
    copyBlock(ctx, sampleOut, 0, 1, outHeads, s, 0);
    sampleOut.dispose();
  }
}

/**
 * Measured on lavapipe (2 busy cores, 8 lanes; minimum of 5 interleaved runs, onnxruntime-web's
 * WebGPU EP in the same process): 12 heads of 908 tokens (dh 64) take 140 ms as GEMMs against
 * 970 ms fused (ORT 160 ms); 4 heads of 268 tokens 4.9 ms against 32 (ORT 6.3); a decoding step
 * of 5 beams over 908 shared keys 6.3 ms against 8.5. Over 16 cached keys the one fused dispatch
 * wins (0.22 ms against 0.45): the crossover is near Tq·Tk = 64 (Tq 1, Tk 64 and Tq 4, Tk 16 time
 * the same). Software adapters without subgroup shuffles (Firefox on lavapipe) run the same
 * register GEMM with uniform reads, and the same choice. GPUs keep the fused kernel (tiles of keys
 * and values in workgroup memory) while it can hold a head (dh ≤ 128).
 */
export function attentionMethod(ctx: KernelContext, sizes: AttentionSizes): AttentionMethod {
  const { headDim, tq, tk } = sizes;
  if (samplesPerChunk(ctx, sizes) === 0) return 'fused';
  if (headDim > MAX_HEAD_DIM) return 'gemm';
  if (!ctx.capabilities.software) return 'fused';
  return tq * tk < 64 ? 'fused' : 'gemm';
}

/** Score rows are padded to whole quads (zeros in P), so that P·v reads them as aligned quads. */
const scoreRowLength = (tk: number): number => 4 * Math.ceil(tk / 4);

/**
 * Samples whose scores fit one storage binding (pooled buffers round sizes up) and whose
 * (sample, head) pairs one dispatch dimension: the GEMM path runs larger batches in chunks. 0 when
 * not even one sample fits.
 */
function samplesPerChunk(ctx: KernelContext, { batch, heads, tq, tk }: AttentionSizes): number {
  const bytesPerSample = heads * tq * scoreRowLength(tk) * 4;
  let samples = Math.min(batch, Math.floor(ctx.device.limits.maxComputeWorkgroupsPerDimension / heads));
  while (samples > 0 && roundedSize(samples * bytesPerSample) > ctx.maxBindingBytes) samples--;
  return samples;
}

/** Query rows per workgroup of the row kernel: one 8-lane SIMD chunk of a software adapter. */
const SOFTMAX_WORKGROUP_SIZE = 8;

function gemmAttention(ctx: KernelContext, operands: AttentionOperands, options: AttentionOptions, sizes: AttendSizes): Tensor {
  const { batch } = sizes;
  const chunk = samplesPerChunk(ctx, sizes);
  if (chunk >= batch) return gemmAttentionChunk(ctx, operands, options, sizes, 0, batch);
  const outputs: Tensor[] = [];
  for (let first = 0; first < batch; first += chunk) {
    outputs.push(gemmAttentionChunk(ctx, operands, options, sizes, first, Math.min(chunk, batch - first)));
  }
  const out = concat(ctx, outputs, 0);
  for (const t of outputs) t.dispose();
  return out;
}

/** Attention of samples `first .. first + samples` → [samples, Tq, H·dh]. */
function gemmAttentionChunk(
  ctx: KernelContext,
  { q, k, v, bias, mask }: AttentionOperands,
  options: AttentionOptions,
  sizes: AttendSizes,
  first: number,
  samples: number,
): Tensor {
  const { heads, headDim, tq, tk } = sizes;
  const samplesAsRows = sizes.samplesAsRows ?? 1;
  const width = heads * headDim;
  const entries = samples * heads;
  const kvStep = sizes.sharedKv ? 0 : 1;
  const kvSampleStride = kvStep * tk * width;
  const rowLength = scoreRowLength(tk);
  const headAligned = Number(headDim % 4 === 0);
  const gemm = { batch: entries, m: tq, operandTypes: {}, bias: undefined, biasPerRow: false, residual: undefined, residualBeforeActivation: false, activation: 'none' } as const;
  const scores = recordGemm(ctx, {
    ...gemm,
    file: 'attention-operands',
    n: rowLength,
    k: headDim,
    // heads; A = q: sample, head, row strides; B = k: sample, head, row strides; keys; offsets.
    params: [u32(heads), u32(tq * width), u32(headDim), u32(width), u32(kvSampleStride), u32(headDim), u32(width), u32(tk), u32(first * tq * width), u32(first * kvSampleStride)],
    a: q,
    b: k,
    constants: { A_ALIGNED: headAligned, B_ALIGNED: headAligned },
    transposeB: true,
    outShape: [entries, tq, rowLength],
  });
  ctx.record({
    variant: { file: 'attention-softmax', entryPoint: 'main', constants: { WORKGROUP_SIZE: SOFTMAX_WORKGROUP_SIZE, BIAS_ALIGNED: Number(tk % 4 === 0) } },
    params: [
      u32(heads),
      u32(tq),
      u32(tk),
      u32(rowLength / 4),
      f32(options.scale),
      u32(kvStep),
      u32(bias ? 1 : 0),
      u32(sizes.batchedBias ? heads * tq * tk : 0),
      u32(mask ? 1 : 0),
      u32(options.causal ? 1 : 0),
      u32(first),
      u32(tq / samplesAsRows),
    ],
    bindings: [scores, bias ?? ctx.placeholder('f32'), mask ?? ctx.placeholder('i32')],
    workgroups: [Math.ceil(tq / SOFTMAX_WORKGROUP_SIZE), entries],
  });
  const out = recordGemm(ctx, {
    ...gemm,
    file: 'attention-operands',
    n: headDim,
    k: tk,
    // heads; A = P: sample, head, row strides; B = v: sample, head, row strides; columns; offsets.
    params: [u32(heads), u32(heads * tq * rowLength), u32(tq * rowLength), u32(rowLength), u32(kvSampleStride), u32(headDim), u32(width), u32(headDim), u32(0), u32(first * kvSampleStride)],
    a: scores,
    b: v,
    constants: { A_ALIGNED: 1, B_ALIGNED: headAligned, OUTPUT_GROUPS: heads },
    transposeB: false,
    outShape: [samples * samplesAsRows, tq / samplesAsRows, width],
  });
  scores.dispose();
  return out;
}

function fusedAttention(ctx: KernelContext, { q, k, v, bias, mask }: AttentionOperands, options: AttentionOptions, sizes: AttentionSizes): Tensor {
  const { batch, heads, headDim, tq, tk } = sizes;
  if (headDim > MAX_HEAD_DIM) throw new Error(`attention: head dim ${headDim} exceeds ${MAX_HEAD_DIM}`);
  const out = ctx.output([batch, tq, heads * headDim]);
  const { workgroupSize, keyTile, shareKeyTiles } = tuning(ctx, sizes);
  // Pad each head's rows to whole workgroups (uniform key addresses per workgroup, which shared
  // tiles need), unless most of such a workgroup would idle: then rows are packed across heads.
  const rowsPerHead = shareKeyTiles || tq >= workgroupSize ? Math.ceil(tq / workgroupSize) * workgroupSize : tq;
  const rowCount = batch * heads * rowsPerHead;
  ctx.record({
    variant: {
      file: 'attention',
      entryPoint: 'main',
      constants: { WORKGROUP_SIZE: workgroupSize, HEAD_DIM: headDim, KEY_TILE: keyTile, SHARE_KEY_TILES: shareKeyTiles ? 1 : 0 },
    },
    params: [
      u32(heads),
      u32(tq),
      u32(tk),
      u32(rowsPerHead),
      u32(rowCount),
      f32(options.scale),
      u32(sizes.sharedKv ? 0 : 1),
      u32(bias ? 1 : 0),
      u32(sizes.batchedBias ? heads * tq * tk : 0),
      u32(mask ? 1 : 0),
      u32(options.causal ? 1 : 0),
    ],
    bindings: [q, k, v, bias ?? ctx.placeholder('f32'), mask ?? ctx.placeholder('i32'), out],
    workgroups: ctx.grid(Math.ceil(rowCount / workgroupSize)),
  });
  return out;
}
