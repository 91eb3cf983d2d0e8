/**
 * Kernel benchmark output: an aligned table on stdout and JSON rows under `bench/results/`, in
 * `kernels-<date>-<commit>.json` (merged with an earlier run of the same day and commit, rows of
 * the same op, shape and engine replaced) and `kernels-latest.json` (this run only).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from './peers/peer.js';

/** One measured kernel: the JSON schema compared across commits. */
export interface ResultRow {
  op: string;
  /** e.g. `1024x1024x1024` (M×K×N for matmul). */
  shape: string;
  engine: Engine;
  /** Median milliseconds per kernel. */
  ms: number;
  /** Arithmetic rate; null for memory-bound ops (layer norm), which report `gbps`. */
  gflops: number | null;
  /** Bytes moved per second (GB/s), for memory-bound ops. */
  gbps?: number;
}

export interface SkippedRow {
  op: string;
  shape: string;
  engine: Engine;
  skipped: string;
}

export type BenchRow = ResultRow | SkippedRow;

const key = (r: { op: string; shape: string; engine: string }): string => `${r.op} ${r.shape} ${r.engine}`;

function fixed(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** Prints the table; "× ours" is this engine's time over ours-webgpu's (> 1: ours is faster). */
export function printTable(rows: readonly BenchRow[]): void {
  const ours = new Map<string, number>();
  for (const r of rows) if (r.engine === 'ours-webgpu' && 'ms' in r) ours.set(`${r.op} ${r.shape}`, r.ms);
  const header = ['op', 'shape', 'engine', 'ms', 'GFLOPS', 'GB/s', '× ours'];
  const cells = rows.map((r) => {
    if ('skipped' in r) return [r.op, r.shape, r.engine, '—', '', '', `skipped: ${r.skipped}`];
    const base = ours.get(`${r.op} ${r.shape}`);
    return [
      r.op,
      r.shape,
      r.engine,
      fixed(r.ms),
      r.gflops === null ? '' : fixed(r.gflops),
      r.gbps === undefined ? '' : fixed(r.gbps),
      base === undefined ? '' : `${(r.ms / base).toFixed(2)}×`,
    ];
  });
  const numeric = new Set([3, 4, 5, 6]);
  const widths = header.map((h, c) => Math.max(h.length, ...cells.map((row) => (row[c] ?? '').length)));
  const line = (row: readonly string[]): string =>
    row
      .map((cell, c) => (c === row.length - 1 && cell.startsWith('skipped') ? cell : numeric.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of cells) console.log(line(row));
}

/** Short commit id, with `-dirty` when the tree has uncommitted changes; `nogit` outside a repository. */
function revision(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit}-dirty` : commit;
  } catch {
    return 'nogit';
  }
}

/** Writes the measured rows (skipped ones are only printed); returns the two paths. */
export function writeResults(rows: readonly BenchRow[], dir: string): { run: string; latest: string } {
  const measured = rows.filter((r): r is ResultRow => 'ms' in r);
  mkdirSync(dir, { recursive: true });
  const run = join(dir, `kernels-${new Date().toISOString().slice(0, 10)}-${revision()}.json`);
  const merged = new Map<string, ResultRow>();
  if (existsSync(run)) for (const r of JSON.parse(readFileSync(run, 'utf8')) as ResultRow[]) merged.set(key(r), r);
  for (const r of measured) merged.set(key(r), r);
  writeFileSync(run, `${JSON.stringify([...merged.values()], null, 1)}\n`);
  const latest = join(dir, 'kernels-latest.json');
  writeFileSync(latest, `${JSON.stringify(measured, null, 1)}\n`);
  return { run, latest };
}
