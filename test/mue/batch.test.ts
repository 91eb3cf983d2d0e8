/**
 * Batches through the library pipeline (`OfaPipeline.entailBatch` / `captionBatch`): a batch gives
 * each request what it gets alone — labels, probabilities, captions, scores, and with MuE exits the
 * same decisions (layers run per stream, similarities) — although its hypotheses differ in length
 * (padded rows must never reach a request's output or its exit decisions), several requests read
 * one image, and beams of several images decode together. CPU backend, the shipped demo model at a
 * 32-pixel input, in both encoder layouts; one check on WebGPU.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import type { EncoderMode } from '../../src/models/ofa/config.js';
import {
  type CaptionResult,
  type EntailmentResult,
  type ExitSettings,
  type ImageInput,
  OfaPipeline,
  type PipelineExitReport,
} from '../../src/pipeline.js';
import { webgpuBackend } from '../helpers/webgpu.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/preprocess/${name}`, import.meta.url));
const DEMO_MODEL = fileURLToPath(new URL('../../weights/ofa-tiny-demo', import.meta.url));
const SIDE = 32;
const PHOTO = fixture('photo-97x61.png');
const GRAY = fixture('gray-33x33.png');
const ALPHA = fixture('alpha-50x80.png');
/** Hypotheses of different lengths; the first image is read by two requests. */
const REQUESTS: { image: ImageInput; hypothesis: string; premise?: string }[] = [
  { image: PHOTO, hypothesis: 'two dogs play in the snow' },
  { image: GRAY, hypothesis: 'a cat' },
  { image: PHOTO, hypothesis: 'there is a red circle at the top left of a large empty picture' },
  { image: ALPHA, hypothesis: 'a bird', premise: 'a bird on a branch' },
];
const SEARCH = { beamSize: 2, maxLenB: 6, minLen: 2 };
/**
 * Among the demo model's similarities after a layer (which differ between requests by a few
 * thousandths), so that requests stop after different layers; for captions the decoder's schedule
 * (0.9 → thresholds 0.867 … 0.847) splits the beams of an image.
 */
const SPLIT: ExitSettings = { image: 0.8418, text: 0.7965, decoder: 0.752 };
const CAPTION_SPLIT: ExitSettings = { ...SPLIT, decoder: 0.9 };
const CLOSE = 1e-5;

function expectReportsAlike(batched: PipelineExitReport | undefined, alone: PipelineExitReport | undefined): void {
  expect(batched).toBeDefined();
  const streams = (r: PipelineExitReport) => [...r.encoder, ...r.decoder];
  const [a, b] = [streams(batched!), streams(alone!)];
  expect(a.map((s) => [s.stream, s.tokens, s.layersRun])).toEqual(b.map((s) => [s.stream, s.tokens, s.layersRun]));
  // (On the host, a beam that has stopped has no similarity in its step's later layers: NaN.)
  a.forEach((s, i) => {
    expect(s.similarities.flat()).toEqual(b[i]!.similarities.flat().map((v) => (Number.isNaN(v) ? v : expect.closeTo(v, 5))));
  });
  expect(batched!.layersFraction).toBeCloseTo(alone!.layersFraction, 12);
}

function expectEntailmentsAlike(batched: EntailmentResult, alone: EntailmentResult): void {
  expect(batched.label).toBe(alone.label);
  expect(batched.promptTokens).toEqual(alone.promptTokens);
  for (const key of ['entailment', 'contradiction', 'neutral'] as const) {
    expect(Math.abs(batched.logProbs[key] - alone.logProbs[key])).toBeLessThan(CLOSE * 10);
    expect(Math.abs(batched.probabilities[key] - alone.probabilities[key])).toBeLessThan(CLOSE);
  }
  if (alone.exitReport) expectReportsAlike(batched.exitReport, alone.exitReport);
}

function expectCaptionsAlike(batched: CaptionResult, alone: CaptionResult): void {
  expect(batched.tokens).toEqual(alone.tokens);
  expect(batched.text).toBe(alone.text);
  expect(batched.score).toBeCloseTo(alone.score, 4);
  if (alone.exitReport) expectReportsAlike(batched.exitReport, alone.exitReport);
}

describe.each(['joint', 'decomposed'] as EncoderMode[])('OfaPipeline batches (CPU, %s encoder)', (encoderMode) => {
  const backend = new CpuBackend();
  let pipeline: OfaPipeline;

  beforeAll(async () => {
    pipeline = await OfaPipeline.load(DEMO_MODEL, { backend, imageSize: SIDE, encoderMode });
  });
  afterAll(() => {
    pipeline.dispose();
    backend.destroy();
  });

  it.each([
    ['without exits', false],
    ['with exits splitting the samples, decided on the device', { ...SPLIT, site: 'device' }],
    ['with exits splitting the samples, decided on the host (later layers on the samples going only)', { ...SPLIT, site: 'host' }],
  ] as const)('entailBatch equals one entail per request %s', async (_, exits) => {
    const batched = await pipeline.entailBatch(REQUESTS, { exits });
    expect(batched).toHaveLength(REQUESTS.length);
    const alone: EntailmentResult[] = [];
    for (const { image, hypothesis, premise } of REQUESTS) alone.push(await pipeline.entail(image, hypothesis, { premise, exits }));
    batched.forEach((result, b) => expectEntailmentsAlike(result, alone[b]!));
    // One timing for the batch.
    expect(new Set(batched.map((r) => r.timing)).size).toBe(1);
    if (exits && 'text' in exits) {
      const runs = new Set(batched.map((r) => JSON.stringify([...r.exitReport!.encoder, ...r.exitReport!.decoder].map((s) => s.layersRun))));
      expect(runs.size, 'the requests stop after different layers').toBeGreaterThan(1);
    }
  });

  it.each([
    ['without exits', false],
    ['with exits splitting the beams, decided on the device', { ...CAPTION_SPLIT, site: 'device' }],
    ['with exits splitting the beams, decided on the host (later layers on the beams going only)', { ...CAPTION_SPLIT, site: 'host' }],
    // The projected fill takes the host path's other branch (its rows built per beam stopped).
    ...(encoderMode === 'decomposed' ? [['with exits decided on the host and caches filled by projection', { ...CAPTION_SPLIT, site: 'host', cacheFill: 'project' }] as const] : []),
  ] as const)('captionBatch equals one caption per image %s', async (_, exits) => {
    const images = [PHOTO, GRAY, ALPHA];
    const batched = await pipeline.captionBatch(images, { ...SEARCH, exits });
    for (const [b, image] of images.entries()) expectCaptionsAlike(batched[b]!, await pipeline.caption(image, { ...SEARCH, exits }));
    if (exits) {
      const beamRuns = batched.flatMap((r) => r.exitReport!.decoder.map((s) => new Set(s.layersRun).size));
      expect(Math.max(...beamRuns), 'beams of one image stop after different layers').toBeGreaterThan(1);
    }
  });

  it.runIf(encoderMode === 'decomposed')('runs the image stream once for the texts that read one image', () => {
    const pixels = backend.upload(new Float32Array(2 * 3 * SIDE * SIDE).fill(0.25), [2, 3, SIDE, SIDE], 'f32');
    const texts = [[0, 100, 2], [0, 200, 300, 2], [0, 2]];
    const streams = pipeline.model.encoder.embedStreamsBatch({ pixels, texts, images: [1, 1, 0] });
    expect(streams.image.hidden.shape[0]).toBe(2);
    expect(streams.text.hidden.shape).toEqual([3, 4, pipeline.config.dModel]);
    // Text 0 and text 1 read image 1's stream; the output has one row per text.
    const output = pipeline.model.encoder.finishStreams(streams, [streams.image.hidden], [streams.text.hidden]);
    expect(output.lastHiddenState.shape[0]).toBe(3);
    expect(Array.from(output.keyPadding)).toEqual(
      texts.flatMap((ids) => [...Array<number>(output.imageGrid.rows * output.imageGrid.cols).fill(0), ...[0, 1, 2, 3].map((t) => (t < ids.length ? 0 : 1))]),
    );
    output.dispose();
    pixels.dispose();
  });

  it('decides on the host by default for a batch (later layers on the samples going only), on the device for one request', async () => {
    const [batched] = await pipeline.entailBatch(REQUESTS.slice(0, 2), { exits: SPLIT });
    const alone = await pipeline.entail(REQUESTS[0]!.image, REQUESTS[0]!.hypothesis, { exits: SPLIT });
    expect(batched!.exitReport!.settings.site).toBe('host');
    expect(alone.exitReport!.settings.site).toBe('device');
    expectEntailmentsAlike(batched!, alone);
  });

  it('reads bytes and paths alike, and returns nothing for an empty batch', async () => {
    const bytes = new Uint8Array(await readFile(GRAY));
    const [fromBytes, fromPath] = await pipeline.entailBatch([
      { image: bytes, hypothesis: 'a cat' },
      { image: GRAY, hypothesis: 'a cat' },
    ]);
    expect(fromBytes!.logProbs).toEqual(fromPath!.logProbs);
    expect(await pipeline.entailBatch([])).toEqual([]);
    expect(await pipeline.captionBatch([])).toEqual([]);
    await expect(pipeline.entailBatch([{ image: GRAY, hypothesis: 'a cat' }, { image: GRAY, hypothesis: ' ' }])).rejects.toThrow(
      /hypothesis of request 1 is empty/,
    );
  });
});

describe('OfaPipeline batches (WebGPU)', () => {
  let backend: Backend | undefined;
  let pipeline: OfaPipeline;

  beforeAll(async () => {
    backend = await webgpuBackend();
    pipeline = await OfaPipeline.load(DEMO_MODEL, { backend, imageSize: SIDE, encoderMode: 'decomposed' });
  });
  afterAll(() => {
    pipeline?.dispose();
  });

  it.each(['device', 'host'] as const)('entailBatch and captionBatch equal one call per request, with exits decided on the %s', async (site) => {
    const batched = await pipeline.entailBatch(REQUESTS, { exits: { ...SPLIT, site } });
    for (const [b, { image, hypothesis, premise }] of REQUESTS.entries()) {
      expectEntailmentsAlike(batched[b]!, await pipeline.entail(image, hypothesis, { premise, exits: { ...SPLIT, site } }));
    }
    const images = [PHOTO, GRAY];
    const captions = await pipeline.captionBatch(images, { ...SEARCH, exits: { ...CAPTION_SPLIT, site } });
    for (const [b, image] of images.entries()) {
      expectCaptionsAlike(captions[b]!, await pipeline.caption(image, { ...SEARCH, exits: { ...CAPTION_SPLIT, site } }));
    }
  });
});
