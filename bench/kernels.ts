/**
 * Kernel benchmark: our WebGPU kernels against onnxruntime-node's WebGPU EP, TF.js WebGPU and our
 * CPU backend, in one process on the same adapter. Prints a table and writes JSON rows under
 * `bench/results/` (see `table.ts`); the timing method is described in `peers/peer.ts`.
 *
 *   npx tsx bench/kernels.ts [--quick] [--engines ours-webgpu,ort-webgpu,tfjs-webgpu,ours-cpu]
 *
 * `--quick` runs a subset in about a minute. The CPU backend only runs the small cases.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { create, globals } from 'webgpu';
import { createBackendPeer } from './peers/ours.js';
import type { Conv2dCase, Engine, KernelPeer, Timing, TimingSettings } from './peers/peer.js';
import { printTable, writeResults, type BenchRow } from './table.js';

const ENGINES: readonly Engine[] = ['ours-webgpu', 'ort-webgpu', 'tfjs-webgpu', 'ours-cpu'];

const FULL: TimingSettings = { reps: 7, budgetMs: 2500, loopMs: 300, maxBatch: 16 };
const QUICK: TimingSettings = { reps: 3, budgetMs: 1000, loopMs: 150, maxBatch: 8 };

/** The CPU backend (a readable reference, not a fast one) only runs cases up to this many FLOPs. */
const CPU_MAX_FLOP = 0.35e9;

interface Case {
  op: 'matmul' | 'attention' | 'layerNorm' | 'conv2d';
  shape: string;
  /** Arithmetic work; null for memory-bound ops, rated by `bytes`. */
  flop: number | null;
  bytes: number;
  quick: boolean;
  time(peer: KernelPeer): Promise<Timing>;
}

function matmul(m: number, k: number, n: number, quick = false): Case {
  return { op: 'matmul', shape: `${m}x${k}x${n}`, flop: 2 * m * k * n, bytes: 4 * (m * k + k * n + m * n), quick, time: (p) => p.matmul(m, k, n) };
}

function attention(batch: number, heads: number, tokens: number, headDim: number, quick = false): Case {
  return {
    op: 'attention',
    shape: `${batch}x${heads}x${tokens}x${headDim}`,
    // q·kᵀ and p·v; the softmax is not counted.
    flop: 4 * batch * heads * tokens * tokens * headDim,
    bytes: 4 * 4 * batch * tokens * heads * headDim,
    quick,
    time: (p) => p.attention(batch, heads, tokens, headDim),
  };
}

function layerNorm(rows: number, cols: number, quick = false): Case {
  return { op: 'layerNorm', shape: `${rows}x${cols}`, flop: null, bytes: 4 * (2 * rows * cols + 2 * cols), quick, time: (p) => p.layerNorm(rows, cols) };
}

function conv2d(c: Conv2dCase, quick = false): Case {
  const ho = Math.floor((c.height + 2 * c.pad - c.kernel) / c.stride) + 1;
  const wo = Math.floor((c.width + 2 * c.pad - c.kernel) / c.stride) + 1;
  return {
    op: 'conv2d',
    shape: `${c.batch}x${c.cin}x${c.height}x${c.width}-${c.cout}k${c.kernel}s${c.stride}p${c.pad}`,
    flop: 2 * c.batch * c.cout * ho * wo * c.cin * c.kernel * c.kernel,
    bytes: 4 * (c.batch * c.cin * c.height * c.width + c.cout * c.cin * c.kernel * c.kernel + c.batch * c.cout * ho * wo),
    quick,
    time: (p) => p.conv2d(c),
  };
}

const CASES: readonly Case[] = [
  matmul(256, 256, 256, true),
  matmul(512, 512, 512),
  matmul(1024, 1024, 1024, true),
  matmul(2048, 2048, 2048),
  // OFA-tiny encoder (268 tokens, d=256, FFN 1024): attention projections, FFN in and out.
  matmul(268, 256, 256),
  matmul(268, 256, 1024, true),
  matmul(268, 1024, 256),
  // OFA-base encoder (908 tokens, d=768, FFN 3072).
  matmul(908, 768, 768),
  matmul(908, 768, 3072),
  matmul(908, 3072, 768),
  // Decoder output projection over the vocabulary (5 beams).
  matmul(5, 768, 59457),
  attention(1, 4, 268, 64, true),
  attention(1, 12, 908, 64),
  layerNorm(908, 768, true),
  conv2d({ batch: 1, cin: 64, height: 64, width: 64, cout: 64, kernel: 3, stride: 1, pad: 1 }, true),
  conv2d({ batch: 1, cin: 256, height: 32, width: 32, cout: 256, kernel: 3, stride: 2, pad: 1 }),
];

function runsOn(engine: Engine, c: Case): boolean {
  return engine !== 'ours-cpu' || (c.flop ?? 0) <= CPU_MAX_FLOP;
}

/** Engines are imported only when selected: each pulls in a large runtime. */
async function createPeers(engines: readonly Engine[], settings: TimingSettings): Promise<{ peers: KernelPeer[]; adapter: string }> {
  // One Dawn instance: TF.js reaches it through navigator.gpu, where our backend looks first too,
  // so TF.js is set up before ours.
  Object.assign(globalThis, globals);
  const gpu = create([]);
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter (set XDG_RUNTIME_DIR and install a Vulkan driver, e.g. Mesa lavapipe)');
  const peers: KernelPeer[] = [];
  if (engines.includes('tfjs-webgpu')) {
    const { createTfjsWebGpuPeer } = await import('./peers/tfjs-webgpu.js');
    peers.push(await createTfjsWebGpuPeer(gpu, settings));
  }
  if (engines.includes('ours-webgpu')) {
    const { createWebGpuBackend } = await import('../src/backend/webgpu/index.js');
    peers.push(createBackendPeer('ours-webgpu', await createWebGpuBackend(), settings));
  }
  if (engines.includes('ort-webgpu')) {
    const { createOrtWebGpuPeer } = await import('./peers/ort-webgpu.js');
    peers.push(await createOrtWebGpuPeer(settings));
  }
  if (engines.includes('ours-cpu')) {
    const { CpuBackend } = await import('../src/backend/cpu/cpu-backend.js');
    peers.push(createBackendPeer('ours-cpu', new CpuBackend(), settings));
  }
  const order = (p: KernelPeer): number => ENGINES.indexOf(p.engine);
  return { peers: peers.sort((a, b) => order(a) - order(b)), adapter: `${adapter.info.description || adapter.info.device} (${adapter.info.vendor})` };
}

function describe(r: BenchRow): string {
  return 'skipped' in r ? `skipped: ${r.skipped}` : `${r.ms.toFixed(3)} ms`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      engines: { type: 'string', default: ENGINES.join(',') },
    },
  });
  const engines = values.engines.split(',').map((e) => e.trim());
  const unknown = engines.filter((e) => !(ENGINES as readonly string[]).includes(e));
  if (unknown.length) throw new Error(`unknown engine(s) ${unknown.join(', ')}; expected ${ENGINES.join(', ')}`);
  const settings = values.quick ? QUICK : FULL;
  const cases = CASES.filter((c) => c.quick || !values.quick);

  const { peers, adapter } = await createPeers(engines as Engine[], settings);
  console.error(`adapter: ${adapter}; ${cases.length} cases; engines: ${peers.map((p) => p.engine).join(', ')}`);
  const rows: BenchRow[] = [];
  const started = performance.now();
  for (const c of cases) {
    for (const peer of peers) {
      if (!runsOn(peer.engine, c)) continue;
      const base = { op: c.op, shape: c.shape, engine: peer.engine };
      let row: BenchRow;
      try {
        const t = await c.time(peer);
        row =
          'skipped' in t
            ? { ...base, skipped: t.skipped }
            : {
                ...base,
                ms: t.ms,
                gflops: c.flop === null ? null : c.flop / t.ms / 1e6,
                ...(c.flop === null ? { gbps: c.bytes / t.ms / 1e6 } : {}),
              };
      } catch (e) {
        row = { ...base, skipped: `error: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}` };
      }
      rows.push(row);
      console.error(`  ${c.op} ${c.shape} ${peer.engine}: ${describe(row)}`);
    }
  }
  for (const peer of peers) await peer.dispose();
  console.error(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  printTable(rows);
  const written = writeResults(rows, fileURLToPath(new URL('./results/', import.meta.url)));
  console.log(`\nwrote ${written.run} and ${written.latest}`);
}

await main();
