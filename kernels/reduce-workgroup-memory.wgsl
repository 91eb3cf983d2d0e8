// Workgroup-wide reductions through workgroup memory (a binary tree, log2(WORKGROUP_SIZE) steps);
// the same functions as `reduce-subgroups.wgsl`, for devices without the `subgroups` extension.
// Every invocation of the workgroup must call them (in uniform control flow) and gets the result.
// Expects from the kernel file: `override WORKGROUP_SIZE: u32`, a power of two.

// Value of a `WorkgroupBest` that holds no element; it ranks after every element.
const NO_INDEX = 0xffffffffu;

struct WorkgroupBest {
  value: f32,
  index: u32,
}

var<workgroup> reduceScalars: array<f32, WORKGROUP_SIZE>;
var<workgroup> reduceVectors: array<vec3<f32>, WORKGROUP_SIZE>;
var<workgroup> reduceIndices: array<u32, WORKGROUP_SIZE>;

fn workgroupSum(value: f32, lid: u32) -> f32 {
  reduceScalars[lid] = value;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      reduceScalars[lid] += reduceScalars[lid + stride];
    }
    workgroupBarrier();
  }
  let total = reduceScalars[0];
  workgroupBarrier(); // the array is free for the next reduction
  return total;
}

fn workgroupSum3(value: vec3<f32>, lid: u32) -> vec3<f32> {
  reduceVectors[lid] = value;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      reduceVectors[lid] += reduceVectors[lid + stride];
    }
    workgroupBarrier();
  }
  let total = reduceVectors[0];
  workgroupBarrier();
  return total;
}

fn workgroupMax(value: f32, lid: u32) -> f32 {
  reduceScalars[lid] = value;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      reduceScalars[lid] = max(reduceScalars[lid], reduceScalars[lid + stride]);
    }
    workgroupBarrier();
  }
  let result = reduceScalars[0];
  workgroupBarrier();
  return result;
}

// The best element: the largest value, the lowest index among equal values.
fn workgroupBest(candidate: WorkgroupBest, lid: u32) -> WorkgroupBest {
  reduceScalars[lid] = candidate.value;
  reduceIndices[lid] = candidate.index;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      let other = WorkgroupBest(reduceScalars[lid + stride], reduceIndices[lid + stride]);
      if (ranksBefore(other, WorkgroupBest(reduceScalars[lid], reduceIndices[lid]))) {
        reduceScalars[lid] = other.value;
        reduceIndices[lid] = other.index;
      }
    }
    workgroupBarrier();
  }
  let result = WorkgroupBest(reduceScalars[0], reduceIndices[0]);
  workgroupBarrier();
  return result;
}

// Whether `a` comes before `b` in descending order of value, lower index first among equal values.
fn ranksBefore(a: WorkgroupBest, b: WorkgroupBest) -> bool {
  return a.index != NO_INDEX && (b.index == NO_INDEX || a.value > b.value || (a.value == b.value && a.index < b.index));
}
