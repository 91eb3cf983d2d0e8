// gemm_registers with the rows of A shared through subgroup shuffles (see gemm-registers.wgsl).
// Expects `enable subgroups;` (left out for naga, which has the builtins but not the directive)
// and LANES = the adapter's fixed subgroup size.

// Quad `step` of the chunk, read by lane `step`, handed to every lane.
fn share_a_quad(own_quad: vec4<f32>, step: u32) -> vec4<f32> {
  return subgroupShuffle(own_quad, step);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gemm_registers(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(subgroup_invocation_id) lane: u32) {
  if (gate_closed()) {
    return;
  }
  gemm_registers_block(wid, lid, lane);
}
