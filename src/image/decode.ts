/**
 * Image bytes → 8-bit RGB, with the semantics of Pillow 9.4's `Image.open(f).convert("RGB")`
 * (which made OFA's training data and the project's golden data). The format comes from the
 * bytes, never from a file name. Decoding takes bytes only (no file system), so it runs the same
 * in Node, Deno and a browser; JPEG and WebP run libjpeg-turbo and libwebp as WebAssembly, which
 * is why it is asynchronous.
 *
 * Every decoder checks the size its header declares against `maxPixels` and that its data can
 * hold that many pixels before allocating the image, and answers bad input with an
 * `ImageDecodeError` naming the file, the part at fault and the problem.
 */
import { decodeBmp } from './bmp.js';
import { type DecodeOptions, ImageDecodeError, maxPixelsOf, type RgbImage } from './errors.js';
import { decodeGif } from './gif.js';
import { decodeJpeg } from './jpeg.js';
import { decodePng } from './png.js';
import { decodeWebp } from './webp.js';

export { DEFAULT_MAX_PIXELS, type DecodeOptions, ImageDecodeError, type RgbImage } from './errors.js';

interface Signature {
  bytes: readonly number[];
  at?: number;
}

const DECODERS: ReadonlyArray<{
  signatures: Signature[];
  decode(bytes: Uint8Array, label: string, maxPixels: number): RgbImage | Promise<RgbImage>;
}> = [
  { signatures: [{ bytes: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] }], decode: decodePng },
  { signatures: [{ bytes: [0xff, 0xd8, 0xff] }], decode: decodeJpeg },
  {
    signatures: [{ bytes: [0x52, 0x49, 0x46, 0x46] }, { bytes: [0x57, 0x45, 0x42, 0x50], at: 8 }],
    decode: decodeWebp,
  },
  { signatures: [{ bytes: [0x47, 0x49, 0x46, 0x38] }], decode: decodeGif },
  { signatures: [{ bytes: [0x42, 0x4d] }], decode: decodeBmp },
];

/** Formats recognised only to name them in the error. */
const UNSUPPORTED: ReadonlyArray<{ name: string; signature: Signature }> = [
  { name: 'TIFF', signature: { bytes: [0x49, 0x49, 0x2a, 0x00] } },
  { name: 'TIFF', signature: { bytes: [0x4d, 0x4d, 0x00, 0x2a] } },
  { name: 'AVIF/HEIF', signature: { bytes: Array.from('ftyp', (c) => c.charCodeAt(0)), at: 4 } },
  { name: 'ICO', signature: { bytes: [0x00, 0x00, 0x01, 0x00] } },
];

function matches(bytes: Uint8Array, { bytes: signature, at = 0 }: Signature): boolean {
  return bytes.length >= at + signature.length && signature.every((byte, i) => bytes[at + i] === byte);
}

/** Decodes a PNG, JPEG, WebP, GIF (first frame) or BMP, recognised by its bytes, into RGB. */
export async function decodeImage(bytes: Uint8Array, label: string, options?: DecodeOptions): Promise<RgbImage> {
  const maxPixels = maxPixelsOf(options);
  if (bytes.length === 0) throw new ImageDecodeError(label, 'empty file, not an image');
  const decoder = DECODERS.find(({ signatures }) => signatures.every((signature) => matches(bytes, signature)));
  if (decoder === undefined) {
    const other = UNSUPPORTED.find(({ signature }) => matches(bytes, signature));
    const head = Array.from(bytes.subarray(0, 8), (byte) => byte.toString(16).padStart(2, '0')).join(' ');
    throw new ImageDecodeError(
      label,
      `${other === undefined ? 'unrecognised format' : `${other.name} images are not supported`} ` +
        `(first bytes ${head}); expected PNG, JPEG, WebP, GIF or BMP`,
    );
  }
  return decoder.decode(bytes, label, maxPixels);
}
