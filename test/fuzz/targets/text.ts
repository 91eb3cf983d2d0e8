/**
 * The tokenizer as the pipeline uses it: bytes → text (UTF-8, invalid sequences replaced, as a
 * prompt read from a file would be) → OFA's `pre_caption` cleanup and BPE, and the plain BPE of
 * the raw text. Every text must encode — there is no refusal — in time linear in its length.
 *
 * The oracle: byte-level BPE is lossless, so decoding the ids of a text must give the text back.
 */
import { OfaTokenizer, preCaption } from '../../../src/text/bpe.js';
import type { FuzzCase, FuzzTarget } from '../target.js';
import { createRng } from '../../helpers/random.js';

let tokenizer: OfaTokenizer | undefined;
const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
const textOf = (bytes: Uint8Array): string => new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes);
/** What decoding each accepted input's ids gave, for the round-trip oracle. */
const roundTrips = new WeakMap<Uint8Array, string>();

function randomText(length: number, alphabet: string, seed: number): string {
  const rng = createRng(seed);
  const letters = [...alphabet];
  return Array.from({ length }, () => letters[Math.floor(rng() * letters.length)]).join('');
}

const bpe: FuzzTarget = {
  name: 'bpe',
  seeds: () =>
    [
      ' what does the image describe?',
      ' does the image describe " two dogs play in the snow "?',
      "A man's bike, leaning on a wall — it's 2023!  Tabs\tand\nnewlines\u00a0and\ufeffmarks.",
      ' héllo wörld 🐶 日本語 العربية Ελληνικά',
      '<code_12> <bin_999> <mask> 12345678901234567890',
    ].map((text) => ({ name: JSON.stringify(text.slice(0, 30)), bytes: utf8(text) })),
  handmade: (): FuzzCase[] => [
    { name: 'one 30,000-letter word', bytes: utf8(randomText(30_000, 'abcdefghijklmnopqrstuvwxyz', 1)) },
    { name: '100,000 digits', bytes: utf8(randomText(100_000, '0123456789', 2)) },
    { name: '100,000 spaces then a letter', bytes: utf8(`${' '.repeat(100_000)}x`) },
    { name: '100,000 punctuation marks', bytes: utf8(randomText(100_000, '!?.,;:-_()[]{}', 3)) },
    { name: "20,000 times 's", bytes: utf8("'s".repeat(20_000)) },
    { name: '30,000 combining accents on one letter', bytes: utf8(`a${'\u0301'.repeat(30_000)}`) },
    { name: '20,000 emoji', bytes: utf8('🐶'.repeat(20_000)) },
    { name: '50,000 no-break spaces', bytes: utf8('\u00a0'.repeat(50_000)) },
    { name: 'invalid UTF-8', bytes: Uint8Array.from({ length: 40_000 }, (_, i) => [0xc3, 0xff, 0x80, 0xed, 0xa0][i % 5]!) },
  ],
  async run(bytes) {
    tokenizer ??= await OfaTokenizer.load();
    const text = textOf(bytes);
    tokenizer.encode(preCaption(text, 80));
    roundTrips.set(bytes, tokenizer.decode(tokenizer.encode(text)));
  },
  isCleanError: () => false,
  acceptedGarbage(bytes) {
    const text = textOf(bytes);
    const decoded = roundTrips.get(bytes);
    if (decoded === undefined || decoded === text) return undefined;
    const at = [...text].findIndex((char, i) => [...decoded][i] !== char);
    return `decode(encode(text)) differs from the text at character ${at}`;
  },
  dictionary: () => ["'s", ' ', '\u00a0', '\ufeff', '🐶', '\u0301', '0', 'a', '\n', '\t'].map(utf8),
};

export const targets: FuzzTarget[] = [bpe];
