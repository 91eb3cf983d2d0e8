#!/usr/bin/env node
/** The `mue` binary (package.json `bin`); the commands live in ./program.ts. */
import { runCli } from './program.js';

process.exitCode = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
