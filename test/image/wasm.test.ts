/** The inlined WebAssembly decoders are the installed packages' own bytes (scripts/inline-wasm.ts). */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { INLINED_WASM } from '../../src/image/wasm/sources.js';

const require = createRequire(import.meta.url);

describe('inlined WebAssembly', () => {
  it.each(INLINED_WASM)('$module holds $packageFile (else run npx tsx scripts/inline-wasm.ts)', async ({ module, exportName, packageFile }) => {
    const inlined = (await import(`../../src/image/wasm/${module}.ts`)) as Record<string, string>;
    const installed = await readFile(require.resolve(packageFile));
    expect(Buffer.from(inlined[exportName]!, 'base64').equals(installed)).toBe(true);
  });
});
