/** Matrix multiplication with the fused epilogue of `Backend.matmul`. */
import type { Activation } from '../backend.js';
import type { MatmulSizes } from '../shapes.js';
import { activate } from './elementwise.js';

export interface MatmulOperands {
  a: Float32Array;
  /** `[K, N]`, or `[N, K]` when `transposeB`; one per batch entry when `sizes.batchedB`. */
  b: Float32Array;
  transposeB: boolean;
  bias?: Float32Array;
  activation: Activation;
  residual?: Float32Array;
}

/** Output columns computed together when b is [N, K]. */
const COLUMN_BLOCK = 4;

/**
 * out = activation(a·b + bias) + residual for each of the batch's [M, K]·[K, N] products.
 * Dot products are summed in float64 and the epilogue runs in float64 too, so each output is
 * rounded to f32 once: the oracle is closer to the exact value than any f32 kernel can be.
 */
export function matmul(sizes: MatmulSizes, operands: MatmulOperands): Float32Array {
  const { batch, m, k, n, batchedB } = sizes;
  const { a, b, transposeB, bias, activation, residual } = operands;
  const out = new Float32Array(batch * m * n);
  // One output row before the epilogue, with room for a whole last column block.
  const row = new Float64Array(n + COLUMN_BLOCK - 1);
  for (let t = 0; t < batch; t++) {
    const bBase = batchedB ? t * k * n : 0;
    // With b as [N, K], output column j reads b's row j; columns past n (in the last block) reuse row n − 1.
    const rowOfColumn = (j: number): number => bBase + Math.min(j, n - 1) * k;
    for (let i = 0; i < m; i++) {
      const aRow = (t * m + i) * k;
      if (transposeB) {
        // b is [N, K]: every output is the dot product of two contiguous rows. Four columns at a
        // time share each a[i, p] load and keep four independent sums going (over twice as fast
        // in V8); the sums of columns past n land in row's spare tail.
        for (let j = 0; j < n; j += COLUMN_BLOCK) {
          const b0 = rowOfColumn(j);
          const b1 = rowOfColumn(j + 1);
          const b2 = rowOfColumn(j + 2);
          const b3 = rowOfColumn(j + 3);
          let sum0 = 0;
          let sum1 = 0;
          let sum2 = 0;
          let sum3 = 0;
          for (let p = 0; p < k; p++) {
            const aip = a[aRow + p]!;
            sum0 += aip * b[b0 + p]!;
            sum1 += aip * b[b1 + p]!;
            sum2 += aip * b[b2 + p]!;
            sum3 += aip * b[b3 + p]!;
          }
          row[j] = sum0;
          row[j + 1] = sum1;
          row[j + 2] = sum2;
          row[j + 3] = sum3;
        }
      } else {
        // b is [K, N]: i-k-j order, adding a[i, p]·b[p, :] so the inner loop runs along b's rows.
        row.fill(0);
        for (let p = 0; p < k; p++) {
          const aip = a[aRow + p]!;
          const bRow = bBase + p * n;
          for (let j = 0; j < n; j++) row[j] += aip * b[bRow + j]!;
        }
      }
      const outRow = (t * m + i) * n;
      for (let j = 0; j < n; j++) {
        let value = row[j]!;
        if (bias) value += bias[j]!;
        value = activate(value, activation);
        if (residual) value += residual[outRow + j]!;
        out[outRow + j] = value;
      }
    }
  }
  return out;
}
