/** NCHW convolution and max pooling for the ResNet backbone. */
import type { Conv2dSizes, Pool2dSizes } from '../shapes.js';
import { activate } from './elementwise.js';
import { rowDots, scratchFloat64 } from './linear.js';

/**
 * The output positions o (0 ≤ o < outSize) whose input position o·stride − padding + offset lies
 * inside [0, inSize): the rest read padding. Returned as [first, end).
 */
function insideRange(
  offset: number,
  inSize: number,
  outSize: number,
  stride: number,
  padding: number,
): [number, number] {
  const first = Math.max(0, Math.ceil((padding - offset) / stride));
  const end = Math.min(outSize, Math.floor((inSize - 1 + padding - offset) / stride) + 1);
  return [first, Math.max(first, end)];
}

export interface Conv2dOperands {
  x: Float32Array;
  w: Float32Array;
  bias?: Float32Array;
  residual?: Float32Array;
  activation: 'none' | 'relu';
}

/**
 * out[b, co, oh, ow] = act(Σ_{ci, ky, kx} w[co, ci, ky, kx]·x[b, ci, oh·s − p + ky, ow·s − p + kx]
 *                          + bias[co] + residual[b, co, oh, ow]), zero padding.
 *
 * As a matrix product (im2col): each output position's input window becomes one row of a
 * `[Ho·Wo, Cin·kh·kw]` patch matrix, laid out like a filter row (ci, ky, kx), so that every output
 * is the dot product of a filter row and a patch row, both contiguous (`rowDots`: about twice the
 * speed of accumulating whole planes tap by tap). Sums run in float64 in the order (ci, ky, kx);
 * a padded tap adds an exact zero. The epilogue runs in float64 and rounds to f32 once.
 */
export function conv2d(sizes: Conv2dSizes, { x, w, bias, residual, activation }: Conv2dOperands): Float32Array {
  const { batch, cout, ho, wo } = sizes;
  const planeSize = ho * wo;
  const filterSize = sizes.cin * sizes.kh * sizes.kw;
  const out = new Float32Array(batch * cout * planeSize);
  const patches = scratchPatches(planeSize * filterSize);
  const sums = scratchFloat64(cout * planeSize);
  for (let b = 0; b < batch; b++) {
    fillPatches(sizes, x, b, patches);
    rowDots(w, 0, cout, patches, 0, planeSize, filterSize, sums);
    for (let c = 0; c < cout; c++) {
      const outputPlane = (b * cout + c) * planeSize;
      const shift = bias ? bias[c]! : 0;
      for (let p = 0; p < planeSize; p++) {
        let value = sums[c * planeSize + p]! + shift;
        if (residual) value += residual[outputPlane + p]!;
        out[outputPlane + p] = activate(value, activation);
      }
    }
  }
  return out;
}

/**
 * Row `oh·Wo + ow` of `patches`: sample b's input window of that output position, in filter order
 * (ci, ky, kx), zeros where the window reaches past the image. Each tap copies the output rows
 * and columns whose input lies inside (`insideRange`) with one stride; the rest stay zero.
 */
function fillPatches(sizes: Conv2dSizes, x: Float32Array, b: number, patches: Float32Array): void {
  const { cin, h, w: width, kh, kw, stride, padding, ho, wo } = sizes;
  const filterSize = cin * kh * kw;
  patches.fill(0, 0, ho * wo * filterSize);
  for (let ky = 0; ky < kh; ky++) {
    const [firstRow, endRow] = insideRange(ky, h, ho, stride, padding);
    for (let kx = 0; kx < kw; kx++) {
      const [firstColumn, endColumn] = insideRange(kx, width, wo, stride, padding);
      for (let ci = 0; ci < cin; ci++) {
        const inputPlane = (b * cin + ci) * h * width;
        const tap = (ci * kh + ky) * kw + kx;
        for (let oh = firstRow; oh < endRow; oh++) {
          // Input index of output column 0 (possibly left of the image; never read there).
          const inputRow = inputPlane + (oh * stride - padding + ky) * width - padding + kx;
          for (let ow = firstColumn; ow < endColumn; ow++) {
            patches[(oh * wo + ow) * filterSize + tap] = x[inputRow + ow * stride]!;
          }
        }
      }
    }
  }
}

let scratch32 = new Float32Array(0);

/** The patch matrix's buffer, reused between convolutions (the largest is the first stage's). */
function scratchPatches(size: number): Float32Array {
  if (scratch32.length < size) scratch32 = new Float32Array(size);
  return scratch32;
}

/** Max over each window; padded cells are −∞, i.e. never win. */
export function maxPool2d(
  { planes, h, w, ho, wo }: Pool2dSizes,
  { kernel, stride, padding }: { kernel: number; stride: number; padding: number },
  x: Float32Array,
): Float32Array {
  const out = new Float32Array(planes * ho * wo);
  for (let p = 0; p < planes; p++) {
    const inputPlane = p * h * w;
    for (let oh = 0; oh < ho; oh++) {
      const top = oh * stride - padding;
      const firstRow = Math.max(0, top);
      const endRow = Math.min(h, top + kernel);
      for (let ow = 0; ow < wo; ow++) {
        const left = ow * stride - padding;
        const firstColumn = Math.max(0, left);
        const endColumn = Math.min(w, left + kernel);
        let max = -Infinity;
        for (let ih = firstRow; ih < endRow; ih++) {
          for (let iw = firstColumn; iw < endColumn; iw++) max = Math.max(max, x[inputPlane + ih * w + iw]!);
        }
        out[(p * ho + oh) * wo + ow] = max;
      }
    }
  }
  return out;
}
