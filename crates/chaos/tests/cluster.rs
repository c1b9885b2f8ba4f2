//! Chaos runs against real `raftkv` processes. They need the binary, so
//! they run only when `CHAOS_RAFTKV_BIN` names it (e.g.
//! `CHAOS_RAFTKV_BIN=target/release/raftkv cargo test -p chaos --release
//! -- --include-ignored`); without it each test says so and passes
//! vacuously. The 60-second ones are `#[ignore]`d as well.
//!
//! Partitions are used when the test runs as root with `nft`; otherwise
//! kills and pauses only.

use std::path::PathBuf;
use std::time::Duration;

use chaos::run::{self, RunConfig};
use chaos::schedule::{self, Fault, FaultKind, Schedule, Step, Timing};
use chaos::workload::WorkloadConfig;
use tokio::sync::watch;

fn raftkv_bin() -> Option<PathBuf> {
    match std::env::var_os("CHAOS_RAFTKV_BIN") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("CHAOS_RAFTKV_BIN is not set: skipping a chaos run against real processes");
            None
        }
    }
}

/// A run in a fresh folder under the temp dir: removed when the run passes,
/// kept (and printed by the summary) when it fails.
fn config(bin: PathBuf, seed: u64, nodes: u64, secs: u64, serializable: bool) -> RunConfig {
    let run_dir = std::env::temp_dir().join(format!(
        "chaos-test-{seed}-{}-{}",
        std::process::id(),
        if serializable { "ser" } else { "lin" }
    ));
    let network_off = run::network_unavailable();
    RunConfig {
        seed,
        nodes,
        duration: Duration::from_secs(secs),
        bin,
        run_dir,
        workload: WorkloadConfig {
            clients: 6,
            serializable_reads: serializable,
            ..WorkloadConfig::default()
        },
        network: network_off.is_none(),
        recovery_bound: Duration::from_secs(20),
        converge_bound: Duration::from_secs(30),
        server_args: vec![
            "--tick-ms".into(),
            "50".into(),
            "--snapshot-threshold".into(),
            "500".into(),
        ],
        keep: false,
        eager_wipe: false,
        lease_read: false,
    }
}

/// Runs `plan` to its end and prints the summary.
async fn run_plan(config: RunConfig, plan: Schedule) -> run::Report {
    let (_tx, cancel) = watch::channel(false);
    let report = run::run(config, plan, run::network_unavailable(), cancel)
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    println!("{}", report.summary());
    report
}

/// Runs the generated schedule of `config.seed`, `duration_ms` long.
async fn run_generated(config: RunConfig, duration_ms: u64) -> run::Report {
    let plan = schedule::generate(
        config.seed,
        duration_ms,
        config.network,
        false,
        Timing::default(),
    );
    run_plan(config, plan).await
}

/// Stale reads must be caught: serializable reads from random nodes while
/// the leader is paused and (with a firewall) isolated, checked as
/// linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_reads_checked_as_linearizable_are_a_violation() {
    let Some(bin) = raftkv_bin() else { return };
    let config = config(bin, 11, 3, 12, true);
    let network = config.network;
    let mut steps = vec![Step {
        start_ms: 1_500,
        hold_ms: 3_000,
        faults: vec![Fault {
            kind: FaultKind::PauseLeader,
            pick: 0,
        }],
    }];
    if network {
        steps.push(Step {
            start_ms: 6_000,
            hold_ms: 4_000,
            faults: vec![Fault {
                kind: FaultKind::IsolateLeader,
                pick: 0,
            }],
        });
    }
    let plan = Schedule {
        seed: 11,
        duration_ms: 12_000,
        steps,
    };
    let report = run_plan(config, plan).await;
    assert!(
        report.linearizability.is_violation(),
        "stale serializable reads went unnoticed:\n{}",
        report.summary()
    ); // The expected failure keeps the folder; it is of no further use.
    let _ = std::fs::remove_dir_all(&report.run_dir);
}

/// A short run of the full nemesis with linearizable reads passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_run_with_linearizable_reads_passes() {
    let Some(bin) = raftkv_bin() else { return };
    let report = run_generated(config(bin, 3, 3, 20, false), 20_000).await;
    assert!(report.passed(), "{}", report.summary());
    assert!(report.counts.ok > 0);
}

/// The long version: 5 nodes, 60 s, every fault kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "60-second chaos run; needs CHAOS_RAFTKV_BIN"]
async fn sixty_seconds_five_nodes_every_fault_passes() {
    let Some(bin) = raftkv_bin() else { return };
    let report = run_generated(config(bin, 60, 5, 60, false), 60_000).await;
    assert!(report.passed(), "{}", report.summary());
}

/// The long serializable version: must find a violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "60-second chaos run; needs CHAOS_RAFTKV_BIN"]
async fn sixty_seconds_serializable_reads_are_a_violation() {
    let Some(bin) = raftkv_bin() else { return };
    let report = run_generated(config(bin, 61, 5, 60, true), 60_000).await;
    assert!(
        report.linearizability.is_violation(),
        "{}",
        report.summary()
    );
    let _ = std::fs::remove_dir_all(&report.run_dir);
}
