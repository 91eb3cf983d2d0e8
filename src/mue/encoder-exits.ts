/**
 * MuE's encoder exits (mue-spec.md §2), and their extension to plain OFA's joint encoder (§6).
 *
 * **Decomposed encoder** (MuE checkpoints, §1): the image stream and the text stream pass through
 * the encoder's layers as two sequences; each has its own `ExitTracker` and threshold, so each
 * stream's layers are gated by its own decision:
 *
 *     h_i = layer_i(h_{i−1});  stop when cos(flatten(h_i), flatten(h_{i−1})) > threshold_of_stream
 *
 * The streams' outputs (their exit states) are concatenated, image first, and layer-normed by
 * `OfaEncoder.finishStreams`.
 *
 * **Joint encoder** (plain OFA, beyond the paper): the layers run on the whole sequence while
 * either modality is still going. After each layer each modality decides on its own token range
 * (image rows `0..Ni−1`, text rows `Ni..N−1`); a modality that has stopped is *frozen*: its tokens
 * keep their exit state, while the other modality's tokens go on attending to them:
 *
 *     next = concat(where(imageDone, prevImage, newImage), where(textDone, prevText, newText))
 *
 * Once both have stopped, the layer is skipped altogether (`unlessAll` on the two flags joined).
 * Each modality's decision is its own `ExitTracker`; the joint layer is computed once and each
 * tracker's layer is "my slice of it", so the exit rule lives in `exit.ts` only.
 *
 * **Where decisions are taken** (`site`): `'device'` records the whole forward pass (similarities,
 * comparisons, gates) in one submission, with no read-back until the reports are read after it;
 * `'host'` reads each decision back, decides in JavaScript (the readable reference) and runs
 * each later layer on the samples still going only (in the joint encoder: the samples of which
 * either modality goes on). Both give the same decisions and the same output, whose structure follows
 * `EncoderOutput`: a stream's state list ends at its exit layer, `hiddenStates` has
 * `max(layers run) + 1` entries. (In device mode the carried copies past an exit are computed on
 * the device and dropped once the reports have been read.)
 *
 * Thresholds above 1 never exit (cos ≤ 1), and then the output is the no-exit forward pass
 * exactly: the gates pass the states through `where` unchanged.
 */
import type { Backend } from '../backend/backend.js';
import type { EncoderMode } from '../models/ofa/config.js';
import {
  type EncoderBatch,
  type EncoderOutput,
  type EncoderStreams,
  type LayerContext,
  type OfaEncoder,
  disposeStreams,
} from '../models/ofa/encoder.js';
import type { OfaModel } from '../models/ofa/model.js';
import type { Tensor } from '../tensor.js';
import { type DecisionScope, type DecisionSite, ExitTracker, paddingKeep, selectSamples } from './exit.js';
import { type StreamReport, readStreamReport } from './report.js';

export interface EncoderExitOptions {
  /** The image stream's threshold (`img_thres`); > 1 never exits. */
  image: number;
  /** The text stream's threshold (`txt_thres`); > 1 never exits. */
  text: number;
  /** Where decisions are taken (default `'device'`: one submission, no read-back per layer). */
  site?: DecisionSite;
  /** Whose states a decision covers (default `'per-sample'`; the encoder runs batch 1, so both agree). */
  scope?: DecisionScope;
  /** The encoder layout to run (default: the model's config). */
  mode?: EncoderMode;
}

/**
 * What the exits need of an encoder: its step-by-step API (`OfaEncoder` has it). The forward pass
 * calls `embedBatch` (joint) or `embedStreamsBatch` (decomposed) once, then `layer` per layer and
 * stream.
 */
export type ExitEncoder = Pick<
  OfaEncoder,
  'layerCount' | 'mode' | 'embedBatch' | 'layer' | 'finish' | 'embedStreamsBatch' | 'finishStreams'
>;

export interface EncoderExitResult {
  output: EncoderOutput;
  /**
   * Decomposed encoder: `image` and `text`, each with its layers run and similarity trace.
   *
   * Joint encoder: `image` and `text` carry each modality's decisions (layers run = its exit
   * layer, the trace) with `tokens: 0`, because their layers are the joint stack's; a third
   * report, `joint` (tokens N, layers run = max over the modalities, no trace), carries the
   * compute, so that `exitReport` charges a frozen modality's tokens for every layer the stack
   * ran (they still pass through it, as keys and values for the other modality).
   */
  reports: StreamReport[];
}

interface Stream {
  name: 'image' | 'text';
  /** Tokens per sample the stream's layers process (the report's compute weight). */
  tokens: number;
  tracker: ExitTracker;
  /**
   * States `[B, T, d]` from the embedding output on; in host mode the list ends once every sample
   * has stopped. (The joint encoder keeps only the latest: the modality's rows of the joint state.)
   */
  states: Tensor[];
}

/**
 * A layer context for some of the batch's samples (host mode: the samples still going): their rows
 * of the padding mask, uploaded once per set of samples.
 */
class SampleContexts {
  #last: { samples: readonly number[]; context: LayerContext } | undefined;

  constructor(
    private readonly backend: Backend,
    private readonly context: LayerContext,
  ) {}

  of(samples: readonly number[]): LayerContext {
    const { context } = this;
    const { keyPaddingMask, keyPadding } = context;
    if (!keyPaddingMask || samples.length === keyPaddingMask.shape[0]) return context;
    if (!keyPadding) throw new Error('encoder exits: a padding mask without its host copy cannot be narrowed to some samples');
    if (this.#last?.samples !== samples) {
      this.#last?.context.keyPaddingMask?.dispose();
      const length = keyPaddingMask.shape[1]!;
      const rows = new Int32Array(samples.length * length);
      samples.forEach((b, i) => rows.set(keyPadding.subarray(b * length, (b + 1) * length), i * length));
      const mask = this.backend.upload(rows, [samples.length, length], 'i32');
      this.#last = { samples, context: { ...context, keyPaddingMask: mask, keyPadding: rows } };
    }
    return this.#last.context;
  }

  dispose(): void {
    this.#last?.context.keyPaddingMask?.dispose();
    this.#last = undefined;
  }
}

/**
 * Encodes pixels `[1, 3, S, S]` and text ids with MuE's encoder exits: the decomposed encoder
 * per mue-spec §2, the joint encoder with frozen modalities (§6). Returns the encoder output (for
 * the decoder) and the exit reports (read after the forward pass).
 */
export function encodeWithExits(
  source: OfaModel | ExitEncoder,
  pixels: Tensor,
  inputIds: ArrayLike<number>,
  options: EncoderExitOptions,
): Promise<EncoderExitResult> {
  return encodeBatchWithExits(source, { pixels, texts: [inputIds] }, options);
}

/**
 * `encodeWithExits` for a batch of texts and their images (`EncoderBatch`): every sample decides
 * alone (per-sample scope) — each text, and in the decomposed encoder each distinct image, whose
 * stream runs once for the texts that read it. The reports have one entry of `layersRun` per
 * sample of their stream: images in `pixels` order for the decomposed image stream, texts for
 * the others.
 */
export async function encodeBatchWithExits(
  source: OfaModel | ExitEncoder,
  batch: EncoderBatch,
  options: EncoderExitOptions,
): Promise<EncoderExitResult> {
  const encoder = 'encoder' in source ? source.encoder : source;
  const { backend } = batch.pixels;
  for (const key of ['image', 'text'] as const) {
    if (typeof options[key] !== 'number' || Number.isNaN(options[key])) {
      throw new Error(`encodeWithExits: the ${key} threshold must be a number, got ${String(options[key])}`);
    }
  }
  const mode = options.mode ?? encoder.mode;
  const site = options.site ?? 'device';
  const scope = options.scope ?? 'per-sample';
  if (scope === 'batch' && batch.texts.length > 1) {
    throw new Error("encodeBatchWithExits: the 'batch' scope decides once for a request; a batch of several decides per sample");
  }
  const stream = (name: 'image' | 'text', hidden: Tensor, padding?: Int32Array | null): Stream => {
    const [, tokens, width] = hidden.shape as [number, number, number];
    const keep = padding ? paddingKeep(backend, padding, width, hidden.shape) : undefined;
    return {
      name,
      tokens,
      tracker: new ExitTracker(backend, { threshold: options[name], site, scope, ...(keep && { keep }) }),
      states: [hidden],
    };
  };
  return mode === 'decomposed' ? encodeDecomposed(encoder, batch, stream) : encodeJoint(backend, encoder, batch, stream);
}

/** §2: each stream through the layers, gated by its own tracker; then `finishStreams`. */
async function encodeDecomposed(
  encoder: ExitEncoder,
  batch: EncoderBatch,
  stream: (name: 'image' | 'text', hidden: Tensor, padding?: Int32Array | null) => Stream,
): Promise<EncoderExitResult> {
  const streams: EncoderStreams = encoder.embedStreamsBatch(batch);
  const image = stream('image', streams.image.hidden);
  const text = stream('text', streams.text.hidden, streams.text.context.keyPadding);
  const layers = encoder.layerCount;
  const { backend } = streams.image.hidden;
  const contexts = { image: new SampleContexts(backend, streams.image.context), text: new SampleContexts(backend, streams.text.context) };
  let output: EncoderOutput;
  try {
    for (let l = 0; l < layers; l++) {
      for (const s of [image, text]) {
        if (s.tracker.finished) continue;
        const next = await s.tracker.step(l, s.states.at(-1)!, (x, samples) => encoder.layer(l, x, contexts[s.name].of(samples)));
        s.states.push(next);
      }
    }
    output = encoder.finishStreams(streams, image.states, text.states);
  } catch (error) {
    disposeAll([...image.states.slice(1), ...text.states.slice(1)]);
    disposeStreams(streams);
    disposeTracker(image.tracker);
    disposeTracker(text.tracker);
    throw error;
  } finally {
    contexts.image.dispose();
    contexts.text.dispose();
  }
  try {
    const reports = await readReports([image, text], layers);
    const { streamStates } = output;
    if (streamStates) {
      dropCarried(streamStates.image, reports[0]!);
      dropCarried(streamStates.text, reports[1]!);
    }
    dropCarried(output.hiddenStates, reports[0]!, reports[1]!);
    return { output, reports };
  } catch (error) {
    output.dispose();
    throw error;
  }
}

/**
 * §6: the joint layers on the whole sequence while either modality goes on; each modality decides
 * on its own rows and is frozen once stopped; a layer both have stopped before is skipped.
 */
async function encodeJoint(
  backend: Backend,
  encoder: ExitEncoder,
  batch: EncoderBatch,
  stream: (name: 'image' | 'text', hidden: Tensor, padding?: Int32Array | null) => Stream,
): Promise<EncoderExitResult> {
  const { hidden, context } = encoder.embedBatch(batch);
  const patches = context.imageGrid.rows * context.imageGrid.cols;
  const total = patches + context.textLength;
  const range = { image: [0, patches], text: [patches, total] } as const;
  const rows = (x: Tensor, name: 'image' | 'text'): Tensor => backend.slice(x, 1, range[name][0], range[name][1]);
  // Each modality's own rows (its tracker's `previous`; only the latest is kept), and the joint states.
  const textPadding = context.keyPadding.filter((_, i) => i % total >= patches);
  const image = stream('image', rows(hidden, 'image'));
  const text = stream('text', rows(hidden, 'text'), textPadding);
  const hiddenStates = [hidden];
  /** The joint layer's output of the current layer: freed once its rows have been taken. */
  const temporaries = new Set<Tensor>();
  const device = image.tracker.options.site === 'device';
  const layers = encoder.layerCount;
  const samples = hidden.shape[0]!;
  const contexts = new SampleContexts(backend, context);
  let output: EncoderOutput;
  try {
    for (let l = 0; l < layers; l++) {
      const previous = hiddenStates[l]!;
      // Host mode: the layer runs on the samples of which either modality goes on.
      const going = [...new Set([image, text].flatMap((s) => (s.tracker.finished ? [] : s.tracker.going(samples))))].sort((a, b) => a - b);
      if (going.length === 0) break;
      const everyone = going.length === samples;
      let full: Tensor | undefined;
      const layer = (): Tensor => {
        if (!full) {
          const input = everyone ? previous : selectSamples(backend, previous, going);
          temporaries.add((full = encoder.layer(l, input, contexts.of(going))));
          if (!everyone) input.dispose();
        }
        return full;
      };
      /** A modality's rows of the layer for `some` of the samples it ran on. */
      const modalityRows = (name: 'image' | 'text', some: readonly number[]): Tensor => {
        const own = rows(layer(), name);
        if (some.length === going.length) return own;
        const picked = selectSamples(backend, own, some.map((b) => going.indexOf(b)));
        own.dispose();
        return picked;
      };
      if (device) {
        // Computed once for both modalities, and skipped on the device once both have stopped.
        const [imageDone, textDone] = [image.tracker.done, text.tracker.done];
        if (imageDone && textDone) {
          const both = backend.concat([imageDone, textDone], 0);
          backend.unlessAll(both, layer);
          both.dispose();
        } else {
          layer();
        }
      }
      // Each modality keeps its rows of the layer, or its exit state once stopped.
      for (const s of [image, text]) {
        if (s.tracker.finished) continue;
        s.states.push(await s.tracker.step(l, s.states.at(-1)!, (_, some) => modalityRows(s.name, some)));
      }
      disposeAll(temporaries);
      temporaries.clear();
      for (const s of [image, text]) disposeAll(s.states.splice(0, s.states.length - 1));
      hiddenStates.push(backend.concat([image.states.at(-1)!, text.states.at(-1)!], 1));
    }
    contexts.dispose();
    disposeAll([...image.states, ...text.states]);
    const lastHiddenState = encoder.finish(hiddenStates.at(-1)!);
    context.absolutePositionBias.dispose();
    const { positionEmbedding, keyPaddingMask, keyPadding, imageGrid, textLength } = context;
    output = {
      encoderMode: 'joint',
      hiddenStates,
      lastHiddenState,
      positionEmbedding,
      keyPaddingMask,
      keyPadding,
      imageGrid,
      textLength,
      dispose: () => disposeAll([...hiddenStates, lastHiddenState, positionEmbedding, keyPaddingMask]),
    };
  } catch (error) {
    contexts.dispose();
    disposeAll([...image.states, ...text.states, ...temporaries, ...hiddenStates]);
    for (const t of [context.absolutePositionBias, context.positionEmbedding, context.keyPaddingMask]) t.dispose();
    disposeTracker(image.tracker);
    disposeTracker(text.tracker);
    throw error;
  }
  try {
    image.tokens = 0;
    text.tokens = 0;
    const [imageReport, textReport] = await readReports([image, text], layers);
    const joint: StreamReport = {
      stream: 'joint',
      layers,
      layersRun: imageReport!.layersRun.map((run, b) => Math.max(run, textReport!.layersRun[b] ?? 0)),
      tokens: total,
      similarities: [],
    };
    dropCarried(output.hiddenStates, joint);
    return { output, reports: [imageReport!, textReport!, joint] };
  } catch (error) {
    output.dispose();
    throw error;
  }
}

/** Reads the trackers' reports (after the forward pass; all in one submission) and frees their decisions and masks. */
async function readReports(streams: Stream[], layers: number): Promise<StreamReport[]> {
  try {
    return await Promise.all(streams.map((s) => readStreamReport(s.name, s.tracker, layers, s.tokens)));
  } finally {
    for (const s of streams) disposeTracker(s.tracker);
  }
}

function disposeTracker(tracker: ExitTracker): void {
  tracker.dispose();
  tracker.options.keep?.dispose();
}

/**
 * Drops (and frees) the states past the last layer any of the reports' samples ran: in device
 * mode they are copies of the exit states carried through the gated layers.
 */
function dropCarried(states: Tensor[], ...reports: StreamReport[]): void {
  const ran = Math.max(0, ...reports.flatMap((r) => r.layersRun));
  const keep = new Set(states.slice(0, ran + 1));
  for (const t of states.splice(ran + 1)) if (!keep.has(t)) t.dispose();
}

/** Frees each tensor once. */
function disposeAll(tensors: Iterable<Tensor>): void {
  for (const t of new Set(tensors)) t.dispose();
}
