/**
 * Files shipped with the package, located from this module: `src/assets.ts`, the compiled
 * `dist/assets.js` and the browser bundle `dist/mue.browser.js` are all one level below the
 * package root, so the same relative URL finds them on disk (Node, Deno) and on a server that
 * serves the package (a web page: fetched).
 */
export const PACKAGE_ROOT = new URL('../', import.meta.url);

/** The embedded demo model (OFA-tiny architecture, random weights): the default of `OfaPipeline.load()`. */
export const DEFAULT_MODEL = new URL('weights/ofa-tiny-demo/', PACKAGE_ROOT);

/** OFA's BPE vocabulary (`encoder.json`, `vocab.bpe`, `dict.txt`). */
export const TOKENIZER_FILES = new URL('weights/ofa-bpe/', PACKAGE_ROOT);

/** The WGSL kernel files (the browser bundle carries them inlined instead). */
export const KERNEL_FILES_DIR = new URL('kernels/', PACKAGE_ROOT);
