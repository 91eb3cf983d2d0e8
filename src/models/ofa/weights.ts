/**
 * OFA parameters: names → device tensors (ofa-arch.md §6), with load-time folding.
 *
 * The loader first checks the whole checkpoint against the names and shapes the config implies
 * (§6.1–6.4), so a wrong file fails before anything is uploaded, with every missing or misshapen
 * tensor named next to its expected and found shape. Then it reads the file tensor by tensor and
 * uploads each one once (tied names share one tensor). Three things are folded on the host:
 * - each ResNet BatchNorm into the preceding bias-free conv (§4.1): `w' = w·γ/√(σ²+ε)`,
 *   `b' = β − μ·γ/√(σ²+ε)`, in f64, stored f32;
 * - each NormFormer head scale `c_attn[h]` into the input columns of `out_proj.weight` (§4.7):
 *   `concat_h(O_h·c_h)·Woᵀ = concat_h(O_h)·(Wo·diag(c))ᵀ`, i.e. columns `h·dh … (h+1)·dh − 1` of
 *   Wo `[d_out, d_in]` scaled by `c_h`;
 * - each encoder layer's text and image relative tables stacked with a zero row (positions.ts).
 * Tensors stored as F16 stay f16 on the device; folded ones (and any other dtype) become f32.
 */
import type { Backend } from '../../backend/backend.js';
import type { SafetensorsFile, TensorInfo } from '../../io/safetensors.js';
import { type DType, type Shape, type Tensor, sameShape, shapeToString } from '../../tensor.js';
import { type OfaConfig, RESNET_STAGE_BLOCKS } from './config.js';
import { imageBucketCount } from './positions.js';

// ---------------------------------------------------------------------------------------------
// The tree

/** A PyTorch `Linear`: `weight [out, in]` (used with `transposeB`), `bias [out]`. */
export interface LinearWeights {
  weight: Tensor;
  bias: Tensor;
}

export interface LayerNormWeights {
  weight: Tensor;
  bias: Tensor;
}

/** One attention module (§4.7); `out.weight` has the head scale `c_attn` folded in. */
export interface AttentionWeights {
  q: LinearWeights;
  k: LinearWeights;
  v: LinearWeights;
  out: LinearWeights;
}

/** A conv with its BatchNorm folded in: `weight [Cout, Cin, kh, kw]`, `bias [Cout]`, f32. */
export interface ConvWeights {
  weight: Tensor;
  bias: Tensor;
}

/** A bottleneck block (§4.1); `downsample` only in the first block of each stage. */
export interface BottleneckWeights {
  conv1: ConvWeights;
  conv2: ConvWeights;
  conv3: ConvWeights;
  downsample?: ConvWeights;
}

export interface ResnetWeights {
  stem: ConvWeights;
  /** Stages 1–3, each a list of blocks. */
  stages: BottleneckWeights[][];
}

/** The feed-forward sublayer with NormFormer's inner LayerNorm (§4.8). */
export interface FeedForwardWeights {
  fc1: LinearWeights;
  ffnLayerNorm: LayerNormWeights;
  fc2: LinearWeights;
}

export interface EncoderLayerWeights {
  selfAttnLayerNorm: LayerNormWeights;
  selfAttn: AttentionWeights;
  selfAttnMidLayerNorm: LayerNormWeights;
  finalLayerNorm: LayerNormWeights;
  ffn: FeedForwardWeights;
  /** `[text rows; image rows; zero row] × H`, indexed by `PositionTables.encoderRelativeIndex`. */
  relativeBiasTable: Tensor;
}

export interface EncoderWeights {
  embedTokens: Tensor;
  /** Row 0 text, row 1 image. */
  typeEmbedding: Tensor;
  layernormEmbedding: LayerNormWeights;
  resnet: ResnetWeights;
  imageProj: LinearWeights;
  patchLayernormEmbedding: LayerNormWeights;
  embedPositions: Tensor;
  embedImagePositions: Tensor;
  posLn: LayerNormWeights;
  imagePosLn: LayerNormWeights;
  posQLinear: LinearWeights;
  posKLinear: LinearWeights;
  layers: EncoderLayerWeights[];
  layerNorm: LayerNormWeights;
}

export interface DecoderLayerWeights {
  selfAttnLayerNorm: LayerNormWeights;
  selfAttn: AttentionWeights;
  selfAttnMidLayerNorm: LayerNormWeights;
  crossAttnLayerNorm: LayerNormWeights;
  crossAttn: AttentionWeights;
  crossAttnMidLayerNorm: LayerNormWeights;
  finalLayerNorm: LayerNormWeights;
  ffn: FeedForwardWeights;
  /** The 1-D relative table `[2·token_bucket_size − 1, H]` (§5.2). */
  tokenRelativeTable: Tensor;
}

export interface DecoderWeights {
  embedTokens: Tensor;
  layernormEmbedding: LayerNormWeights;
  embedPositions: Tensor;
  posLn: LayerNormWeights;
  selfPosQLinear: LinearWeights;
  selfPosKLinear: LinearWeights;
  crossPosQLinear: LinearWeights;
  crossPosKLinear: LinearWeights;
  layers: DecoderLayerWeights[];
  layerNorm: LayerNormWeights;
  /** `[V, d]`, used as `x · outputProjectionᵀ`; the encoder's token table when tied. */
  outputProjection: Tensor;
}

export interface OfaWeights {
  encoder: EncoderWeights;
  decoder: DecoderWeights;
  /** Names in the file that OFA does not define (reported, not loaded). */
  unexpectedNames: string[];
  /** Frees every uploaded tensor once (tied tensors are shared). */
  dispose(): void;
}

export interface LoadProgress {
  /** The tensor just read. */
  name: string;
  loadedBytes: number;
  totalBytes: number;
}

export interface LoadOfaWeightsOptions {
  /** Missing name → stored name, for tensors a checkpoint stores once (`tied_weight_aliases`). */
  aliases?: Readonly<Record<string, string>>;
  onProgress?: (progress: LoadProgress) => void;
}

// ---------------------------------------------------------------------------------------------
// Expected names and shapes (§6)

export interface ExpectedTensor {
  shape: Shape;
  /**
   * False for the decoder's image-code generation path (§5.6): part of every checkpoint but not
   * used for captioning or entailment, so checked when present and never uploaded.
   */
  used: boolean;
}

/** Integer buffers recomputed from §4.6 instead of loaded (§6.5), and fairseq bookkeeping. */
function isIgnoredName(name: string): boolean {
  return (
    name.endsWith('.num_batches_tracked') ||
    /^(encoder|decoder)\.(token_rp_bucket|image_rp_bucket|version)$/.test(name) ||
    name === 'decoder.image_position_idx'
  );
}

/** ResNet stage `planes` (§4.1): block width; block output is 4·planes. */
const STAGE_PLANES = [64, 128, 256] as const;
const BOTTLENECK_EXPANSION = 4;
/** Output channels of the truncated backbone, the input width of `image_proj`. */
export const RESNET_OUT_CHANNELS = STAGE_PLANES[2] * BOTTLENECK_EXPANSION;
const STEM_CHANNELS = 64;

export function expectedOfaTensors(config: OfaConfig): Map<string, ExpectedTensor> {
  const expected = new Map<string, ExpectedTensor>();
  const d = config.dModel;
  const add = (name: string, shape: Shape, used = true): void => void expected.set(name, { shape, used });
  const linear = (prefix: string, out: number, inputs: number, used = true): void => {
    add(`${prefix}.weight`, [out, inputs], used);
    add(`${prefix}.bias`, [out], used);
  };
  const layerNorm = (prefix: string, width: number, used = true): void => {
    add(`${prefix}.weight`, [width], used);
    add(`${prefix}.bias`, [width], used);
  };
  const batchNorm = (prefix: string, channels: number): void => {
    for (const part of ['weight', 'bias', 'running_mean', 'running_var']) add(`${prefix}.${part}`, [channels]);
  };
  const attention = (prefix: string, heads: number): void => {
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${prefix}.${proj}`, d, d);
    add(`${prefix}.c_attn`, [heads]);
  };
  const ffn = (prefix: string, width: number): void => {
    linear(`${prefix}.fc1`, width, d);
    layerNorm(`${prefix}.ffn_layer_norm`, width);
    linear(`${prefix}.fc2`, d, width);
  };
  const tokenTableRows = 2 * config.tokenBucketSize - 1;
  const imageTableRows = imageBucketCount(config.imageBucketSize);
  const positionRows = config.maxPositions + 2;
  const imagePositionRows = config.imageBucketSize ** 2 + 1;

  // §6.1 encoder, non-layer
  layerNorm('encoder.layernorm_embedding', d);
  add('encoder.embed_tokens.weight', [config.vocabSize, d]);
  add('encoder.type_embedding.weight', [2, d]);
  // §6.2 ResNet
  const resnet = 'encoder.embed_images';
  add(`${resnet}.conv1.weight`, [STEM_CHANNELS, 3, 7, 7]);
  batchNorm(`${resnet}.bn1`, STEM_CHANNELS);
  let channels = STEM_CHANNELS;
  RESNET_STAGE_BLOCKS[config.resnetType].forEach((blocks, stage) => {
    const width = STAGE_PLANES[stage]!;
    const out = width * BOTTLENECK_EXPANSION;
    for (let b = 0; b < blocks; b++) {
      const block = `${resnet}.layer${stage + 1}.${b}`;
      add(`${block}.conv1.weight`, [width, channels, 1, 1]);
      batchNorm(`${block}.bn1`, width);
      add(`${block}.conv2.weight`, [width, width, 3, 3]);
      batchNorm(`${block}.bn2`, width);
      add(`${block}.conv3.weight`, [out, width, 1, 1]);
      batchNorm(`${block}.bn3`, out);
      if (b === 0) {
        add(`${block}.downsample.0.weight`, [out, channels, 1, 1]);
        batchNorm(`${block}.downsample.1`, out);
      }
      channels = out;
    }
  });
  linear('encoder.image_proj', d, RESNET_OUT_CHANNELS);
  layerNorm('encoder.patch_layernorm_embedding', d);
  add('encoder.embed_positions.weight', [positionRows, d]);
  add('encoder.embed_image_positions.weight', [imagePositionRows, d]);
  layerNorm('encoder.pos_ln', d);
  layerNorm('encoder.image_pos_ln', d);
  linear('encoder.pos_q_linear', d, d);
  linear('encoder.pos_k_linear', d, d);
  // §6.3 encoder layers
  const encoderHeads = config.encoderAttentionHeads;
  for (let i = 0; i < config.encoderLayers; i++) {
    const layer = `encoder.layers.${i}`;
    attention(`${layer}.self_attn`, encoderHeads);
    layerNorm(`${layer}.self_attn_layer_norm`, d);
    layerNorm(`${layer}.self_attn_mid_layer_norm`, d);
    ffn(layer, config.encoderFfnDim);
    layerNorm(`${layer}.final_layer_norm`, d);
    add(`encoder.token_rel_pos_table_list.${i}.weight`, [tokenTableRows, encoderHeads]);
    add(`encoder.image_rel_pos_table_list.${i}.weight`, [imageTableRows, encoderHeads]);
  }
  layerNorm('encoder.layer_norm', d);

  // §6.4 decoder
  const decoderHeads = config.decoderAttentionHeads;
  add('decoder.embed_tokens.weight', [config.vocabSize, d]);
  layerNorm('decoder.layernorm_embedding', d);
  add('decoder.embed_positions.weight', [positionRows, d]);
  layerNorm('decoder.pos_ln', d);
  for (const projection of ['self_pos_q_linear', 'self_pos_k_linear', 'cross_pos_q_linear', 'cross_pos_k_linear']) {
    linear(`decoder.${projection}`, d, d);
  }
  for (let i = 0; i < config.decoderLayers; i++) {
    const layer = `decoder.layers.${i}`;
    attention(`${layer}.self_attn`, decoderHeads);
    layerNorm(`${layer}.self_attn_layer_norm`, d);
    layerNorm(`${layer}.self_attn_mid_layer_norm`, d);
    attention(`${layer}.cross_attn`, decoderHeads);
    layerNorm(`${layer}.cross_attn_layer_norm`, d);
    layerNorm(`${layer}.cross_attn_mid_layer_norm`, d);
    ffn(layer, config.decoderFfnDim);
    layerNorm(`${layer}.final_layer_norm`, d);
    add(`decoder.token_rel_pos_table_list.${i}.weight`, [tokenTableRows, decoderHeads]);
    add(`decoder.image_rel_pos_table_list.${i}.weight`, [imageTableRows, decoderHeads], false);
  }
  layerNorm('decoder.layer_norm', d);
  add('decoder.output_projection.weight', [config.vocabSize, d]);
  add('decoder.embed_image_positions.weight', [imagePositionRows, d], false);
  layerNorm('decoder.image_pos_ln', d, false);
  layerNorm('decoder.code_layernorm_embedding', d, false);
  return expected;
}

// ---------------------------------------------------------------------------------------------
// Aliases

/** Parses the `tied_weight_aliases` JSON a converter may leave in the safetensors metadata. */
function metadataAliases(file: SafetensorsFile): Record<string, string> {
  const text = file.metadata['tied_weight_aliases'];
  if (text === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file.label}: metadata "tied_weight_aliases" is not valid JSON (${(error as Error).message})`);
  }
  const valid =
    typeof parsed === 'object' &&
    parsed !== null &&
    !Array.isArray(parsed) &&
    Object.values(parsed).every((v) => typeof v === 'string');
  if (!valid) throw new Error(`${file.label}: metadata "tied_weight_aliases" must map names to names, found ${text}`);
  return parsed as Record<string, string>;
}

/** The names a checkpoint that shares its embeddings (§6.5) may leave out. */
const IMPLIED_TIES = ['decoder.embed_tokens.weight', 'decoder.output_projection.weight'];
const SHARED_EMBEDDING = 'encoder.embed_tokens.weight';

// ---------------------------------------------------------------------------------------------
// Loading

const FLOAT_DTYPES = new Set(['F16', 'F32', 'BF16', 'F64']);

class WeightReader {
  readonly #uploaded = new Map<string, Tensor>();
  readonly #owned: Tensor[] = [];
  #loadedBytes = 0;

  constructor(
    private readonly backend: Backend,
    private readonly file: SafetensorsFile,
    private readonly expected: ReadonlyMap<string, ExpectedTensor>,
    /** Expected name → the name stored in the file. */
    private readonly stored: ReadonlyMap<string, string>,
    private readonly totalBytes: number,
    private readonly onProgress: ((progress: LoadProgress) => void) | undefined,
  ) {}

  get owned(): readonly Tensor[] {
    return this.#owned;
  }

  #info(name: string): TensorInfo {
    if (!this.expected.get(name)?.used) throw new Error(`OFA weights: '${name}' is not a used OFA parameter`);
    return this.file.info(this.stored.get(name)!);
  }

  async #read<T>(name: string, read: (storedName: string) => Promise<T>): Promise<T> {
    const info = this.#info(name);
    const data = await read(info.name);
    this.#loadedBytes += info.byteLength;
    this.onProgress?.({ name: info.name, loadedBytes: this.#loadedBytes, totalBytes: this.totalBytes });
    return data;
  }

  #upload(data: Float32Array | Uint16Array, shape: Shape, dtype: DType): Tensor {
    const tensor = this.backend.upload(data, shape, dtype);
    this.#owned.push(tensor);
    return tensor;
  }

  /** A tensor as stored (f16 stays f16); tied names give the same tensor. */
  async tensor(name: string): Promise<Tensor> {
    const info = this.#info(name);
    const cached = this.#uploaded.get(info.name);
    if (cached) return cached;
    const tensor =
      info.dtype === 'F16'
        ? this.#upload(await this.#read(name, (n) => this.file.readHalfBits(n)), info.shape, 'f16')
        : this.#upload(await this.#read(name, (n) => this.file.readFloat32(n)), info.shape, 'f32');
    this.#uploaded.set(info.name, tensor);
    return tensor;
  }

  /** Values widened to f64 for folding. */
  async float64(name: string): Promise<Float64Array> {
    return Float64Array.from(await this.#read(name, (n) => this.file.readFloat32(n)));
  }

  async linear(prefix: string): Promise<LinearWeights> {
    return { weight: await this.tensor(`${prefix}.weight`), bias: await this.tensor(`${prefix}.bias`) };
  }

  async layerNorm(prefix: string): Promise<LayerNormWeights> {
    return { weight: await this.tensor(`${prefix}.weight`), bias: await this.tensor(`${prefix}.bias`) };
  }

  /** q/k/v/out projections, with `c_attn` folded into the columns of `out_proj.weight`. */
  async attention(prefix: string): Promise<AttentionWeights> {
    const headScale = await this.float64(`${prefix}.c_attn`);
    const outName = `${prefix}.out_proj.weight`;
    const out = await this.float64(outName);
    const [rows, cols] = this.#info(outName).shape as [number, number];
    const headDim = cols / headScale.length;
    const folded = new Float32Array(out.length);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) folded[r * cols + c] = out[r * cols + c]! * headScale[Math.floor(c / headDim)]!;
    }
    return {
      q: await this.linear(`${prefix}.q_proj`),
      k: await this.linear(`${prefix}.k_proj`),
      v: await this.linear(`${prefix}.v_proj`),
      out: { weight: this.#upload(folded, [rows, cols], 'f32'), bias: await this.tensor(`${prefix}.out_proj.bias`) },
    };
  }

  /** A bias-free conv followed by an eval-mode BatchNorm, folded into one conv with a bias. */
  async convBatchNorm(convName: string, batchNormPrefix: string, eps: number): Promise<ConvWeights> {
    const weight = await this.float64(convName);
    const shape = this.#info(convName).shape;
    const gamma = await this.float64(`${batchNormPrefix}.weight`);
    const beta = await this.float64(`${batchNormPrefix}.bias`);
    const mean = await this.float64(`${batchNormPrefix}.running_mean`);
    const variance = await this.float64(`${batchNormPrefix}.running_var`);
    const channels = shape[0]!;
    const perChannel = weight.length / channels;
    const foldedWeight = new Float32Array(weight.length);
    const foldedBias = new Float32Array(channels);
    for (let c = 0; c < channels; c++) {
      const scale = gamma[c]! / Math.sqrt(variance[c]! + eps);
      for (let i = c * perChannel; i < (c + 1) * perChannel; i++) foldedWeight[i] = weight[i]! * scale;
      foldedBias[c] = beta[c]! - mean[c]! * scale;
    }
    return { weight: this.#upload(foldedWeight, shape, 'f32'), bias: this.#upload(foldedBias, [channels], 'f32') };
  }

  /** `concat(tables…, zero row)` along rows; f16 when every table is stored F16 (exact). */
  async stackedTable(names: readonly string[]): Promise<Tensor> {
    const infos = names.map((name) => this.#info(name));
    const columns = infos[0]!.shape[1]!;
    const rows = infos.reduce((sum, info) => sum + info.shape[0]!, 0) + 1;
    const half = infos.every((info) => info.dtype === 'F16');
    const stacked = half ? new Uint16Array(rows * columns) : new Float32Array(rows * columns);
    let offset = 0;
    for (const name of names) {
      const part = half
        ? await this.#read(name, (n) => this.file.readHalfBits(n))
        : await this.#read(name, (n) => this.file.readFloat32(n));
      stacked.set(part, offset);
      offset += part.length;
    }
    // The last row stays zero (+0 in both encodings).
    return this.#upload(stacked, [rows, columns], half ? 'f16' : 'f32');
  }
}

async function loadResnet(r: WeightReader, config: OfaConfig): Promise<ResnetWeights> {
  const prefix = 'encoder.embed_images';
  const eps = config.batchNormEps;
  const stem = await r.convBatchNorm(`${prefix}.conv1.weight`, `${prefix}.bn1`, eps);
  const stages: BottleneckWeights[][] = [];
  for (const [stage, blocks] of RESNET_STAGE_BLOCKS[config.resnetType].entries()) {
    const list: BottleneckWeights[] = [];
    for (let b = 0; b < blocks; b++) {
      const block = `${prefix}.layer${stage + 1}.${b}`;
      const weights: BottleneckWeights = {
        conv1: await r.convBatchNorm(`${block}.conv1.weight`, `${block}.bn1`, eps),
        conv2: await r.convBatchNorm(`${block}.conv2.weight`, `${block}.bn2`, eps),
        conv3: await r.convBatchNorm(`${block}.conv3.weight`, `${block}.bn3`, eps),
      };
      if (b === 0) {
        weights.downsample = await r.convBatchNorm(`${block}.downsample.0.weight`, `${block}.downsample.1`, eps);
      }
      list.push(weights);
    }
    stages.push(list);
  }
  return { stem, stages };
}

async function loadFeedForward(r: WeightReader, layer: string): Promise<FeedForwardWeights> {
  return {
    fc1: await r.linear(`${layer}.fc1`),
    ffnLayerNorm: await r.layerNorm(`${layer}.ffn_layer_norm`),
    fc2: await r.linear(`${layer}.fc2`),
  };
}

async function loadEncoder(r: WeightReader, config: OfaConfig): Promise<EncoderWeights> {
  const layers: EncoderLayerWeights[] = [];
  for (let i = 0; i < config.encoderLayers; i++) {
    const layer = `encoder.layers.${i}`;
    layers.push({
      selfAttnLayerNorm: await r.layerNorm(`${layer}.self_attn_layer_norm`),
      selfAttn: await r.attention(`${layer}.self_attn`),
      selfAttnMidLayerNorm: await r.layerNorm(`${layer}.self_attn_mid_layer_norm`),
      finalLayerNorm: await r.layerNorm(`${layer}.final_layer_norm`),
      ffn: await loadFeedForward(r, layer),
      // Row order must match encoderRelativeTableLayout: text, image, zero.
      relativeBiasTable: await r.stackedTable([
        `encoder.token_rel_pos_table_list.${i}.weight`,
        `encoder.image_rel_pos_table_list.${i}.weight`,
      ]),
    });
  }
  return {
    embedTokens: await r.tensor('encoder.embed_tokens.weight'),
    typeEmbedding: await r.tensor('encoder.type_embedding.weight'),
    layernormEmbedding: await r.layerNorm('encoder.layernorm_embedding'),
    resnet: await loadResnet(r, config),
    imageProj: await r.linear('encoder.image_proj'),
    patchLayernormEmbedding: await r.layerNorm('encoder.patch_layernorm_embedding'),
    embedPositions: await r.tensor('encoder.embed_positions.weight'),
    embedImagePositions: await r.tensor('encoder.embed_image_positions.weight'),
    posLn: await r.layerNorm('encoder.pos_ln'),
    imagePosLn: await r.layerNorm('encoder.image_pos_ln'),
    posQLinear: await r.linear('encoder.pos_q_linear'),
    posKLinear: await r.linear('encoder.pos_k_linear'),
    layers,
    layerNorm: await r.layerNorm('encoder.layer_norm'),
  };
}

async function loadDecoder(r: WeightReader, config: OfaConfig): Promise<DecoderWeights> {
  const layers: DecoderLayerWeights[] = [];
  for (let i = 0; i < config.decoderLayers; i++) {
    const layer = `decoder.layers.${i}`;
    layers.push({
      selfAttnLayerNorm: await r.layerNorm(`${layer}.self_attn_layer_norm`),
      selfAttn: await r.attention(`${layer}.self_attn`),
      selfAttnMidLayerNorm: await r.layerNorm(`${layer}.self_attn_mid_layer_norm`),
      crossAttnLayerNorm: await r.layerNorm(`${layer}.cross_attn_layer_norm`),
      crossAttn: await r.attention(`${layer}.cross_attn`),
      crossAttnMidLayerNorm: await r.layerNorm(`${layer}.cross_attn_mid_layer_norm`),
      finalLayerNorm: await r.layerNorm(`${layer}.final_layer_norm`),
      ffn: await loadFeedForward(r, layer),
      tokenRelativeTable: await r.tensor(`decoder.token_rel_pos_table_list.${i}.weight`),
    });
  }
  return {
    embedTokens: await r.tensor('decoder.embed_tokens.weight'),
    layernormEmbedding: await r.layerNorm('decoder.layernorm_embedding'),
    embedPositions: await r.tensor('decoder.embed_positions.weight'),
    posLn: await r.layerNorm('decoder.pos_ln'),
    selfPosQLinear: await r.linear('decoder.self_pos_q_linear'),
    selfPosKLinear: await r.linear('decoder.self_pos_k_linear'),
    crossPosQLinear: await r.linear('decoder.cross_pos_q_linear'),
    crossPosKLinear: await r.linear('decoder.cross_pos_k_linear'),
    layers,
    layerNorm: await r.layerNorm('decoder.layer_norm'),
    outputProjection: await r.tensor('decoder.output_projection.weight'),
  };
}

/**
 * Resolves every expected name to a stored one (directly or through an alias) and checks its
 * dtype and shape. Throws one error listing every problem.
 */
function resolveNames(
  file: SafetensorsFile,
  expected: ReadonlyMap<string, ExpectedTensor>,
  aliases: Readonly<Record<string, string>>,
): Map<string, string> {
  const stored = new Map<string, string>();
  const problems: string[] = [];
  for (const [name, { shape, used }] of expected) {
    let storedName = name;
    const seen = new Set<string>();
    while (!file.has(storedName) && aliases[storedName] !== undefined && !seen.has(storedName)) {
      seen.add(storedName);
      storedName = aliases[storedName];
    }
    const via = storedName === name ? '' : ` (tied to '${storedName}')`;
    if (!file.has(storedName)) {
      if (used) problems.push(`missing tensor '${name}'${via}, expected shape ${shapeToString(shape)}`);
      continue;
    }
    const info = file.info(storedName);
    if (!FLOAT_DTYPES.has(info.dtype)) {
      problems.push(`tensor '${name}'${via} is ${info.dtype}, expected a floating-point dtype`);
    } else if (!sameShape(info.shape, shape)) {
      problems.push(
        `tensor '${name}'${via} has shape ${shapeToString(info.shape)}, expected ${shapeToString(shape)}`,
      );
    } else if (used) {
      stored.set(name, storedName);
    }
  }
  if (problems.length > 0) {
    const heading = problems.length === 1 ? '' : `${problems.length} problems:\n  `;
    throw new Error(`${file.label}: not an OFA checkpoint for this config: ${heading}${problems.join('\n  ')}`);
  }
  return stored;
}

/**
 * Loads every parameter the engine uses from `file` onto `backend`, folded as described at the
 * top of this module. Aliases come from `options.aliases`, then the file's metadata key
 * `tied_weight_aliases`, then — for configs that share embeddings — the implied ties of the
 * decoder's token table and output projection to `encoder.embed_tokens.weight`.
 */
export async function loadOfaWeights(
  backend: Backend,
  file: SafetensorsFile,
  config: OfaConfig,
  options: LoadOfaWeightsOptions = {},
): Promise<OfaWeights> {
  const implied: Record<string, string> = {};
  if (config.shareEmbeddings) for (const name of IMPLIED_TIES) implied[name] = SHARED_EMBEDDING;
  const aliases = { ...implied, ...metadataAliases(file), ...options.aliases };
  const expected = expectedOfaTensors(config);
  const stored = resolveNames(file, expected, aliases);

  const storedNames = new Set(stored.values());
  const aliasNames = new Set(Object.values(aliases));
  const unexpectedNames = [...file.tensors.keys()].filter(
    (name) => !expected.has(name) && !storedNames.has(name) && !aliasNames.has(name) && !isIgnoredName(name),
  );
  const totalBytes = [...storedNames].reduce((sum, name) => sum + file.info(name).byteLength, 0);

  const reader = new WeightReader(backend, file, expected, stored, totalBytes, options.onProgress);
  try {
    const encoder = await loadEncoder(reader, config);
    const decoder = await loadDecoder(reader, config);
    const owned = reader.owned;
    return { encoder, decoder, unexpectedNames, dispose: () => owned.forEach((t) => t.dispose()) };
  } catch (error) {
    for (const tensor of reader.owned) tensor.dispose();
    throw error;
  }
}
