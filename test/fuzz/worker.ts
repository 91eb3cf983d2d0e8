/**
 * The process that runs fuzz cases, started by the harness (harness.ts) under a memory limit.
 * It receives one assignment — a target and a range of case numbers — runs the cases in order
 * and reports each outcome. The harness kills it when a case overruns its time and starts a new
 * one after that case; a case that pushes the process's peak memory over the budget is reported
 * as out of memory, after which this process exits so that the next one starts with a fresh
 * peak.
 */
import { CaseSource, budgetOf, judge, warmUp } from './cases.js';
import type { WorkerAssignment, WorkerMessage } from './harness.js';
import type { FuzzTarget } from './target.js';

function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve, reject) => process.send!(message, undefined, {}, (error) => (error ? reject(error) : resolve())));
}

async function work({ module, target: name, from, to, seed, timeMs }: WorkerAssignment): Promise<void> {
  const { targets } = (await import(module)) as { targets: FuzzTarget[] };
  const target = targets.find((candidate) => candidate.name === name);
  if (!target) throw new Error(`${module} defines no fuzz target '${name}'`);
  const budget = budgetOf(target);
  const cases = new CaseSource(target, seed);
  await warmUp(target);
  await send({ type: 'ready' });
  let timeLeft = timeMs;
  for (let index = from; index < to && timeLeft > 0; index++) {
    const { name: caseName, bytes } = cases.caseAt(index);
    const result = await judge(target, bytes, budget);
    timeLeft -= result.ms;
    const peakMb = process.resourceUsage().maxRSS / 1024;
    if (peakMb > budget.memoryMb) {
      await send({ type: 'case', index, name: caseName, outcome: 'oom', ms: result.ms, detail: `peak memory ${peakMb.toFixed(0)} MB, over the ${budget.memoryMb} MB budget` });
      process.exit(0);
    }
    await send({ type: 'case', index, name: caseName, ...result });
  }
  await send({ type: 'done' });
  process.exit(0);
}

// Keeps the process alive while a case awaits something that never settles: the harness's
// timer then reports it as a hang instead of the process quietly running out of work.
setInterval(() => {}, 1 << 30);

process.once('message', (assignment: WorkerAssignment) => {
  work(assignment).catch(async (error: unknown) => {
    await send({ type: 'failed', detail: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exit(1);
  });
});
