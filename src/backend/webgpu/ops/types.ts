/** Type aliases and extensions for kernels whose operands may be f16 weights. */
import type { Tensor } from '../../../tensor.js';
import type { KernelVariant } from '../kernels.js';

/** `{ alias: tensor }` → `alias NAME = f16|f32;` for each, and `enable f16;` when any is f16. */
export function operandVariant(operands: Readonly<Record<string, Tensor>>): Pick<KernelVariant, 'enable' | 'aliases'> {
  const aliases: Record<string, string> = {};
  for (const [alias, t] of Object.entries(operands)) aliases[alias] = t.dtype === 'f16' ? 'f16' : 'f32';
  const enable = Object.values(aliases).includes('f16') ? ['f16'] : [];
  return { enable, aliases };
}
