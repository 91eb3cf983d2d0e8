/**
 * Wrapper of the GEMM kernels, shared by matmul (operands from `kernels/matmul.wgsl`) and conv2d
 * (`kernels/conv2d.wgsl`, see `vision.ts`). The core (`kernels/gemm.wgsl`) holds the fused
 * epilogue and two kernels, chosen per adapter:
 * - `gemm_registers` (`kernels/gemm-registers.wgsl`) on software adapters with fixed-size subgroups
 *   (lavapipe): register blocking with A shared through subgroup shuffles, no workgroup memory.
 * - `gemm_tiled` everywhere else: 64×64 tiles in workgroup memory, 16×16 invocations of 4×4 blocks.
 */
import type { Activation, MatmulOptions } from '../../backend.js';
import { matmulSizes } from '../../shapes.js';
import type { Shape, Tensor } from '../../../tensor.js';
import { type KernelContext, type ParamValue, u32 } from '../context.js';
import type { KernelVariant } from '../kernels.js';
import { operandVariant } from './types.js';

/** Codes of `activate` in `kernels/activation.wgsl`. */
const ACTIVATION_CODE: Record<Activation, number> = { none: 0, relu: 1, gelu: 2 };

/** One GEMM `out[batch, m, n] = epilogue(Σ_k A[batch, m, k]·B[batch, k, n])` for the core kernels. */
export interface Gemm {
  /** The kernel file that declares `Params` and loads the operands. */
  file: 'matmul' | 'conv2d';
  batch: number;
  m: number;
  n: number;
  k: number;
  /** The operand file's `Params` fields after m, n, k. */
  params: readonly ParamValue[];
  /** Bound at 1 and 2. */
  a: Tensor;
  b: Tensor;
  /** The operand file's element-type aliases, e.g. `{ BType: b }`. */
  operandTypes: Readonly<Record<string, Tensor>>;
  /** The operand file's override constants. */
  constants: Readonly<Record<string, number>>;
  transposeB: boolean;
  bias: Tensor | undefined;
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
function registerLanes(ctx: KernelContext): number | undefined {
  const { subgroupMinSize, subgroupMaxSize } = ctx.device.adapterInfo;
  const fixed = subgroupMinSize !== undefined && subgroupMinSize === subgroupMaxSize;
  return ctx.capabilities.software && ctx.capabilities.subgroups && fixed ? subgroupMinSize : undefined;
}

export function recordGemm(ctx: KernelContext, g: Gemm): Tensor {
  const out = ctx.output(g.outShape);
  const bias = g.bias ?? ctx.placeholder('f32');
  const residual = g.residual ?? ctx.placeholder('f32');
  const types = operandVariant({ ...g.operandTypes, BiasType: bias });
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
  return recordGemm(ctx, {
    file: 'matmul',
    batch,
    m,
    n,
    k,
    params: [u32(batchedB ? k * n : 0)],
    a,
    b,
    operandTypes: { BType: b },
    constants: { K_ALIGNED: Number(k % 4 === 0), N_ALIGNED: Number(n % 4 === 0) },
    transposeB,
    bias: options.bias,
    biasPerRow: false,
    residual: options.residual,
    residualBeforeActivation: false,
    activation: options.activation ?? 'none',
    outShape,
  });
}
