/**
 * Run by Deno (test/image/deno.test.ts): decodes every golden preprocess-jpeg file with the module
 * whose path is the first argument — the sources, or a browser bundle of them — reading files
 * with Deno's own API, and prints one JSON line: per file, how many bytes differ from Pillow's.
 */
declare const Deno: { args: string[]; readFile(path: string | URL): Promise<Uint8Array> };

const { decodeImage } = (await import(new URL(Deno.args[0]!, import.meta.url).href)) as typeof import('../../src/image/decode.js');
const folder = new URL('../fixtures/preprocess-jpeg/', import.meta.url);
const expected = await Deno.readFile(new URL('expected.safetensors', folder));
const view = new DataView(expected.buffer, expected.byteOffset);
const headerLength = Number(view.getBigUint64(0, true));
const header = JSON.parse(new TextDecoder().decode(expected.subarray(8, 8 + headerLength))) as Record<string, { data_offsets: [number, number] }>;
const manifest = JSON.parse(new TextDecoder().decode(await Deno.readFile(new URL('manifest.json', folder)))) as { cases: { file: string }[] };

const differing: Record<string, number> = {};
for (const { file } of manifest.cases.filter(({ file }) => file !== 'edges.gif')) {
  const [start, end] = header[`${file.replace(/\.[a-z]+$/, '')}.decoded_uint8`]!.data_offsets;
  const reference = expected.subarray(8 + headerLength + start, 8 + headerLength + end);
  const { data } = await decodeImage(await Deno.readFile(new URL(file, folder)), file);
  differing[file] = data.length === reference.length ? data.reduce((count, byte, i) => count + (byte === reference[i] ? 0 : 1), 0) : -1;
}
console.log(JSON.stringify(differing));
