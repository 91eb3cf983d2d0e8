/**
 * Deno against Node on the same machine and adapter: the library API (bench/runtime-requests.ts)
 * under Deno's own WebGPU (wgpu, naga) and under Node with Dawn (npm `webgpu`, Tint) — and, to
 * tell the two apart, Node running the kernels an adapter without subgroups gets (Deno's wgpu
 * offers none): Deno over that is what wgpu and naga cost, that over Node what subgroups save.
 *
 *   npx tsx bench/deno.ts [--rounds 3] [--runs 2]
 *
 * The three take turns, one process each per round (`--runs` timed requests of each kind after
 * an untimed one that compiles the kernels), so that drift on a shared machine hits all alike.
 * The table gives each one's median over all rounds and the median over rounds of the ratios of
 * medians within a round (the numbers to quote). Rows go to `bench/results/deno-latest.json` as
 * `{ request, runtime, ms, ms_per_token, vs_node }`.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { median } from './stats.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SCRIPT = 'bench/runtime-requests.ts';
const run = promisify(execFile);

const RUNTIMES = ['node', 'node-without-subgroups', 'deno'] as const;
type Runtime = (typeof RUNTIMES)[number];

interface Row {
  request: string;
  totalMs: number;
  msPerToken: number;
}

interface RuntimeRun {
  runtime: Runtime;
  adapter: string;
  rows: Row[];
}

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at < 0 ? fallback : Number(process.argv[at + 1]);
}

async function runIn(runtime: Runtime, runs: number): Promise<RuntimeRun> {
  const args = [SCRIPT, '--runs', String(runs)];
  const [command, argv] =
    runtime === 'deno'
      ? [`${ROOT}node_modules/.bin/deno`, ['run', '--unstable-sloppy-imports', '--allow-read', ...args]]
      : [process.execPath, ['--import', 'tsx', ...args, ...(runtime === 'node-without-subgroups' ? ['--without-subgroups'] : [])]];
  const { stdout } = await run(command, argv, { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' }, maxBuffer: 16 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as RuntimeRun;
}

const rounds = option('--rounds', 3);
const runs = option('--runs', 2);
const byRound: Record<Runtime, RuntimeRun>[] = [];
for (let round = 0; round < rounds; round++) {
  // Rotate the order so that no runtime always runs first (or last) in a round.
  const order = RUNTIMES.map((_, i) => RUNTIMES[(i + round) % RUNTIMES.length]!);
  const results = {} as Record<Runtime, RuntimeRun>;
  for (const runtime of order) results[runtime] = await runIn(runtime, runs);
  byRound.push(results);
  console.error(`round ${round + 1}/${rounds} done`);
}

const requests = [...new Set(byRound[0]!.node.rows.map((r) => r.request))];
const of = (result: RuntimeRun, request: string, key: 'totalMs' | 'msPerToken'): number[] => result.rows.filter((r) => r.request === request).map((r) => r[key]);
const overall = (runtime: Runtime, request: string, key: 'totalMs' | 'msPerToken'): number => median(byRound.flatMap((r) => of(r[runtime], request, key)));
const perRound = (a: Runtime, b: Runtime, request: string): number[] => byRound.map((r) => median(of(r[a], request, 'totalMs')) / median(of(r[b], request, 'totalMs')));
const paired = (a: Runtime, b: Runtime, request: string): number => median(perRound(a, b, request));

console.log(`adapters: node ${byRound[0]!.node.adapter}; deno ${byRound[0]!.deno.adapter}`);
const header = ['request', 'node ms', 'node, no subgroups', 'deno ms', 'deno ms/token', 'node ms/token', 'deno / node', 'deno / node no-sub'];
const widths = [26, 9, 19, 9, 14, 14, 12, 19];
const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' ');
console.log(line(header));
const rows = [];
for (const request of requests) {
  console.log(
    line([
      request,
      overall('node', request, 'totalMs').toFixed(0),
      overall('node-without-subgroups', request, 'totalMs').toFixed(0),
      overall('deno', request, 'totalMs').toFixed(0),
      overall('deno', request, 'msPerToken').toFixed(1),
      overall('node', request, 'msPerToken').toFixed(1),
      `${paired('deno', 'node', request).toFixed(2)}×`,
      `${paired('deno', 'node-without-subgroups', request).toFixed(2)}×`,
    ]),
  );
  for (const runtime of RUNTIMES) {
    rows.push({
      request,
      runtime,
      ms: overall(runtime, request, 'totalMs'),
      ms_per_token: overall(runtime, request, 'msPerToken'),
      vs_node: runtime === 'node' ? 1 : paired(runtime, 'node', request),
    });
  }
}
for (const request of requests) {
  console.log(`deno / node by round, ${request}: ${perRound('deno', 'node', request).map((x) => `${x.toFixed(2)}×`).join(' ')}`);
}
mkdirSync(`${ROOT}bench/results`, { recursive: true });
writeFileSync(`${ROOT}bench/results/deno-latest.json`, `${JSON.stringify(rows, null, 2)}\n`);
