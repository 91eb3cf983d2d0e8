/**
 * The library pipeline on the CPU backend (and, for agreement, on WebGPU), with the shipped demo
 * model (weights/ofa-tiny-demo: the golden tiny random model grown to OFA's vocabulary) at a
 * 32-pixel input: image-size resolution, captioning from a path or bytes, entailment prompts, the
 * step decoder, request queueing and errors.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { ENTAILMENT_ANSWERS } from '../src/generate/tasks.js';
import { ImageDecodeError, preprocessImage } from '../src/image/preprocess.js';
import { OfaStepDecoder } from '../src/models/ofa/step-decoder.js';
import { OfaPipeline } from '../src/pipeline.js';
import { EOS_ID } from '../src/text/bpe.js';
import { webgpuBackend } from './helpers/webgpu.js';

const IMAGE = fileURLToPath(new URL('fixtures/preprocess/photo-97x61.png', import.meta.url));
const GOLDEN_MODEL = fileURLToPath(new URL('../weights/ofa-tiny-random', import.meta.url));
const DEMO_MODEL = fileURLToPath(new URL('../weights/ofa-tiny-demo', import.meta.url));
const SIDE = 32;

/** log Σ exp(row), computed stably in double precision. */
function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

describe('OfaPipeline (CPU)', () => {
  const backend = new CpuBackend();
  let pipeline: OfaPipeline;

  beforeAll(async () => {
    pipeline = await OfaPipeline.load(DEMO_MODEL, { backend, imageSize: SIDE });
  });
  afterAll(() => {
    pipeline.dispose();
    backend.destroy();
  });

  it('takes the image size from the option, config.json, or the model size', async () => {
    expect(pipeline.imageSize).toBe(SIDE);
    const shipped = await OfaPipeline.load(DEMO_MODEL, { backend });
    expect(shipped.imageSize).toBe(256); // config.json: "image_size"
    shipped.dispose();
    // A copy whose config.json this test edits.
    const dir = await mkdtemp(join(tmpdir(), 'mue-demo-copy-'));
    try {
      await cp(DEMO_MODEL, dir, { recursive: true });
      const configPath = join(dir, 'config.json');
      const { image_size: _, ...config } = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
      await writeFile(configPath, JSON.stringify(config));
      const bySize = await OfaPipeline.load(dir, { backend });
      expect(bySize.imageSize).toBe(256); // no size in config.json: OFA-tiny's pretraining resolution
      bySize.dispose();
      await writeFile(configPath, JSON.stringify({ ...config, patch_image_size: 48 }));
      const fromConfig = await OfaPipeline.load(join(dir, 'weights.safetensors'), { backend });
      expect(fromConfig.imageSize).toBe(48);
      fromConfig.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('captions the same from a path and from the bytes, ending the tokens with EOS', async () => {
    const fromPath = await pipeline.caption(IMAGE, { beamSize: 2 });
    const fromBytes = await pipeline.caption(new Uint8Array(await readFile(IMAGE)), { beamSize: 2 });
    expect(fromBytes.tokens).toEqual(fromPath.tokens);
    expect(fromBytes.text).toBe(fromPath.text);
    expect(fromPath.tokens.at(-1)).toBe(EOS_ID);
    expect(fromPath.rawText).toBe(pipeline.tokenizer.decode(fromPath.tokens));
    expect(fromPath.text).not.toMatch(/[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/);
    expect(fromPath.positionalScores).toHaveLength(fromPath.tokens.length);
    // Normalized score = Σ positional scores / length (fp32 sums; lenpen 1).
    const sum = fromPath.positionalScores.reduce((a, b) => a + b, 0);
    expect(fromPath.score).toBeCloseTo(sum / fromPath.tokens.length, 4);
    expect(fromPath.timing.decoderTokens).toBe(fromPath.tokens.length);
  });

  it('honours the search options (a shorter maximum length)', async () => {
    const result = await pipeline.caption(IMAGE, { beamSize: 2, maxLenB: 3 });
    expect(result.tokens.length).toBeLessThanOrEqual(4);
    expect(result.tokens.at(-1)).toBe(EOS_ID);
  });

  it('entails with the plain prompt, or the --add-caption prompt given a premise', async () => {
    const plain = await pipeline.entail(IMAGE, 'Two dogs play.');
    expect(ENTAILMENT_ANSWERS.map((a) => a.label)).toContain(plain.label);
    expect(plain.promptTokens).toEqual(
      pipeline.tokenizer.encodeWithSpecials(' does the image describe " two dogs play. "?'),
    );
    // The decoder reads BOS + prompt (no EOS): one position per token but the EOS.
    expect(plain.timing.decoderTokens).toBe(plain.promptTokens.length - 1);
    const answer = ENTAILMENT_ANSWERS.find((a) => a.label === plain.label)!;
    expect(plain.answer).toBe(answer.text);

    const withPremise = await pipeline.entail(IMAGE, 'Two dogs play.', { premise: 'Dogs in the snow.' });
    expect(withPremise.promptTokens).toEqual(
      pipeline.tokenizer.encodeWithSpecials(' can image and text1 " dogs in the snow. " imply text2 " two dogs play. "?'),
    );
  });

  it('runs concurrent requests one after another', async () => {
    const events: string[] = [];
    const original = pipeline.model.encodeBatch.bind(pipeline.model);
    const encode = vi.spyOn(pipeline.model, 'encodeBatch').mockImplementation((batch) => {
      events.push('encode');
      return original(batch);
    });
    // From bytes: without a file read in between, unqueued requests would interleave their steps.
    const bytes = new Uint8Array(await readFile(IMAGE));
    try {
      const caption = pipeline.caption(bytes, { beamSize: 1, maxLenB: 2 }).then((result) => {
        events.push('caption done');
        return result;
      });
      const entailment = pipeline.entail(bytes, 'a photo').then((result) => {
        events.push('entail done');
        return result;
      });
      const [captioned, entailed] = await Promise.all([caption, entailment]);
      expect(events).toEqual(['encode', 'caption done', 'encode', 'entail done']);
      expect(captioned.tokens.at(-1)).toBe(EOS_ID);
      expect(ENTAILMENT_ANSWERS.map((a) => a.label)).toContain(entailed.label);
    } finally {
      encode.mockRestore();
    }
  });

  it('names the input in errors: corrupt bytes, a missing file, an empty hypothesis', async () => {
    await expect(pipeline.caption(new Uint8Array([1, 2, 3, 4]))).rejects.toThrow(ImageDecodeError);
    await expect(pipeline.caption(join(tmpdir(), 'mue-no-such-dir', 'missing.png'))).rejects.toThrow(
      /^image .*missing\.png: no such file or directory$/,
    );
    await expect(pipeline.entail(IMAGE, '  ')).rejects.toThrow('entail: the hypothesis is empty');
    // The queue survives failed requests.
    expect((await pipeline.entail(IMAGE, 'a photo')).promptTokens[0]).toBe(0);
  });

  it('refuses a model whose token table is not OFA vocabulary, and bad image sizes', async () => {
    await expect(OfaPipeline.load(GOLDEN_MODEL, { backend })).rejects.toThrow(
      /token table has 1000 ids, but OFA's tokenizer produces ids of a 59457-entry vocabulary/,
    );
    await expect(OfaPipeline.load(DEMO_MODEL, { backend, imageSize: 0 })).rejects.toThrow(
      'OfaPipeline: image size must be a positive integer, got 0',
    );
    await expect(OfaPipeline.load(DEMO_MODEL, { backend, imageSize: 673 })).rejects.toThrow(
      /image size 673 gives a 43×43 patch grid; .* at most 42×42/,
    );
  });

  it('step decoder: log-probabilities of the session logits, steps in order', async () => {
    const { pixels } = await preprocessImage(await readFile(IMAGE), SIDE, IMAGE);
    const input = backend.upload(pixels, [1, 3, SIDE, SIDE], 'f32');
    const prompt = pipeline.tokenizer.encodeWithSpecials(' what does the image describe?');
    const encoded = pipeline.model.encode(input, prompt);
    input.dispose();
    const decoder = new OfaStepDecoder(pipeline.model, encoded, 2);
    const session = pipeline.model.startDecoding(encoded, 2);
    try {
      const vocab = decoder.vocabSize;
      expect(vocab).toBe(pipeline.config.vocabSize);
      for (const [step, tokens] of [[0, 0], [1, 4855]].map(([s, t]) => [s!, Int32Array.of(t!, t!)] as const)) {
        const logProbs = await decoder.step(tokens, step);
        const logits = session.step(Array.from(tokens));
        const raw = (await logits.read()) as Float32Array;
        logits.dispose();
        expect(logProbs).toHaveLength(2 * vocab);
        for (let b = 0; b < 2; b++) {
          const row = logProbs.subarray(b * vocab, (b + 1) * vocab);
          expect(logSumExp(row)).toBeCloseTo(0, 4);
          const rawRow = raw.subarray(b * vocab, (b + 1) * vocab);
          const shift = logSumExp(rawRow);
          for (const id of [0, 2, 117, 4420, vocab - 1]) expect(row[id]).toBeCloseTo(rawRow[id]! - shift, 4);
        }
      }
      decoder.reorder(Int32Array.of(1, 0));
      expect(decoder.length).toBe(2);
      await expect(decoder.step(Int32Array.of(5, 5), 3)).rejects.toThrow(/step 3 was requested, but 2 tokens were fed/);
    } finally {
      session.dispose();
      decoder.dispose();
      encoded.dispose();
    }
  });

  it('refuses requests after dispose, leaving a caller-owned backend usable', async () => {
    const other = await OfaPipeline.load(DEMO_MODEL, { backend, imageSize: SIDE });
    other.dispose();
    await expect(other.entail(IMAGE, 'a photo')).rejects.toThrow('OfaPipeline: this pipeline was disposed');
    const probe = backend.upload(Float32Array.of(1, 2), [2]);
    expect(Array.from(await probe.read())).toEqual([1, 2]);
    probe.dispose();
  });
});

describe('OfaPipeline (WebGPU) agrees with the CPU', () => {
  let cpu: OfaPipeline;
  let gpu: OfaPipeline;

  beforeAll(async () => {
    cpu = await OfaPipeline.load(DEMO_MODEL, { backend: 'cpu', imageSize: SIDE });
    gpu = await OfaPipeline.load(DEMO_MODEL, { backend: await webgpuBackend(), imageSize: SIDE });
  });
  afterAll(() => {
    cpu.dispose();
    gpu.dispose();
  });

  it('captions with the same tokens and scores', async () => {
    const [expected, actual] = [await cpu.caption(IMAGE, { beamSize: 2 }), await gpu.caption(IMAGE, { beamSize: 2 })];
    expect(actual.tokens).toEqual(expected.tokens);
    expect(actual.text).toBe(expected.text);
    expect(actual.score).toBeCloseTo(expected.score, 3);
  });

  it('entails with the same label and probabilities', async () => {
    const hypothesis = 'Two dogs play in the snow.';
    const [expected, actual] = [await cpu.entail(IMAGE, hypothesis), await gpu.entail(IMAGE, hypothesis)];
    expect(actual.label).toBe(expected.label);
    for (const answer of ENTAILMENT_ANSWERS) {
      expect(actual.probabilities[answer.label]).toBeCloseTo(expected.probabilities[answer.label], 4);
    }
  });
});
