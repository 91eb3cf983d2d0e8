/**
 * Decoding needs no Node API: Deno decodes every golden file to Pillow's bytes from the sources,
 * and from a browser bundle of them (esbuild, platform "browser": no Node built-ins, the
 * WebAssembly inlined), which is what a web page loads.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const deno = join(root, 'node_modules/.bin/deno');
const run = promisify(execFile);

async function decodeUnderDeno(module: string, ...flags: string[]): Promise<Record<string, number>> {
  const { stdout } = await run(deno, ['run', ...flags, '--allow-read', 'test/image/deno-decode.ts', module], {
    cwd: root,
    env: { ...process.env, NO_COLOR: '1' },
    timeout: 120_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, number>;
}

describe('image decoding outside Node', () => {
  const scratch = mkdtemp(join(tmpdir(), 'mue-bundle-'));
  afterAll(async () => rm(await scratch, { recursive: true, force: true }));

  it('Deno decodes the golden files byte for byte from the sources', async () => {
    const differing = await decodeUnderDeno('../../src/image/decode.js', '--unstable-sloppy-imports');
    expect(Object.keys(differing)).toHaveLength(13);
    expect(Object.values(differing).every((count) => count === 0), JSON.stringify(differing)).toBe(true);
  });

  it('a browser bundle needs no Node built-ins and decodes them byte for byte', async () => {
    const bundle = join(await scratch, 'decode.js');
    await build({ entryPoints: [join(root, 'src/image/decode.ts')], bundle: true, platform: 'browser', format: 'esm', outfile: bundle, logLevel: 'silent' });
    const differing = await decodeUnderDeno(bundle, '--no-npm');
    expect(Object.values(differing).every((count) => count === 0), JSON.stringify(differing)).toBe(true);
  });
});
