/**
 * PNG / JPEG bytes → 8-bit RGB, with the semantics of Pillow's `Image.open(f).convert("RGB")`
 * (Pillow 9.4, which produced the project's golden data): alpha and tRNS transparency are
 * dropped without compositing, grayscale is replicated, and no gamma, ICC profile or EXIF
 * orientation is applied.
 */
import { constants as zlibConstants, inflateSync } from 'node:zlib';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';

export interface RgbImage {
  width: number;
  height: number;
  /** Row-major HWC, 3 bytes per pixel. */
  data: Uint8Array;
}

/** Raised for bytes that are not a decodable PNG/JPEG; the message starts with the caller's label. */
export class ImageDecodeError extends Error {
  constructor(
    readonly label: string,
    detail: string,
  ) {
    super(`${label}: ${detail}`);
    this.name = 'ImageDecodeError';
  }
}

/**
 * Largest image decoded, in megapixels: covers 48 MP phone photos while refusing decompression
 * bombs whose headers claim enormous sizes (both decoders allocate width × height up front).
 */
export const MAX_IMAGE_MEGAPIXELS = 50;
/**
 * jpeg-js keeps every DCT block as Int32 (4 bytes per sample per component) plus the output;
 * a 50 MP three-component image needs about 750 MB.
 */
const JPEG_MAX_MEMORY_MB = 1024;

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG_SIGNATURE = [0xff, 0xd8, 0xff];

/** Formats recognised only to name them in the error. */
const OTHER_SIGNATURES: ReadonlyArray<{ name: string; bytes: readonly number[]; at?: number }> = [
  { name: 'GIF', bytes: [0x47, 0x49, 0x46, 0x38] },
  { name: 'BMP', bytes: [0x42, 0x4d] },
  { name: 'WebP', bytes: [0x57, 0x45, 0x42, 0x50], at: 8 },
  { name: 'TIFF', bytes: [0x49, 0x49, 0x2a, 0x00] },
  { name: 'TIFF', bytes: [0x4d, 0x4d, 0x00, 0x2a] },
];

function startsWith(bytes: Uint8Array, signature: readonly number[], at = 0): boolean {
  return bytes.length >= at + signature.length && signature.every((byte, i) => bytes[at + i] === byte);
}

/** Decodes a PNG or JPEG (recognised by its magic bytes, not a file name) into RGB. */
export function decodeImage(bytes: Uint8Array, label: string): RgbImage {
  if (bytes.length === 0) throw new ImageDecodeError(label, 'empty file, not an image');
  if (startsWith(bytes, PNG_SIGNATURE)) return decodePng(bytes, label);
  if (startsWith(bytes, JPEG_SIGNATURE)) return decodeJpeg(bytes, label);
  const other = OTHER_SIGNATURES.find((format) => startsWith(bytes, format.bytes, format.at));
  const head = Array.from(bytes.subarray(0, 8), (byte) => byte.toString(16).padStart(2, '0')).join(' ');
  throw new ImageDecodeError(
    label,
    `${other === undefined ? 'unrecognised format' : `${other.name} images are not supported`} ` +
      `(first bytes ${head}); expected PNG or JPEG`,
  );
}

function checkDimensions(width: number, height: number, label: string): void {
  if (width === 0 || height === 0) {
    throw new ImageDecodeError(label, `image has zero size (${width}×${height})`);
  }
  if (width * height > MAX_IMAGE_MEGAPIXELS * 1e6) {
    throw new ImageDecodeError(
      label,
      `image is ${width}×${height}, more than the ${MAX_IMAGE_MEGAPIXELS} megapixels this decoder accepts`,
    );
  }
}

/** The chunk pngjs needs at the end; Pillow decodes files that lack it. */
const IEND_CHUNK = new Uint8Array([0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);
const KNOWN_CRITICAL_CHUNKS = new Set(['IHDR', 'PLTE', 'IDAT', 'IEND']);
/** Samples per pixel and allowed bit depths per IHDR colour type (PNG spec table 11.1). */
const PNG_COLOR_TYPES: ReadonlyMap<number, { channels: number; depths: readonly number[] }> = new Map([
  [0, { channels: 1, depths: [1, 2, 4, 8, 16] }],
  [2, { channels: 3, depths: [8, 16] }],
  [3, { channels: 1, depths: [1, 2, 4, 8] }],
  [4, { channels: 2, depths: [8, 16] }],
  [6, { channels: 4, depths: [8, 16] }],
]);
/** PNG IHDR colour types that the conversion distinguishes. */
const PngColorType = { Gray: 0, Palette: 3 } as const;

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

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

interface PngHeader {
  width: number;
  height: number;
  depth: number;
  channels: number;
  interlaced: boolean;
}

/** Bytes of filtered scanlines (a filter byte per row) that the header promises. */
function expectedScanlineBytes({ width, height, depth, channels, interlaced }: PngHeader): number {
  const rowBytes = (pixels: number): number => 1 + Math.ceil((pixels * channels * depth) / 8);
  if (!interlaced) return height * rowBytes(width);
  let total = 0;
  for (const [x0, y0, dx, dy] of ADAM7_PASSES) {
    const passWidth = Math.ceil((width - x0) / dx);
    const passHeight = Math.ceil((height - y0) / dy);
    if (passWidth > 0 && passHeight > 0) total += passHeight * rowBytes(passWidth);
  }
  return total;
}

function readPngHeader(bytes: Uint8Array, view: DataView, label: string): PngHeader {
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  const [depth, colorType, compression, filter, interlace] = Array.from(bytes.subarray(24, 29));
  const colorTypeInfo = PNG_COLOR_TYPES.get(colorType!);
  if (colorTypeInfo === undefined) throw new ImageDecodeError(label, `corrupt PNG: colour type ${colorType} does not exist`);
  if (!colorTypeInfo.depths.includes(depth!)) {
    throw new ImageDecodeError(label, `corrupt PNG: bit depth ${depth} is not allowed for colour type ${colorType}`);
  }
  if (compression !== 0 || filter !== 0 || (interlace !== 0 && interlace !== 1)) {
    throw new ImageDecodeError(
      label,
      `corrupt PNG: unknown compression ${compression}, filter ${filter} or interlace ${interlace} method`,
    );
  }
  checkDimensions(width, height, label);
  return { width, height, depth: depth!, channels: colorTypeInfo.channels, interlaced: interlace === 1 };
}

/**
 * Checks what pngjs does not: it reports a bad checksum or header only as "unrecognised content
 * at end of stream", allocates width × height before any check, and fills pixels it could not
 * inflate with zeros without a word. Returns the bytes to hand to pngjs: cut after IEND (Pillow
 * ignores trailing bytes, pngjs rejects them) or with IEND added (Pillow does not need it).
 */
function checkPng(bytes: Uint8Array, label: string): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunkType = (offset: number): string => String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
  if (bytes.length < 8 + 12 + 13 || chunkType(8) !== 'IHDR' || view.getUint32(8) !== 13) {
    throw new ImageDecodeError(label, 'truncated or corrupt PNG: no complete IHDR chunk after the signature');
  }
  const header = readPngHeader(bytes, view, label);

  const imageData: Uint8Array[] = [];
  let offset = 8;
  let end: number | undefined;
  while (offset < bytes.length && end === undefined) {
    if (offset + 8 > bytes.length) {
      throw new ImageDecodeError(label, `truncated PNG: file ends inside a chunk header at byte ${offset}`);
    }
    const type = chunkType(offset);
    const dataLength = view.getUint32(offset);
    const chunkEnd = offset + 12 + dataLength;
    if (chunkEnd > bytes.length) {
      throw new ImageDecodeError(
        label,
        `truncated PNG: the ${JSON.stringify(type)} chunk at byte ${offset} needs ${12 + dataLength} bytes, ` +
          `the file ends after ${bytes.length - offset}`,
      );
    }
    if (crc32(bytes.subarray(offset + 4, chunkEnd - 4)) !== view.getUint32(chunkEnd - 4)) {
      throw new ImageDecodeError(label, `corrupt PNG: checksum mismatch in the ${JSON.stringify(type)} chunk at byte ${offset}`);
    }
    // A lowercase first letter marks an ancillary chunk, which decoders may skip.
    if (/^[A-Z]/.test(type) && !KNOWN_CRITICAL_CHUNKS.has(type)) {
      throw new ImageDecodeError(label, `unsupported PNG: unknown critical chunk ${JSON.stringify(type)}`);
    }
    if (type === 'IDAT') imageData.push(bytes.subarray(offset + 8, chunkEnd - 4));
    if (type === 'IEND') end = chunkEnd;
    offset = chunkEnd;
  }

  const needed = expectedScanlineBytes(header);
  let inflatedLength: number;
  try {
    // Sync flush returns what a cut stream holds instead of throwing, so that, like Pillow, a
    // stream that lacks only its checksum still decodes; the length check below catches the rest.
    inflatedLength = inflateSync(Buffer.concat(imageData), { finishFlush: zlibConstants.Z_SYNC_FLUSH }).length;
  } catch (error) {
    throw new ImageDecodeError(label, `corrupt PNG: image data does not inflate (${(error as Error).message})`);
  }
  if (inflatedLength < needed) {
    throw new ImageDecodeError(
      label,
      `truncated PNG: image data holds ${inflatedLength} of the ${needed} bytes a ${header.width}×${header.height} image needs`,
    );
  }

  if (end !== undefined) return bytes.subarray(0, end);
  const withIend = new Uint8Array(bytes.length + IEND_CHUNK.length);
  withIend.set(bytes);
  withIend.set(IEND_CHUNK, bytes.length);
  return withIend;
}

/**
 * What reaches pngjs has complete chunks, valid checksums and enough image data, so its
 * remaining complaints are about the content (bad filter types, palette indices, excess data).
 */
function describePngError(message: string): string {
  if (/not in palette/.test(message)) return `corrupt PNG: pixel ${message}`;
  return `corrupt PNG: ${message}`;
}

function decodePng(bytes: Uint8Array, label: string): RgbImage {
  const checked = checkPng(bytes, label);
  let png: ReturnType<typeof PNG.sync.read>;
  try {
    // skipRescale keeps every sample at its stored bit depth, so the conversion to 8 bits
    // below can follow Pillow rather than pngjs's own rounding.
    const buffer = Buffer.from(checked.buffer, checked.byteOffset, checked.byteLength);
    png = PNG.sync.read(buffer, { skipRescale: true });
  } catch (error) {
    throw new ImageDecodeError(label, describePngError((error as Error).message));
  }
  return pngSamplesToRgb(png, label);
}

/** What pngjs hands back: RGBA samples at the file's bit depth, palettes already expanded. */
interface DecodedPng {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  data: ArrayLike<number>;
  transColor?: number[];
}

/**
 * The 8-bit value Pillow 9.4 gives a stored sample: 1-bit gray opens as mode "1" (0 / 255),
 * 2- and 4-bit gray are scaled by 85 / 17 (unpackers L;2, L;4), 16-bit gray opens as mode "I"
 * whose conversion to RGB clips to 0..255 (so everything above 255 becomes white), and 16-bit
 * colour and gray+alpha keep the high byte (unpackers RGB;16B, RGBA;16B, LA;16B).
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
    case 16:
      return colorType === PngColorType.Gray ? (sample) => Math.min(sample, 255) : (sample) => sample >> 8;
    default:
      throw new Error(`unexpected PNG bit depth ${depth}`);
  }
}

function pngSamplesToRgb(png: DecodedPng, label: string): RgbImage {
  const { width, height, data, transColor } = png;
  const pixelCount = width * height;
  if (data.length !== pixelCount * 4) {
    throw new ImageDecodeError(label, `corrupt PNG: decoded ${data.length} samples for a ${width}×${height} image`);
  }
  // Palette entries are already 8-bit RGB; only gray and true-colour samples need converting.
  const to8Bit = png.colorType === PngColorType.Palette ? (sample: number) => sample : sampleTo8Bit(png.colorType, png.depth);
  // pngjs zeroes pixels equal to the tRNS colour (RGBA 0,0,0,0). Pillow keeps their colour and
  // convert("RGB") ignores the transparency, so those pixels get the tRNS colour back; only they
  // can have alpha 0, because gray and RGB images without an alpha channel are otherwise opaque.
  const transparentColour =
    transColor === undefined ? undefined : transColor.length === 1 ? [transColor[0]!, transColor[0]!, transColor[0]!] : transColor;

  const rgb = new Uint8Array(pixelCount * 3);
  for (let pixel = 0; pixel < pixelCount; pixel++) {
    const source = transparentColour !== undefined && data[pixel * 4 + 3] === 0 ? transparentColour : null;
    for (let channel = 0; channel < 3; channel++) {
      const sample = source === null ? data[pixel * 4 + channel]! : source[channel]!;
      rgb[pixel * 3 + channel] = to8Bit(sample);
    }
  }
  return { width, height, data: rgb };
}

interface JpegFrame {
  width: number;
  height: number;
  /** Byte offset of the start-of-frame marker. */
  offset: number;
}

/** Start-of-frame markers: SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC). */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/**
 * Walks the marker segments up to the frame header, so a truncated header, a zero-size frame
 * (jpeg-js does not support sizes given later by a DNL marker) or an oversized image get their
 * own message before jpeg-js allocates anything.
 */
function readJpegFrame(bytes: Uint8Array, label: string): JpegFrame {
  let offset = 2;
  while (offset + 4 <= bytes.length) {
    if (bytes[offset] !== 0xff) {
      throw new ImageDecodeError(label, `corrupt JPEG: expected a marker at byte ${offset}, found 0x${bytes[offset]!.toString(16)}`);
    }
    const marker = bytes[offset + 1]!;
    // 0xFF may pad before a marker.
    if (marker === 0xff) {
      offset++;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) {
      throw new ImageDecodeError(label, 'corrupt JPEG: image data starts before any frame header (SOF)');
    }
    const segmentLength = (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
    if (isStartOfFrame(marker)) {
      if (offset + 9 > bytes.length) break;
      return {
        height: (bytes[offset + 5]! << 8) | bytes[offset + 6]!,
        width: (bytes[offset + 7]! << 8) | bytes[offset + 8]!,
        offset,
      };
    }
    offset += 2 + segmentLength;
  }
  throw new ImageDecodeError(label, 'truncated JPEG: the file ends before the frame header (SOF)');
}

/** Whether an end-of-image marker follows the frame header (earlier ones belong to EXIF thumbnails). */
function hasEndOfImage(bytes: Uint8Array, frameOffset: number): boolean {
  for (let i = bytes.length - 2; i > frameOffset; i--) {
    if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return true;
  }
  return false;
}

function describeJpegError(message: string, complete: boolean): string {
  if (/maxResolutionInMP|maxMemoryUsageInMB|allocate enough memory/.test(message)) {
    return `JPEG too large to decode (${message})`;
  }
  // Like Pillow ("image file is truncated"), a JPEG without its end marker is refused rather
  // than returned with missing rows.
  if (!complete) return `truncated JPEG: no end-of-image marker, decoding failed (${message})`;
  return `corrupt or unsupported JPEG (${message})`;
}

function decodeJpeg(bytes: Uint8Array, label: string): RgbImage {
  const frame = readJpegFrame(bytes, label);
  checkDimensions(frame.width, frame.height, label);
  let decoded: { width: number; height: number; data: Uint8Array };
  try {
    decoded = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      // jpeg-js's tolerant mode fills undecodable blocks with grey instead of failing.
      tolerantDecoding: false,
      maxResolutionInMP: MAX_IMAGE_MEGAPIXELS,
      maxMemoryUsageInMB: JPEG_MAX_MEMORY_MB,
    });
  } catch (error) {
    throw new ImageDecodeError(label, describeJpegError((error as Error).message, hasEndOfImage(bytes, frame.offset)));
  }
  if (decoded.data.length !== decoded.width * decoded.height * 3) {
    throw new ImageDecodeError(label, `corrupt JPEG: decoded ${decoded.data.length} bytes for ${decoded.width}×${decoded.height} RGB`);
  }
  return { width: decoded.width, height: decoded.height, data: decoded.data };
}
