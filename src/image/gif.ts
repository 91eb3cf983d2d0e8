/**
 * GIF → 8-bit RGB as Pillow 9.4 opens it: the first frame only, on a canvas the size of the
 * logical screen (grown to hold the frame if it sticks out), the area around the frame filled
 * with the frame's transparent index (else index 0), then `convert("RGB")` through the frame's
 * palette (local, else global; Pillow's grey ramp beyond it or without one). Like Pillow, bytes
 * between blocks that start none are skipped, the frame's data is read on through empty blocks
 * until the frame is full, data that ends first is an error, and so is an LZW code that is not
 * yet defined.
 *
 * Our own because the JavaScript GIF decoders (gifuct-js, omggif) allocate frames from header
 * sizes without a limit, decode every frame, and fail on bad data with their internal errors;
 * the format is small enough to read here with every length checked.
 */
import { checkImageSize, ImageDecodeError, indicesToRgb, pillowPalette, type RgbImage } from './errors.js';

const HEADER_LENGTH = 13;
const Block = { Extension: 0x21, Image: 0x2c, Trailer: 0x3b } as const;
const GRAPHIC_CONTROL = 0xf9;
const MAX_CODE_WIDTH = 12;

/** Interlaced frames store rows in four passes: [first row, row step]. */
const INTERLACE_PASSES = [
  [0, 8],
  [4, 8],
  [2, 4],
  [1, 2],
] as const;

interface GifFrame {
  left: number;
  top: number;
  width: number;
  height: number;
  interlaced: boolean;
  palette: Uint8Array | undefined;
  transparentIndex: number | undefined;
  minimumCodeSize: number;
  /** Offset of the first data sub-block. */
  dataOffset: number;
}

/** Reads the file up to the first frame's image data: header, palettes, extensions, descriptor. */
function readFirstFrame(bytes: Uint8Array, label: string): { screenWidth: number; screenHeight: number; frame: GifFrame } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < HEADER_LENGTH) throw new ImageDecodeError(label, 'truncated GIF: no complete logical screen descriptor');
  const version = String.fromCharCode(...bytes.subarray(0, 6));
  if (version !== 'GIF87a' && version !== 'GIF89a') throw new ImageDecodeError(label, `unsupported GIF: version ${JSON.stringify(version)}`);
  const need = (offset: number, length: number, part: string): void => {
    if (offset + length > bytes.length) throw new ImageDecodeError(label, `truncated GIF: the file ends inside the ${part} at byte ${offset}`);
  };
  const screenWidth = view.getUint16(6, true);
  const screenHeight = view.getUint16(8, true);
  const tableSize = (flags: number): number => (flags & 0x80 ? 3 << ((flags & 7) + 1) : 0);
  let offset = HEADER_LENGTH;
  const globalTableLength = tableSize(bytes[10]!);
  need(offset, globalTableLength, 'global colour table');
  const globalPalette = globalTableLength > 0 ? bytes.subarray(offset, offset + globalTableLength) : undefined;
  offset += globalTableLength;
  let transparentIndex: number | undefined;
  for (;;) {
    need(offset, 1, 'block list');
    const block = bytes[offset]!;
    if (block === Block.Trailer) throw new ImageDecodeError(label, `corrupt GIF: the trailer at byte ${offset} comes before any image`);
    if (block === Block.Extension) {
      need(offset, 2, 'extension');
      const kind = bytes[offset + 1]!;
      offset += 2;
      const { data, next, cutAt } = readSubBlocks(bytes, offset);
      if (cutAt !== undefined) throw new ImageDecodeError(label, `truncated GIF: the file ends inside an extension's data at byte ${cutAt}`);
      if (kind === GRAPHIC_CONTROL && data.length >= 4) transparentIndex = data[0]! & 1 ? data[3] : undefined;
      offset = next;
      continue;
    }
    if (block !== Block.Image) {
      // Pillow skips bytes that introduce no block, one at a time.
      offset++;
      continue;
    }
    need(offset, 10, 'image descriptor');
    const flags = bytes[offset + 9]!;
    const localTableLength = tableSize(flags);
    need(offset + 10, localTableLength + 1, 'local colour table');
    const localPalette = localTableLength > 0 ? bytes.subarray(offset + 10, offset + 10 + localTableLength) : undefined;
    const width = view.getUint16(offset + 5, true);
    const height = view.getUint16(offset + 7, true);
    if (width === 0 || height === 0) throw new ImageDecodeError(label, `corrupt GIF: the first frame (at byte ${offset}) has zero size (${width}×${height})`);
    const codeSizeAt = offset + 10 + localTableLength;
    const minimumCodeSize = bytes[codeSizeAt]!;
    if (minimumCodeSize > MAX_CODE_WIDTH) {
      throw new ImageDecodeError(label, `corrupt GIF: LZW minimum code size ${minimumCodeSize} at byte ${codeSizeAt}`);
    }
    return {
      screenWidth,
      screenHeight,
      frame: {
        left: view.getUint16(offset + 1, true),
        top: view.getUint16(offset + 3, true),
        width,
        height,
        interlaced: (flags & 0x40) !== 0,
        palette: localPalette ?? globalPalette,
        transparentIndex,
        minimumCodeSize,
        dataOffset: codeSizeAt + 1,
      },
    };
  }
}

/**
 * Concatenates the sub-blocks starting at `offset`, up to their terminator or the end of the
 * file (`cutAt`: where the file ended inside them); `next` is the offset after the terminator.
 * With `pastTerminators`, empty blocks are skipped rather than ending the list, as Pillow reads
 * image data: it takes blocks until the frame is full, whatever follows the frame's own.
 */
function readSubBlocks(bytes: Uint8Array, offset: number, pastTerminators = false): { data: Uint8Array; next: number; cutAt?: number } {
  const parts: Uint8Array[] = [];
  let cutAt: number | undefined;
  for (;;) {
    if (offset >= bytes.length) {
      cutAt = offset;
      break;
    }
    const size = bytes[offset]!;
    if (size === 0 && !pastTerminators) break;
    // Like Pillow, a sub-block the file cuts short is not read at all.
    if (offset + 1 + size > bytes.length) {
      cutAt = offset;
      break;
    }
    parts.push(bytes.subarray(offset + 1, offset + 1 + size));
    offset += 1 + size;
  }
  const data = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    data.set(part, at);
    at += part.length;
  }
  return { data, next: offset + 1, cutAt };
}

/**
 * LZW-decodes `pixelCount` indices (GIF's variant: variable code width up to 12 bits, clear and
 * end codes, no new entries once the table is full). Data after the frame is complete is ignored.
 */
function decodeLzw(data: Uint8Array, minimumCodeSize: number, pixelCount: number, label: string): Uint8Array {
  const clear = 1 << minimumCodeSize;
  const end = clear + 1;
  const prefix = new Int16Array(1 << MAX_CODE_WIDTH);
  const suffix = new Uint8Array(1 << MAX_CODE_WIDTH);
  const firstOf = new Uint8Array(1 << MAX_CODE_WIDTH);
  const stack = new Uint8Array(1 << MAX_CODE_WIDTH);
  for (let code = 0; code < clear; code++) {
    suffix[code] = code;
    firstOf[code] = code;
    prefix[code] = -1;
  }
  const out = new Uint8Array(pixelCount);
  let written = 0;
  let width = minimumCodeSize + 1;
  let next = end + 1;
  let previous = -1;
  let bitBuffer = 0;
  let bitCount = 0;
  let at = 0;
  while (written < pixelCount) {
    while (bitCount < width && at < data.length) {
      bitBuffer |= data[at++]! << bitCount;
      bitCount += 8;
    }
    if (bitCount < width) break;
    const code = bitBuffer & ((1 << width) - 1);
    bitBuffer >>>= width;
    bitCount -= width;
    if (code === clear) {
      width = minimumCodeSize + 1;
      next = end + 1;
      previous = -1;
      continue;
    }
    if (code === end) break;
    if (code > next || (code === next && previous < 0)) {
      throw new ImageDecodeError(label, `corrupt GIF: LZW code ${code} is not defined yet (next free code ${next}) after ${written} pixels`);
    }
    // Unwind the code's string onto the stack (for code === next: previous's string + its first byte).
    let depth = 0;
    let walk = code === next ? previous : code;
    if (code === next) stack[depth++] = firstOf[previous]!;
    while (walk >= 0) {
      stack[depth++] = suffix[walk]!;
      walk = prefix[walk]!;
    }
    while (depth > 0 && written < pixelCount) out[written++] = stack[--depth]!;
    if (previous >= 0 && next < 1 << MAX_CODE_WIDTH) {
      prefix[next] = previous;
      suffix[next] = firstOf[code === next ? previous : code]!;
      firstOf[next] = firstOf[previous]!;
      next++;
      if (next === 1 << width && width < MAX_CODE_WIDTH) width++;
    }
    previous = code;
  }
  if (written < pixelCount) {
    throw new ImageDecodeError(label, `truncated GIF: the image data ends after ${written} of ${pixelCount} pixels`);
  }
  return out;
}

export function decodeGif(bytes: Uint8Array, label: string, maxPixels: number): RgbImage {
  const { screenWidth, screenHeight, frame } = readFirstFrame(bytes, label);
  const width = Math.max(screenWidth, frame.left + frame.width);
  const height = Math.max(screenHeight, frame.top + frame.height);
  checkImageSize(width, height, maxPixels, label);
  // Like Pillow, a file cut after the frame's last pixel still decodes.
  const { data } = readSubBlocks(bytes, frame.dataOffset, true);
  const frameIndices = decodeLzw(data, frame.minimumCodeSize, frame.width * frame.height, label);

  const canvas = new Uint8Array(width * height).fill(frame.transparentIndex ?? 0);
  const rowOrder = frame.interlaced
    ? INTERLACE_PASSES.flatMap(([first, step]) => Array.from({ length: Math.ceil(Math.max(0, frame.height - first) / step) }, (_, i) => first + i * step))
    : Array.from({ length: frame.height }, (_, i) => i);
  rowOrder.forEach((row, storedRow) => {
    const source = frameIndices.subarray(storedRow * frame.width, (storedRow + 1) * frame.width);
    canvas.set(source, (frame.top + row) * width + frame.left);
  });
  return indicesToRgb(canvas, pillowPalette(frame.palette ?? new Uint8Array(0), 3, false), width, height);
}
