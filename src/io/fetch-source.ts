/**
 * A `ByteSource` over HTTP: each read is one range request (`Range: bytes=a-b`), so a checkpoint
 * served beside a web page is read tensor by tensor, never held whole in memory. A server that
 * ignores ranges (answers 200 with the whole body) is read once, in full, and served from memory.
 * `blob:` and `data:` URLs, and `Blob`s (a dropped `File`), are sliced locally.
 *
 * Errors name the URL, the byte range and the HTTP status.
 */
import { type ByteSource, type ErrorClass, memorySource } from './byte-source.js';

export interface FetchSourceOptions {
  /** Thrown for HTTP and size failures; default `Error`. */
  errorClass?: ErrorClass;
  /** Called as the bytes of a whole-file download (a server without ranges) arrive. */
  onDownload?: (loadedBytes: number, totalBytes: number) => void;
}

/** The size from `Content-Range: bytes 0-0/SIZE`, if present and valid. */
function totalFromContentRange(header: string | null): number | undefined {
  const match = header?.match(/^bytes \d+-\d+\/(\d+)$/);
  return match ? Number(match[1]) : undefined;
}

/** Reads a response body to its end, reporting progress against `total` (0 when unknown). */
async function readBody(response: Response, total: number, onDownload?: (loaded: number, total: number) => void): Promise<Uint8Array<ArrayBuffer>> {
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let loaded = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    onDownload?.(loaded, total);
  }
  return new Uint8Array(await new Blob(chunks).arrayBuffer());
}

/** A source over a `Blob` (a `File` the user dropped, or a `blob:` URL's contents). */
export function blobSource(blob: Blob): ByteSource {
  return {
    size: blob.size,
    readAt: async (offset: number, length: number) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()),
    close: async () => {},
  };
}

/**
 * Opens `url` for positioned reads. The first request asks for byte 0 only: a 206 answer gives
 * the size (Content-Range) and every later read is a range request; a 200 answer is the whole
 * file, kept in memory.
 */
export async function openFetchSource(url: URL, { errorClass = Error, onDownload }: FetchSourceOptions = {}): Promise<ByteSource> {
  if (url.protocol === 'blob:' || url.protocol === 'data:') {
    const response = await fetch(url);
    if (!response.ok) throw new errorClass(`${url.href}: cannot read (HTTP ${response.status})`);
    return blobSource(await response.blob());
  }
  const probe = await fetch(url, { headers: { Range: 'bytes=0-0' } });
  if (probe.status === 200) {
    const total = Number(probe.headers.get('Content-Length') ?? 0);
    return memorySource(await readBody(probe, total, onDownload));
  }
  if (probe.status !== 206) throw new errorClass(`${url.href}: cannot read (HTTP ${probe.status} ${probe.statusText})`.trimEnd());
  await probe.body?.cancel();
  const size = totalFromContentRange(probe.headers.get('Content-Range'));
  if (size === undefined) {
    throw new errorClass(`${url.href}: the server answered a range request without the file's size (Content-Range: ${probe.headers.get('Content-Range')})`);
  }
  return {
    size,
    async readAt(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
      if (length === 0) return new Uint8Array(0);
      const range = `bytes ${offset}..${offset + length}`;
      const response = await fetch(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
      if (response.status !== 206) {
        await response.body?.cancel();
        throw new errorClass(`${url.href}: range request for ${range} answered HTTP ${response.status} (expected 206)`);
      }
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (bytes.byteLength !== length) {
        throw new errorClass(`${url.href}: range request for ${range} returned ${bytes.byteLength} bytes (was the file replaced while it was read?)`);
      }
      return bytes;
    },
    close: async () => {},
  };
}
