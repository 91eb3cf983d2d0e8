/** Parsing the benchmarks' command-line flags, with the flag named in every error. */

export function positiveInteger(value: string, flag: string, allowZero = false): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) {
    throw new Error(`${flag} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${value}`);
  }
  return n;
}

/** A comma-separated list of positive integers. */
export function positiveIntegers(value: string, flag: string): number[] {
  return value.split(',').map((part) => {
    const n = Number(part);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected positive integers separated by commas, got ${value}`);
    return n;
  });
}

export function oneOf<T extends string>(value: string, flag: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`${flag}: expected ${allowed.join(' or ')}, got ${value}`);
  return value as T;
}

/** A comma-separated list of values from `allowed`. */
export function choices<T extends string>(value: string, allowed: readonly T[], flag: string): T[] {
  return value.split(',').map((part) => {
    if (!allowed.includes(part as T)) throw new Error(`${flag}: ${part} is not one of ${allowed.join(', ')}`);
    return part as T;
  });
}
