/**
 * A short, seeded fuzz run in the suite: every target's hand-made cases and then mutations of
 * its seeds, each target for a bounded time (≈ 60 s for all together on CI), through the same
 * isolating harness as `npm run fuzz`. Any crash, hang, out-of-memory or garbage acceptance
 * fails the test and prints the command that reproduces the case.
 */
import { describe, expect, it } from 'vitest';
import { discoverTargets } from './cases.js';
import { formatReports, runFuzz } from './harness.js';

/**
 * Time in cases for the whole run, shared by the targets. With each worker's start-up (the
 * TypeScript loader, a vocabulary or decoder), two workers at a time (CI has two cores), the
 * test takes well under a minute there.
 */
const CASE_SECONDS = 30;
const JOBS = 2;
const SEED = 20_240_901;

describe('fuzz (seeded, time-bounded)', () => {
  it('finds no crash, hang, out-of-memory or accepted garbage in any reader', async () => {
    const targets = await discoverTargets();
    const perTarget = (CASE_SECONDS * 1000) / targets.length;
    const reports = await runFuzz({ cases: 1_000_000, seed: SEED, timePerTargetMs: perTarget, jobs: JOBS });
    console.log(formatReports(reports));
    const failures = reports.flatMap(({ target, failures }) =>
      failures.map(({ index, outcome, name, detail }) =>
        `${target} case ${index}: ${outcome} — ${name}: ${detail ?? ''} (npm run fuzz -- --target ${target} --case ${index} --seed ${SEED})`,
      ),
    );
    expect(failures).toEqual([]);
    for (const report of reports) {
      const cases = Object.values(report.counts).reduce((a, b) => a + b, 0);
      expect(cases, `${report.target} ran its hand-made cases and some mutations`).toBeGreaterThan(20);
    }
  }, 180_000);
});
