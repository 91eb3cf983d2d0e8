// The gate of `unlessAll` (src/backend/webgpu/context.ts), placed before every kernel file. Every
// entry point begins with
//     if (gate_closed()) { return; }
// Group 1 binds the dispatch's gate: for a dispatch recorded inside `unlessAll`, the word that
// `exit.close_gate` wrote on the device earlier in the same submission (1 when every done flag was
// set); for any other dispatch, a gate that is always open. The word is a uniform, so returning on
// it keeps control flow uniform for the barriers and subgroup operations that follow.
//
// Why not indirect dispatches with zero workgroups: Dawn validates every indirect dispatch with a
// hidden dispatch of its own (`TransformIndirectDispatchBuffer`), which cost more than the layers
// it skipped. A closed gate still launches the workgroups, which return at once.

@group(1) @binding(0) var<uniform> gate: u32;

fn gate_closed() -> bool {
  return gate != 0u;
}
