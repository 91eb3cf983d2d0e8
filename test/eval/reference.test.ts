/**
 * Item by item equal to the authors' exit rule: the engine against the reference run in
 * test/fixtures/mue-reference (the authors' model code on the first 200 items of data/shapes-eval,
 * the demo weights in the decomposed layout, five threshold settings). Each item of a seeded subset
 * must give the reference's prediction, layers per stream and similarities (within 1e-4):
 * - on WebGPU, 8 items under all five settings, four items per call (the batch API: each sample
 *   decides alone, which must equal the authors' batch-1 run);
 * - on the CPU backend (slow at 256 pixels), three items, each under another setting that exits, at
 *   batch 1.
 * The whole 200 × 5 runs as `mue eval --reference` (README, "Evaluation").
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { readEntailmentSplit } from '../../src/eval/dataset.js';
import { evaluateEntailment } from '../../src/eval/evaluate.js';
import { type MueReference, compareWithReference, readReference, referenceSettings, referenceSplit } from '../../src/eval/reference.js';
import { OfaPipeline } from '../../src/pipeline.js';
import { createRng } from '../helpers/random.js';
import { webgpuBackend } from '../helpers/webgpu.js';

const REFERENCE = fileURLToPath(new URL('../fixtures/mue-reference/reference-shapes-eval.json', import.meta.url));
const SHAPES = fileURLToPath(new URL('../../data/shapes-eval', import.meta.url));
const DEMO_MODEL = fileURLToPath(new URL('../../weights/ofa-tiny-demo', import.meta.url));
const TOLERANCE = 1e-4;

/** `count` distinct reference items drawn with `seed`. */
function drawItems(reference: MueReference, count: number, seed: number): number[] {
  const rng = createRng(seed);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(Math.floor(rng() * reference.items.length));
  return [...chosen];
}

/** The reference restricted to some items (and settings), in that order. */
function subset(reference: MueReference, items: number[], settings?: string[]): MueReference {
  const names = settings ?? Object.keys(reference.settings);
  return {
    ...reference,
    settings: Object.fromEntries(names.map((name) => [name, reference.settings[name]!])),
    items: items.map((i) => reference.items[i]!),
  };
}

/** Runs the reference's items under its settings and checks every item agrees. */
async function expectAgreement(pipeline: OfaPipeline, reference: MueReference, batch: number): Promise<void> {
  const split = referenceSplit(reference, await readEntailmentSplit(SHAPES));
  const results = await evaluateEntailment(pipeline, split, { settings: referenceSettings(reference), batch, warmup: false });
  for (const result of results) {
    const agreement = compareWithReference(reference, result.setting.name, result.records, TOLERANCE);
    expect(agreement.disagreements, `${result.setting.name}`).toEqual([]);
    expect(agreement.agreeing).toBe(reference.items.length);
    expect(agreement.maxSimilarityDiff).toBeLessThan(TOLERANCE);
  }
}

describe.each([
  ['webgpu', () => webgpuBackend()],
  ['cpu', async () => new CpuBackend()],
] as const)("the authors' exit rule, item by item (%s)", (name, createBackend) => {
  let backend: Backend;
  let pipeline: OfaPipeline;
  let reference: MueReference;

  beforeAll(async () => {
    backend = await createBackend();
    reference = await readReference(REFERENCE);
    pipeline = await OfaPipeline.load(DEMO_MODEL, { backend, encoderMode: 'decomposed' });
  });
  afterAll(() => {
    pipeline.dispose();
    if (name === 'cpu') backend.destroy();
  });

  it('runs the reference model: the demo weights, decomposed, 256 pixels', () => {
    expect(pipeline.config.encoderMode).toBe('decomposed');
    expect(pipeline.imageSize).toBe(256);
    expect(Object.keys(reference.settings)).toEqual(['none', 'paper-ve', 'paper-caption', 'all-0.8', 'split']);
    expect(reference.items).toHaveLength(200);
  });

  if (name === 'webgpu') {
    it('gives the reference decisions on 8 seeded items under every setting, 4 items per call', async () => {
      await expectAgreement(pipeline, subset(reference, drawItems(reference, 8, 2023)), 4);
    });
  } else {
    it('gives the reference decisions on 3 seeded items, each under a setting that exits', async () => {
      const settings = ['split', 'paper-ve', 'paper-caption'];
      for (const [i, item] of drawItems(reference, 3, 7).entries()) {
        await expectAgreement(pipeline, subset(reference, [item], [settings[i]!]), 1);
      }
    });
  }
});
