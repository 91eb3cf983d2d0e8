// conv2d operands for the GEMM core (gemm.wgsl, included before this file), an implicit GEMM per
// image: M = Cout, N = Ho·Wo, K = Cin·KERNEL_H·KERNEL_W.
//   A: the filter w [Cout, Cin, KERNEL_H, KERNEL_W] seen as [Cout, K], shared by the batch; f32 or f16.
//   B: the image x [B, Cin, H, W] seen through im2col: B[k, p] = x[channel, oh·STRIDE − PADDING + kh,
//      ow·STRIDE − PADDING + kw] for k = (channel, kh, kw) and output pixel p = (oh, ow); zero outside x.
// The output [B, Cout, Ho, Wo] is then the GEMM's [batch, M, N].
// Expects from the wrapper: `alias WeightType = f32 | f16;` (and BiasType for gemm.wgsl).

struct Params {
  m: u32,
  n: u32,
  k: u32,
  height: u32,
  width: u32,
  out_width: u32,
  // Elements of one image of x: Cin·H·W.
  image_size: u32,
}

override KERNEL_H: u32 = 1u;
override KERNEL_W: u32 = 1u;
override STRIDE: u32 = 1u;
override PADDING: u32 = 0u;
// K % 4 == 0: filter rows start on a quad boundary.
override K_ALIGNED: bool = false;
// A 1×1 convolution with stride 1, no padding and H·W % 4 == 0: im2col is x itself ([Cin, H·W]
// per image) and 4 consecutive pixels are one vec4 read.
override POINTWISE_ALIGNED: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<WeightType>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

// The reads gemm.wgsl asks for: binding 1 is the filter w, binding 2 the image x (B is x seen
// through im2col, below).
fn a_at(i: u32) -> f32 {
  return f32(w[i / 4u][i % 4u]);
}

fn a_quad_at(q: u32) -> vec4<f32> {
  return vec4<f32>(w[q]);
}

fn b_at(i: u32) -> f32 {
  return x[i / 4u][i % 4u];
}

fn b_quad_at(q: u32) -> vec4<f32> {
  return x[q];
}

fn load_a(batch: u32, row: u32, k: u32) -> f32 {
  return a_at(row * params.k + k);
}

fn load_a_quad(batch: u32, row: u32, kq: u32) -> vec4<f32> {
  return a_row_quad(row * params.k, kq, K_ALIGNED);
}

// The im2col value of row k for an output pixel whose window starts at (top, left) in the image.
fn im2col(image: u32, k: u32, top: i32, left: i32) -> f32 {
  let taps = KERNEL_H * KERNEL_W;
  let channel = k / taps;
  let tap = k % taps;
  let ih = top + i32(tap / KERNEL_W);
  let iw = left + i32(tap % KERNEL_W);
  let inside = ih >= 0 && ih < i32(params.height) && iw >= 0 && iw < i32(params.width);
  // Padding cells read element 0 of the image instead of outside it, then count as zero.
  let offset = select(0u, (channel * params.height + u32(ih)) * params.width + u32(iw), inside);
  return select(0.0, b_at(image + offset), inside);
}

fn load_b(batch: u32, k: u32, col: u32) -> f32 {
  let oh = col / params.out_width;
  let ow = col - oh * params.out_width;
  return im2col(batch * params.image_size, k, i32(oh * STRIDE) - i32(PADDING), i32(ow * STRIDE) - i32(PADDING));
}

// The window origins of the 4 pixels (pixels past N repeat the last), computed once per invocation.
struct BColumns {
  image: u32,
  pixel: u32,
  top: vec4<i32>,
  left: vec4<i32>,
}

fn b_columns(batch: u32, col: u32) -> BColumns {
  var columns = BColumns(batch * params.image_size, col, vec4<i32>(), vec4<i32>());
  for (var c = 0u; c < 4u; c++) {
    let pixel = min(col + c, params.n - 1u);
    let oh = pixel / params.out_width;
    let ow = pixel - oh * params.out_width;
    columns.top[c] = i32(oh * STRIDE) - i32(PADDING);
    columns.left[c] = i32(ow * STRIDE) - i32(PADDING);
  }
  return columns;
}

fn load_b_block(columns: BColumns, kq: u32) -> mat4x4<f32> {
  var block: mat4x4<f32>;
  for (var j = 0u; j < 4u; j++) {
    let k = min(4u * kq + j, params.k - 1u);
    if (POINTWISE_ALIGNED) {
      block[j] = b_quad_at((columns.image + k * params.n + columns.pixel) / 4u);
    } else {
      for (var c = 0u; c < 4u; c++) {
        block[j][c] = im2col(columns.image, k, columns.top[c], columns.left[c]);
      }
    }
  }
  return block;
}
