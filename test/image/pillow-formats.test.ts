/**
 * Every format decodes to exactly the bytes Pillow 9.4 gives (`Image.open(f).convert("RGB")`),
 * and the golden set's model inputs follow byte for byte. Fixtures: test/fixtures/preprocess-jpeg/.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeImage, ImageDecodeError } from '../../src/image/decode.js';
import { preprocessImage } from '../../src/image/preprocess.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';

const GOLDEN = new URL('../fixtures/preprocess-jpeg/', import.meta.url);
const PILLOW = new URL('pillow/', GOLDEN);

async function readManifest<T>(folder: URL): Promise<T[]> {
  return (JSON.parse(await readFile(new URL('manifest.json', folder), 'utf8')) as { cases: T[] }).cases;
}

async function readExpected(folder: URL, names: string[]): Promise<Map<string, Uint8Array>> {
  const file = await SafetensorsFile.open(fileURLToPath(new URL('expected.safetensors', folder)));
  try {
    return new Map(await Promise.all(names.map(async (name) => [name, await file.readBytes(name)] as const)));
  } finally {
    await file.close();
  }
}

/** How many bytes differ (0 is the requirement; the count makes a failure readable). */
function differingBytes(actual: Uint8Array, expected: Uint8Array): number {
  expect(actual.length).toBe(expected.length);
  let count = 0;
  for (let i = 0; i < expected.length; i++) if (actual[i] !== expected[i]) count++;
  return count;
}

interface GoldenCase {
  file: string;
  format: string;
  mode: string;
  size: [number, number];
  target: number;
}

// The golden set names tensors by file stem, so edges.gif and edges.bmp share `edges.*`, which
// holds the BMP's pixels; the GIF's expected pixels are in the Pillow-made set below.
const NOT_IN_GOLDEN = new Set(['edges.gif']);

describe('decodeImage and preprocessImage: the golden JPEG, WebP and BMP files, byte for byte', async () => {
  const cases = (await readManifest<GoldenCase>(GOLDEN)).filter(({ file }) => !NOT_IN_GOLDEN.has(file));
  const stem = (file: string): string => file.replace(/\.[a-z]+$/, '');
  const expected = await readExpected(
    GOLDEN,
    cases.flatMap(({ file }) => [`${stem(file)}.decoded_uint8`, `${stem(file)}.resized_uint8`]),
  );

  it.each(cases)('$file ($format $mode, $size → $target)', async ({ file, size, target }) => {
    const bytes = new Uint8Array(await readFile(new URL(file, GOLDEN)));
    const decoded = await decodeImage(bytes, file);
    expect([decoded.width, decoded.height]).toEqual(size);
    expect(differingBytes(decoded.data, expected.get(`${stem(file)}.decoded_uint8`)!)).toBe(0);
    const { resized } = await preprocessImage(bytes, target, file);
    expect(differingBytes(resized.data, expected.get(`${stem(file)}.resized_uint8`)!)).toBe(0);
  });
});

interface PillowCase {
  file: string;
  mode?: string;
  size?: [number, number];
  pillow_error?: string;
}

describe('decodeImage: GIF, BMP and WebP variants and damaged files, made and decoded by Pillow 9.4', async () => {
  const cases = await readManifest<PillowCase>(PILLOW);
  const decodable = cases.filter((c) => c.pillow_error === undefined);
  const expected = await readExpected(PILLOW, decodable.map(({ file }) => `${file}.decoded_uint8`));

  it.each(decodable)('$file ($mode, $size)', async ({ file, size }) => {
    const decoded = await decodeImage(new Uint8Array(await readFile(new URL(file, PILLOW))), file);
    expect([decoded.width, decoded.height]).toEqual(size);
    expect(differingBytes(decoded.data, expected.get(`${file}.decoded_uint8`)!)).toBe(0);
  });

  it.each(cases.filter((c) => c.pillow_error !== undefined))('$file is refused, as by Pillow ($pillow_error)', async ({ file }) => {
    const refusal = decodeImage(new Uint8Array(await readFile(new URL(file, PILLOW))), file);
    await expect(refusal).rejects.toThrow(ImageDecodeError);
    await expect(refusal).rejects.toThrow(new RegExp(`^${file.replace('.', '\\.')}: (truncated|corrupt) (GIF|BMP|JPEG|WebP): `));
  });
});
