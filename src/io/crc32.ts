/**
 * CRC-32 (ISO-HDLC, the zip and PNG checksum: reflected polynomial 0xEDB88320, initial and final
 * value all ones).
 *
 * `crc32` is the readable definition, eight bytes per step through eight tables ("slicing by
 * 8"), and runs anywhere. `loadCrc32` returns Node's native `zlib.crc32` where the runtime has
 * it (Node ≥ 20.15), about three times faster on multi-gigabyte checkpoints, and this one
 * otherwise (browsers, Deno without node:zlib).
 */

/** Continues `previous` (the CRC of the bytes before `bytes`; 0 to start) over `bytes`. */
export type Crc32 = (bytes: Uint8Array, previous?: number) => number;

/** TABLES[k·256 + b]: the CRC contribution of byte b followed by k zero bytes. */
const TABLES = buildTables();

function buildTables(): Uint32Array {
  const tables = new Uint32Array(8 * 256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
    tables[byte] = crc;
  }
  for (let k = 1; k < 8; k++) {
    for (let byte = 0; byte < 256; byte++) {
      const previous = tables[(k - 1) * 256 + byte]!;
      tables[k * 256 + byte] = (previous >>> 8) ^ tables[previous & 0xff]!;
    }
  }
  return tables;
}

export const crc32: Crc32 = (bytes, previous = 0) => {
  let crc = ~previous;
  const length = bytes.length;
  const whole = length - (length % 8);
  let i = 0;
  for (; i < whole; i += 8) {
    const low = (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) ^ crc;
    const high = bytes[i + 4]! | (bytes[i + 5]! << 8) | (bytes[i + 6]! << 16) | (bytes[i + 7]! << 24);
    crc =
      TABLES[7 * 256 + (low & 0xff)]! ^
      TABLES[6 * 256 + ((low >>> 8) & 0xff)]! ^
      TABLES[5 * 256 + ((low >>> 16) & 0xff)]! ^
      TABLES[4 * 256 + (low >>> 24)]! ^
      TABLES[3 * 256 + (high & 0xff)]! ^
      TABLES[2 * 256 + ((high >>> 8) & 0xff)]! ^
      TABLES[256 + ((high >>> 16) & 0xff)]! ^
      TABLES[high >>> 24]!;
  }
  for (; i < length; i++) crc = TABLES[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
};

let fastest: Promise<Crc32> | undefined;

/** Node's `zlib.crc32` when present, else `crc32`; both give the same values. */
export function loadCrc32(): Promise<Crc32> {
  fastest ??= import('node:zlib').then(
    (zlib) => (typeof zlib.crc32 === 'function' ? (bytes: Uint8Array, previous = 0) => zlib.crc32(bytes, previous) : crc32),
    () => crc32,
  );
  return fastest;
}
