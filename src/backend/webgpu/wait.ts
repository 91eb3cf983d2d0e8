/**
 * Waiting for the GPU without stealing a CPU core from it.
 *
 * Dawn's Node binding (npm `webgpu`) settles its promises (`onSubmittedWorkDone`, `mapAsync`, …)
 * from a polling loop: while any is pending, it calls `wgpuInstanceProcessEvents` and schedules
 * itself again with `setImmediate`, which it looks up on `globalThis` on every round. That loop
 * never sleeps, so the JS thread burns a whole core for as long as the GPU works. On a software
 * adapter (Mesa lavapipe) that core is half of the "GPU". Measured on 2 cores, one submission of
 * a 1024³ matmul (~2.8 s of lavapipe CPU work): awaiting `onSubmittedWorkDone`, `mapAsync`, or a
 * flag set by either and polled with `setTimeout`, cost the JS thread 1.3–1.6 s of CPU per wait
 * and took 2.2–5 s; waiting as below cost 0.03–0.08 s and took 1.4–2.8 s (the machine was shared,
 * hence the spread; the best cases are 2.2 s against 1.4 s).
 *
 * The fix: start the Dawn call with `globalThis.setImmediate` swapped for a timer of
 * `POLL_INTERVAL_MS`, and re-apply the swap around each of Dawn's polling rounds, so every round
 * reschedules itself through the timer and the thread sleeps in between. The swap is only in
 * effect during synchronous Dawn calls, so no other code observes it. The cost is at most one
 * interval of extra latency per wait. Hosts whose WebGPU does not poll through `setImmediate`
 * (Deno's built-in WebGPU, browsers) are unaffected.
 */

/** Time the JS thread sleeps between Dawn's polls (Node's timer granularity is 1 ms). */
const POLL_INTERVAL_MS = 1;

/**
 * How long a wait first polls back to back (through the real `setImmediate`): short waits — a
 * decoder step's read-back, MuE's per-layer decisions on the host — end within it instead of at
 * the next timer tick (a read after a small dispatch: 1.5 ms round trip with the timer alone).
 */
const BUSY_POLL_MS = 0.3;

const realSetImmediate = globalThis.setImmediate;
/** Until then (`performance.now()`), Dawn's polling rounds run back to back. */
let busyPollingUntil = 0;

/** Stand-in for `setImmediate` that Dawn sees while polling: the next round runs after a sleep. */
function sleepyImmediate(callback: () => void): unknown {
  if (performance.now() < busyPollingUntil) return realSetImmediate(() => withSleepyPolling(callback));
  return setTimeout(() => withSleepyPolling(callback), POLL_INTERVAL_MS);
}

/** Starts a wait: its first `BUSY_POLL_MS` poll back to back. */
function startWait(): void {
  busyPollingUntil = performance.now() + BUSY_POLL_MS;
}

/** Runs `fn` (a synchronous Dawn call) with Dawn's polling loop routed through `sleepyImmediate`. */
function withSleepyPolling<T>(fn: () => T): T {
  const original = globalThis.setImmediate;
  if (typeof original !== 'function') return fn(); // browsers: nothing to route
  globalThis.setImmediate = sleepyImmediate as unknown as typeof setImmediate;
  try {
    return fn();
  } finally {
    globalThis.setImmediate = original;
  }
}

/** Resolves when all work submitted to `device`'s queue so far has finished. */
export function waitForQueue(device: GPUDevice): Promise<void> {
  startWait();
  return withSleepyPolling(() => device.queue.onSubmittedWorkDone());
}

/** `buffer.mapAsync(GPUMapMode.READ, offset, size)` without the busy wait. */
export function mapForRead(buffer: GPUBuffer, offset?: number, size?: number): Promise<void> {
  startWait();
  return withSleepyPolling(() => buffer.mapAsync(GPUMapMode.READ, offset, size));
}
