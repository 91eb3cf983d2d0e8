/**
 * Converts an OFA PyTorch checkpoint to safetensors under the port's parameter names.
 *
 * Accepts a fairseq checkpoint (state dict under `model`, fairseq parameter names) or a Hugging
 * Face `pytorch_model.bin` (the state dict itself, already under the port's names). What the
 * engine recomputes or never uses is dropped: relative-position bucket tables, image position
 * ids, batch-norm update counters and fairseq's version markers. The three views of the shared
 * token embedding are stored once; the safetensors metadata records the aliases under
 * `tied_weight_aliases` (JSON `{alias: stored name}`), as the golden manifest does.
 */
import { bfloat16sToFloats, floatsToHalves, halvesToFloats } from '../../half.js';
import { writeSafetensors, type TensorEntry } from '../../io/safetensors.js';
import { loadTorchCheckpoint, TorchTensor, type PickleValue, type TorchCheckpoint } from '../../io/torch-checkpoint.js';

export type OfaWeightDType = 'f32' | 'f16';

export interface ConvertOptions {
  dtype: OfaWeightDType;
}

export type StateDictLayout = 'fairseq' | 'huggingface';

export interface StateDict {
  /** fairseq: found under the checkpoint's `model`; huggingface: the checkpoint itself. */
  layout: StateDictLayout;
  /** In the checkpoint's order, under the checkpoint's names. */
  tensors: ReadonlyMap<string, TorchTensor>;
}

export interface ConversionSummary {
  layout: StateDictLayout;
  /** Number of tensors in the output file. */
  tensorsWritten: number;
  /** Checkpoint names left out (integer buffers, version markers). */
  dropped: string[];
  /** Port names stored once under another name: alias → stored name. */
  aliases: Record<string, string>;
  /** How many names the fairseq → port renaming changed. */
  renamed: number;
}

/** The shared token embedding and the names that view it (ofa-arch.md §6.5). */
export const TIED_EMBEDDING = 'encoder.embed_tokens.weight';
export const TIED_EMBEDDING_ALIASES: readonly string[] = [
  'decoder.embed_tokens.weight',
  'decoder.output_projection.weight',
];

/**
 * Recomputed by the engine (bucket tables, position ids), never used at inference
 * (`num_batches_tracked`), or fairseq bookkeeping (`version`, `_float_tensor`).
 */
const DROPPED_BUFFER = /(^|\.)(\w+_rp_bucket|image_position_idx|num_batches_tracked|version|_float_tensor)$/;

export function isDroppedBuffer(name: string): boolean {
  return DROPPED_BUFFER.test(name);
}

/** fairseq names that differ from the port's (ofa-arch.md §6.6); every other name is shared. */
const FAIRSEQ_RENAMES: ReadonlyArray<readonly [RegExp, string]> = [
  [/^(decoder\.layers\.\d+)\.self_attn_ln\./, '$1.self_attn_mid_layer_norm.'],
  [/^(decoder\.layers\.\d+)\.cross_attn_ln\./, '$1.cross_attn_mid_layer_norm.'],
  [/^(encoder\.layers\.\d+)\.attn_ln\./, '$1.self_attn_mid_layer_norm.'],
  [/\.ffn_layernorm\./, '.ffn_layer_norm.'],
  [/^(decoder\.layers\.\d+)\.encoder_attn\./, '$1.cross_attn.'],
  [/^(decoder\.layers\.\d+)\.encoder_attn_layer_norm\./, '$1.cross_attn_layer_norm.'],
];

export function fairseqToPortName(name: string): string {
  return FAIRSEQ_RENAMES.reduce((renamed, [pattern, replacement]) => renamed.replace(pattern, replacement), name);
}

/** The state dict of a fairseq checkpoint (`model`) or of a `pytorch_model.bin` (top level). */
export function readStateDict(checkpoint: TorchCheckpoint): StateDict {
  const { root, label } = checkpoint;
  if (!(root instanceof Map)) {
    throw new Error(`${label}: the checkpoint's top level is ${describe(root)}, not a dict, so it holds no state dict`);
  }
  const model = root.get('model');
  const [layout, dict] = model instanceof Map ? (['fairseq', model] as const) : (['huggingface', root] as const);
  const tensors = new Map<string, TorchTensor>();
  for (const [name, value] of dict) {
    const where = layout === 'fairseq' ? `${label}: model['${String(name)}']` : `${label}: ['${String(name)}']`;
    if (typeof name !== 'string') throw new Error(`${where}: a state dict key must be a string`);
    if (!(value instanceof TorchTensor)) {
      const hint = layout === 'huggingface' ? ` (and the checkpoint has no 'model' dict)` : '';
      throw new Error(`${where} is ${describe(value)}, not a tensor${hint}`);
    }
    tensors.set(name, value);
  }
  return { layout, tensors };
}

/** Reads `inPath`, writes `outPath` atomically, and says what it did. */
export async function convertOfaCheckpoint(
  inPath: string,
  outPath: string,
  options: ConvertOptions,
): Promise<ConversionSummary> {
  const checkpoint = await loadTorchCheckpoint(inPath);
  try {
    const { layout, tensors } = readStateDict(checkpoint);
    const dropped: string[] = [];
    let renamed = 0;
    const kept = new Map<string, { source: string; tensor: TorchTensor }>();
    for (const [name, tensor] of tensors) {
      if (isDroppedBuffer(name)) {
        dropped.push(name);
        continue;
      }
      const portName = layout === 'fairseq' ? fairseqToPortName(name) : name;
      if (portName !== name) renamed++;
      const clash = kept.get(portName);
      if (clash) {
        throw new Error(`${inPath}: '${clash.source}' and '${name}' both become '${portName}'`);
      }
      kept.set(portName, { source: name, tensor });
    }

    const aliases: Record<string, string> = {};
    const embedding = kept.get(TIED_EMBEDDING)?.tensor;
    if (embedding) {
      for (const alias of TIED_EMBEDDING_ALIASES) {
        const candidate = kept.get(alias)?.tensor;
        if (candidate && (await sameValues(candidate, embedding))) {
          aliases[alias] = TIED_EMBEDDING;
          kept.delete(alias);
        }
      }
    }

    const entries: TensorEntry[] = [];
    for (const [portName, { source, tensor }] of kept) {
      entries.push({
        name: portName,
        dtype: options.dtype === 'f16' ? 'F16' : 'F32',
        shape: tensor.shape,
        data: await convertValues(tensor, options.dtype, `${inPath}: '${source}'`),
      });
    }
    await writeSafetensors(outPath, entries, { format: 'pt', tied_weight_aliases: JSON.stringify(aliases) });
    return { layout, tensorsWritten: entries.length, dropped, aliases, renamed };
  } finally {
    await checkpoint.close();
  }
}

/** Tied by construction (one view of one storage) or by value (saved as separate copies). */
async function sameValues(a: TorchTensor, b: TorchTensor): Promise<boolean> {
  if (a.sameView(b)) return true;
  const sameShape = a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
  if (a.dtype !== b.dtype || !sameShape) return false;
  const [x, y] = await Promise.all([a.contiguousBytes(), b.contiguousBytes()]);
  return x.length === y.length && x.every((byte, i) => byte === y[i]);
}

/**
 * F16 weights go to F16 bit for bit; BF16 widens exactly to F32; F64 rounds to F32. Rounding to
 * F16 fails, naming the tensor, if a finite weight would overflow to infinity.
 */
async function convertValues(
  tensor: TorchTensor,
  dtype: OfaWeightDType,
  where: string,
): Promise<Float32Array | Uint16Array> {
  const bytes = await tensor.contiguousBytes();
  if (tensor.dtype === 'float16') {
    const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, tensor.numel);
    return dtype === 'f16' ? halves : halvesToFloats(halves);
  }
  const floats = toFloat32(bytes, tensor, where);
  if (dtype === 'f32') return floats;
  const halves = floatsToHalves(floats);
  const overflow = halves.findIndex((h, i) => (h & 0x7fff) === 0x7c00 && Number.isFinite(floats[i]!));
  if (overflow >= 0) {
    throw new Error(`${where}: element ${overflow} = ${floats[overflow]} overflows float16; convert with dtype f32`);
  }
  return halves;
}

function toFloat32(bytes: Uint8Array<ArrayBuffer>, tensor: TorchTensor, where: string): Float32Array {
  switch (tensor.dtype) {
    case 'float32':
      return new Float32Array(bytes.buffer, bytes.byteOffset, tensor.numel);
    case 'bfloat16':
      return bfloat16sToFloats(new Uint16Array(bytes.buffer, bytes.byteOffset, tensor.numel));
    case 'float64':
      return Float32Array.from(new Float64Array(bytes.buffer, bytes.byteOffset, tensor.numel));
    default:
      throw new Error(
        `${where} is ${tensor.dtype}; only floating-point weights are converted, and this name is not one of ` +
          `the integer buffers the engine recomputes`,
      );
  }
}

function describe(value: PickleValue): string {
  if (value === null) return 'None';
  if (value instanceof Map) return 'a dict';
  if (Array.isArray(value)) return 'a list or tuple';
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'object') return `a ${value.constructor.name}`;
  return `a ${typeof value}`;
}
