/**
 * N-gram counts of a tokenized sentence: what CIDEr-D and BLEU both start from (pycocoevalcap's
 * `precook`). A sentence is a list of tokens without spaces; an n-gram is keyed by its tokens
 * joined with single spaces, which also keeps n-grams of different orders apart.
 */

/** `counts[k]`: each (k+1)-gram of the sentence with its number of occurrences, in order of first appearance. */
export type NgramCounts = Map<string, number>[];

export function countNgrams(tokens: readonly string[], maxOrder: number): NgramCounts {
  const counts: NgramCounts = Array.from({ length: maxOrder }, () => new Map<string, number>());
  for (let order = 1; order <= maxOrder; order++) {
    const map = counts[order - 1]!;
    for (let start = 0; start + order <= tokens.length; start++) {
      const key = tokens.slice(start, start + order).join(' ');
      map.set(key, (map.get(key) ?? 0) + 1);
    }
  }
  return counts;
}
