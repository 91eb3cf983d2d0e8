/**
 * MuE's decoder exits (mue-spec.md §3) in cached decoding: in each step, after every layer, the
 * similarity of the current token's state with its state before the layer; above the step's
 * threshold the sequence (beam) stops, the final LayerNorm and output projection read its exit
 * state, and the key/value caches of the layers it skipped are filled so that later tokens can
 * attend to this one there. Two fills:
 *
 * - `'copy'` (the authors' code): for every skipped layer j > i (i = the exit layer), the
 *   sequence's whole self-attention keys/values AND its cross-attention keys/values of layer j
 *   become layer i's. This overwrites the earlier positions of layer j too, and later tokens that
 *   go deeper attend there to keys/values projected by layer i's weights. Cross keys/values are
 *   the encoder output projected by a layer's weights, so a copy is a name: the session records,
 *   per beam, which layer's it reads (`LayerCache.crossLayers`; beams that read different layers'
 *   attend in groups) and copies no tensor. Filled caches are only read by later steps, so with
 *   decisions on the device the copies are made once the step's decisions have been read
 *   (`finish`, together with the log-probabilities): the host then knows which beams stopped
 *   where, and a layer no beam skipped costs nothing. (Selecting per beam on the device after
 *   every layer, with per-beam `[B, N, d]` cross copies, cost more than the skipped layers saved.)
 * - `'project'` (CALM, Schuster et al. 2022): only this token's row of layer j's self-attention
 *   keys/values is filled, projected from the exit state with layer j's own
 *   `self_attn_layer_norm` and k/v projections; earlier rows and the cross keys/values stay.
 *
 * The decisions come from an `ExitTracker` (src/mue/exit.ts): on the device (no read-back until
 * the step's logits are read; the fills select per beam with `where` on the done-before flags of
 * each layer, which say which beams skipped it) or on the host (the reference: JavaScript reads
 * the similarities and decides; each later layer runs for the beams still going only, and its
 * cache rows are put together from theirs and the others' fills, `hostFill`). `'per-sample'` scope
 * decides for each beam alone; `'batch'` once for all (the authors run batch 1).
 *
 * `exitingStep` runs one step; `ExitingStepDecoder` is the generators' `StepDecoder` with exits
 * and the authors' threshold schedule, collecting one `StreamReport` per decoded token.
 */
import type { Backend } from '../backend/backend.js';
import type { DecodingSession, KeyValues, LayerCache, SelfAttentionCache } from '../models/ofa/decoder.js';
import type { EncoderOutput } from '../models/ofa/encoder.js';
import type { OfaModel } from '../models/ofa/model.js';
import { OfaStepDecoder } from '../models/ofa/step-decoder.js';
import type { Tensor } from '../tensor.js';
import { type DecisionScope, type DecisionSite, type ExitOptions, ExitTracker, mergeSamples, selectSamples } from './exit.js';
import { type ExitReport, type StreamReport, exitReport, readStreamReport, reportOfRows } from './report.js';
import { decoderThreshold } from './schedule.js';

/** How the caches of the layers a sequence skipped are filled (see the module comment). */
export type CacheFill = 'copy' | 'project';

export interface DecoderStepExitOptions extends ExitOptions {
  /**
   * This step's threshold (`decoderThreshold` gives the authors' schedule). At 1 or above no
   * sequence exits (cos ≤ 1): the step then equals the plain step and fills no cache.
   */
  threshold: number;
  fill: CacheFill;
}

export interface ExitingStepResult {
  /** `[B, 1, d]`: each sequence's exit state (the last layer's output when it did not exit). */
  state: Tensor;
  /** `[B, d]`: the final LayerNorm of `state`. */
  lastHiddenState: Tensor;
  /** `[B, V]`. */
  logits: Tensor;
  /** The step's decisions, still on the device until `finish` reads and frees them. */
  tracker: ExitTracker;
  /**
   * Reads the step's exit report (stream `stream`), completes the cache fills that wait for the
   * decisions (copying, with decisions on the device) and frees the decisions. Call it before
   * the session's next step (start it with the logits' read: one submission on WebGPU).
   */
  finish(stream: string): Promise<StreamReport>;
}

/** Sessions whose last exiting step has not been finished (its cache copies are pending). */
const unfinished = new WeakSet<DecodingSession>();

/**
 * One decoding step of `session` with exits: `begin`, each layer through an `ExitTracker`, the
 * cache fills of skipped layers, `end` on the carried (exit) states. The caller owns the tensors
 * and the tracker of the result.
 */
export async function exitingStep(
  session: DecodingSession,
  tokens: readonly number[],
  options: DecoderStepExitOptions,
): Promise<ExitingStepResult> {
  const { decoder } = session;
  const backend = decoder.backend;
  if (unfinished.has(session)) {
    throw new Error('exitingStep: the previous step was not finished (call its result’s finish() before the next step)');
  }
  // cos ≤ 1: a threshold of 1 or more never exits, not even when the similarity rounds above 1.
  const exits = options.threshold < 1;
  const threshold = exits ? options.threshold : Infinity;
  const tracker = new ExitTracker(backend, { threshold, site: options.site, scope: options.scope });
  const filler = new CacheFiller(backend, session, options);
  const step = session.begin(tokens);
  const sequences = session.batch;
  let x = step.hidden;
  try {
    for (let l = 0; l < decoder.layerCount; l++) {
      const doneBefore = tracker.done;
      const going = tracker.going(sequences);
      const before = session.cacheOf(l);
      let computed: SelfAttentionCache | undefined;
      // On the host, the layer runs for the sequences still going only, and not at all once none is.
      const next = tracker.finished
        ? x
        : await tracker.step(l, x, (h, some) => {
            const out = session.computeLayer(l, h, step, some);
            computed = out.self;
            return out.hidden;
          });
      // `x` is what layer l received: for the beams that had stopped, their exit state.
      if (options.site === 'host' && going.length < sequences) hostFill(session, l, options.fill, going, computed, x, before);
      else if (exits && doneBefore) filler.fill(l, doneBefore, x, before, computed!);
      else session.setCache(l, { self: computed! });
      if (next !== x) x.dispose();
      x = next;
    }
  } catch (error) {
    x.dispose();
    tracker.dispose();
    throw error;
  } finally {
    filler.dispose();
  }
  const { lastHiddenState, logits } = session.end(x, step);
  const copiesWait = exits && options.fill === 'copy' && options.site === 'device';
  if (copiesWait) unfinished.add(session);
  const finish = async (stream: string): Promise<StreamReport> => {
    try {
      const report = await readStreamReport(stream, tracker, decoder.layerCount, 1);
      if (copiesWait) {
        // Beam b skipped layers layersRun[b] and above.
        for (let l = 1; l < decoder.layerCount; l++) copyFill(session, l, report.layersRun.map((run) => run <= l));
      }
      return report;
    } finally {
      unfinished.delete(session);
      tracker.dispose();
    }
  };
  return { state: x, lastHiddenState, logits, tracker, finish };
}

/**
 * Copy fill of layer `l` for the sequences `skipped` (known on the host; `[1]` for a decision
 * shared by the batch): their self-attention keys/values and the layer whose cross keys/values
 * they read become layer l − 1's, which are already the exit layer's for these sequences.
 */
function copyFill(session: DecodingSession, l: number, skipped: readonly boolean[]): void {
  const batch = session.batch;
  const skips = Array.from({ length: batch }, (_, b) => skipped[skipped.length === 1 ? 0 : b]!);
  if (!skips.some(Boolean)) return;
  const backend = session.decoder.backend;
  const source = session.cacheOf(l - 1).self;
  const own = session.cacheOf(l);
  if (!source) throw new Error(`internal: layer ${l - 1} has no cache to copy`);
  // Every sequence skipped: the layer's own cache may be stale (the host did not run it) or unwritten (gated on the device).
  const self = skips.every(Boolean)
    ? copyKeyValues(backend, source)
    : backend.tidy(() => {
        const flags = backend.upload(Int32Array.from(skips, Number), [batch], 'i32');
        const kept = own.self!;
        return { keys: backend.where(flags, source.keys, kept.keys), values: backend.where(flags, source.values, kept.values) };
      });
  const sourceLayers = session.cacheOf(l - 1).crossLayers;
  session.setCache(l, { self, crossLayers: own.crossLayers.map((layer, b) => (skips[b] ? sourceLayers[b]! : layer)) });
}

function copyKeyValues(backend: Backend, kv: KeyValues): KeyValues {
  const whole = (t: Tensor): Tensor => backend.slice(t, 0, 0, t.shape[0]!);
  return { keys: whole(kv.keys), values: whole(kv.values) };
}

/**
 * Decisions on the host: layer `l`'s cache after the sequences `going` ran it (`computed`, their
 * self keys/values; none when no sequence did) and the others, stopped before it, skipped it.
 * The stopped sequences' rows are filled — `copy`: layer l − 1's (already their exit layer's),
 * and the cross layer it names; `project`: their rows before the step and this token's projected
 * from their exit states in `x` — and the layer's rows are put together in sequence order.
 */
function hostFill(
  session: DecodingSession,
  l: number,
  fill: CacheFill,
  going: readonly number[],
  computed: SelfAttentionCache | undefined,
  x: Tensor,
  before: LayerCache,
): void {
  const backend = session.decoder.backend;
  const stopped = Array.from({ length: session.batch }, (_, b) => b).filter((b) => !going.includes(b));
  const rowsOf = (kv: KeyValues): KeyValues => ({ keys: selectSamples(backend, kv.keys, stopped), values: selectSamples(backend, kv.values, stopped) });
  let filled: KeyValues;
  let { crossLayers } = session.cacheOf(l);
  if (fill === 'copy') {
    const source = session.cacheOf(l - 1);
    if (!source.self) throw new Error(`internal: layer ${l - 1} has no cache to copy`);
    filled = rowsOf(source.self);
    crossLayers = crossLayers.map((layer, b) => (going.includes(b) ? layer : source.crossLayers[b]!));
  } else {
    filled = backend.tidy(() => {
      const row = session.decoder.selfKeyValues(l, selectSamples(backend, x, stopped));
      if (!before.self) return row;
      const earlier = rowsOf(before.self);
      return { keys: backend.concat([earlier.keys, row.keys], 1), values: backend.concat([earlier.values, row.values], 1) };
    });
  }
  if (!computed) return session.setCache(l, { self: filled, crossLayers });
  const self = {
    keys: mergeSamples(backend, [[going, computed.keys], [stopped, filled.keys]]),
    values: mergeSamples(backend, [[going, computed.values], [stopped, filled.values]]),
  };
  for (const t of [computed.keys, computed.values, filled.keys, filled.values]) t.dispose();
  session.setCache(l, { self, crossLayers });
}

/** The cache fills of one step. */
class CacheFiller {
  /** f32 `[B]` zeros and ones, for the inverted flags (made on first use). */
  #constants: { zeros: Tensor; ones: Tensor } | undefined;

  constructor(
    private readonly backend: Backend,
    private readonly session: DecodingSession,
    private readonly options: DecoderStepExitOptions,
  ) {}

  /**
   * Decisions on the device: stores layer `l`'s cache after the layer ran (`computed`: its self
   * keys/values, unspecified for skipped beams), filling it for the beams flagged in `doneBefore`
   * from their exit states `exitState [B, 1, d]` and the cache `before` the layer.
   */
  fill(l: number, doneBefore: Tensor, exitState: Tensor, before: LayerCache, computed: SelfAttentionCache): void {
    const { backend, session } = this;
    const discard = (kv: KeyValues): void => {
      kv.keys.dispose();
      kv.values.dispose();
    };
    if (this.options.fill === 'project') {
      // The done-before flags choose per beam.
      const select = (filled: KeyValues, own: KeyValues): KeyValues => ({
        keys: backend.where(doneBefore, filled.keys, own.keys),
        values: backend.where(doneBefore, filled.values, own.values),
      });
      // This token's row of layer l from the exit state, after the rows cached before.
      const projectRow = (): KeyValues =>
        backend.tidy(() => {
          const row = session.decoder.selfKeyValues(l, exitState);
          if (!before.self) return row;
          return {
            keys: backend.concat([before.self.keys, row.keys], 1),
            values: backend.concat([before.self.values, row.values], 1),
          };
        });
      // Skipped unless some beam has stopped (where then takes `computed` everywhere).
      const notDone = this.#notDone(doneBefore);
      const filled = backend.unlessAll(notDone, projectRow);
      notDone.dispose();
      const self = select(filled, computed);
      discard(filled);
      discard(computed);
      return session.setCache(l, { self });
    }
    // 'copy': in the step's `finish`, once the decisions have been read.
    session.setCache(l, { self: computed });
  }

  /** i32 `[B]`: 1 for the beams that have not stopped (on the device). */
  #notDone(done: Tensor): Tensor {
    const { backend } = this;
    const n = done.shape[0]!;
    this.#constants ??= {
      zeros: backend.upload(new Float32Array(n), [n], 'f32'),
      ones: backend.upload(new Float32Array(n).fill(1), [n], 'f32'),
    };
    const going = backend.where(done, this.#constants.zeros, this.#constants.ones);
    const flags = backend.exceeds(going, 0.5);
    going.dispose();
    return flags;
  }

  dispose(): void {
    this.#constants?.zeros.dispose();
    this.#constants?.ones.dispose();
  }
}

/** Decoder exit settings of a generation. */
export interface DecoderExitSettings {
  /** `decoder_thres` (mue-spec.md §5: 0.9 for captions); a step threshold > 1 never exits. */
  threshold: number;
  /**
   * The generation's `max_len` (beam search: `maxGenerationLength`): the step thresholds follow
   * the authors' schedule (`decoderThreshold`). Without it, `threshold` applies at every step.
   */
  maxLen?: number;
  /** Default `'device'`. */
  site?: DecisionSite;
  /** Default `'per-sample'` (each beam on its own); `'batch'` is the authors' one decision. */
  scope?: DecisionScope;
  /** Default `'copy'` (the authors'). */
  fill?: CacheFill;
}

/**
 * The generators' step decoder with MuE's decoder exits: beam search and greedy decoding get
 * exits unchanged. Each step's decisions are read together with its log-probabilities (one
 * submission and one wait), into `reports` (stream `token t`, one per step).
 */
export class ExitingStepDecoder extends OfaStepDecoder {
  readonly settings: Readonly<Required<Omit<DecoderExitSettings, 'maxLen'>>> & { maxLen?: number };
  /** One report per step run, in order: the layers each beam ran for that token. */
  readonly reports: StreamReport[] = [];
  /** Per report, the sample (of the encoder output) of each of its beams. */
  readonly #reportSamples: (readonly number[])[] = [];
  /** The step whose log-probabilities are being read. */
  #pending: ExitingStepResult | undefined;

  constructor(model: OfaModel, encoderOutput: EncoderOutput, beams: number, settings: DecoderExitSettings) {
    super(model, encoderOutput, beams);
    if (Number.isNaN(settings.threshold)) throw new Error('decoder exits: the threshold is NaN');
    this.settings = { site: 'device', scope: 'per-sample', fill: 'copy', ...settings };
  }

  /** The threshold of step `step`. */
  stepThreshold(step: number): number {
    const { threshold, maxLen } = this.settings;
    return maxLen === undefined ? threshold : decoderThreshold(threshold, step, maxLen);
  }

  /**
   * The reports of sample `sample`'s beams (a batch of several samples decodes them together), one
   * per step it took part in.
   */
  reportsOf(sample: number): StreamReport[] {
    return this.reports.flatMap((report, step) => {
      const rows = this.#reportSamples[step]!.flatMap((s, row) => (s === sample ? [row] : []));
      return rows.length === 0 ? [] : [reportOfRows(report, rows)];
    });
  }

  /** The decoder part of the exit report over the steps run so far. */
  report(wallMs = 0): ExitReport {
    return exitReport([], this.reports, wallMs);
  }

  protected override async forward(tokens: number[], step: number): Promise<Tensor> {
    const { site, scope, fill } = this.settings;
    this.#reportSamples.push(this.session.sequenceSamples);
    const result = await exitingStep(this.session, tokens, { threshold: this.stepThreshold(step), site, scope, fill });
    result.state.dispose();
    result.lastHiddenState.dispose();
    this.#pending = result;
    return result.logits;
  }

  protected override async readAlongside(step: number): Promise<void> {
    const pending = this.#pending;
    if (!pending) return;
    this.#pending = undefined;
    this.reports.push(await pending.finish(`token ${step}`));
  }

  override dispose(): void {
    this.#pending?.tracker.dispose();
    this.#pending = undefined;
    super.dispose();
  }
}
