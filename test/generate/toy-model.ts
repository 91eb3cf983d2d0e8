/**
 * A test double of the OFA decoder for the generators' tests: a table-driven language model
 * over a handful of words. Its "key/value cache" is each sequence's prefix, so a search that
 * feeds or reorders sequences wrongly gets the wrong distributions back, and every call is
 * recorded for the tests to inspect.
 */
import type { StepDecoder } from '../../src/generate/decoder.js';

/** fairseq's four specials at ids 0–3 (as in OFA's dictionary), then the words. */
export const TOY_WORDS: readonly string[] = ['<s>', '<pad>', '</s>', '<unk>', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];

/**
 * The probability of every id a row does not list. It keeps every log-probability finite and is
 * so small that an unlisted token never beats a listed one in these tests. Rows therefore do not
 * sum to exactly 1; the search only adds and compares log-probabilities, so it need not care.
 */
export const UNLISTED_PROBABILITY = 1e-6;

/** Next-token probabilities by word; NaN is allowed, to test the search's NaN handling. */
export type Row = Readonly<Record<string, number>>;

/** The model: next-token probabilities given the words after BOS. */
export type Table = (prefix: readonly string[]) => Row;

export interface ToyModelOptions {
  /** Vocabulary, specials first; default TOY_WORDS. */
  words?: readonly string[];
  /**
   * A row returned at step 0 for every sequence but the first. A real model gives all beams the
   * same row there (they all hold BOS); this lets a test expose a search that reads them.
   */
  stepZeroOtherRows?: Row;
}

export class ToyModel implements StepDecoder {
  readonly vocabSize: number;
  /** The words fed at each step, one per sequence. */
  readonly fed: string[][] = [];
  /** The `indices` of each reorder call. */
  readonly reorders: number[][] = [];
  readonly #table: Table;
  readonly #words: readonly string[];
  readonly #stepZeroOtherRows: Row | undefined;
  /** Each sequence's words after BOS. */
  #prefixes: string[][];

  constructor(table: Table, batch: number, options: ToyModelOptions = {}) {
    this.#table = table;
    this.#words = options.words ?? TOY_WORDS;
    this.#stepZeroOtherRows = options.stepZeroOtherRows;
    this.vocabSize = this.#words.length;
    this.#prefixes = Array.from({ length: batch }, () => []);
  }

  async step(tokens: Int32Array, step: number): Promise<Float32Array> {
    if (tokens.length !== this.#prefixes.length) {
      throw new Error(`toy model: ${tokens.length} tokens fed to ${this.#prefixes.length} sequences`);
    }
    if (step !== this.fed.length) throw new Error(`toy model: step ${step} after ${this.fed.length} steps`);
    const words = Array.from(tokens, (id) => this.#words[id]!);
    this.fed.push(words);
    const logProbs = new Float32Array(tokens.length * this.vocabSize);
    this.#prefixes.forEach((prefix, sequence) => {
      if (step === 0) {
        if (words[sequence] !== '<s>') throw new Error('toy model: step 0 must feed BOS');
      } else {
        prefix.push(words[sequence]!);
      }
      const row = step === 0 && sequence > 0 && this.#stepZeroOtherRows ? this.#stepZeroOtherRows : this.#table(prefix);
      logProbs.set(this.#logProbabilities(row), sequence * this.vocabSize);
    });
    return logProbs;
  }

  reorder(indices: Int32Array): void {
    this.reorders.push(Array.from(indices));
    this.#prefixes = Array.from(indices, (index) => [...this.#prefixes[index]!]);
  }

  /** Token ids of space-separated words. */
  ids(text: string): Int32Array {
    return Int32Array.from(text.split(' '), (word) => this.#id(word));
  }

  /** Space-separated words of token ids. */
  text(tokens: Int32Array): string {
    return Array.from(tokens, (id) => this.#words[id]!).join(' ');
  }

  #logProbabilities(row: Row): Float32Array {
    const logProbs = new Float32Array(this.vocabSize).fill(Math.log(UNLISTED_PROBABILITY));
    for (const [word, probability] of Object.entries(row)) logProbs[this.#id(word)] = Math.log(probability);
    return logProbs;
  }

  #id(word: string): number {
    const id = this.#words.indexOf(word);
    if (id < 0) throw new Error(`toy model: '${word}' is not in the vocabulary`);
    return id;
  }
}

/** A table from the full prefix (words after BOS, space-separated; '' right after BOS). */
export function prefixTable(rows: Readonly<Record<string, Row>>): Table {
  return (prefix) => rows[prefix.join(' ')] ?? {};
}

/** A table from the last word only (a bigram model; '' right after BOS). */
export function bigramTable(rows: Readonly<Record<string, Row>>): Table {
  return (prefix) => rows[prefix.at(-1) ?? ''] ?? {};
}
