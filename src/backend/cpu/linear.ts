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

/**
 * out = activation(a·b + bias) + residual for each of the batch's [M, K]·[K, N] products.
 * Dot products are summed in float64 and the epilogue runs in float64 too, so each output is
 * rounded to f32 once: the oracle is closer to the exact value than any f32 kernel can be.
 */
export function matmul(sizes: MatmulSizes, operands: MatmulOperands): Float32Array {
  const { batch, m, k, n, batchedB } = sizes;
  const { a, b, transposeB, bias, activation, residual } = operands;
  const out = new Float32Array(batch * m * n);
  const sums = scratchFloat64(m * n);
  for (let t = 0; t < batch; t++) {
    const bStart = batchedB ? t * k * n : 0;
    if (transposeB) {
      // b is [N, K]: every output is the dot product of two contiguous rows.
      rowDots(a, t * m * k, m, b, bStart, n, k, sums);
    } else {
      // b is [K, N]: i-k-j order, adding a[i, p]·b[p, :] so the inner loop runs along b's rows.
      sums.fill(0, 0, m * n);
      for (let i = 0; i < m; i++) {
        const aRow = (t * m + i) * k;
        for (let p = 0; p < k; p++) {
          const aip = a[aRow + p]!;
          const bRow = bStart + p * n;
          for (let j = 0; j < n; j++) sums[i * n + j] += aip * b[bRow + j]!;
        }
      }
    }
    for (let i = 0; i < m; i++) {
      const outRow = (t * m + i) * n;
      for (let j = 0; j < n; j++) {
        let value = sums[i * n + j]!;
        if (bias) value += bias[j]!;
        value = activate(value, activation);
        if (residual) value += residual[outRow + j]!;
        out[outRow + j] = value;
      }
    }
  }
  return out;
}

/**
 * The dot products of `rows` rows of `x` with `columns` rows of `y`, both contiguous along
 * `length` and starting at `xStart` and `yStart`: `out[r·columns + c] = Σ_p x[r, p]·y[c, p]`,
 * each summed in float64 in order of p.
 *
 * Two rows of x and four of y at a time: eight independent sums stay in registers and each value
 * loaded serves two or four of them (about 1.5× one row at a time in V8; more blocks spill). The
 * outer loop runs over y, so four of its rows are reused from the cache against every row of x:
 * x should be the smaller operand (a layer's activations against its weights; a filter bank
 * against an image's patches). Rows past the end in the last block repeat the last row, and
 * their sums are dropped.
 */
export function rowDots(
  x: Float32Array,
  xStart: number,
  rows: number,
  y: Float32Array,
  yStart: number,
  columns: number,
  length: number,
  out: Float64Array,
): void {
  const rowOf = (r: number): number => xStart + Math.min(r, rows - 1) * length;
  const columnOf = (c: number): number => yStart + Math.min(c, columns - 1) * length;
  const store = (r: number, c: number, sum: number): void => {
    if (r < rows && c < columns) out[r * columns + c] = sum;
  };
  for (let c = 0; c < columns; c += 4) {
    const y0 = columnOf(c);
    const y1 = columnOf(c + 1);
    const y2 = columnOf(c + 2);
    const y3 = columnOf(c + 3);
    for (let r = 0; r < rows; r += 2) {
      const x0 = rowOf(r);
      const x1 = rowOf(r + 1);
      let s00 = 0;
      let s01 = 0;
      let s02 = 0;
      let s03 = 0;
      let s10 = 0;
      let s11 = 0;
      let s12 = 0;
      let s13 = 0;
      for (let p = 0; p < length; p++) {
        const a0 = x[x0 + p]!;
        const a1 = x[x1 + p]!;
        const b0 = y[y0 + p]!;
        const b1 = y[y1 + p]!;
        const b2 = y[y2 + p]!;
        const b3 = y[y3 + p]!;
        s00 += a0 * b0;
        s01 += a0 * b1;
        s02 += a0 * b2;
        s03 += a0 * b3;
        s10 += a1 * b0;
        s11 += a1 * b1;
        s12 += a1 * b2;
        s13 += a1 * b3;
      }
      store(r, c, s00);
      store(r, c + 1, s01);
      store(r, c + 2, s02);
      store(r, c + 3, s03);
      store(r + 1, c, s10);
      store(r + 1, c + 1, s11);
      store(r + 1, c + 2, s12);
      store(r + 1, c + 3, s13);
    }
  }
}

let scratch64 = new Float64Array(0);

/**
 * A float64 buffer of at least `size` elements, reused between calls (an op's sums before its
 * epilogue; ops run one at a time, and each is done with it when it returns).
 */
export function scratchFloat64(size: number): Float64Array {
  if (scratch64.length < size) scratch64 = new Float64Array(size);
  return scratch64;
}
