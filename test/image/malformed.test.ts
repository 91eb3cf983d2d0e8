/**
 * Malformed JPEG, WebP, GIF and BMP files (the PNG ones are in preprocess.test.ts): each is
 * refused with an ImageDecodeError naming the file, the part and the problem, before anything
 * the size of the declared image is allocated. Several come from the fuzz findings.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { decodeImage, ImageDecodeError } from '../../src/image/decode.js';

const GOLDEN = new URL('../fixtures/preprocess-jpeg/', import.meta.url);
const fixture = async (name: string): Promise<Uint8Array> => new Uint8Array(await readFile(new URL(name, GOLDEN)));

/** Offset of the first `0xFF marker` in a JPEG. */
const markerAt = (jpeg: Uint8Array, marker: number): number => jpeg.findIndex((byte, i) => byte === 0xff && jpeg[i + 1] === marker);

async function refusal(bytes: Uint8Array, label: string): Promise<string> {
  const error = await decodeImage(bytes, label).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(ImageDecodeError);
  return (error as ImageDecodeError).message;
}

describe('JPEG', () => {
  it('refuses a 3.6 KB JPEG declaring 7000×7000 before decoding it', async () => {
    const jpeg = await fixture('edges-97x61-420.jpg');
    const sof = markerAt(jpeg, 0xc0);
    new DataView(jpeg.buffer).setUint16(sof + 5, 7000);
    new DataView(jpeg.buffer).setUint16(sof + 7, 7000);
    expect(jpeg.length).toBeLessThan(4000);
    expect(await refusal(jpeg, 'bomb.jpg')).toMatch(
      /^bomb\.jpg: corrupt JPEG: \d+ bytes of image data are too few for the 1149313 blocks of a 7000×7000 image \(at least 143665 bytes\)$/,
    );
  });

  it('refuses sizes over the pixel limit and zero sizes from the frame header', async () => {
    const jpeg = await fixture('edges-97x61-420.jpg');
    const sof = markerAt(jpeg, 0xc0);
    const sized = (width: number, height: number): Uint8Array => {
      const copy = jpeg.slice();
      new DataView(copy.buffer).setUint16(sof + 5, height);
      new DataView(copy.buffer).setUint16(sof + 7, width);
      return copy;
    };
    expect(await refusal(sized(65535, 65535), 'huge.jpg')).toMatch(/^huge\.jpg: image is 65535×65535 \(4294\.8 megapixels\), more than the limit/);
    expect(await refusal(sized(97, 0), 'zero.jpg')).toMatch(/^zero\.jpg: image has zero size \(97×0\)$/);
    await expect(decodeImage(jpeg, 'limited.jpg', { maxPixels: 97 * 61 - 1 })).rejects.toThrow(/^limited\.jpg: image is 97×61 /);
  });

  it('refuses a JPEG without its scan (it used to decode to flat grey)', async () => {
    const jpeg = await fixture('photo-q75-422.jpg');
    const sos = markerAt(jpeg, 0xda);
    const noScan = new Uint8Array([...jpeg.subarray(0, sos), 0xff, 0xd9]);
    expect(await refusal(noScan, 'no-scan.jpg')).toBe(
      `no-scan.jpg: corrupt JPEG: end-of-image marker at byte ${sos} before any image data (no SOS scan)`,
    );
  });

  it('refuses truncated files, naming what is missing', async () => {
    const jpeg = await fixture('photo-q75-422.jpg');
    const dht = markerAt(jpeg, 0xc4);
    expect(await refusal(jpeg.subarray(0, dht + 10), 'cut.jpg')).toMatch(/^cut\.jpg: truncated JPEG: the 0xFFC4 segment at byte \d+ needs \d+ bytes, the file ends after 10$/);
    expect(await refusal(jpeg.subarray(0, markerAt(jpeg, 0xda)), 'no-data.jpg')).toBe('no-data.jpg: truncated JPEG: the file ends before the image data (SOS)');
    expect(await refusal(jpeg.subarray(0, 3), 'soi.jpg')).toBe('soi.jpg: truncated JPEG: the file ends before the frame header (SOF)');
  });

  it('decodes, as Pillow does, a file whose rows are all there whatever follows them', async () => {
    const jpeg = await fixture('photo-q75-422.jpg');
    const intact = await decodeImage(jpeg, 'intact.jpg');
    const withoutEnd = jpeg.subarray(0, jpeg.length - 2);
    // Pillow 9.4 decodes these three (and refuses the file without its last 10 bytes).
    for (const tail of [[0xff, 0xe3, 0x40, 0x00, 1, 2, 3], [0, 0, 0, 0, 0, 0], [0xff, 0xd0]]) {
      expect((await decodeImage(new Uint8Array([...withoutEnd, ...tail]), 'tail.jpg')).data).toEqual(intact.data);
    }
    expect(await refusal(jpeg.subarray(0, jpeg.length - 10), 'cut.jpg')).toBe('cut.jpg: truncated JPEG: the file ends before the last row of the image');
  });

  it('names unsupported frames', async () => {
    const jpeg = await fixture('edges-97x61-420.jpg');
    const lossless = jpeg.slice();
    lossless[markerAt(jpeg, 0xc0) + 1] = 0xc3;
    expect(await refusal(lossless, 'lossless.jpg')).toMatch(/^lossless\.jpg: unsupported JPEG: frame type 0xFFC3 at byte \d+ \(lossless or hierarchical\)/);
    const twelveBit = jpeg.slice();
    twelveBit[markerAt(jpeg, 0xc0) + 4] = 12;
    expect(await refusal(twelveBit, '12bit.jpg')).toMatch(/^12bit\.jpg: unsupported JPEG: 12-bit samples/);
  });

  it('turns libjpeg-turbo’s fatal errors into errors naming the part, and decodes the next file', async () => {
    const jpeg = await fixture('edges-97x61-420.jpg');
    const badTable = jpeg.slice();
    // The first quantisation table's precision/id byte: table 7 does not exist.
    badTable[markerAt(jpeg, 0xdb) + 4] = 7;
    expect(await refusal(badTable, 'table.jpg')).toBe('table.jpg: corrupt or unsupported JPEG: Bogus DQT index 7 (libjpeg-turbo, reading the headers)');
    const badComponent = jpeg.slice();
    // The first scan's first component selector: an id the frame does not have.
    badComponent[markerAt(jpeg, 0xda) + 5] = 9;
    expect(await refusal(badComponent, 'component.jpg')).toBe('component.jpg: corrupt or unsupported JPEG: Invalid component ID 9 in SOS (libjpeg-turbo, reading the headers)');
    // A later scan of a progressive JPEG with spectral selection 63..1: fatal while decoding.
    const progressive = await fixture('photo-progressive.jpg');
    const secondScan = progressive.findIndex((byte, i) => i > markerAt(progressive, 0xda) && byte === 0xff && progressive[i + 1] === 0xda);
    const badScan = progressive.slice();
    const selectors = badScan[secondScan + 4]!;
    badScan.set([63, 1], secondScan + 5 + 2 * selectors);
    expect(await refusal(badScan, 'scan.jpg')).toMatch(/^scan\.jpg: corrupt or unsupported JPEG: Invalid progressive parameters Ss=63 Se=1 Ah=\d+ Al=\d+ \(libjpeg-turbo, decoding the image data\)$/);
    expect((await decodeImage(jpeg, 'fine.jpg')).width).toBe(97);
  });
});

describe('WebP', () => {
  it('refuses a file shorter than its RIFF header says', async () => {
    const webp = await fixture('photo-lossy.webp');
    expect(await refusal(webp.subarray(0, 100), 'cut.webp')).toBe(`cut.webp: truncated WebP: the RIFF header declares ${webp.length} bytes, the file has 100`);
  });

  it('refuses a lossless header declaring 16384×16384 before libwebp allocates it', async () => {
    const webp = await fixture('photo-lossless.webp');
    const bomb = webp.slice();
    // VP8L: signature byte, then 14 bits of width − 1 and 14 of height − 1.
    new DataView(bomb.buffer).setUint32(21, 0x3fff | (0x3fff << 14), true);
    expect(await refusal(bomb, 'bomb.webp')).toMatch(/^bomb\.webp: image is 16384×16384 \(268\.4 megapixels\), more than the limit/);
  });

  it('refuses chunks and bitstreams libwebp cannot read, and decodes the next file', async () => {
    const webp = await fixture('photo-lossy.webp');
    const garbled = webp.slice();
    garbled.fill(0x55, 40, 400);
    expect(await refusal(garbled, 'garbled.webp')).toBe('garbled.webp: corrupt WebP: libwebp cannot decode its first frame');
    const badChunk = webp.slice();
    // The VP8 chunk's size field: larger than the RIFF data.
    new DataView(badChunk.buffer).setUint32(16, 0x7fff, true);
    expect(await refusal(badChunk, 'chunk.webp')).toMatch(/^chunk\.webp: truncated WebP: the "VP8 " chunk needs 32767 bytes/);
    expect((await decodeImage(webp, 'fine.webp')).width).toBe(160);
  });
});

describe('GIF', () => {
  it('refuses a 65535×65535 screen before allocating it', async () => {
    const gif = await fixture('edges.gif');
    const bomb = gif.slice();
    new DataView(bomb.buffer).setUint16(6, 65535, true);
    new DataView(bomb.buffer).setUint16(8, 65535, true);
    expect(await refusal(bomb, 'bomb.gif')).toMatch(/^bomb\.gif: image is 65535×65535 \(4294\.8 megapixels\), more than the limit/);
  });

  it('skips bytes that start no block, as Pillow does', async () => {
    const gif = await fixture('edges.gif');
    const padded = new Uint8Array([...gif.subarray(0, 13 + 192), 0x99, 0x00, 0x42, ...gif.subarray(13 + 192)]);
    expect((await decodeImage(padded, 'padded.gif')).data).toEqual((await decodeImage(gif, 'edges.gif')).data);
  });

  it('refuses files cut short or with unknown parts, naming where', async () => {
    const gif = await fixture('edges.gif');
    expect(await refusal(gif.subarray(0, 100), 'cut.gif')).toBe('cut.gif: truncated GIF: the file ends inside the global colour table at byte 13');
    expect(await refusal(gif.subarray(0, gif.length - 300), 'cut-data.gif')).toMatch(/^cut-data\.gif: truncated GIF: the image data ends after \d+ of 5917 pixels$/);
    const zeroFrame = gif.slice();
    const frame = zeroFrame.indexOf(0x2c, 13 + 192);
    zeroFrame.set([0, 0], frame + 7);
    expect(await refusal(zeroFrame, 'zero.gif')).toBe(`zero.gif: corrupt GIF: the first frame (at byte ${frame}) has zero size (97×0)`);
    expect(await refusal(new TextEncoder().encode('GIF88a\x01\x00\x01\x00\x00\x00\x00;'), 'v.gif')).toBe('v.gif: unsupported GIF: version "GIF88a"');
    expect(await refusal(new TextEncoder().encode('GIF89a\x01\x00\x01\x00\x00\x00\x00;'), 'empty.gif')).toBe('empty.gif: corrupt GIF: the trailer at byte 13 comes before any image');
  });
});

/** A BMP with an INFO header: 24 bits, `width`×`height`, `pixelBytes` of pixel data. */
function bmp24(width: number, height: number, pixelBytes: number): Uint8Array {
  const file = new Uint8Array(54 + pixelBytes);
  const view = new DataView(file.buffer);
  file.set([0x42, 0x4d]);
  view.setUint32(2, file.length, true);
  view.setUint32(10, 54, true);
  view.setUint32(14, 40, true);
  view.setInt32(18, width, true);
  view.setInt32(22, height, true);
  view.setUint16(26, 1, true);
  view.setUint16(28, 24, true);
  return file;
}

describe('BMP', () => {
  it('refuses a 100000×100000 header before allocating it', async () => {
    expect(await refusal(bmp24(100_000, 100_000, 16), 'bomb.bmp')).toMatch(/^bomb\.bmp: image is 100000×100000 \(10000 megapixels\), more than the limit/);
  });

  it('refuses pixel data shorter than the image, and unsupported layouts', async () => {
    expect(await refusal(bmp24(4, 3, 20), 'short.bmp')).toBe('short.bmp: truncated BMP: 4×3 at 24 bits needs 36 bytes of pixels from byte 54, the file has 20');
    const twoBit = bmp24(4, 3, 48);
    new DataView(twoBit.buffer).setUint16(28, 2, true);
    expect(await refusal(twoBit, '2bit.bmp')).toBe('2bit.bmp: unsupported BMP: 2 bits per pixel');
    const jpegInside = bmp24(4, 3, 48);
    new DataView(jpegInside.buffer).setUint32(30, 4, true);
    expect(await refusal(jpegInside, 'jpeg.bmp')).toBe('jpeg.bmp: unsupported BMP: compression 4 with 24 bits per pixel');
    const header = bmp24(4, 3, 48);
    new DataView(header.buffer).setUint32(14, 20, true);
    expect(await refusal(header, 'header.bmp')).toBe('header.bmp: unsupported BMP: header of 20 bytes (expected 12, 40, 64, 108 or 124)');
  });

  it('reads RLE8 deltas as the format defines them (right, then up), filling with index 0', async () => {
    const file = bmp24(3, 2, 0);
    const view = new DataView(file.buffer);
    view.setUint16(28, 8, true);
    view.setUint32(30, 1, true);
    view.setUint32(46, 2, true);
    // Palette: index 0 red, index 1 blue (BGRX); data: delta (1 right, 1 up), a run of 1s (cut at the row's end), end of bitmap.
    const rle = new Uint8Array([...file, 0, 0, 255, 0, 255, 0, 0, 0, 0, 2, 1, 1, 2, 1, 0, 1]);
    new DataView(rle.buffer).setUint32(10, 54 + 8, true);
    const { data } = await decodeImage(rle, 'delta.bmp');
    // Rows are stored bottom-up: the skipped first row is the image's last.
    expect(Array.from(data)).toEqual([255, 0, 0, 0, 0, 255, 0, 0, 255, 255, 0, 0, 255, 0, 0, 255, 0, 0]);
  });
});
