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
//! # Promoting a learner
//!
//! A learner becomes a voter only once it has caught up
//! ([`ProposeError::LearnerBehind`] otherwise): the leader heard from it
//! within an election timeout (`election_timeout_ticks_min` ticks; a node
//! that was added but never started is never heard from), it holds the
//! configuration that made it a learner, and it is at most
//! [`PROMOTE_LAG_ENTRIES_MAX`] entries behind the leader's last index. The
//! same holds for a voter added directly (`AddVoter` of a non-member): it
//! has never been heard from, so it is refused; add it as a learner first.
//! Without this, a promoted node that is not running is a dead voter:
//! with three voters plus it, a majority is three of four, and the next
//! single failure stops the cluster.
//!
//! # A removed node
//!
//! A node learns of its removal in one of two ways, and then is
//! *removed* ([`RawNode::is_removed`]): it steps no message, sends
//! nothing, never campaigns, and refuses proposals and reads
//! ([`ProposeError::Removed`], [`Error::Removed`]). It keeps running so
//! that its operator can see why it stopped serving (etcd's member exits
//! instead; a process that stays up and says "removed" in its status is
//! easier to diagnose than one that is gone).
//!
//! 1. **From its log.** The leader keeps replicating to a node it removed
//!    (not counting it for anything) until the node has the removal entry
//!    and a commit index covering it, or for
//!    [`DEPARTING_ELECTION_TIMEOUTS_MAX`] election timeouts. The node is
//!    removed once, at a moment when it holds every entry the leader has
//!    told it is committed (its commit index is at least the highest commit
//!    index an AppendEntries carried, or it is the leader), its configuration
//!    as of its commit index and its latest configuration both lack it, and
//!    at an earlier such moment a committed configuration included it. The
//!    last condition keeps a node that is catching up from being fooled by
//!    the history it replays: a new learner that installs a snapshot taken
//!    before it was added, or a node re-added under the same id after a wipe
//!    that replays its earlier removal. (Left open: a re-added node that
//!    replays history, is caught up with a leader whose commit is between
//!    its old addition and its old removal, then with one whose commit is
//!    past the old removal but before its re-addition, and has not received
//!    the re-addition yet; it would stop, the operator sees `removed` and
//!    wipes and re-adds it again. This needs a leader change within
//!    moments of the re-addition.) A leader that removed itself steps down
//!    when the removal commits, then is removed the same way.
//! 2. **From a peer's refusal.** The server's transport reports that a
//!    member refused our messages because we are not a member of its
//!    configuration: [`RawNode::refused_as_non_member`].
//!
//! The core keeps the removed state in memory only; the server records it
//! in its data dir and calls [`RawNode::mark_removed`] on restart.
//!
//! [`ConfChange`]: crate::ConfChange
//! [`ProposeError::LearnerBehind`]: crate::ProposeError::LearnerBehind
//! [`ProposeError::Removed`]: crate::ProposeError::Removed
//! [`Error::Removed`]: crate::Error::Removed
//! [`RawNode::is_removed`]: crate::RawNode::is_removed
//! [`RawNode::refused_as_non_member`]: crate::RawNode::refused_as_non_member
//! [`RawNode::mark_removed`]: crate::RawNode::mark_removed
//! [`PROMOTE_LAG_ENTRIES_MAX`]: crate::limits::PROMOTE_LAG_ENTRIES_MAX
//! [`DEPARTING_ELECTION_TIMEOUTS_MAX`]: crate::limits::DEPARTING_ELECTION_TIMEOUTS_MAX
//! [`Status::committed_conf`]: crate::Status::committed_conf

use crate::confchange::{ConfChange, ConfChangeKind};
use crate::error::ProposeError;
use crate::limits;
use crate::node::{RawNode, RoleState};
use crate::storage::LogStore;
use crate::types::{ConfState, Entry, EntryKind, Index, NodeId};

/// What a node knows about its own removal (module docs, "A removed
/// node").
#[derive(Clone, Debug, Default)]
pub(crate) struct RemovalState {
    /// The node is removed; final for this process.
    pub(crate) removed: bool,
    /// A committed configuration included this node at a moment when it
    /// held everything the leader had told it was committed.
    member_seen: bool,
    /// The highest commit index a leader's AppendEntries carried (or, on
    /// the leader, its own commit index).
    leader_commit: Option<Index>,
}

impl RemovalState {
    /// A leader's AppendEntries said its commit index is `commit`.
    pub(crate) fn heard_leader_commit(&mut self, commit: Index) {
        self.leader_commit = Some(self.leader_commit.map_or(commit, |c| c.max(commit)));
    }
}

fn has(conf: &ConfState, id: NodeId) -> bool {
    conf.voters.contains(&id) || conf.learners.contains(&id)
}

impl<S: LogStore> RawNode<S> {
    /// Whether this node was removed from the cluster (module docs): it
    /// steps no message, sends nothing, never campaigns and refuses
    /// proposals and reads, for as long as the process runs.
    pub fn is_removed(&self) -> bool {
        self.removal.removed
    }

    /// The transport reports that node `by` refused our messages because
    /// we are not a member of its configuration. Returns whether this node
    /// is now removed.
    ///
    /// Taken only when `by` is a voter of our latest configuration and that
    /// configuration is not empty: a blank node (nothing received yet)
    /// ignores it, and so does a report from a node that is not a voter by
    /// our own log (it cannot tell us about the cluster). A leader that is
    /// handing over after removing itself ignores it too (its followers
    /// already hold a configuration without it; it steps down when the
    /// removal commits). Safety does not depend on the rule (a node that
    /// stops is no worse than a crashed one), only liveness: the rule keeps
    /// a node that is not a member from silencing us.
    pub fn refused_as_non_member(&mut self, by: NodeId) -> bool {
        if self.removal.removed {
            return true;
        }
        let conf = self.membership.current();
        if conf.voters.is_empty() || by == self.id || !conf.voters.contains(&by) {
            return false;
        }
        if self.is_leader() && !conf.voters.contains(&self.id) {
            return false;
        }
        self.become_removed();
        true
    }

    /// Puts the node in the removed state at once: the server calls it on
    /// restart when its data dir records that the node was removed.
    pub fn mark_removed(&mut self) {
        if !self.removal.removed {
            self.become_removed();
        }
    }

    fn become_removed(&mut self) {
        let term = self.term;
        if !matches!(self.role, RoleState::Follower) {
            self.become_follower(term, None);
        }
        self.leader = None;
        // What is already queued still goes out: the acknowledgement of
        // the entries that told us, or a removed leader's TimeoutNow.
        self.removal.removed = true;
    }

    /// Checks, after every input, whether the log now says that this node
    /// was removed (module docs, way 1).
    pub(crate) fn update_removed(&mut self) {
        if self.removal.removed {
            return;
        }
        let commit = self.log.commit;
        if self.is_leader() {
            self.removal.heard_leader_commit(commit);
        }
        let caught_up = self.removal.leader_commit.is_some_and(|c| commit >= c);
        if !caught_up {
            return;
        }
        let committed = self.membership.conf_at(commit);
        if committed.voters.is_empty() {
            return;
        }
        if has(committed, self.id) {
            self.removal.member_seen = true;
            return;
        }
        if self.removal.member_seen && !has(self.membership.current(), self.id) {
            self.become_removed();
        }
    }

    /// Refuses to make a voter of a node that has not caught up (module
    /// docs, "Promoting a learner").
    pub(crate) fn check_promotion(&self, cc: &ConfChange) -> Result<(), ProposeError> {
        let conf = self.membership.current();
        if cc.kind != ConfChangeKind::AddVoter || conf.is_voter(cc.node_id) {
            return Ok(());
        }
        let Some(l) = self.leader_state() else {
            return Ok(());
        };
        let pr = l.progress.get(&cc.node_id);
        let match_index = pr.map_or(0, |p| p.match_index);
        let heard_ticks_ago = pr
            .and_then(|p| p.heard_tick)
            .map(|t| self.ticks.saturating_sub(t));
        let last_index = self.log.last_index();
        let conf_index = self.membership.current_index();
        let election = self.config.election_timeout_ticks_min;
        let ready = heard_ticks_ago.is_some_and(|t| t <= election)
            && match_index >= conf_index
            && last_index.saturating_sub(match_index) <= limits::PROMOTE_LAG_ENTRIES_MAX;
        if ready {
            return Ok(());
        }
        Err(ProposeError::LearnerBehind(crate::error::LearnerLag {
            id: cc.node_id,
            match_index,
            last_index,
            commit_index: self.log.commit,
            conf_index,
            heard_ticks_ago,
            election_timeout_ticks: election,
        }))
    }
}

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

    /// A one-voter cluster, its leader elected, everything handled.
    fn single_leader() -> crate::RawNode<crate::MemStore> {
        let store = crate::MemStore::with_conf(ConfState::with_voters([1]));
        let mut node = crate::RawNode::new(crate::Config::new(1), store).unwrap();
        node.campaign().unwrap();
        drive(&mut node);
        node
    }

    fn drive(node: &mut crate::RawNode<crate::MemStore>) {
        use crate::LogStore;
        while node.has_ready() {
            let rd = node.ready();
            node.store_mut().append(&rd.entries).unwrap();
            if let Some(hs) = &rd.hard_state {
                node.store_mut().save_hard_state(hs).unwrap();
            }
            node.store_mut().sync().unwrap();
            node.advance(rd).unwrap();
        }
    }

    fn from_learner(node: &mut crate::RawNode<crate::MemStore>, body: crate::MessageBody) {
        let term = node.status().term;
        node.step(crate::Message {
            from: 2,
            to: 1,
            term,
            body,
        })
        .unwrap();
    }

    #[test]
    fn a_learner_far_behind_is_not_promoted_until_within_the_lag_bound() {
        let mut node = single_leader();
        let (conf_index, _) = node
            .propose_conf_change(ConfChange::new(ConfChangeKind::AddLearner, 2))
            .unwrap();
        drive(&mut node);
        for i in 0..crate::limits::PROMOTE_LAG_ENTRIES_MAX + 100 {
            node.propose(Bytes::from(format!("e{i}"))).unwrap();
        }
        drive(&mut node);
        let last = node.status().last_index;
        // The learner answers: it runs and holds the configuration that
        // added it, but is more than the bound behind.
        from_learner(
            &mut node,
            crate::MessageBody::HeartbeatResponse { round: 0 },
        );
        from_learner(
            &mut node,
            crate::MessageBody::AppendEntriesResponse {
                reject: false,
                index: conf_index,
                conflict_term: 0,
                conflict_index: 0,
            },
        );
        drive(&mut node);
        let promote = ConfChange::new(ConfChangeKind::AddVoter, 2);
        let e = node.propose_conf_change(promote.clone()).unwrap_err();
        assert!(
            matches!(e, ProposeError::LearnerBehind(l)
                if l.id == 2 && l.match_index == conf_index && l.last_index == last),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{} entries behind", last - conf_index)),
            "{msg}"
        );
        assert!(msg.contains("at most 1024"), "{msg}");
        // Within the bound: promoted.
        from_learner(
            &mut node,
            crate::MessageBody::AppendEntriesResponse {
                reject: false,
                index: last - 10,
                conflict_term: 0,
                conflict_index: 0,
            },
        );
        drive(&mut node);
        let (index, _) = node.propose_conf_change(promote).unwrap();
        drive(&mut node);
        // Voter 2 acknowledges the promotion; it commits.
        from_learner(
            &mut node,
            crate::MessageBody::AppendEntriesResponse {
                reject: false,
                index,
                conflict_term: 0,
                conflict_index: 0,
            },
        );
        drive(&mut node);
        assert_eq!(node.status().committed_conf.voters.len(), 2);
        // A voter added directly, never heard from, is refused too.
        let e = node
            .propose_conf_change(ConfChange::new(ConfChangeKind::AddVoter, 7))
            .unwrap_err();
        assert!(
            e.to_string().contains("has not heard from it at all"),
            "{e}"
        );
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
