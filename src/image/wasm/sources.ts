/** Where each inlined WebAssembly decoder comes from (`scripts/inline-wasm.ts` writes them). */
export const INLINED_WASM = [
  {
    module: 'libjpeg-turbo.wasm',
    exportName: 'LIBJPEG_TURBO_WASM',
    packageFile: '@cwasm/jpeg-turbo/jpeg-turbo.wasm',
    description: 'libjpeg-turbo 2.0 with its TurboJPEG API, built for WASI',
  },
  {
    module: 'libwebp.wasm',
    exportName: 'LIBWEBP_WASM',
    packageFile: '@jsquash/webp/codec/dec/webp_dec.wasm',
    description: "libwebp's decoder, built with Emscripten for @jsquash/webp's glue code",
  },
] as const;
