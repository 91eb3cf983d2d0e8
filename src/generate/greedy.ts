/**
 * Plain greedy decoding: one sequence, starting from BOS, each step appends the most probable
 * token, until EOS or `maxLen` tokens. Unlike beam search (./beam-search.ts) it applies none of
 * fairseq's rules — no min length, no banned pad, no forced EOS, no n-gram blocking — so it shows
 * what the model itself prefers.
 */
import { BOS_ID, EOS_ID } from '../text/bpe.js';
import type { StepDecoder } from './decoder.js';

export interface GreedyOptions {
  /** The most tokens to generate, EOS included. */
  maxLen: number;
}

export interface GreedyResult {
  /** The generated tokens without the leading BOS; the last one is EOS if the model ended the sequence. */
  tokens: Int32Array;
  /** Each token's log-probability given its prefix. */
  positionalScores: Float32Array;
  /** The sum of the positional scores, in double precision (not length-normalized). */
  score: number;
}

/** Greedy decoding with a decoder that holds one sequence. */
export async function greedy(decoder: StepDecoder, options: GreedyOptions): Promise<GreedyResult> {
  const { maxLen } = options;
  if (!Number.isInteger(maxLen) || maxLen < 1) {
    throw new RangeError(`greedy: maxLen must be a positive integer, got ${maxLen}`);
  }
  const vocabSize = decoder.vocabSize;
  const tokens: number[] = [];
  const positionalScores: number[] = [];
  let previous = BOS_ID;
  for (let step = 0; step < maxLen && previous !== EOS_ID; step++) {
    const logProbs = await decoder.step(Int32Array.of(previous), step);
    if (logProbs.length !== vocabSize) {
      throw new Error(`greedy: the decoder returned ${logProbs.length} log-probabilities, expected ${vocabSize}`);
    }
    previous = argmax(logProbs);
    tokens.push(previous);
    positionalScores.push(logProbs[previous]!);
  }
  const scores = Float32Array.from(positionalScores);
  return {
    tokens: Int32Array.from(tokens),
    positionalScores: scores,
    score: scores.reduce((sum, value) => sum + value, 0),
  };
}

/** Index of the first maximum (ties go to the lowest id); NaN entries are skipped. */
function argmax(values: Float32Array): number {
  let best = -1;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isNaN(values[i]) && (best < 0 || values[i]! > values[best]!)) best = i;
  }
  if (best < 0) throw new Error('greedy: every log-probability is NaN');
  return best;
}
