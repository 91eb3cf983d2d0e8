/**
 * BMP → 8-bit RGB as Pillow 9.4's BmpImagePlugin reads it: OS/2 core and Windows INFO, V4, V5
 * headers; 1-, 4- and 8-bit palettes (Pillow's grey ramp beyond a short palette), 16-bit 5-5-5
 * and (with bit fields) 5-6-5 scaled by 255/31 and 255/63, 24-bit BGR, 32-bit with the masks
 * Pillow knows (alpha dropped); RLE8 and RLE4 with Pillow's own rules; bottom-up or top-down rows.
 * As in Pillow, pixel data that ends before the image is complete is an error.
 *
 * Our own because the JavaScript BMP decoders (bmp-js, bmp-ts) allocate from header sizes
 * without a limit and differ from Pillow on palettes, 16-bit scaling and RLE.
 */
import { checkImageSize, ImageDecodeError, indicesToRgb, pillowPalette, type RgbImage } from './errors.js';

const FILE_HEADER_LENGTH = 14;
const CORE_HEADER = 12;
/** INFO, OS/2 2.x, V4 and V5 headers: the sizes Pillow 9.4 accepts besides the core header. */
const INFO_HEADERS = new Set([40, 64, 108, 124]);
const Compression = { Rgb: 0, Rle8: 1, Rle4: 2, BitFields: 3 } as const;

/** 32-bit channel masks Pillow supports, as [red, green, blue, alpha] (alpha dropped by convert("RGB")). */
const MASKS_32 = [
  [0xff0000, 0xff00, 0xff, 0],
  [0xff000000, 0xff0000, 0xff00, 0],
  [0xff000000, 0xff0000, 0xff00, 0xff],
  [0xff, 0xff00, 0xff0000, 0xff000000],
  [0xff0000, 0xff00, 0xff, 0xff000000],
  [0, 0, 0, 0],
];
/** 16-bit masks: 5-6-5 and 5-5-5 (the default without bit fields). */
const MASKS_16 = [
  [0xf800, 0x7e0, 0x1f],
  [0x7c00, 0x3e0, 0x1f],
];
const MASK_BGRX = MASKS_32[0]!;
const MASK_555 = MASKS_16[1]!;

interface BmpHeader {
  width: number;
  height: number;
  topDown: boolean;
  bits: number;
  compression: number;
  /** Red, green, blue (, alpha) masks for 16- and 32-bit pixels. */
  masks: number[];
  palette: Uint8Array | undefined;
  dataOffset: number;
}

function readHeader(bytes: Uint8Array, label: string): BmpHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (end: number, part: string): void => {
    if (end > bytes.length) throw new ImageDecodeError(label, `truncated BMP: the file ends inside the ${part} (needs ${end} bytes, has ${bytes.length})`);
  };
  need(FILE_HEADER_LENGTH + 4, 'file header');
  let dataOffset = view.getUint32(10, true);
  const headerSize = view.getUint32(FILE_HEADER_LENGTH, true);
  if (headerSize !== CORE_HEADER && !INFO_HEADERS.has(headerSize)) {
    throw new ImageDecodeError(label, `unsupported BMP: header of ${headerSize} bytes (expected 12, 40, 64, 108 or 124)`);
  }
  need(FILE_HEADER_LENGTH + headerSize, 'bitmap header');
  const at = FILE_HEADER_LENGTH + 4;
  let width: number;
  let height: number;
  let bits: number;
  let compression: number = Compression.Rgb;
  let colours = 0;
  let topDown = false;
  let masks: number[] = [];
  if (headerSize === CORE_HEADER) {
    width = view.getUint16(at, true);
    height = view.getUint16(at + 2, true);
    bits = view.getUint16(at + 6, true);
  } else {
    width = view.getInt32(at, true);
    const storedHeight = view.getInt32(at + 4, true);
    topDown = storedHeight < 0;
    height = Math.abs(storedHeight);
    bits = view.getUint16(at + 10, true);
    compression = view.getUint32(at + 12, true);
    colours = view.getUint32(at + 28, true);
    if (compression === Compression.BitFields) {
      // Headers of 56 bytes and more hold four masks; an INFO header is followed by three.
      const maskAt = at + 36;
      need(maskAt + 12, 'bit field masks');
      masks = [0, 4, 8].map((offset) => view.getUint32(maskAt + offset, true));
      masks.push(headerSize >= 56 ? view.getUint32(maskAt + 12, true) : 0);
    }
  }
  if (width <= 0) throw new ImageDecodeError(label, `corrupt BMP: width ${width}`);
  if (![1, 4, 8, 16, 24, 32].includes(bits)) throw new ImageDecodeError(label, `unsupported BMP: ${bits} bits per pixel`);
  // Pillow compares all four masks of 32-bit pixels, and red, green and blue of the others.
  const sameMasks = (layout: number[], found: number[]): boolean => layout.every((mask, i) => mask === found[i]);
  if (compression === Compression.BitFields) {
    const known = bits === 32 ? MASKS_32 : bits === 16 ? MASKS_16 : bits === 24 ? [[0xff0000, 0xff00, 0xff]] : [];
    if (!known.some((layout) => sameMasks(layout, masks))) {
      throw new ImageDecodeError(label, `unsupported BMP: ${bits}-bit bit fields layout ${masks.map((mask) => `0x${mask.toString(16)}`).join(', ')}`);
    }
    // All-zero masks read as BGRA in Pillow.
    if (masks.every((mask) => mask === 0)) masks = MASK_BGRX;
  } else if (compression === Compression.Rgb) {
    masks = bits === 32 ? MASK_BGRX : bits === 16 ? MASK_555 : [];
  } else if (!((compression === Compression.Rle8 || compression === Compression.Rle4) && bits <= 8)) {
    throw new ImageDecodeError(label, `unsupported BMP: compression ${compression} with ${bits} bits per pixel`);
  }

  // Pillow reads the masks that follow an INFO header, then the palette, taking what is there
  // of it (the pixel data may follow sooner); a pixel offset of 0 means "where reading stopped",
  // and one that points at the palette is moved past 4 bytes a colour.
  let readTo = FILE_HEADER_LENGTH + headerSize + (compression === Compression.BitFields && headerSize < 52 ? 12 : 0);
  let palette: Uint8Array | undefined;
  if (bits <= 8) {
    colours ||= 1 << bits;
    if (colours > 65536) throw new ImageDecodeError(label, `corrupt BMP: palette of ${colours} colours`);
    const entryBytes = headerSize === CORE_HEADER ? 3 : 4;
    const paletteAt = readTo;
    if (dataOffset === paletteAt) dataOffset += 4 * colours;
    const stored = bytes.subarray(paletteAt, paletteAt + entryBytes * colours);
    // Pillow refuses more than 256 entries of palette data, unless they are a grey ramp.
    if (stored.length > 256 * entryBytes && !isGreyRamp(stored, entryBytes)) {
      throw new ImageDecodeError(label, `unsupported BMP: a palette of ${colours} colours (${stored.length} bytes from byte ${paletteAt}); at most 256 are used`);
    }
    palette = pillowPalette(stored.subarray(0, entryBytes * 256), entryBytes, true);
    readTo += entryBytes * colours;
  }
  if (dataOffset === 0) dataOffset = Math.min(readTo, bytes.length);
  return { width, height, topDown, bits, compression, masks, palette, dataOffset };
}

/** Whether every palette entry i is (i, i, i) (modulo 256): Pillow reads such a BMP as grey, without a palette. */
function isGreyRamp(palette: Uint8Array, entryBytes: number): boolean {
  for (let at = 0; at + 2 < palette.length; at += entryBytes) {
    const grey = (at / entryBytes) & 255;
    if (palette[at] !== grey || palette[at + 1] !== grey || palette[at + 2] !== grey) return false;
  }
  return true;
}

/** A channel's value scaled to 8 bits as Pillow's unpackers do (`value * 255 / max`, truncated). */
function channelOf(pixel: number, mask: number): number {
  if (mask === 0) return 0;
  const shift = 31 - Math.clz32(mask & -mask);
  const max = mask >>> shift;
  return Math.trunc((((pixel & mask) >>> shift) * 255) / max);
}

function decodeUncompressed(bytes: Uint8Array, header: BmpHeader, label: string): RgbImage {
  const { width, height, bits, masks, palette, dataOffset, topDown } = header;
  const stride = Math.ceil((width * bits) / 32) * 4;
  // Rows are padded to 4 bytes, but the last row's padding need not be there (nor is it for Pillow).
  const needed = stride * (height - 1) + Math.ceil((width * bits) / 8);
  if (dataOffset + needed > bytes.length) {
    throw new ImageDecodeError(
      label,
      `truncated BMP: ${width}×${height} at ${bits} bits needs ${needed} bytes of pixels from byte ${dataOffset}, the file has ${Math.max(0, bytes.length - dataOffset)}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const indices = palette === undefined ? undefined : new Uint8Array(width * height);
  const rgb = palette === undefined ? new Uint8Array(width * height * 3) : undefined;
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (topDown ? y : height - 1 - y) * stride;
    for (let x = 0; x < width; x++) {
      const pixel = y * width + x;
      if (indices !== undefined) {
        const bit = x * bits;
        indices[pixel] = (bytes[row + (bit >> 3)]! >> (8 - bits - (bit & 7))) & ((1 << bits) - 1);
      } else if (bits === 24) {
        rgb!.set([bytes[row + 3 * x + 2]!, bytes[row + 3 * x + 1]!, bytes[row + 3 * x]!], pixel * 3);
      } else {
        const value = bits === 32 ? view.getUint32(row + 4 * x, true) : view.getUint16(row + 2 * x, true);
        for (let c = 0; c < 3; c++) rgb![pixel * 3 + c] = channelOf(value, masks[c]!);
      }
    }
  }
  return indices === undefined ? { width, height, data: rgb! } : indicesToRgb(indices, palette!, width, height);
}

/**
 * Run-length decoding as Pillow 9.4's BmpRleDecoder does it: runs are cut at the row's end,
 * end-of-line pads the row with index 0, a delta skips with index 0, absolute runs are padded
 * to an even file offset, and stored rows may overrun; fewer pixels than the image is an error.
 */
function decodeRunLength(bytes: Uint8Array, header: BmpHeader, label: string): RgbImage {
  const { width, height, topDown, palette, dataOffset } = header;
  const rle4 = header.compression === Compression.Rle4;
  const pixelCount = width * height;
  // Every two bytes yield at most 255 pixels, or with a delta 255 rows and 255 pixels: refuse
  // data that cannot fill the image before allocating it.
  if ((Math.max(0, bytes.length - dataOffset) / 2) * 256 * Math.max(width, 255) < pixelCount) {
    throw new ImageDecodeError(label, `truncated BMP: ${bytes.length - dataOffset} bytes of RLE data cannot hold ${width}×${height} pixels`);
  }
  const stored = new Uint8Array(pixelCount);
  let written = 0;
  let x = 0;
  let at = dataOffset;
  const put = (index: number): void => {
    if (written < pixelCount) stored[written] = index;
    written++;
  };
  while (written < pixelCount && at + 2 <= bytes.length) {
    let count = bytes[at]!;
    const value = bytes[at + 1]!;
    at += 2;
    if (count > 0) {
      count = Math.min(count, Math.max(0, width - x));
      for (let i = 0; i < count; i++) put(rle4 ? (i % 2 === 0 ? value >> 4 : value & 15) : value);
      x += count;
    } else if (value === 0) {
      while (written % width !== 0) put(0);
      x = 0;
    } else if (value === 1) {
      break;
    } else if (value === 2) {
      if (at + 2 > bytes.length) break;
      const skip = bytes[at]! + bytes[at + 1]! * width;
      at += 2;
      for (let i = 0; i < skip && written < pixelCount; i++) put(0);
      x = written % width;
    } else {
      const byteCount = rle4 ? value >> 1 : value;
      const run = bytes.subarray(at, at + byteCount);
      for (const byte of run) {
        if (rle4) {
          put(byte >> 4);
          put(byte & 15);
        } else {
          put(byte);
        }
      }
      at += run.length;
      if (run.length < byteCount) break;
      x += value;
      if (at % 2 !== 0) at++;
    }
  }
  if (written < pixelCount) {
    throw new ImageDecodeError(label, `truncated BMP: the RLE data ends after ${written} of ${pixelCount} pixels`);
  }
  const indices = topDown ? stored : new Uint8Array(pixelCount);
  if (!topDown) for (let y = 0; y < height; y++) indices.set(stored.subarray(y * width, (y + 1) * width), (height - 1 - y) * width);
  return indicesToRgb(indices, palette!, width, height);
}

export function decodeBmp(bytes: Uint8Array, label: string, maxPixels: number): RgbImage {
  const header = readHeader(bytes, label);
  checkImageSize(header.width, header.height, maxPixels, label);
  return header.compression === Compression.Rle8 || header.compression === Compression.Rle4
    ? decodeRunLength(bytes, header, label)
    : decodeUncompressed(bytes, header, label);
}
