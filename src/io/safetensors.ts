/**
 * safetensors: a strict, lazy reader and an atomic writer.
 *
 * Layout: an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`, then the
 * data section; offsets are relative to its start and the tensors must tile it exactly.
 *
 * The reader accepts what the reference implementation (huggingface/safetensors) accepts, and
 * says precisely what is wrong otherwise: every error names the file, the tensor where there is
 * one, and the numbers involved. Opening reads only the length prefix and the header; each tensor
 * is read on demand from a `ByteSource`, so multi-gigabyte checkpoints never sit in one buffer.
 *
 * Node's `fs` is imported only inside the functions that touch the disk, so this module also
 * loads in browsers, where `SafetensorsFile.fromBytes` / `fromSource` serve.
 */
import { writeFileAtomically } from './atomic-file.js';
import { type ByteSource, MAX_BUFFER_BYTES, memorySource, openFileSource, readExactly, readOrClose } from './byte-source.js';
import { bfloat16sToFloats, halvesToFloats } from '../half.js';

export type { ByteSource } from './byte-source.js';

export type SafetensorsDType =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL';

export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
});

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute position of the first byte in the file. */
  byteOffset: number;
  byteLength: number;
}

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  data: ArrayBufferView;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** The reference implementation refuses larger headers; so do we, before allocating one. */
const MAX_HEADER_BYTES = 100_000_000;
/**
 * Deepest nesting of JSON arrays and objects accepted in a header, checked before parsing: a
 * valid header needs 3 levels; the reference parser (serde_json) stops at 128, and so do we.
 */
const MAX_HEADER_NESTING = 128;
const LENGTH_PREFIX_BYTES = 8;
const METADATA_KEY = '__metadata__';

// The data section is little-endian and is viewed through typed arrays, which use host order.
// Every host we run on (x86-64, arm64, WebGPU-capable browsers) is little-endian.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('safetensors: this reader requires a little-endian host');
}

function isDType(value: string): value is SafetensorsDType {
  return Object.hasOwn(SAFETENSORS_DTYPE_BYTES, value);
}

const SUPPORTED_DTYPES = Object.keys(SAFETENSORS_DTYPE_BYTES).join(', ');

/** A short, printable rendering of a JSON value for error messages. */
function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Shapes print in full up to this many dimensions. */
const SHOWN_DIMENSIONS = 8;

function shapeText(shape: readonly number[]): string {
  if (shape.length <= SHOWN_DIMENSIONS) return `[${shape.join(', ')}]`;
  return `[${shape.slice(0, SHOWN_DIMENSIONS).join(', ')}, … (${shape.length} dimensions)]`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Byte counts beyond this are reported as "more than 2^64": no file or buffer comes close. */
const COUNT_CAP = 2n ** 64n;

/**
 * Elements of `shape`, or COUNT_CAP + 1 once the product passes COUNT_CAP: a shape of many large
 * dimensions would otherwise grow a huge BigInt, quadratically in its length.
 */
function elementCount(shape: readonly number[]): bigint {
  if (shape.includes(0)) return 0n;
  let count = 1n;
  for (const dim of shape) {
    count *= BigInt(dim);
    if (count > COUNT_CAP) return COUNT_CAP + 1n;
  }
  return count;
}

function byteCountText(bytes: bigint): string {
  return bytes > COUNT_CAP ? 'more than 2^64' : String(bytes);
}

// ---------------------------------------------------------------------------------------------
// Header parsing

interface ParsedHeader {
  metadata: Readonly<Record<string, string>>;
  tensors: Map<string, TensorInfo>;
}

function parseMetadata(label: string, value: unknown): Readonly<Record<string, string>> {
  // The reference reader treats `null` like an absent `__metadata__`.
  if (value === null) return Object.freeze({});
  if (!isPlainObject(value)) {
    throw new SafetensorsError(`${label}: ${METADATA_KEY} must be an object of strings, got ${show(value)}`);
  }
  const entries = Object.entries(value);
  for (const [key, item] of entries) {
    if (typeof item !== 'string') {
      throw new SafetensorsError(
        `${label}: ${METADATA_KEY}[${JSON.stringify(key)}] must be a string, got ${show(item)}`,
      );
    }
  }
  // fromEntries defines properties, so a key like "__proto__" stays an ordinary key.
  return Object.freeze(Object.fromEntries(entries) as Record<string, string>);
}

interface RawEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

function parseEntry(label: string, name: string, value: unknown, dataLength: number): RawEntry {
  const where = `${label}: tensor '${name}'`;
  if (!isPlainObject(value)) throw new SafetensorsError(`${where}: entry must be an object, got ${show(value)}`);
  for (const field of ['dtype', 'shape', 'data_offsets']) {
    if (!Object.hasOwn(value, field)) throw new SafetensorsError(`${where}: missing field '${field}'`);
  }

  const dtype = value['dtype'];
  if (typeof dtype !== 'string') throw new SafetensorsError(`${where}: 'dtype' must be a string, got ${show(dtype)}`);
  if (!isDType(dtype)) {
    throw new SafetensorsError(`${where}: unknown dtype '${dtype}' (supported: ${SUPPORTED_DTYPES})`);
  }

  const shape = value['shape'];
  if (!Array.isArray(shape)) throw new SafetensorsError(`${where}: 'shape' must be an array, got ${show(shape)}`);
  shape.forEach((dim: unknown, axis) => {
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0) {
      throw new SafetensorsError(
        `${where}: shape ${show(shape)} has dimension ${axis} = ${show(dim)}; dimensions must be non-negative integers`,
      );
    }
  });
  const dims = shape as number[];

  const offsets = value['data_offsets'];
  const validOffsets =
    Array.isArray(offsets) &&
    offsets.length === 2 &&
    offsets.every((o: unknown) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0) &&
    (offsets[0] as number) <= (offsets[1] as number);
  if (!validOffsets) {
    throw new SafetensorsError(
      `${where}: 'data_offsets' must be [begin, end] with integers 0 <= begin <= end, got ${show(offsets)}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) {
    throw new SafetensorsError(
      `${where}: data_offsets [${begin}, ${end}] run past the end of the data section, which is ${dataLength} bytes`,
    );
  }

  const expected = elementCount(dims) * BigInt(SAFETENSORS_DTYPE_BYTES[dtype]);
  if (expected !== BigInt(end - begin)) {
    throw new SafetensorsError(
      `${where}: shape ${shapeText(dims)} of ${dtype} needs ${byteCountText(expected)} bytes, but data_offsets ` +
        `[${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return { name, dtype, shape: dims, begin, end };
}

/** The format requires the tensors to cover the data section exactly: no overlaps, no holes. */
function checkTiling(label: string, entries: readonly RawEntry[], dataLength: number): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: RawEntry | undefined;
  for (const entry of sorted) {
    if (entry.begin < cursor && previous) {
      throw new SafetensorsError(
        `${label}: tensors '${previous.name}' (data_offsets [${previous.begin}, ${previous.end}]) and ` +
          `'${entry.name}' (data_offsets [${entry.begin}, ${entry.end}]) overlap`,
      );
    }
    if (entry.begin > cursor) {
      const before = previous ? `between '${previous.name}' and '${entry.name}'` : `before '${entry.name}'`;
      throw new SafetensorsError(
        `${label}: bytes ${cursor}..${entry.begin} of the data section, ${before}, belong to no tensor`,
      );
    }
    cursor = entry.end;
    previous = entry;
  }
  if (cursor !== dataLength) {
    const after = previous ? `after '${previous.name}'` : 'and the header lists no tensors';
    throw new SafetensorsError(
      `${label}: bytes ${cursor}..${dataLength} of the data section, ${after}, belong to no tensor`,
    );
  }
}

/**
 * Refuses a header nested deeper than MAX_HEADER_NESTING before anything recursive (parsing,
 * printing) sees it. One pass over the bytes; brackets inside strings do not count.
 */
function checkNesting(label: string, headerBytes: Uint8Array): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < headerBytes.length; i++) {
    const byte = headerBytes[i]!;
    if (inString) {
      if (byte === 0x5c) i++; // a backslash escapes the next byte
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) {
      inString = true;
    } else if (byte === 0x7b || byte === 0x5b) {
      if (++depth > MAX_HEADER_NESTING) {
        throw new SafetensorsError(
          `${label}: header nests arrays and objects more than ${MAX_HEADER_NESTING} deep (at byte ${LENGTH_PREFIX_BYTES + i}); ` +
            'a safetensors header needs 3 levels',
        );
      }
    } else if (byte === 0x7d || byte === 0x5d) {
      depth--;
    }
  }
}

function parseHeader(label: string, headerBytes: Uint8Array, dataStart: number, dataLength: number): ParsedHeader {
  checkNesting(label, headerBytes);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(`${label}: header (bytes 8..${dataStart}) is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new SafetensorsError(`${label}: header (bytes 8..${dataStart}) is not valid JSON: ${(error as Error).message}`);
  }
  if (!isPlainObject(json)) {
    throw new SafetensorsError(`${label}: header must be a JSON object, got ${show(json)}`);
  }

  let metadata: Readonly<Record<string, string>> = Object.freeze({});
  const entries: RawEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === METADATA_KEY) metadata = parseMetadata(label, value);
    else entries.push(parseEntry(label, name, value, dataLength));
  }
  checkTiling(label, entries, dataLength);

  // "File order" is the order of the data. Object.entries would put integer-like names first.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  const tensors = new Map<string, TensorInfo>();
  for (const { name, dtype, shape, begin, end } of entries) {
    tensors.set(
      name,
      Object.freeze({
        name,
        dtype,
        shape: Object.freeze(shape) as number[],
        byteOffset: dataStart + begin,
        byteLength: end - begin,
      }),
    );
  }
  return { metadata, tensors };
}

// ---------------------------------------------------------------------------------------------
// Reading

/** "Did you mean" hints look at names up to this long; tensor names are far shorter. */
const MAX_HINT_NAME_LENGTH = 256;
/** Distance-table cells one hint may compute, so that a miss stays cheap on any header. */
const MAX_HINT_CELLS = 4_000_000;

/**
 * Levenshtein distance if it is at most `bound`, else `bound + 1`. Only the diagonal band of
 * width 2·bound + 1 can hold such paths, so the work is O(bound · |a|), not O(|a| · |b|).
 */
function editDistanceWithin(a: string, b: string, bound: number): number {
  const beyond = bound + 1;
  if (Math.abs(a.length - b.length) > bound) return beyond;
  let previous = Array.from({ length: b.length + 1 }, (_, j) => Math.min(j, beyond));
  let current = new Array<number>(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    const first = Math.max(1, i - bound);
    const last = Math.min(b.length, i + bound);
    // The cells flanking the band stand for every path outside it.
    current[first - 1] = first === 1 ? Math.min(i, beyond) : beyond;
    if (last < b.length) current[last + 1] = beyond;
    let rowMinimum = current[first - 1]!;
    for (let j = first; j <= last; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution, beyond);
      rowMinimum = Math.min(rowMinimum, current[j]!);
    }
    if (rowMinimum > bound) return beyond;
    [previous, current] = [current, previous];
  }
  return previous[b.length]!;
}

/** Up to `limit` names within a third of `wanted`'s length in edits, closest first; bounded work. */
function closeNames(wanted: string, names: Iterable<string>, limit = 3): string[] {
  if (wanted.length > MAX_HINT_NAME_LENGTH) return [];
  const maxDistance = Math.max(2, Math.ceil(wanted.length / 3));
  const cellsPerName = (2 * maxDistance + 1) * (wanted.length + 1);
  let budget = MAX_HINT_CELLS;
  const near: { name: string; distance: number }[] = [];
  for (const name of names) {
    if (Math.abs(name.length - wanted.length) > maxDistance) continue;
    if ((budget -= cellsPerName) < 0) break;
    const distance = editDistanceWithin(wanted, name, maxDistance);
    if (distance <= maxDistance) near.push({ name, distance });
  }
  return near
    .sort((a, b) => a.distance - b.distance || a.name.localeCompare(b.name))
    .slice(0, limit)
    .map(({ name }) => name);
}

type TypedArrayConstructor<T> = {
  readonly BYTES_PER_ELEMENT: number;
  new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
};

/** Views `bytes` as `T`, copying first when the start is not element-aligned. */
function viewAs<T>(bytes: Uint8Array<ArrayBuffer>, type: TypedArrayConstructor<T>): T {
  const aligned = bytes.byteOffset % type.BYTES_PER_ELEMENT === 0 ? bytes : bytes.slice();
  return new type(aligned.buffer, aligned.byteOffset, aligned.byteLength / type.BYTES_PER_ELEMENT);
}

export class SafetensorsFile {
  #closed = false;

  private constructor(
    /** The file path, or the label given for an in-memory source; every error starts with it. */
    readonly label: string,
    private readonly source: ByteSource,
    readonly metadata: Readonly<Record<string, string>>,
    /** In the order of their data in the file. */
    readonly tensors: ReadonlyMap<string, TensorInfo>,
  ) {}

  /** Opens a file on disk and reads its header; tensors are read when asked for. */
  static async open(path: string): Promise<SafetensorsFile> {
    const source = await openFileSource(path, { errorClass: SafetensorsError });
    return readOrClose(source, (opened) => SafetensorsFile.fromSource(opened, path));
  }

  /** Reads a file already in memory. Reads return copies: `bytes` is never aliased. */
  static fromBytes(bytes: Uint8Array, label: string): Promise<SafetensorsFile> {
    return SafetensorsFile.fromSource(memorySource(bytes), label);
  }

  /** Reads the header through any byte source; `label` names the file in errors. */
  static async fromSource(source: ByteSource, label: string): Promise<SafetensorsFile> {
    const size = source.size;
    if (size < LENGTH_PREFIX_BYTES) {
      throw new SafetensorsError(`${label}: file is ${size} bytes, shorter than the 8-byte header length`);
    }
    const prefix = await readExactly(source, label, 0, LENGTH_PREFIX_BYTES, SafetensorsError);
    const headerLength = new DataView(prefix.buffer, prefix.byteOffset, LENGTH_PREFIX_BYTES).getBigUint64(0, true);
    const available = size - LENGTH_PREFIX_BYTES;
    if (headerLength > BigInt(available)) {
      throw new SafetensorsError(
        `${label}: header length ${headerLength} bytes exceeds the ${available} bytes that follow the ` +
          `length prefix (file is ${size} bytes)`,
      );
    }
    if (headerLength > BigInt(MAX_HEADER_BYTES)) {
      throw new SafetensorsError(
        `${label}: header length ${headerLength} bytes exceeds the format's limit of ${MAX_HEADER_BYTES}`,
      );
    }
    const dataStart = LENGTH_PREFIX_BYTES + Number(headerLength);
    const headerBytes = await readExactly(source, label, LENGTH_PREFIX_BYTES, Number(headerLength), SafetensorsError);
    const { metadata, tensors } = parseHeader(label, headerBytes, dataStart, size - dataStart);
    return new SafetensorsFile(label, source, metadata, tensors);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (info) return info;
    const near = closeNames(name, this.tensors.keys());
    const hint = near.length
      ? `; close names: ${near.map((n) => `'${n}'`).join(', ')}`
      : ` (the file has ${this.tensors.size} tensors)`;
    throw new SafetensorsError(`${this.label}: no tensor named '${name}'${hint}`);
  }

  /** The raw little-endian bytes, in memory owned by the caller. */
  async readBytes(name: string): Promise<Uint8Array<ArrayBuffer>> {
    const info = this.info(name);
    if (this.#closed) throw new SafetensorsError(`${this.label}: cannot read tensor '${name}': the file is closed`);
    this.checkBufferSize(info, SAFETENSORS_DTYPE_BYTES[info.dtype]);
    return readExactly(this.source, this.label, info.byteOffset, info.byteLength, SafetensorsError);
  }

  /** Floating-point tensors as f32: F16 and BF16 widen exactly, F64 rounds to nearest. */
  async readFloat32(name: string): Promise<Float32Array> {
    const info = this.info(name);
    const { dtype } = info;
    this.checkBufferSize(info, Float32Array.BYTES_PER_ELEMENT);
    switch (dtype) {
      case 'F32':
        return viewAs(await this.readBytes(name), Float32Array);
      case 'F16':
        return halvesToFloats(viewAs(await this.readBytes(name), Uint16Array));
      case 'BF16':
        return bfloat16sToFloats(viewAs(await this.readBytes(name), Uint16Array));
      case 'F64':
        return Float32Array.from(viewAs(await this.readBytes(name), Float64Array));
      default:
        throw this.wrongDType(name, dtype, 'readFloat32', 'F64, F32, F16 or BF16');
    }
  }

  /** The IEEE binary16 bit patterns of an F16 tensor, for uploading half weights unchanged. */
  async readHalfBits(name: string): Promise<Uint16Array<ArrayBuffer>> {
    const { dtype } = this.info(name);
    if (dtype !== 'F16') throw this.wrongDType(name, dtype, 'readHalfBits', 'F16');
    return viewAs(await this.readBytes(name), Uint16Array);
  }

  /** Integer and BOOL tensors as i32; fails, naming the element, on a value outside int32. */
  async readInt32(name: string): Promise<Int32Array<ArrayBuffer>> {
    const info = this.info(name);
    const { dtype } = info;
    this.checkBufferSize(info, Int32Array.BYTES_PER_ELEMENT);
    switch (dtype) {
      case 'I32':
        return viewAs(await this.readBytes(name), Int32Array);
      case 'I16':
        return Int32Array.from(viewAs(await this.readBytes(name), Int16Array));
      case 'I8':
        return Int32Array.from(viewAs(await this.readBytes(name), Int8Array));
      case 'U16':
        return Int32Array.from(viewAs(await this.readBytes(name), Uint16Array));
      case 'U8':
        return Int32Array.from(await this.readBytes(name));
      case 'BOOL':
        return this.boolsToInt32(name, await this.readBytes(name));
      case 'U32':
        return this.uint32sToInt32(name, viewAs(await this.readBytes(name), Int32Array));
      case 'I64':
      case 'U64':
        return this.int64sToInt32(name, dtype, viewAs(await this.readBytes(name), Int32Array));
      default:
        throw this.wrongDType(name, dtype, 'readInt32', 'an integer dtype or BOOL');
    }
  }

  /** Releases the file handle. Reads after this fail; closing twice is harmless. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.source.close();
  }

  /** Refuses, before allocating, a result of `bytesPerElement`-byte elements that no buffer can hold. */
  private checkBufferSize(info: TensorInfo, bytesPerElement: number): void {
    const bytes = (info.byteLength / SAFETENSORS_DTYPE_BYTES[info.dtype]) * bytesPerElement;
    if (bytes > MAX_BUFFER_BYTES) {
      throw new SafetensorsError(
        `${this.label}: tensor '${info.name}' (${info.dtype} ${shapeText(info.shape)}) needs ${bytes} bytes in memory, ` +
          `more than one buffer holds (${MAX_BUFFER_BYTES})`,
      );
    }
  }

  private wrongDType(name: string, dtype: SafetensorsDType, method: string, accepted: string): SafetensorsError {
    return new SafetensorsError(`${this.label}: tensor '${name}' is ${dtype}; ${method} reads ${accepted}`);
  }

  private outOfRange(name: string, dtype: SafetensorsDType, index: number, value: bigint | number): SafetensorsError {
    return new SafetensorsError(
      `${this.label}: tensor '${name}' (${dtype}): element ${index} = ${value} does not fit in int32`,
    );
  }

  private boolsToInt32(name: string, bytes: Uint8Array): Int32Array<ArrayBuffer> {
    const out = new Int32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (b > 1) {
        throw new SafetensorsError(`${this.label}: tensor '${name}' (BOOL): element ${i} is byte ${b}, not 0 or 1`);
      }
      out[i] = b;
    }
    return out;
  }

  /** `words` holds the u32 bits as i32: values ≥ 2³¹ show up negative. */
  private uint32sToInt32(name: string, words: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
    const negative = words.findIndex((w) => w < 0);
    if (negative >= 0) throw this.outOfRange(name, 'U32', negative, words[negative]! >>> 0);
    return words;
  }

  /**
   * `words` holds each 64-bit value as (low, high) i32 pairs. A value fits in int32 when its high
   * word is the sign extension of the low word (for U64: when both are non-negative and high is 0).
   */
  private int64sToInt32(name: string, dtype: 'I64' | 'U64', words: Int32Array): Int32Array<ArrayBuffer> {
    const out = new Int32Array(words.length / 2);
    for (let i = 0; i < out.length; i++) {
      const low = words[2 * i]!;
      const high = words[2 * i + 1]!;
      const fits = dtype === 'I64' ? high === low >> 31 : high === 0 && low >= 0;
      if (!fits) {
        const pair = new DataView(words.buffer, words.byteOffset + 8 * i, 8);
        const value = dtype === 'I64' ? pair.getBigInt64(0, true) : pair.getBigUint64(0, true);
        throw this.outOfRange(name, dtype, i, value);
      }
      out[i] = low;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * A tensor to write whose bytes are produced only when the writer reaches it, so that a file
 * larger than memory can be written one tensor at a time.
 */
export interface LazyTensorEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  read(): Promise<ArrayBufferView>;
}

interface PlannedTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  byteLength: number;
  entry: TensorEntry | LazyTensorEntry;
}

interface Layout {
  /** Length prefix and padded header JSON. */
  head: Uint8Array;
  /** The tensors in file order. */
  tensors: PlannedTensor[];
  byteLength: number;
}

function isLazy(entry: TensorEntry | LazyTensorEntry): entry is LazyTensorEntry {
  return 'read' in entry;
}

/**
 * Validates the entries and lays them out as the reference writer does: widest dtype first,
 * then by name, so that every tensor starts aligned to its element size (the header is padded
 * with spaces to a multiple of 8). Lazy entries are checked against their shape when read.
 */
function layOut(entries: readonly (TensorEntry | LazyTensorEntry)[], metadata: Record<string, string> | undefined): Layout {
  const seen = new Set<string>();
  const planned: PlannedTensor[] = [];
  for (const entry of entries) {
    const { name, dtype, shape } = entry;
    const where = `safetensors writer: tensor '${name}'`;
    if (name === METADATA_KEY) throw new SafetensorsError(`${where}: the name is reserved for metadata`);
    if (seen.has(name)) throw new SafetensorsError(`${where}: the name appears twice`);
    seen.add(name);
    if (!isDType(dtype)) throw new SafetensorsError(`${where}: unknown dtype '${dtype}' (supported: ${SUPPORTED_DTYPES})`);
    shape.forEach((dim, axis) => {
      if (!Number.isSafeInteger(dim) || dim < 0) {
        throw new SafetensorsError(
          `${where}: shape ${shapeText(shape)} has dimension ${axis} = ${dim}; dimensions must be non-negative integers`,
        );
      }
    });
    const expected = elementCount(shape) * BigInt(SAFETENSORS_DTYPE_BYTES[dtype]);
    if (!isLazy(entry)) checkDataLength(where, entry, expected, entry.data.byteLength);
    if (expected > BigInt(Number.MAX_SAFE_INTEGER)) throw new SafetensorsError(`${where}: ${byteCountText(expected)} bytes`);
    planned.push({ name, dtype, shape, byteLength: Number(expected), entry });
  }
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new SafetensorsError(
          `safetensors writer: ${METADATA_KEY}[${JSON.stringify(key)}] must be a string, got ${show(value)}`,
        );
      }
    }
  }

  const byName = (a: PlannedTensor, b: PlannedTensor): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  planned.sort((a, b) => SAFETENSORS_DTYPE_BYTES[b.dtype] - SAFETENSORS_DTYPE_BYTES[a.dtype] || byName(a, b));
  // Built by hand so that the header lists tensors in file order; an object literal would move
  // integer-like names to the front.
  const fields: string[] = [];
  if (metadata !== undefined) fields.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  let offset = 0;
  for (const { name, dtype, shape, byteLength } of planned) {
    const info = { dtype, shape, data_offsets: [offset, offset + byteLength] };
    fields.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    offset += byteLength;
  }
  const json = new TextEncoder().encode(`{${fields.join(',')}}`);
  const paddedLength = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(LENGTH_PREFIX_BYTES + paddedLength).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(paddedLength), true);
  head.set(json, LENGTH_PREFIX_BYTES);
  return { head, tensors: planned, byteLength: head.length + offset };
}

function checkDataLength(where: string, { shape, dtype }: TensorEntry | LazyTensorEntry, expected: bigint, actual: number): void {
  if (expected !== BigInt(actual)) {
    throw new SafetensorsError(
      `${where}: shape ${shapeText(shape)} of ${dtype} needs ${byteCountText(expected)} bytes, but the data has ${actual}`,
    );
  }
}

function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The complete file in memory. Tensors are stored widest dtype first, then by name. */
export function encodeSafetensors(
  entries: readonly TensorEntry[],
  metadata?: Record<string, string>,
): Uint8Array<ArrayBuffer> {
  const { head, tensors, byteLength } = layOut(entries, metadata);
  const out = new Uint8Array(byteLength);
  out.set(head, 0);
  let offset = head.length;
  for (const { entry } of tensors) {
    const data = bytesOf((entry as TensorEntry).data);
    out.set(data, offset);
    offset += data.length;
  }
  return out;
}

export interface WriteProgress {
  /** The tensor just written. */
  name: string;
  writtenBytes: number;
  totalBytes: number;
}

export interface WriteSafetensorsOptions {
  /** Called after each tensor is written. */
  onProgress?: (progress: WriteProgress) => void;
}

/**
 * Writes the file atomically (src/io/atomic-file.ts), creating missing folders: the entries are
 * validated first, then streamed in file order into a temporary file that replaces `path` only
 * once complete; on any failure `path` is untouched. Lazy entries are read one at a time, so
 * memory holds one tensor, not the file.
 */
export async function writeSafetensors(
  path: string,
  entries: readonly (TensorEntry | LazyTensorEntry)[],
  metadata?: Record<string, string>,
  { onProgress }: WriteSafetensorsOptions = {},
): Promise<void> {
  const { head, tensors, byteLength } = layOut(entries, metadata);
  await writeFileAtomically(path, async (write) => {
    await write(head);
    let writtenBytes = head.length;
    for (const { name, entry, byteLength: expected } of tensors) {
      const data = isLazy(entry) ? await entry.read() : entry.data;
      checkDataLength(`safetensors writer: tensor '${name}'`, entry, BigInt(expected), data.byteLength);
      await write(bytesOf(data));
      writtenBytes += data.byteLength;
      onProgress?.({ name, writtenBytes, totalBytes: byteLength });
    }
  });
}
