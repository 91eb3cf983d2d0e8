/**
 * The OFA model (ofa-arch.md §4–5) assembled from a checkpoint: configuration, weights on the
 * device, the encoder and the decoder. The model does not know which backend runs it.
 */
import type { Backend } from '../../backend/backend.js';
import { readOrClose } from '../../io/byte-source.js';
import { blobSource } from '../../io/fetch-source.js';
import { type FileLocation, childOf, exists, isFetched, isLocation, locationLabel, openByteSource, parentOf, readText } from '../../io/location.js';
import { SafetensorsError, SafetensorsFile } from '../../io/safetensors.js';
import type { Tensor } from '../../tensor.js';
import { type EncoderMode, type OfaConfig, configFromJson, validateConfig } from './config.js';
import { type DecoderOutput, DecodingSession, OfaDecoder } from './decoder.js';
import { type EncoderBatch, type EncoderOutput, OfaEncoder } from './encoder.js';
import { PositionTables } from './positions.js';
import { type LoadProgress, type OfaWeights, loadOfaWeights } from './weights.js';

/** A checkpoint's bytes already in hand: in memory, or a `Blob` (a `File` dropped on a page). */
export type CheckpointBytes = ArrayBuffer | Uint8Array | Blob;

/**
 * Where a model's files are: paths or URLs (read with fetch, the checkpoint by range requests),
 * or the checkpoint's bytes. Any file left out is looked for beside a `weights` location.
 */
export interface OfaModelFiles {
  /** The safetensors checkpoint. */
  weights: FileLocation | CheckpointBytes;
  /** A Hugging Face style `config.json`. */
  config?: FileLocation;
  /** A golden-data manifest: its `config` and `tied_weight_aliases` are used. */
  manifest?: FileLocation;
}

export interface OfaModelLoadOptions {
  /** Overrides the config found with the files. */
  config?: OfaConfig;
  /**
   * Overrides the config's encoder layout (mue-spec §1), e.g. `decomposed` for a MuE checkpoint
   * whose config.json lacks `mue_decomposed_encoder: true`.
   */
  encoderMode?: EncoderMode;
  /** Overrides whether the decomposed encoder's image stream gets the 2-D relative bias. */
  imageRelativeBiasInDecomposed?: boolean;
  /** Extra tied-weight aliases (missing name → stored name); they win over the files' own. */
  aliases?: Readonly<Record<string, string>>;
  onProgress?: (progress: LoadProgress) => void;
}

const WEIGHT_FILE_NAMES = ['weights.safetensors', 'model.safetensors'];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readJson(location: FileLocation): Promise<unknown> {
  const text = await readText(location);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${locationLabel(location)}: not valid JSON (${(error as Error).message})`);
  }
}

/** A `.safetensors` location as given; a directory → the checkpoint in it. */
async function findWeights(source: FileLocation): Promise<FileLocation> {
  if (locationLabel(source).endsWith('.safetensors')) return source;
  for (const name of WEIGHT_FILE_NAMES) {
    const location = childOf(source, name);
    if (await exists(location)) return location;
  }
  throw new Error(`${locationLabel(source)}: no OFA checkpoint (looked for ${WEIGHT_FILE_NAMES.join(', ')})`);
}

/** The model's files; config.json and manifest.json are looked for beside a weights location unless given. */
async function locateFiles(source: FileLocation | OfaModelFiles): Promise<OfaModelFiles> {
  const given: Partial<OfaModelFiles> = isLocation(source) ? {} : source;
  const weights = isLocation(source) ? await findWeights(source) : source.weights;
  const beside = async (location: FileLocation | undefined, name: string): Promise<FileLocation | undefined> => {
    if (location !== undefined || !isLocation(weights)) return location;
    const candidate = childOf(parentOf(weights), name);
    return (await exists(candidate)) ? candidate : undefined;
  };
  return {
    weights,
    config: await beside(given.config, 'config.json'),
    manifest: await beside(given.manifest, 'manifest.json'),
  };
}

/** Opens the checkpoint: from disk, by HTTP range requests, or from bytes in hand. */
async function openCheckpoint(weights: FileLocation | CheckpointBytes): Promise<SafetensorsFile> {
  if (typeof weights === 'string' && !isFetched(weights)) return SafetensorsFile.open(weights);
  if (weights instanceof ArrayBuffer) return SafetensorsFile.fromBytes(new Uint8Array(weights), 'weights (ArrayBuffer)');
  if (weights instanceof Uint8Array) return SafetensorsFile.fromBytes(weights, 'weights (bytes)');
  const label = isLocation(weights) ? locationLabel(weights) : `weights (${(weights as Partial<File>).name ?? 'Blob'})`;
  const source = isLocation(weights) ? await openByteSource(weights, { errorClass: SafetensorsError }) : blobSource(weights);
  return readOrClose(source, (opened) => SafetensorsFile.fromSource(opened, label));
}

/** The config from config.json, else the manifest's `config`, else the checkpoint's metadata key `config`. */
function resolveConfig(configJson: unknown, manifest: unknown, file: SafetensorsFile, files: OfaModelFiles): OfaConfig {
  if (configJson !== undefined) return configFromJson(configJson, files.config && locationLabel(files.config));
  if (isRecord(manifest) && manifest['config'] !== undefined) {
    return configFromJson(manifest['config'], `${files.manifest && locationLabel(files.manifest)} → config`);
  }
  const metadata = file.metadata['config'];
  if (metadata !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(metadata);
    } catch (error) {
      throw new Error(`${file.label}: metadata "config" is not valid JSON (${(error as Error).message})`);
    }
    return configFromJson(parsed, `${file.label} → metadata config`);
  }
  throw new Error(
    `${file.label}: no model config: expected config.json or manifest.json beside it, ` +
      `or a "config" entry in its metadata`,
  );
}

function manifestAliases(manifest: unknown, location: FileLocation | undefined): Record<string, string> {
  if (!isRecord(manifest) || manifest['tied_weight_aliases'] === undefined) return {};
  const aliases = manifest['tied_weight_aliases'];
  if (!isRecord(aliases) || !Object.values(aliases).every((v) => typeof v === 'string')) {
    throw new Error(`${location && locationLabel(location)}: "tied_weight_aliases" must map names to names`);
  }
  return aliases as Record<string, string>;
}

export class OfaModel {
  readonly encoder: OfaEncoder;
  readonly decoder: OfaDecoder;
  readonly #positions: PositionTables;

  private constructor(
    readonly backend: Backend,
    readonly config: OfaConfig,
    /** On the device, folded as weights.ts describes. */
    readonly weights: OfaWeights,
  ) {
    this.#positions = new PositionTables(backend, config);
    this.encoder = new OfaEncoder(backend, config, weights.encoder, this.#positions);
    this.decoder = new OfaDecoder(backend, config, weights.decoder, this.#positions);
  }

  /**
   * Loads a checkpoint from a directory (`weights.safetensors` or `model.safetensors`, with
   * `config.json` or `manifest.json` beside it), a `.safetensors` file, or explicit files; each a
   * path or a URL (a directory URL ends with `/`).
   */
  static async load(
    backend: Backend,
    source: FileLocation | OfaModelFiles,
    options: OfaModelLoadOptions = {},
  ): Promise<OfaModel> {
    const files = await locateFiles(source);
    const configJson = files.config === undefined ? undefined : await readJson(files.config);
    const manifest = files.manifest === undefined ? undefined : await readJson(files.manifest);
    const file = await openCheckpoint(files.weights);
    try {
      const config: OfaConfig = { ...(options.config ?? resolveConfig(configJson, manifest, file, files)) };
      if (options.encoderMode !== undefined) config.encoderMode = options.encoderMode;
      if (options.imageRelativeBiasInDecomposed !== undefined) {
        config.imageRelativeBiasInDecomposed = options.imageRelativeBiasInDecomposed;
      }
      validateConfig(config, 'OfaModel.load config');
      const aliases = { ...manifestAliases(manifest, files.manifest), ...options.aliases };
      const weights = await loadOfaWeights(backend, file, config, { aliases, onProgress: options.onProgress });
      return new OfaModel(backend, config, weights);
    } finally {
      await file.close();
    }
  }

  /** Names in the checkpoint that OFA does not define (not loaded). */
  get unexpectedWeightNames(): readonly string[] {
    return this.weights.unexpectedNames;
  }

  /**
   * Encodes pixels `[1, 3, S, S]` (normalized, §3) and text ids (`[BOS, …, EOS]`, §2) with the
   * config's encoder (joint, or MuE's decomposed one); the decoder takes either output.
   */
  encode(pixels: Tensor, inputIds: ArrayLike<number>): EncoderOutput {
    return this.encoder.encode(pixels, inputIds);
  }

  /** `encode` for a batch of texts and their images (`EncoderBatch`): one output row per text. */
  encodeBatch(batch: EncoderBatch): EncoderOutput {
    return this.encoder.encodeBatch(batch);
  }

  /** Teacher-forced decoding of B sequences (each starting with BOS), no cache: `OfaDecoder.decodeFull`. */
  decodeFull(encoderOutput: EncoderOutput, decoderIds: readonly (readonly number[])[], options: { logitsAt?: readonly number[] } = {}): DecoderOutput {
    return this.decoder.decodeFull(encoderOutput, decoderIds, options);
  }

  /** An incremental decoding session for `beams` sequences per sample of `encoderOutput`. */
  startDecoding(encoderOutput: EncoderOutput, beams = 1): DecodingSession {
    return new DecodingSession(this.decoder, encoderOutput, beams);
  }

  dispose(): void {
    this.#positions.dispose();
    this.weights.dispose();
  }
}
