/**
 * An unpickler for PyTorch checkpoints that executes nothing.
 *
 * Python's pickle format is a small stack machine whose GLOBAL and REDUCE opcodes import and
 * call arbitrary Python functions. This reader implements the data opcodes of protocols 2–5 that
 * `torch.save` emits, and resolves globals only from an allow-list of the handful a checkpoint
 * needs; each of those is interpreted here (an OrderedDict becomes a Map, a tensor rebuild
 * becomes a `TorchTensor` descriptor). Any other global, and any opcode outside that set, is an
 * error naming it and its byte offset. Storage bytes never pass through the pickle: persistent
 * ids (BINPERSID) are handed to the caller, which resolves them to `TorchStorage`s.
 *
 * Python values map to: None → null, bool → boolean, int → number (bigint beyond 2^53),
 * float → number, str → string, bytes → Uint8Array, list → array, tuple → frozen array,
 * dict → Map, collections.OrderedDict → `OrderedDict` (a Map), argparse.Namespace → `Namespace`
 * (its fields as properties), torch.Size → frozen array of numbers.
 */

export class PickleError extends Error {
  override name = 'PickleError';
}

/** The data ran out before STOP; a streaming caller may retry with more bytes. */
export class PickleEndOfDataError extends PickleError {
  override name = 'PickleEndOfDataError';
}

// ---------------------------------------------------------------------------------------------
// Tensors and storages

export type TorchDType =
  | 'float64'
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

export const TORCH_DTYPE_BYTES: Readonly<Record<TorchDType, number>> = Object.freeze({
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
});

/** Reads `byteLength` bytes starting `byteOffset` bytes into a storage's data, as stored. */
export type StorageReader = (byteOffset: number, byteLength: number) => Promise<Uint8Array<ArrayBuffer>>;

/** One storage of a checkpoint: a flat run of elements that tensors view. Read on demand. */
export class TorchStorage {
  constructor(
    /** The checkpoint's name for it (zip: the record under `data/`; legacy: the object id). */
    readonly key: string,
    readonly dtype: TorchDType,
    /** Number of elements. */
    readonly numel: number,
    /** Device it was saved from (`cpu`, `cuda:0`); the bytes are the same. */
    readonly location: string,
    private readonly read: StorageReader,
    readonly littleEndian: boolean,
  ) {}

  get byteLength(): number {
    return this.numel * TORCH_DTYPE_BYTES[this.dtype];
  }

  /** Elements [start, start + count) as little-endian bytes, in memory the caller owns. */
  async readElements(start: number, count: number): Promise<Uint8Array<ArrayBuffer>> {
    if (start < 0 || count < 0 || start + count > this.numel) {
      throw new RangeError(
        `storage '${this.key}' holds ${this.numel} elements; elements ${start}..${start + count} requested`,
      );
    }
    const itemsize = TORCH_DTYPE_BYTES[this.dtype];
    const bytes = await this.read(start * itemsize, count * itemsize);
    if (!this.littleEndian) reverseEachElement(bytes, itemsize);
    return bytes;
  }
}

function reverseEachElement(bytes: Uint8Array, itemsize: number): void {
  for (let start = 0; start < bytes.length; start += itemsize) bytes.subarray(start, start + itemsize).reverse();
}

/**
 * A tensor as a checkpoint describes it: a strided view of a storage. Nothing is read until
 * `contiguousBytes` is called; tensors sharing a storage share the same `TorchStorage` object.
 */
export class TorchTensor {
  readonly numel: number;

  constructor(
    readonly storage: TorchStorage,
    /** In elements. */
    readonly storageOffset: number,
    readonly shape: readonly number[],
    /** In elements, one per dimension. */
    readonly stride: readonly number[],
  ) {
    const isDim = (d: number): boolean => Number.isSafeInteger(d) && d >= 0;
    const layout = `size [${shape.join(', ')}], stride [${stride.join(', ')}] at storage offset ${storageOffset}`;
    if (shape.length !== stride.length || !shape.every(isDim) || !stride.every(isDim) || !isDim(storageOffset)) {
      throw new RangeError(`invalid tensor layout: ${layout}`);
    }
    this.numel = shape.reduce((product, dim) => product * dim, 1);
    if (this.numel > 0 && this.lastElement >= storage.numel) {
      throw new RangeError(
        `a tensor of ${layout} reaches element ${this.lastElement} of storage '${storage.key}', ` +
          `which has ${storage.numel}`,
      );
    }
  }

  get dtype(): TorchDType {
    return this.storage.dtype;
  }

  get storageKey(): string {
    return this.storage.key;
  }

  /** Row-major without gaps; dimensions of size 1 may have any stride, as in PyTorch. */
  get isContiguous(): boolean {
    let expected = 1;
    for (let axis = this.shape.length - 1; axis >= 0; axis--) {
      const dim = this.shape[axis]!;
      if (dim === 0) return true;
      if (dim !== 1 && this.stride[axis] !== expected) return false;
      expected *= dim;
    }
    return true;
  }

  /** The storage element the view reaches furthest (its first is `storageOffset`). */
  get lastElement(): number {
    return this.shape.reduce((last, dim, axis) => last + (dim - 1) * this.stride[axis]!, this.storageOffset);
  }

  /** Whether both describe the same elements of the same storage in the same layout. */
  sameView(other: TorchTensor): boolean {
    return (
      this.storage === other.storage &&
      this.storageOffset === other.storageOffset &&
      sameNumbers(this.shape, other.shape) &&
      sameNumbers(this.stride, other.stride)
    );
  }

  /**
   * The elements in row-major order as little-endian bytes, element-aligned, in memory the caller
   * owns. Reads only the span of the storage the view covers, so a small view of a large shared
   * storage stays cheap.
   */
  async contiguousBytes(): Promise<Uint8Array<ArrayBuffer>> {
    const itemsize = TORCH_DTYPE_BYTES[this.dtype];
    if (this.numel === 0) return new Uint8Array(0);
    const read = await this.storage.readElements(this.storageOffset, this.lastElement - this.storageOffset + 1);
    const span = read.byteOffset % itemsize === 0 ? read : read.slice();
    if (this.isContiguous) return span;

    // Copy in whole words of the element size so that the strided gather is one typed-array
    // assignment per element (or two for 8-byte elements), without reinterpreting values.
    const wordBytes = itemsize % 4 === 0 ? 4 : itemsize % 2 === 0 ? 2 : 1;
    const wordsPerElement = itemsize / wordBytes;
    const out = new Uint8Array(this.numel * itemsize);
    const from = wordsOf(span, wordBytes);
    const to = wordsOf(out, wordBytes);

    const rank = this.shape.length;
    const innerSize = this.shape[rank - 1]!;
    const innerStride = this.stride[rank - 1]! * wordsPerElement;
    const index = new Array<number>(rank - 1).fill(0);
    let source = 0;
    let target = 0;
    for (let row = 0; row < this.numel / innerSize; row++) {
      for (let i = 0, s = source * wordsPerElement; i < innerSize; i++, s += innerStride) {
        for (let w = 0; w < wordsPerElement; w++) to[target++] = from[s + w]!;
      }
      for (let axis = rank - 2; axis >= 0; axis--) {
        source += this.stride[axis]!;
        if (++index[axis]! < this.shape[axis]!) break;
        source -= this.stride[axis]! * this.shape[axis]!;
        index[axis] = 0;
      }
    }
    return out;
  }
}

function wordsOf(bytes: Uint8Array<ArrayBuffer>, wordBytes: number): Uint8Array | Uint16Array | Uint32Array {
  const length = bytes.byteLength / wordBytes;
  if (wordBytes === 4) return new Uint32Array(bytes.buffer, bytes.byteOffset, length);
  if (wordBytes === 2) return new Uint16Array(bytes.buffer, bytes.byteOffset, length);
  return bytes;
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

// ---------------------------------------------------------------------------------------------
// Python values

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | readonly PickleValue[]
  | Map<PickleValue, PickleValue>
  | Namespace
  | PythonGlobal
  | TorchStorage
  | TorchTensor;

/** `collections.OrderedDict`; `attributes` holds instance attributes such as a state dict's `_metadata`. */
export class OrderedDict extends Map<PickleValue, PickleValue> {
  readonly attributes = new Map<string, PickleValue>();
}

/** `argparse.Namespace`: the parsed arguments are its own properties (`args.arch`). */
export class Namespace {
  [field: string]: PickleValue;
}

/** What an allow-listed global stands for. */
export type GlobalMeaning =
  | { kind: 'rebuildTensorV2' }
  | { kind: 'rebuildTensor' }
  | { kind: 'rebuildParameter' }
  /** A storage class named in persistent ids (`torch.FloatStorage`); its dtype. */
  | { kind: 'storageType'; dtype: TorchDType }
  | { kind: 'dtype'; dtype: TorchDType }
  | { kind: 'orderedDict' }
  | { kind: 'namespace' }
  | { kind: 'torchSize' }
  | { kind: 'codecsEncode' };

/** A global the pickle referred to, resolved against the allow-list. Never a callable. */
export class PythonGlobal {
  constructor(
    readonly qualifiedName: string,
    readonly meaning: GlobalMeaning,
  ) {}
}

const STORAGE_CLASS_DTYPES: Readonly<Record<string, TorchDType>> = {
  DoubleStorage: 'float64',
  FloatStorage: 'float32',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

function buildAllowList(): ReadonlyMap<string, GlobalMeaning> {
  const allowed = new Map<string, GlobalMeaning>([
    ['torch._utils._rebuild_tensor_v2', { kind: 'rebuildTensorV2' }],
    ['torch._utils._rebuild_tensor', { kind: 'rebuildTensor' }],
    ['torch._utils._rebuild_parameter', { kind: 'rebuildParameter' }],
    // torch ≥ 2.0 names UntypedStorage in the persistent id of storages saved without a dtype;
    // they are bytes. Which module the class reports has varied, so both spellings are accepted.
    ['torch.UntypedStorage', { kind: 'storageType', dtype: 'uint8' }],
    ['torch.storage.UntypedStorage', { kind: 'storageType', dtype: 'uint8' }],
    ['collections.OrderedDict', { kind: 'orderedDict' }],
    ['argparse.Namespace', { kind: 'namespace' }],
    ['torch.Size', { kind: 'torchSize' }],
    // Protocol 2 has no bytes opcode: bytes are pickled as _codecs.encode(text, 'latin1').
    ['_codecs.encode', { kind: 'codecsEncode' }],
  ]);
  for (const [name, dtype] of Object.entries(STORAGE_CLASS_DTYPES)) {
    allowed.set(`torch.${name}`, { kind: 'storageType', dtype });
  }
  // torch.dtype objects pickle as the global of their canonical name (`torch.float16`).
  for (const dtype of Object.keys(TORCH_DTYPE_BYTES) as TorchDType[]) {
    allowed.set(`torch.${dtype}`, { kind: 'dtype', dtype });
  }
  return allowed;
}

export const ALLOWED_GLOBALS: ReadonlyMap<string, GlobalMeaning> = buildAllowList();

// ---------------------------------------------------------------------------------------------
// The machine

const OP = {
  MARK: 0x28, // (
  EMPTY_TUPLE: 0x29, // )
  STOP: 0x2e, // .
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  BINBYTES: 0x42, // B
  SHORT_BINBYTES: 0x43, // C
  BINFLOAT: 0x47, // G
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  BININT2: 0x4d, // M
  NONE: 0x4e, // N
  BINPERSID: 0x51, // Q
  REDUCE: 0x52, // R
  BINUNICODE: 0x58, // X
  EMPTY_LIST: 0x5d, // ]
  APPEND: 0x61, // a
  BUILD: 0x62, // b
  GLOBAL: 0x63, // c
  DICT: 0x64, // d
  APPENDS: 0x65, // e
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  LIST: 0x6c, // l
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  SETITEM: 0x73, // s
  TUPLE: 0x74, // t
  SETITEMS: 0x75, // u
  EMPTY_DICT: 0x7d, // }
  PROTO: 0x80,
  NEWOBJ: 0x81,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
} as const;

const OPCODE_NAMES = new Map<number, string>(Object.entries(OP).map(([name, code]) => [code, name]));

const MIN_PROTOCOL = 2;
const MAX_PROTOCOL = 5;

export interface UnpickleOptions {
  /** Names the pickle in errors (the file, and the record inside it). */
  label: string;
  /** Resolves a BINPERSID id; PyTorch uses them for storages. Without it, BINPERSID is an error. */
  persistentLoad?: (id: PickleValue) => PickleValue;
}

export interface UnpickleResult {
  value: PickleValue;
  /** Bytes consumed, up to and including STOP. */
  length: number;
}

/** Unpickles one object from the start of `bytes`; bytes after its STOP are not looked at. */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): UnpickleResult {
  return new Unpickler(bytes, options).run();
}

/** Marks the start of a MARK-delimited group on the stack. */
const MARK_SENTINEL = Symbol('mark');
type StackItem = PickleValue | typeof MARK_SENTINEL;

class Unpickler {
  private readonly data: DataView;
  private position = 0;
  private opcodeOffset = 0;
  private readonly stack: StackItem[] = [];
  private readonly memo = new Map<number, PickleValue>();
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(
    private readonly bytes: Uint8Array,
    private readonly options: UnpickleOptions,
  ) {
    this.data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  run(): UnpickleResult {
    for (;;) {
      this.opcodeOffset = this.position;
      if (this.position >= this.bytes.length) {
        throw new PickleEndOfDataError(
          `${this.options.label}: the pickle ends at byte offset ${this.position} without a STOP opcode`,
        );
      }
      const opcode = this.bytes[this.position++]!;
      if (opcode === OP.STOP) {
        const value = this.pop();
        if (this.stack.length) throw this.error(`${this.stack.length} values left on the stack at STOP`);
        return { value, length: this.position };
      }
      this.execute(opcode);
    }
  }

  private execute(opcode: number): void {
    switch (opcode) {
      case OP.PROTO: {
        const protocol = this.u8();
        if (protocol < MIN_PROTOCOL || protocol > MAX_PROTOCOL) {
          throw this.error(`pickle protocol ${protocol}; protocols ${MIN_PROTOCOL}–${MAX_PROTOCOL} are supported`);
        }
        return;
      }
      case OP.FRAME:
        // Frames only group opcodes for buffered reading; their content is read as usual.
        this.u64();
        return;
      case OP.MARK:
        this.stack.push(MARK_SENTINEL);
        return;
      case OP.POP:
        this.pop();
        return;
      case OP.POP_MARK:
        this.popMark();
        return;
      case OP.DUP:
        this.push(this.top());
        return;

      case OP.NONE:
        return this.push(null);
      case OP.NEWTRUE:
        return this.push(true);
      case OP.NEWFALSE:
        return this.push(false);
      case OP.BININT:
        return this.push(this.take(4, (at) => this.data.getInt32(at, true)));
      case OP.BININT1:
        return this.push(this.u8());
      case OP.BININT2:
        return this.push(this.take(2, (at) => this.data.getUint16(at, true)));
      case OP.LONG1:
        return this.push(this.long(this.u8()));
      case OP.LONG4:
        return this.push(this.long(this.length32()));
      case OP.BINFLOAT:
        return this.push(this.take(8, (at) => this.data.getFloat64(at, false)));

      case OP.SHORT_BINUNICODE:
        return this.push(this.text(this.u8()));
      case OP.BINUNICODE:
        return this.push(this.text(this.take(4, (at) => this.data.getUint32(at, true))));
      case OP.BINUNICODE8:
        return this.push(this.text(this.u64()));
      case OP.SHORT_BINBYTES:
        return this.push(this.raw(this.u8()).slice());
      case OP.BINBYTES:
        return this.push(this.raw(this.take(4, (at) => this.data.getUint32(at, true))).slice());
      case OP.BINBYTES8:
        return this.push(this.raw(this.u64()).slice());

      case OP.EMPTY_TUPLE:
        return this.push(Object.freeze([]));
      case OP.TUPLE1:
        return this.push(Object.freeze(this.popMany(1)));
      case OP.TUPLE2:
        return this.push(Object.freeze(this.popMany(2)));
      case OP.TUPLE3:
        return this.push(Object.freeze(this.popMany(3)));
      case OP.TUPLE:
        return this.push(Object.freeze(this.popMark()));
      case OP.EMPTY_LIST:
        return this.push([]);
      case OP.LIST:
        return this.push(this.popMark());
      case OP.APPEND: {
        const item = this.pop();
        this.list(this.top()).push(item);
        return;
      }
      case OP.APPENDS: {
        const items = this.popMark();
        this.list(this.top()).push(...items);
        return;
      }
      case OP.EMPTY_DICT:
        return this.push(new Map());
      case OP.DICT:
        return this.push(this.setItems(new Map(), this.popMark()));
      case OP.SETITEM: {
        const value = this.pop();
        const key = this.pop();
        this.setItems(this.dict(this.top()), [key, value]);
        return;
      }
      case OP.SETITEMS: {
        const items = this.popMark();
        this.setItems(this.dict(this.top()), items);
        return;
      }

      case OP.BINPUT:
        return this.memoize(this.u8());
      case OP.LONG_BINPUT:
        return this.memoize(this.take(4, (at) => this.data.getUint32(at, true)));
      case OP.MEMOIZE:
        return this.memoize(this.memo.size);
      case OP.BINGET:
        return this.push(this.recall(this.u8()));
      case OP.LONG_BINGET:
        return this.push(this.recall(this.take(4, (at) => this.data.getUint32(at, true))));

      case OP.GLOBAL: {
        const module = this.line();
        const name = this.line();
        return this.push(this.resolveGlobal(module, name));
      }
      case OP.STACK_GLOBAL: {
        const name = this.pop();
        const module = this.pop();
        if (typeof module !== 'string' || typeof name !== 'string') {
          throw this.error('STACK_GLOBAL needs a module and a name string on the stack');
        }
        return this.push(this.resolveGlobal(module, name));
      }
      case OP.REDUCE: {
        const args = this.tuple(this.pop(), 'REDUCE arguments');
        return this.push(this.call(this.global(this.pop(), 'REDUCE'), args));
      }
      case OP.NEWOBJ: {
        const args = this.tuple(this.pop(), 'NEWOBJ arguments');
        return this.push(this.construct(this.global(this.pop(), 'NEWOBJ'), args));
      }
      case OP.BUILD: {
        const state = this.pop();
        this.build(this.top(), state);
        return;
      }
      case OP.BINPERSID: {
        const id = this.pop();
        const { persistentLoad } = this.options;
        if (!persistentLoad) throw this.error('persistent id found, but no storages to resolve it against');
        return this.push(this.withLocation(() => persistentLoad(id)));
      }
      default: {
        const printable = opcode >= 0x20 && opcode < 0x7f ? ` ('${String.fromCharCode(opcode)}')` : '';
        throw new PickleError(
          `${this.options.label}: unknown or unsupported pickle opcode 0x${opcode.toString(16).padStart(2, '0')}` +
            `${printable} at byte offset ${this.opcodeOffset}`,
        );
      }
    }
  }

  // --- globals -------------------------------------------------------------------------------

  private resolveGlobal(module: string, name: string): PythonGlobal {
    const qualifiedName = `${module}.${name}`;
    const meaning = ALLOWED_GLOBALS.get(qualifiedName);
    if (!meaning) {
      throw new PickleError(
        `${this.options.label}: refusing to load global '${qualifiedName}' (not on the allow-list) ` +
          `at byte offset ${this.opcodeOffset}`,
      );
    }
    return new PythonGlobal(qualifiedName, meaning);
  }

  private call(callee: PythonGlobal, args: readonly PickleValue[]): PickleValue {
    const { meaning } = callee;
    switch (meaning.kind) {
      case 'rebuildTensorV2':
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]):
        // gradients, hooks and metadata do not change the values.
        this.arity(callee, args, 6, 7);
        return this.tensor(args);
      case 'rebuildTensor':
        this.arity(callee, args, 4, 4);
        return this.tensor(args);
      case 'rebuildParameter': {
        // (data, requires_grad, backward_hooks): a Parameter's values are its data tensor's.
        this.arity(callee, args, 3, 3);
        const data = args[0];
        if (!(data instanceof TorchTensor)) throw this.error(`${callee.qualifiedName} expects a tensor`);
        return data;
      }
      case 'orderedDict': {
        this.arity(callee, args, 0, 1);
        const dict = new OrderedDict();
        if (args.length) {
          for (const pair of this.tuple(args[0]!, 'OrderedDict items', true)) {
            const item = this.tuple(pair, 'an OrderedDict item', true);
            if (item.length !== 2) {
              throw this.error(`an OrderedDict item has ${item.length} values, not a (key, value) pair`);
            }
            dict.set(item[0]!, item[1]!);
          }
        }
        return dict;
      }
      case 'torchSize': {
        this.arity(callee, args, 1, 1);
        return Object.freeze(this.dims(args[0]!, 'torch.Size'));
      }
      case 'codecsEncode': {
        this.arity(callee, args, 2, 2);
        const [text, encoding] = args;
        if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
          throw this.error(`_codecs.encode is accepted only as encode(str, 'latin1'), the form pickle uses for bytes`);
        }
        const out = new Uint8Array(text.length);
        for (let i = 0; i < text.length; i++) {
          const code = text.charCodeAt(i);
          if (code > 0xff) throw this.error(`_codecs.encode: character U+${code.toString(16)} is not latin-1`);
          out[i] = code;
        }
        return out;
      }
      default:
        throw this.error(`'${callee.qualifiedName}' cannot be called`);
    }
  }

  private construct(callee: PythonGlobal, args: readonly PickleValue[]): PickleValue {
    if (callee.meaning.kind !== 'namespace') throw this.error(`'${callee.qualifiedName}' cannot be instantiated`);
    this.arity(callee, args, 0, 0);
    return new Namespace();
  }

  /** BUILD sets instance attributes: a Namespace's fields, an OrderedDict's `_metadata`. */
  private build(target: PickleValue, state: PickleValue): void {
    if (state === null) return;
    if (!(target instanceof Namespace || target instanceof OrderedDict) || !(state instanceof Map)) {
      throw this.error(`BUILD (setting object state) is supported only with a dict on a Namespace or OrderedDict`);
    }
    for (const [key, value] of state) {
      if (typeof key !== 'string') throw this.error('BUILD state has a non-string attribute name');
      if (target instanceof OrderedDict) target.attributes.set(key, value);
      // defineProperty keeps a field named "__proto__" an ordinary field.
      else Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
    }
  }

  private tensor(args: readonly PickleValue[]): TorchTensor {
    const [storage, storageOffset, size, stride] = args;
    if (!(storage instanceof TorchStorage)) {
      throw this.error('a tensor rebuild expects a storage as its first argument');
    }
    if (typeof storageOffset !== 'number') throw this.error(`a tensor's storage offset must be an integer`);
    const shape = Object.freeze(this.dims(size!, 'tensor size'));
    const strides = Object.freeze(this.dims(stride!, 'tensor stride'));
    return this.withLocation(() => new TorchTensor(storage, storageOffset, shape, strides));
  }

  // --- reading -------------------------------------------------------------------------------

  /** Reads `size` bytes at the current position and advances past them. */
  private take<T>(size: number, read: (at: number) => T): T {
    const at = this.position;
    if (at + size > this.bytes.length) {
      throw new PickleEndOfDataError(
        `${this.options.label}: the pickle ends inside ${this.opcodeName()} at byte offset ${this.opcodeOffset}`,
      );
    }
    this.position += size;
    return read(at);
  }

  private u8(): number {
    return this.take(1, (at) => this.data.getUint8(at));
  }

  private u64(): number {
    const value = this.take(8, (at) => this.data.getBigUint64(at, true));
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw this.error(`length ${value} is beyond 2^53`);
    return Number(value);
  }

  private length32(): number {
    const length = this.take(4, (at) => this.data.getInt32(at, true));
    if (length < 0) throw this.error(`negative length ${length}`);
    return length;
  }

  private raw(length: number): Uint8Array {
    return this.take(length, (at) => this.bytes.subarray(at, at + length));
  }

  /** `length` bytes of UTF-8, then `skip` bytes more (a terminator). */
  private text(length: number, skip = 0): string {
    const bytes = this.raw(length);
    this.position += skip;
    try {
      return this.utf8.decode(bytes);
    } catch {
      throw this.error('a string is not valid UTF-8');
    }
  }

  /** GLOBAL's operands: newline-terminated UTF-8. */
  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.position);
    if (end < 0) {
      throw new PickleEndOfDataError(
        `${this.options.label}: the pickle ends inside ${this.opcodeName()} at byte offset ${this.opcodeOffset}`,
      );
    }
    return this.text(end - this.position, 1);
  }

  /** A little-endian two's-complement integer of `length` bytes. */
  private long(length: number): number | bigint {
    const bytes = this.raw(length);
    let value = 0n;
    for (let i = length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]!);
    if (length > 0 && bytes[length - 1]! & 0x80) value -= 1n << BigInt(8 * length);
    const small = value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER);
    return small ? Number(value) : value;
  }

  // --- stack and memo ------------------------------------------------------------------------

  private push(value: PickleValue): void {
    this.stack.push(value);
  }

  private pop(): PickleValue {
    const value = this.stack.pop();
    if (value === undefined) throw this.error('stack underflow');
    if (value === MARK_SENTINEL) throw this.error('a mark where a value was expected');
    return value;
  }

  private top(): PickleValue {
    const value = this.stack[this.stack.length - 1];
    if (value === undefined) throw this.error('stack underflow');
    if (value === MARK_SENTINEL) throw this.error('a mark where a value was expected');
    return value;
  }

  private popMany(count: number): PickleValue[] {
    const values: PickleValue[] = [];
    for (let i = 0; i < count; i++) values.unshift(this.pop());
    return values;
  }

  /** The values above the topmost mark, which is removed with them. */
  private popMark(): PickleValue[] {
    const mark = this.stack.lastIndexOf(MARK_SENTINEL);
    if (mark < 0) throw this.error('no mark on the stack');
    return this.stack.splice(mark).slice(1) as PickleValue[];
  }

  private memoize(index: number): void {
    this.memo.set(index, this.top());
  }

  private recall(index: number): PickleValue {
    const value = this.memo.get(index);
    if (value === undefined) throw this.error(`memo entry ${index} was never stored`);
    return value;
  }

  // --- checks --------------------------------------------------------------------------------

  private list(value: PickleValue): PickleValue[] {
    if (!Array.isArray(value) || Object.isFrozen(value)) throw this.error('appending to something that is not a list');
    return value as PickleValue[];
  }

  private dict(value: PickleValue): Map<PickleValue, PickleValue> {
    if (!(value instanceof Map)) throw this.error('setting an item on something that is not a dict');
    return value;
  }

  private setItems(dict: Map<PickleValue, PickleValue>, items: readonly PickleValue[]): Map<PickleValue, PickleValue> {
    if (items.length % 2) throw this.error('an odd number of values for dict items');
    for (let i = 0; i < items.length; i += 2) dict.set(items[i]!, items[i + 1]!);
    return dict;
  }

  private tuple(value: PickleValue, what: string, listToo = false): readonly PickleValue[] {
    if (!Array.isArray(value) || (!listToo && !Object.isFrozen(value))) {
      throw this.error(`${what} must be a ${listToo ? 'tuple or list' : 'tuple'}`);
    }
    return value as readonly PickleValue[];
  }

  private global(value: PickleValue, opcode: string): PythonGlobal {
    if (!(value instanceof PythonGlobal)) throw this.error(`${opcode} applied to something that is not a global`);
    return value;
  }

  private dims(value: PickleValue, what: string): number[] {
    const items = this.tuple(value, what);
    if (!items.every((d): d is number => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
      throw this.error(`${what} must be a tuple of non-negative integers`);
    }
    return [...items];
  }

  private arity(callee: PythonGlobal, args: readonly PickleValue[], min: number, max: number): void {
    if (args.length < min || args.length > max) {
      const expected = min === max ? `${min}` : `${min}–${max}`;
      throw this.error(`'${callee.qualifiedName}' called with ${args.length} arguments; expected ${expected}`);
    }
  }

  /** Runs caller code (persistent ids) so that its errors say where in the pickle they arose. */
  private withLocation<T>(body: () => T): T {
    try {
      return body();
    } catch (error) {
      if (error instanceof PickleError) throw error;
      throw this.error((error as Error).message);
    }
  }

  private opcodeName(): string {
    const opcode = this.bytes[this.opcodeOffset]!;
    return OPCODE_NAMES.get(opcode) ?? `0x${opcode.toString(16)}`;
  }

  private error(message: string): PickleError {
    const where = `${this.opcodeName()} at byte offset ${this.opcodeOffset}`;
    return new PickleError(`${this.options.label}: ${message} (${where})`);
  }
}
