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

fn b_at(i: u32) -> f32 {
  return f32(b[i / 4u][i % 4u]);
}

fn load_a(batch: u32, row: u32, k: u32) -> f32 {
  return a_at((batch * params.m + row) * params.k + k);
}

fn load_a_quad(batch: u32, row: u32, kq: u32) -> vec4<f32> {
  let start = (batch * params.m + row) * params.k + 4u * kq;
  if (K_ALIGNED) {
    return a[start / 4u];
  }
  // Reads stay on the row (the last quad may be partial); elements past its end are zero.
  let last = params.k - 1u - 4u * kq;
  var quad: vec4<f32>;
  for (var i = 0u; i < 4u; i++) {
    quad[i] = select(0.0, a_at(start + min(i, last)), i <= last);
  }
  return quad;
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

fn load_b_block(columns: BColumns, kq: u32) -> mat4x4<f32> {
  let k0 = 4u * kq;
  let last_k = params.k - 1u;
  var block: mat4x4<f32>;
  if (TRANSPOSE_B) {
    // Each column is a quad along k in b's [N, K] storage: read the 4 columns, then transpose.
    for (var c = 0u; c < 4u; c++) {
      if (K_ALIGNED) {
        block[c] = vec4<f32>(b[(columns.start[c] + k0) / 4u]);
      } else {
        for (var i = 0u; i < 4u; i++) {
          block[c][i] = b_at(columns.start[c] + min(k0 + i, last_k));
        }
      }
    }
    return transpose(block);
  }
  for (var j = 0u; j < 4u; j++) {
    let row = min(k0 + j, last_k) * params.n;
    if (N_ALIGNED) {
      block[j] = vec4<f32>(b[(columns.start[0] + row) / 4u]);
    } else {
      for (var c = 0u; c < 4u; c++) {
        block[j][c] = b_at(columns.start[c] + row);
      }
    }
  }
  return block;
}
