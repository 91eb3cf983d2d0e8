/**
 * Fuzz targets for the checkpoint readers, each run the way the engine uses it:
 * - `safetensors`: open, read every tensor as the model loader would (f32 or i32), and ask for
 *   a name that is not there (the "did you mean" hint);
 * - `torch-zip`, `torch-legacy`: `mue convert` without the disk — open the checkpoint, find the
 *   state dict and the config, and convert every tensor;
 * - `pickle`: the unpickler alone on a pickle, and the message rendering of what it built.
 *
 * Seeds are the checkpoint fixtures (test/fixtures/checkpoints) and small files built here; the
 * hand-made cases are the bombs and boundary files a reader must refuse cheaply.
 */
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { type ByteSource, memorySource } from '../../../src/io/byte-source.js';
import { PickleError, brief, unpickle } from '../../../src/io/pickle.js';
import { TorchStorage } from '../../../src/io/torch-tensor.js';
import { SafetensorsError, SafetensorsFile, type TensorEntry, encodeSafetensors } from '../../../src/io/safetensors.js';
import { TorchCheckpointError, readTorchCheckpoint } from '../../../src/io/torch-checkpoint.js';
import { ZipError } from '../../../src/io/zip.js';
import { ConversionError, prepareConversion } from '../../../src/models/ofa/convert.js';
import { legacyCheckpoint, PickleWriter } from '../../helpers/torch-checkpoint.js';
import type { FuzzCase, FuzzTarget } from '../target.js';

const FIXTURES = new URL('../../fixtures/checkpoints/', import.meta.url);
const fixture = (name: string): Uint8Array => new Uint8Array(readFileSync(new URL(name, FIXTURES)));
const ascii = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'latin1'));

/** What every error must start with: the name the file was opened under. */
const LABEL = 'fuzz-input';

function startsWithLabel(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith(`${LABEL}: `);
}

// ---------------------------------------------------------------------------------------------
// safetensors

const EVERY_DTYPE: TensorEntry[] = [
  { name: 'f64', dtype: 'F64', shape: [3], data: new Float64Array([1.5, -2.25, 1e300]) },
  { name: 'f32', dtype: 'F32', shape: [2, 2], data: new Float32Array([1, -2, 0.5, 3.25]) },
  { name: 'f16', dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0xb800, 0x7bff]) },
  { name: 'bf16', dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0xc000]) },
  { name: 'i64', dtype: 'I64', shape: [2], data: new BigInt64Array([-1n, 2147483647n]) },
  { name: 'u32', dtype: 'U32', shape: [1], data: new Uint32Array([7]) },
  { name: 'i8', dtype: 'I8', shape: [3], data: new Int8Array([-128, 0, 127]) },
  { name: 'bool', dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
  { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([42]) },
  { name: 'empty', dtype: 'F32', shape: [2, 0], data: new Float32Array(0) },
];

/** A file with this header text and `dataBytes` zero bytes of data. */
function safetensorsFile(header: string, dataBytes = 0): Uint8Array {
  const json = Buffer.from(header, 'utf8');
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const safetensors: FuzzTarget = {
  name: 'safetensors',
  seeds: () => [
    { name: 'small.expected.safetensors', bytes: fixture('small.expected.safetensors') },
    { name: 'every dtype', bytes: encodeSafetensors(EVERY_DTYPE, { format: 'pt', config: '{"d_model": 2}' }) },
  ],
  handmade(): FuzzCase[] {
    const long = 'w'.repeat(50_000);
    const names = Array.from({ length: 200 }, (_, i) => `"${long}${i}":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`);
    return [
      { name: 'header nested 4,200 deep', bytes: safetensorsFile(`{"a":${'['.repeat(4200)}${']'.repeat(4200)}}`) },
      { name: 'metadata nested 100,000 deep', bytes: safetensorsFile(`{"__metadata__":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`) },
      { name: 'tensor over 4 GiB', bytes: safetensorsFile(`{"t":{"dtype":"U8","shape":[4294967304],"data_offsets":[0,4294967304]}}`, 64) },
      { name: 'F16 tensor whose f32 copy exceeds a buffer', bytes: safetensorsFile(`{"t":{"dtype":"F16","shape":[3000000000],"data_offsets":[0,6000000000]}}`) },
      { name: '100,000 dimensions', bytes: safetensorsFile(`{"t":{"dtype":"F32","shape":[${new Array(100_000).fill(65536).join(',')}],"data_offsets":[0,4]}}`, 4) },
      { name: '200 names of 50,000 characters', bytes: safetensorsFile(`{${names.join(',')}}`) },
      { name: 'header length 2^64 − 1', bytes: Uint8Array.from([255, 255, 255, 255, 255, 255, 255, 255, 0x7b, 0x7d]) },
      { name: 'header length just past the limit', bytes: (() => {
        const bytes = safetensorsFile('{}');
        new DataView(bytes.buffer).setBigUint64(0, 100_000_001n, true);
        return bytes;
      })() },
      { name: 'overlapping tensors', bytes: safetensorsFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8) },
      { name: 'empty file', bytes: new Uint8Array(0) },
    ];
  },
  async run(bytes) {
    const file = await SafetensorsFile.fromBytes(bytes, LABEL);
    try {
      for (const { name, dtype } of file.tensors.values()) {
        if (['F64', 'F32', 'F16', 'BF16'].includes(dtype)) await file.readFloat32(name);
        else await file.readInt32(name);
      }
      const [first] = file.tensors.keys();
      try {
        file.info(`${first ?? ''}.missing`);
      } catch (error) {
        if (!(error instanceof SafetensorsError && error.message.includes('no tensor named'))) throw error;
      }
    } finally {
      await file.close();
    }
  },
  isCleanError: (error) => error instanceof SafetensorsError && startsWithLabel(error),
  dictionary: () =>
    ['{', '[', ']', '}', '"', ',', ':', '"dtype"', '"shape"', '"data_offsets"', '"F16"', '"BOOL"', '"__metadata__"', '-1', '1e400', '18446744073709551615', '\\u0000', 'null'].map(ascii),
};

// ---------------------------------------------------------------------------------------------
// PyTorch checkpoints

/** The bytes of a zip record the reader read while converting, by input, for the CRC oracle. */
const rangesRead = new WeakMap<Uint8Array, [number, number][]>();

/** A memory source that remembers which byte ranges were read. */
function recordingSource(bytes: Uint8Array): ByteSource {
  const source = memorySource(bytes);
  const ranges: [number, number][] = [];
  rangesRead.set(bytes, ranges);
  return {
    size: source.size,
    readAt: (offset, length) => {
      ranges.push([offset, offset + length]);
      return source.readAt(offset, length);
    },
    close: () => source.close(),
  };
}

/** What `mue convert` does, without the disk: every tensor converted, the config read. */
async function convertInMemory(bytes: Uint8Array): Promise<void> {
  const checkpoint = await readTorchCheckpoint(recordingSource(bytes), LABEL);
  try {
    const { entries } = await prepareConversion(checkpoint, { dtype: 'f16' });
    for (const entry of entries) await entry.read();
  } finally {
    await checkpoint.close();
  }
}

function isCheckpointError(error: unknown): boolean {
  const own = [ZipError, PickleError, TorchCheckpointError, ConversionError].some((type) => error instanceof type);
  return own && startsWithLabel(error);
}

/**
 * The CRC oracle, independent of the reader: walks the central directory itself and, for every
 * record whose data the reader read, checks the data against the CRC-32 the directory states
 * (0 means "not recorded"). Accepting a record that fails it is accepting garbage. Reads that
 * reach the central directory are the reader finding it (the end record sits in the last
 * 64 KiB, which it reads at once), not record data.
 */
function zipCrcMismatch(bytes: Uint8Array): string | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let end = -1;
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - 22 - 0xffff); at--) {
    if (view.getUint32(at, true) === 0x06054b50) {
      end = at;
      break;
    }
  }
  if (end < 0) return undefined;
  const entries = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  if (at === 0xffffffff) return undefined; // ZIP64: the fixtures have none
  const directory = at;
  const read = (rangesRead.get(bytes) ?? []).filter(([, to]) => to <= directory);
  for (let i = 0; i < entries && at + 46 <= bytes.length; i++) {
    const crc = view.getUint32(at + 16, true);
    const size = view.getUint32(at + 24, true);
    const nameLength = view.getUint16(at + 28, true);
    const header = view.getUint32(at + 42, true);
    const name = Buffer.from(bytes.subarray(at + 46, at + 46 + nameLength)).toString('latin1');
    at += 46 + nameLength + view.getUint16(at + 30, true) + view.getUint16(at + 32, true);
    // A record whose local header is not there (or names another record) cannot have been read.
    if (header + 30 > bytes.length || view.getUint32(header, true) !== 0x04034b50) continue;
    const localName = Buffer.from(bytes.subarray(header + 30, header + 30 + view.getUint16(header + 26, true))).toString('latin1');
    if (localName !== name) continue;
    const start = header + 30 + view.getUint16(header + 26, true) + view.getUint16(header + 28, true);
    const touched = read.some(([from, to]) => from < start + size && to > start);
    if (!touched || crc === 0 || start + size > bytes.length) continue;
    const actual = crc32(bytes.subarray(start, start + size));
    if (actual !== crc) return `record '${name}' was read, and its data has CRC-32 ${actual}, not the ${crc} the directory states`;
  }
  return undefined;
}

/** The opcodes and globals a pickle mutation may insert. */
function pickleDictionary(): Uint8Array[] {
  const opcodes = '()0.12BCGJKMNQRX]abcdehjlqrstu}\x80\x81\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x92\x93\x94\x95';
  return [
    ...[...opcodes].map((op) => ascii(op)),
    ascii('cos\nsystem\n'),
    ascii('cnumpy\ndtype\n'),
    ascii('cnumpy.core.multiarray\nscalar\n'),
    ascii('cnumpy.core.multiarray\n_reconstruct\n'),
    ascii('ctorch._utils\n_rebuild_tensor_v2\n'),
    ascii('ccollections\nOrderedDict\n'),
    ascii('\x8b\xff\xff\xff\x7f'),
    ascii('X\xff\xff\xff\x7f'),
    ascii('\x95\xff\xff\xff\xff\xff\xff\xff\x7f'),
  ];
}

/** A fairseq checkpoint whose model holds one float tensor of the given layout over a small storage. */
function strideCheckpoint(shape: number[], stride: number[], storageElements: number): Uint8Array {
  const storage = { key: 's', type: 'FloatStorage' as const, data: new Float32Array(storageElements) };
  return legacyCheckpoint([{ name: 'encoder.layers.0.fc1.weight', storage, shape, stride }], 'fairseq');
}

const hostileModel = legacyCheckpoint([], 'fairseq', {
  modelEntry: (pickle) => pickle.str('encoder.evil').call('os', 'system', ['touch /tmp/pwned']),
});

/** small.pt with one record's local header extra length changed by `delta`. */
function shiftedExtra(delta: number): Uint8Array {
  const bytes = fixture('small.pt');
  const name = Buffer.from('small/data/3');
  const header = Buffer.from(bytes).indexOf(name) - 30;
  const view = new DataView(bytes.buffer);
  view.setUint16(header + 28, view.getUint16(header + 28, true) + delta, true);
  return bytes;
}

const torchZip: FuzzTarget = {
  name: 'torch-zip',
  seeds: () => [
    { name: 'small.pt', bytes: fixture('small.pt') },
    { name: 'fairseq-1gpu.pt', bytes: fixture('fairseq-1gpu.pt') },
  ],
  handmade: () => [
    { name: 'local extra length +4', bytes: shiftedExtra(4) },
    { name: 'local extra length −4', bytes: shiftedExtra(-4) },
    { name: 'local extra length +64', bytes: shiftedExtra(64) },
    { name: 'a safetensors file', bytes: fixture('small.expected.safetensors') },
    { name: 'end record promising 65,534 entries', bytes: (() => {
      const bytes = fixture('small.pt');
      new DataView(bytes.buffer).setUint16(bytes.length - 22 + 10, 0xfffe, true);
      return bytes;
    })() },
  ],
  run: convertInMemory,
  isCleanError: isCheckpointError,
  acceptedGarbage: zipCrcMismatch,
};

const torchLegacy: FuzzTarget = {
  name: 'torch-legacy',
  seeds: () => [
    { name: 'small-legacy.pt', bytes: fixture('small-legacy.pt') },
    { name: 'fairseq-1gpu-legacy.pt', bytes: fixture('fairseq-1gpu-legacy.pt') },
  ],
  handmade: () => [
    { name: 'stride 0: (2^40,) over 12 floats', bytes: strideCheckpoint([2 ** 40], [0], 12) },
    { name: 'stride 0: (1e9,) over 1 float', bytes: strideCheckpoint([1e9], [0], 1) },
    { name: 'overlapping rows: (1000, 1000) with strides (1, 1)', bytes: strideCheckpoint([1000, 1000], [1, 1], 2000) },
    { name: 'os.system in model', bytes: hostileModel },
  ],
  run: convertInMemory,
  isCleanError: isCheckpointError,
  dictionary: pickleDictionary,
};

// ---------------------------------------------------------------------------------------------
// pickle

/** Any persistent id resolves to one large storage, so that tensor rebuilds get that far. */
const STORAGE = new TorchStorage('fuzz', 'float32', 2 ** 40, 'cpu', async (_offset, length) => new Uint8Array(length), true);

/** The data.pkl of a zip fixture: its first record (30-byte local header, name, extra field). */
function pickleOf(name: string): Uint8Array {
  const bytes = fixture(name);
  const view = new DataView(bytes.buffer);
  const start = 30 + view.getUint16(26, true) + view.getUint16(28, true);
  const { length } = unpickle(bytes.subarray(start), { label: name, persistentLoad: () => STORAGE });
  return bytes.slice(start, start + length);
}

const pickle: FuzzTarget = {
  name: 'pickle',
  seeds: () => [
    { name: 'small.pt data.pkl', bytes: pickleOf('small.pt') },
    { name: 'fairseq-1gpu.pt data.pkl (numpy scalars, Namespace, optimizer state)', bytes: pickleOf('fairseq-1gpu.pt') },
  ],
  handmade(): FuzzCase[] {
    const long4 = new Uint8Array(5 + (1 << 20) + 1);
    long4.set([0x80, 2, 0x8b, 0x00, 0x00, 0x10, 0x00], 0);
    long4.fill(0x5a, 7);
    long4[long4.length - 1] = 0x2e;
    return [
      { name: 'LONG4 of 1 MB', bytes: long4 },
      { name: 'APPENDS of 124,000 items', bytes: ascii(`\x80\x02](${'N'.repeat(124_000)}e.`) },
      { name: 'lists nested 200,000 deep', bytes: ascii(`\x80\x02${']'.repeat(200_000)}${'a'.repeat(199_999)}.`) },
      { name: '1,000,000 marks', bytes: ascii(`\x80\x02${'('.repeat(1_000_000)}N.`) },
      { name: 'a list holding itself 100,000 times', bytes: ascii(`\x80\x02]q\x00(${'h\x00'.repeat(100_000)}e.`) },
      { name: 'BINUNICODE8 of 2^60 bytes', bytes: Uint8Array.from([0x80, 4, 0x8d, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x2e]) },
      { name: 'os.system, builtins.eval, subprocess.Popen', bytes: new PickleWriter().op('(').call('os', 'system', ['ls']).call('builtins', 'eval', ['1']).call('subprocess', 'Popen', [['ls']]).op('l').finish() },
    ];
  },
  async run(bytes) {
    const { value } = unpickle(bytes, { label: LABEL, persistentLoad: () => STORAGE });
    brief(value, 3);
  },
  isCleanError: (error) => error instanceof PickleError && startsWithLabel(error),
  dictionary: pickleDictionary,
};

export const targets: FuzzTarget[] = [safetensors, torchZip, torchLegacy, pickle];
