/**
 * Fuzz targets for the image decoders (src/image): PNG, JPEG, WebP, GIF and BMP. Seeds are the
 * test fixtures (the golden files and the Pillow-made variants); hand-made cases are the
 * decompression bombs and damaged files the fuzz run found, and their relatives. Each
 * decode runs with the default pixel limit, so memory stays within what that limit allows.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { constants as zlibConstants, inflateSync } from 'node:zlib';
import { decodeImage, ImageDecodeError } from '../../../src/image/decode.js';
import { crc32 } from '../../../src/io/crc32.js';
import { concat, encodePng, pngChunk, smallPng, withHeader, zerosZlibStream } from '../../image/make-png.js';
import type { FuzzCase, FuzzTarget } from '../target.js';

const FIXTURES = new URL('../../fixtures/', import.meta.url);

/** The fixture files under `folder` whose names end in one of `extensions`. */
function fixtures(folder: string, ...extensions: string[]): FuzzCase[] {
  const url = new URL(folder, FIXTURES);
  return readdirSync(url)
    .filter((name) => extensions.some((extension) => name.endsWith(extension)))
    .map((name) => ({ name: `${folder}${name}`, bytes: new Uint8Array(readFileSync(new URL(name, url))) }));
}

/** A copy of `bytes` with `edit` applied to it through a DataView. */
function edited(bytes: Uint8Array, edit: (view: DataView, bytes: Uint8Array) => void): Uint8Array {
  const copy = bytes.slice();
  edit(new DataView(copy.buffer), copy);
  return copy;
}

const markerAt = (jpeg: Uint8Array, marker: number): number => jpeg.findIndex((byte, i) => byte === 0xff && jpeg[i + 1] === marker);

/** The refusal decodeImage documents: its own error, starting with the file's label and naming the format or the limit. */
function imageTarget(name: string, extension: string, parts: Omit<FuzzTarget, 'name' | 'run' | 'isCleanError'>): FuzzTarget {
  const label = `fuzz.${extension}`;
  return {
    name,
    ...parts,
    async run(bytes) {
      await decodeImage(bytes, label);
    },
    isCleanError: (error) =>
      error instanceof ImageDecodeError &&
      error.message.startsWith(`${label}: `) &&
      /(PNG|JPEG|WebP|GIF|BMP|image has zero size|image is \d+×\d+|unrecognised format|not supported|empty file)/.test(error.message),
  };
}

// ---- PNG ----------------------------------------------------------------------------------------

const PNG_SIGNATURE_LENGTH = 8;

/** Chunks with their data's offset and length, up to IEND or a cut chunk (whose data is what the file holds). */
function pngChunks(bytes: Uint8Array): { type: string; at: number; length: number; crcOk: boolean }[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks = [];
  for (let at = PNG_SIGNATURE_LENGTH; at + 8 <= bytes.length; ) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (at + 12 + length > bytes.length) {
      chunks.push({ type, at: at + 8, length: Math.max(0, bytes.length - at - 8), crcOk: false });
      break;
    }
    chunks.push({ type, at: at + 8, length, crcOk: crc32(bytes.subarray(at + 4, at + 8 + length)) === view.getUint32(at + 8 + length) });
    if (type === 'IEND') break;
    at += 12 + length;
  }
  return chunks;
}

/**
 * Whether node's zlib inflates `needed` bytes from `data` before any fault: the longest prefix
 * that inflates cleanly (a cut stream is no error under Z_SYNC_FLUSH) gives what precedes the
 * fault. Output is capped at `needed`, so a bomb costs nothing here either.
 */
function inflatesBeforeFault(data: Uint8Array, needed: number): boolean {
  const inflate = (length: number): number | undefined => {
    try {
      return inflateSync(data.subarray(0, length), { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: needed }).length;
    } catch (error) {
      return (error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? needed : undefined;
    }
  };
  if ((inflate(data.length) ?? 0) >= needed) return true;
  let clean = 0;
  let faulty = data.length;
  while (faulty - clean > 1) {
    const middle = (clean + faulty) >> 1;
    if (inflate(middle) === undefined) faulty = middle;
    else clean = middle;
  }
  return (inflate(clean) ?? 0) >= needed;
}

/**
 * Independent of src/image/png.ts: one IHDR and intact chunks before the image data, and image
 * data from which node's zlib inflates what the header's size needs before any fault (what
 * follows the image data is not read, by Pillow either).
 */
function pngGarbage(bytes: Uint8Array): string | undefined {
  const chunks = pngChunks(bytes);
  const firstData = chunks.findIndex(({ type }) => type === 'IDAT');
  const beforeData = chunks.slice(0, firstData);
  if (beforeData.filter(({ type }) => type === 'IHDR').length !== 1) return 'accepted a PNG without exactly one IHDR before its image data';
  if (beforeData.some(({ crcOk }) => !crcOk)) return 'accepted a PNG with a bad checksum before its image data';
  if (bytes[28] !== 0) return undefined; // Adam7 sizes: trust the decoder's own accounting.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[bytes[25]!] ?? 0;
  const needed = view.getUint32(20) * (1 + Math.ceil((view.getUint32(16) * channels * bytes[24]!) / 8));
  const run = [];
  for (const chunk of chunks.slice(firstData)) {
    if (chunk.type !== 'IDAT') break;
    run.push(bytes.subarray(chunk.at, chunk.at + chunk.length));
  }
  return inflatesBeforeFault(concat(run), needed) ? undefined : `accepted a PNG whose image data does not inflate to the ${needed} bytes it needs before a fault or its end`;
}

function pngBombs(): FuzzCase[] {
  const sized = (width: number, height: number): Uint8Array =>
    withHeader(smallPng(), (header) => {
      header.setUint32(0, width);
      header.setUint32(4, height);
    });
  const secondHeader = (side: number): Uint8Array =>
    concat([smallPng().subarray(0, 33), sized(side, side).subarray(8, 33), smallPng().subarray(33)]);
  const onePixel = encodePng({ colorType: 2, depth: 8, pixels: [[[1, 2, 3]]] });
  const inflatesTo = (mebibytes: number): Uint8Array =>
    concat([onePixel.subarray(0, 33), pngChunk('IDAT', zerosZlibStream(mebibytes)), pngChunk('IEND', new Uint8Array(0))]);
  return [
    { name: 'png: 100000×100000 header', bytes: sized(100_000, 100_000) },
    { name: 'png: 7000×7000 header over 200 bytes of data', bytes: sized(7000, 7000) },
    { name: 'png: second IHDR of 30000×30000', bytes: secondHeader(30_000) },
    { name: 'png: second IHDR of 12000×12000', bytes: secondHeader(12_000) },
    { name: 'png: 1×1 whose image data inflates to 1 GiB', bytes: inflatesTo(1024) },
    { name: 'png: zero width', bytes: sized(0, 8) },
    { name: 'png: signature only', bytes: smallPng().subarray(0, 8) },
  ];
}

function pngSeeds(): FuzzCase[] {
  const gradient = (width: number, height: number, samples: (x: number, y: number) => number[]): number[][][] =>
    Array.from({ length: height }, (_, y) => Array.from({ length: width }, (_, x) => samples(x, y)));
  return [
    ...fixtures('preprocess/', '.png'),
    { name: 'png: palette 4-bit', bytes: encodePng({ colorType: 3, depth: 4, pixels: gradient(9, 5, (x, y) => [(x + y) % 3]), palette: [[255, 0, 0], [0, 255, 0], [0, 0, 255]] }) },
    { name: 'png: gray 16-bit', bytes: encodePng({ colorType: 0, depth: 16, pixels: gradient(7, 6, (x, y) => [x * 9000 + y]) }) },
    { name: 'png: RGBA interlaced', bytes: encodePng({ colorType: 6, depth: 8, interlace: true, pixels: gradient(11, 9, (x, y) => [x * 20, y * 20, x ^ y, 128]) }) },
  ];
}

// ---- JPEG ---------------------------------------------------------------------------------------

/**
 * Independent of src/image/jpeg.ts: an accepted JPEG has a frame header and a scan. (Whether its
 * data lasts to the last row, libjpeg alone can tell; scripts/pillow-differential.ts compares
 * those decisions with Pillow's.)
 */
function jpegGarbage(bytes: Uint8Array): string | undefined {
  const sof = [0xc0, 0xc1, 0xc2, 0xc9, 0xca].map((marker) => markerAt(bytes, marker)).filter((at) => at >= 0);
  if (sof.length === 0) return 'accepted a JPEG without a frame header';
  if (markerAt(bytes, 0xda) < 0) return 'accepted a JPEG without a scan';
  return undefined;
}

function jpegBombs(): FuzzCase[] {
  const edges = fixtures('preprocess-jpeg/', 'edges-97x61-420.jpg')[0]!.bytes;
  const sof = markerAt(edges, 0xc0);
  const sized = (width: number, height: number): Uint8Array =>
    edited(edges, (view) => {
      view.setUint16(sof + 5, height);
      view.setUint16(sof + 7, width);
    });
  const sos = markerAt(edges, 0xda);
  return [
    { name: 'jpeg: 3.6 KB declaring 7000×7000', bytes: sized(7000, 7000) },
    { name: 'jpeg: 65535×65535', bytes: sized(65535, 65535) },
    { name: 'jpeg: zero height', bytes: sized(97, 0) },
    { name: 'jpeg: no scan', bytes: new Uint8Array([...edges.subarray(0, sos), 0xff, 0xd9]) },
    { name: 'jpeg: no end marker', bytes: edges.subarray(0, edges.length - 2) },
    { name: 'jpeg: headers only', bytes: edges.subarray(0, sos + 14) },
  ];
}

// ---- WebP, GIF, BMP -----------------------------------------------------------------------------

function webpGarbage(bytes: Uint8Array): string | undefined {
  const riffEnd = 8 + new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  return riffEnd > bytes.length ? 'accepted a WebP shorter than its RIFF header says' : undefined;
}

function webpBombs(): FuzzCase[] {
  const lossless = fixtures('preprocess-jpeg/', 'photo-lossless.webp')[0]!.bytes;
  return [
    { name: 'webp: VP8L 16384×16384', bytes: edited(lossless, (view) => view.setUint32(21, 0x3fff | (0x3fff << 14), true)) },
    { name: 'webp: cut in half', bytes: lossless.subarray(0, lossless.length >> 1) },
  ];
}

function gifBombs(): FuzzCase[] {
  const edges = fixtures('preprocess-jpeg/', 'edges.gif')[0]!.bytes;
  const frameAt = edges.indexOf(0x2c, 13 + 192);
  return [
    { name: 'gif: 65535×65535 screen', bytes: edited(edges, (view) => (view.setUint16(6, 65535, true), view.setUint16(8, 65535, true))) },
    { name: 'gif: 65535×65535 frame', bytes: edited(edges, (view) => (view.setUint16(frameAt + 5, 65535, true), view.setUint16(frameAt + 7, 65535, true))) },
    { name: 'gif: frame far outside the screen', bytes: edited(edges, (view) => (view.setUint16(frameAt + 1, 60000, true), view.setUint16(frameAt + 3, 60000, true))) },
    { name: 'gif: cut inside the image data', bytes: edges.subarray(0, edges.length - 500) },
  ];
}

function bmpBombs(): FuzzCase[] {
  const edges = fixtures('preprocess-jpeg/', 'edges.bmp')[0]!.bytes;
  const rle = fixtures('preprocess-jpeg/pillow/', 'rle8.bmp')[0]!.bytes;
  return [
    { name: 'bmp: 100000×100000', bytes: edited(edges, (view) => (view.setInt32(18, 100_000, true), view.setInt32(22, 100_000, true))) },
    { name: 'bmp: top-down −2^31 rows', bytes: edited(edges, (view) => view.setInt32(22, -(2 ** 31), true)) },
    { name: 'bmp: RLE8 7000×7000 from 22 bytes', bytes: edited(rle, (view) => (view.setInt32(18, 7000, true), view.setInt32(22, 7000, true))) },
    { name: 'bmp: palette of 2^32 − 1 colours', bytes: edited(rle, (view) => view.setUint32(46, 0xffffffff, true)) },
  ];
}

const ascii = (...words: string[]): Uint8Array[] => words.map((word) => new TextEncoder().encode(word));
const bytes = (...sequences: number[][]): Uint8Array[] => sequences.map((sequence) => new Uint8Array(sequence));

export const targets: FuzzTarget[] = [
  imageTarget('png', 'png', {
    seeds: pngSeeds,
    handmade: pngBombs,
    acceptedGarbage: pngGarbage,
    dictionary: () => ascii('IHDR', 'PLTE', 'IDAT', 'IEND', 'tRNS', 'tEXt'),
  }),
  imageTarget('jpeg', 'jpg', {
    // The small ones (every kind but the 60–90 KB photographs), so that mutations stay quick.
    seeds: () => fixtures('preprocess-jpeg/', '.jpg').filter(({ bytes }) => bytes.length < 30_000),
    handmade: jpegBombs,
    acceptedGarbage: jpegGarbage,
    // SOI, SOF0, SOF2, DHT, DQT, DRI, SOS, RST0, EOI, APP14 (Adobe).
    dictionary: () => bytes([0xff, 0xd8], [0xff, 0xc0], [0xff, 0xc2], [0xff, 0xc4], [0xff, 0xdb], [0xff, 0xdd], [0xff, 0xda], [0xff, 0xd0], [0xff, 0xd9], [0xff, 0xee]),
  }),
  imageTarget('webp', 'webp', {
    seeds: () => fixtures('preprocess-jpeg/', '.webp'),
    handmade: webpBombs,
    acceptedGarbage: webpGarbage,
    dictionary: () => ascii('RIFF', 'WEBP', 'VP8 ', 'VP8L', 'VP8X', 'ALPH', 'ANIM'),
  }),
  imageTarget('gif', 'gif', {
    seeds: () => fixtures('preprocess-jpeg/pillow/', '.gif'),
    handmade: gifBombs,
    // Extension and image introducers, graphic control extension, trailer.
    dictionary: () => bytes([0x21, 0xf9, 0x04], [0x2c], [0x3b], [0x00]),
  }),
  imageTarget('bmp', 'bmp', {
    seeds: () => [...fixtures('preprocess-jpeg/', '.bmp'), ...fixtures('preprocess-jpeg/pillow/', '.bmp')],
    handmade: bmpBombs,
    // Header sizes (core, INFO, V4, V5) and RLE escapes.
    dictionary: () => bytes([12, 0, 0, 0], [40, 0, 0, 0], [108, 0, 0, 0], [124, 0, 0, 0], [0, 0], [0, 1], [0, 2]),
  }),
];
