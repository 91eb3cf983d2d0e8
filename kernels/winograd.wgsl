// Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", 2016) for 3×3 convolutions with stride 1 and padding 1: the output in 2×2
// tiles, each from the 4×4 input patch d around it,
//   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A,
// so that a tile's 36 multiplications per channel pair become 16. The elementwise products of all
// tiles are 16 GEMMs over channels, U[ξ] [Cout, Cin] · V[ξ] [Cin, T] (run by the matmul op);
// these kernels transform around them:
//   filter_transform: U[ξ, o, c] = (G g_oc Gᵀ)[ξ]              g [Cout, Cin, 3, 3] → U [16, Cout, Cin]
//   input_transform:  V[ξ, c, t] = (Bᵀ d_ct B)[ξ]              x [B, Cin, H, W]  → V [16, Cin, T4]
//   output_transform: y[b, o, 2ty + i, 2tx + j] = (Aᵀ M[·, o, t] A)[i, j] + bias, residual, ReLU
// with tiles t = (image, ty, tx) row-major, T = B·⌈H/2⌉·⌈W/2⌉, padded to T4 (a multiple of 4) so
// that an invocation moves the values of 4 consecutive tiles as one vec4. G, Bᵀ and Aᵀ hold only
// 0, ±1 and ½: the transforms are additions (and exact halvings).
// Expects from the wrapper: `alias WeightType = f32 | f16;`, `alias BiasType = f32 | f16;`.

struct Params {
  // Invocations with work.
  size: u32,
  // Input channels (filter and input transforms), output channels (output transform).
  channels: u32,
  // Output channels (filter transform only).
  out_channels: u32,
  height: u32,
  width: u32,
  tiles_high: u32,
  tiles_wide: u32,
  tiles: u32,
  tiles_padded: u32,
  has_bias: u32,
  has_residual: u32,
  relu: u32,
}

override WORKGROUP_SIZE: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;

fn invocation(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
  return (wid.y * groups.x + wid.x) * WORKGROUP_SIZE + lid;
}

// The channel and the first of the 4 consecutive tiles of invocation i (input and output transforms).
fn channel_and_tiles(i: u32) -> vec2<u32> {
  let quads = params.tiles_padded / 4u;
  return vec2<u32>(i / quads, 4u * (i % quads));
}

// The vec4 of planes [16, channels, tiles_padded] holding element ξ of `channel` for tiles t .. t + 3.
fn plane_quad(xi: u32, channel: u32, t: u32) -> u32 {
  return ((xi * params.channels + channel) * params.tiles_padded + t) / 4u;
}

// Tile t's image and the top-left output pixel of its 2×2 block.
fn tile_origin(t: u32) -> vec3<u32> {
  let per_image = params.tiles_high * params.tiles_wide;
  return vec3<u32>(t / per_image, 2u * ((t % per_image) / params.tiles_wide), 2u * (t % params.tiles_wide));
}

// ---- filter_transform: one channel pair (o, c) per invocation ---------------------------------

@group(0) @binding(1) var<storage, read> filters: array<WeightType>;
@group(0) @binding(2) var<storage, read_write> transformed_filter: array<f32>;

// G·v for a column v of 3: rows v0, (v0 + v1 + v2)/2, (v0 − v1 + v2)/2, v2.
fn g_times(v: vec3<f32>) -> vec4<f32> {
  return vec4<f32>(v.x, 0.5 * (v.x + v.y + v.z), 0.5 * (v.x - v.y + v.z), v.z);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn filter_transform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let pair = invocation(wid, groups, lid);
  if (pair >= params.size) {
    return;
  }
  var g: array<vec3<f32>, 3>;
  for (var r = 0u; r < 3u; r++) {
    g[r] = vec3<f32>(f32(filters[pair * 9u + 3u * r]), f32(filters[pair * 9u + 3u * r + 1u]), f32(filters[pair * 9u + 3u * r + 2u]));
  }
  // Columns of G·g (4 rows each), then each row of (G·g) times Gᵀ.
  var gg: array<vec4<f32>, 3>;
  for (var col = 0u; col < 3u; col++) {
    gg[col] = g_times(vec3<f32>(g[0][col], g[1][col], g[2][col]));
  }
  let stride = params.out_channels * params.channels;
  for (var r = 0u; r < 4u; r++) {
    let row = g_times(vec3<f32>(gg[0][r], gg[1][r], gg[2][r]));
    for (var col = 0u; col < 4u; col++) {
      transformed_filter[(4u * r + col) * stride + pair] = row[col];
    }
  }
}

// ---- input_transform: one channel and 4 consecutive tiles per invocation -----------------------

@group(0) @binding(1) var<storage, read> image: array<f32>;
@group(0) @binding(2) var<storage, read_write> transformed_input: array<vec4<f32>>;

// Bᵀ·v for a column v of 4: v0 − v2, v1 + v2, v2 − v1, v1 − v3.
fn bt_times(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(v.x - v.z, v.y + v.z, v.z - v.y, v.y - v.w);
}

// The tile's 4×4 input patch of channel c, transformed: Bᵀ d B, row-major (element 4r + col).
fn transformed_patch(c: u32, tile: u32) -> array<vec4<f32>, 4> {
  var window: array<vec4<f32>, 4>;
  if (tile < params.tiles) {
    let origin = tile_origin(tile);
    let plane = (origin.x * params.channels + c) * params.height * params.width;
    for (var r = 0u; r < 4u; r++) {
      let y = i32(origin.y + r) - 1;
      for (var col = 0u; col < 4u; col++) {
        let x = i32(origin.z + col) - 1;
        let inside = y >= 0 && y < i32(params.height) && x >= 0 && x < i32(params.width);
        // Padding reads the plane's first element, then counts as zero.
        let at = select(0u, u32(y) * params.width + u32(x), inside);
        window[r][col] = select(0.0, image[plane + at], inside);
      }
    }
  }
  // Bᵀ d: the columns of d through Bᵀ; then (Bᵀ d) B: its rows through Bᵀ.
  var columns: array<vec4<f32>, 4>;
  for (var col = 0u; col < 4u; col++) {
    columns[col] = bt_times(vec4<f32>(window[0][col], window[1][col], window[2][col], window[3][col]));
  }
  var out: array<vec4<f32>, 4>;
  for (var r = 0u; r < 4u; r++) {
    out[r] = bt_times(vec4<f32>(columns[0][r], columns[1][r], columns[2][r], columns[3][r]));
  }
  return out;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn input_transform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let i = invocation(wid, groups, lid);
  if (i >= params.size) {
    return;
  }
  let work = channel_and_tiles(i);
  let c = work.x;
  let tile0 = work.y;
  var values: array<array<vec4<f32>, 4>, 4>;
  for (var k = 0u; k < 4u; k++) {
    values[k] = transformed_patch(c, tile0 + k);
  }
  for (var xi = 0u; xi < 16u; xi++) {
    let r = xi / 4u;
    let col = xi % 4u;
    let quad = vec4<f32>(values[0][r][col], values[1][r][col], values[2][r][col], values[3][r][col]);
    transformed_input[plane_quad(xi, c, tile0)] = quad;
  }
}

// ---- output_transform: one output channel and 4 consecutive tiles per invocation ---------------

@group(0) @binding(1) var<storage, read> products: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<BiasType>;
@group(0) @binding(3) var<storage, read> residual: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

// Aᵀ·v for a column v of 4: v0 + v1 + v2, v1 − v2 − v3.
fn at_times(v: vec4<f32>) -> vec2<f32> {
  return vec2<f32>(v.x + v.y + v.z, v.y - v.z - v.w);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn output_transform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let i = invocation(wid, groups, lid);
  if (i >= params.size) {
    return;
  }
  let work = channel_and_tiles(i);
  let o = work.x;
  let tile0 = work.y;
  // m[ξ] holds element ξ of the 4 tiles' products.
  var m: array<vec4<f32>, 16>;
  for (var xi = 0u; xi < 16u; xi++) {
    m[xi] = products[plane_quad(xi, o, tile0)];
  }
  var shift = 0.0;
  if (params.has_bias != 0u) {
    shift = f32(bias[o]);
  }
  for (var k = 0u; k < 4u; k++) {
    let tile = tile0 + k;
    if (tile >= params.tiles) {
      break;
    }
    // Aᵀ m: the 4 columns through Aᵀ (2 rows each); then (Aᵀ m) A: the 2 rows through Aᵀ.
    var columns: array<vec2<f32>, 4>;
    for (var col = 0u; col < 4u; col++) {
      columns[col] = at_times(vec4<f32>(m[col][k], m[4u + col][k], m[8u + col][k], m[12u + col][k]));
    }
    let origin = tile_origin(tile);
    let plane = (origin.x * params.channels + o) * params.height * params.width;
    for (var r = 0u; r < 2u; r++) {
      let row = at_times(vec4<f32>(columns[0][r], columns[1][r], columns[2][r], columns[3][r]));
      let y = origin.y + r;
      for (var col = 0u; col < 2u; col++) {
        let x = origin.z + col;
        if (y < params.height && x < params.width) {
          let at = plane + y * params.width + x;
          var value = row[col] + shift;
          if (params.has_residual != 0u) {
            value += residual[at];
          }
          if (params.relu != 0u) {
            value = max(value, 0.0);
          }
          output[at] = value;
        }
      }
    }
  }
}
