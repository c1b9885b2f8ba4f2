//! Deterministic simulation of raftkv clusters, with fault injection and
//! safety checkers.
//!
//! One `u64` seed drives a whole run: the cluster's shape, the fault rates,
//! the network's delays, drops, duplicates and reorderings, partitions
//! (symmetric, isolate-the-leader, one-way, bridge) and their healing,
//! crashes that lose everything not yet synced and the restarts after them,
//! process stalls (a node stops for 2 to 150 ticks: no ticks, messages held
//! or dropped, requests held; it resumes with its clock jumped and, half the
//! time, the ticks it missed), leadership transfers, membership changes (add a learner, promote it,
//! remove a voter, remove the leader), and a client workload of put / get /
//! append / compare-and-swap / delete with exactly-once sessions and
//! ReadIndex reads, or lease reads (half the runs with check-quorum;
//! `--lease-read` for all). Time is simulated ([`TICK`] time units per Raft
//! tick; a unit is a millisecond of the clock the nodes get through
//! `RawNode::set_now`); nothing reads a real clock, and every collection iterates in a fixed order,
//! so the same seed replays the same run. Each run prints a hash of its
//! trace (every delivered message, client message and fault) to prove it.
//!
//! Checked after every time unit, on every node something happened to
//! (see [`invariants`]): election safety, log matching, committed entries
//! never changing, leader completeness, state-machine safety, and the
//! core's own `check_invariants()`. Checked at the end, after the faults
//! stop and the cluster settles: replicas at the same applied index have
//! the same state (digest), every acknowledged append on an append-only key
//! is there exactly once and nothing is there twice, and the client history
//! is linearizable ([`lincheck`], per key; timed-out operations may or may
//! not have taken effect).
//!
//! Scenarios ([`Scenario`]): a 3-node cluster, a 5-node cluster, a
//! 3-node cluster that changes membership as it runs, and `figure8`: a
//! 5-node cluster replicating one entry per message under a leader killer
//! that cuts off each new leader after a few ticks ([`figure8`]), the chain
//! of events in which counting an older term's entry toward commit loses a
//! committed entry. All of them run with every fault enabled; seeds take
//! the four in turn.
//!
//! The checks themselves are tested: [`invariants`] has unit tests that
//! feed each checker a known-unsafe state, and three [`Sabotage`] modes break
//! the simulator on purpose (reads answered locally without ReadIndex;
//! retries outside the client session; leases counted in the node's own
//! ticks with stalls not counted, as before the core took a clock) so that
//! tests can show the end checks reject the runs. `--skip-core-invariants` turns off the nodes'
//! own `check_invariants()`, to see what the cluster-wide checkers catch by
//! themselves when a protocol rule is broken in the core.
//!
//! # Command line
//!
//! ```text
//! cargo run -p sim --release -- --seeds 300           # seeds 0..300, a table per scenario
//! cargo run -p sim --release -- --seed 17 --verbose   # replay one seed, with its events
//! cargo run -p sim --release -- --seed 17 --verbose --trace-messages
//! cargo run -p sim --release -- --seeds 100 --nodes 5 # or --scenario membership
//! cargo run -p sim --release -- --seeds 100 --scenario figure8
//! cargo run -p sim --release -- --seeds 2000 --lease-read   # lease reads in every run
//! cargo run -p sim --release -- --seed 17 --lease-read --sabotage tick-clock  # caught
//! ```
//!
//! ```no_run
//! let report = sim::run(42, &sim::Options::default());
//! assert!(report.violation.is_none(), "{}", report.summary());
//! ```

pub mod client;
pub mod cluster;
pub mod faults;
pub mod figure8;
pub mod fsm;
pub mod invariants;
pub mod limits;
pub mod net;
pub mod node;
pub mod rng;
pub mod trace;

mod end;
mod serve;

use std::fmt;

use raft::{Index, NodeId};

use crate::client::{Client, ClientTiming, OpStats};
use crate::cluster::{Cluster, NodeSettings};
use crate::faults::FaultPlan;
use crate::net::{NetFaults, NetStats, Network};
use crate::rng::Rng;

/// Simulated time, in units; a Raft tick is [`TICK`] units.
pub type Time = u64;

/// Time units per Raft tick.
pub const TICK: Time = 10;

/// The shape of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Three voters.
    Three,
    /// Five voters.
    Five,
    /// Three voters to start with; learners are added and promoted, voters
    /// (the leader among them) removed, keeping 3 to 5 voters.
    Membership,
    /// Five voters replicating one entry per message, under a leader killer
    /// that cuts off or crashes every new leader after a short tenure: the
    /// chain of short-lived leaders behind Raft's Figure 8 (see
    /// [`figure8`]).
    Figure8,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 4] = [
        Scenario::Three,
        Scenario::Five,
        Scenario::Membership,
        Scenario::Figure8,
    ];

    /// The scenario a seed runs when none is forced: they take turns.
    pub fn for_seed(seed: u64) -> Scenario {
        Scenario::ALL[(seed % 4) as usize]
    }

    /// The scenario's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Three => "3-node",
            Scenario::Five => "5-node",
            Scenario::Membership => "membership",
            Scenario::Figure8 => "figure8",
        }
    }

    /// The scenario with that name.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A deliberate mistake on the simulator's side (not in the protocol), to
/// show that the end-to-end checks catch what it breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// Nodes answer reads from their local state machine at once, without
    /// ReadIndex: stale reads, which the linearizability check must catch.
    LocalReads,
    /// Clients retry a write with a new sequence number, so the session
    /// table cannot recognise the retry: appends applied twice, which the
    /// exactly-once check (and lincheck) must catch.
    RetryWithNewSeq,
    /// Each node's clock (`RawNode::set_now`) is made of its own ticks, and
    /// a stalled node gets no ticks for the time it lost: the lease as it
    /// was counted before it took a clock (ticks, with a ticker that does
    /// not count a stall). With lease reads on, a leader resumed after a
    /// stall serves stale reads, which lincheck must catch.
    TickClock,
}

/// How to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Length of a run in time units (the last quarter has no faults).
    pub steps: Time,
    /// Concurrent clients.
    pub clients: usize,
    /// Force a scenario instead of [`Scenario::for_seed`].
    pub scenario: Option<Scenario>,
    /// Print every fault, leader change and violation as it happens.
    pub verbose: bool,
    /// Also print every message delivered.
    pub trace_messages: bool,
    /// Break something on purpose (see [`Sabotage`]).
    pub sabotage: Option<Sabotage>,
    /// Call each node's own `check_invariants()` after every step (on by
    /// default; off shows what the cluster-wide checkers catch alone).
    pub core_invariants: bool,
    /// Lease reads on every run that has check-quorum (which then is always
    /// on); without it, half the runs with check-quorum draw them.
    pub lease_read: bool,
    /// Process stalls in the fault schedule (on by default).
    pub stalls: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            steps: 20_000,
            clients: 4,
            scenario: None,
            verbose: false,
            trace_messages: false,
            sabotage: None,
            core_invariants: true,
            lease_read: false,
            stalls: true,
        }
    }
}

/// Faults injected in a run, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub crashes: u64,
    pub restarts: u64,
    pub partitions: u64,
    pub one_way_partitions: u64,
    pub transfers: u64,
    pub conf_changes_proposed: u64,
    pub conf_changes_applied: u64,
    pub compactions: u64,
    /// Compactions the core refused (and that were retried later).
    pub compactions_refused: u64,
    pub snapshots_installed: u64,
    /// Leader-down reports a follower took (`RawNode::report_leader_down`),
    /// after a crash or wrongly, about a live leader.
    pub down_reports: u64,
    /// Process stalls (see [`node`]).
    pub stalls: u64,
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub scenario: Scenario,
    /// The hash of the run's trace (see [`trace`]).
    pub trace_hash: u64,
    /// The first violation found, if any.
    pub violation: Option<String>,
    pub ops: OpStats,
    /// Operations in the checked history.
    pub history_ops: usize,
    /// The linearizability checker gave up (no violation found, none
    /// proven absent).
    pub lincheck_unknown: bool,
    pub net: NetStats,
    pub faults: FaultStats,
    /// Terms that had a leader.
    pub leader_terms: usize,
    /// The highest committed index seen.
    pub commit: Index,
    /// Whether a leader was up at the end.
    pub leader_at_end: bool,
    /// Whether every running member had applied the same index at the end.
    pub converged: bool,
    /// Time units simulated.
    pub steps: Time,
    /// The members of the last leader's configuration.
    pub members_at_end: Vec<NodeId>,
}

impl Report {
    /// The report of a run that found nothing yet (also used for a run
    /// that panicked).
    pub fn empty(seed: u64, opts: &Options) -> Report {
        Report {
            seed,
            scenario: opts.scenario.unwrap_or(Scenario::for_seed(seed)),
            trace_hash: 0,
            violation: None,
            ops: OpStats::default(),
            history_ops: 0,
            lincheck_unknown: false,
            net: NetStats::default(),
            faults: FaultStats::default(),
            leader_terms: 0,
            commit: 0,
            leader_at_end: false,
            converged: false,
            steps: 0,
            members_at_end: Vec::new(),
        }
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "seed {} {}: trace {:016x}; ops ok {} failed {} unknown {}; terms {}, commit {}; \
             crashes {}, partitions {}, conf changes {}, snapshots {}",
            self.seed,
            self.scenario,
            self.trace_hash,
            self.ops.ok,
            self.ops.failed,
            self.ops.unknown,
            self.leader_terms,
            self.commit,
            self.faults.crashes,
            self.faults.partitions,
            self.faults.conf_changes_applied,
            self.faults.snapshots_installed,
        );
        match &self.violation {
            Some(v) => s.push_str(&format!("; VIOLATION: {v}")),
            None if self.lincheck_unknown => s.push_str("; lincheck gave up"),
            None => s.push_str("; ok"),
        }
        s
    }
}

/// Runs one seed.
pub fn run(seed: u64, opts: &Options) -> Report {
    let mut rng = Rng::new(seed);
    let scenario = opts.scenario.unwrap_or(Scenario::for_seed(seed));
    let n: NodeId = match scenario {
        Scenario::Three | Scenario::Membership => 3,
        Scenario::Five | Scenario::Figure8 => 5,
    };
    let steps = opts.steps.min(limits::STEPS_MAX);
    let faults = NetFaults::random(&mut rng);
    let mut settings = NodeSettings {
        pre_vote: rng.chance(750),
        check_quorum: rng.chance(750),
        fsync_max: rng.range(1, 30),
        compact_every: rng.range(10, 200),
        entries_per_append_max: rng.pick(&[1, 2, 4, 64, 256]).unwrap_or(64),
        inflight_appends_max: rng.pick(&[1, 2, 8, 64]).unwrap_or(8),
        lease_read: false,
    };
    // A quarter of the runs are crash storms.
    let crash_per_mille = if rng.chance(250) {
        rng.range(20, 60)
    } else {
        rng.range(2, 10)
    };
    let mut plan = FaultPlan {
        scenario,
        fault_end: (steps * 3 / 4) / TICK * TICK,
        crash_per_mille,
        down_max: rng.range(1, n / 2 + 2) as usize,
        partition_per_mille: rng.range(2, 12),
        transfer_per_mille: rng.range(0, 5),
        membership_per_mille: 15,
        misreport_per_mille: 3,
        stall_per_mille: 0,
        heal_at: None,
        next_id: n + 1,
        killer: None,
    };
    if scenario == Scenario::Figure8 {
        // Drawn after the common draws, so the other scenarios' runs do
        // not change.
        settings.entries_per_append_max = 1;
        settings.inflight_appends_max = rng.range(1, 3) as usize;
        settings.fsync_max = rng.range(1, 8);
        plan.crash_per_mille = rng.range(0, 3);
        plan.partition_per_mille = 0;
        plan.transfer_per_mille = 0;
        plan.down_max = 2;
        plan.killer = Some(figure8::LeaderKiller::default());
    }
    // Drawn last, so that the draws above stay as they were.
    settings.lease_read = rng.chance(500);
    if opts.lease_read {
        settings.check_quorum = true;
        settings.lease_read = true;
    }
    plan.stall_per_mille = rng.range(2, 12);
    if !opts.stalls {
        plan.stall_per_mille = 0;
    }
    let voters: Vec<NodeId> = (1..=n).collect();
    let mut report = Report::empty(seed, opts);
    let mut cluster = match Cluster::new(
        rng.fork(),
        Network::new(faults),
        &voters,
        settings,
        opts.verbose,
    ) {
        Ok(c) => c,
        Err(e) => {
            report.violation = Some(format!("cluster setup failed: {e}"));
            return report;
        }
    };
    let timing = ClientTiming {
        think_max: 30,
        attempt_timeout: 200,
        op_timeout: 1200,
    };
    cluster.trace_messages = opts.trace_messages;
    cluster.local_reads = opts.sabotage == Some(Sabotage::LocalReads);
    cluster.tick_clock = opts.sabotage == Some(Sabotage::TickClock);
    cluster.core_invariants = opts.core_invariants;
    for i in 0..opts.clients.min(limits::CLIENTS_MAX) {
        let mut client = Client::new(i, rng.fork(), timing.clone());
        client.new_seq_on_retry = opts.sabotage == Some(Sabotage::RetryWithNewSeq);
        cluster.clients.push(client);
    }
    cluster.plan = Some(plan);
    let quiet_at = steps.saturating_sub(timing.op_timeout + 300);
    while cluster.now < steps && cluster.violation.is_none() {
        cluster.quiet = cluster.now >= quiet_at;
        cluster.step();
    }
    if cluster.violation.is_none() {
        end::check_end(&mut cluster, &mut report);
    }
    report.violation = cluster.violation.clone();
    report.trace_hash = cluster.trace.finish();
    report.ops = cluster.ops.clone();
    report.net = cluster.net.stats.clone();
    report.faults = cluster.faults.clone();
    report.leader_terms = cluster.inv.leader_terms();
    report.commit = cluster.inv.committed_max();
    report.steps = cluster.now;
    report
}
