/**
 * The decoder's threshold schedule of the authors' sequence generator (mue-spec.md §3): no exit in
 * the first third of the generation, then a threshold that starts just under
 * `0.9·threshold + 0.1·e^(−1/3)` and decays towards `0.9·threshold` as the sequence grows.
 */
export function decoderThreshold(threshold: number, step: number, maxLen: number): number {
  if (step < (maxLen + 1) / 3) return 1.0; // cos ≤ 1: "> 1.0" never holds
  return 0.9 * threshold + 0.1 * Math.exp(-(step + 1) / (maxLen + 1));
}
