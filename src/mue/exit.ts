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
 *   the skipping of later layers all stay in the one recorded submission; no read-back per layer)
 *   or on the host (`'host'`: the similarity is read back after every layer and JavaScript decides;
 *   the readable reference the device mode is tested against);
 * - **whose states a decision covers**: each sample (beam) alone (`'per-sample'`, ours), or the
 *   whole batch flattened into one vector (`'batch'`, what the authors' code does; they run batch 1).
 *
 * Samples that have stopped keep their exit state: later layers still run for the others (unless
 * every sample has stopped, when they are skipped), and the rule puts the kept states back. One
 * backend op, `decideExit`, applies the rule after a layer (selection, similarity and comparison:
 * one kernel on WebGPU).
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

/** What one layer decided, kept on the device until the caller reads the report. */
export interface LayerDecision {
  /** The layer's index (0-based). */
  layer: number;
  /** f32 `[B]` (or `[1]` for batch scope): cos(h_i, h_{i−1}) of each sample; unspecified for samples that had stopped before. */
  similarity: Tensor;
  /** i32 `[B]` (or `[1]`): 1 for samples that have stopped after this layer or earlier. */
  done: Tensor;
  /** Host mode only: every sample had stopped, so the layer was not run at all. */
  skippedOnHost: boolean;
}

export class ExitTracker {
  readonly decisions: LayerDecision[] = [];
  #done: Tensor | undefined;
  /** i32 `[1]`: every sample has stopped (the gate of the next layer). */
  #allDone: Tensor | undefined;
  #allDoneOnHost = false;

  constructor(
    readonly backend: Backend,
    readonly options: ExitOptions,
  ) {}

  /** i32 flags of the samples that have stopped, or undefined before the first layer. */
  get done(): Tensor | undefined {
    return this.#done;
  }

  /**
   * Runs layer `layer` (through `run`) on `previous` for the samples still going, applies the exit
   * rule, and returns the state every sample carries forward (its exit state once stopped).
   */
  async step(layer: number, previous: Tensor, run: (x: Tensor) => Tensor): Promise<Tensor> {
    const { backend } = this;
    if (this.#allDoneOnHost) {
      this.decisions.push({ layer, similarity: this.#done!, done: this.#done!, skippedOnHost: true });
      return previous;
    }
    const doneBefore = this.#done;
    const allDoneBefore = this.#allDone;
    const { keep } = this.options;
    const runLayer = (): Tensor => {
      const output = run(previous);
      if (!keep) return output;
      const masked = backend.mul(output, keep);
      output.dispose();
      return masked;
    };
    const computed = allDoneBefore && this.options.site === 'device' ? backend.unlessAll(allDoneBefore, runLayer) : runLayer();
    const { state, similarity, done, allDone } = this.#decide(previous, computed, doneBefore);
    computed.dispose();
    allDoneBefore?.dispose();
    this.decisions.push({ layer, similarity, done, skippedOnHost: false });
    this.#done = done;
    this.#allDone = allDone;
    if (this.options.site === 'host') {
      const flags = await done.read();
      this.#allDoneOnHost = flags.every((f) => f !== 0);
    }
    return state;
  }

  /** The exit rule on each sample's states, or on the whole batch flattened into one. */
  #decide(previous: Tensor, computed: Tensor, doneBefore: Tensor | undefined): ExitDecision {
    const { threshold, scope } = this.options;
    if (scope === 'per-sample') return this.backend.decideExit(previous, computed, threshold, doneBefore);
    const whole = (t: Tensor): Tensor => t.reshape([1, -1]);
    const decision = this.backend.decideExit(whole(previous), whole(computed), threshold, doneBefore);
    return { ...decision, state: decision.state.reshape(previous.shape) };
  }

  /** Frees the decision tensors (after the report has read them). */
  dispose(): void {
    const seen = new Set<Tensor>();
    for (const d of this.decisions) {
      for (const t of [d.similarity, d.done]) {
        if (!seen.has(t)) t.dispose();
        seen.add(t);
      }
    }
    this.decisions.length = 0;
    this.#done = undefined;
    this.#allDone?.dispose();
    this.#allDone = undefined;
  }
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
