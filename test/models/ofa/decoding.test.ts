import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../../src/backend/cpu/cpu-backend.js';
import type { EncoderOutput } from '../../../src/models/ofa/encoder.js';
import { OfaModel } from '../../../src/models/ofa/model.js';
import type { Tensor } from '../../../src/tensor.js';
import { maxAbsDiff } from '../../helpers/compare.js';
import { createRng, randomFloats } from '../../helpers/random.js';

const GOLDEN = fileURLToPath(new URL('../../fixtures/ofa-tiny-random', import.meta.url));
/** A 32×32 image gives a 2×2 patch grid: the backbone stays cheap on the CPU. */
const SIDE = 32;
const TEXT = [0, 794, 627, 188, 244, 2];

describe('OFA model on a small image (CPU)', () => {
  const backend = new CpuBackend();
  let model: OfaModel;
  let pixels: Tensor;
  let encoded: EncoderOutput;

  beforeAll(async () => {
    model = await OfaModel.load(backend, GOLDEN);
    pixels = backend.upload(randomFloats(3 * SIDE * SIDE, createRng(7)), [1, 3, SIDE, SIDE], 'f32');
    encoded = model.encode(pixels, TEXT);
  });
  afterAll(() => {
    encoded.dispose();
    model.dispose();
  });

  async function take(t: Tensor): Promise<Float32Array> {
    const values = (await t.read()) as Float32Array;
    t.dispose();
    return values;
  }

  /** Logits `[B, V]` of every step of a session fed `columns[t]` (one token per sequence). */
  async function runSession(columns: number[][], beams: number): Promise<Float32Array[]> {
    const session = model.startDecoding(encoded, beams);
    const out: Float32Array[] = [];
    for (const tokens of columns) out.push(await take(session.step(tokens)));
    session.dispose();
    return out;
  }

  it('encodes patches first, then text: N = 4 + 6', () => {
    expect(encoded.lastHiddenState.shape).toEqual([1, 10, 256]);
    expect(encoded.hiddenStates).toHaveLength(5);
    expect(encoded.imageGrid).toEqual({ rows: 2, cols: 2 });
  });

  /** Each step's logits through the key/value cache equal the teacher-forced pass's at that position. */
  async function expectCachedEqualsTeacherForced(sequence: number[]): Promise<void> {
    const full = model.decodeFull(encoded, [sequence]);
    const fullLogits = (await full.logits.read()) as Float32Array;
    full.dispose();
    const vocab = model.config.vocabSize;
    const steps = await runSession(sequence.map((id) => [id]), 1);
    steps.forEach((logits, t) => {
      expect(maxAbsDiff(logits, fullLogits.subarray(t * vocab, (t + 1) * vocab)), `step ${t}`).toBeLessThan(1e-5);
    });
  }

  it('gives the same logits through the key/value cache as the teacher-forced pass', async () => {
    await expectCachedEqualsTeacherForced([0, 80, 272, 583, 891]);
  });

  it('keeps the cached logits equal to the teacher-forced ones past the position biases a session computes first (32)', async () => {
    await expectCachedEqualsTeacherForced([0, ...Array.from({ length: 40 }, (_, i) => 4 + ((i * 97) % 900))]);
  });

  it('decodes beams independently and follows reorder', async () => {
    const [a, b] = [
      [0, 11, 12, 13, 14],
      [0, 21, 22, 23, 24],
    ];
    const alone = [await runSession(a.map((id) => [id]), 1), await runSession(b.map((id) => [id]), 1)];
    const vocab = model.config.vocabSize;
    const beam = (logits: Float32Array, i: number): Float32Array => logits.subarray(i * vocab, (i + 1) * vocab);

    const session = model.startDecoding(encoded, 2);
    for (let t = 0; t < 3; t++) {
      const logits = await take(session.step([a[t]!, b[t]!]));
      expect(maxAbsDiff(beam(logits, 0), alone[0]![t]!)).toBeLessThan(1e-5);
      expect(maxAbsDiff(beam(logits, 1), alone[1]![t]!)).toBeLessThan(1e-5);
    }
    // Three beams: sequence b twice, then a; each continues its own history.
    session.reorder([1, 1, 0]);
    expect(session.batch).toBe(3);
    for (let t = 3; t < 5; t++) {
      const logits = await take(session.step([b[t]!, b[t]!, a[t]!]));
      expect(maxAbsDiff(beam(logits, 0), alone[1]![t]!)).toBeLessThan(1e-5);
      expect(maxAbsDiff(beam(logits, 1), alone[1]![t]!)).toBeLessThan(1e-5);
      expect(maxAbsDiff(beam(logits, 2), alone[0]![t]!)).toBeLessThan(1e-5);
    }
    session.dispose();
  });

  it('ignores padded text tokens: zeroed, masked, and without effect on the other tokens', async () => {
    const padded = model.encode(pixels, [...TEXT, 1, 1]);
    const withPads = (await padded.lastHiddenState.read()) as Float32Array;
    const embedded = (await padded.hiddenStates[0]!.read()) as Float32Array;
    padded.dispose();
    const plain = (await encoded.lastHiddenState.read()) as Float32Array;
    expect(maxAbsDiff(withPads.subarray(0, plain.length), plain)).toBeLessThan(1e-5);
    expect(embedded.subarray(10 * 256).every((v) => v === 0)).toBe(true);
  });

  it('refuses token ids outside the vocabulary, over-long text and oversized images', () => {
    expect(() => model.encode(pixels, [0, 1000, 2])).toThrow(
      'encoder input: token id 1000 at position 1 is outside the vocabulary 0..999',
    );
    expect(() => model.decodeFull(encoded, [[0, -3]])).toThrow('decoder input: token id -3 at position 1');
    expect(() => model.encode(pixels, new Array<number>(1025).fill(5))).toThrow(
      'encoder text of 1025 tokens is longer than the 1024 positions',
    );
    const huge = backend.upload(new Float32Array(3 * 688 * 688), [1, 3, 688, 688], 'f32');
    expect(() => model.encode(huge, TEXT)).toThrow('the image gives a 43×43 patch grid');
    huge.dispose();
    const session = model.startDecoding(encoded, 2);
    expect(() => session.step([0])).toThrow('expected 2 tokens (one per sequence), got 1');
    expect(() => session.reorder([2])).toThrow('reorder index 2 is outside the batch of 2');
    session.dispose();
  });
});
