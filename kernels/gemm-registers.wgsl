// gemm_registers: the register-blocked GEMM for software adapters (lavapipe / llvmpipe), included
// after gemm.wgsl (whose interface it uses). Expects `enable subgroups;`.
//
// A software adapter runs a subgroup as one SIMD vector and turns every storage read whose address
// differs between lanes into a loop over the lanes (~10 instructions per element), so reads, not
// multiply-adds, bound a GEMM. Workgroup memory does not help (its reads are per-lane loops too,
// and barriers switch coroutines); two things do:
// - Each invocation keeps a (4·ROW_QUADS) × 4 block of the output in registers, so every B element
//   it reads serves 4·ROW_QUADS multiply-adds (as 4×4 matrix products of quads of k).
// - The rows of A are the same for the whole subgroup: instead of every lane reading the same quad
//   (LANES times the reads), lane l reads quad l of a chunk of LANES quads, and subgroupShuffle
//   (one vector permute) hands quad l to every lane in step l.
// Lavapipe (8 lanes, 2 cores): 1024³ at ~43 GFLOPS with ROW_QUADS 4 and 16 invocations per
// workgroup (8 and 32 measured the same), against ~4.3 with gemm_tiled.

// The subgroup size: a chunk of A holds one quad of k per lane (the wrapper passes the adapter's
// fixed subgroup size).
override LANES: u32 = 8u;
// Row quads per workgroup (1 ..= MAX_ROW_QUADS): 4 rows each, all shared by the workgroup.
override ROW_QUADS: u32 = 4u;
// Invocations per workgroup, a multiple of LANES; each computes 4 consecutive columns.
override WORKGROUP_SIZE: u32 = 16u;
const MAX_ROW_QUADS = 4u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn gemm_registers(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(subgroup_invocation_id) lane: u32) {
  if (gate_closed()) {
    return;
  }
  let batch = wid.z;
  let row0 = wid.y * 4u * ROW_QUADS;
  let col0 = (wid.x * WORKGROUP_SIZE + lid) * 4u;
  let quads = (params.k + 3u) / 4u;
  // Lanes past the last column compute the last quad again (their results are not stored), so that
  // every lane takes part in the shuffles.
  let columns = b_columns(batch, min(col0, (params.n - 1u) & ~3u));
  // acc[q][j] = output row row0 + 4q + j, columns col0 .. col0+3.
  var acc: array<mat4x4<f32>, MAX_ROW_QUADS>;
  for (var chunk = 0u; chunk < quads; chunk += LANES) {
    let own_quad = chunk + lane;
    var a_quads: array<vec4<f32>, 4u * MAX_ROW_QUADS>;
    for (var r = 0u; r < 4u * ROW_QUADS; r++) {
      let quad = load_a_quad(batch, min(row0 + r, params.m - 1u), min(own_quad, quads - 1u));
      a_quads[r] = select(vec4<f32>(), quad, own_quad < quads);
    }
    // Steps past the last quad multiply zero quads of A by (clamped, finite) quads of B.
    for (var step = 0u; step < LANES; step++) {
      let b_block = load_b_block(columns, min(chunk + step, quads - 1u));
      for (var q = 0u; q < ROW_QUADS; q++) {
        let a_block = mat4x4<f32>(subgroupShuffle(a_quads[4u * q], step), subgroupShuffle(a_quads[4u * q + 1u], step),
                                  subgroupShuffle(a_quads[4u * q + 2u], step), subgroupShuffle(a_quads[4u * q + 3u], step));
        // Column j of the product: Σ_i A[row j, 4s + i] · B[4s + i, columns].
        acc[q] += b_block * a_block;
      }
    }
  }
  for (var q = 0u; q < ROW_QUADS; q++) {
    for (var j = 0u; j < 4u; j++) {
      let row = row0 + 4u * q + j;
      if (row < params.m && col0 < params.n) {
        store_output_quad(batch, row, col0, acc[q][j]);
      }
    }
  }
}
