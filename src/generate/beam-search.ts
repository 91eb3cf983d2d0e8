/**
 * Beam search for one source sentence, as fairseq's `SequenceGenerator._generate` with
 * `BeamSearch.step` runs it in OFA (OFA `models/sequence_generator.py`, `fairseq/search.py`,
 * `fairseq/ngram_repeat_block.py`; ofa-arch.md §7.2). Reproduced:
 *
 * - `max_len = int(max_len_a · src_len + max_len_b)` generated tokens, not counting BOS or the
 *   final EOS; steps run 0..max_len, and at step max_len only EOS may be chosen;
 * - the per-step masks, in fairseq's order: EOS banned while step < min_len, NaN → −∞, pad → −∞,
 *   unk −= unk_penalty, all but EOS → −∞ at max_len, repeated n-grams → −∞;
 * - step 0 reads beam 0 only (every beam holds the same BOS prefix, and reading all of them would
 *   fill the beam with copies of one hypothesis);
 * - `cand_size = 2·beam`: the top min(2·beam, rows·V − 1) (score, token, beam) candidates over the
 *   rows' cumulative scores, so that `beam` non-EOS continuations remain when up to `beam` of
 *   them are EOS;
 * - finalization only from the first `beam` candidates, and only EOS with a score above −∞
 *   (`eos_mask`), skipping candidate slots marked `cands_to_ignore`; at most `beam` hypotheses
 *   are kept, in the order they were finalized; final score = cumulative / (step + 1)^len_penalty
 *   when `normalize_scores` (the length counts the EOS);
 * - the search ends once `beam` hypotheses are finalized, or after step max_len;
 * - the next beam = the first `beam` candidates that are not finalized EOS nor ignored slots, in
 *   top-k order; when fewer than `beam` such candidates exist (only possible at step 0 with a
 *   vocabulary of beam + 1 entries), excluded candidates fill the rest, in top-k order, and
 *   their positions are marked `cands_to_ignore` for the next step — fairseq applies that mask to
 *   the next step's candidate positions, not to the beams, and so does this code;
 * - scores are fp32, as fairseq's `scores` buffer: every sum and difference is rounded to fp32.
 *
 * Ties: torch.topk does not specify the order of equal scores; here equal candidates keep the
 * order of their flat index beam·V + token (lower first), and the finalized list is sorted by a
 * stable sort (equal scores keep their finalization order).
 */
import { BOS_ID, EOS_ID, PAD_ID, UNK_ID } from '../text/bpe.js';
import type { StepDecoder } from './decoder.js';

/** fairseq's generation options; the defaults are OFA's caption evaluation (ofa-arch.md §7.1). */
export interface BeamSearchOptions {
  /** `--beam`, default 5. fairseq caps it at vocabSize − 1 because pad is never selected. */
  beamSize?: number;
  /** `--max-len-a`, default 0: the length limit grows by this much per source token. */
  maxLenA?: number;
  /** `--max-len-b`, default 16 (OFA's caption scripts; fairseq's own default is 200). */
  maxLenB?: number;
  /**
   * fairseq's `src_len = src_tokens.size(1)`: the encoder's text tokens, BOS and EOS included
   * (image patches are not counted). Required when `maxLenA` is not 0.
   */
  sourceLength?: number;
  /** `--min-len`, default 1: EOS is banned at steps below it. */
  minLen?: number;
  /** `--lenpen`, default 1: the exponent of the length that divides final scores. */
  lenPenalty?: number;
  /** `normalize_scores` (fairseq: true unless `--unnormalized`), default true. */
  normalizeScores?: boolean;
  /** `--unkpen`, default 0: subtracted from the log-probability of `<unk>`. */
  unkPenalty?: number;
  /** `--no-repeat-ngram-size`, default 3; 0 disables the blocking. */
  noRepeatNgramSize?: number;
}

/** One finished sequence, as fairseq's `finalize_hypos` records it. */
export interface Hypothesis {
  /** The generated tokens without the leading BOS, ending with EOS (fairseq's `tokens`). */
  tokens: Int32Array;
  /** Each token's log-probability given its prefix, the EOS included (`positional_scores`). */
  positionalScores: Float32Array;
  /**
   * The hypothesis' cumulative fp32 log-probability, EOS included, divided by
   * tokens.length^lenPenalty when `normalizeScores` (`score`).
   */
  score: number;
}

/** One of the top-k entries of `BeamSearch.step`: extend hypothesis `beam` by `token`. */
interface Candidate {
  /** Cumulative fp32 log-probability of the extended hypothesis. */
  score: number;
  token: number;
  beam: number;
}

const DEFAULTS = {
  beamSize: 5,
  maxLenA: 0,
  maxLenB: 16,
  minLen: 1,
  lenPenalty: 1,
  normalizeScores: true,
  unkPenalty: 0,
  noRepeatNgramSize: 3,
} as const;

/**
 * fairseq's `max_len = int(max_len_a · src_len + max_len_b)`: the most tokens generated before
 * the EOS that step max_len forces. Exported because MuE's decoder threshold schedule is a
 * function of it (mue-spec.md §3).
 */
export function maxGenerationLength(options: Pick<BeamSearchOptions, 'maxLenA' | 'maxLenB' | 'sourceLength'>): number {
  const maxLenA = options.maxLenA ?? DEFAULTS.maxLenA;
  const maxLenB = options.maxLenB ?? DEFAULTS.maxLenB;
  if (maxLenA !== 0 && options.sourceLength === undefined) {
    throw new Error('beam search: maxLenA is not 0, so sourceLength is required');
  }
  const maxLen = Math.trunc(maxLenA * (options.sourceLength ?? 0) + maxLenB);
  if (!(maxLen >= 0)) throw new RangeError(`beam search: max_len must be ≥ 0, got ${maxLen}`);
  return maxLen;
}

/**
 * Finds the best hypotheses for one source sentence; returns them sorted by score, best first.
 * `decoder` must hold min(beamSize, vocabSize − 1) sequences. Fewer than that many hypotheses come
 * back only when step max_len leaves fewer EOS candidates above −∞ — none at all if every beam's
 * EOS is −∞ there, a case in which fairseq fails an assertion.
 */
export async function beamSearch(decoder: StepDecoder, options: BeamSearchOptions = {}): Promise<Hypothesis[]> {
  return (await beamSearchBatch(decoder, 1, options))[0]!;
}

/**
 * Beam search for `sentences` source sentences at once, as fairseq's batched generation: the
 * decoder holds min(beamSize, vocabSize − 1) sequences per sentence, sentence-major, and each
 * sentence's search is exactly `beamSearch`'s, on its own rows of every step's
 * log-probabilities. Once a sentence is finished its sequences are dropped from the decoder (the
 * reorder leaves them out), so later steps run only the sentences still searching. Returns each
 * sentence's hypotheses, best first.
 */
export async function beamSearchBatch(decoder: StepDecoder, sentences: number, options: BeamSearchOptions = {}): Promise<Hypothesis[][]> {
  if (!Number.isInteger(sentences) || sentences < 1) {
    throw new RangeError(`beam search: the number of sentences must be a positive integer, got ${sentences}`);
  }
  const settings = searchSettings(decoder.vocabSize, options);
  const { beamSize, maxLen } = settings;
  const vocabSize = decoder.vocabSize;
  const searches = Array.from({ length: sentences }, () => new SentenceSearch(settings));
  /** The sentences whose sequences the decoder holds, in its order. */
  let searching = searches;
  for (let step = 0; step <= maxLen && searching.length > 0; step++) {
    const lastTokens = new Int32Array(searching.length * beamSize);
    searching.forEach((search, i) => lastTokens.set(search.lastTokens(step), i * beamSize));
    const logProbs = await decoder.step(lastTokens, step);
    if (logProbs.length !== lastTokens.length * vocabSize) {
      throw new Error(
        `beam search: the decoder returned ${logProbs.length} log-probabilities, expected ${lastTokens.length} × ${vocabSize}`,
      );
    }
    // Each sentence picks its next beams among its own rows; the decoder keeps the rows of those still searching.
    const rows: number[] = [];
    const next: SentenceSearch[] = [];
    searching.forEach((search, i) => {
      const rowsOfSentence = logProbs.subarray(i * beamSize * vocabSize, (i + 1) * beamSize * vocabSize);
      const parents = search.advance(rowsOfSentence, step);
      if (!parents) return;
      next.push(search);
      for (const parent of parents) rows.push(i * beamSize + parent);
    });
    if (next.length > 0) decoder.reorder(Int32Array.from(rows));
    searching = next;
  }
  return searches.map((search) => search.hypotheses());
}

/** The resolved options of a search. */
interface SearchSettings {
  beamSize: number;
  maxLen: number;
  minLen: number;
  noRepeatNgramSize: number;
  lenPenalty: number;
  normalizeScores: boolean;
  unkPenalty: number;
}

function searchSettings(vocabSize: number, options: BeamSearchOptions): SearchSettings {
  if (!Number.isInteger(vocabSize) || vocabSize <= UNK_ID) {
    throw new RangeError(`beam search: the vocabulary must hold the four special tokens, got size ${vocabSize}`);
  }
  const requestedBeam = options.beamSize ?? DEFAULTS.beamSize;
  if (!Number.isInteger(requestedBeam) || requestedBeam < 1) {
    throw new RangeError(`beam search: beamSize must be a positive integer, got ${requestedBeam}`);
  }
  const maxLen = maxGenerationLength(options);
  const minLen = options.minLen ?? DEFAULTS.minLen;
  if (!Number.isInteger(minLen) || minLen < 0 || minLen > maxLen) {
    throw new RangeError(`beam search: minLen must be an integer in 0..max_len (${maxLen}), got ${minLen}`);
  }
  const noRepeatNgramSize = options.noRepeatNgramSize ?? DEFAULTS.noRepeatNgramSize;
  if (!Number.isInteger(noRepeatNgramSize) || noRepeatNgramSize < 0) {
    throw new RangeError(`beam search: noRepeatNgramSize must be a non-negative integer, got ${noRepeatNgramSize}`);
  }
  return {
    beamSize: Math.min(requestedBeam, vocabSize - 1),
    maxLen,
    minLen,
    noRepeatNgramSize,
    lenPenalty: options.lenPenalty ?? DEFAULTS.lenPenalty,
    normalizeScores: options.normalizeScores ?? DEFAULTS.normalizeScores,
    unkPenalty: options.unkPenalty ?? DEFAULTS.unkPenalty,
  };
}

/** The search of one sentence: fairseq's buffers and one `BeamSearch.step` per decoder step. */
class SentenceSearch {
  // fairseq's buffers, one row per beam: `tokens` holds BOS, the generated tokens and room for
  // EOS; `scores[b][s]` is hypothesis b's cumulative log-probability after step s.
  #tokens: Int32Array[];
  #scores: Float32Array[];
  // `cands_to_ignore`: candidate positions (< beamSize) of the coming step that may be neither
  // finalized nor continued.
  #ignoredSlots: boolean[];
  readonly #finalized: Hypothesis[] = [];

  constructor(private readonly settings: SearchSettings) {
    const { beamSize, maxLen } = settings;
    this.#tokens = Array.from({ length: beamSize }, () => new Int32Array(maxLen + 2).fill(PAD_ID));
    for (const row of this.#tokens) row[0] = BOS_ID;
    this.#scores = Array.from({ length: beamSize }, () => new Float32Array(maxLen + 1));
    this.#ignoredSlots = new Array<boolean>(beamSize).fill(false);
  }

  /** The token each beam feeds at `step`. */
  lastTokens(step: number): Int32Array {
    return Int32Array.from(this.#tokens, (row) => row[step]!);
  }

  /**
   * One step on the beams' log-probabilities `[beam × V]` (masked in place): finalizes what ends
   * here and returns the parent beam of each next beam, or undefined once the search is over.
   */
  advance(logProbs: Float32Array, step: number): Int32Array | undefined {
    const { beamSize, maxLen, minLen, noRepeatNgramSize, unkPenalty, normalizeScores, lenPenalty } = this.settings;
    const vocabSize = logProbs.length / beamSize;
    const tokens = this.#tokens;
    const scores = this.#scores;
    const finalized = this.#finalized;
    const sourceBeams = step === 0 ? 1 : beamSize;
    for (let beam = 0; beam < sourceBeams; beam++) {
      const row = logProbs.subarray(beam * vocabSize, (beam + 1) * vocabSize);
      if (step < minLen) row[EOS_ID] = -Infinity;
      // A NaN would compare false with everything and could stick in the top-k.
      for (let token = 0; token < vocabSize; token++) {
        if (Number.isNaN(row[token])) row[token] = -Infinity;
      }
      row[PAD_ID] = -Infinity;
      row[UNK_ID] = row[UNK_ID]! - unkPenalty; // rounded to fp32 by the store
      // The last step: every surviving hypothesis must end here.
      if (step === maxLen) {
        const eos = row[EOS_ID]!;
        row.fill(-Infinity);
        row[EOS_ID] = eos;
      }
      if (noRepeatNgramSize > 0) banRepeatedNgrams(row, tokens[beam]!.subarray(0, step + 1), noRepeatNgramSize);
    }

    const previousScores = step === 0 ? undefined : Float32Array.from(scores, (row) => row[step - 1]!);
    const topCount = Math.min(2 * beamSize, sourceBeams * vocabSize - 1);
    const candidates = topCandidates(logProbs, vocabSize, sourceBeams, previousScores, topCount);

    // `eos_mask`: an EOS candidate that can end a hypothesis (a −∞ EOS is an ordinary candidate).
    const endsWithEos = candidates.map((c) => c.token === EOS_ID && c.score !== -Infinity);
    for (let position = 0; position < beamSize; position++) {
      if (!endsWithEos[position] || this.#ignoredSlots[position]) continue;
      if (finalized.length === beamSize) break;
      const candidate = candidates[position]!;
      finalized.push(
        finalize(tokens[candidate.beam]!, scores[candidate.beam]!, candidate.score, step, normalizeScores, lenPenalty),
      );
    }
    if (finalized.length === beamSize || step === maxLen) return undefined;

    // `active_mask` + topk(largest=False): the next beams are the candidates that are neither
    // finalizable EOS nor ignored slots, in top-k order; excluded candidates fill any shortfall.
    const excluded = candidates.map((_, position) => endsWithEos[position]! || (this.#ignoredSlots[position] ?? false));
    const positions = candidates.map((_, position) => position);
    const activeFirst = [...positions.filter((p) => !excluded[p]), ...positions.filter((p) => excluded[p])];
    const chosen = activeFirst.slice(0, beamSize);
    this.#ignoredSlots = chosen.map((p) => excluded[p]!);

    this.#tokens = chosen.map((p) => {
      const row = tokens[candidates[p]!.beam]!.slice();
      row[step + 1] = candidates[p]!.token;
      return row;
    });
    this.#scores = chosen.map((p) => {
      const row = scores[candidates[p]!.beam]!.slice();
      row[step] = candidates[p]!.score;
      return row;
    });
    return Int32Array.from(chosen, (p) => candidates[p]!.beam);
  }

  /** The finished hypotheses, best first. */
  hypotheses(): Hypothesis[] {
    return [...this.#finalized].sort((a, b) => b.score - a.score);
  }
}

/**
 * `NGramRepeatBlock`: an n-gram may not occur twice. Every n-gram completed in the prefix
 * (BOS included) whose first n − 1 tokens equal the prefix's last n − 1 tokens bans its last
 * token as the next one. No n-gram is complete before step n − 1.
 */
function banRepeatedNgrams(row: Float32Array, prefix: Int32Array, n: number): void {
  const last = prefix.length - 1;
  const keyStart = last - n + 2;
  for (let start = 0; start + n - 1 <= last; start++) {
    let matches = true;
    for (let j = 0; j < n - 1 && matches; j++) matches = prefix[start + j] === prefix[keyStart + j];
    if (matches) row[prefix[start + n - 1]!] = -Infinity;
  }
}

/**
 * `BeamSearch.step`: the `count` best candidates over the first `sourceBeams` rows, scored by the
 * row's masked log-probability plus the hypothesis' cumulative score (fp32 sum; nothing is added
 * at step 0, when `previousScores` is undefined). Sorted by score, equal scores by flat index.
 */
function topCandidates(
  logProbs: Float32Array,
  vocabSize: number,
  sourceBeams: number,
  previousScores: Float32Array | undefined,
  count: number,
): Candidate[] {
  const best: Candidate[] = [];
  for (let beam = 0; beam < sourceBeams; beam++) {
    const base = previousScores?.[beam] ?? 0;
    for (let token = 0; token < vocabSize; token++) {
      const score = Math.fround(logProbs[beam * vocabSize + token]! + base);
      // Strictly better only: an equal score with a higher flat index stays behind.
      if (best.length === count) {
        if (!(score > best[count - 1]!.score)) continue;
        best.pop();
      }
      let at = best.length;
      while (at > 0 && score > best[at - 1]!.score) at--;
      best.splice(at, 0, { score, token, beam });
    }
  }
  return best;
}

/**
 * `finalize_hypos` for one EOS candidate of hypothesis row (`tokens`, `scores`) at `step`:
 * tokens after BOS plus EOS, per-position scores as fp32 differences of the cumulative ones,
 * and the final score, length-normalized in fp32. (PyTorch's CUDA kernel divides a tensor by a
 * scalar as a product with its fp32 reciprocal, which may differ from this in the last bit.)
 */
function finalize(
  tokens: Int32Array,
  scores: Float32Array,
  eosScore: number,
  step: number,
  normalizeScores: boolean,
  lenPenalty: number,
): Hypothesis {
  const length = step + 1;
  const finalTokens = new Int32Array(length);
  finalTokens.set(tokens.subarray(1, length));
  finalTokens[step] = EOS_ID;
  const cumulative = new Float32Array(length);
  cumulative.set(scores.subarray(0, step));
  cumulative[step] = eosScore;
  const positionalScores = new Float32Array(length);
  positionalScores[0] = cumulative[0]!;
  for (let i = 1; i < length; i++) positionalScores[i] = cumulative[i]! - cumulative[i - 1]!;
  const score = normalizeScores ? Math.fround(eosScore / Math.fround(length ** lenPenalty)) : eosScore;
  return { tokens: finalTokens, positionalScores, score };
}
