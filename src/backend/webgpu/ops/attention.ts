/** Wrapper of `kernels/attention.wgsl`: fused multi-head attention with online softmax. */
import type { AttentionOptions } from '../../backend.js';
import { type AttentionSizes, attentionSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { type KernelContext, f32, u32 } from '../context.js';

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

export function attention(ctx: KernelContext, q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
  const sizes = attentionSizes(q, k, v, options);
  const { batch, heads, headDim, tq, tk } = sizes;
  if (headDim > MAX_HEAD_DIM) throw new Error(`attention: head dim ${headDim} exceeds ${MAX_HEAD_DIM}`);
  const out = ctx.output(q.shape);
  const { workgroupSize, keyTile, shareKeyTiles } = tuning(ctx, sizes);
  // Pad each head's rows to whole workgroups (uniform key addresses per workgroup, which shared
  // tiles need), unless most of such a workgroup would idle: then rows are packed across heads.
  const rowsPerHead = shareKeyTiles || tq >= workgroupSize ? Math.ceil(tq / workgroupSize) * workgroupSize : tq;
  const rowCount = batch * heads * rowsPerHead;
  const bias = options.bias;
  const mask = options.keyPaddingMask;
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
      u32(k.shape[0] === 1 ? 0 : 1),
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
