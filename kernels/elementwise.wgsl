// Elementwise ops on f32 activations, one element per invocation.
//   OP 0 add:   out = a + b      (b repeats every `inner` elements: a bias over leading dims)
//   OP 1 mul:   out = a * b      (same broadcast)
//   OP 2 scale: out = a * scalar
//   OP 3 gelu:  out = a * Φ(a)   (exact erf form, as fairseq computes it)
//   OP 4 relu:  out = max(a, 0)
// Unary ops bind a placeholder as `b` and never read it.
// Expects from the wrapper: `alias OperandType = f32 | f16;` (b may be an f16 weight), and
// `activation.wgsl` included (gelu).

struct Params {
  size: u32,
  inner: u32,
  scalar: f32,
}

override OP: u32;
override WORKGROUP_SIZE: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<OperandType>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let i = (wid.y * groups.x + wid.x) * WORKGROUP_SIZE + lid;
  if (i >= params.size) {
    return;
  }
  let x = a[i];
  switch OP {
    case 0u: { out[i] = x + f32(b[i % params.inner]); }
    case 1u: { out[i] = x * f32(b[i % params.inner]); }
    case 2u: { out[i] = x * params.scalar; }
    case 3u: { out[i] = gelu(x); }
    default: { out[i] = max(x, 0.0); }
  }
}
