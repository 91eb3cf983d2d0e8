/**
 * Wrappers of `kernels/exit.wgsl` (MuE's exit rule: cosine similarity and the decision to stop,
 * fused) and `kernels/select.wgsl` (`where`), and `unlessAll`, whose gating mechanism lives in the
 * kernel context (`KernelContext.gate`).
 */
import type { ExitDecision } from '../../backend.js';
import { cosineSizes, decideExitSizes, exceedsSizes, unlessAllSizes, whereSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { type KernelContext, type ParamValue, u32 } from '../context.js';
import type { KernelVariant } from '../kernels.js';
import { forEachRowChunk } from './indexing.js';
import { reductionVariant, rowWorkgroupSize } from './reductions.js';

/**
 * Elements one cosine workgroup reduces: states up to this size (all samples together, e.g. a
 * decoding step's beams) take one dispatch; MuE's [1, 900, 768] image states take 85 spans.
 */
const COSINE_SPAN = 8192;

/** The cosine kernel's stages (`STAGE` in exit.wgsl). */
const WHOLE = 0;
const SPANS = 1;
const FINISH = 2;

const SELECT_WORKGROUP_SIZE = 64;

/**
 * The threshold t as its f32 rounding t32 and whether x == t32 exceeds t (t32 was rounded up):
 * then `x > t` holds on the device exactly as it does for the CPU's f64 comparison.
 */
function f32Threshold(threshold: number): { bits: number; inclusive: boolean } {
  const t32 = Math.fround(threshold);
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, t32, true);
  return { bits: view.getUint32(0, true), inclusive: t32 > threshold };
}

/** The parameters of an exit.wgsl dispatch (see its `Params`). */
function exitParams(samples: number, length: number, spans: number, threshold: number, hasFlags: boolean): ParamValue[] {
  const t = f32Threshold(threshold);
  return [samples, length, COSINE_SPAN, spans, t.bits, t.inclusive ? 1 : 0, hasFlags ? 1 : 0].map(u32);
}

/**
 * The `cosine` kernel on `previous` and `computed` `[B, length]`: one dispatch when the states are
 * at most one span, else one per span then one finishing. With `decision`, it also writes the
 * carried state, the done flags and whether all are done (the exit rule); else the similarity alone.
 */
function recordCosine(
  ctx: KernelContext,
  previous: Tensor,
  computed: Tensor,
  sizes: { batch: number; length: number },
  similarity: Tensor,
  decision?: { threshold: number; doneBefore?: Tensor } & Omit<ExitDecision, 'similarity'>,
): void {
  const { batch, length } = sizes;
  const whole = batch * length <= COSINE_SPAN;
  const spans = whole ? 1 : Math.ceil(length / COSINE_SPAN);
  // Writable bindings the dispatch leaves alone still need buffers of their own (writable bindings must not alias).
  const unused: Tensor[] = [];
  const scratch = (dtype: Tensor['dtype']): Tensor => {
    const t = ctx.output([4], dtype);
    unused.push(t);
    return t;
  };
  const partials = whole ? scratch('f32') : ctx.output([batch * spans, 4]);
  const variant = (stage: number): KernelVariant =>
    reductionVariant(ctx, 'exit', 'cosine', { Element: previous, OtherElement: computed }, {
      WORKGROUP_SIZE: rowWorkgroupSize(ctx),
      DECIDE: decision ? 1 : 0,
      STAGE: stage,
    });
  const params = (samples: number): ParamValue[] => exitParams(samples, length, spans, decision?.threshold ?? Infinity, decision?.doneBefore !== undefined);
  const doneBefore = decision?.doneBefore;
  const state = decision?.state;
  // States beyond the binding limit (a large batch's encoder states): the spans run in chunks of samples.
  const operands = [
    { tensor: previous, rowElements: length },
    { tensor: computed, rowElements: length },
    { tensor: doneBefore ?? ctx.placeholder('i32'), rowElements: doneBefore ? 1 : 0 },
    { tensor: state ?? scratch('f32'), rowElements: state ? length : 0, written: true },
    { tensor: partials, rowElements: whole ? 0 : spans * 4, written: true },
    { tensor: similarity, rowElements: 0 },
    { tensor: decision?.done ?? scratch('i32'), rowElements: 0 },
    { tensor: decision?.allDone ?? scratch('i32'), rowElements: 0 },
  ];
  const bindings = operands.map(({ tensor }) => tensor);
  if (whole) {
    ctx.record({ variant: variant(WHOLE), params: params(batch), bindings, workgroups: [1] });
  } else {
    forEachRowChunk(ctx, decision ? 'decideExit' : 'cosineSimilarity', batch, operands, (chunk) => {
      ctx.record({ variant: variant(SPANS), params: params(chunk.rows), bindings: chunk.bindings, workgroups: ctx.grid(chunk.rows * spans) });
    });
    // FINISH reads only the partial sums and flags: small tensors stand in for the states.
    const finish = [ctx.placeholder(previous.dtype), ctx.placeholder(computed.dtype), bindings[2]!, scratch('f32'), ...bindings.slice(4)];
    ctx.record({ variant: variant(FINISH), params: params(batch), bindings: finish, workgroups: [1] });
    partials.dispose();
  }
  for (const t of unused) t.dispose();
}

export function cosineSimilarity(ctx: KernelContext, a: Tensor, b: Tensor): Tensor {
  const sizes = cosineSizes(a, b);
  const similarity = ctx.output([sizes.batch]);
  recordCosine(ctx, b, a, sizes, similarity);
  return similarity;
}

export function decideExit(ctx: KernelContext, previous: Tensor, computed: Tensor, threshold: number, doneBefore?: Tensor): ExitDecision {
  const sizes = decideExitSizes(previous, computed, threshold, doneBefore);
  const decision: ExitDecision = {
    state: ctx.output(previous.shape),
    similarity: ctx.output([sizes.batch]),
    done: ctx.output([sizes.batch], 'i32'),
    allDone: ctx.output([1], 'i32'),
  };
  recordCosine(ctx, previous, computed, sizes, decision.similarity, { threshold, doneBefore, ...decision });
  return decision;
}

export function exceeds(ctx: KernelContext, x: Tensor, threshold: number, flags?: Tensor): Tensor {
  const { batch } = exceedsSizes(x, threshold, flags);
  const out = ctx.output(x.shape, 'i32');
  const workgroupSize = rowWorkgroupSize(ctx);
  ctx.record({
    variant: reductionVariant(ctx, 'exit', 'exceeds', { Element: x, OtherElement: x }, { WORKGROUP_SIZE: workgroupSize }),
    params: exitParams(batch, 0, 0, threshold, flags !== undefined),
    bindings: [x, flags ?? ctx.placeholder('i32'), out],
    workgroups: ctx.grid(Math.ceil(batch / workgroupSize)),
  });
  return out;
}

export function where(ctx: KernelContext, condition: Tensor, a: Tensor, b: Tensor): Tensor {
  const { size, inner } = whereSizes(condition, a, b);
  const out = ctx.output(a.shape, a.dtype);
  const variant: KernelVariant = {
    file: 'select',
    entryPoint: 'where_select',
    enable: a.dtype === 'f16' ? ['f16'] : [],
    aliases: { Element: a.dtype },
    constants: { WORKGROUP_SIZE: SELECT_WORKGROUP_SIZE },
  };
  // Beyond the binding limit, in chunks of samples, or of elements under one shared decision.
  const shared = condition.size === 1;
  const rowLength = shared ? 1 : inner;
  const operands = [
    { tensor: condition, rowElements: shared ? 0 : 1 },
    { tensor: a, rowElements: rowLength },
    { tensor: b, rowElements: rowLength },
    { tensor: out, rowElements: rowLength, written: true },
  ];
  forEachRowChunk(ctx, 'where', rowLength === 0 ? 0 : size / rowLength, operands, (chunk) => {
    const chunkSize = chunk.rows * rowLength;
    ctx.record({
      variant,
      params: [u32(chunkSize), u32(shared ? chunkSize : inner)],
      bindings: chunk.bindings,
      workgroups: ctx.grid(Math.ceil(chunkSize / SELECT_WORKGROUP_SIZE)),
    });
  });
  return out;
}

export function unlessAll<T>(ctx: KernelContext, done: Tensor, fn: () => T): T {
  unlessAllSizes(done);
  return ctx.gate(done, fn);
}
