// Fused multi-head attention, flash-attention style: softmax(scale·q·kᵀ + bias + masks)·v per head
// without materialising the [Tq, Tk] scores. Each invocation owns one query row of one head: it
// walks the keys in tiles of KEY_TILE, keeps a running maximum and a running sum of exp(score −
// maximum), and rescales its f32 accumulator of weighted values whenever the maximum grows.
//
// Rows are numbered by (sample, head, query), `rowsPerHead` per head. With enough queries, each
// head's rows are padded to whole workgroups, so a workgroup's key and value addresses are the
// same for all its invocations: with SHARE_KEY_TILES (GPUs) the workgroup stages each tile of keys
// and values in workgroup memory, reading every key from global memory once per workgroup; without
// it, invocations read them from global memory (a software rasteriser loads a uniform address once
// per SIMD chunk). With few queries per head (decoding), rows are packed densely across heads and
// samples instead, so that lanes are not left idle, and each reads its own keys.
//
// A query whose keys are all masked outputs zeros (like the CPU backend), not NaN.
// Layouts: q, out [B, Tq, H·dh]; k, v [B or 1, Tk, H·dh]; bias [H, Tq, Tk] or [B, H, Tq, Tk];
// keyPaddingMask i32 [B or 1, Tk] (non-zero: excluded). Absent bias and mask bind placeholders.

struct Params {
  heads: u32,
  tq: u32,
  tk: u32,
  // Rows per (sample, head): tq, or tq rounded up to whole workgroups.
  rowsPerHead: u32,
  rowCount: u32,
  scale: f32,
  // 1, or 0 when one sample of k, v and the mask serves every query sample.
  kvSampleStep: u32,
  hasBias: u32,
  // Elements between samples' bias blocks: H·Tq·Tk, or 0 when the bias is shared.
  biasSampleStride: u32,
  hasMask: u32,
  // Query i sees key j only when j ≤ i + (tk − tq).
  causal: u32,
}

override WORKGROUP_SIZE: u32 = 64;
override HEAD_DIM: u32;
override KEY_TILE: u32 = 16;
override SHARE_KEY_TILES: bool = false;

// Private arrays need sizes fixed before overrides: HEAD_DIM and KEY_TILE may not exceed these.
const MAX_HEAD_DIM = 128u;
const MAX_KEY_TILE = 64u;

// The score of an excluded key: the lowest f32, which no visible key reaches. Finite, so that the
// arithmetic of the running maximum never meets ∞ − ∞.
const MASKED = -0x1.fffffep+127f;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> keyPaddingMask: array<i32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

var<workgroup> keyTile: array<f32, select(1u, KEY_TILE * HEAD_DIM, SHARE_KEY_TILES)>;
var<workgroup> valueTile: array<f32, select(1u, KEY_TILE * HEAD_DIM, SHARE_KEY_TILES)>;

// Keys visible to `query`: those before this bound.
fn visibleKeys(query: u32) -> u32 {
  if (params.causal == 0u) {
    return params.tk;
  }
  return u32(clamp(i32(query) + i32(params.tk) - i32(params.tq) + 1, 0, i32(params.tk)));
}

// Element d of key `key` (entry j of the current tile), from the shared tile or global memory.
fn keyElement(kvBase: u32, key: u32, j: u32, d: u32) -> f32 {
  if (SHARE_KEY_TILES) {
    return keyTile[j * HEAD_DIM + d];
  }
  return k[kvBase + key * params.heads * HEAD_DIM + d];
}

fn valueElement(kvBase: u32, key: u32, j: u32, d: u32) -> f32 {
  if (SHARE_KEY_TILES) {
    return valueTile[j * HEAD_DIM + d];
  }
  return v[kvBase + key * params.heads * HEAD_DIM + d];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  if (gate_closed()) {
    return;
  }
  let width = params.heads * HEAD_DIM;
  let group = wid.y * groups.x + wid.x;
  let row = group * WORKGROUP_SIZE + lid;
  let headRow = row / params.rowsPerHead; // sample · heads + head
  let query = row % params.rowsPerHead;
  let sample = headRow / params.heads;
  let head = headRow % params.heads;
  let isQueryRow = row < params.rowCount && query < params.tq;
  let kvSample = sample * params.kvSampleStep;
  let kvBase = kvSample * params.tk * width + head * HEAD_DIM;
  let keyEnd = select(0u, visibleKeys(query), isQueryRow);
  // The tile loop runs in workgroup-uniform control flow (its barriers need it): when the group's
  // rows are of one head, to the keys its last query sees, else to tk. Inside, rows differ only in
  // data (select, never branch), so SIMD lanes stay in step.
  let groupRowsShareHead = params.rowsPerHead % WORKGROUP_SIZE == 0u;
  let groupLastQuery = min((group * WORKGROUP_SIZE) % params.rowsPerHead + WORKGROUP_SIZE - 1u, params.tq - 1u);
  let loopEnd = select(params.tk, visibleKeys(groupLastQuery), groupRowsShareHead);

  var scaledQuery: array<f32, MAX_HEAD_DIM>;
  let queryBase = (sample * params.tq + query) * width + head * HEAD_DIM;
  for (var d = 0u; d < HEAD_DIM; d++) {
    scaledQuery[d] = q[queryBase + d] * params.scale;
  }
  let biasBase = sample * params.biasSampleStride + (head * params.tq + query) * params.tk;
  let maskBase = kvSample * params.tk;

  var accumulator: array<f32, MAX_HEAD_DIM>;
  var scores: array<f32, MAX_KEY_TILE>;
  var runningMax = MASKED;
  var runningSum = 0.0;
  for (var tileStart = 0u; tileStart < loopEnd; tileStart += KEY_TILE) {
    // Shared tiles are zero-filled past the last key, so that loops over them have the constant
    // trip count KEY_TILE (GPU compilers unroll them and keep `scores` in registers).
    let tileKeys = select(min(KEY_TILE, loopEnd - tileStart), KEY_TILE, SHARE_KEY_TILES);
    if (SHARE_KEY_TILES) {
      workgroupBarrier(); // the previous tile has been used
      for (var e = lid; e < KEY_TILE * HEAD_DIM; e += WORKGROUP_SIZE) {
        let key = tileStart + e / HEAD_DIM;
        var loadedKey = 0.0;
        var loadedValue = 0.0;
        if (key < loopEnd) {
          let offset = kvBase + key * width + e % HEAD_DIM;
          loadedKey = k[offset];
          loadedValue = v[offset];
        }
        keyTile[e] = loadedKey;
        valueTile[e] = loadedValue;
      }
      workgroupBarrier();
    }

    var tileMax = MASKED;
    for (var j = 0u; j < tileKeys; j++) {
      let key = tileStart + j;
      var dot = 0.0;
      for (var d = 0u; d < HEAD_DIM; d++) {
        dot += scaledQuery[d] * keyElement(kvBase, key, j, d);
      }
      if (params.hasBias != 0u) {
        dot += bias[biasBase + key];
      }
      let padded = params.hasMask != 0u && keyPaddingMask[maskBase + key] != 0;
      let score = select(MASKED, dot, key < keyEnd && !padded);
      scores[j] = score;
      tileMax = max(tileMax, score);
    }

    // While no key is visible, newMax stays MASKED and every weight is 0. The scores become weights
    // in place; each accumulator element then takes the whole tile in a register.
    let newMax = max(runningMax, tileMax);
    let correction = exp(runningMax - newMax);
    runningSum *= correction;
    for (var j = 0u; j < tileKeys; j++) {
      scores[j] = select(0.0, exp(scores[j] - newMax), scores[j] > MASKED);
      runningSum += scores[j];
    }
    for (var d = 0u; d < HEAD_DIM; d++) {
      var weighted = accumulator[d] * correction;
      for (var j = 0u; j < tileKeys; j++) {
        weighted += scores[j] * valueElement(kvBase, tileStart + j, j, d);
      }
      accumulator[d] = weighted;
    }
    runningMax = newMax;
  }

  if (isQueryRow) {
    let inverseSum = select(0.0, 1.0 / runningSum, runningSum > 0.0);
    let outBase = (sample * params.tq + query) * width + head * HEAD_DIM;
    for (var d = 0u; d < HEAD_DIM; d++) {
      out[outBase + d] = accumulator[d] * inverseSum;
    }
  }
}
