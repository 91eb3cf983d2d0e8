/** The `mue` command line in process: `runCli` with stdout and stderr captured. */
import { Writable } from 'node:stream';
import type { CliIo } from '../../src/cli/common.js';
import { runCli } from '../../src/cli/program.js';

export interface CliRun {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `mue ...args` (without node and the script) and returns its exit status and output. */
export function mue(...args: string[]): Promise<CliRun> {
  return runCaptured(args, { stderrIsTerminal: false });
}

/** `mue` with stderr claiming to be a terminal, where progress bars are drawn. */
export function mueOnTerminal(...args: string[]): Promise<CliRun> {
  return runCaptured(args, { stderrIsTerminal: true });
}

async function runCaptured(args: string[], { stderrIsTerminal }: { stderrIsTerminal: boolean }): Promise<CliRun> {
  const chunks = { stdout: [] as string[], stderr: [] as string[] };
  const sink = (into: string[]): Writable =>
    new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        into.push(String(chunk));
        callback();
      },
    });
  const stderr = sink(chunks.stderr);
  const io: CliIo = { stdout: sink(chunks.stdout), stderr: stderrIsTerminal ? Object.assign(stderr, { isTTY: true }) : stderr };
  const status = await runCli(args, io);
  return { status, stdout: chunks.stdout.join(''), stderr: chunks.stderr.join('') };
}
