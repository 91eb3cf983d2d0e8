/**
 * Where the engine reads its files from: a path or a `file:` URL (Node, Deno: `node:fs`, imported
 * only when used), or a URL that `fetch` reads (`http:`, `https:`, `blob:`, `data:`: browsers, and
 * Deno or Node reading from a server). The model, tokenizer and image loaders take either, so the
 * same code serves the CLI and a web page.
 */
import { type ByteSource, type ErrorClass, fileErrorReason, openFileSource } from './byte-source.js';
import { openFetchSource } from './fetch-source.js';

/**
 * A file or directory: a path, or a URL — a `URL`, or a string that starts like one (`http://`,
 * `https://`, `blob:`, `data:`, `file:`). Directory URLs end with `/`.
 */
export type FileLocation = string | URL;

const URL_STRING = /^(https?:\/\/|blob:|data:|file:)/i;

/** The location as a `URL` where it is one, else the path. */
function resolved(location: FileLocation): FileLocation {
  return typeof location === 'string' && URL_STRING.test(location) ? new URL(location) : location;
}

/** A path or a URL (rather than bytes in hand). */
export function isLocation(value: unknown): value is FileLocation {
  return typeof value === 'string' || value instanceof URL;
}

/** A URL that `fetch` reads (anything but `file:`). */
export function isFetched(location: FileLocation): boolean {
  const url = resolved(location);
  return url instanceof URL && url.protocol !== 'file:';
}

/** The location as it appears in messages: the path, or the URL. */
export function locationLabel(location: FileLocation): string {
  if (typeof location === 'string') return location;
  return location.protocol === 'file:' ? decodeURIComponent(location.pathname) : location.href;
}

/** The file `name` in the directory `dir`. */
export function childOf(dir: FileLocation, name: string): FileLocation {
  if (typeof dir === 'string') return `${dir.replace(/[\\/]+$/, '')}/${name}`;
  return new URL(name, dir.href.endsWith('/') ? dir : `${dir.href}/`);
}

/** The directory holding the file `file`. */
export function parentOf(file: FileLocation): FileLocation {
  if (typeof file !== 'string') return new URL('./', file);
  const cut = file.replace(/[\\/]+$/, '').search(/[\\/][^\\/]*$/);
  return cut < 0 ? '.' : cut === 0 ? file.slice(0, 1) : file.slice(0, cut);
}

/** A file that could not be read: the message is `location: reason`. */
export class FileReadError extends Error {
  constructor(
    readonly location: string,
    readonly reason: string,
  ) {
    super(`${location}: ${reason}`);
    this.name = 'FileReadError';
  }
}

async function fetchOk(url: URL): Promise<Response> {
  const response = await fetch(url);
  if (!response.ok) {
    await response.body?.cancel();
    throw new FileReadError(url.href, `HTTP ${response.status} ${response.statusText}`.trimEnd());
  }
  return response;
}

/** The whole file as bytes; a missing file fails naming it. */
export async function readBytes(given: FileLocation): Promise<Uint8Array> {
  const location = resolved(given);
  if (location instanceof URL && isFetched(location)) return new Uint8Array(await (await fetchOk(location)).arrayBuffer());
  const { readFile } = await import('node:fs/promises');
  try {
    return await readFile(location);
  } catch (error) {
    throw new FileReadError(locationLabel(location), fileErrorReason(error));
  }
}

/** The whole file as UTF-8 text. */
export async function readText(given: FileLocation): Promise<string> {
  const location = resolved(given);
  if (location instanceof URL && isFetched(location)) return (await fetchOk(location)).text();
  return new TextDecoder().decode(await readBytes(location));
}

/** Whether the file exists (a HEAD request that succeeds, for URLs). */
export async function exists(given: FileLocation): Promise<boolean> {
  const location = resolved(given);
  if (location instanceof URL && isFetched(location)) {
    if (location.protocol !== 'http:' && location.protocol !== 'https:') return true;
    const response = await fetch(location, { method: 'HEAD' }).catch(() => undefined);
    return response?.ok ?? false;
  }
  // stat, not access: Deno's node:fs access() needs --allow-sys (it reads the uid).
  const { stat } = await import('node:fs/promises');
  return stat(location).then(
    () => true,
    () => false,
  );
}

export interface OpenOptions {
  /** Thrown for read failures; default `Error`. */
  errorClass?: ErrorClass;
  /** Progress of a download that has to fetch the whole file (a server without range requests). */
  onDownload?: (loadedBytes: number, totalBytes: number) => void;
}

/** Opens the file for positioned reads: from disk, or by HTTP range requests. */
export async function openByteSource(given: FileLocation, options: OpenOptions = {}): Promise<ByteSource> {
  const location = resolved(given);
  if (location instanceof URL && isFetched(location)) return openFetchSource(location, options);
  const { fileURLToPath } = await import('node:url');
  return openFileSource(typeof location === 'string' ? location : fileURLToPath(location), { errorClass: options.errorClass });
}
