//! One chaos run from start to verdict: start the cluster, run clients and
//! the nemesis side by side, heal, check, and keep or clean the run folder.
//!
//! # Phases
//!
//! 1. Start `nodes` fresh nodes; wait until a write succeeds.
//! 2. For `duration`: clients run; the nemesis runs its schedule, healing
//!    after each step.
//! 3. Stop the clients, heal everything (restart, resume, uncut, finish
//!    membership changes) and measure how long until a probe write and a
//!    linearizable read succeed again: that must be within
//!    `recovery_bound` (check 4).
//! 4. Read every key linearizably (these reads join the history), then
//!    check (1) linearizability per key, (2) every acknowledged append
//!    exactly once and every register value a written one, (3) that all
//!    nodes reach the same applied index with identical keys, values and
//!    versions (serializable scans of each node).
//!
//! The run folder always receives `history.json`, `schedule.json`,
//! `events.json` and `summary.txt`, beside the nodes' logs and data; it is
//! deleted after a passing run unless `keep` is set.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{next_key, Client, ReadMode, Scan};
use serde::Serialize;
use tokio::sync::watch;

use crate::checks::{self, LinResult, NodeState};
use crate::cluster::{Cluster, ClusterSpec};
use crate::error::{Error, Result};
use crate::history::{self, Counts, Record};
use crate::limits;
use crate::nemesis::{Event, Nemesis};
use crate::net::{self, Firewall};
use crate::schedule::{FaultKind, Schedule};
use crate::workload::{self, client_config, WorkloadConfig};

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub nodes: u64,
    pub duration: Duration,
    /// The `raftkv` binary.
    pub bin: PathBuf,
    /// The run folder (created; must not exist or be empty).
    pub run_dir: PathBuf,
    pub workload: WorkloadConfig,
    /// Use partitions (needs root and nft); otherwise kills and pauses only.
    pub network: bool,
    /// Longest time after healing until the cluster serves again.
    pub recovery_bound: Duration,
    /// Longest wait for the replicas to converge after healing.
    pub converge_bound: Duration,
    /// Extra flags for `raftkv server`.
    pub server_args: Vec<String>,
    /// Keep the run folder even when the run passes.
    pub keep: bool,
    /// Wipe removed nodes without waiting until every node knows of the
    /// removal (see [`Nemesis::set_eager_wipe`]).
    pub eager_wipe: bool,
    /// The nodes serve linearizable reads from the leader's lease
    /// (`raftkv server --lease-read`).
    pub lease_read: bool,
}

/// What a run found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub nodes: u64,
    pub duration_ms: u64,
    pub serializable_reads: bool,
    pub follower_forwarding: bool,
    /// The nodes ran with `--lease-read`.
    pub lease_read: bool,
    /// `None` when partitions ran; else why they did not.
    pub network_off: Option<String>,
    pub counts: Counts,
    /// Faults injected, by kind name.
    pub injected: BTreeMap<String, usize>,
    /// Faults that could not be carried out, by kind name.
    pub skipped: BTreeMap<String, usize>,
    pub linearizability: LinResult,
    pub lost_or_doubled: Vec<String>,
    pub bad_registers: Vec<String>,
    /// `Ok(index)` the replicas agree at, or why not.
    pub convergence: std::result::Result<u64, String>,
    /// Milliseconds from healing to a served write and read, or why not.
    pub recovery_ms: std::result::Result<u64, String>,
    pub recovery_bound_ms: u64,
    /// Nodes that exited without being killed, and nodes left no voter.
    pub node_problems: Vec<String>,
    /// Nodes that refused to start on damaged data (allowed; repaired the
    /// documented way), with their error.
    pub refusals: Vec<String>,
    pub run_dir: PathBuf,
    pub kept: bool,
}

impl Report {
    /// Whether every check passed (an unknown linearizability verdict does
    /// not pass: the history was not proven).
    pub fn passed(&self) -> bool {
        self.linearizability == LinResult::Linearizable
            && self.lost_or_doubled.is_empty()
            && self.bad_registers.is_empty()
            && self.convergence.is_ok()
            && self
                .recovery_ms
                .as_ref()
                .is_ok_and(|ms| *ms <= self.recovery_bound_ms)
            && self.node_problems.is_empty()
    }

    /// The human summary printed after a run.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        s.push_str(&format!(
            "chaos run seed={} nodes={} duration={}s reads={}{}: {verdict}\n",
            self.seed,
            self.nodes,
            self.duration_ms / 1000,
            match (self.serializable_reads, self.lease_read) {
                (true, _) => "serializable",
                (false, true) => "linearizable (leader lease)",
                (false, false) => "linearizable",
            },
            if self.follower_forwarding {
                " via followers"
            } else {
                ""
            }
        ));
        if let Some(why) = &self.network_off {
            s.push_str(&format!(
                "  partitions: OFF ({why}); kills and pauses only\n"
            ));
        }
        s.push_str(&format!(
            "  ops: {} ok, {} failed, {} unknown\n",
            self.counts.ok, self.counts.failed, self.counts.unknown
        ));
        let faults: Vec<String> = self
            .injected
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        s.push_str(&format!("  faults: {}\n", faults.join(" ")));
        if !self.skipped.is_empty() {
            let sk: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            s.push_str(&format!("  faults skipped: {}\n", sk.join(" ")));
        }
        let lin = match &self.linearizability {
            LinResult::Linearizable => "ok".to_string(),
            LinResult::Violation(v) => format!("VIOLATION\n{}", clip(v)),
            LinResult::Unknown(v) => format!("UNKNOWN ({v})"),
        };
        s.push_str(&format!("  (1) linearizable per key: {lin}\n"));
        let lost = if self.lost_or_doubled.is_empty() && self.bad_registers.is_empty() {
            "ok".to_string()
        } else {
            let mut v = self.lost_or_doubled.clone();
            v.extend(self.bad_registers.iter().cloned());
            let total = v.len();
            v.truncate(SUMMARY_LINES_MAX);
            let more = if total > v.len() {
                format!(
                    "\n      ... and {} more (see history.json)",
                    total - v.len()
                )
            } else {
                String::new()
            };
            format!(
                "FAILED ({total} problems):\n      {}{more}",
                v.join("\n      ")
            )
        };
        s.push_str(&format!(
            "  (2) acknowledged writes in final reads: {lost}\n"
        ));
        let conv = match &self.convergence {
            Ok(i) => format!("ok (identical at applied index {i})"),
            Err(e) => format!("FAILED: {e}"),
        };
        s.push_str(&format!("  (3) replicas converge: {conv}\n"));
        let rec = match &self.recovery_ms {
            Ok(ms) if *ms <= self.recovery_bound_ms => {
                format!("ok ({ms} ms, bound {} ms)", self.recovery_bound_ms)
            }
            Ok(ms) => format!("FAILED: {ms} ms > bound {} ms", self.recovery_bound_ms),
            Err(e) => format!("FAILED: {e}"),
        };
        s.push_str(&format!("  (4) serves again after healing: {rec}\n"));
        for p in &self.node_problems {
            s.push_str(&format!("  node problem: {p}\n"));
        }
        for r in &self.refusals {
            s.push_str(&format!("  refused to start (allowed): {r}\n"));
        }
        if self.kept {
            s.push_str(&format!(
                "  run folder kept: {} (history.json, schedule.json, events.json, node-*/)\n",
                self.run_dir.display()
            ));
        }
        s
    }
}

/// Problem lines shown in a summary (the rest are in the run folder).
const SUMMARY_LINES_MAX: usize = 10;

/// Bytes of the checker's explanation shown per line in a summary.
const SUMMARY_LINE_BYTES_MAX: usize = 300;

/// The checker's explanation with over-long lines (whole values) cut.
fn clip(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.len() <= SUMMARY_LINE_BYTES_MAX {
                l.to_string()
            } else {
                let mut end = SUMMARY_LINE_BYTES_MAX;
                while !l.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{} ...[{} bytes]", &l[..end], l.len())
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_json<T: Serialize>(dir: &std::path::Path, name: &str, value: &T) -> Result<()> {
    let path = dir.join(name);
    let json = serde_json::to_vec_pretty(value)?;
    std::fs::write(&path, json).map_err(|e| Error::io("write", &path, e))
}

/// Waits until a put and a linearizable get succeed; returns how long it
/// took, or why it never did within `bound`.
async fn probe(client: &Client, bound: Duration) -> std::result::Result<u64, String> {
    let start = Instant::now();
    let mut last = String::from("no attempt");
    while start.elapsed() < bound {
        let ok = match client.put("chaos-probe", "1").await {
            Ok(_) => match client.get("chaos-probe").await {
                Ok(_) => true,
                Err(e) => {
                    last = e.to_string();
                    false
                }
            },
            Err(e) => {
                last = e.to_string();
                false
            }
        };
        if ok {
            return Ok(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("not serving after {bound:?}: {last}"))
}

/// A serializable full scan of one node.
async fn scan_node(id: u64, addr: &str) -> std::result::Result<NodeState, String> {
    let c = Client::connect(
        vec![addr.to_string()],
        client_config(Duration::from_secs(3)),
    )
    .map_err(|e| e.to_string())?;
    let mut kvs = BTreeMap::new();
    let mut start = Bytes::new();
    let mut applied = None;
    loop {
        let page = c
            .scan(Scan::range(start.clone(), Bytes::new()).mode(ReadMode::Serializable))
            .await
            .map_err(|e| format!("scan of node {id}: {e}"))?;
        let index = page.header.as_ref().map(|h| h.applied_index).unwrap_or(0);
        if *applied.get_or_insert(index) != index {
            return Err(format!("node {id} applied more while being scanned"));
        }
        for kv in &page.kvs {
            kvs.insert(kv.key.to_vec(), (kv.value.to_vec(), kv.version));
        }
        if kvs.len() > limits::scan_keys_max {
            return Err(format!("node {id} has over {} keys", limits::scan_keys_max));
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => start = next_key(&last.key),
            _ => break,
        }
    }
    Ok(NodeState {
        id,
        applied_index: applied.unwrap_or(0),
        kvs,
    })
}

/// Scans every node until they agree or `bound` passes.
async fn converge(cluster: &Cluster, bound: Duration) -> std::result::Result<u64, String> {
    let start = Instant::now();
    loop {
        let mut states = Vec::new();
        let mut err = None;
        for id in cluster.ids() {
            match scan_node(id, &cluster.addr(id)).await {
                Ok(s) => states.push(s),
                Err(e) => err = Some(e),
            }
        }
        let verdict = match err {
            Some(e) => Err(e),
            None => checks::convergence(&states),
        };
        if verdict.is_ok() || start.elapsed() >= bound {
            return verdict;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Starts the cluster and waits for a first served write.
async fn boot(cluster: &mut Cluster, bound: Duration) -> Result<()> {
    for id in cluster.ids() {
        cluster.start(id, false)?;
    }
    let c = Client::connect(cluster.endpoints(), client_config(Duration::from_secs(2)))?;
    probe(&c, bound).await.map(|_| ()).map_err(Error::NotReady)
}

/// Runs one chaos run with `schedule` and reports. `cancel` turning true
/// (Ctrl-C) ends the fault phase early; the checks still run.
///
/// # Errors
/// When the run could not be set up (folders, firewall, binary, no
/// leader at boot); checker verdicts are in the [`Report`].
pub async fn run(
    config: RunConfig,
    schedule: Schedule,
    network_off: Option<String>,
    cancel: watch::Receiver<bool>,
) -> Result<Report> {
    let ids: Vec<u64> = (1..=config.nodes).collect();
    std::fs::create_dir_all(&config.run_dir)
        .map_err(|e| Error::io("create", &config.run_dir, e))?;
    write_json(&config.run_dir, "schedule.json", &schedule)?;

    let mut firewall = if config.network {
        Some(Firewall::install(&ids)?)
    } else {
        None
    };
    let spec = ClusterSpec {
        bin: config.bin.clone(),
        run_dir: config.run_dir.clone(),
        ids: ids.clone(),
        as_node_users: config.network,
        extra_args: config.server_args.clone(),
    };
    let mut cluster = Cluster::new(spec, config.seed)?;
    if let Err(e) = boot(&mut cluster, Duration::from_secs(30)).await {
        cluster.stop_all().await;
        let mut tails = String::new();
        for id in cluster.ids() {
            tails.push_str(&format!(
                "\n--- node {id} log tail ---\n{}",
                cluster.log_tail(id, limits::log_tail_bytes_max)
            ));
        }
        return Err(Error::NotReady(format!("{e}{tails}")));
    }

    // Phase 2: clients and nemesis.
    let clock = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let clients = tokio::spawn(workload::run(
        cluster.endpoints(),
        config.workload.clone(),
        config.seed,
        clock,
        stop_rx,
    ));
    let mut nemesis = Nemesis::new(&mut cluster, firewall.as_mut(), clock)?;
    nemesis.set_eager_wipe(config.eager_wipe);
    {
        // The fault phase ends at the duration or on cancel.
        let (phase_tx, phase_rx) = watch::channel(false);
        let mut cancel2 = cancel.clone();
        let duration = config.duration;
        let timer = tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(duration) => {}
                _ = cancel2.wait_for(|c| *c) => {}
            }
            let _ = phase_tx.send(true);
        });
        nemesis.run(&schedule, &phase_rx).await;
        let _ = timer.await;
    }
    let _ = stop_tx.send(true);
    let mut records: Vec<Record> = match clients.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(Error::Client(e)),
        Err(e) => return Err(Error::NotReady(format!("client tasks: {e}"))),
    };

    // Phase 3: heal and measure recovery.
    let mut node_problems: Vec<String> = Vec::new();
    for (id, how) in nemesis.note_crashes() {
        node_problems.push(format!("node {id} exited on its own: {how}"));
    }
    for e in &nemesis.events {
        if e.what.contains("exited on its own") && !node_problems.contains(&e.what) {
            node_problems.push(e.what.clone());
        }
    }
    let healed_at = Instant::now();
    nemesis.heal().await;
    let admin = Client::connect(
        nemesis.cluster.endpoints(),
        client_config(Duration::from_secs(2)),
    )?;
    let recovery_ms = probe(&admin, config.recovery_bound).await;
    let recovery_ms =
        recovery_ms.map(|_| u64::try_from(healed_at.elapsed().as_millis()).unwrap_or(u64::MAX));
    node_problems.extend(
        nemesis
            .repair_membership(Instant::now() + config.converge_bound)
            .await,
    );
    node_problems.extend(nemesis.violations.iter().cloned());
    let refusals = nemesis.refusals.clone();
    let events: Vec<Event> = nemesis.events.clone();
    let injected: BTreeMap<String, usize> = nemesis
        .injected
        .iter()
        .map(|(k, n)| (k.name().to_string(), *n))
        .collect();
    let skipped: BTreeMap<String, usize> = nemesis
        .skipped
        .iter()
        .map(|(k, n)| (k.name().to_string(), *n))
        .collect();
    drop(nemesis);

    // Phase 4: final reads and checks.
    let keys = config.workload.keys();
    let (final_records, finals) =
        workload::final_reads(&admin, &keys, clock, Instant::now() + config.converge_bound).await;
    records.extend(final_records);
    let counts = history::counts(&records);
    let linearizability = checks::linearizability(&records);
    let lost_or_doubled = checks::appends_exactly_once(&records, &finals);
    let bad_registers = checks::registers_written(&records, &finals);
    let convergence = converge(&cluster, config.converge_bound).await;
    for (id, how) in cluster.reap_exited() {
        node_problems.push(format!("node {id} exited on its own: {how}"));
    }
    cluster.stop_all().await;
    if let Some(fw) = firewall.as_mut() {
        fw.remove();
    }

    write_json(&config.run_dir, "history.json", &records)?;
    write_json(&config.run_dir, "events.json", &events)?;
    let mut report = Report {
        seed: config.seed,
        nodes: config.nodes,
        duration_ms: u64::try_from(config.duration.as_millis()).unwrap_or(u64::MAX),
        serializable_reads: config.workload.serializable_reads,
        follower_forwarding: config.workload.follower_forwarding,
        lease_read: config.lease_read,
        network_off,
        counts,
        injected,
        skipped,
        linearizability,
        lost_or_doubled,
        bad_registers,
        convergence,
        recovery_ms,
        recovery_bound_ms: u64::try_from(config.recovery_bound.as_millis()).unwrap_or(u64::MAX),
        node_problems,
        refusals,
        run_dir: config.run_dir.clone(),
        kept: true,
    };
    let summary_path = config.run_dir.join("summary.txt");
    std::fs::write(&summary_path, report.summary())
        .map_err(|e| Error::io("write", &summary_path, e))?;
    if report.passed() && !config.keep {
        drop(cluster);
        std::fs::remove_dir_all(&config.run_dir)
            .map_err(|e| Error::io("remove", &config.run_dir, e))?;
        report.kept = false;
    }
    Ok(report)
}

/// Every fault kind a run with or without the firewall can inject
/// (without the disk faults).
pub fn kinds(network: bool) -> Vec<FaultKind> {
    FaultKind::enabled(network, false)
}

/// Why partitions cannot run here, if they cannot (see [`net::capability`]).
pub fn network_unavailable() -> Option<String> {
    net::capability().err()
}
