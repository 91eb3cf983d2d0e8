// Selection by per-sample flags, and the gate of `unlessAll`.
//   where_select: selected[i] = condition[i / inner] != 0 ? a[i] : b[i]
//   close_gate:   the gate of one `unlessAll` (see gate.wgsl): closing = every done flag is set ? 1 : 0
// Expects from the wrapper: `alias Element = f32 | f16 | i32;` (where_select's operands).

struct Params {
  size: u32,   // where_select: elements; close_gate: done flags
  inner: u32,  // where_select: elements per decision
}

override WORKGROUP_SIZE: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;

// ---- where_select -------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> condition: array<i32>;
@group(0) @binding(2) var<storage, read> a: array<Element>;
@group(0) @binding(3) var<storage, read> b: array<Element>;
@group(0) @binding(4) var<storage, read_write> selected: array<Element>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn where_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let i = (wid.y * groups.x + wid.x) * WORKGROUP_SIZE + lid;
  if (i >= params.size) {
    return;
  }
  if (condition[i / params.inner] != 0) {
    selected[i] = a[i];
  } else {
    selected[i] = b[i];
  }
}

// ---- close_gate ---------------------------------------------------------------------------------
// `closing` is the gate's word in the submission's gate buffer, which the gated dispatches that
// follow bind as a uniform.

@group(0) @binding(1) var<storage, read> done: array<i32>;
@group(0) @binding(2) var<storage, read_write> closing: u32;

@compute @workgroup_size(1)
fn close_gate() {
  if (gate_closed()) {
    return;
  }
  var closed = 1u;
  for (var f = 0u; f < params.size; f++) {
    if (done[f] == 0) {
      closed = 0u;
      break;
    }
  }
  closing = closed;
}
