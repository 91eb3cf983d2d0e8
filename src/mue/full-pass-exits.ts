/**
 * MuE's decoder exits in a full teacher-forced pass (mue-spec.md §3, "and in a full
 * teacher-forced pass"): what the authors' SNLI-VE evaluation runs. The decoder reads the whole
 * prompt `[BOS] + prompt` at once (no cache, no generation), and after every layer one decision
 * covers every position:
 *
 *     x_i = decoder_layer_i(x_{i−1}, encoder_out)          # [B, T, d], all T positions
 *     sim = cos(flatten(x_i), flatten(x_{i−1}))             # one scalar over T × d (per sample)
 *     if sim > threshold: stop; x = x_i
 *     logits = output_projection(final_layer_norm(x))
 *
 * There is no cache to fill (nothing is decoded after the pass) and no threshold schedule: the
 * schedule belongs to the sequence generator, which a full pass does not use, so `threshold` is
 * `decoder_thres` as given (0.7 in the authors' SNLI-VE script). A threshold of 1 or more never
 * exits, and the pass then equals `OfaDecoder.decodeFull` exactly.
 *
 * Sequences of different lengths are right-padded (as in `decodeFull`); the padded positions are
 * zeroed in every state, so that a sequence's similarity — and its decision — is its own alone.
 */
import type { EncoderOutput } from '../models/ofa/encoder.js';
import { type OfaDecoder, padRows } from '../models/ofa/decoder.js';
import type { OfaModel } from '../models/ofa/model.js';
import type { Tensor } from '../tensor.js';
import { type DecisionScope, type DecisionSite, ExitTracker, paddingKeep } from './exit.js';
import { type StreamReport, readStreamReport } from './report.js';

export interface FullPassExitOptions {
  /** `decoder_thres`; 1 or more never exits. */
  threshold: number;
  /** Default `'device'`. */
  site?: DecisionSite;
  /** Default `'per-sample'` (each sequence's T × d flattened on its own); `'batch'`: all at once. */
  scope?: DecisionScope;
  /** The report's stream name (default `'prompt'`). */
  stream?: string;
  /** One position per sequence: read out only these (as `OfaDecoder.decodeFull`'s `logitsAt`). */
  logitsAt?: readonly number[];
}

export interface FullPassExitResult {
  /** `[B, T, d]` (`[B, 1, d]` with `logitsAt`): the final LayerNorm of the exit state. */
  lastHiddenState: Tensor;
  /** `[B, T, V]` (`[B, 1, V]` with `logitsAt`). */
  logits: Tensor;
  /** The pass's decisions: layers run per sequence, one similarity per layer run (tokens = T, the longest). */
  report: StreamReport;
  dispose(): void;
}

/**
 * Teacher-forced decoding of B sequences `ids` (each starting with BOS) with MuE's decoder exits;
 * the counterpart of `OfaDecoder.decodeFull`.
 */
export async function decodeFullWithExits(
  source: OfaModel | OfaDecoder,
  encoderOutput: EncoderOutput,
  ids: readonly (readonly number[])[],
  options: FullPassExitOptions,
): Promise<FullPassExitResult> {
  const decoder = 'decoder' in source ? source.decoder : source;
  const { backend } = decoder;
  if (typeof options.threshold !== 'number' || Number.isNaN(options.threshold)) {
    throw new Error(`decodeFullWithExits: the threshold must be a number, got ${String(options.threshold)}`);
  }
  const { flat, batch, length } = padRows(decoder.config, ids, 'decodeFullWithExits');
  const scope = options.scope ?? 'per-sample';
  if (scope === 'batch' && ids.some((row) => row.length !== length)) {
    throw new Error("decodeFullWithExits: the 'batch' scope decides over all positions of all sequences, which must then be of one length");
  }
  // cos ≤ 1: a threshold of 1 or more never exits, not even when the similarity rounds above 1.
  const threshold = options.threshold < 1 ? options.threshold : Infinity;
  const d = decoder.config.dModel;
  const keep = paddingKeep(backend, Array.from(flat, (_, i) => (i % length < ids[Math.floor(i / length)]!.length ? 0 : 1)), d, [batch, length, d]);
  const tracker = new ExitTracker(backend, { threshold, site: options.site ?? 'device', scope, ...(keep && { keep }) });

  const memory = decoder.memory(encoderOutput);
  const positions = decoder.decoderPositions(0, length);
  const selfKeys = decoder.selfPositionKeys(positions);
  const pass = decoder.pass(positions, selfKeys, memory);
  positions.dispose();
  selfKeys.dispose();
  let x: Tensor | undefined;
  let finished: { lastHiddenState: Tensor; logits: Tensor } | undefined;
  try {
    x = decoder.embed(flat, batch, length);
    if (keep) {
      const embedded = x;
      x = backend.mul(embedded, keep);
      embedded.dispose();
    }
    for (let l = 0; l < decoder.layerCount && !tracker.finished; l++) {
      const next: Tensor = await tracker.step(l, x, (h, samples) => decoder.layer(l, h, pass, memory, samples));
      if (next !== x) x.dispose();
      x = next;
    }
    finished = decoder.finishAt(x, options.logitsAt);
    const report = await readStreamReport(options.stream ?? 'prompt', tracker, decoder.layerCount, length);
    const { lastHiddenState, logits } = finished;
    return { lastHiddenState, logits, report, dispose: () => [lastHiddenState, logits].forEach((t) => t.dispose()) };
  } catch (error) {
    finished?.lastHiddenState.dispose();
    finished?.logits.dispose();
    throw error;
  } finally {
    x?.dispose();
    tracker.dispose();
    keep?.dispose();
    pass.selfPositionBias.dispose();
    pass.crossPositionBias.dispose();
    memory.dispose();
  }
}
