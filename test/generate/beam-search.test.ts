/**
 * Beam search against hand-traced runs of fairseq's algorithm (ofa-arch.md §7.2) over toy
 * language models (./toy-model.ts). Each trace lists the candidates of every step as
 * "prefix+token probability", best first; unlisted tokens have probability 1e-6 and stay out of
 * the way. Scores are log-probabilities, so expected values are logs of the products.
 */
import { describe, expect, it } from 'vitest';
import { type BeamSearchOptions, type Hypothesis, beamSearch, beamSearchBatch, maxGenerationLength } from '../../src/generate/beam-search.js';
import type { StepDecoder } from '../../src/generate/decoder.js';
import { greedy } from '../../src/generate/greedy.js';
import { ToyModel, type Table, type ToyModelOptions, bigramTable, prefixTable } from './toy-model.js';

const { log } = Math;

async function search(
  table: Table,
  options: BeamSearchOptions,
  modelOptions: ToyModelOptions = {},
): Promise<{ model: ToyModel; hypotheses: Hypothesis[]; texts: string[] }> {
  const model = new ToyModel(table, options.beamSize ?? 5, modelOptions);
  const hypotheses = await beamSearch(model, options);
  return { model, hypotheses, texts: hypotheses.map((h) => model.text(h.tokens)) };
}

/** Greedy takes a at step 0 (.5 > .4), then c (.4 > .35): "a c </s>", p = .18. Beam 2 finds "b c </s>", p = .324. */
const GREEDY_TRAP = prefixTable({
  '': { a: 0.5, b: 0.4 },
  a: { c: 0.4, d: 0.35 },
  b: { c: 0.9 },
  'a c': { '</s>': 0.9 },
  'a d': { '</s>': 0.9 },
  'b c': { '</s>': 0.9 },
});

describe('beamSearch: fairseq SequenceGenerator._generate + BeamSearch.step', () => {
  // Beam 2 on GREEDY_TRAP:
  //   step 0 (beam 0 only): a .5, b .4                → beams [a, b], reorder [0, 0]
  //   step 1: b+c .36, a+c .2, a+d .175, …             → beams [b c, a c], reorder [1, 0]
  //   step 2: b c+</s> .324, a c+</s> .18 (first two)  → both finalized: 2 = beam, stop
  it('finds the sequence greedy decoding misses (a)', async () => {
    const { model, hypotheses, texts } = await search(GREEDY_TRAP, { beamSize: 2 });
    expect(texts).toEqual(['b c </s>', 'a c </s>']);
    expect(hypotheses[0]!.score).toBeCloseTo(log(0.324) / 3, 5);
    expect(hypotheses[1]!.score).toBeCloseTo(log(0.18) / 3, 5);
    expect(Array.from(hypotheses[0]!.positionalScores)).toEqual(
      [log(0.4), log(0.9), log(0.9)].map((value) => expect.closeTo(value, 5)),
    );

    const greedyModel = new ToyModel(GREEDY_TRAP, 1);
    const greedyResult = await greedy(greedyModel, { maxLen: 16 });
    expect(greedyModel.text(greedyResult.tokens)).toBe('a c </s>');
    expect(greedyResult.score).toBeCloseTo(log(0.18), 5);
    expect(model.fed).toHaveLength(3);
  });

  it('reorders the decoder by each new beam’s parent and feeds the tokens it chose (f)', async () => {
    const { model } = await search(GREEDY_TRAP, { beamSize: 2 });
    expect(model.reorders).toEqual([
      [0, 0],
      [1, 0],
    ]);
    // The search stopped after step 2, so no third reorder.
    expect(model.fed).toEqual([
      ['<s>', '<s>'],
      ['a', 'b'],
      ['c', 'c'],
    ]);
  });

  it('reads only beam 0 at step 0 (g)', async () => {
    // Beam 1 would offer h with p = .99 at step 0; reading it would make "h …" win.
    const { texts, model } = await search(GREEDY_TRAP, { beamSize: 2 }, { stepZeroOtherRows: { h: 0.99 } });
    expect(texts).toEqual(['b c </s>', 'a c </s>']);
    // Identical rows at step 0 would otherwise fill the beam with copies of "a".
    expect(model.fed[1]).toEqual(['a', 'b']);
  });

  // Beam 1. '' prefers </s> (.6) over a (.3); "a" prefers </s> (.7) over c (.2).
  const EARLY_END = prefixTable({
    '': { '</s>': 0.6, a: 0.3 },
    a: { '</s>': 0.7, c: 0.2 },
    'a c': { '</s>': 0.9 },
  });
  it('bans EOS while step < minLen (b)', async () => {
    // minLen 0: step 0 candidate </s> .6 is first → finalized at once.
    const free = await search(EARLY_END, { beamSize: 1, minLen: 0 });
    expect(free.texts).toEqual(['</s>']);
    expect(free.hypotheses[0]!.score).toBeCloseTo(log(0.6), 5);
    // minLen 1 (the default): a at step 0, then </s> .7 at step 1.
    const one = await search(EARLY_END, { beamSize: 1 });
    expect(one.texts).toEqual(['a </s>']);
    expect(one.hypotheses[0]!.score).toBeCloseTo(log(0.3 * 0.7) / 2, 5);
    // minLen 2: </s> banned at steps 0 and 1 → a, c, then </s> .9.
    const two = await search(EARLY_END, { beamSize: 1, minLen: 2 });
    expect(two.texts).toEqual(['a c </s>']);
    expect(two.hypotheses[0]!.score).toBeCloseTo(log(0.3 * 0.2 * 0.9) / 3, 5);
  });

  // A model that never wants to stop: </s> only has the 1e-6 of unlisted tokens.
  const ENDLESS = bigramTable({
    '': { a: 0.6, b: 0.3 },
    a: { a: 0.6, b: 0.3 },
    b: { a: 0.5, b: 0.4 },
  });
  it('forces EOS at step maxLen; maxLen counts the tokens after BOS, EOS excluded (c)', async () => {
    // Beam 2, maxLen 3, no n-gram blocking:
    //   step 0: a .6, b .3                          → [a, b]
    //   step 1: a+a .36, a+b .18, b+a .15, b+b .12  → [a a, a b]
    //   step 2: a a+a .216, a a+b .108, a b+a .09   → [a a a, a a b]
    //   step 3 = maxLen: only </s> (1e-6) is finite → a a a+</s>, a a b+</s> finalized, stop
    const options = { beamSize: 2, maxLenB: 3, noRepeatNgramSize: 0 };
    const { model, hypotheses, texts } = await search(ENDLESS, options);
    expect(texts).toEqual(['a a a </s>', 'a a b </s>']);
    expect(hypotheses[0]!.score).toBeCloseTo(log(0.216e-6) / 4, 4);
    expect(hypotheses[1]!.score).toBeCloseTo(log(0.108e-6) / 4, 4);
    expect(hypotheses[0]!.positionalScores[3]).toBeCloseTo(log(1e-6), 4);
    expect(model.fed).toHaveLength(4);

    // max_len = int(max_len_a · src_len + max_len_b) = int(0.5 · 5 + 1) = 3: the same search.
    const scaled = await search(ENDLESS, { beamSize: 2, maxLenA: 0.5, maxLenB: 1, sourceLength: 5, noRepeatNgramSize: 0 });
    expect(scaled.texts).toEqual(texts);
  });

  it('computes max_len as fairseq does', () => {
    expect(maxGenerationLength({})).toBe(16);
    expect(maxGenerationLength({ maxLenA: 0.5, maxLenB: 1, sourceLength: 5 })).toBe(3);
    expect(() => maxGenerationLength({ maxLenA: 1 })).toThrow(/sourceLength/);
  });

  // Beam 1. The model loops "a b a b …"; after b, </s> (.2) is second to a (.7).
  const LOOP = bigramTable({
    '': { a: 0.9 },
    a: { b: 0.9, '</s>': 0.05 },
    b: { a: 0.7, '</s>': 0.2, c: 0.1 },
  });
  it('blocks repeated 3-grams (d)', async () => {
    // Prefix <s> a b a b at step 4: the key (a, b) already began the 3-gram (a, b, a) → a banned,
    // so </s> (.2) leads and ends the sequence. Steps 0–3 ban nothing: (b, a) and (a, b) at step 2
    // have no earlier 3-gram starting with them.
    const blocked = await search(LOOP, { beamSize: 1 });
    expect(blocked.texts).toEqual(['a b a b </s>']);
    expect(blocked.hypotheses[0]!.score).toBeCloseTo(log(0.9 * 0.9 * 0.7 * 0.9 * 0.2) / 5, 5);
    // Without blocking the loop runs to max_len 16 and EOS is forced.
    const free = await search(LOOP, { beamSize: 1, noRepeatNgramSize: 0 });
    expect(free.texts).toEqual([`${'a b '.repeat(8)}</s>`]);
  });

  it('counts BOS in the n-grams it blocks (d)', async () => {
    // The model emits <s> as a word: prefix <s> a <s> a at step 3 has key (<s>, a), which began
    // the 3-gram (<s>, a, <s>) at position 0 → <s> banned, </s> (.1) is next.
    const table = bigramTable({ '': { a: 0.9 }, a: { '<s>': 0.8, '</s>': 0.1 }, '<s>': { a: 0.9 } });
    const { texts } = await search(table, { beamSize: 1 });
    expect(texts).toEqual(['a <s> a </s>']);
  });

  // Beam 2:
  //   step 0: a .6, b .35                                → [a, b]
  //   step 1: b+c .315, a+</s> .3, a+c .18                → a </s> finalized (p .3, length 2);
  //                                                         beams [b c, a c], reorder [1, 0]
  //   step 2: b c+</s> .252, a c+</s> .162 (first two)    → b c </s> finalized (p .252, length 3);
  //                                                         2 = beam: a c </s> is dropped, stop
  const SHORT_OR_LONG = prefixTable({
    '': { a: 0.6, b: 0.35 },
    a: { '</s>': 0.5, c: 0.3 },
    b: { c: 0.9 },
    'b c': { '</s>': 0.8 },
    'a c': { '</s>': 0.9 },
  });
  it('normalizes scores by length, which changes the winner (e)', async () => {
    // Normalized: ln .252 / 3 = −0.459 beats ln .3 / 2 = −0.602.
    const normalized = await search(SHORT_OR_LONG, { beamSize: 2 });
    expect(normalized.texts).toEqual(['b c </s>', 'a </s>']);
    expect(normalized.hypotheses.map((h) => h.score)).toEqual([
      expect.closeTo(log(0.252) / 3, 5),
      expect.closeTo(log(0.3) / 2, 5),
    ]);
    expect(normalized.model.reorders).toEqual([
      [0, 0],
      [1, 0],
    ]);
    // Unnormalized: ln .3 = −1.204 beats ln .252 = −1.378. The same two were finalized.
    const raw = await search(SHORT_OR_LONG, { beamSize: 2, normalizeScores: false });
    expect(raw.texts).toEqual(['a </s>', 'b c </s>']);
    expect(raw.hypotheses[0]!.score).toBeCloseTo(log(0.3), 5);
    // lenPenalty 2 divides by length²: ln .252 / 9 = −0.153 vs ln .3 / 4 = −0.301.
    const squared = await search(SHORT_OR_LONG, { beamSize: 2, lenPenalty: 2 });
    expect(squared.hypotheses[0]!.score).toBeCloseTo(log(0.252) / 9, 5);
  });

  it('never selects pad, treats NaN as −∞ and applies the unk penalty', async () => {
    // Step 0 row: <s> NaN, <pad> .5, <unk> .3, a .15. Untreated, NaN would sort first.
    const table = prefixTable({
      '': { '<s>': Number.NaN, '<pad>': 0.5, '<unk>': 0.3, a: 0.15 },
      '<unk>': { '</s>': 0.9 },
      a: { '</s>': 0.9 },
    });
    const plain = await search(table, { beamSize: 1 });
    expect(plain.texts).toEqual(['<unk> </s>']);
    // unkPenalty 0.5: ln .3 − 0.5 = −1.704 still beats ln .15 = −1.897, and the penalty stays in the score.
    const mild = await search(table, { beamSize: 1, unkPenalty: 0.5 });
    expect(mild.texts).toEqual(['<unk> </s>']);
    expect(mild.hypotheses[0]!.positionalScores[0]).toBeCloseTo(log(0.3) - 0.5, 5);
    // unkPenalty 1: ln .3 − 1 = −2.204 loses.
    const strong = await search(table, { beamSize: 1, unkPenalty: 1 });
    expect(strong.texts).toEqual(['a </s>']);
  });

  it('breaks score ties by the lower flat index beam·V + token', async () => {
    // a and b tie at step 0 (.4 each); at step 1 a+c and b+c tie (.2): beam 0 first.
    const table = prefixTable({
      '': { a: 0.4, b: 0.4 },
      a: { c: 0.5 },
      b: { c: 0.5 },
      'a c': { '</s>': 0.9 },
      'b c': { '</s>': 0.9 },
    });
    const { model, texts } = await search(table, { beamSize: 2 });
    expect(model.fed[1]).toEqual(['a', 'b']);
    expect(model.reorders[1]).toEqual([0, 1]);
    expect(texts).toEqual(['a c </s>', 'b c </s>']);
  });

  it('keeps the lower flat index when a tie straddles the last of the 2·beam candidates', async () => {
    // Beam 2; a and b tie at step 0. Step 1: 0 a+</s> .2 · 1 a+c .1 · 2 b+</s> .08 · 3 a+d .04,
    // with b+d .04 (flat index 1·12 + 7) left out. Position 0 is finalized; position 2 is an EOS
    // beyond the first 2, so the beams are positions 1 and 3, both grown from beam 0.
    const table = prefixTable({
      '': { a: 0.4, b: 0.4 },
      a: { '</s>': 0.5, c: 0.25, d: 0.1 },
      b: { '</s>': 0.2, d: 0.1 },
    });
    const { model } = await search(table, { beamSize: 2, maxLenB: 2 });
    expect(model.fed[2]).toEqual(['c', 'd']);
    expect(model.reorders[1]).toEqual([0, 0]);
  });

  it('does not finalize an EOS scored −∞; it continues like any other candidate', async () => {
    // V = 5, beam 4, max_len 1. Step 0 (</s> banned, pad banned, <s> and <unk> have p = 0):
    // k = min(8, V − 1) = 4: a .9, then −∞ ties in id order: <s>, <pad>, </s>. The −∞ </s> at
    // position 3 is not finalized, and all four become beams. Step 1 = max_len: only a+</s> is finite.
    const words = ['<s>', '<pad>', '</s>', '<unk>', 'a'];
    const table = prefixTable({ '': { a: 0.9, '<s>': 0, '<unk>': 0 }, a: { '</s>': 0.5 } });
    const { model, hypotheses, texts } = await search(table, { beamSize: 4, maxLenB: 1 }, { words });
    expect(model.fed[1]).toEqual(['a', '<s>', '<pad>', '</s>']);
    expect(texts).toEqual(['a </s>']);
    expect(hypotheses[0]!.score).toBeCloseTo(log(0.45) / 2, 5);
  });

  it('reproduces cands_to_ignore when fewer than beam non-EOS candidates remain (beam = V − 1)', async () => {
    // Vocabulary <s> <pad> </s> <unk> a b (V = 6), beam 5, minLen 0, max_len 2.
    //   step 0: k = min(10, V − 1) = 5: </s> .3, a .25, b .2, <unk> .15, <s> .05.
    //           </s> finalized ("</s>", ln .3). Only 4 non-EOS candidates: the 5th beam continues
    //           the EOS candidate (its slot, position 4, is marked to ignore).
    //           beams [a, b, <unk>, <s>, </s>], reorder [0, 0, 0, 0, 0]
    //   step 1: 0 </s>+</s> .24 · 1 a+</s> .2 · 2 b+</s> .16 · 3 <unk>+a .135 · 4 <s>+</s> .045 ·
    //           5 </s>+a .03 · 6 a+a .025 · 7 b+a .02 · 8 <unk>+</s> .0075 · 9 <s>+a .0025
    //           Positions 0–2 are finalized; position 4 is an EOS but an ignored slot (fairseq
    //           masks positions, not beams), and position 8 lies beyond the first 5; so 4
    //           hypotheses are done and the search goes on.
    //           beams = positions 3, 5, 6, 7, 9 → reorder [2, 4, 0, 1, 3]
    //   step 2 = max_len: only </s> (1e-6); the best, <unk> a+</s>, fills the 5th place.
    const words = ['<s>', '<pad>', '</s>', '<unk>', 'a', 'b'];
    const table = prefixTable({
      '': { '</s>': 0.3, a: 0.25, b: 0.2, '<unk>': 0.15, '<s>': 0.05 },
      '</s>': { '</s>': 0.8, a: 0.1 },
      a: { '</s>': 0.8, a: 0.1 },
      b: { '</s>': 0.8, a: 0.1 },
      '<unk>': { a: 0.9, '</s>': 0.05 },
      '<s>': { '</s>': 0.9, a: 0.05 },
    });
    const { model, hypotheses, texts } = await search(
      table,
      { beamSize: 5, minLen: 0, maxLenB: 2, noRepeatNgramSize: 0 },
      { words },
    );
    expect(model.fed[1]).toEqual(['a', 'b', '<unk>', '<s>', '</s>']);
    expect(model.reorders).toEqual([
      [0, 0, 0, 0, 0],
      [2, 4, 0, 1, 3],
    ]);
    expect(texts).toEqual(['</s> </s>', 'a </s>', 'b </s>', '</s>', '<unk> a </s>']);
    expect(hypotheses.map((h) => h.score)).toEqual(
      [log(0.24) / 2, log(0.2) / 2, log(0.16) / 2, log(0.3), log(0.135e-6) / 3].map((value) => expect.closeTo(value, 4)),
    );
  });

  it('caps the beam at V − 1, as fairseq (pad is never selected)', async () => {
    const words = ['<s>', '<pad>', '</s>', '<unk>', 'a'];
    const table = bigramTable({ '': { a: 0.9 }, a: { '</s>': 0.9 } });
    // beamSize 8 over V = 5 becomes 4: the search feeds 4 sequences.
    await expect(beamSearch(new ToyModel(table, 8, { words }), { beamSize: 8 })).rejects.toThrow(/4 tokens fed to 8/);
    const hypotheses = await beamSearch(new ToyModel(table, 4, { words }), { beamSize: 8 });
    expect(hypotheses.length).toBeGreaterThan(0);
  });
});

/**
 * Several toy models as one decoder holding each one's beams in turn (sentence-major), as a
 * batched OFA decoder holds the beams of several images: a reorder hands each model its rows, and
 * a model none of whose rows are kept has left the batch.
 */
class ToyBatch implements StepDecoder {
  readonly vocabSize: number;
  /** The models still in the batch, in row order. */
  #models: ToyModel[];

  constructor(
    readonly models: ToyModel[],
    readonly beamSize: number,
  ) {
    this.vocabSize = models[0]!.vocabSize;
    this.#models = [...models];
  }

  async step(tokens: Int32Array, step: number): Promise<Float32Array> {
    const width = this.beamSize;
    const parts = await Promise.all(this.#models.map((model, i) => model.step(tokens.subarray(i * width, (i + 1) * width), step)));
    const out = new Float32Array(tokens.length * this.vocabSize);
    parts.forEach((part, i) => out.set(part, i * width * this.vocabSize));
    return out;
  }

  reorder(indices: Int32Array): void {
    const width = this.beamSize;
    const kept = this.#models.filter((model, i) => {
      const rows = Array.from(indices).filter((row) => Math.floor(row / width) === i);
      if (rows.length > 0) model.reorder(Int32Array.from(rows, (row) => row - i * width));
      return rows.length > 0;
    });
    this.#models = kept;
  }
}

describe('beamSearchBatch: several sentences in one decoder batch', () => {
  it('finds for each sentence what beamSearch finds alone, dropping finished sentences from the batch', async () => {
    const tables = [
      GREEDY_TRAP,
      bigramTable({ '': { a: 0.6, b: 0.3 }, a: { b: 0.5, c: 0.4 }, b: { c: 0.7, '</s>': 0.2 }, c: { '</s>': 0.9 } }),
      prefixTable({ '': { c: 0.9 }, c: { '</s>': 0.95 } }),
    ];
    const options = { beamSize: 2, maxLenB: 5 };
    const batch = new ToyBatch(
      tables.map((table) => new ToyModel(table, 2)),
      2,
    );
    const batched = await beamSearchBatch(batch, tables.length, options);
    for (const [i, table] of tables.entries()) {
      const alone = await beamSearch(new ToyModel(table, 2), options);
      expect(batched[i]!.map((h) => [Array.from(h.tokens), h.score])).toEqual(alone.map((h) => [Array.from(h.tokens), h.score]));
      // The batch fed this sentence exactly the steps it runs alone, then let it go.
      expect(batch.models[i]!.fed).toEqual((await searchFed(table, options)).fed);
    }
    await expect(beamSearchBatch(batch, 0, options)).rejects.toThrow(/positive integer/);
  });
});

async function searchFed(table: Table, options: BeamSearchOptions): Promise<ToyModel> {
  const model = new ToyModel(table, options.beamSize ?? 5);
  await beamSearch(model, options);
  return model;
}
