// Data movement: embedding gather, block copies along an axis (slice, concat) and transposes.
// Expects from the wrapper: `alias Element = f32 | f16 | i32;` (the source element type) and
// `alias OutElement = ...;` (the same, except gather, which always produces f32 activations);
// copyBlock also takes vec4s of them.

struct Params {
  size: u32,       // elements written by this dispatch
  // gather: p0 = columns, p1 = table rows, p2 = first table row bound (source[0] is its first
  //         element), p3 = table rows bound (a table beyond the binding limit is bound in chunks)
  // copyBlock: p0 = block length × inner, p1 = source axis × inner, p2 = destination axis × inner,
  //            p3 = source start × inner, p4 = destination start × inner
  // transpose: p0..p3 = output dims (rank padded to 4 in front), p4..p7 = source strides per output dim
  // concatPair: p0 = the first source's block per outer index (its axis length × inner), p1 = the second's
  p0: u32, p1: u32, p2: u32, p3: u32, p4: u32, p5: u32, p6: u32, p7: u32,
}

override WORKGROUP_SIZE: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> source: array<Element>;
@group(0) @binding(2) var<storage, read_write> destination: array<OutElement>;

fn invocation(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
  return (wid.y * groups.x + wid.x) * WORKGROUP_SIZE + lid;
}

// gather has a third binding for the ids; rows outside the table read as zeros (ids are
// validated on the host where they come from: the tokenizer, the model or the beam search).
// One dispatch per bound chunk of rows: each writes the output rows whose id lies in its chunk;
// the zeros of ids outside the table are written by the dispatch of the chunk at row 0.
@group(0) @binding(3) var<storage, read> ids: array<i32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let i = invocation(wid, groups, lid);
  if (i >= params.size) {
    return;
  }
  let columns = params.p0;
  let row = ids[i / columns];
  if (row < 0 || u32(row) >= params.p1) {
    if (params.p2 == 0u) {
      destination[i] = OutElement(0);
    }
    return;
  }
  if (u32(row) < params.p2 || u32(row) - params.p2 >= params.p3) {
    return;
  }
  destination[i] = OutElement(source[(u32(row) - params.p2) * columns + i % columns]);
}

// copyBlock's elements may be vec4s (the wrapper aliases Element and OutElement to vec4 types
// where the block length, the axis lengths and both starts are multiples of 4 elements): a
// software adapter loads per lane, so 4 elements per load is 4× the throughput.
@compute @workgroup_size(WORKGROUP_SIZE)
fn copyBlock(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let i = invocation(wid, groups, lid);
  if (i >= params.size) {
    return;
  }
  let outer = i / params.p0;
  let within = i % params.p0;
  destination[outer * params.p2 + params.p4 + within] = OutElement(source[outer * params.p1 + params.p3 + within]);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let i = invocation(wid, groups, lid);
  if (i >= params.size) {
    return;
  }
  let c3 = i % params.p3;
  let c2 = (i / params.p3) % params.p2;
  let c1 = (i / (params.p3 * params.p2)) % params.p1;
  let c0 = i / (params.p3 * params.p2 * params.p1);
  destination[i] = OutElement(source[c0 * params.p4 + c1 * params.p5 + c2 * params.p6 + c3 * params.p7]);
}

// concatPair: two tensors joined along an axis in one dispatch (a decoding step's key/value cache
// and its new token): each outer index's block of the output is the first source's block, then
// the second's. Elements may be vec4s, as in copyBlock. The second source takes binding 3, which
// is gather's ids elsewhere: no entry point uses both.
@group(0) @binding(3) var<storage, read> second: array<Element>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn concatPair(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let i = invocation(wid, groups, lid);
  if (i >= params.size) {
    return;
  }
  let block = params.p0 + params.p1;
  let outer = i / block;
  let within = i % block;
  if (within < params.p0) {
    destination[i] = OutElement(source[outer * params.p0 + within]);
  } else {
    destination[i] = OutElement(second[outer * params.p1 + within - params.p0]);
  }
}
