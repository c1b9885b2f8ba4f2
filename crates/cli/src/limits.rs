//! The CLI's limits, in one place.

use std::time::Duration;

/// Most nodes `raftkv dev` starts.
pub const DEV_NODES_MAX: u16 = 9;
/// How long `raftkv dev` gives a node to stop after SIGTERM before SIGKILL.
pub const DEV_STOP_GRACE_MAX: Duration = Duration::from_secs(10);
/// How long `raftkv dev` waits for the first leader before printing its
/// banner anyway.
pub const DEV_LEADER_WAIT_MAX: Duration = Duration::from_secs(30);
/// Most concurrent `raftkv bench` clients.
pub const BENCH_CLIENTS_MAX: u64 = 4096;
/// Largest `raftkv bench` value, in bytes.
pub const BENCH_VALUE_SIZE_MAX: u64 = 16 * 1024 * 1024;
/// Highest latency the bench histogram records, in microseconds (larger
/// values are clamped to it).
pub const BENCH_LATENCY_US_MAX: u64 = 60_000_000;
/// Most bench tasks preloading keys at once.
pub const BENCH_PRELOAD_TASKS_MAX: u64 = 64;
/// Largest value read from a file or standard input (`put KEY -`,
/// `--value-file`), in bytes: above any node's `value_size_max` cap, so
/// the node's own limit is the one that answers.
pub const VALUE_INPUT_SIZE_MAX: usize = 64 * 1024 * 1024;
/// Lines typed into `raftkv dev` waiting to be handled.
pub const DEV_STDIN_LINES_MAX: usize = 16;
