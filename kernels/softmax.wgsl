// Softmax and log-softmax over the last dimension: one workgroup per row, f32 throughout.
// Subtracting the row maximum keeps exp from overflowing without changing the result:
//   softmax:     exp(x − max) / Σ exp(x − max)
//   log-softmax: (x − max) − log Σ exp(x − max)
// A row of only −∞ gives NaN, as in PyTorch and the CPU backend.
// Expects from the wrapper: `alias Element = f32 | f16;` (the input) and an included reduction
// file (`reduce-subgroups` or `reduce-workgroup-memory`: workgroupMax, workgroupSum).

struct Params {
  rows: u32,
  cols: u32,
}

override WORKGROUP_SIZE: u32 = 256;
override LOG: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<Element>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

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

  // Every invocation starts from an element of the row (the first, where it has none of its own).
  var largest = f32(x[base + min(lid, cols - 1u)]);
  for (var c = lid + WORKGROUP_SIZE; c < cols; c += WORKGROUP_SIZE) {
    largest = max(largest, f32(x[base + c]));
  }
  let rowMax = workgroupMax(largest, lid);

  var sum = 0.0;
  for (var c = lid; c < cols; c += WORKGROUP_SIZE) {
    sum += exp(f32(x[base + c]) - rowMax);
  }
  let total = workgroupSum(sum, lid);

  if (LOG) {
    let logTotal = log(total);
    for (var c = lid; c < cols; c += WORKGROUP_SIZE) {
      out[base + c] = f32(x[base + c]) - rowMax - logTotal;
    }
  } else {
    let inverseTotal = 1.0 / total;
    for (var c = lid; c < cols; c += WORKGROUP_SIZE) {
      out[base + c] = exp(f32(x[base + c]) - rowMax) * inverseTotal;
    }
  }
}
