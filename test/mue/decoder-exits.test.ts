/**
 * MuE decoder exits (src/mue/decoder-exits.ts) on the CPU and WebGPU backends, with the golden
 * tiny model at a 64-pixel image (4×4 patches) and three beams fed distinct tokens; the beam
 * search end to end with the demo model.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backend/backend.js';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { beamSearch, maxGenerationLength } from '../../src/generate/beam-search.js';
import type { EncoderOutput } from '../../src/models/ofa/encoder.js';
import { OfaModel } from '../../src/models/ofa/model.js';
import { OfaStepDecoder } from '../../src/models/ofa/step-decoder.js';
import { type CacheFill, ExitingStepDecoder, exitingStep } from '../../src/mue/decoder-exits.js';
import type { DecisionScope, DecisionSite } from '../../src/mue/exit.js';
import type { StreamReport } from '../../src/mue/report.js';
import type { Tensor } from '../../src/tensor.js';
import { maxAbsDiff } from '../helpers/compare.js';
import { createRng, randomFloats } from '../helpers/random.js';
import { webgpuBackend } from '../helpers/webgpu.js';

const GOLDEN = fileURLToPath(new URL('../../weights/ofa-tiny-random', import.meta.url));
const DEMO = fileURLToPath(new URL('../../weights/ofa-tiny-demo', import.meta.url));
const SIDE = 64;
const TEXT = [0, 794, 627, 188, 244, 2];
const LAYERS = 4;
const WIDTH = 256;

/** Step t's tokens of `beams` sequences: BOS, then distinct ids per sequence. */
function column(t: number, beams = 3, offset = 0): number[] {
  return t === 0 ? Array<number>(beams).fill(0) : Array.from({ length: beams }, (_, b) => 10 * (b + 1 + offset) + t);
}
const columns = (steps: number, beams = 3): number[][] => Array.from({ length: steps }, (_, t) => column(t, beams));

/**
 * Per-step thresholds for three beams of `column` (read from host-mode traces of this model and
 * image; each similarity stays ≥ 1.5·10⁻³ away): beams exit at different layers in steps 1, 3 and
 * 6 (per-sample scope); in steps 4 and 6 every beam has stopped before the last layers.
 */
const MIXED = [1.5, 0.765, 0.86, 0.755, 0.6, 0.76, 0.5];
const NEVER = (steps: number): number[] => Array<number>(steps).fill(1.5);

interface Exits {
  site: DecisionSite;
  scope: DecisionScope;
  fill: CacheFill;
}

interface StepRecord {
  logits: Float32Array;
  /** `[B, d]` exit states. */
  state: Float32Array;
  report: StreamReport;
  /** Per layer, the done flags after it. */
  flags: number[][];
}

async function take(t: Tensor): Promise<Float32Array> {
  const values = (await t.read()) as Float32Array;
  t.dispose();
  return values;
}

const row = (values: Float32Array, b: number, width: number): Float32Array => values.subarray(b * width, (b + 1) * width);

/** The smallest distance of a computed similarity from the step's threshold. */
function margin(records: StepRecord[], thresholds: number[]): number {
  let min = Infinity;
  records.forEach(({ report }, t) => {
    if (thresholds[t]! >= 1) return;
    report.similarities.forEach((sims, layer) => {
      // After the first layer, a stopped beam's similarity is unspecified (not a decision).
      const doneBefore = layer === 0 ? undefined : records[t]!.flags[layer - 1];
      sims.forEach((s, b) => {
        if (!doneBefore?.[b % doneBefore.length]) min = Math.min(min, Math.abs(s - thresholds[t]!));
      });
    });
  });
  return min;
}

function suite(name: string, createBackend: () => Promise<Backend>): void {
  describe(`decoder exits (${name})`, () => {
    let backend: Backend;
    let model: OfaModel;
    let pixels: Tensor;
    let encoded: EncoderOutput;
    let vocab: number;

    beforeAll(async () => {
      backend = await createBackend();
      model = await OfaModel.load(backend, GOLDEN);
      vocab = model.config.vocabSize;
      pixels = backend.upload(randomFloats(3 * SIDE * SIDE, createRng(7)), [1, 3, SIDE, SIDE], 'f32');
      encoded = model.encode(pixels, TEXT);
    });
    afterAll(() => {
      encoded.dispose();
      pixels.dispose();
      model.dispose();
    });

    /** Logits of plain (no-exit) steps; `reorders[t]` is applied before step t. */
    async function plain(cols: number[][], reorders: Record<number, number[]> = {}): Promise<Float32Array[]> {
      const session = model.startDecoding(encoded, cols[0]!.length);
      const out: Float32Array[] = [];
      for (const [t, tokens] of cols.entries()) {
        if (reorders[t]) session.reorder(reorders[t]);
        out.push(await take(session.step(tokens)));
      }
      session.dispose();
      return out;
    }

    /** Steps with exits at the given per-step thresholds. */
    async function exiting(
      cols: number[][],
      thresholds: number[],
      exits: Exits,
      reorders: Record<number, number[]> = {},
    ): Promise<StepRecord[]> {
      const session = model.startDecoding(encoded, cols[0]!.length);
      const out: StepRecord[] = [];
      try {
        for (const [t, tokens] of cols.entries()) {
          if (reorders[t]) session.reorder(reorders[t]);
          const result = await exitingStep(session, tokens, { threshold: thresholds[t]!, ...exits });
          const logits = await take(result.logits);
          result.lastHiddenState.dispose();
          const state = await take(result.state);
          const flags = await Promise.all(
            result.tracker.decisions.map(async (d) => Array.from(ArrayBuffer.isView(d.done) ? d.done : await d.done.read())),
          );
          const report = await result.finish(`token ${t}`);
          out.push({ logits, state, report, flags });
        }
      } finally {
        session.dispose();
      }
      return out;
    }

    /**
     * No-exit steps up to `cols.length − 1`; in the last step, every layer's state `[B, d]` and
     * the logits `[B, V]` of the final LayerNorm + projection applied to each of them.
     */
    async function plainLayers(cols: number[][]): Promise<{ states: Float32Array[]; logits: Float32Array[] }> {
      const session = model.startDecoding(encoded, cols[0]!.length);
      for (const tokens of cols.slice(0, -1)) await take(session.step(tokens));
      const step = session.begin(cols[cols.length - 1]!);
      const xs = [step.hidden];
      for (let l = 0; l < LAYERS; l++) xs.push(session.layer(l, xs[l]!, step));
      const batch = cols[0]!.length;
      const states: Float32Array[] = [];
      const logits: Float32Array[] = [];
      for (const x of xs) {
        const finished = model.decoder.finish(x.reshape([batch, WIDTH]));
        logits.push(await take(finished.logits));
        finished.lastHiddenState.dispose();
        states.push((await x.read()) as Float32Array);
      }
      session.end(xs[LAYERS]!, step).logits.dispose();
      xs.forEach((x) => x.dispose());
      session.dispose();
      return { states, logits };
    }

    const ALL: Exits[] = (['host', 'device'] as const).flatMap((site) =>
      (['per-sample', 'batch'] as const).flatMap((scope) =>
        (['copy', 'project'] as const).map((fill) => ({ site, scope, fill })),
      ),
    );

    it('reproduces the no-exit logits bitwise at thresholds ≥ 1, through a reorder', async () => {
      const cols = [column(0), column(1), column(2, 2), column(3, 2)];
      const reorders = { 2: [2, 0] };
      const expected = await plain(cols, reorders);
      for (const exits of ALL) {
        const records = await exiting(cols, [1.5, 1, 1.2, 1], exits, reorders);
        records.forEach(({ logits, report }, t) => {
          expect(logits, `${JSON.stringify(exits)} step ${t}`).toEqual(expected[t]);
          expect(report.layersRun.every((n) => n === LAYERS)).toBe(true);
        });
      }
    });

    it("ends a step on the exit layer's state: it equals that layer's no-exit state", async () => {
      const cols = columns(4);
      const reference = await plainLayers(cols);
      // Beams exiting at different layers in one batch.
      const [, , , mixed] = await exiting(cols, [...NEVER(3), 0.755], { site: 'device', scope: 'per-sample', fill: 'copy' });
      const exitLayers = mixed!.report.layersRun;
      expect(new Set(exitLayers).size).toBeGreaterThan(1);
      exitLayers.forEach((k, b) => {
        expect(row(mixed!.state, b, WIDTH)).toEqual(row(reference.states[k]!, b, WIDTH));
        expect(row(mixed!.logits, b, vocab)).toEqual(row(reference.logits[k]!, b, vocab));
      });
      // One beam, exiting after each layer k in turn (thresholds read from its no-exit trace).
      const single = cols.map((c) => c.slice(0, 1));
      const trace = (await exiting(single, NEVER(4), { site: 'host', scope: 'per-sample', fill: 'copy' }))[3]!;
      const sims = trace.report.similarities.map((s) => s[0]!);
      const alone = await plainLayers(single);
      for (let k = 1; k < LAYERS; k++) {
        const below = Math.max(0, ...sims.slice(0, k - 1));
        expect(sims[k - 1]!).toBeGreaterThan(below + 0.01);
        const threshold = (below + sims[k - 1]!) / 2;
        for (const site of ['host', 'device'] as const) {
          const last = (await exiting(single, [...NEVER(3), threshold], { site, scope: 'per-sample', fill: 'project' }))[3]!;
          expect(last.report.layersRun).toEqual([k]);
          expect(last.state).toEqual(alone.states[k]);
          expect(last.logits).toEqual(alone.logits[k]);
        }
      }
    });

    it('takes the same decisions and gives the same logits on the device as on the host', async () => {
      for (const scope of ['per-sample', 'batch'] as const) {
        for (const fill of ['copy', 'project'] as const) {
          // Also with exits in step 0, where no earlier tokens are cached.
          for (const thresholds of [MIXED, [0.6, ...MIXED.slice(1, 4)]]) {
            const cols = columns(thresholds.length);
            const host = await exiting(cols, thresholds, { site: 'host', scope, fill });
            const device = await exiting(cols, thresholds, { site: 'device', scope, fill });
            expect(margin(host, thresholds)).toBeGreaterThan(1e-3);
            host.forEach((h, t) => {
              const what = `${scope} ${fill} step ${t}`;
              // The host runs no layer once every beam has stopped, and records no decision for it.
              expect(device[t]!.flags.slice(0, h.flags.length), what).toEqual(h.flags);
              for (const flags of device[t]!.flags.slice(h.flags.length)) expect(flags.every((f) => f === 1), what).toBe(true);
              expect(device[t]!.report.layersRun, what).toEqual(h.report.layersRun);
              // The host runs a layer for the beams still going only: on WebGPU a kernel over fewer
              // rows may sum in another order (last-bit differences); the CPU gives the same bits.
              if (backend.name === 'cpu') expect(device[t]!.logits, what).toEqual(h.logits);
              else expect(maxAbsDiff(device[t]!.logits, h.logits), what).toBeLessThan(1e-5);
            });
            if (thresholds !== MIXED) continue;
            // Some layers were skipped by every beam, some steps had beams stopping apart.
            expect(host.some((h) => h.report.layersRun.every((n) => n < LAYERS - 1))).toBe(true);
            if (scope === 'per-sample') expect(host.some((h) => new Set(h.report.layersRun).size > 1)).toBe(true);
          }
        }
      }
    });

    it('decides per beam in per-sample scope and once for the batch in batch scope', async () => {
      const cols = columns(MIXED.length);
      const perSample = await exiting(cols, MIXED, { site: 'device', scope: 'per-sample', fill: 'copy' });
      const batch = await exiting(cols, MIXED, { site: 'device', scope: 'batch', fill: 'copy' });
      expect(perSample.map((r) => r.report.layersRun)[1]).toEqual([3, 3, 2]);
      expect(perSample.map((r) => r.report.layersRun)[3]).toEqual([3, 2, 2]);
      for (const r of batch) {
        expect(r.report.layersRun).toHaveLength(1);
        r.flags.forEach((f) => expect(f).toHaveLength(1));
      }
      // Batch scope: cos over the flattened batch, so it runs between the beams' layers.
      expect(batch[1]!.report.layersRun).toEqual([3]);
      expect(batch[3]!.report.layersRun).toEqual([2]);
    });

    it('gives each beam of a batch the result it has alone (per-sample), through a reorder', async () => {
      // Beams stop apart in steps 1 and 3; then beams 2, 2, 0 continue in steps 4–6.
      const reorders = { 4: [2, 2, 0] };
      const parents = reorders[4];
      const cols = columns(MIXED.length).map((c, t) => (t < 4 ? c : column(t, 3, 3)));
      for (const fill of ['copy', 'project'] as const) {
        const exits: Exits = { site: 'device', scope: 'per-sample', fill };
        const batched = await exiting(cols, MIXED, exits, reorders);
        for (let b = 0; b < 3; b++) {
          // Sequence b after the reorder: its parent's tokens, then its own.
          const own = cols.map((c, t) => [c[t < 4 ? parents[b]! : b]!]);
          const alone = await exiting(own, MIXED, exits);
          alone.forEach((a, t) => {
            const beam = t < 4 ? parents[b]! : b;
            const what = `${fill} beam ${b} step ${t}`;
            expect(a.report.layersRun[0], what).toBe(batched[t]!.report.layersRun[beam]);
            expect(maxAbsDiff(a.logits, row(batched[t]!.logits, beam, vocab)), what).toBeLessThan(1e-5);
          });
        }
      }
    });

      it('fills skipped caches by copying or projecting: finite, and different where a filled layer is read', async () => {
      const cols = columns(MIXED.length);
      const copy = await exiting(cols, MIXED, { site: 'device', scope: 'per-sample', fill: 'copy' });
      const project = await exiting(cols, MIXED, { site: 'device', scope: 'per-sample', fill: 'project' });
      copy.forEach((c, t) => {
        const p = project[t]!;
        expect(c.logits.every(Number.isFinite) && p.logits.every(Number.isFinite)).toBe(true);
        expect(p.report.layersRun).toEqual(c.report.layersRun);
        // A beam's logits differ from the step on where it runs a layer (0-based index ≥ k) whose
        // cache was filled for it in an earlier step (a step in which it ran k layers).
        c.report.layersRun.forEach((k, b) => {
          const firstFilled = Math.min(...copy.slice(0, t).map((r) => r.report.layersRun[b]!));
          const diff = maxAbsDiff(row(p.logits, b, vocab), row(c.logits, b, vocab));
          if (k > firstFilled) expect(diff, `step ${t} beam ${b}`).toBeGreaterThan(1e-3);
          // (Copied cross caches attend in groups of beams: on WebGPU over fewer rows, last bits may differ.)
          else expect(diff, `step ${t} beam ${b}`).toBeLessThanOrEqual(backend.name === 'cpu' ? 0 : 1e-5);
        });
      });
      // Both cases occur.
      expect(copy.some((c, t) => t > 1 && c.report.layersRun.some((k) => k === LAYERS))).toBe(true);
    });

    it('copies cross-attention keys by naming the exit layer per beam (decided on the host or on the device)', async () => {
      const crossLayers = async (thresholds: number[], exits: Exits, beams = 3): Promise<number[][]> => {
        const session = model.startDecoding(encoded, beams);
        for (const [t, tokens] of columns(thresholds.length, beams).entries()) {
          const r = await exitingStep(session, tokens, { threshold: thresholds[t]!, ...exits });
          [r.logits, r.state, r.lastHiddenState].forEach((x) => x.dispose());
          await r.finish(`token ${t}`);
        }
        const layers = Array.from({ length: LAYERS }, (_, l) => [...session.cacheOf(l).crossLayers]);
        session.dispose();
        return layers;
      };
      // Step 1 (per beam): beams 0 and 1 run 3 layers, beam 2 runs 2; the batch as one runs 3.
      const steps = MIXED.slice(0, 2);
      const own = [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]];
      const perBeam = [[0, 0, 0], [1, 1, 1], [2, 2, 1], [2, 2, 1]];
      expect(await crossLayers(steps, { site: 'host', scope: 'per-sample', fill: 'copy' })).toEqual(perBeam);
      expect(await crossLayers(steps, { site: 'device', scope: 'per-sample', fill: 'copy' })).toEqual(perBeam);
      expect(await crossLayers(steps, { site: 'device', scope: 'batch', fill: 'copy' })).toEqual([[0, 0, 0], [1, 1, 1], [2, 2, 2], [2, 2, 2]]);
      expect(await crossLayers(steps, { site: 'device', scope: 'per-sample', fill: 'project' })).toEqual(own);
      expect(await crossLayers(steps, { site: 'device', scope: 'per-sample', fill: 'copy' }, 1)).toEqual([[0], [1], [2], [2]]);
      expect(await crossLayers(NEVER(2), { site: 'device', scope: 'per-sample', fill: 'copy' })).toEqual(own);
    });

    it('refuses the next step until the last one is finished (its cache copies wait for its decisions)', async () => {
      const session = model.startDecoding(encoded, 3);
      try {
        const exits = { threshold: 0.5, site: 'device', scope: 'per-sample', fill: 'copy' } as const;
        const r = await exitingStep(session, column(0), exits);
        [r.logits, r.state, r.lastHiddenState].forEach((x) => x.dispose());
        await expect(exitingStep(session, column(1), exits)).rejects.toThrow('exitingStep: the previous step was not finished');
        await r.finish('token 0');
        const next = await exitingStep(session, column(1), exits);
        [next.logits, next.state, next.lastHiddenState].forEach((x) => x.dispose());
        await next.finish('token 1');
      } finally {
        session.dispose();
      }
    });
  });
}

suite('CPU', async () => new CpuBackend());
suite('WebGPU', webgpuBackend);

function beamSuite(name: string, createBackend: () => Promise<Backend>): void {
  describe(`ExitingStepDecoder in beam search (demo model, ${name})`, () => {
    let backend: Backend;
    let model: OfaModel;
    let pixels: Tensor;
    let encoded: EncoderOutput;
    const options = { beamSize: 3, maxLenB: 10 };
    const maxLen = maxGenerationLength(options);

    beforeAll(async () => {
      backend = await createBackend();
      model = await OfaModel.load(backend, DEMO);
      pixels = backend.upload(randomFloats(3 * 32 * 32, createRng(3)), [1, 3, 32, 32], 'f32');
      encoded = model.encode(pixels, TEXT);
    });
    afterAll(() => {
      encoded.dispose();
      pixels.dispose();
      model.dispose();
    });

    it('finds the no-exit hypotheses above 1 and reports the layers of every token', async () => {
      const reference = new OfaStepDecoder(model, encoded, 3);
      const expected = await beamSearch(reference, options);
      reference.dispose();
      const decoder = new ExitingStepDecoder(model, encoded, 3, { threshold: 1.5, maxLen });
      const found = await beamSearch(decoder, options);
      expect(found).toEqual(expected);
      expect(decoder.reports.map((r) => r.stream)).toEqual(decoder.reports.map((_, t) => `token ${t}`));
      expect(decoder.reports.every((r) => r.layersRun.length === 3 && r.layersRun.every((n) => n === LAYERS))).toBe(true);
      expect(decoder.report().computeSaved).toBe(0);
      decoder.dispose();
    });

    it('exits after the first third of the steps, the same on the device as on the host', async () => {
      const run = async (site: DecisionSite, fill: CacheFill) => {
        const decoder = new ExitingStepDecoder(model, encoded, 3, { threshold: 0.6, maxLen, site, fill });
        const hypotheses = await beamSearch(decoder, options);
        const reports = decoder.reports;
        const saved = decoder.report().computeSaved;
        decoder.dispose();
        return { hypotheses, reports, saved };
      };
      for (const fill of ['copy', 'project'] as const) {
        const host = await run('host', fill);
        const device = await run('device', fill);
        expect(device.hypotheses).toEqual(host.hypotheses);
        expect(device.reports.map((r) => r.layersRun)).toEqual(host.reports.map((r) => r.layersRun));
        host.reports.forEach((r, t) => {
          if (t < (maxLen + 1) / 3) expect(r.layersRun.every((n) => n === LAYERS)).toBe(true);
        });
        expect(host.saved).toBeGreaterThan(0);
        expect(host.hypotheses.every((h) => h.positionalScores.every(Number.isFinite))).toBe(true);
      }
    });
  });
}

beamSuite('CPU', async () => new CpuBackend());
beamSuite('WebGPU', webgpuBackend);
