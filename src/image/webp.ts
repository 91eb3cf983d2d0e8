/**
 * WebP → 8-bit RGB as Pillow 9.4 decodes it: with libwebp (lossy VP8 with libwebp's fancy
 * upsampling, lossless VP8L), alpha dropped by `convert("RGB")`. The decoder is libwebp as
 * WebAssembly from `@jsquash/webp` (its Emscripten glue, our inlined copy of its .wasm).
 *
 * The RIFF container is read first, so that truncation, animation and sizes over the pixel limit
 * are refused with their own message before libwebp allocates the canvas.
 */
import webpDecoderFactory from '@jsquash/webp/codec/dec/webp_dec.js';
import { checkImageSize, ImageDecodeError, type RgbImage } from './errors.js';
import { LIBWEBP_WASM } from './wasm/libwebp.wasm.js';
import { lazyWasmModule } from './wasm/load.js';

const RIFF_HEADER_LENGTH = 12;
const CHUNK_HEADER_LENGTH = 8;
const VP8X_ANIMATION = 0x02;
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
      if (bytes[payload]! & VP8X_ANIMATION) throw new ImageDecodeError(label, 'unsupported WebP: animated WebP images are not supported');
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

interface WebpModule {
  decode(data: BufferSource): { width: number; height: number; data: Uint8ClampedArray } | null;
}

const libwebpModule = lazyWasmModule(LIBWEBP_WASM);
let libwebp: Promise<WebpModule> | undefined;

/** One libwebp instance per process: its decoder keeps no state between images. */
function loadLibwebp(): Promise<WebpModule> {
  libwebp ??= libwebpModule().then((module) =>
    webpDecoderFactory({
      noInitialRun: true,
      instantiateWasm(imports: WebAssembly.Imports, receive: (instance: WebAssembly.Instance) => void) {
        void WebAssembly.instantiate(module, imports).then(receive);
        return {};
      },
    }),
  );
  return libwebp;
}

export async function decodeWebp(bytes: Uint8Array, label: string, maxPixels: number): Promise<RgbImage> {
  const { width, height } = readCanvas(bytes, label);
  checkImageSize(width, height, maxPixels, label);
  let decoded: ReturnType<WebpModule['decode']>;
  try {
    decoded = (await loadLibwebp()).decode(bytes as Uint8Array<ArrayBuffer>);
  } catch (error) {
    // An Emscripten abort leaves the instance unusable: the next image gets a new one.
    libwebp = undefined;
    throw new ImageDecodeError(label, `corrupt WebP: libwebp fails on its bitstream (${(error as Error).message})`);
  }
  if (decoded === null) throw new ImageDecodeError(label, 'corrupt WebP: libwebp cannot decode its bitstream');
  if (decoded.width !== width || decoded.height !== height) {
    throw new ImageDecodeError(label, `corrupt WebP: libwebp decodes ${decoded.width}×${decoded.height}, the header says ${width}×${height}`);
  }
  const rgba = decoded.data;
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    data[p * 3] = rgba[p * 4]!;
    data[p * 3 + 1] = rgba[p * 4 + 1]!;
    data[p * 3 + 2] = rgba[p * 4 + 2]!;
  }
  return { width, height, data };
}
