//! `sim`: run the deterministic cluster simulator over many seeds, or
//! replay one.
//!
//! ```text
//! cargo run -p sim --release -- --seeds 300          # seeds 0..300
//! cargo run -p sim --release -- --seed 17 --verbose  # replay one
//! ```

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use sim::{Options, Report, Sabotage, Scenario};

/// Deterministic simulation of raftkv clusters under faults.
#[derive(Parser, Debug)]
#[command(name = "sim")]
struct Args {
    /// Run this many seeds, starting at --first.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of a multi-seed run.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Replay just this seed (prints its trace hash).
    #[arg(long)]
    seed: Option<u64>,
    /// Only 3- or 5-node runs (no membership changes).
    #[arg(long)]
    nodes: Option<u64>,
    /// Force a scenario: 3-node, 5-node, membership or figure8.
    #[arg(long)]
    scenario: Option<String>,
    /// Time units per run (a Raft tick is 10 units).
    #[arg(long, default_value_t = Options::default().steps)]
    steps: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = Options::default().clients)]
    clients: usize,
    /// Print every fault, leader change and violation.
    #[arg(long)]
    verbose: bool,
    /// With --seed: also print every message delivered.
    #[arg(long)]
    trace_messages: bool,
    /// Break the simulator on purpose to see the checks fire:
    /// local-reads, retry-new-seq or tick-clock.
    #[arg(long)]
    sabotage: Option<String>,
    /// Lease reads (and check-quorum) on in every run.
    #[arg(long)]
    lease_read: bool,
    /// No process stalls in the fault schedule.
    #[arg(long)]
    no_stalls: bool,
    /// Do not call each node's own check_invariants() (to see what the
    /// cluster-wide checkers catch alone).
    #[arg(long)]
    skip_core_invariants: bool,
}

#[derive(Default)]
struct Tally {
    runs: u64,
    violations: u64,
    ok: u64,
    failed: u64,
    unknown: u64,
    lincheck_unknown: u64,
    no_leader_at_end: u64,
    not_converged: u64,
    crashes: u64,
    partitions: u64,
    conf_changes: u64,
    snapshots: u64,
}

fn run_caught(seed: u64, opts: &Options) -> Report {
    match panic::catch_unwind(AssertUnwindSafe(|| sim::run(seed, opts))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            let mut r = Report::empty(seed, opts);
            r.violation = Some(format!("panic: {msg}"));
            r
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenario = match (&args.scenario, args.nodes) {
        (Some(name), _) => match Scenario::from_name(name) {
            Some(s) => Some(s),
            None => {
                eprintln!("unknown scenario {name:?}: use 3-node, 5-node, membership or figure8");
                return ExitCode::from(2);
            }
        },
        (None, Some(3)) => Some(Scenario::Three),
        (None, Some(5)) => Some(Scenario::Five),
        (None, Some(n)) => {
            eprintln!("--nodes must be 3 or 5, not {n}");
            return ExitCode::from(2);
        }
        (None, None) => None,
    };
    let sabotage = match args.sabotage.as_deref() {
        None => None,
        Some("local-reads") => Some(Sabotage::LocalReads),
        Some("retry-new-seq") => Some(Sabotage::RetryWithNewSeq),
        Some("tick-clock") => Some(Sabotage::TickClock),
        Some(other) => {
            eprintln!("unknown sabotage {other:?}: use local-reads, retry-new-seq or tick-clock");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        steps: args.steps,
        clients: args.clients,
        scenario,
        verbose: args.verbose,
        trace_messages: args.trace_messages,
        sabotage,
        core_invariants: !args.skip_core_invariants,
        lease_read: args.lease_read,
        stalls: !args.no_stalls,
    };
    let replay = |seed: u64| {
        let mut s = format!("cargo run -p sim --release -- --seed {seed}");
        if let Some(sc) = scenario {
            s.push_str(&format!(" --scenario {sc}"));
        }
        if args.steps != Options::default().steps {
            s.push_str(&format!(" --steps {}", args.steps));
        }
        if args.clients != Options::default().clients {
            s.push_str(&format!(" --clients {}", args.clients));
        }
        if args.lease_read {
            s.push_str(" --lease-read");
        }
        if args.no_stalls {
            s.push_str(" --no-stalls");
        }
        if let Some(sb) = &args.sabotage {
            s.push_str(&format!(" --sabotage {sb}"));
        }
        s
    };

    if let Some(seed) = args.seed {
        let started = Instant::now();
        if !args.verbose {
            // Keep panics from the core readable in a replay.
            panic::set_hook(Box::new(|info| eprintln!("{info}")));
        }
        let r = run_caught(seed, &opts);
        println!("{}", r.summary());
        println!(
            "  net: sent {} delivered {} dropped {} duplicated {} blocked {}",
            r.net.sent, r.net.delivered, r.net.dropped, r.net.duplicated, r.net.blocked
        );
        println!(
            "  faults: {:?}; leader at end: {}; converged: {}; members {:?}; history {} ops",
            r.faults, r.leader_at_end, r.converged, r.members_at_end, r.history_ops
        );
        println!(
            "  trace hash {:016x}; {:.2?}",
            r.trace_hash,
            started.elapsed()
        );
        return if r.violation.is_some() {
            println!("replay: {}", replay(seed));
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }

    panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let mut tallies: BTreeMap<Scenario, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut gave_up = Vec::new();
    for seed in args.first..args.first + args.seeds {
        let r = run_caught(seed, &opts);
        let t = tallies.entry(r.scenario).or_default();
        t.runs += 1;
        t.ok += r.ops.ok;
        t.failed += r.ops.failed;
        t.unknown += r.ops.unknown;
        t.lincheck_unknown += u64::from(r.lincheck_unknown);
        if r.lincheck_unknown {
            gave_up.push(seed);
        }
        t.no_leader_at_end += u64::from(r.violation.is_none() && !r.leader_at_end);
        t.not_converged += u64::from(r.violation.is_none() && !r.converged);
        t.crashes += r.faults.crashes;
        t.partitions += r.faults.partitions;
        t.conf_changes += r.faults.conf_changes_applied;
        t.snapshots += r.faults.snapshots_installed;
        if let Some(v) = &r.violation {
            t.violations += 1;
            println!("seed {seed} ({}): VIOLATION {v}", r.scenario);
            println!("  replay: {}", replay(seed));
            failures.push(seed);
        } else if args.verbose {
            println!("{}", r.summary());
        }
    }
    println!(
        "{:<11} {:>5} {:>10} {:>8} {:>7} {:>8} {:>9} {:>9} {:>7} {:>6} {:>8} {:>9}",
        "scenario",
        "runs",
        "violations",
        "ops ok",
        "failed",
        "unknown",
        "lin-gave",
        "no-leader",
        "crashes",
        "parts",
        "confchg",
        "snapshots"
    );
    let mut total = Tally::default();
    for (s, t) in &tallies {
        println!(
            "{:<11} {:>5} {:>10} {:>8} {:>7} {:>8} {:>9} {:>9} {:>7} {:>6} {:>8} {:>9}",
            s.name(),
            t.runs,
            t.violations,
            t.ok,
            t.failed,
            t.unknown,
            t.lincheck_unknown,
            t.no_leader_at_end,
            t.crashes,
            t.partitions,
            t.conf_changes,
            t.snapshots
        );
        total.runs += t.runs;
        total.violations += t.violations;
    }
    println!(
        "{} runs, {} violations, {:.1?}{}",
        total.runs,
        total.violations,
        started.elapsed(),
        if failures.is_empty() {
            String::new()
        } else {
            format!("; failing seeds: {failures:?}")
        }
    );
    if !gave_up.is_empty() {
        println!("the linearizability check gave up (step budget) on seeds {gave_up:?}");
    }
    if total.violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
