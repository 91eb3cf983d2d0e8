/**
 * Ops over the last dimension (each row of a [rows, cols] view) and the per-sample cosine
 * similarity. Means, variances, exponential sums and dot products are accumulated in float64
 * (plain JS numbers), so the oracle's only f32 rounding is the final store.
 */

export interface RowSizes {
  rows: number;
  cols: number;
}

/** Two-pass mean and population variance, then (x − mean)/√(var + eps)·weight + bias (+ residual). */
export function layerNorm(
  { rows, cols }: RowSizes,
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  eps: number,
  residual?: Float32Array,
): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += x[base + c]!;
    const mean = sum / cols;
    let squares = 0;
    for (let c = 0; c < cols; c++) {
      const deviation = x[base + c]! - mean;
      squares += deviation * deviation;
    }
    const inverseStd = 1 / Math.sqrt(squares / cols + eps);
    for (let c = 0; c < cols; c++) {
      out[base + c] = (x[base + c]! - mean) * inverseStd * weight[c]! + bias[c]! + (residual ? residual[base + c]! : 0);
    }
  }
  return out;
}

function rowMax(x: Float32Array, base: number, cols: number): number {
  let max = -Infinity;
  for (let c = 0; c < cols; c++) max = Math.max(max, x[base + c]!);
  return max;
}

/**
 * exp(x − max)/Σ exp(x − max): subtracting the row maximum keeps exp from overflowing and does
 * not change the result. A row of only −∞ gives NaN, as in PyTorch.
 */
export function softmax({ rows, cols }: RowSizes, x: Float32Array): Float32Array {
  const out = new Float32Array(rows * cols);
  const exps = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    const max = rowMax(x, base, cols);
    let sum = 0;
    for (let c = 0; c < cols; c++) {
      exps[c] = Math.exp(x[base + c]! - max);
      sum += exps[c]!;
    }
    for (let c = 0; c < cols; c++) out[base + c] = exps[c]! / sum;
  }
  return out;
}

/** (x − max) − log Σ exp(x − max). */
export function logSoftmax({ rows, cols }: RowSizes, x: Float32Array): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    const max = rowMax(x, base, cols);
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.exp(x[base + c]! - max);
    const logSum = Math.log(sum);
    for (let c = 0; c < cols; c++) out[base + c] = x[base + c]! - max - logSum;
  }
  return out;
}

/** Index of the largest value per row; only a strictly larger value moves it, so ties keep the first. */
export function argmax({ rows, cols }: RowSizes, x: Float32Array): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let best = 0;
    for (let c = 1; c < cols; c++) if (x[base + c]! > x[base + best]!) best = c;
    out[r] = best;
  }
  return out;
}

/**
 * The k largest values per row, descending, with their indices. One pass keeps the best k in
 * order (insertion), which costs about one comparison per element when k ≪ cols (beam search over
 * the vocabulary). A value moves ahead only of strictly smaller ones, so on ties the lower index,
 * seen first, stays first.
 */
export function topk(
  { rows, cols }: RowSizes,
  k: number,
  x: Float32Array,
): { values: Float32Array; indices: Int32Array } {
  const values = new Float32Array(rows * k);
  const indices = new Int32Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    const best = r * k;
    let count = 0;
    for (let c = 0; c < cols; c++) {
      const value = x[base + c]!;
      let slot: number;
      if (count < k) slot = count++;
      else if (value > values[best + k - 1]!) slot = k - 1;
      else continue;
      while (slot > 0 && value > values[best + slot - 1]!) {
        values[best + slot] = values[best + slot - 1]!;
        indices[best + slot] = indices[best + slot - 1]!;
        slot--;
      }
      values[best + slot] = value;
      indices[best + slot] = c;
    }
  }
  return { values, indices };
}

/** PyTorch's `F.cosine_similarity` default. */
export const COSINE_EPS = 1e-8;

/**
 * a·b / (max(‖a‖, eps)·max(‖b‖, eps)) per sample of `length` elements: current PyTorch's
 * `F.cosine_similarity` clamps each norm separately. Older releases (and the `nn.CosineSimilarity`
 * page still) used max(‖a‖·‖b‖, eps); the two differ only for nearly zero vectors (a norm or the
 * product of the norms below eps), which hidden states never are.
 */
export function cosineSimilarity(
  { batch, length }: { batch: number; length: number },
  a: Float32Array,
  b: Float32Array,
): Float32Array {
  const out = new Float32Array(batch);
  for (let s = 0; s < batch; s++) {
    const base = s * length;
    let dot = 0;
    let aSquares = 0;
    let bSquares = 0;
    for (let i = 0; i < length; i++) {
      const ai = a[base + i]!;
      const bi = b[base + i]!;
      dot += ai * bi;
      aSquares += ai * ai;
      bSquares += bi * bi;
    }
    out[s] = dot / (Math.max(Math.sqrt(aSquares), COSINE_EPS) * Math.max(Math.sqrt(bSquares), COSINE_EPS));
  }
  return out;
}
