/**
 * What the `mue` subcommands share: where output goes, choosing a backend (WebGPU, else the CPU
 * with a notice), the weight-loading progress display, option parsers and the shipped defaults.
 */
import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { SingleBar } from 'cli-progress';
import { InvalidArgumentError, Option } from 'commander';
import type { Backend } from '../backend/backend.js';
import { DEFAULT_MAX_PIXELS, decodeImage, type RgbImage } from '../image/decode.js';
import { fileErrorReason } from '../io/byte-source.js';
import type { EncoderMode } from '../models/ofa/config.js';
import type { LoadProgress } from '../models/ofa/weights.js';
import { type BackendName, OfaPipeline, type Timing, createBackend } from '../pipeline.js';

/** The streams a command writes to (process.stdout / process.stderr, or test buffers). */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

/** A line on stdout. */
export function print(io: CliIo, text: string): void {
  io.stdout.write(`${text}\n`);
}

/** A notice on stderr, prefixed like errors. */
export function notice(io: CliIo, text: string): void {
  io.stderr.write(`mue: ${text}\n`);
}

/** src/cli and the compiled dist/cli are both two levels below the package root. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The golden model shipped with the package: OFA-tiny shapes, seeded random weights, the OFA
 * authors' reference outputs, its token table cut to 1000 ids — `mue verify`'s default.
 */
export const GOLDEN_MODEL = fileURLToPath(new URL('../../weights/ofa-tiny-random', import.meta.url));

/**
 * The demo model shipped with the package: the golden model with its token table grown to OFA's
 * 59,457 ids (scripts/make-demo-model.ts). Its captions and labels are meaningless but
 * well-formed; it is the default of `mue caption` and `mue entail` so that they run without a
 * download.
 */
export const DEMO_MODEL = fileURLToPath(new URL('../../weights/ofa-tiny-demo', import.meta.url));

export function backendOption(): Option {
  return new Option(
    '--backend <name>',
    'cpu or webgpu (default: webgpu, falling back to cpu with a notice when WebGPU has no adapter)',
  ).choices(['cpu', 'webgpu']);
}

export function weightsOption(): Option {
  return new Option(
    '--weights <path>',
    'a model directory (weights.safetensors + config.json or manifest.json) or a .safetensors file',
  ).default(DEMO_MODEL, 'the shipped demo model weights/ofa-tiny-demo: random weights, meaningless output');
}

export function imageSizeOption(): Option {
  return new Option(
    '--image-size <pixels>',
    "side of the square model input (default: from the model's config.json or manifest.json, " +
      'else 256 for tiny and medium, 480 for larger models)',
  ).argParser(positiveInteger);
}

/**
 * Fails with `<what> <path>: no such file or directory` (or the system's reason) before a
 * command starts a backend for a path that is not there.
 */
export async function requirePath(path: string, what: string): Promise<void> {
  await stat(path).catch((error: unknown) => {
    throw new Error(`${what} ${path}: ${fileErrorReason(error)}`);
  });
}

/** The options of the commands that read an image. */
export interface ImageFlags {
  maxPixels: number;
}

export function maxPixelsOption(): Option {
  return new Option('--max-pixels <n>', 'refuse images with more pixels than this (decompression bombs)')
    .argParser(positiveInteger)
    .default(DEFAULT_MAX_PIXELS);
}

/** An image file's bytes, or `image <path>: <reason>`. */
export async function readImageFile(path: string): Promise<Uint8Array> {
  await requirePath(path, 'image');
  return readFile(path).catch((error: unknown) => {
    throw new Error(`image ${path}: ${fileErrorReason(error)}`);
  });
}

/**
 * Reads and decodes the image before any model is loaded, so that a file that is not an image
 * fails in milliseconds rather than after the weights (seconds).
 */
export async function decodeImageFile(path: string, flags: ImageFlags): Promise<RgbImage> {
  return decodeImage(await readImageFile(path), path, { maxPixels: flags.maxPixels });
}

/** The backend named by `--backend`; without one, WebGPU or — when it cannot start — the CPU. */
export async function openBackend(io: CliIo, requested: BackendName | undefined): Promise<Backend> {
  if (requested !== undefined) return createBackend(requested);
  try {
    return await createBackend('webgpu');
  } catch (error) {
    // The first sentence: the reason without the set-up advice that may follow it.
    const reason = (error instanceof Error ? error.message : String(error)).split(/\n|(?<=\.) /)[0];
    notice(io, `WebGPU is unavailable (${reason}); running on the CPU backend (--backend webgpu shows the full error)`);
    return createBackend('cpu');
  }
}

function megabytes(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

/**
 * A progress bar on stderr, drawn only when stderr is a terminal: `update(value, total)` starts
 * it on the first call, `stop` clears it (and may be called any number of times).
 */
export function terminalProgress(io: CliIo, format: string): {
  update: (value: number, total: number) => void;
  stop: () => void;
} {
  let bar: SingleBar | undefined;
  return {
    update: (value, total) => {
      if (!io.stderr.isTTY) return;
      if (bar === undefined) {
        bar = new SingleBar({ stream: io.stderr, format, hideCursor: true, clearOnComplete: true });
        bar.start(total, 0);
      }
      bar.update(value);
    },
    stop: () => {
      bar?.stop();
      bar = undefined;
    },
  };
}

/**
 * Reports weight loading on stderr: a progress bar when stderr is a terminal, otherwise one line
 * once loading is done. Call `done` after a successful load, `stop` in any case.
 */
export function loadProgress(io: CliIo, what: string): {
  onProgress: (progress: LoadProgress) => void;
  done: (backend: Backend) => void;
  stop: () => void;
} {
  const started = performance.now();
  const bar = terminalProgress(io, `loading ${what} [{bar}] {percentage}% | {value}/{total} MB`);
  let totalBytes = 0;
  return {
    onProgress: ({ loadedBytes, totalBytes: total }) => {
      totalBytes = total;
      bar.update(Number(megabytes(loadedBytes)), Number(megabytes(total)));
    },
    done: (backend) => {
      bar.stop();
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      notice(io, `loaded ${what} (${megabytes(totalBytes)} MB) on ${backend.name} in ${seconds} s`);
    },
    stop: bar.stop,
  };
}

/** The options of the commands that run a model. */
export interface ModelFlags {
  weights: string;
  backend?: BackendName;
  imageSize?: number;
  json?: boolean;
}

/**
 * Loads `--weights` onto the chosen backend, showing progress; `close` frees both. `encoderMode`
 * overrides the checkpoint's encoder layout.
 */
export async function openPipeline(
  io: CliIo,
  flags: ModelFlags,
  encoderMode?: EncoderMode,
): Promise<{ pipeline: OfaPipeline; close: () => void }> {
  await requirePath(flags.weights, 'weights');
  const backend = await openBackend(io, flags.backend);
  const progress = loadProgress(io, flags.weights);
  try {
    const pipeline = await OfaPipeline.load(flags.weights, {
      backend,
      imageSize: flags.imageSize,
      onProgress: progress.onProgress,
      encoderMode,
    });
    progress.done(backend);
    return {
      pipeline,
      close: () => {
        pipeline.dispose();
        backend.destroy();
      },
    };
  } catch (error) {
    progress.stop();
    backend.destroy();
    throw error;
  }
}

export function positiveInteger(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError('expected a positive integer');
  }
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

/** Milliseconds as `12.3 ms` or `4.56 s`. */
export function duration(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

/** One stderr line: where a request's time went. */
export function timingLine(timing: Timing, backend: string, imageSize: number): string {
  return (
    `${backend}, ${imageSize}×${imageSize}: encoder ${duration(timing.encoderMs)}, decoder ` +
    `${duration(timing.decoderMsPerToken)}/token × ${timing.decoderTokens}, total ${duration(timing.totalMs)}`
  );
}
