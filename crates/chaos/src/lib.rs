//! Jepsen-style chaos tests for raftkv: real `raftkv` processes on
//! loopback under kills, pauses, network partitions, membership changes and
//! leadership transfers, with concurrent clients whose histories are
//! checked afterwards.
//!
//! # Running it
//!
//! ```text
//! cargo build --release -p cli -p chaos
//! target/release/chaos --nodes 5 --duration 60s --seed 7
//! ```
//!
//! prints operations ok / failed / unknown, faults injected by kind, and
//! the verdict of each check (see [`run`] for the phases and checks). A
//! failing run keeps its folder — `history.json`, `schedule.json`,
//! `events.json`, `summary.txt`, every node's log and data dir — and prints
//! its path and seed; `--seed S` replays the same schedule and the same
//! client choices (the cluster's timing differs, so a replay is likely, not
//! certain, to fail the same way).
//!
//! Partitions need root and the `nft` binary ([`net`] explains how packets
//! between two nodes are told apart on loopback). Without them the runner
//! says so and injects kills, pauses, membership changes and transfers only.
//!
//! `--serializable-reads` serves every read from one node chosen at random,
//! locally, while the checker still demands linearizability: stale reads
//! then show as violations. That mode is how we know the checks can fail.
//!
//! `--disk-faults` adds faults to a node's data dir: its disk replaced
//! (wiped, restarted with `--bootstrap`, which must be refused, then
//! without), its newest WAL segment cut, its data dir started under another
//! `--id` (which must be refused naming both ids). See
//! [`schedule::FaultKind`].
//!
//! `--lease-read` starts the nodes with `--lease-read`: linearizable reads
//! are served from the leader's lease, which must stay safe when the leader
//! is paused (SIGSTOP) past its election timeout and resumed.
//!
//! # Modules
//!
//! - [`schedule`]: the seeded nemesis plan; [`rng`]: its generator.
//! - [`nemesis`]: carries the plan out; [`cluster`]: the processes;
//!   [`net`]: the firewall.
//! - [`workload`]: the clients; [`history`]: what they record.
//! - [`checks`]: the verdicts; [`run`]: one whole run.

pub mod checks;
pub mod cluster;
pub mod error;
pub mod history;
pub mod limits;
pub mod nemesis;
pub mod net;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod workload;

pub use error::{Error, Result};
