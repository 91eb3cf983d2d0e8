/**
 * Compiles an inlined WebAssembly decoder once per process. The bytes are part of the JavaScript
 * (base64), so decoding needs no file system or network in Node, Deno or a browser bundle.
 */
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
