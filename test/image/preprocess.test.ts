import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import jpeg from 'jpeg-js';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { decodeImage, ImageDecodeError, type RgbImage } from '../../src/image/decode.js';
import { preprocessImage, resizeBicubic, toModelInput } from '../../src/image/preprocess.js';

const FIXTURES = new URL('../fixtures/preprocess/', import.meta.url);

interface GoldenCase {
  file: string;
  mode: string;
  size: [number, number];
  target: number;
}

describe('preprocessImage: golden outputs of OFA’s Pillow 9.4 pipeline', async () => {
  const manifest = JSON.parse(await readFile(new URL('manifest.json', FIXTURES), 'utf8')) as { cases: GoldenCase[] };

  it.each(manifest.cases)('$file ($mode, $size → $target)', async ({ file, size, target }) => {
    const name = file.replace(/\.png$/, '');
    const expected = await SafetensorsFile.open(fileURLToPath(new URL('expected.safetensors', FIXTURES)));
    try {
      expect(expected.info(`${name}.resized_uint8`).shape).toEqual([target, target, 3]);
      expect(expected.info(`${name}.pixels`).shape).toEqual([1, 3, target, target]);
      const expectedResized = await expected.readBytes(`${name}.resized_uint8`);
      const expectedPixels = await expected.readFloat32(`${name}.pixels`);

      const bytes = new Uint8Array(await readFile(new URL(file, FIXTURES)));
      const decoded = decodeImage(bytes, file);
      expect([decoded.width, decoded.height]).toEqual(size);
      const { pixels, resized } = preprocessImage(bytes, target, file);

      expect(resized.width).toBe(target);
      expect(resized.height).toBe(target);
      let differingBytes = 0;
      for (let i = 0; i < expectedResized.length; i++) if (resized.data[i] !== expectedResized[i]) differingBytes++;
      expect(differingBytes).toBe(0);

      expect(pixels.length).toBe(3 * target * target);
      let maxError = 0;
      for (let i = 0; i < expectedPixels.length; i++) maxError = Math.max(maxError, Math.abs(pixels[i]! - expectedPixels[i]!));
      expect(maxError).toBeLessThanOrEqual(1e-6);
    } finally {
      await expected.close();
    }
  });
});

/** 4×3 test pattern with hard edges in the blue channel (so the bicubic overshoot gets clipped). */
function pattern4x3(): RgbImage {
  const data = new Uint8Array(4 * 3 * 3);
  for (let y = 0; y < 3; y++) {
    for (let x = 0; x < 4; x++) {
      data.set([(x * 40 + y * 7) % 256, (x * 13 + y * 50) % 256, (x + y) % 2 ? 255 : 0], (y * 4 + x) * 3);
    }
  }
  return { width: 4, height: 3, data };
}

describe('resizeBicubic (expected bytes from Pillow 9.4 `Image.resize(size, BICUBIC)`)', () => {
  it('upscales both dimensions', () => {
    expect(Array.from(resizeBicubic(pattern4x3(), 7, 5).data)).toEqual([
      0, 0, 0, 10, 0, 81, 36, 8, 255, 59, 16, 128, 82, 23, 0, 108, 32, 174, 122, 36, 255, 1, 15, 101, 13, 18, 119, 39,
      27, 153, 62, 35, 128, 85, 42, 102, 111, 51, 136, 125, 55, 154, 4, 49, 255, 18, 53, 168, 44, 62, 4, 67, 70, 128,
      90, 77, 251, 116, 86, 87, 130, 90, 0, 9, 84, 101, 23, 88, 119, 49, 97, 153, 72, 105, 128, 95, 112, 102, 121, 121,
      136, 135, 125, 154, 12, 103, 0, 26, 107, 81, 52, 116, 255, 75, 124, 128, 98, 131, 0, 124, 140, 174, 138, 144, 255,
    ]);
  });

  it('downscales with the widened (antialiasing) kernel', () => {
    expect(Array.from(resizeBicubic(pattern4x3(), 2, 1).data)).toEqual([30, 58, 123, 104, 81, 132]);
  });

  it('skips the horizontal pass when the width is unchanged', () => {
    expect(Array.from(resizeBicubic(pattern4x3(), 4, 6).data)).toEqual([
      0, 0, 0, 39, 9, 255, 79, 22, 0, 119, 35, 255, 1, 8, 54, 41, 21, 201, 81, 34, 54, 121, 47, 201, 5, 35, 216, 45, 48,
      39, 85, 61, 216, 125, 74, 39, 9, 65, 216, 49, 78, 39, 89, 91, 216, 129, 104, 39, 13, 92, 54, 53, 105, 201, 93, 118,
      54, 133, 131, 201, 15, 104, 0, 55, 117, 255, 95, 130, 0, 135, 143, 255,
    ]);
  });

  it('returns an independent copy when the size is unchanged', () => {
    const source = pattern4x3();
    const copy = resizeBicubic(source, 4, 3);
    expect(copy.data).toEqual(source.data);
    expect(copy.data).not.toBe(source.data);
  });

  it('rejects bad sizes and inconsistent images', () => {
    expect(() => resizeBicubic(pattern4x3(), 0, 5)).toThrow(/target size must be positive integers, got 0×5/);
    expect(() => resizeBicubic(pattern4x3(), 2.5, 5)).toThrow(RangeError);
    expect(() => resizeBicubic({ width: 4, height: 3, data: new Uint8Array(5) }, 2, 2)).toThrow(
      /a 4×3 RGB image needs 36 bytes, got 5/,
    );
  });
});

describe('toModelInput', () => {
  it('maps bytes to float32 (v/255 − 0.5)/0.5 in CHW planes', () => {
    const img: RgbImage = { width: 2, height: 1, data: new Uint8Array([0, 255, 128, 1, 2, 3]) };
    const pixels = toModelInput(img);
    const expected = [0, 1, 255, 2, 128, 3].map((v) => Math.fround((Math.fround(v / 255) - 0.5) / 0.5));
    expect(Array.from(pixels)).toEqual(expected);
    expect(pixels[0]).toBe(-1);
    expect(pixels[1]).toBe(Math.fround(1 / 255 * 2 - 1));
  });
});

// ---------------------------------------------------------------------------------------------
// PNG variants, written here so that every colour type and bit depth is covered. The expected
// RGB follows Pillow 9.4's `convert("RGB")`, checked against Pillow on the same files.

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const chunk = new Uint8Array(12 + data.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  chunk.set(new TextEncoder().encode(type), 4);
  chunk.set(data, 8);
  view.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
  return chunk;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
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

const ADAM7_PASSES = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

interface PngSpec {
  colorType: 0 | 2 | 3 | 4 | 6;
  depth: 1 | 2 | 4 | 8 | 16;
  /** pixels[y][x] = the samples of one pixel (1 to 4 of them). */
  pixels: number[][][];
  palette?: number[][];
  trns?: number[];
  interlace?: boolean;
}

function encodePng({ colorType, depth, pixels, palette, trns, interlace = false }: PngSpec): Uint8Array {
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

/** One row of pixels, each given as its samples. */
const row = (...pixels: number[][]): number[][][] => [pixels];
const rgbOf = (bytes: Uint8Array): number[] => Array.from(decodeImage(bytes, 'test.png').data);

describe('decodeImage: PNG colour types and bit depths (Pillow convert("RGB") semantics)', () => {
  it('1-bit grayscale is black or white', () => {
    expect(rgbOf(encodePng({ colorType: 0, depth: 1, pixels: row([0], [1], [1]) }))).toEqual([0, 0, 0, 255, 255, 255, 255, 255, 255]);
  });

  it('2- and 4-bit grayscale scale by 85 and 17', () => {
    expect(rgbOf(encodePng({ colorType: 0, depth: 2, pixels: row([0], [1], [3]) }))).toEqual([0, 0, 0, 85, 85, 85, 255, 255, 255]);
    expect(rgbOf(encodePng({ colorType: 0, depth: 4, pixels: row([5], [15]) }))).toEqual([85, 85, 85, 255, 255, 255]);
  });

  it('16-bit grayscale clips to 0..255 (Pillow opens it as mode "I")', () => {
    const pixels = row([0], [200], [255], [256], [0x1234], [65535]);
    expect(rgbOf(encodePng({ colorType: 0, depth: 16, pixels }))).toEqual(
      [0, 200, 255, 255, 255, 255].flatMap((v) => [v, v, v]),
    );
  });

  it('16-bit colour keeps the high byte of each sample', () => {
    expect(rgbOf(encodePng({ colorType: 2, depth: 16, pixels: row([0x1234, 0xabff, 0x00ff]) }))).toEqual([0x12, 0xab, 0x00]);
    expect(rgbOf(encodePng({ colorType: 6, depth: 16, pixels: row([0x1234, 0xabff, 0x00ff, 0]) }))).toEqual([0x12, 0xab, 0x00]);
    expect(rgbOf(encodePng({ colorType: 4, depth: 16, pixels: row([0x9876, 0]) }))).toEqual([0x98, 0x98, 0x98]);
  });

  it('drops alpha without compositing', () => {
    expect(rgbOf(encodePng({ colorType: 6, depth: 8, pixels: row([10, 20, 30, 0], [40, 50, 60, 128]) }))).toEqual([
      10, 20, 30, 40, 50, 60,
    ]);
    expect(rgbOf(encodePng({ colorType: 4, depth: 8, pixels: row([77, 0]) }))).toEqual([77, 77, 77]);
  });

  it('ignores tRNS: the transparent colour keeps its value', () => {
    expect(rgbOf(encodePng({ colorType: 0, depth: 8, pixels: row([100], [7]), trns: [100] }))).toEqual([100, 100, 100, 7, 7, 7]);
    const rgb16 = encodePng({ colorType: 2, depth: 16, pixels: row([1000, 51000, 300], [65535, 0, 256]), trns: [1000, 51000, 300] });
    expect(rgbOf(rgb16)).toEqual([3, 199, 1, 255, 0, 1]);
  });

  it('looks palette indices up, ignoring palette alpha', () => {
    const palette = [
      [255, 0, 0],
      [0, 255, 0],
      [1, 2, 3],
    ];
    const png = encodePng({ colorType: 3, depth: 4, pixels: row([2], [0], [1]), palette, trns: [0, 128] });
    expect(rgbOf(png)).toEqual([1, 2, 3, 255, 0, 0, 0, 255, 0]);
  });

  it('decodes Adam7-interlaced images like progressive ones', () => {
    const pixels = Array.from({ length: 11 }, (_, y) => Array.from({ length: 9 }, (_, x) => [x * 20, y * 20, (x * y) % 256]));
    const interlaced = decodeImage(encodePng({ colorType: 2, depth: 8, pixels, interlace: true }), 'adam7.png');
    expect(interlaced.data).toEqual(decodeImage(encodePng({ colorType: 2, depth: 8, pixels }), 'plain.png').data);
    expect(Array.from(interlaced.data.subarray(-3))).toEqual([160, 200, 80]);
  });

  it('accepts bytes after IEND and a missing IEND, as Pillow does', () => {
    const png = encodePng({ colorType: 2, depth: 8, pixels: row([1, 2, 3]) });
    expect(rgbOf(concat([png, new TextEncoder().encode('trailing junk')]))).toEqual([1, 2, 3]);
    expect(rgbOf(png.subarray(0, png.length - 12))).toEqual([1, 2, 3]);
  });
});

const smallPng = (): Uint8Array =>
  encodePng({ colorType: 2, depth: 8, pixels: Array.from({ length: 8 }, (_, y) => Array.from({ length: 8 }, (_, x) => [x, y, 9])) });

/** A copy of `png` with its IHDR fields changed by `edit` (and the chunk checksum redone). */
function withHeader(png: Uint8Array, edit: (header: DataView) => void): Uint8Array {
  const header = png.slice(16, 29);
  edit(new DataView(header.buffer));
  const edited = png.slice();
  edited.set(pngChunk('IHDR', header), 8);
  return edited;
}

describe('decodeImage: errors name the file and the problem', () => {
  it('rejects a truncated PNG', () => {
    const png = smallPng();
    expect(() => decodeImage(png.subarray(0, 60), 'cut.png')).toThrow(/^cut\.png: truncated PNG: the "IDAT" chunk/);
    expect(() => decodeImage(png.subarray(0, 20), 'cut.png')).toThrow(/^cut\.png: truncated or corrupt PNG: no complete IHDR/);
  });

  it('rejects a PNG whose checksum does not match', () => {
    const png = smallPng();
    png[45]! ^= 0xff;
    expect(() => decodeImage(png, 'flipped.png')).toThrow(/flipped\.png: corrupt PNG: checksum mismatch in the "IDAT" chunk/);
  });

  it('rejects image data that does not inflate or is cut short', () => {
    const png = smallPng();
    const withImageData = (imageData: Uint8Array): Uint8Array =>
      concat([png.subarray(0, 33), pngChunk('IDAT', imageData), pngChunk('IEND', new Uint8Array(0))]);
    expect(() => decodeImage(withImageData(new Uint8Array([0x78, 0x9c, 0xff, 0xff, 0xff])), 'zlib.png')).toThrow(
      /^zlib\.png: corrupt PNG: image data does not inflate/,
    );
    const scanlines = deflateSync(new Uint8Array(8 * (1 + 8 * 3)).fill(1));
    expect(() => decodeImage(withImageData(scanlines.subarray(0, 6)), 'short.png')).toThrow(
      /^short\.png: truncated PNG: image data holds \d+ of the 200 bytes a 8×8 image needs/,
    );
    // Only the stream's checksum missing: all pixels are there, and Pillow decodes it too.
    expect(decodeImage(withImageData(scanlines.subarray(0, scanlines.length - 4)), 'adler.png').data[0]).toBe(1);
  });

  it('rejects an invalid PNG header', () => {
    const png = withHeader(smallPng(), (header) => header.setUint8(8, 3));
    expect(() => decodeImage(png, 'depth.png')).toThrow(/depth\.png: corrupt PNG: bit depth 3 is not allowed for colour type 2/);
  });

  it('rejects zero-size and oversized images before decoding them', () => {
    const zero = withHeader(smallPng(), (header) => header.setUint32(0, 0));
    expect(() => decodeImage(zero, 'zero.png')).toThrow(/zero\.png: image has zero size \(0×8\)/);
    const bomb = withHeader(smallPng(), (header) => {
      header.setUint32(0, 100_000);
      header.setUint32(4, 100_000);
    });
    expect(() => decodeImage(bomb, 'bomb.png')).toThrow(/bomb\.png: image is 100000×100000, more than the 50 megapixels/);
  });

  it('throws ImageDecodeError carrying the label', () => {
    let caught: unknown;
    try {
      decodeImage(new Uint8Array([1, 2, 3]), 'photos/cat.png');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ImageDecodeError);
    expect((caught as ImageDecodeError).label).toBe('photos/cat.png');
  });

  it('rejects data that is not an image, naming known other formats', () => {
    expect(() => decodeImage(new TextEncoder().encode('hello, world'), 'notes.txt')).toThrow(
      /^notes\.txt: unrecognised format \(first bytes 68 65 6c 6c 6f 2c 20 77\); expected PNG or JPEG$/,
    );
    expect(() => decodeImage(new TextEncoder().encode('GIF89a\x01\x00'), 'anim.gif')).toThrow(/anim\.gif: GIF images are not supported/);
    expect(() => decodeImage(new Uint8Array(0), 'empty.png')).toThrow(/empty\.png: empty file/);
  });
});

/** A smooth 40×24 gradient as RGBA, for jpeg-js's encoder. */
function gradientRgba(width: number, height: number): Uint8Array {
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      rgba.set([x * 6, y * 10, 128 + Math.round(60 * Math.sin((x + y) / 6)), 255], (y * width + x) * 4);
    }
  }
  return rgba;
}

describe('decodeImage: JPEG', () => {
  const width = 40;
  const height = 24;
  const rgba = gradientRgba(width, height);
  const encoded = new Uint8Array(jpeg.encode({ width, height, data: rgba }, 100).data);

  it('round-trips a quality-100 JPEG within the loss of the compression', () => {
    const image = decodeImage(encoded, 'gradient.jpg');
    expect([image.width, image.height]).toEqual([width, height]);
    let maxError = 0;
    let totalError = 0;
    for (let p = 0; p < width * height; p++) {
      for (let c = 0; c < 3; c++) {
        const error = Math.abs(image.data[p * 3 + c]! - rgba[p * 4 + c]!);
        maxError = Math.max(maxError, error);
        totalError += error;
      }
    }
    // Quantisation at quality 100 and 8-bit YCbCr rounding: measured max 3, mean 0.57.
    expect(maxError).toBeLessThanOrEqual(4);
    expect(totalError / (width * height * 3)).toBeLessThan(1);
  });

  it('detects JPEG by magic bytes, whatever the label says', () => {
    expect(decodeImage(encoded, 'actually-a-jpeg.png').width).toBe(width);
  });

  it('rejects a truncated JPEG', () => {
    expect(() => decodeImage(encoded.subarray(0, encoded.length - 2), 'cut.jpg')).toThrow(
      /^cut\.jpg: truncated JPEG: no end-of-image marker/,
    );
    expect(() => decodeImage(encoded.subarray(0, 100), 'header.jpg')).toThrow(
      /^header\.jpg: truncated JPEG: the file ends before the frame header/,
    );
  });

  it('rejects corrupt JPEG data', () => {
    const corrupt = encoded.slice();
    corrupt.fill(0xff, encoded.length - 200, encoded.length - 150);
    expect(() => decodeImage(corrupt, 'bad.jpg')).toThrow(/^bad\.jpg: corrupt or unsupported JPEG/);
  });

  it('rejects a JPEG with a zero-size frame', () => {
    const zero = encoded.slice();
    const sof = zero.findIndex((byte, i) => byte === 0xff && zero[i + 1] === 0xc0);
    zero.set([0, 0], sof + 5);
    expect(() => decodeImage(zero, 'zero.jpg')).toThrow(/zero\.jpg: image has zero size \(40×0\)/);
  });
});
