import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type ByteSource,
  type PositionedReader,
  fileErrorReason,
  handleSource,
  memorySource,
  openFileSource,
  readExactly,
  readOrClose,
} from '../../src/io/byte-source.js';
import { SafetensorsError } from '../../src/io/safetensors.js';

class CustomError extends Error {
  override name = 'CustomError';
}

describe('memorySource', () => {
  it('returns copies of a Uint8Array', async () => {
    const bytes = new Uint8Array([1, 2, 3, 4, 5]);
    const source = memorySource(bytes);
    expect(source.size).toBe(5);
    const read = await source.readAt(1, 3);
    expect(Array.from(read)).toEqual([2, 3, 4]);
    expect(read.buffer).not.toBe(bytes.buffer);
    read[0] = 99;
    expect(bytes[1]).toBe(2);
    bytes[2] = 77;
    expect(read[1]).toBe(3);
  });

  it('returns copies of a Node Buffer, whose slice() would alias', async () => {
    const buffer = Buffer.from([10, 20, 30, 40]);
    const read = await memorySource(buffer).readAt(0, 4);
    expect(read).not.toBeInstanceOf(Buffer);
    expect(read.byteOffset).toBe(0);
    read[0] = 0;
    expect(buffer[0]).toBe(10);
    buffer[3] = 1;
    expect(read[3]).toBe(40);
  });
});

describe('readExactly', () => {
  const source = memorySource(new Uint8Array(10));

  it('reads in-range bytes and empty ranges', async () => {
    expect((await readExactly(source, 'm', 2, 8)).length).toBe(8);
    expect((await readExactly(source, 'm', 10, 0)).length).toBe(0);
  });

  it('refuses ranges outside the source, naming the label and the range', async () => {
    await expect(readExactly(source, 'w.bin', 8, 4)).rejects.toThrow(
      'w.bin: bytes 8..12 lie outside the 10-byte file (truncated?)',
    );
    await expect(readExactly(source, 'w.bin', -1, 2)).rejects.toThrow('w.bin: bytes -1..1 lie outside');
  });

  it('refuses, before reading, more bytes than one buffer holds', async () => {
    const huge: ByteSource = { size: 2 ** 40, readAt: () => Promise.reject(new Error('not reached')), close: async () => {} };
    await expect(readExactly(huge, 'big.bin', 0, 2 ** 32, CustomError)).rejects.toThrow(
      new CustomError('big.bin: bytes 0..4294967296 are more than one buffer holds (4294967295)'),
    );
  });

  it('throws the error class it is given', async () => {
    await expect(readExactly(source, 'w', 9, 2, CustomError)).rejects.toBeInstanceOf(CustomError);
    await expect(readExactly(source, 'w', 9, 2)).rejects.toBeInstanceOf(Error);
  });

  it('refuses a source that returns the wrong number of bytes', async () => {
    const short: ByteSource = { size: 10, readAt: async () => new Uint8Array(3), close: async () => {} };
    await expect(readExactly(short, 'short', 4, 5, CustomError)).rejects.toThrow(
      'short: asked the byte source for 5 bytes at byte 4, got 3',
    );
  });
});

describe('handleSource', () => {
  /** A fake handle over `bytes` that records each read and returns at most `perRead` bytes. */
  function fakeHandle(bytes: Uint8Array, perRead = Infinity) {
    const calls: Array<[offset: number, length: number, position: number]> = [];
    let closed = false;
    const handle = {
      async read(buffer: Uint8Array, offset: number, length: number, position: number) {
        calls.push([offset, length, position]);
        const n = Math.max(0, Math.min(length, perRead, bytes.length - position));
        buffer.set(bytes.subarray(position, position + n), offset);
        return { bytesRead: n, buffer };
      },
      async close() {
        closed = true;
      },
    };
    return { handle: handle as unknown as PositionedReader, calls, isClosed: () => closed };
  }
  const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);

  it('splits a read into chunks of at most maxChunkBytes', async () => {
    const { handle, calls } = fakeHandle(bytes);
    const source = handleSource(handle, 100, 'f', { maxChunkBytes: 16 });
    const read = await source.readAt(10, 40);
    expect(Array.from(read)).toEqual(Array.from(bytes.subarray(10, 50)));
    expect(calls).toEqual([
      [0, 16, 10],
      [16, 16, 26],
      [32, 8, 42],
    ]);
  });

  it('continues after short reads', async () => {
    const { handle, calls } = fakeHandle(bytes, 7);
    const read = await handleSource(handle, 100, 'f').readAt(0, 20);
    expect(Array.from(read)).toEqual(Array.from(bytes.subarray(0, 20)));
    expect(calls.map(([, , position]) => position)).toEqual([0, 7, 14]);
  });

  it('reports a file that ends early with its path and the byte range', async () => {
    const { handle } = fakeHandle(bytes.subarray(0, 30));
    const source = handleSource(handle, 100, 'w.bin', { errorClass: CustomError, maxChunkBytes: 16 });
    const error = await source.readAt(20, 20).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CustomError);
    expect((error as Error).message).toBe(
      'w.bin: unexpected end of file at byte 30 while reading bytes 20..40 ' +
        '(was the file truncated after it was opened?)',
    );
  });

  it('closes the handle', async () => {
    const { handle, isClosed } = fakeHandle(bytes);
    await handleSource(handle, 100, 'f').close();
    expect(isClosed()).toBe(true);
  });
});

describe('readOrClose', () => {
  const counted = (): { source: ByteSource; closes: () => number } => {
    let closes = 0;
    const source = memorySource(new Uint8Array(8));
    return { source: { ...source, close: async () => void closes++ }, closes: () => closes };
  };

  it('leaves the source open for the reader that succeeds', async () => {
    const { source, closes } = counted();
    expect(await readOrClose(source, async (s) => s.size)).toBe(8);
    expect(closes()).toBe(0);
  });

  it('closes the source when the reader fails, and rethrows its error', async () => {
    const { source, closes } = counted();
    const failure = new CustomError('not this format');
    await expect(readOrClose(source, () => Promise.reject(failure))).rejects.toBe(failure);
    expect(closes()).toBe(1);
  });
});

describe('openFileSource', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'byte-source-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('names a file it cannot open, and why, in the given error class', async () => {
    await expect(openFileSource(join(dir, 'missing.bin'), { errorClass: SafetensorsError })).rejects.toThrow(
      new SafetensorsError(`${join(dir, 'missing.bin')}: no such file or directory`),
    );
    await expect(openFileSource(dir, { errorClass: SafetensorsError })).rejects.toThrow(`${dir}: is a directory, not a file`);
  });

  it('words the usual file-system failures, and keeps the message of any other', async () => {
    const failure = (promise: Promise<unknown>) => promise.then(() => expect.unreachable('no error'), (error: unknown) => error);
    expect(fileErrorReason(await failure(stat(join(dir, 'missing'))))).toBe('no such file or directory');
    expect(fileErrorReason(await failure(readFile(dir)))).toBe('is a directory, not a file');
    await writeFile(join(dir, 'file'), 'x');
    const notADirectory = await failure(stat(join(dir, 'file', 'inside')));
    expect(fileErrorReason(notADirectory)).toBe((notADirectory as Error).message);
    expect(fileErrorReason('plain text')).toBe('plain text');
  });

  it('reads a file and reports truncation after opening in the given error class', async () => {
    const path = join(dir, 'data.bin');
    await writeFile(path, Uint8Array.from({ length: 64 }, (_, i) => i));
    const source = await openFileSource(path, { errorClass: SafetensorsError });
    try {
      expect(source.size).toBe(64);
      expect(Array.from(await source.readAt(60, 4))).toEqual([60, 61, 62, 63]);
      await truncate(path, 40);
      const error = await source.readAt(32, 16).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SafetensorsError);
      expect((error as Error).message).toBe(
        `${path}: unexpected end of file at byte 40 while reading bytes 32..48 ` +
          '(was the file truncated after it was opened?)',
      );
    } finally {
      await source.close();
    }
  });
});
