import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32, loadCrc32 } from '../../src/io/crc32.js';
import { createRng } from '../helpers/random.js';

describe('crc32', () => {
  it('gives the check value of CRC-32/ISO-HDLC and 0 for nothing', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });

  it("agrees with zlib on every length around the 8-byte steps, whole or continued in pieces", async () => {
    const rng = createRng(7);
    const native = await loadCrc32();
    for (let length = 0; length < 70; length++) {
      const bytes = Uint8Array.from({ length }, () => Math.floor(rng() * 256));
      const expected = zlibCrc32(bytes);
      expect(crc32(bytes), `length ${length}`).toBe(expected);
      expect(native(bytes), `length ${length}`).toBe(expected);
      const cut = Math.floor(length / 3);
      expect(crc32(bytes.subarray(cut), crc32(bytes.subarray(0, cut)))).toBe(expected);
    }
  });
});
