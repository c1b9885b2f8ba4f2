//! The nemesis: carries out a [`Schedule`] against a running [`Cluster`],
//! heals after each step, and logs what it did.
//!
//! Healing a step restarts the nodes it killed (on their data), resumes the
//! ones it paused and removes every cut. A membership change runs inside
//! its step: remove the node, *confirm* through `Members` that it is gone
//! (only then is wiping its disk safe: a voter's disk is never wiped), kill
//! it, wipe its data, restart it with `--join`, add it as a learner, wait
//! until it has caught up, promote it. A node re-added without a wipe
//! (its removal was not yet known everywhere) that says it was removed is
//! wiped first: a removed node never takes part again on its old data. A change left half-done (a timeout)
//! is finished by [`Nemesis::repair_membership`] after the last step.
//!
//! The disk faults (`--disk-faults`) follow docs/operations.md. A replaced
//! disk: the voter (not the leader when another can be chosen) is killed
//! and wiped; healing restarts it with its usual `--bootstrap`, which must
//! exit non-zero saying to start without `--bootstrap`, then starts it
//! without (it rejoins as the same id, recovering, and the leader repairs
//! it). A cut WAL: the node is killed, its newest segment cut past the
//! header, and restarted when healing. Healing waits (bounded) until such a
//! node is no longer recovering. A wrong id: the killed node's data dir is
//! started as `--id <max id + 1>`, which must exit non-zero naming both
//! ids. A start that should be refused and is not, or a refusal that does
//! not say why, is a violation of the run ([`Nemesis::violations`]).
//!
//! Nemesis actions that fail (a transfer the leader refuses, a remove that
//! times out) are logged and counted, not treated as violations: under
//! faults the cluster may rightly refuse them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client::{Client, Role};
use serde::Serialize;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::error::Result;
use crate::net::Firewall;
use crate::schedule::{partition_cuts, pick_node, Fault, FaultKind, Schedule};
use crate::workload::client_config;

/// One thing the nemesis did, for the run's log.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Milliseconds since the workload started.
    pub at_ms: u64,
    pub what: String,
}

/// Runs faults against a cluster (see the module docs).
pub struct Nemesis<'a> {
    pub cluster: &'a mut Cluster,
    pub firewall: Option<&'a mut Firewall>,
    admin: Client,
    clock: Instant,
    pub events: Vec<Event>,
    /// Faults injected, by kind.
    pub injected: BTreeMap<FaultKind, usize>,
    /// Faults that could not be carried out (no leader known, no firewall,
    /// a refused change), by kind.
    pub skipped: BTreeMap<FaultKind, usize>,
    /// Nodes to restart / resume when the step heals.
    killed: Vec<u64>,
    paused: Vec<u64>,
    /// Nodes whose disk was replaced: restarted with their usual flags when
    /// the step heals (see [`FaultKind::ReplaceDisk`]).
    replaced: Vec<u64>,
    /// Nodes whose WAL was cut: restarted when the step heals; one that
    /// refuses to start is repaired as docs/operations.md says (its data
    /// dir moved aside, started without `--bootstrap`).
    truncated: Vec<u64>,
    /// Nodes whose log was damaged or lost: healing waits (bounded) until
    /// they are no longer recovering, so that the next step does not take
    /// a second voter away while this one has no vote.
    repairing: Vec<u64>,
    /// What the disk faults found wrong with the nodes (a start that should
    /// have been refused and was not, a refusal that does not say why):
    /// failures of the run.
    pub violations: Vec<String>,
    /// Nodes that refused to start on damaged data, with their error (not
    /// a failure: refusing is one of the two allowed outcomes).
    pub refusals: Vec<String>,
    /// Wipe a removed node as soon as the leader confirms the removal,
    /// without waiting until every other node knows of it (see
    /// [`Nemesis::set_eager_wipe`]).
    eager_wipe: bool,
}

impl<'a> Nemesis<'a> {
    /// A nemesis over `cluster`, using `firewall` for partitions when given.
    ///
    /// # Errors
    /// A client error building the admin client.
    pub fn new(
        cluster: &'a mut Cluster,
        firewall: Option<&'a mut Firewall>,
        clock: Instant,
    ) -> Result<Nemesis<'a>> {
        let admin = Client::connect(cluster.endpoints(), client_config(Duration::from_secs(3)))?;
        Ok(Nemesis {
            cluster,
            firewall,
            admin,
            clock,
            events: Vec::new(),
            injected: BTreeMap::new(),
            skipped: BTreeMap::new(),
            killed: Vec::new(),
            paused: Vec::new(),
            replaced: Vec::new(),
            truncated: Vec::new(),
            repairing: Vec::new(),
            violations: Vec::new(),
            refusals: Vec::new(),
            eager_wipe: false,
        })
    }

    /// With `eager` set, a removed node is wiped as soon as the leader
    /// confirms its removal. By default the nemesis first waits until every
    /// running node's configuration lacks it: a node that still holds the
    /// old configuration could otherwise win an election with the vote of
    /// the wiped node (which has lost its log and its vote), and two
    /// leaders would accept writes. Raft's membership change does not
    /// protect against a voter losing its disk; `eager` reproduces that.
    pub fn set_eager_wipe(&mut self, eager: bool) {
        self.eager_wipe = eager;
    }

    /// Whether every running node's configuration lacks node `id`; `Err`
    /// names one that still lists it (or could not say).
    async fn removal_known_everywhere(&self, id: u64) -> std::result::Result<(), String> {
        for other in self.cluster.ids() {
            if other == id || !self.cluster.is_running(other) {
                continue;
            }
            let status = self
                .admin
                .status_of(&self.cluster.addr(other))
                .await
                .map_err(|e| format!("node {other}: {e}"))?;
            if status.members.iter().any(|m| m.id == id) {
                return Err(format!("node {other} still lists node {id}"));
            }
        }
        Ok(())
    }

    fn log(&mut self, what: impl Into<String>) {
        let at_ms = u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let what = what.into();
        tracing::info!(at_ms, "nemesis: {what}");
        self.events.push(Event { at_ms, what });
    }

    fn skip(&mut self, kind: FaultKind, why: impl Into<String>) {
        *self.skipped.entry(kind).or_default() += 1;
        self.log(format!("{} skipped: {}", kind.name(), why.into()));
    }

    fn done(&mut self, kind: FaultKind, what: impl Into<String>) {
        *self.injected.entry(kind).or_default() += 1;
        self.log(format!("{}: {}", kind.name(), what.into()));
    }

    /// Runs every step of `schedule` whose start is before `stop` turns
    /// true, healing after each.
    pub async fn run(&mut self, schedule: &Schedule, stop: &watch::Receiver<bool>) {
        for step in &schedule.steps {
            let start = self.clock + Duration::from_millis(step.start_ms);
            if !sleep_until(start, stop).await {
                break;
            }
            for fault in &step.faults {
                self.inject(*fault).await;
            }
            let end = start + Duration::from_millis(step.hold_ms);
            let interrupted = !sleep_until(end, stop).await;
            self.heal().await;
            self.note_crashes();
            if interrupted {
                break;
            }
        }
    }

    /// Logs nodes that exited without being killed by the nemesis and
    /// returns them (a crash is a failure of the run).
    pub fn note_crashes(&mut self) -> Vec<(u64, String)> {
        let crashed = self.cluster.reap_exited();
        for (id, how) in &crashed {
            self.log(format!("node {id} exited on its own: {how}"));
        }
        crashed
    }

    /// The node that leads, as the nodes that answer report it: the leader
    /// with the highest term.
    pub async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for id in self.cluster.ids() {
            if !self.cluster.is_running(id) || self.cluster.is_paused(id) {
                continue;
            }
            let addr = self.cluster.addr(id);
            let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(700), self.admin.status_of(&addr)).await
            else {
                continue;
            };
            if s.role == Role::Leader as i32 && best.is_none_or(|(t, _)| s.term > t) {
                best = Some((s.term, s.id));
            }
        }
        best.map(|(_, id)| id)
    }

    /// Nodes up and not paused, not already hit in this step.
    fn healthy(&self) -> Vec<u64> {
        self.cluster
            .ids()
            .into_iter()
            .filter(|&id| self.cluster.is_running(id) && !self.cluster.is_paused(id))
            .collect()
    }

    async fn inject(&mut self, fault: Fault) {
        let kind = fault.kind;
        let leader = self.leader().await;
        let healthy = self.healthy();
        match kind {
            FaultKind::KillRandom | FaultKind::KillLeader => {
                let target = if kind == FaultKind::KillLeader {
                    leader
                } else {
                    pick_node(&healthy, fault.pick, &[])
                };
                let Some(id) = target.filter(|id| healthy.contains(id)) else {
                    return self.skip(kind, "no target (no leader known)");
                };
                match self.cluster.kill(id).await {
                    Ok(()) => {
                        self.killed.push(id);
                        self.done(kind, format!("SIGKILL node {id}"));
                    }
                    Err(e) => self.skip(kind, e.to_string()),
                }
            }
            FaultKind::PauseLeader | FaultKind::PauseRandom => {
                let target = if kind == FaultKind::PauseLeader {
                    leader
                } else {
                    pick_node(&healthy, fault.pick, &[])
                };
                let Some(id) = target.filter(|id| healthy.contains(id)) else {
                    return self.skip(kind, "no target (no leader known)");
                };
                match self.cluster.pause(id) {
                    Ok(()) => {
                        self.paused.push(id);
                        self.done(kind, format!("SIGSTOP node {id}"));
                    }
                    Err(e) => self.skip(kind, e.to_string()),
                }
            }
            FaultKind::IsolateLeader
            | FaultKind::MajorityMinority
            | FaultKind::Bridge
            | FaultKind::OneWay => {
                let cuts = partition_cuts(kind, &self.cluster.ids(), leader, fault.pick);
                let Some(fw) = self.firewall.as_deref_mut() else {
                    return self.skip(kind, "no firewall");
                };
                if cuts.is_empty() {
                    return self.skip(kind, "no leader known");
                }
                let shown: Vec<String> = cuts.iter().map(|(a, b)| format!("{a}->{b}")).collect();
                match fw.set_cuts(cuts) {
                    Ok(()) => self.done(kind, format!("drop {}", shown.join(" "))),
                    Err(e) => self.skip(kind, e.to_string()),
                }
            }
            FaultKind::TransferLeader => {
                let Some(from) = leader else {
                    return self.skip(kind, "no leader known");
                };
                let Some(to) = pick_node(&healthy, fault.pick, &[from]).filter(|&t| t != from)
                else {
                    return self.skip(kind, "no other node");
                };
                match self.admin.transfer_leader(to).await {
                    Ok(r) => self.done(kind, format!("{from} -> {to}, leader now {}", r.leader_id)),
                    Err(e) => self.skip(kind, format!("{from} -> {to}: {e}")),
                }
            }
            FaultKind::ReplaceDisk => {
                let voters: Vec<u64> = match self.admin.members().await {
                    Ok(m) => m
                        .members
                        .iter()
                        .filter(|m| !m.learner && healthy.contains(&m.id))
                        .map(|m| m.id)
                        .collect(),
                    Err(e) => return self.skip(kind, format!("members: {e}")),
                };
                let avoid: Vec<u64> = leader.into_iter().collect();
                let Some(id) = pick_node(&voters, fault.pick, &avoid) else {
                    return self.skip(kind, "no voter up");
                };
                if let Err(e) = self.cluster.kill(id).await {
                    return self.skip(kind, e.to_string());
                }
                match self.cluster.wipe(id) {
                    Ok(()) => {
                        self.replaced.push(id);
                        self.done(kind, format!("SIGKILL node {id}, its data dir wiped"));
                    }
                    Err(e) => {
                        self.killed.push(id);
                        self.skip(kind, format!("wipe {id}: {e}"));
                    }
                }
            }
            FaultKind::TruncateWal => {
                let Some(id) = self.kill_one(kind, &healthy, fault.pick).await else {
                    return;
                };
                match self.cluster.truncate_wal(id, fault.pick.rotate_left(17)) {
                    Ok((path, from, to)) => {
                        self.truncated.push(id);
                        self.done(
                            kind,
                            format!(
                                "SIGKILL node {id}, {} cut from {from} to {to} bytes",
                                path.display()
                            ),
                        );
                    }
                    Err(e) => {
                        self.killed.push(id);
                        self.skip(kind, format!("node {id}: {e}"));
                    }
                }
            }
            FaultKind::WrongId => {
                let Some(id) = self.kill_one(kind, &healthy, fault.pick).await else {
                    return;
                };
                self.killed.push(id);
                let other = self.cluster.ids().into_iter().max().unwrap_or(id) + 1;
                match self.wrong_id(id, other).await {
                    Ok(how) => self.done(kind, how),
                    Err(why) => {
                        *self.injected.entry(kind).or_default() += 1;
                        self.log(format!("wrong-id VIOLATION: {why}"));
                        self.violations.push(why);
                    }
                }
            }
            FaultKind::Membership => {
                let avoid: Vec<u64> = leader.into_iter().collect();
                let Some(id) = pick_node(&healthy, fault.pick, &avoid) else {
                    return self.skip(kind, "no target");
                };
                match self.readd(id).await {
                    Ok(how) => self.done(kind, how),
                    Err(why) => self.skip(kind, format!("node {id}: {why}")),
                }
            }
        }
    }

    /// SIGKILLs the node `pick` chooses among `healthy`; `None` (the fault
    /// counted as skipped) when there is none or the kill fails.
    async fn kill_one(&mut self, kind: FaultKind, healthy: &[u64], pick: u64) -> Option<u64> {
        let Some(id) = pick_node(healthy, pick, &[]) else {
            self.skip(kind, "no node up");
            return None;
        };
        match self.cluster.kill(id).await {
            Ok(()) => Some(id),
            Err(e) => {
                self.skip(kind, e.to_string());
                None
            }
        }
    }

    /// Starts node `id`'s data dir as node `other`: `Ok` when the start is
    /// refused (non-zero exit) with a message naming both ids, else what
    /// went wrong. Leaves the node stopped.
    async fn wrong_id(&mut self, id: u64, other: u64) -> std::result::Result<String, String> {
        self.cluster
            .start_as(id, other)
            .map_err(|e| format!("node {id} as --id {other}: {e}"))?;
        let Some(status) = self.cluster.wait_exit(id, NODE_REFUSAL_WAIT).await else {
            let _ = self.cluster.kill(id).await;
            return Err(format!(
                "node {id}'s data dir started as --id {other} and kept running"
            ));
        };
        if status.success() {
            return Err(format!(
                "node {id}'s data dir started as --id {other} exited 0"
            ));
        }
        let tail = self.cluster.log_tail(id, NODE_LOG_TAIL);
        let named = tail.contains(&format!("belongs to node {id}"))
            && tail.contains(&format!("--id {other}"));
        if !named {
            return Err(format!(
                "node {id} as --id {other} was refused ({status}) without naming both ids"
            ));
        }
        Ok(format!(
            "SIGKILL node {id}; its data dir as --id {other} refused ({status}), naming both ids"
        ))
    }

    /// Restarts node `id` after its disk was replaced, the documented way:
    /// with its usual flags first (an empty data dir with `--bootstrap`
    /// must be refused, telling to start without it), then without
    /// `--bootstrap`.
    async fn restart_replaced(&mut self, id: u64) {
        let bootstrap = !self.cluster.is_joined(id);
        if let Err(e) = self.cluster.start(id, false) {
            return self.log(format!("heal: restart {id} failed: {e}"));
        }
        if !bootstrap {
            // It joined once (a membership change): its flags say --join.
            self.log(format!("heal: restart replaced node {id} (with --join)"));
            self.repairing.push(id);
            return;
        }
        match self.cluster.wait_exit(id, NODE_REFUSAL_WAIT).await {
            None => {
                let why = format!(
                    "node {id} on an empty data dir started with --bootstrap while its peers \
                     held the cluster"
                );
                self.log(format!("replace-disk VIOLATION: {why}"));
                self.violations.push(why);
                // Start it the documented way all the same.
                let _ = self.cluster.kill(id).await;
            }
            Some(status) => {
                let tail = self.cluster.log_tail(id, NODE_LOG_TAIL);
                if status.success() || !tail.contains("without --bootstrap") {
                    let why = format!(
                        "node {id} on an empty data dir with --bootstrap ended ({status}) \
                         without saying to start it without --bootstrap"
                    );
                    self.log(format!("replace-disk VIOLATION: {why}"));
                    self.violations.push(why);
                } else {
                    self.log(format!(
                        "heal: node {id} with --bootstrap on its empty data dir refused \
                         ({status}) as it should; restarting it without --bootstrap"
                    ));
                }
            }
        }
        match self.cluster.start(id, true) {
            Ok(()) => {
                self.log(format!("heal: restart replaced node {id} (with --join)"));
                self.repairing.push(id);
            }
            Err(e) => self.log(format!("heal: restart {id} failed: {e}")),
        }
    }

    /// Restarts node `id` after its WAL was cut. It must start (recovering
    /// when the cut went below its commit index) or refuse; a refusal is
    /// logged with the node's error and repaired the documented way: the
    /// data dir moved aside, the node started without `--bootstrap`.
    async fn restart_truncated(&mut self, id: u64) {
        if let Err(e) = self.cluster.start(id, false) {
            return self.log(format!("heal: restart {id} failed: {e}"));
        }
        // Started (it answers) or refused (it exits), whichever comes first.
        let addr = self.cluster.addr(id);
        let until = Instant::now() + NODE_START_WAIT;
        let status = loop {
            if let Some(status) = self.cluster.wait_exit(id, Duration::from_millis(100)).await {
                break Some(status);
            }
            if Instant::now() >= until || self.admin.status_of(&addr).await.is_ok() {
                break None;
            }
        };
        let Some(status) = status else {
            self.log(format!("heal: restart node {id} (its WAL cut)"));
            self.repairing.push(id);
            return;
        };
        let tail = self.cluster.log_tail(id, NODE_LOG_TAIL);
        let error = tail
            .lines()
            .rev()
            .find(|l| l.starts_with("error"))
            .unwrap_or("(no error line)")
            .to_string();
        self.refusals
            .push(format!("node {id} on its cut WAL: {error}"));
        self.log(format!(
            "heal: node {id} refused to start on its cut WAL ({status}): {error}"
        ));
        match self.cluster.set_aside(id) {
            Ok(aside) => self.log(format!(
                "heal: node {id}'s data dir moved to {}; starting it without --bootstrap",
                aside.display()
            )),
            Err(e) => return self.log(format!("heal: moving node {id}'s data aside: {e}")),
        }
        match self.cluster.start(id, true) {
            Ok(()) => self.repairing.push(id),
            Err(e) => self.log(format!("heal: restart {id} failed: {e}")),
        }
    }

    /// Waits (bounded) until node `id` answers and is no longer recovering.
    async fn wait_repaired(&mut self, id: u64) {
        let addr = self.cluster.addr(id);
        let started = Instant::now();
        let until = started + NODE_REPAIR_WAIT;
        let mut last = String::from("no answer");
        while Instant::now() < until {
            if let Some(status) = self.cluster.wait_exit(id, Duration::ZERO).await {
                let why = format!("node {id} exited while being repaired: {status}");
                self.log(format!("VIOLATION: {why}"));
                self.violations.push(why);
                return;
            }
            match self.admin.status_of(&addr).await {
                Ok(s) if !s.recovering => {
                    return self.log(format!(
                        "heal: node {id} repaired (applied {}) after {} ms",
                        s.applied_index,
                        started.elapsed().as_millis()
                    ));
                }
                Ok(s) => last = format!("recovering at applied {}", s.applied_index),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.log(format!(
            "heal: node {id} not repaired within {} s: {last}",
            NODE_REPAIR_WAIT.as_secs()
        ));
    }

    /// Whether `id` is a member (`Some(learner?)`), per the leader.
    async fn membership_of(&self, id: u64) -> std::result::Result<Option<bool>, String> {
        let members = self.admin.members().await.map_err(|e| e.to_string())?;
        Ok(members
            .members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.learner))
    }

    /// Remove node `id`, wipe it, add it back as a learner, promote it.
    async fn readd(&mut self, id: u64) -> std::result::Result<String, String> {
        if let Err(e) = self.admin.remove(id).await {
            // NotFound after a retried remove: the first attempt applied.
            self.log(format!("membership: remove {id} answered {e}"));
        }
        // Wipe only a node that is certainly no member: wait (bounded) for
        // the removal to show in the leader's member list.
        let until = Instant::now() + Duration::from_secs(5);
        while self.membership_of(id).await?.is_some() {
            if Instant::now() >= until {
                return Err("remove not confirmed; not wiping a member".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !self.eager_wipe {
            let until = Instant::now() + Duration::from_secs(10);
            while let Err(why) = self.removal_known_everywhere(id).await {
                if Instant::now() >= until {
                    self.log(format!("membership: {why}; re-adding node {id} unwiped"));
                    self.finish_readd(id).await?;
                    return Ok(format!("node {id} removed and re-added (not wiped: {why})"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.log(format!("membership: node {id} removed; wiping it"));
        self.cluster.kill(id).await.map_err(|e| e.to_string())?;
        self.cluster.wipe(id).map_err(|e| e.to_string())?;
        self.cluster.start(id, true).map_err(|e| e.to_string())?;
        self.finish_readd(id).await?;
        Ok(format!("node {id} removed, wiped, re-added and promoted"))
    }

    /// Adds `id` as a learner if it is no member, waits for it to catch
    /// up, promotes it if it is a learner.
    async fn finish_readd(&mut self, id: u64) -> std::result::Result<(), String> {
        let addr = self.cluster.addr(id);
        let peer_addr = self.cluster.peer_addr(id);
        // A node that knows it was removed (its removal is committed) stays
        // out for good on its data: wipe it, as an operator would.
        if self.admin.status_of(&addr).await.is_ok_and(|s| s.removed) {
            self.log(format!(
                "membership: node {id} says it was removed; wiping it"
            ));
            self.cluster.kill(id).await.map_err(|e| e.to_string())?;
            self.cluster.wipe(id).map_err(|e| e.to_string())?;
            self.cluster.start(id, true).map_err(|e| e.to_string())?;
        }
        if self.membership_of(id).await?.is_none() {
            let added = self.admin.add_learner(id, &peer_addr).await;
            if let Err(e) = added {
                if !matches!(e, client::Error::AlreadyExists(_)) {
                    return Err(format!("add learner: {e}"));
                }
            }
        }
        // Catch-up: the learner's applied index reaches the leader's commit.
        let target = self
            .admin
            .status()
            .await
            .map(|s| s.commit_index)
            .unwrap_or(0);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = self.admin.status_of(&addr).await {
                if s.applied_index >= target {
                    break;
                }
            }
            if Instant::now() >= until {
                return Err(format!("learner {id} did not catch up to {target}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if self.membership_of(id).await? == Some(true) {
            self.admin
                .promote(id)
                .await
                .map_err(|e| format!("promote: {e}"))?;
        }
        match self.membership_of(id).await? {
            Some(false) => Ok(()),
            other => Err(format!("after promote, membership is {other:?}")),
        }
    }

    /// Heals the step: restarts killed nodes, resumes paused ones, removes
    /// the cuts.
    pub async fn heal(&mut self) {
        if let Some(fw) = self.firewall.as_deref_mut() {
            if !fw.cuts().is_empty() {
                match fw.heal() {
                    Ok(()) => self.log("heal: cuts removed"),
                    Err(e) => self.log(format!("heal: removing cuts failed: {e}")),
                }
            }
        }
        for id in std::mem::take(&mut self.paused) {
            if self.cluster.is_paused(id) {
                match self.cluster.resume(id) {
                    Ok(()) => self.log(format!("heal: SIGCONT node {id}")),
                    Err(e) => self.log(format!("heal: resume {id} failed: {e}")),
                }
            }
        }
        for id in std::mem::take(&mut self.killed) {
            if !self.cluster.is_running(id) {
                match self.cluster.start(id, false) {
                    Ok(()) => self.log(format!("heal: restart node {id}")),
                    Err(e) => self.log(format!("heal: restart {id} failed: {e}")),
                }
            }
        }
        for id in std::mem::take(&mut self.replaced) {
            if !self.cluster.is_running(id) {
                self.restart_replaced(id).await;
            }
        }
        for id in std::mem::take(&mut self.truncated) {
            if !self.cluster.is_running(id) {
                self.restart_truncated(id).await;
            }
        }
        for id in std::mem::take(&mut self.repairing) {
            self.wait_repaired(id).await;
        }
    }

    /// After the last step: every node running and a voter again (finishes
    /// half-done membership changes), until `deadline`. Returns what is
    /// still wrong, if anything.
    pub async fn repair_membership(&mut self, deadline: Instant) -> Vec<String> {
        self.heal().await;
        for id in self.cluster.ids() {
            if !self.cluster.is_running(id) {
                // A crashed node, or one a half-done change left stopped.
                if let Err(e) = self.cluster.start(id, false) {
                    self.log(format!("repair: start {id} failed: {e}"));
                }
            }
        }
        let mut wrong = Vec::new();
        for id in self.cluster.ids() {
            loop {
                let state = self.membership_of(id).await;
                let fixed = match state {
                    Ok(Some(false)) => Ok(()),
                    Ok(_) => {
                        self.log(format!("repair: node {id} is no voter; re-adding it"));
                        self.finish_readd(id).await
                    }
                    Err(e) => Err(e),
                };
                match fixed {
                    Ok(()) => break,
                    Err(e) if Instant::now() >= deadline => {
                        wrong.push(format!("node {id} is not a voter: {e}"));
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
                }
            }
        }
        wrong
    }
}

/// How long a start that must be refused may take to exit.
const NODE_REFUSAL_WAIT: Duration = Duration::from_secs(20);
/// How long a node restarted on a cut WAL is watched for a refusal.
const NODE_START_WAIT: Duration = Duration::from_secs(10);
/// How long healing waits for a node with a lost or cut log to be repaired.
const NODE_REPAIR_WAIT: Duration = Duration::from_secs(30);
/// How much of a node's log a refusal is looked for in.
const NODE_LOG_TAIL: u64 = 8 * 1024;

/// Sleeps until `when`; false if `stop` turned true first.
async fn sleep_until(when: Instant, stop: &watch::Receiver<bool>) -> bool {
    let mut stop = stop.clone();
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(when.into()) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}
