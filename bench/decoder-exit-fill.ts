/**
 * MuE decoder exits: which cache fill — the authors' `copy` or CALM's `project` — keeps the
 * generations closer to the no-exit run, and how much decoder computation each saves.
 *
 *   npx tsx bench/decoder-exit-fill.ts [--backend cpu|webgpu] [--size 256] [--thresholds 0.75,0.8,0.85,0.9,0.95,0.99] [--fixed] [--forced-only]
 *
 * Model: the demo model (weights/ofa-tiny-demo; random weights, so this measures agreement with
 * the no-exit run, not quality). Inputs: the PNG fixtures and two seeded random images, each with
 * three prompts. Per decoder threshold (the authors' schedule, max_len 16: no exit in the first
 * 6 steps; `--fixed`: the threshold as given at every step), device decisions, per-beam scope, per
 * fill:
 * - `forced`: feeding the no-exit greedy tokens (teacher forcing, which isolates each step's error
 *   from the divergence that follows it): the mean KL(no-exit ‖ exit) of the next-token
 *   distributions over the steps that may exit, and the top-1 agreement with those tokens;
 * - `greedy`: exact match of the greedy sequence (max 16 tokens), and its position-wise agreement;
 * - `beam`: exact match of the best hypothesis of beam search (beam 5, OFA's caption settings),
 *   and its position-wise agreement;
 * - `saved`: decoder layer computation saved (token-weighted, all beams), greedy / beam;
 * - `reads-fill`: the share of greedy tokens that run a layer holding filled keys/values of an
 *   earlier token (only there can the two fills differ);
 * - `random-KL`, `random-top1`, `random-reads`, `random-saved`: as `forced` (and saved, reads-fill), but feeding a seeded random token
 *   sequence (16 ids) instead of the greedy one: the demo model's greedy outputs repeat tokens and
 *   exit at one layer throughout, random text makes the exit layer vary from token to token.
 * `--forced-only` skips the greedy and beam runs.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { beamSearch, maxGenerationLength } from '../src/generate/beam-search.js';
import { greedy } from '../src/generate/greedy.js';
import { preprocessImage } from '../src/image/preprocess.js';
import type { EncoderOutput } from '../src/models/ofa/encoder.js';
import { OfaModel } from '../src/models/ofa/model.js';
import { OfaStepDecoder } from '../src/models/ofa/step-decoder.js';
import { type CacheFill, ExitingStepDecoder } from '../src/mue/decoder-exits.js';
import { createBackend } from '../src/pipeline.js';
import { EOS_ID, OfaTokenizer } from '../src/text/bpe.js';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'cpu' },
    size: { type: 'string', default: '256' },
    thresholds: { type: 'string', default: '0.75,0.8,0.85,0.9,0.95,0.99' },
    fixed: { type: 'boolean', default: false },
    'forced-only': { type: 'boolean', default: false },
  },
});
const SIZE = Number(args.size);
const THRESHOLDS = args.thresholds.split(',').map(Number);
const FILLS: CacheFill[] = ['copy', 'project'];
const MAX_LEN = 16;
const BEAM = { beamSize: 5, maxLenB: MAX_LEN };
const fixture = (name: string): string => fileURLToPath(new URL(`../test/fixtures/preprocess/${name}`, import.meta.url));
const PROMPTS = [' what does the image describe?', ' what is in the image?', ' does the image describe " two dogs play "?'];

function seededImage(seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: 3 * SIZE * SIZE }, () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 4 - 2;
  });
}

const backend = await createBackend(args.backend as 'cpu' | 'webgpu');
const model = await OfaModel.load(backend, fileURLToPath(new URL('../weights/ofa-tiny-demo', import.meta.url)));
const tokenizer = await OfaTokenizer.load();
const images: Float32Array[] = [];
for (const name of ['photo-97x61.png', 'alpha-50x80.png', 'gray-33x33.png']) {
  images.push((await preprocessImage(await readFile(fixture(name)), SIZE, name)).pixels);
}
images.push(seededImage(1), seededImage(2));

interface Tally {
  forced: number;
  forcedTotal: number;
  kl: number;
  klSteps: number;
  greedyExact: number;
  greedyPositions: number;
  greedyTotal: number;
  beamExact: number;
  beamPositions: number;
  beamTotal: number;
  cases: number;
  savedGreedy: number;
  savedBeam: number;
  readsFill: number;
  randomKl: number;
  randomSteps: number;
  randomTop1: number;
  randomTotal: number;
  randomReads: number;
  randomSaved: number;
}
const tallies = new Map<string, Tally>();
const tally = (threshold: number, fill: CacheFill): Tally => {
  const key = `${threshold} ${fill}`;
  let t = tallies.get(key);
  if (!t) {
    t = { forced: 0, forcedTotal: 0, kl: 0, klSteps: 0, greedyExact: 0, greedyPositions: 0, greedyTotal: 0, beamExact: 0, beamPositions: 0, beamTotal: 0, cases: 0, savedGreedy: 0, savedBeam: 0, readsFill: 0, randomKl: 0, randomSteps: 0, randomTop1: 0, randomTotal: 0, randomReads: 0, randomSaved: 0 };
    tallies.set(key, t);
  }
  return t;
};

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** The log-probabilities of each step while feeding `reference` (BOS first). */
async function forced(decoder: OfaStepDecoder, reference: number[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  let previous = 0;
  for (let step = 0; step < reference.length; step++) {
    out.push(await decoder.step(Int32Array.of(previous), step));
    previous = reference[step]!;
  }
  return out;
}

/** The share of tokens that run a layer an earlier token skipped (whose cache holds a fill). */
function readsFill(layersRun: number[]): number {
  return layersRun.filter((k, step) => layersRun.slice(0, step).some((earlier) => earlier < k)).length / layersRun.length;
}

/** BOS-free token ids of ordinary BPE words (4 … 50000), seeded. */
function randomSequence(seed: number): number[] {
  let state = seed >>> 0;
  return Array.from({ length: MAX_LEN }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return 4 + (state % 49996);
  });
}

/** KL(p ‖ q) of two log-probability rows, in double precision. */
function kl(p: Float32Array, q: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < p.length; i++) if (p[i]! > -Infinity) sum += Math.exp(p[i]!) * (p[i]! - q[i]!);
  return sum;
}

const started = performance.now();
for (const [i, pixels] of images.entries()) {
  for (const prompt of PROMPTS) {
    const ids = tokenizer.encodeWithSpecials(prompt);
    const input = backend.upload(pixels, [1, 3, SIZE, SIZE], 'f32');
    const encoded: EncoderOutput = model.encode(input, ids);
    input.dispose();
    const beamOptions = { ...BEAM, sourceLength: ids.length };
    const maxLen = maxGenerationLength(beamOptions);

    const plainGreedy = new OfaStepDecoder(model, encoded, 1);
    const reference = Array.from((await greedy(plainGreedy, { maxLen: MAX_LEN })).tokens);
    plainGreedy.dispose();
    const plainForced = new OfaStepDecoder(model, encoded, 1);
    const referenceLogProbs = await forced(plainForced, reference);
    plainForced.dispose();
    const randomTokens = randomSequence(1000 * i + ids.length);
    const plainRandom = new OfaStepDecoder(model, encoded, 1);
    const randomLogProbs = await forced(plainRandom, randomTokens);
    plainRandom.dispose();
    let referenceBeam: number[] = [];
    if (!args['forced-only']) {
      const plainBeam = new OfaStepDecoder(model, encoded, BEAM.beamSize);
      referenceBeam = Array.from((await beamSearch(plainBeam, beamOptions))[0]!.tokens);
      plainBeam.dispose();
    }

    for (const threshold of THRESHOLDS) {
      for (const fill of FILLS) {
        const t = tally(threshold, fill);
        const settings = { threshold, maxLen: args.fixed ? undefined : maxLen, fill, site: 'device', scope: 'per-sample' } as const;
        const forcedDecoder = new ExitingStepDecoder(model, encoded, 1, settings);
        const logProbs = await forced(forcedDecoder, reference);
        forcedDecoder.dispose();
        t.forced += logProbs.filter((row, k) => argmax(row) === reference[k]).length;
        t.forcedTotal += reference.length;
        logProbs.forEach((row, k) => {
          if (!args.fixed && k < (maxLen + 1) / 3) return; // no exit in the first third
          t.kl += kl(referenceLogProbs[k]!, row);
          t.klSteps++;
        });

        const randomDecoder = new ExitingStepDecoder(model, encoded, 1, settings);
        const randomRows = await forced(randomDecoder, randomTokens);
        const randomRuns = randomDecoder.reports.map((r) => r.layersRun[0]!);
        t.randomSaved += randomDecoder.report().computeSaved;
        randomDecoder.dispose();
        randomRows.forEach((row, k) => {
          t.randomTop1 += Number(argmax(row) === argmax(randomLogProbs[k]!));
          t.randomTotal++;
          if (!args.fixed && k < (maxLen + 1) / 3) return;
          t.randomKl += kl(randomLogProbs[k]!, row);
          t.randomSteps++;
        });
        t.randomReads += readsFill(randomRuns);
        t.cases++;
        if (args['forced-only']) continue;

        const greedyDecoder = new ExitingStepDecoder(model, encoded, 1, settings);
        const tokens = Array.from((await greedy(greedyDecoder, { maxLen: MAX_LEN })).tokens);
        t.savedGreedy += greedyDecoder.report().computeSaved;
        t.readsFill += readsFill(greedyDecoder.reports.map((r) => r.layersRun[0]!));
        greedyDecoder.dispose();
        t.greedyExact += Number(tokens.length === reference.length && tokens.every((x, k) => x === reference[k]));
        t.greedyPositions += reference.filter((x, k) => tokens[k] === x).length;
        t.greedyTotal += reference.length;

        const beamDecoder = new ExitingStepDecoder(model, encoded, BEAM.beamSize, settings);
        const best = Array.from((await beamSearch(beamDecoder, beamOptions))[0]!.tokens);
        t.savedBeam += beamDecoder.report().computeSaved;
        beamDecoder.dispose();
        t.beamExact += Number(best.length === referenceBeam.length && best.every((x, k) => x === referenceBeam[k]));
        t.beamPositions += referenceBeam.filter((x, k) => best[k] === x).length;
        t.beamTotal += referenceBeam.length;
      }
    }
    encoded.dispose();
    process.stderr.write(`image ${i} "${prompt}": reference ${reference.length} tokens${reference.at(-1) === EOS_ID ? ' (EOS)' : ''}\n`);
  }
}

const pct = (a: number, b: number): string => `${((100 * a) / b).toFixed(1)}%`;
const mode = args.fixed ? 'fixed thresholds' : `the authors' schedule (max_len ${MAX_LEN})`;
console.log(`demo model, ${SIZE}px, ${args.backend}, ${mode}, ${images.length} images × ${PROMPTS.length} prompts, ${((performance.now() - started) / 1000).toFixed(0)} s`);
console.log(
  'threshold fill     random-KL random-top1 random-reads random-saved forced-KL  forced-top1  greedy-exact greedy-pos  beam-exact  beam-pos  saved(greedy) saved(beam) reads-fill',
);
for (const [key, t] of tallies) {
  const [threshold, fill] = key.split(' ');
  console.log(
    `${threshold!.padEnd(9)} ${fill!.padEnd(8)} ${(t.randomKl / t.randomSteps).toFixed(4).padStart(9)} ` +
      `${pct(t.randomTop1, t.randomTotal).padStart(11)} ${pct(t.randomReads, t.cases).padStart(12)} ${pct(t.randomSaved, t.cases).padStart(12)} ${(t.kl / t.klSteps).toFixed(4).padStart(9)} ${pct(t.forced, t.forcedTotal).padStart(11)} ${pct(t.greedyExact, t.cases).padStart(12)} ` +
      `${pct(t.greedyPositions, t.greedyTotal).padStart(10)} ${pct(t.beamExact, t.cases).padStart(11)} ` +
      `${pct(t.beamPositions, t.beamTotal).padStart(9)} ` +
      `${pct(t.savedGreedy, t.cases).padStart(13)} ${pct(t.savedBeam, t.cases).padStart(11)} ${pct(t.readsFill, t.cases).padStart(10)}`,
  );
}
model.dispose();
backend.destroy();
