/**
 * What a fuzz target is: a reader (safetensors, a PyTorch checkpoint, the tokenizer, an image
 * decoder, …) seen from the fuzz harness. The harness mutates `seeds()`, adds `handmade()`
 * hostile inputs, runs each case in an isolated worker with a time and memory budget, and
 * classifies the outcome:
 *
 * - clean error: `run` threw and `isCleanError` recognises the refusal (the reader's own error
 *   naming the file, the part and the problem);
 * - crash: `run` threw anything else (RangeError, TypeError, a message not naming the part);
 * - hang: `run` used more processor time than the budget, or did not settle at all;
 * - out of memory: the process running it went over its memory budget (or an allocation failed);
 * - accepted garbage: `run` resolved but `acceptedGarbage` says why accepting was wrong;
 * - accepted: `run` resolved.
 *
 * Targets live in `test/fuzz/targets/*.ts`, each module exporting `targets: FuzzTarget[]`.
 */
export interface FuzzCase {
  name: string;
  bytes: Uint8Array;
}

export interface FuzzTarget {
  /** Short name used in reports: 'safetensors', 'torch-zip', 'pickle', 'bpe', 'png', … */
  name: string;
  /** Valid inputs the mutators start from. */
  seeds(): FuzzCase[];
  /** Crafted hostile inputs (bombs, deep nesting, huge length fields, …), run unmutated. */
  handmade(): FuzzCase[];
  /** Reads/decodes the input completely, as the engine would; resolves when accepted, throws when refused. */
  run(bytes: Uint8Array): Promise<void>;
  /** True for the refusal the reader documents (its own error class, naming the part at fault). */
  isCleanError(error: unknown): boolean;
  /** For accepted inputs: why this acceptance is wrong, if the target can tell (e.g. a CRC that does not match). */
  acceptedGarbage?(bytes: Uint8Array): string | undefined;
  /** Byte strings the mutators may insert or overwrite with (opcodes, keywords, markers); none by default. */
  dictionary?(): Uint8Array[];
  /** Per-case limits where the defaults (`DEFAULT_BUDGET`) do not fit the format. */
  budget?: Partial<FuzzBudget>;
}

/** What one case may cost before it counts as a hang or as out of memory. */
export interface FuzzBudget {
  /** Processor time of `run` (the worker's, all threads: wall time would depend on the machine's other work). */
  timeMs: number;
  /** Peak resident memory of the process running the case (which starts around 100–200 MB). */
  memoryMb: number;
}

export const DEFAULT_BUDGET: FuzzBudget = { timeMs: 2000, memoryMb: 640 };
