// Matmul operands for the GEMM core (gemm.wgsl, included before this file):
//   a [batch, M, K] f32 · b [K, N], or b [N, K] with TRANSPOSE_B; b is shared by the batch
//   (b_batch_stride 0) or has its own matrix per entry, and may be f16.
// Expects from the wrapper: `alias BType = f32 | f16;` (and BiasType for gemm.wgsl).
// Operands are bound as arrays of vec4 (pooled buffers are multiples of 16 bytes): a quad of
// consecutive elements on a 4-element boundary is one read, any other element is read alone.

struct Params {
  m: u32,
  n: u32,
  k: u32,
  // Elements between the matrices of consecutive batch entries of b: K·N, or 0 when shared.
  b_batch_stride: u32,
}

// K % 4 == 0: rows of a (and of b when TRANSPOSE_B) start on a quad boundary.
override K_ALIGNED: bool = false;
// N % 4 == 0: rows of b start on a quad boundary when b is stored [K, N].
override N_ALIGNED: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<BType>>;

fn a_at(i: u32) -> f32 {
  return a[i / 4u][i % 4u];
}

fn a_quad_at(q: u32) -> vec4<f32> {
  return a[q];
}

fn b_at(i: u32) -> f32 {
  return f32(b[i / 4u][i % 4u]);
}

fn b_quad_at(q: u32) -> vec4<f32> {
  return vec4<f32>(b[q]);
}

fn load_a(batch: u32, row: u32, k: u32) -> f32 {
  return a_at((batch * params.m + row) * params.k + k);
}

fn load_a_quad(batch: u32, row: u32, kq: u32) -> vec4<f32> {
  return a_row_quad((batch * params.m + row) * params.k, kq, K_ALIGNED);
}

fn load_b(batch: u32, k: u32, col: u32) -> f32 {
  return b_at(batch * params.b_batch_stride + select(k * params.n + col, col * params.k + k, TRANSPOSE_B));
}

// Where each of the 4 columns starts in b (the element of k = 0); columns past N repeat the last.
struct BColumns {
  start: vec4<u32>,
}

fn b_columns(batch: u32, col: u32) -> BColumns {
  var start: vec4<u32>;
  for (var c = 0u; c < 4u; c++) {
    let column = min(col + c, params.n - 1u);
    start[c] = batch * params.b_batch_stride + select(column, column * params.k, TRANSPOSE_B);
  }
  return BColumns(start);
}

// A column of b [N, K] is a quad along k when K % 4 == 0; 4 columns of a row of b [K, N] are one
// quad when N % 4 == 0.
fn load_b_block(columns: BColumns, kq: u32) -> mat4x4<f32> {
  return b_block_at(columns.start, kq, params.n, select(N_ALIGNED, K_ALIGNED, TRANSPOSE_B));
}
