/**
 * WebP → 8-bit RGB as Pillow 9.4 decodes it: libwebp 1.2.4's animation decoder (lossy VP8 with
 * libwebp's fancy upsampling, lossless VP8L; the first frame of an animation) on an RGBA canvas,
 * alpha dropped by `convert("RGB")` — libwebp built for WebAssembly (scripts/libwebp-wasm/,
 * inlined in `wasm/libwebp.wasm.ts`), driven as Pillow's _webp.c drives it.
 *
 * The RIFF container is read first, so that truncation and sizes over the pixel limit are refused
 * with their own message before libwebp allocates the canvas.
 */
import { checkImageSize, ImageDecodeError, type RgbImage } from './errors.js';
import { LIBWEBP_WASM } from './wasm/libwebp.wasm.js';
import { instantiateWasi, lazyWasmModule, type WasiExports } from './wasm/load.js';

const RIFF_HEADER_LENGTH = 12;
const CHUNK_HEADER_LENGTH = 8;
const VP8L_SIGNATURE = 0x2f;
const VP8_START_CODE = [0x9d, 0x01, 0x2a];

interface WebpCanvas {
  width: number;
  height: number;
}

const fourcc = (bytes: Uint8Array, at: number): string => String.fromCharCode(...bytes.subarray(at, at + 4));

/** The image's size from its first chunk (VP8X's canvas, or the VP8 / VP8L bitstream header). */
function readCanvas(bytes: Uint8Array, label: string): WebpCanvas {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < RIFF_HEADER_LENGTH + CHUNK_HEADER_LENGTH + 10) throw new ImageDecodeError(label, 'truncated WebP: no complete first chunk');
  const riffEnd = 8 + view.getUint32(4, true);
  if (riffEnd > bytes.length) {
    throw new ImageDecodeError(label, `truncated WebP: the RIFF header declares ${riffEnd} bytes, the file has ${bytes.length}`);
  }
  const chunk = fourcc(bytes, RIFF_HEADER_LENGTH);
  const chunkLength = view.getUint32(RIFF_HEADER_LENGTH + 4, true);
  const payload = RIFF_HEADER_LENGTH + CHUNK_HEADER_LENGTH;
  if (payload + chunkLength > riffEnd) {
    throw new ImageDecodeError(label, `truncated WebP: the ${JSON.stringify(chunk)} chunk needs ${chunkLength} bytes, the RIFF data ends after ${riffEnd - payload}`);
  }
  switch (chunk) {
    case 'VP8X':
      return {
        width: 1 + (view.getUint32(payload + 4, true) & 0xffffff),
        height: 1 + (view.getUint32(payload + 7, true) & 0xffffff),
      };
    case 'VP8 ':
      if (!VP8_START_CODE.every((byte, i) => bytes[payload + 3 + i] === byte)) {
        throw new ImageDecodeError(label, 'corrupt WebP: the VP8 chunk lacks its start code');
      }
      return { width: view.getUint16(payload + 6, true) & 0x3fff, height: view.getUint16(payload + 8, true) & 0x3fff };
    case 'VP8L': {
      if (bytes[payload] !== VP8L_SIGNATURE) throw new ImageDecodeError(label, 'corrupt WebP: the VP8L chunk lacks its signature byte');
      const bits = view.getUint32(payload + 1, true);
      return { width: 1 + (bits & 0x3fff), height: 1 + ((bits >>> 14) & 0x3fff) };
    }
    default:
      throw new ImageDecodeError(label, `corrupt WebP: unknown first chunk ${JSON.stringify(chunk)}`);
  }
}

interface LibwebpExports extends WasiExports {
  /** 0, or 1 (no decoder: the container) or 2 (the first frame does not decode); `result` gets width, height, pixels. */
  decode_first_frame(input: number, size: number, result: number): number;
}

const libwebp = lazyWasmModule(LIBWEBP_WASM);

export async function decodeWebp(bytes: Uint8Array, label: string, maxPixels: number): Promise<RgbImage> {
  const { width, height } = readCanvas(bytes, label);
  checkImageSize(width, height, maxPixels, label);
  const decoder = await instantiateWasi<LibwebpExports>(await libwebp());
  const input = decoder.malloc(bytes.length);
  const result = decoder.malloc(12);
  if (input === 0 || result === 0) throw new ImageDecodeError(label, `WebP too large: no memory for its ${bytes.length} bytes`);
  new Uint8Array(decoder.memory.buffer, input, bytes.length).set(bytes);
  const status = decoder.decode_first_frame(input, bytes.length, result);
  // Pillow's two failures: "could not create decoder object" and "failed to read next frame".
  if (status === 1) throw new ImageDecodeError(label, 'corrupt WebP: libwebp cannot read its chunks (RIFF container or frame headers)');
  if (status !== 0) throw new ImageDecodeError(label, 'corrupt WebP: libwebp cannot decode its first frame');
  const [canvasWidth, canvasHeight, pixels] = new Uint32Array(decoder.memory.buffer, result, 3);
  if (canvasWidth !== width || canvasHeight !== height) {
    throw new ImageDecodeError(label, `corrupt WebP: libwebp decodes a ${canvasWidth}×${canvasHeight} canvas, the header says ${width}×${height}`);
  }
  const rgba = new Uint8Array(decoder.memory.buffer, pixels!, width * height * 4);
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    data[p * 3] = rgba[p * 4]!;
    data[p * 3 + 1] = rgba[p * 4 + 1]!;
    data[p * 3 + 2] = rgba[p * 4 + 2]!;
  }
  return { width, height, data };
}
