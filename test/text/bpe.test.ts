import { readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRng } from '../helpers/random.js';
import {
  BIN_COUNT,
  CODE_COUNT,
  FIRST_BIN_ID,
  FIRST_CODE_ID,
  MASK_ID,
  OFA_VOCAB_SIZE,
  OfaTokenizer,
  preCaption,
} from '../../src/text/bpe.js';

let tokenizer: OfaTokenizer;

beforeAll(async () => {
  tokenizer = await OfaTokenizer.load();
});

describe('OfaTokenizer.encode: ofa-arch.md §2 verification vectors', () => {
  it('encodes the caption prompt', () => {
    expect(tokenizer.encodeWithSpecials(' what does the image describe?')).toEqual([0, 99, 473, 5, 2274, 6190, 116, 2]);
  });

  it('encodes the SNLI-VE answers as single tokens and " a dog" as two', () => {
    expect(tokenizer.encode(' no')).toEqual([117]);
    expect(tokenizer.encode(' yes')).toEqual([4420]);
    expect(tokenizer.encode(' maybe')).toEqual([2085]);
    expect(tokenizer.encode(' a dog')).toEqual([10, 2335]);
  });

  it('encodes the SNLI-VE prompt with quotes', () => {
    expect(tokenizer.encodeWithSpecials(' does the image describe " two dogs play in the snow "?')).toEqual([
      0, 473, 5, 2274, 6190, 22, 80, 3678, 310, 11, 5, 1958, 22, 116, 2,
    ]);
  });

  it('maps GPT-2 "." and " the" to the first dictionary ids', () => {
    expect(tokenizer.encode('.')).toEqual([4]);
    expect(tokenizer.encode(' the')).toEqual([5]);
  });
});

describe('OfaTokenizer.encode: agreement with fairseq GPT-2 BPE (Python `regex` oracle)', () => {
  // Ids produced by fairseq's gpt2_bpe_utils encoder + dict.txt on the same strings.
  it('splits non-ASCII text and emoji into byte-level tokens', () => {
    expect(tokenizer.encode(' héllo wörld 🐶 日本語')).toEqual([
      1368, 1140, 9905, 885, 17920, 4779, 8103, 16948, 19002, 47416, 6800, 8210, 44636, 11582, 48537, 17772,
    ]);
  });

  it('keeps one space for the next word when splitting whitespace runs', () => {
    expect(tokenizer.encode("it's  two\n\n  spaces  ")).toEqual([405, 18, 1437, 80, 50140, 1437, 5938, 1437, 1437]);
  });

  it('treats U+00A0 as whitespace and U+FEFF as a symbol, as Python `regex` \\s does', () => {
    expect(tokenizer.encode('a\u00a0b\ufeffc')).toEqual([102, 50141, 428, 43251, 2023, 9470, 438]);
  });

  it('encodes the empty string to no tokens', () => {
    expect(tokenizer.encode('')).toEqual([]);
    expect(tokenizer.encodeWithSpecials('')).toEqual([0, 2]);
  });

  it('rejects text with an unpaired surrogate, naming its index', () => {
    expect(() => tokenizer.encode('ab\ud800c')).toThrow(/unpaired UTF-16 surrogate at index 2/);
  });
});

describe('OfaTokenizer.decode', () => {
  it.each([
    ' what does the image describe?',
    ' héllo wörld 🐶 日本語 — ünïcödé, кошка, عربى',
    '👩‍👩‍👧 🇫🇷 e\u0301 \ufeffBOM kept',
    "it's  two\n\n  spaces\t\r\n  ",
  ])('round-trips %j', (text) => {
    expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
  });

  it('drops BOS, EOS and padding', () => {
    expect(tokenizer.decode([0, 10, 2335, 2, 1, 1])).toBe(' a dog');
  });

  it('writes <unk>, <mask>, codes and bins as their literal strings', () => {
    expect(tokenizer.decode([10, 3, MASK_ID, FIRST_CODE_ID + 7, FIRST_BIN_ID + 999, 2335])).toBe(
      ' a<unk><mask><code_7><bin_999> dog',
    );
  });

  it('replaces a UTF-8 sequence cut between tokens with U+FFFD', () => {
    const dogIds = tokenizer.encode('🐶');
    expect(dogIds.length).toBeGreaterThan(1);
    expect(tokenizer.decode(dogIds.slice(0, 1))).toBe('\ufffd');
  });

  it('rejects out-of-range ids', () => {
    expect(() => tokenizer.decode([5, OFA_VOCAB_SIZE])).toThrow(/59457 is not an integer in \[0, 59456\]/);
  });
});

describe('OfaTokenizer vocabulary', () => {
  it('has 59457 ids with <mask>, codes and bins where OFA puts them', () => {
    expect(tokenizer.vocabSize).toBe(59457);
    expect(MASK_ID).toBe(50264);
    expect(FIRST_CODE_ID).toBe(50265);
    expect(FIRST_BIN_ID).toBe(58457);
    expect(FIRST_BIN_ID + BIN_COUNT).toBe(OFA_VOCAB_SIZE);
    expect(tokenizer.token(MASK_ID)).toBe('<mask>');
    expect(tokenizer.token(50265)).toBe('<code_0>');
    expect(tokenizer.token(50265 + CODE_COUNT - 1)).toBe('<code_8191>');
    expect(tokenizer.token(58457)).toBe('<bin_0>');
    expect(tokenizer.token(59456)).toBe('<bin_999>');
  });

  it('names specials, byte-level tokens and the dictionary fillers', () => {
    expect([0, 1, 2, 3].map((id) => tokenizer.token(id))).toEqual(['<s>', '<pad>', '</s>', '<unk>']);
    expect(tokenizer.token(5)).toBe('Ġthe');
    expect(tokenizer.token(50261)).toBe('madeupword0000');
  });

  it.each([-1, 59457, 1.5, Number.NaN])('token(%d) throws with the valid range', (id) => {
    expect(() => tokenizer.token(id)).toThrow(RangeError);
    expect(() => tokenizer.token(id)).toThrow(/\[0, 59456\]/);
  });
});

describe('OfaTokenizer.encode: long words', () => {
  /** GPT-2's `bpe()` as written: merge every occurrence of the lowest-ranked pair, rescan, repeat. */
  function gpt2Merges(word: string, rank: ReadonlyMap<string, number>): string[] {
    let parts = Array.from(word);
    for (;;) {
      let best: [string, string] | undefined;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < parts.length; i++) {
        const r = rank.get(`${parts[i]} ${parts[i + 1]}`);
        if (r !== undefined && r < bestRank) [bestRank, best] = [r, [parts[i]!, parts[i + 1]!]];
      }
      if (!best) return parts;
      const merged: string[] = [];
      for (let i = 0; i < parts.length; i++) {
        const pair = i + 1 < parts.length && parts[i] === best[0] && parts[i + 1] === best[1];
        merged.push(pair ? best[0] + best[1] : parts[i]!);
        if (pair) i++;
      }
      parts = merged;
    }
  }

  it('gives the tokens of GPT-2\'s merge loop on long random words and digit runs', async () => {
    const vocab = await readFile(new URL('../../weights/ofa-bpe/vocab.bpe', import.meta.url), 'utf8');
    const rank = new Map(vocab.split('\n').slice(1).filter(Boolean).map((line, index) => [line, index] as const));
    const rng = createRng(11);
    for (const [alphabet, length] of [['abcdefghijklmnopqrstuvwxyz', 2000], ['0123456789', 3000], ['ab', 1500], ['a', 999]] as const) {
      const word = Array.from({ length }, () => alphabet[Math.floor(rng() * alphabet.length)]).join('');
      const tokens = tokenizer.encode(word).map((id) => tokenizer.token(id));
      expect(tokens, `${length} of ${alphabet}`).toEqual(gpt2Merges(word, rank));
    }
  });
});

describe('OfaTokenizer.fromFiles', () => {
  const dir = new URL('../../weights/ofa-bpe/', import.meta.url);
  const readVocab = async (name: string): Promise<string> => readFile(new URL(name, dir), 'utf8');

  it('builds the same tokenizer from file contents', async () => {
    const fromContents = OfaTokenizer.fromFiles({
      encoderJson: await readVocab('encoder.json'),
      vocabBpe: await readVocab('vocab.bpe'),
      dictTxt: await readVocab('dict.txt'),
    });
    expect(fromContents.encode(' a dog')).toEqual([10, 2335]);
  });

  it('rejects a dictionary of the wrong size, explaining why it matters', async () => {
    const files = {
      encoderJson: await readVocab('encoder.json'),
      vocabBpe: await readVocab('vocab.bpe'),
      dictTxt: '13 100\n262 90\n',
    };
    expect(() => OfaTokenizer.fromFiles(files)).toThrow(/dict.txt has 2 entries; OFA's has 50260/);
  });

  it('rejects malformed files with the line at fault', async () => {
    const encoderJson = await readVocab('encoder.json');
    const dictTxt = await readVocab('dict.txt');
    expect(() => OfaTokenizer.fromFiles({ encoderJson: '{"a": "x"}', vocabBpe: '', dictTxt })).toThrow(
      /encoder.json maps "a" to "x"/,
    );
    expect(() => OfaTokenizer.fromFiles({ encoderJson, vocabBpe: '#version: 0.2\nĠ t\nbad\n', dictTxt })).toThrow(
      /vocab.bpe line 3/,
    );
  });

  it('load() names the missing file and directory', async () => {
    await expect(OfaTokenizer.load('/nonexistent/ofa-bpe')).rejects.toThrow(
      /cannot read encoder.json at \/nonexistent\/ofa-bpe\/encoder.json/,
    );
  });
});

describe('preCaption (OFA pre_caption; expected strings from the Python original)', () => {
  it.each([
    ['Two Dogs play in the SNOW.', 80, 'two dogs play in the snow.'],
    ['...!?A man-made lake/pond', 80, 'a man made lake pond'],
    ['  <PERSON> rides   a bike \n\n', 80, 'person rides a bike'],
    ['one two three four five', 3, 'one two three'],
    ['a\tb', 80, 'a\tb'],
    ['tab\t\tand\u00a0\u00a0nbsp\u001c\u001dfs', 80, 'tab and nbsp fs'],
    ['ΣΊΣΥΦΟΣ', 80, 'σίσυφος'],
    ['hello\n', 80, 'hello'],
    [' , starts with space', 80, ', starts with space'],
    ['word '.repeat(100), 80, Array<string>(80).fill('word').join(' ')],
  ])('preCaption(%j, %d) = %j', (text, maxWords, expected) => {
    expect(preCaption(text, maxWords)).toBe(expected);
  });

  it('rejects a negative or fractional word limit', () => {
    expect(() => preCaption('a b', -1)).toThrow(/maxWords must be a non-negative integer, got -1/);
    expect(() => preCaption('a b', 2.5)).toThrow(RangeError);
  });
});
