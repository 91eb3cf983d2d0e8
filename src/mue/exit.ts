/**
 * MuE's exit rule (mue-spec.md §2–3), for one stream of states passing through a stack of layers:
 *
 *     h_i = layer_i(h_{i−1})
 *     sim = cos(flatten(h_i), flatten(h_{i−1}))
 *     if sim > threshold: stop; the stream's output is h_i
 *
 * A stream is the image tokens or the text tokens of the (decomposed) encoder, or the current
 * token of every beam in one decoding step. `ExitTracker` applies the rule layer after layer:
 *
 * - **where the decision is taken**: on the device (`'device'`: the similarity, the comparison and
 *   the skipping of later layers all stay in the one recorded submission, with no read-back per
 *   layer; a layer every sample has stopped before is gated — its kernels launch and return at once
 *   — and samples that have stopped are carried through the layers the others still run) or on
 *   the host (`'host'`: the similarities are read back after every layer and JavaScript decides,
 *   the readable reference the device mode is tested against; the next layer then runs only on the
 *   rows of the samples still going, and not at all once none is — at batch 1, the forward pass
 *   submitted in segments);
 * - **whose states a decision covers**: each sample (beam) alone (`'per-sample'`, ours), or the
 *   whole batch flattened into one vector (`'batch'`, what the authors' code does; they run batch 1).
 *
 * Samples that have stopped keep their exit state, which the rule puts back among the others'. One
 * backend op, `decideExit`, applies the rule after a layer on the device (selection, similarity and
 * comparison: one kernel on WebGPU); on the host it is `cosineSimilarity` and a comparison in
 * JavaScript.
 */
import type { Backend, ExitDecision } from '../backend/backend.js';
import type { Tensor } from '../tensor.js';

export type DecisionSite = 'device' | 'host';
export type DecisionScope = 'per-sample' | 'batch';

export interface ExitOptions {
  /** Exit above this cosine similarity; any value > 1 never exits (cos ≤ 1). */
  threshold: number;
  site: DecisionSite;
  scope: DecisionScope;
  /**
   * f32, the states' shape: 0 at padded positions of a batch of sequences of different lengths,
   * 1 elsewhere. Every layer's output is multiplied by it (and the caller zeroes the padded
   * positions of the first state), so that padding, zero throughout, takes no part in a sample's
   * similarity: each sample decides as it would alone.
   */
  keep?: Tensor;
}

/**
 * What one layer decided: on the device, tensors the caller reads with the report; on the host,
 * the values themselves.
 */
export interface LayerDecision {
  /** The layer's index (0-based). */
  layer: number;
  /**
   * f32 `[B]` (or `[1]` for batch scope): cos(h_i, h_{i−1}) of each sample; unspecified (device)
   * or NaN (host) for samples that had stopped before.
   */
  similarity: Tensor | Float32Array;
  /** i32 `[B]` (or `[1]`): 1 for samples that have stopped after this layer or earlier. */
  done: Tensor | Int32Array;
}

/**
 * Applies the exit rule layer after layer to a batch of samples (`step`), on the device or on the
 * host (see the module comment). On the host, after each layer the similarities are read back and
 * JavaScript decides; the next layer then runs only on the samples still going (`going`: their
 * rows are gathered for it, and its output is put back among the others' exit states), and once
 * none is going (`finished`) the caller stops calling. At batch 1 that is a forward pass submitted
 * in segments, one per layer, each ending with the read of one similarity.
 */
export class ExitTracker {
  readonly decisions: LayerDecision[] = [];
  /** Device: i32 flags of the samples that have stopped (undefined before the first layer). */
  #done: Tensor | undefined;
  /** Device: i32 `[1]`, every sample has stopped (the gate of the next layer). */
  #allDone: Tensor | undefined;
  /** Host: the samples still going, in order (undefined before the first layer: all of them). */
  #going: number[] | undefined;
  /** Host: the `keep` rows of the samples going, with the samples they are for. */
  #keepRows: { samples: readonly number[]; keep: Tensor } | undefined;

  constructor(
    readonly backend: Backend,
    readonly options: ExitOptions,
  ) {}

  /** Device: i32 flags of the samples that have stopped, or undefined before the first layer. */
  get done(): Tensor | undefined {
    return this.#done;
  }

  /** Host: every sample has stopped; later layers are not to be run. (Never on the device.) */
  get finished(): boolean {
    return this.#going?.length === 0;
  }

  /** Host: the samples still going, of a batch of `batch`. */
  going(batch: number): readonly number[] {
    return this.#going ?? Array.from({ length: batch }, (_, b) => b);
  }

  /**
   * Runs layer `layer` (through `run`) on the samples of `previous` `[B, ...]` still going, applies
   * the exit rule, and returns the state every sample carries forward (its exit state once
   * stopped), `[B, ...]`. `run(x, samples)` computes the layer for the rows `x` of `samples` (on
   * the device: every sample, gated once all have stopped; on the host: those still going).
   */
  async step(layer: number, previous: Tensor, run: (x: Tensor, samples: readonly number[]) => Tensor): Promise<Tensor> {
    return this.options.site === 'device' ? this.#deviceStep(layer, previous, run) : this.#hostStep(layer, previous, run);
  }

  #deviceStep(layer: number, previous: Tensor, run: (x: Tensor, samples: readonly number[]) => Tensor): Tensor {
    const { backend } = this;
    const everySample = Array.from({ length: previous.shape[0]! }, (_, b) => b);
    const doneBefore = this.#done;
    const allDoneBefore = this.#allDone;
    const runLayer = (): Tensor => this.#masked(run(previous, everySample), this.options.keep);
    const computed = allDoneBefore ? backend.unlessAll(allDoneBefore, runLayer) : runLayer();
    const { threshold, scope } = this.options;
    let decision: ExitDecision;
    if (scope === 'per-sample') {
      decision = backend.decideExit(previous, computed, threshold, doneBefore);
    } else {
      const whole = (t: Tensor): Tensor => t.reshape([1, -1]);
      const flat = backend.decideExit(whole(previous), whole(computed), threshold, doneBefore);
      decision = { ...flat, state: flat.state.reshape(previous.shape) };
    }
    computed.dispose();
    allDoneBefore?.dispose();
    this.decisions.push({ layer, similarity: decision.similarity, done: decision.done });
    this.#done = decision.done;
    this.#allDone = decision.allDone;
    return decision.state;
  }

  async #hostStep(layer: number, previous: Tensor, run: (x: Tensor, samples: readonly number[]) => Tensor): Promise<Tensor> {
    const { backend } = this;
    const { threshold, scope } = this.options;
    const batch = previous.shape[0]!;
    const going = this.going(batch);
    if (going.length === 0) throw new Error(`exit tracker: layer ${layer} was run after every sample had stopped`);
    const everyone = going.length === batch;
    const input = everyone ? previous : selectSamples(backend, previous, going);
    const computed = this.#masked(run(input, going), this.#keepOf(going));
    const whole = (t: Tensor): Tensor => (scope === 'batch' ? t.reshape([1, -1]) : t);
    const similarityOnDevice = backend.cosineSimilarity(whole(computed), whole(input));
    const similarities = await similarityOnDevice.read();
    similarityOnDevice.dispose();
    // The rule, here in JavaScript: a sample stops once its similarity exceeds the threshold.
    const stops = (i: number): boolean => similarities[scope === 'batch' ? 0 : i]! > threshold;
    if (scope === 'batch') {
      this.decisions.push({ layer, similarity: Float32Array.of(similarities[0]!), done: Int32Array.of(stops(0) ? 1 : 0) });
    } else {
      const similarity = new Float32Array(batch).fill(Number.NaN);
      const done = new Int32Array(batch).fill(1);
      going.forEach((sample, i) => {
        similarity[sample] = similarities[i]!;
        done[sample] = stops(i) ? 1 : 0;
      });
      this.decisions.push({ layer, similarity, done });
    }
    this.#going = going.filter((_, i) => !stops(i));
    if (everyone) return computed;
    const state = placeSamples(backend, computed, going, previous);
    input.dispose();
    computed.dispose();
    return state;
  }

  /** `x · keep` (a new tensor; `x` is freed), or `x` without a mask. */
  #masked(x: Tensor, keep: Tensor | undefined): Tensor {
    if (!keep) return x;
    const masked = this.backend.mul(x, keep);
    x.dispose();
    return masked;
  }

  /** The rows of `keep` for `samples` (cached while the samples going stay the same). */
  #keepOf(samples: readonly number[]): Tensor | undefined {
    const { keep } = this.options;
    if (!keep || samples.length === keep.shape[0]) return keep;
    if (this.#keepRows?.samples !== samples) {
      this.#keepRows?.keep.dispose();
      this.#keepRows = { samples, keep: selectSamples(this.backend, keep, samples) };
    }
    return this.#keepRows.keep;
  }

  /** Frees the decision tensors (after the report has read them). */
  dispose(): void {
    const seen = new Set<Tensor | Float32Array | Int32Array>();
    for (const d of this.decisions) {
      for (const t of [d.similarity, d.done]) {
        if (!seen.has(t) && !ArrayBuffer.isView(t)) t.dispose();
        seen.add(t);
      }
    }
    this.decisions.length = 0;
    this.#done = undefined;
    this.#allDone?.dispose();
    this.#allDone = undefined;
    this.#keepRows?.keep.dispose();
    this.#keepRows = undefined;
  }
}

/** `[B, ...]` → `[samples.length, ...]`: the rows of `samples`, in that order (one gather). */
export function selectSamples(backend: Backend, x: Tensor, samples: readonly number[]): Tensor {
  const [batch, ...rest] = x.shape;
  const width = rest.reduce((a, b) => a * b, 1);
  return backend.tidy(() => {
    const ids = backend.upload(Int32Array.from(samples), [samples.length], 'i32');
    return backend.gather(x.reshape([batch!, width]), ids).reshape([samples.length, ...rest]);
  });
}

/**
 * `rows [A, ...]` of samples `samples` put in their places among the other samples' rows of
 * `others [B, ...]`: a new `[B, ...]`.
 */
export function placeSamples(backend: Backend, rows: Tensor, samples: readonly number[], others: Tensor): Tensor {
  const batch = others.shape[0]!;
  return mergeSamples(backend, [
    [samples, rows],
    [Array.from({ length: batch }, (_, b) => b), others],
  ]);
}

/**
 * One `[B, ...]` from parts `[samples, rows]` (rows of those samples, in that order): each sample
 * of 0..B − 1 from the first part that has it (one concat and one gather).
 */
export function mergeSamples(backend: Backend, parts: readonly (readonly [readonly number[], Tensor])[]): Tensor {
  const [, ...rest] = parts[0]![1].shape;
  const width = rest.reduce((a, b) => a * b, 1);
  const placeOf = new Map<number, number>();
  let offset = 0;
  for (const [samples] of parts) {
    samples.forEach((sample, i) => {
      if (!placeOf.has(sample)) placeOf.set(sample, offset + i);
    });
    offset += samples.length;
  }
  const batch = placeOf.size;
  return backend.tidy(() => {
    const table = backend.concat(parts.map(([samples, rows]) => rows.reshape([samples.length, width])), 0);
    const ids = Int32Array.from({ length: batch }, (_, b) => {
      const place = placeOf.get(b);
      if (place === undefined) throw new Error(`mergeSamples: no part holds sample ${b}`);
      return place;
    });
    return backend.gather(table, backend.upload(ids, [batch], 'i32')).reshape([batch, ...rest]);
  });
}

/**
 * The `keep` mask of `ExitOptions` for states `[B, T, d]` whose padded positions are flagged in
 * `padding` (`[B·T]`, non-zero = padded); undefined when nothing is padded.
 */
export function paddingKeep(backend: Backend, padding: ArrayLike<number>, width: number, shape: readonly number[]): Tensor | undefined {
  if (!Array.prototype.some.call(padding, (flag: number) => flag !== 0)) return undefined;
  const keep = new Float32Array(padding.length * width);
  for (let position = 0; position < padding.length; position++) {
    if (padding[position] === 0) keep.fill(1, position * width, (position + 1) * width);
  }
  return backend.upload(keep, shape, 'f32');
}
