// OFA's relative position bias, heads first (ofa-arch.md §4.6): a gather of per-head biases by
// relative-position index, its transpose to [H, Tq, Tk] and the sum with the absolute bias in one
// pass:
//   out[h, e] = table[index[e], h] (+ base[h, e])   for the Tq·Tk positions e of each head h.
// Four consecutive elements per invocation, so the output and the base move as vec4s (a software
// adapter loads and stores per lane: a vec4 is 4 elements for the price of one); the index and
// the table are read per element. Quads past the last element lie in the padding of the pooled
// buffer or of the bound range. Indices outside the table read 0 (they come from the position
// tables, checked on the host).
// Expects from the wrapper: `alias TableType = f32 | f16;`.

struct Params {
  quads: u32,
  // The table's row length (all heads; a chunk of heads may be written).
  heads: u32,
  // Elements per head: Tq·Tk.
  per_head: u32,
  table_rows: u32,
  // The head of this dispatch's first output element.
  first_head: u32,
  has_base: u32,
  // Elements written by this dispatch.
  elements: u32,
}

override WORKGROUP_SIZE: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<TableType>;
@group(0) @binding(2) var<storage, read> index: array<i32>;
@group(0) @binding(3) var<storage, read> base: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let quad = (wid.y * groups.x + wid.x) * WORKGROUP_SIZE + lid;
  if (quad >= params.quads) {
    return;
  }
  var value = vec4<f32>();
  if (params.has_base != 0u) {
    value = base[quad];
  }
  for (var c = 0u; c < 4u; c++) {
    let element = 4u * quad + c;
    let id = index[element % params.per_head];
    if (element < params.elements && id >= 0 && u32(id) < params.table_rows) {
      value[c] += f32(table[u32(id) * params.heads + params.first_head + element / params.per_head]);
    }
  }
  out[quad] = value;
}
