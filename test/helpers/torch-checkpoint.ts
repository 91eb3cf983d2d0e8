/**
 * PyTorch checkpoints written by tests: legacy-format (pre-zip) files are a few protocol-2
 * pickles and raw storage bytes, so a test can write exactly the state dict it needs.
 */
export type StorageClass = 'FloatStorage' | 'DoubleStorage' | 'HalfStorage' | 'BFloat16Storage' | 'LongStorage';

export interface StorageSpec {
  key: string;
  type: StorageClass;
  data: Float32Array | Float64Array | Uint16Array | BigInt64Array;
}

export interface TensorSpec {
  name: string;
  storage: StorageSpec;
  shape: number[];
  stride?: number[];
  offset?: number;
}

export class PickleWriter {
  private readonly bytes: number[] = [0x80, 2];

  op(codes: string): this {
    for (const char of codes) this.bytes.push(char.charCodeAt(0));
    return this;
  }

  str(text: string): this {
    const utf8 = new TextEncoder().encode(text);
    this.op('X').u32(utf8.length);
    for (const byte of utf8) this.bytes.push(byte);
    return this;
  }

  int(value: number): this {
    if (value >= 0 && value < 256) this.bytes.push(0x4b, value);
    else if (value >= -(2 ** 31) && value < 2 ** 31) this.op('J').u32(value);
    else {
      // LONG1: eight bytes of two's complement.
      const bytes = new Uint8Array(new BigInt64Array([BigInt(value)]).buffer);
      this.raw(0x8a, 8, ...bytes);
    }
    return this;
  }

  global(module: string, name: string): this {
    return this.op(`c${module}\n${name}\n`);
  }

  ints(values: readonly number[]): this {
    this.op('(');
    for (const value of values) this.int(value);
    return this.op('t');
  }

  /** None, bools, ints, floats, strings, lists and dicts (plain objects), as pickle writes them. */
  value(value: unknown): this {
    if (value === null) return this.op('N');
    if (typeof value === 'boolean') return this.op(value ? '\x88' : '\x89');
    if (typeof value === 'string') return this.str(value);
    if (typeof value === 'number' && Number.isInteger(value)) return this.int(value);
    if (typeof value === 'number') {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setFloat64(0, value, false);
      return this.op('G').raw(...bytes);
    }
    if (Array.isArray(value)) {
      this.op('](');
      for (const item of value) this.value(item);
      return this.op('e');
    }
    this.op('}(');
    for (const [key, item] of Object.entries(value as object)) this.str(key).value(item);
    return this.op('u');
  }

  /** argparse.Namespace(**fields): NEWOBJ, then BUILD with the fields. */
  namespace(fields: Record<string, unknown>): this {
    return this.global('argparse', 'Namespace').op(')\x81').value(fields).op('b');
  }

  /** `module.name(*args)`: what a pickle of a class off the allow-list looks like. */
  call(module: string, name: string, args: readonly unknown[]): this {
    this.global(module, name).op('(');
    for (const arg of args) this.value(arg);
    return this.op('tR');
  }

  raw(...bytes: number[]): this {
    for (const byte of bytes) this.bytes.push(byte);
    return this;
  }

  finish(): Uint8Array {
    return new Uint8Array([...this.bytes, 0x2e]);
  }

  private u32(value: number): this {
    this.bytes.push(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, value >>> 24);
    return this;
  }
}

function rowMajorStride(shape: readonly number[]): number[] {
  const stride: number[] = [];
  for (let axis = shape.length - 1, step = 1; axis >= 0; step *= shape[axis]!, axis--) stride[axis] = step;
  return stride;
}

export interface CheckpointExtras {
  /** fairseq: the model arguments, pickled as `cfg['model']`, an argparse Namespace. */
  modelArguments?: Record<string, unknown>;
  /** fairseq: writes the value of `extra_state`. */
  extraState?: (pickle: PickleWriter) => void;
  /** Writes one more `model` entry (key and value) after the tensors. */
  modelEntry?: (pickle: PickleWriter) => void;
}

/** `torch.save(obj, f, _use_new_zipfile_serialization=False)` of a fairseq checkpoint dict or of the state dict. */
export function legacyCheckpoint(
  tensors: readonly TensorSpec[],
  layout: 'fairseq' | 'huggingface',
  extras: CheckpointExtras = {},
): Uint8Array {
  const magic = new PickleWriter().raw(0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19).finish();
  const protocol = new PickleWriter().op('M').raw(0xe9, 0x03).finish();
  const sysInfo = new PickleWriter().op('}(').str('little_endian').op('\x88').op('u').finish();

  const main = new PickleWriter();
  if (layout === 'fairseq') main.op('}').str('model');
  main.global('collections', 'OrderedDict').op(')R(');
  const storages = new Map<string, StorageSpec>();
  for (const { name, storage, shape, stride, offset } of tensors) {
    storages.set(storage.key, storage);
    main.str(name).global('torch._utils', '_rebuild_tensor_v2').op('((').str('storage');
    main.global('torch', storage.type).str(storage.key).str('cpu').int(storage.data.length).op('Nt').op('Q');
    main.int(offset ?? 0).ints(shape).ints(stride ?? rowMajorStride(shape)).op('\x89');
    main.global('collections', 'OrderedDict').op(')R').op('tR');
  }
  extras.modelEntry?.(main);
  main.op('u');
  if (layout === 'fairseq') {
    main.op('s');
    if (extras.modelArguments) main.str('cfg').op('}').str('model').namespace(extras.modelArguments).op('ss');
    if (extras.extraState) {
      main.str('extra_state');
      extras.extraState(main);
      main.op('s');
    }
  }

  const keys = new PickleWriter().op('](');
  for (const key of storages.keys()) keys.str(key);
  const parts: Uint8Array[] = [magic, protocol, sysInfo, main.finish(), keys.op('e').finish()];
  for (const { data } of storages.values()) {
    const count = new BigInt64Array([BigInt(data.length)]);
    parts.push(new Uint8Array(count.buffer), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return new Uint8Array(Buffer.concat(parts));
}
