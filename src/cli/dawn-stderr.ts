/**
 * Dawn's notes on stderr. Whenever Dawn (npm `webgpu`) finds a Vulkan adapter that reports more
 * dynamic buffers per pipeline layout than it supports — lavapipe reports 1,000,000 — it clamps
 * the adapter's limits and prints, from C++ with `fprintf(stderr)`, while the adapter is requested:
 *
 *   Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.
 *   Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.
 *
 * whatever limits the device then requests (our kernels use no dynamic offsets). No WebGPU call,
 * Dawn toggle or callback silences them, and Node cannot redirect a native library's file
 * descriptor 2. So the `mue` binary runs its command in a child process whose stderr passes
 * through `DawnNoteFilter`: exactly these lines are dropped, everything else (Dawn's real errors
 * included) passes unchanged and at once; `--debug` runs in process and shows them.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';

/** Dawn's notes about clamped limits: informational, about the adapter, never about our work. */
export const DAWN_LIMIT_NOTE = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?$/;

/** The start every such note shares: text that may still become one is held back. */
const NOTE_START = 'Warning: maxDynamic';

/**
 * Passes text through, dropping whole lines that are Dawn's limit notes. A line is held back only
 * while it may still become one, so a progress bar (redrawn without newlines) shows at once.
 */
export class DawnNoteFilter {
  #pending = '';

  constructor(private readonly write: (text: string) => void) {}

  push(text: string): void {
    this.#pending += text;
    let newline: number;
    while ((newline = this.#pending.indexOf('\n')) >= 0) {
      const line = this.#pending.slice(0, newline);
      this.#pending = this.#pending.slice(newline + 1);
      if (!DAWN_LIMIT_NOTE.test(line)) this.write(`${line}\n`);
    }
    const prefix = this.#pending.slice(0, NOTE_START.length);
    if (this.#pending !== '' && !NOTE_START.startsWith(prefix)) this.flush();
  }

  /** Writes what is held back (at the end of the stream). */
  flush(): void {
    if (this.#pending !== '') this.write(this.#pending);
    this.#pending = '';
  }
}

/** Set in the child's environment: run the command, do not spawn again. */
const CHILD = 'MUE_DAWN_NOTES_FILTERED';
/** The parent's stderr as the child should treat it: a terminal (progress bars) and its width. */
const TERMINAL_COLUMNS = 'MUE_STDERR_TERMINAL_COLUMNS';

/**
 * Runs `command` with a stderr free of Dawn's limit notes and resolves to its exit status: in a
 * child process of the same script and arguments, or in process for `--debug` (or in the child).
 */
export async function withoutDawnNotes(args: readonly string[], command: (stderr: NodeJS.WriteStream) => Promise<number>): Promise<number> {
  if (process.env[CHILD] === '1') {
    const columns = process.env[TERMINAL_COLUMNS];
    // The parent's stderr is a terminal: let progress bars draw on it through the pipe.
    if (columns !== undefined) Object.assign(process.stderr, { isTTY: true, columns: Number(columns) });
    return command(process.stderr);
  }
  if (args.includes('--debug')) return command(process.stderr);
  const env: NodeJS.ProcessEnv = { ...process.env, [CHILD]: '1' };
  if (process.stderr.isTTY) env[TERMINAL_COLUMNS] = String(process.stderr.columns ?? 80);
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: ['inherit', 'inherit', 'pipe'], env });
  const filter = new DawnNoteFilter((text) => process.stderr.write(text));
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => filter.push(text));
  // A terminal's Ctrl-C reaches both processes; a signal sent to this one alone is passed on.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
  for (const signal of signals) process.on(signal, forward);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => {
        filter.flush();
        resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
      });
    });
  } finally {
    for (const signal of signals) process.off(signal, forward);
  }
}
