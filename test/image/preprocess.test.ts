import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { decodeImage, ImageDecodeError, type RgbImage } from '../../src/image/decode.js';
import { preprocessImage, resizeBicubic, toModelInput } from '../../src/image/preprocess.js';
import { concat, encodePng, pngChunk, smallPng, withHeader } from './make-png.js';

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
      const decoded = await decodeImage(bytes, file);
      expect([decoded.width, decoded.height]).toEqual(size);
      const { pixels, resized } = await preprocessImage(bytes, target, file);

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

/** One row of pixels, each given as its samples. */
const row = (...pixels: number[][]): number[][][] => [pixels];
const rgbOf = async (bytes: Uint8Array): Promise<number[]> => Array.from((await decodeImage(bytes, 'test.png')).data);

describe('decodeImage: PNG colour types and bit depths (Pillow convert("RGB") semantics)', () => {
  it('1-bit grayscale is black or white', async () => {
    expect(await rgbOf(encodePng({ colorType: 0, depth: 1, pixels: row([0], [1], [1]) }))).toEqual([0, 0, 0, 255, 255, 255, 255, 255, 255]);
  });

  it('2- and 4-bit grayscale scale by 85 and 17', async () => {
    expect(await rgbOf(encodePng({ colorType: 0, depth: 2, pixels: row([0], [1], [3]) }))).toEqual([0, 0, 0, 85, 85, 85, 255, 255, 255]);
    expect(await rgbOf(encodePng({ colorType: 0, depth: 4, pixels: row([5], [15]) }))).toEqual([85, 85, 85, 255, 255, 255]);
  });

  it('16-bit grayscale clips to 0..255 (Pillow opens it as mode "I")', async () => {
    const pixels = row([0], [200], [255], [256], [0x1234], [65535]);
    expect(await rgbOf(encodePng({ colorType: 0, depth: 16, pixels }))).toEqual(
      [0, 200, 255, 255, 255, 255].flatMap((v) => [v, v, v]),
    );
  });

  it('16-bit colour keeps the high byte of each sample', async () => {
    expect(await rgbOf(encodePng({ colorType: 2, depth: 16, pixels: row([0x1234, 0xabff, 0x00ff]) }))).toEqual([0x12, 0xab, 0x00]);
    expect(await rgbOf(encodePng({ colorType: 6, depth: 16, pixels: row([0x1234, 0xabff, 0x00ff, 0]) }))).toEqual([0x12, 0xab, 0x00]);
    expect(await rgbOf(encodePng({ colorType: 4, depth: 16, pixels: row([0x9876, 0]) }))).toEqual([0x98, 0x98, 0x98]);
  });

  it('drops alpha without compositing', async () => {
    expect(await rgbOf(encodePng({ colorType: 6, depth: 8, pixels: row([10, 20, 30, 0], [40, 50, 60, 128]) }))).toEqual([
      10, 20, 30, 40, 50, 60,
    ]);
    expect(await rgbOf(encodePng({ colorType: 4, depth: 8, pixels: row([77, 0]) }))).toEqual([77, 77, 77]);
  });

  it('ignores tRNS: the transparent colour keeps its value', async () => {
    expect(await rgbOf(encodePng({ colorType: 0, depth: 8, pixels: row([100], [7]), trns: [100] }))).toEqual([100, 100, 100, 7, 7, 7]);
    const rgb16 = encodePng({ colorType: 2, depth: 16, pixels: row([1000, 51000, 300], [65535, 0, 256]), trns: [1000, 51000, 300] });
    expect(await rgbOf(rgb16)).toEqual([3, 199, 1, 255, 0, 1]);
  });

  it('looks palette indices up, ignoring palette alpha', async () => {
    const palette = [
      [255, 0, 0],
      [0, 255, 0],
      [1, 2, 3],
    ];
    const png = encodePng({ colorType: 3, depth: 4, pixels: row([2], [0], [1]), palette, trns: [0, 128] });
    expect(await rgbOf(png)).toEqual([1, 2, 3, 255, 0, 0, 0, 255, 0]);
  });

  it('decodes Adam7-interlaced images like progressive ones', async () => {
    const pixels = Array.from({ length: 11 }, (_, y) => Array.from({ length: 9 }, (_, x) => [x * 20, y * 20, (x * y) % 256]));
    const interlaced = await decodeImage(encodePng({ colorType: 2, depth: 8, pixels, interlace: true }), 'adam7.png');
    expect(interlaced.data).toEqual((await decodeImage(encodePng({ colorType: 2, depth: 8, pixels }), 'plain.png')).data);
    expect(Array.from(interlaced.data.subarray(-3))).toEqual([160, 200, 80]);
  });

  it('accepts bytes after IEND and a missing IEND, as Pillow does', async () => {
    const png = encodePng({ colorType: 2, depth: 8, pixels: row([1, 2, 3]) });
    expect(await rgbOf(concat([png, new TextEncoder().encode('trailing junk')]))).toEqual([1, 2, 3]);
    expect(await rgbOf(png.subarray(0, png.length - 12))).toEqual([1, 2, 3]);
  });
  it('looks indices beyond the palette up in Pillow’s grey ramp', async () => {
    const png = encodePng({ colorType: 3, depth: 8, pixels: row([0], [1], [2], [200]), palette: [[10, 20, 30], [40, 50, 60]] });
    expect(await rgbOf(png)).toEqual([10, 20, 30, 40, 50, 60, 2, 2, 2, 200, 200, 200]);
  });

  it('reads every filter type', async () => {
    const pixels = Array.from({ length: 5 }, (_, y) => Array.from({ length: 6 }, (_, x) => [(x * 37 + y * 11) % 256, (x * y * 5) % 256, 255 - x * 9]));
    const plain = encodePng({ colorType: 2, depth: 8, pixels });
    // Re-filter each row with filter type = row index (None, Sub, Up, Average, Paeth).
    const stride = 6 * 3;
    const raw = pixels.map((line) => line.flat());
    const filtered: number[] = [];
    raw.forEach((line, y) => {
      const up = (i: number): number => (y === 0 ? 0 : raw[y - 1]![i]!);
      const left = (i: number): number => (i >= 3 ? line[i - 3]! : 0);
      const paethOf = (i: number): number => {
        const [a, b, c] = [left(i), up(i), i >= 3 ? up(i - 3) : 0];
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      };
      const predictors = [() => 0, left, up, (i: number) => (left(i) + up(i)) >> 1, paethOf];
      filtered.push(y, ...Array.from({ length: stride }, (_, i) => (line[i]! - predictors[y]!(i) + 256) & 0xff));
    });
    const refiltered = concat([plain.subarray(0, 33), pngChunk('IDAT', deflateSync(new Uint8Array(filtered))), pngChunk('IEND', new Uint8Array(0))]);
    expect(await rgbOf(refiltered)).toEqual(await rgbOf(plain));
  });
});

describe('decodeImage: PNG errors name the file and the problem', () => {
  const imageDataChunks = (png: Uint8Array, ...imageData: Uint8Array[]): Uint8Array =>
    concat([png.subarray(0, 33), ...imageData.map((data) => pngChunk('IDAT', data)), pngChunk('IEND', new Uint8Array(0))]);
  const scanlines = new Uint8Array(8 * (1 + 8 * 3)).fill(1);

  it('rejects a truncated PNG', async () => {
    const png = smallPng();
    // Cut inside the image data: decoded as far as it goes, as Pillow does, which is not far enough.
    await expect(decodeImage(png.subarray(0, 60), 'cut.png')).rejects.toThrow(/^cut\.png: truncated PNG: image data holds 5 of the 200 bytes a 8×8 image needs/);
    // Cut inside a chunk before the image data.
    const withText = concat([png.subarray(0, 33), pngChunk('tEXt', new TextEncoder().encode('Title\0a photo')), png.subarray(33)]);
    await expect(decodeImage(withText.subarray(0, 45), 'cut-text.png')).rejects.toThrow(/^cut-text\.png: truncated PNG: the "tEXt" chunk at byte 33 needs 25 bytes, the file ends after 12/);
    await expect(decodeImage(png.subarray(0, 20), 'cut.png')).rejects.toThrow(/^cut\.png: truncated or corrupt PNG: no complete IHDR/);
    await expect(decodeImage(png.subarray(0, 33), 'header-only.png')).rejects.toThrow(/^header-only\.png: truncated or corrupt PNG: no image data \(IDAT chunk\)/);
  });

  it('checks chunk checksums up to the image data, as Pillow does', async () => {
    const png = smallPng();
    png[20]! ^= 0xff;
    await expect(decodeImage(png, 'flipped.png')).rejects.toThrow(/^flipped\.png: corrupt PNG: checksum mismatch in the "IHDR" chunk at byte 8/);
    // The image data is guarded by zlib's own checksum: a damaged IDAT checksum alone is ignored, by Pillow too.
    const idatChecksum = smallPng();
    idatChecksum[idatChecksum.length - 13]! ^= 0xff;
    expect((await decodeImage(idatChecksum, 'idat-crc.png')).data[2]).toBe(9);
  });

  it('verifies the zlib checksum of the image data when it is there', async () => {
    const compressed = deflateSync(scanlines);
    const badChecksum = compressed.slice();
    badChecksum[badChecksum.length - 1]! ^= 1;
    await expect(decodeImage(imageDataChunks(smallPng(), badChecksum), 'adler.png')).rejects.toThrow(
      /^adler\.png: corrupt PNG: image data does not inflate \(incorrect data check\)/,
    );
    // Only the checksum missing: all pixels are there, and Pillow decodes it too.
    expect((await decodeImage(imageDataChunks(smallPng(), compressed.subarray(0, compressed.length - 4)), 'no-adler.png')).data[0]).toBe(1);
  });

  it('rejects image data that does not inflate or is cut short', async () => {
    await expect(decodeImage(imageDataChunks(smallPng(), new Uint8Array([0x78, 0x9c, 0xff, 0xff, 0xff])), 'zlib.png')).rejects.toThrow(
      /^zlib\.png: corrupt PNG: image data does not inflate/,
    );
    await expect(decodeImage(imageDataChunks(smallPng(), deflateSync(scanlines).subarray(0, 6)), 'short.png')).rejects.toThrow(
      /^short\.png: truncated PNG: image data holds \d+ of the 200 bytes a 8×8 image needs/,
    );
    await expect(decodeImage(imageDataChunks(smallPng(), deflateSync(scanlines.subarray(0, 100))), 'ends.png')).rejects.toThrow(
      /^ends\.png: corrupt PNG: image data ends 100 of the 200 bytes/,
    );
  });

  it('rejects an unknown filter type, naming where', async () => {
    const badFilter = scanlines.slice();
    badFilter[25] = 7;
    await expect(decodeImage(imageDataChunks(smallPng(), deflateSync(badFilter)), 'filter.png')).rejects.toThrow(
      /^filter\.png: corrupt PNG: unknown filter type 7 at the start of a scanline \(byte 25 of the image data\)/,
    );
  });

  it('takes the first run of IDAT chunks as the image data, split anywhere', async () => {
    const compressed = deflateSync(scanlines);
    const split = imageDataChunks(smallPng(), compressed.subarray(0, 5), compressed.subarray(5, 6), compressed.subarray(6));
    expect((await decodeImage(split, 'split.png')).data[0]).toBe(1);
  });

  it('rejects an invalid PNG header', async () => {
    const png = withHeader(smallPng(), (header) => header.setUint8(8, 3));
    await expect(decodeImage(png, 'depth.png')).rejects.toThrow(/^depth\.png: corrupt PNG: bit depth 3 is not allowed for colour type 2/);
  });

  it('rejects a second IHDR (a 30000×30000 one used to slip past the pixel limit)', async () => {
    const second = withHeader(smallPng(), (header) => {
      header.setUint32(0, 30_000);
      header.setUint32(4, 30_000);
    }).subarray(8, 33);
    const png = concat([smallPng().subarray(0, 33), second, smallPng().subarray(33)]);
    await expect(decodeImage(png, 'two-headers.png')).rejects.toThrow(/^two-headers\.png: corrupt PNG: a second IHDR chunk at byte 33/);
  });

  it('rejects zero-size and oversized images before decoding them', async () => {
    const zero = withHeader(smallPng(), (header) => header.setUint32(0, 0));
    await expect(decodeImage(zero, 'zero.png')).rejects.toThrow(/^zero\.png: image has zero size \(0×8\)/);
    const bomb = withHeader(smallPng(), (header) => {
      header.setUint32(0, 100_000);
      header.setUint32(4, 100_000);
    });
    await expect(decodeImage(bomb, 'bomb.png')).rejects.toThrow(
      /^bomb\.png: image is 100000×100000 \(10000 megapixels\), more than the limit of 50 megapixels \(maxPixels, --max-pixels\)/,
    );
    await expect(decodeImage(smallPng(), 'limited.png', { maxPixels: 63 })).rejects.toThrow(/^limited\.png: image is 8×8 \(64 pixels\), more than the limit of 63 pixels/);
    expect((await decodeImage(smallPng(), 'limited.png', { maxPixels: 64 })).width).toBe(8);
  });

  it('refuses image data too small for the declared size before allocating it (12000×12000 from a few bytes)', async () => {
    const header = withHeader(smallPng(), (view) => {
      view.setUint32(0, 6000);
      view.setUint32(4, 6000);
    });
    await expect(decodeImage(header, 'tiny-data.png')).rejects.toThrow(
      /^tiny-data\.png: truncated PNG: \d+ bytes of image data cannot inflate to the 108006000 bytes a 6000×6000 image needs/,
    );
  });

  it('stops inflating at the size the header declares (1×1 whose data inflates to 64 MiB)', async () => {
    const onePixel = encodePng({ colorType: 2, depth: 8, pixels: [[[1, 2, 3]]] });
    const bomb = imageDataChunks(onePixel, deflateSync(new Uint8Array(64 * 2 ** 20)));
    const before = process.memoryUsage().arrayBuffers;
    expect(Array.from((await decodeImage(bomb, 'bomb.png')).data)).toEqual([0, 0, 0]);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 2 ** 20);
  });
});

describe('decodeImage: formats', () => {
  it('throws ImageDecodeError carrying the label', async () => {
    const caught = await decodeImage(new Uint8Array([1, 2, 3]), 'photos/cat.png').catch((error: unknown) => error);
    expect(caught).toBeInstanceOf(ImageDecodeError);
    expect((caught as ImageDecodeError).label).toBe('photos/cat.png');
  });

  it('rejects data that is not an image, naming known other formats', async () => {
    await expect(decodeImage(new TextEncoder().encode('hello, world'), 'notes.txt')).rejects.toThrow(
      /^notes\.txt: unrecognised format \(first bytes 68 65 6c 6c 6f 2c 20 77\); expected PNG, JPEG, WebP, GIF or BMP$/,
    );
    await expect(decodeImage(new Uint8Array([0x49, 0x49, 0x2a, 0, 8, 0, 0, 0]), 'scan.tif')).rejects.toThrow(/^scan\.tif: TIFF images are not supported/);
    await expect(decodeImage(new Uint8Array(0), 'empty.png')).rejects.toThrow(/^empty\.png: empty file/);
  });

  it('finds the format in the bytes, whatever the name says', async () => {
    expect((await decodeImage(smallPng(), 'actually-a-png.jpg')).width).toBe(8);
  });

  it('refuses a pixel limit that is not a positive integer', async () => {
    await expect(decodeImage(smallPng(), 'a.png', { maxPixels: 0 })).rejects.toThrow(/maxPixels must be a positive integer, got 0/);
  });
});
