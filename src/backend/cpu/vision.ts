/** NCHW convolution and max pooling for the ResNet backbone. */
import type { Conv2dSizes, Pool2dSizes } from '../shapes.js';
import { activate } from './elementwise.js';

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

/** Output channels computed together, so that each input value read serves all of them. */
const CHANNEL_BLOCK = 4;

/**
 * out[b, co, oh, ow] = act(Σ_{ci, ky, kx} w[co, ci, ky, kx]·x[b, ci, oh·s − p + ky, ow·s − p + kx]
 *                          + bias[co] + residual[b, co, oh, ow]), zero padding.
 *
 * Loop order: each filter tap (ci, ky, kx) adds a scalar weight times a strided window of one
 * input plane to a whole output plane, so the inner loop runs along an output row. Zero padding
 * is never read: a tap only visits the output rows and columns whose input lies inside the image.
 * The inner loop updates CHANNEL_BLOCK output planes per input value (about twice as fast in V8
 * as one plane at a time); channels past cout in the last block get zero weights and are not
 * stored. Planes are accumulated in float64 and rounded to f32 once, after the epilogue.
 */
export function conv2d(sizes: Conv2dSizes, { x, w, bias, residual, activation }: Conv2dOperands): Float32Array {
  const { batch, cin, h, w: width, cout, kh, kw, stride, padding, ho, wo } = sizes;
  const rowRanges = Array.from({ length: kh }, (_, ky) => insideRange(ky, h, ho, stride, padding));
  const columnRanges = Array.from({ length: kw }, (_, kx) => insideRange(kx, width, wo, stride, padding));
  const planeSize = ho * wo;
  const filterSize = cin * kh * kw;
  const weightOf = (co: number, tap: number): number => (co < cout ? w[co * filterSize + tap]! : 0);
  const out = new Float32Array(batch * cout * planeSize);
  // Planes of the block's channels, one after another.
  const planes = new Float64Array(CHANNEL_BLOCK * planeSize);
  const [p0, p1, p2, p3] = [0, planeSize, 2 * planeSize, 3 * planeSize];
  for (let b = 0; b < batch; b++) {
    for (let co = 0; co < cout; co += CHANNEL_BLOCK) {
      planes.fill(0);
      for (let ci = 0; ci < cin; ci++) {
        const inputPlane = (b * cin + ci) * h * width;
        for (let ky = 0; ky < kh; ky++) {
          const [firstRow, endRow] = rowRanges[ky]!;
          for (let kx = 0; kx < kw; kx++) {
            const [firstColumn, endColumn] = columnRanges[kx]!;
            const tap = (ci * kh + ky) * kw + kx;
            const w0 = weightOf(co, tap);
            const w1 = weightOf(co + 1, tap);
            const w2 = weightOf(co + 2, tap);
            const w3 = weightOf(co + 3, tap);
            for (let oh = firstRow; oh < endRow; oh++) {
              // Input index of output column 0 (possibly left of the image; never read there).
              const inputRow = inputPlane + (oh * stride - padding + ky) * width - padding + kx;
              const outputRow = oh * wo;
              for (let ow = firstColumn; ow < endColumn; ow++) {
                const input = x[inputRow + ow * stride]!;
                const o = outputRow + ow;
                planes[p0 + o] += w0 * input;
                planes[p1 + o] += w1 * input;
                planes[p2 + o] += w2 * input;
                planes[p3 + o] += w3 * input;
              }
            }
          }
        }
      }
      for (let c = co; c < Math.min(co + CHANNEL_BLOCK, cout); c++) {
        const plane = (c - co) * planeSize;
        const outputPlane = (b * cout + c) * planeSize;
        const shift = bias ? bias[c]! : 0;
        for (let p = 0; p < planeSize; p++) {
          let value = planes[plane + p]! + shift;
          if (residual) value += residual[outputPlane + p]!;
          out[outputPlane + p] = activate(value, activation);
        }
      }
    }
  }
  return out;
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
