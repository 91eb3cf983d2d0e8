/**
 * PNG files written for tests: every colour type, bit depth and interlacing, with valid checksums,
 * so that tests and fuzz seeds can make exactly the file (or the damage) they need.
 */
import { constants as zlibConstants, deflateRawSync, deflateSync } from 'node:zlib';
import { crc32 } from '../../src/io/crc32.js';

export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const chunk = new Uint8Array(12 + data.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  chunk.set(new TextEncoder().encode(type), 4);
  chunk.set(data, 8);
  view.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
  return chunk;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Packs samples MSB-first at `depth` bits (16-bit big-endian), as PNG scanlines store them. */
function packSamples(samples: readonly number[], depth: number): number[] {
  if (depth === 16) return samples.flatMap((s) => [s >> 8, s & 0xff]);
  if (depth === 8) return [...samples];
  const bytes: number[] = [];
  for (let i = 0; i < samples.length; i += 8 / depth) {
    let byte = 0;
    for (let j = 0; j < 8 / depth; j++) byte = (byte << depth) | (samples[i + j] ?? 0);
    bytes.push(byte);
  }
  return bytes;
}

/** Adam7 passes as [first column, first row, column step, row step], written out apart from the decoder's on purpose. */
const ADAM7_PASSES = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

export interface PngSpec {
  colorType: 0 | 2 | 3 | 4 | 6;
  depth: 1 | 2 | 4 | 8 | 16;
  /** pixels[y][x] = the samples of one pixel (1 to 4 of them). */
  pixels: number[][][];
  palette?: number[][];
  trns?: number[];
  interlace?: boolean;
}

export function encodePng({ colorType, depth, pixels, palette, trns, interlace = false }: PngSpec): Uint8Array {
  const height = pixels.length;
  const width = pixels[0]!.length;
  const scanlines: number[] = [];
  const passes = interlace ? ADAM7_PASSES : ([[0, 0, 1, 1]] as const);
  for (const [x0, y0, dx, dy] of passes) {
    for (let y = y0; y < height; y += dy) {
      const samples: number[] = [];
      for (let x = x0; x < width; x += dx) samples.push(...pixels[y]![x]!);
      if (samples.length > 0) scanlines.push(0, ...packSamples(samples, depth));
    }
  }
  const header = new Uint8Array(13);
  new DataView(header.buffer).setUint32(0, width);
  new DataView(header.buffer).setUint32(4, height);
  header.set([depth, colorType, 0, 0, interlace ? 1 : 0], 8);
  const chunks = [pngChunk('IHDR', header)];
  if (palette) chunks.push(pngChunk('PLTE', new Uint8Array(palette.flat())));
  if (trns) chunks.push(pngChunk('tRNS', new Uint8Array(colorType === 3 ? trns : packSamples(trns, 16))));
  chunks.push(pngChunk('IDAT', deflateSync(new Uint8Array(scanlines))), pngChunk('IEND', new Uint8Array(0)));
  return concat([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), ...chunks]);
}

export const smallPng = (): Uint8Array =>
  encodePng({ colorType: 2, depth: 8, pixels: Array.from({ length: 8 }, (_, y) => Array.from({ length: 8 }, (_, x) => [x, y, 9])) });

/** A copy of `png` with its IHDR fields changed by `edit` (and the chunk checksum redone). */
export function withHeader(png: Uint8Array, edit: (header: DataView) => void): Uint8Array {
  const header = png.slice(16, 29);
  edit(new DataView(header.buffer));
  const edited = png.slice();
  edited.set(pngChunk('IHDR', header), 8);
  return edited;
}

const MIB = 2 ** 20;

/**
 * A zlib stream that inflates to `mebibytes` MiB of zeros without ever holding them: one
 * compressed MiB ends in a full flush (byte-aligned, no back references), so it can be repeated.
 */
export function zerosZlibStream(mebibytes: number): Uint8Array {
  const block = deflateRawSync(new Uint8Array(MIB), { finishFlush: zlibConstants.Z_FULL_FLUSH });
  const stream = new Uint8Array(2 + block.length * mebibytes + 2 + 4);
  stream.set([0x78, 0x9c]);
  for (let i = 0; i < mebibytes; i++) stream.set(block, 2 + i * block.length);
  const end = 2 + block.length * mebibytes;
  // An empty final block with fixed codes, then Adler-32 of the zeros: a = 1, b = length mod 65521.
  stream.set([0x03, 0x00], end);
  new DataView(stream.buffer).setUint32(end + 2, ((((mebibytes * MIB) % 65521) << 16) | 1) >>> 0);
  return stream;
}
