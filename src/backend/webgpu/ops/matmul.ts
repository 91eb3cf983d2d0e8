/**
 * Wrapper of the GEMM kernels, shared by matmul (operands from `kernels/matmul.wgsl`) and conv2d
 * (`kernels/conv2d.wgsl`, see `vision.ts`). The core (`kernels/gemm.wgsl`) holds the fused
 * epilogue and two kernels, chosen per adapter:
 * - `gemm_registers` (`kernels/gemm-registers.wgsl`) on software adapters with fixed-size subgroups
 *   (lavapipe): register blocking with A shared through subgroup shuffles, no workgroup memory.
 * - `gemm_tiled` everywhere else: 64×64 tiles in workgroup memory, 16×16 invocations of 4×4 blocks.
 *
 * A b beyond the storage binding limit (OFA's token table as the decoder's output projection:
 * [59457, 768] f32 is 183 MB, the usual limit 128 MiB) is split along N when stored [N, K]
 * (transposeB): one GEMM per chunk of rows of b (see `rowChunks`), joined by a concat.
 */
import type { Activation, MatmulOptions } from '../../backend.js';
import { matmulSizes } from '../../shapes.js';
import { BYTES_PER_ELEMENT, type Shape, type Tensor, shapeToString } from '../../../tensor.js';
import { type Binding, type KernelContext, type ParamValue, bindingTensor, u32 } from '../context.js';
import type { KernelVariant } from '../kernels.js';
import { binary } from './elementwise.js';
import { concat, fitsOneBinding, rowChunks } from './indexing.js';
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
  /** Bound at 1 and 2; b may be a range (a chunk of a b beyond the binding limit). */
  a: Tensor;
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
  residual: Tensor | undefined;
  /** Residual added before the activation (ResNet) rather than after it (transformer blocks). */
  residualBeforeActivation: boolean;
  activation: Activation;
  outShape: Shape;
}

/** gemm_registers: row quads a workgroup shares (see gemm-registers.wgsl); 4 measured best at 1024³. */
const MAX_ROW_QUADS = 4;
/** gemm_tiled: invocations per side of the workgroup (4×4 outputs each) and the k step of a tile. */
const TILE_THREADS = 16;
const TILE_K = 16;

/** The subgroup size gemm_registers can rely on: on a software adapter whose subgroups have one fixed size. */
export function registerLanes(ctx: KernelContext): number | undefined {
  const { subgroupMinSize, subgroupMaxSize } = ctx.device.adapterInfo;
  const fixed = subgroupMinSize !== undefined && subgroupMinSize === subgroupMaxSize;
  return ctx.capabilities.software && ctx.capabilities.subgroups && fixed ? subgroupMinSize : undefined;
}

export function recordGemm(ctx: KernelContext, g: Gemm): Tensor {
  const out = ctx.output(g.outShape);
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
  const lanes = registerLanes(ctx);
  let variant: KernelVariant;
  let workgroups: [number, number, number];
  if (lanes !== undefined) {
    // Two subgroups per workgroup; as few row quads as M needs (the decoder's M = beams ≤ 5 takes 2).
    const rowQuads = Math.min(MAX_ROW_QUADS, Math.max(1, Math.ceil(g.m / 4)));
    const workgroupSize = 2 * lanes;
    variant = {
      file: g.file,
      entryPoint: 'gemm_registers',
      enable: [...(types.enable ?? []), 'subgroups'],
      aliases: types.aliases,
      include: ['activation', 'gemm', 'gemm-registers'],
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
  return out;
}

export function matmul(ctx: KernelContext, a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const { batch, m, k, n, batchedB, outShape } = matmulSizes(a, b, options);
  const transposeB = options.transposeB ?? false;
  const { bias, residual } = options;
  /** The GEMM of columns `start .. start + columns` (b's rows of them when split). */
  const gemm = (bBinding: Binding, biasBinding: Binding | undefined, withResidual: Tensor | undefined, columns: number): Tensor =>
    recordGemm(ctx, {
      file: 'matmul',
      batch,
      m,
      n: columns,
      k,
      params: [u32(batchedB ? k * n : 0)],
      a,
      b: bBinding,
      operandTypes: { BType: b },
      constants: { K_ALIGNED: Number(k % 4 === 0), N_ALIGNED: Number(columns % 4 === 0) },
      transposeB,
      bias: biasBinding,
      biasPerRow: false,
      residual: withResidual,
      residualBeforeActivation: false,
      activation: options.activation ?? 'none',
      outShape: [...outShape.slice(0, -1), columns],
    });
  // Only a shared b stored [N, K] has contiguous column blocks (splitting K would need accumulation).
  if ((!transposeB || batchedB) && !fitsOneBinding(ctx, b)) {
    const bytes = b.size * BYTES_PER_ELEMENT[b.dtype];
    throw new Error(
      `matmul: b ${shapeToString(b.shape)} ${b.dtype} (${bytes} bytes) exceeds the storage binding limit of ${ctx.maxBindingBytes} bytes ` +
        `(maxStorageBufferBindingSize) and only a shared b stored [N, K] (transposeB) can be split: store it transposed, or in f16`,
    );
  }
  const chunks = rowChunks(ctx, 'matmul', b, transposeB && !batchedB ? n : 1, bias ? [BYTES_PER_ELEMENT[bias.dtype]] : []);
  if (chunks.length === 1) return gemm(chunks[0]!.binding, bias, residual, n);
  // One output per column block, joined along the last axis (the decoder's M is 1–5: a cheap copy).
  // The residual comes after the activation in matmul's epilogue, so adding it once to the joined
  // output is the same arithmetic as fusing it per block.
  const blocks = chunks.map((c) => gemm(c.binding, bias && { tensor: bias, offset: c.start, length: c.rows }, undefined, c.rows));
  const joined = concat(ctx, blocks, outShape.length - 1);
  for (const block of blocks) block.dispose();
  if (!residual) return joined;
  const out = binary(ctx, 'add', joined, residual);
  joined.dispose();
  return out;
}
