/** Plain-text tables for the benchmarks: columns padded to their widest cell, numbers right-aligned. */
export function printAligned(header: readonly string[], rows: readonly (readonly string[])[], numericColumns: ReadonlySet<number>): void {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => (row[c] ?? '').length)));
  const line = (row: readonly string[]): string =>
    row.map((cell, c) => (numericColumns.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd();
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
}
