/**
 * The WebGPU backend under Deno's built-in WebGPU (a different WebGPU implementation from Dawn's
 * Node binding; on lavapipe it offers no subgroups, so the workgroup-memory reductions run).
 * Deno comes from the npm package `deno`.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

describe('Deno', () => {
  it('runs every kernel family on Deno’s WebGPU and matches the CPU backend', async () => {
    const deno = fileURLToPath(new URL('../../node_modules/.bin/deno', import.meta.url));
    const { stdout } = await run(deno, ['run', '--unstable-sloppy-imports', '--allow-read', '--allow-env', 'test/deno/webgpu-smoke.ts'], {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1' },
      timeout: 180_000,
    });
    const report = JSON.parse(stdout.trim().split('\n').pop()!) as { adapter: string; results: { op: string; maxAbsDiff: number }[] };
    expect(report.results.map((r) => r.op)).toHaveLength(10);
    // f32 on both sides; values are O(1) (matmul sums 64 products).
    for (const { op, maxAbsDiff } of report.results) expect(maxAbsDiff, op).toBeLessThan(1e-4);
  });
});
