/**
 * Converts an OFA PyTorch checkpoint to a model folder: `weights.safetensors` under the port's
 * parameter names and the `config.json` the engine loads, read from the checkpoint itself.
 *
 * Accepts a fairseq checkpoint (state dict under `model`, fairseq parameter names, the model's
 * arguments under `cfg["model"]` or, in older files, `args`) or a Hugging Face
 * `pytorch_model.bin` (the state dict itself, already under the port's names, with its
 * `config.json` beside it). Only `model` has to make sense: the rest of the checkpoint (optimizer
 * state, meters, numpy scores, classes off the pickle allow-list) loads as inert data, and an
 * inert placeholder inside the state dict is refused by name.
 *
 * What the engine recomputes or never uses is dropped: relative-position bucket tables, image
 * position ids, batch-norm update counters and fairseq's version markers. The three views of the
 * shared token embedding are stored once; the safetensors metadata records the aliases under
 * `tied_weight_aliases` (JSON `{alias: stored name}`), as the golden manifest does, and the
 * config under `config`.
 *
 * Tensors stream from the checkpoint to the output one at a time, so memory holds one tensor,
 * not the file; both files are written atomically and only after the config has been derived
 * and checked, so a failure leaves nothing behind. Node's `fs` and `path` are imported on use,
 * as everywhere in the library, so that browser bundles of it still load.
 */
import { bfloat16sToFloats, floatsToHalves, halvesToFloats } from '../../half.js';
import { writeFileAtomically } from '../../io/atomic-file.js';
import { type LazyTensorEntry, type WriteProgress, writeSafetensors } from '../../io/safetensors.js';
import {
  Namespace,
  PythonObject,
  TorchTensor,
  TorchTensorError,
  brief,
  loadTorchCheckpoint,
  type PickleValue,
  type TorchCheckpoint,
} from '../../io/torch-checkpoint.js';
import { MUE_THRESHOLD_ARGUMENTS, type MueThresholds, configFromJson, configJsonFromFairseq } from './config.js';

/** The checkpoint does not hold a convertible OFA model (the file itself reads fine). */
export class ConversionError extends Error {
  override name = 'ConversionError';
}

export type OfaWeightDType = 'f32' | 'f16';

export interface ConvertOptions {
  dtype: OfaWeightDType;
  /** Called after each tensor is written. */
  onProgress?: (progress: WriteProgress) => void;
}

export type StateDictLayout = 'fairseq' | 'huggingface';

export interface StateDict {
  /** fairseq: found under the checkpoint's `model`; huggingface: the checkpoint itself. */
  layout: StateDictLayout;
  /** In the checkpoint's order, under the checkpoint's names. */
  tensors: ReadonlyMap<string, TorchTensor>;
}

/** The model's config.json and where it came from. */
export interface CheckpointConfig {
  json: Record<string, unknown>;
  /** `cfg['model']`, `args`, or the path of the config.json beside a Hugging Face checkpoint. */
  source: string;
}

export interface ConversionSummary {
  layout: StateDictLayout;
  /** The safetensors file written. */
  weights: string;
  /** The config.json written (model folders), if any. */
  configFile: string | undefined;
  /** The model config, embedded in the weights' metadata too; undefined when the checkpoint has none. */
  config: CheckpointConfig | undefined;
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

/** The files of a model folder, as `OfaModel.load` looks for them. */
export const WEIGHTS_FILE = 'weights.safetensors';
export const CONFIG_FILE = 'config.json';

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

/**
 * The state dict of a fairseq checkpoint (`model`) or of a `pytorch_model.bin` (top level).
 * Every entry must be a tensor: anything else — above all a placeholder for a class off the
 * pickle allow-list, which a crafted file could put there — is refused by name.
 */
export function readStateDict(checkpoint: TorchCheckpoint): StateDict {
  const { root, label } = checkpoint;
  if (!(root instanceof Map)) {
    throw new ConversionError(`${label}: the checkpoint's top level is ${describe(root)}, not a dict, so it holds no state dict`);
  }
  const model = root.get('model');
  if (model !== undefined && !(model instanceof Map)) {
    throw new ConversionError(`${label}: 'model' is ${describe(model)}, not a state dict`);
  }
  const [layout, dict] = model instanceof Map ? (['fairseq', model] as const) : (['huggingface', root] as const);
  const tensors = new Map<string, TorchTensor>();
  for (const [name, value] of dict) {
    const where = layout === 'fairseq' ? `${label}: model[${brief(name)}]` : `${label}: [${brief(name)}]`;
    if (typeof name !== 'string') throw new ConversionError(`${where}: a state dict key must be a string`);
    if (!(value instanceof TorchTensor)) {
      const hint = layout === 'huggingface' ? ` (and the checkpoint has no 'model' dict)` : '';
      throw new ConversionError(`${where} is ${describe(value)}, not a tensor${hint}`);
    }
    tensors.set(name, value);
  }
  return { layout, tensors };
}

/**
 * The model's config.json: for fairseq checkpoints from the model arguments they carry, for
 * Hugging Face checkpoints the file `huggingFaceConfig` (the config.json beside the checkpoint);
 * undefined when there is neither. A config the engine cannot run is a ConversionError.
 */
export async function readCheckpointConfig(
  checkpoint: TorchCheckpoint,
  stateDict: StateDict,
  huggingFaceConfig?: string,
): Promise<CheckpointConfig | undefined> {
  try {
    return stateDict.layout === 'huggingface'
      ? await readConfigFile(huggingFaceConfig)
      : configFromArguments(checkpoint, stateDict);
  } catch (error) {
    if (error instanceof ConversionError) throw error;
    throw new ConversionError((error as Error).message);
  }
}

async function readConfigFile(path: string | undefined): Promise<CheckpointConfig | undefined> {
  if (path === undefined) return undefined;
  const { readFile } = await import('node:fs/promises');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConversionError(`${path}: not valid JSON (${(error as Error).message})`);
  }
  configFromJson(json, path);
  return { json: json as Record<string, unknown>, source: path };
}

function configFromArguments(checkpoint: TorchCheckpoint, stateDict: StateDict): CheckpointConfig | undefined {
  const found = fairseqModelArguments(checkpoint.root as Map<PickleValue, PickleValue>);
  if (!found) return undefined;
  // The vocabulary comes from the dictionary, not the arguments: the token table has a row per entry.
  const embedding = stateDict.tensors.get(TIED_EMBEDDING);
  if (!embedding || embedding.shape.length !== 2) {
    throw new ConversionError(`${checkpoint.label}: model has no 2-D '${TIED_EMBEDDING}', so the vocabulary size is unknown`);
  }
  const [vocabSize, width] = embedding.shape as [number, number];
  const where = `${checkpoint.label}: ${found.source}`;
  const json = configJsonFromFairseq(found.args, vocabSize, where);
  if (width !== json['d_model']) {
    throw new ConversionError(`${where}: the model is ${String(json['d_model'])} wide, but '${TIED_EMBEDDING}' is ${width}`);
  }
  return { json, source: found.source };
}

/**
 * fairseq ≥ 0.10 keeps the model's arguments in `cfg['model']` (an argparse Namespace when the
 * model was built from arguments, as OFA's are, or a dict naming the architecture `_name`);
 * older files in `args`. Where both exist, `cfg['model']` wins key by key. MuE's thresholds may
 * sit with the generation or task settings instead; they are gathered too.
 */
function fairseqModelArguments(
  root: Map<PickleValue, PickleValue>,
): { args: Record<string, unknown>; source: string } | undefined {
  const cfg = root.get('cfg');
  const section = (name: string): Record<string, unknown> | undefined =>
    cfg instanceof Map ? fieldsOf(cfg.get(name) ?? null) : undefined;
  const fromCfg = section('model');
  const fromArgs = fieldsOf(root.get('args') ?? null);
  if (!fromCfg && !fromArgs) return undefined;
  const args: Record<string, unknown> = { ...fromArgs, ...fromCfg };
  if (args['arch'] === undefined && typeof args['_name'] === 'string') args['arch'] = args['_name'];
  for (const extra of [section('generation'), section('task')]) {
    for (const key of Object.values(MUE_THRESHOLD_ARGUMENTS)) {
      if (args[key] === undefined && extra?.[key] !== undefined) args[key] = extra[key];
    }
  }
  const source = [fromCfg && "cfg['model']", fromArgs && 'args'].filter(Boolean).join(' and ');
  return { args, source };
}

/** A Namespace's fields or a dict's string keys as a record; undefined for anything else. */
function fieldsOf(value: PickleValue): Record<string, unknown> | undefined {
  if (value instanceof Namespace) return { ...value };
  if (!(value instanceof Map)) return undefined;
  const record: Record<string, unknown> = {};
  for (const [key, item] of value) {
    if (typeof key === 'string') Object.defineProperty(record, key, { value: item, enumerable: true, writable: true });
  }
  return record;
}

/** The thresholds a MuE checkpoint was trained for, from its config.json. */
export function mueThresholdsOf(config: CheckpointConfig | undefined): MueThresholds | undefined {
  const thresholds = config?.json['mue_exit_thresholds'];
  return typeof thresholds === 'object' && thresholds !== null ? (thresholds as MueThresholds) : undefined;
}

/** Everything a conversion writes, the tensors still unread: `convertOfaCheckpoint` streams it to disk. */
export interface PreparedConversion {
  layout: StateDictLayout;
  /** Each `read()` converts one tensor; its errors name the checkpoint and the tensor. */
  entries: LazyTensorEntry[];
  /** The safetensors metadata: tied aliases and, when known, the config. */
  metadata: Record<string, string>;
  config: CheckpointConfig | undefined;
  dropped: string[];
  aliases: Record<string, string>;
  renamed: number;
}

/**
 * Plans the conversion of an open checkpoint: the state dict, the config, and the output
 * tensors after drops, renames and tying. `huggingFaceConfig` is the config.json to read for a
 * Hugging Face state dict (the one beside the checkpoint).
 */
export async function prepareConversion(
  checkpoint: TorchCheckpoint,
  { dtype, huggingFaceConfig }: { dtype: OfaWeightDType; huggingFaceConfig?: string },
): Promise<PreparedConversion> {
  const stateDict = readStateDict(checkpoint);
  const { entries, dropped, aliases, renamed } = await planTensors(stateDict, checkpoint.label, dtype);
  const config = await readCheckpointConfig(checkpoint, stateDict, huggingFaceConfig);
  const metadata: Record<string, string> = { format: 'pt', tied_weight_aliases: JSON.stringify(aliases) };
  if (config) metadata['config'] = JSON.stringify(config.json);
  return { layout: stateDict.layout, entries, metadata, config, dropped, aliases, renamed };
}

/**
 * Reads `inPath` and writes `outPath`: a model folder (`weights.safetensors` + `config.json`,
 * created if missing) or, for a path ending in `.safetensors`, that file alone (the config then
 * travels in its metadata only).
 */
export async function convertOfaCheckpoint(
  inPath: string,
  outPath: string,
  options: ConvertOptions,
): Promise<ConversionSummary> {
  const { basename, dirname, join } = await import('node:path');
  const toFolder = !outPath.endsWith('.safetensors');
  const weights = toFolder ? join(outPath, WEIGHTS_FILE) : outPath;
  const checkpoint = await loadTorchCheckpoint(inPath);
  try {
    const huggingFaceConfig = join(dirname(inPath), CONFIG_FILE);
    const { layout, entries, metadata, config, dropped, aliases, renamed } = await prepareConversion(checkpoint, {
      dtype: options.dtype,
      huggingFaceConfig,
    });
    if (toFolder && !config) {
      const where = layout === 'fairseq' ? "no cfg['model'] or args" : `no ${CONFIG_FILE} beside it`;
      throw new ConversionError(
        `${inPath}: ${where}, so the model's config is unknown; write ${basename(weights)} alone ` +
          `(an output path ending in .safetensors) and add a ${CONFIG_FILE} by hand`,
      );
    }
    await writeSafetensors(weights, entries, metadata, { onProgress: options.onProgress });
    const configFile = toFolder ? join(outPath, CONFIG_FILE) : undefined;
    if (configFile && config) {
      const text = new TextEncoder().encode(`${JSON.stringify(config.json, null, 2)}\n`);
      await writeFileAtomically(configFile, (write) => write(text));
    }
    return {
      layout,
      weights,
      configFile,
      config,
      tensorsWritten: entries.length,
      dropped,
      aliases,
      renamed,
    };
  } finally {
    await checkpoint.close();
  }
}

/** The output tensors (read lazily), after drops, renames and tying. */
async function planTensors(
  { layout, tensors }: StateDict,
  inPath: string,
  dtype: OfaWeightDType,
): Promise<{ entries: LazyTensorEntry[]; dropped: string[]; aliases: Record<string, string>; renamed: number }> {
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
    if (clash) throw new ConversionError(`${inPath}: '${clash.source}' and '${name}' both become '${portName}'`);
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
  const entries = [...kept].map(([portName, { source, tensor }]) => {
    const where = `${inPath}: '${source}'`;
    if (!isFloating(tensor)) {
      throw new ConversionError(
        `${where} is ${tensor.dtype}; only floating-point weights are converted, and this name is not one of ` +
          `the integer buffers the engine recomputes`,
      );
    }
    return {
      name: portName,
      dtype: dtype === 'f16' ? ('F16' as const) : ('F32' as const),
      shape: tensor.shape,
      read: () => convertValues(tensor, dtype, where),
    };
  });
  return { entries, dropped, aliases, renamed };
}

/** Bytes compared per step when two tensors are checked for equal values. */
const COMPARE_CHUNK_ELEMENTS = 4 << 20;

/**
 * Tied by construction (one view of one storage) or by value (saved as separate copies). Equal
 * values are compared a chunk at a time, so two large tables never sit in memory together.
 */
async function sameValues(a: TorchTensor, b: TorchTensor): Promise<boolean> {
  if (a.sameView(b)) return true;
  const sameShape = a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
  if (a.dtype !== b.dtype || !sameShape) return false;
  if (!a.isContiguous || !b.isContiguous) return equalBytes(await a.contiguousBytes(), await b.contiguousBytes());
  for (let start = 0; start < a.numel; start += COMPARE_CHUNK_ELEMENTS) {
    const count = Math.min(COMPARE_CHUNK_ELEMENTS, a.numel - start);
    const [x, y] = await Promise.all([
      a.storage.readElements(a.storageOffset + start, count),
      b.storage.readElements(b.storageOffset + start, count),
    ]);
    if (!equalBytes(x, y)) return false;
  }
  return true;
}

function equalBytes(x: Uint8Array, y: Uint8Array): boolean {
  return x.length === y.length && x.every((byte, i) => byte === y[i]);
}

function isFloating(tensor: TorchTensor): boolean {
  return ['float64', 'float32', 'float16', 'bfloat16'].includes(tensor.dtype);
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
  const bytes = await tensor.contiguousBytes().catch((error: unknown) => {
    // A layout problem is reported by the storage alone; say which tensor has it.
    throw error instanceof TorchTensorError ? new ConversionError(`${where}: ${error.message}`) : error;
  });
  if (tensor.dtype === 'float16') {
    const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, tensor.numel);
    return dtype === 'f16' ? halves : halvesToFloats(halves);
  }
  const floats = toFloat32(bytes, tensor);
  if (dtype === 'f32') return floats;
  const halves = floatsToHalves(floats);
  const overflow = halves.findIndex((h, i) => (h & 0x7fff) === 0x7c00 && Number.isFinite(floats[i]!));
  if (overflow >= 0) {
    throw new ConversionError(`${where}: element ${overflow} = ${floats[overflow]} overflows float16; convert with dtype f32`);
  }
  return halves;
}

function toFloat32(bytes: Uint8Array<ArrayBuffer>, tensor: TorchTensor): Float32Array {
  if (tensor.dtype === 'bfloat16') return bfloat16sToFloats(new Uint16Array(bytes.buffer, bytes.byteOffset, tensor.numel));
  if (tensor.dtype === 'float64') return Float32Array.from(new Float64Array(bytes.buffer, bytes.byteOffset, tensor.numel));
  return new Float32Array(bytes.buffer, bytes.byteOffset, tensor.numel);
}

function describe(value: PickleValue): string {
  if (value instanceof PythonObject) {
    return `an object of '${value.className}', a class off the pickle allow-list (${brief(value)}; nothing was executed)`;
  }
  if (value === null) return 'None';
  if (value instanceof Map) return 'a dict';
  if (Array.isArray(value)) return 'a list or tuple';
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'object') return `a ${value.constructor.name} (${brief(value, 1)})`;
  return `a ${typeof value} (${brief(value)})`;
}
