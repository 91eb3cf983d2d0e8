// The GEMM core shared by matmul and conv2d, accumulated in f32:
//   out[batch, row, col] = epilogue(Σ_k A[batch, row, k] · B[batch, k, col])
//   epilogue(x) = activate(x + bias) + residual   (matmul: bias per column)
//               = activate(x + bias + residual)   (conv2d: bias per row, i.e. per output channel)
// This file holds the epilogue and the workgroup-memory kernel `gemm_tiled` (GPUs);
// `gemm-registers.wgsl` holds the register-blocked kernel for software adapters.
//
// The including kernel file (matmul.wgsl, conv2d.wgsl, attention-operands.wgsl) provides the operands:
//   struct Params { m: u32, n: u32, k: u32, ... }  and  @binding(0) var<uniform> params: Params
//   bindings 1 and 2 (A and B), bound as arrays of vec4, and their reads (as f32):
//   a_at(i) -> f32, a_quad_at(q) -> vec4<f32>      element i, and elements 4q .. 4q+3, of binding 1
//   b_at(i) -> f32, b_quad_at(q) -> vec4<f32>      the same of binding 2
//   and these loaders, always called with row < m, col < n, k < K (a_row_quad and b_block_at
//   below serve the quad loaders):
//   load_a(batch, row, k) -> f32
//   load_a_quad(batch, row, kq) -> vec4<f32>       A[row, 4kq .. 4kq+3], zero past K
//   load_b(batch, k, col) -> f32
//   struct BColumns, b_columns(batch, col) -> BColumns   per-invocation set-up for columns col .. col+3
//   load_b_block(columns, kq) -> mat4x4<f32>        column j = B[4kq + j, col .. col+3]; finite past K and N
// Expects from the wrapper: `alias BiasType = f32 | f16;` and `activation.wgsl` included.

// B is stored [N, K] (k contiguous, like PyTorch's Linear.weight) rather than [K, N].
override TRANSPOSE_B: bool = false;
// Epilogue: ACTIVATION as in activation.wgsl; absent operands are bound to placeholders.
override ACTIVATION: u32 = 0u;
override HAS_BIAS: bool = false;
override BIAS_PER_ROW: bool = false;
override HAS_RESIDUAL: bool = false;
override RESIDUAL_BEFORE_ACTIVATION: bool = false;
// Output layout: batch entry g · OUTPUT_GROUPS + h writes its rows into columns h·N .. (h+1)·N of
// out [batch / OUTPUT_GROUPS, M, OUTPUT_GROUPS · N] (attention's heads); 1: out [batch, M, N].
override OUTPUT_GROUPS: u32 = 1u;

@group(0) @binding(3) var<storage, read> bias: array<BiasType>;
// Like out, bound as vec4s (pooled buffers are multiples of 16 bytes).
@group(0) @binding(4) var<storage, read> residual: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

fn output_index(batch: u32, row: u32, col: u32) -> u32 {
  return ((batch / OUTPUT_GROUPS * params.m + row) * OUTPUT_GROUPS + batch % OUTPUT_GROUPS) * params.n + col;
}

// The epilogue of one element, given its residual (0 without one).
fn finish(sum: f32, row: u32, col: u32, r: f32) -> f32 {
  var x = sum;
  if (HAS_BIAS) {
    x += f32(bias[select(col, row, BIAS_PER_ROW)]);
  }
  if (HAS_RESIDUAL && RESIDUAL_BEFORE_ACTIVATION) {
    x += r;
  }
  x = activate(x, ACTIVATION);
  if (HAS_RESIDUAL && !RESIDUAL_BEFORE_ACTIVATION) {
    x += r;
  }
  return x;
}

// Elements 4kq .. 4kq + 3 of the row of A that starts at element `start`, zero past K: one read
// where `aligned` (the row starts on a quad boundary and K % 4 == 0), else element by element.
fn a_row_quad(start: u32, kq: u32, aligned: bool) -> vec4<f32> {
  let first = start + 4u * kq;
  if (aligned) {
    return a_quad_at(first / 4u);
  }
  // Reads stay on the row (the last quad may be partial); elements past its end are zero.
  let last = params.k - 1u - 4u * kq;
  var quad: vec4<f32>;
  for (var i = 0u; i < 4u; i++) {
    quad[i] = select(0.0, a_at(first + min(i, last)), i <= last);
  }
  return quad;
}

// B[4kq + j, c] (k clamped to K − 1) for the 4 columns c whose element k = 0 lies at `starts[c]`,
// as column j of the block. With TRANSPOSE_B a column runs along k (4 quads of columns, then
// transposed), else rows lie `row_stride` apart. `aligned`: every quad read starts on a quad
// boundary and is one read (without TRANSPOSE_B the 4 columns are then consecutive); otherwise
// elements are read alone.
fn b_block_at(starts: vec4<u32>, kq: u32, row_stride: u32, aligned: bool) -> mat4x4<f32> {
  let k0 = 4u * kq;
  let last_k = params.k - 1u;
  var block: mat4x4<f32>;
  if (TRANSPOSE_B) {
    for (var c = 0u; c < 4u; c++) {
      if (aligned) {
        block[c] = b_quad_at((starts[c] + k0) / 4u);
      } else {
        for (var i = 0u; i < 4u; i++) {
          block[c][i] = b_at(starts[c] + min(k0 + i, last_k));
        }
      }
    }
    return transpose(block);
  }
  for (var j = 0u; j < 4u; j++) {
    let row = min(k0 + j, last_k) * row_stride;
    if (aligned) {
      block[j] = b_quad_at((starts[0] + row) / 4u);
    } else {
      for (var c = 0u; c < 4u; c++) {
        block[j][c] = b_at(starts[c] + row);
      }
    }
  }
  return block;
}

// Columns col .. col + 3 of one output row (col a multiple of 4), those before N. A software
// adapter stores each element whose address differs between lanes alone, in a loop over the lanes:
// where N % 4 == 0 the 4 columns are one aligned vec4 and one store.
fn store_output_quad(batch: u32, row: u32, col: u32, sums: vec4<f32>) {
  let i = output_index(batch, row, col);
  if (params.n % 4u == 0u && col + 3u < params.n) {
    var r = vec4<f32>();
    if (HAS_RESIDUAL) {
      r = residual[i / 4u];
    }
    var x: vec4<f32>;
    for (var c = 0u; c < 4u; c++) {
      x[c] = finish(sums[c], row, col + c, r[c]);
    }
    out[i / 4u] = x;
    return;
  }
  for (var c = 0u; c < 4u; c++) {
    if (col + c < params.n) {
      let at = i + c;
      var r = 0.0;
      if (HAS_RESIDUAL) {
        r = residual[at / 4u][at % 4u];
      }
      out[at / 4u][at % 4u] = finish(sums[c], row, col + c, r);
    }
  }
}

// ---- gemm_tiled: workgroup-memory tiling -------------------------------------------------------
// A workgroup of THREADS_X × THREADS_Y invocations computes a (4·THREADS_Y) × (4·THREADS_X) tile of
// one batch entry, each invocation a 4×4 block, stepping through K by TILE_K: the workgroup first
// copies the A and B tiles to workgroup memory (every element read from global memory once), then
// each invocation reads its 4 rows and 4 columns per k as two vec4s.

override THREADS_X: u32 = 16u;
override THREADS_Y: u32 = 16u;
override TILE_K: u32 = 16u;

// The tile lengths are named overrides, not expressions in the array types: naga 29 (Deno's
// WebGPU) turns an expression size into an anonymous override, after which its pipeline-constant
// pass loses count of the named overrides declared later (conv2d's KERNEL_H…) and panics
// (handlevec.rs:66; repro in .scratch/naga-repro.wgsl). Derived values, not set by the wrappers.
override TILE_A_LENGTH: u32 = TILE_K * THREADS_Y;
override TILE_B_LENGTH: u32 = TILE_K * THREADS_X;

// k-major: tile_a[k * THREADS_Y + r / 4][r % 4] holds A[row0 + r, k0 + k]; tile_b likewise by column.
var<workgroup> tile_a: array<vec4<f32>, TILE_A_LENGTH>;
var<workgroup> tile_b: array<vec4<f32>, TILE_B_LENGTH>;

@compute @workgroup_size(THREADS_X, THREADS_Y)
fn gemm_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let batch = wid.z;
  let tile_rows = 4u * THREADS_Y;
  let tile_cols = 4u * THREADS_X;
  let row0 = wid.y * tile_rows;
  let col0 = wid.x * tile_cols;
  let threads = THREADS_X * THREADS_Y;
  // acc[j] = output row 4·local.y + j, columns 4·local.x .. +3.
  var acc = mat4x4<f32>();
  for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
    // k runs fastest through A's tile so that neighbouring invocations read neighbouring addresses.
    for (var e = lid; e < TILE_K * tile_rows; e += threads) {
      let kk = e % TILE_K;
      let r = e / TILE_K;
      var value = 0.0;
      if (row0 + r < params.m && k0 + kk < params.k) {
        value = load_a(batch, row0 + r, k0 + kk);
      }
      tile_a[kk * THREADS_Y + r / 4u][r % 4u] = value;
    }
    // Likewise k runs fastest through B's tile when B is stored [N, K], columns otherwise.
    for (var e = lid; e < TILE_K * tile_cols; e += threads) {
      let kk = select(e / tile_cols, e % TILE_K, TRANSPOSE_B);
      let c = select(e % tile_cols, e / TILE_K, TRANSPOSE_B);
      var value = 0.0;
      if (col0 + c < params.n && k0 + kk < params.k) {
        value = load_b(batch, k0 + kk, col0 + c);
      }
      tile_b[kk * THREADS_X + c / 4u][c % 4u] = value;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TILE_K; kk++) {
      let a = tile_a[kk * THREADS_Y + local.y];
      let b = tile_b[kk * THREADS_X + local.x];
      acc += mat4x4<f32>(b * a.x, b * a.y, b * a.z, b * a.w);
    }
    workgroupBarrier();
  }
  for (var j = 0u; j < 4u; j++) {
    let row = row0 + 4u * local.y + j;
    let col = col0 + 4u * local.x;
    if (row < params.m && col < params.n) {
      store_output_quad(batch, row, col, acc[j]);
    }
  }
}
