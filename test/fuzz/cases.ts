/**
 * The cases of a fuzz run and how one is judged, shared by the worker processes and the
 * single-case reproduction of `npm run fuzz -- --case N`.
 *
 * Case numbers are per target: first its hand-made cases in order, then mutations, case `i`
 * drawn from a PRNG seeded by (run seed, target name, i) alone — so any case can be rebuilt
 * without running the ones before it.
 */
import { readdirSync } from 'node:fs';
import { createRng } from '../helpers/random.js';
import { mutate } from './mutate.js';
import { DEFAULT_BUDGET, type FuzzBudget, type FuzzCase, type FuzzTarget } from './target.js';

export const OUTCOMES = ['clean', 'accepted', 'crash', 'hang', 'oom', 'garbage'] as const;
export type Outcome = (typeof OUTCOMES)[number];
/** The outcomes a run must not have. */
export const FAILURES: readonly Outcome[] = ['crash', 'hang', 'oom', 'garbage'];

export interface CaseResult {
  index: number;
  name: string;
  outcome: Outcome;
  /** The error message, or why an acceptance is garbage, or what ran out. */
  detail?: string;
  ms: number;
}

/** The folder the targets are discovered in. */
export const TARGETS_FOLDER = new URL('./targets/', import.meta.url);

/** Every target module (`test/fuzz/targets/*.ts`), by file URL. */
export function targetModules(): URL[] {
  return readdirSync(TARGETS_FOLDER)
    .filter((file) => file.endsWith('.ts'))
    .sort()
    .map((file) => new URL(file, TARGETS_FOLDER));
}

/** Every target with the module that defines it. */
export async function discoverTargets(): Promise<{ module: URL; target: FuzzTarget }[]> {
  const found: { module: URL; target: FuzzTarget }[] = [];
  for (const module of targetModules()) {
    const { targets } = (await import(module.href)) as { targets?: FuzzTarget[] };
    if (!Array.isArray(targets)) throw new Error(`${module.pathname}: exports no 'targets' array`);
    for (const target of targets) found.push({ module, target });
  }
  return found;
}

export function budgetOf(target: FuzzTarget): FuzzBudget {
  return { ...DEFAULT_BUDGET, ...target.budget };
}

/** FNV-1a, to turn a target name into part of a seed. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A target's inputs, built once per process. */
export class CaseSource {
  private readonly handmade: FuzzCase[];
  private readonly seeds: FuzzCase[];
  private readonly dictionary: Uint8Array[];

  constructor(
    private readonly target: FuzzTarget,
    private readonly runSeed: number,
  ) {
    this.handmade = target.handmade();
    this.seeds = target.seeds();
    this.dictionary = target.dictionary?.() ?? [];
    if (this.seeds.length === 0) throw new Error(`fuzz target ${target.name} has no seeds`);
  }

  get handmadeCount(): number {
    return this.handmade.length;
  }

  caseAt(index: number): FuzzCase {
    if (index < this.handmade.length) {
      const { name, bytes } = this.handmade[index]!;
      return { name: `hand-made: ${name}`, bytes };
    }
    const rng = createRng((this.runSeed * 0x9e3779b1) ^ hash(this.target.name) ^ Math.imul(index, 0x85ebca6b));
    const seed = this.seeds[Math.floor(rng() * this.seeds.length)]!;
    const donors = this.seeds.map(({ bytes }) => bytes);
    const { bytes, description } = mutate(seed.bytes, { rng, donors, dictionary: this.dictionary });
    return { name: `${seed.name}: ${description}`, bytes };
  }
}

/**
 * One unjudged run of the first seed, so that what a target loads once (a vocabulary, a
 * decoder's WebAssembly) is not timed as part of the first case.
 */
export async function warmUp(target: FuzzTarget): Promise<void> {
  await target.run(target.seeds()[0]!.bytes).catch(() => {});
}

function isAllocationFailure(error: unknown): boolean {
  return error instanceof RangeError && /allocation failed|out of memory/i.test(error.message);
}

/**
 * Runs one case in this process and judges it. A hang here is a case that finished, but used
 * more processor time than the budget: processor time, not wall time, so that other work on a
 * busy machine does not make a case hang. (One that never finishes is the harness's to kill.)
 */
export async function judge(target: FuzzTarget, bytes: Uint8Array, budget: FuzzBudget): Promise<Omit<CaseResult, 'index' | 'name'>> {
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  let outcome: Outcome;
  let detail: string | undefined;
  try {
    await target.run(bytes);
    detail = target.acceptedGarbage?.(bytes);
    outcome = detail === undefined ? 'accepted' : 'garbage';
  } catch (error) {
    detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    outcome = isAllocationFailure(error) ? 'oom' : target.isCleanError(error) ? 'clean' : 'crash';
  }
  const ms = performance.now() - started;
  const { user, system } = process.cpuUsage(cpuStarted);
  const cpuMs = (user + system) / 1000;
  if (cpuMs > budget.timeMs && outcome !== 'crash') {
    detail = `took ${cpuMs.toFixed(0)} ms of processor time, over the ${budget.timeMs} ms budget (${outcome}: ${detail ?? 'accepted'})`;
    outcome = 'hang';
  }
  return detail === undefined ? { outcome, ms } : { outcome, detail: detail.slice(0, 500), ms };
}
