/**
 * `mue eval` through `runCli`: a sweep on each backend over a few items of the shipped split at a
 * 64-pixel input (the demo model in MuE's decomposed layout), with its tables, JSON, per-item
 * records and plot; a caption sweep; and flags that contradict each other or bad paths, refused
 * before any model work.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ItemRecord, SettingResult } from '../../src/eval/evaluate.js';
import { mue } from '../helpers/cli.js';

/** A cheap sweep: 2 items, no exit + the authors' setting + a one-point grid, 64 pixels. */
const SMALL_SWEEP = ['--sweep', '--grid', '0.8', '--limit', '2', '--image-size', '64', '--encoder', 'decomposed'];

describe('mue eval', () => {
  let scratch: string;

  beforeAll(async () => {
    process.env.XDG_RUNTIME_DIR ??= '/tmp';
    scratch = await mkdtemp(join(tmpdir(), 'mue-eval-'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('sweeps entailment on the CPU: JSON results, per-item records and the plot', async () => {
    const out = join(scratch, 'items.jsonl');
    const plot = join(scratch, 'sweep.svg');
    const run = await mue('eval', ...SMALL_SWEEP, '--backend', 'cpu', '--json', '--out', out, '--plot', plot);
    expect(run.stderr).toMatch(/evaluating entailment on .*shapes-eval: 2 items × 3 settings on cpu, batch 1/);
    // stderr is not a terminal: progress comes as lines, at every tenth of the runs.
    expect(run.stderr).toMatch(/evaluated 3\/6 runs \(50%\)\n/);
    expect(run.status).toBe(0);
    const json = JSON.parse(run.stdout) as { backend: string; results: Omit<SettingResult, 'records'>[] };
    expect(json.backend).toBe('cpu');
    expect(json.results.map((r) => r.setting.name)).toEqual(['no exit', 'authors 0.7/0.99/0.7', '0.8/0.8/0.8']);
    const [plain, authors] = json.results;
    expect(plain).toMatchObject({ items: 2, retained: 1, layersFraction: 1, computeSkipped: 0, wallSaved: 0 });
    expect(plain!.meanLayers).toEqual({ image: 4, text: 4, decoder: 4 });
    // The authors' SNLI-VE text threshold (0.99) is beyond the demo model's similarities; its image
    // and decoder thresholds (0.7) stop those streams after layer 2.
    expect(authors!.meanLayers).toEqual({ image: 2, text: 4, decoder: 2 });
    expect(authors!.computeSkipped).toBeGreaterThan(0.3);
    for (const r of json.results) {
      expect(r.score).toBeGreaterThanOrEqual(0);
      expect(r.msPerItem).toBeGreaterThan(0);
      expect(r.itemsPerSecond).toBeCloseTo(1000 / r.msPerItem, 9);
      expect(Object.keys(r.byKind!)).toEqual(['exist']);
    }

    const records = (await readFile(out, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as ItemRecord & { setting: string });
    expect(records).toHaveLength(6);
    expect(records[0]).toEqual({
      setting: 'no exit',
      image: '0000.png',
      hypothesis: 'there is a blue square',
      label: 'entailment',
      pred: expect.stringMatching(/^(entailment|contradiction|neutral)$/),
      layers: { image: 4, text: 4, decoder: 4 },
    });
    const exiting = records.find((r) => r.setting === 'authors 0.7/0.99/0.7')!;
    expect(exiting.layers).toEqual({ image: 2, text: 4, decoder: 2 });
    expect(exiting.sims!.image).toHaveLength(2);
    expect(exiting.sims!.text).toHaveLength(4);
    expect(exiting.sims!.decoder).toHaveLength(2);
    expect(exiting.sims!.image[1]).toBeGreaterThan(0.7);

    const svg = await readFile(plot, 'utf8');
    expect(svg).toMatch(/^<svg/);
    expect(svg).toContain('layer compute skipped (expected time reduction)');
  });

  it('sweeps entailment on WebGPU: the tables and the Pareto front', async () => {
    const run = await mue('eval', ...SMALL_SWEEP, '--backend', 'webgpu');
    expect(run.stderr).toMatch(/2 items × 3 settings on webgpu/);
    expect(run.status).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines[0]).toMatch(/^setting \(image\/text\/decoder\)\s+accuracy\s+retained\s+layers image \/ text \/ decoder\s+compute skipped/);
    expect(lines[2]).toMatch(/^no exit\s+\d+\.\d%\s+100\.0%\s+4\.00 \/ 4\.00 \/ 4\.00\s+0\.0%/);
    expect(lines[3]).toMatch(/^authors 0\.7\/0\.99\/0\.7\s+\d+\.\d%\s+(\d+\.\d%|—)\s+2\.00 \/ 4\.00 \/ 2\.00\s+\d\d\.\d%/);
    expect(run.stdout).toMatch(/Pareto front \(score against compute skipped\):\n.*\n-+.*\nno exit /);
    expect(run.stdout).toMatch(/accuracy per kind:\nsetting\s+exist \(2\)\n/);
  });

  it('sweeps captions: CIDEr-D, BLEU-4 and exact match, two images per call', async () => {
    const run = await mue('eval', ...SMALL_SWEEP, '--task', 'caption', '--beam', '2', '--batch', '2', '--backend', 'webgpu', '--json');
    expect(run.stderr).toMatch(/evaluating captions on .*: 2 images × 3 settings on webgpu, batch 2/);
    expect(run.status).toBe(0);
    const { results } = JSON.parse(run.stdout) as { results: Omit<SettingResult, 'records'>[] };
    expect(results[1]!.setting.name).toBe('authors 0.99/0.7/0.9');
    for (const r of results) {
      expect(r.task).toBe('caption');
      expect(r.score).toBeGreaterThanOrEqual(0);
      expect(r.bleu4).toBeGreaterThanOrEqual(0);
      expect(r.exactMatch).toBe(0); // random weights
      expect(r.meanLayers.decoder).toBeGreaterThan(0);
      expect(r.meanLayers.decoder).toBeLessThanOrEqual(4);
    }
    expect(results[0]!.computeSkipped).toBe(0);
  });

  it('refuses contradicting flags and bad paths before loading a model', async () => {
    const cases: [string[], RegExp][] = [
      [['--sweep', '--exit-image', '0.8'], /--sweep runs its own settings: drop --exit-image/],
      [['--reference', 'x.json', '--task', 'caption'], /--reference compares entailment runs/],
      [['--reference', 'x.json', '--sweep'], /--reference runs the reference's own settings/],
      [['--plot', 'sweep.png'], /--plot sweep\.png: the plot is an SVG file/],
      [[join(scratch, 'nowhere')], /evaluation data .*nowhere: no such file or directory/],
      [['--reference', join(scratch, 'none.json')], /reference .*none\.json: /],
      [['--grid', '0.8,x'], /option '--grid <list>' argument '0\.8,x' is invalid/],
    ];
    for (const [args, message] of cases) {
      const run = await mue('eval', '--backend', 'cpu', ...args);
      expect(run.status, args.join(' ')).toBe(1);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toMatch(/loaded/);
    }
  });
});
