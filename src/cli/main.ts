#!/usr/bin/env node
/**
 * The `mue` binary (package.json `bin`): the commands live in ./program.ts; they run in a child
 * process whose stderr is free of Dawn's notes about clamped adapter limits (./dawn-stderr.ts).
 */
import { withoutDawnNotes } from './dawn-stderr.js';

const args = process.argv.slice(2);
process.exitCode = await withoutDawnNotes(args, async (stderr) => {
  const { runCli } = await import('./program.js');
  return runCli(args, { stdout: process.stdout, stderr });
});
