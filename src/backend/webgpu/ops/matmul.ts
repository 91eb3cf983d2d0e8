/**
 * Wrapper of the GEMM kernels, shared by matmul (operands from `kernels/matmul.wgsl`) and conv2d
 * (`kernels/conv2d.wgsl`, see `vision.ts`). The core (`kernels/gemm.wgsl`) holds the fused
 * epilogue and two kernels, chosen per adapter:
 * - `gemm_registers` (`kernels/gemm-registers.wgsl`) on software adapters (lavapipe, SwiftShader):
 *   register blocking, no workgroup memory; A shared through subgroup shuffles where subgroups
 *   have one fixed size, else read at addresses uniform over the workgroup.
 * - `gemm_tiled` everywhere else: 64×64 tiles in workgroup memory, 16×16 invocations of 4×4 blocks.
 *
 * Beyond the storage binding limit (see `chunks.ts`): a b stored [N, K] (transposeB; OFA's token
 * table as the decoder's output projection: [59457, 768] f32 is 183 MB, the usual limit 128 MiB)
 * is split along N, one GEMM per block of columns copied into place; an output, a or residual is
 * split along its rows (batch entries when b is batched), one GEMM per chunk of ranges.
 */
import type { Activation, MatmulOptions } from '../../backend.js';
import { matmulSizes } from '../../shapes.js';
import { BYTES_PER_ELEMENT, type Shape, type Tensor, shapeToString } from '../../../tensor.js';
import { type Binding, type KernelContext, type ParamValue, bindingTensor, u32 } from '../context.js';
import type { KernelVariant } from '../kernels.js';
import { binary } from './elementwise.js';
import { type RowOperand, fitsOneBinding, splitRows } from './chunks.js';
import { TABLE_ROW_GRANULE, copyBlock, forEachRowChunk } from './indexing.js';
import { operandVariant } from './types.js';

/** Codes of `activate` in `kernels/activation.wgsl`. */
const ACTIVATION_CODE: Record<Activation, number> = { none: 0, relu: 1, gelu: 2 };

/** One GEMM `out[batch, m, n] = epilogue(Σ_k A[batch, m, k]·B[batch, k, n])` for the core kernels. */
export interface Gemm {
  /** The kernel file that declares `Params` and loads the operands. */
  file: 'matmul' | 'conv2d' | 'attention-operands';
  batch: number;
  m: number;
  n: number;
  k: number;
  /** The operand file's `Params` fields after m, n, k. */
  params: readonly ParamValue[];
  /** Bound at 1 and 2; either may be a range (a chunk of an operand beyond the binding limit). */
  a: Binding;
  b: Binding;
  /** The operand file's element-type aliases, e.g. `{ BType: b }`. */
  operandTypes: Readonly<Record<string, Tensor>>;
  /** The operand file's override constants. */
  constants: Readonly<Record<string, number>>;
  transposeB: boolean;
  /** May be a range, matching b's. */
  bias: Binding | undefined;
  /** Bias per output row (conv2d's channels) rather than per column. */
  biasPerRow: boolean;
  /** May be a range, matching out's. */
  residual?: Binding;
  /** Residual added before the activation (ResNet) rather than after it (transformer blocks). */
  residualBeforeActivation: boolean;
  activation: Activation;
  outShape: Shape;
  /** Where to write: a range of a larger output; by default a new tensor of `outShape`. */
  out?: Binding;
}

/** gemm_registers: row quads a workgroup shares (see gemm-registers.wgsl); 4 measured best at 1024³. */
const MAX_ROW_QUADS = 4;
/** gemm_tiled: invocations per side of the workgroup (4×4 outputs each) and the k step of a tile. */
const TILE_THREADS = 16;
const TILE_K = 16;

/** gemm_registers: invocations per workgroup without shuffles (two of lavapipe's 8-lane SIMD vectors). */
const UNIFORM_WORKGROUP_SIZE = 16;

/** How gemm_registers shares A on this adapter: over a fixed subgroup size, or not at all (`lanes` 1). */
export interface RegisterGemm {
  lanes: number;
  shuffle: boolean;
}

/** gemm_registers' set-up on a software adapter; `undefined` where `gemm_tiled` runs (GPUs). */
export function registerGemm(ctx: KernelContext): RegisterGemm | undefined {
  if (!ctx.capabilities.software) return undefined;
  const lanes = ctx.capabilities.fixedSubgroupSize;
  return ctx.capabilities.subgroupShuffle && lanes !== undefined ? { lanes, shuffle: true } : { lanes: 1, shuffle: false };
}

export function recordGemm(ctx: KernelContext, g: Gemm): Tensor {
  const out = g.out ?? ctx.output(g.outShape);
  const bias = g.bias ?? ctx.placeholder('f32');
  const residual = g.residual ?? ctx.placeholder('f32');
  const types = operandVariant({ ...g.operandTypes, BiasType: bindingTensor(bias) });
  const constants = {
    ...g.constants,
    TRANSPOSE_B: Number(g.transposeB),
    ACTIVATION: ACTIVATION_CODE[g.activation],
    HAS_BIAS: Number(g.bias !== undefined),
    BIAS_PER_ROW: Number(g.biasPerRow),
    HAS_RESIDUAL: Number(g.residual !== undefined),
    RESIDUAL_BEFORE_ACTIVATION: Number(g.residualBeforeActivation),
  };
  const registers = registerGemm(ctx);
  let variant: KernelVariant;
  let workgroups: [number, number, number];
  if (registers !== undefined) {
    const { lanes, shuffle } = registers;
    // Two subgroups per workgroup; as few row quads as M needs (the decoder's M = beams ≤ 5 takes 2).
    const rowQuads = Math.min(MAX_ROW_QUADS, Math.max(1, Math.ceil(g.m / 4)));
    const workgroupSize = shuffle ? 2 * lanes : UNIFORM_WORKGROUP_SIZE;
    variant = {
      file: g.file,
      entryPoint: 'gemm_registers',
      enable: [...(types.enable ?? []), ...(shuffle ? ['subgroups'] : [])],
      aliases: types.aliases,
      include: ['activation', 'gemm', shuffle ? 'gemm-registers-shuffle' : 'gemm-registers-uniform', 'gemm-registers'],
      constants: { ...constants, LANES: lanes, ROW_QUADS: rowQuads, WORKGROUP_SIZE: workgroupSize },
    };
    workgroups = [Math.ceil(g.n / (4 * workgroupSize)), Math.ceil(g.m / (4 * rowQuads)), g.batch];
  } else {
    variant = {
      file: g.file,
      entryPoint: 'gemm_tiled',
      ...types,
      include: ['activation', 'gemm'],
      constants: { ...constants, THREADS_X: TILE_THREADS, THREADS_Y: TILE_THREADS, TILE_K },
    };
    const tile = 4 * TILE_THREADS;
    workgroups = [Math.ceil(g.n / tile), Math.ceil(g.m / tile), g.batch];
  }
  ctx.record({
    variant,
    params: [u32(g.m), u32(g.n), u32(g.k), ...g.params],
    bindings: [g.a, g.b, bias, residual, out],
    workgroups,
  });
  return bindingTensor(out);
}

export function matmul(ctx: KernelContext, a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const { batch, m, k, n, batchedB, outShape } = matmulSizes(a, b, options);
  const transposeB = options.transposeB ?? false;
  const { bias, residual } = options;
  // Only a shared b stored [N, K] has contiguous column blocks (splitting K would need accumulation).
  const splitB = transposeB && !batchedB;
  if (!splitB && !fitsOneBinding(ctx, b)) {
    const bytes = b.size * BYTES_PER_ELEMENT[b.dtype];
    throw new Error(
      `matmul: b ${shapeToString(b.shape)} ${b.dtype} (${bytes} bytes) exceeds the storage binding limit of ${ctx.maxBindingBytes} bytes ` +
        `(maxStorageBufferBindingSize) and only a shared b stored [N, K] (transposeB) can be split: store it transposed, or in f16`,
    );
  }
  const columnOperands: RowOperand[] = [{ tensor: b, rowElements: splitB ? k : 0 }];
  if (bias) columnOperands.push({ tensor: bias, rowElements: splitB ? 1 : 0 });
  const columnBlocks = splitRows(ctx, 'matmul', splitB ? n : 1, columnOperands, TABLE_ROW_GRANULE);
  const out = ctx.output(outShape);
  if (columnBlocks.length === 1) {
    const [bBinding, biasBinding] = columnBlocks[0]!.bindings;
    recordMatmul(ctx, { a, b, batch, m, k, n, batchedB, transposeB, activation: options.activation }, bBinding!, bias && biasBinding, residual, out);
    return out;
  }
  // One GEMM per block of columns, copied into place (the decoder's M is 1–5: a cheap copy). The
  // residual comes after the activation in matmul's epilogue, so adding it once to the whole
  // output is the same arithmetic as fusing it per block.
  for (const { start, rows: columns, bindings: [bBinding, biasBinding] } of columnBlocks) {
    const block = ctx.output([...outShape.slice(0, -1), columns]);
    recordMatmul(ctx, { a, b, batch, m, k, n: columns, batchedB, transposeB, activation: options.activation }, bBinding!, bias && biasBinding, undefined, block);
    copyBlock(ctx, block, 0, columns, out, start, outShape.length - 1);
    block.dispose();
  }
  if (!residual) return out;
  const sum = binary(ctx, 'add', out, residual);
  out.dispose();
  return sum;
}

/** One matmul GEMM's sizes: `n` columns of b (all of them, or a block bound as a range). */
interface MatmulGemm {
  a: Tensor;
  b: Tensor;
  batch: number;
  m: number;
  k: number;
  n: number;
  batchedB: boolean;
  transposeB: boolean;
  activation: Activation | undefined;
}

/**
 * Records `out = epilogue(a · b)` for `out` [..., M, n], with a shared b over the flattened
 * [batch·M, ·] rows. Where out, a, the residual or a batched b exceed a binding, the GEMM runs in
 * chunks of those rows (b shared) or of batch entries (b batched).
 */
function recordMatmul(ctx: KernelContext, s: MatmulGemm, b: Binding, bias: Binding | undefined, residual: Tensor | undefined, out: Tensor): void {
  const gemm = (batch: number, m: number, bindings: { a: Binding; b: Binding; residual?: Binding; out: Binding }): void => {
    recordGemm(ctx, {
      file: 'matmul',
      batch,
      m,
      n: s.n,
      k: s.k,
      params: [u32(s.batchedB ? s.k * s.n : 0)],
      operandTypes: { BType: s.b },
      constants: { K_ALIGNED: Number(s.k % 4 === 0), N_ALIGNED: Number(s.n % 4 === 0) },
      transposeB: s.transposeB,
      bias,
      biasPerRow: false,
      residualBeforeActivation: false,
      activation: s.activation ?? 'none',
      outShape: out.shape,
      ...bindings,
    });
  };
  // Units of work: batch entries when b is batched (each reads its own b), else rows.
  const units = s.batchedB ? s.batch : s.batch * s.m;
  const rowsPerUnit = s.batchedB ? s.m : 1;
  const operands: RowOperand[] = [
    { tensor: s.a, rowElements: rowsPerUnit * s.k },
    { tensor: out, rowElements: rowsPerUnit * s.n, written: true },
  ];
  const residualAt = residual ? operands.push({ tensor: residual, rowElements: rowsPerUnit * s.n }) - 1 : -1;
  const bAt = s.batchedB ? operands.push({ tensor: s.b, rowElements: s.k * s.n }) - 1 : -1;
  forEachRowChunk(ctx, 'matmul', units, operands, ({ rows, bindings }) => {
    const chunk = { a: bindings[0]!, out: bindings[1]!, residual: bindings[residualAt], b: bindings[bAt] ?? b };
    // A shared b sees the batch's rows as one matrix: read once for all of them, not once per
    // entry (a decoding step's [beams, 1, d] · [59457, d]ᵀ: 22 ms instead of 139 on lavapipe).
    if (s.batchedB) gemm(rows, s.m, chunk);
    else gemm(1, rows, chunk);
  });
}
