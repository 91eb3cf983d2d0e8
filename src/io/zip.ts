/**
 * A strict, lazy reader for the zip archives `torch.save` writes.
 *
 * PyTorch stores every record uncompressed (method 0, "stored") and aligns each record's data,
 * so a record is a byte range of the file: opening reads only the central directory, and a
 * record (or any slice of it) is one positioned read. Compressed or encrypted records, split
 * archives and anything the central directory does not account for are refused with the
 * record's name and byte offset. ZIP64 (archives or records past 4 GiB) is supported.
 *
 * Before a record's data is used, its local header must agree with the central directory: the
 * same name and method, extra fields that exactly fill their stated length, sizes and CRC-32
 * equal where the local header states them (PyTorch leaves them 0 and writes a data descriptor
 * after the data, which must then be there and agree), and data that ends before the next
 * record begins. So a changed length field cannot silently shift what is read.
 *
 * CRC-32 is verified for everything read: a whole-record read checks the bytes it returns; the
 * first partial read of a record (a small view of a large shared storage) first streams the
 * record once through the checksum. A stored CRC of 0 on a non-empty record means "not
 * recorded" (PyTorch ≥ 2.4 writes that with `torch.serialization.set_crc32_options(False)`).
 */
import { type ByteSource, memorySource, openFileSource, readExactly, readOrClose } from './byte-source.js';
import { type Crc32, loadCrc32 } from './crc32.js';

export class ZipError extends Error {
  override name = 'ZipError';
}

const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const ZIP64_END_OF_CENTRAL_DIRECTORY = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;
const CENTRAL_FILE_HEADER = 0x02014b50;
const LOCAL_FILE_HEADER = 0x04034b50;
const DATA_DESCRIPTOR = 0x08074b50;

const END_RECORD_BYTES = 22;
const ZIP64_LOCATOR_BYTES = 20;
const ZIP64_END_RECORD_BYTES = 56;
const CENTRAL_HEADER_BYTES = 46;
const LOCAL_HEADER_BYTES = 30;
const MAX_COMMENT_BYTES = 0xffff;
/** Signature, CRC-32 and two 8-byte sizes: the longest data descriptor. */
const MAX_DATA_DESCRIPTOR_BYTES = 24;
const ZIP64_EXTRA_FIELD = 0x0001;
/** A 16- or 32-bit field holding all ones means "the real value is in the ZIP64 extra field". */
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const FLAG_ENCRYPTED = 0x0001;
const FLAG_DATA_DESCRIPTOR = 0x0008;
const METHOD_STORED = 0;
/** Bytes per read when a record is streamed through the checksum before a partial read. */
const CHECKSUM_CHUNK_BYTES = 16 << 20;

export interface ZipRecord {
  readonly name: string;
  /** Bytes of data (stored records: compressed size = uncompressed size). */
  readonly size: number;
  /** Position of the record's local header in the archive. */
  readonly headerOffset: number;
  /** The CRC-32 of the data, as the central directory states it (0: not recorded). */
  readonly crc32: number;
  /** Where the next record's local header (or the central directory) begins: the record ends before it. */
  readonly limit: number;
}

export class ZipArchive {
  #closed = false;
  /** Local headers are read and checked on first use; their extra fields (alignment padding) vary. */
  readonly #dataOffsets = new Map<string, Promise<number>>();
  /** Records whose whole data has been checked against its CRC-32. */
  readonly #verified = new Map<string, Promise<void>>();

  private constructor(
    /** The file path or the label of an in-memory archive; every error starts with it. */
    readonly label: string,
    private readonly source: ByteSource,
    /** In central-directory order. */
    readonly records: ReadonlyMap<string, ZipRecord>,
    private readonly checksum: Crc32,
  ) {}

  static async open(path: string): Promise<ZipArchive> {
    const source = await openFileSource(path, { errorClass: ZipError });
    return readOrClose(source, (opened) => ZipArchive.fromSource(opened, path));
  }

  static fromBytes(bytes: Uint8Array, label: string): Promise<ZipArchive> {
    return ZipArchive.fromSource(memorySource(bytes), label);
  }

  static async fromSource(source: ByteSource, label: string): Promise<ZipArchive> {
    const records = await readCentralDirectory(source, label);
    return new ZipArchive(label, source, records, await loadCrc32());
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

  /** `length` bytes of the record starting `offset` bytes into its data, from a record whose CRC-32 holds. */
  async readRange(name: string, offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
    const record = this.record(name);
    if (this.#closed) throw new ZipError(`${this.label}: cannot read record '${name}': the archive is closed`);
    if (offset < 0 || length < 0 || offset + length > record.size) {
      throw new ZipError(
        `${this.label}: bytes ${offset}..${offset + length} requested from record '${name}', ` +
          `which holds ${record.size}`,
      );
    }
    const dataOffset = await this.dataOffset(record);
    const whole = offset === 0 && length === record.size;
    if (!whole) await this.verifyOnce(record, dataOffset);
    const bytes = await readExactly(this.source, this.label, dataOffset + offset, length, ZipError);
    if (whole && !this.#verified.has(name)) {
      this.checkCrc(record, this.checksum(bytes));
      this.#verified.set(name, Promise.resolve());
    }
    return bytes;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.source.close();
  }

  private dataOffset(record: ZipRecord): Promise<number> {
    let offset = this.#dataOffsets.get(record.name);
    if (!offset) {
      offset = this.locateData(record);
      this.#dataOffsets.set(record.name, offset);
    }
    return offset;
  }

  /** Streams the record through the checksum once, in bounded chunks, before parts of it are used. */
  private verifyOnce(record: ZipRecord, dataOffset: number): Promise<void> {
    let verified = this.#verified.get(record.name);
    if (!verified) {
      verified = (async () => {
        let crc = 0;
        for (let done = 0; done < record.size; done += CHECKSUM_CHUNK_BYTES) {
          const length = Math.min(CHECKSUM_CHUNK_BYTES, record.size - done);
          crc = this.checksum(await readExactly(this.source, this.label, dataOffset + done, length, ZipError), crc);
        }
        this.checkCrc(record, crc);
      })();
      this.#verified.set(record.name, verified);
    }
    return verified;
  }

  private checkCrc(record: ZipRecord, actual: number): void {
    if (record.crc32 === 0 && record.size > 0) return;
    if (actual !== record.crc32) {
      throw new ZipError(
        `${this.label}: record '${record.name}': its data has CRC-32 ${hex32(actual)}, the central directory ` +
          `says ${hex32(record.crc32)} (the file is corrupt)`,
      );
    }
  }

  /** Reads the local header, checks it against the central directory, and returns where the data starts. */
  private async locateData(record: ZipRecord): Promise<number> {
    const where = `${this.label}: record '${record.name}' (local header at byte ${record.headerOffset})`;
    if (record.headerOffset + LOCAL_HEADER_BYTES > record.limit) {
      throw new ZipError(`${where}: the header runs past byte ${record.limit}, where the next record or the directory begins`);
    }
    const header = view(
      await readExactly(this.source, this.label, record.headerOffset, LOCAL_HEADER_BYTES, ZipError),
    );
    if (header.getUint32(0, true) !== LOCAL_FILE_HEADER) {
      throw new ZipError(`${where}: no local file header signature there`);
    }
    const flags = header.getUint16(6, true);
    const method = header.getUint16(8, true);
    const crc = header.getUint32(14, true);
    const compressedSize = header.getUint32(18, true);
    const size = header.getUint32(22, true);
    const nameLength = header.getUint16(26, true);
    const extraLength = header.getUint16(28, true);
    const nameOffset = record.headerOffset + LOCAL_HEADER_BYTES;
    const dataOffset = nameOffset + nameLength + extraLength;
    if (dataOffset + record.size > record.limit) {
      throw new ZipError(
        `${where}: its ${record.size} bytes of data at byte ${dataOffset} run past byte ${record.limit}, where ` +
          `the next record, the directory or the end of the file is (truncated, or a wrong length field?)`,
      );
    }
    const nameAndExtra = await readExactly(this.source, this.label, nameOffset, nameLength + extraLength, ZipError);
    const localName = decodeName(nameAndExtra.subarray(0, nameLength));
    if (localName !== record.name) throw new ZipError(`${where}: the local header names '${localName}' instead`);
    if (method !== METHOD_STORED || (flags & FLAG_ENCRYPTED) !== 0) {
      throw new ZipError(
        `${where}: method ${method}${flags & FLAG_ENCRYPTED ? ', encrypted,' : ''} where the central directory ` +
          `says stored (method 0)`,
      );
    }
    checkExtraFields(view(nameAndExtra), nameLength, nameAndExtra.length, `${where}: local extra field`);

    // Without a data descriptor the local header states CRC and sizes; with one (PyTorch) it may
    // leave them 0, and the descriptor after the data holds them.
    const stated = (value: number, expected: number): boolean =>
      value === expected || value === U32_MAX || (value === 0 && (flags & FLAG_DATA_DESCRIPTOR) !== 0);
    if (!stated(crc, record.crc32) || !stated(compressedSize, record.size) || !stated(size, record.size)) {
      throw new ZipError(
        `${where}: the local header states CRC-32 ${hex32(crc)} and ${size} bytes, the central directory ` +
          `${hex32(record.crc32)} and ${record.size} bytes`,
      );
    }
    if (flags & FLAG_DATA_DESCRIPTOR) await this.checkDataDescriptor(record, dataOffset + record.size, where);
    return dataOffset;
  }

  /** `[signature] crc32 compressedSize size`, sizes 4 bytes each, or 8 in ZIP64 archives. */
  private async checkDataDescriptor(record: ZipRecord, at: number, where: string): Promise<void> {
    const available = Math.min(MAX_DATA_DESCRIPTOR_BYTES, record.limit - at);
    const bytes = view(await readExactly(this.source, this.label, at, available, ZipError));
    const matches = (start: number, sizeBytes: 4 | 8): boolean => {
      if (start + 4 + 2 * sizeBytes > available) return false;
      const readSize = (offset: number): number =>
        sizeBytes === 4 ? bytes.getUint32(offset, true) : Number(bytes.getBigUint64(offset, true));
      return (
        bytes.getUint32(start, true) === record.crc32 &&
        readSize(start + 4) === record.size &&
        readSize(start + 4 + sizeBytes) === record.size
      );
    };
    const signed = available >= 4 && bytes.getUint32(0, true) === DATA_DESCRIPTOR;
    const starts = signed ? [4, 0] : [0];
    if (!starts.some((start) => matches(start, 4) || matches(start, 8))) {
      throw new ZipError(
        `${where}: no data descriptor with CRC-32 ${hex32(record.crc32)} and size ${record.size} at byte ${at}, ` +
          `right after the data (a wrong length field shifts the data)`,
      );
    }
  }
}

/** Extra fields are `(id: u16, length: u16, data)` blocks that must fill the extra area exactly. */
function checkExtraFields(data: DataView, start: number, end: number, where: string): void {
  let field = start;
  while (field < end) {
    if (field + 4 > end) throw new ZipError(`${where}: ${end - field} stray bytes after the last block`);
    const length = data.getUint16(field + 2, true);
    if (field + 4 + length > end) {
      throw new ZipError(`${where}: block 0x${hex(data.getUint16(field, true))} of ${length} bytes overruns the area`);
    }
    field += 4 + length;
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
  if (location.entries * CENTRAL_HEADER_BYTES > location.size) {
    throw new ZipError(
      `${label}: the end record promises ${location.entries} entries, more than a ${location.size}-byte ` +
        `central directory can hold`,
    );
  }
  const directory = await readExactly(source, label, location.offset, location.size, ZipError);
  const data = view(directory);
  const entries: Omit<ZipRecord, 'limit'>[] = [];
  const names = new Set<string>();
  let position = 0;
  for (let index = 0; index < location.entries; index++) {
    const at = `${label}: central directory entry ${index} (byte ${location.offset + position})`;
    if (position + CENTRAL_HEADER_BYTES > directory.length || data.getUint32(position, true) !== CENTRAL_FILE_HEADER) {
      throw new ZipError(`${at}: no central file header there; the directory should hold ${location.entries} entries`);
    }
    const flags = data.getUint16(position + 8, true);
    const method = data.getUint16(position + 10, true);
    const crc32 = data.getUint32(position + 16, true);
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

    checkExtraFields(data, extraStart, extraStart + extraLength, `${where}: extra field`);
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
    if (names.has(name)) throw new ZipError(`${where}: a second record with this name`);
    if (headerOffset >= location.offset) {
      throw new ZipError(`${where}: its local header offset ${headerOffset} is not before the central directory`);
    }
    names.add(name);
    entries.push({ name, size, headerOffset, crc32 });
    position = next;
  }
  return withLimits(entries, location.offset, label);
}

/** Each record's data must end before the next local header (by offset) or the central directory. */
function withLimits(entries: readonly Omit<ZipRecord, 'limit'>[], directoryOffset: number, label: string): Map<string, ZipRecord> {
  const byOffset = [...entries].sort((a, b) => a.headerOffset - b.headerOffset);
  const limits = new Map<string, number>();
  byOffset.forEach((entry, i) => {
    const next = byOffset[i + 1];
    if (next && next.headerOffset === entry.headerOffset) {
      throw new ZipError(`${label}: records '${entry.name}' and '${next.name}' share the local header at byte ${entry.headerOffset}`);
    }
    limits.set(entry.name, next ? next.headerOffset : directoryOffset);
  });
  return new Map(entries.map((entry) => [entry.name, Object.freeze({ ...entry, limit: limits.get(entry.name)! })]));
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
    // The blocks have been checked to fill the extra area exactly (checkExtraFields).
    const extraEnd = extraStart + extraLength;
    for (let field = extraStart; field < extraEnd; ) {
      const id = data.getUint16(field, true);
      const length = data.getUint16(field + 2, true);
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

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

/** PyTorch writes ASCII record names; UTF-8 covers the general-purpose flag's bit 11 as well. */
function decodeName(bytes: Uint8Array): string {
  return new TextDecoder('utf-8').decode(bytes);
}
