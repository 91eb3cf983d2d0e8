// Activation functions shared by kernel families (included by elementwise, matmul and conv2d).
// No bindings and no entry points: a wrapper lists this file in its variant's `include`.

// erfc(z) for z ≥ 0 with relative error < 1.2e-7 (the Chebyshev fit `erfcc` of Numerical
// Recipes). Relative accuracy matters for GELU's negative tail, where 1 + erf(x) would cancel.
fn erfcNonNegative(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
    + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(poly - z * z);
}

// Exact GELU, x·Φ(x) in the erf form (as fairseq computes it), with Φ from the tail probability.
fn gelu(x: f32) -> f32 {
  let tail = 0.5 * erfcNonNegative(abs(x) * 0.7071067811865476);
  return x * select(1.0 - tail, tail, x < 0.0);
}

// The fused epilogue activation of matmul and conv2d: 0 none, 1 ReLU, 2 GELU (ACTIVATION in ops/matmul.ts).
fn activate(x: f32, activation: u32) -> f32 {
  switch activation {
    case 1u: { return max(x, 0.0); }
    case 2u: { return gelu(x); }
    default: { return x; }
  }
}
