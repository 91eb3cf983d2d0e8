/**
 * Caption metrics against pycocoevalcap: CIDEr-D (`Cider`) and corpus BLEU (`Bleu(4)`, closest
 * reference length), and the PTB tokenization that precedes them.
 *
 * Two kinds of expected values:
 * - worked by hand below (each case says how);
 * - printed by pycocoevalcap's scorer logic (`cider/cider_scorer.py`, `bleu/bleu_scorer.py` of
 *   pycocoevalcap 1.2, read from its source) run in Python 3.11 with numpy on these pre-tokenized
 *   strings, to 16 digits. pycocoevalcap itself could not be installed here (no PyPI), so its two
 *   scorers were transcribed line by line into a scratch script; the values are that script's.
 */
import { describe, expect, it } from 'vitest';
import { corpusBleu } from '../../src/eval/bleu.js';
import { ciderD } from '../../src/eval/cider.js';
import { ptbTokenize } from '../../src/eval/ptb.js';

const words = (s: string): string[] => s.split(' ').filter((w) => w !== '');
const refsOf = (sets: string[][]): string[][][] => sets.map((refs) => refs.map(words));

/** Python's values (see the file comment). */
const PYCOCOEVALCAP = [
  {
    name: 'COCO-like: three references per image',
    candidates: [
      'a man riding a wave on top of a surfboard',
      'a plate of food with broccoli and meat',
      'two dogs play in the snow',
      'a red bus on a city street',
    ],
    references: [
      ['a man riding a wave on a surfboard', 'a surfer rides a large wave in the ocean', 'a person on a surfboard riding a wave'],
      ['a plate with meat and broccoli on it', 'a white plate topped with food and vegetables', 'a close up of a plate of food'],
      ['two dogs playing in the snow together', 'a pair of dogs run through the snow', 'dogs are playing in a snowy field'],
      ['a double decker bus driving down a street', 'a red bus parked on the side of a road', 'a bus on a city street'],
    ],
    cider: 2.748200081948618,
    ciderPerImage: [3.346895375058516, 2.489675610633534, 1.8485551754764615, 3.3076741666259597],
    bleu: [0.9032258064224766, 0.7759835936362847, 0.6603740149042274, 0.5491511459864236],
  },
  {
    name: 'shapes-eval-like: one reference per image',
    candidates: ['a red circle and a blue square', 'a green triangle', 'a blue square and a green circle and a yellow triangle', 'a red circle'],
    references: [
      ['a red circle and a blue circle'],
      ['a green triangle and a blue square'],
      ['a blue square and a green circle and a yellow triangle'],
      ['a red triangle and a blue triangle and a green square'],
    ],
    cider: 5.770191686777588,
    ciderPerImage: [7.92454095155377, 4.535672608575675, 10.0, 0.6205531869809047],
    bleu: [0.5559864380235818, 0.5509088299467775, 0.544093360373635, 0.547042564214819],
  },
  {
    name: 'repeated words (clipping), one-word sentences, an empty candidate',
    candidates: ['a a a a', 'dog', 'the cat the cat on the mat', ''],
    references: [['a a'], ['dog', 'a dog'], ['the cat is on the mat', 'there is a cat on the mat'], ['an empty caption']],
    cider: 1.9887173838122374,
    ciderPerImage: [1.9707488935557615, 2.457042773743769, 3.5270778679494197, 0],
    bleu: [0.6133629429839885, 0.5599211996756993, 0.43517592079314427, 0.35092017710446444],
  },
];

describe('CIDEr-D', () => {
  it('matches pycocoevalcap', () => {
    for (const c of PYCOCOEVALCAP) {
      const result = ciderD(c.candidates.map(words), refsOf(c.references));
      expect(result.score, c.name).toBeCloseTo(c.cider, 12);
      result.scores.forEach((s, i) => expect(s, `${c.name}, image ${i}`).toBeCloseTo(c.ciderPerImage[i]!, 12));
    }
  });

  it('scores hand-worked cases', () => {
    // Two images, each captioned exactly by its one 2-word reference: every n-gram has df 1 of 2
    // images, so orders 1 and 2 have cosine 1, orders 3 and 4 have no n-grams (0):
    // 10 × (1 + 1 + 0 + 0) / 4 = 5.
    expect(ciderD([words('a b'), words('c d')], [[words('a b')], [words('c d')]]).scores).toEqual([5, 5]);
    // Four words or more, matched exactly: all four orders have cosine 1 → 10.
    expect(ciderD([words('a b c d'), words('e')], [[words('a b c d')], [words('f')]]).scores[0]).toBeCloseTo(10, 14);
    // The same candidate against a reference 3 bigrams longer that contains it: the candidate's
    // 1-grams a b c and 2-grams "a b" "b c" are all in the reference (df 1 of 2, idf log 2), so
    // order n's cosine is √(count_n(cand) / count_n(ref)) — √(3/6), √(2/5), √(1/4), 0 over orders
    // 1–4 — times the length penalty exp(−3²/72).
    const contained = ciderD([words('a b c'), words('z')], [[words('a b c x y w')], [words('q')]]).scores[0]!;
    const cosines = [Math.sqrt(3 / 6), Math.sqrt(2 / 5), Math.sqrt(1 / 4), 0];
    expect(contained).toBeCloseTo(((10 * cosines.reduce((a, b) => a + b)) / 4) * Math.exp(-9 / 72), 12);
    // One image: every idf is log 1 − log 1 = 0, so the split scores 0 (pycocoevalcap's behaviour).
    expect(ciderD([words('a b c')], [[words('a b c')]]).score).toBe(0);
  });

  it('refuses mismatched inputs', () => {
    expect(() => ciderD([words('a')], [])).toThrow(/1 candidates but 0 reference sets/);
    expect(() => ciderD([words('a')], [[]])).toThrow(/image 0 has no reference/);
  });
});

describe('BLEU (corpus, closest reference length)', () => {
  it('matches pycocoevalcap', () => {
    for (const c of PYCOCOEVALCAP) {
      const scores = corpusBleu(c.candidates.map(words), refsOf(c.references));
      scores.forEach((s, k) => expect(s, `${c.name}, BLEU-${k + 1}`).toBeCloseTo(c.bleu[k]!, 12));
    }
  });

  it('scores hand-worked cases', () => {
    // "the cat" against "the cat sat": p1 = 2/2, p2 = 1/1, p3 = p4 = (0 + 1e-15) / (0 + 1e-9) = 1e-6,
    // brevity penalty exp(1 − 3/2). BLEU-4 = (1 · 1 · 1e-6 · 1e-6)^(1/4) · e^(−1/2).
    const [b1, b2, , b4] = corpusBleu([words('the cat')], [[words('the cat sat')]]);
    expect(b1).toBeCloseTo(Math.exp(-0.5), 8);
    expect(b2).toBeCloseTo(Math.exp(-0.5), 8);
    expect(b4! / (1e-3 * Math.exp(-0.5))).toBeCloseTo(1, 6);
    // The closest reference length decides the penalty: 4 words against references of 2 and 6
    // words ties at distance 2 and takes the shorter, so no penalty; "a b c d" is inside "a b c d e f".
    expect(corpusBleu([words('a b c d')], [[words('x y'), words('a b c d e f')]])[3]).toBeCloseTo(1, 8);
  });
});

describe('PTB tokenization (pycocoevalcap)', () => {
  it('lower-cases, splits clitics and punctuation, and drops the punctuation tokens', () => {
    const cases: [string, string][] = [
      ['A man riding a wave on top of a surfboard.', 'a man riding a wave on top of a surfboard'],
      ["The dog's toy isn't red, it's blue!", "the dog 's toy is n't red it 's blue"],
      ['Two people (a man and a woman) sit on a bench.', 'two people a man and a woman sit on a bench'],
      ['A T-shirt costs $5.50...', 'a t-shirt costs $ 5.50'],
      ['He said "hello" to the U.S. team', 'he said hello to the u.s. team'],
      ['I cannot go -- really; 1,000 dogs at 3:30', 'i can not go really 1,000 dogs at 3:30'],
      ["the dogs' bowls near Mr. Smith", 'the dogs bowls near mr. smith'],
      ['a red,blue [striped] ball', 'a red blue -LSB- striped -RSB- ball'],
      ['constructor toString', 'constructor tostring'],
    ];
    for (const [text, tokens] of cases) expect(ptbTokenize(text).join(' '), text).toBe(tokens);
  });
});
