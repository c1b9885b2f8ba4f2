//! Cluster configurations and how they change: one voter at a time.
//!
//! # The rule
//!
//! A configuration change is one [`ConfChange`] (add a learner, add or
//! promote a voter, remove a node) carried by an `EntryKind::ConfChange`
//! entry. Every node uses **the latest configuration in its log**, committed
//! or not, from the moment the entry is appended (and goes back to the
//! previous one if the entry is truncated away). This is the single-server
//! change of Ongaro's dissertation (§4.1); joint consensus is not used, so
//! `ConfState::voters_outgoing` stays empty.
//!
//! # Why two majorities never disagree
//!
//! 1. A change adds or removes at most one voter (learners do not count), so
//!    for two successive configurations C and C', any majority of C and any
//!    majority of C' share a voter. (Adding one to n voters: a
//!    majority M of C has at least ⌊n/2⌋+1 voters and a majority M' of
//!    C' at least ⌊(n+1)/2⌋+1; both lie within C' (n+1 voters) and
//!    |M| + |M'| >= n+2 > n+1, so they intersect. Removal is the mirror case.)
//! 2. The leader proposes a change only when the previous one is committed
//!    (`pending` check in `propose_conf_change`), so at any time the logs of
//!    the cluster hold at most two configurations that may be in use: the
//!    last committed one and at most one newer, uncommitted one.
//! 3. The leader proposes a change only after it has committed an entry of
//!    its own term (its no-op). Without this, a leader of term t could
//!    append C' while an uncommitted C'' from an older term, on other
//!    nodes, is still in use, and the majorities of C' and C'' (two steps
//!    apart) need not overlap (the bug found in the dissertation's original
//!    single-server algorithm; see raft-dev, "bug in single-server
//!    membership changes", 2015). Committing an entry of its term means a
//!    majority of the current configuration holds the leader's log, so any
//!    older uncommitted change that conflicts can never be elected again.
//!
//! Together these give: any two configurations that can decide (elect or
//! commit) at the same time are at most one step apart, so their majorities
//! intersect, so two leaders in one term or two different committed entries
//! at one index are impossible.
//!
//! # Removing the leader
//!
//! A leader that appends its own removal keeps leading (replicating and
//! counting commits without itself, as it is not in the new configuration)
//! until the change commits, then steps down; it sends `TimeoutNow` to the
//! most caught-up voter so that a new leader is elected at once.
//!
//! # A voter that loses its disk
//!
//! The argument above assumes every voter keeps its log and its vote.
//! Wiping a removed node and re-adding it under the same id is safe only
//! once the removal is **committed**: a majority of the new configuration
//! then holds the removal, and any majority of the old configuration
//! without the wiped node meets that majority, so a node still holding the
//! old configuration cannot be elected. Before the commit it can: with
//! {1,2,3} and the removal of 3 appended on 2 only, node 1 (old log, old
//! configuration) wins with its own vote and the wiped node's. Two guards:
//! the server reports a removal as done (`Remove` answering `NotFound`,
//! `Members`) only from the committed configuration
//! ([`Status::committed_conf`]), and a blank node (empty store, nothing
//! received yet) grants no pre-vote or vote (`step.rs`). A wiped node
//! that has already caught up with a stale leader is beyond both guards:
//! operators must wait for `Remove` to succeed (or answer `NotFound`)
//! before wiping.
//!
//! [`ConfChange`]: crate::ConfChange
//! [`Status::committed_conf`]: crate::Status::committed_conf

use crate::confchange::{ConfChange, ConfChangeKind};
use crate::types::{ConfState, Entry, EntryKind, Index};

/// The configurations in a node's log: the snapshot's, then one per
/// configuration-change entry after it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Membership {
    base: (Index, ConfState),
    changes: Vec<(Index, ConfState)>,
}

impl Membership {
    pub(crate) fn new(snapshot_index: Index, conf: ConfState) -> Membership {
        Membership {
            base: (snapshot_index, conf),
            changes: Vec::new(),
        }
    }

    /// The configuration in effect: the latest in the log.
    pub(crate) fn current(&self) -> &ConfState {
        self.changes.last().map(|(_, c)| c).unwrap_or(&self.base.1)
    }

    /// The index of the entry that set the current configuration (or the
    /// snapshot index).
    pub(crate) fn current_index(&self) -> Index {
        self.changes.last().map(|(i, _)| *i).unwrap_or(self.base.0)
    }

    /// The configuration in effect at `index`.
    pub(crate) fn conf_at(&self, index: Index) -> &ConfState {
        self.changes
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, c)| c)
            .unwrap_or(&self.base.1)
    }

    /// Entries were appended from `entries[0].index` on (replacing what
    /// the log held there).
    pub(crate) fn on_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        self.changes.retain(|(i, _)| *i < first.index);
        for e in entries {
            if e.kind == EntryKind::ConfChange {
                let next = apply_entry(self.current(), &e.data);
                self.changes.push((e.index, next));
            }
        }
    }

    /// The log was reset to a snapshot.
    pub(crate) fn restore(&mut self, index: Index, conf: ConfState) {
        self.base = (index, conf);
        self.changes.clear();
    }

    /// The log was compacted up to `index`.
    pub(crate) fn compact(&mut self, index: Index) {
        let conf = self.conf_at(index).clone();
        self.changes.retain(|(i, _)| *i > index);
        self.base = (index, conf);
    }
}

/// The configuration after applying the change encoded in `data`. Bytes
/// that do not decode, or a change that makes no sense, leave the
/// configuration unchanged: every node sees the same bytes, so every node
/// makes the same decision. (The leader validates changes before proposing.)
pub(crate) fn apply_entry(conf: &ConfState, data: &[u8]) -> ConfState {
    match ConfChange::decode(data) {
        Ok(cc) => apply(conf, &cc).unwrap_or_else(|_| conf.clone()),
        Err(_) => conf.clone(),
    }
}

/// The configuration after `cc`, or why it is invalid.
pub(crate) fn apply(conf: &ConfState, cc: &ConfChange) -> Result<ConfState, String> {
    let id = cc.node_id;
    let mut next = conf.clone();
    match cc.kind {
        ConfChangeKind::AddLearner => {
            if conf.voters.contains(&id) {
                return Err(format!("node {id} is a voter (demotion is not supported)"));
            }
            if conf.learners.contains(&id) {
                return Err(format!("node {id} is already a learner"));
            }
            next.learners.insert(id);
        }
        ConfChangeKind::AddVoter => {
            if conf.voters.contains(&id) {
                return Err(format!("node {id} is already a voter"));
            }
            next.learners.remove(&id);
            next.voters.insert(id);
        }
        ConfChangeKind::RemoveNode => {
            if !conf.voters.contains(&id) && !conf.learners.contains(&id) {
                return Err(format!("node {id} is not a member"));
            }
            next.voters.remove(&id);
            next.learners.remove(&id);
            if next.voters.is_empty() {
                return Err(format!("removing node {id} would leave no voters"));
            }
        }
    }
    if next.voters.len() + next.learners.len() > crate::limits::MEMBERS_MAX {
        return Err(format!("more than {} members", crate::limits::MEMBERS_MAX));
    }
    Ok(next)
}

/// The size of a majority of `n` voters.
pub(crate) fn quorum(n: usize) -> usize {
    n / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn cc_entry(index: Index, kind: ConfChangeKind, id: u64) -> Entry {
        Entry {
            index,
            term: 1,
            kind: EntryKind::ConfChange,
            data: ConfChange::new(kind, id).encode(),
        }
    }

    #[test]
    fn config_takes_effect_on_append_and_rolls_back_on_truncation() {
        let mut m = Membership::new(0, ConfState::with_voters([1, 2, 3]));
        m.on_append(&[cc_entry(1, ConfChangeKind::AddLearner, 4)]);
        assert!(m.current().learners.contains(&4));
        m.on_append(&[cc_entry(2, ConfChangeKind::AddVoter, 4)]);
        assert!(m.current().voters.contains(&4));
        assert!(!m.current().learners.contains(&4));
        assert_eq!(m.current_index(), 2);
        // Entry 2 is replaced by a normal entry: back to the learner config.
        m.on_append(&[Entry {
            index: 2,
            term: 2,
            kind: EntryKind::Normal,
            data: Bytes::new(),
        }]);
        assert!(m.current().learners.contains(&4));
        assert_eq!(m.conf_at(0), &ConfState::with_voters([1, 2, 3]));
        m.compact(1);
        assert_eq!(m.current_index(), 1);
        assert!(m.current().learners.contains(&4));
    }

    #[test]
    fn invalid_changes_are_refused_and_garbage_changes_nothing() {
        let c = ConfState::with_voters([1]);
        assert!(apply(&c, &ConfChange::new(ConfChangeKind::RemoveNode, 1)).is_err());
        assert!(apply(&c, &ConfChange::new(ConfChangeKind::RemoveNode, 9)).is_err());
        assert!(apply(&c, &ConfChange::new(ConfChangeKind::AddLearner, 1)).is_err());
        assert!(apply(&c, &ConfChange::new(ConfChangeKind::AddVoter, 1)).is_err());
        assert_eq!(apply_entry(&c, b"garbage"), c);
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }
}
