/**
 * The encoder against onnxruntime in one process (`ofa-encoder` rows of bench/model.ts): the
 * golden model's encoder on our WebGPU backend and, from the ONNX export of the same weights
 * (bench/peers/README.md), on onnxruntime-node's CPU and WebGPU execution providers.
 *
 * Every engine runs host to host: ids and pixels from JavaScript arrays, the `[1, N, 256]` output
 * back as a Float32Array. The engines take turns, one run each per round after a warm-up round,
 * so that drift on a shared machine hits them alike; `vs ort-cpu` is the median over rounds of
 * an engine's time over onnxruntime CPU's in the same round. Each run also records the process's
 * CPU time (every thread: lavapipe's workers run in our process, onnxruntime's pool in its):
 * core-seconds of work, which other jobs on a shared machine disturb far less than wall time.
 * onnxruntime's WebGPU EP is ~50×
 * slower on lavapipe, so it runs only in the first `ortWebGpuRuns` rounds. Before timing, each
 * engine's output is checked against onnxruntime CPU's (max |Δ| ≤ 1e-3) and, at the golden size,
 * against the golden output; a disagreement stops the benchmark.
 *
 * Image sizes: 256 reads the golden image; others (480, OFA's size for VQA and grounding) a
 * deterministic pattern in [−1, 1], the same for every engine.
 */
import type { Backend } from '../src/backend/backend.js';
import type { OfaModel } from '../src/models/ofa/model.js';
import { printAligned } from './aligned.js';
import { benchData } from './peers/peer.js';
import { type OrtEncoder, type OrtProvider, createOrtEncoder, hasProvider } from './peers/ort-encoder.js';
import { median } from './stats.js';

export type EncoderEngine = 'ours-webgpu' | 'ort-cpu' | 'ort-webgpu';

export interface EncoderPeerRow {
  op: 'ofa-encoder';
  engine: EncoderEngine;
  /** Image side in pixels (the input is S×S). */
  image: number;
  /** Median milliseconds of one host-to-host forward. */
  ms: number;
  minMs: number;
  /** Median process CPU time of one forward, all threads (ms). */
  cpuMs: number;
  runs: number;
  /** Median over rounds of this engine's time over onnxruntime CPU's in the same round. */
  paired_vs_ort_cpu: number | null;
  /** Largest |output − onnxruntime CPU's output|. */
  max_abs_diff_vs_ort_cpu: number;
  tokens: number;
  device: string;
}

export interface EncoderPeerSettings {
  sizes: readonly number[];
  /** Timed rounds after the warm-up round. */
  rounds: number;
  /** Rounds in which onnxruntime's WebGPU EP runs too (0: not at all). */
  ortWebGpuRuns: number;
}

/** The largest output difference engines may show and still count as the same model. */
const AGREEMENT = 1e-3;

interface Engine {
  name: EncoderEngine;
  device: string;
  run(pixels: Float32Array, size: number): Promise<Float32Array>;
  release(): Promise<void>;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`bench: outputs of ${a.length} and ${b.length} values cannot be compared`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return Number.isNaN(max) || a.some(Number.isNaN) ? NaN : max;
}

function oursEngine(model: OfaModel, inputIds: readonly number[], device: string): Engine {
  const backend: Backend = model.backend;
  return {
    name: 'ours-webgpu',
    device,
    async run(pixels, size) {
      const image = backend.upload(pixels, [1, 3, size, size]);
      const encoded = model.encode(image, inputIds);
      try {
        return (await encoded.lastHiddenState.read()) as Float32Array;
      } finally {
        encoded.dispose();
        image.dispose();
      }
    },
    release: async () => {},
  };
}

function ortEngine(encoder: OrtEncoder, inputIds: readonly number[], device: string): Engine {
  return {
    name: `ort-${encoder.provider}`,
    device,
    run: (pixels, size) => encoder.run(inputIds, pixels, size),
    release: () => encoder.release(),
  };
}

/**
 * Times the encoder on every engine at each size (see the module comment). `golden` is the 256
 * image and its reference output.
 */
export async function benchEncoderPeers(
  model: OfaModel,
  inputIds: readonly number[],
  golden: { pixels: Float32Array; imageSize: number; lastHiddenState: Float32Array },
  device: string,
  settings: EncoderPeerSettings,
): Promise<EncoderPeerRow[]> {
  const providers: OrtProvider[] = ['cpu', ...(settings.ortWebGpuRuns > 0 && hasProvider('webgpu') ? ['webgpu' as const] : [])];
  const engines: Engine[] = [oursEngine(model, inputIds, device)];
  try {
    for (const provider of providers) {
      engines.push(ortEngine(await createOrtEncoder(provider), inputIds, provider === 'cpu' ? `onnxruntime-node CPU (${process.arch})` : 'onnxruntime-node WebGPU EP (its own Dawn)'));
    }
    const rows: EncoderPeerRow[] = [];
    for (const size of settings.sizes) {
      const pixels = size === golden.imageSize ? golden.pixels : benchData(3 * size * size, 3);
      rows.push(...(await benchSize(engines, pixels, size, size === golden.imageSize ? golden.lastHiddenState : undefined, settings)));
    }
    return rows;
  } finally {
    for (const engine of engines) await engine.release();
  }
}

async function benchSize(
  engines: readonly Engine[],
  pixels: Float32Array,
  size: number,
  goldenOutput: Float32Array | undefined,
  settings: EncoderPeerSettings,
): Promise<EncoderPeerRow[]> {
  // Warm-up round: compiles pipelines and sessions' kernels, and gives the outputs to compare.
  const outputs = new Map<EncoderEngine, Float32Array>();
  for (const engine of engines) outputs.set(engine.name, await engine.run(pixels, size));
  const reference = outputs.get('ort-cpu')!;
  const differences = new Map<EncoderEngine, number>();
  for (const [name, output] of outputs) {
    const diff = maxAbsDiff(output, reference);
    const golden = goldenOutput ? maxAbsDiff(output, goldenOutput) : 0;
    if (!(diff <= AGREEMENT) || !(golden <= AGREEMENT)) {
      const against = goldenOutput ? `, ${golden} from the golden output` : '';
      throw new Error(`bench: at ${size}×${size} ${name}'s encoder output is ${diff} from onnxruntime CPU's${against} (allowed ${AGREEMENT}): not the same model`);
    }
    differences.set(name, diff);
  }
  const times = new Map<EncoderEngine, number[]>(engines.map((e) => [e.name, []]));
  const cpuTimes = new Map<EncoderEngine, number[]>(engines.map((e) => [e.name, []]));
  for (let round = 0; round < settings.rounds; round++) {
    for (const engine of engines) {
      if (engine.name === 'ort-webgpu' && round >= settings.ortWebGpuRuns) continue;
      const cpuStart = process.cpuUsage();
      const start = performance.now();
      await engine.run(pixels, size);
      times.get(engine.name)!.push(performance.now() - start);
      const cpu = process.cpuUsage(cpuStart);
      cpuTimes.get(engine.name)!.push((cpu.user + cpu.system) / 1000);
    }
  }
  const ortCpuTimes = times.get('ort-cpu')!;
  const tokens = reference.length / 256;
  return engines.map((engine) => {
    const own = times.get(engine.name)!;
    return {
      op: 'ofa-encoder',
      engine: engine.name,
      image: size,
      ms: median(own),
      minMs: Math.min(...own),
      cpuMs: median(cpuTimes.get(engine.name)!),
      runs: own.length,
      paired_vs_ort_cpu: engine.name === 'ort-cpu' ? null : median(own.map((ms, round) => ms / ortCpuTimes[round]!)),
      max_abs_diff_vs_ort_cpu: differences.get(engine.name)!,
      tokens,
      device: engine.device,
    };
  });
}

/** The comparison table: per size, each engine's median and min, and its paired ratio to onnxruntime CPU. */
export function printEncoderPeerTable(rows: readonly EncoderPeerRow[]): void {
  const header = ['image', 'engine', 'median ms', 'min ms', 'CPU ms', 'runs', '× ort-cpu (paired)', 'max |Δ| vs ort-cpu', 'device'];
  const cells = rows.map((r) => [
    `${r.image}×${r.image}`,
    r.engine,
    r.ms.toFixed(1),
    r.minMs.toFixed(1),
    r.cpuMs.toFixed(0),
    String(r.runs),
    r.paired_vs_ort_cpu === null ? '' : `${r.paired_vs_ort_cpu.toFixed(2)}×`,
    r.max_abs_diff_vs_ort_cpu.toExponential(1),
    r.device,
  ]);
  printAligned(header, cells, new Set([2, 3, 4, 5, 6, 7]));
}
