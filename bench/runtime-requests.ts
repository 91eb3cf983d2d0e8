/**
 * The requests bench/deno.ts times in each runtime (run by Node through tsx, and by Deno): the
 * default model loaded once, one untimed round to compile the kernels, then `--runs` rounds of a
 * 5-beam caption without exits, the same with MuE exits, and an entailment. Prints one JSON line:
 * `{ runtime, adapter, rows: [{ request, totalMs, msPerToken }] }` (one row per request and round).
 * `--without-subgroups` runs the kernels an adapter without subgroups gets (Deno's), on this one.
 */
import { WebGpuBackend, createWebGpuBackend } from '../src/backend/webgpu/index.js';
import { loadKernelSources } from '../src/backend/webgpu/kernels.js';
import { OfaPipeline } from '../src/pipeline.js';

const IMAGE = 'data/shapes-eval/0003.png';
const HYPOTHESIS = 'there is a red circle';
/** Thresholds at which the random-weight demo model skips about a quarter of its layers. */
const EXITS = { image: 0.85, text: 0.85, decoder: 0.86 };

const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ?? process.argv.slice(2);
const runsAt = args.indexOf('--runs');
const runs = runsAt < 0 ? 3 : Number(args[runsAt + 1]);

const withoutSubgroups = args.includes('--without-subgroups');
const gpu = await createWebGpuBackend();
const backend = withoutSubgroups ? new WebGpuBackend({ device: gpu.device, capabilities: { ...gpu.capabilities, subgroups: false, subgroupShuffle: false } }, await loadKernelSources()) : gpu;
const ofa = await OfaPipeline.load(undefined, { backend });
const requests: [string, () => Promise<{ timing: { totalMs: number; decoderMsPerToken: number } }>][] = [
  ['caption, beam 5', () => ofa.caption(IMAGE, { beamSize: 5 })],
  ['caption, beam 5, exits', () => ofa.caption(IMAGE, { beamSize: 5, exits: EXITS })],
  ['entail, exits', () => ofa.entail(IMAGE, HYPOTHESIS, { exits: EXITS })],
];
for (const [, request] of requests) await request();
const rows = [];
for (let round = 0; round < runs; round++) {
  for (const [name, request] of requests) {
    const { timing } = await request();
    rows.push({ request: name, totalMs: timing.totalMs, msPerToken: timing.decoderMsPerToken });
  }
}
const runtime = (globalThis as { Deno?: unknown }).Deno ? 'deno' : withoutSubgroups ? 'node-without-subgroups' : 'node';
console.log(JSON.stringify({ runtime, adapter: gpu.capabilities.adapterDescription, rows }));
ofa.dispose();
gpu.destroy();
