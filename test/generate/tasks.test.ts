import { beforeAll, describe, expect, it } from 'vitest';
import {
  CAPTION_PROMPT,
  ENTAILMENT_ANSWERS,
  captionPostprocess,
  entailmentPrompt,
  entailmentTruncations,
  readEntailment,
} from '../../src/generate/tasks.js';
import { OFA_VOCAB_SIZE, OfaTokenizer } from '../../src/text/bpe.js';

let tokenizer: OfaTokenizer;

beforeAll(async () => {
  tokenizer = await OfaTokenizer.load();
});

describe('caption (ofa-arch.md §7.1)', () => {
  it('encodes the prompt to the §2 vector', () => {
    expect(tokenizer.encodeWithSpecials(CAPTION_PROMPT)).toEqual([0, 99, 473, 5, 2274, 6190, 116, 2]);
  });

  it('removes ASCII punctuation and strips whitespace as eval_caption does', () => {
    expect(captionPostprocess(' a dog\'s ball, on the grass.  ')).toBe('a dogs ball on the grass');
    expect(captionPostprocess('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~x')).toBe('x');
    // Python's str.strip() also removes U+001C..U+001F and U+00A0; non-ASCII punctuation stays.
    expect(captionPostprocess('\u001c\u00a0«a man» \n')).toBe('«a man»');
    // Inner whitespace is kept as is.
    expect(captionPostprocess('a  man - walking')).toBe('a  man  walking');
  });
});

describe('SNLI-VE (ofa-arch.md §7.3)', () => {
  it('builds the plain prompt with pre_caption normalization, matching the §2 vector', () => {
    const prompt = entailmentPrompt('Two dogs play in the snow');
    expect(prompt).toBe(' does the image describe " two dogs play in the snow "?');
    expect(tokenizer.encodeWithSpecials(prompt)).toEqual([0, 473, 5, 2274, 6190, 22, 80, 3678, 310, 11, 5, 1958, 22, 116, 2]);
    expect(entailmentPrompt('...A black-and-white  Dog/cat')).toBe(' does the image describe " a black and white dog cat "?');
  });

  it('builds the --add-caption prompt with the premise', () => {
    expect(entailmentPrompt('A dog runs.', 'Two dogs play in the snow.')).toBe(
      ' can image and text1 " two dogs play in the snow. " imply text2 " a dog runs. "?',
    );
  });

  it('keeps the first 80 words (max_src_length) and reports what it cut', () => {
    const words = Array.from({ length: 90 }, (_, i) => `w${i}`);
    expect(entailmentPrompt(words.join(' '))).toBe(` does the image describe " ${words.slice(0, 80).join(' ')} "?`);
    expect(entailmentTruncations(words.join(' '))).toEqual([{ text: 'hypothesis', words: 90, keptWords: 80 }]);
    // Words are counted after pre_caption: '-' and '/' split words, runs of spaces are one.
    expect(entailmentTruncations(`${'a-b/c  '.repeat(27)}d`, 'a dog')).toEqual([{ text: 'hypothesis', words: 82, keptWords: 80 }]);
    expect(entailmentTruncations('a dog', words.slice(0, 81).join(' '))).toEqual([{ text: 'premise', words: 81, keptWords: 80 }]);
    expect(entailmentTruncations(words.slice(0, 80).join(' '), 'a dog')).toEqual([]);
  });

  it('names single-token answers the tokenizer agrees with', () => {
    for (const { text, tokenId } of ENTAILMENT_ANSWERS) expect(tokenizer.encode(text)).toEqual([tokenId]);
    expect(ENTAILMENT_ANSWERS.map((a) => a.label)).toEqual(['contradiction', 'entailment', 'neutral']);
  });

  it('reads the argmax of the three answers and their softmax', () => {
    const logits = new Float32Array(OFA_VOCAB_SIZE).fill(10); // other ids do not take part
    logits[117] = 1; // no
    logits[4420] = 3; // yes
    logits[2085] = 2; // maybe
    const reading = readEntailment(logits);
    const total = Math.exp(1) + Math.exp(3) + Math.exp(2);
    expect(reading.label).toBe('entailment');
    expect(reading.probabilities.contradiction).toBeCloseTo(Math.exp(1) / total, 6);
    expect(reading.probabilities.entailment).toBeCloseTo(Math.exp(3) / total, 6);
    expect(reading.probabilities.neutral).toBeCloseTo(Math.exp(2) / total, 6);
    // Log-probabilities (logits shifted by a constant) read the same.
    const shifted = logits.map((value) => value - 7.5);
    expect(readEntailment(shifted)).toEqual(reading);
  });

  it('breaks ties in ans2label order (no, yes, maybe) and rejects short or NaN input', () => {
    const scores = new Float32Array(OFA_VOCAB_SIZE);
    expect(readEntailment(scores).label).toBe('contradiction');
    scores[4420] = Number.NaN;
    expect(() => readEntailment(scores)).toThrow(/NaN/);
    expect(() => readEntailment(new Float32Array(4000))).toThrow(/4420/);
  });
});
