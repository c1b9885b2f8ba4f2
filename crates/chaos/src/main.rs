//! The `chaos` binary: runs chaos runs (see the `chaos` crate docs) and
//! prints a summary per run and a table for several seeds.
//!
//! Exit status: 0 when every run passed (with `--expect-violation`: when
//! every run found a linearizability violation), 1 when one did not, 2 when
//! a run could not be carried out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chaos::run::{self, Report, RunConfig};
use chaos::schedule::{self, Timing};
use chaos::workload::WorkloadConfig;
use clap::Parser;
use tokio::sync::watch;

/// Jepsen-style chaos runs against a real raftkv cluster.
#[derive(Debug, Parser)]
#[command(name = "chaos", version)]
struct Args {
    /// Nodes in the cluster (3 to 9).
    #[arg(long, default_value_t = 5)]
    nodes: u64,
    /// How long faults are injected per run (e.g. 60s, 2m, 500ms).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// The seed of the first run (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// How many runs, with seeds seed, seed+1, ...
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The raftkv binary (default: next to this binary, else
    /// $CARGO_TARGET_DIR/release or target/release, else built with cargo).
    #[arg(long, value_name = "PATH")]
    raftkv_bin: Option<PathBuf>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Register keys (put / get / cas) and append keys (append / get).
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// Serve reads serializable from a random node, check them as
    /// linearizable (must report violations).
    #[arg(long)]
    serializable_reads: bool,
    /// Clients let followers forward their calls to the leader and stay
    /// with the node that answers (the path plain gRPC clients take).
    #[arg(long)]
    follower_forwarding: bool,
    /// The nodes serve linearizable reads from the leader's lease
    /// (`raftkv server --lease-read`); pauses (SIGSTOP of the leader or a
    /// random node) are part of every schedule.
    #[arg(long)]
    lease_read: bool,
    /// Exit 0 only if every run found a linearizability violation.
    #[arg(long)]
    expect_violation: bool,
    /// No partitions even when root: kills, pauses, membership only.
    #[arg(long)]
    no_partitions: bool,
    /// Wipe a removed node as soon as the leader confirms the removal, not
    /// once every node knows of it (reproduces the amnesiac-voter hazard).
    #[arg(long)]
    eager_wipe: bool,
    /// Add the disk faults: replace a node's disk (wipe, restart with the
    /// same flags), cut a node's WAL, restart a node with another id.
    #[arg(long)]
    disk_faults: bool,
    /// Keep the run folders of passing runs too.
    #[arg(long)]
    keep: bool,
    /// Where run folders go (one per seed).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Longest time after healing until the cluster serves again.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    recovery_bound: Duration,
    /// One client operation's deadline.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    op_timeout: Duration,
    /// The nodes' Raft tick (elections take 10-20 ticks).
    #[arg(long, default_value_t = 50)]
    tick_ms: u64,
    /// Entries between the nodes' snapshots (small, to exercise them).
    #[arg(long, default_value_t = 500)]
    snapshot_threshold: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 60s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("`{s}`: the unit must be ms, s or m")),
    }
}

fn executable(p: &Path) -> bool {
    p.is_file()
}

/// Where the raftkv binary is (see `--raftkv-bin`).
fn find_raftkv(flag: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = flag {
        return if executable(&p) {
            Ok(p)
        } else {
            Err(format!("--raftkv-bin {} is no file", p.display()))
        };
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join("raftkv"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    candidates.push(target.join("release").join("raftkv"));
    if let Some(found) = candidates.iter().find(|p| executable(p)) {
        return Ok(found.clone());
    }
    eprintln!("chaos: no raftkv binary found; building it with `cargo build --release -p cli`");
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "-p", "cli", "--bin", "raftkv"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of raftkv failed: {status}"));
    }
    candidates
        .into_iter()
        .find(|p| executable(p))
        .ok_or_else(|| "raftkv still not found after building; pass --raftkv-bin".into())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHAOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if !(3..=chaos::limits::nodes_max).contains(&args.nodes) {
        eprintln!("chaos: --nodes must be 3..={}", chaos::limits::nodes_max);
        return ExitCode::from(2);
    }
    let bin = match find_raftkv(args.raftkv_bin.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(2);
        }
    };
    let network_off = if args.no_partitions {
        Some("--no-partitions given".to_string())
    } else {
        run::network_unavailable()
    };
    if let Some(why) = &network_off {
        eprintln!(
            "chaos: partitions OFF: {why}; running kills, pauses and membership changes only"
        );
    } else {
        chaos::net::remove_stale_table();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async_main(args, bin, network_off))
}

async fn async_main(args: Args, bin: PathBuf, network_off: Option<String>) -> ExitCode {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("chaos: interrupted; healing, checking and cleaning up");
            let _ = cancel_tx.send(true);
        }
    });
    let first = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("chaos"));
    let mut reports: Vec<Report> = Vec::new();
    let mut errors = 0;
    for seed in first..first.saturating_add(args.seeds.max(1)) {
        if *cancel_rx.borrow() {
            break;
        }
        let network = network_off.is_none();
        let duration_ms = u64::try_from(args.duration.as_millis()).unwrap_or(u64::MAX);
        let plan = schedule::generate(
            seed,
            duration_ms,
            network,
            args.disk_faults,
            Timing::default(),
        );
        let config = RunConfig {
            seed,
            nodes: args.nodes,
            duration: args.duration,
            bin: bin.clone(),
            run_dir: root.join(format!("seed-{seed}-{}", std::process::id())),
            workload: WorkloadConfig {
                clients: args.clients,
                register_keys: args.keys,
                append_keys: args.keys,
                serializable_reads: args.serializable_reads,
                follower_forwarding: args.follower_forwarding,
                op_timeout: args.op_timeout,
                ..WorkloadConfig::default()
            },
            network,
            recovery_bound: args.recovery_bound,
            converge_bound: Duration::from_secs(30),
            server_args: {
                let mut a = vec![
                    "--tick-ms".into(),
                    args.tick_ms.to_string(),
                    "--snapshot-threshold".into(),
                    args.snapshot_threshold.to_string(),
                ];
                if args.lease_read {
                    a.push("--lease-read".into());
                }
                a
            },
            keep: args.keep,
            eager_wipe: args.eager_wipe,
            lease_read: args.lease_read,
        };
        println!("chaos: seed {seed}: {} steps planned", plan.steps.len());
        match run::run(config, plan, network_off.clone(), cancel_rx.clone()).await {
            Ok(report) => {
                print!("{}", report.summary());
                if !report.passed() {
                    println!(
                        "chaos: FAILED seed {seed}; folder {}",
                        report.run_dir.display()
                    );
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("chaos: seed {seed}: run could not be carried out: {e}");
                errors += 1;
            }
        }
    }
    if reports.len() > 1 {
        println!("\n| seed | ok | failed | unknown | faults | lin | writes | converge | recovery ms | verdict |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for r in &reports {
            let faults: usize = r.injected.values().sum();
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.seed,
                r.counts.ok,
                r.counts.failed,
                r.counts.unknown,
                faults,
                match &r.linearizability {
                    chaos::checks::LinResult::Linearizable => "ok",
                    chaos::checks::LinResult::Violation(_) => "VIOLATION",
                    chaos::checks::LinResult::Unknown(_) => "unknown",
                },
                if r.lost_or_doubled.is_empty() && r.bad_registers.is_empty() {
                    "ok"
                } else {
                    "LOST/DOUBLED"
                },
                if r.convergence.is_ok() {
                    "ok"
                } else {
                    "DIVERGED"
                },
                r.recovery_ms
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_else(|e| e.clone()),
                if r.passed() { "PASS" } else { "FAIL" },
            );
        }
    }
    if errors > 0 {
        return ExitCode::from(2);
    }
    let ok = if args.expect_violation {
        reports.iter().all(|r| r.linearizability.is_violation())
    } else {
        reports.iter().all(Report::passed)
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
