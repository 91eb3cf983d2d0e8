/**
 * End-to-end model benchmark: the golden tiny-shaped model (weights/ofa-tiny-random, its golden
 * 256×256 input and 12-token prompt) on the CPU and WebGPU backends.
 *
 *   npx tsx bench/model.ts [--runs 5] [--warmup 1] [--backends cpu,webgpu] [--only ops|forward|encoder]
 *                          [--sizes 256,480] [--encoder-rounds 7] [--ort-webgpu-runs 2] [--profile]
 *                          [--forward-runs N] [--encoder-mode joint|decomposed]
 *                          [--exit-scope per-sample|batch] [--cache-fill copy|project]
 *                          [--exit-site device|host]
 *
 * Rows (median milliseconds of `runs` timed runs after `warmup` untimed ones):
 * - `encoder`: ResNet stages 1–3 and the transformer encoder, until the output is computed
 *   (WebGPU: until the queue is idle);
 * - `decoder-token`: one incremental decoder step through the key/value cache for 1 sequence,
 *   log-softmax on the device and the read-back of `[1, V]` — what beam search pays per token;
 * - `decoder-token-beam5`: the same for 5 beams (`[5, V]`), including the cache reordering.
 * Decoder runs are beam searches (src/generate/beam-search.ts) with min length = max length = 16,
 * so that every run takes exactly 17 steps; ms per token = run time / 17.
 * - `ofa-forward` (MuE, mue-spec.md): one whole caption-shaped forward on the golden model — the
 *   encoder on the golden image and prompt, then beam search with 5 beams for exactly 17 steps
 *   (min = max length 16, so every configuration decodes the same number of tokens), every
 *   step's read-back included — under each `exits` setting:
 *   - `none`: the plain model, no checks compiled in (`OfaModel.encode`, `OfaStepDecoder`);
 *   - `checks`: `encodeWithExits` + `ExitingStepDecoder` with every threshold 2: the similarity
 *     checks and gates run, nothing exits — their cost over `none` is the check overhead;
 *   - thresholds `img=…,txt=…,dec=…`: exits on (decisions on the device, per beam, copied caches,
 *     the authors' decoder schedule for max_len 16). `layers_fraction` is the exit report's share
 *     of token-weighted layer compute run (the paper's expected time; 1 − it is what was saved).
 *   The configurations run round-robin (one run of each in turn, the first rotating,
 *   `--forward-runs` rounds after a warm-up round; default 5 on the CPU, 15 on WebGPU), so that
 *   drift on a shared machine and what one run leaves the next hit all of them alike; the table compares each configuration with `none` in the same round (the
 *   median of those paired ratios, `paired_vs_none`, is the number to quote), and also the
 *   medians and minimums. `--exit-scope` and `--cache-fill` set the threshold rows' decision scope and
 *   cache fill (default: per beam, copied — the pipeline's defaults), `--exit-site` where decisions
 *   are taken (default on the device, gated layers in one submission; `host`: a similarity read per
 *   layer, later layers only for the beams still going).
 *
 * - `ofa-encoder` (bench/encoder-peers.ts): the encoder on our WebGPU backend against onnxruntime-node
 *   on the ONNX export of the same model (CPU and WebGPU execution providers), host to host, the
 *   engines taking turns; at each of `--sizes`, outputs checked to agree within 1e-3 first.
 * `--profile` instead breaks one encoder forward and one decoder step down by layer and kernel
 * from device timestamps, and a beam search into steps and host bookkeeping (bench/profile.ts).
 *
 * Memory: WebGPU reports the buffer pool's peak bytes in use (weights included); the CPU reports
 * the growth of the process's peak resident set over its size before the backend was created
 * (`process.resourceUsage().maxRSS`, which sees transient peaks inside synchronous ops), and the
 * V8 heap in use after the op. The CPU runs first, so its peak is not WebGPU's.
 *
 * Prints a table and writes the rows to `bench/results/model-latest.json`.
 */
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Backend } from '../src/backend/backend.js';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { beamSearch } from '../src/generate/beam-search.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import type { EncoderMode } from '../src/models/ofa/config.js';
import type { EncoderOutput } from '../src/models/ofa/encoder.js';
import { OfaModel } from '../src/models/ofa/model.js';
import { OfaStepDecoder } from '../src/models/ofa/step-decoder.js';
import { type CacheFill, ExitingStepDecoder } from '../src/mue/decoder-exits.js';
import type { DecisionScope, DecisionSite } from '../src/mue/exit.js';
import { encodeWithExits } from '../src/mue/encoder-exits.js';
import { type StreamReport, exitReport } from '../src/mue/report.js';
import { type EncoderPeerRow, type EncoderPeerSettings, benchEncoderPeers, printEncoderPeerTable } from './encoder-peers.js';
import { profileModel } from './profile.js';
import type { BackendName } from '../src/pipeline.js';
import type { Tensor } from '../src/tensor.js';
import { median } from './stats.js';
import { oneOf, positiveInteger } from './flags.js';

const MODEL_NAME = 'ofa-tiny-random';
const MODEL_DIR = fileURLToPath(new URL(`../weights/${MODEL_NAME}`, import.meta.url));
const RESULTS = fileURLToPath(new URL('results/model-latest.json', import.meta.url));
/** OFA's caption length limit (§7.1): steps 0 … 16. */
const MAX_LEN = 16;
const DECODER_STEPS = MAX_LEN + 1;

type Op = 'encoder' | 'decoder-token' | 'decoder-token-beam5';

interface ResultRow {
  op: Op;
  model: string;
  backend: BackendName;
  /** Median milliseconds (per run for the encoder, per token for the decoder). */
  ms: number;
  minMs: number;
  runs: number;
  imageSize: number;
  /** Sequences decoded together (1 for the encoder). */
  batch: number;
  /** WebGPU: pooled buffer bytes at their peak; CPU: peak RSS growth since before the backend existed. */
  peakBytes: number;
  /** CPU only: V8 heap in use after the op. */
  heapUsedBytes?: number;
  device: string;
}

/** One MuE configuration of the whole forward (see the module comment). */
interface ForwardRow {
  op: 'ofa-forward';
  model: string;
  backend: BackendName;
  /** `none`, `checks` or the thresholds, e.g. `img=0.9,txt=0.9,dec=0.9`. */
  exits: string;
  /** Median milliseconds of one forward (encoder + 17 beam-search steps × 5 beams). */
  ms: number;
  minMs: number;
  /**
   * Median over rounds of this configuration's time over `none`'s in the same round, minus 1
   * (the overhead, or the saving when negative): paired within a round, so drift on a shared
   * machine cancels out.
   */
  paired_vs_none: number;
  runs: number;
  /** Token-weighted layer compute run over the full model's (1 for `none` and `checks`). */
  layers_fraction: number;
  imageSize: number;
  beams: number;
  decoderSteps: number;
  encoderMode: EncoderMode;
  /** Where decisions are taken (threshold and `checks` rows). */
  site: DecisionSite;
  /** Whose states a decision covers (threshold rows; `checks` and `none` never exit). */
  scope: DecisionScope;
  /** How skipped decoder layers' caches are filled. */
  cacheFill: CacheFill;
  device: string;
}

/** The thresholds of one exits configuration; undefined: the plain model. */
interface ExitConfig {
  name: string;
  thresholds?: { image: number; text: number; decoder: number };
}

/** `none`, `checks` and the threshold sets (the authors' caption and SNLI-VE settings among them). */
const EXIT_CONFIGS: readonly ExitConfig[] = [
  { name: 'none' },
  { name: 'checks', thresholds: { image: 2, text: 2, decoder: 2 } },
  ...[
    [0.9, 0.9, 0.9],
    [0.99, 0.7, 0.9], // the authors' caption setting
    [0.7, 0.99, 0.7], // their SNLI-VE setting
    [0.5, 0.5, 0.5], // below the random model's similarities after one layer: what skipping saves at most
  ].map(([image, text, decoder]) => ({
    name: `img=${image},txt=${text},dec=${decoder}`,
    thresholds: { image: image!, text: text!, decoder: decoder! },
  })),
];
const FORWARD_BEAMS = 5;

interface SkippedRow {
  op: 'all';
  model: string;
  backend: BackendName;
  skipped: string;
}

interface Settings {
  runs: number;
  warmup: number;
  /** Timed rounds of the `ofa-forward` configurations per backend, after one warm-up round (default: 5 on the CPU, 15 on WebGPU). */
  forwardRuns: Partial<Record<BackendName, number>>;
  encoderMode?: EncoderMode;
  site: DecisionSite;
  scope: DecisionScope;
  cacheFill: CacheFill;
}

/** Milliseconds of each of `settings.runs` timed calls after `settings.warmup` untimed ones. */
async function measure(settings: Settings, run: () => Promise<number>): Promise<number[]> {
  for (let i = 0; i < settings.warmup; i++) await run();
  const times: number[] = [];
  for (let i = 0; i < settings.runs; i++) times.push(await run());
  return times;
}

interface Golden {
  pixels: Float32Array;
  imageSize: number;
  inputIds: number[];
  /** The reference encoder output `[1, N, d]`. */
  lastHiddenState: Float32Array;
}

async function readGolden(): Promise<Golden> {
  const file = await SafetensorsFile.open(join(MODEL_DIR, 'outputs.safetensors'));
  try {
    const pixels = await file.readFloat32('inputs.patch_images');
    const imageSize = file.info('inputs.patch_images').shape[3]!;
    const inputIds = Array.from(await file.readFloat32('inputs.input_ids'));
    const lastHiddenState = await file.readFloat32('encoder.last_hidden_state');
    return { pixels, imageSize, inputIds, lastHiddenState };
  } finally {
    await file.close();
  }
}

/** A backend with the way its rows report memory (see the module comment) and name the device. */
interface Subject {
  name: BackendName;
  backend: Backend;
  memory: () => { peakBytes: number; heapUsedBytes?: number };
  device: string;
}

async function openSubject(name: BackendName): Promise<Subject> {
  if (name === 'webgpu') {
    // Loaded on demand: a CPU-only run never touches Dawn.
    const { createWebGpuBackend } = await import('../src/backend/webgpu/index.js');
    const gpu = await createWebGpuBackend();
    return {
      name,
      backend: gpu,
      memory: () => ({ peakBytes: gpu.memory.peakBytesInUse }),
      device: gpu.capabilities.adapterDescription,
    };
  }
  const rssBefore = process.memoryUsage().rss;
  return {
    name,
    backend: new CpuBackend(),
    memory: () => ({
      peakBytes: Math.max(0, process.resourceUsage().maxRSS * 1024 - rssBefore),
      heapUsedBytes: process.memoryUsage().heapUsed,
    }),
    device: `node ${process.version} ${process.arch}`,
  };
}

/**
 * One `ofa-forward`: encoder and a 17-step beam search, with or without exits; its wall time and
 * the exit report's layer fraction.
 */
async function forward(
  model: OfaModel,
  pixels: Tensor,
  inputIds: readonly number[],
  config: ExitConfig,
  settings: Settings,
): Promise<{ ms: number; layersFraction: number }> {
  const start = performance.now();
  const { thresholds } = config;
  let encoded: EncoderOutput;
  let encoderReports: StreamReport[] = [];
  if (thresholds) {
    const result = await encodeWithExits(model, pixels, inputIds, {
      image: thresholds.image,
      text: thresholds.text,
      site: settings.site,
      scope: settings.scope,
    });
    encoded = result.output;
    encoderReports = result.reports;
  } else {
    encoded = model.encode(pixels, inputIds);
  }
  try {
    const decoder = thresholds
      ? new ExitingStepDecoder(model, encoded, FORWARD_BEAMS, {
          threshold: thresholds.decoder,
          maxLen: MAX_LEN,
          site: settings.site,
          scope: settings.scope,
          fill: settings.cacheFill,
        })
      : new OfaStepDecoder(model, encoded, FORWARD_BEAMS);
    try {
      await beamSearch(decoder, { beamSize: FORWARD_BEAMS, maxLenB: MAX_LEN, minLen: MAX_LEN });
      const ms = performance.now() - start;
      if (decoder.length !== DECODER_STEPS) {
        throw new Error(`bench: beam search ran ${decoder.length} decoder steps, expected ${DECODER_STEPS}`);
      }
      const layersFraction =
        decoder instanceof ExitingStepDecoder ? exitReport(encoderReports, decoder.reports, ms).layersFraction : 1;
      return { ms, layersFraction };
    } finally {
      decoder.dispose();
    }
  } finally {
    encoded.dispose();
  }
}

/** The `ofa-forward` rows: every configuration once per round, a warm-up round first. */
async function benchForward(subject: Subject, golden: Golden, settings: Settings): Promise<ForwardRow[]> {
  const { backend } = subject;
  const model = await OfaModel.load(backend, MODEL_DIR, { encoderMode: settings.encoderMode });
  const { imageSize } = golden;
  const pixels: Tensor = backend.upload(golden.pixels, [1, 3, imageSize, imageSize], 'f32');
  const times = EXIT_CONFIGS.map(() => [] as number[]);
  const fractions = EXIT_CONFIGS.map(() => 1);
  try {
    const rounds = settings.forwardRuns[subject.name] ?? (subject.name === 'cpu' ? 5 : 15);
    for (let round = -1; round < rounds; round++) {
      // Which configuration goes first rotates from round to round: a run pays for what the run
      // before it left (buffers released, caches), so that cost falls on every configuration alike.
      for (let turn = 0; turn < EXIT_CONFIGS.length; turn++) {
        const i = (turn + Math.max(round, 0)) % EXIT_CONFIGS.length;
        const config = EXIT_CONFIGS[i]!;
        // Warm-up: every path once on WebGPU (pipelines compile on first use); the CPU has only
        // the JIT to warm, and one forward with checks runs every op the others run.
        if (round < 0 && subject.name === 'cpu' && config.name !== 'checks') continue;
        const { ms, layersFraction } = await forward(model, pixels, golden.inputIds, config, settings);
        if (round >= 0) times[i]!.push(ms);
        fractions[i] = layersFraction;
      }
    }
    const noneIndex = EXIT_CONFIGS.findIndex((config) => config.name === 'none');
    return EXIT_CONFIGS.map((config, i) => ({
      op: 'ofa-forward',
      model: MODEL_NAME,
      backend: subject.name,
      exits: config.name,
      ms: median(times[i]!),
      minMs: Math.min(...times[i]!),
      paired_vs_none: median(times[i]!.map((ms, round) => ms / times[noneIndex]![round]! - 1)),
      runs: times[i]!.length,
      layers_fraction: fractions[i]!,
      imageSize,
      beams: FORWARD_BEAMS,
      decoderSteps: DECODER_STEPS,
      encoderMode: model.config.encoderMode,
      site: settings.site,
      scope: settings.scope,
      cacheFill: settings.cacheFill,
      device: subject.device,
    }));
  } finally {
    pixels.dispose();
    model.dispose();
  }
}

async function benchBackend(subject: Subject, golden: Golden, settings: Settings): Promise<ResultRow[]> {
  const { backend } = subject;
  const model = await OfaModel.load(backend, MODEL_DIR);
  const { imageSize } = golden;
  const pixels: Tensor = backend.upload(golden.pixels, [1, 3, imageSize, imageSize], 'f32');
  const row = (op: Op, batch: number, times: number[]): ResultRow => ({
    op,
    model: MODEL_NAME,
    backend: subject.name,
    ms: median(times),
    minMs: Math.min(...times),
    runs: times.length,
    imageSize,
    batch,
    ...subject.memory(),
    device: subject.device,
  });
  try {
    const encoderTimes = await measure(settings, async () => {
      const start = performance.now();
      const encoded = model.encode(pixels, golden.inputIds);
      await backend.sync();
      const ms = performance.now() - start;
      encoded.dispose();
      return ms;
    });
    const rows = [row('encoder', 1, encoderTimes)];

    const encoded = model.encode(pixels, golden.inputIds);
    try {
      for (const [op, beams] of [
        ['decoder-token', 1],
        ['decoder-token-beam5', 5],
      ] as const) {
        const times = await measure(settings, async () => {
          const decoder = new OfaStepDecoder(model, encoded, beams);
          try {
            const start = performance.now();
            await beamSearch(decoder, { beamSize: beams, maxLenB: MAX_LEN, minLen: MAX_LEN });
            const ms = performance.now() - start;
            if (decoder.length !== DECODER_STEPS) {
              throw new Error(`bench: beam search ran ${decoder.length} decoder steps, expected ${DECODER_STEPS}`);
            }
            return ms / DECODER_STEPS;
          } finally {
            decoder.dispose();
          }
        });
        rows.push(row(op, beams, times));
      }
    } finally {
      encoded.dispose();
    }
    return rows;
  } finally {
    pixels.dispose();
    model.dispose();
  }
}

function megabytes(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

function percent(x: number): string {
  return `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}%`;
}

/**
 * The MuE table: per backend and configuration, the median forward time, the layer fraction
 * run, and the time against the plain model (`none`): for `checks` the check overhead, for a
 * threshold set the time saved (negative: faster).
 */
function printForwardTable(rows: readonly ForwardRow[]): void {
  const header = ['backend', 'exits', 'median ms', 'min ms', 'runs', 'layers run', 'compute saved', 'vs none (paired)', 'median vs none', 'min vs none'];
  const cells = rows.map((r) => {
    const none = rows.find((n) => n.backend === r.backend && n.exits === 'none');
    const compare = (ms: number, base: number | undefined): string => {
      if (!none || r === none || base === undefined) return '';
      return `${percent(ms / base - 1)}${r.exits === 'checks' ? ' overhead' : ''}`;
    };
    return [
      r.backend,
      r.exits,
      r.ms.toFixed(1),
      r.minMs.toFixed(1),
      String(r.runs),
      `${(100 * r.layers_fraction).toFixed(1)}%`,
      `${(100 * (1 - r.layers_fraction)).toFixed(1)}%`,
      r === none ? '' : `${percent(r.paired_vs_none)}${r.exits === 'checks' ? ' overhead' : ''}`,
      compare(r.ms, none?.ms),
      compare(r.minMs, none?.minMs),
    ];
  });
  const numeric = new Set([2, 3, 4, 5, 6, 7, 8, 9]);
  const widths = header.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c]!.length)));
  const line = (row: readonly string[]): string =>
    row.map((cell, c) => (numeric.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd();
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of cells) console.log(line(row));
}

function printTable(rows: readonly (ResultRow | SkippedRow)[]): void {
  const header = ['op', 'backend', 'batch', 'median ms', 'min ms', 'runs', 'peak MiB', 'device'];
  const cells = rows.map((r) =>
    'skipped' in r
      ? [r.op, r.backend, '', '', '', '', '', `skipped: ${r.skipped}`]
      : [r.op, r.backend, String(r.batch), r.ms.toFixed(2), r.minMs.toFixed(2), String(r.runs), megabytes(r.peakBytes), r.device],
  );
  const numeric = new Set([2, 3, 4, 5, 6]);
  const widths = header.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c]!.length)));
  const line = (row: readonly string[]): string =>
    row.map((cell, c) => (numeric.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd();
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of cells) console.log(line(row));
}

/** Writes the rows atomically: a reader never sees a half-written file. */
async function writeResults(rows: readonly (ResultRow | ForwardRow | EncoderPeerRow)[]): Promise<void> {
  const temporary = RESULTS.replace(/\.json$/, `.${process.pid}.tmp.json`);
  await writeFile(temporary, `${JSON.stringify(rows, null, 1)}\n`);
  await rename(temporary, RESULTS);
}

/** The `ofa-encoder` rows on the WebGPU subject (bench/encoder-peers.ts). */
async function benchEncoder(subject: Subject, golden: Golden, settings: EncoderPeerSettings): Promise<EncoderPeerRow[]> {
  const model = await OfaModel.load(subject.backend, MODEL_DIR);
  try {
    return await benchEncoderPeers(model, golden.inputIds, golden, subject.device, settings);
  } finally {
    model.dispose();
  }
}

/** `--profile`: bench/profile.ts on a WebGPU backend of its own. */
async function profile(golden: Golden, sizes: readonly number[]): Promise<void> {
  const { createWebGpuBackend } = await import('../src/backend/webgpu/index.js');
  const gpu = await createWebGpuBackend();
  try {
    const model = await OfaModel.load(gpu, MODEL_DIR);
    try {
      await profileModel(gpu, model, golden.inputIds, golden, sizes);
    } finally {
      model.dispose();
    }
  } finally {
    gpu.destroy();
  }
}

/**
 * The README's table: our WebGPU times against onnxruntime-node's in the same run, with the
 * issue's targets (encoder ≤ 1.5× onnxruntime CPU and ≥ 5× faster than its WebGPU EP; a 5-beam
 * decoder step ≤ 10 ms; the whole 256 forward ≤ 300 ms), as Markdown.
 */
function printSummary(encoderRows: readonly EncoderPeerRow[], rows: readonly (ResultRow | SkippedRow)[], forwardRows: readonly ForwardRow[]): void {
  const cells: string[][] = [];
  for (const size of [...new Set(encoderRows.map((r) => r.image))]) {
    const of = (engine: EncoderPeerRow['engine']): EncoderPeerRow | undefined => encoderRows.find((r) => r.image === size && r.engine === engine);
    const [ours, cpu, webgpu] = [of('ours-webgpu'), of('ort-cpu'), of('ort-webgpu')];
    const ms = (r: EncoderPeerRow | undefined): string => (r ? `${r.ms.toFixed(0)} ms (CPU ${r.cpuMs.toFixed(0)} ms)` : '—');
    const versusWebGpu = ours && webgpu ? `; ORT WebGPU ${(webgpu.ms / ours.ms).toFixed(1)}× ours` : '';
    cells.push([`encoder ${size}×${size}`, ms(ours), ms(cpu), ms(webgpu), `${ours?.paired_vs_ort_cpu?.toFixed(2) ?? '—'}× ORT CPU${versusWebGpu}`, '≤ 1.5× ORT CPU, ORT WebGPU ≥ 5× ours']);
  }
  const step = rows.find((r): r is ResultRow => !('skipped' in r) && r.op === 'decoder-token-beam5' && r.backend === 'webgpu');
  if (step) cells.push(['decoder step, 5 beams', `${step.ms.toFixed(1)} ms`, '—', '—', '', '≤ 10 ms']);
  const whole = forwardRows.find((r) => r.backend === 'webgpu' && r.exits === 'none');
  if (whole) cells.push([`ofa-forward ${whole.imageSize}×${whole.imageSize} (encoder + ${whole.beams} beams × ${whole.decoderSteps} steps)`, `${whole.ms.toFixed(0)} ms`, '—', '—', '', '≤ 300 ms']);
  if (cells.length === 0) return;
  console.log('\nsummary (Markdown, as in the README):\n');
  const header = ['', 'ours (WebGPU)', 'onnxruntime CPU', 'onnxruntime WebGPU', 'ratio (paired)', 'target'];
  for (const row of [header, header.map(() => '---'), ...cells]) console.log(`| ${row.join(' | ')} |`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      backends: { type: 'string', default: 'cpu,webgpu' },
      'forward-runs': { type: 'string' },
      'encoder-mode': { type: 'string' },
      'exit-scope': { type: 'string', default: 'per-sample' },
      'exit-site': { type: 'string', default: 'device' },
      'cache-fill': { type: 'string', default: 'copy' },
      only: { type: 'string' },
      sizes: { type: 'string', default: '256,480' },
      'encoder-rounds': { type: 'string', default: '7' },
      'ort-webgpu-runs': { type: 'string', default: '2' },
      profile: { type: 'boolean', default: false },
    },
  });
  const mode = values['encoder-mode'];
  if (mode !== undefined && mode !== 'joint' && mode !== 'decomposed') {
    throw new Error(`--encoder-mode: expected joint or decomposed, got ${mode}`);
  }
  const only = values.only;
  if (only !== undefined && only !== 'ops' && only !== 'forward' && only !== 'encoder') throw new Error(`--only: expected ops, forward or encoder, got ${only}`);
  const sizes = values.sizes.split(',').map((size) => positiveInteger(size, '--sizes'));
  const settings: Settings = {
    runs: positiveInteger(values.runs, '--runs'),
    warmup: positiveInteger(values.warmup, '--warmup', true),
    forwardRuns: {},
    encoderMode: mode,
    scope: oneOf(values['exit-scope'], '--exit-scope', ['per-sample', 'batch'] as const),
    site: oneOf(values['exit-site'], '--exit-site', ['device', 'host'] as const),
    cacheFill: oneOf(values['cache-fill'], '--cache-fill', ['copy', 'project'] as const),
  };
  if (values['forward-runs'] !== undefined) {
    const n = positiveInteger(values['forward-runs'], '--forward-runs');
    settings.forwardRuns = { cpu: n, webgpu: n };
  }
  const backends = values.backends.split(',').map((name) => {
    if (name !== 'cpu' && name !== 'webgpu') throw new Error(`--backends: unknown backend '${name}' (cpu, webgpu)`);
    return name;
  });
  const golden = await readGolden();
  if (values.profile) return profile(golden, sizes);
  const encoderSettings = {
    sizes,
    rounds: positiveInteger(values['encoder-rounds'], '--encoder-rounds'),
    ortWebGpuRuns: positiveInteger(values['ort-webgpu-runs'], '--ort-webgpu-runs', true),
  };
  const rows: (ResultRow | SkippedRow)[] = [];
  const forwardRows: ForwardRow[] = [];
  const encoderRows: EncoderPeerRow[] = [];
  for (const name of backends) {
    let subject: Subject;
    try {
      subject = await openSubject(name);
    } catch (error) {
      // A backend that cannot start (no WebGPU adapter) is reported, not fatal.
      const reason = (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
      rows.push({ op: 'all', model: MODEL_NAME, backend: name, skipped: reason });
      continue;
    }
    try {
      if (name === 'webgpu' && (only === undefined || only === 'encoder')) encoderRows.push(...(await benchEncoder(subject, golden, encoderSettings)));
      if (only === undefined || only === 'ops') rows.push(...(await benchBackend(subject, golden, settings)));
      if (only === undefined || only === 'forward') forwardRows.push(...(await benchForward(subject, golden, settings)));
    } finally {
      subject.backend.destroy();
    }
  }
  if (rows.length > 0) printTable(rows);
  if (forwardRows.length > 0) {
    const { encoderMode } = forwardRows[0]!;
    console.log(
      `\nofa-forward (MuE): encoder (${encoderMode}) + beam search, ${FORWARD_BEAMS} beams × ${DECODER_STEPS} steps, ` +
        `${golden.imageSize}×${golden.imageSize}; decisions on the ${settings.site}, ${settings.scope}, cache fill ${settings.cacheFill}`,
    );
    printForwardTable(forwardRows);
  }
  if (encoderRows.length > 0) {
    console.log('\nofa-encoder: the golden model\'s encoder, host to host, against onnxruntime-node on its ONNX export (engines taking turns)');
    printEncoderPeerTable(encoderRows);
  }
  printSummary(encoderRows, rows, forwardRows);
  const measured = [...rows.filter((r): r is ResultRow => !('skipped' in r)), ...forwardRows, ...encoderRows];
  await writeResults(measured);
  console.log(`\nwrote ${measured.length} rows to ${RESULTS}`);
}

await main();
