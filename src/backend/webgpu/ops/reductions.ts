/**
 * Wrapper of `kernels/reduce.wgsl`: argmax and top-k; and the choice of workgroup reductions
 * shared with the row kernels of `normalization.ts` and the exit rule of `exit.ts`.
 */
import type { TopK } from '../../backend.js';
import { lastDimSizes, topkSizes } from '../../shapes.js';
import type { Shape, Tensor } from '../../../tensor.js';
import { type KernelContext, u32 } from '../context.js';
import type { KernelFile, KernelVariant } from '../kernels.js';
import { forEachRowChunk } from './indexing.js';
import { operandVariant } from './types.js';

/**
 * A kernel that reduces rows with the workgroup functions of `reduce-subgroups.wgsl` where the
 * device has subgroups, else of `reduce-workgroup-memory.wgsl` (the same functions through a tree
 * in workgroup memory). `operands` name the kernel's element-type aliases.
 */
export function reductionVariant(
  ctx: KernelContext,
  file: KernelFile,
  entryPoint: string,
  operands: Readonly<Record<string, Tensor>>,
  constants: Readonly<Record<string, number>>,
): KernelVariant {
  const types = operandVariant(operands);
  const subgroups = ctx.capabilities.subgroups;
  return {
    file,
    entryPoint,
    enable: [...(types.enable ?? []), ...(subgroups ? ['subgroups'] : [])],
    aliases: types.aliases,
    include: [subgroups ? 'reduce-subgroups' : 'reduce-workgroup-memory'],
    constants,
  };
}

/**
 * Invocations per workgroup of a row reduction (a power of two, as the tree fallback needs). A
 * software rasteriser runs a workgroup's invocations one SIMD chunk after another on one core:
 * lavapipe was fastest with 64 (layer norm of [908, 768]: 4.4 ms; 6.3 ms with 32, 15 ms with 256).
 * A GPU wants wide groups for bandwidth.
 */
export function rowWorkgroupSize(ctx: KernelContext): number {
  return ctx.capabilities.software ? 64 : 256;
}

/** Elements each top-k workgroup selects from: rows longer than this are split, then merged. */
const TOPK_SPAN = 4096;

/**
 * One top-k selection dispatch over `spans` spans per row of `values` ([rows, cols]); `indices`
 * are the candidates' own indices when merging spans (else a placeholder: positions are indices).
 */
function selectTop(ctx: KernelContext, values: Tensor, indices: Tensor | undefined, rows: number, cols: number, spanLength: number, k: number): TopK {
  const spans = Math.ceil(cols / spanLength);
  const out: TopK = { values: ctx.output([rows, spans * k]), indices: ctx.output([rows, spans * k], 'i32') };
  const constants = { WORKGROUP_SIZE: rowWorkgroupSize(ctx), CANDIDATES: indices ? 1 : 0 };
  const operands = [
    { tensor: values, rowElements: cols },
    { tensor: indices ?? ctx.placeholder('i32'), rowElements: indices ? cols : 0 },
    { tensor: out.values, rowElements: spans * k, written: true },
    { tensor: out.indices, rowElements: spans * k, written: true },
  ];
  forEachRowChunk(ctx, 'topk', rows, operands, (chunk) => {
    ctx.record({
      variant: reductionVariant(ctx, 'reduce', 'topk', { Element: values }, constants),
      params: [chunk.rows * spans, cols, spanLength, spans, k].map(u32),
      bindings: chunk.bindings,
      workgroups: ctx.grid(chunk.rows * spans),
    });
  });
  return out;
}

/**
 * The k best of each row of `x` ([rows, cols]) as [rows, k] values and indices: each span of a
 * long row yields k candidates, and a second dispatch selects from the candidates of the row.
 */
function topRows(ctx: KernelContext, x: Tensor, rows: number, cols: number, k: number): TopK {
  if (cols <= TOPK_SPAN) return selectTop(ctx, x, undefined, rows, cols, cols, k);
  const candidates = selectTop(ctx, x, undefined, rows, cols, TOPK_SPAN, k);
  const candidateCount = candidates.values.shape[1]!;
  const best = selectTop(ctx, candidates.values, candidates.indices, rows, candidateCount, candidateCount, k);
  candidates.values.dispose();
  candidates.indices.dispose();
  return best;
}

export function topk(ctx: KernelContext, x: Tensor, k: number): TopK {
  const { rows, cols, outShape } = topkSizes(x, k);
  const best = topRows(ctx, x, rows, cols, k);
  return { values: best.values.reshape(outShape), indices: best.indices.reshape(outShape) };
}

/** Top-1: the first index of the largest value. */
export function argmax(ctx: KernelContext, x: Tensor): Tensor {
  const { rows, cols } = lastDimSizes('argmax', x);
  const best = topRows(ctx, x, rows, cols, 1);
  best.values.dispose();
  const outShape: Shape = x.shape.slice(0, -1);
  return best.indices.reshape(outShape);
}
