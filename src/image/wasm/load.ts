/**
 * Loading the inlined WebAssembly decoders (libjpeg-turbo, libwebp: C libraries built for WASI,
 * see scripts/*-wasm/). The bytes are part of the JavaScript (base64), so decoding needs no file
 * system or network in Node, Deno or a browser bundle.
 */

/** Compiles an inlined module once per process. */
export function lazyWasmModule(base64: string): () => Promise<WebAssembly.Module> {
  let compiled: Promise<WebAssembly.Module> | undefined;
  return () => (compiled ??= WebAssembly.compile(base64ToBytes(base64)));
}

function base64ToBytes(base64: string): Uint8Array<ArrayBuffer> {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export interface WasiExports {
  memory: WebAssembly.Memory;
  malloc(size: number): number;
}

/** Thrown through the WebAssembly stack by `proc_exit` (the C library's abort). */
export class WasiExit extends Error {}

/**
 * A fresh instance of a decoder module, for one image: a C library leaves its memory behind when
 * it fails, and a WebAssembly memory never shrinks, so each image starts from a small memory that
 * is garbage once the pixels are copied out. The C library's start-up and stdio find a WASI with
 * no environment whose writes go nowhere; `env` holds the module's own imports.
 */
export async function instantiateWasi<T extends WasiExports>(
  module: WebAssembly.Module,
  env: (memory: () => WebAssembly.Memory) => Record<string, (...args: number[]) => unknown> = () => ({}),
): Promise<T> {
  let memory: WebAssembly.Memory | undefined;
  const memoryOf = (): WebAssembly.Memory => memory!;
  const nothing = (): number => 0;
  const wasi = {
    fd_write: (_fd: number, iovs: number, count: number, written: number): number => {
      const view = new DataView(memoryOf().buffer);
      let total = 0;
      for (let i = 0; i < count; i++) total += view.getUint32(iovs + 8 * i + 4, true);
      view.setUint32(written, total, true);
      return 0;
    },
    fd_close: nothing,
    fd_seek: nothing,
    environ_get: nothing,
    environ_sizes_get: (count: number, size: number): number => {
      new DataView(memoryOf().buffer).setUint32(count, 0, true);
      new DataView(memoryOf().buffer).setUint32(size, 0, true);
      return 0;
    },
    proc_exit: (code: number): never => {
      throw new WasiExit(`exit ${code}`);
    },
  };
  const instance = await WebAssembly.instantiate(module, { env: env(memoryOf), wasi_snapshot_preview1: wasi });
  const exports = instance.exports as unknown as T;
  memory = exports.memory;
  return exports;
}
