/**
 * An unpickler for PyTorch checkpoints that executes nothing.
 *
 * Python's pickle format is a small stack machine whose GLOBAL and REDUCE opcodes import and
 * call arbitrary Python functions. This reader implements the data opcodes of protocols 2–5 that
 * `torch.save` emits and never imports or calls anything. Globals on an allow-list — the handful
 * a checkpoint's tensors need, and the numpy scalars and arrays a training run leaves in its
 * bookkeeping — are interpreted here (an OrderedDict becomes a Map, a tensor rebuild becomes a
 * `TorchTensor` descriptor, a `numpy.float64` a number). Any other global becomes an inert
 * `PythonObject` placeholder that records the class name and the arguments it was called with:
 * the checkpoint's other contents (optimizer state, meters, configs) then load whatever classes
 * they mention, and a caller that needs a value — the state dict — refuses a placeholder by
 * name. Opcodes outside the supported set are errors naming them and their byte offset. Storage
 * bytes never pass through the pickle: persistent ids (BINPERSID) are handed to the caller,
 * which resolves them to `TorchStorage`s.
 *
 * Python values map to: None → null, bool → boolean, int → number (bigint beyond 2^53),
 * float → number, str → string, bytes → Uint8Array, list → array, tuple → frozen array,
 * dict → Map, collections.OrderedDict → `OrderedDict` (a Map), argparse.Namespace → `Namespace`
 * (its fields as properties), torch.Size → frozen array of numbers, numpy scalars → number,
 * bigint or boolean, numpy arrays → `NumpyArray`, anything else → `PythonObject`.
 *
 * Work and memory are linear in the pickle's size: the machine is iterative (no recursion on
 * nesting), memo references share values instead of copying them, and long integers are
 * converted in one pass.
 */
import { halfToFloat } from '../half.js';
import { TORCH_DTYPE_BYTES, type TorchDType, TorchStorage, TorchTensor } from './torch-tensor.js';

export class PickleError extends Error {
  override name = 'PickleError';
}

/** The data ran out before STOP; a streaming caller may retry with at least `needed` bytes. */
export class PickleEndOfDataError extends PickleError {
  override name = 'PickleEndOfDataError';

  constructor(
    message: string,
    /** Bytes from the start of the pickle that the opcode being read needs, at least. */
    readonly needed: number,
  ) {
    super(message);
  }
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
  | PythonObject
  | NumpyDType
  | NumpyArray
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

/**
 * What the pickle built from a global outside the allow-list: nothing was imported or called.
 * The class (or function) name and the arguments are kept so that a caller that finds one where
 * it needs data can say what it is.
 */
export class PythonObject {
  /** What BUILD set (`__setstate__`'s argument), if anything. */
  state: PickleValue | undefined;

  constructor(
    /** `module.name` of the global the object came from. */
    readonly className: string,
    readonly args: readonly PickleValue[],
  ) {}

  /** `os.system('ls')`, with long or deep arguments abbreviated. */
  toString(): string {
    return brief(this);
  }
}

/**
 * `numpy.dtype`, as numpy pickles it: `dtype('f8', False, True)` and then BUILD with a state
 * tuple whose second item is the byte order.
 */
export class NumpyDType {
  /** `<` little, `>` big, `|` not applicable, `=` native (little on every host we run on). */
  byteOrder = '=';
  /** Structured dtypes (named fields) are kept, but their values are not decoded. */
  structured = false;

  constructor(
    /** numpy's type code with size: `f8`, `i4`, `b1`, … */
    readonly type: string,
  ) {}

  get littleEndian(): boolean {
    return this.byteOrder !== '>';
  }
}

/** A numpy array (`numpy.core.multiarray._reconstruct` followed by BUILD). */
export class NumpyArray {
  shape: readonly number[] = [];
  dtype: NumpyDType | undefined;
  fortranOrder = false;
  /** The raw element bytes in `dtype`'s byte order, or the items of an object array. */
  data: Uint8Array | readonly PickleValue[] = new Uint8Array(0);
  built = false;
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
  | { kind: 'codecsEncode' }
  | { kind: 'numpyScalar' }
  | { kind: 'numpyDType' }
  | { kind: 'numpyReconstruct' }
  | { kind: 'numpyNdarray' }
  /** Not on the allow-list: calling it makes a `PythonObject` placeholder. */
  | { kind: 'foreign' };

/** A global the pickle referred to, resolved against the allow-list. Never a callable. */
export class PythonGlobal {
  constructor(
    readonly qualifiedName: string,
    readonly meaning: GlobalMeaning,
  ) {}

  toString(): string {
    return this.qualifiedName;
  }
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
    // A single-GPU fairseq run keeps scores as numpy.float64 (meters, `best`); numpy 2 moved the
    // module to numpy._core, and pickles name whichever wrote them.
    ['numpy.dtype', { kind: 'numpyDType' }],
    ['numpy.ndarray', { kind: 'numpyNdarray' }],
  ]);
  for (const module of ['numpy.core.multiarray', 'numpy._core.multiarray']) {
    allowed.set(`${module}.scalar`, { kind: 'numpyScalar' });
    allowed.set(`${module}._reconstruct`, { kind: 'numpyReconstruct' });
  }
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

/** Characters of a string, and items of a container, shown in messages before "…". */
const BRIEF_TEXT = 40;
const BRIEF_ITEMS = 4;

/**
 * A short rendering of a value for messages, Python-like (`'text'`, `None`, `(1, 2)`). Bounded
 * whatever the value: strings and containers are cut, nesting below `depth` shows as `…`, so a
 * deep or self-referencing structure can neither make a message large nor recurse far.
 */
export function brief(value: PickleValue, depth = 2): string {
  if (value === null) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (typeof value === 'string') return `'${value.length > BRIEF_TEXT ? `${value.slice(0, BRIEF_TEXT)}…` : value}'`;
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (value instanceof PythonGlobal) return value.qualifiedName;
  if (value instanceof TorchTensor) return `tensor(${value.dtype}, [${value.shape.join(', ')}])`;
  if (value instanceof TorchStorage) return `storage '${value.key}'`;
  if (value instanceof NumpyDType) return `dtype('${value.type}')`;
  if (value instanceof NumpyArray) return `ndarray([${value.shape.join(', ')}])`;
  if (depth <= 0) return '…';
  const inner = (item: PickleValue): string => brief(item, depth - 1);
  if (value instanceof PythonObject) return `${value.className}(${firstItems(value.args, value.args.length, inner)})`;
  if (Array.isArray(value)) {
    const shown = firstItems(value as readonly PickleValue[], value.length, inner);
    return Object.isFrozen(value) ? `(${shown})` : `[${shown}]`;
  }
  if (value instanceof Map) {
    return `{${firstItems(value, value.size, ([key, item]) => `${inner(key)}: ${inner(item)}`)}}`;
  }
  const namespace = value as Namespace;
  const fields = Object.keys(namespace);
  return `Namespace(${firstItems(fields, fields.length, (field) => `${field}=${inner(namespace[field]!)}`)})`;
}

/** The first BRIEF_ITEMS of `items` rendered, comma-separated, with `…` when there are more. */
function firstItems<T>(items: Iterable<T>, size: number, render: (item: T) => string): string {
  const shown: string[] = [];
  for (const item of items) {
    if (shown.length === BRIEF_ITEMS) break;
    shown.push(render(item));
  }
  return size > BRIEF_ITEMS ? `${shown.join(', ')}, …` : shown.join(', ');
}

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
  NEWOBJ_EX: 0x92,
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

/** Whether calling `callee` makes a placeholder: a global off the allow-list, or a placeholder itself. */
function isForeign(callee: PythonGlobal | PythonObject): boolean {
  return callee instanceof PythonObject || callee.meaning.kind === 'foreign';
}

function calleeName(callee: PythonGlobal | PythonObject): string {
  return callee instanceof PythonObject ? callee.className : callee.qualifiedName;
}

/** numpy scalar types decoded to JavaScript values: byte size and reader. */
const NUMPY_SCALARS = new Map<string, { bytes: number; read: (view: DataView, littleEndian: boolean) => PickleValue }>([
  ['f8', { bytes: 8, read: (view, le) => view.getFloat64(0, le) }],
  ['f4', { bytes: 4, read: (view, le) => view.getFloat32(0, le) }],
  ['f2', { bytes: 2, read: (view, le) => halfToFloat(view.getUint16(0, le)) }],
  ['i8', { bytes: 8, read: (view, le) => safeInteger(view.getBigInt64(0, le)) }],
  ['u8', { bytes: 8, read: (view, le) => safeInteger(view.getBigUint64(0, le)) }],
  ['i4', { bytes: 4, read: (view, le) => view.getInt32(0, le) }],
  ['u4', { bytes: 4, read: (view, le) => view.getUint32(0, le) }],
  ['i2', { bytes: 2, read: (view, le) => view.getInt16(0, le) }],
  ['u2', { bytes: 2, read: (view, le) => view.getUint16(0, le) }],
  ['i1', { bytes: 1, read: (view) => view.getInt8(0) }],
  ['u1', { bytes: 1, read: (view) => view.getUint8(0) }],
  ['b1', { bytes: 1, read: (view) => view.getUint8(0) !== 0 }],
]);

function safeInteger(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

const HEX_BYTES = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

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
          this.position + 1,
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
        const list = this.list(this.top());
        // One push per item: spreading a long run of items into push() overflows the call stack.
        for (const item of items) list.push(item);
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
        return this.push(this.call(this.callee(this.pop(), 'REDUCE'), args));
      }
      case OP.NEWOBJ: {
        const args = this.tuple(this.pop(), 'NEWOBJ arguments');
        return this.push(this.construct(this.callee(this.pop(), 'NEWOBJ'), args));
      }
      case OP.NEWOBJ_EX: {
        const keywords = this.dict(this.pop());
        const args = this.tuple(this.pop(), 'NEWOBJ_EX arguments');
        const callee = this.callee(this.pop(), 'NEWOBJ_EX');
        if (keywords.size > 0 && !isForeign(callee)) {
          throw this.error(`'${callee}' is not constructed with keyword arguments`);
        }
        return this.push(this.construct(callee, keywords.size > 0 ? [...args, keywords] : args));
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

  /** Resolves nothing: an allowed name gets its meaning, any other name a placeholder meaning. */
  private resolveGlobal(module: string, name: string): PythonGlobal {
    const qualifiedName = `${module}.${name}`;
    return new PythonGlobal(qualifiedName, ALLOWED_GLOBALS.get(qualifiedName) ?? { kind: 'foreign' });
  }

  private call(target: PythonGlobal | PythonObject, args: readonly PickleValue[]): PickleValue {
    if (isForeign(target)) return new PythonObject(calleeName(target), args);
    const callee = target as PythonGlobal;
    switch (callee.meaning.kind) {
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
        if (!(data instanceof TorchTensor)) throw this.error(`${callee} expects a tensor`);
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
      case 'numpyDType': {
        // dtype(type, align, copy); the byte order follows in BUILD's state.
        this.arity(callee, args, 1, 3);
        const [type] = args;
        if (typeof type !== 'string') throw this.error(`numpy.dtype expects a type string such as 'f8'`);
        return new NumpyDType(type);
      }
      case 'numpyScalar':
        this.arity(callee, args, 1, 2);
        return this.numpyScalar(callee, args);
      case 'numpyReconstruct': {
        // _reconstruct(ndarray, (0,), b'b'): an empty array that BUILD then fills.
        this.arity(callee, args, 3, 3);
        const [type] = args;
        if (!(type instanceof PythonGlobal) || type.meaning.kind !== 'numpyNdarray') {
          throw this.error(`${callee} is accepted only for numpy.ndarray`);
        }
        return new NumpyArray();
      }
      default:
        throw this.error(`'${callee}' cannot be called`);
    }
  }

  private construct(callee: PythonGlobal | PythonObject, args: readonly PickleValue[]): PickleValue {
    if (isForeign(callee)) return new PythonObject(calleeName(callee), args);
    if ((callee as PythonGlobal).meaning.kind !== 'namespace') throw this.error(`'${callee}' cannot be instantiated`);
    this.arity(callee, args, 0, 0);
    return new Namespace();
  }

  /**
   * numpy.float64(x) and friends pickle as `scalar(dtype, raw bytes)`; object scalars as
   * `scalar(dtype, obj)`. Numbers, booleans and integers decode; other types (strings, dates,
   * complex, structured) stay placeholders.
   */
  private numpyScalar(callee: PythonGlobal, args: readonly PickleValue[]): PickleValue {
    const [dtype, data] = args;
    if (!(dtype instanceof NumpyDType)) throw this.error(`${callee} expects a numpy.dtype first`);
    if (dtype.type === 'O') return data ?? null;
    const decoded = dtype.structured ? undefined : NUMPY_SCALARS.get(dtype.type);
    if (!decoded) return new PythonObject(callee.qualifiedName, args);
    if (!(data instanceof Uint8Array) || data.length !== decoded.bytes) {
      throw this.error(`a numpy '${dtype.type}' scalar needs ${decoded.bytes} bytes of data, found ${brief(data ?? null)}`);
    }
    return decoded.read(new DataView(data.buffer, data.byteOffset, data.length), dtype.littleEndian);
  }

  /**
   * BUILD sets an object's state: a Namespace's fields and an OrderedDict's attributes (a dict,
   * or Python's `(dict, slots)` pair), a numpy dtype's byte order, a numpy array's contents, a
   * placeholder's state (kept, never interpreted).
   */
  private build(target: PickleValue, state: PickleValue): void {
    if (target instanceof PythonObject) {
      target.state = state;
      return;
    }
    if (target instanceof NumpyDType) return this.buildDType(target, state);
    if (target instanceof NumpyArray) return this.buildArray(target, state);
    if (!(target instanceof Namespace || target instanceof OrderedDict)) {
      throw this.error(`BUILD (setting object state) on ${brief(target, 0)}, which has no state to set`);
    }
    const parts = Array.isArray(state) && Object.isFrozen(state) ? (state as readonly PickleValue[]) : [state];
    if (parts.length > 2) throw this.error(`BUILD state is a ${parts.length}-tuple; expected a dict or (dict, slots)`);
    for (const part of parts) {
      if (part === null) continue;
      if (!(part instanceof Map)) throw this.error(`BUILD state for ${brief(target, 0)} must be a dict, found ${brief(part, 0)}`);
      for (const [key, value] of part) {
        if (typeof key !== 'string') throw this.error('BUILD state has a non-string attribute name');
        if (target instanceof OrderedDict) target.attributes.set(key, value);
        // defineProperty keeps a field named "__proto__" an ordinary field.
        else Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
      }
    }
  }

  /** `(version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])`. */
  private buildDType(dtype: NumpyDType, state: PickleValue): void {
    const fields = this.tuple(state, 'numpy.dtype state');
    const byteOrder = fields[1];
    if (fields.length < 8 || typeof byteOrder !== 'string' || !['<', '>', '|', '='].includes(byteOrder)) {
      throw this.error(`numpy.dtype state ${brief(state)} is not (version, byteorder, …)`);
    }
    dtype.byteOrder = byteOrder;
    dtype.structured = fields[3] !== null || fields[2] !== null;
  }

  /** `(version, shape, dtype, is_fortran, data)`: raw bytes, or a list for object arrays. */
  private buildArray(array: NumpyArray, state: PickleValue): void {
    if (array.built) throw this.error('a numpy array is built twice');
    const fields = this.tuple(state, 'numpy array state');
    if (fields.length !== 5) throw this.error(`numpy array state has ${fields.length} items; expected 5`);
    const [, shape, dtype, fortranOrder, data] = fields;
    if (!(dtype instanceof NumpyDType)) throw this.error('numpy array state lacks a numpy.dtype');
    const dims = this.dims(shape!, 'numpy array shape');
    const count = dims.reduce((product, dim) => product * dim, 1);
    if (Array.isArray(data)) {
      if (dtype.type !== 'O' || data.length !== count) {
        throw this.error(`a numpy '${dtype.type}' array of shape (${dims.join(', ')}) holds a list of ${data.length} items`);
      }
    } else if (data instanceof Uint8Array) {
      const itemsize = Number(/\d+$/.exec(dtype.type)?.[0] ?? NaN);
      if (data.length !== count * itemsize) {
        throw this.error(
          `a numpy '${dtype.type}' array of shape (${dims.join(', ')}) needs ${count * itemsize} bytes, found ${data.length}`,
        );
      }
    } else {
      throw this.error(`numpy array data must be bytes or a list, found ${brief(data ?? null, 0)}`);
    }
    array.shape = Object.freeze(dims);
    array.dtype = dtype;
    array.fortranOrder = fortranOrder === true;
    array.data = data as Uint8Array | readonly PickleValue[];
    array.built = true;
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
        at + size,
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
        this.bytes.length + 1,
      );
    }
    return this.text(end - this.position, 1);
  }

  /**
   * A little-endian two's-complement integer of `length` bytes, converted through one hex string
   * (building it byte by byte with BigInt shifts would be quadratic in the length).
   */
  private long(length: number): number | bigint {
    const bytes = this.raw(length);
    if (length === 0) return 0;
    const digits = new Array<string>(length);
    for (let i = 0; i < length; i++) digits[i] = HEX_BYTES[bytes[length - 1 - i]!]!;
    let value = BigInt(`0x${digits.join('')}`);
    if (bytes[length - 1]! & 0x80) value -= 1n << BigInt(8 * length);
    return safeInteger(value);
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

  /** What REDUCE and NEWOBJ may call: a global, or a placeholder (whose call is another placeholder). */
  private callee(value: PickleValue, opcode: string): PythonGlobal | PythonObject {
    if (!(value instanceof PythonGlobal || value instanceof PythonObject)) {
      throw this.error(`${opcode} applied to ${brief(value, 0)}, which is not a class or function`);
    }
    return value;
  }

  private dims(value: PickleValue, what: string): number[] {
    const items = this.tuple(value, what);
    if (!items.every((d): d is number => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
      throw this.error(`${what} must be a tuple of non-negative integers`);
    }
    return [...items];
  }

  private arity(callee: PythonGlobal | PythonObject, args: readonly PickleValue[], min: number, max: number): void {
    if (args.length < min || args.length > max) {
      const expected = min === max ? `${min}` : `${min}–${max}`;
      throw this.error(`'${calleeName(callee)}' called with ${args.length} arguments; expected ${expected}`);
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
