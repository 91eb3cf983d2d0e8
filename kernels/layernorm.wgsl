// Layer normalisation over the last dimension, f32 accumulation, plus an optional residual:
//   out = (x − mean) / sqrt(var + eps) · weight + bias  (+ residual, a pre-norm block's sum)
// Two passes for stability (the mean, then the mean squared deviation from it; a one-pass
// E[x²] − E[x]² loses the variance to cancellation when |mean| ≫ std). Everything is computed
// relative to the row's first element x₀: x − x₀ is exact when x is near x₀, and the mean of those
// differences is small, so when |mean| ≫ std neither the mean's sum nor its f32 representation
// (an ulp of 300 is 3e-5) costs precision relative to the std.
//
// Two layouts of the same arithmetic:
// - `main` (GPUs): one workgroup per row, its invocations striding over the columns and summing
//   through workgroup reductions.
// - `row_per_invocation` (software adapters): one invocation per row, walking it by vec4s. A
//   software rasteriser runs a workgroup's invocations as SIMD chunks on one core, so a workgroup
//   per row pays a chunk switch at every barrier for a few hundred elements (lavapipe: 0.9 ms for
//   [268, 256]); rows in lanes need no barrier.
// Expects from the wrapper: `alias WeightType = f32 | f16;`, `alias BiasType = f32 | f16;` and an
// included reduction file (`reduce-subgroups` or `reduce-workgroup-memory`: workgroupSum).

struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
}

override WORKGROUP_SIZE: u32 = 256;
override HAS_RESIDUAL: bool = false;
// cols % 4 == 0: each row starts on a quad boundary (row_per_invocation reads vec4s).
override COLS_ALIGNED: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
// Bound as vec4s (pooled buffers are multiples of 16 bytes); `main` reads elements.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weight: array<WeightType>;
@group(0) @binding(3) var<storage, read> bias: array<BiasType>;
@group(0) @binding(4) var<storage, read> residual: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

fn x_at(i: u32) -> f32 {
  return x[i / 4u][i % 4u];
}

// Column c normalised, from its deviation from x₀ and the row's statistics (before the residual).
fn normalized(c: u32, deviationFromFirst: f32, meanFromFirst: f32, inverseStd: f32) -> f32 {
  return (deviationFromFirst - meanFromFirst) * inverseStd * f32(weight[c]) + f32(bias[c]);
}

fn residual_at(i: u32) -> f32 {
  if (HAS_RESIDUAL) {
    return residual[i / 4u][i % 4u];
  }
  return 0.0;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let row = wid.y * groups.x + wid.x;
  if (row >= params.rows) {
    return;
  }
  let cols = params.cols;
  let base = row * cols;

  let first = x_at(base);
  var sum = 0.0;
  for (var c = lid; c < cols; c += WORKGROUP_SIZE) {
    sum += x_at(base + c) - first;
  }
  let meanFromFirst = workgroupSum(sum, lid) / f32(cols);

  var squares = 0.0;
  for (var c = lid; c < cols; c += WORKGROUP_SIZE) {
    let deviation = (x_at(base + c) - first) - meanFromFirst;
    squares += deviation * deviation;
  }
  let inverseStd = inverseSqrt(workgroupSum(squares, lid) / f32(cols) + params.eps);

  for (var c = lid; c < cols; c += WORKGROUP_SIZE) {
    let i = base + c;
    out[i / 4u][i % 4u] = normalized(c, x_at(i) - first, meanFromFirst, inverseStd) + residual_at(i);
  }
}

// Elements 4q .. 4q + 3 of the row at `base` (aligned rows: one vec4; else one element at a time,
// zeros past the row's end).
fn row_quad(base: u32, q: u32) -> vec4<f32> {
  if (COLS_ALIGNED) {
    return x[base / 4u + q];
  }
  var quad = vec4<f32>();
  for (var i = 0u; i < 4u; i++) {
    if (4u * q + i < params.cols) {
      quad[i] = x_at(base + 4u * q + i);
    }
  }
  return quad;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn row_per_invocation(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let row = (wid.y * groups.x + wid.x) * WORKGROUP_SIZE + lid;
  if (row >= params.rows) {
    return;
  }
  let cols = params.cols;
  let base = row * cols;
  let quads = (cols + 3u) / 4u;
  // Lanes past the row's end hold x₀ in the sums below, so they contribute 0.
  let first = x_at(base);
  let inRow = vec4<u32>(0u, 1u, 2u, 3u);

  var sum = vec4<f32>();
  for (var q = 0u; q < quads; q++) {
    let valid = 4u * q + inRow < vec4<u32>(cols);
    sum += select(vec4<f32>(), row_quad(base, q) - first, valid);
  }
  let meanFromFirst = (sum.x + sum.y + sum.z + sum.w) / f32(cols);

  var squares = vec4<f32>();
  for (var q = 0u; q < quads; q++) {
    let valid = 4u * q + inRow < vec4<u32>(cols);
    let deviation = select(vec4<f32>(), (row_quad(base, q) - first) - meanFromFirst, valid);
    squares += deviation * deviation;
  }
  let inverseStd = inverseSqrt((squares.x + squares.y + squares.z + squares.w) / f32(cols) + params.eps);

  for (var q = 0u; q < quads; q++) {
    let deviations = row_quad(base, q) - first;
    if (COLS_ALIGNED) {
      var values: vec4<f32>;
      for (var i = 0u; i < 4u; i++) {
        values[i] = normalized(4u * q + i, deviations[i], meanFromFirst, inverseStd);
      }
      if (HAS_RESIDUAL) {
        values += residual[base / 4u + q];
      }
      out[base / 4u + q] = values;
    } else {
      for (var i = 0u; i < 4u; i++) {
        let c = 4u * q + i;
        if (c < cols) {
          let at = base + c;
          out[at / 4u][at % 4u] = normalized(c, deviations[i], meanFromFirst, inverseStd) + residual_at(at);
        }
      }
    }
  }
}
