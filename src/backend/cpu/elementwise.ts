/** Elementwise ops and the activations that matmul and conv2d apply in their epilogues. */
import type { Activation } from '../backend.js';
import { erfc } from './erf.js';

/**
 * Exact GELU x·Φ(x). Φ(x) = erfc(−x/√2)/2 rather than (1 + erf(x/√2))/2: the latter cancels for
 * negative x and loses the tiny outputs there (gelu(−10) ≈ −7.6e-23).
 */
export function gelu(x: number): number {
  return 0.5 * x * erfc(-x * Math.SQRT1_2);
}

/** ReLU that propagates NaN, like PyTorch. */
export function relu(x: number): number {
  return Math.max(x, 0);
}

export function activate(x: number, activation: Activation): number {
  switch (activation) {
    case 'none':
      return x;
    case 'relu':
      return relu(x);
    case 'gelu':
      return gelu(x);
  }
}

/** `combine(a[i], b[i mod inner])`: b repeats over a's leading dimensions. */
export function broadcastBinary(
  a: Float32Array,
  b: Float32Array,
  inner: number,
  combine: (x: number, y: number) => number,
): Float32Array {
  const out = new Float32Array(a.length);
  for (let start = 0; start < a.length; start += inner) {
    for (let j = 0; j < inner; j++) out[start + j] = combine(a[start + j]!, b[j]!);
  }
  return out;
}

export function map(x: Float32Array, f: (value: number) => number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(x[i]!);
  return out;
}
