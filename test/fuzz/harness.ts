/**
 * Runs fuzz targets in worker processes, so that a case that hangs or eats memory can be
 * stopped without stopping the run:
 *
 * - each worker (worker.ts, run by Node with the tsx loader) gets a memory limit it cannot
 *   exceed — the V8 heap through `--max-old-space-size`, everything else (array buffers,
 *   WebAssembly memory) through the data segment limit (`ulimit -d`) — and reports a case whose
 *   peak resident memory passes the target's budget as out of memory;
 * - the harness kills a worker that has not reported for a few times the time budget, records
 *   the case it was on as a hang, and starts a new worker after it; a worker that dies (V8 out
 *   of heap, a native crash) has its case recorded as out of memory or a crash.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type CaseResult, CaseSource, FAILURES, OUTCOMES, type Outcome, budgetOf, discoverTargets } from './cases.js';
import type { FuzzTarget } from './target.js';

/** What the harness tells a worker to do. */
export interface WorkerAssignment {
  /** The file URL of the module defining the target. */
  module: string;
  target: string;
  /** Case numbers [from, to). */
  from: number;
  to: number;
  seed: number;
  /** Milliseconds of cases to run (their own time, not the worker's start-up); then stop. */
  timeMs: number;
}

export type WorkerMessage =
  | { type: 'ready' }
  | ({ type: 'case' } & CaseResult)
  | { type: 'done' }
  | { type: 'failed'; detail: string };

export interface FuzzOptions {
  /** Target names to run; default all. */
  targets?: readonly string[];
  /** Cases per target, hand-made ones included. */
  cases: number;
  seed: number;
  /**
   * Time per target spent in cases (worker start-up and the warm-up run excluded), after which
   * no new case starts; default unlimited.
   */
  timePerTargetMs?: number;
  /** Targets run at once, one worker each; default 1. */
  jobs?: number;
  /** Called for every case, e.g. to show progress. */
  onCase?: (target: string, result: CaseResult) => void;
}

export interface TargetReport {
  target: string;
  counts: Record<Outcome, number>;
  /** Every case with a failing outcome. */
  failures: CaseResult[];
  seconds: number;
}

/**
 * Kill a silent worker after this many time budgets of wall time: generous, since the budget is
 * processor time and a busy machine stretches wall time (a case that ends late is a hang anyway).
 */
const SILENCE_BUDGETS = 5;
const STARTUP_MS = 60_000;
/** The data segment limit, as a multiple of the memory budget: room for the heap and the runtime. */
const DATA_LIMIT_FACTOR = 3;

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

/** Runs the targets and returns one report per target, in discovery order. */
export async function runFuzz(options: FuzzOptions): Promise<TargetReport[]> {
  const all = await discoverTargets();
  const unknown = (options.targets ?? []).filter((name) => !all.some(({ target }) => target.name === name));
  if (unknown.length) {
    throw new Error(`unknown fuzz targets: ${unknown.join(', ')} (known: ${all.map(({ target }) => target.name).join(', ')})`);
  }
  const chosen = all.filter(({ target }) => !options.targets || options.targets.includes(target.name));
  const reports: TargetReport[] = new Array(chosen.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < chosen.length) {
      const index = next++;
      const { module, target } = chosen[index]!;
      reports[index] = await fuzzTarget(module, target, options);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.jobs ?? 1) }, lane));
  return reports;
}

async function fuzzTarget(module: URL, target: FuzzTarget, options: FuzzOptions): Promise<TargetReport> {
  const started = performance.now();
  let timeLeft = options.timePerTargetMs ?? Number.POSITIVE_INFINITY;
  const counts = Object.fromEntries(OUTCOMES.map((outcome) => [outcome, 0])) as Record<Outcome, number>;
  const failures: CaseResult[] = [];
  const record = (result: CaseResult): void => {
    timeLeft -= result.ms;
    counts[result.outcome]++;
    if (FAILURES.includes(result.outcome)) failures.push(result);
    options.onCase?.(target.name, result);
  };
  // Only a case the worker could not report on needs its name from here.
  let cases: CaseSource | undefined;
  const nameOf = (index: number): string => (cases ??= new CaseSource(target, options.seed)).caseAt(index).name;
  let from = 0;
  while (from < options.cases && timeLeft > 0) {
    const assignment: WorkerAssignment = {
      module: module.href,
      target: target.name,
      from,
      to: options.cases,
      seed: options.seed,
      timeMs: Number.isFinite(timeLeft) ? timeLeft : Number.MAX_SAFE_INTEGER,
    };
    from = await runWorker(assignment, target, record, nameOf);
  }
  return { target: target.name, counts, failures, seconds: (performance.now() - started) / 1000 };
}

/**
 * One worker over the assignment; resolves to the case number to continue from (`to` when the
 * worker finished, the case after the one it died or hung on otherwise).
 */
function runWorker(
  assignment: WorkerAssignment,
  target: FuzzTarget,
  record: (result: CaseResult) => void,
  nameOf: (index: number) => string,
): Promise<number> {
  const budget = budgetOf(target);
  const dataLimitKb = budget.memoryMb * 1024 * DATA_LIMIT_FACTOR;
  const child: ChildProcess = spawn(
    '/bin/sh',
    ['-c', `ulimit -d ${dataLimitKb} && exec "$0" "$@"`, process.execPath, '--import', 'tsx', `--max-old-space-size=${budget.memoryMb}`, WORKER],
    { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });

  return new Promise((resolve, reject) => {
    let current = assignment.from;
    let done = false;
    let killed = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        record({ index: current, name: nameOf(current), outcome: 'hang', ms, detail: `no result within ${ms} ms; killed` });
        killed = true;
        child.kill('SIGKILL');
      }, ms);
    };
    const silence = budget.timeMs * SILENCE_BUDGETS + 2000;
    arm(STARTUP_MS);
    child.on('message', (message: WorkerMessage) => {
      if (message.type === 'ready') {
        arm(silence);
      } else if (message.type === 'case') {
        const { type: _, ...result } = message;
        record(result);
        current = result.index + 1;
        arm(silence);
      } else if (message.type === 'done') {
        done = true;
      } else {
        clearTimeout(timer);
        reject(new Error(`fuzz worker for ${assignment.target} failed: ${message.detail}`));
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (done) return resolve(assignment.to);
      // Killed for a hang, or left after reporting an out-of-memory case: go on after that case.
      if (killed) return resolve(current + 1);
      if (code === 0) return resolve(current);
      const outOfMemory = /heap out of memory|Reached heap limit|allocation failed/i.test(stderr) || signal === 'SIGKILL';
      record({
        index: current,
        name: nameOf(current),
        outcome: outOfMemory ? 'oom' : 'crash',
        ms: 0,
        detail: `worker died (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`,
      });
      resolve(current + 1);
    });
    child.send(assignment);
  });
}

/** The report as a table: one row per target, cases per outcome. */
export function formatReports(reports: readonly TargetReport[]): string {
  const header = ['target', 'cases', ...OUTCOMES, 'seconds'];
  const rows = reports.map((report) => {
    const total = OUTCOMES.reduce((sum, outcome) => sum + report.counts[outcome], 0);
    return [report.target, String(total), ...OUTCOMES.map((outcome) => String(report.counts[outcome])), report.seconds.toFixed(1)];
  });
  const totals = OUTCOMES.map((outcome) => reports.reduce((sum, report) => sum + report.counts[outcome], 0));
  rows.push(['total', String(totals.reduce((a, b) => a + b, 0)), ...totals.map(String), '']);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]): string =>
    cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}
