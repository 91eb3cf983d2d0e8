/**
 * Does wall time follow the compute MuE skips, and do batches with exits save? A model (default:
 * the demo model, weights/ofa-tiny-demo) in MuE's decomposed layout on the first items of
 * data/shapes-eval, through the library API (`OfaPipeline.entailBatch` / `captionBatch`), per
 * backend, task and batch size:
 *
 *   npx tsx bench/mue-speed.ts [--backends webgpu,cpu] [--tasks entail,caption] [--batches 1,4,16]
 *                              [--items 16] [--rounds 3] [--sites device,host]
 *                              [--exits 0.7751,0.8601,0.7404] [--image-size 256] [--weights DIR]
 *
 * `--weights` takes any model folder, e.g. one of OFA-base's shape from
 * scripts/make-random-model.ts: how much of a request MuE can skip depends on the model's shape
 * (OFA-tiny's ResNet-50 outweighs its four 256-wide layers; OFA-base's six 768-wide layers per
 * stack outweigh its ResNet-101 at 480 pixels).
 *
 * Configurations, each over the same items in chunks of the batch size:
 * - `none`: the plain model, no checks;
 * - the thresholds (image, text, decoder; default: the reference run's `split` setting, chosen at
 *   the median similarities so that items decide differently, which skips about a third of the
 *   layer compute) with decisions on the device (gated layers: their kernels still launch, and a
 *   batch skips a layer only once all its samples have stopped) and on the host (a similarity
 *   read after every layer; later layers run on the samples still going only);
 * - at batch 1, `floor`: every stream exits after its first layer (thresholds 0; captions keep
 *   the schedule's first third of steps at full depth), the most compute MuE can skip. Its saving
 *   over `none` shows how much of the wall time is skippable layer compute at all (the ResNet, the
 *   output projection and the search are not); `ceiling` = that share of wall per share of
 *   compute: no setting's wall/compute ratio can exceed it while wall time is linear in compute.
 *
 * Every configuration runs once per round after an untimed warm-up call, taking turns chunk by
 * chunk (which one goes first rotating), so drift on a shared machine hits all alike; `paired_vs_none` is the median over rounds of a configuration's time
 * over `none`'s in the same round, minus 1. Beside wall time, the process's CPU time (lavapipe's
 * threads are the process's) is paired the same way (`cpu_paired_vs_none`): on a machine shared
 * with other jobs it follows the work done more closely than wall time does. Derived: `wall_saved` = −paired_vs_none,
 * `wall_per_compute` = wall_saved / compute_skipped (the issue's target: ≥ 0.7 at batch 1), and
 * `items_per_s_gain` = 1 / (1 + paired_vs_none) − 1 (target at batch 16: ≥ 0.7 · skipped /
 * (1 − skipped), i.e. `gain_target`). Rows go to `bench/results/mue-speed-latest.json`, replacing
 * earlier rows of the same backend and task.
 *
 * `--stages`: where one request's wall time goes instead, batch 1, no exits, through the model
 * API with the device drained between stages (`sync`): preprocessing, the ResNet with the
 * embeddings and position biases, the encoder layers (both streams), the decoder layers (the
 * prompt pass; for captions every step's, timed between drains inside each step) and the rest
 * (read-out: the output projection, log-softmax, read-back and, for captions, the search and the
 * steps' embedding, biases and cache reorders). Only the layers can be skipped by MuE: their share
 * bounds how much wall time any setting can save per share of compute. Rows `{op: "mue-stages",
 * task, backend, stage, ms, share}` go to `bench/results/mue-stages-latest.json`.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Backend } from '../src/backend/backend.js';
import { beamSearch } from '../src/generate/beam-search.js';
import { CAPTION_PROMPT, entailmentPrompt } from '../src/generate/tasks.js';
import { preprocessImage } from '../src/image/preprocess.js';
import type { OfaModel } from '../src/models/ofa/model.js';
import { OfaStepDecoder } from '../src/models/ofa/step-decoder.js';
import type { DecisionSite } from '../src/mue/exit.js';
import { type BackendName, type ExitSettings, OfaPipeline, type PipelineExitReport } from '../src/pipeline.js';
import type { Tensor } from '../src/tensor.js';
import { median } from './stats.js';
import { choices, positiveInteger, positiveIntegers } from './flags.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SPLIT = join(ROOT, 'data/shapes-eval');
const DEMO_MODEL = join(ROOT, 'weights/ofa-tiny-demo');
const RESULTS = join(ROOT, 'bench/results/mue-speed-latest.json');
const STAGE_RESULTS = join(ROOT, 'bench/results/mue-stages-latest.json');
const STAGES = ['preprocess', 'resnet + embeddings', 'encoder layers', 'decoder layers', 'read-out, search'] as const;
type Stage = (typeof STAGES)[number];

interface StageRow {
  op: 'mue-stages';
  /** The model folder's name. */
  model: string;
  task: Task;
  backend: BackendName;
  stage: Stage;
  /** Median over the items and rounds of the stage's milliseconds per request. */
  ms: number;
  share: number;
  image_size: number;
  device: string;
}

type Task = 'entail' | 'caption';

interface Row {
  op: 'mue-speed';
  model: string;
  task: Task;
  backend: BackendName;
  batch: number;
  /** `none`, `floor`, or the thresholds `image/text/decoder`. */
  exits: string;
  site: DecisionSite | null;
  items: number;
  ms_per_item: number;
  items_per_s: number;
  /** Token-weighted layer compute run over the full model's, averaged over the items. */
  layers_fraction: number;
  compute_skipped: number;
  paired_vs_none: number | null;
  /** The same pairing over the process's CPU time (user + system). */
  cpu_paired_vs_none: number | null;
  wall_saved: number | null;
  wall_per_compute: number | null;
  items_per_s_gain: number | null;
  gain_target: number | null;
  /** Batch-1 `floor` rows: the share of wall time skippable per share of compute. */
  ceiling?: number;
  rounds: number;
  image_size: number;
  device: string;
}

interface Config {
  name: string;
  site: DecisionSite | null;
  exits: ExitSettings | false;
}

interface Item {
  image: string;
  hypothesis: string;
}

async function readItems(count: number): Promise<Item[]> {
  const lines = (await readFile(join(SPLIT, 'items.jsonl'), 'utf8')).trim().split('\n');
  if (lines.length < count) throw new Error(`${SPLIT}: ${lines.length} items, fewer than --items ${count}`);
  return lines.slice(0, count).map((line) => {
    const { image, hypothesis } = JSON.parse(line) as Item;
    return { image: join(SPLIT, image), hypothesis };
  });
}

/** One call on a chunk of items: its wall and CPU milliseconds and the items' exit reports. */
async function call(
  pipeline: OfaPipeline,
  task: Task,
  chunk: readonly Item[],
  config: Config,
): Promise<{ ms: number; cpuMs: number; reports: (PipelineExitReport | undefined)[] }> {
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  const results =
    task === 'entail'
      ? await pipeline.entailBatch(chunk, { exits: config.exits })
      : await pipeline.captionBatch(
          chunk.map((item) => item.image),
          { exits: config.exits },
        );
  const ms = performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000, reports: results.map((r) => r.exitReport) };
}

/** Caption decoding that times its layers apart: the device is drained before and after them in every step. */
class LayerTimedStepDecoder extends OfaStepDecoder {
  layersMs = 0;

  protected override async forward(tokens: number[]): Promise<Tensor> {
    const backend = this.model.backend;
    const step = this.session.begin(tokens);
    await backend.sync();
    const start = performance.now();
    let x = step.hidden;
    for (let l = 0; l < this.model.decoder.layerCount; l++) {
      const next = this.session.layer(l, x, step);
      x.dispose();
      x = next;
    }
    await backend.sync();
    this.layersMs += performance.now() - start;
    const { lastHiddenState, logits } = this.session.end(x, step);
    x.dispose();
    lastHiddenState.dispose();
    return logits;
  }
}

/** One request's stages (see the module comment), in milliseconds. */
async function stagesOf(pipeline: OfaPipeline, task: Task, item: Item): Promise<Record<Stage, number>> {
  const { model, backend, imageSize } = pipeline;
  const times = {} as Record<Stage, number>;
  let mark = performance.now();
  const lap = async (stage: Stage): Promise<void> => {
    await backend.sync();
    const now = performance.now();
    times[stage] = now - mark;
    mark = now;
  };
  const { pixels } = await preprocessImage(new Uint8Array(await readFile(item.image)), imageSize, item.image);
  const prompt = pipeline.tokenizer.encodeWithSpecials(task === 'entail' ? entailmentPrompt(item.hypothesis) : CAPTION_PROMPT);
  await lap('preprocess');
  const input = backend.upload(pixels, [1, 3, imageSize, imageSize], 'f32');
  const encoder = model.encoder;
  const streams = encoder.embedStreamsBatch({ pixels: input, texts: [prompt] });
  input.dispose();
  await lap('resnet + embeddings');
  const run = (hidden: Tensor, context: Parameters<typeof encoder.layer>[2]): Tensor[] => {
    const states = [hidden];
    for (let l = 0; l < encoder.layerCount; l++) states.push(encoder.layer(l, states[l]!, context));
    return states;
  };
  const encoded = encoder.finishStreams(streams, run(streams.image.hidden, streams.image.context), run(streams.text.hidden, streams.text.context));
  await lap('encoder layers');
  try {
    if (task === 'entail') return { ...times, ...(await entailDecoderStages(model, backend, encoded, prompt)) };
    const decoder = new LayerTimedStepDecoder(model, encoded, 5);
    try {
      const start = performance.now();
      await beamSearch(decoder, { beamSize: 5, sourceLength: prompt.length });
      const decoding = performance.now() - start;
      return { ...times, 'decoder layers': decoder.layersMs, 'read-out, search': decoding - decoder.layersMs };
    } finally {
      decoder.dispose();
    }
  } finally {
    encoded.dispose();
  }
}

/** The prompt pass's layers, then the read-out at the last position. */
async function entailDecoderStages(
  model: OfaModel,
  backend: Backend,
  encoded: Parameters<OfaModel['decodeFull']>[0],
  prompt: readonly number[],
): Promise<Pick<Record<Stage, number>, 'decoder layers' | 'read-out, search'>> {
  const decoder = model.decoder;
  const ids = prompt.slice(0, -1);
  const memory = decoder.memory(encoded);
  const positions = decoder.decoderPositions(0, ids.length);
  const selfKeys = decoder.selfPositionKeys(positions);
  const pass = decoder.pass(positions, selfKeys, memory);
  positions.dispose();
  selfKeys.dispose();
  await backend.sync();
  let start = performance.now();
  let x = decoder.embed(ids, 1, ids.length);
  for (let l = 0; l < decoder.layerCount; l++) {
    const next = decoder.layer(l, x, pass, memory);
    x.dispose();
    x = next;
  }
  await backend.sync();
  const layers = performance.now() - start;
  start = performance.now();
  const { lastHiddenState, logits } = decoder.finishAt(x, [ids.length - 1]);
  const logProbs = backend.logSoftmax(logits.reshape([1, -1]));
  await logProbs.read();
  const readOut = performance.now() - start;
  for (const t of [x, lastHiddenState, logits, logProbs, pass.selfPositionBias, pass.crossPositionBias]) t.dispose();
  memory.dispose();
  return { 'decoder layers': layers, 'read-out, search': readOut };
}

async function measureStages(
  pipeline: OfaPipeline,
  model: string,
  backend: BackendName,
  tasks: readonly Task[],
  items: readonly Item[],
  rounds: number,
  device: string,
): Promise<StageRow[]> {
  const rows: StageRow[] = [];
  for (const task of tasks) {
    await stagesOf(pipeline, task, items[0]!);
    const samples = STAGES.map(() => [] as number[]);
    for (let round = 0; round < rounds; round++) {
      for (const item of items) {
        const times = await stagesOf(pipeline, task, item);
        STAGES.forEach((stage, i) => samples[i]!.push(times[stage]));
      }
    }
    const medians = samples.map(median);
    const total = medians.reduce((a, b) => a + b, 0);
    STAGES.forEach((stage, i) => {
      rows.push({ op: 'mue-stages', model, task, backend, stage, ms: medians[i]!, share: medians[i]! / total, image_size: pipeline.imageSize, device });
      console.log(`${backend.padEnd(6)}  ${task.padEnd(7)}  ${stage.padEnd(20)}  ${medians[i]!.toFixed(1).padStart(8)} ms  ${(100 * medians[i]! / total).toFixed(1).padStart(5)}%`);
    });
  }
  return rows;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      backends: { type: 'string', default: 'webgpu,cpu' },
      tasks: { type: 'string', default: 'entail,caption' },
      batches: { type: 'string', default: '1,4,16' },
      items: { type: 'string', default: '16' },
      rounds: { type: 'string', default: '3' },
      sites: { type: 'string', default: 'device,host' },
      exits: { type: 'string', default: '0.7751,0.8601,0.7404' },
      'image-size': { type: 'string', default: '256' },
      stages: { type: 'boolean', default: false },
      weights: { type: 'string', default: DEMO_MODEL },
    },
  });
  const backends = choices(values.backends, ['webgpu', 'cpu'] as const, '--backends');
  const tasks = choices(values.tasks, ['entail', 'caption'] as const, '--tasks');
  const batches = positiveIntegers(values.batches, '--batches');
  const sites = choices(values.sites, ['device', 'host'] as const, '--sites');
  const [image, text, decoder] = values.exits.split(',').map(Number);
  if ([image, text, decoder].some((t) => t === undefined || !Number.isFinite(t))) {
    throw new Error(`--exits: expected three thresholds image,text,decoder, got ${values.exits}`);
  }
  const thresholds = { image: image!, text: text!, decoder: decoder! };
  const itemCount = positiveInteger(values.items, '--items');
  const rounds = positiveInteger(values.rounds, '--rounds');
  const imageSize = positiveInteger(values['image-size'], '--image-size');
  const items = await readItems(itemCount);
  const label = `${image}/${text}/${decoder}`;

  const rows: Row[] = [];
  const stageRows: StageRow[] = [];
  for (const backend of backends) {
    const pipeline = await OfaPipeline.load(values.weights, { backend, imageSize, encoderMode: 'decomposed' });
    const device =
      'capabilities' in pipeline.backend
        ? (pipeline.backend as { capabilities: { adapterDescription: string } }).capabilities.adapterDescription
        : `node ${process.version} ${process.arch}`;
    try {
      if (values.stages) {
        stageRows.push(...(await measureStages(pipeline, basename(values.weights), backend, tasks, items, rounds, device)));
        continue;
      }
      for (const task of tasks) {
        for (const batch of batches) {
          const configs: Config[] = [
            { name: 'none', site: null, exits: false },
            ...sites.map((site) => ({ name: label, site, exits: { ...thresholds, site } })),
            ...(batch === 1 ? [{ name: 'floor', site: 'device' as const, exits: { image: 0, text: 0, decoder: 0 } }] : []),
          ];
          const times = configs.map(() => [] as number[]);
          const cpuTimes = configs.map(() => [] as number[]);
          const fractions = configs.map(() => 1);
          const chunks = Array.from({ length: Math.ceil(items.length / batch) }, (_, c) => items.slice(c * batch, (c + 1) * batch));
          for (let round = -1; round < rounds; round++) {
            const sums = configs.map(() => ({ ms: 0, cpuMs: 0, layers: 0 }));
            // Configurations take turns chunk by chunk, each chunk's calls seeing the same load,
            // and the first turn rotates: a call pays for what the call before it left (e.g. the
            // buffers a cheaper configuration released), so no configuration always goes first.
            for (const [c, chunk] of (round < 0 ? chunks.slice(0, 1) : chunks).entries()) {
              for (let turn = 0; turn < configs.length; turn++) {
                const i = (turn + c + Math.max(round, 0)) % configs.length;
                const { ms, cpuMs, reports } = await call(pipeline, task, chunk, configs[i]!);
                sums[i]!.ms += ms;
                sums[i]!.cpuMs += cpuMs;
                sums[i]!.layers += reports.reduce((sum, r) => sum + (r?.layersFraction ?? 1), 0);
              }
            }
            if (round < 0) continue;
            sums.forEach((sum, i) => {
              times[i]!.push(sum.ms);
              cpuTimes[i]!.push(sum.cpuMs);
              fractions[i] = sum.layers / items.length;
            });
          }
          const floorIndex = configs.findIndex((c) => c.name === 'floor');
          const pairedOf = (series: number[][], i: number): number => median(series[i]!.map((ms, round) => ms / series[0]![round]! - 1));
          const paired = (i: number): number => pairedOf(times, i);
          const ceiling = floorIndex < 0 ? undefined : -paired(floorIndex) / (1 - fractions[floorIndex]!);
          configs.forEach((config, i) => {
            const skipped = 1 - fractions[i]!;
            const ms = median(times[i]!);
            const relative = i === 0 ? null : paired(i);
            rows.push({
              op: 'mue-speed',
              model: basename(values.weights),
              task,
              backend,
              batch,
              exits: config.name,
              site: config.site,
              items: items.length,
              ms_per_item: ms / items.length,
              items_per_s: (1000 * items.length) / ms,
              layers_fraction: fractions[i]!,
              compute_skipped: skipped,
              paired_vs_none: relative,
              cpu_paired_vs_none: i === 0 ? null : pairedOf(cpuTimes, i),
              wall_saved: relative === null ? null : -relative,
              wall_per_compute: relative === null || skipped === 0 ? null : -relative / skipped,
              items_per_s_gain: relative === null ? null : 1 / (1 + relative) - 1,
              gain_target: relative === null || skipped === 1 ? null : (0.7 * skipped) / (1 - skipped),
              ...(config.name === 'floor' && ceiling !== undefined ? { ceiling } : {}),
              rounds,
              image_size: imageSize,
              device,
            });
          });
          printRows(rows.slice(-configs.length));
        }
      }
    } finally {
      pipeline.dispose();
    }
  }
  const [file, written] = values.stages ? [STAGE_RESULTS, stageRows] : [RESULTS, rows];
  // Rows of other models, backends and tasks stay: each can be measured apart.
  const key = (r: Row | StageRow): string => `${r.model} ${r.backend} ${r.task}`;
  const measured = new Set(written.map(key));
  const earlier = await readFile(file, 'utf8').then(
    (text) => (JSON.parse(text) as (Row | StageRow)[]).filter((r) => !measured.has(key(r))),
    () => [],
  );
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify([...earlier, ...written], null, 1)}\n`);
  await rename(temporary, file);
  console.log(`\nwrote ${written.length} rows to ${file} (${earlier.length} earlier rows of other models, backends or tasks kept)`);
}

function printRows(rows: readonly Row[]): void {
  const percent = (x: number | null | undefined): string => (x === null || x === undefined ? '' : `${(100 * x).toFixed(1)}%`);
  const ratio = (x: number | null | undefined): string => (x === null || x === undefined ? '' : x.toFixed(2));
  for (const r of rows) {
    console.log(
      [
        r.model,
        r.backend.padEnd(6),
        r.task.padEnd(7),
        `batch ${String(r.batch).padStart(2)}`,
        `${r.exits}${r.site ? ` (${r.site})` : ''}`.padEnd(26),
        `${r.ms_per_item.toFixed(1).padStart(8)} ms/item`,
        `${r.items_per_s.toFixed(2).padStart(6)} items/s`,
        `skipped ${percent(r.compute_skipped).padStart(6)}`,
        `wall ${percent(r.wall_saved).padStart(6)}`,
        `cpu ${percent(r.cpu_paired_vs_none === null ? null : -r.cpu_paired_vs_none).padStart(6)}`,
        `wall/compute ${ratio(r.wall_per_compute).padStart(5)}`,
        `gain ${percent(r.items_per_s_gain).padStart(6)} (target ${percent(r.gain_target)})`,
        r.ceiling === undefined ? '' : `ceiling ${ratio(r.ceiling)}`,
      ].join('  '),
    );
  }
}

await main();
