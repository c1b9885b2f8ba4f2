//! The leader: replication, commit, heartbeats, check-quorum, leadership
//! transfer (Figure 2, "Rules for Servers: Leaders").

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::error::{Error, ProposeError, Result};
use crate::limits;
use crate::membership::quorum;
use crate::message::{Message, MessageBody};
use crate::node::{RawNode, RoleState};
use crate::progress::Progress;
use crate::read::ReadQueue;
use crate::ready::ProgressState;
use crate::storage::LogStore;
use crate::types::{Entry, EntryKind, Index, NodeId, Term};

/// What only the leader keeps.
pub(crate) struct LeaderState {
    /// Every other member's progress (voters and learners).
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) heartbeat_elapsed: u64,
    pub(crate) transferee: Option<NodeId>,
    pub(crate) transfer_elapsed: u64,
    /// A `TimeoutNow` went out in this term: another node may be elected
    /// before our lease runs out, so no more lease reads.
    pub(crate) timeout_now_sent: bool,
    pub(crate) reads: ReadQueue,
    /// (index, size) of entries appended in this term and not committed.
    pub(crate) uncommitted: VecDeque<(Index, u64)>,
    pub(crate) uncommitted_bytes: u64,
    /// Proposals were appended since the last Ready: send them out when the
    /// next Ready is taken, so that all proposals in between share one
    /// AppendEntries per follower.
    pub(crate) bcast_pending: bool,
    /// Nodes this leader removed, still replicated to (never counted) until
    /// they hold their removal and its commit: id -> (index of the removal
    /// entry, tick it was appended). Their progress stays in `progress`,
    /// marked as learners. See the membership module docs.
    pub(crate) departing: BTreeMap<NodeId, (Index, u64)>,
}

impl<S: LogStore> RawNode<S> {
    pub(crate) fn leader_state(&self) -> Option<&LeaderState> {
        match &self.role {
            RoleState::Leader(l) => Some(l),
            _ => None,
        }
    }

    pub(crate) fn leader_state_mut(&mut self) -> Option<&mut LeaderState> {
        match &mut self.role {
            RoleState::Leader(l) => Some(l),
            _ => None,
        }
    }

    /// "Upon election: send initial empty AppendEntries RPCs (heartbeat) to
    /// each server"; we also append a no-op entry of the new term, so that
    /// entries of earlier terms commit (Figure 8) and reads can be served.
    pub(crate) fn become_leader(&mut self) {
        self.role = RoleState::Leader(Box::new(LeaderState {
            progress: BTreeMap::new(),
            heartbeat_elapsed: 0,
            transferee: None,
            transfer_elapsed: 0,
            timeout_now_sent: false,
            reads: ReadQueue::default(),
            uncommitted: VecDeque::new(),
            uncommitted_bytes: 0,
            bcast_pending: false,
            departing: BTreeMap::new(),
        }));
        self.leader = Some(self.id);
        self.election_elapsed = 0;
        self.sync_progress();
        let noop = Entry {
            index: self.log.last_index() + 1,
            term: self.term,
            kind: EntryKind::Normal,
            data: Bytes::new(),
        };
        self.leader_append(noop);
        // A failing store surfaces on the next step; sending is best effort.
        let _ = self.bcast_append(false);
    }

    /// Keeps one progress per member other than ourselves.
    pub(crate) fn sync_progress(&mut self) {
        let conf = self.membership.current().clone();
        let next = self.log.last_index() + 1;
        let me = self.id;
        let Some(l) = self.leader_state_mut() else {
            return;
        };
        let members = conf.members();
        // A departing node added back (after a wipe) starts afresh.
        let back: Vec<NodeId> = l
            .departing
            .keys()
            .copied()
            .filter(|id| members.contains(id))
            .collect();
        for id in back {
            l.departing.remove(&id);
            l.progress.remove(&id);
        }
        let departing = &l.departing;
        l.progress
            .retain(|id, _| members.contains(id) || departing.contains_key(id));
        for (id, p) in l.progress.iter_mut() {
            if departing.contains_key(id) {
                p.learner = true;
            }
        }
        for id in members {
            if id == me {
                continue;
            }
            let learner = !conf.is_voter(id);
            l.progress
                .entry(id)
                .and_modify(|p| p.learner = learner)
                .or_insert_with(|| Progress::new(next, learner));
        }
    }

    pub(crate) fn tick_leader(&mut self) {
        let min = self.config.election_timeout_ticks_min;
        let interval = self.config.heartbeat_interval_ticks;
        let check_quorum = self.config.check_quorum;
        self.election_elapsed += 1;
        let heartbeat_due = {
            let Some(l) = self.leader_state_mut() else {
                return;
            };
            l.heartbeat_elapsed += 1;
            if l.transferee.is_some() {
                l.transfer_elapsed += 1;
                if l.transfer_elapsed >= min {
                    // "If the transfer does not complete within an election
                    // timeout, abort it and resume accepting requests."
                    l.transferee = None;
                }
            }
            let due = l.heartbeat_elapsed >= interval;
            if due {
                l.heartbeat_elapsed = 0;
            }
            due
        };
        if self.election_elapsed >= min {
            self.election_elapsed = 0;
            if check_quorum && !self.quorum_active() {
                // Check-quorum: we have not heard from a majority for an
                // election timeout; a new leader may exist already.
                let term = self.term;
                self.become_follower(term, None);
                return;
            }
        }
        if heartbeat_due {
            self.bcast_heartbeat();
        }
    }

    /// Whether a majority of voters was heard from since the last check;
    /// resets the marks.
    fn quorum_active(&mut self) -> bool {
        let conf = self.membership.current().clone();
        let me = self.id;
        let Some(l) = self.leader_state_mut() else {
            return false;
        };
        let mut active = usize::from(conf.voters.contains(&me));
        for (id, p) in l.progress.iter_mut() {
            if conf.voters.contains(id) && p.recent_active {
                active += 1;
            }
            p.recent_active = false;
        }
        active >= quorum(conf.voters.len())
    }

    pub(crate) fn propose_entry(
        &mut self,
        kind: EntryKind,
        data: Bytes,
    ) -> std::result::Result<(Index, Term), ProposeError> {
        let commit = self.log.commit;
        let last = self.log.last_index();
        let leader = self.leader;
        let Some(l) = self.leader_state() else {
            return Err(ProposeError::NotLeader { leader });
        };
        if let Some(to) = l.transferee {
            return Err(ProposeError::TransferInProgress { to });
        }
        let size = data.len() as u64;
        if size > limits::ENTRY_BYTES_MAX {
            return Err(ProposeError::EntryTooLarge {
                size,
                max: limits::ENTRY_BYTES_MAX,
            });
        }
        if last - commit >= limits::UNCOMMITTED_ENTRIES_MAX
            || l.uncommitted_bytes + size > limits::UNCOMMITTED_BYTES_MAX
        {
            return Err(ProposeError::TooManyPending {
                entries: last - commit,
                bytes: l.uncommitted_bytes,
            });
        }
        let entry = Entry {
            index: last + 1,
            term: self.term,
            kind,
            data,
        };
        let at = (entry.index, entry.term);
        self.leader_append(entry);
        // The entries go out with the next Ready (batched with any other
        // proposal until then), while the leader's own fsync runs.
        if let Some(l) = self.leader_state_mut() {
            l.bcast_pending = true;
        }
        Ok(at)
    }

    fn leader_append(&mut self, entry: Entry) {
        let conf_change = entry.kind == EntryKind::ConfChange;
        let (index, size) = (entry.index, entry.size());
        if conf_change {
            self.note_departing(&entry);
        }
        self.append_to_log(std::slice::from_ref(&entry));
        if let Some(l) = self.leader_state_mut() {
            l.uncommitted.push_back((index, size));
            l.uncommitted_bytes += size;
        }
        if conf_change {
            // The new configuration is in effect from now on.
            self.sync_progress();
        }
    }

    /// A removal of another node is being appended: keep replicating to it
    /// for a while, so that it learns of its removal (membership docs).
    fn note_departing(&mut self, entry: &Entry) {
        let Ok(cc) = crate::confchange::ConfChange::decode(&entry.data) else {
            return;
        };
        let (me, tick) = (self.id, self.ticks);
        if cc.kind != crate::confchange::ConfChangeKind::RemoveNode || cc.node_id == me {
            return;
        }
        if let Some(l) = self.leader_state_mut() {
            if l.progress.contains_key(&cc.node_id) {
                l.departing.insert(cc.node_id, (entry.index, tick));
            }
        }
    }

    /// Stops replicating to departing nodes that hold their removal and its
    /// commit (and were sent one more heartbeat with it), or that have had
    /// their time.
    fn drop_departed(&mut self) {
        let tick = self.ticks;
        let patience =
            limits::DEPARTING_ELECTION_TIMEOUTS_MAX * self.config.election_timeout_ticks_max;
        let commit = self.log.commit;
        let Some(l) = self.leader_state_mut() else {
            return;
        };
        let done: Vec<NodeId> = l
            .departing
            .iter()
            .filter(|(id, (index, since))| {
                let told = l.progress.get(id).is_none_or(|p| {
                    p.match_index >= *index && p.commit_sent >= *index && commit >= *index
                });
                told || tick.saturating_sub(*since) >= patience
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            l.departing.remove(&id);
            l.progress.remove(&id);
        }
    }

    /// Whether proposals wait to be sent.
    pub(crate) fn bcast_wanted(&self) -> bool {
        self.leader_state().is_some_and(|l| l.bcast_pending)
    }

    /// Sends the proposals appended since the last Ready.
    pub(crate) fn flush_bcast(&mut self) -> Result<()> {
        match self.leader_state_mut() {
            Some(l) if l.bcast_pending => l.bcast_pending = false,
            _ => return Ok(()),
        }
        self.bcast_append(false)
    }

    /// Sends each follower what it is missing (or, with `empty_ok`, at
    /// least an empty AppendEntries carrying the commit index).
    pub(crate) fn bcast_append(&mut self, empty_ok: bool) -> Result<()> {
        let commit = self.log.commit;
        let ids: Vec<(NodeId, bool)> = match self.leader_state() {
            Some(l) => l
                .progress
                .iter()
                .map(|(id, p)| (*id, p.commit_sent < commit.min(p.match_index)))
                .collect(),
            None => return Ok(()),
        };
        for (id, lagging) in ids {
            // An empty AppendEntries only to tell a follower of a commit
            // index it has not heard of and can use.
            if self.send_append(id, empty_ok && lagging)? {
                // Fill the in-flight window.
                self.send_appends(id)?;
            }
        }
        Ok(())
    }

    /// Sends follower `to` as many batches as its progress allows.
    fn send_appends(&mut self, to: NodeId) -> Result<()> {
        let mut batches = 0;
        while self.send_append(to, false)? {
            batches += 1;
            if batches >= self.config.inflight_appends_max {
                break;
            }
        }
        Ok(())
    }

    /// Sends one AppendEntries (or the snapshot) to `to` if its progress
    /// allows. Returns whether a message carrying entries went out.
    pub(crate) fn send_append(&mut self, to: NodeId, empty_ok: bool) -> Result<bool> {
        let inflight_max = self.config.inflight_appends_max;
        let Some(pr) = self.leader_state().and_then(|l| l.progress.get(&to)) else {
            return Ok(false);
        };
        if pr.is_paused(inflight_max) {
            return Ok(false);
        }
        let (next, state) = (pr.next_index, pr.state);
        let last = self.log.last_index();
        if next > last && !empty_ok && state == ProgressState::Replicate {
            return Ok(false);
        }
        let prev_index = next - 1;
        let prev_term = self.log.term(prev_index)?;
        let hi = (next + self.config.entries_per_append_max as Index).min(last + 1);
        let entries = match prev_term {
            Some(_) => match self.log.entries(next, hi, self.config.bytes_per_append_max) {
                Ok(e) => Some(e),
                Err(Error::Storage(crate::StorageError::Compacted { .. })) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let (Some(prev_term), Some(entries)) = (prev_term, entries) else {
            // "The leader uses a new RPC called InstallSnapshot to send
            // snapshots to followers that are too far behind."
            self.send_snapshot(to)?;
            return Ok(false);
        };
        if entries.is_empty() && !empty_ok && state == ProgressState::Replicate {
            return Ok(false);
        }
        let n = entries.len();
        let end = prev_index + n as Index;
        let commit = self.log.commit;
        if let Some(pr) = self
            .leader_state_mut()
            .and_then(|l| l.progress.get_mut(&to))
        {
            pr.sent(end, n);
            pr.commit_sent = commit;
        }
        self.send(
            to,
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                entries,
                commit,
            },
        );
        Ok(n > 0)
    }

    /// Sends our latest snapshot to `to` and waits for its answer.
    fn send_snapshot(&mut self, to: NodeId) -> Result<()> {
        let snapshot = self.log.store.snapshot()?;
        let index = snapshot.meta.index;
        let tick = self.ticks;
        match self
            .leader_state_mut()
            .and_then(|l| l.progress.get_mut(&to))
        {
            Some(pr) => pr.become_snapshot(index, tick),
            None => return Ok(()),
        }
        self.send(to, MessageBody::InstallSnapshot { snapshot });
        Ok(())
    }

    pub(crate) fn step_leader(&mut self, m: Message) -> Result<()> {
        let tick = self.ticks;
        if let Some(pr) = self
            .leader_state_mut()
            .and_then(|l| l.progress.get_mut(&m.from))
        {
            pr.recent_active = true;
            pr.heard_tick = Some(tick);
        }
        match m.body {
            MessageBody::AppendEntriesResponse {
                reject,
                index,
                conflict_term,
                conflict_index,
            } => {
                if reject {
                    self.handle_append_reject(m.from, index, conflict_term, conflict_index)
                } else {
                    self.handle_append_success(m.from, index)
                }
            }
            MessageBody::HeartbeatResponse { round } => {
                let inflight_max = self.config.inflight_appends_max;
                let last = self.log.last_index();
                let mut send = false;
                if let Some(pr) = self
                    .leader_state_mut()
                    .and_then(|l| l.progress.get_mut(&m.from))
                {
                    pr.round_acked = pr.round_acked.max(round);
                    pr.paused = false;
                    if pr.state == ProgressState::Replicate && pr.inflight.len() >= inflight_max {
                        // Some AppendEntries may be lost: let one more out; if
                        // earlier ones were lost it is rejected and we probe.
                        pr.inflight.pop_front();
                    }
                    send = pr.match_index < last;
                }
                if send {
                    // Even an empty AppendEntries is worth sending: if the
                    // follower lost what we sent, it rejects it and we back up.
                    self.send_append(m.from, true)?;
                }
                self.release_reads();
                Ok(())
            }
            MessageBody::ReadIndex { ctx } => match self.leader_read(ctx, m.from) {
                Ok(()) | Err(Error::TooManyReads { .. }) => Ok(()),
                Err(e) => Err(e),
            },
            _ => Ok(()),
        }
    }

    fn handle_append_reject(
        &mut self,
        from: NodeId,
        rejected: Index,
        conflict_term: Term,
        conflict_index: Index,
    ) -> Result<()> {
        // Fast backup: if we hold entries of the follower's conflicting
        // term, resume after our last one; else skip to the start of the
        // follower's run of that term (or its end, if it is short).
        let mut hint = conflict_index.max(1);
        if conflict_term > 0 {
            let mut i = rejected.min(self.log.last_index());
            let floor = conflict_index.max(self.log.first_index());
            while i >= floor {
                match self.log.term(i)? {
                    Some(t) if t > conflict_term => i -= 1,
                    Some(t) if t == conflict_term => {
                        hint = i + 1;
                        break;
                    }
                    _ => break,
                }
            }
        }
        if conflict_index == 0 {
            // A blank node (no configuration yet) needs a snapshot first.
            return self.send_snapshot(from);
        }
        let changed = match self
            .leader_state_mut()
            .and_then(|l| l.progress.get_mut(&from))
        {
            Some(pr) => pr.maybe_decr_to(rejected, hint),
            None => false,
        };
        if changed {
            self.send_append(from, false)?;
        }
        Ok(())
    }

    fn handle_append_success(&mut self, from: NodeId, index: Index) -> Result<()> {
        let Some(pr) = self
            .leader_state_mut()
            .and_then(|l| l.progress.get_mut(&from))
        else {
            return Ok(());
        };
        let updated = pr.maybe_update(index);
        // A response at our match index also proves where the logs match
        // (e.g. an empty probe); a stale one (below it) proves nothing.
        let moved = match pr.state {
            ProgressState::Probe if index >= pr.match_index => {
                pr.become_replicate();
                true
            }
            ProgressState::Snapshot if index >= pr.pending_snapshot => {
                pr.become_replicate();
                true
            }
            _ => false,
        };
        if !updated && !moved {
            return Ok(());
        }
        self.leader_maybe_commit()?;
        if self.is_leader() {
            self.send_appends(from)?;
            // A follower that was paused when the commit index moved has not
            // heard of it yet.
            let commit = self.log.commit;
            let lagging = self
                .leader_state()
                .and_then(|l| l.progress.get(&from))
                .is_some_and(|p| p.commit_sent < commit.min(p.match_index));
            if lagging {
                self.send_append(from, true)?;
            }
        }
        self.maybe_send_timeout_now(from);
        Ok(())
    }

    /// "If there exists an N such that N > commitIndex, a majority of
    /// matchIndex[i] ≥ N, and log[N].term == currentTerm: set commitIndex =
    /// N." Our own match index is what the store has made durable.
    pub(crate) fn leader_maybe_commit(&mut self) -> Result<bool> {
        let conf = self.membership.current().clone();
        let me = self.id;
        let own = self.log.persisted_index();
        let Some(l) = self.leader_state() else {
            return Ok(false);
        };
        let mut matches: Vec<Index> = conf
            .voters
            .iter()
            .map(|id| {
                if *id == me {
                    own
                } else {
                    l.progress.get(id).map_or(0, |p| p.match_index)
                }
            })
            .collect();
        if matches.is_empty() {
            return Ok(false);
        }
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let n = matches[quorum(conf.voters.len()) - 1];
        if n <= self.log.commit {
            return Ok(false);
        }
        // Figure 8: only an entry of the current term commits by counting
        // replicas; earlier entries commit with it.
        if self.log.term(n)? != Some(self.term) {
            return Ok(false);
        }
        self.log.commit_to(n);
        if let Some(l) = self.leader_state_mut() {
            while l.uncommitted.front().is_some_and(|(i, _)| *i <= n) {
                if let Some((_, size)) = l.uncommitted.pop_front() {
                    l.uncommitted_bytes -= size;
                }
            }
        }
        self.on_commit_in_term();
        if !conf.voters.contains(&me) && self.membership.current_index() <= n {
            // Our own removal is committed: hand over and step down.
            self.step_down_removed();
            return Ok(true);
        }
        self.bcast_append(true)?;
        Ok(true)
    }

    fn step_down_removed(&mut self) {
        let last = self.log.last_index();
        let target = self.leader_state().and_then(|l| {
            l.progress
                .iter()
                .filter(|(_, p)| !p.learner && p.match_index == last)
                .map(|(id, _)| *id)
                .next()
        });
        if let Some(t) = target {
            self.send(t, MessageBody::TimeoutNow);
        }
        let term = self.term;
        self.become_follower(term, None);
    }

    pub(crate) fn start_transfer(&mut self, to: NodeId) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.id {
            return Ok(());
        }
        if !self.membership.current().voters.contains(&to) {
            return Err(Error::NotVoter(to));
        }
        if let Some(l) = self.leader_state_mut() {
            if l.transferee == Some(to) {
                return Ok(());
            }
            l.transferee = Some(to);
            l.transfer_elapsed = 0;
        }
        // Catch the target up first (an empty AppendEntries at least, in
        // case what is in flight was lost); TimeoutNow goes once it matches.
        self.send_append(to, true)?;
        self.maybe_send_timeout_now(to);
        Ok(())
    }

    fn maybe_send_timeout_now(&mut self, to: NodeId) {
        let last = self.log.last_index();
        let Some(l) = self.leader_state_mut() else {
            return;
        };
        if l.transferee != Some(to) {
            return;
        }
        if l.progress.get(&to).is_some_and(|p| p.match_index == last) {
            l.timeout_now_sent = true;
            self.send(to, MessageBody::TimeoutNow);
        }
    }

    /// Heartbeats to every follower, numbered by a new read round.
    pub(crate) fn bcast_heartbeat(&mut self) {
        let commit = self.log.commit;
        let tick = self.ticks;
        let now = self.now;
        let snapshot_retry = self.config.election_timeout_ticks_min;
        let Some(l) = self.leader_state_mut() else {
            return;
        };
        let round = l.reads.new_round(now);
        let mut out = Vec::new();
        for (id, p) in l.progress.iter_mut() {
            if p.state == ProgressState::Snapshot
                && tick.saturating_sub(p.snapshot_sent_tick) >= snapshot_retry
            {
                // The snapshot may have been lost: try again.
                p.become_probe();
            }
            out.push((*id, commit.min(p.match_index)));
        }
        for (id, c) in out {
            self.send(id, MessageBody::Heartbeat { commit: c, round });
        }
        // After the heartbeat, which repeats the commit index to them.
        self.drop_departed();
        self.release_reads();
    }
}
