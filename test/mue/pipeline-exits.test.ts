/**
 * MuE exits through the library pipeline (`OfaPipeline.caption` / `entail` with `exits`), on the
 * CPU backend with the shipped demo model (weights/ofa-tiny-demo) at a 32-pixel input: thresholds
 * above 1 reproduce the plain path, low ones skip layers and say so in the exit report, decisions
 * on the device and on the host agree, and settings are validated. One check on WebGPU: the
 * checks alone leave the result unchanged there too.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { type ExitSettings, NO_EXIT, OfaPipeline, type PipelineExitReport, resolveExitSettings } from '../../src/pipeline.js';
import { webgpuBackend } from '../helpers/webgpu.js';

const IMAGE = fileURLToPath(new URL('../fixtures/preprocess/photo-97x61.png', import.meta.url));
const DEMO_MODEL = fileURLToPath(new URL('../../weights/ofa-tiny-demo', import.meta.url));
const SIDE = 32;
const LAYERS = 4;
const HYPOTHESIS = 'two dogs play in the snow';
/** A short beam search: fast on the CPU, long enough for the schedule to allow exits (steps ≥ 3). */
const SEARCH = { beamSize: 2, maxLenB: 8, minLen: 8 };
/** Exits well below the demo model's layer-to-layer similarities (≈ 0.5 after layer 1). */
const LOW = { image: 0.5, text: 0.5, decoder: 0.5 };

function layersRun(report: PipelineExitReport): number[][] {
  return [...report.encoder, ...report.decoder].map((s) => s.layersRun);
}

describe('OfaPipeline with MuE exits (CPU)', () => {
  const backend = new CpuBackend();
  let pipeline: OfaPipeline;

  beforeAll(async () => {
    pipeline = await OfaPipeline.load(DEMO_MODEL, { backend, imageSize: SIDE });
  });
  afterAll(() => {
    pipeline.dispose();
    backend.destroy();
  });

  it('captions and entails exactly as without exits when every threshold is above 1', async () => {
    const plain = await pipeline.caption(IMAGE, SEARCH);
    expect(plain.exitReport).toBeUndefined();
    const checked = await pipeline.caption(IMAGE, { ...SEARCH, exits: { image: 1.5, text: 2, decoder: 1.01 } });
    expect(checked.tokens).toEqual(plain.tokens);
    expect(checked.text).toBe(plain.text);
    expect(checked.score).toBe(plain.score);
    expect(checked.positionalScores).toEqual(plain.positionalScores);
    const report = checked.exitReport!;
    expect(report.layersFraction).toBe(1);
    expect(report.computeSaved).toBe(0);
    expect(report.wallMs).toBeCloseTo(checked.timing.totalMs, 6);
    // Joint encoder (the demo model is plain OFA): image and text decisions, the joint stack's compute.
    expect(report.encoderMode).toBe('joint');
    expect(report.encoder.map((s) => s.stream)).toEqual(['image', 'text', 'joint']);
    expect(report.decoder).toHaveLength(checked.timing.decoderTokens);
    expect(report.decoder.map((s) => s.stream)).toEqual(report.decoder.map((_, t) => `token ${t}`));
    for (const run of layersRun(report)) expect(run.every((n) => n === LAYERS)).toBe(true);
    for (const s of report.decoder) expect(s.layersRun).toHaveLength(SEARCH.beamSize);

    const plainEntail = await pipeline.entail(IMAGE, HYPOTHESIS);
    const checkedEntail = await pipeline.entail(IMAGE, HYPOTHESIS, { exits: {} });
    expect(checkedEntail.label).toBe(plainEntail.label);
    expect(checkedEntail.probabilities).toEqual(plainEntail.probabilities);
    expect(checkedEntail.logProbs).toEqual(plainEntail.logProbs);
    const entailReport = checkedEntail.exitReport!;
    expect(entailReport.settings).toEqual({
      image: NO_EXIT,
      text: NO_EXIT,
      decoder: NO_EXIT,
      site: 'device',
      scope: 'per-sample',
      cacheFill: 'copy',
    });
    expect(entailReport.computeSaved).toBe(0);
    // One teacher-forced pass over [BOS] + prompt: one decoder report weighted by its tokens.
    expect(entailReport.decoder).toHaveLength(1);
    expect(entailReport.decoder[0]!).toMatchObject({ stream: 'prompt', tokens: checkedEntail.promptTokens.length - 1 });
    expect(entailReport.decoder[0]!.similarities).toHaveLength(LAYERS);
  });

  it('skips layers at a low threshold and reports what it saved', async () => {
    const result = await pipeline.caption(IMAGE, { ...SEARCH, exits: LOW });
    const report = result.exitReport!;
    expect(report.computeSaved).toBeGreaterThan(0);
    expect(report.layersFraction).toBeCloseTo(1 - report.computeSaved, 12);
    const [image, text] = report.encoder;
    expect(image!.layersRun[0]).toBeLessThan(LAYERS);
    expect(text!.layersRun[0]).toBeLessThan(LAYERS);
    // The authors' schedule: no exit in the first third of max_len (8): steps 0, 1, 2.
    expect(report.decoderThresholds.slice(0, 3)).toEqual([1, 1, 1]);
    report.decoder.forEach((token, step) => {
      if (step < 3) expect(token.layersRun.every((n) => n === LAYERS)).toBe(true);
    });
    expect(report.decoder.slice(3).some((token) => token.layersRun.some((n) => n < LAYERS))).toBe(true);
    for (const s of report.decoder) expect(s.similarities.length).toBeGreaterThanOrEqual(Math.max(...s.layersRun));
    expect(Number.isFinite(result.score)).toBe(true);

    const entail = await pipeline.entail(IMAGE, HYPOTHESIS, { exits: LOW });
    const entailReport = entail.exitReport!;
    expect(entailReport.decoder[0]!.layersRun[0]).toBeLessThan(LAYERS);
    expect(entailReport.decoderThresholds).toEqual([LOW.decoder]); // no schedule in a full pass
    expect(entailReport.computeSaved).toBeGreaterThan(0);
    const sum = Object.values(entail.probabilities).reduce((a, b) => a + b, 0);
    expect(sum).toBeCloseTo(1, 9);
  });

  it('takes the same decisions and gives the same result on the device and on the host', async () => {
    const device = await pipeline.caption(IMAGE, { ...SEARCH, exits: { ...LOW, decoder: 0.8 } });
    const host = await pipeline.caption(IMAGE, { ...SEARCH, exits: { ...LOW, decoder: 0.8, site: 'host' } });
    expect(host.tokens).toEqual(device.tokens);
    expect(host.score).toBe(device.score);
    expect(layersRun(host.exitReport!)).toEqual(layersRun(device.exitReport!));
    expect(host.exitReport!.computeSaved).toBe(device.exitReport!.computeSaved);

    const entailDevice = await pipeline.entail(IMAGE, HYPOTHESIS, { exits: LOW });
    const entailHost = await pipeline.entail(IMAGE, HYPOTHESIS, { exits: { ...LOW, site: 'host' } });
    expect(entailHost.probabilities).toEqual(entailDevice.probabilities);
    expect(layersRun(entailHost.exitReport!)).toEqual(layersRun(entailDevice.exitReport!));
  });

  it('runs batch-scope decisions and projected cache fills', async () => {
    const settings: ExitSettings[] = [
      { ...LOW, decoder: 0.8, scope: 'batch' },
      { ...LOW, decoder: 0.8, cacheFill: 'project' },
    ];
    for (const exits of settings) {
      const result = await pipeline.caption(IMAGE, { ...SEARCH, exits });
      expect(result.exitReport!.settings).toMatchObject(exits);
      expect(Number.isFinite(result.score)).toBe(true);
      if (exits.scope === 'batch') for (const s of result.exitReport!.decoder) expect(s.layersRun).toHaveLength(1);
    }
  });

  it("uses the pipeline's default exits unless a request sets its own or false", async () => {
    const withDefault = await OfaPipeline.load(DEMO_MODEL, { backend, imageSize: SIDE, exits: LOW });
    try {
      expect(withDefault.exits).toEqual(resolveExitSettings(LOW));
      const byDefault = await withDefault.entail(IMAGE, HYPOTHESIS);
      expect(byDefault.exitReport!.computeSaved).toBeGreaterThan(0);
      const off = await withDefault.entail(IMAGE, HYPOTHESIS, { exits: false });
      expect(off.exitReport).toBeUndefined();
      const own = await withDefault.entail(IMAGE, HYPOTHESIS, { exits: { decoder: 0.5 } });
      expect(own.exitReport!.settings.image).toBe(NO_EXIT);
    } finally {
      withDefault.dispose();
    }
  });

  it('refuses invalid settings before any work', async () => {
    await expect(pipeline.caption(IMAGE, { exits: { image: Number.NaN } })).rejects.toThrow(
      /caption: exits: the image threshold must be a finite number/,
    );
    await expect(
      pipeline.entail(IMAGE, HYPOTHESIS, { exits: { site: 'gpu' as unknown as 'device' } }),
    ).rejects.toThrow(/entail: exits: site must be one of device, host, got gpu/);
    await expect(
      pipeline.caption(IMAGE, { exits: { cacheFill: 'zero' as unknown as 'copy' } }),
    ).rejects.toThrow(/cacheFill must be one of copy, project/);
    await expect(OfaPipeline.load(DEMO_MODEL, { backend, exits: { decoder: Infinity } })).rejects.toThrow(
      /OfaPipeline exits: the decoder threshold must be a finite number/,
    );
  });
});

describe('OfaPipeline with MuE exits (WebGPU)', () => {
  let pipeline: OfaPipeline;

  beforeAll(async () => {
    pipeline = await OfaPipeline.load(DEMO_MODEL, { backend: await webgpuBackend(), imageSize: SIDE });
  });
  afterAll(() => pipeline.dispose());

  it('gives the plain result with checks only, and skips layers at a low threshold', async () => {
    const plain = await pipeline.caption(IMAGE, SEARCH);
    const checked = await pipeline.caption(IMAGE, { ...SEARCH, exits: {} });
    expect(checked.tokens).toEqual(plain.tokens);
    expect(checked.score).toBe(plain.score);
    expect(checked.exitReport!.computeSaved).toBe(0);
    const low = await pipeline.caption(IMAGE, { ...SEARCH, exits: LOW });
    expect(low.exitReport!.computeSaved).toBeGreaterThan(0);
    const host = await pipeline.caption(IMAGE, { ...SEARCH, exits: { ...LOW, site: 'host' } });
    expect(host.tokens).toEqual(low.tokens);
    expect(layersRun(host.exitReport!)).toEqual(layersRun(low.exitReport!));
  });
});
