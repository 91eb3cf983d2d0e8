/**
 * Evaluation splits (src/eval/dataset.ts): the shipped data/shapes-eval as both tasks read it,
 * references pooled per image, and bad splits refused with the file and line at fault.
 */
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCaptionSplit, readEntailmentSplit } from '../../src/eval/dataset.js';

const SHAPES = fileURLToPath(new URL('../../data/shapes-eval', import.meta.url));

describe('evaluation splits', () => {
  let scratch: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'mue-split-'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  /** A split folder with `lines` as items.jsonl and an image a.png. */
  async function split(name: string, lines: string[]): Promise<string> {
    const dir = join(scratch, name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'items.jsonl'), `${lines.join('\n')}\n`);
    await writeFile(join(dir, 'a.png'), 'not read until the model runs');
    return dir;
  }

  it('reads the shipped shapes-eval for entailment and for captions', async () => {
    const entail = await readEntailmentSplit(SHAPES);
    expect(entail.items).toHaveLength(400);
    expect(entail.items[0]).toEqual({
      image: '0000.png',
      path: join(SHAPES, '0000.png'),
      hypothesis: 'there is a blue square',
      label: 'entailment',
      kind: 'exist',
    });
    const kinds = new Map<string, number>();
    for (const item of entail.items) kinds.set(item.kind, (kinds.get(item.kind) ?? 0) + 1);
    expect(Object.fromEntries(kinds)).toEqual({ exist: 160, count: 88, where: 76, maybe: 76 });

    const captions = await readCaptionSplit(SHAPES, { limit: 3 });
    expect(captions.items.map((i) => i.captions)).toEqual([
      ['a blue square and a green circle and a yellow triangle'],
      ['a red circle and a blue circle'],
      ['a red triangle and a blue triangle and a green square'],
    ]);
  });

  it('pools the references of items naming the same image, and takes lists of references', async () => {
    const dir = await split('pooled', [
      '{"image": "a.png", "caption": "a cat"}',
      '{"image": "./a.png", "caption": ["a small cat", "one cat"], "label": "ignored for captions"}',
    ]);
    const { items } = await readCaptionSplit(dir);
    expect(items).toEqual([{ image: 'a.png', path: join(dir, 'a.png'), captions: ['a cat', 'a small cat', 'one cat'] }]);
  });

  it('refuses bad splits, naming the file and line', async () => {
    await expect(readEntailmentSplit(join(scratch, 'missing'))).rejects.toThrow(/evaluation data .*missing: no such file or directory/);
    await expect(readEntailmentSplit(join(SHAPES, 'items.jsonl'))).rejects.toThrow(/expected a folder with items\.jsonl/);
    await mkdir(join(scratch, 'empty-folder'));
    await expect(readEntailmentSplit(join(scratch, 'empty-folder'))).rejects.toThrow(/items\.jsonl: no such file or directory \(an evaluation split is a folder/);
    const cases: [string[], RegExp][] = [
      [['{"image": "a.png", "hypothesis": "h", "label": "entailment"}', '{oops'], /items\.jsonl line 2: not valid JSON/],
      [['[1, 2]'], /line 1: expected a JSON object, got \[1,2\]/],
      [['{"hypothesis": "h", "label": "entailment"}'], /line 1: every item needs "image" \(a non-empty string\), got nothing/],
      [['{"image": "a.png", "label": "entailment"}'], /line 1: entailment needs "hypothesis"/],
      [['{"image": "a.png", "hypothesis": "h", "label": "yes"}'], /line 1: "label" must be one of entailment, contradiction, neutral, got "yes"/],
      [['{"image": "a.png", "hypothesis": "h", "label": "neutral", "kind": 3}'], /line 1: "kind" must be a string, got 3/],
      [['{"image": "b.png", "hypothesis": "h", "label": "neutral"}'], /items\.jsonl: image .*b\.png: no such file or directory/],
      [['', '  '], /items\.jsonl: no items/],
    ];
    for (const [i, [lines, message]] of cases.entries()) {
      await expect(readEntailmentSplit(await split(`bad-${i}`, lines)), message.source).rejects.toThrow(message);
    }
    const noCaption = await split('no-caption', ['{"image": "a.png", "caption": []}']);
    await expect(readCaptionSplit(noCaption)).rejects.toThrow(/line 1: captioning needs "caption": a non-empty string or a non-empty list of them, got \[\]/);
    await expect(readEntailmentSplit(SHAPES, { limit: 0 })).rejects.toThrow(/limit must be a positive integer/);
  });

  it('checks only the images of the items it keeps', async () => {
    const dir = await split('limited', [
      '{"image": "a.png", "hypothesis": "h", "label": "neutral"}',
      '{"image": "missing.png", "hypothesis": "h", "label": "neutral"}',
    ]);
    expect((await readEntailmentSplit(dir, { limit: 1 })).items).toHaveLength(1);
    await expect(readEntailmentSplit(dir)).rejects.toThrow(/missing\.png: no such file/);
  });
});
