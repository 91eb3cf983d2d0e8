import { describe, expect, it } from 'vitest';
import { greedy } from '../../src/generate/greedy.js';
import { ToyModel, bigramTable } from './toy-model.js';

const { log } = Math;

describe('greedy', () => {
  it('appends the most probable token until EOS', async () => {
    // a (.5) → c (.6) → </s> (.8); no rule bans the early </s> a beam search would ban at step 0.
    const table = bigramTable({ '': { a: 0.5, b: 0.3 }, a: { c: 0.6, '</s>': 0.3 }, c: { '</s>': 0.8 } });
    const model = new ToyModel(table, 1);
    const result = await greedy(model, { maxLen: 16 });
    expect(model.text(result.tokens)).toBe('a c </s>');
    expect(Array.from(result.positionalScores)).toEqual([log(0.5), log(0.6), log(0.8)].map((v) => expect.closeTo(v, 5)));
    expect(result.score).toBeCloseTo(log(0.5 * 0.6 * 0.8), 5);
    expect(model.fed).toEqual([['<s>'], ['a'], ['c']]);
    expect(model.reorders).toEqual([]);
  });

  it('stops after maxLen tokens without forcing EOS', async () => {
    const model = new ToyModel(bigramTable({ '': { a: 0.9 }, a: { a: 0.9 } }), 1);
    const result = await greedy(model, { maxLen: 3 });
    expect(model.text(result.tokens)).toBe('a a a');
    expect(model.fed).toHaveLength(3);
  });

  it('takes the lowest id among equal maxima and skips NaN', async () => {
    // <s> is NaN; b and c tie at .4 → b; then </s>.
    const table = bigramTable({ '': { '<s>': Number.NaN, c: 0.4, b: 0.4 }, b: { '</s>': 0.9 } });
    const model = new ToyModel(table, 1);
    const result = await greedy(model, { maxLen: 5 });
    expect(model.text(result.tokens)).toBe('b </s>');
  });
});
