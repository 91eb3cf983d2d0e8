/**
 * PNG → 8-bit RGB with the semantics of Pillow 9.4's `Image.open(f).convert("RGB")`: alpha and
 * tRNS are dropped without compositing, grey is replicated, palette indices beyond the palette
 * read as Pillow's grey ramp, and no gamma, ICC profile or EXIF orientation is applied. Like
 * Pillow, chunk checksums are verified up to the image data and the zlib stream's own checksum
 * guards the image data; the first run of IDAT chunks is the image data, the chunks after it are
 * only skipped (to IEND, which may be missing), and a file cut inside the image data decodes if
 * it holds enough.
 *
 * Our own rather than a library's because inflating must stop at the size the header declares
 * (a 1×1 image whose data inflates to 1 GiB costs nothing here); `pako` does the inflating.
 */
import { ZStream, Z_NO_FLUSH, Z_STREAM_END, zlibInflate, zlibInflateInit } from 'pako';
import { crc32 } from '../io/crc32.js';
import { checkImageSize, ImageDecodeError, indicesToRgb, pillowPalette, type RgbImage } from './errors.js';

const SIGNATURE_LENGTH = 8;
/** Deflate's best ratio is 1032:1 (a 258-byte match in at most 2 bits); zlib adds 6 bytes. */
const DEFLATE_MAX_RATIO = 1032;

/** Samples per pixel and allowed bit depths per IHDR colour type (PNG spec table 11.1). */
const COLOR_TYPES: ReadonlyMap<number, { channels: number; depths: readonly number[] }> = new Map([
  [0, { channels: 1, depths: [1, 2, 4, 8, 16] }],
  [2, { channels: 3, depths: [8, 16] }],
  [3, { channels: 1, depths: [1, 2, 4, 8] }],
  [4, { channels: 2, depths: [8, 16] }],
  [6, { channels: 4, depths: [8, 16] }],
]);
const ColorType = { Gray: 0, Rgb: 2, Palette: 3, GrayAlpha: 4, Rgba: 6 } as const;

/** Adam7 passes as [first column, first row, column step, row step]. */
const ADAM7_PASSES = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;
const NO_INTERLACE = [[0, 0, 1, 1]] as const;

interface PngHeader {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  channels: number;
  interlaced: boolean;
}

interface PngChunks {
  header: PngHeader;
  palette: Uint8Array | undefined;
  /** The first run of consecutive IDAT chunks, concatenated: one zlib stream. */
  imageData: Uint8Array;
}

function readHeader(bytes: Uint8Array, view: DataView, label: string): PngHeader {
  const at = SIGNATURE_LENGTH + 8;
  const width = view.getUint32(at);
  const height = view.getUint32(at + 4);
  const [depth, colorType, compression, filter, interlace] = Array.from(bytes.subarray(at + 8, at + 13)) as number[];
  const colorTypeInfo = COLOR_TYPES.get(colorType!);
  if (colorTypeInfo === undefined) throw new ImageDecodeError(label, `corrupt PNG: colour type ${colorType} does not exist`);
  if (!colorTypeInfo.depths.includes(depth!)) {
    throw new ImageDecodeError(label, `corrupt PNG: bit depth ${depth} is not allowed for colour type ${colorType}`);
  }
  if (compression !== 0 || filter !== 0 || (interlace !== 0 && interlace !== 1)) {
    throw new ImageDecodeError(
      label,
      `corrupt PNG: unknown compression ${compression}, filter ${filter} or interlace ${interlace} method in IHDR`,
    );
  }
  return { width, height, depth: depth!, colorType: colorType!, channels: colorTypeInfo.channels, interlaced: interlace === 1 };
}

/** Walks the chunks: one IHDR first, checksums up to the image data, the image data collected. */
function readChunks(bytes: Uint8Array, label: string): PngChunks {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const typeAt = (offset: number): string => String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
  if (bytes.length < SIGNATURE_LENGTH + 12 + 13 || typeAt(SIGNATURE_LENGTH) !== 'IHDR' || view.getUint32(SIGNATURE_LENGTH) !== 13) {
    throw new ImageDecodeError(label, 'truncated or corrupt PNG: no complete IHDR chunk after the signature');
  }
  let header: PngHeader | undefined;
  let palette: Uint8Array | undefined;
  const imageData: Uint8Array[] = [];
  let imageDataEnded = false;
  for (let offset = SIGNATURE_LENGTH; offset < bytes.length; ) {
    if (offset + 8 > bytes.length) {
      if (imageData.length > 0) break;
      throw new ImageDecodeError(label, `truncated PNG: file ends inside a chunk header at byte ${offset}`);
    }
    const at = offset;
    const type = typeAt(at);
    imageDataEnded ||= imageData.length > 0 && type !== 'IDAT';
    // After the image data Pillow only skips chunks, up to IEND or anything not named like one.
    if (imageDataEnded && (type === 'IEND' || !/^\w{4}$/.test(type))) break;
    const dataLength = view.getUint32(at);
    const chunkEnd = at + 12 + dataLength;
    if (chunkEnd > bytes.length && type === 'IDAT' && !imageDataEnded) {
      // The file ends inside the image data: like Pillow, decode what is there (enough or not).
      imageData.push(bytes.subarray(at + 8, chunkEnd - 4));
      break;
    }
    if (chunkEnd > bytes.length) {
      throw new ImageDecodeError(
        label,
        `truncated PNG: the ${JSON.stringify(type)} chunk at byte ${at} needs ${12 + dataLength} bytes, ` +
          `the file ends after ${bytes.length - at}`,
      );
    }
    offset = chunkEnd;
    if (imageDataEnded) continue;
    const data = bytes.subarray(at + 8, chunkEnd - 4);
    // Pillow verifies the checksums of the chunks it parses before the image data; the image
    // data itself is guarded by the zlib stream's checksum.
    if (imageData.length === 0 && type !== 'IDAT' && crc32(bytes.subarray(at + 4, chunkEnd - 4)) !== view.getUint32(chunkEnd - 4)) {
      throw new ImageDecodeError(label, `corrupt PNG: checksum mismatch in the ${JSON.stringify(type)} chunk at byte ${at}`);
    }
    if (type === 'IHDR') {
      if (header !== undefined) throw new ImageDecodeError(label, `corrupt PNG: a second IHDR chunk at byte ${at}`);
      header = readHeader(bytes, view, label);
    } else if (type === 'PLTE') {
      if (dataLength % 3 !== 0 || dataLength > 256 * 3) {
        throw new ImageDecodeError(label, `corrupt PNG: PLTE chunk at byte ${at} has ${dataLength} bytes, not 3 per entry for up to 256 entries`);
      }
      palette = data;
    } else if (type === 'IDAT') {
      imageData.push(data);
    } else if (type === 'IEND') {
      break;
    }
  }
  if (imageData.length === 0) throw new ImageDecodeError(label, 'truncated or corrupt PNG: no image data (IDAT chunk)');
  return { header: header!, palette, imageData: concatenate(imageData) };
}

function concatenate(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const joined = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}

/** Bytes per scanline of `pixels` pixels, without the filter byte. */
function rowBytes({ channels, depth }: PngHeader, pixels: number): number {
  return Math.ceil((pixels * channels * depth) / 8);
}

/** Each pass's size (one pass, the whole image, without interlacing). */
function passesOf(header: PngHeader): { x0: number; y0: number; dx: number; dy: number; width: number; height: number }[] {
  return (header.interlaced ? ADAM7_PASSES : NO_INTERLACE)
    .map(([x0, y0, dx, dy]) => ({
      x0,
      y0,
      dx,
      dy,
      width: Math.ceil((header.width - x0) / dx),
      height: Math.ceil((header.height - y0) / dy),
    }))
    .filter((pass) => pass.width > 0 && pass.height > 0);
}

/**
 * Inflates exactly `length` bytes of scanlines into a buffer of that size: inflating stops when
 * it is full, so data beyond it is never expanded. A stream that ends (or whose checksum fails)
 * first is corrupt; one that runs out of input first is truncated.
 */
function inflateScanlines(compressed: Uint8Array, length: number, header: PngHeader, label: string): Uint8Array {
  // A file cannot hold an image that needs more than deflate's best ratio allows: refuse the
  // bomb before allocating what its header promises.
  if (compressed.length * DEFLATE_MAX_RATIO + 6 < length) {
    throw new ImageDecodeError(
      label,
      `truncated PNG: ${compressed.length} bytes of image data cannot inflate to the ${length} bytes ` +
        `a ${header.width}×${header.height} image needs`,
    );
  }
  const stream = new ZStream();
  zlibInflateInit(stream);
  stream.input = compressed;
  stream.next_in = 0;
  stream.avail_in = compressed.length;
  stream.output = new Uint8Array(length);
  stream.next_out = 0;
  stream.avail_out = length;
  const status = zlibInflate(stream, Z_NO_FLUSH);
  if (status < 0) throw new ImageDecodeError(label, `corrupt PNG: image data does not inflate (${stream.msg || `zlib status ${status}`})`);
  if (stream.next_out < length) {
    const problem = status === Z_STREAM_END ? 'corrupt PNG: image data ends' : 'truncated PNG: image data holds';
    throw new ImageDecodeError(
      label,
      `${problem} ${stream.next_out} of the ${length} bytes a ${header.width}×${header.height} image needs`,
    );
  }
  return stream.output;
}

function paeth(left: number, up: number, upLeft: number): number {
  const estimate = left + up - upLeft;
  const toLeft = Math.abs(estimate - left);
  const toUp = Math.abs(estimate - up);
  const toUpLeft = Math.abs(estimate - upLeft);
  if (toLeft <= toUp && toLeft <= toUpLeft) return left;
  return toUp <= toUpLeft ? up : upLeft;
}

/** Reverses the per-row filters of one pass in place (`start` is the pass's first filter byte). */
function unfilterPass(scanlines: Uint8Array, start: number, stride: number, rows: number, bytesPerPixel: number, label: string): void {
  for (let row = 0; row < rows; row++) {
    const at = start + row * (stride + 1);
    const filter = scanlines[at]!;
    const line = at + 1;
    const previous = row === 0 ? -1 : line - stride - 1;
    const up = (i: number): number => (previous < 0 ? 0 : scanlines[previous + i]!);
    for (let i = 0; i < stride; i++) {
      const left = i >= bytesPerPixel ? scanlines[line + i - bytesPerPixel]! : 0;
      let predicted: number;
      switch (filter) {
        case 0:
          predicted = 0;
          break;
        case 1:
          predicted = left;
          break;
        case 2:
          predicted = up(i);
          break;
        case 3:
          predicted = (left + up(i)) >> 1;
          break;
        case 4:
          predicted = paeth(left, up(i), i >= bytesPerPixel ? up(i - bytesPerPixel) : 0);
          break;
        default:
          throw new ImageDecodeError(label, `corrupt PNG: unknown filter type ${filter} at the start of a scanline (byte ${at} of the image data)`);
      }
      scanlines[line + i] = (scanlines[line + i]! + predicted) & 0xff;
    }
  }
}

/**
 * The 8-bit value Pillow 9.4 gives a stored grey or colour sample: 1-bit grey opens as mode "1"
 * (0 / 255), 2- and 4-bit grey are scaled by 85 / 17 (unpackers L;2, L;4), 16-bit grey opens as
 * mode "I" whose conversion to RGB clips to 0..255 (so everything above 255 becomes white), and
 * 16-bit colour and grey+alpha keep the high byte (unpackers RGB;16B, RGBA;16B, LA;16B).
 */
function sampleTo8Bit(colorType: number, depth: number): (sample: number) => number {
  switch (depth) {
    case 1:
      return (sample) => sample * 255;
    case 2:
      return (sample) => sample * 85;
    case 4:
      return (sample) => sample * 17;
    case 8:
      return (sample) => sample;
    default:
      return colorType === ColorType.Gray ? (sample) => Math.min(sample, 255) : (sample) => sample >> 8;
  }
}

/** Sample `index` of a row of packed big-endian samples of `depth` bits. */
function sampleAt(scanlines: Uint8Array, line: number, index: number, depth: number): number {
  if (depth === 8) return scanlines[line + index]!;
  if (depth === 16) return (scanlines[line + 2 * index]! << 8) | scanlines[line + 2 * index + 1]!;
  const bit = index * depth;
  return (scanlines[line + (bit >> 3)]! >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
}

export function decodePng(bytes: Uint8Array, label: string, maxPixels: number): RgbImage {
  const { header, palette, imageData } = readChunks(bytes, label);
  const { width, height, depth, colorType, channels } = header;
  checkImageSize(width, height, maxPixels, label);
  const passes = passesOf(header);
  const scanlines = inflateScanlines(
    imageData,
    passes.reduce((total, pass) => total + pass.height * (1 + rowBytes(header, pass.width)), 0),
    header,
    label,
  );

  const isPalette = colorType === ColorType.Palette;
  // Grey (with or without alpha) reads sample 0 three times; colour reads samples 0, 1, 2.
  const sampleOfChannel = channels <= 2 ? [0, 0, 0] : [0, 1, 2];
  const to8Bit = sampleTo8Bit(colorType, depth);
  const indices = isPalette ? new Uint8Array(width * height) : undefined;
  const rgb = isPalette ? undefined : new Uint8Array(width * height * 3);
  const bytesPerPixel = Math.max(1, (channels * depth) >> 3);
  let start = 0;
  for (const pass of passes) {
    const stride = rowBytes(header, pass.width);
    unfilterPass(scanlines, start, stride, pass.height, bytesPerPixel, label);
    for (let row = 0; row < pass.height; row++) {
      const line = start + row * (stride + 1) + 1;
      const y = pass.y0 + row * pass.dy;
      for (let column = 0; column < pass.width; column++) {
        const pixel = y * width + pass.x0 + column * pass.dx;
        if (indices !== undefined) {
          indices[pixel] = sampleAt(scanlines, line, column, depth);
          continue;
        }
        for (let channel = 0; channel < 3; channel++) {
          rgb![pixel * 3 + channel] = to8Bit(sampleAt(scanlines, line, column * channels + sampleOfChannel[channel]!, depth));
        }
      }
    }
    start += pass.height * (stride + 1);
  }
  if (indices !== undefined) return indicesToRgb(indices, pillowPalette(palette ?? new Uint8Array(0), 3, false), width, height);
  return { width, height, data: rgb! };
}
