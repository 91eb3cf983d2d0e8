/**
 * OFA's image pipeline (ofa-arch.md §3): decode → RGB → Pillow BICUBIC resize to S×S → uint8 →
 * /255 → (x − 0.5) / 0.5, CHW. The resize reproduces the 8-bit path of Pillow's `ImagingResample`
 * (libImaging/Resample.c; Pillow 9.4 made the golden data) bit for bit, fixed-point arithmetic
 * included.
 */
import { type DecodeOptions, decodeImage, type RgbImage } from './decode.js';

export { DEFAULT_MAX_PIXELS, type DecodeOptions, decodeImage, ImageDecodeError, type RgbImage } from './decode.js';

const CHANNELS = 3;

/** Pillow's bicubic kernel with a = −0.5 (not the −0.75 of many GPU samplers). */
function bicubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  // Same operation order as Resample.c, so the double-precision weights agree to the last bit.
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}
const BICUBIC_SUPPORT = 2;

/**
 * Pillow keeps 8-bit resampling in 32-bit integers: weights are scaled by 2^22, leaving 8 bits
 * for the pixel value and 2 for the overshoot of negative lobes.
 */
const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const ROUNDING_OFFSET = 1 << (PRECISION_BITS - 1);

/** For each output sample, the input window it reads and the fixed-point weight of each input. */
interface FixedPointWeights {
  /** First input index read by output i. */
  firstInput: Int32Array;
  /** Number of inputs read by output i. */
  inputCount: Int32Array;
  /** Row i holds output i's weights; row length is `stride`. */
  weights: Int32Array;
  stride: number;
}

/**
 * Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the full-image box: when shrinking,
 * the kernel is stretched by the scale (antialiasing); weights are normalised to sum to 1 per
 * output, then rounded half away from zero to fixed point.
 */
function computeWeights(inputSize: number, outputSize: number): FixedPointWeights {
  const scale = inputSize / outputSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  // Resample.c multiplies by the reciprocal rather than dividing; kept for identical weights.
  const inverseFilterScale = 1 / filterScale;

  const firstInput = new Int32Array(outputSize);
  const inputCount = new Int32Array(outputSize);
  const weights = new Int32Array(outputSize * stride);
  const window = new Float64Array(stride);
  for (let out = 0; out < outputSize; out++) {
    const center = (out + 0.5) * scale;
    // C's (int) cast truncates toward zero; the clamp then handles the negative side.
    const first = Math.max(Math.trunc(center - support + 0.5), 0);
    const count = Math.min(Math.trunc(center + support + 0.5), inputSize) - first;
    let total = 0;
    for (let k = 0; k < count; k++) {
      window[k] = bicubic((k + first - center + 0.5) * inverseFilterScale);
      total += window[k]!;
    }
    for (let k = 0; k < count; k++) {
      const normalised = total === 0 ? window[k]! : window[k]! / total;
      weights[out * stride + k] = Math.trunc(normalised < 0 ? -0.5 + normalised * ONE : 0.5 + normalised * ONE);
    }
    firstInput[out] = first;
    inputCount[out] = count;
  }
  return { firstInput, inputCount, weights, stride };
}

/** Pillow's `clip8`: drop the fraction bits (arithmetic shift, i.e. floor) and clamp to a byte. */
function clip8(accumulator: number): number {
  const value = accumulator >> PRECISION_BITS;
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

function resampleHorizontal(source: RgbImage, width: number): RgbImage {
  const { firstInput, inputCount, weights, stride } = computeWeights(source.width, width);
  const { height, data } = source;
  const out = new Uint8Array(width * height * CHANNELS);
  for (let y = 0; y < height; y++) {
    const rowStart = y * source.width * CHANNELS;
    for (let x = 0; x < width; x++) {
      let r = ROUNDING_OFFSET;
      let g = ROUNDING_OFFSET;
      let b = ROUNDING_OFFSET;
      const first = firstInput[x]!;
      for (let k = 0; k < inputCount[x]!; k++) {
        const weight = weights[x * stride + k]!;
        const at = rowStart + (first + k) * CHANNELS;
        r += data[at]! * weight;
        g += data[at + 1]! * weight;
        b += data[at + 2]! * weight;
      }
      const to = (y * width + x) * CHANNELS;
      out[to] = clip8(r);
      out[to + 1] = clip8(g);
      out[to + 2] = clip8(b);
    }
  }
  return { width, height, data: out };
}

function resampleVertical(source: RgbImage, height: number): RgbImage {
  const { firstInput, inputCount, weights, stride } = computeWeights(source.height, height);
  const { width, data } = source;
  const rowLength = width * CHANNELS;
  const out = new Uint8Array(height * rowLength);
  for (let y = 0; y < height; y++) {
    const first = firstInput[y]!;
    for (let i = 0; i < rowLength; i++) {
      let sum = ROUNDING_OFFSET;
      for (let k = 0; k < inputCount[y]!; k++) {
        sum += data[(first + k) * rowLength + i]! * weights[y * stride + k]!;
      }
      out[y * rowLength + i] = clip8(sum);
    }
  }
  return { width, height, data: out };
}

function checkImage(img: RgbImage, caller: string): void {
  const { width, height, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`${caller}: image size must be positive integers, got ${width}×${height}`);
  }
  if (data.length !== width * height * CHANNELS) {
    throw new RangeError(`${caller}: a ${width}×${height} RGB image needs ${width * height * CHANNELS} bytes, got ${data.length}`);
  }
}

/**
 * Resizes like Pillow's `Image.resize((width, height), Image.BICUBIC)` on an RGB image, bit for
 * bit: a horizontal pass, then a vertical pass on the uint8 result of the first; a pass whose
 * dimension does not change is skipped (as Pillow does), and an unchanged size returns a copy.
 */
export function resizeBicubic(img: RgbImage, width: number, height: number): RgbImage {
  checkImage(img, 'resizeBicubic');
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resizeBicubic: target size must be positive integers, got ${width}×${height}`);
  }
  let result: RgbImage = img;
  if (width !== img.width) result = resampleHorizontal(result, width);
  if (height !== img.height) result = resampleVertical(result, height);
  return result === img ? { width, height, data: img.data.slice() } : result;
}

/**
 * torchvision `ToTensor` + `Normalize(0.5, 0.5)` in float32, as a table over the 256 byte values:
 * float32(v / 255), then (x − 0.5) / 0.5 rounded to float32.
 */
const NORMALISED_BYTE = Float32Array.from({ length: 256 }, (_, v) => (Math.fround(v / 255) - 0.5) / 0.5);

/** HWC uint8 RGB → `[1, 3, H, W]` float32 in [−1, 1] (channel planes R, G, B). */
export function toModelInput(img: RgbImage): Float32Array {
  checkImage(img, 'toModelInput');
  const planeSize = img.width * img.height;
  const pixels = new Float32Array(CHANNELS * planeSize);
  for (let p = 0; p < planeSize; p++) {
    for (let c = 0; c < CHANNELS; c++) {
      pixels[c * planeSize + p] = NORMALISED_BYTE[img.data[p * CHANNELS + c]!]!;
    }
  }
  return pixels;
}

/**
 * The whole OFA pipeline for one image file: decode (PNG, JPEG, WebP, GIF, BMP), resize to
 * `size`×`size` (aspect ratio not kept, as OFA does), normalise. `resized` is the uint8 image the
 * model input came from.
 */
export async function preprocessImage(
  bytes: Uint8Array,
  size: number,
  label: string,
  options?: DecodeOptions,
): Promise<{ pixels: Float32Array; resized: RgbImage }> {
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(`preprocessImage: size must be a positive integer, got ${size}`);
  }
  const resized = resizeBicubic(await decodeImage(bytes, label, options), size, size);
  return { pixels: toModelInput(resized), resized };
}
