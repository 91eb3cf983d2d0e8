/**
 * The OFA encoder (ofa-arch.md §4): ResNet patches and text tokens embedded into one joint
 * sequence (image first), a decoupled absolute position bias shared by all layers plus per-layer
 * relative biases, pre-norm NormFormer layers, and a final LayerNorm.
 *
 * The forward pass is split into `embed`, `layer(l, …)` and `finish` so that a driver calls the
 * layers one by one and may stop early (MuE); `encode` is the plain driver that runs them all.
 * Every intermediate state stays on the device.
 *
 * The building blocks at the top (§4.5, §4.7, §4.8) are shared with the decoder.
 */
import type { AttentionOptions, Backend, MatmulOptions } from '../../backend/backend.js';
import { type Tensor, shapeToString } from '../../tensor.js';
import { type OfaConfig, attentionScale, checkTokenIds } from './config.js';
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

export function layerNorm(backend: Backend, x: Tensor, w: LayerNormWeights, eps: number): Tensor {
  return backend.layerNorm(x, w.weight, w.bias, eps);
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

/** §4.6 relative bias `R[h, i, j] = table[index[i, j], h]`: one gather `[Tq, Tk, H]`, then heads first. */
export function relativeBias(backend: Backend, table: Tensor, index: Tensor): Tensor {
  return backend.transpose(backend.gather(table, index), [2, 0, 1]);
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

/** What every layer of one request shares (§4.4–4.6). */
export interface EncoderContext {
  /** `[H, N, N]`, the decoupled absolute position bias (§4.5). */
  absolutePositionBias: Tensor;
  /** i32 `[N, N]` rows of each layer's stacked relative table (cached per shape, not owned). */
  relativeIndex: Tensor;
  /** i32 `[1, N]`: 1 at padded text tokens (§4.4). */
  keyPaddingMask: Tensor;
  /** `[1, N, d]`, the LayerNorm'ed position vectors P (image first), for the decoder (§4.4). */
  positionEmbedding: Tensor;
  imageGrid: { rows: number; cols: number };
  textLength: number;
}

export interface EncoderOutput {
  /** `[1, N, d]`: 0 = the embedding output, l = after layer l (before the final LayerNorm). */
  hiddenStates: Tensor[];
  /** `[1, N, d]` after the final LayerNorm (§4.9): what the decoder attends to. */
  lastHiddenState: Tensor;
  positionEmbedding: Tensor;
  keyPaddingMask: Tensor;
  imageGrid: { rows: number; cols: number };
  textLength: number;
  dispose(): void;
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

  /**
   * §4.1–4.5: pixels `[1, 3, S, S]` and text ids (BOS … EOS) → the joint embedding `[1, N, d]`
   * (image patches first) and the context every layer shares.
   */
  embed(pixels: Tensor, inputIds: ArrayLike<number>): { hidden: Tensor; context: EncoderContext } {
    const { backend, config, weights } = this;
    const eps = config.layerNormEps;
    const d = config.dModel;
    const [batch, channels] = pixels.shape;
    if (pixels.rank !== 4 || batch !== 1 || channels !== 3) {
      throw new Error(`encoder: pixels must be [1, 3, S, S], got ${shapeToString(pixels.shape)}`);
    }
    if (inputIds.length === 0) throw new Error('encoder input: needs at least one token');
    checkTokenIds(config, inputIds, 'encoder input');
    checkTextLength(config, inputIds.length, 'encoder text');

    const rows = resnetOutputSize(pixels.shape[2]!);
    const cols = resnetOutputSize(pixels.shape[3]!);
    const textLength = inputIds.length;
    const patches = rows * cols;
    const n = patches + textLength;
    // Content-independent index tables (these also refuse a patch grid beyond the image
    // buckets before the backbone runs), fetched outside `tidy` so that the cache keeps them.
    const imagePositionIds = this.positions.imagePositions(rows, cols);
    const textPositionIds = this.positions.positionRange(0, textLength);
    const relativeIndex = this.positions.encoderRelativeIndex(rows, cols, textLength);
    const features = resnetFeatures(backend, weights.resnet, pixels);

    const padded = new Int32Array(n);
    for (let t = 0; t < textLength; t++) padded[patches + t] = inputIds[t] === config.padTokenId ? 1 : 0;
    const typeRow = (row: number): Tensor => backend.slice(weights.typeEmbedding, 0, row, row + 1).reshape([d]);

    const embedded = backend.tidy(() => {
      // §4.2 image tokens: patch_layernorm_embedding(image_proj(feature) + type[1]), patches row-major.
      const flat = backend.transpose(features.reshape([1, RESNET_OUT_CHANNELS, patches]), [0, 2, 1]);
      const imageX = layerNorm(
        backend,
        backend.add(linear(backend, flat, weights.imageProj), typeRow(1)),
        weights.patchLayernormEmbedding,
        eps,
      );
      // §4.3 text tokens: layernorm_embedding(embed_tokens[id] + type[0]).
      const ids = backend.upload(Int32Array.from(inputIds), [1, textLength], 'i32');
      const textX = layerNorm(
        backend,
        backend.add(backend.gather(weights.embedTokens, ids), typeRow(0)),
        weights.layernormEmbedding,
        eps,
      );
      // §4.4 the joint sequence, image first; padded tokens are zeroed.
      let hidden = backend.concat([imageX, textX], 1);
      if (padded.includes(1)) {
        const keep = Float32Array.from({ length: n * d }, (_, i) => 1 - padded[Math.floor(i / d)]!);
        hidden = backend.mul(hidden, backend.upload(keep, [n, d], 'f32'));
      }
      // §4.2–4.4 P = [image_pos_ln(embed_image_positions[r·42 + c + 1]); pos_ln(embed_positions[t])].
      const imagePositions = layerNorm(
        backend,
        backend.gather(weights.embedImagePositions, imagePositionIds.reshape([1, patches])),
        weights.imagePosLn,
        eps,
      );
      const textPositions = layerNorm(
        backend,
        backend.gather(weights.embedPositions, textPositionIds.reshape([1, textLength])),
        weights.posLn,
        eps,
      );
      const positionEmbedding = backend.concat([imagePositions, textPositions], 1);
      // §4.5 Aabs = (s·PQ)·PKᵀ per head.
      const positions = positionEmbedding.reshape([n, d]);
      const absolutePositionBias = positionBias(
        backend,
        positionQueries(backend, positions, weights.posQLinear, this.heads, this.scale),
        positionKeys(backend, positions, weights.posKLinear, this.heads),
      );
      const keyPaddingMask = backend.upload(padded, [1, n], 'i32');
      return { hidden, absolutePositionBias, positionEmbedding, keyPaddingMask };
    });
    features.dispose();
    const { hidden, ...shared } = embedded;
    return { hidden, context: { ...shared, relativeIndex, imageGrid: { rows, cols }, textLength } };
  }

  /** Layer `l` (§4.8) on the joint sequence `[1, N, d]`, with bias `Aabs + R_txt_l + R_img_l` (§4.6). */
  layer(l: number, x: Tensor, context: EncoderContext): Tensor {
    const { backend } = this;
    const eps = this.config.layerNormEps;
    const w = this.weights.layers[l];
    if (!w) throw new Error(`encoder: layer ${l} does not exist (the encoder has ${this.layerCount})`);
    return backend.tidy(() => {
      const relative = relativeBias(backend, w.relativeBiasTable, context.relativeIndex);
      const bias = backend.add(context.absolutePositionBias, relative);
      const h = layerNorm(backend, x, w.selfAttnLayerNorm, eps);
      const attended = attentionOutput(
        backend,
        w.selfAttn,
        linear(backend, h, w.selfAttn.q),
        linear(backend, h, w.selfAttn.k),
        linear(backend, h, w.selfAttn.v),
        { heads: this.heads, scale: this.scale, bias, keyPaddingMask: context.keyPaddingMask },
      );
      const afterAttention = backend.add(x, layerNorm(backend, attended, w.selfAttnMidLayerNorm, eps));
      return feedForwardSublayer(backend, afterAttention, w.finalLayerNorm, w.ffn, eps);
    });
  }

  /** §4.9 the encoder's final LayerNorm. */
  finish(x: Tensor): Tensor {
    return layerNorm(this.backend, x, this.weights.layerNorm, this.config.layerNormEps);
  }

  /** The full forward pass: embed, every layer, final LayerNorm. */
  encode(pixels: Tensor, inputIds: ArrayLike<number>): EncoderOutput {
    const { hidden, context } = this.embed(pixels, inputIds);
    const hiddenStates = [hidden];
    for (let l = 0; l < this.layerCount; l++) hiddenStates.push(this.layer(l, hiddenStates[l]!, context));
    const lastHiddenState = this.finish(hiddenStates[this.layerCount]!);
    context.absolutePositionBias.dispose();
    const { positionEmbedding, keyPaddingMask, imageGrid, textLength } = context;
    return {
      hiddenStates,
      lastHiddenState,
      positionEmbedding,
      keyPaddingMask,
      imageGrid,
      textLength,
      dispose: () => [...hiddenStates, lastHiddenState, positionEmbedding, keyPaddingMask].forEach((t) => t.dispose()),
    };
  }
}
