/**
 * `npm run fuzz`: the long fuzz run. Mutations of every target's seeds plus its hand-made
 * cases, each case isolated in a worker process with a time and memory budget; prints the cases
 * per outcome per target and every failing case with the command that reproduces it, and exits
 * 1 if any case crashed, hung, ran out of memory or was accepted as garbage.
 *
 *   npm run fuzz                                   20,000 cases per target, seed 1
 *   npm run fuzz -- --cases 5000 --seed 7 --targets pickle,bpe --jobs 2 --minutes 10   (minutes of cases per target)
 *   npm run fuzz -- --target pickle --case 1234 [--seed 7] [--save case.bin]   one case, in process
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CaseSource, budgetOf, discoverTargets, judge, warmUp } from './cases.js';
import { formatReports, runFuzz } from './harness.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '20000' },
    seed: { type: 'string', default: '1' },
    targets: { type: 'string' },
    jobs: { type: 'string', default: '1' },
    minutes: { type: 'string' },
    target: { type: 'string' },
    case: { type: 'string' },
    save: { type: 'string' },
  },
});
const seed = Number(values.seed);

async function reproduce(name: string, index: number): Promise<number> {
  const found = (await discoverTargets()).find(({ target }) => target.name === name);
  if (!found) throw new Error(`no fuzz target '${name}'`);
  const { target } = found;
  const fuzzCase = new CaseSource(target, seed).caseAt(index);
  if (values.save) writeFileSync(values.save, fuzzCase.bytes);
  console.log(`${name} case ${index} (seed ${seed}): ${fuzzCase.name}, ${fuzzCase.bytes.length} bytes`);
  await warmUp(target);
  const { outcome, ms, detail } = await judge(target, fuzzCase.bytes, budgetOf(target));
  console.log(`${outcome} in ${ms.toFixed(0)} ms${detail === undefined ? '' : `: ${detail}`}`);
  return 0;
}

async function fuzz(): Promise<number> {
  let shown = performance.now();
  let count = 0;
  const reports = await runFuzz({
    cases: Number(values.cases),
    seed,
    targets: values.targets?.split(','),
    jobs: Number(values.jobs),
    timePerTargetMs: values.minutes === undefined ? undefined : Number(values.minutes) * 60_000,
    onCase: (target, { index, outcome }) => {
      count++;
      if (performance.now() - shown > 5000) {
        shown = performance.now();
        process.stderr.write(`fuzz: ${count} cases; ${target} at case ${index} (${outcome})\n`);
      }
    },
  });
  console.log(`fuzz run, seed ${seed}:\n${formatReports(reports)}`);
  let failing = 0;
  for (const { target, failures } of reports) {
    for (const failure of failures.slice(0, 20)) {
      console.log(`\n${target} case ${failure.index}: ${failure.outcome} — ${failure.name}\n  ${failure.detail ?? ''}`);
      console.log(`  reproduce: npm run fuzz -- --target ${target} --case ${failure.index} --seed ${seed}`);
    }
    failing += failures.length;
  }
  return failing > 0 ? 1 : 0;
}

process.exitCode = await (values.case === undefined ? fuzz() : reproduce(values.target ?? '', Number(values.case)));
