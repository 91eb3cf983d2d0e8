// Attention's operands for the GEMM core (gemm.wgsl, included before this file): one GEMM per
// (sample, head), batch entry = sample · heads + head, each operand a strided view of a larger
// tensor, so that q, k and v are read in their [B, T, H·dh] layout without transposes:
//   element (row, col) of entry (s, h) = offset + s·sample_stride + h·head_stride + row·row_stride + col
// (rows of A are M, of B are N when TRANSPOSE_B, else K; a sample stride of 0 shares the operand;
// the offsets start a chunk of samples where the wrapper splits a batch whose scores exceed a binding).
//   scores  S = q·kᵀ:  A = q [B, Tq, H·dh] (row stride H·dh, head stride dh), K = dh;
//                      B = k [B or 1, Tk, H·dh] with TRANSPOSE_B; N = Tk rounded up to 4, the
//                      columns past Tk repeat key Tk − 1 (b_columns_valid) and are masked later;
//   output  O = P·v:   A = P [B·H, Tq, Tk rounded up to 4] (zero past Tk), K = Tk;
//                      B = v [B or 1, Tk, H·dh]; the core's OUTPUT_GROUPS = H writes O into
//                      [B, Tq, H·dh].
// Operands are bound as arrays of vec4 (pooled buffers are multiples of 16 bytes): with A_ALIGNED
// (B_ALIGNED) every quad of 4 consecutive elements along A's k (B's contiguous axis) starts on a
// 4-element boundary and is one read; otherwise elements are read alone.

struct Params {
  m: u32,
  n: u32,
  k: u32,
  heads: u32,
  a_sample_stride: u32,
  a_head_stride: u32,
  a_row_stride: u32,
  b_sample_stride: u32,
  b_head_stride: u32,
  b_row_stride: u32,
  // Columns of B that exist (N may exceed them: later columns repeat the last).
  b_columns_valid: u32,
  a_offset: u32,
  b_offset: u32,
}

override A_ALIGNED: bool = false;
override B_ALIGNED: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;

fn a_at(i: u32) -> f32 {
  return a[i / 4u][i % 4u];
}

fn a_quad_at(q: u32) -> vec4<f32> {
  return a[q];
}

fn b_at(i: u32) -> f32 {
  return b[i / 4u][i % 4u];
}

fn b_quad_at(q: u32) -> vec4<f32> {
  return b[q];
}

fn a_start(batch: u32, row: u32) -> u32 {
  return params.a_offset + (batch / params.heads) * params.a_sample_stride + (batch % params.heads) * params.a_head_stride + row * params.a_row_stride;
}

// Where B's row `row` (a column of the product when TRANSPOSE_B, else a step of k) starts.
fn b_start(batch: u32, row: u32) -> u32 {
  return params.b_offset + (batch / params.heads) * params.b_sample_stride + (batch % params.heads) * params.b_head_stride + row * params.b_row_stride;
}

fn load_a(batch: u32, row: u32, k: u32) -> f32 {
  return a_at(a_start(batch, row) + k);
}

fn load_a_quad(batch: u32, row: u32, kq: u32) -> vec4<f32> {
  return a_row_quad(a_start(batch, row), kq, A_ALIGNED);
}

fn load_b(batch: u32, k: u32, col: u32) -> f32 {
  let column = min(col, params.b_columns_valid - 1u);
  if (TRANSPOSE_B) {
    return b_at(b_start(batch, column) + k);
  }
  return b_at(b_start(batch, k) + column);
}

// Where each of the 4 columns starts in b (the element of k = 0); columns past the valid ones
// repeat the last.
struct BColumns {
  start: vec4<u32>,
}

fn b_columns(batch: u32, col: u32) -> BColumns {
  var start: vec4<u32>;
  for (var c = 0u; c < 4u; c++) {
    let column = min(col + c, params.b_columns_valid - 1u);
    start[c] = select(b_start(batch, 0u) + column, b_start(batch, column), TRANSPOSE_B);
  }
  return BColumns(start);
}

fn load_b_block(columns: BColumns, kq: u32) -> mat4x4<f32> {
  return b_block_at(columns.start, kq, params.b_row_stride, B_ALIGNED);
}
