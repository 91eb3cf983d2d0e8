/**
 * End-to-end model benchmark: the golden tiny-shaped model (weights/ofa-tiny-random, its golden
 * 256×256 input and 12-token prompt) on the CPU and WebGPU backends.
 *
 *   npx tsx bench/model.ts [--runs 5] [--warmup 1] [--backends cpu,webgpu]
 *
 * Rows (median milliseconds of `runs` timed runs after `warmup` untimed ones):
 * - `encoder`: ResNet stages 1–3 and the transformer encoder, until the output is computed
 *   (WebGPU: until the queue is idle);
 * - `decoder-token`: one incremental decoder step through the key/value cache for 1 sequence,
 *   log-softmax on the device and the read-back of `[1, V]` — what beam search pays per token;
 * - `decoder-token-beam5`: the same for 5 beams (`[5, V]`), including the cache reordering.
 * Decoder runs are beam searches (src/generate/beam-search.ts) with min length = max length = 16,
 * so that every run takes exactly 17 steps; ms per token = run time / 17.
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
import { OfaModel } from '../src/models/ofa/model.js';
import { OfaStepDecoder } from '../src/models/ofa/step-decoder.js';
import type { BackendName } from '../src/pipeline.js';
import type { Tensor } from '../src/tensor.js';

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

interface SkippedRow {
  op: 'all';
  model: string;
  backend: BackendName;
  skipped: string;
}

interface Settings {
  runs: number;
  warmup: number;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
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
}

async function readGolden(): Promise<Golden> {
  const file = await SafetensorsFile.open(join(MODEL_DIR, 'outputs.safetensors'));
  try {
    const pixels = await file.readFloat32('inputs.patch_images');
    const imageSize = file.info('inputs.patch_images').shape[3]!;
    const inputIds = Array.from(await file.readFloat32('inputs.input_ids'));
    return { pixels, imageSize, inputIds };
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
async function writeResults(rows: readonly ResultRow[]): Promise<void> {
  const temporary = RESULTS.replace(/\.json$/, `.${process.pid}.tmp.json`);
  await writeFile(temporary, `${JSON.stringify(rows, null, 1)}\n`);
  await rename(temporary, RESULTS);
}

function positiveInteger(value: string, flag: string, allowZero = false): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) {
    throw new Error(`${flag} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${value}`);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      backends: { type: 'string', default: 'cpu,webgpu' },
    },
  });
  const settings: Settings = {
    runs: positiveInteger(values.runs, '--runs'),
    warmup: positiveInteger(values.warmup, '--warmup', true),
  };
  const backends = values.backends.split(',').map((name) => {
    if (name !== 'cpu' && name !== 'webgpu') throw new Error(`--backends: unknown backend '${name}' (cpu, webgpu)`);
    return name;
  });
  const golden = await readGolden();
  const rows: (ResultRow | SkippedRow)[] = [];
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
      rows.push(...(await benchBackend(subject, golden, settings)));
    } finally {
      subject.backend.destroy();
    }
  }
  printTable(rows);
  const measured = rows.filter((r): r is ResultRow => !('skipped' in r));
  await writeResults(measured);
  console.log(`\nwrote ${measured.length} rows to ${RESULTS}`);
}

await main();
