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

// ---------------------------------------------------------------------------------------------
// fairseq checkpoints

/** OFA's fairseq architectures (`--arch`) and the released size each stands for. */
const FAIRSEQ_ARCHITECTURES: Readonly<Record<string, OfaPresetName>> = {
  ofa_tiny: 'tiny',
  ofa_medium: 'medium',
  ofa_base: 'base',
  ofa_large: 'large',
  ofa_huge: 'huge',
};

/** MuE's thresholds as the authors' fairseq arguments name them (mue-spec §5). */
export const MUE_THRESHOLD_ARGUMENTS = { image: 'img_thres', text: 'txt_thres', decoder: 'decoder_thres' } as const;

export type MueThresholds = Partial<Record<keyof typeof MUE_THRESHOLD_ARGUMENTS, number>>;

/**
 * The config.json of a fairseq OFA checkpoint, from its model arguments (`cfg["model"]`, an
 * argparse Namespace, or `args` in older files; pass its fields as a record).
 *
 * The arguments hold every value the architecture function resolved; a value they lack comes
 * from the released size named by `arch` (`ofa_tiny` … `ofa_huge`), or from what every release
 * shares. fairseq names map to the Hugging Face `OFAConfig` keys that `configFromJson` reads
 * (`encoder_embed_dim` → `d_model`, `scale_attn`/`scale_fc`/`scale_heads` → `normformer`, …);
 * `patch_image_size` is kept (the pipeline's image size), and MuE runs — arguments with
 * `img_thres`, `txt_thres` or `decoder_thres` — get `mue_decomposed_encoder: true` and their
 * thresholds under `mue_exit_thresholds`. The vocabulary size is the token table's row count,
 * which the dictionary, not the arguments, determines. The result is checked with
 * `configFromJson` before it is returned.
 */
export function configJsonFromFairseq(
  args: Readonly<Record<string, unknown>>,
  vocabSize: number,
  label: string,
): Record<string, unknown> {
  const arch = args['arch'];
  const presetName = typeof arch === 'string' && Object.hasOwn(FAIRSEQ_ARCHITECTURES, arch) ? FAIRSEQ_ARCHITECTURES[arch] : undefined;
  const preset = presetName === undefined ? undefined : OFA_PRESETS[presetName];
  const fail = (message: string): never => {
    throw new Error(`${label}: ${message}`);
  };
  /** The argument, else the preset's value (`fromPreset`), else `fallback`. */
  const value = <T>(key: string, type: 'number' | 'boolean' | 'string', fromPreset?: T, fallback?: T): T => {
    const given = args[key] ?? fromPreset ?? fallback;
    if (given === undefined) {
      fail(`the model arguments lack '${key}', and arch ${JSON.stringify(arch)} is not one of ${Object.keys(FAIRSEQ_ARCHITECTURES).join(', ')}`);
    }
    if (typeof given !== type) fail(`'${key}' is ${JSON.stringify(given)}; expected a ${type}`);
    return given as T;
  };
  const number = (key: string, fromPreset?: number, fallback?: number): number => value(key, 'number', fromPreset, fallback);
  const flag = (key: string, fallback: boolean): boolean => value(key, 'boolean', undefined, fallback);

  const dModel = number('encoder_embed_dim', preset?.dModel);
  if (number('decoder_embed_dim', dModel) !== dModel) {
    fail(`encoder_embed_dim ${dModel} and decoder_embed_dim ${String(args['decoder_embed_dim'])} differ; OFA shares one width`);
  }
  const maxPositions = number('max_source_positions', undefined, SHARED.maxPositions);
  if (number('max_target_positions', undefined, maxPositions) !== maxPositions) {
    fail(`max_source_positions ${maxPositions} and max_target_positions ${String(args['max_target_positions'])} differ`);
  }
  const normformer = ['scale_attn', 'scale_fc', 'scale_heads'].map((key) => flag(key, true));
  if (flag('scale_resids', false)) fail(`scale_resids is true; this engine implements OFA without residual scaling, as released`);

  const json: Record<string, unknown> = {
    model_type: 'ofa',
    vocab_size: vocabSize,
    d_model: dModel,
    encoder_layers: number('encoder_layers', preset?.encoderLayers),
    encoder_attention_heads: number('encoder_attention_heads', preset?.encoderAttentionHeads),
    encoder_ffn_dim: number('encoder_ffn_embed_dim', preset?.encoderFfnDim),
    decoder_layers: number('decoder_layers', preset?.decoderLayers),
    decoder_attention_heads: number('decoder_attention_heads', preset?.decoderAttentionHeads),
    decoder_ffn_dim: number('decoder_ffn_embed_dim', preset?.decoderFfnDim),
    resnet_type: value('resnet_type', 'string', preset?.resnetType),
    max_position_embeddings: maxPositions,
    token_bucket_size: number('token_bucket_size', undefined, SHARED.tokenBucketSize),
    image_bucket_size: number('image_bucket_size', undefined, SHARED.imageBucketSize),
    attn_scale_factor: number('attn_scale_factor', undefined, SHARED.attnScaleFactor),
    share_decoder_input_output_embed:
      flag('share_decoder_input_output_embed', SHARED.shareEmbeddings) || flag('share_all_embeddings', false),
    encoder_normalize_before: flag('encoder_normalize_before', true),
    decoder_normalize_before: flag('decoder_normalize_before', true),
    normformer: normformer.every(Boolean),
    add_type_embedding: flag('add_type_embedding', true),
    layernorm_embedding: flag('layernorm_embedding', true),
    patch_layernorm_embedding: flag('patch_layernorm_embedding', true),
    scale_embedding: !flag('no_scale_embedding', true),
    entangle_position_embedding: flag('entangle_position_embedding', false),
    activation_function: value('activation_fn', 'string', undefined, 'gelu'),
    pad_token_id: SHARED.padTokenId,
    bos_token_id: SHARED.bosTokenId,
    eos_token_id: SHARED.eosTokenId,
    decoder_start_token_id: SHARED.decoderStartTokenId,
  };
  if (args['patch_image_size'] !== undefined) json['patch_image_size'] = number('patch_image_size');
  const thresholds: MueThresholds = {};
  for (const [stream, key] of Object.entries(MUE_THRESHOLD_ARGUMENTS) as [keyof MueThresholds, string][]) {
    if (args[key] !== undefined && args[key] !== null) thresholds[stream] = number(key);
  }
  if (Object.keys(thresholds).length > 0) {
    json['mue_decomposed_encoder'] = true;
    json['mue_exit_thresholds'] = thresholds;
  }
  configFromJson(json, `${label} → config.json`);
  return json;
}
