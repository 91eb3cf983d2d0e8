// MuE's exit rule (mue-spec.md §2–3) on the device: cosine similarity per sample and the decision
// to stop, after one layer, for samples b of states `[B, length]`:
//   state[b]      = doneBefore[b] ? previous[b] : computed[b]   (a stopped sample keeps its exit state)
//   similarity[b] = cos(state[b], previous[b]) = s·p / (max(‖s‖, ε)·max(‖p‖, ε))   (PyTorch's)
//   done[b]       = similarity[b] > threshold || doneBefore[b]
//   allDone       = every done[b]   (one word: the gate of the next layer, bound as a uniform)
// With DECIDE false, `similarity` alone is the plain op cosineSimilarity(computed, previous).
//
// Entry points:
//   cosine:  STAGE 0 (WHOLE): one workgroup takes every sample in turn — a decoding step's token
//            states (beams × a few hundred elements) in a single dispatch. Longer states take two
//            dispatches: STAGE 1 (SPANS), a workgroup per span of a sample writing its partial
//            sums (and its elements of `state`), then STAGE 2 (FINISH), one workgroup adding each
//            sample's partial sums up.
//   exceeds: decided[i] = x[i] > threshold || flags[i] != 0 (the decision alone).
// A threshold t is given as its f32 rounding t32: x > t holds exactly when x > t32, or x == t32
// where t32 was rounded up from t (no f32 lies strictly between t and t32), as the CPU's f64
// comparison decides. NaN never exceeds; it is tested on the bits, as shader compilers may assume
// floats are never NaN.
// Expects from the wrapper: `alias Element = f32 | f16;` and `alias OtherElement = f32 | f16;`
// (previous and computed), and an included reduction file (workgroupSum3).

struct Params {
  // cosine: samples, elements per sample, per span (STAGE 1), and spans per sample; exceeds: elements.
  samples: u32,
  length: u32,
  spanLength: u32,
  spans: u32,
  // The threshold t32's bits, and 1 when x == t32 exceeds the caller's threshold.
  threshold: u32,
  inclusive: u32,
  // 1 when `doneBefore` (cosine) or `flags` (exceeds) is bound.
  hasFlags: u32,
}

const WHOLE = 0u;
const SPANS = 1u;
const FINISH = 2u;

override WORKGROUP_SIZE: u32 = 256;
override DECIDE: bool = false;
override STAGE: u32 = WHOLE;

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
@group(0) @binding(8) var<storage, read_write> allDone: i32;

fn stoppedBefore(sample: u32) -> bool {
  return DECIDE && params.hasFlags != 0u && doneBefore[sample] != 0;
}

/** This invocation's share of (s·p, s·s, p·p) over elements start..end of `sample`, writing `state`. */
fn accumulate(sample: u32, start: u32, end: u32, lid: u32) -> vec3<f32> {
  let keep = stoppedBefore(sample);
  var sums = vec3(0.0);
  for (var i = start + lid; i < end; i += WORKGROUP_SIZE) {
    let p = f32(previous[i]);
    let s = select(f32(computed[i]), p, keep);
    if (DECIDE) {
      state[i] = s;
    }
    sums += vec3(s * p, s * s, p * p);
  }
  return sums;
}

/** Writes a sample's similarity (and decision) from its sums; returns whether it is done. */
fn finishSample(sample: u32, sums: vec3<f32>) -> bool {
  let cosine = sums.x / (max(sqrt(sums.y), COSINE_EPS) * max(sqrt(sums.z), COSINE_EPS));
  similarity[sample] = cosine;
  let stopped = exceedsThreshold(cosine) || stoppedBefore(sample);
  if (DECIDE) {
    done[sample] = select(0, 1, stopped);
  }
  return stopped;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn cosine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  if (STAGE == SPANS) {
    let group = groupIndex(wid, groups);
    if (group >= params.samples * params.spans) {
      return;
    }
    let sample = group / params.spans;
    let start = sample * params.length + (group % params.spans) * params.spanLength;
    let end = min(start + params.spanLength, (sample + 1u) * params.length);
    let total = workgroupSum3(accumulate(sample, start, end, lid), lid);
    if (lid == 0u) {
      partials[group] = vec4(total, 0.0);
    }
    return;
  }
  var every = true;
  for (var sample = 0u; sample < params.samples; sample++) {
    var sums = vec3(0.0);
    if (STAGE == WHOLE) {
      sums = accumulate(sample, sample * params.length, (sample + 1u) * params.length, lid);
    } else {
      for (var s = lid; s < params.spans; s += WORKGROUP_SIZE) {
        sums += partials[sample * params.spans + s].xyz;
      }
    }
    let total = workgroupSum3(sums, lid);
    if (lid == 0u) {
      every = finishSample(sample, total) && every;
    }
  }
  if (DECIDE && lid == 0u) {
    allDone = select(0, 1, every);
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
  if (i >= params.samples) {
    return;
  }
  decided[i] = select(0, 1, exceedsThreshold(x[i]) || (params.hasFlags != 0u && flags[i] != 0));
}
