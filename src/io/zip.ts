/**
 * A strict, lazy reader for the zip archives `torch.save` writes.
 *
 * PyTorch stores every record uncompressed (method 0, "stored") and aligns each record's data,
 * so a record is a byte range of the file: opening reads only the central directory, and a
 * record (or any slice of it) is one positioned read. Compressed or encrypted records, split
 * archives and anything the central directory does not account for are refused with the
 * record's name and byte offset. ZIP64 (archives or records past 4 GiB) is supported.
 *
 * CRC-32 values are not verified: PyTorch ≥ 2.4 can write archives without them
 * (`torch.serialization.set_crc32_options(False)`), and a tensor read touches a fraction of a
 * record when it views part of a shared storage.
 */
import { type ByteSource, memorySource, openFileSource, readExactly } from './byte-source.js';

export class ZipError extends Error {
  override name = 'ZipError';
}

const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const ZIP64_END_OF_CENTRAL_DIRECTORY = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;
const CENTRAL_FILE_HEADER = 0x02014b50;
const LOCAL_FILE_HEADER = 0x04034b50;

const END_RECORD_BYTES = 22;
const ZIP64_LOCATOR_BYTES = 20;
const ZIP64_END_RECORD_BYTES = 56;
const CENTRAL_HEADER_BYTES = 46;
const LOCAL_HEADER_BYTES = 30;
const MAX_COMMENT_BYTES = 0xffff;
const ZIP64_EXTRA_FIELD = 0x0001;
/** A 16- or 32-bit field holding all ones means "the real value is in the ZIP64 extra field". */
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const FLAG_ENCRYPTED = 0x0001;
const METHOD_STORED = 0;

export interface ZipRecord {
  readonly name: string;
  /** Bytes of data (stored records: compressed size = uncompressed size). */
  readonly size: number;
  /** Position of the record's local header in the archive. */
  readonly headerOffset: number;
}

export class ZipArchive {
  #closed = false;
  /** Local headers are read on first use; their extra fields (alignment padding) vary. */
  readonly #dataOffsets = new Map<string, Promise<number>>();

  private constructor(
    /** The file path or the label of an in-memory archive; every error starts with it. */
    readonly label: string,
    private readonly source: ByteSource,
    /** In central-directory order. */
    readonly records: ReadonlyMap<string, ZipRecord>,
  ) {}

  static async open(path: string): Promise<ZipArchive> {
    const source = await openFileSource(path, { errorClass: ZipError });
    try {
      return await ZipArchive.fromSource(source, path);
    } catch (error) {
      await source.close();
      throw error;
    }
  }

  static fromBytes(bytes: Uint8Array, label: string): Promise<ZipArchive> {
    return ZipArchive.fromSource(memorySource(bytes), label);
  }

  static async fromSource(source: ByteSource, label: string): Promise<ZipArchive> {
    const records = await readCentralDirectory(source, label);
    return new ZipArchive(label, source, records);
  }

  has(name: string): boolean {
    return this.records.has(name);
  }

  record(name: string): ZipRecord {
    const record = this.records.get(name);
    if (!record) throw new ZipError(`${this.label}: no record named '${name}' in the archive`);
    return record;
  }

  /** The whole record. */
  async read(name: string): Promise<Uint8Array<ArrayBuffer>> {
    return this.readRange(name, 0, this.record(name).size);
  }

  /** `length` bytes of the record starting `offset` bytes into its data. */
  async readRange(name: string, offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
    const record = this.record(name);
    if (this.#closed) throw new ZipError(`${this.label}: cannot read record '${name}': the archive is closed`);
    if (offset < 0 || length < 0 || offset + length > record.size) {
      throw new ZipError(
        `${this.label}: bytes ${offset}..${offset + length} requested from record '${name}', ` +
          `which holds ${record.size}`,
      );
    }
    let dataOffset = this.#dataOffsets.get(name);
    if (!dataOffset) {
      dataOffset = this.locateData(record);
      this.#dataOffsets.set(name, dataOffset);
    }
    return readExactly(this.source, this.label, (await dataOffset) + offset, length, ZipError);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.source.close();
  }

  private async locateData(record: ZipRecord): Promise<number> {
    const where = `${this.label}: record '${record.name}' (local header at byte ${record.headerOffset})`;
    if (record.headerOffset + LOCAL_HEADER_BYTES > this.source.size) {
      throw new ZipError(`${where}: the header lies past the end of the ${this.source.size}-byte file`);
    }
    const header = view(
      await readExactly(this.source, this.label, record.headerOffset, LOCAL_HEADER_BYTES, ZipError),
    );
    if (header.getUint32(0, true) !== LOCAL_FILE_HEADER) {
      throw new ZipError(`${where}: no local file header signature there`);
    }
    const nameLength = header.getUint16(26, true);
    const extraLength = header.getUint16(28, true);
    const nameOffset = record.headerOffset + LOCAL_HEADER_BYTES;
    const nameBytes = await readExactly(this.source, this.label, nameOffset, nameLength, ZipError);
    if (decodeName(nameBytes) !== record.name) {
      throw new ZipError(`${where}: the local header names '${decodeName(nameBytes)}' instead`);
    }
    const dataOffset = record.headerOffset + LOCAL_HEADER_BYTES + nameLength + extraLength;
    if (dataOffset + record.size > this.source.size) {
      throw new ZipError(
        `${where}: its ${record.size} bytes of data at byte ${dataOffset} run past the end of the ` +
          `${this.source.size}-byte file (truncated?)`,
      );
    }
    return dataOffset;
  }
}

interface CentralDirectoryLocation {
  entries: number;
  offset: number;
  size: number;
}

async function readCentralDirectory(source: ByteSource, label: string): Promise<Map<string, ZipRecord>> {
  const location = await findCentralDirectory(source, label);
  if (location.offset + location.size > source.size) {
    throw new ZipError(
      `${label}: the central directory (bytes ${location.offset}..${location.offset + location.size}) runs past ` +
        `the end of the ${source.size}-byte file`,
    );
  }
  const directory = await readExactly(source, label, location.offset, location.size, ZipError);
  const data = view(directory);
  const records = new Map<string, ZipRecord>();
  let position = 0;
  for (let index = 0; index < location.entries; index++) {
    const at = `${label}: central directory entry ${index} (byte ${location.offset + position})`;
    if (position + CENTRAL_HEADER_BYTES > directory.length || data.getUint32(position, true) !== CENTRAL_FILE_HEADER) {
      throw new ZipError(`${at}: no central file header there; the directory should hold ${location.entries} entries`);
    }
    const flags = data.getUint16(position + 8, true);
    const method = data.getUint16(position + 10, true);
    const compressedSize32 = data.getUint32(position + 20, true);
    const size32 = data.getUint32(position + 24, true);
    const nameLength = data.getUint16(position + 28, true);
    const extraLength = data.getUint16(position + 30, true);
    const commentLength = data.getUint16(position + 32, true);
    const disk32 = data.getUint16(position + 34, true);
    const headerOffset32 = data.getUint32(position + 42, true);
    const nameStart = position + CENTRAL_HEADER_BYTES;
    const extraStart = nameStart + nameLength;
    const next = extraStart + extraLength + commentLength;
    if (next > directory.length) throw new ZipError(`${at}: the entry runs past the end of the central directory`);
    const name = decodeName(directory.subarray(nameStart, extraStart));
    const where = `${label}: record '${name}' (central directory byte ${location.offset + position})`;

    const zip64 = new Zip64Fields(data, extraStart, extraLength, where);
    const size = size32 === U32_MAX ? zip64.next('uncompressed size') : size32;
    const compressedSize = compressedSize32 === U32_MAX ? zip64.next('compressed size') : compressedSize32;
    const headerOffset = headerOffset32 === U32_MAX ? zip64.next('local header offset') : headerOffset32;
    const disk = disk32 === U16_MAX ? zip64.nextDisk() : disk32;

    if (flags & FLAG_ENCRYPTED) throw new ZipError(`${where}: the record is encrypted`);
    if (method !== METHOD_STORED) {
      throw new ZipError(
        `${where}: compression method ${method}; PyTorch archives store records uncompressed (method 0)`,
      );
    }
    if (compressedSize !== size) {
      throw new ZipError(`${where}: a stored record must have equal sizes, got ${compressedSize} and ${size}`);
    }
    if (disk !== 0) throw new ZipError(`${where}: starts on disk ${disk}; split archives are not supported`);
    if (records.has(name)) throw new ZipError(`${where}: a second record with this name`);
    records.set(name, Object.freeze({ name, size, headerOffset }));
    position = next;
  }
  return records;
}

/** Reads the values a ZIP64 extra field holds, in the order the format lists them. */
class Zip64Fields {
  #position = -1;
  #end = -1;

  constructor(
    private readonly data: DataView,
    extraStart: number,
    extraLength: number,
    private readonly where: string,
  ) {
    const extraEnd = extraStart + extraLength;
    for (let field = extraStart; field + 4 <= extraEnd; ) {
      const id = data.getUint16(field, true);
      const length = data.getUint16(field + 2, true);
      if (field + 4 + length > extraEnd) throw new ZipError(`${where}: extra field 0x${hex(id)} overruns the entry`);
      if (id === ZIP64_EXTRA_FIELD) {
        this.#position = field + 4;
        this.#end = field + 4 + length;
        return;
      }
      field += 4 + length;
    }
  }

  next(what: string): number {
    if (this.#position < 0 || this.#position + 8 > this.#end) {
      throw new ZipError(`${this.where}: the ${what} is marked as ZIP64 but the ZIP64 extra field lacks it`);
    }
    const value = safeNumber(this.data.getBigUint64(this.#position, true), `${this.where}: ${what}`);
    this.#position += 8;
    return value;
  }

  nextDisk(): number {
    if (this.#position < 0 || this.#position + 4 > this.#end) {
      throw new ZipError(`${this.where}: the disk number is marked as ZIP64 but the ZIP64 extra field lacks it`);
    }
    const value = this.data.getUint32(this.#position, true);
    this.#position += 4;
    return value;
  }
}

/**
 * The end-of-central-directory record sits in the last 22 + (up to 65535 comment) bytes. The
 * record must end exactly at the end of the file, which also rejects a signature that merely
 * appears inside the comment.
 */
async function findCentralDirectory(source: ByteSource, label: string): Promise<CentralDirectoryLocation> {
  if (source.size < END_RECORD_BYTES) {
    throw new ZipError(`${label}: ${source.size} bytes is too short for a zip archive (truncated?)`);
  }
  const tailLength = Math.min(source.size, END_RECORD_BYTES + MAX_COMMENT_BYTES);
  const tailStart = source.size - tailLength;
  const tail = view(await readExactly(source, label, tailStart, tailLength, ZipError));
  let end = -1;
  for (let position = tailLength - END_RECORD_BYTES; position >= 0; position--) {
    if (
      tail.getUint32(position, true) === END_OF_CENTRAL_DIRECTORY &&
      position + END_RECORD_BYTES + tail.getUint16(position + 20, true) === tailLength
    ) {
      end = position;
      break;
    }
  }
  if (end < 0) {
    throw new ZipError(
      `${label}: no end-of-central-directory record in the last ${tailLength} bytes: not a zip archive, or truncated`,
    );
  }
  const endOffset = tailStart + end;
  const disk = tail.getUint16(end + 4, true);
  const directoryDisk = tail.getUint16(end + 6, true);
  const entriesOnDisk = tail.getUint16(end + 8, true);
  const entries = tail.getUint16(end + 10, true);
  const size = tail.getUint32(end + 12, true);
  const offset = tail.getUint32(end + 16, true);

  const needsZip64 = entries === U16_MAX || size === U32_MAX || offset === U32_MAX;
  const hasLocator = end >= ZIP64_LOCATOR_BYTES && tail.getUint32(end - ZIP64_LOCATOR_BYTES, true) === ZIP64_LOCATOR;
  if (hasLocator) {
    const locator = new DataView(tail.buffer, tail.byteOffset + end - ZIP64_LOCATOR_BYTES, ZIP64_LOCATOR_BYTES);
    return readZip64End(source, label, locator);
  }
  if (needsZip64) {
    throw new ZipError(
      `${label}: the end record at byte ${endOffset} defers to ZIP64, but no ZIP64 locator precedes it`,
    );
  }
  if (disk !== 0 || directoryDisk !== 0 || entriesOnDisk !== entries) {
    throw new ZipError(`${label}: the archive spans several disks; split archives are not supported`);
  }
  return { entries, size, offset };
}

async function readZip64End(source: ByteSource, label: string, locator: DataView): Promise<CentralDirectoryLocation> {
  const endOffset = safeNumber(locator.getBigUint64(8, true), `${label}: ZIP64 end record offset`);
  if (locator.getUint32(16, true) !== 1) {
    throw new ZipError(`${label}: the archive spans several disks; split archives are not supported`);
  }
  if (endOffset + ZIP64_END_RECORD_BYTES > source.size) {
    throw new ZipError(`${label}: the ZIP64 end record at byte ${endOffset} lies past the end of the file`);
  }
  const record = view(await readExactly(source, label, endOffset, ZIP64_END_RECORD_BYTES, ZipError));
  if (record.getUint32(0, true) !== ZIP64_END_OF_CENTRAL_DIRECTORY) {
    throw new ZipError(`${label}: no ZIP64 end-of-central-directory record at byte ${endOffset}`);
  }
  const entriesOnDisk = safeNumber(record.getBigUint64(24, true), `${label}: ZIP64 entry count`);
  const entries = safeNumber(record.getBigUint64(32, true), `${label}: ZIP64 entry count`);
  if (record.getUint32(16, true) !== 0 || record.getUint32(20, true) !== 0 || entriesOnDisk !== entries) {
    throw new ZipError(`${label}: the archive spans several disks; split archives are not supported`);
  }
  return {
    entries,
    size: safeNumber(record.getBigUint64(40, true), `${label}: ZIP64 central directory size`),
    offset: safeNumber(record.getBigUint64(48, true), `${label}: ZIP64 central directory offset`),
  };
}

function safeNumber(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError(`${what} ${value} is beyond 2^53`);
  return Number(value);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function hex(value: number): string {
  return value.toString(16).padStart(4, '0');
}

/** PyTorch writes ASCII record names; UTF-8 covers the general-purpose flag's bit 11 as well. */
function decodeName(bytes: Uint8Array): string {
  return new TextDecoder('utf-8').decode(bytes);
}
