// Early-exit decisions (MuE) that stay on the device, and the gate of `unlessAll`.
//   exceeds:       decided[i] = (x[i] > threshold, never for NaN) || flags[i] != 0, as i32 1 / 0
//   where_select:  selected[i] = condition[i / inner] != 0 ? a[i] : b[i]
//   gate_dispatch: the indirect arguments (x, y, z workgroups per gated dispatch) of the dispatches
//                  recorded inside one `unlessAll`: args[base + i] = every done flag set ? 0 : counts[i]
// Expects from the wrapper: `alias Element = f32 | f16 | i32;` (where_select's operands; the other
// entry points do not use it).

struct Params {
  size: u32,  // exceeds: B; where_select: elements; gate_dispatch: argument words (3 per dispatch)
  p0: u32,    // exceeds: the f32 threshold's bits; where_select: elements per decision; gate_dispatch: flags
  p1: u32,    // exceeds: 1 when x equal to the f32 threshold exceeds the caller's (rounded-up) threshold;
              // gate_dispatch: the first argument word of this gate in `args`
  p2: u32,    // exceeds: 1 when `flags` is bound
}

override WORKGROUP_SIZE: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;

fn invocation(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
  return (wid.y * groups.x + wid.x) * WORKGROUP_SIZE + lid;
}

// ---- exceeds -------------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> flags: array<i32>;
@group(0) @binding(3) var<storage, read_write> decided: array<i32>;

// The threshold is a real number t given as its f32 rounding t32; x > t holds exactly when
// x > t32, or x == t32 where t32 was rounded up from t (no f32 lies strictly between t and t32).
// NaN is tested on the bits: shader compilers may assume floats are never NaN.
@compute @workgroup_size(WORKGROUP_SIZE)
fn exceeds(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let i = invocation(wid, groups, lid);
  if (i >= params.size) {
    return;
  }
  let v = x[i];
  let t = bitcast<f32>(params.p0);
  let isNan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
  var hit = !isNan && (v > t || (params.p1 != 0u && v == t));
  if (params.p2 != 0u && flags[i] != 0) {
    hit = true;
  }
  decided[i] = select(0, 1, hit);
}

// ---- where_select -------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> condition: array<i32>;
@group(0) @binding(2) var<storage, read> a: array<Element>;
@group(0) @binding(3) var<storage, read> b: array<Element>;
@group(0) @binding(4) var<storage, read_write> selected: array<Element>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn where_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let i = invocation(wid, groups, lid);
  if (i >= params.size) {
    return;
  }
  if (condition[i / params.p0] != 0) {
    selected[i] = a[i];
  } else {
    selected[i] = b[i];
  }
}

// ---- gate_dispatch ------------------------------------------------------------------------------
// `counts` is a slice of the submission's parameter buffer; `args` has INDIRECT usage and is read
// by the gated dispatches that follow (never bound by them).

@group(0) @binding(1) var<storage, read> done: array<i32>;
@group(0) @binding(2) var<storage, read> counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> args: array<u32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn gate_dispatch(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let i = invocation(wid, groups, lid);
  if (i >= params.size) {
    return;
  }
  var allDone = true;
  for (var f = 0u; f < params.p0; f++) {
    if (done[f] == 0) {
      allDone = false;
      break;
    }
  }
  args[params.p1 + i] = select(counts[i], 0u, allDone);
}
