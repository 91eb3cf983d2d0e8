/**
 * The one thing the generators need from a model: an incremental decoder over a batch of live
 * sequences (the beams), fed one token per sequence per step (ofa-arch.md §5.5). The generators
 * own the search; the model owns the key/value caches and the encoder output they attend to.
 */
export interface StepDecoder {
  /** Size of the output distribution (59457 for OFA). */
  readonly vocabSize: number;

  /**
   * Feeds one token per live sequence (batch = number of beams) at position `step`, returns
   * log-probabilities [batch × vocab] (fp32 log-softmax of the last position's logits).
   *
   * `step` is the position of the fed tokens and, equally, the index of the generation step
   * (step 0 feeds BOS). MuE's decoder exit threshold depends on it (mue-spec.md §3), which is why
   * it is passed rather than left for the decoder to count. The returned array is handed over to
   * the caller, which may modify it in place (the search masks banned tokens there).
   */
  step(tokens: Int32Array, step: number): Promise<Float32Array>;

  /**
   * Reorders the per-sequence state (key/value caches) so that new sequence i continues old
   * sequence indices[i]; the batch may shrink. An index may repeat: two beams can grow from the
   * same parent. Called between steps, never before the first.
   */
  reorder(indices: Int32Array): void;
}
