// gemm_registers: the register-blocked GEMM for software adapters (lavapipe / llvmpipe), included
// after gemm.wgsl (whose interface it uses) and after one of the two files that say how the rows
// of A reach every lane: `gemm-registers-shuffle.wgsl` (subgroups) or `gemm-registers-uniform.wgsl`
// (adapters without subgroups, e.g. Deno's and Firefox's WebGPU on lavapipe). Each defines the
// entry point `gemm_registers`, which calls `gemm_registers_block` below, and `share_a_quad`.
//
// A software adapter runs a subgroup as one SIMD vector and turns every storage read whose address
// differs between lanes into a loop over the lanes (~10 instructions per element), so reads, not
// multiply-adds, bound a GEMM. Workgroup memory does not help (its reads are per-lane loops too,
// and barriers switch coroutines); two things do:
// - Each invocation keeps a (4·ROW_QUADS) × 4 block of the output in registers, so every B element
//   it reads serves 4·ROW_QUADS multiply-adds (as 4×4 matrix products of quads of k).
// - The rows of A are the same for the whole workgroup. With subgroups, instead of every lane
//   reading the same quad, lane l reads quad l of a chunk of LANES quads and subgroupShuffle (one
//   vector permute) hands quad l to every lane in step l. Without them (LANES = 1), every lane
//   reads the same address, which the compiler sees as uniform: one scalar read, broadcast.
// Lavapipe (8 lanes, 2 cores): 1024³ at ~43 GFLOPS with ROW_QUADS 4 and 16 invocations per
// workgroup (8 and 32 measured the same), against ~4.3 with gemm_tiled.

// Quads of k per chunk of A, one per lane: the adapter's fixed subgroup size with shuffles, else 1.
override LANES: u32 = 8u;
// Row quads per workgroup (1 ..= MAX_ROW_QUADS): 4 rows each, all shared by the workgroup.
override ROW_QUADS: u32 = 4u;
// Invocations per workgroup, a multiple of LANES; each computes 4 consecutive columns.
override WORKGROUP_SIZE: u32 = 16u;
const MAX_ROW_QUADS = 4u;

// The output block of invocation `lid` of workgroup `wid`; `lane` is its place in the chunks of A.
fn gemm_registers_block(wid: vec3<u32>, lid: u32, lane: u32) {
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
        let a_block = mat4x4<f32>(share_a_quad(a_quads[4u * q], step), share_a_quad(a_quads[4u * q + 1u], step),
                                  share_a_quad(a_quads[4u * q + 2u], step), share_a_quad(a_quads[4u * q + 3u], step));
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
