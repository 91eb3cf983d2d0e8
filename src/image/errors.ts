/** What every image decoder shares: its error, the pixel limit and the decoded image's shape. */

export interface RgbImage {
  width: number;
  height: number;
  /** Row-major HWC, 3 bytes per pixel. */
  data: Uint8Array;
}

/** Raised for bytes that are not a decodable image; the message starts with the caller's label. */
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
 * Largest image decoded by default, in pixels: covers 48 MP phone photos while refusing
 * decompression bombs, whose headers claim sizes their data cannot hold. Every decoder checks
 * the size its header declares against the limit before allocating anything of that size.
 */
export const DEFAULT_MAX_PIXELS = 50_000_000;

export interface DecodeOptions {
  /** Refuse images with more pixels than this (default {@link DEFAULT_MAX_PIXELS}). */
  maxPixels?: number;
}

/** The limit in force, checked once so that every decoder can trust it. */
export function maxPixelsOf(options: DecodeOptions | undefined): number {
  const maxPixels = options?.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!Number.isSafeInteger(maxPixels) || maxPixels < 1) {
    throw new RangeError(`maxPixels must be a positive integer, got ${maxPixels}`);
  }
  return maxPixels;
}

/** Refuses a zero or over-limit size that a header declares, before anything is allocated for it. */
export function checkImageSize(width: number, height: number, maxPixels: number, label: string): void {
  if (width === 0 || height === 0) {
    throw new ImageDecodeError(label, `image has zero size (${width}×${height})`);
  }
  if (width * height > maxPixels) {
    throw new ImageDecodeError(
      label,
      `image is ${width}×${height} (${formatPixels(width * height)}), more than the limit of ` +
        `${formatPixels(maxPixels)} (maxPixels, --max-pixels)`,
    );
  }
}

function formatPixels(pixels: number): string {
  return pixels >= 1e6 ? `${+(pixels / 1e6).toFixed(1)} megapixels` : `${pixels} pixels`;
}

/**
 * A palette as Pillow holds it: 256 entries that start as a grey ramp (index i is (i, i, i))
 * and are overwritten by the file's colours, so indices beyond a short palette read as grey.
 */
export function pillowPalette(colours: Uint8Array, bytesPerEntry: 3 | 4, bgrOrder: boolean): Uint8Array {
  const palette = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) palette.fill(i, i * 3, i * 3 + 3);
  const entries = Math.min(256, Math.floor(colours.length / bytesPerEntry));
  for (let i = 0; i < entries; i++) {
    const at = i * bytesPerEntry;
    palette[i * 3] = colours[at + (bgrOrder ? 2 : 0)]!;
    palette[i * 3 + 1] = colours[at + 1]!;
    palette[i * 3 + 2] = colours[at + (bgrOrder ? 0 : 2)]!;
  }
  return palette;
}

/** Indices (one byte per pixel) → RGB through a 256-entry palette. */
export function indicesToRgb(indices: Uint8Array, palette: Uint8Array, width: number, height: number): RgbImage {
  const data = new Uint8Array(indices.length * 3);
  for (let p = 0; p < indices.length; p++) {
    const entry = indices[p]! * 3;
    data[p * 3] = palette[entry]!;
    data[p * 3 + 1] = palette[entry + 1]!;
    data[p * 3 + 2] = palette[entry + 2]!;
  }
  return { width, height, data };
}
