/** Numeric comparison of whole arrays, reporting where they differ most. */

/**
 * The largest |a[i] − b[i]|. Equal values (the same infinity, NaN against NaN) differ by 0; a NaN
 * against a number makes the result NaN, so it cannot pass a `<=` check by accident.
 */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: lengths differ (${a.length} vs ${b.length})`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y || (Number.isNaN(x) && Number.isNaN(y))) continue;
    const diff = Math.abs(x - y);
    if (Number.isNaN(diff)) return NaN;
    max = Math.max(max, diff);
  }
  return max;
}

export interface Tolerance {
  /** Absolute tolerance (default 0). */
  atol?: number;
  /** Relative tolerance, scaled by |expected| (default 0). */
  rtol?: number;
}

/**
 * How far one element is outside its tolerance |actual − expected| ≤ atol + rtol·|expected|, as a
 * multiple of that tolerance: ≤ 1 passes. Equal values (infinities included) and NaN against NaN
 * match exactly; any other NaN or infinity is an infinite excess.
 */
function excess(actual: number, expected: number, atol: number, rtol: number): number {
  if (actual === expected || (Number.isNaN(actual) && Number.isNaN(expected))) return 0;
  const diff = Math.abs(actual - expected);
  if (!Number.isFinite(diff)) return Infinity;
  const allowed = atol + rtol * Math.abs(expected);
  return allowed === 0 ? Infinity : diff / allowed;
}

/** Throws, naming the worst element, unless every element is within tolerance (numpy's `allclose` rule). */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 0, rtol = 0 }: Tolerance,
  label: string,
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: ${actual.length} values, expected ${expected.length}`);
  }
  let failures = 0;
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const e = excess(actual[i]!, expected[i]!, atol, rtol);
    if (e <= 1) continue;
    failures++;
    if (e > worstExcess) {
      worst = i;
      worstExcess = e;
    }
  }
  if (failures === 0) return;
  throw new Error(
    `${label}: ${failures} of ${actual.length} values differ beyond atol ${atol}, rtol ${rtol}; ` +
      `worst at index ${worst}: got ${actual[worst]}, expected ${expected[worst]} ` +
      `(|diff| ${Math.abs(actual[worst]! - expected[worst]!)}); max |diff| ${maxAbsDiff(actual, expected)}`,
  );
}
