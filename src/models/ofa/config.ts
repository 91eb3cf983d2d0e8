/**
 * OFA model configuration (ofa-arch.md §1): the sizes that differ between releases, the values
 * all releases share, and a reader for the Hugging Face style `config.json`.
 *
 * The engine implements what the released checkpoints use — pre-norm layers with NormFormer
 * extras, exact GELU, type embeddings and embedding layer norms, no embedding scaling, no
 * entangled positions — so `configFromJson` refuses a config that asks for anything else rather
 * than silently computing a different model.
 */

/** ResNet variants by their bottleneck block counts in stages 1–3 (§4.1; no stage 4 in OFA). */
export const RESNET_STAGE_BLOCKS = {
  resnet50: [3, 4, 6],
  resnet101: [3, 4, 23],
  resnet152: [3, 8, 36],
} as const satisfies Record<string, readonly [number, number, number]>;

export type ResnetType = keyof typeof RESNET_STAGE_BLOCKS;

/**
 * How the encoder runs the image and text tokens (mue-spec §1):
 * - `joint`: OFA's single sequence, image first, every token attending to every token (§4.4);
 * - `decomposed`: MuE's encoder: the image tokens and the text tokens pass through the same
 *   layers as two separate sequences, each attending only to itself, concatenated (image first)
 *   before the final LayerNorm. MuE checkpoints are fine-tuned with it.
 */
export type EncoderMode = 'joint' | 'decomposed';

export const ENCODER_MODES: readonly EncoderMode[] = ['joint', 'decomposed'];

export interface OfaConfig {
  /** Shared token table rows: text BPE, `<mask>`, image codes and location bins (§2). */
  vocabSize: number;
  dModel: number;
  encoderLayers: number;
  encoderAttentionHeads: number;
  encoderFfnDim: number;
  decoderLayers: number;
  decoderAttentionHeads: number;
  decoderFfnDim: number;
  resnetType: ResnetType;
  /** Longest text (encoder) or decoder sequence; the position tables have `maxPositions + 2` rows. */
  maxPositions: number;
  /** 1-D relative buckets (§4.6): the tables have `2·tokenBucketSize − 1` rows. */
  tokenBucketSize: number;
  /** 2-D relative buckets (§4.6): the patch grid is at most `imageBucketSize` square. */
  imageBucketSize: number;
  /** Attention temperature: logits are scaled by `(dh · attnScaleFactor)^−0.5` (§4.7). */
  attnScaleFactor: number;
  /** Whether the decoder's input embedding and output projection share the encoder's token table. */
  shareEmbeddings: boolean;
  /** LayerNorm and BatchNorm epsilon (§8). */
  layerNormEps: number;
  batchNormEps: number;
  padTokenId: number;
  bosTokenId: number;
  eosTokenId: number;
  decoderStartTokenId: number;
  /**
   * The encoder layout (mue-spec §1). config.json key `mue_decomposed_encoder` (boolean, absent =
   * false = `joint`): set it to true for MuE checkpoints converted from the authors'
   * `feature/MuE` branch, which were fine-tuned with the decomposed encoder.
   */
  encoderMode: EncoderMode;
  /**
   * Decomposed encoder only: whether the image stream adds each layer's 2-D relative bias to its
   * absolute bias. Default false, as the authors' code runs it (it computes the image relative
   * bias, then overwrites the sum with the absolute bias alone) and as MuE checkpoints were
   * trained; true is for experiments. config.json key `mue_image_relative_bias` (boolean, absent
   * = false). Ignored by the joint encoder, which always has it (§4.6).
   */
  imageRelativeBiasInDecomposed: boolean;
}

/** Values every released OFA checkpoint shares (§1). */
const SHARED = {
  vocabSize: 59457,
  maxPositions: 1024,
  tokenBucketSize: 256,
  imageBucketSize: 42,
  attnScaleFactor: 2,
  shareEmbeddings: true,
  layerNormEps: 1e-5,
  batchNormEps: 1e-5,
  padTokenId: 1,
  bosTokenId: 0,
  eosTokenId: 2,
  decoderStartTokenId: 0,
  encoderMode: 'joint',
  imageRelativeBiasInDecomposed: false,
} as const;

function preset(
  dModel: number,
  ffnDim: number,
  heads: number,
  encoderLayers: number,
  decoderLayers: number,
  resnetType: ResnetType,
): OfaConfig {
  return {
    ...SHARED,
    dModel,
    encoderLayers,
    encoderAttentionHeads: heads,
    encoderFfnDim: ffnDim,
    decoderLayers,
    decoderAttentionHeads: heads,
    decoderFfnDim: ffnDim,
    resnetType,
  };
}

/** The released sizes (§1 table). */
export const OFA_PRESETS = {
  tiny: preset(256, 1024, 4, 4, 4, 'resnet50'),
  medium: preset(512, 2048, 8, 4, 4, 'resnet101'),
  base: preset(768, 3072, 12, 6, 6, 'resnet101'),
  large: preset(1024, 4096, 16, 12, 12, 'resnet152'),
  huge: preset(1280, 5120, 16, 24, 12, 'resnet152'),
} as const satisfies Record<string, OfaConfig>;

export type OfaPresetName = keyof typeof OFA_PRESETS;

/** Channels per attention head. */
export function headDim(dModel: number, heads: number): number {
  return dModel / heads;
}

/** The attention and position-bias scale `s = (dh · attn_scale_factor)^−0.5` (§4.5, §4.7). */
export function attentionScale(config: OfaConfig, heads: number): number {
  return (headDim(config.dModel, heads) * config.attnScaleFactor) ** -0.5;
}

// ---------------------------------------------------------------------------------------------
// config.json

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class ConfigReader {
  constructor(
    private readonly json: Json,
    private readonly label: string,
  ) {}

  private fail(key: string, expected: string): never {
    const found = key in this.json ? JSON.stringify(this.json[key]) : 'nothing';
    throw new Error(`${this.label}: "${key}" must be ${expected}, found ${found}`);
  }

  /** A positive integer; `fallback` when the key is absent (and there is one). */
  positiveInt(key: string, fallback?: number): number {
    const value = this.json[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) this.fail(key, 'a positive integer');
    return value;
  }

  nonNegativeInt(key: string, fallback: number): number {
    const value = this.json[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) this.fail(key, 'a non-negative integer');
    return value;
  }

  positiveNumber(key: string, fallback: number): number {
    const value = this.json[key] ?? fallback;
    if (typeof value !== 'number' || !(value > 0)) this.fail(key, 'a positive number');
    return value;
  }

  /** A key the engine's computation depends on having exactly one value (absent = that value). */
  requireValue(key: string, required: unknown, why: string): void {
    const value = this.json[key] ?? required;
    if (value !== required) this.fail(key, `${JSON.stringify(required)} (${why})`);
  }

  boolean(key: string, fallback: boolean): boolean {
    const value = this.json[key] ?? fallback;
    if (typeof value !== 'boolean') this.fail(key, 'true or false');
    return value;
  }

  resnetType(key: string): ResnetType {
    const value = this.json[key];
    if (typeof value !== 'string' || !Object.hasOwn(RESNET_STAGE_BLOCKS, value)) {
      this.fail(key, `one of ${Object.keys(RESNET_STAGE_BLOCKS).join(', ')}`);
    }
    return value as ResnetType;
  }
}

/**
 * Reads a Hugging Face style OFA `config.json` (the shape of `OFAConfig.to_dict()`, e.g. the
 * `config` object of a golden manifest). Sizes are required; the values every release shares
 * default to them when absent. Training-only keys (dropout, drop-path, layer-drop, init) are
 * ignored. `label` names the source in error messages.
 *
 * Two keys of this engine's own (not in Hugging Face's `OFAConfig`) select MuE's decomposed
 * encoder (mue-spec §1): `mue_decomposed_encoder: true` for checkpoints converted from the
 * authors' `feature/MuE` branch, and `mue_image_relative_bias: true` to give its image stream the
 * 2-D relative bias (an experiment; MuE checkpoints were trained without it).
 */
export function configFromJson(value: unknown, label = 'config.json'): OfaConfig {
  if (!isRecord(value)) throw new Error(`${label}: expected a JSON object, found ${JSON.stringify(value)}`);
  const read = new ConfigReader(value, label);

  const unsupported = 'the only variant this engine implements, as in every released OFA checkpoint';
  read.requireValue('encoder_normalize_before', true, unsupported);
  read.requireValue('decoder_normalize_before', true, unsupported);
  read.requireValue('normformer', true, unsupported);
  read.requireValue('add_type_embedding', true, unsupported);
  read.requireValue('layernorm_embedding', true, unsupported);
  read.requireValue('patch_layernorm_embedding', true, unsupported);
  read.requireValue('scale_embedding', false, unsupported);
  read.requireValue('entangle_position_embedding', false, unsupported);
  read.requireValue('activation_function', 'gelu', unsupported);

  const config: OfaConfig = {
    vocabSize: read.positiveInt('vocab_size'),
    dModel: read.positiveInt('d_model'),
    encoderLayers: read.positiveInt('encoder_layers'),
    encoderAttentionHeads: read.positiveInt('encoder_attention_heads'),
    encoderFfnDim: read.positiveInt('encoder_ffn_dim'),
    decoderLayers: read.positiveInt('decoder_layers'),
    decoderAttentionHeads: read.positiveInt('decoder_attention_heads'),
    decoderFfnDim: read.positiveInt('decoder_ffn_dim'),
    resnetType: read.resnetType('resnet_type'),
    maxPositions: read.positiveInt('max_position_embeddings', SHARED.maxPositions),
    tokenBucketSize: read.positiveInt('token_bucket_size', SHARED.tokenBucketSize),
    imageBucketSize: read.positiveInt('image_bucket_size', SHARED.imageBucketSize),
    attnScaleFactor: read.positiveNumber('attn_scale_factor', SHARED.attnScaleFactor),
    shareEmbeddings: read.boolean('share_decoder_input_output_embed', SHARED.shareEmbeddings),
    layerNormEps: SHARED.layerNormEps,
    batchNormEps: SHARED.batchNormEps,
    padTokenId: read.nonNegativeInt('pad_token_id', SHARED.padTokenId),
    bosTokenId: read.nonNegativeInt('bos_token_id', SHARED.bosTokenId),
    eosTokenId: read.nonNegativeInt('eos_token_id', SHARED.eosTokenId),
    decoderStartTokenId: read.nonNegativeInt('decoder_start_token_id', SHARED.decoderStartTokenId),
    encoderMode: read.boolean('mue_decomposed_encoder', false) ? 'decomposed' : 'joint',
    imageRelativeBiasInDecomposed: read.boolean('mue_image_relative_bias', SHARED.imageRelativeBiasInDecomposed),
  };
  validateConfig(config, label);
  return config;
}

/** Consistency checks that a preset or a parsed config must pass before weights are loaded. */
export function validateConfig(config: OfaConfig, label = 'OFA config'): void {
  if (!ENCODER_MODES.includes(config.encoderMode)) {
    const modes = ENCODER_MODES.join(', ');
    throw new Error(`${label}: encoder mode ${JSON.stringify(config.encoderMode)} is not one of ${modes}`);
  }
  for (const [side, heads] of [
    ['encoder', config.encoderAttentionHeads],
    ['decoder', config.decoderAttentionHeads],
  ] as const) {
    if (config.dModel % heads !== 0) {
      throw new Error(`${label}: d_model ${config.dModel} is not divisible into ${heads} ${side} attention heads`);
    }
  }
  // The 1-D bucket function splits the buckets at their middle and reaches the last bucket at
  // distance maxPositions − 1 (§4.6); it needs an even size above 2 and a range beyond the middle.
  const middle = config.tokenBucketSize / 2;
  if (!Number.isInteger(middle) || middle < 2 || config.maxPositions - 1 <= middle) {
    throw new Error(
      `${label}: token_bucket_size ${config.tokenBucketSize} must be even, at least 4, and its half must ` +
        `be below max_position_embeddings ${config.maxPositions} − 1`,
    );
  }
  for (const [key, id] of [
    ['pad_token_id', config.padTokenId],
    ['bos_token_id', config.bosTokenId],
    ['eos_token_id', config.eosTokenId],
    ['decoder_start_token_id', config.decoderStartTokenId],
  ] as const) {
    if (id >= config.vocabSize) {
      throw new Error(`${label}: ${key} ${id} is outside the vocabulary of ${config.vocabSize}`);
    }
  }
}

/** Token ids must be integers naming rows of the shared token table (`what` names the input). */
export function checkTokenIds(config: OfaConfig, ids: ArrayLike<number>, what: string): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) {
      throw new Error(`${what}: token id ${id} at position ${i} is outside the vocabulary 0..${config.vocabSize - 1}`);
    }
  }
}
