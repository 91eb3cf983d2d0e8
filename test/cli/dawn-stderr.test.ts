/**
 * Dawn's limit notes kept off `mue`'s stderr: the line filter on its own, and the re-executed child
 * process end to end with a command that writes such notes to file descriptor 2 among real output.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DawnNoteFilter } from '../../src/cli/dawn-stderr.js';

const NOTES = [
  'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n',
  'Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n',
];

function filtered(chunks: readonly string[]): { out: string; afterEach: string[] } {
  let out = '';
  const filter = new DawnNoteFilter((text) => (out += text));
  const afterEach = chunks.map((chunk) => {
    filter.push(chunk);
    return out;
  });
  filter.flush();
  return { out, afterEach };
}

describe('DawnNoteFilter', () => {
  it('drops exactly the two notes, in any chunking, and keeps every other line', () => {
    const text = `mue: loaded model\n${NOTES.join('')}Warning: something else\nmue: done\n`;
    expect(filtered([text]).out).toBe('mue: loaded model\nWarning: something else\nmue: done\n');
    expect(filtered([...text]).out).toBe('mue: loaded model\nWarning: something else\nmue: done\n');
    // A note that differs is not Dawn's clamp note.
    const other = NOTES[0]!.replace('to 16', 'to sixteen');
    expect(filtered([other]).out).toBe(other);
  });

  it('passes text without a newline on at once unless it may still become a note', () => {
    const { out, afterEach } = filtered(['loading [=====   ] 50%\r', 'loading [========] 100%\r', 'Warning: maxDyn', 'amicStorage…', ' no newline yet']);
    const bars = 'loading [=====   ] 50%\rloading [========] 100%\r';
    expect(afterEach).toEqual(['loading [=====   ] 50%\r', bars, bars, bars, bars]);
    // Held until its line ends, or the stream does.
    expect(out).toBe(`${bars}Warning: maxDynamicStorage… no newline yet`);
  });
});

describe('withoutDawnNotes', () => {
  it('runs the command in a child process whose stderr loses the notes, keeping its output and exit status', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mue-dawn-'));
    try {
      const module = fileURLToPath(new URL('../../src/cli/dawn-stderr.ts', import.meta.url));
      const script = join(dir, 'command.mts');
      await writeFile(
        script,
        `import { withoutDawnNotes } from ${JSON.stringify(module)};
process.exitCode = await withoutDawnNotes(process.argv.slice(2), async (stderr) => {
  process.stdout.write('result\\n');
  stderr.write('mue: before\\n');
  ${NOTES.map((note) => `process.stderr.write(${JSON.stringify(note)});`).join('\n  ')}
  stderr.write('mue: after\\n');
  return 3;
});
`,
      );
      const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));
      const run = spawnSync(tsx, [script], { encoding: 'utf8' });
      expect(run.stderr).toBe('mue: before\nmue: after\n');
      expect(run.stdout).toBe('result\n');
      expect(run.status).toBe(3);
      // --debug runs in process and shows Dawn's notes.
      expect(spawnSync(tsx, [script, '--debug'], { encoding: 'utf8' }).stderr).toBe(`mue: before\n${NOTES.join('')}mue: after\n`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
