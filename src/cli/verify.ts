/** `mue verify [DIR]`: the engine against a golden folder, tensor by tensor (src/models/ofa/verify.ts). */
import { Command, Option } from 'commander';
import type { BackendName } from '../pipeline.js';
import { type VerifyResult, verifyGolden } from '../models/ofa/verify.js';
import { shapeToString } from '../tensor.js';
import { type CliIo, GOLDEN_MODEL, backendOption, duration, notice, openBackend, positiveNumber, print, requirePath } from './common.js';

interface VerifyFlags {
  backend?: BackendName;
  out?: string;
  tolerance: number;
}

function formatDiff(diff: number): string {
  if (Number.isNaN(diff)) return 'NaN';
  if (diff === Infinity) return 'shape differs';
  return diff === 0 ? '0' : diff.toExponential(2);
}

/** The per-tensor table and the greedy line, on stdout. */
function printReport(io: CliIo, result: VerifyResult): void {
  const header = ['tensor', 'shape', 'max |Δ|', ''];
  const rows = result.rows.map((row) => [row.name, shapeToString(row.shape), formatDiff(row.maxAbsDiff), row.ok ? 'ok' : 'FAIL']);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, c) => (c === 2 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  print(io, line(header));
  print(io, widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) print(io, line(row));
  const { greedy } = result;
  print(io, '');
  if (greedy.ok) {
    print(io, `greedy ids (${greedy.actual.length}): ${greedy.actual.join(' ')}  ok`);
  } else {
    print(io, `greedy ids expected: ${greedy.expected.join(' ')}`);
    print(io, `greedy ids actual:   ${greedy.actual.join(' ')}  FAIL`);
  }
}

export function verifyCommand(io: CliIo): Command {
  return new Command('verify')
    .description('run the engine on a golden folder and compare every tensor and the greedy ids')
    .argument(
      '[dir]',
      'golden folder with weights.safetensors, manifest.json and outputs.safetensors (default: the shipped golden model weights/ofa-tiny-random)',
    )
    .addOption(backendOption())
    .option('--out <file>', "write the engine's tensors (and greedy.tokens) to this .safetensors file")
    .addOption(
      new Option('--tolerance <x>', 'largest max |Δ| accepted per tensor').argParser(positiveNumber).default(1e-4),
    )
    .action(async (dir: string | undefined, flags: VerifyFlags) => {
      const golden = dir ?? GOLDEN_MODEL;
      await requirePath(golden, 'golden folder').catch((error: unknown) => {
        if (dir !== undefined) throw error;
        // The npm package leaves the golden set out (39 MB of test data): it is in the repository.
        throw new Error(`${(error as Error).message}: the golden set ships with the source repository, not the npm package; pass its folder (weights/ofa-tiny-random of a clone)`);
      });
      const backend = await openBackend(io, flags.backend);
      try {
        const started = performance.now();
        const result = await verifyGolden(backend, golden, { tolerance: flags.tolerance, out: flags.out });
        const elapsed = duration(performance.now() - started);
        printReport(io, result);
        if (flags.out !== undefined) notice(io, `wrote the engine's tensors to ${flags.out}`);
        const failed = result.rows.filter((row) => !row.ok).length;
        if (!result.ok) {
          const problems = [
            ...(failed > 0 ? [`${failed} of ${result.rows.length} tensors beyond tolerance ${result.tolerance}`] : []),
            ...(result.greedy.ok ? [] : ['the greedy ids differ']),
          ];
          throw new Error(`verification failed on ${backend.name}: ${problems.join('; ')}`);
        }
        print(
          io,
          `verify: ${result.rows.length} tensors within ${result.tolerance} and the greedy ids match ` +
            `(${backend.name}, ${elapsed})`,
        );
      } finally {
        backend.destroy();
      }
    });
}
