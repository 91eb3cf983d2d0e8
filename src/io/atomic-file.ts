/**
 * Writing a file so that readers see either the old file or the complete new one: the bytes go
 * to a temporary file beside the target, which is synced and renamed over the target only when
 * complete. On any failure the temporary file is removed and the target is untouched. Missing
 * parent folders are created first.
 *
 * Node's `fs` is imported on use, so that modules importing this one still load in browsers.
 */
import { MAX_IO_CHUNK_BYTES } from './byte-source.js';

/** Appends bytes to the file being written. */
export type WriteBytes = (bytes: Uint8Array) => Promise<void>;

/** Runs `produce` with a writer into a temporary file, then puts the file in place at `path`. */
export async function writeFileAtomically(path: string, produce: (write: WriteBytes) => Promise<void>): Promise<void> {
  const fs = await import('node:fs/promises');
  const { dirname, basename, join } = await import('node:path');
  const { randomBytes } = await import('node:crypto');
  await fs.mkdir(dirname(path), { recursive: true });
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.open(temporary, 'wx');
  try {
    try {
      await produce(async (bytes) => {
        for (let done = 0; done < bytes.length; ) {
          const length = Math.min(bytes.length - done, MAX_IO_CHUNK_BYTES);
          done += (await handle.write(bytes, done, length)).bytesWritten;
        }
      });
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temporary, path);
  } catch (error) {
    await fs.rm(temporary, { force: true });
    throw error;
  }
}
