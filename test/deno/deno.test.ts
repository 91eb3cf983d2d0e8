/**
 * The engine under Deno's own WebGPU (wgpu, not Dawn; on lavapipe it offers no subgroups, so the
 * uniform-read register GEMM and the workgroup-memory reductions run). Deno comes from the npm
 * package `deno`, and runs with `--allow-read` only: the library reads the model, the tokenizer
 * and the kernel files, nothing else (`--unstable-sloppy-imports` maps the sources' `.js`
 * specifiers to their `.ts` files; the built package needs no flag).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { OfaPipeline } from '../../src/pipeline.js';
import { SMOKE_TOLERANCE, type SmokeResult } from '../helpers/kernel-smoke.js';
import { DENO_REQUESTS, type RequestSummary, summarize } from './requests.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const deno = fileURLToPath(new URL('../../node_modules/.bin/deno', import.meta.url));
const run = promisify(execFile);

/** Runs a script under Deno with read access only; returns its last line of output, parsed. */
async function denoJson<T>(script: string): Promise<T> {
  const { stdout } = await run(deno, ['run', '--unstable-sloppy-imports', '--allow-read', script], {
    cwd: root,
    env: { ...process.env, NO_COLOR: '1' },
    timeout: 300_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as T;
}

describe('Deno', () => {
  it('runs every kernel family on Deno’s WebGPU and matches the CPU backend', async () => {
    const report = await denoJson<{ adapter: string; results: SmokeResult[] }>('test/deno/webgpu-smoke.ts');
    expect(report.results.length).toBeGreaterThanOrEqual(13);
    for (const { op, maxAbsDiff } of report.results) expect(maxAbsDiff, op).toBeLessThan(SMOKE_TOLERANCE);
  });

  describe('the library API with MuE exits, against the same calls in Node', () => {
    let inDeno: RequestSummary;
    let inNode: RequestSummary;

    beforeAll(async () => {
      inDeno = await denoJson<RequestSummary>('test/deno/pipeline.ts');
      const ofa = await OfaPipeline.load();
      try {
        const { image, hypothesis, exits, beamSize } = DENO_REQUESTS;
        inNode = summarize(ofa, await ofa.caption(image, { beamSize, exits }), await ofa.entail(image, hypothesis, { exits }));
      } finally {
        ofa.dispose();
      }
    }, 600_000);

    it('captions with the same tokens and the same exits', () => {
      expect(inDeno.backend).toBe('webgpu');
      expect(inDeno.caption.tokens).toEqual(inNode.caption.tokens);
      expect(inDeno.caption.layersRun).toEqual(inNode.caption.layersRun);
      // The thresholds stop streams early: the exits really ran.
      expect(inDeno.caption.computeSaved).toBeGreaterThan(0.05);
    });

    it('entails with the same answer, probabilities and exits', () => {
      expect(inDeno.entailment.label).toBe(inNode.entailment.label);
      for (const [label, p] of Object.entries(inNode.entailment.probabilities)) {
        // Both f32 on lavapipe, different shader compilers (naga, Tint): equal to float noise.
        expect(inDeno.entailment.probabilities[label], label).toBeCloseTo(p, 4);
      }
      expect(inDeno.entailment.layersRun).toEqual(inNode.entailment.layersRun);
    });
  });
});
