//! [`RawNode`]: the public API of the core and the Ready cycle.

use std::time::Duration;

use bytes::Bytes;

use crate::candidate::Votes;
use crate::confchange::ConfChange;
use crate::config::Config;
use crate::error::{Error, ProposeError, Result};
use crate::invariants::InvariantState;
use crate::leader::LeaderState;
use crate::limits;
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::message::{Message, MessageBody, ReadState};
use crate::ready::{FollowerLoss, Ready, Role, SoftState, Status};
use crate::rng::SplitMix64;
use crate::storage::LogStore;
use crate::types::{EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMeta, Term};

/// The role a node plays, with the state only that role has.
pub(crate) enum RoleState {
    Follower,
    PreCandidate(Votes),
    Candidate(Votes),
    Leader(Box<LeaderState>),
}

/// One Raft node, driven from outside. See the crate docs for the contract.
pub struct RawNode<S: LogStore> {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    pub(crate) rng: SplitMix64,
    pub(crate) log: RaftLog<S>,
    pub(crate) membership: Membership,
    /// The paper's `currentTerm` and `votedFor`.
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) leader: Option<NodeId>,
    pub(crate) role: RoleState,
    /// Ticks since the last election timer reset (followers, candidates) or
    /// since the last check-quorum (leader).
    pub(crate) election_elapsed: u64,
    pub(crate) randomized_election_timeout: u64,
    /// Ticks since the node started.
    pub(crate) ticks: u64,
    /// The driver's monotonic clock, as last given to `set_now` (lease
    /// reads only).
    pub(crate) now: Duration,
    /// Ticks since `set_now` was last called (`u64::MAX`: never). The
    /// lease is used only while this is at most 1, so that a driver that
    /// stopped giving the clock cannot extend a lease with a frozen one.
    pub(crate) ticks_since_clock: u64,
    /// A node restarted with lease reads on refuses votes for an election
    /// timeout: it may have acknowledged a leader's lease before the crash.
    pub(crate) votes_blocked_ticks: u64,
    /// `Some(floor)` while the node is recovering lost data: see
    /// [`RawNode::is_recovering`].
    pub(crate) recovering: Option<Index>,
    /// Followers found to have lost data, until taken.
    pub(crate) follower_losses: Vec<FollowerLoss>,
    pub(crate) msgs: Vec<Message>,
    pub(crate) msgs_persisted: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    /// On restart with `applied` below the snapshot: the snapshot the state
    /// machine must restore first.
    pub(crate) startup_snapshot: Option<Snapshot>,
    /// Removal bookkeeping (see [`crate::membership`], "A removed node").
    pub(crate) removal: crate::membership::RemovalState,
    prev_soft: SoftState,
    prev_hard: HardState,
    ready_number: u64,
    outstanding: Option<u64>,
    pub(crate) checker: InvariantState,
}

impl<S: LogStore> RawNode<S> {
    /// A node that starts from what `store` holds (hard state, snapshot,
    /// log), as a follower. `config.applied` is where the state machine
    /// stands; if it is below the store's snapshot, the first Ready carries
    /// that snapshot for the state machine to restore.
    ///
    /// The cluster's first configuration comes from the store's snapshot
    /// metadata (e.g. [`MemStore::with_conf`] at index 0). A node that joins
    /// later starts from an empty store (no configuration, no log): such a
    /// "blank" node refuses entries, because configuration entries are
    /// changes relative to a configuration it does not have, and asks the
    /// leader for its snapshot first (possibly the index-0 snapshot, whose
    /// data is empty: an empty state machine) — see the
    /// `learner_add_promote` scenario.
    ///
    /// [`MemStore::with_conf`]: crate::MemStore::with_conf
    ///
    /// # Errors
    /// `Error::Config` for a bad config or an `applied` index beyond the
    /// log; `Error::Storage` if the store cannot be read.
    pub fn new(config: Config, store: S) -> Result<Self> {
        config.validate()?;
        let (hs, conf) = store.initial_state()?;
        let snap_meta = store.snapshot_meta();
        let last = store.last_index();
        if config.applied > last {
            return Err(Error::Config(format!(
                "applied index {} is beyond the last log index {last}",
                config.applied
            )));
        }
        let startup_snapshot = if config.applied < snap_meta.index {
            Some(store.snapshot()?)
        } else {
            None
        };
        let applied = config.applied.max(snap_meta.index);
        // A hard state that recorded a commit index beyond the log: the
        // log lost committed entries (a damaged disk), which this node
        // may have acknowledged.
        let lost = (hs.commit > last).then_some(hs.commit);
        let recovering = config.recovering.max(lost);
        let commit = hs.commit.max(applied).min(last);
        let mut membership = Membership::new(snap_meta.index, conf);
        // Replay the configuration entries after the snapshot.
        let mut next = store.first_index();
        while next <= last {
            let batch = store.entries(next, last + 1, limits::BYTES_PER_APPEND_MAX)?;
            let Some(l) = batch.last() else { break };
            next = l.index + 1;
            let changes: Vec<_> = batch
                .into_iter()
                .filter(|e| e.kind == EntryKind::ConfChange)
                .collect();
            for e in &changes {
                membership.on_append(std::slice::from_ref(e));
            }
        }
        let votes_blocked_ticks = if config.lease_read && hs.term > 0 {
            config.election_timeout_ticks_min
        } else {
            0
        };
        let mut node = RawNode {
            id: config.id,
            rng: SplitMix64::new(config.seed),
            log: RaftLog::new(store, commit, applied),
            membership,
            term: hs.term,
            vote: hs.vote,
            leader: None,
            role: RoleState::Follower,
            election_elapsed: 0,
            randomized_election_timeout: 0,
            ticks: 0,
            now: Duration::ZERO,
            ticks_since_clock: u64::MAX,
            votes_blocked_ticks,
            recovering,
            follower_losses: Vec::new(),
            msgs: Vec::new(),
            msgs_persisted: Vec::new(),
            read_states: Vec::new(),
            startup_snapshot,
            removal: Default::default(),
            prev_soft: SoftState {
                role: Role::Follower,
                leader: None,
            },
            prev_hard: hs,
            ready_number: 0,
            outstanding: None,
            checker: InvariantState::default(),
            config,
        };
        node.reset_election_timer();
        node.debug_check();
        Ok(node)
    }

    /// Gives the node the time on a monotonic clock: a `Duration` since an
    /// arbitrary origin that stays the same for the node's life (e.g.
    /// `Instant::now() - start`; a simulator passes its simulated time).
    /// Only lease reads use it (see `read.rs` for why); with
    /// [`Config::lease_read`] off it may be left alone.
    ///
    /// With leases on, call it before every input (`tick`, `step`,
    /// `read_index`...) with a reading taken *after* that input arrived
    /// (after a request or message was taken from its queue, not before a
    /// batch of them): the lease is checked against this time, so a reading
    /// older than the request could let a read through that started after
    /// the lease ran out. A time earlier than the last one given is ignored
    /// (the clock never goes back). If it is not called for more than one
    /// tick, the lease is not used until it is again.
    pub fn set_now(&mut self, now: Duration) {
        self.now = self.now.max(now);
        self.ticks_since_clock = 0;
    }

    /// Advances time by one tick: followers and candidates count towards an
    /// election timeout, the leader towards its next heartbeat and its
    /// check-quorum.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.ticks_since_clock = self.ticks_since_clock.saturating_add(1);
        self.votes_blocked_ticks = self.votes_blocked_ticks.saturating_sub(1);
        if self.is_leader() {
            self.tick_leader();
        } else {
            self.election_elapsed += 1;
            if self.election_elapsed >= self.randomized_election_timeout && self.is_promotable() {
                self.start_election(false);
            }
        }
        self.debug_check();
    }

    /// Handles a message from a peer. Messages for another node or stale
    /// ones are ignored.
    ///
    /// # Errors
    /// `Error::Storage` if the store fails; the node must then stop.
    pub fn step(&mut self, msg: Message) -> Result<()> {
        if self.removal.removed {
            // A removed node takes part in nothing (membership docs).
            return Ok(());
        }
        let r = self.step_message(msg);
        self.update_removed();
        self.debug_check();
        r
    }

    /// Appends `data` as a new entry if this node is the leader, and returns
    /// where it landed. It is committed when it shows up in a Ready's
    /// `committed_entries` at that index with that term; if another entry
    /// shows up there instead, the proposal was lost.
    ///
    /// # Errors
    /// A [`ProposeError`] if the proposal is refused; nothing was appended.
    pub fn propose(&mut self, data: Bytes) -> std::result::Result<(Index, Term), ProposeError> {
        if self.removal.removed {
            return Err(ProposeError::Removed { id: self.id });
        }
        let r = self.propose_entry(EntryKind::Normal, data);
        self.debug_check();
        r
    }

    /// Proposes a membership change (see [`crate::membership`]), which takes
    /// effect as soon as it is appended.
    ///
    /// # Errors
    /// A [`ProposeError`]: not leader, another change not yet committed, the
    /// leader's first entry of its term not yet committed, an invalid change.
    pub fn propose_conf_change(
        &mut self,
        cc: ConfChange,
    ) -> std::result::Result<(Index, Term), ProposeError> {
        if self.removal.removed {
            return Err(ProposeError::Removed { id: self.id });
        }
        let r = self.propose_conf_change_leader(cc);
        self.debug_check();
        r
    }

    /// Asks for a linearizable read. The answer is a [`ReadState`] with
    /// this `ctx` in a later Ready; serve the read once the state machine
    /// has applied its index. A follower forwards the request to the leader.
    /// A read may be lost (leader change, lost message): the caller retries
    /// after a timeout.
    ///
    /// # Errors
    /// `Error::NoLeader` on a follower that knows no leader,
    /// `Error::TooManyReads` when too many reads wait.
    pub fn read_index(&mut self, ctx: u64) -> Result<()> {
        let r = if self.removal.removed {
            Err(Error::Removed(self.id))
        } else if self.is_leader() {
            self.leader_read(ctx, self.id)
        } else {
            match self.leader {
                Some(l) if l != self.id => {
                    self.send(l, MessageBody::ReadIndex { ctx });
                    Ok(())
                }
                _ => Err(Error::NoLeader),
            }
        };
        self.debug_check();
        r
    }

    /// Hands leadership to voter `to`: the leader catches it up, then tells
    /// it to start an election at once. Proposals are refused meanwhile; the
    /// transfer is abandoned after an election timeout.
    ///
    /// # Errors
    /// `Error::NotLeader`, or `Error::NotVoter` if `to` is not a voter.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<()> {
        let r = self.start_transfer(to);
        self.debug_check();
        r
    }

    /// Starts an election now (with pre-vote if configured). A leader
    /// ignores it.
    ///
    /// # Errors
    /// `Error::NotVoter` if this node is not a voter.
    pub fn campaign(&mut self) -> Result<()> {
        if let Some(floor) = self.recovering {
            return Err(Error::Recovering { id: self.id, floor });
        }
        if !self.is_promotable() {
            return Err(Error::NotVoter(self.id));
        }
        if !self.is_leader() {
            self.start_election(false);
        }
        self.debug_check();
        Ok(())
    }

    /// Tells a follower that the transport found `peer` down: its
    /// connection broke and a new one was refused (the process is gone, so
    /// the operating system closed its sockets). Returns whether the
    /// follower took it: `peer` is the leader it follows, and lease reads
    /// are off.
    ///
    /// A follower that takes it forgets its leader, so it no longer
    /// refuses votes for that leader's sake (leader stickiness). The caller
    /// should then call [`RawNode::campaign`] after a short delay that
    /// differs between followers (the server staggers them by id), so that
    /// followers which noticed together do not split the vote, rather than
    /// wait out a whole election timeout. If no election is started,
    /// the election timer runs on as before.
    ///
    /// Safety does not depend on it: any node may start an election at any
    /// time, and pre-vote still asks a majority that has not heard from a
    /// leader either. Only liveness does: a follower that is told wrongly
    /// (a live leader, one broken connection) may let another node depose
    /// that leader. With lease reads on it is ignored, because the leader's
    /// lease relies on every voter honouring the full election timeout.
    pub fn report_leader_down(&mut self, peer: NodeId) -> bool {
        let taken = !self.config.lease_read
            && matches!(self.role, RoleState::Follower)
            && self.leader == Some(peer)
            && peer != self.id;
        if taken {
            self.leader = None;
        }
        self.debug_check();
        taken
    }

    /// Whether this node is recovering lost data: it was started with
    /// [`Config::recovering`], or its store's hard state recorded a commit
    /// index beyond its log. Such a node may have acknowledged entries it
    /// no longer holds, so its vote could elect a leader that lacks
    /// committed entries. Until repaired it grants no pre-vote or vote and
    /// never campaigns (not even on `TimeoutNow`); it still accepts entries
    /// and snapshots from the leader.
    ///
    /// It is repaired once, as a follower, it accepted an AppendEntries of
    /// the leader of its current term and its log reaches the commit index
    /// that message told (not just a prefix of it), that index holds an
    /// entry of the leader's term, and it is at least the floor. Then its
    /// log holds every entry committed in earlier terms (Leader
    /// Completeness: the leader has them, and our log matches the leader's
    /// up to an entry of its term) and everything the leader knew
    /// committed, so what it acknowledged before the loss and was counted
    /// is back. Heartbeats and snapshots do not end it (a heartbeat's
    /// commit index is capped by the leader's idea of our match, which may
    /// predate the loss); the next AppendEntries does.
    pub fn is_recovering(&self) -> bool {
        self.recovering.is_some()
    }

    /// The followers this leader found to have lost data since the last
    /// call (see [`FollowerLoss`]), for the caller to log and count.
    pub fn take_follower_losses(&mut self) -> Vec<FollowerLoss> {
        std::mem::take(&mut self.follower_losses)
    }

    /// Tells the node that `peer`'s data dir was replaced (the transport
    /// saw a new incarnation under its id): `peer` no longer holds what it
    /// acknowledged. Returns whether anything changed.
    ///
    /// On the leader, `peer`'s progress restarts from probe with match 0:
    /// it no longer counts toward commit until it acknowledges entries
    /// again (a commit already made stands: it rested on acknowledgements
    /// that were true when given), and it is probed from the start of the
    /// log, so that it gets the entries or a snapshot it lost. Elsewhere
    /// nothing happens (a replaced node's vote is the identity layer's
    /// concern).
    pub fn report_replaced(&mut self, peer: NodeId) -> bool {
        let changed = match self
            .leader_state_mut()
            .and_then(|l| l.progress.get_mut(&peer))
        {
            Some(pr) => {
                pr.match_index = 0;
                pr.pending_snapshot = 0;
                pr.state = crate::ready::ProgressState::Probe;
                pr.become_probe();
                true
            }
            None => false,
        };
        self.debug_check();
        changed
    }

    /// Whether a [`Ready`] has something to do. False while a Ready is
    /// outstanding (not yet given back to `advance`).
    pub fn has_ready(&self) -> bool {
        if self.outstanding.is_some() {
            return false;
        }
        self.soft_state() != self.prev_soft
            || self.hard_state() != self.prev_hard
            || self.startup_snapshot.is_some()
            || (self.log.pending_snapshot.is_some() && !self.log.snapshot_handed)
            || !self.log.entries_to_hand().is_empty()
            || !self.msgs.is_empty()
            || !self.msgs_persisted.is_empty()
            || !self.read_states.is_empty()
            || self.log.commit.min(self.log.last_index()) > self.log.applying
            || self.read_round_wanted()
            || self.bcast_wanted()
    }

    /// Takes the next [`Ready`]. Call [`RawNode::advance`] with it once it
    /// is handled, before calling `ready` again (a second call before then
    /// returns an empty Ready).
    pub fn ready(&mut self) -> Ready {
        if self.outstanding.is_some() {
            return Ready::default();
        }
        self.flush_read_round();
        // A store that cannot be read fails the next step loudly.
        let _ = self.flush_bcast();
        self.ready_number += 1;
        let mut rd = Ready {
            number: self.ready_number,
            ..Ready::default()
        };
        let soft = self.soft_state();
        if soft != self.prev_soft {
            rd.soft_state = Some(soft);
            self.prev_soft = soft;
        }
        let hard = self.hard_state();
        if hard != self.prev_hard {
            rd.hard_state = Some(hard);
            self.prev_hard = hard;
        }
        if let (Some(s), false) = (&self.log.pending_snapshot, self.log.snapshot_handed) {
            // A snapshot from the leader supersedes the one the state machine
            // would restore on startup.
            self.startup_snapshot = None;
            self.log.snapshot_handed = true;
            self.log.applying = self.log.applying.max(s.meta.index);
            rd.snapshot = Some(s.clone());
        } else if let Some(s) = self.startup_snapshot.take() {
            self.log.applying = self.log.applying.max(s.meta.index);
            rd.snapshot = Some(s);
        }
        rd.entries = self.log.entries_to_hand().to_vec();
        if let Some(last) = rd.entries.last() {
            self.log.handed = last.index;
            rd.stable_to = Some((last.index, last.term));
        }
        // Everything up to the last index is durable once this Ready is
        // handled (step 4 comes before step 5), so committed entries up to
        // there may be applied.
        let hi = self.log.commit.min(self.log.last_index());
        if hi > self.log.applying {
            // A store that cannot be read now is retried on the next Ready;
            // a broken store fails the next step loudly.
            if let Ok(ents) = self.log.entries(
                self.log.applying + 1,
                hi + 1,
                limits::COMMITTED_BYTES_PER_READY_MAX,
            ) {
                if let Some(l) = ents.last() {
                    self.log.applying = l.index;
                }
                if self.config.check_invariants {
                    self.checker.record_committed(&ents);
                }
                rd.committed_entries = ents;
            }
        }
        rd.applied_to = self.log.applying;
        rd.messages = std::mem::take(&mut self.msgs);
        rd.persisted_messages = std::mem::take(&mut self.msgs_persisted);
        rd.read_states = std::mem::take(&mut self.read_states);
        self.outstanding = Some(rd.number);
        rd
    }

    /// Tells the node that `ready` was handled: everything in it is durable
    /// and its committed entries are applied.
    ///
    /// # Errors
    /// `Error::ReadyMisuse` for a Ready that is not the outstanding one;
    /// `Error::Storage` if the store fails.
    pub fn advance(&mut self, ready: Ready) -> Result<()> {
        if ready.number == 0 {
            return Ok(());
        }
        if self.outstanding != Some(ready.number) {
            return Err(Error::ReadyMisuse(format!(
                "advance of Ready #{} but #{:?} is outstanding",
                ready.number, self.outstanding
            )));
        }
        self.outstanding = None;
        if let Some(s) = &ready.snapshot {
            self.log.snapshot_installed(s.meta.index, s.meta.term);
        }
        if let Some((index, term)) = ready.stable_to {
            self.log.stable_to(index, term);
        }
        self.log.applied = self.log.applied.max(ready.applied_to);
        if self.is_leader() {
            // The leader's own copy is durable now: it may complete a
            // majority (durable-ack counting).
            self.leader_maybe_commit()?;
        }
        self.update_removed();
        self.debug_check();
        Ok(())
    }

    /// Records a snapshot of the state machine at `index` (at most the
    /// applied index) in the store, which drops the log up to it.
    ///
    /// # Errors
    /// `Error::Compact` if `index` is beyond the applied index or below the
    /// current snapshot; `Error::Storage` if the store fails.
    pub fn compact(&mut self, index: Index, data: Bytes) -> Result<()> {
        let bad = |reason: &str| {
            Err(Error::Compact {
                index,
                reason: reason.to_string(),
            })
        };
        if index > self.log.applied {
            return bad("beyond the applied index");
        }
        if index >= self.log.offset || self.log.pending_snapshot.is_some() {
            return bad("not yet durable in the log store");
        }
        if index < self.log.snapshot_index() {
            return bad("below the current snapshot");
        }
        if index == self.log.snapshot_index() {
            return Ok(());
        }
        let Some(term) = self.log.term(index)? else {
            return bad("not in the log");
        };
        let meta = SnapshotMeta {
            index,
            term,
            conf: self.membership.conf_at(index).clone(),
        };
        self.log.store.compact(meta, data)?;
        self.membership.compact(index);
        self.debug_check();
        Ok(())
    }

    /// The node's state.
    pub fn status(&self) -> Status {
        let (progress, transferee) = match &self.role {
            RoleState::Leader(l) => (
                l.progress
                    .iter()
                    .filter(|(id, _)| !l.departing.contains_key(id))
                    .map(|(id, p)| (*id, p.status()))
                    .collect(),
                l.transferee,
            ),
            _ => (Default::default(), None),
        };
        Status {
            id: self.id,
            role: self.role(),
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit: self.log.commit,
            applied: self.log.applied,
            last_index: self.log.last_index(),
            snapshot_index: self.log.snapshot_index(),
            conf: self.membership.current().clone(),
            committed_conf: self.membership.conf_at(self.log.commit).clone(),
            departing: match &self.role {
                RoleState::Leader(l) => l.departing.keys().copied().collect(),
                _ => Vec::new(),
            },
            progress,
            transferee,
            removed: self.removal.removed,
            recovering: self.recovering.is_some(),
        }
    }

    /// The log store.
    pub fn store(&self) -> &S {
        &self.log.store
    }

    /// The log store, for handling a Ready.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.log.store
    }

    /// Checks the node's internal invariants (commit within the log and
    /// never decreasing, committed entries never changing, terms never
    /// decreasing, at most one leader seen per term...). Runs after every
    /// input in debug builds. Committed entries are checked only with
    /// [`Config::check_invariants`](crate::Config::check_invariants) on.
    ///
    /// # Errors
    /// A description of the first violated invariant.
    pub fn check_invariants(&mut self) -> std::result::Result<(), String> {
        self.check_invariants_inner()
    }

    // ---- helpers shared by the roles ----

    pub(crate) fn role(&self) -> Role {
        match self.role {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate(_) => Role::PreCandidate,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    pub(crate) fn is_leader(&self) -> bool {
        matches!(self.role, RoleState::Leader(_))
    }

    /// Whether this node may become leader: it is a voter, was not
    /// removed and is not recovering lost data.
    pub(crate) fn is_promotable(&self) -> bool {
        self.recovering.is_none()
            && !self.removal.removed
            && self.membership.current().voters.contains(&self.id)
    }

    /// Ends recovery once the repair condition of
    /// [`RawNode::is_recovering`] holds. Called on a follower after an
    /// AppendEntries of the leader of its term that said `leader_commit`.
    pub(crate) fn maybe_end_recovery(&mut self, leader_commit: Index) -> Result<()> {
        let Some(floor) = self.recovering else {
            return Ok(());
        };
        let commit = self.log.commit;
        if self.leader.is_some()
            && commit > 0
            && commit >= floor
            && commit >= leader_commit
            && self.log.term(commit)? == Some(self.term)
        {
            self.recovering = None;
        }
        Ok(())
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role(),
            leader: self.leader,
        }
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        }
    }

    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.randomized_election_timeout = self.rng.range(
            self.config.election_timeout_ticks_min,
            self.config.election_timeout_ticks_max,
        );
    }

    /// Queues a message in this node's current term.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    /// Queues a message. The leader's replication traffic may go out before
    /// the Ready is durable; everything else waits for the sync.
    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let immediate = self.is_leader()
            && matches!(
                body,
                MessageBody::AppendEntries { .. }
                    | MessageBody::Heartbeat { .. }
                    | MessageBody::InstallSnapshot { .. }
                    | MessageBody::TimeoutNow
                    | MessageBody::ReadIndexResponse { .. }
            );
        let m = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if immediate {
            self.msgs.push(m);
        } else {
            self.msgs_persisted.push(m);
        }
    }

    fn debug_check(&mut self) {
        #[cfg(debug_assertions)]
        if !self.config.check_invariants {
            return;
        }
        #[cfg(debug_assertions)]
        if let Err(e) = self.check_invariants() {
            panic!("raft node {}: invariant violated: {e}", self.id);
        }
    }

    /// Appends entries to the log and lets the configuration follow.
    pub(crate) fn append_to_log(&mut self, entries: &[crate::types::Entry]) {
        self.log.append(entries);
        self.membership.on_append(entries);
    }

    fn propose_conf_change_leader(
        &mut self,
        cc: ConfChange,
    ) -> std::result::Result<(Index, Term), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.log.term(self.log.commit).ok().flatten() != Some(self.term) {
            return Err(ProposeError::ConfChangeNotAllowed(
                "the leader has not committed an entry of its term yet".into(),
            ));
        }
        if self.membership.current_index() > self.log.commit {
            return Err(ProposeError::ConfChangeNotAllowed(format!(
                "the change at index {} is not committed yet",
                self.membership.current_index()
            )));
        }
        crate::membership::apply(self.membership.current(), &cc)
            .map_err(ProposeError::InvalidConfChange)?;
        self.check_promotion(&cc)?;
        if cc.context.len() > limits::CONF_CHANGE_CONTEXT_BYTES_MAX {
            return Err(ProposeError::InvalidConfChange(format!(
                "context of {} bytes exceeds {}",
                cc.context.len(),
                limits::CONF_CHANGE_CONTEXT_BYTES_MAX
            )));
        }
        self.propose_entry(EntryKind::ConfChange, cc.encode())
    }
}
