// Workgroup-wide reductions with subgroup operations (the `subgroups` extension); the same
// functions as `reduce-workgroup-memory.wgsl`, which the wrapper picks where subgroups are missing.
// Every invocation of the workgroup must call them (in uniform control flow) and gets the result.
// Expects from the kernel file: `override WORKGROUP_SIZE: u32`.
//
// Each subgroup reduces in registers and leaves its result in a workgroup array with one slot per
// invocation (for sums one elected lane does, the others leave zero); every subgroup then reduces
// the whole array, each lane reading a strided share. Slots are indexed by local invocation, so
// nothing is assumed about how the device lays subgroups out or how large they are.

// Value of a `WorkgroupBest` that holds no element; it ranks after every element.
const NO_INDEX = 0xffffffffu;

struct WorkgroupBest {
  value: f32,
  index: u32,
}

var<workgroup> reduceScalars: array<f32, WORKGROUP_SIZE>;
var<workgroup> reduceVectors: array<vec3<f32>, WORKGROUP_SIZE>;
var<workgroup> reduceIndices: array<u32, WORKGROUP_SIZE>;

// This lane's rank among the subgroup's active lanes (0, 1, ...) and their count.
fn subgroupLanes() -> vec2<u32> {
  return vec2(subgroupExclusiveAdd(1u), subgroupAdd(1u));
}

fn workgroupSum(value: f32, lid: u32) -> f32 {
  reduceScalars[lid] = select(0.0, subgroupAdd(value), subgroupElect());
  workgroupBarrier();
  let lanes = subgroupLanes();
  var partial = 0.0;
  for (var i = lanes.x; i < WORKGROUP_SIZE; i += lanes.y) {
    partial += reduceScalars[i];
  }
  let total = subgroupAdd(partial);
  workgroupBarrier(); // the array is free for the next reduction
  return total;
}

fn workgroupSum3(value: vec3<f32>, lid: u32) -> vec3<f32> {
  reduceVectors[lid] = select(vec3(0.0), subgroupAdd(value), subgroupElect());
  workgroupBarrier();
  let lanes = subgroupLanes();
  var partial = vec3(0.0);
  for (var i = lanes.x; i < WORKGROUP_SIZE; i += lanes.y) {
    partial += reduceVectors[i];
  }
  let total = subgroupAdd(partial);
  workgroupBarrier();
  return total;
}

fn workgroupMax(value: f32, lid: u32) -> f32 {
  // Max is idempotent: every lane may leave its subgroup's maximum, and no identity is needed.
  reduceScalars[lid] = subgroupMax(value);
  workgroupBarrier();
  let lanes = subgroupLanes();
  var partial = reduceScalars[lanes.x];
  for (var i = lanes.x + lanes.y; i < WORKGROUP_SIZE; i += lanes.y) {
    partial = max(partial, reduceScalars[i]);
  }
  let result = subgroupMax(partial);
  workgroupBarrier();
  return result;
}

// An unsigned key that orders like the float (−∞ < ... < −0 < +0 < ... < +∞; NaNs aside), so that
// an empty candidate can take key 0, below every value, −∞ included.
fn orderKey(value: f32) -> u32 {
  let bits = bitcast<u32>(value);
  return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

// The subgroup's best element: the largest value, then the lowest index among the lanes holding it.
fn subgroupBest(candidate: WorkgroupBest) -> WorkgroupBest {
  // −0 and +0 are equal values, so they must tie: both take +0's key.
  let canonical = select(candidate.value, 0.0, candidate.value == 0.0);
  let key = select(orderKey(canonical), 0u, candidate.index == NO_INDEX);
  let bestKey = subgroupMax(key);
  let index = subgroupMin(select(NO_INDEX, candidate.index, key == bestKey));
  // The winner's own value (−0 stays −0): lanes holding its index hold the same bits, others 0.
  let bits = subgroupOr(select(0u, bitcast<u32>(candidate.value), candidate.index == index));
  return WorkgroupBest(bitcast<f32>(bits), index);
}

fn workgroupBest(candidate: WorkgroupBest, lid: u32) -> WorkgroupBest {
  // Like max, best is idempotent: every lane leaves its subgroup's best.
  let best = subgroupBest(candidate);
  reduceScalars[lid] = best.value;
  reduceIndices[lid] = best.index;
  workgroupBarrier();
  let lanes = subgroupLanes();
  var partial = WorkgroupBest(0.0, NO_INDEX);
  for (var i = lanes.x; i < WORKGROUP_SIZE; i += lanes.y) {
    let other = WorkgroupBest(reduceScalars[i], reduceIndices[i]);
    if (ranksBefore(other, partial)) {
      partial = other;
    }
  }
  let result = subgroupBest(partial);
  workgroupBarrier();
  return result;
}

// Whether `a` comes before `b` in descending order of value, lower index first among equal values.
fn ranksBefore(a: WorkgroupBest, b: WorkgroupBest) -> bool {
  return a.index != NO_INDEX && (b.index == NO_INDEX || a.value > b.value || (a.value == b.value && a.index < b.index));
}
