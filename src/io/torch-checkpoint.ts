/**
 * Reads files written by `torch.save` without executing anything.
 *
 * Two container formats exist:
 * - zip (PyTorch ≥ 1.6): `<archive>/data.pkl` is the pickled object tree; each storage it
 *   references is the record `<archive>/data/<key>`; `<archive>/byteorder`, when present, says
 *   whether storages are little- or big-endian (absent: little).
 * - legacy (before 1.6, or `_use_new_zipfile_serialization=False`): five pickles back to back —
 *   a magic number, the protocol version, `sys_info`, the object tree and the list of storage
 *   keys — then each storage's data, preceded by its element count as an 8-byte integer.
 *
 * The object tree is unpickled with the allow-list of `pickle.ts`. Tensors come back as
 * `TorchTensor` descriptors whose data is read from the file only when asked for, so the file
 * stays open until `close()`.
 */
import { PickleEndOfDataError, PythonGlobal, brief, unpickle, type PickleValue } from './pickle.js';
import { TORCH_DTYPE_BYTES, TorchStorage, type TorchDType } from './torch-tensor.js';
import { type ByteSource, memorySource, openFileSource, readExactly, readOrClose } from './byte-source.js';
import type { SafetensorsDType } from './safetensors.js';
import { ZipArchive } from './zip.js';

export {
  Namespace,
  NumpyArray,
  OrderedDict,
  PickleError,
  PythonObject,
  brief,
  type PickleValue,
} from './pickle.js';
export { TORCH_DTYPE_BYTES, TorchStorage, TorchTensor, TorchTensorError, type TorchDType } from './torch-tensor.js';

export class TorchCheckpointError extends Error {
  override name = 'TorchCheckpointError';
}

export type TorchCheckpointFormat = 'zip' | 'legacy';

export class TorchCheckpoint {
  #closed = false;

  constructor(
    /** The file path, or the label of an in-memory checkpoint; errors start with it. */
    readonly label: string,
    readonly format: TorchCheckpointFormat,
    /** The unpickled object: for a fairseq checkpoint a dict with `model`, for `pytorch_model.bin` the state dict. */
    readonly root: PickleValue,
    /** Every storage the object tree references, by key. */
    readonly storages: ReadonlyMap<string, TorchStorage>,
    private readonly release: () => Promise<void>,
  ) {}

  /** Releases the file; tensors of this checkpoint cannot be read afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.release();
  }
}

/** Opens a checkpoint on disk and reads its object tree; tensor data is read on demand. */
export async function loadTorchCheckpoint(path: string): Promise<TorchCheckpoint> {
  const source = await openFileSource(path, { errorClass: TorchCheckpointError });
  return readOrClose(source, (opened) => readTorchCheckpoint(opened, path));
}

/** Reads a checkpoint through any byte source (or from bytes in memory); `label` names it in errors. */
export async function readTorchCheckpoint(input: ByteSource | Uint8Array, label: string): Promise<TorchCheckpoint> {
  const source = input instanceof Uint8Array ? memorySource(input) : input;
  const head = await readExactly(source, label, 0, Math.min(source.size, 9), TorchCheckpointError);
  if (looksLikeSafetensors(head, source.size)) {
    throw new TorchCheckpointError(
      `${label}: this is already a safetensors file, not a PyTorch checkpoint: it needs no conversion ` +
        `(give it, or its folder with a config.json, to --weights)`,
    );
  }
  if (head[0] === 0x50 && head[1] === 0x4b) return readZipCheckpoint(source, label);
  if (head[0] === PROTO_OPCODE) return readLegacyCheckpoint(source, label);
  if (await looksLikeTar(source, label)) {
    throw new TorchCheckpointError(`${label}: a tar-format checkpoint (PyTorch < 0.1.10); it is not supported`);
  }
  const shown = [...head].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new TorchCheckpointError(
    `${label}: not a PyTorch checkpoint: it starts with bytes ${shown || '(none)'}, neither a zip archive nor a pickle`,
  );
}

/** The safetensors dtype that stores a torch dtype's bytes unchanged. */
export const SAFETENSORS_DTYPE_OF: Readonly<Record<TorchDType, SafetensorsDType>> = Object.freeze({
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
});

// ---------------------------------------------------------------------------------------------
// zip

async function readZipCheckpoint(source: ByteSource, label: string): Promise<TorchCheckpoint> {
  const archive = await ZipArchive.fromSource(source, label);
  const pickles = [...archive.records.keys()].filter((name) => /^[^/]+\/data\.pkl$/.test(name));
  if (pickles.length !== 1) {
    const found = pickles.length ? `several (${pickles.join(', ')})` : 'none';
    throw new TorchCheckpointError(`${label}: expected one '<archive>/data.pkl' record in the zip, found ${found}`);
  }
  const pickleName = pickles[0]!;
  const prefix = pickleName.slice(0, -'/data.pkl'.length);
  const littleEndian = await readByteOrder(archive, `${prefix}/byteorder`);

  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (id: PickleValue): TorchStorage => {
    const { key, dtype, numel, location } = parseStorageId(id, 5);
    const known = storages.get(key);
    if (known) return sameStorage(known, dtype, numel);
    const record = `${prefix}/data/${key}`;
    if (!archive.has(record)) throw new Error(`storage '${key}' has no record '${record}' in the archive`);
    const expected = numel * TORCH_DTYPE_BYTES[dtype];
    const { size } = archive.record(record);
    if (size !== expected) {
      throw new Error(
        `storage '${key}' is ${numel} ${dtype} elements (${expected} bytes), ` +
          `but record '${record}' holds ${size} bytes`,
      );
    }
    const read = (offset: number, length: number) => archive.readRange(record, offset, length);
    const storage = new TorchStorage(key, dtype, numel, location, read, littleEndian);
    storages.set(key, storage);
    return storage;
  };

  const pickleBytes = await archive.read(pickleName);
  const { value, length } = unpickle(pickleBytes, { label: `${label}: ${pickleName}`, persistentLoad });
  if (length !== pickleBytes.length) {
    const extra = pickleBytes.length - length;
    throw new TorchCheckpointError(`${label}: ${pickleName} has ${extra} bytes after the pickle's STOP`);
  }
  return new TorchCheckpoint(label, 'zip', value, storages, () => archive.close());
}

async function readByteOrder(archive: ZipArchive, record: string): Promise<boolean> {
  if (!archive.has(record)) return true;
  const text = new TextDecoder().decode(await archive.read(record)).trim();
  if (text === 'little') return true;
  if (text === 'big') return false;
  throw new TorchCheckpointError(`${archive.label}: record '${record}' says '${text}'; expected 'little' or 'big'`);
}

// ---------------------------------------------------------------------------------------------
// legacy

const PROTO_OPCODE = 0x80;
const LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL_VERSION = 1001;
const ELEMENT_COUNT_BYTES = 8;
/** The pickles come first and are small; read this much at first and more only if needed. */
const FIRST_PICKLE_WINDOW_BYTES = 1 << 20;

async function readLegacyCheckpoint(source: ByteSource, label: string): Promise<TorchCheckpoint> {
  let offset = 0;
  const next = async (what: string, persistentLoad?: (id: PickleValue) => PickleValue): Promise<PickleValue> => {
    const { value, length } = await unpickleAt(source, `${label}: ${what} pickle`, offset, persistentLoad);
    offset += length;
    return value;
  };

  const magic = await next('magic number');
  if (magic !== LEGACY_MAGIC_NUMBER) {
    throw new TorchCheckpointError(
      `${label}: starts with a pickle, but not with the magic number of a PyTorch checkpoint`,
    );
  }
  const protocol = await next('protocol version');
  if (protocol !== LEGACY_PROTOCOL_VERSION) {
    throw new TorchCheckpointError(
      `${label}: legacy format protocol version ${String(protocol)}; expected ${LEGACY_PROTOCOL_VERSION}`,
    );
  }
  const sysInfo = await next('sys_info');
  const littleEndianFlag = sysInfo instanceof Map ? sysInfo.get('little_endian') : undefined;
  if (typeof littleEndianFlag !== 'boolean') {
    throw new TorchCheckpointError(`${label}: sys_info pickle lacks the boolean 'little_endian'`);
  }
  const littleEndian = littleEndianFlag;

  // Storages are read from the file only after the key list says where their data lies.
  const dataOffsets = new Map<string, number>();
  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (id: PickleValue): TorchStorage => {
    if (Array.isArray(id) && id[0] === 'module') {
      throw new Error(
        'the checkpoint pickles a whole nn.Module (with its source code); only state dicts are supported',
      );
    }
    const { key, dtype, numel, location, viewMetadata } = parseStorageId(id, 6);
    if (viewMetadata !== null) {
      throw new Error(`storage '${key}' is a view of another storage, which only PyTorch < 0.4 wrote; not supported`);
    }
    const known = storages.get(key);
    if (known) return sameStorage(known, dtype, numel);
    const read = async (byteOffset: number, byteLength: number): Promise<Uint8Array<ArrayBuffer>> => {
      const start = dataOffsets.get(key);
      if (start === undefined) throw new TorchCheckpointError(`${label}: storage '${key}' has no data in the file`);
      return readExactly(source, label, start + byteOffset, byteLength, TorchCheckpointError);
    };
    const storage = new TorchStorage(key, dtype, numel, location, read, littleEndian);
    storages.set(key, storage);
    return storage;
  };

  const root = await next('object', persistentLoad);
  const keys = await next('storage keys');
  if (!Array.isArray(keys) || !keys.every((key): key is string => typeof key === 'string')) {
    throw new TorchCheckpointError(`${label}: the storage keys pickle is not a list of strings`);
  }

  for (const key of keys) {
    const storage = storages.get(key);
    const where = `${label}: storage '${key}' (element count at byte ${offset})`;
    if (!storage) throw new TorchCheckpointError(`${where}: listed with data, but no tensor refers to it`);
    const countBytes = await readExactly(source, where, offset, ELEMENT_COUNT_BYTES, TorchCheckpointError);
    const count = new DataView(countBytes.buffer, countBytes.byteOffset).getBigInt64(0, littleEndian);
    if (count !== BigInt(storage.numel)) {
      throw new TorchCheckpointError(`${where}: the file says ${count} elements, the pickle ${storage.numel}`);
    }
    const start = offset + ELEMENT_COUNT_BYTES;
    const end = start + storage.byteLength;
    if (end > source.size) {
      throw new TorchCheckpointError(
        `${where}: its ${storage.byteLength} bytes of data at byte ${start} run past the end of the ` +
          `${source.size}-byte file (truncated?)`,
      );
    }
    dataOffsets.set(key, start);
    offset = end;
  }
  const missing = [...storages.keys()].filter((key) => !dataOffsets.has(key));
  if (missing.length) {
    const names = missing.map((key) => `'${key}'`).join(', ');
    throw new TorchCheckpointError(`${label}: storages ${names} are referenced but have no data`);
  }
  return new TorchCheckpoint(label, 'legacy', root, storages, () => source.close());
}

/**
 * Unpickles the pickle starting at `offset`. Its length is known only once parsed, so this reads
 * a window and widens it while the pickle runs past the window's end.
 */
async function unpickleAt(
  source: ByteSource,
  label: string,
  offset: number,
  persistentLoad?: (id: PickleValue) => PickleValue,
): Promise<{ value: PickleValue; length: number }> {
  const available = source.size - offset;
  let window = Math.min(available, FIRST_PICKLE_WINDOW_BYTES);
  for (;;) {
    const bytes = await readExactly(source, label, offset, window, TorchCheckpointError);
    try {
      return unpickle(bytes, persistentLoad ? { label, persistentLoad } : { label });
    } catch (error) {
      if (!(error instanceof PickleEndOfDataError) || window === available) throw error;
      // Growing geometrically keeps the re-parsing linear in the pickle's length overall.
      window = Math.min(available, Math.max(window * 8, error.needed));
    }
  }
}

/** safetensors: an 8-byte little-endian header length that fits the file, then the header's `{`. */
function looksLikeSafetensors(head: Uint8Array, size: number): boolean {
  if (head.length < 9 || head[8] !== 0x7b) return false;
  const headerLength = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
  return headerLength >= 2n && headerLength <= BigInt(size - 8);
}

async function looksLikeTar(source: ByteSource, label: string): Promise<boolean> {
  const magicOffset = 257;
  if (source.size < magicOffset + 5) return false;
  const magic = await readExactly(source, label, magicOffset, 5, TorchCheckpointError);
  return new TextDecoder('latin1').decode(magic) === 'ustar';
}

// ---------------------------------------------------------------------------------------------
// persistent ids

interface StorageId {
  key: string;
  dtype: TorchDType;
  numel: number;
  location: string;
  /** Legacy format only. */
  viewMetadata: PickleValue;
}

/**
 * `('storage', storage_type, key, location, numel)` in zip files; legacy files append
 * `view_metadata`. `storage_type` is a storage class global (`torch.FloatStorage`), whose dtype
 * the storage has.
 */
function parseStorageId(id: PickleValue, fields: 5 | 6): StorageId {
  if (!Array.isArray(id) || id.length !== fields || id[0] !== 'storage') {
    const layout = `('storage', type, key, location, size${fields === 6 ? ', view' : ''})`;
    throw new Error(`unexpected persistent id; expected a ${fields}-tuple ${layout}`);
  }
  const [, storageType, key, location, numel, viewMetadata] = id as readonly PickleValue[];
  if (!(storageType instanceof PythonGlobal) || storageType.meaning.kind !== 'storageType') {
    throw new Error(`a persistent id names ${brief(storageType ?? null, 0)} where a storage class belongs`);
  }
  if (typeof key !== 'string' || typeof location !== 'string') {
    throw new Error('a persistent id has a non-string storage key or location');
  }
  if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
    throw new Error(`storage '${key}' has an invalid size`);
  }
  return { key, dtype: storageType.meaning.dtype, numel, location, viewMetadata: viewMetadata ?? null };
}

function sameStorage(known: TorchStorage, dtype: TorchDType, numel: number): TorchStorage {
  if (known.dtype !== dtype || known.numel !== numel) {
    throw new Error(
      `storage '${known.key}' is referenced as ${numel} ${dtype} elements and as ` +
        `${known.numel} ${known.dtype} elements`,
    );
  }
  return known;
}
