// Attention as GEMMs (software adapters, see ops/attention.ts): between S = q·kᵀ and O = P·v, this
// kernel turns each row of scores into probabilities in place,
//   P = softmax(scale · S + bias, with padded keys, keys after the causal bound and keys past Tk
//   excluded), in f32, subtracting the row maximum; a row whose keys are all excluded becomes zeros.
// Scores are [B·H, Tq, quadsPerRow] vec4s (or a chunk of samples of them): each row is Tk rounded
// up to 4, and the columns past Tk become zeros (P·v reads whole quads of a row).
//
// One invocation per row. The (sample, head) comes from the workgroup (y), so the padding mask's
// addresses are the same for every lane of a workgroup (a software rasteriser reads them once per
// SIMD chunk); two passes over the row: an online maximum and sum of exponentials in vec4 lanes,
// then the probabilities (the scores and bias are read again rather than stored in between).
// Layouts: bias [H, Tq, Tk] or [B, H, Tq, Tk]; keyPaddingMask i32 [B or 1, Tk] (non-zero:
// excluded). Absent bias and mask bind placeholders.

struct Params {
  heads: u32,
  tq: u32,
  tk: u32,
  quadsPerRow: u32,
  scale: f32,
  // 1, or 0 when one sample of the mask serves every query sample.
  kvSampleStep: u32,
  hasBias: u32,
  // Elements between samples' bias blocks: H·Tq·Tk, or 0 when the bias is shared.
  biasSampleStride: u32,
  hasMask: u32,
  // Query i sees key j only when j ≤ i + (tk − tq).
  causal: u32,
  // The sample of the scores' first row (batches whose scores exceed a binding come in chunks).
  firstSample: u32,
  // Query rows of the bias per head: tq, or fewer when the query rows of several samples that
  // share their keys attend as one sample's (query row i reads bias row i % biasRows).
  biasRows: u32,
}

override WORKGROUP_SIZE: u32 = 8u;
// Tk % 4 == 0: a quad of a bias row is one read.
override BIAS_ALIGNED: bool = false;

// The score of an excluded key: the lowest f32 (finite, so the running maximum never meets ∞ − ∞).
const MASKED = -0x1.fffffep+127f;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> scores: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> keyPaddingMask: array<i32>;

struct Row {
  // First quad of the row in `scores`.
  quads: u32,
  // First element of the row's bias.
  bias: u32,
  // First element of the sample's mask.
  mask: u32,
  // Keys before this bound may be visible.
  visible: u32,
}

// Scaled, biased and masked scores of keys 4c .. 4c + 3 of the row.
fn scoreQuad(row: Row, c: u32) -> vec4<f32> {
  var s = scores[row.quads + c] * params.scale;
  let key0 = 4u * c;
  let lastKey = params.tk - 1u;
  if (params.hasBias != 0u) {
    if (BIAS_ALIGNED) {
      s += bias[(row.bias + key0) / 4u];
    } else {
      for (var i = 0u; i < 4u; i++) {
        let at = row.bias + min(key0 + i, lastKey);
        s[i] += bias[at / 4u][at % 4u];
      }
    }
  }
  for (var i = 0u; i < 4u; i++) {
    let key = key0 + i;
    let padded = params.hasMask != 0u && keyPaddingMask[row.mask + min(key, lastKey)] != 0;
    s[i] = select(MASKED, s[i], key < row.visible && !padded);
  }
  return s;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let headRow = wid.y; // (sample − firstSample) · heads + head
  let sample = params.firstSample + headRow / params.heads;
  let head = headRow % params.heads;
  let query = wid.x * WORKGROUP_SIZE + lid;
  if (query >= params.tq) {
    return;
  }
  var visible = params.tk;
  if (params.causal != 0u) {
    visible = u32(clamp(i32(query) + i32(params.tk) - i32(params.tq) + 1, 0, i32(params.tk)));
  }
  let row = Row((headRow * params.tq + query) * params.quadsPerRow,
                sample * params.biasSampleStride + (head * params.biasRows + query % params.biasRows) * params.tk,
                sample * params.kvSampleStep * params.tk, visible);

  // Per vec4 lane: the maximum of its keys and the sum of their exp(score − maximum), rescaled
  // whenever the maximum grows. While no key is visible the maximum stays MASKED and the sum 0.
  var largest = vec4<f32>(MASKED);
  var sum = vec4<f32>();
  for (var c = 0u; c < params.quadsPerRow; c++) {
    let s = scoreQuad(row, c);
    let grown = max(largest, s);
    sum = sum * exp(largest - grown) + select(vec4<f32>(), exp(s - grown), s > vec4<f32>(MASKED));
    largest = grown;
  }
  let rowMax = max(max(largest.x, largest.y), max(largest.z, largest.w));
  let total = dot(sum, exp(largest - rowMax));
  let inverseTotal = select(0.0, 1.0 / total, total > 0.0);
  for (var c = 0u; c < params.quadsPerRow; c++) {
    let s = scoreQuad(row, c);
    scores[row.quads + c] = select(vec4<f32>(), exp(s - rowMax) * inverseTotal, s > vec4<f32>(MASKED));
  }
}
