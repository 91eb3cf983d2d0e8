// Layer normalisation over the last dimension: one workgroup per row, f32 accumulation, two
// passes for stability (the mean, then the mean squared deviation from it; a one-pass
// E[x²] − E[x]² loses the variance to cancellation when |mean| ≫ std). Everything is computed
// relative to the row's first element x₀: x − x₀ is exact when x is near x₀, and the mean of those
// differences is small, so when |mean| ≫ std neither the mean's sum nor its f32 representation
// (an ulp of 300 is 3e-5) costs precision relative to the std.
// Expects from the wrapper: `alias WeightType = f32 | f16;`, `alias BiasType = f32 | f16;` and an
// included reduction file (`reduce-subgroups` or `reduce-workgroup-memory`: workgroupSum).

struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
}

override WORKGROUP_SIZE: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<WeightType>;
@group(0) @binding(3) var<storage, read> bias: array<BiasType>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

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

  let first = x[base];
  var sum = 0.0;
  for (var c = lid; c < cols; c += WORKGROUP_SIZE) {
    sum += x[base + c] - first;
  }
  let meanFromFirst = workgroupSum(sum, lid) / f32(cols);

  var squares = 0.0;
  for (var c = lid; c < cols; c += WORKGROUP_SIZE) {
    let deviation = (x[base + c] - first) - meanFromFirst;
    squares += deviation * deviation;
  }
  let inverseStd = inverseSqrt(workgroupSum(squares, lid) / f32(cols) + params.eps);

  for (var c = lid; c < cols; c += WORKGROUP_SIZE) {
    let deviation = (x[base + c] - first) - meanFromFirst;
    out[base + c] = deviation * inverseStd * f32(weight[c]) + f32(bias[c]);
  }
}
