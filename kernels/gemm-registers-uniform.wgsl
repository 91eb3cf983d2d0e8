// gemm_registers without subgroups (see gemm-registers.wgsl): LANES = 1, so every lane reads the
// same quad of A at the same (uniform) address.

fn share_a_quad(own_quad: vec4<f32>, step: u32) -> vec4<f32> {
  return own_quad;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gemm_registers(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  gemm_registers_block(wid, lid, 0u);
}
