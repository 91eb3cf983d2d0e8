/**
 * Random access to the bytes of a file, shared by the safetensors, zip and torch checkpoint readers.
 *
 * Node's `fs` is imported only when a file is opened, so this module also loads in browsers,
 * where `memorySource` (or a caller's own `ByteSource`, e.g. over HTTP range requests) serves.
 *
 * Errors name the file (or the label of an in-memory source) and the byte range involved. Each
 * reader passes its own error class (`SafetensorsError`, `ZipError`, ...) so that callers see
 * one error type per format.
 */

/** Random access to the bytes of a file, wherever they live (disk, memory, HTTP range requests). */
export interface ByteSource {
  readonly size: number;
  /** Exactly `length` bytes starting at `offset`, in memory the caller may keep and modify. */
  readAt(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>>;
  close(): Promise<void>;
}

/** The error class a reader wants its byte-level failures reported as. */
export type ErrorClass = new (message: string) => Error;

/**
 * The part of Node's `FileHandle` a file source uses (tests substitute their own), spelled out so
 * that the library's type declarations need no Node types (a browser project has none).
 */
export interface PositionedReader {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

/** Node refuses single reads and writes above 2 GiB − 1; stay well below. */
export const MAX_IO_CHUNK_BYTES = 1 << 30;

/**
 * The most bytes one read returns, about what one `Uint8Array` holds in Node 20 (4 GiB;
 * browsers may allow less). Readers compare lengths with it before allocating.
 */
export const MAX_BUFFER_BYTES = 2 ** 32 - 1;

export interface FileSourceOptions {
  /** Thrown when the file ends early; default `Error`. */
  errorClass?: ErrorClass;
  /** The most bytes asked of one positioned read; default `MAX_IO_CHUNK_BYTES`. */
  maxChunkBytes?: number;
}

const FILE_ERROR_REASONS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory, not a file',
  EACCES: 'permission denied',
};

/** The reason in words for the usual file-system error codes; undefined for any other error. */
function knownFileErrorReason(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? FILE_ERROR_REASONS[code] : undefined;
}

/**
 * A failed file-system call's reason for messages: `no such file or directory`, `is a directory,
 * not a file` or `permission denied` for the usual codes, else the error's own message.
 */
export function fileErrorReason(error: unknown): string {
  return knownFileErrorReason(error) ?? (error instanceof Error ? error.message : String(error));
}

/**
 * Opens a file on disk for positioned reads; nothing is held in memory between reads. A file that
 * cannot be opened is an `errorClass` error: `path: no such file or directory`.
 */
export async function openFileSource(path: string, options: FileSourceOptions = {}): Promise<ByteSource> {
  const { open } = await import('node:fs/promises');
  const handle = await open(path, 'r').catch((error: unknown) => {
    const reason = knownFileErrorReason(error);
    throw reason === undefined ? error : new (options.errorClass ?? Error)(`${path}: ${reason}`);
  });
  try {
    const stats = await handle.stat();
    if (stats.isDirectory()) throw new (options.errorClass ?? Error)(`${path}: ${FILE_ERROR_REASONS['EISDIR']}`);
    return handleSource(handle, stats.size, path, options);
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * `read(source)` for a reader that keeps the source to read from later: the source is closed only
 * when `read` fails, so that a file which is not what it claims to be leaves no handle open.
 */
export async function readOrClose<T>(source: ByteSource, read: (source: ByteSource) => Promise<T>): Promise<T> {
  try {
    return await read(source);
  } catch (error) {
    await source.close();
    throw error;
  }
}

/** A source over an open handle of a file of `size` bytes; closing the source closes the handle. */
export function handleSource(
  handle: PositionedReader,
  size: number,
  path: string,
  { errorClass = Error, maxChunkBytes = MAX_IO_CHUNK_BYTES }: FileSourceOptions = {},
): ByteSource {
  return {
    size,
    async readAt(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
      // A fresh buffer rather than Buffer.allocUnsafe: pooled Buffers start at arbitrary offsets,
      // and typed-array views of the result need element-aligned starts.
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const chunk = Math.min(length - done, maxChunkBytes);
        const { bytesRead } = await handle.read(out, done, chunk, offset + done);
        if (bytesRead === 0) {
          throw new errorClass(
            `${path}: unexpected end of file at byte ${offset + done} while reading bytes ` +
              `${offset}..${offset + length} (was the file truncated after it was opened?)`,
          );
        }
        done += bytesRead;
      }
      return out;
    },
    close: () => handle.close(),
  };
}

/** Serves reads from bytes already in memory. Reads return copies: `bytes` is never aliased. */
export function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.byteLength,
    // Copied through the constructor: a Node Buffer's slice() would alias the original memory.
    readAt: async (offset: number, length: number) => new Uint8Array(bytes.subarray(offset, offset + length)),
    close: async () => {},
  };
}

/**
 * `length` bytes at `offset`, checked against the source's size first and against what the
 * source returns after; `label` names the file in errors, which are thrown as `errorClass`.
 */
export async function readExactly(
  source: ByteSource,
  label: string,
  offset: number,
  length: number,
  errorClass: ErrorClass = Error,
): Promise<Uint8Array<ArrayBuffer>> {
  if (offset < 0 || length < 0 || offset + length > source.size) {
    throw new errorClass(
      `${label}: bytes ${offset}..${offset + length} lie outside the ${source.size}-byte file (truncated?)`,
    );
  }
  if (length > MAX_BUFFER_BYTES) {
    throw new errorClass(`${label}: bytes ${offset}..${offset + length} are more than one buffer holds (${MAX_BUFFER_BYTES})`);
  }
  if (length === 0) return new Uint8Array(0);
  const bytes = await source.readAt(offset, length);
  if (bytes.byteLength !== length) {
    throw new errorClass(
      `${label}: asked the byte source for ${length} bytes at byte ${offset}, got ${bytes.byteLength}`,
    );
  }
  return bytes;
}
