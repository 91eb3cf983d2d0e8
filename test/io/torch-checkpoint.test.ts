import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NumpyArray, PythonObject, unpickle, type PickleValue } from '../../src/io/pickle.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import {
  Namespace,
  OrderedDict,
  SAFETENSORS_DTYPE_OF,
  TorchCheckpoint,
  TorchStorage,
  TorchTensor,
  TorchTensorError,
  loadTorchCheckpoint,
  readTorchCheckpoint,
} from '../../src/io/torch-checkpoint.js';
import { ZipArchive } from '../../src/io/zip.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/checkpoints/${name}`, import.meta.url));
const ZIP_CHECKPOINT = fixture('small.pt');
const LEGACY_CHECKPOINT = fixture('small-legacy.pt');
const EXPECTED = fixture('small.expected.safetensors');

function modelOf(checkpoint: TorchCheckpoint): OrderedDict {
  const root = checkpoint.root;
  if (!(root instanceof Map)) throw new Error('root is not a dict');
  const model = root.get('model');
  if (!(model instanceof OrderedDict)) throw new Error('model is not an OrderedDict');
  return model;
}

function tensorOf(model: OrderedDict, name: string): TorchTensor {
  const tensor = model.get(name);
  if (!(tensor instanceof TorchTensor)) throw new Error(`${name} is not a tensor`);
  return tensor;
}

const NUMPY_PICKLE_HEX =
  '80027d710028580200000066387101636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a7102636e756d70790a' +
  '64747970650a71035802000000663871048988877105527106284b0358010000003c71074e4e4e4affffffff4affffffff4b007471086263' +
  '5f636f646563730a656e636f64650a71095809000000000000000000c3b83f710a58060000006c6174696e31710b86710c52710d86710e52' +
  '710f580200000069387110680268035802000000693871118988877112527113284b0368074e4e4e4affffffff4affffffff4b0074711462' +
  '68095810000000c3b9c3bfc3bfc3bfc3bfc3bfc3bfc3bf7115680b867116527117867118527119580400000066346265711a680268035802' +
  '0000006634711b898887711c52711d284b0368074e4e4e4affffffff4affffffff4b0074711e626809580400000000002040711f680b8671' +
  '205271218671225271235801000000627124680268035802000000623171258988877126527127284b0358010000007c71284e4e4e4affff' +
  'ffff4affffffff4b00747129626809580100000001712a680b86712b52712c86712d52712e5803000000617272712f636e756d70792e5f63' +
  '6f72652e6d756c746961727261790a5f7265636f6e7374727563740a7130636e756d70790a6e6461727261790a71314b0085713268095801' +
  '000000627133680b867134527135877136527137284b014b024b038671386803580200000069347139898887713a52713b284b0368074e4e' +
  '4e4affffffff4affffffff4b0074713c628968095818000000000000000100000002000000030000000400000005000000713d680b86713e' +
  '52713f74714062580400000068616c667141680268035802000000663271428988877143527144284b0368074e4e4e4affffffff4affffff' +
  'ff4b00747145626809580200000000387146680b86714752714886714952714a752e';

function pickleBytes(...parts: (string | number[])[]): Uint8Array {
  const bytes: number[] = [];
  for (const part of parts) {
    if (typeof part === 'string') for (const char of part) bytes.push(char.charCodeAt(0));
    else bytes.push(...part);
  }
  return new Uint8Array(bytes);
}

describe.each([
  ['zip', ZIP_CHECKPOINT],
  ['legacy', LEGACY_CHECKPOINT],
] as const)('loadTorchCheckpoint (%s format)', (format, path) => {
  let checkpoint: TorchCheckpoint;
  let expected: SafetensorsFile;

  beforeAll(async () => {
    checkpoint = await loadTorchCheckpoint(path);
    expected = await SafetensorsFile.open(EXPECTED);
  });
  afterAll(async () => {
    await checkpoint.close();
    await expected.close();
  });

  it('recognises the format', () => {
    expect(checkpoint.format).toBe(format);
  });

  it('reads every tensor of model with the dtype, shape and values torch.load gives', async () => {
    const model = modelOf(checkpoint);
    expect([...model.keys()].sort()).toEqual([...expected.tensors.keys()].sort());
    for (const [name, info] of expected.tensors) {
      const tensor = tensorOf(model, name);
      expect(SAFETENSORS_DTYPE_OF[tensor.dtype], name).toBe(info.dtype);
      expect(tensor.shape, name).toEqual(info.shape);
      expect(await tensor.contiguousBytes(), name).toEqual(await expected.readBytes(name));
    }
  });

  it('keeps shared storages shared, with offsets and strides of the views', () => {
    const model = modelOf(checkpoint);
    const embedding = tensorOf(model, 'encoder.embed_tokens.weight');
    expect(tensorOf(model, 'decoder.embed_tokens.weight')).toBe(embedding);
    const projection = tensorOf(model, 'decoder.output_projection.weight');
    const transposed = tensorOf(model, 'encoder.transposed');
    expect(projection.storage).toBe(embedding.storage);
    expect(transposed.storage).toBe(embedding.storage);
    expect(projection.storageOffset).toBe(16);
    expect(projection.isContiguous).toBe(true);
    expect(transposed.stride).toEqual([1, 8]);
    expect(transposed.isContiguous).toBe(false);
    expect(tensorOf(model, 'encoder.scalar').shape).toEqual([]);
    expect(checkpoint.storages.size).toBe(7);
  });

  it('reads the rest of the object tree: Namespace, dicts, lists, floats', () => {
    const root = checkpoint.root as Map<PickleValue, PickleValue>;
    const args = root.get('args');
    expect(args).toBeInstanceOf(Namespace);
    expect({ ...(args as Namespace) }).toEqual({ arch: 'ofa_tiny', encoder_layers: 4, patch_image_size: 480 });
    expect(root.get('cfg')).toEqual(new Map([['model', new Map([['_name', 'ofa_tiny']])]]));
    expect(root.get('optimizer_history')).toEqual([
      new Map<string, PickleValue>([
        ['criterion_name', 'AdjustLabelSmoothedCrossEntropyCriterion'],
        ['num_updates', 12],
      ]),
    ]);
    const extra = root.get('extra_state') as Map<PickleValue, PickleValue>;
    expect(extra.get('epoch')).toBe(3);
    expect(extra.get('val_loss')).toBeNaN();
  });
});

describe.each([
  ['zip', fixture('fairseq-1gpu.pt')],
  ['legacy', fixture('fairseq-1gpu-legacy.pt')],
] as const)('a single-GPU fairseq checkpoint (%s format)', (format, path) => {
  let checkpoint: TorchCheckpoint;
  beforeAll(async () => {
    checkpoint = await loadTorchCheckpoint(path);
  });
  afterAll(() => checkpoint.close());

  it('loads, with its numpy float64 scores decoded as numbers', () => {
    expect(checkpoint.format).toBe(format);
    const root = checkpoint.root as Map<PickleValue, PickleValue>;
    const extra = root.get('extra_state') as Map<PickleValue, PickleValue>;
    expect(extra.get('val_loss')).toBe(1.297);
    expect(extra.get('best')).toBe(1.297);
    const history = root.get('optimizer_history') as Map<PickleValue, PickleValue>[];
    const bests = history.map((entry) => (entry.get('lr_scheduler_state') as Map<PickleValue, PickleValue>).get('best'));
    expect(bests).toEqual([null, 1.163, 1.263]);
  });

  it("reads the architecture from cfg['model'], an argparse Namespace", () => {
    const cfg = (checkpoint.root as Map<PickleValue, PickleValue>).get('cfg') as Map<PickleValue, PickleValue>;
    const model = cfg.get('model') as Namespace;
    expect(model).toBeInstanceOf(Namespace);
    expect([model['arch'], model['encoder_embed_dim'], model['resnet_type'], model['patch_image_size']]).toEqual([
      'ofa_tiny',
      256,
      'resnet50',
      480,
    ]);
  });

  it('reads every tensor of model', async () => {
    const model = modelOf(checkpoint);
    expect(model.size).toBe(24);
    const embedding = tensorOf(model, 'encoder.embed_tokens.weight');
    expect(embedding.shape).toEqual([1000, 256]);
    for (const name of model.keys()) {
      const tensor = tensorOf(model, name as string);
      expect((await tensor.contiguousBytes()).length, name as string).toBe(tensor.byteLength);
    }
  });
});

/**
 * The same archive with its directory rewritten the way archives beyond 4 GiB must be: every
 * size, offset and count in the 32-bit fields is 0xffffffff / 0xffff, the real values live in
 * ZIP64 extra fields and the ZIP64 end record.
 */
async function withZip64Fields(bytes: Uint8Array): Promise<Uint8Array> {
  const archive = await ZipArchive.fromBytes(bytes, 'small.pt');
  const records = [...archive.records.values()];
  await archive.close();
  const lastHeader = Math.max(...records.map((r) => r.headerOffset));
  const directoryStart = Buffer.from(bytes).indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]), lastHeader);
  const parts: Uint8Array[] = [bytes.subarray(0, directoryStart)];
  let directorySize = 0;
  for (const { name, size, headerOffset, crc32 } of records) {
    const nameBytes = new TextEncoder().encode(name);
    const entry = new DataView(new ArrayBuffer(46 + nameBytes.length + 28));
    entry.setUint32(0, 0x02014b50, true);
    entry.setUint16(6, 45, true); // version needed: ZIP64
    entry.setUint32(16, crc32, true);
    entry.setUint32(20, 0xffffffff, true);
    entry.setUint32(24, 0xffffffff, true);
    entry.setUint16(28, nameBytes.length, true);
    entry.setUint16(30, 28, true);
    entry.setUint32(42, 0xffffffff, true);
    new Uint8Array(entry.buffer).set(nameBytes, 46);
    const extra = 46 + nameBytes.length;
    entry.setUint16(extra, 0x0001, true);
    entry.setUint16(extra + 2, 24, true);
    entry.setBigUint64(extra + 4, BigInt(size), true);
    entry.setBigUint64(extra + 12, BigInt(size), true);
    entry.setBigUint64(extra + 20, BigInt(headerOffset), true);
    parts.push(new Uint8Array(entry.buffer));
    directorySize += entry.byteLength;
  }
  const endRecordOffset = directoryStart + directorySize;
  const end = new DataView(new ArrayBuffer(56 + 20 + 22));
  end.setUint32(0, 0x06064b50, true);
  end.setBigUint64(4, 44n, true);
  end.setBigUint64(24, BigInt(records.length), true);
  end.setBigUint64(32, BigInt(records.length), true);
  end.setBigUint64(40, BigInt(directorySize), true);
  end.setBigUint64(48, BigInt(directoryStart), true);
  end.setUint32(56, 0x07064b50, true);
  end.setBigUint64(56 + 8, BigInt(endRecordOffset), true);
  end.setUint32(56 + 16, 1, true);
  end.setUint32(76, 0x06054b50, true);
  for (const field of [76 + 8, 76 + 10]) end.setUint16(field, 0xffff, true);
  for (const field of [76 + 12, 76 + 16]) end.setUint32(field, 0xffffffff, true);
  parts.push(new Uint8Array(end.buffer));
  return new Uint8Array(Buffer.concat(parts));
}

describe('readTorchCheckpoint from memory', () => {
  it.each([
    ['as written by torch.save', async (bytes: Uint8Array) => bytes],
    ['with ZIP64 extra fields for every size and offset', withZip64Fields],
  ])('reads small.pt %s', async (_, prepare) => {
    const bytes = await prepare(await readFile(ZIP_CHECKPOINT));
    const checkpoint = await readTorchCheckpoint(bytes, 'small.pt (memory)');
    const expected = await SafetensorsFile.open(EXPECTED);
    try {
      const model = modelOf(checkpoint);
      for (const name of expected.tensors.keys()) {
        expect(await tensorOf(model, name).contiguousBytes(), name).toEqual(await expected.readBytes(name));
      }
    } finally {
      await checkpoint.close();
      await expected.close();
    }
  });
});

describe('unpickle', () => {
  const options = { label: 'test.pkl' };

  it('keeps a global outside the allow-list as an inert placeholder that names it and its arguments', () => {
    // os.system('ls'): GLOBAL, a one-tuple argument, REDUCE. Nothing is imported or called.
    const evil = pickleBytes([0x80, 2], 'cos\nsystem\n', 'X', [2, 0, 0, 0], 'ls', [0x85], 'R.');
    const { value } = unpickle(evil, options);
    expect(value).toBeInstanceOf(PythonObject);
    expect(String(value)).toBe("os.system('ls')");
    // Protocol 4 spells the global STACK_GLOBAL; a placeholder called again stays a placeholder.
    const stacked = pickleBytes([0x80, 4, 0x8c, 8], 'builtins', [0x8c, 4], 'eval', [0x93], 'K', [1], [0x85], 'R)R.');
    expect(String(unpickle(stacked, options).value)).toBe('builtins.eval()');
    // NEWOBJ and BUILD on a placeholder record the state without interpreting it.
    const built = pickleBytes([0x80, 2], 'csubprocess\nPopen\n)', [0x81], '}X', [1, 0, 0, 0], 'aK', [2], 'sb.');
    const popen = unpickle(built, options).value as PythonObject;
    expect(popen.className).toBe('subprocess.Popen');
    expect(popen.state).toEqual(new Map([['a', 2]]));
  });

  it('abbreviates long and deep placeholder arguments in messages', () => {
    // os.system(('x' * 100, [[[[1]]]], 1, 2, 3, 4))
    const bytes = pickleBytes(
      [0x80, 2], 'cos\nsystem\n(',
      'X', [100, 0, 0, 0], 'x'.repeat(100),
      ']]]]K', [1], 'aaaa',
      'K', [1], 'K', [2], 'K', [3], 'K', [4],
      'tR.',
    );
    expect(String(unpickle(bytes, options).value)).toBe(`os.system('${'x'.repeat(40)}…', […], 1, 2, …)`);
  });

  it('decodes numpy scalars and arrays as data', () => {
    // pickle.dumps({'f8': np.float64(1.5), 'i8': np.int64(-7), 'f4be': np.float32(2.5), 'b': np.bool_(True),
    //               'arr': np.arange(6, dtype='<i4').reshape(2, 3), 'half': np.float16(0.5)}, protocol=2), numpy 2.
    const bytes = Buffer.from(NUMPY_PICKLE_HEX, 'hex');
    const value = unpickle(bytes, options).value as Map<string, PickleValue>;
    expect(value.get('f8')).toBe(1.5);
    expect(value.get('i8')).toBe(-7);
    expect(value.get('f4be')).toBe(2.5);
    expect(value.get('b')).toBe(true);
    expect(value.get('half')).toBe(0.5);
    const array = value.get('arr') as NumpyArray;
    expect(array).toBeInstanceOf(NumpyArray);
    expect(array.shape).toEqual([2, 3]);
    expect(array.dtype?.type).toBe('i4');
    expect([...new Int32Array((array.data as Uint8Array).slice().buffer)]).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('sets a Namespace from a (dict, slots) BUILD state', () => {
    const bytes = pickleBytes([0x80, 2], 'cargparse\nNamespace\n)', [0x81], '}X', [4, 0, 0, 0], 'arch', 'X', [8, 0, 0, 0], 'ofa_tiny', 's}', [0x86], 'b.');
    expect({ ...(unpickle(bytes, options).value as Namespace) }).toEqual({ arch: 'ofa_tiny' });
  });

  it('appends long runs of items and decodes long integers in linear time', () => {
    const count = 200_000;
    const appends = pickleBytes([0x80, 2], '](', 'N'.repeat(count), 'e.');
    expect((unpickle(appends, options).value as PickleValue[]).length).toBe(count);
    // LONG4 of 100,000 bytes: 0xff… then 0x7f, i.e. 2^(8n − 1) − 1.
    const n = 100_000;
    const digits = new Uint8Array(n).fill(0xff);
    digits[n - 1] = 0x7f;
    const long4 = pickleBytes([0x80, 2, 0x8b], [0xa0, 0x86, 0x01, 0x00], [...digits], '.');
    expect(unpickle(long4, options).value).toBe((1n << BigInt(8 * n - 1)) - 1n);
    expect(unpickle(pickleBytes([0x80, 2, 0x8a, 3], [0, 0, 0x80], '.'), options).value).toBe(-(2 ** 23));
  });

  it('names an unknown opcode and its byte offset', () => {
    expect(() => unpickle(pickleBytes([0x80, 2, 0x4e, 0xff], '.'), options)).toThrow(
      'test.pkl: unknown or unsupported pickle opcode 0xff at byte offset 3',
    );
    // INT belongs to protocol 0, which torch.save never writes.
    expect(() => unpickle(pickleBytes([0x80, 2], 'I1\n.'), options)).toThrow(
      "unknown or unsupported pickle opcode 0x49 ('I') at byte offset 2",
    );
  });

  it('rejects protocols other than 2–5', () => {
    expect(() => unpickle(pickleBytes([0x80, 6], 'N.'), options)).toThrow(
      'pickle protocol 6; protocols 2–5 are supported',
    );
  });

  it('says where a truncated pickle ends', () => {
    expect(() => unpickle(pickleBytes([0x80, 2], 'X', [9, 0, 0, 0], 'abc'), options)).toThrow(
      'test.pkl: the pickle ends inside BINUNICODE at byte offset 2',
    );
    expect(() => unpickle(pickleBytes([0x80, 2], 'N'), options)).toThrow('ends at byte offset 3 without a STOP');
  });

  it('decodes ints of every width, bytes, memo references and _codecs.encode', () => {
    const bytes = pickleBytes(
      [0x80, 3],
      ']q', [0], '(',
      'J', [0xff, 0xff, 0xff, 0xff], // -1
      'M', [0x10, 0x27], // 10000
      [0x8a, 9], [0, 0, 0, 0, 0, 0, 0, 0, 1], // 2^64: beyond 2^53, a bigint
      [0x8a, 2], [0x00, 0x80], // -32768
      'C', [3, 1, 2, 0xff], // b'\x01\x02\xff'
      'c_codecs\nencode\n', 'X', [2, 0, 0, 0], [0xc3, 0xbf], 'X', [6, 0, 0, 0], 'latin1', [0x86], 'R', // b'\xff'
      'G', [0x3f, 0xf8, 0, 0, 0, 0, 0, 0], // 1.5
      'h', [0], // the list itself
      'e.',
    );
    const { value, length } = unpickle(bytes, options);
    expect(length).toBe(bytes.length);
    const list = value as PickleValue[];
    const [bytesValue, encoded] = [new Uint8Array([1, 2, 0xff]), new Uint8Array([0xff])];
    expect(list.slice(0, 7)).toEqual([-1, 10000, 2n ** 64n, -32768, bytesValue, encoded, 1.5]);
    expect(list[7]).toBe(list);
  });

  it('rejects a tensor view that reaches past its storage, saying where', () => {
    const storage = new TorchStorage('k', 'float32', 2, 'cpu', async (_offset, length) => new Uint8Array(length), true);
    // _rebuild_tensor_v2(<storage>, 0, (3,), (1,), False, None)
    const bytes = pickleBytes(
      [0x80, 2],
      'ctorch._utils\n_rebuild_tensor_v2\n(NQ',
      [0x4b, 0],
      '(', [0x4b, 3], 't',
      '(', [0x4b, 1], 't',
      [0x89], 'NtR.',
    );
    expect(() => unpickle(bytes, { ...options, persistentLoad: () => storage })).toThrow(
      "test.pkl: a tensor of size [3], stride [1] at storage offset 0 reaches element 2 of storage 'k', which has 2 " +
        '(REDUCE at byte offset 51)',
    );
  });

  it('refuses globals it allows where they make no sense', () => {
    // torch.FloatStorage is allowed as a name in persistent ids, not as something to call.
    const call = pickleBytes([0x80, 2], 'ctorch\nFloatStorage\n)R.');
    expect(() => unpickle(call, options)).toThrow("'torch.FloatStorage' cannot be called (REDUCE at byte offset 23)");
  });
});

describe('TorchTensor.contiguousBytes', () => {
  /** A storage of int64 elements 0, 1, 2, ... held in memory, stored with the given byte order. */
  function int64Storage(numel: number, littleEndian: boolean): TorchStorage {
    const bytes = new Uint8Array(numel * 8);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < numel; i++) view.setBigInt64(i * 8, BigInt(i), littleEndian);
    const read = async (offset: number, length: number) => bytes.slice(offset, offset + length);
    return new TorchStorage('k', 'int64', numel, 'cpu', read, littleEndian);
  }

  it.each([true, false])('gathers a permuted 3-D view with a storage offset (little-endian: %s)', async (le) => {
    // Storage elements 5.. hold a [2, 3, 4] row-major block; view it permuted to [4, 2, 3].
    const tensor = new TorchTensor(int64Storage(40, le), 5, [4, 2, 3], [1, 12, 4]);
    const values = [...new BigInt64Array((await tensor.contiguousBytes()).buffer)].map(Number);
    const expected: number[] = [];
    for (let d = 0; d < 4; d++) {
      for (let a = 0; a < 2; a++) for (let b = 0; b < 3; b++) expected.push(5 + a * 12 + b * 4 + d);
    }
    expect(values).toEqual(expected);
  });

  it('refuses views that repeat elements (stride 0, overlaps) before allocating anything', async () => {
    const broadcast = new TorchTensor(int64Storage(3, true), 1, [2, 2], [0, 1]);
    await expect(broadcast.contiguousBytes()).rejects.toThrow(
      "a tensor of size [2, 2], stride [0, 1] at storage offset 1 has 4 elements but covers 2 of storage 'k': " +
        'it repeats elements (stride 0 or overlapping dimensions)',
    );
    // (2^40,) with stride 0 over 12 floats: refused at once, not after filling memory.
    await expect(new TorchTensor(int64Storage(12, true), 0, [2 ** 40], [0]).contiguousBytes()).rejects.toThrow(
      TorchTensorError,
    );
    expect(() => new TorchTensor(int64Storage(12, true), 0, [2 ** 30, 2 ** 30], [0, 0])).toThrow('beyond 2^53 elements');
  });
});

describe('malformed files', () => {
  it('reports a truncated zip archive', async () => {
    const bytes = await readFile(ZIP_CHECKPOINT);
    await expect(readTorchCheckpoint(bytes.subarray(0, bytes.length - 40), 'cut.pt')).rejects.toThrow(
      'cut.pt: no end-of-central-directory record in the last 3161 bytes: not a zip archive, or truncated',
    );
  });

  it('reports a zip record whose local header lies past the central directory', async () => {
    const bytes = new Uint8Array(await readFile(ZIP_CHECKPOINT));
    // The central directory comes after the records, so the last occurrence of a name is its entry there.
    const entry = Buffer.from(bytes).lastIndexOf(Buffer.from('small/version')) - 46;
    new DataView(bytes.buffer).setUint32(entry + 42, bytes.length - 10, true); // local header offset
    await expect(ZipArchive.fromBytes(bytes, 'broken.pt')).rejects.toThrow(
      new RegExp(`broken\\.pt: record 'small/version' .*: its local header offset ${bytes.length - 10} is not before the central directory`),
    );
  });

  /** small.pt with one record's local header field changed, and the record's name. */
  async function withLocalHeaderChange(name: string, change: (header: DataView) => void): Promise<Uint8Array> {
    const bytes = new Uint8Array(await readFile(ZIP_CHECKPOINT));
    const archive = await ZipArchive.fromBytes(bytes, 'small.pt');
    const { headerOffset } = archive.record(name);
    await archive.close();
    change(new DataView(bytes.buffer, headerOffset, 30));
    return bytes;
  }

  it('verifies CRC-32 for whole and partial reads of a record', async () => {
    const bytes = new Uint8Array(await readFile(ZIP_CHECKPOINT));
    const clean = await ZipArchive.fromBytes(bytes, 'small.pt');
    const record = clean.record('small/data/3');
    const first = (await clean.readRange('small/data/3', 0, 4))[0]!;
    await clean.close();
    const dataOffset = Buffer.from(bytes).indexOf(Buffer.from([first]), record.headerOffset + 30 + 'small/data/3'.length);
    bytes[dataOffset + record.size - 1]! ^= 0x01; // the last byte of the record
    for (const read of [
      (archive: ZipArchive) => archive.read('small/data/3'),
      (archive: ZipArchive) => archive.readRange('small/data/3', 0, 4),
    ]) {
      const archive = await ZipArchive.fromBytes(bytes, 'flipped.pt');
      await expect(read(archive)).rejects.toThrow(
        /flipped\.pt: record 'small\/data\/3': its data has CRC-32 0x[0-9a-f]{8}, the central directory says 0x[0-9a-f]{8}/,
      );
    }
  });

  it('refuses a local header whose extra length would shift the data', async () => {
    for (const delta of [4, -4, 64]) {
      const bytes = await withLocalHeaderChange('small/data/3', (header) => {
        header.setUint16(28, header.getUint16(28, true) + delta, true);
      });
      const archive = await ZipArchive.fromBytes(bytes, 'shifted.pt');
      await expect(archive.read('small/data/3')).rejects.toThrow(/shifted\.pt: record 'small\/data\/3' \(local header at byte \d+\): /);
    }
  });

  it('refuses a local header that disagrees with the central directory', async () => {
    const bytes = await withLocalHeaderChange('small/data/3', (header) => header.setUint16(8, 8, true));
    const archive = await ZipArchive.fromBytes(bytes, 'deflated-locally.pt');
    await expect(archive.read('small/data/3')).rejects.toThrow(
      /local header at byte \d+\): method 8 where the central directory says stored \(method 0\)/,
    );
  });

  it('refuses a compressed record, naming it', async () => {
    const bytes = new Uint8Array(await readFile(ZIP_CHECKPOINT));
    const entry = Buffer.from(bytes).lastIndexOf(Buffer.from('small/data.pkl')) - 46;
    new DataView(bytes.buffer).setUint16(entry + 10, 8, true); // method 8: deflate
    await expect(readTorchCheckpoint(bytes, 'deflated.pt')).rejects.toThrow(
      /deflated\.pt: record 'small\/data\.pkl' \(central directory byte \d+\): compression method 8/,
    );
  });

  it('reports legacy storage data cut short', async () => {
    const bytes = await readFile(LEGACY_CHECKPOINT);
    await expect(readTorchCheckpoint(bytes.subarray(0, 1800), 'cut-legacy.pt')).rejects.toThrow(
      new RegExp(
        "cut-legacy\\.pt: storage '\\d+' \\(element count at byte \\d+\\): " +
          'its \\d+ bytes of data at byte \\d+ run past the end of the 1800-byte file',
      ),
    );
    await expect(readTorchCheckpoint(bytes.subarray(0, 600), 'cut-legacy.pt')).rejects.toThrow(
      'cut-legacy.pt: object pickle: the pickle ends inside',
    );
  });

  it('rejects a file that is neither a zip nor a pickle', async () => {
    await expect(readTorchCheckpoint(new TextEncoder().encode('{"json": true}'), 'x.json')).rejects.toThrow(
      'x.json: not a PyTorch checkpoint: it starts with bytes 7b 22 6a 73',
    );
  });
});
