/**
 * Wrapper of `kernels/exit.wgsl`: early-exit decisions on the device (exceeds, where) and
 * `unlessAll`, whose gating mechanism lives in the kernel context (`KernelContext.gate`).
 */
import { exceedsSizes, unlessAllSizes, whereSizes } from '../../shapes.js';
import type { Tensor } from '../../../tensor.js';
import { type KernelContext, u32 } from '../context.js';
import type { KernelVariant } from '../kernels.js';

const WORKGROUP_SIZE = 64;

function variant(entryPoint: string, element: Tensor['dtype']): KernelVariant {
  return { file: 'exit', entryPoint, enable: element === 'f16' ? ['f16'] : [], aliases: { Element: element }, constants: { WORKGROUP_SIZE } };
}

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

export function exceeds(ctx: KernelContext, x: Tensor, threshold: number, flags?: Tensor): Tensor {
  const { batch } = exceedsSizes(x, threshold, flags);
  const out = ctx.output(x.shape, 'i32');
  const t = f32Threshold(threshold);
  ctx.record({
    variant: variant('exceeds', 'f32'),
    params: [u32(batch), u32(t.bits), u32(t.inclusive ? 1 : 0), u32(flags ? 1 : 0)],
    bindings: [x, flags ?? ctx.placeholder('i32'), out],
    workgroups: ctx.grid(Math.ceil(batch / WORKGROUP_SIZE)),
  });
  return out;
}

export function where(ctx: KernelContext, condition: Tensor, a: Tensor, b: Tensor): Tensor {
  const { size, inner } = whereSizes(condition, a, b);
  const out = ctx.output(a.shape, a.dtype);
  ctx.record({
    variant: variant('where_select', a.dtype),
    params: [u32(size), u32(inner), u32(0), u32(0)],
    bindings: [condition, a, b, out],
    workgroups: ctx.grid(Math.ceil(size / WORKGROUP_SIZE)),
  });
  return out;
}

export function unlessAll<T>(ctx: KernelContext, done: Tensor, fn: () => T): T {
  unlessAllSizes(done);
  return ctx.gate(done, fn);
}
