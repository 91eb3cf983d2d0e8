/** Fused multi-head attention, written out per (sample, head, query row). */
import type { AttentionSizes } from '../shapes.js';

export interface AttentionOperands {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  scale: number;
  causal: boolean;
  /** `[H, Tq, Tk]`, or `[B, H, Tq, Tk]` when `sizes.batchedBias`. */
  bias?: Float32Array;
  /** `[B or 1, Tk]` like k: non-zero excludes the key. */
  keyPaddingMask?: Int32Array;
}

/**
 * For head h of query row i of sample b:
 *   sⱼ = scale·(q_i · k_j) + bias[h, i, j], or −∞ when key j is padded or (causal) j > i + Tk − Tq;
 *   out_i = Σⱼ softmax(s)ⱼ · v_j.
 * A row whose every key is excluded has no distribution to average with: its output is zeros
 * (PyTorch would give NaN). Dot products, the softmax sum and the weighted sum are float64.
 */
export function attention(sizes: AttentionSizes, operands: AttentionOperands): Float32Array {
  const { batch, heads, headDim, tq, tk, sharedKv, batchedBias } = sizes;
  const { q, k, v, scale, causal, bias, keyPaddingMask } = operands;
  const width = heads * headDim;
  // Query i sees keys j ≤ i + lastKeyOffset: with a cache of Tk − Tq earlier keys, the newest query sees them all.
  const lastKeyOffset = tk - tq;
  const out = new Float32Array(batch * tq * width);
  const scores = new Float64Array(tk);
  const weighted = new Float64Array(headDim);
  for (let b = 0; b < batch; b++) {
    const kvSample = sharedKv ? 0 : b;
    for (let h = 0; h < heads; h++) {
      const biasBlock = ((batchedBias ? b * heads : 0) + h) * tq * tk;
      for (let i = 0; i < tq; i++) {
        const qRow = (b * tq + i) * width + h * headDim;
        let max = -Infinity;
        for (let j = 0; j < tk; j++) {
          const padded = keyPaddingMask !== undefined && keyPaddingMask[kvSample * tk + j] !== 0;
          if (padded || (causal && j > i + lastKeyOffset)) {
            scores[j] = -Infinity;
            continue;
          }
          const kRow = (kvSample * tk + j) * width + h * headDim;
          let dot = 0;
          for (let d = 0; d < headDim; d++) dot += q[qRow + d]! * k[kRow + d]!;
          const score = scale * dot + (bias ? bias[biasBlock + i * tk + j]! : 0);
          scores[j] = score;
          max = Math.max(max, score);
        }
        // The output has q's layout, so qRow addresses its row too; it starts zeroed, and a fully
        // excluded row stays so.
        if (max === -Infinity) continue;
        weighted.fill(0);
        let sum = 0;
        for (let j = 0; j < tk; j++) {
          const weight = Math.exp(scores[j]! - max);
          if (weight === 0) continue;
          sum += weight;
          const vRow = (kvSample * tk + j) * width + h * headDim;
          for (let d = 0; d < headDim; d++) weighted[d] += weight * v[vRow + d]!;
        }
        for (let d = 0; d < headDim; d++) out[qRow + d] = weighted[d]! / sum;
      }
    }
  }
  return out;
}
