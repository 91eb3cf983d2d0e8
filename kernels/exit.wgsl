// MuE's exit rule (mue-spec.md §2–3) on the device: cosine similarity per sample and the decision
// to stop, after one layer, for samples b of states `[B, length]`:
//   state[b]      = doneBefore[b] ? previous[b] : computed[b]   (a stopped sample keeps its exit state)
//   similarity[b] = cos(state[b], previous[b]) = s·p / (max(‖s‖, ε)·max(‖p‖, ε))   (PyTorch's)
//   done[b]       = similarity[b] > threshold || doneBefore[b]
// With DECIDE false, `similarity` alone is the plain op cosineSimilarity(computed, previous).
//
// Entry points:
//   cosine:     workgroups reduce spans of a sample (and write its state). When a sample is one
//               span, the workgroup finishes it; else it writes partial sums, and a second dispatch
//               with FINISH (one workgroup per sample) adds them up and finishes. The decoder's
//               per-token checks (a few hundred elements per beam) take a single dispatch.
//   exceeds:    decided[i] = x[i] > threshold || flags[i] != 0 (the decision alone).
// A threshold t is given as its f32 rounding t32: x > t holds exactly when x > t32, or x == t32
// where t32 was rounded up from t (no f32 lies strictly between t and t32), as the CPU's f64
// comparison decides. NaN never exceeds; it is tested on the bits, as shader compilers may assume
// floats are never NaN.
// Expects from the wrapper: `alias Element = f32 | f16;` and `alias OtherElement = f32 | f16;`
// (previous and computed), and an included reduction file (workgroupSum3).

struct Params {
  // similarity: workgroups with work (samples × spans, or samples with FINISH); exceeds: elements.
  groupCount: u32,
  // similarity: elements per sample, per span, and spans per sample.
  length: u32,
  spanLength: u32,
  spans: u32,
  // The threshold t32's bits, and 1 when x == t32 exceeds the caller's threshold.
  threshold: u32,
  inclusive: u32,
  // 1 when `doneBefore` (similarity) or `flags` (exceeds) is bound.
  hasFlags: u32,
}

override WORKGROUP_SIZE: u32 = 256;
override DECIDE: bool = false;
override FINISH: bool = false;

const COSINE_EPS = 1e-8;

@group(0) @binding(0) var<uniform> params: Params;

fn groupIndex(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
  return wid.y * groups.x + wid.x;
}

fn exceedsThreshold(v: f32) -> bool {
  let t = bitcast<f32>(params.threshold);
  let isNan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
  return !isNan && (v > t || (params.inclusive != 0u && v == t));
}

// ---- cosine -------------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> previous: array<Element>;
@group(0) @binding(2) var<storage, read> computed: array<OtherElement>;
@group(0) @binding(3) var<storage, read> doneBefore: array<i32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> similarity: array<f32>;
@group(0) @binding(7) var<storage, read_write> done: array<i32>;

fn stoppedBefore(sample: u32) -> bool {
  return DECIDE && params.hasFlags != 0u && doneBefore[sample] != 0;
}

/** Writes a sample's similarity (and decision) from its sums (s·p, s·s, p·p). */
fn finishSample(sample: u32, sums: vec3<f32>) {
  let cosine = sums.x / (max(sqrt(sums.y), COSINE_EPS) * max(sqrt(sums.z), COSINE_EPS));
  similarity[sample] = cosine;
  if (DECIDE) {
    done[sample] = select(0, 1, exceedsThreshold(cosine) || stoppedBefore(sample));
  }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn cosine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let group = groupIndex(wid, groups);
  if (group >= params.groupCount) {
    return;
  }
  if (FINISH) {
    var sums = vec3(0.0);
    for (var s = lid; s < params.spans; s += WORKGROUP_SIZE) {
      sums += partials[group * params.spans + s].xyz;
    }
    let total = workgroupSum3(sums, lid);
    if (lid == 0u) {
      finishSample(group, total);
    }
    return;
  }
  let sample = group / params.spans;
  let keep = stoppedBefore(sample);
  let spanStart = sample * params.length + (group % params.spans) * params.spanLength;
  let spanEnd = min(spanStart + params.spanLength, (sample + 1u) * params.length);
  var sums = vec3(0.0);
  for (var i = spanStart + lid; i < spanEnd; i += WORKGROUP_SIZE) {
    let p = f32(previous[i]);
    let s = select(f32(computed[i]), p, keep);
    if (DECIDE) {
      state[i] = s;
    }
    sums += vec3(s * p, s * s, p * p);
  }
  let total = workgroupSum3(sums, lid);
  if (lid == 0u) {
    if (params.spans == 1u) {
      finishSample(sample, total);
    } else {
      partials[group] = vec4(total, 0.0);
    }
  }
}

// ---- exceeds ------------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> flags: array<i32>;
@group(0) @binding(3) var<storage, read_write> decided: array<i32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn exceeds(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let i = groupIndex(wid, groups) * WORKGROUP_SIZE + lid;
  if (i >= params.groupCount) {
    return;
  }
  decided[i] = select(0, 1, exceedsThreshold(x[i]) || (params.hasFlags != 0u && flags[i] != 0));
}
