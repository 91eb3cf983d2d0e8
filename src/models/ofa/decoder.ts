/**
 * The OFA decoder (ofa-arch.md §5): token embeddings with their own LayerNorm, self-attention
 * with an absolute + relative position bias and a causal mask, cross-attention to the encoder
 * output with an absolute position bias, pre-norm NormFormer layers, a final LayerNorm and the
 * output projection tied to the shared token table.
 *
 * Two drivers share the layer code: `decodeFull` (teacher forcing, all positions at once, no
 * cache) and `DecodingSession` (one token per step for a batch of B sequences — beams — with a
 * key/value cache, §5.5). The sequences attend to an encoder output of one or more samples (a
 * batch of requests); each sequence reads its sample's memory, which is never copied per beam: a
 * memory of one sample is shared through the attention op's batch-1 key/value sharing, and the
 * sequences of several samples attend as query rows of their sample (`attendMemory`). MuE's cache
 * copying may have a sequence attend to another layer's cross keys, see `LayerCache`. Like the encoder,
 * each pass is `embed` → `layer(l, …)` per layer → `finish`, so that a driver may stop early.
 */
import type { Backend } from '../../backend/backend.js';
import type { Tensor } from '../../tensor.js';
import { type OfaConfig, attentionScale, checkTokenIds } from './config.js';
import {
  type EncoderOutput,
  attentionOutput,
  feedForwardSublayer,
  layerNorm,
  linear,
  positionBias,
  positionKeys,
  positionQueries,
  relativeBias,
} from './encoder.js';
import { type PositionTables, checkTextLength } from './positions.js';
import type { DecoderWeights } from './weights.js';

/** What the decoder keeps of one encoder output: computed once, shared by every step and sequence. */
export interface EncoderMemory {
  /** Per layer, the cross-attention keys and values `[S, N, d]` of the encoder output's S samples (§5.3). */
  crossKeys: Tensor[];
  crossValues: Tensor[];
  /** `[H, N, dh]`: `cross_pos_k_linear` of the encoder's position vectors (§5.2, not re-normed). */
  crossPositionKeys: Tensor;
  /** i32 `[S, N]`, the encoder's padding mask (borrowed from the encoder output). */
  keyPaddingMask: Tensor;
  /** Host copy of `keyPaddingMask`, `[S·N]`. */
  keyPadding: Int32Array;
  dispose(): void;
}

/** The position biases of one pass, for queries at positions `Tk − Tq … Tk − 1` (§5.2). */
export interface DecoderPass {
  /** `[H, Tq, Tk]`: `(s·Qs)·Ksᵀ` of the decoder positions. */
  selfPositionBias: Tensor;
  /** i32 `[Tq, Tk]` rows of each layer's 1-D relative table (cached per shape, not owned). */
  selfRelativeIndex: Tensor;
  /** `[H, Tq, N]`: `(s·Qc)·Kcᵀ` against the encoder positions. */
  crossPositionBias: Tensor;
}

/** Keys and values of one attention, `[B, T, d]`. */
export interface KeyValues {
  keys: Tensor;
  values: Tensor;
}

/** One layer's self-attention keys and values `[B, t, d]` for the tokens seen so far. */
export type SelfAttentionCache = KeyValues;

/**
 * What one layer attends to in a cached step besides this step's own tokens.
 */
export interface LayerCache {
  /** The self-attention keys and values of the earlier tokens; none before the first step. */
  self?: SelfAttentionCache;
  /**
   * Per sequence, the decoder layer whose cross-attention keys and values (the encoder memory's
   * `[1, N, d]`) it attends to: the layer itself, unless MuE's cache copying gave it an earlier
   * layer's (src/mue/decoder-exits.ts). Cross keys are a function of the layer, so naming the
   * layer is the copy: no tensor is copied, and sequences that name one layer share its keys.
   */
  crossLayers: readonly number[];
  /**
   * Per sequence, the sample of the encoder memory it attends to. Default: sequence b reads sample
   * b, or the only one.
   */
  samples?: readonly number[];
}

export interface DecoderOutput {
  /** `[B, T, d]`: 0 = the embedding output, l = after layer l (before the final LayerNorm). */
  hiddenStates: Tensor[];
  /** `[B, T, d]` after the final LayerNorm. */
  lastHiddenState: Tensor;
  /** `[B, T, V]`. */
  logits: Tensor;
  dispose(): void;
}

function disposePass(pass: DecoderPass): void {
  pass.selfPositionBias.dispose();
  pass.crossPositionBias.dispose();
}

export class OfaDecoder {
  readonly heads: number;
  readonly scale: number;

  constructor(
    readonly backend: Backend,
    readonly config: OfaConfig,
    private readonly weights: DecoderWeights,
    readonly positions: PositionTables,
  ) {
    this.heads = config.decoderAttentionHeads;
    this.scale = attentionScale(config, this.heads);
  }

  get layerCount(): number {
    return this.weights.layers.length;
  }

  /** Projects the encoder output once into every layer's cross-attention keys and values. */
  memory(encoderOutput: EncoderOutput): EncoderMemory {
    const { backend, weights } = this;
    const [, n, d] = encoderOutput.positionEmbedding.shape as [number, number, number];
    const memory = backend.tidy(() => ({
      crossKeys: weights.layers.map((w) => linear(backend, encoderOutput.lastHiddenState, w.crossAttn.k)),
      crossValues: weights.layers.map((w) => linear(backend, encoderOutput.lastHiddenState, w.crossAttn.v)),
      crossPositionKeys: positionKeys(
        backend,
        encoderOutput.positionEmbedding.reshape([n, d]),
        weights.crossPosKLinear,
        this.heads,
      ),
    }));
    return {
      ...memory,
      keyPaddingMask: encoderOutput.keyPaddingMask,
      keyPadding: encoderOutput.keyPadding,
      dispose: () => [...memory.crossKeys, ...memory.crossValues, memory.crossPositionKeys].forEach((t) => t.dispose()),
    };
  }

  /**
   * The memory of samples `samples` only (in that order), for a batch whose other samples are
   * done: their rows of every layer's keys and values and of the padding mask. Takes ownership of
   * `memory` (freed; the position keys move to the result).
   */
  memorySamples(memory: EncoderMemory, samples: readonly number[]): EncoderMemory {
    const { backend } = this;
    const [count, length, width] = memory.crossKeys[0]!.shape as [number, number, number];
    const rows = (t: Tensor, ids: Tensor): Tensor => backend.gather(t.reshape([count, length * width]), ids).reshape([samples.length, length, width]);
    const keyPadding = new Int32Array(samples.length * length);
    samples.forEach((sample, i) => keyPadding.set(memory.keyPadding.subarray(sample * length, (sample + 1) * length), i * length));
    const picked = backend.tidy(() => {
      const ids = backend.upload(Int32Array.from(samples), [samples.length], 'i32');
      return {
        crossKeys: memory.crossKeys.map((t) => rows(t, ids)),
        crossValues: memory.crossValues.map((t) => rows(t, ids)),
        keyPaddingMask: backend.upload(keyPadding, [samples.length, length], 'i32'),
      };
    });
    for (const t of [...memory.crossKeys, ...memory.crossValues]) t.dispose();
    const { crossPositionKeys } = memory;
    return {
      ...picked,
      crossPositionKeys,
      keyPadding,
      dispose: () => [...picked.crossKeys, ...picked.crossValues, crossPositionKeys, picked.keyPaddingMask].forEach((t) => t.dispose()),
    };
  }

  /** §5.1: `layernorm_embedding(embed_tokens[y])` for ids `[B, T]` given row-major → `[B, T, d]`. */
  embed(ids: ArrayLike<number>, batch: number, length: number): Tensor {
    checkTokenIds(this.config, ids, 'decoder input');
    const { backend, weights } = this;
    return backend.tidy(() => {
      const tokens = backend.upload(Int32Array.from(ids), [batch, length], 'i32');
      const embedded = backend.gather(weights.embedTokens, tokens);
      return layerNorm(backend, embedded, weights.layernormEmbedding, this.config.layerNormEps);
    });
  }

  /** `Pd[t] = pos_ln(embed_positions[t])` for `t = start … start + length − 1`, `[length, d]` (§5.2). */
  decoderPositions(start: number, length: number): Tensor {
    const ids = this.positions.positionRange(start, length);
    const { backend, weights } = this;
    return backend.tidy(() =>
      layerNorm(backend, backend.gather(weights.embedPositions, ids), weights.posLn, this.config.layerNormEps),
    );
  }

  /**
   * Biases for queries at the `Pd` rows given, against self-attention keys `selfKeys [H, Tk, dh]`
   * and the encoder positions in `memory`.
   */
  pass(queryPositions: Tensor, selfKeys: Tensor, memory: EncoderMemory): DecoderPass {
    const { backend, weights, heads, scale } = this;
    const [queryLength] = queryPositions.shape as [number];
    const keyLength = selfKeys.shape[1]!;
    const selfRelativeIndex = this.positions.decoderRelativeIndex(queryLength, keyLength);
    const biases = backend.tidy(() => ({
      selfPositionBias: positionBias(
        backend,
        positionQueries(backend, queryPositions, weights.selfPosQLinear, heads, scale),
        selfKeys,
      ),
      crossPositionBias: positionBias(
        backend,
        positionQueries(backend, queryPositions, weights.crossPosQLinear, heads, scale),
        memory.crossPositionKeys,
      ),
    }));
    return { ...biases, selfRelativeIndex };
  }

  /** `self_pos_k_linear` of decoder positions, `[H, T, dh]`. */
  selfPositionKeys(positions: Tensor): Tensor {
    const { backend } = this;
    return backend.tidy(() => positionKeys(backend, positions, this.weights.selfPosKLinear, this.heads));
  }

  /**
   * Layer `l` (§5.3) on `x [B, Tq, d]` without a cache: the queries attend to themselves
   * (causally) and to the encoder memory.
   */
  layer(l: number, x: Tensor, pass: DecoderPass, memory: EncoderMemory, samples?: readonly number[]): Tensor {
    const crossLayers = Array<number>(x.shape[0]!).fill(l);
    return this.#layer(l, x, pass, memory, { crossLayers, samples }, false).hidden;
  }

  /**
   * Layer `l` on one step's tokens `x [B, Tq, d]` against `cache`: this step's keys and values
   * are appended to the cached ones and the queries attend to the whole sequence. Returns the
   * output and the extended self-attention keys and values `[B, t + Tq, d]`; `cache` is left as
   * it is (the caller stores the result, e.g. `DecodingSession.layer`).
   */
  cachedLayer(
    l: number,
    x: Tensor,
    pass: DecoderPass,
    memory: EncoderMemory,
    cache: LayerCache,
  ): { hidden: Tensor; self: SelfAttentionCache } {
    const { hidden, self } = this.#layer(l, x, pass, memory, cache, true);
    return { hidden, self: self! };
  }

  /**
   * The self-attention keys and values `[B, T, d]` that layer `l` would compute from `x`
   * (`self_attn_layer_norm`, then the k and v projections) — the same ops as in the layer.
   */
  selfKeyValues(l: number, x: Tensor): SelfAttentionCache {
    const { backend } = this;
    const w = this.#layerWeights(l);
    return backend.tidy(() => {
      const h = layerNorm(backend, x, w.selfAttnLayerNorm, this.config.layerNormEps);
      return { keys: linear(backend, h, w.selfAttn.k), values: linear(backend, h, w.selfAttn.v) };
    });
  }

  #layerWeights(l: number): DecoderWeights['layers'][number] {
    const w = this.weights.layers[l];
    if (!w) throw new Error(`decoder: layer ${l} does not exist (the decoder has ${this.layerCount})`);
    return w;
  }

  #layer(
    l: number,
    x: Tensor,
    pass: DecoderPass,
    memory: EncoderMemory,
    cache: LayerCache,
    cached: boolean,
  ): { hidden: Tensor; self?: SelfAttentionCache } {
    const { backend, heads, scale } = this;
    const eps = this.config.layerNormEps;
    const w = this.#layerWeights(l);
    const previous = cache.self;
    // (`tidy` keeps the tensors of a flat result only.)
    const out: { hidden: Tensor; keys?: Tensor; values?: Tensor } = backend.tidy(() => {
      // Self-attention with Aself + Rtxt_l; causal also covers a cached step, whose single
      // query may see every key (the op aligns the last query with the last key).
      let h = layerNorm(backend, x, w.selfAttnLayerNorm, eps);
      const k = linear(backend, h, w.selfAttn.k);
      const v = linear(backend, h, w.selfAttn.v);
      const keys = previous ? backend.concat([previous.keys, k], 1) : k;
      const values = previous ? backend.concat([previous.values, v], 1) : v;
      h = attentionOutput(backend, w.selfAttn, linear(backend, h, w.selfAttn.q), keys, values, {
        heads,
        scale,
        bias: relativeBias(backend, w.tokenRelativeTable, pass.selfRelativeIndex, pass.selfPositionBias),
        causal: true,
      });
      const afterSelf = layerNorm(backend, h, w.selfAttnMidLayerNorm, eps, x);
      // Cross-attention to each sequence's sample of the encoder output with Across and the
      // encoder padding.
      h = layerNorm(backend, afterSelf, w.crossAttnLayerNorm, eps);
      const crossQueries = linear(backend, h, w.crossAttn.q);
      const crossOptions = { heads, scale, bias: pass.crossPositionBias };
      const samples = cache.samples ?? defaultSamples(x.shape[0]!, memory);
      const attended = attendByLayer(backend, crossQueries, cache.crossLayers, (q, layer, sequences) =>
        attendMemory(backend, q, sequences.map((b) => samples[b]!), memory, layer, crossOptions),
      );
      h = linear(backend, attended, w.crossAttn.out);
      const afterCross = layerNorm(backend, h, w.crossAttnMidLayerNorm, eps, afterSelf);
      const hidden = feedForwardSublayer(backend, afterCross, w.finalLayerNorm, w.ffn, eps);
      return cached ? { hidden, keys, values } : { hidden };
    });
    return out.keys && out.values ? { hidden: out.hidden, self: { keys: out.keys, values: out.values } } : out;
  }

  /** §5.4: the final LayerNorm and the tied output projection `x·embed_tokensᵀ`, `[B, T, V]`. */
  finish(x: Tensor): { lastHiddenState: Tensor; logits: Tensor } {
    const { backend, weights } = this;
    return backend.tidy(() => {
      const lastHiddenState = layerNorm(backend, x, weights.layerNorm, this.config.layerNormEps);
      const logits = backend.matmul(lastHiddenState, weights.outputProjection, { transposeB: true });
      return { lastHiddenState, logits };
    });
  }

  /**
   * `finish` of `x [B, T, d]` at every position, or at one position per row (`positions[b]`,
   * giving `[B, 1, ·]`).
   */
  finishAt(x: Tensor, positions?: readonly number[]): { lastHiddenState: Tensor; logits: Tensor } {
    if (!positions) return this.finish(x);
    const { backend } = this;
    const [batch, length, width] = x.shape as [number, number, number];
    if (positions.length !== batch || positions.some((t) => !Number.isInteger(t) || t < 0 || t >= length)) {
      throw new Error(`decoder: logitsAt needs one position in 0..${length - 1} per row (${batch}), got [${positions.join(', ')}]`);
    }
    const picked = backend.tidy(() => {
      const rows = backend.upload(Int32Array.from(positions, (t, b) => b * length + t), [batch, 1], 'i32');
      return backend.gather(x.reshape([batch * length, width]), rows);
    });
    const output = this.finish(picked);
    picked.dispose();
    return output;
  }

  /**
   * Teacher-forced pass over `ids` (B rows, each starting with BOS), no cache; row b reads sample b
   * of the encoder output, or its only one. Rows of different lengths are right-padded with the
   * pad id (`padRows`): the causal mask keeps the padding after a row's end from reaching its
   * positions, whose outputs equal the row's alone.
   *
   * `logitsAt` (one position per row) reads out those positions only: `lastHiddenState` and
   * `logits` are then `[B, 1, ·]`. (The output projection onto the whole vocabulary costs more than
   * a short pass's layers; a read-out such as entailment's needs one position.)
   */
  decodeFull(encoderOutput: EncoderOutput, ids: readonly (readonly number[])[], options: { logitsAt?: readonly number[] } = {}): DecoderOutput {
    const { flat, batch, length } = padRows(this.config, ids, 'decoder: decodeFull');
    const memory = this.memory(encoderOutput);
    const positions = this.decoderPositions(0, length);
    const selfKeys = this.selfPositionKeys(positions);
    const pass = this.pass(positions, selfKeys, memory);
    positions.dispose();
    selfKeys.dispose();

    const hiddenStates = [this.embed(flat, batch, length)];
    for (let l = 0; l < this.layerCount; l++) hiddenStates.push(this.layer(l, hiddenStates[l]!, pass, memory));
    const { lastHiddenState, logits } = this.finishAt(hiddenStates[this.layerCount]!, options.logitsAt);
    disposePass(pass);
    memory.dispose();
    return {
      hiddenStates,
      lastHiddenState,
      logits,
      dispose: () => [...hiddenStates, lastHiddenState, logits].forEach((t) => t.dispose()),
    };
  }
}

/** One cached step in progress: the embedded tokens and this step's biases. */
export interface DecoderStep {
  /** `[B, 1, d]`, the embedding output of this step's tokens. */
  hidden: Tensor;
  pass: DecoderPass;
}

/**
 * Row `b·T + j` of a `[B·T, d]` view of `[B, T, d]` is token j of sequence b: the rows of
 * `sequences` (in that order), to gather `[sequences.length, T, d]` in one op.
 */
function sequenceRows(sequences: readonly number[], tokens: number): Int32Array {
  return Int32Array.from({ length: sequences.length * tokens }, (_, i) => sequences[Math.floor(i / tokens)]! * tokens + (i % tokens));
}

/** `[B, T, d]` → `[sequences.length, T, d]`: the given sequences' rows, in that order (one gather). */
export function gatherSequences(backend: Backend, x: Tensor, sequences: readonly number[]): Tensor {
  const [batch, tokens, width] = x.shape as [number, number, number];
  return backend.tidy(() => {
    const ids = backend.upload(sequenceRows(sequences, tokens), [sequences.length * tokens], 'i32');
    return backend.gather(x.reshape([batch * tokens, width]), ids).reshape([sequences.length, tokens, width]);
  });
}

/**
 * Attention of queries `q [B, T, d]` in groups of the sequences that name one layer in `layers`
 * (one per sequence): `attend(q of the group, layer, its sequences)` per group, the outputs put
 * back in sequence order. One group (the usual case) is one call on `q` itself.
 */
function attendByLayer(
  backend: Backend,
  q: Tensor,
  layers: readonly number[],
  attend: (q: Tensor, layer: number, sequences: readonly number[]) => Tensor,
): Tensor {
  const groups = new Map<number, number[]>();
  layers.forEach((layer, b) => groups.set(layer, [...(groups.get(layer) ?? []), b]));
  if (groups.size === 1) return attend(q, layers[0]!, layers.map((_, b) => b));
  const outputs = [...groups].map(([layer, sequences]) => attend(gatherSequences(backend, q, sequences), layer, sequences));
  // The groups' outputs are in group order; sequence b is at its place in that order.
  const order = [...groups.values()].flat();
  const inverse = Array<number>(layers.length);
  order.forEach((b, place) => (inverse[b] = place));
  return gatherSequences(backend, backend.concat(outputs, 0), inverse);
}

/** Sequence b reads sample b of a memory of B samples, else the memory's only sample. */
function defaultSamples(sequences: number, memory: EncoderMemory): number[] {
  const samples = memory.crossKeys[0]!.shape[0]!;
  if (samples !== 1 && samples !== sequences) {
    throw new Error(`decoder: ${sequences} sequences cannot read an encoder output of ${samples} samples without saying which`);
  }
  return Array.from({ length: sequences }, (_, b) => (samples === 1 ? 0 : b));
}

/**
 * Cross-attention of query rows `q [R, Tq, d]` to layer `layer`'s keys and values of the encoder
 * memory (`[S, N, d]`), row r reading sample `samples[r]`. The attention op pairs each query
 * sample with the key sample of the same index (or shares a key batch of 1), so:
 *
 * - at most one row per sample (a teacher-forced pass over some of the samples): the rows' samples
 *   of the memory are gathered (their copy costs what one query row's attention reads);
 * - several (beams): the rows of each sample become query positions of one attention sample,
 *   `[S, k·Tq, d]` with k the most rows any sample has (a sample with fewer repeats one of its
 *   rows, whose output is dropped), the position bias `[H, Tq, N]` repeated k times. Beams are the
 *   usual case — k rows per sample, in sample order — where no row moves and this is a reshape;
 *   the memory is not copied per beam.
 */
function attendMemory(
  backend: Backend,
  q: Tensor,
  samples: readonly number[],
  memory: EncoderMemory,
  layer: number,
  options: { heads: number; scale: number; bias: Tensor },
): Tensor {
  const keys = memory.crossKeys[layer]!;
  const values = memory.crossValues[layer]!;
  const { keyPaddingMask } = memory;
  const sampleCount = keys.shape[0]!;
  if (sampleCount === 1) return backend.attention(q, keys, values, { ...options, keyPaddingMask });
  const [rows, tokens, width] = q.shape as [number, number, number];
  const rowsOfSample = Array.from({ length: sampleCount }, () => [] as number[]);
  samples.forEach((sample, r) => rowsOfSample[sample]!.push(r));
  const k = Math.max(...rowsOfSample.map((rs) => rs.length));
  if (k === 1 && rows < sampleCount) {
    const length = keys.shape[1]!;
    const padding = new Int32Array(rows * length);
    samples.forEach((sample, r) => padding.set(memory.keyPadding.subarray(sample * length, (sample + 1) * length), r * length));
    return backend.attention(q, gatherSequences(backend, keys, samples), gatherSequences(backend, values, samples), {
      ...options,
      keyPaddingMask: backend.upload(padding, [rows, length], 'i32'),
    });
  }
  // Slot j·k + i holds sample j's i-th row (or a repeat of one of its rows, or of row 0 for a sample without rows).
  const slots = rowsOfSample.flatMap((rs) => Array.from({ length: k }, (_, i) => rs[Math.min(i, rs.length - 1)] ?? 0));
  const inPlace = slots.length === rows && slots.every((r, j) => r === j);
  const laidOut = (inPlace ? q : gatherSequences(backend, q, slots)).reshape([sampleCount, k * tokens, width]);
  const bias = k === 1 ? options.bias : backend.concat(Array<Tensor>(k).fill(options.bias), 1);
  const attended = backend.attention(laidOut, keys, values, { ...options, bias, keyPaddingMask }).reshape([sampleCount * k, tokens, width]);
  if (inPlace) return attended;
  const slotOf = Array<number>(rows);
  rowsOfSample.forEach((rs, j) => rs.forEach((r, i) => (slotOf[r] = j * k + i)));
  return gatherSequences(backend, attended, slotOf);
}

/**
 * Rows of token ids right-padded with the pad id to the longest: `[B·T]` row-major. Checks that
 * there is a row, that none is empty, and that T fits the model's positions.
 */
export function padRows(config: OfaConfig, ids: readonly (readonly number[])[], what: string): { flat: Int32Array; batch: number; length: number } {
  const batch = ids.length;
  if (batch === 0 || ids.some((row) => row.length === 0)) throw new Error(`${what}: needs non-empty sequences`);
  const length = Math.max(...ids.map((row) => row.length));
  checkTextLength(config, length, 'decoder sequence');
  const flat = new Int32Array(batch * length).fill(config.padTokenId);
  ids.forEach((row, b) => flat.set(row, b * length));
  return { flat, batch, length };
}

/** Positions whose biases a decoding session computes at first: OFA's captions take 17 steps. */
const FIRST_POSITION_BIASES = 32;

/**
 * Incremental decoding (§5.5) of sequences attending to one encoder output: `beams` sequences per
 * sample of it (a batch of S requests gives S·beams sequences, sample-major). Each step feeds one
 * token per sequence and returns the logits of the next; the self-attention keys and values of
 * earlier tokens are cached per layer, the cross-attention ones are computed once. Beam search may
 * reorder the sequences and drop those of finished samples (`reorder`); the memory of a sample no
 * sequence reads any more is then dropped too.
 *
 * The cache of each layer is addressable (`cacheOf`, `setCache`) so that an early-exit driver
 * (src/mue/decoder-exits.ts) can fill the caches of layers a sequence skipped, its self-attention
 * keys and values and the layer whose cross-attention keys it reads (`LayerCache.crossLayers`).
 */
export class DecodingSession {
  readonly #decoder: OfaDecoder;
  #memory: EncoderMemory;
  /** Per sequence, its sample of the memory. */
  #samples: number[];
  /** Per sequence, its sample's index in the encoder output the session started with. */
  #origins: number[];
  readonly #self: (SelfAttentionCache | undefined)[];
  /** Per layer and sequence, the layer whose cross-attention keys it reads. */
  readonly #crossLayers: number[][];
  /**
   * The position biases (§5.2) of positions 0 … P − 1: self `[H, P, P]`, cross `[H, P, N]`. They
   * depend on positions only, so they are computed for the first step and again for twice as many
   * positions when the sequences outgrow them; each step slices out its query row (3 dispatches
   * instead of the 14 that compute a row).
   */
  #positionBiases: { positions: number; self: Tensor; cross: Tensor } | undefined;
  #batch: number;
  #length = 0;

  constructor(decoder: OfaDecoder, encoderOutput: EncoderOutput, beams: number) {
    if (!Number.isInteger(beams) || beams < 1) throw new Error(`decoding session: beams must be ≥ 1, got ${beams}`);
    const samples = encoderOutput.lastHiddenState.shape[0]!;
    const batch = samples * beams;
    this.#decoder = decoder;
    this.#memory = decoder.memory(encoderOutput);
    this.#samples = Array.from({ length: batch }, (_, b) => Math.floor(b / beams));
    this.#origins = [...this.#samples];
    this.#self = Array.from({ length: decoder.layerCount }, () => undefined);
    this.#crossLayers = Array.from({ length: decoder.layerCount }, (_, l) => Array<number>(batch).fill(l));
    this.#batch = batch;
  }

  get decoder(): OfaDecoder {
    return this.#decoder;
  }

  /** Number of sequences (the beams of every sample). */
  get batch(): number {
    return this.#batch;
  }

  /** Per sequence, the index of its sample in the encoder output the session started with. */
  get sequenceSamples(): readonly number[] {
    return this.#origins;
  }

  /** Tokens fed so far per sequence; the next token sits at this position. */
  get length(): number {
    return this.#length;
  }

  /**
   * Embeds one token per sequence at position `length` and builds that query row's biases. A step
   * is `begin`, then `layer` for each layer run, then `end`; `step` does all three.
   */
  begin(tokens: readonly number[]): DecoderStep {
    if (tokens.length !== this.#batch) {
      throw new Error(`decoding session: expected ${this.#batch} tokens (one per sequence), got ${tokens.length}`);
    }
    const decoder = this.#decoder;
    const t = this.#length;
    checkTextLength(decoder.config, t + 1, 'decoder sequence');
    const hidden = decoder.embed(tokens, this.#batch, 1);
    const biases = this.#positionBiasesFor(t);
    const { backend } = decoder;
    const pass = backend.tidy(() => ({
      selfPositionBias: backend.slice(backend.slice(biases.self, 1, t, t + 1), 2, 0, t + 1),
      crossPositionBias: backend.slice(biases.cross, 1, t, t + 1),
    }));
    return { hidden, pass: { ...pass, selfRelativeIndex: decoder.positions.decoderRelativeIndex(1, t + 1) } };
  }

  /** `#positionBiases`, covering position `t`. */
  #positionBiasesFor(t: number): { self: Tensor; cross: Tensor } {
    const known = this.#positionBiases;
    if (known && t < known.positions) return known;
    const decoder = this.#decoder;
    const positions = Math.min(decoder.config.maxPositions, Math.max(FIRST_POSITION_BIASES, 2 * (known?.positions ?? 0), t + 1));
    const rows = decoder.decoderPositions(0, positions);
    const keys = decoder.selfPositionKeys(rows);
    const pass = decoder.pass(rows, keys, this.#memory);
    rows.dispose();
    keys.dispose();
    known?.self.dispose();
    known?.cross.dispose();
    this.#positionBiases = { positions, self: pass.selfPositionBias, cross: pass.crossPositionBias };
    return this.#positionBiases;
  }

  /** Layer `l` for this step, appending its keys and values to the layer's cache. */
  layer(l: number, x: Tensor, step: DecoderStep): Tensor {
    const { hidden, self } = this.computeLayer(l, x, step);
    this.setCache(l, { self });
    return hidden;
  }

  /**
   * Layer `l` for this step against the layer's cache, without storing anything: returns the
   * output and the layer's self-attention keys and values extended by this step's (`[B, t + 1, d]`,
   * owned by the caller, e.g. for `setCache`). With `sequences`, `x` holds those sequences only
   * (`[A, 1, d]`; MuE runs a layer only for the sequences that have not exited) and so do the
   * results.
   */
  computeLayer(l: number, x: Tensor, step: DecoderStep, sequences?: readonly number[]): { hidden: Tensor; self: SelfAttentionCache } {
    const cache = this.cacheOf(l);
    if (!sequences || sequences.length === this.#batch) return this.#decoder.cachedLayer(l, x, step.pass, this.#memory, cache);
    const backend = this.#decoder.backend;
    const self = cache.self && {
      keys: gatherSequences(backend, cache.self.keys, sequences),
      values: gatherSequences(backend, cache.self.values, sequences),
    };
    const some = { self, crossLayers: sequences.map((b) => cache.crossLayers[b]!), samples: sequences.map((b) => this.#samples[b]!) };
    const out = this.#decoder.cachedLayer(l, x, step.pass, this.#memory, some);
    self?.keys.dispose();
    self?.values.dispose();
    return out;
  }

  /**
   * Layer `l`'s cache as it stands (borrowed: the session owns it). Between `begin` and `end`,
   * layers already run this step hold `length + 1` tokens, the others `length`.
   */
  cacheOf(l: number): LayerCache {
    this.#checkLayer(l);
    return { self: this.#self[l], crossLayers: this.#crossLayers[l]!, samples: this.#samples };
  }

  /**
   * Replaces parts of layer `l`'s cache; the session takes ownership of the tensors given and
   * frees the ones they replace. `self`: `[B, t, d]`; `crossLayers`: one layer ≤ `l` per sequence.
   */
  setCache(l: number, cache: Partial<LayerCache>): void {
    this.#checkLayer(l);
    if (cache.self) {
      const old = this.#self[l];
      this.#self[l] = cache.self;
      if (old && old.keys !== cache.self.keys) old.keys.dispose();
      if (old && old.values !== cache.self.values) old.values.dispose();
    }
    if (cache.crossLayers) {
      const layers = cache.crossLayers;
      if (layers.length !== this.#batch || !layers.every((c) => Number.isInteger(c) && c >= 0 && c <= l)) {
        throw new Error(`decoding session: cross layers of layer ${l} must be ${this.#batch} layers from 0 to ${l}, got [${layers.join(', ')}]`);
      }
      this.#crossLayers[l] = [...layers];
    }
  }

  /** Ends the step: final LayerNorm and output projection of `x [B, 1, d]` → `[B, d]` and logits `[B, V]`. */
  end(x: Tensor, step: DecoderStep): { lastHiddenState: Tensor; logits: Tensor } {
    const [batch, , width] = x.shape as [number, number, number];
    const output = this.#decoder.finish(x.reshape([batch, width]));
    disposePass(step.pass);
    this.#length++;
    return output;
  }

  /** One full step: the next token of each sequence → logits `[B, V]` for the token after it. */
  step(tokens: readonly number[]): Tensor {
    const step = this.begin(tokens);
    let x = step.hidden;
    for (let l = 0; l < this.#decoder.layerCount; l++) {
      const next = this.layer(l, x, step);
      x.dispose();
      x = next;
    }
    const { lastHiddenState, logits } = this.end(x, step);
    x.dispose();
    lastHiddenState.dispose();
    return logits;
  }

  /**
   * Beam search: sequence b continues sequence `indices[b]` (the batch may change size). Reorders
   * the self-attention caches, the cross layers and the samples of the sequences, and drops the
   * memory of samples no sequence continues.
   */
  reorder(indices: readonly number[]): void {
    for (const index of indices) {
      if (!Number.isInteger(index) || index < 0 || index >= this.#batch) {
        throw new Error(`decoding session: reorder index ${index} is outside the batch of ${this.#batch}`);
      }
    }
    const backend = this.#decoder.backend;
    // Gathering the rows of sequences `indices` yields the reordered `[B', t, d]` cache in one op per tensor.
    const length = this.#length;
    const rowIds = backend.upload(sequenceRows(indices, length), [indices.length, length], 'i32');
    const pick = (t: Tensor, ids: Tensor): Tensor => {
      const [batch, tokens, width] = t.shape as [number, number, number];
      const picked = backend.gather(t.reshape([batch * tokens, width]), ids);
      t.dispose();
      return picked;
    };
    this.#self.forEach((entry, l) => {
      if (entry) this.#self[l] = { keys: pick(entry.keys, rowIds), values: pick(entry.values, rowIds) };
    });
    rowIds.dispose();
    this.#crossLayers.forEach((layers, l) => (this.#crossLayers[l] = indices.map((i) => layers[i]!)));
    this.#batch = indices.length;
    this.#origins = indices.map((i) => this.#origins[i]!);
    const samples = indices.map((i) => this.#samples[i]!);
    const live = [...new Set(samples)].sort((a, b) => a - b);
    if (live.length < this.#memory.crossKeys[0]!.shape[0]!) {
      this.#memory = this.#decoder.memorySamples(this.#memory, live);
      const renumbered = new Map(live.map((sample, i) => [sample, i]));
      this.#samples = samples.map((sample) => renumbered.get(sample)!);
    } else {
      this.#samples = samples;
    }
  }

  dispose(): void {
    for (const entry of this.#self) {
      entry?.keys.dispose();
      entry?.values.dispose();
    }
    this.#positionBiases?.self.dispose();
    this.#positionBiases?.cross.dispose();
    this.#memory.dispose();
  }

  #checkLayer(l: number): void {
    if (!Number.isInteger(l) || l < 0 || l >= this.#decoder.layerCount) {
      throw new Error(`decoding session: layer ${l} does not exist (the decoder has ${this.#decoder.layerCount})`);
    }
  }
}
