/**
 * The package as users get it: what `npm pack` puts in the tarball (package.json `files`), and a
 * TypeScript project that imports it with `skipLibCheck: false` and only the package's production
 * dependencies installed — no Node types, as in a web app. The declarations are emitted here from
 * the sources; the tarball's list reads the built `dist/` (CI builds it in scripts/setup.sh).
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { KERNEL_FILES } from '../src/backend/webgpu/kernels.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);
const temporary: string[] = [];

afterAll(async () => {
  await Promise.all(temporary.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('the npm package', () => {
  it('carries the library, its browser bundle, the kernels, the tokenizer and the demo model — not the test data', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, maxBuffer: 64 << 20 });
    const [pack] = JSON.parse(stdout) as { files: { path: string }[]; size: number; unpackedSize: number }[];
    const files = new Set(pack!.files.map((f) => f.path));
    for (const needed of [
      'dist/index.js',
      'dist/index.d.ts',
      'dist/mue.browser.js',
      'dist/cli/main.js',
      'weights/ofa-bpe/encoder.json',
      'weights/ofa-bpe/vocab.bpe',
      'weights/ofa-bpe/dict.txt',
      'weights/ofa-tiny-demo/weights.safetensors',
      'weights/ofa-tiny-demo/config.json',
      'data/shapes-eval/items.jsonl',
      ...KERNEL_FILES.map((name) => `kernels/${name}.wgsl`),
    ]) {
      expect(files, needed).toContain(needed);
    }
    const stray = [...files].filter((path) => /^(test|src|bench|scripts|web)\/|^weights\/ofa-tiny-random\/|^dist\/demo\.js/.test(path));
    expect(stray).toEqual([]);
    // The demo model (67 MB) is most of it, deliberately; the golden verification set (39 MB) stays out.
    expect(pack!.unpackedSize).toBeLessThan(85e6);
  });

  it('compiles in a TypeScript project with skipLibCheck false and no Node types', async () => {
    const work = await mkdtemp(join(tmpdir(), 'mue-consumer-'));
    temporary.push(work);
    const packageDir = join(work, 'node_modules', 'mue-engine');
    await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--emitDeclarationOnly', '--outDir', join(packageDir, 'dist')], { cwd: ROOT });
    // Small declarations: the inlined WebAssembly (src/image/wasm/, ~230 kB of base64 each) is
    // declared `string`, not as its literal type.
    const declarations = (await readdir(join(packageDir, 'dist'), { recursive: true })).filter((path) => path.endsWith('.d.ts'));
    const sizes = await Promise.all(declarations.map(async (path) => [path, (await stat(join(packageDir, 'dist', path))).size] as const));
    expect(sizes.filter(([, size]) => size > 64e3)).toEqual([]);
    await symlink(join(ROOT, 'package.json'), join(packageDir, 'package.json'));
    // Only what `npm install mue-engine` would bring: the production dependency tree.
    const { stdout } = await run('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, maxBuffer: 16 << 20 });
    for (const dir of stdout.split('\n').filter((line) => line.includes('node_modules'))) {
      const name = relative(join(ROOT, 'node_modules'), dir);
      if (name.includes('node_modules')) continue; // nested copies resolve inside their parent
      const link = join(work, 'node_modules', name);
      await mkdir(join(link, '..'), { recursive: true });
      await symlink(dir, link);
    }
    await writeFile(join(work, 'package.json'), JSON.stringify({ type: 'module' }));
    await writeFile(
      join(work, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2023', 'DOM'], types: [], strict: true, skipLibCheck: false, noEmit: true },
        files: ['app.ts'],
      }),
    );
    await writeFile(
      join(work, 'app.ts'),
      [
        "import { OfaPipeline, createWebGpuBackend, type CaptionResult } from 'mue-engine';",
        'const backend = await createWebGpuBackend({ adapter: { featureLevel: "compatibility" } });',
        'const ofa = await OfaPipeline.load(new URL("https://example.com/models/ofa-tiny-demo/"), { backend });',
        'const result: CaptionResult = await ofa.caption(new URL("https://example.com/photo.png"), { exits: { image: 0.9 } });',
        'const device: GPUDevice = backend.device;',
        'console.log(result.text, result.exitReport?.computeSaved, device.label);',
      ].join('\n'),
    );
    const tsc = run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', work], { cwd: work });
    await expect(tsc.catch((error: { stdout?: string }) => Promise.reject(new Error(`${basename(work)}: ${error.stdout}`)))).resolves.toBeDefined();
  });
});
