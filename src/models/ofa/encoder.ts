/**
 * The OFA encoder (ofa-arch.md §4): ResNet patches and text tokens embedded into one joint
 * sequence (image first), a decoupled absolute position bias shared by all layers plus per-layer
 * relative biases, pre-norm NormFormer layers, and a final LayerNorm.
 *
 * The forward pass is split into `embed`, `layer(l, …)` and `finish` so that a driver calls the
 * layers one by one and may stop early (MuE); `encode` is the plain driver that runs them all.
 * Every intermediate state stays on the device.
 *
 * MuE's decomposed encoder (mue-spec §1, `config.encoderMode === 'decomposed'`) runs the image
 * and the text tokens through the same layers as two streams that attend only to themselves:
 * `embedStreams` → `layer(l, …)` per stream with the stream's context → `finishStreams`, which
 * concatenates the stream outputs (image first) and applies the final LayerNorm. `encode`
 * dispatches on the mode; both give an `EncoderOutput` the decoder takes unchanged.
 *
 * The building blocks at the top (§4.5, §4.7, §4.8) are shared with the decoder.
 */
import type { AttentionOptions, Backend, MatmulOptions } from '../../backend/backend.js';
import { type Tensor, shapeToString } from '../../tensor.js';
import { type EncoderMode, type OfaConfig, attentionScale, checkTokenIds } from './config.js';
import { type PositionTables, checkTextLength } from './positions.js';
import { resnetFeatures, resnetOutputSize } from './resnet.js';
import {
  type AttentionWeights,
  type EncoderWeights,
  type FeedForwardWeights,
  type LayerNormWeights,
  type LinearWeights,
  RESNET_OUT_CHANNELS,
} from './weights.js';

// ---------------------------------------------------------------------------------------------
// Building blocks

/** A PyTorch `Linear`: `x·Wᵀ + b`, optionally with an activation and a residual added last. */
export function linear(
  backend: Backend,
  x: Tensor,
  w: LinearWeights,
  epilogue: Pick<MatmulOptions, 'activation' | 'residual'> = {},
): Tensor {
  return backend.matmul(x, w.weight, { transposeB: true, bias: w.bias, ...epilogue });
}

/** A LayerNorm, and the residual sum after it when `residual` is given (one op). */
export function layerNorm(backend: Backend, x: Tensor, w: LayerNormWeights, eps: number, residual?: Tensor): Tensor {
  return backend.layerNorm(x, w.weight, w.bias, eps, residual);
}

/** `[T, H·dh]` → `[H, T, dh]`: head h owns channels `[h·dh, (h+1)·dh)`. */
function splitHeads(backend: Backend, x: Tensor, heads: number): Tensor {
  const [length, width] = x.shape as [number, number];
  return backend.transpose(x.reshape([length, heads, width / heads]), [1, 0, 2]);
}

/** §4.5 queries: `(P·Wqᵀ + bq)·s` per head, `[H, T, dh]`, for position vectors `P [T, d]`. */
export function positionQueries(
  backend: Backend,
  positions: Tensor,
  w: LinearWeights,
  heads: number,
  scale: number,
): Tensor {
  return splitHeads(backend, backend.scale(linear(backend, positions, w), scale), heads);
}

/** §4.5 keys: `P·Wkᵀ + bk` per head, `[H, T, dh]`. */
export function positionKeys(backend: Backend, positions: Tensor, w: LinearWeights, heads: number): Tensor {
  return splitHeads(backend, linear(backend, positions, w), heads);
}

/** §4.5 `Aabs[h, i, j] = ⟨PQ[i, h], PK[j, h]⟩`: `[H, Tq, Tk]`, one batched matmul over heads. */
export function positionBias(backend: Backend, queries: Tensor, keys: Tensor): Tensor {
  return backend.matmul(queries, keys, { transposeB: true });
}

/** §4.6 relative bias `R[h, i, j] = table[index[i, j], h]`, `[H, Tq, Tk]`, added to the absolute bias `base` (one op). */
export function relativeBias(backend: Backend, table: Tensor, index: Tensor, base: Tensor): Tensor {
  return backend.relativeBias(table, index, base);
}

/**
 * §4.7 from projected `q`, `k`, `v`: `softmax(s·q·kᵀ + bias + mask)·v` per head, then `out_proj`
 * (whose weight carries the head scale `c_attn`).
 */
export function attentionOutput(
  backend: Backend,
  w: AttentionWeights,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
): Tensor {
  return linear(backend, backend.attention(q, k, v, options), w.out);
}

/** §4.8 feed-forward sublayer: `x + fc2(ffn_layer_norm(gelu(fc1(final_layer_norm(x)))))`. */
export function feedForwardSublayer(
  backend: Backend,
  x: Tensor,
  finalLayerNorm: LayerNormWeights,
  w: FeedForwardWeights,
  eps: number,
): Tensor {
  let h = layerNorm(backend, x, finalLayerNorm, eps);
  h = linear(backend, h, w.fc1, { activation: 'gelu' });
  h = layerNorm(backend, h, w.ffnLayerNorm, eps);
  return linear(backend, h, w.fc2, { residual: x });
}

// ---------------------------------------------------------------------------------------------
// The encoder

/**
 * What `layer` needs of the sequence it runs on: the joint sequence (§4.4) or one stream of the
 * decomposed encoder (mue-spec §1). `T` is that sequence's length.
 */
export interface LayerContext {
  /** `[H, T, T]`, the decoupled absolute position bias (§4.5) of the sequence's position vectors. */
  absolutePositionBias: Tensor;
  /**
   * i32 `[T, T]` rows of each layer's stacked relative table (§4.6; cached per shape, not owned),
   * or null for no relative bias (the decomposed encoder's image stream by default).
   */
  relativeIndex: Tensor | null;
  /** i32 `[B, T]`: 1 at padded text tokens (§4.4); null where nothing can be padded (image stream). */
  keyPaddingMask: Tensor | null;
  /** Host copy of `keyPaddingMask`, `[B·T]`: rows of it are uploaded when a batch shrinks. */
  keyPadding?: Int32Array | null;
}

/** What every layer of one request shares in the joint encoder (§4.4–4.6). */
export interface EncoderContext extends LayerContext {
  /** i32 `[N, N]`: text×text pairs → text rows, image×image → image rows, cross-modal → zero row. */
  relativeIndex: Tensor;
  /** i32 `[B, N]`: 1 at padded text tokens (§4.4). */
  keyPaddingMask: Tensor;
  keyPadding: Int32Array;
  /** `[1, N, d]`, the LayerNorm'ed position vectors P (image first), for the decoder (§4.4). */
  positionEmbedding: Tensor;
  imageGrid: { rows: number; cols: number };
  textLength: number;
}

export type StreamName = 'image' | 'text';

/** What every layer of one stream of the decomposed encoder shares (mue-spec §1). */
export interface StreamContext extends LayerContext {
  stream: StreamName;
  /** Tokens in the stream: `rows·cols` patches, or the text length L. */
  length: number;
}

/** One stream of the decomposed encoder: its embedding output (state 0) and its context. */
export interface StreamState {
  /** `[U, Ni, d]` (image: one row per distinct image) or `[B, L, d]` (text, padded tokens zeroed). */
  hidden: Tensor;
  context: StreamContext;
}

/**
 * A batch for the encoder: B texts and the distinct images they read. Texts of different lengths
 * are right-padded with the pad id; positions run on over the pads, which are zeroed and masked
 * (ofa-arch.md §4.4, note 10), so that every text's tokens see exactly what they see alone.
 */
export interface EncoderBatch {
  /** `[U, 3, S, S]`, normalized (§3): the batch's distinct images. */
  pixels: Tensor;
  /** B id sequences (BOS … EOS). */
  texts: readonly ArrayLike<number>[];
  /**
   * Per text, the index of the image it reads in `pixels` (several texts may read one image: the
   * decomposed encoder's image stream then runs once for them). Default: text b reads image b, or
   * every text reads the only image.
   */
  images?: readonly number[];
}

/** `embedStreams`'s result: both streams, and what the decoder will need of the whole input. */
export interface EncoderStreams {
  image: StreamState;
  text: StreamState;
  /** Per text (row of the text stream), the row of the image stream it reads. */
  images: readonly number[];
  /** `[1, N, d]`: the position vectors P, image then text, exactly as in the joint encoder (§4.4). */
  positionEmbedding: Tensor;
  /** i32 `[B, N]`: the joint padding mask (image part 0), as in the joint encoder. */
  keyPaddingMask: Tensor;
  /** Host copy of `keyPaddingMask`, `[B·N]`. */
  keyPadding: Int32Array;
  imageGrid: { rows: number; cols: number };
  textLength: number;
}

export interface EncoderOutput {
  encoderMode: EncoderMode;
  /**
   * `[B, N, d]` before the final LayerNorm (B texts, 1 for a single request): 0 = the embedding
   * output, l = after layer l.
   * Decomposed encoder: entry i is the concatenation (image first) of the image stream's state
   * i and the text stream's state i; a stream that stopped earlier (MuE exit) contributes its
   * last state to every later entry, so there are `max(image, text layers run) + 1` entries.
   */
  hiddenStates: Tensor[];
  /**
   * Decomposed encoder only: each stream's own states, `[U, Ni, d]` and `[B, L, d]`; state 0 is
   * the stream's embedding output, the last its output (mue-spec §2). The exit layer of a stream
   * is `states.length − 1`.
   */
  streamStates?: { image: Tensor[]; text: Tensor[] };
  /** `[B, N, d]` after the final LayerNorm (§4.9): what the decoder attends to. */
  lastHiddenState: Tensor;
  /** `[1, N, d]`: the position vectors P, shared by the batch. */
  positionEmbedding: Tensor;
  /** i32 `[B, N]`: 1 at padded text tokens. */
  keyPaddingMask: Tensor;
  /** Host copy of `keyPaddingMask`, `[B·N]`: rows of it are uploaded when a batch shrinks. */
  keyPadding: Int32Array;
  imageGrid: { rows: number; cols: number };
  textLength: number;
  dispose(): void;
}

/** §4.2–4.3 the two modalities embedded separately: `[U, Ni, d]`, `[B, L, d]`, positions `[1, T, d]`. */
interface ModalityEmbeddings {
  imageX: Tensor;
  textX: Tensor;
  imagePositions: Tensor;
  textPositions: Tensor;
}

/** The shape of one batch, checked, and the index tables it needs. */
interface EncoderInput {
  rows: number;
  cols: number;
  /** The longest text's length L: every text is padded to it. */
  textLength: number;
  /** `[B·L]`: the texts' ids, right-padded with the pad id. */
  textIds: Int32Array;
  /** `[B·L]`: 1 where the id is the pad id (padding, or a pad id in the text). */
  textPadding: Int32Array;
  /** Per text, its image's row in the pixels. */
  images: number[];
  imagePositionIds: Tensor;
  textPositionIds: Tensor;
}

export class OfaEncoder {
  readonly heads: number;
  readonly scale: number;

  constructor(
    private readonly backend: Backend,
    readonly config: OfaConfig,
    private readonly weights: EncoderWeights,
    private readonly positions: PositionTables,
  ) {
    this.heads = config.encoderAttentionHeads;
    this.scale = attentionScale(config, this.heads);
  }

  get layerCount(): number {
    return this.weights.layers.length;
  }

  get mode(): EncoderMode {
    return this.config.encoderMode;
  }

  /**
   * Checks the batch and fetches its content-independent index tables (these also refuse a patch
   * grid beyond the image buckets before the backbone runs). Call outside `tidy`, so that the
   * position cache keeps the tables.
   */
  #input({ pixels, texts, images }: EncoderBatch): EncoderInput {
    const { config } = this;
    const [imageCount, channels] = pixels.shape;
    if (pixels.rank !== 4 || channels !== 3 || imageCount === 0) {
      throw new Error(`encoder: pixels must be [U, 3, S, S], got ${shapeToString(pixels.shape)}`);
    }
    if (texts.length === 0) throw new Error('encoder input: needs at least one text');
    const imageOf = images ?? texts.map((_, b) => (imageCount === 1 ? 0 : b));
    if (imageOf.length !== texts.length) {
      throw new Error(`encoder input: ${texts.length} texts but ${imageOf.length} image indices`);
    }
    imageOf.forEach((image, b) => {
      if (!Number.isInteger(image) || image < 0 || image >= imageCount) {
        throw new Error(`encoder input: text ${b} reads image ${image}, but the pixels hold ${imageCount} (0..${imageCount - 1})`);
      }
    });
    texts.forEach((ids, b) => {
      const what = texts.length === 1 ? 'encoder input' : `encoder input (text ${b})`;
      if (ids.length === 0) throw new Error(`${what}: needs at least one token`);
      checkTokenIds(config, ids, what);
      checkTextLength(config, ids.length, 'encoder text');
    });
    const rows = resnetOutputSize(pixels.shape[2]!);
    const cols = resnetOutputSize(pixels.shape[3]!);
    const textLength = Math.max(...texts.map((ids) => ids.length));
    const textIds = new Int32Array(texts.length * textLength).fill(config.padTokenId);
    texts.forEach((ids, b) => textIds.set(Array.from(ids), b * textLength));
    return {
      rows,
      cols,
      textLength,
      textIds,
      textPadding: textIds.map((id) => (id === config.padTokenId ? 1 : 0)),
      images: [...imageOf],
      imagePositionIds: this.positions.imagePositions(rows, cols),
      textPositionIds: this.positions.positionRange(0, textLength),
    };
  }

  /**
   * §4.1–4.4 per modality (call inside `tidy`): image tokens, text tokens (padded ones zeroed)
   * and the LayerNorm'ed position vectors of each.
   */
  #embedModalities(features: Tensor, input: EncoderInput): ModalityEmbeddings {
    const { backend, config, weights } = this;
    const eps = config.layerNormEps;
    const d = config.dModel;
    const { textLength, textPadding } = input;
    const batch = input.images.length;
    const imageCount = features.shape[0]!;
    const patches = input.rows * input.cols;
    const typeRow = (row: number): Tensor => backend.slice(weights.typeEmbedding, 0, row, row + 1).reshape([d]);
    // §4.2 image tokens: patch_layernorm_embedding(image_proj(feature) + type[1]), patches row-major.
    const flat = backend.transpose(features.reshape([imageCount, RESNET_OUT_CHANNELS, patches]), [0, 2, 1]);
    const imageX = layerNorm(
      backend,
      backend.add(linear(backend, flat, weights.imageProj), typeRow(1)),
      weights.patchLayernormEmbedding,
      eps,
    );
    // §4.3 text tokens: layernorm_embedding(embed_tokens[id] + type[0]).
    const ids = backend.upload(input.textIds, [batch, textLength], 'i32');
    let textX = layerNorm(
      backend,
      backend.add(backend.gather(weights.embedTokens, ids), typeRow(0)),
      weights.layernormEmbedding,
      eps,
    );
    // §4.4 padded tokens are zeroed (only text tokens can be padded).
    if (textPadding.includes(1)) {
      const keep = Float32Array.from({ length: batch * textLength * d }, (_, i) => 1 - textPadding[Math.floor(i / d)]!);
      textX = backend.mul(textX, backend.upload(keep, [batch, textLength, d], 'f32'));
    }
    // §4.2–4.3 position vectors: image_pos_ln(embed_image_positions[r·42 + c + 1]), pos_ln(embed_positions[t]).
    const imagePositions = layerNorm(
      backend,
      backend.gather(weights.embedImagePositions, input.imagePositionIds.reshape([1, patches])),
      weights.imagePosLn,
      eps,
    );
    const textPositions = layerNorm(
      backend,
      backend.gather(weights.embedPositions, input.textPositionIds.reshape([1, textLength])),
      weights.posLn,
      eps,
    );
    return { imageX, textX, imagePositions, textPositions };
  }

  /** §4.5 `Aabs = (s·PQ)·PKᵀ` per head for position vectors `[1, T, d]` → `[H, T, T]`. */
  #absoluteBias(positions: Tensor): Tensor {
    const { backend, weights } = this;
    const [, length, d] = positions.shape as [number, number, number];
    const flat = positions.reshape([length, d]);
    return positionBias(
      backend,
      positionQueries(backend, flat, weights.posQLinear, this.heads, this.scale),
      positionKeys(backend, flat, weights.posKLinear, this.heads),
    );
  }

  /** The joint padding mask `[B·N]` (image part 0), on the host. */
  #jointPadding(input: EncoderInput): Int32Array {
    const patches = input.rows * input.cols;
    const length = patches + input.textLength;
    const padded = new Int32Array(input.images.length * length);
    input.images.forEach((_, b) => padded.set(input.textPadding.subarray(b * input.textLength, (b + 1) * input.textLength), b * length + patches));
    return padded;
  }

  /** Per text, its image's tokens: `[U, Ni, d]` → `[B, Ni, d]` (the tensor itself when text b reads image b). */
  imageRows(imageX: Tensor, images: readonly number[]): Tensor {
    const [imageCount, patches, d] = imageX.shape as [number, number, number];
    if (images.length === imageCount && images.every((image, b) => image === b)) return imageX;
    const { backend } = this;
    return backend.tidy(() => {
      const ids = backend.upload(Int32Array.from(images), [images.length], 'i32');
      return backend.gather(imageX.reshape([imageCount, patches * d]), ids).reshape([images.length, patches, d]);
    });
  }

  /**
   * §4.1–4.5: pixels `[1, 3, S, S]` and text ids (BOS … EOS) → the joint embedding `[1, N, d]`
   * (image patches first) and the context every layer shares.
   */
  embed(pixels: Tensor, inputIds: ArrayLike<number>): { hidden: Tensor; context: EncoderContext } {
    return this.embedBatch({ pixels, texts: [inputIds] });
  }

  /** `embed` for a batch: the joint embeddings `[B, N, d]` of B texts with their images. */
  embedBatch(batch: EncoderBatch): { hidden: Tensor; context: EncoderContext } {
    const { backend } = this;
    const input = this.#input(batch);
    const { rows, cols, textLength } = input;
    const relativeIndex = this.positions.encoderRelativeIndex(rows, cols, textLength);
    const features = resnetFeatures(backend, this.weights.resnet, batch.pixels);
    const keyPadding = this.#jointPadding(input);
    const embedded = backend.tidy(() => {
      const m = this.#embedModalities(features, input);
      // §4.4 the joint sequence and P = [image positions; text positions], image first.
      const hidden = backend.concat([this.imageRows(m.imageX, input.images), m.textX], 1);
      const positionEmbedding = backend.concat([m.imagePositions, m.textPositions], 1);
      const absolutePositionBias = this.#absoluteBias(positionEmbedding);
      const keyPaddingMask = backend.upload(keyPadding, [input.images.length, keyPadding.length / input.images.length], 'i32');
      return { hidden, absolutePositionBias, positionEmbedding, keyPaddingMask };
    });
    features.dispose();
    const { hidden, ...shared } = embedded;
    return { hidden, context: { ...shared, keyPadding, relativeIndex, imageGrid: { rows, cols }, textLength } };
  }

  /**
   * The decomposed encoder's embeddings (mue-spec §1): the same token embeddings and position
   * vectors as `embed`, as two streams. Each stream's absolute bias comes from its own position
   * vectors only (the image×image and text×text blocks of the joint `Aabs`); the text stream
   * has the 1-D relative bias with text-local positions (OFA's text×text block), the image
   * stream no relative bias unless `config.imageRelativeBiasInDecomposed`. Padding: text where
   * id == pad, image none.
   *
   * Run each stream through `layer(l, stream.hidden, stream.context)`, then `finishStreams`.
   * The caller owns the result until `finishStreams` takes it over (or `disposeStreams`).
   */
  embedStreams(pixels: Tensor, inputIds: ArrayLike<number>): EncoderStreams {
    return this.embedStreamsBatch({ pixels, texts: [inputIds] });
  }

  /**
   * `embedStreams` for a batch: the image stream holds each distinct image once (`[U, Ni, d]`; the
   * image stream does not depend on the text), the text stream every text (`[B, L, d]`).
   */
  embedStreamsBatch(batch: EncoderBatch): EncoderStreams {
    const { backend, config } = this;
    const input = this.#input(batch);
    const { rows, cols, textLength } = input;
    const texts = input.images.length;
    const textRelativeIndex = this.positions.textRelativeIndex(textLength);
    const imageRelativeIndex = config.imageRelativeBiasInDecomposed
      ? this.positions.imageRelativeIndex(rows, cols)
      : null;
    const features = resnetFeatures(backend, this.weights.resnet, batch.pixels);
    const keyPadding = this.#jointPadding(input);
    const embedded = backend.tidy(() => {
      const m = this.#embedModalities(features, input);
      return {
        imageX: m.imageX,
        textX: m.textX,
        imageBias: this.#absoluteBias(m.imagePositions),
        textBias: this.#absoluteBias(m.textPositions),
        textMask: backend.upload(input.textPadding, [texts, textLength], 'i32'),
        positionEmbedding: backend.concat([m.imagePositions, m.textPositions], 1),
        keyPaddingMask: backend.upload(keyPadding, [texts, keyPadding.length / texts], 'i32'),
      };
    });
    features.dispose();
    return {
      image: {
        hidden: embedded.imageX,
        context: {
          stream: 'image',
          length: rows * cols,
          absolutePositionBias: embedded.imageBias,
          relativeIndex: imageRelativeIndex,
          keyPaddingMask: null,
          keyPadding: null,
        },
      },
      text: {
        hidden: embedded.textX,
        context: {
          stream: 'text',
          length: textLength,
          absolutePositionBias: embedded.textBias,
          relativeIndex: textRelativeIndex,
          keyPaddingMask: embedded.textMask,
          keyPadding: input.textPadding,
        },
      },
      images: input.images,
      positionEmbedding: embedded.positionEmbedding,
      keyPaddingMask: embedded.keyPaddingMask,
      keyPadding,
      imageGrid: { rows, cols },
      textLength,
    };
  }

  /**
   * Layer `l` (§4.8) on a sequence `[1, T, d]` with bias `Aabs + R_l` (§4.6): the joint sequence
   * with the joint context, or one stream of the decomposed encoder with its stream context.
   */
  layer(l: number, x: Tensor, context: LayerContext): Tensor {
    const { backend } = this;
    const eps = this.config.layerNormEps;
    const w = this.weights.layers[l];
    if (!w) throw new Error(`encoder: layer ${l} does not exist (the encoder has ${this.layerCount})`);
    const length = context.absolutePositionBias.shape[1];
    if (x.rank !== 3 || x.shape[1] !== length) {
      throw new Error(`encoder layer ${l}: input ${shapeToString(x.shape)} does not fit a context of ${length} tokens`);
    }
    return backend.tidy(() => {
      const { absolutePositionBias, relativeIndex } = context;
      const bias =
        relativeIndex === null
          ? absolutePositionBias
          : relativeBias(backend, w.relativeBiasTable, relativeIndex, absolutePositionBias);
      const h = layerNorm(backend, x, w.selfAttnLayerNorm, eps);
      const attended = attentionOutput(
        backend,
        w.selfAttn,
        linear(backend, h, w.selfAttn.q),
        linear(backend, h, w.selfAttn.k),
        linear(backend, h, w.selfAttn.v),
        {
          heads: this.heads,
          scale: this.scale,
          bias,
          ...(context.keyPaddingMask === null ? {} : { keyPaddingMask: context.keyPaddingMask }),
        },
      );
      const afterAttention = layerNorm(backend, attended, w.selfAttnMidLayerNorm, eps, x);
      return feedForwardSublayer(backend, afterAttention, w.finalLayerNorm, w.ffn, eps);
    });
  }

  /** §4.9 the encoder's final LayerNorm. */
  finish(x: Tensor): Tensor {
    return layerNorm(this.backend, x, this.weights.layerNorm, this.config.layerNormEps);
  }

  /**
   * The decomposed encoder's end (mue-spec §1): each stream's output — the last of its states —
   * concatenated image first, then the final LayerNorm. `imageStates` and `textStates` are the
   * streams' states from state 0 (`streams.image.hidden`, `streams.text.hidden`) to the output;
   * with MuE exits the two lists may differ in length.
   *
   * Takes ownership: the states become the output's (`streamStates`, freed by its `dispose`),
   * the streams' biases and text mask are freed, P and the joint padding mask move to the output.
   */
  finishStreams(streams: EncoderStreams, imageStates: readonly Tensor[], textStates: readonly Tensor[]): EncoderOutput {
    const { backend } = this;
    if (imageStates.length === 0 || textStates.length === 0) {
      throw new Error('encoder: finishStreams needs at least state 0 of each stream');
    }
    const image = [...imageStates];
    const text = [...textStates];
    const entries = Math.max(image.length, text.length);
    const hiddenStates = Array.from({ length: entries }, (_, i) =>
      backend.tidy(() =>
        backend.concat([this.imageRows(image[Math.min(i, image.length - 1)]!, streams.images), text[Math.min(i, text.length - 1)]!], 1),
      ),
    );
    const lastHiddenState = this.finish(hiddenStates[entries - 1]!);
    disposeStreamContexts(streams);
    const { positionEmbedding, keyPaddingMask, keyPadding, imageGrid, textLength } = streams;
    const owned = new Set([...hiddenStates, ...image, ...text, lastHiddenState, positionEmbedding, keyPaddingMask]);
    return {
      encoderMode: 'decomposed',
      hiddenStates,
      streamStates: { image, text },
      lastHiddenState,
      positionEmbedding,
      keyPaddingMask,
      keyPadding,
      imageGrid,
      textLength,
      dispose: () => owned.forEach((t) => t.dispose()),
    };
  }

  /** The full forward pass in the config's encoder mode: embed, every layer, final LayerNorm. */
  encode(pixels: Tensor, inputIds: ArrayLike<number>): EncoderOutput {
    return this.encodeBatch({ pixels, texts: [inputIds] });
  }

  /** `encode` for a batch of texts and their images: the output has one row per text. */
  encodeBatch(batch: EncoderBatch): EncoderOutput {
    return this.mode === 'decomposed' ? this.#encodeDecomposed(batch) : this.#encodeJoint(batch);
  }

  /** OFA's joint encoder (§4), whatever the config's mode. */
  encodeJoint(pixels: Tensor, inputIds: ArrayLike<number>): EncoderOutput {
    return this.#encodeJoint({ pixels, texts: [inputIds] });
  }

  /** MuE's decomposed encoder (mue-spec §1) without exits: both streams through every layer. */
  encodeDecomposed(pixels: Tensor, inputIds: ArrayLike<number>): EncoderOutput {
    return this.#encodeDecomposed({ pixels, texts: [inputIds] });
  }

  #encodeJoint(batch: EncoderBatch): EncoderOutput {
    const { hidden, context } = this.embedBatch(batch);
    const hiddenStates = [hidden];
    for (let l = 0; l < this.layerCount; l++) hiddenStates.push(this.layer(l, hiddenStates[l]!, context));
    const lastHiddenState = this.finish(hiddenStates[this.layerCount]!);
    context.absolutePositionBias.dispose();
    const { positionEmbedding, keyPaddingMask, keyPadding, imageGrid, textLength } = context;
    return {
      encoderMode: 'joint',
      hiddenStates,
      lastHiddenState,
      positionEmbedding,
      keyPaddingMask,
      keyPadding,
      imageGrid,
      textLength,
      dispose: () => [...hiddenStates, lastHiddenState, positionEmbedding, keyPaddingMask].forEach((t) => t.dispose()),
    };
  }

  #encodeDecomposed(batch: EncoderBatch): EncoderOutput {
    const streams = this.embedStreamsBatch(batch);
    const run = ({ hidden, context }: StreamState): Tensor[] => {
      const states = [hidden];
      for (let l = 0; l < this.layerCount; l++) states.push(this.layer(l, states[l]!, context));
      return states;
    };
    return this.finishStreams(streams, run(streams.image), run(streams.text));
  }
}

/** Frees what the stream contexts own (the absolute biases, the text padding mask). */
function disposeStreamContexts(streams: EncoderStreams): void {
  for (const { context } of [streams.image, streams.text]) {
    context.absolutePositionBias.dispose();
    context.keyPaddingMask?.dispose();
  }
}

/** Frees streams that will not reach `finishStreams` (their states included). */
export function disposeStreams(streams: EncoderStreams): void {
  disposeStreamContexts(streams);
  for (const t of [streams.image.hidden, streams.text.hidden, streams.positionEmbedding, streams.keyPaddingMask]) {
    t.dispose();
  }
}
