//! The chaos runner's bounds, in one place.
#![allow(non_upper_case_globals)] // Limits are named `thing_max` (see STYLE.md).

/// Most nodes in one cluster (addresses are 127.0.0.(10+id), uids
/// `node_uid_base + id`).
pub const nodes_max: u64 = 9;

/// Most concurrent client tasks.
pub const clients_max: usize = 64;

/// Most operations one run records; clients stop issuing new ones when the
/// history is full (the checker's search is exponential in the worst case).
pub const history_ops_max: usize = 200_000;

/// Most faults injected at once in one nemesis step.
pub const faults_per_step_max: usize = 3;

/// Most nemesis steps in one schedule.
pub const schedule_steps_max: usize = 10_000;

/// Most keys one final scan of a node may return before the convergence
/// check gives up on that node (the workload uses a handful).
pub const scan_keys_max: usize = 100_000;

/// Bytes of one node log copied into the failure report excerpt.
pub const log_tail_bytes_max: u64 = 4096;

/// Uid of node `id` is `node_uid_base + id` when running as root: the
/// firewall tells nodes' connections apart by their owner.
pub const node_uid_base: u32 = 61_000;
