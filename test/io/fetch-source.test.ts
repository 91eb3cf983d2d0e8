/**
 * Reading files over HTTP (io/fetch-source.ts, io/location.ts) against a real server on
 * 127.0.0.1: with range requests (sirv, as `npm run demo` serves), without them (a whole-file
 * answer), and failing; the bytes must be the file's, and a safetensors file read over HTTP must
 * give the tensors it gives from disk.
 */
import { readFile } from 'node:fs/promises';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import sirv from 'sirv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SafetensorsError, SafetensorsFile } from '../../src/io/safetensors.js';
import { blobSource, openFetchSource } from '../../src/io/fetch-source.js';
import { FileReadError, exists, openByteSource, readBytes } from '../../src/io/location.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/preprocess/', import.meta.url));
const FILE = 'expected.safetensors';

let ranged: URL;
let whole: URL;
const servers: Server[] = [];
const requests: string[] = [];

async function listen(handler: Parameters<typeof createServer>[1]): Promise<URL> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
}

beforeAll(async () => {
  const files = sirv(FIXTURES, { dev: true });
  ranged = await listen((request, response) => {
    requests.push(request.headers.range ?? 'whole');
    files(request, response, () => {
      response.writeHead(404).end();
    });
  });
  // A server that ignores Range headers: every answer is the whole file (or 404).
  whole = await listen((request, response) => {
    const name = new URL(request.url ?? '/', 'http://x').pathname.slice(1);
    readFile(`${FIXTURES}${name}`).then(
      (bytes) => response.writeHead(200, { 'Content-Length': bytes.length }).end(bytes),
      () => response.writeHead(404).end(),
    );
  });
});

afterAll(() => Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve)))));

describe('reading over HTTP', () => {
  it('reads ranges of a file with range requests, one per read, and never the whole file', async () => {
    const disk = await readFile(`${FIXTURES}${FILE}`);
    requests.length = 0;
    const source = await openFetchSource(new URL(FILE, ranged));
    expect(source.size).toBe(disk.length);
    expect(Array.from(await source.readAt(3, 5))).toEqual(Array.from(disk.subarray(3, 8)));
    expect(Array.from(await source.readAt(disk.length - 7, 7))).toEqual(Array.from(disk.subarray(disk.length - 7)));
    expect(requests).toEqual(['bytes=0-0', 'bytes=3-7', `bytes=${disk.length - 7}-${disk.length - 1}`]);
  });

  it('downloads the file once, with progress, where the server has no range requests', async () => {
    const disk = await readFile(`${FIXTURES}${FILE}`);
    const progress: number[] = [];
    const source = await openFetchSource(new URL(FILE, whole), { onDownload: (loaded) => progress.push(loaded) });
    expect(source.size).toBe(disk.length);
    expect(Array.from(await source.readAt(11, 4))).toEqual(Array.from(disk.subarray(11, 15)));
    expect(progress.at(-1)).toBe(disk.length);
  });

  it('gives the tensors a safetensors file gives from disk, with either server', async () => {
    const fromDisk = await SafetensorsFile.open(`${FIXTURES}${FILE}`);
    try {
      for (const base of [ranged, whole]) {
        const overHttp = await SafetensorsFile.fromSource(await openByteSource(new URL(FILE, base), { errorClass: SafetensorsError }), FILE);
        for (const info of fromDisk.tensors.values()) {
          expect(Array.from(await overHttp.readBytes(info.name)), `${info.name} from ${base.href}`).toEqual(Array.from(await fromDisk.readBytes(info.name)));
        }
      }
    } finally {
      await fromDisk.close();
    }
  });

  it('names the URL and the HTTP status of a missing file, and reads a Blob by slices', async () => {
    const missing = new URL('missing.safetensors', ranged);
    await expect(openFetchSource(missing)).rejects.toThrow(`${missing.href}: cannot read (HTTP 404`);
    await expect(readBytes(missing)).rejects.toThrow(FileReadError);
    expect(await exists(missing)).toBe(false);
    expect(await exists(new URL(FILE, ranged))).toBe(true);
    const blob = blobSource(new Blob([Uint8Array.from([1, 2, 3, 4, 5])]));
    expect(Array.from(await blob.readAt(1, 3))).toEqual([2, 3, 4]);
  });
});
