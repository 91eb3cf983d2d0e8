// Selection (argmax, top-k), each workgroup reducing a contiguous span of a row.
// Expects from the wrapper: `alias Element = f32 | f16;` (the operand `a`) and an included
// reduction file (`reduce-subgroups` or `reduce-workgroup-memory`: workgroupBest).

struct Params {
  // Workgroups with work: rows × spans.
  groupCount: u32,
  // The row length, the span each workgroup reduces, spans per row.
  cols: u32,
  spanLength: u32,
  spans: u32,
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
  if (gate_closed()) {
    return;
  }
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
