/**
 * The MuE flags of `mue caption` / `mue entail` in process (`runCli`), on the CPU backend with the
 * shipped demo model at a 32-pixel input: thresholds above 1 change nothing, low ones print a
 * summary with compute saved, `--trace` prints every layer's similarity, device and host agree,
 * and contradictory or malformed flags are refused.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { mue } from '../helpers/cli.js';

const DEMO_MODEL = fileURLToPath(new URL('../../weights/ofa-tiny-demo', import.meta.url));
const IMAGE = fileURLToPath(new URL('../fixtures/preprocess/photo-97x61.png', import.meta.url));
const MODEL = ['--weights', DEMO_MODEL, '--backend', 'cpu', '--image-size', '32'];
const CAPTION = ['caption', IMAGE, ...MODEL, '--beam', '2'];
const ENTAIL = ['entail', IMAGE, 'two dogs play in the snow', ...MODEL];
const LOW = ['--exit-image', '0.5', '--exit-text', '0.5', '--exit-decoder', '0.5'];

interface CaptionJson {
  text: string;
  tokens: number[];
  score: number;
  exitReport?: { computeSaved: number; layersFraction: number; wallMs: number; encoder: { layersRun: number[] }[]; decoder: { layersRun: number[] }[] };
}

describe('mue caption / entail exit flags', () => {
  it('documents the flags', async () => {
    for (const command of ['caption', 'entail']) {
      const help = await mue(command, '--help');
      expect(help.status).toBe(0);
      for (const flag of ['--exit-image <T>', '--exit-text <T>', '--exit-decoder <T>', '--no-exit', '--exit-site <site>', '--exit-scope <scope>', '--cache-fill <fill>', '--trace']) {
        expect(help.stdout).toContain(flag);
      }
    }
  });

  it('gives the plain caption with thresholds above 1, and the exit report in --json', async () => {
    const plain = await mue(...CAPTION, '--json');
    expect(plain.status).toBe(0);
    const checked = await mue(...CAPTION, '--exit-image', '2', '--exit-text', '1.5', '--exit-decoder', '2', '--json');
    expect(checked.status).toBe(0);
    const [a, b] = [JSON.parse(plain.stdout) as CaptionJson, JSON.parse(checked.stdout) as CaptionJson];
    expect(a.exitReport).toBeUndefined();
    expect(b.tokens).toEqual(a.tokens);
    expect(b.text).toBe(a.text);
    expect(b.score).toBe(a.score);
    expect(b.exitReport!.computeSaved).toBe(0);
    expect(b.exitReport!.layersFraction).toBe(1);
    expect(b.exitReport!.wallMs).toBeGreaterThan(0);
    // --no-exit is the plain path.
    const off = await mue(...CAPTION, '--no-exit', '--json');
    expect((JSON.parse(off.stdout) as CaptionJson).tokens).toEqual(a.tokens);
    expect((JSON.parse(off.stdout) as CaptionJson).exitReport).toBeUndefined();
  });

  it('prints the summary line and the per-layer trace, the same on the device and the host', async () => {
    const device = await mue(...CAPTION, ...LOW, '--trace');
    expect(device.status).toBe(0);
    expect(device.stderr).toMatch(
      /^mue: exits: image 1\/4, text 1\/4 layers \(joint encoder: 1\/4 layers run\); decoder \d\.\d\d\/4 layers per token \(17 steps × 2 beams\); \d+\.\d% of layer compute saved; wall \d/m,
    );
    expect(device.stderr).toMatch(/^exit trace: cos\(layer output, layer input\) after each layer; thresholds image 0\.500, text 0\.500, decoder 0\.500/m);
    expect(device.stderr).toMatch(/^image {7,}L1 0\.\d{3} ✓ exit \(1\/4 layers\)$/m);
    expect(device.stderr).toMatch(/^text {8,}L1 0\.\d{3} ✓ exit \(1\/4 layers\)$/m);
    // No exit in the first third of the 16 steps; later tokens stop after layer 1.
    expect(device.stderr).toMatch(/^token 0 \(threshold 1\.000\)\n {2}beam 1 +L1 0\.\d{3} {2}L2 0\.\d{3} {2}L3 0\.\d{3} {2}L4 0\.\d{3} {2}\(4\/4 layers\)$/m);
    expect(device.stderr).toMatch(/^token 16 \(threshold 0\.\d{3}\)\n {2}beam 1 +L1 0\.\d{3} ✓ exit \(1\/4 layers\)$/m);
    const saved = Number(/(\d+\.\d)% of layer compute saved/.exec(device.stderr)![1]);
    expect(saved).toBeGreaterThan(0);

    const host = await mue(...CAPTION, ...LOW, '--exit-site', 'host');
    expect(host.status).toBe(0);
    expect(host.stdout).toBe(device.stdout);
    expect(host.stderr).toContain(`${saved.toFixed(1)}% of layer compute saved`);
    expect(host.stderr).not.toContain('exit trace');
  });

  it('entail: the prompt pass in the summary, the trace and the JSON report', async () => {
    const run = await mue(...ENTAIL, '--exit-decoder', '0.5', '--trace');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^(entailment|contradiction|neutral) \(no 0\.\d{3}, yes 0\.\d{3}, maybe 0\.\d{3}\)\n$/);
    expect(run.stderr).toMatch(/^mue: exits: image 4\/4, text 4\/4 layers .*; decoder 1\/4 layers over the \d+-token prompt; \d+\.\d% of layer compute saved/m);
    expect(run.stderr).toMatch(/^decoder \(prompt, \d+ tokens\) {2}L1 0\.\d{3} ✓ exit \(1\/4 layers\) {3}\[threshold 0\.500\]$/m);
    const json = await mue(...ENTAIL, '--exit-decoder', '0.5', '--exit-scope', 'batch', '--json');
    const result = JSON.parse(json.stdout) as { exitReport: { decoder: { stream: string; layersRun: number[] }[]; settings: { scope: string } } };
    expect(result.exitReport.decoder).toMatchObject([{ stream: 'prompt', layersRun: [1] }]);
    expect(result.exitReport.settings.scope).toBe('batch');
  });

  it('--trace alone runs the checks without exits', async () => {
    const run = await mue(...ENTAIL, '--trace', '--cache-fill', 'project');
    expect(run.status).toBe(0);
    expect(run.stderr).toContain('thresholds image 2 (never exits), text 2 (never exits), decoder 2 (never exits)');
    expect(run.stderr).toMatch(/^image +L1 \S+ {2}L2 \S+ {2}L3 \S+ {2}L4 \S+ {2}\(4\/4 layers\)$/m);
    expect(run.stderr).toContain('0.0% of layer compute saved');
  });

  it('refuses malformed and contradictory flags', async () => {
    const cases: [string[], RegExp][] = [
      [['--exit-image', 'high'], /mue: option '--exit-image <T>' argument 'high' is invalid\. expected a number/],
      [['--exit-decoder', ''], /argument '' is invalid/],
      [['--exit-site', 'gpu'], /argument 'gpu' is invalid\. Allowed choices are device, host/],
      [['--exit-scope', 'beam'], /Allowed choices are per-sample, batch/],
      [['--cache-fill', 'zero'], /Allowed choices are copy, project/],
      [['--no-exit', '--exit-image', '0.9', '--trace'], /^mue: --no-exit cannot be combined with --exit-image, --trace\n$/],
      [['--exit-site', 'host'], /^mue: --exit-site applies to exits: give a threshold \(--exit-image, --exit-text, --exit-decoder\) or --trace\n$/],
    ];
    for (const [flags, message] of cases) {
      const run = await mue(...ENTAIL, ...flags);
      expect(run.status, flags.join(' ')).toBe(1);
      expect(run.stderr, flags.join(' ')).toMatch(message);
      expect(run.stderr).not.toContain('loaded'); // refused before the model loads
    }
  });
});
