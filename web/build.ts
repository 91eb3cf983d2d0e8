/**
 * The browser build (esbuild): the library as one ES module, `dist/mue.browser.js`, and the demo
 * page's script, `dist/demo.js`, which imports the library bundle as any page embedding it would.
 *
 * - The WGSL kernels are inlined as text (`src/backend/webgpu/bundled-kernels.ts` is replaced by
 *   a module holding every file of `kernels/`), so a page needs no kernel URLs.
 * - Node's modules (`node:*`, imported on demand only on the disk paths) and Dawn's binding (npm
 *   `webgpu`, only when there is no `navigator.gpu`) stay external: the browser path never loads them.
 * - The library bundle sits one level below the package root like `src/` and `dist/`, so the
 *   default model and tokenizer URLs (`src/assets.ts`) resolve beside it on a server that serves
 *   the package.
 */
import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { type BuildResult, type Plugin, build } from 'esbuild';

const ROOT = new URL('../', import.meta.url);
const path = (relative: string): string => fileURLToPath(new URL(relative, ROOT));

export const LIBRARY_BUNDLE = path('dist/mue.browser.js');
export const DEMO_BUNDLE = path('dist/demo.js');

/** Replaces `bundled-kernels.ts` with one that inlines every `.wgsl` file of `kernels/`. */
const inlineKernels: Plugin = {
  name: 'inline-wgsl-kernels',
  setup(esbuild) {
    esbuild.onLoad({ filter: /[\\/]src[\\/]backend[\\/]webgpu[\\/]bundled-kernels\.ts$/ }, async () => {
      const dir = path('kernels/');
      const files = (await readdir(dir)).filter((name) => name.endsWith('.wgsl')).sort();
      const sources: Record<string, string> = {};
      for (const file of files) sources[file.slice(0, -'.wgsl'.length)] = await readFile(`${dir}${file}`, 'utf8');
      return {
        contents: `export const BUNDLED_KERNEL_SOURCES = ${JSON.stringify(sources)};\n`,
        loader: 'js',
        watchFiles: files.map((file) => `${dir}${file}`),
      };
    });
  },
};

/** The demo imports the library's sources for their types; at run time it loads the bundle. */
const libraryAsBundle: Plugin = {
  name: 'library-as-bundle',
  setup(esbuild) {
    esbuild.onResolve({ filter: /^\.\.\/src\/index\.js$/ }, () => ({ path: './mue.browser.js', external: true }));
  },
};

const common = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: 'linked',
  logLevel: 'warning',
} as const;

/** Builds both bundles; returns esbuild's results (warnings included). */
export async function buildWeb(): Promise<BuildResult[]> {
  return Promise.all([
    // No source map for the library: it would ship the inlined WebAssembly twice (as sources).
    build({ ...common, sourcemap: false, entryPoints: [path('src/index.ts')], outfile: LIBRARY_BUNDLE, external: ['node:*', 'webgpu'], plugins: [inlineKernels] }),
    build({ ...common, entryPoints: [path('web/demo.ts')], outfile: DEMO_BUNDLE, plugins: [libraryAsBundle] }),
  ]);
}

/** One self-contained ES module (kernels inlined) for a page's script tag, e.g. a test's page script. */
export async function bundleForPage(entry: string): Promise<string> {
  const result = await build({ ...common, sourcemap: false, entryPoints: [entry], write: false, external: ['node:*', 'webgpu'], plugins: [inlineKernels] });
  return result.outputFiles[0]!.text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildWeb();
  console.log(`built ${LIBRARY_BUNDLE} and ${DEMO_BUNDLE}`);
}
