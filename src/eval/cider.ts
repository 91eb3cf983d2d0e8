/**
 * CIDEr-D (Vedantam et al., CVPR 2015) exactly as pycocoevalcap's `Cider` scores a caption split
 * (`cider/cider_scorer.py`), which is what the OFA and MuE papers report as "CIDEr":
 *
 * - each sentence is a vector of its 1- to 4-gram counts weighted by tf-idf, where the document
 *   frequency of an n-gram is the number of *images* whose references contain it, over the split
 *   being scored, and idf = log(images) − log(max(1, df));
 * - per order n, the similarity of candidate and reference is the clipped cosine
 *   Σ min(c_g, r_g)·r_g / (‖c‖·‖r‖) (0 when either norm is 0), times a Gaussian length penalty
 *   exp(−δ²/2σ²), σ = 6, where δ is the difference of the two sentences' *bigram* counts (what
 *   pycocoevalcap calls the length: one less than the word count for sentences of 2+ words);
 * - an image scores 10 × the mean over orders of the similarity summed over its references and
 *   divided by their number; the split scores the mean over images.
 *
 * The document frequencies come from the split itself, so a split of one image scores 0 (log 1 = 0
 * everywhere), as in pycocoevalcap. Sentences are token lists (see `ptb.ts` for the tokenization
 * pycocoevalcap applies first).
 */
import { type NgramCounts, countNgrams } from './ngrams.js';

export interface CiderOptions {
  /** Highest n-gram order (default 4). */
  maxOrder?: number;
  /** Standard deviation of the length penalty (default 6). */
  sigma?: number;
}

export interface CiderResult {
  /** The split's CIDEr-D: the mean of `scores`. */
  score: number;
  /** Each image's CIDEr-D. */
  scores: number[];
}

/** A sentence as tf-idf vectors, one per n-gram order. */
interface TfIdf {
  vectors: Map<string, number>[];
  norms: number[];
  /** The number of bigrams (pycocoevalcap's length). */
  length: number;
}

/**
 * Scores `candidates[i]` against `references[i]` (one or more token lists per image) over the
 * split they form.
 */
export function ciderD(
  candidates: readonly (readonly string[])[],
  references: readonly (readonly (readonly string[])[])[],
  options: CiderOptions = {},
): CiderResult {
  const maxOrder = options.maxOrder ?? 4;
  const sigma = options.sigma ?? 6;
  if (candidates.length !== references.length) {
    throw new Error(`ciderD: ${candidates.length} candidates but ${references.length} reference sets`);
  }
  references.forEach((refs, i) => {
    if (refs.length === 0) throw new Error(`ciderD: image ${i} has no reference`);
  });
  const referenceCounts = references.map((refs) => refs.map((ref) => countNgrams(ref, maxOrder)));

  // Document frequency: in how many images' references (any of them) each n-gram occurs.
  const documentFrequency = new Map<string, number>();
  for (const refs of referenceCounts) {
    const seen = new Set(refs.flatMap((counts) => counts.flatMap((map) => [...map.keys()])));
    for (const ngram of seen) documentFrequency.set(ngram, (documentFrequency.get(ngram) ?? 0) + 1);
  }
  const logImages = Math.log(references.length);

  const tfIdf = (counts: NgramCounts): TfIdf => {
    const vectors = counts.map((map) => {
      const vector = new Map<string, number>();
      for (const [ngram, termFrequency] of map) {
        const df = Math.log(Math.max(1, documentFrequency.get(ngram) ?? 0));
        vector.set(ngram, termFrequency * (logImages - df));
      }
      return vector;
    });
    const norms = vectors.map((vector) => Math.sqrt([...vector.values()].reduce((sum, w) => sum + w * w, 0)));
    const length = maxOrder >= 2 ? [...counts[1]!.values()].reduce((sum, c) => sum + c, 0) : 0;
    return { vectors, norms, length };
  };

  /** Per order: the clipped cosine of candidate and reference, times the length penalty. */
  const similarity = (candidate: TfIdf, reference: TfIdf): number[] => {
    const delta = candidate.length - reference.length;
    const penalty = Math.E ** (-(delta * delta) / (2 * sigma * sigma));
    return candidate.vectors.map((vector, n) => {
      const referenceVector = reference.vectors[n]!;
      let value = 0;
      for (const [ngram, weight] of vector) {
        const referenceWeight = referenceVector.get(ngram) ?? 0;
        value += Math.min(weight, referenceWeight) * referenceWeight;
      }
      const norms = candidate.norms[n]! * reference.norms[n]!;
      if (norms !== 0) value /= norms;
      return value * penalty;
    });
  };

  const scores = candidates.map((candidate, i) => {
    const vector = tfIdf(countNgrams(candidate, maxOrder));
    const sums = Array.from({ length: maxOrder }, () => 0);
    for (const counts of referenceCounts[i]!) {
      similarity(vector, tfIdf(counts)).forEach((value, n) => (sums[n]! += value));
    }
    const meanOverOrders = sums.reduce((a, b) => a + b, 0) / maxOrder;
    return (meanOverOrders / referenceCounts[i]!.length) * 10;
  });
  const score = scores.length === 0 ? 0 : scores.reduce((a, b) => a + b, 0) / scores.length;
  return { score, scores };
}
