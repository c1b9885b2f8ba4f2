//! The leader killer of the `figure8` scenario: every new leader is
//! crashed or cut off after a short random tenure.
//!
//! Raft's Figure 8 hazard needs a chain of short-lived leaders: a leader
//! replicates an entry of an older term to a majority, then fails before an
//! entry of its own term reaches a majority; a node holding a conflicting
//! entry from a later term then wins an election and overwrites it. A
//! correct leader never counts that older entry toward commit, so the
//! overwrite is harmless; a leader that does count it has committed an
//! entry that is then lost (the checkers report a leader-completeness or
//! committed-entry violation).
//!
//! To make the chain likely, the scenario runs 5 nodes that send one entry
//! per AppendEntries with a window of one or two in flight (so replication
//! advances in many small acknowledged steps), and this killer: each time
//! a node becomes leader in a new term, it draws a tenure of
//! `[TENURE_MIN, TENURE_MAX)` time units, long enough for a probe and an
//! entry or two to go round, rarely long enough for its own term's entry to
//! reach a majority. When the tenure ends, the leader is either isolated
//! (every link to and from it blocked, which also drops its messages still
//! in flight) or crashed (losing what it had not synced), and comes back
//! soon after. The killer acts in every time unit, not only on ticks, so
//! its cuts fall between any two deliveries. All draws come from the run's
//! generator: a seed replays the same run.

use raft::{NodeId, Role, Term};

use crate::cluster::Cluster;
use crate::Time;

/// Shortest leader tenure, in time units.
const TENURE_MIN: Time = 5;
/// Longest leader tenure (exclusive), in time units.
const TENURE_MAX: Time = 90;

/// The killer's state (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderKiller {
    /// The leader (and its term) whose tenure is running, and when it ends.
    target: Option<(NodeId, Term, Time)>,
    /// The node cut off now, and when its links open again.
    isolated: Option<(NodeId, Time)>,
    /// Leaders killed so far.
    pub kills: u64,
}

impl Cluster {
    /// One time unit of the leader killer (while faults last).
    pub(crate) fn leader_killer_unit(&mut self) {
        let Some(mut plan) = self.plan.take() else {
            return;
        };
        if self.now < plan.fault_end {
            if let Some(mut k) = plan.killer.take() {
                self.kill_step(&mut k, plan.down_max);
                plan.killer = Some(k);
            }
        } else if plan.killer.is_some() {
            // Settling: faults_tick heals the network and restarts nodes.
            plan.killer = Some(LeaderKiller::default());
        }
        self.plan = Some(plan);
    }

    fn kill_step(&mut self, k: &mut LeaderKiller, down_max: usize) {
        let now = self.now;
        if let Some((id, at)) = k.isolated {
            if now >= at {
                self.net.heal();
                k.isolated = None;
                self.trace.u64(0xf8e1);
                self.log(|| format!("figure8: reconnect node {id}"));
            }
        }
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(term) = self
            .nodes
            .get(&leader)
            .and_then(|n| n.raw.as_ref())
            .map(|r| r.status())
            .filter(|st| st.role == Role::Leader)
            .map(|st| st.term)
        else {
            return;
        };
        if k.isolated.is_some_and(|(id, _)| id == leader) {
            return; // Already cut off; waits for check-quorum or a heal.
        }
        match k.target {
            Some((id, t, end)) if id == leader && t == term => {
                if now < end {
                    return;
                }
            }
            _ => {
                let end = now + self.rng.range(TENURE_MIN, TENURE_MAX);
                k.target = Some((leader, term, end));
                return;
            }
        }
        k.target = None;
        k.kills += 1;
        let live = self.live_ids();
        let down = live
            .iter()
            .filter(|id| self.nodes.get(id).is_some_and(|n| !n.is_up()))
            .count();
        let crash = down < down_max && self.rng.chance(400);
        if crash {
            let back = now + self.rng.range(30, 400);
            self.crash(leader, back);
            return;
        }
        if k.isolated.is_some() {
            self.net.heal();
        }
        let rest: Vec<NodeId> = live.into_iter().filter(|&i| i != leader).collect();
        self.net.partition(&[leader], &rest);
        let heal = now + self.rng.range(50, 500);
        k.isolated = Some((leader, heal));
        self.faults.partitions += 1;
        self.trace.u64(0xf8c7);
        self.trace.u64(leader);
        self.log(|| format!("figure8: isolate leader {leader} of term {term} until {heal}"));
    }
}
