import { mkdtemp, readdir, mkdir, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { floatToHalf } from '../../src/half.js';
import {
  type ByteSource,
  SAFETENSORS_DTYPE_BYTES,
  SafetensorsFile,
  type TensorEntry,
  encodeSafetensors,
  writeSafetensors,
} from '../../src/io/safetensors.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/checkpoints/small.expected.safetensors', import.meta.url));

/** A file with exactly this header text (unpadded) and data section. */
function rawFile(header: string | object, data: Uint8Array | number = 0): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

const everyDType: TensorEntry[] = [
  { name: 'f64', dtype: 'F64', shape: [3], data: new Float64Array([1.5, -2.25, 1e300]) },
  { name: 'f32', dtype: 'F32', shape: [2, 2], data: new Float32Array([1, -2, 0.5, 3.25]) },
  { name: 'f16', dtype: 'F16', shape: [3], data: new Uint16Array([1, -0.5, 65504].map(floatToHalf)) },
  // bf16 bits are the top 16 bits of the f32: 1.0 = 0x3f80, -2.0 = 0xc000.
  { name: 'bf16', dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0xc000]) },
  { name: 'i64', dtype: 'I64', shape: [4], data: new BigInt64Array([0n, -1n, 2147483647n, -2147483648n]) },
  { name: 'i32', dtype: 'I32', shape: [2], data: new Int32Array([-7, 2147483647]) },
  { name: 'i16', dtype: 'I16', shape: [2], data: new Int16Array([-32768, 32767]) },
  { name: 'i8', dtype: 'I8', shape: [3], data: new Int8Array([-128, 0, 127]) },
  { name: 'u64', dtype: 'U64', shape: [2], data: new BigUint64Array([0n, 2147483647n]) },
  { name: 'u32', dtype: 'U32', shape: [1], data: new Uint32Array([2147483647]) },
  { name: 'u16', dtype: 'U16', shape: [2], data: new Uint16Array([0, 65535]) },
  { name: 'u8', dtype: 'U8', shape: [2], data: new Uint8Array([0, 255]) },
  { name: 'bool', dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
  { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([42]) },
  { name: 'empty', dtype: 'F32', shape: [0], data: new Float32Array(0) },
  { name: 'empty3d', dtype: 'I64', shape: [2, 0, 3], data: new BigInt64Array(0) },
];

describe('encodeSafetensors + SafetensorsFile round trip', () => {
  it('keeps every dtype, 0-d and empty tensors, and metadata', async () => {
    // JSON.parse makes "__proto__" an ordinary key, as it is in a file's header.
    const metadata = JSON.parse('{"format": "pt", "note": "ünïcode ✓", "__proto__": "plain key"}') as Record<
      string,
      string
    >;
    const file = await SafetensorsFile.fromBytes(encodeSafetensors(everyDType, metadata), 'mem.safetensors');

    expect(file.label).toBe('mem.safetensors');
    expect(Object.entries(file.metadata)).toEqual([
      ['format', 'pt'],
      ['note', 'ünïcode ✓'],
      ['__proto__', 'plain key'],
    ]);
    expect(new Set(file.tensors.keys())).toEqual(new Set(everyDType.map((e) => e.name)));
    for (const entry of everyDType) {
      const info = file.info(entry.name);
      expect(info.dtype).toBe(entry.dtype);
      expect(info.shape).toEqual(entry.shape);
      expect(info.byteLength).toBe(entry.data.byteLength);
      expect(await file.readBytes(entry.name)).toEqual(bytesOf(entry.data));
    }

    expect(Array.from(await file.readFloat32('f64'))).toEqual([1.5, -2.25, Infinity]);
    expect(Array.from(await file.readFloat32('f32'))).toEqual([1, -2, 0.5, 3.25]);
    expect(Array.from(await file.readFloat32('f16'))).toEqual([1, -0.5, 65504]);
    expect(Array.from(await file.readHalfBits('f16'))).toEqual([0x3c00, 0xb800, 0x7bff]);
    expect(Array.from(await file.readFloat32('bf16'))).toEqual([1, -2]);
    expect(Array.from(await file.readFloat32('scalar'))).toEqual([42]);
    expect(await file.readFloat32('empty')).toHaveLength(0);

    expect(Array.from(await file.readInt32('i64'))).toEqual([0, -1, 2147483647, -2147483648]);
    expect(Array.from(await file.readInt32('i32'))).toEqual([-7, 2147483647]);
    expect(Array.from(await file.readInt32('i16'))).toEqual([-32768, 32767]);
    expect(Array.from(await file.readInt32('i8'))).toEqual([-128, 0, 127]);
    expect(Array.from(await file.readInt32('u64'))).toEqual([0, 2147483647]);
    expect(Array.from(await file.readInt32('u32'))).toEqual([2147483647]);
    expect(Array.from(await file.readInt32('u16'))).toEqual([0, 65535]);
    expect(Array.from(await file.readInt32('u8'))).toEqual([0, 255]);
    expect(Array.from(await file.readInt32('bool'))).toEqual([1, 0, 1]);
    expect(await file.readInt32('empty3d')).toHaveLength(0);
  });

  it('pads the header to 8 bytes and aligns every tensor to its element size', async () => {
    const bytes = encodeSafetensors(everyDType);
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLength % 8).toBe(0);
    expect(bytes[8 + headerLength - 1]).toBeOneOf([0x20, 0x7d]); // space padding or the closing brace
    const file = await SafetensorsFile.fromBytes(bytes, 'mem');
    for (const info of file.tensors.values()) {
      expect(info.byteOffset % SAFETENSORS_DTYPE_BYTES[info.dtype]).toBe(0);
    }
  });

  it('lists tensors in the order of their data, even integer-like names', async () => {
    const entries: TensorEntry[] = [
      { name: 'b', dtype: 'F32', shape: [1], data: new Float32Array([1]) },
      { name: '10', dtype: 'F32', shape: [1], data: new Float32Array([2]) },
      { name: 'a', dtype: 'F64', shape: [1], data: new Float64Array([3]) },
    ];
    const file = await SafetensorsFile.fromBytes(encodeSafetensors(entries), 'mem');
    const infos = [...file.tensors.values()];
    expect(infos.map((i) => i.name)).toEqual(['a', '10', 'b']);
    expect(infos.map((i) => i.byteOffset)).toEqual([...infos.map((i) => i.byteOffset)].sort((x, y) => x - y));
  });

  it('writes an empty file that reads back with no tensors', async () => {
    const file = await SafetensorsFile.fromBytes(encodeSafetensors([]), 'mem');
    expect(file.tensors.size).toBe(0);
    expect(file.metadata).toEqual({});
  });

  it('returns memory the caller owns, never a view of the source', async () => {
    const bytes = encodeSafetensors([{ name: 'x', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
    const file = await SafetensorsFile.fromBytes(bytes, 'mem');
    const first = await file.readFloat32('x');
    first[0] = 99;
    expect(Array.from(await file.readFloat32('x'))).toEqual([1, 2]);
  });
});

describe('reading a file written by the golden-data tools', () => {
  it('reads dtypes, shapes and values of small.expected.safetensors', async () => {
    const file = await SafetensorsFile.open(FIXTURE);
    try {
      expect(file.label).toBe(FIXTURE);
      expect(file.tensors.size).toBe(10);
      const summary = (name: string) => ({ dtype: file.info(name).dtype, shape: file.info(name).shape });
      expect(summary('encoder.embed_tokens.weight')).toEqual({ dtype: 'F32', shape: [6, 8] });
      expect(summary('encoder.layer_norm.weight')).toEqual({ dtype: 'BF16', shape: [5] });
      expect(summary('encoder.layers.0.self_attn.k_proj.bias')).toEqual({ dtype: 'F16', shape: [4] });
      expect(summary('encoder.token_rp_bucket')).toEqual({ dtype: 'I64', shape: [3, 4] });
      expect(summary('encoder.flag')).toEqual({ dtype: 'BOOL', shape: [3] });
      expect(summary('encoder.scalar')).toEqual({ dtype: 'F32', shape: [] });

      expect(Array.from(await file.readInt32('encoder.token_rp_bucket'))).toEqual([...Array(12).keys()]);
      expect(Array.from(await file.readInt32('encoder.flag'))).toEqual([1, 0, 1]);
      expect(Array.from(await file.readFloat32('encoder.scalar'))).toEqual([3.5]);
      expect(Array.from(await file.readFloat32('encoder.layer_norm.weight'))).toEqual([
        -1.890625, 1.0078125, -0.6953125, 0.90625, 0.107421875,
      ]);
      expect(Array.from(await file.readFloat32('encoder.layers.0.self_attn.k_proj.bias'))).toEqual([
        0.1304931640625, 0.330322265625, -0.07733154296875, -0.92236328125,
      ]);

      // The fixture's tensors are not 4-byte aligned in the file; values must not depend on that.
      expect(file.info('encoder.layers.0.self_attn.k_proj.weight').byteOffset % 4).not.toBe(0);
      const embedding = await file.readFloat32('encoder.embed_tokens.weight');
      expect(await file.readFloat32('decoder.embed_tokens.weight')).toEqual(embedding);
      expect(await file.readFloat32('decoder.output_projection.weight')).toEqual(embedding.slice(16, 40));
      const transposed = await file.readFloat32('encoder.transposed');
      for (let r = 0; r < 6; r++) for (let c = 0; c < 8; c++) expect(transposed[c * 6 + r]).toBe(embedding[r * 8 + c]);
    } finally {
      await file.close();
    }
  });

  it('reads the same through an in-memory source', async () => {
    const bytes = new Uint8Array(await readFile(FIXTURE));
    const fromMemory = await SafetensorsFile.fromBytes(bytes, 'small');
    const fromDisk = await SafetensorsFile.open(FIXTURE);
    try {
      for (const name of fromDisk.tensors.keys()) {
        expect(await fromMemory.readBytes(name)).toEqual(await fromDisk.readBytes(name));
      }
    } finally {
      await fromDisk.close();
    }
  });
});

describe('lazy reading', () => {
  class CountingSource implements ByteSource {
    bytesRead = 0;
    constructor(private readonly bytes: Uint8Array) {}
    get size(): number {
      return this.bytes.length;
    }
    async readAt(offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
      this.bytesRead += length;
      return this.bytes.slice(offset, offset + length);
    }
    async close(): Promise<void> {}
  }

  it('reads only the header on open and only the tensor asked for', async () => {
    const big = new Float32Array(64 * 1024).fill(1);
    const small = new Float32Array([5, 6]);
    const bytes = encodeSafetensors([
      { name: 'big', dtype: 'F32', shape: [big.length], data: big },
      { name: 'small', dtype: 'F32', shape: [2], data: small },
    ]);
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const source = new CountingSource(bytes);
    const file = await SafetensorsFile.fromSource(source, 'counted');
    expect(source.bytesRead).toBe(8 + headerLength);
    expect(Array.from(await file.readFloat32('small'))).toEqual([5, 6]);
    expect(source.bytesRead).toBe(8 + headerLength + 8);
    await expect(file.readInt32('big')).rejects.toThrow('readInt32 reads an integer dtype or BOOL');
    expect(source.bytesRead).toBe(8 + headerLength + 8);
  });
});

describe('malformed files', () => {
  async function openError(bytes: Uint8Array, label = 'bad.safetensors'): Promise<string> {
    const error = await SafetensorsFile.fromBytes(bytes, label).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message.startsWith(`${label}: `)).toBe(true);
    return message;
  }

  const f32 = (begin: number, end: number, shape = [(end - begin) / 4]) => ({
    dtype: 'F32',
    shape,
    data_offsets: [begin, end],
  });

  it('rejects a file shorter than the length prefix', async () => {
    expect(await openError(new Uint8Array(5))).toMatch(/file is 5 bytes, shorter than the 8-byte header length/);
  });

  it('rejects a header length beyond the file, giving both numbers', async () => {
    const bytes = rawFile('{}');
    new DataView(bytes.buffer).setBigUint64(0, 1000n, true);
    expect(await openError(bytes)).toMatch(/header length 1000 bytes exceeds the 2 bytes .* \(file is 10 bytes\)/);
    new DataView(bytes.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
    expect(await openError(bytes)).toMatch(/header length 18446744073709551615 bytes exceeds/);
  });

  it('rejects a header that is not UTF-8, not JSON or not an object', async () => {
    const invalidUtf8 = rawFile('{}');
    invalidUtf8[9] = 0xff;
    expect(await openError(invalidUtf8)).toMatch(/header \(bytes 8\.\.10\) is not valid UTF-8/);
    expect(await openError(rawFile('{"a": '))).toMatch(/header \(bytes 8\.\.14\) is not valid JSON/);
    expect(await openError(rawFile('[1, 2]'))).toMatch(/header must be a JSON object, got \[1,2\]/);
  });

  it('refuses a header nested too deep before parsing or printing it', async () => {
    const deep = `{"a": ${'['.repeat(4200)}${']'.repeat(4200)}}`;
    expect(await openError(rawFile(deep))).toMatch(/header nests arrays and objects more than 128 deep \(at byte 141\)/);
    // Brackets inside strings do not count.
    const quoted = { __metadata__: { note: '['.repeat(500) } };
    await expect(SafetensorsFile.fromBytes(rawFile(quoted), 'ok.safetensors')).resolves.toBeInstanceOf(SafetensorsFile);
  });

  it('keeps shapes of many dimensions cheap to check and short to print', async () => {
    const shape = new Array<number>(100_000).fill(2 ** 40);
    expect(await openError(rawFile({ w: { dtype: 'F32', shape, data_offsets: [0, 4] } }, 4))).toMatch(
      /tensor 'w': shape \[(1099511627776, ){8}… \(100000 dimensions\)\] of F32 needs more than 2\^64 bytes/,
    );
  });

  it('rejects entries with missing or invalid fields', async () => {
    expect(await openError(rawFile({ w: 3 }))).toMatch(/tensor 'w': entry must be an object, got 3/);
    expect(await openError(rawFile({ w: { dtype: 'F32', shape: [1] } }, 4))).toMatch(
      /tensor 'w': missing field 'data_offsets'/,
    );
    expect(await openError(rawFile({ w: { ...f32(0, 4), dtype: 7 } }, 4))).toMatch(
      /tensor 'w': 'dtype' must be a string, got 7/,
    );
    expect(await openError(rawFile({ w: { ...f32(0, 4), shape: 'x' } }, 4))).toMatch(
      /tensor 'w': 'shape' must be an array, got "x"/,
    );
    expect(await openError(rawFile({ w: { ...f32(0, 4), data_offsets: [4, 0] } }, 4))).toMatch(
      /tensor 'w': 'data_offsets' must be \[begin, end\] .*got \[4,0\]/,
    );
    expect(await openError(rawFile({ w: { ...f32(0, 4), data_offsets: [0] } }, 4))).toMatch(
      /tensor 'w': 'data_offsets' must be/,
    );
  });

  it('rejects an unknown dtype, listing the supported ones', async () => {
    expect(await openError(rawFile({ w: { ...f32(0, 1), dtype: 'F8_E4M3' } }, 1))).toMatch(
      /tensor 'w': unknown dtype 'F8_E4M3' \(supported: F64, F32, .*BOOL\)/,
    );
  });

  it('rejects negative and non-integer dimensions', async () => {
    expect(await openError(rawFile({ w: f32(0, 8, [2, -1]) }, 8))).toMatch(
      /tensor 'w': shape \[2,-1\] has dimension 1 = -1; dimensions must be non-negative integers/,
    );
    expect(await openError(rawFile({ w: f32(0, 8, [1.5]) }, 8))).toMatch(/tensor 'w': shape \[1.5\] has dimension 0 = 1.5/);
  });

  it('rejects offsets beyond the data section', async () => {
    expect(await openError(rawFile({ w: f32(0, 16) }, 8))).toMatch(
      /tensor 'w': data_offsets \[0, 16\] run past the end of the data section, which is 8 bytes/,
    );
  });

  it('rejects a byte length that does not match shape × dtype size', async () => {
    expect(await openError(rawFile({ w: f32(0, 8, [3]) }, 8))).toMatch(
      /tensor 'w': shape \[3\] of F32 needs 12 bytes, but data_offsets \[0, 8\] hold 8/,
    );
  });

  it('rejects overlapping tensors, naming both', async () => {
    expect(await openError(rawFile({ a: f32(0, 8), b: f32(4, 12) }, 12))).toMatch(
      /tensors 'a' \(data_offsets \[0, 8\]\) and 'b' \(data_offsets \[4, 12\]\) overlap/,
    );
    expect(await openError(rawFile({ a: f32(0, 8), b: f32(0, 8) }, 8))).toMatch(/tensors 'a' .* and 'b' .* overlap/);
  });

  it('rejects holes in the data section, naming the tensors around them', async () => {
    expect(await openError(rawFile({ a: f32(0, 4), b: f32(8, 12) }, 12))).toMatch(
      /bytes 4\.\.8 of the data section, between 'a' and 'b', belong to no tensor/,
    );
    expect(await openError(rawFile({ b: f32(4, 8) }, 8))).toMatch(/bytes 0\.\.4 of the data section, before 'b'/);
    expect(await openError(rawFile({ a: f32(0, 4) }, 10))).toMatch(/bytes 4\.\.10 of the data section, after 'a'/);
    expect(await openError(rawFile({}, 3))).toMatch(/bytes 0\.\.3 of the data section, and the header lists no tensors/);
  });

  it('accepts empty tensors between others but not inside one', async () => {
    const ok = await SafetensorsFile.fromBytes(
      rawFile({ a: f32(0, 4), e: f32(4, 4, [0]), b: f32(4, 8) }, 8),
      'ok.safetensors',
    );
    expect([...ok.tensors.keys()]).toEqual(['a', 'e', 'b']);
    expect(await openError(rawFile({ a: f32(0, 8), e: f32(4, 4, [0]) }, 8))).toMatch(/'a' .* and 'e' .* overlap/);
  });

  it('rejects metadata that is not an object of strings', async () => {
    expect(await openError(rawFile({ __metadata__: { epoch: 3 } }))).toMatch(
      /__metadata__\["epoch"\] must be a string, got 3/,
    );
    expect(await openError(rawFile({ __metadata__: ['x'] }))).toMatch(/__metadata__ must be an object of strings/);
  });
});

describe('reading tensors', () => {
  async function fileOf(entries: TensorEntry[]): Promise<SafetensorsFile> {
    return SafetensorsFile.fromBytes(encodeSafetensors(entries), 'r.safetensors');
  }

  it('names the file and suggests close names for a missing tensor', async () => {
    const file = await fileOf([
      { name: 'encoder.layers.0.fc1.weight', dtype: 'F32', shape: [0], data: new Float32Array(0) },
      { name: 'encoder.layers.1.fc1.weight', dtype: 'F32', shape: [0], data: new Float32Array(0) },
      { name: 'decoder.embed_tokens.weight', dtype: 'F32', shape: [0], data: new Float32Array(0) },
    ]);
    expect(file.has('encoder.layers.0.fc1.weight')).toBe(true);
    expect(file.has('encoder.layer.0.fc1.weight')).toBe(false);
    expect(() => file.info('encoder.layer.0.fc1.weight')).toThrow(
      "r.safetensors: no tensor named 'encoder.layer.0.fc1.weight'; close names: " +
        "'encoder.layers.0.fc1.weight', 'encoder.layers.1.fc1.weight'",
    );
    await expect(file.readFloat32('zzz')).rejects.toThrow("r.safetensors: no tensor named 'zzz' (the file has 3 tensors)");
  });

  it('bounds the work of a close-name hint: huge names get none, many names a bounded search', async () => {
    const long = 'w'.repeat(50_000);
    const entries = Array.from({ length: 3 }, (_, i) => ({
      name: `${long}${i}`,
      dtype: 'F32' as const,
      shape: [0],
      data: new Float32Array(0),
    }));
    const file = await fileOf(entries);
    expect(() => file.info(`${long}x`)).toThrow(/no tensor named 'w+x' \(the file has 3 tensors\)/);
    const many = await fileOf(
      Array.from({ length: 20_000 }, (_, i) => ({ name: `layer.${i}.weight`, dtype: 'F32' as const, shape: [0], data: new Float32Array(0) })),
    );
    expect(() => many.info('layer.7.weights')).toThrow(/close names: 'layer\.7\.weight'/);
  });

  it('refuses to read a tensor as the wrong kind', async () => {
    const file = await fileOf([
      { name: 'ids', dtype: 'I32', shape: [1], data: new Int32Array([1]) },
      { name: 'w', dtype: 'F32', shape: [1], data: new Float32Array([1]) },
    ]);
    await expect(file.readFloat32('ids')).rejects.toThrow(
      "r.safetensors: tensor 'ids' is I32; readFloat32 reads F64, F32, F16 or BF16",
    );
    await expect(file.readHalfBits('w')).rejects.toThrow("r.safetensors: tensor 'w' is F32; readHalfBits reads F16");
    await expect(file.readInt32('w')).rejects.toThrow("r.safetensors: tensor 'w' is F32; readInt32 reads an integer");
  });

  it('range-checks integers that do not fit in int32, naming the element', async () => {
    const file = await fileOf([
      { name: 'big', dtype: 'I64', shape: [3], data: new BigInt64Array([1n, 2n, 2n ** 40n]) },
      { name: 'low', dtype: 'I64', shape: [1], data: new BigInt64Array([-(2n ** 31n) - 1n]) },
      { name: 'u64', dtype: 'U64', shape: [2], data: new BigUint64Array([0n, 2n ** 63n]) },
      { name: 'u32', dtype: 'U32', shape: [2], data: new Uint32Array([1, 2 ** 31]) },
      { name: 'flag', dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 2]) },
    ]);
    await expect(file.readInt32('big')).rejects.toThrow(
      "r.safetensors: tensor 'big' (I64): element 2 = 1099511627776 does not fit in int32",
    );
    await expect(file.readInt32('low')).rejects.toThrow('element 0 = -2147483649 does not fit in int32');
    await expect(file.readInt32('u64')).rejects.toThrow('element 1 = 9223372036854775808 does not fit in int32');
    await expect(file.readInt32('u32')).rejects.toThrow('element 1 = 2147483648 does not fit in int32');
    await expect(file.readInt32('flag')).rejects.toThrow("tensor 'flag' (BOOL): element 1 is byte 2, not 0 or 1");
  });

  it('refuses reads after close', async () => {
    const file = await SafetensorsFile.open(FIXTURE);
    await file.close();
    await file.close();
    await expect(file.readBytes('encoder.scalar')).rejects.toThrow(
      `${FIXTURE}: cannot read tensor 'encoder.scalar': the file is closed`,
    );
  });
});

describe('encodeSafetensors validation', () => {
  it('rejects bad entries before producing anything', () => {
    const w = (overrides: Partial<TensorEntry>): TensorEntry => ({
      name: 'w',
      dtype: 'F32',
      shape: [2],
      data: new Float32Array(2),
      ...overrides,
    });
    expect(() => encodeSafetensors([w({}), w({})])).toThrow("tensor 'w': the name appears twice");
    expect(() => encodeSafetensors([w({ name: '__metadata__' })])).toThrow('the name is reserved for metadata');
    expect(() => encodeSafetensors([w({ shape: [3] })])).toThrow(
      "tensor 'w': shape [3] of F32 needs 12 bytes, but the data has 8",
    );
    expect(() => encodeSafetensors([w({ shape: [-2] })])).toThrow('has dimension 0 = -2');
    expect(() => encodeSafetensors([w({ dtype: 'F8' as TensorEntry['dtype'] })])).toThrow("unknown dtype 'F8'");
    expect(() => encodeSafetensors([w({})], { epoch: 3 } as unknown as Record<string, string>)).toThrow(
      '__metadata__["epoch"] must be a string, got 3',
    );
  });
});

describe('writeSafetensors', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'safetensors-test-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a file that reads back, leaving nothing else in the folder', async () => {
    const path = join(dir, 'out.safetensors');
    await writeSafetensors(path, everyDType, { source: 'test' });
    expect(await readdir(dir)).toEqual(['out.safetensors']);
    expect(new Uint8Array(await readFile(path))).toEqual(encodeSafetensors(everyDType, { source: 'test' }));
    const file = await SafetensorsFile.open(path);
    try {
      expect(file.metadata).toEqual({ source: 'test' });
      expect(Array.from(await file.readInt32('i64'))).toEqual([0, -1, 2147483647, -2147483648]);
    } finally {
      await file.close();
    }
  });

  it('replaces an existing file whole', async () => {
    const path = join(dir, 'out.safetensors');
    await writeSafetensors(path, everyDType);
    await writeSafetensors(path, [{ name: 'only', dtype: 'U8', shape: [1], data: new Uint8Array([7]) }]);
    const file = await SafetensorsFile.open(path);
    try {
      expect([...file.tensors.keys()]).toEqual(['only']);
    } finally {
      await file.close();
    }
  });

  it('creates no file when the data does not match the shape', async () => {
    const path = join(dir, 'out.safetensors');
    await expect(
      writeSafetensors(path, [{ name: 'w', dtype: 'F16', shape: [4], data: new Uint16Array(3) }]),
    ).rejects.toThrow("tensor 'w': shape [4] of F16 needs 8 bytes, but the data has 6");
    expect(await readdir(dir)).toEqual([]);
  });

  it('writes lazy entries one at a time, in file order, creating missing folders', async () => {
    const path = join(dir, 'new', 'folder', 'out.safetensors');
    const reads: string[] = [];
    const lazy = everyDType.map(({ name, dtype, shape, data }) => ({
      name,
      dtype,
      shape,
      read: async () => {
        reads.push(name);
        return data;
      },
    }));
    const progress: number[] = [];
    await writeSafetensors(path, lazy, { source: 'test' }, { onProgress: ({ writtenBytes }) => progress.push(writtenBytes) });
    const written = new Uint8Array(await readFile(path));
    expect(written).toEqual(encodeSafetensors(everyDType, { source: 'test' }));
    const file = await SafetensorsFile.fromBytes(written, 'out.safetensors');
    expect(reads).toEqual([...file.tensors.keys()]);
    expect(progress.at(-1)).toBe(written.length);
  });

  it('leaves nothing behind when a lazy entry reads the wrong number of bytes', async () => {
    const path = join(dir, 'out.safetensors');
    const entry = { name: 'w', dtype: 'F32' as const, shape: [2], read: async () => new Float32Array(3) };
    await expect(writeSafetensors(path, [entry])).rejects.toThrow("tensor 'w': shape [2] of F32 needs 8 bytes, but the data has 12");
    expect(await readdir(dir)).toEqual([]);
  });

  it('removes its temporary file when the final rename fails', async () => {
    const path = join(dir, 'taken');
    await mkdir(path);
    await expect(writeSafetensors(path, everyDType)).rejects.toThrow();
    expect(await readdir(dir)).toEqual(['taken']);
    expect(await readdir(path)).toEqual([]);
  });
});
