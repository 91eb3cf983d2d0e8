/**
 * MuE's decomposed encoder (mue-spec §1) on the golden tiny model. There is no golden output for
 * it, so these tests pin its defining properties: the streams do not see each other, each is
 * OFA's joint layer stack restricted to its own block of the bias, the image stream has no
 * relative bias unless switched on, and the decoder takes its output unchanged.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../../src/backend/cpu/cpu-backend.js';
import { OFA_PRESETS, configFromJson } from '../../../src/models/ofa/config.js';
import { type EncoderOutput, type LayerContext, disposeStreams } from '../../../src/models/ofa/encoder.js';
import { OfaModel } from '../../../src/models/ofa/model.js';
import {
  encoderRelativeIndex,
  encoderRelativeTableLayout,
  imageRelativeIndex,
  textRelativeIndex,
} from '../../../src/models/ofa/positions.js';
import type { Tensor } from '../../../src/tensor.js';
import { maxAbsDiff } from '../../helpers/compare.js';
import { createRng, randomFloats } from '../../helpers/random.js';

const GOLDEN = fileURLToPath(new URL('../../fixtures/ofa-tiny-random', import.meta.url));
const manifest = JSON.parse(readFileSync(`${GOLDEN}/manifest.json`, 'utf8')) as { config: Record<string, unknown> };

/** 64×64 pixels → a 4×4 patch grid (Ni = 16): the backbone stays cheap on the CPU. */
const SIDE = 64;
const PATCHES = 16;
const TEXT = [0, 794, 627, 188, 244, 2];
/** Another text of another length, ending in padding. */
const OTHER_TEXT = [0, 583, 891, 80, 272, 2, 1, 1];
const PAD = 1;

const read = async (t: Tensor): Promise<Float32Array> => (await t.read()) as Float32Array;

describe('config: encoderMode and imageRelativeBiasInDecomposed', () => {
  it('reads mue_decomposed_encoder and mue_image_relative_bias, both off by default', () => {
    const plain = configFromJson(manifest.config);
    expect(plain.encoderMode).toBe('joint');
    expect(plain.imageRelativeBiasInDecomposed).toBe(false);
    expect(OFA_PRESETS.base.encoderMode).toBe('joint');
    const mue = configFromJson({ ...manifest.config, mue_decomposed_encoder: true });
    expect(mue).toEqual({ ...plain, encoderMode: 'decomposed' });
    expect(configFromJson({ ...manifest.config, mue_image_relative_bias: true }).imageRelativeBiasInDecomposed).toBe(
      true,
    );
    expect(() => configFromJson({ ...manifest.config, mue_decomposed_encoder: 'yes' })).toThrow(
      '"mue_decomposed_encoder" must be true or false, found "yes"',
    );
  });

  it('has per-stream relative index tables equal to the blocks of the joint one', () => {
    const config = OFA_PRESETS.tiny;
    const [rows, cols, length] = [3, 4, 7];
    const patches = rows * cols;
    const n = patches + length;
    const joint = encoderRelativeIndex(config, rows, cols, length);
    const image = imageRelativeIndex(config, rows, cols);
    const text = textRelativeIndex(config, length);
    for (let i = 0; i < patches; i++) {
      expect([...joint.subarray(i * n, i * n + patches)]).toEqual([...image.subarray(i * patches, (i + 1) * patches)]);
    }
    for (let i = 0; i < length; i++) {
      const row = (patches + i) * n + patches;
      expect([...joint.subarray(row, row + length)]).toEqual([...text.subarray(i * length, (i + 1) * length)]);
    }
  });
});

describe('the decomposed encoder (CPU, golden tiny weights, 64×64 image)', () => {
  const backend = new CpuBackend();
  let model: OfaModel;
  let withImageBias: OfaModel;
  let pixels: Tensor;
  let otherPixels: Tensor;
  const outputs: EncoderOutput[] = [];

  function encode(m: OfaModel, image: Tensor, ids: readonly number[]): EncoderOutput {
    const out = m.encode(image, ids);
    outputs.push(out);
    return out;
  }

  beforeAll(async () => {
    model = await OfaModel.load(backend, GOLDEN, { encoderMode: 'decomposed' });
    withImageBias = await OfaModel.load(backend, GOLDEN, {
      encoderMode: 'decomposed',
      imageRelativeBiasInDecomposed: true,
    });
    pixels = backend.upload(randomFloats(3 * SIDE * SIDE, createRng(11)), [1, 3, SIDE, SIDE], 'f32');
    otherPixels = backend.upload(randomFloats(3 * SIDE * SIDE, createRng(12)), [1, 3, SIDE, SIDE], 'f32');
  });
  afterAll(() => {
    for (const out of outputs) out.dispose();
    model.dispose();
    withImageBias.dispose();
  });

  /**
   * The reference: OFA's joint encoder layers on the joint sequence, with the cross-modal blocks
   * of the bias at −∞ (so each token attends only to its own modality) and the image×image block
   * of the relative index pointed at the zero row unless `imageRelative`. Every other op is per
   * token, so this must give the decomposed encoder's states, concatenated.
   */
  function blockDiagonalReference(m: OfaModel, image: Tensor, ids: readonly number[], imageRelative: boolean) {
    const { hidden, context } = m.encoder.embed(image, ids);
    const n = PATCHES + ids.length;
    const heads = m.config.encoderAttentionHeads;
    const crossModal = new Float32Array(heads * n * n);
    const index = encoderRelativeIndex(m.config, 4, 4, ids.length);
    const { zeroRow } = encoderRelativeTableLayout(m.config);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const sameModality = i < PATCHES === j < PATCHES;
        if (!sameModality) for (let h = 0; h < heads; h++) crossModal[(h * n + i) * n + j] = -Infinity;
        if (!imageRelative && i < PATCHES && j < PATCHES) index[i * n + j] = zeroRow;
      }
    }
    const bias = backend.add(context.absolutePositionBias, backend.upload(crossModal, [heads, n, n], 'f32'));
    const relativeIndex = backend.upload(index, [n, n], 'i32');
    const { keyPaddingMask } = context;
    const reference: LayerContext = { absolutePositionBias: bias, relativeIndex, keyPaddingMask };
    const states = [hidden];
    for (let l = 0; l < m.encoder.layerCount; l++) states.push(m.encoder.layer(l, states[l]!, reference));
    const last = m.encoder.finish(states.at(-1)!);
    for (const t of [bias, relativeIndex, context.absolutePositionBias, context.keyPaddingMask]) t.dispose();
    const positionEmbedding = context.positionEmbedding;
    return {
      states,
      last,
      positionEmbedding,
      dispose: () => [...states, last, positionEmbedding].forEach((t) => t.dispose()),
    };
  }

  async function expectMatchesReference(m: OfaModel, ids: readonly number[], imageRelative: boolean): Promise<void> {
    const out = encode(m, pixels, ids);
    const reference = blockDiagonalReference(m, pixels, ids, imageRelative);
    try {
      expect(out.encoderMode).toBe('decomposed');
      expect(out.hiddenStates).toHaveLength(m.encoder.layerCount + 1);
      for (const [l, state] of out.hiddenStates.entries()) {
        expect(state.shape).toEqual([1, PATCHES + ids.length, 256]);
        expect(maxAbsDiff(await read(state), await read(reference.states[l]!)), `state ${l}`).toBeLessThan(1e-5);
      }
      expect(maxAbsDiff(await read(out.lastHiddenState), await read(reference.last))).toBeLessThan(1e-5);
      expect(await read(out.positionEmbedding)).toEqual(await read(reference.positionEmbedding));
    } finally {
      reference.dispose();
    }
  }

  it('equals the joint layers with the cross-modal attention cut and no image relative bias', async () => {
    await expectMatchesReference(model, TEXT, false);
    await expectMatchesReference(model, OTHER_TEXT, false);
  });

  it('with the switch, equals them with the image relative bias kept', async () => {
    await expectMatchesReference(withImageBias, OTHER_TEXT, true);
  });

  it('keeps the streams apart: neither depends on the other modality', async () => {
    const base = encode(model, pixels, TEXT);
    const otherText = encode(model, pixels, OTHER_TEXT);
    const otherImage = encode(model, otherPixels, TEXT);
    const layers = model.encoder.layerCount;
    for (const out of [base, otherText, otherImage]) {
      expect(out.streamStates!.image).toHaveLength(layers + 1);
      expect(out.streamStates!.text).toHaveLength(layers + 1);
    }
    for (let l = 0; l <= layers; l++) {
      // Pre-LN stream states: exactly equal when only the other modality changed.
      expect(await read(otherText.streamStates!.image[l]!)).toEqual(await read(base.streamStates!.image[l]!));
      expect(await read(otherImage.streamStates!.text[l]!)).toEqual(await read(base.streamStates!.text[l]!));
    }
    // The final LayerNorm is per token, so the output rows of the unchanged modality are equal too.
    const rows = async (out: EncoderOutput, from: number, to: number) =>
      read(backend.slice(out.lastHiddenState, 1, from, to));
    expect(await rows(otherText, 0, PATCHES)).toEqual(await rows(base, 0, PATCHES));
    expect(await rows(otherImage, PATCHES, PATCHES + TEXT.length)).toEqual(
      await rows(base, PATCHES, PATCHES + TEXT.length),
    );
    // …while the changed modality's own stream does change.
    const lastImage = async (out: EncoderOutput) => read(out.streamStates!.image[layers]!);
    expect(maxAbsDiff(await lastImage(otherImage), await lastImage(base))).toBeGreaterThan(1e-3);
  });

  it('builds each stream context from its own positions: text bias = OFA’s text×text block, image none', async () => {
    const ids = OTHER_TEXT;
    const streams = model.encoder.embedStreams(pixels, ids);
    const joint = model.encoder.embed(pixels, ids);
    try {
      const n = PATCHES + ids.length;
      expect(streams.image.hidden.shape).toEqual([1, PATCHES, 256]);
      expect(streams.text.hidden.shape).toEqual([1, ids.length, 256]);
      expect(streams.image.context).toMatchObject({
        stream: 'image',
        length: PATCHES,
        relativeIndex: null,
        keyPaddingMask: null,
      });
      expect(streams.text.context).toMatchObject({ stream: 'text', length: ids.length });
      expect([...(await streams.text.context.keyPaddingMask!.read())]).toEqual(ids.map((id) => (id === PAD ? 1 : 0)));
      const textIndex = [...textRelativeIndex(model.config, ids.length)];
      expect([...(await streams.text.context.relativeIndex!.read())]).toEqual(textIndex);
      // Absolute biases: the diagonal blocks of the joint one.
      const block = (from: number, to: number) =>
        backend.slice(backend.slice(joint.context.absolutePositionBias, 1, from, to), 2, from, to);
      const { image, text } = streams;
      expect(maxAbsDiff(await read(image.context.absolutePositionBias), await read(block(0, PATCHES)))).toBeLessThan(1e-6);
      expect(maxAbsDiff(await read(text.context.absolutePositionBias), await read(block(PATCHES, n)))).toBeLessThan(1e-6);
      // Embeddings, P and the padding mask handed to the decoder: as in the joint encoder.
      const jointHidden = await read(joint.hidden);
      expect(await read(streams.image.hidden)).toEqual(jointHidden.subarray(0, PATCHES * 256));
      expect(await read(streams.text.hidden)).toEqual(jointHidden.subarray(PATCHES * 256));
      expect(await read(streams.positionEmbedding)).toEqual(await read(joint.context.positionEmbedding));
      expect([...(await streams.keyPaddingMask.read())]).toEqual([...(await joint.context.keyPaddingMask.read())]);

      const switched = withImageBias.encoder.embedStreams(pixels, ids);
      expect(switched.image.context.relativeIndex).not.toBeNull();
      disposeStreams(switched);
    } finally {
      disposeStreams(streams);
      const { absolutePositionBias, positionEmbedding, keyPaddingMask } = joint.context;
      for (const t of [joint.hidden, absolutePositionBias, positionEmbedding, keyPaddingMask]) t.dispose();
    }
  });

  it('changes only the image stream when the image relative bias is switched on', async () => {
    const plain = encode(model, pixels, TEXT);
    const switched = encode(withImageBias, pixels, TEXT);
    const layers = model.encoder.layerCount;
    expect(await read(switched.streamStates!.image[0]!)).toEqual(await read(plain.streamStates!.image[0]!));
    for (let l = 1; l <= layers; l++) {
      const diff = maxAbsDiff(await read(switched.streamStates!.image[l]!), await read(plain.streamStates!.image[l]!));
      expect(diff, `image state ${l}`).toBeGreaterThan(1e-4);
      expect(await read(switched.streamStates!.text[l]!)).toEqual(await read(plain.streamStates!.text[l]!));
    }
  });

  it('finishes streams of different depths (MuE exits): the shorter one holds its last state', async () => {
    const streams = model.encoder.embedStreams(pixels, TEXT);
    const image = [streams.image.hidden];
    const text = [streams.text.hidden];
    for (let l = 0; l < 2; l++) image.push(model.encoder.layer(l, image[l]!, streams.image.context));
    for (let l = 0; l < 4; l++) text.push(model.encoder.layer(l, text[l]!, streams.text.context));
    const out = model.encoder.finishStreams(streams, image, text);
    outputs.push(out);
    expect(out.streamStates!.image).toHaveLength(3);
    expect(out.streamStates!.text).toHaveLength(5);
    expect(out.hiddenStates).toHaveLength(5);
    const imageLast = await read(image[2]!);
    for (const l of [2, 3, 4]) {
      expect((await read(out.hiddenStates[l]!)).subarray(0, PATCHES * 256)).toEqual(imageLast);
    }
    expect((await read(out.hiddenStates[4]!)).subarray(PATCHES * 256)).toEqual(await read(text[4]!));
    const expected = model.encoder.finish(backend.concat([image[2]!, text[4]!], 1));
    expect(await read(out.lastHiddenState)).toEqual(await read(expected));
    expected.dispose();
  });

  it('feeds the decoder unchanged: finite logits, differing from the joint encoder’s', async () => {
    const encoded = encode(model, pixels, OTHER_TEXT);
    const joint = model.encoder.encodeJoint(pixels, OTHER_TEXT);
    outputs.push(joint);
    expect(joint.encoderMode).toBe('joint');
    expect(joint.streamStates).toBeUndefined();
    const sequence = [0, 80, 272, 583];
    const decoded = model.decodeFull(encoded, [sequence]);
    const jointDecoded = model.decodeFull(joint, [sequence]);
    try {
      expect(decoded.logits.shape).toEqual([1, sequence.length, model.config.vocabSize]);
      const logits = await read(decoded.logits);
      expect(logits.every(Number.isFinite)).toBe(true);
      expect(maxAbsDiff(logits, await read(jointDecoded.logits))).toBeGreaterThan(1e-4);
      // The cached path agrees with the teacher-forced pass on the decomposed output too.
      const session = model.startDecoding(encoded, 1);
      let stepLogits: Float32Array = new Float32Array();
      for (const id of sequence) {
        const step = session.step([id]);
        stepLogits = await read(step);
        step.dispose();
      }
      session.dispose();
      const vocab = model.config.vocabSize;
      expect(maxAbsDiff(stepLogits, logits.subarray((sequence.length - 1) * vocab))).toBeLessThan(1e-5);
    } finally {
      decoded.dispose();
      jointDecoded.dispose();
    }
  });

  it('leaves the default (joint) mode alone', async () => {
    const plain = await OfaModel.load(backend, GOLDEN);
    try {
      expect(plain.config.encoderMode).toBe('joint');
      const out = plain.encode(pixels, TEXT);
      const viaJoint = model.encoder.encodeJoint(pixels, TEXT);
      expect(out.encoderMode).toBe('joint');
      expect(out.hiddenStates).toHaveLength(plain.encoder.layerCount + 1);
      expect(await read(out.lastHiddenState)).toEqual(await read(viaJoint.lastHiddenState));
      out.dispose();
      viaJoint.dispose();
    } finally {
      plain.dispose();
    }
  });
});
