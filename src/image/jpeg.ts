/**
 * JPEG → 8-bit RGB exactly as Pillow 9.4 decodes it: Pillow uses libjpeg-turbo 2.1 (islow
 * integer IDCT, "fancy" interpolated chroma upsampling), and so do we: libjpeg-turbo 2.1.5's
 * decompressor built for WebAssembly (scripts/libjpeg-turbo-wasm/, inlined in
 * `wasm/libjpeg-turbo.wasm.ts`), driven as Pillow's JpegDecode.c drives it.
 *
 * Grey and YCbCr images come out as RGB from libjpeg-turbo itself; CMYK and YCCK images come out
 * as CMYK, which Pillow reads as inverted (Adobe's convention, rawmode "CMYK;I") and converts
 * with its own formula.
 *
 * Before any WebAssembly runs, a walk over the marker segments up to the first scan finds what
 * libjpeg would only report after allocating the whole image: a size over the pixel limit, a
 * file without image data, and data too short to hold the image it declares. Like Pillow, a file
 * whose data ends before the last row is truncated; once every row is there, the rest may be
 * missing or damaged.
 */
import { checkImageSize, ImageDecodeError, type RgbImage } from './errors.js';
import { LIBJPEG_TURBO_WASM } from './wasm/libjpeg-turbo.wasm.js';
import { instantiateWasi, lazyWasmModule, type WasiExports } from './wasm/load.js';

const Marker = {
  SOI: 0xd8,
  EOI: 0xd9,
  SOS: 0xda,
  DHT: 0xc4,
  JPG: 0xc8,
  DAC: 0xcc,
  RST0: 0xd0,
  RST7: 0xd7,
  TEM: 0x01,
} as const;

/** Frame types libjpeg-turbo decodes: baseline, extended sequential and progressive with Huffman coding, then the last two with arithmetic coding. */
const HUFFMAN_FRAMES = new Set([0xc0, 0xc1, 0xc2]);
const SUPPORTED_FRAMES = new Set([...HUFFMAN_FRAMES, 0xc9, 0xca]);

const isStartOfFrame = (marker: number): boolean =>
  marker >= 0xc0 && marker <= 0xcf && marker !== Marker.DHT && marker !== Marker.JPG && marker !== Marker.DAC;
const hex = (marker: number): string => `0xFF${marker.toString(16).toUpperCase().padStart(2, '0')}`;

interface JpegFrame {
  width: number;
  height: number;
  /** Total 8×8 blocks over all components (each at its own sampled size). */
  blocks: number;
  huffman: boolean;
}

/** Parses a start-of-frame segment's payload (after the length field). */
function readFrame(bytes: Uint8Array, marker: number, at: number, length: number, label: string): JpegFrame {
  if (!SUPPORTED_FRAMES.has(marker)) {
    throw new ImageDecodeError(label, `unsupported JPEG: frame type ${hex(marker)} at byte ${at} (lossless or hierarchical) is not supported`);
  }
  const body = at + 4;
  const components = bytes[body + 5] ?? 0;
  if (length < 8 || length !== 8 + 3 * components || components === 0) {
    throw new ImageDecodeError(label, `corrupt JPEG: frame header at byte ${at} is ${length} bytes for ${components} components`);
  }
  const precision = bytes[body]!;
  if (precision !== 8) throw new ImageDecodeError(label, `unsupported JPEG: ${precision}-bit samples (frame header at byte ${at}); only 8-bit JPEGs are supported`);
  const height = (bytes[body + 1]! << 8) | bytes[body + 2]!;
  const width = (bytes[body + 3]! << 8) | bytes[body + 4]!;
  const sampling = Array.from({ length: components }, (_, c) => bytes[body + 7 + 3 * c]!);
  const horizontal = sampling.map((factor) => factor >> 4);
  const vertical = sampling.map((factor) => factor & 15);
  if ([...horizontal, ...vertical].some((factor) => factor < 1 || factor > 4)) {
    throw new ImageDecodeError(label, `corrupt JPEG: sampling factors out of range 1..4 in the frame header at byte ${at}`);
  }
  const maxH = Math.max(...horizontal);
  const maxV = Math.max(...vertical);
  let blocks = 0;
  for (let c = 0; c < components; c++) {
    blocks += Math.ceil((width * horizontal[c]!) / maxH / 8) * Math.ceil((height * vertical[c]!) / maxV / 8);
  }
  return { width, height, blocks, huffman: HUFFMAN_FRAMES.has(marker) };
}

/**
 * Walks the marker segments up to the first scan as libjpeg reads them (garbage between segments
 * skipped, as libjpeg does with a warning): the frame header must come before it, whole, and
 * within the pixel limit. What follows the first scan header is libjpeg's to judge, as for Pillow.
 */
function readStructure(bytes: Uint8Array, maxPixels: number, label: string): JpegFrame {
  let frame: JpegFrame | undefined;
  let offset = 2;
  for (;;) {
    while (offset < bytes.length && bytes[offset] !== 0xff) offset++;
    while (offset + 1 < bytes.length && bytes[offset + 1] === 0xff) offset++;
    if (offset + 1 >= bytes.length) {
      throw new ImageDecodeError(label, `truncated JPEG: the file ends before the ${frame === undefined ? 'frame header (SOF)' : 'image data (SOS)'}`);
    }
    const marker = bytes[offset + 1]!;
    const at = offset;
    if (marker === 0 || marker === Marker.TEM || (marker >= Marker.RST0 && marker <= Marker.RST7)) {
      offset += 2;
      continue;
    }
    if (marker === Marker.EOI) throw new ImageDecodeError(label, `corrupt JPEG: end-of-image marker at byte ${at} before any image data (no SOS scan)`);
    if (marker === Marker.SOI) throw new ImageDecodeError(label, `corrupt JPEG: a second start-of-image marker at byte ${at}`);
    if (offset + 4 > bytes.length) throw new ImageDecodeError(label, `truncated JPEG: the file ends inside the ${hex(marker)} segment at byte ${at}`);
    const length = (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
    // libjpeg skips a segment with a length under 2 after its length field (its readers of
    // tables and headers then refuse it themselves).
    const end = offset + 2 + Math.max(length, 2);
    if (end > bytes.length) {
      throw new ImageDecodeError(label, `truncated JPEG: the ${hex(marker)} segment at byte ${at} needs ${length + 2} bytes, the file ends after ${bytes.length - at}`);
    }
    if (isStartOfFrame(marker)) {
      if (frame !== undefined) throw new ImageDecodeError(label, `corrupt JPEG: a second frame header (SOF) at byte ${at}`);
      frame = readFrame(bytes, marker, at, length, label);
      checkImageSize(frame.width, frame.height, maxPixels, label);
    }
    if (marker === Marker.SOS) {
      if (frame === undefined) throw new ImageDecodeError(label, `corrupt JPEG: image data (SOS) at byte ${at} before any frame header (SOF)`);
      checkDataSuffices(frame, bytes.length - end, label);
      return frame;
    }
    offset = end;
  }
}

/**
 * Huffman coding spends at least one bit per block on its DC coefficient, so what follows the
 * first scan header must hold a bit for every block: a few kilobytes cannot be a 7000×7000 image
 * (libjpeg, and Pillow, would decode it as grey where the data is missing).
 */
function checkDataSuffices(frame: JpegFrame, dataBytes: number, label: string): void {
  if (frame.huffman && dataBytes * 8 < frame.blocks) {
    throw new ImageDecodeError(
      label,
      `corrupt JPEG: ${dataBytes} bytes of image data are too few for the ${frame.blocks} blocks of a ` +
        `${frame.width}×${frame.height} image (at least ${Math.ceil(frame.blocks / 8)} bytes)`,
    );
  }
}

/** libjpeg's J_COLOR_SPACE values that decode to CMYK. */
const ColorSpace = { CMYK: 4, YCCK: 5 } as const;

/** A fatal libjpeg error (its message text), thrown by the host's `fatal` import. */
class LibjpegError extends Error {}

interface LibjpegExports extends WasiExports {
  /** Reads the headers; writes width, height, colour space and component count to `header`. */
  open_decoder(input: number, size: number, header: number): number;
  /** Decodes every row to RGB (or CMYK) at `pixels`; 1 if the file ended before the last row. */
  decode(decoder: number, pixels: number, cmyk: number): number;
}

const libjpegTurbo = lazyWasmModule(LIBJPEG_TURBO_WASM);

/** libjpeg-turbo with its `fatal` import: libjpeg's message text, thrown. */
async function instantiateLibjpeg(): Promise<LibjpegExports> {
  return instantiateWasi<LibjpegExports>(await libjpegTurbo(), (memory) => ({
    fatal: (message: number): never => {
      const bytes = new Uint8Array(memory().buffer, message);
      throw new LibjpegError(new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0))));
    },
  }));
}

/** Runs a libjpeg call, turning its fatal error into one naming the file and the stage. */
function libjpegCall<T>(call: () => T, label: string, stage: string): T {
  try {
    return call();
  } catch (error) {
    if (!(error instanceof LibjpegError)) throw error;
    throw new ImageDecodeError(label, `corrupt or unsupported JPEG: ${error.message} (libjpeg-turbo, ${stage})`);
  }
}

/** Pillow's CMYK → RGB (Convert.c `cmyk2rgb`) on inverted samples (rawmode "CMYK;I"). */
function invertedCmykToRgb(cmyk: Uint8Array, pixels: number): Uint8Array {
  const rgb = new Uint8Array(pixels * 3);
  const mulDiv255 = (a: number, b: number): number => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let p = 0; p < pixels; p++) {
    const notBlack = cmyk[p * 4 + 3]!;
    for (let c = 0; c < 3; c++) {
      rgb[p * 3 + c] = Math.max(0, notBlack - mulDiv255(255 - cmyk[p * 4 + c]!, notBlack));
    }
  }
  return rgb;
}

export async function decodeJpeg(bytes: Uint8Array, label: string, maxPixels: number): Promise<RgbImage> {
  const { width, height } = readStructure(bytes, maxPixels, label);
  const libjpeg = await instantiateLibjpeg();
  const input = libjpeg.malloc(bytes.length);
  const header = libjpeg.malloc(16);
  if (input === 0 || header === 0) throw new ImageDecodeError(label, `JPEG too large: no memory for its ${bytes.length} bytes`);
  new Uint8Array(libjpeg.memory.buffer, input, bytes.length).set(bytes);
  const decoder = libjpegCall(() => libjpeg.open_decoder(input, bytes.length, header), label, 'reading the headers');
  const [declaredWidth, declaredHeight, colorSpace] = new Int32Array(libjpeg.memory.buffer, header, 3);
  if (declaredWidth !== width || declaredHeight !== height) {
    throw new ImageDecodeError(label, `corrupt JPEG: libjpeg-turbo reads a ${declaredWidth}×${declaredHeight} frame, the frame header says ${width}×${height}`);
  }
  const cmyk = colorSpace === ColorSpace.CMYK || colorSpace === ColorSpace.YCCK;
  const channels = cmyk ? 4 : 3;
  const output = libjpeg.malloc(width * height * channels);
  if (output === 0) throw new ImageDecodeError(label, `JPEG too large: no memory for a ${width}×${height} image`);
  // Corrupt entropy data and garbage between segments are warnings that libjpeg decodes through,
  // as Pillow does; data that ends before the last row is Pillow's "image file is truncated".
  if (libjpegCall(() => libjpeg.decode(decoder, output, cmyk ? 1 : 0), label, 'decoding the image data') !== 0) {
    throw new ImageDecodeError(label, 'truncated JPEG: the file ends before the last row of the image');
  }
  const samples = new Uint8Array(libjpeg.memory.buffer, output, width * height * channels);
  return { width, height, data: cmyk ? invertedCmykToRgb(samples, width * height) : samples.slice() };
}
