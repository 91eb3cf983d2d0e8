// Max pooling over NCHW windows, one output element per invocation. Padding cells are skipped, so
// they never win (the shape rules keep padding ≤ kernel / 2: every window holds an image cell).

struct Params {
  size: u32,
  height: u32,
  width: u32,
  out_height: u32,
  out_width: u32,
}

override KERNEL: u32;
override STRIDE: u32;
override PADDING: u32;
override WORKGROUP_SIZE: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn max_pool(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let i = (wid.y * groups.x + wid.x) * WORKGROUP_SIZE + lid;
  if (i >= params.size) {
    return;
  }
  let ow = i % params.out_width;
  let oh = (i / params.out_width) % params.out_height;
  let plane = i / (params.out_width * params.out_height);
  let top = i32(oh * STRIDE) - i32(PADDING);
  let left = i32(ow * STRIDE) - i32(PADDING);
  // The window clipped to the image.
  let h0 = u32(max(top, 0));
  let h1 = u32(min(top + i32(KERNEL), i32(params.height)));
  let w0 = u32(max(left, 0));
  let w1 = u32(min(left + i32(KERNEL), i32(params.width)));
  let base = plane * params.height * params.width;
  var best = x[base + h0 * params.width + w0];
  for (var h = h0; h < h1; h++) {
    for (var w = w0; w < w1; w++) {
      best = max(best, x[base + h * params.width + w]);
    }
  }
  out[i] = best;
}
