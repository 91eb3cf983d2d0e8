/**
 * Peer: onnxruntime-node running the golden model's encoder as exported from the OFA authors'
 * Hugging Face port (`ofa-tiny-random-encoder.onnx.gz`, see README.md here), on its CPU execution
 * provider and on its WebGPU one (the linux-x64 binary bundles Dawn, which finds the same Vulkan
 * adapter as ours: lavapipe here).
 *
 * A run is host to host, as for our engine in bench/model.ts: ids and pixels from JavaScript
 * arrays, `last_hidden_state` back as a Float32Array. Sessions keep onnxruntime's defaults (graph
 * optimisations on, its own thread pool), as a user comparing runtimes would run it.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import * as ort from 'onnxruntime-node';

export const ORT_ENCODER_FILE = new URL('ofa-tiny-random-encoder.onnx.gz', import.meta.url);

export type OrtProvider = 'cpu' | 'webgpu';

/** One onnxruntime session of the encoder: `run(ids, pixels, size)` → `[1, N, d]` flattened. */
export interface OrtEncoder {
  readonly provider: OrtProvider;
  run(inputIds: readonly number[], pixels: Float32Array, imageSize: number): Promise<Float32Array>;
  release(): Promise<void>;
}

let modelBytes: Promise<Uint8Array> | undefined;

/** The ONNX model, decompressed once per process (≈ 1 s). */
function model(): Promise<Uint8Array> {
  modelBytes ??= readFile(ORT_ENCODER_FILE).then((gz) => promisify(gunzip)(gz));
  return modelBytes;
}

/** Whether this onnxruntime-node build has the provider (WebGPU: linux-x64, win32 and darwin builds ≥ 1.2x). */
export function hasProvider(provider: OrtProvider): boolean {
  return ort.listSupportedBackends().some((b) => b.name === provider);
}

export async function createOrtEncoder(provider: OrtProvider): Promise<OrtEncoder> {
  if (!hasProvider(provider)) {
    throw new Error(`onnxruntime-node ${ort.env.versions.node ?? ''} has no ${provider} execution provider on ${process.platform}-${process.arch}`);
  }
  const session = await ort.InferenceSession.create(await model(), { executionProviders: [provider], logSeverityLevel: 3 });
  return {
    provider,
    async run(inputIds, pixels, imageSize) {
      const feeds = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(inputIds, (id) => BigInt(id)), [1, inputIds.length]),
        patch_images: new ort.Tensor('float32', pixels, [1, 3, imageSize, imageSize]),
      };
      const { last_hidden_state: output } = await session.run(feeds);
      if (!output || !(output.data instanceof Float32Array)) throw new Error(`onnxruntime (${provider}): no float32 last_hidden_state`);
      return output.data;
    },
    release: () => session.release(),
  };
}

/** A node of onnxruntime's profile: its name in the exported graph (e.g. `/encoder/embed_images/layer1/…/Conv`), op type and time. */
export interface OrtNodeTiming {
  name: string;
  op: string;
  ms: number;
}

/**
 * onnxruntime CPU's own profile of the encoder (`enableProfiling`): `runs` runs after a warm-up,
 * each node keeping its shortest time, in graph order.
 */
export async function profileOrtEncoder(inputIds: readonly number[], pixels: Float32Array, imageSize: number, runs: number): Promise<OrtNodeTiming[]> {
  const directory = await mkdtemp(join(tmpdir(), 'ort-profile-'));
  try {
    const session = await ort.InferenceSession.create(await model(), { logSeverityLevel: 3, enableProfiling: true, profileFilePrefix: join(directory, 'encoder') });
    const feeds = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(inputIds, (id) => BigInt(id)), [1, inputIds.length]),
      patch_images: new ort.Tensor('float32', pixels, [1, 3, imageSize, imageSize]),
    };
    for (let run = 0; run <= runs; run++) await session.run(feeds);
    session.endProfiling();
    await session.release();
    const [file] = await readdir(directory);
    if (!file) throw new Error('onnxruntime wrote no profile');
    interface Event {
      cat: string;
      name: string;
      ts: number;
      dur: number;
      args?: { op_name?: string };
    }
    const events = JSON.parse(await readFile(join(directory, file), 'utf8')) as Event[];
    const modelRuns = events.filter((e) => e.name === 'model_run').sort((a, b) => a.ts - b.ts);
    const timed = modelRuns[1]?.ts ?? 0; // skip the warm-up run
    const best = new Map<string, OrtNodeTiming>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < timed) continue;
      const name = e.name.slice(0, -'_kernel_time'.length);
      const ms = e.dur / 1000;
      const known = best.get(name);
      if (!known || ms < known.ms) best.set(name, { name, op: e.args?.op_name ?? '', ms });
    }
    return [...best.values()];
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}
