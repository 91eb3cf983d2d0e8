/**
 * Corpus BLEU as pycocoevalcap's `Bleu(4)` computes it (`bleu/bleu_scorer.py`, option
 * `closest`), the "Bleu_1" … "Bleu_4" of COCO caption evaluations:
 *
 * - per candidate: its n-gram counts clipped by the largest count of that n-gram in any one of
 *   its references ("correct"), the number of its n-grams ("guess"), its length, and the length of
 *   the reference closest to it (ties: the shorter);
 * - over the corpus those are summed; BLEU-N = (Π_{k≤N} (correct_k + 1e-15) / (guess_k + 1e-9))^(1/N),
 *   times the brevity penalty exp(1 − reflen/testlen) when the candidates are shorter in total
 *   (ratio = (testlen + 1e-15) / (reflen + 1e-9) < 1).
 */
import { countNgrams } from './ngrams.js';

const TINY = 1e-15;
const SMALL = 1e-9;

/**
 * BLEU-1 … BLEU-`maxOrder` of `candidates[i]` against `references[i]` (token lists), over the
 * corpus; `[maxOrder − 1]` is BLEU-4 by default.
 */
export function corpusBleu(
  candidates: readonly (readonly string[])[],
  references: readonly (readonly (readonly string[])[])[],
  maxOrder = 4,
): number[] {
  if (candidates.length !== references.length) {
    throw new Error(`corpusBleu: ${candidates.length} candidates but ${references.length} reference sets`);
  }
  const correct = Array.from({ length: maxOrder }, () => 0);
  const guess = Array.from({ length: maxOrder }, () => 0);
  let testLength = 0;
  let referenceLength = 0;
  candidates.forEach((candidate, i) => {
    const refs = references[i]!;
    if (refs.length === 0) throw new Error(`corpusBleu: sentence ${i} has no reference`);
    const maxCounts = new Map<string, number>();
    for (const ref of refs) {
      for (const map of countNgrams(ref, maxOrder)) {
        for (const [ngram, count] of map) maxCounts.set(ngram, Math.max(maxCounts.get(ngram) ?? 0, count));
      }
    }
    const length = candidate.length;
    countNgrams(candidate, maxOrder).forEach((map, k) => {
      for (const [ngram, count] of map) correct[k]! += Math.min(maxCounts.get(ngram) ?? 0, count);
      guess[k]! += Math.max(0, length - k);
    });
    testLength += length;
    referenceLength += closestLength(refs.map((ref) => ref.length), length);
  });

  const ratio = (testLength + TINY) / (referenceLength + SMALL);
  const brevityPenalty = ratio < 1 ? Math.exp(1 - 1 / ratio) : 1;
  const scores: number[] = [];
  let product = 1;
  for (let k = 0; k < maxOrder; k++) {
    product *= (correct[k]! + TINY) / (guess[k]! + SMALL);
    scores.push(product ** (1 / (k + 1)) * brevityPenalty);
  }
  return scores;
}

/** The reference length nearest `length`, the shorter of two equally near. */
function closestLength(lengths: readonly number[], length: number): number {
  let best = lengths[0]!;
  for (const l of lengths) {
    const distance = Math.abs(l - length);
    const bestDistance = Math.abs(best - length);
    if (distance < bestDistance || (distance === bestDistance && l < best)) best = l;
  }
  return best;
}
