//! The fault schedule: crashes and restarts, process stalls (the node stops,
//! then resumes with its clock jumped; see [`crate::node`]), partitions (symmetric,
//! isolate-the-leader, one-way, bridge) and healing, leadership transfers,
//! membership changes, and leader-down reports (after a crash, as the
//! server's transport makes them, and wrong ones about a live leader). Drawn on every tick boundary from the run's
//! generator while the fault phase lasts; when it ends, everything heals
//! and every crashed node restarts, so the run can settle.

use raft::{ConfChange, ConfChangeKind, MemStore, NodeId};

use crate::cluster::Cluster;
use crate::figure8::LeaderKiller;
use crate::limits::NODES_MAX;
use crate::{Scenario, Time};

/// Fault rates of a run, per tick, in per mille.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    pub scenario: Scenario,
    /// Faults happen before this time; after it the cluster settles.
    pub fault_end: Time,
    pub crash_per_mille: u64,
    /// At most this many nodes down at once.
    pub down_max: usize,
    pub partition_per_mille: u64,
    pub transfer_per_mille: u64,
    pub membership_per_mille: u64,
    /// A follower is told its live leader is down (a report the server's
    /// transport could make after a broken connection): safety must hold.
    pub misreport_per_mille: u64,
    /// A node's process stalls (the leader 40 % of the time).
    pub stall_per_mille: u64,
    /// When the current partition heals.
    pub heal_at: Option<Time>,
    /// The next node id a membership change adds.
    pub next_id: NodeId,
    /// The `figure8` scenario's leader killer (see [`crate::figure8`]).
    pub killer: Option<LeaderKiller>,
}

impl Cluster {
    /// Runs the fault schedule for this tick.
    pub(crate) fn faults_tick(&mut self) {
        let Some(mut plan) = self.plan.take() else {
            return;
        };
        let now = self.now;
        if now < plan.fault_end {
            self.maybe_crash(&plan);
            self.maybe_stall(&plan);
            self.maybe_partition(&mut plan);
            if self.rng.chance(plan.transfer_per_mille) {
                self.transfer();
            }
            if plan.scenario == Scenario::Membership && self.rng.chance(plan.membership_per_mille) {
                self.membership_step(&mut plan);
            }
            if self.rng.chance(plan.misreport_per_mille) {
                if let Some(leader) = self.leader() {
                    let followers: Vec<NodeId> = self
                        .live_ids()
                        .into_iter()
                        .filter(|&f| f != leader)
                        .collect();
                    if let Some(f) = self.rng.pick(&followers) {
                        self.report_down(f, leader);
                    }
                }
            }
        } else if now == plan.fault_end || now == plan.fault_end + crate::TICK {
            // Settle: heal and bring everyone back.
            if self.net.is_partitioned() {
                self.net.heal();
                self.log(|| "heal (settle)".into());
            }
            plan.heal_at = None;
            let down: Vec<NodeId> = self
                .nodes
                .values()
                .filter(|n| !n.stopped && !n.is_up())
                .map(|n| n.id)
                .collect();
            for id in down {
                self.restart(id);
            }
        }
        let due: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.restart_at.is_some_and(|t| t <= now) && !n.stopped)
            .map(|n| n.id)
            .collect();
        for id in due {
            self.restart(id);
        }
        self.stop_removed(now);
        self.plan = Some(plan);
    }

    /// Stalls a running node for 2 to 150 ticks (sometimes shorter than a
    /// lease, mostly far longer than an election timeout), at most one
    /// node at a time.
    fn maybe_stall(&mut self, plan: &FaultPlan) {
        if !self.rng.chance(plan.stall_per_mille) {
            return;
        }
        if self.nodes.values().any(|n| n.stall.is_some()) {
            return;
        }
        let running: Vec<NodeId> = self
            .live_ids()
            .into_iter()
            .filter(|&id| self.is_running(id))
            .collect();
        let victim = match self.leader() {
            Some(l) if self.is_running(l) && self.rng.chance(400) => l,
            _ => match self.rng.pick(&running) {
                Some(v) => v,
                None => return,
            },
        };
        let until = self.now + self.rng.range(20, 1500);
        let drop_messages = self.rng.chance(300);
        let catch_up = self.rng.chance(500);
        self.stall(victim, until, drop_messages, catch_up);
    }

    fn maybe_crash(&mut self, plan: &FaultPlan) {
        if !self.rng.chance(plan.crash_per_mille) {
            return;
        }
        let live: Vec<NodeId> = self.live_ids();
        let up: Vec<NodeId> = live
            .iter()
            .copied()
            .filter(|id| self.nodes.get(id).is_some_and(|n| n.is_up()))
            .collect();
        if live.len() - up.len() >= plan.down_max || up.len() <= 1 {
            return;
        }
        let victim = match self.leader() {
            Some(l) if self.rng.chance(400) => l,
            _ => match self.rng.pick(&up) {
                Some(v) => v,
                None => return,
            },
        };
        let back = self.now + self.rng.range(100, 2000);
        self.crash(victim, back);
        // The server's transport notices a dead process (connections
        // refused) and reports it; here most live nodes hear of it.
        for other in up.into_iter().filter(|&o| o != victim) {
            if self.rng.chance(700) {
                self.report_down(other, victim);
            }
        }
    }

    /// Tells node `to` that `down` is down; a follower that takes it
    /// campaigns at once half the time (no random delay: the harshest case
    /// for split votes), else waits for its election timer.
    fn report_down(&mut self, to: NodeId, down: NodeId) {
        let campaign = self.rng.chance(500);
        let Some(n) = self.nodes.get_mut(&to) else {
            return;
        };
        if n.stall.is_some() {
            return;
        }
        let Some(raw) = n.raw.as_mut() else {
            return;
        };
        if !raw.report_leader_down(down) {
            return;
        }
        if campaign {
            let _ = raw.campaign();
        }
        n.dirty = true;
        self.faults.down_reports += 1;
        self.trace.u64(0xd0e1);
        self.trace.u64(to);
        self.trace.u64(down);
        self.log(|| format!("node {to} told leader {down} is down (campaign: {campaign})"));
    }

    fn maybe_partition(&mut self, plan: &mut FaultPlan) {
        if let Some(at) = plan.heal_at {
            if self.now >= at {
                self.net.heal();
                plan.heal_at = None;
                self.trace.u64(0x4ea1);
                self.log(|| "heal".into());
            }
            return;
        }
        if !self.rng.chance(plan.partition_per_mille) {
            return;
        }
        let mut ids = self.live_ids();
        if ids.len() < 2 {
            return;
        }
        // Shuffle (Fisher-Yates) so splits are random.
        for i in (1..ids.len()).rev() {
            let j = self.rng.range(0, i as u64 + 1) as usize;
            ids.swap(i, j);
        }
        let kind = self.rng.range(0, 4);
        let what = match kind {
            0 => {
                let cut = self.rng.range(1, ids.len() as u64) as usize;
                let (a, b) = ids.split_at(cut);
                self.net.partition(a, b);
                format!("partition {a:?} | {b:?}")
            }
            1 => {
                let leader = self.leader().unwrap_or(ids[0]);
                let rest: Vec<NodeId> = ids.iter().copied().filter(|&i| i != leader).collect();
                self.net.partition(&[leader], &rest);
                format!("isolate leader {leader}")
            }
            2 => {
                let links = self.rng.range(1, 4);
                let mut cut = Vec::new();
                for _ in 0..links {
                    let from = self.rng.pick(&ids).unwrap_or(1);
                    let to = self.rng.pick(&ids).unwrap_or(1);
                    if from != to {
                        self.net.block(from, to);
                        cut.push((from, to));
                    }
                }
                self.faults.one_way_partitions += 1;
                format!("one-way cuts {cut:?}")
            }
            _ => {
                // A bridge: ids[0] sees both halves, which do not see each other.
                let rest = &ids[1..];
                let half = rest.len() / 2;
                let (a, b) = rest.split_at(half.max(1).min(rest.len()));
                self.net.partition(a, b);
                format!("bridge {} between {a:?} and {b:?}", ids[0])
            }
        };
        self.faults.partitions += 1;
        let heal = self.now + self.rng.range(200, 2000);
        plan.heal_at = Some(heal);
        self.trace.u64(0x9a47);
        self.trace.u64(kind);
        self.log(|| format!("{what} (heals at {heal})"));
    }

    fn transfer(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        if !self.is_running(leader) {
            return;
        }
        let Some(raw) = self.nodes.get_mut(&leader).and_then(|n| n.raw.as_mut()) else {
            return;
        };
        let voters: Vec<NodeId> = raw
            .status()
            .conf
            .voters
            .iter()
            .copied()
            .filter(|&v| v != leader)
            .collect();
        let Some(to) = self.rng.pick(&voters) else {
            return;
        };
        if raw.transfer_leader(to).is_ok() {
            if let Some(n) = self.nodes.get_mut(&leader) {
                n.dirty = true;
            }
            self.faults.transfers += 1;
            self.trace.u64(0x7a45);
            self.log(|| format!("transfer leadership {leader} -> {to}"));
        }
    }

    /// One membership change through the current leader: promote a learner,
    /// add a learner (a fresh node), or remove a voter (sometimes the
    /// leader itself), keeping 3 to 5 voters.
    fn membership_step(&mut self, plan: &mut FaultPlan) {
        let Some(leader) = self.leader() else {
            return;
        };
        if !self.is_running(leader) {
            return;
        }
        let Some(raw) = self.nodes.get(&leader).and_then(|n| n.raw.as_ref()) else {
            return;
        };
        let conf = raw.status().conf;
        let voters: Vec<NodeId> = conf.voters.iter().copied().collect();
        let learner = conf.learners.iter().next().copied();
        let cc = if let Some(l) = learner {
            ConfChange::new(ConfChangeKind::AddVoter, l)
        } else if voters.len() < 5 && (voters.len() <= 3 || self.rng.chance(500)) {
            if self.nodes.len() >= NODES_MAX {
                return;
            }
            ConfChange::new(ConfChangeKind::AddLearner, plan.next_id)
        } else {
            let victim = if self.rng.chance(400) {
                leader
            } else {
                let others: Vec<NodeId> = voters.iter().copied().filter(|&v| v != leader).collect();
                match self.rng.pick(&others) {
                    Some(v) => v,
                    None => return,
                }
            };
            ConfChange::new(ConfChangeKind::RemoveNode, victim)
        };
        let Some(raw) = self.nodes.get_mut(&leader).and_then(|n| n.raw.as_mut()) else {
            return;
        };
        match raw.propose_conf_change(cc.clone()) {
            Ok((index, _)) => {
                self.faults.conf_changes_proposed += 1;
                self.trace.u64(0xcc);
                self.trace.u64(index);
                self.log(|| {
                    format!(
                        "leader {leader} proposes {:?} {} at {index}",
                        cc.kind, cc.node_id
                    )
                });
                if let Some(n) = self.nodes.get_mut(&leader) {
                    n.dirty = true;
                }
                if cc.kind == ConfChangeKind::AddLearner {
                    plan.next_id += 1;
                    let store = MemStore::with_conf(self.bootstrap_conf.clone());
                    if let Err(e) = self.add_node(cc.node_id, store) {
                        self.fail(format!("adding node {}: {e}", cc.node_id));
                    }
                }
            }
            Err(e) => {
                self.log(|| format!("leader {leader} refuses {:?} {}: {e}", cc.kind, cc.node_id))
            }
        }
    }

    /// Shuts down, for good, nodes that a leader's configuration no longer
    /// lists, some time after it first did not.
    fn stop_removed(&mut self, now: Time) {
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(raw) = self.nodes.get(&leader).and_then(|n| n.raw.as_ref()) else {
            return;
        };
        let st = raw.status();
        if st.commit < st.last_index {
            return; // Wait for a settled configuration.
        }
        let members = st.conf.members();
        let mut stop = Vec::new();
        for n in self.nodes.values_mut() {
            if n.stopped {
                continue;
            }
            if members.contains(&n.id) {
                n.joined = true;
                n.stop_at = None;
            } else if n.joined {
                match n.stop_at {
                    None => n.stop_at = Some(now + 500),
                    Some(t) if t <= now => stop.push(n.id),
                    Some(_) => {}
                }
            }
        }
        for id in stop {
            if let Some(n) = self.nodes.get_mut(&id) {
                n.crash();
                n.stopped = true;
                n.restart_at = None;
                n.down_store = None;
            }
            self.trace.u64(0x570b);
            self.trace.u64(id);
            self.log(|| format!("stop removed node {id}"));
        }
    }
}
