// Selection and per-sample reductions, each workgroup reducing a contiguous span of a row.
// Expects from the wrapper: `alias Element = f32 | f16;` (the operand `a`), `alias OtherElement =
// f32 | f16;` (cosine's `b`) and an included reduction file (`reduce-subgroups` or
// `reduce-workgroup-memory`: workgroupBest, workgroupSum3).

struct Params {
  // Workgroups with work: rows (or samples) × spans, or samples for cosineFinish.
  groupCount: u32,
  // The row (topk) or sample (cosine) length, the span each workgroup reduces, spans per row.
  cols: u32,
  spanLength: u32,
  spans: u32,
  // topk only.
  k: u32,
}

override WORKGROUP_SIZE: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<Element>;

fn groupIndex(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
  return wid.y * groups.x + wid.x;
}

// ---- top-k -------------------------------------------------------------------------------------
// The k best elements of each span in descending order of value, lower index first among equal
// values, in k rounds: round t takes the best element that ranks after round t − 1's pick. This
// needs no record of what was taken, and ties are handled by the same total order that ranks them.
// Each round rereads the span (O(k·n)): meant for k ≪ n, like beam search's 2·beam of beam·vocab.
// The first stage selects from spans of the input, writing k candidates per span (fewer where a
// span is short: the rest hold NO_INDEX); when a row has several spans, a second dispatch with
// CANDIDATES selects again from the candidates, whose indices it reads from `candidateIndices`.

override CANDIDATES: bool = false;

@group(0) @binding(2) var<storage, read> candidateIndices: array<u32>;
@group(0) @binding(3) var<storage, read_write> topValues: array<f32>;
@group(0) @binding(4) var<storage, read_write> topIndices: array<u32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn topk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let group = groupIndex(wid, groups);
  if (group >= params.groupCount) {
    return;
  }
  let row = group / params.spans;
  let span = group % params.spans;
  let spanStart = span * params.spanLength;
  let spanEnd = min(spanStart + params.spanLength, params.cols);
  let base = row * params.cols;
  var previous = WorkgroupBest(0.0, NO_INDEX);
  for (var round = 0u; round < params.k; round++) {
    var best = WorkgroupBest(0.0, NO_INDEX);
    for (var c = spanStart + lid; c < spanEnd; c += WORKGROUP_SIZE) {
      var candidate = WorkgroupBest(f32(a[base + c]), c);
      if (CANDIDATES) {
        candidate.index = candidateIndices[base + c];
      }
      if ((round == 0u || ranksBefore(previous, candidate)) && ranksBefore(candidate, best)) {
        best = candidate;
      }
    }
    previous = workgroupBest(best, lid);
    if (lid == 0u) {
      let slot = group * params.k + round;
      topValues[slot] = previous.value;
      topIndices[slot] = previous.index;
    }
  }
}

// ---- cosine similarity ---------------------------------------------------------------------------
// Two stages: workgroups accumulate (a·b, a·a, b·b) over spans of each sample into `partials`, then
// one workgroup per sample sums its spans' partials and writes a·b / (max(‖a‖, ε)·max(‖b‖, ε)),
// which is PyTorch's `F.cosine_similarity` (the CPU backend's definition).

const COSINE_EPS = 1e-8;

@group(0) @binding(2) var<storage, read> b: array<OtherElement>;
@group(0) @binding(3) var<storage, read_write> partials: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn cosinePartials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let group = groupIndex(wid, groups);
  if (group >= params.groupCount) {
    return;
  }
  let sample = group / params.spans;
  let spanStart = sample * params.cols + (group % params.spans) * params.spanLength;
  let spanEnd = min(spanStart + params.spanLength, (sample + 1u) * params.cols);
  var products = vec3(0.0);
  for (var i = spanStart + lid; i < spanEnd; i += WORKGROUP_SIZE) {
    let ai = f32(a[i]);
    let bi = f32(b[i]);
    products += vec3(ai * bi, ai * ai, bi * bi);
  }
  let total = workgroupSum3(products, lid);
  if (lid == 0u) {
    partials[group] = vec4(total, 0.0);
  }
}

@group(0) @binding(1) var<storage, read> spanPartials: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> similarity: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn cosineFinish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let sample = groupIndex(wid, groups);
  if (sample >= params.groupCount) {
    return;
  }
  var products = vec3(0.0);
  for (var s = lid; s < params.spans; s += WORKGROUP_SIZE) {
    products += spanPartials[sample * params.spans + s].xyz;
  }
  let total = workgroupSum3(products, lid);
  if (lid == 0u) {
    similarity[sample] = total.x / (max(sqrt(total.y), COSINE_EPS) * max(sqrt(total.z), COSINE_EPS));
  }
}
