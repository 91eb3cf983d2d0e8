/**
 * MuE's encoder exits (src/mue/encoder-exits.ts) on the golden tiny model, CPU and WebGPU:
 *
 * - thresholds > 1 reproduce the no-exit forward exactly (joint and decomposed);
 * - joint encoder: a threshold between the similarities of the golden per-layer states (computed
 *   here on the host, per modality) stops that modality after layer k, and its tokens keep golden
 *   layer k's state; the other modality goes on attending to the frozen tokens; both stopped after
 *   layer k → the whole pre-LN state is golden `encoder.hidden_states.k`;
 * - decomposed encoder: the image and text thresholds act separately;
 * - device and host decisions agree, with identical outputs; the reports count the layers run.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import {
  type EncoderBatch,
  type EncoderContext,
  type EncoderOutput,
  type EncoderStreams,
  type OfaEncoder,
  disposeStreams,
} from '../../src/models/ofa/encoder.js';
import { OfaModel } from '../../src/models/ofa/model.js';
import { type EncoderExitOptions, type ExitEncoder, encodeWithExits } from '../../src/mue/encoder-exits.js';
import type { DecisionSite } from '../../src/mue/exit.js';
import type { StreamReport } from '../../src/mue/report.js';
import type { Tensor } from '../../src/tensor.js';
import { maxAbsDiff } from '../helpers/compare.js';
import { webgpuBackend } from '../helpers/webgpu.js';

const GOLDEN = fileURLToPath(new URL('../fixtures/ofa-tiny-random', import.meta.url));
const LAYERS = 4;
const D = 256;
const PATCHES = 256;
const TOKENS = 268;
const NEVER = 1.5; // cos ≤ 1: never exits
const SITES: DecisionSite[] = ['device', 'host'];

type Modality = 'image' | 'text';
const RANGE: Record<Modality, [number, number]> = { image: [0, PATCHES], text: [PATCHES, TOKENS] };

/** Rows `[lo, hi)` of a host `[1, N, d]` state. */
function rows(state: Float32Array, modality: Modality): Float32Array {
  const [lo, hi] = RANGE[modality];
  return state.subarray(lo * D, hi * D);
}

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

/** cos(h_l, h_{l−1}) for l = 1..L of a list of host states (index 0 = layer 1). */
function similarities(states: Float32Array[]): number[] {
  return states.slice(1).map((s, i) => cosine(s, states[i]!));
}

/**
 * A threshold under which layers 1..k−1 stay and above which layer k is: the first layer whose
 * similarity exceeds it is k (midway, so that float noise between backends cannot move it).
 */
function thresholdAfter(sims: number[], k: number): number {
  const below = k === 1 ? sims[0]! - 0.2 : Math.max(...sims.slice(0, k - 1));
  const at = sims[k - 1]!;
  if (!(at - below > 1e-3)) throw new Error(`no clear threshold for an exit after layer ${k}: [${sims}]`);
  return (below + at) / 2;
}

interface HostRun {
  states: Float32Array[];
  last: Float32Array;
  streamStates?: { image: Float32Array[]; text: Float32Array[] };
  reports: StreamReport[];
}

async function readAll(ts: readonly Tensor[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const t of ts) out.push((await t.read()) as Float32Array);
  return out;
}

async function toHost(output: EncoderOutput, reports: StreamReport[] = []): Promise<HostRun> {
  try {
    const run: HostRun = {
      states: await readAll(output.hiddenStates),
      last: (await output.lastHiddenState.read()) as Float32Array,
      reports,
    };
    if (output.streamStates) {
      run.streamStates = {
        image: await readAll(output.streamStates.image),
        text: await readAll(output.streamStates.text),
      };
    }
    return run;
  } finally {
    output.dispose();
  }
}

function report(run: HostRun, stream: string): StreamReport {
  const found = run.reports.find((r) => r.stream === stream);
  if (!found) throw new Error(`no ${stream} report`);
  return found;
}

/** Same arrays, bit for bit. */
function expectIdentical(actual: Float32Array[], expected: Float32Array[], label: string): void {
  expect(actual.length, `${label}: entries`).toBe(expected.length);
  actual.forEach((a, i) => expect(maxAbsDiff(a, expected[i]!), `${label}[${i}]`).toBe(0));
}

/** Device and host runs: the same decisions (read back from the done flags) and the same output. */
function expectSameRuns(device: HostRun, host: HostRun): void {
  expectIdentical(device.states, host.states, 'hiddenStates');
  expectIdentical([device.last], [host.last], 'lastHiddenState');
  if (device.streamStates || host.streamStates) {
    expectIdentical(device.streamStates!.image, host.streamStates!.image, 'image stream');
    expectIdentical(device.streamStates!.text, host.streamStates!.text, 'text stream');
  }
  expect(device.reports.map((r) => [r.stream, r.layersRun])).toEqual(host.reports.map((r) => [r.stream, r.layersRun]));
  for (const [i, h] of host.reports.entries()) {
    // The host trace ends at the exit; the device trace goes on (cos of a frozen state with itself).
    const d = device.reports[i]!;
    expect(d.similarities.slice(0, h.similarities.length)).toEqual(h.similarities);
  }
}

/**
 * The model's encoder with its embeddings computed once (the ResNet dominates a CPU forward
 * pass): `embed` and `embedStreams` hand out fresh copies of the first call's results, which
 * the exits own and free as usual. Everything else is the encoder's own.
 */
function withCachedEmbeddings(encoder: OfaEncoder, pixels: Tensor, inputIds: number[]): ExitEncoder & { dispose(): void } {
  const backend = pixels.backend;
  const copy = (t: Tensor): Tensor => backend.slice(t, 0, 0, t.shape[0]!);
  const joint = encoder.embed(pixels, inputIds);
  const streams = encoder.embedStreams(pixels, inputIds);
  const check = ({ pixels: p, texts }: EncoderBatch): void => {
    if (p !== pixels || texts.length !== 1 || [...Array.from(texts[0]!)].join() !== inputIds.join()) throw new Error('cached encoder: other input');
  };
  return {
    get layerCount() {
      return encoder.layerCount;
    },
    get mode() {
      return encoder.mode;
    },
    layer: (l, x, context) => encoder.layer(l, x, context),
    finish: (x) => encoder.finish(x),
    finishStreams: (s, image, text) => encoder.finishStreams(s, image, text),
    embedBatch(batch) {
      check(batch);
      const c = joint.context;
      return {
        hidden: copy(joint.hidden),
        context: {
          ...c,
          absolutePositionBias: copy(c.absolutePositionBias),
          positionEmbedding: copy(c.positionEmbedding),
          keyPaddingMask: copy(c.keyPaddingMask),
        },
      };
    },
    embedStreamsBatch(batch): EncoderStreams {
      check(batch);
      const { image, text } = streams;
      return {
        ...streams,
        image: {
          hidden: copy(image.hidden),
          context: { ...image.context, absolutePositionBias: copy(image.context.absolutePositionBias) },
        },
        text: {
          hidden: copy(text.hidden),
          context: {
            ...text.context,
            absolutePositionBias: copy(text.context.absolutePositionBias),
            keyPaddingMask: copy(text.context.keyPaddingMask!),
          },
        },
        positionEmbedding: copy(streams.positionEmbedding),
        keyPaddingMask: copy(streams.keyPaddingMask),
      };
    },
    dispose() {
      const c = joint.context;
      for (const t of [joint.hidden, c.absolutePositionBias, c.positionEmbedding, c.keyPaddingMask]) t.dispose();
      disposeStreams(streams);
    },
  };
}

// ---- golden data (host) --------------------------------------------------------------------------

const golden = {
  pixels: new Float32Array() as Float32Array<ArrayBufferLike>,
  pixelsShape: [] as readonly number[],
  inputIds: [] as number[],
  states: [] as Float32Array[],
  last: new Float32Array() as Float32Array<ArrayBufferLike>,
  /** Per modality: cos of golden state l with state l−1, l = 1..L. */
  sims: { image: [] as number[], text: [] as number[] },
};

beforeAll(async () => {
  const file = await SafetensorsFile.open(join(GOLDEN, 'outputs.safetensors'));
  try {
    golden.pixels = await file.readFloat32('inputs.patch_images');
    golden.pixelsShape = file.info('inputs.patch_images').shape;
    golden.inputIds = [...(await file.readFloat32('inputs.input_ids'))];
    for (let l = 0; l <= LAYERS; l++) golden.states.push(await file.readFloat32(`encoder.hidden_states.${l}`));
    golden.last = await file.readFloat32('encoder.last_hidden_state');
  } finally {
    await file.close();
  }
  for (const m of ['image', 'text'] as const) golden.sims[m] = similarities(golden.states.map((s) => rows(s, m)));
});

// ---- the suites --------------------------------------------------------------------------------

const backends: [string, () => Promise<Backend>][] = [
  ['CPU', async () => new CpuBackend()],
  ['WebGPU', webgpuBackend],
];

describe.each(backends)('encodeWithExits on the %s backend (golden tiny model)', (backendName, makeBackend) => {
  let backend: Backend;
  let model: OfaModel;
  let pixels: Tensor;
  /** The plain joint forward (checked against golden below) and the plain decomposed forward. */
  let joint: HostRun;
  let decomposed: HostRun;
  /** The joint encoder's per-request context, for running single layers. */
  let jointContext: EncoderContext;
  /** The encoder with the golden input's embeddings computed once. */
  let cached: ExitEncoder & { dispose(): void };
  /** Per modality: cos between consecutive decomposed stream states (no exits). */
  const decomposedSims = { image: [] as number[], text: [] as number[] };

  beforeAll(async () => {
    backend = await makeBackend();
    model = await OfaModel.load(backend, {
      weights: join(GOLDEN, 'weights.safetensors'),
      manifest: join(GOLDEN, 'manifest.json'),
    });
    pixels = backend.upload(golden.pixels, golden.pixelsShape, 'f32');
    joint = await toHost(model.encoder.encodeJoint(pixels, golden.inputIds));
    decomposed = await toHost(model.encoder.encodeDecomposed(pixels, golden.inputIds));
    decomposedSims.image = similarities(decomposed.streamStates!.image);
    decomposedSims.text = similarities(decomposed.streamStates!.text);
    cached = withCachedEmbeddings(model.encoder, pixels, golden.inputIds);
    const embedded = cached.embedBatch({ pixels, texts: [golden.inputIds] });
    embedded.hidden.dispose();
    jointContext = embedded.context;
  });

  afterAll(() => {
    cached?.dispose();
    for (const t of [jointContext?.absolutePositionBias, jointContext?.positionEmbedding, jointContext?.keyPaddingMask]) {
      t?.dispose();
    }
    pixels?.dispose();
    model?.dispose();
  });

  /** On the cached embeddings, or on the model itself (the whole forward pass) with `full`. */
  async function run(options: EncoderExitOptions, full = false): Promise<HostRun> {
    const { output, reports } = await encodeWithExits(full ? model : cached, pixels, golden.inputIds, options);
    return toHost(output, reports);
  }

  /** Both sites; checks that they agree and returns the device run. */
  async function runBoth(options: Omit<EncoderExitOptions, 'site'>): Promise<HostRun> {
    const [device, host] = [await run({ ...options, site: 'device' }), await run({ ...options, site: 'host' })];
    expectSameRuns(device, host);
    return device;
  }

  /** Host copy of `encoder.layer(l, state)`. */
  async function layerOn(l: number, state: Float32Array): Promise<Float32Array> {
    const x = backend.upload(state, [1, TOKENS, D], 'f32');
    const y = model.encoder.layer(l, x, jointContext);
    const out = (await y.read()) as Float32Array;
    x.dispose();
    y.dispose();
    return out;
  }

  it('the plain joint forward matches the golden states (the reference for the rest)', () => {
    joint.states.forEach((s, l) => expect(maxAbsDiff(s, golden.states[l]!), `state ${l}`).toBeLessThanOrEqual(1e-4));
    expect(maxAbsDiff(joint.last, golden.last)).toBeLessThanOrEqual(1e-4);
  });

  describe('joint encoder (plain OFA, frozen modalities)', () => {
    it.each(SITES)('thresholds > 1 reproduce the no-exit forward exactly (%s)', async (site) => {
      // The device run goes through the whole model (ResNet included), the host one reuses its embeddings.
      const result = await run({ image: NEVER, text: NEVER, site, mode: 'joint' }, site === 'device');
      expectIdentical(result.states, joint.states, 'hiddenStates');
      expectIdentical([result.last], [joint.last], 'lastHiddenState');
      expect(result.reports.map((r) => [r.stream, r.layers, r.layersRun, r.tokens])).toEqual([
        ['image', LAYERS, [LAYERS], 0],
        ['text', LAYERS, [LAYERS], 0],
        ['joint', LAYERS, [LAYERS], TOKENS],
      ]);
      expect(report(result, 'image').similarities.length).toBe(LAYERS);
    });

    for (const [stopping, going] of [
      ['image', 'text'],
      ['text', 'image'],
    ] as const) {
      it.each([1, 2, 3, 4])(
        `a ${stopping} threshold between golden similarities stops the ${stopping} tokens after layer %i, frozen at its state`,
        async (k) => {
          const threshold = thresholdAfter(golden.sims[stopping], k);
          const thresholds = stopping === 'image' ? { image: threshold, text: NEVER } : { image: NEVER, text: threshold };
          const result = await runBoth({ ...thresholds, mode: 'joint' });
          expect(report(result, stopping).layersRun).toEqual([k]);
          expect(report(result, going).layersRun).toEqual([LAYERS]);
          expect(report(result, 'joint').layersRun).toEqual([LAYERS]);
          expect(result.states.length).toBe(LAYERS + 1);
          // The stopping modality: golden layer k's state from layer k on (the pre-LN output included).
          for (let l = k; l <= LAYERS; l++) {
            const ours = rows(result.states[l]!, stopping);
            expect(maxAbsDiff(ours, rows(golden.states[k]!, stopping)), `state ${l}`).toBeLessThanOrEqual(1e-4);
            expect(maxAbsDiff(ours, rows(joint.states[k]!, stopping)), `state ${l} vs no-exit state ${k}`).toBe(0);
          }
          // Up to layer k + 1 the other modality is the no-exit forward (layer k + 1 reads state k) ...
          for (let l = 0; l <= Math.min(k + 1, LAYERS); l++) {
            expect(maxAbsDiff(rows(result.states[l]!, going), rows(joint.states[l]!, going)), `state ${l}`).toBe(0);
          }
          // ... then it runs on attending to the frozen tokens: state l+1 = its rows of layer l on state l.
          for (let l = k + 1; l < LAYERS; l++) {
            const expected = await layerOn(l, result.states[l]!);
            expect(maxAbsDiff(rows(result.states[l + 1]!, going), rows(expected, going)), `state ${l + 1}`).toBe(0);
            expect(maxAbsDiff(rows(result.states[l + 1]!, going), rows(joint.states[l + 1]!, going))).toBeGreaterThan(1e-3);
          }
          // The host-side similarities of the decision are the golden ones.
          const trace = report(result, stopping).similarities.slice(0, k).map((s) => s[0]!);
          trace.forEach((s, i) => expect(s).toBeCloseTo(golden.sims[stopping][i]!, 4));
        },
      );
    }

    it.each([1, 2, 3, 4])('both modalities stopping after layer %i give golden encoder.hidden_states.k', async (k) => {
      const result = await runBoth({
        image: thresholdAfter(golden.sims.image, k),
        text: thresholdAfter(golden.sims.text, k),
        mode: 'joint',
      });
      expect(result.reports.map((r) => [r.stream, r.layersRun])).toEqual([
        ['image', [k]],
        ['text', [k]],
        ['joint', [k]],
      ]);
      expect(result.states.length).toBe(k + 1);
      expect(maxAbsDiff(result.states[k]!, golden.states[k]!)).toBeLessThanOrEqual(1e-4);
      expectIdentical(result.states, joint.states.slice(0, k + 1), 'hiddenStates');
      if (k === LAYERS) expect(maxAbsDiff(result.last, golden.last)).toBeLessThanOrEqual(1e-4);
      // The final LayerNorm of state k.
      const x = backend.upload(joint.states[k]!, [1, TOKENS, D], 'f32');
      const y = model.encoder.finish(x);
      expect(maxAbsDiff(result.last, (await y.read()) as Float32Array)).toBe(0);
      x.dispose();
      y.dispose();
    });
  });

  describe('decomposed encoder (MuE)', () => {
    it.each(SITES)('thresholds > 1 reproduce the decomposed forward without trackers exactly (%s)', async (site) => {
      const result = await run({ image: NEVER, text: NEVER, site, mode: 'decomposed' }, site === 'device');
      expectIdentical(result.states, decomposed.states, 'hiddenStates');
      expectIdentical(result.streamStates!.image, decomposed.streamStates!.image, 'image stream');
      expectIdentical(result.streamStates!.text, decomposed.streamStates!.text, 'text stream');
      expectIdentical([result.last], [decomposed.last], 'lastHiddenState');
      expect(result.reports.map((r) => [r.stream, r.layersRun, r.tokens])).toEqual([
        ['image', [LAYERS], PATCHES],
        ['text', [LAYERS], TOKENS - PATCHES],
      ]);
    });

    it.each([
      [1, 3],
      [3, 1],
      [2, 4],
      [4, 2],
    ])('the image threshold stops the image stream after layer %i, the text one the text stream after %i', async (ki, kt) => {
      const result = await runBoth({
        image: thresholdAfter(decomposedSims.image, ki),
        text: thresholdAfter(decomposedSims.text, kt),
        mode: 'decomposed',
      });
      expect(result.reports.map((r) => [r.stream, r.layersRun])).toEqual([
        ['image', [ki]],
        ['text', [kt]],
      ]);
      // Each stream: the no-exit stream's states up to its exit layer, exactly.
      expectIdentical(result.streamStates!.image, decomposed.streamStates!.image.slice(0, ki + 1), 'image stream');
      expectIdentical(result.streamStates!.text, decomposed.streamStates!.text.slice(0, kt + 1), 'text stream');
      expect(result.states.length).toBe(Math.max(ki, kt) + 1);
      // The output: final LayerNorm of concat(image state ki, text state kt).
      const image = decomposed.streamStates!.image[ki]!;
      const text = decomposed.streamStates!.text[kt]!;
      const exitState = new Float32Array(TOKENS * D);
      exitState.set(image, 0);
      exitState.set(text, PATCHES * D);
      expect(maxAbsDiff(result.states.at(-1)!, exitState)).toBe(0);
      const x = backend.upload(exitState, [1, TOKENS, D], 'f32');
      const y = model.encoder.finish(x);
      expect(maxAbsDiff(result.last, (await y.read()) as Float32Array)).toBe(0);
      x.dispose();
      y.dispose();
    });
  });

  it.runIf(backendName === 'CPU')('both modalities stopping after layer 1 on the device skip layers 2–4 (CPU op count)', async () => {
    const cpu = backend as CpuBackend;
    const count = async (options: Omit<EncoderExitOptions, 'site'>, site: DecisionSite): Promise<number> => {
      const before = cpu.computedOps;
      const { output } = await encodeWithExits(cached, pixels, golden.inputIds, { ...options, site, mode: 'joint' });
      const ops = cpu.computedOps - before;
      output.dispose();
      return ops;
    };
    const atLayer = (k: number) => ({ image: thresholdAfter(golden.sims.image, k), text: thresholdAfter(golden.sims.text, k) });
    const full = await count({ image: NEVER, text: NEVER }, 'device');
    const one = await count(atLayer(1), 'device');
    const two = await count(atLayer(2), 'device');
    const perLayer = two - one;
    expect(perLayer).toBeGreaterThan(10); // a layer is dozens of ops
    // Layers 2–4 gated off: what remains of each is the gates' bookkeeping, far below a layer.
    expect(full - one).toBeGreaterThan(2.5 * perLayer);
    // The host mode stops calling the layers once both modalities have stopped.
    expect(await count(atLayer(1), 'host')).toBeLessThan(one);
  });

  it.runIf(backendName === 'WebGPU').each(['joint', 'decomposed'] as const)(
    'device mode records the whole %s forward pass without a submission; host mode submits per layer',
    async (mode) => {
      const gpu = backend as Backend & { readonly submissions: number };
      // The submissions counted whenever the exits call into the encoder.
      const seen: number[] = [];
      const observed: ExitEncoder = {
        get layerCount() {
          return cached.layerCount;
        },
        mode,
        embedBatch: (batch) => cached.embedBatch(batch),
        embedStreamsBatch: (batch) => cached.embedStreamsBatch(batch),
        layer: (l, x, context) => (seen.push(gpu.submissions), cached.layer(l, x, context)),
        finish: (x) => (seen.push(gpu.submissions), cached.finish(x)),
        finishStreams: (st, image, text) => (seen.push(gpu.submissions), cached.finishStreams(st, image, text)),
      };
      const thresholds = {
        image: thresholdAfter(mode === 'joint' ? golden.sims.image : decomposedSims.image, 2),
        text: thresholdAfter(mode === 'joint' ? golden.sims.text : decomposedSims.text, 3),
      };
      for (const site of SITES) {
        seen.length = 0;
        await gpu.sync();
        const before = gpu.submissions;
        const { output, reports } = await encodeWithExits(observed, pixels, golden.inputIds, { ...thresholds, site });
        output.dispose();
        expect(reports.slice(0, 2).map((r) => r.layersRun)).toEqual([[2], [3]]);
        if (site === 'device') expect(new Set(seen), 'submissions during the forward pass').toEqual(new Set([before]));
        else expect(Math.max(...seen)).toBeGreaterThanOrEqual(before + 3);
      }
    },
  );
});
