/**
 * What OFA's evaluation does around the model for the two tasks this engine serves
 * (ofa-arch.md §7): the caption prompt and post-processing (`CaptionDataset`, `eval_caption`),
 * and the SNLI-VE prompts and answer read-out (`SnliVeDataset`, `SnliVeTask`, `eval_snli_ve`).
 * Prompts are text: the caller encodes them and wraps them in BOS … EOS (src/text/bpe.ts).
 */
import { preCaption } from '../text/bpe.js';

/** The captioning instruction, fed to the encoder as `[BOS] + bpe(CAPTION_PROMPT) + [EOS]`. */
export const CAPTION_PROMPT = ' what does the image describe?';

/** Python's `string.punctuation`: the 32 ASCII punctuation characters. */
const ASCII_PUNCTUATION = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;
/** Leading or trailing characters that Python's `str.strip()` removes (`str.isspace()`). */
const SURROUNDING_WHITESPACE = /^[\p{White_Space}\u001c-\u001f]+|[\p{White_Space}\u001c-\u001f]+$/gu;

/** `eval_caption`: the detokenized caption without ASCII punctuation, whitespace-stripped. */
export function captionPostprocess(text: string): string {
  return text.replace(ASCII_PUNCTUATION, '').replace(SURROUNDING_WHITESPACE, '');
}

/** `max_src_length` of OFA's SNLI-VE scripts: hypothesis and premise keep their first 80 words. */
export const ENTAILMENT_MAX_WORDS = 80;

/**
 * The SNLI-VE encoder text (`SnliVeDataset.__getitem__`), hypothesis and premise normalized by
 * `pre_caption`. Without a premise: the plain prompt of zero-shot evaluation. With one: the
 * `--add-caption` prompt that the released fine-tuned checkpoints were trained with.
 */
export function entailmentPrompt(hypothesis: string, premise?: string): string {
  const normalizedHypothesis = preCaption(hypothesis, ENTAILMENT_MAX_WORDS);
  if (premise === undefined) return ` does the image describe " ${normalizedHypothesis} "?`;
  const normalizedPremise = preCaption(premise, ENTAILMENT_MAX_WORDS);
  return ` can image and text1 " ${normalizedPremise} " imply text2 " ${normalizedHypothesis} "?`;
}

/** A hypothesis or premise longer than OFA reads: its words after `pre_caption`, the first `keptWords` of them kept. */
export interface EntailmentTruncation {
  text: 'hypothesis' | 'premise';
  words: number;
  keptWords: number;
}

/**
 * What `entailmentPrompt` cuts: OFA's SNLI-VE evaluation drops the words of a hypothesis or
 * premise past the 80th without notice; the pipeline reports them.
 */
export function entailmentTruncations(hypothesis: string, premise?: string): EntailmentTruncation[] {
  const texts = premise === undefined ? { hypothesis } : { premise, hypothesis };
  return Object.entries(texts).flatMap(([text, value]) => {
    const words = preCaption(value, Number.MAX_SAFE_INTEGER).split(' ').length;
    return words > ENTAILMENT_MAX_WORDS ? [{ text: text as EntailmentTruncation['text'], words, keptWords: ENTAILMENT_MAX_WORDS }] : [];
  });
}

export type EntailmentLabel = 'entailment' | 'contradiction' | 'neutral';

export interface EntailmentAnswer {
  readonly label: EntailmentLabel;
  /** The answer text the model generates. */
  readonly text: string;
  /** Its single BPE token (ofa-arch.md §2). */
  readonly tokenId: number;
}

/**
 * The three answers in `ans2label_dict` order (`{"no": 0, "yes": 1, "maybe": 2}`), the order in
 * which `eval_snli_ve` scores them; its argmax takes the first of equal scores.
 */
export const ENTAILMENT_ANSWERS: readonly EntailmentAnswer[] = [
  { label: 'contradiction', text: ' no', tokenId: 117 },
  { label: 'entailment', text: ' yes', tokenId: 4420 },
  { label: 'neutral', text: ' maybe', tokenId: 2085 },
];

export interface EntailmentReading {
  label: EntailmentLabel;
  /** The answers' softmax over just the three of them (what the constraint trie leaves allowed). */
  probabilities: Record<EntailmentLabel, number>;
}

/**
 * `eval_snli_ve` for single-token answers: the decoder runs once over `[BOS] + prompt tokens`
 * (no EOS, `prompt_type 'prev_output'`), and the answer is the argmax of the last position's
 * scores among the three answer ids. The trie masks every other id to −∞ before the
 * log-softmax, so that log-softmax is taken over the three alone — the same for logits and
 * log-probabilities, hence either may be passed. (The EOS after the answer is the only allowed
 * token there and adds log 1 = 0.)
 */
export function readEntailment(lastPositionScores: ArrayLike<number>): EntailmentReading {
  const scores = ENTAILMENT_ANSWERS.map(({ tokenId, text }) => {
    if (tokenId >= lastPositionScores.length) {
      const count = lastPositionScores.length;
      throw new RangeError(`readEntailment: ${count} scores do not reach the id of '${text}' (${tokenId})`);
    }
    return lastPositionScores[tokenId]!;
  });
  if (scores.some(Number.isNaN)) throw new Error('readEntailment: an answer score is NaN');
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  const maximum = scores[best]!;
  if (!Number.isFinite(maximum)) throw new Error(`readEntailment: the best answer score is ${maximum}`);
  const exponentials = scores.map((score) => Math.exp(score - maximum));
  const total = exponentials.reduce((sum, value) => sum + value, 0);
  const probability = (label: EntailmentLabel): number =>
    exponentials[ENTAILMENT_ANSWERS.findIndex((answer) => answer.label === label)]! / total;
  return {
    label: ENTAILMENT_ANSWERS[best]!.label,
    probabilities: {
      entailment: probability('entailment'),
      contradiction: probability('contradiction'),
      neutral: probability('neutral'),
    },
  };
}
