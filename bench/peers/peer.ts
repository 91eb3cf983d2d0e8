/**
 * What every engine in the kernel benchmark implements, and the one timing method they share.
 *
 * Method: the inputs of a case are uploaded once, outside the timing. One *loop* records `batch`
 * copies of the kernel back-to-back on those device-resident inputs (one submission where the
 * engine allows it) and reads one result back, which waits for all of them. A loop's wall time
 * divided by `batch` is the device time of one kernel with the read-back and the submission cost
 * amortised. `batch` is chosen from a probe so a loop lasts about `loopMs`; the reported figure is
 * the median over the measured loops, after a warm-up loop that compiles pipelines and fills
 * allocator caches.
 */
import { median } from '../stats.js';

export type Engine = 'ours-webgpu' | 'ours-cpu' | 'ort-webgpu' | 'tfjs-webgpu';

/** NCHW convolution `[batch, cin, height, width]` ⊛ `[cout, cin, kernel, kernel]`. */
export interface Conv2dCase {
  batch: number;
  cin: number;
  height: number;
  width: number;
  cout: number;
  kernel: number;
  stride: number;
  pad: number;
}

export interface TimingSettings {
  /** Most loops measured after warm-up. */
  reps: number;
  /** Fewer loops (at least 3) when `reps` loops would take longer than this. */
  budgetMs: number;
  /** A loop holds enough kernels to last about this long, amortising the read-back… */
  loopMs: number;
  /** …but no more than this many (each holds its own output). */
  maxBatch: number;
}

export type Timing =
  | { ms: number; batch: number; loops: number }
  | { skipped: string };

/** One timing loop of a case, on inputs that are already on the device. */
export interface TimedLoop {
  /** Records the kernels, reads one result back and frees the outputs. */
  run(): Promise<void>;
  /** Frees the inputs. */
  dispose(): Promise<void>;
}

/** Uploads a case's inputs and returns a loop that runs `batch` kernels on them. */
export type LoopFactory = (batch: number) => Promise<TimedLoop>;

export interface KernelPeer {
  readonly engine: Engine;
  /** `[m, k] · [k, n]`. */
  matmul(m: number, k: number, n: number): Promise<Timing>;
  /** Over the last dim of `[rows, cols]`, with affine weight and bias. */
  layerNorm(rows: number, cols: number): Promise<Timing>;
  /** Multi-head self-attention on `q, k, v [batch, tokens, heads·headDim]`, scale 1/√headDim. */
  attention(batch: number, heads: number, tokens: number, headDim: number): Promise<Timing>;
  conv2d(c: Conv2dCase): Promise<Timing>;
  /** Releases the engine's device. */
  dispose(): Promise<void>;
}

/** Deterministic values in [−1, 1] (no zeros or repeats a kernel could shortcut). */
export function benchData(size: number, seed = 1): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = Math.sin(seed * 12.9898 + i * 0.7853981);
  return out;
}

async function timeLoop(loop: TimedLoop): Promise<number> {
  const start = performance.now();
  await loop.run();
  return performance.now() - start;
}

/** Times a case as described at the top of this file; returns milliseconds per kernel. */
export async function measure(prepare: LoopFactory, settings: TimingSettings): Promise<Timing> {
  // Probe with one kernel per loop: the first run warms up, the second estimates a kernel's time.
  const probe = await prepare(1);
  let single: number;
  try {
    await probe.run();
    single = await timeLoop(probe);
  } catch (e) {
    await probe.dispose();
    throw e;
  }
  const batch = Math.max(1, Math.min(settings.maxBatch, Math.round(settings.loopMs / single)));
  const times: number[] = [];
  let loop = probe;
  if (batch === 1) {
    times.push(single);
  } else {
    await probe.dispose();
    loop = await prepare(batch);
  }
  try {
    if (batch > 1) await loop.run(); // warm-up at the batch size: new outputs, maybe a new session
    const loops = Math.max(3, Math.min(settings.reps, Math.floor(settings.budgetMs / (single * batch))));
    while (times.length < loops) times.push(await timeLoop(loop));
    return { ms: median(times) / batch, batch, loops: times.length };
  } finally {
    await loop.dispose();
  }
}
