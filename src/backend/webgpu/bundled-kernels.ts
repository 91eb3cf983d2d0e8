/**
 * The WGSL sources inlined by a bundler (file name without `.wgsl` → source), or `undefined` where
 * `loadKernelSources` reads the files of `kernels/`. The browser bundle (`web/build.ts`) replaces
 * this module with one that inlines every kernel file as text, so a page needs no kernel URLs.
 */
export const BUNDLED_KERNEL_SOURCES: Readonly<Record<string, string>> | undefined = undefined;
