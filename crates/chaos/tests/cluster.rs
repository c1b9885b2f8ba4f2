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

/// One replace-disk step, then one wrong-id step, over `secs` (a start
/// that is not refused is waited for 20 s).
fn disk_plan(seed: u64, secs: u64) -> Schedule {
    let step = |start_ms, kind| Step {
        start_ms,
        hold_ms: 1_500,
        faults: vec![Fault { kind, pick: 1 }],
    };
    Schedule {
        seed,
        duration_ms: secs * 1000,
        steps: vec![
            step(1_500, FaultKind::ReplaceDisk),
            step(5_000, FaultKind::WrongId),
        ],
    }
}

/// A wrapper around `bin` that behaves badly: a data dir started as
/// `--id wrong_id` keeps running, and a restarted node on an empty data dir
/// takes `--bootstrap` as `--join` instead of refusing.
fn bad_bin(bin: &std::path::Path, dir: &std::path::Path, wrong_id: u64) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = std::fs::canonicalize(bin).unwrap_or_else(|_| bin.to_path_buf());
    let path = dir.join("bad-raftkv.sh");
    let script = format!(
        "#!/bin/sh\n\
         case \" $* \" in *\" --id {} \"*) exec sleep 60;; esac\n\
         dd=''; prev=''\n\
         for a in \"$@\"; do [ \"$prev\" = --data-dir ] && dd=\"$a\"; prev=\"$a\"; done\n\
         if [ -n \"$dd\" ] && [ ! -e \"$dd/identity.toml\" ] && \
         grep -q 'start #[2-9]' \"$dd/../node.log\" 2>/dev/null; then\n\
           for a in \"$@\"; do [ \"$a\" = --bootstrap ] && a=--join; set -- \"$@\" \"$a\"; shift; done\n\
         fi\n\
         exec '{}' \"$@\"\n",
        wrong_id,
        real.display()
    );
    let _ = std::fs::create_dir_all(dir);
    std::fs::write(&path, script).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
    path
}

/// The disk faults against the real server: the wrong id and the
/// `--bootstrap` on a replaced disk are refused, the node is repaired, and
/// the run passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_faults_are_refused_and_repaired() {
    let Some(bin) = raftkv_bin() else { return };
    let mut config = config(bin, 31, 3, 12, false);
    config.network = false;
    let report = run_plan(config, disk_plan(31, 12)).await;
    assert!(report.passed(), "{}", report.summary());
    assert_eq!(report.injected.get("wrong-id"), Some(&1));
    assert_eq!(report.injected.get("replace-disk"), Some(&1));
}

/// The same faults against a server that accepts what it must refuse:
/// both are reported as node problems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_fault_checks_catch_a_server_that_does_not_refuse() {
    let Some(bin) = raftkv_bin() else { return };
    let mut config = config(bin.clone(), 32, 3, 50, false);
    config.network = false;
    // Nodes 1..=3: the wrong id the nemesis uses is max + 1 = 4.
    let dir = std::env::temp_dir().join(format!("chaos-bad-bin-{}", std::process::id()));
    config.bin = bad_bin(&bin, &dir, 4);
    let report = run_plan(config, disk_plan(32, 50)).await;
    let problems = report.node_problems.join("\n");
    assert!(
        problems.contains("as --id 4 and kept running"),
        "{}",
        report.summary()
    );
    assert!(
        problems.contains("started with --bootstrap while its peers held the cluster"),
        "{}",
        report.summary()
    );
    assert!(!report.passed());
    let _ = std::fs::remove_dir_all(&report.run_dir);
    let _ = std::fs::remove_dir_all(&dir);
}
