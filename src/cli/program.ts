/**
 * The `mue` command line as a function of its arguments and output streams, so that it runs the
 * same from the binary (./main.ts) and inside a test. Errors print as `mue: <message>` on
 * stderr with exit status 1; `--debug` adds the stack trace and the chain of causes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { captionCommand } from './caption.js';
import { type CliIo, PACKAGE_ROOT } from './common.js';
import { convertCommand } from './convert.js';
import { entailCommand } from './entail.js';
import { preprocessCommand } from './preprocess.js';
import { evalCommand } from './eval.js';
import { verifyCommand } from './verify.js';

function packageVersion(): string {
  const json: unknown = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8'));
  const version = typeof json === 'object' && json !== null ? Reflect.get(json, 'version') : undefined;
  return typeof version === 'string' ? version : 'unknown';
}

export function createProgram(io: CliIo): Command {
  const program = new Command('mue')
    .description('OFA vision-language inference on WebGPU or the CPU: caption and entail images, verify and convert checkpoints')
    .version(packageVersion())
    .option('--debug', 'print stack traces with errors')
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) => write(`mue: ${text.replace(/^error: /, '')}`),
    })
    .exitOverride()
    .showHelpAfterError('(run mue --help or mue <command> --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  mue verify                          check the engine against the shipped golden model
  mue caption photo.jpg --weights models/ofa-base-caption
  mue entail photo.jpg "two dogs play in the snow" --weights models/ofa-base-snli-ve --json
  mue convert caption_base_best.pt models/ofa-base-caption --dtype f16
  mue preprocess photo.jpg --size 480 --out photo-input.safetensors   what the model sees of an image
  mue eval --sweep --plot sweep.svg   MuE's accuracy against compute and wall time on data/shapes-eval

caption, entail and verify run on WebGPU when it finds an adapter, else on the CPU with a
notice; --backend cpu|webgpu chooses. Errors print as "mue: <message>"; --debug adds the stack.`,
    );
  for (const command of [captionCommand(io), entailCommand(io), evalCommand(io), verifyCommand(io), convertCommand(io), preprocessCommand(io)]) {
    // Output routing, exit override and the usage hint, as `program.command()` would pass them on.
    program.addCommand(command.copyInheritedSettings(program));
  }
  return program;
}

/** `mue: message` and, with `--debug`, the stack and each cause's. */
function reportError(io: CliIo, error: unknown, debug: boolean): void {
  const message = error instanceof Error ? error.message : String(error);
  io.stderr.write(`mue: ${message}\n`);
  if (!debug) return;
  let current: unknown = error;
  while (current !== undefined) {
    io.stderr.write(`${current instanceof Error ? (current.stack ?? current.message) : String(current)}\n`);
    current = current instanceof Error ? current.cause : undefined;
    if (current !== undefined) io.stderr.write('caused by: ');
  }
}

/** Runs `mue` with `args` (without node and the script); resolves to the exit status. */
export async function runCli(args: readonly string[], io: CliIo): Promise<number> {
  const program = createProgram(io);
  try {
    await program.parseAsync([...args], { from: 'user' });
    return 0;
  } catch (error) {
    // Commander has printed its own message (usage errors) or the help/version (status 0).
    if (error instanceof CommanderError) return error.exitCode;
    reportError(io, error, program.opts<{ debug?: boolean }>().debug === true);
    return 1;
  }
}
