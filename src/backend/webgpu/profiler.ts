/**
 * Profile mode: the device time of every dispatch, labelled by kernel and by the caller's scopes.
 *
 * While a `DispatchProfiler` is attached to a backend (`WebGpuBackend.profile`), each dispatch is
 * encoded in a compute pass of its own whose beginning and end write timestamps (the
 * `timestamp-query` feature, which Dawn exposes on lavapipe too), so the breakdown comes from the
 * device's clock and the work stays in the same submissions as without profiling. A pass per
 * dispatch costs a little more on the device: profile mode only.
 *
 * Without `timestamp-query` the profiler flushes after every dispatch and waits for the queue in
 * `settle`, timing each submission on the host instead (an upper bound: it includes a submission
 * and a poll of the queue per dispatch).
 */
import type { ParamValue } from './context.js';
import { mapForRead, waitForQueue } from './wait.js';

/** One dispatch as a profile row. */
export interface DispatchTiming {
  /** The caller's scope labels at recording time, outermost first, joined by ' / ' ('' outside any). */
  scope: string;
  /** `file.entryPoint`; GEMMs are named by their operand file (`conv2d.gemm_registers`). */
  kernel: string;
  /** M×N×K for GEMMs, else the workgroup grid. */
  shape: string;
  ms: number;
}

/** What the profiler needs to know of a recorded dispatch. */
export interface DispatchLabel {
  scope: string;
  kernel: string;
  shape: string;
}

/** WebGPU caps a query set at 4096 queries: two per dispatch. */
const DISPATCHES_PER_QUERY_SET = 2048;

/** The timestamps of one submission's dispatches: where each pass writes, and how to read them. */
export interface SubmissionTimestamps {
  /** The beginning and end timestamp writes of dispatch `i`'s own pass. */
  writes(i: number): GPUComputePassTimestampWrites;
  /** Encodes the resolution of the queries into a readable buffer (before `finish`). */
  resolve(encoder: GPUCommandEncoder): void;
  /** Called after the submission: reads the timestamps back once the device is done. */
  submitted(): void;
}

export class DispatchProfiler {
  /** One list per submission, in submission order, filled when its timestamps are read. */
  readonly #timings: DispatchTiming[][] = [];
  readonly #pending: Promise<void>[] = [];
  readonly #scopes: string[] = [];
  /** Host-timed mode: when the last dispatch submitted alone finished. */
  #lastDone: Promise<number> = Promise.resolve(0);

  constructor(
    private readonly device: GPUDevice,
    /** False on adapters without `timestamp-query`: dispatches are then flushed and timed one by one. */
    readonly timestamps: boolean,
  ) {}

  /** Runs `fn` with the dispatches it records labelled `label` (nested inside enclosing scopes). */
  scope<T>(label: string, fn: () => T): T {
    this.#scopes.push(label);
    try {
      return fn();
    } finally {
      this.#scopes.pop();
    }
  }

  /** The label of a dispatch being recorded now. */
  label(file: string, entryPoint: string, params: readonly ParamValue[], workgroups: readonly (number | undefined)[]): DispatchLabel {
    const gemm = entryPoint.startsWith('gemm_');
    const value = (p: ParamValue | undefined): number => (p === undefined ? 0 : 'u32' in p ? p.u32 : 'i32' in p ? p.i32 : p.f32);
    const shape = gemm ? `${value(params[0])}×${value(params[1])}×${value(params[2])}` : workgroups.map((n) => n ?? 1).join('×');
    return { scope: this.#scopes.join(' / '), kernel: `${file}.${entryPoint}`, shape };
  }

  /** Timestamp writes for the `labels.length` dispatches of one submission (timestamp mode). */
  submission(labels: readonly DispatchLabel[]): SubmissionTimestamps {
    const { device } = this;
    const sets = Array.from({ length: Math.ceil(labels.length / DISPATCHES_PER_QUERY_SET) }, (_, s) =>
      device.createQuerySet({ type: 'timestamp', count: 2 * Math.min(DISPATCHES_PER_QUERY_SET, labels.length - s * DISPATCHES_PER_QUERY_SET) }),
    );
    const bytes = 2 * labels.length * 8;
    const resolved = device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const timings: DispatchTiming[] = [];
    this.#timings.push(timings);
    return {
      writes: (i) => {
        const within = i % DISPATCHES_PER_QUERY_SET;
        return { querySet: sets[Math.floor(i / DISPATCHES_PER_QUERY_SET)]!, beginningOfPassWriteIndex: 2 * within, endOfPassWriteIndex: 2 * within + 1 };
      },
      resolve: (encoder) => {
        sets.forEach((set, s) => encoder.resolveQuerySet(set, 0, set.count, resolved, s * DISPATCHES_PER_QUERY_SET * 16));
        encoder.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
      },
      submitted: () => {
        const read = mapForRead(staging).then(() => {
          const ticks = new BigUint64Array(staging.getMappedRange().slice(0));
          labels.forEach((label, i) => timings.push({ ...label, ms: Number(ticks[2 * i + 1]! - ticks[2 * i]!) / 1e6 }));
          staging.unmap();
        });
        this.#pending.push(
          read.finally(() => {
            for (const t of [staging, resolved, ...sets]) t.destroy();
          }),
        );
      },
    };
  }

  /**
   * Host-timed mode: the dispatch `label` was just submitted alone. Submissions finish in order, so
   * its time runs from when it was submitted or the previous one finished, whichever is later, to
   * when the queue reports it done (to the resolution of Dawn's polling, about 1 ms).
   */
  submittedAlone(label: DispatchLabel): void {
    const submitted = performance.now();
    const timings: DispatchTiming[] = [];
    this.#timings.push(timings);
    const previous = this.#lastDone;
    const done = waitForQueue(this.device).then(() => performance.now());
    this.#lastDone = done;
    this.#pending.push(
      Promise.all([previous, done]).then(([previousEnd, end]) => void timings.push({ ...label, ms: end - Math.max(previousEnd, submitted) })),
    );
  }

  /** Waits for every profiled submission and returns the timings so far, in recording order. */
  async settle(): Promise<DispatchTiming[]> {
    while (this.#pending.length > 0) await Promise.all(this.#pending.splice(0));
    return this.#timings.flat();
  }
}
