/**
 * The WebAssembly decoders inlined from npm packages (`scripts/inline-wasm.ts` writes them);
 * libjpeg-turbo's is built from source instead (scripts/libjpeg-turbo-wasm/build.sh).
 */
export const INLINED_WASM = [
  {
    module: 'libwebp.wasm',
    exportName: 'LIBWEBP_WASM',
    packageFile: '@jsquash/webp/codec/dec/webp_dec.wasm',
    description: "libwebp's decoder, built with Emscripten for @jsquash/webp's glue code",
  },
] as const;
