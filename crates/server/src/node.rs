//! The Raft driver: one tokio task owns the [`RawNode`] (and through it the
//! WAL) and drives it.
//!
//! # The loop
//!
//! Each turn waits for one input — a tick (`tokio::time::interval`), a peer
//! message (bounded channel from the transport), or a request from the gRPC
//! services (bounded channel) — then drains what else is queued (up to
//! [`PROPOSALS_PER_BATCH_MAX`] requests), so many proposals land in one
//! `Ready` (one WAL write, one fsync). Linearizable reads queued in a turn
//! share one `read_index` call (one heartbeat round). Then every `Ready` is
//! handled in the order of the `raft` crate's contract:
//!
//! 1. a snapshot from the leader: the state machine was already restored by
//!    the transport before the message was stepped (see
//!    [`crate::descriptor`]), so only the WAL installs it;
//! 2. entries and hard state are appended to the WAL buffer; addresses of
//!    nodes added by membership entries go to the address book;
//! 3. `messages` go to the transport at once (the leader's AppendEntries
//!    leave before its fsync);
//! 4. the WAL is synced (`Wal::sync_handle`; on the driver's own thread,
//!    see [`run_blocking`]), and only then are `persisted_messages` sent;
//! 5. committed entries go to the apply task (bounded channel: a slow state
//!    machine slows the driver down instead of queueing without bound);
//!    read states are answered with their index (the service then waits for
//!    the applied index);
//! 6. `advance`.
//!
//! # Only members speak
//!
//! A peer message whose `from` is not in the node's current configuration
//! (voters and learners) is dropped before the core and counted
//! (`raftkv_peer_messages_dropped_total{reason="not-member"}`), except while
//! the node has no configuration at all: a joining node must hear the
//! leader that added it. (The peer service already refuses the handshake
//! of a non-member; this catches a node removed while its stream was open.)
//!
//! Known gap: "member" means the configuration in this node's own log. A
//! follower that missed the entry adding node X (it was down or cut off)
//! refuses X; if X then leads, that follower is not caught up until the
//! leadership moves to a node its configuration names (e.g. `raftkv
//! transfer-leader`). Telling such a new member from a removed one needs
//! more than the configuration (e.g. the incarnation a removed node had).
//!
//! # Peer events
//!
//! The transport reports peers found down (a follower may campaign early,
//! see [`RawNode::report_leader_down`]), peers whose data dir was replaced
//! (a new incarnation in their handshake: logged at WARN, and the leader
//! probes them from scratch, see [`RawNode::report_replaced`]), and peers
//! that refused our handshake (logged by the transport).
//!
//! No lock is held across the fsync or any network call: the driver owns
//! its state, and the transport's outboxes are bounded channels it never
//! waits on.
//!
//! # Waiting requests
//!
//! A write is answered by the apply task when the entry at its (index, term)
//! applies. If another term shows up at that index, or the node stops being
//! leader first, the write is answered `Unavailable` ("retry"): the client
//! retries with the same client id and sequence number, and the session
//! table makes the retry safe whether or not the first attempt applied.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raft::{
    ConfChange, ConfState, EntryKind, Index, LogStore, Message, ProposeError, RawNode, Ready, Role,
    Term,
};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;
use wal::Wal;

use crate::addrbook::AddrBook;
use crate::apply::ApplyMsg;
use crate::descriptor::Descriptor;
use crate::error::ServerError;
use crate::limits::PROPOSALS_PER_BATCH_MAX;
use crate::service::{not_leader, unavailable};
use crate::transport::{PeerEvent, Transport};

/// What the services ask of the driver.
pub(crate) enum NodeRequest {
    /// Propose an encoded `kv::Request`; answered when it applies.
    Propose {
        data: Bytes,
        reply: oneshot::Sender<Result<kv::Response, Status>>,
    },
    /// Propose a membership change; answered with its index once applied.
    ConfChange {
        cc: ConfChange,
        reply: oneshot::Sender<Result<Index, Status>>,
    },
    /// A linearizable read: answered with the index to wait for.
    Read {
        reply: oneshot::Sender<Result<Index, Status>>,
    },
    /// Hand leadership to `to`; answered once started.
    TransferLeader {
        to: u64,
        reply: oneshot::Sender<Result<(), Status>>,
    },
    /// The core's status.
    Status {
        reply: oneshot::Sender<raft::Status>,
    },
    /// Compact the WAL up to `index` (durable in the state machine).
    Compact {
        index: Index,
        reply: Option<oneshot::Sender<Result<(Index, Term), Status>>>,
    },
}

/// A request waiting for its entry to apply.
pub(crate) struct Waiter {
    pub term: Term,
    pub reply: WaiterReply,
}

/// Where a waiting request's answer goes.
pub(crate) enum WaiterReply {
    Write(oneshot::Sender<Result<kv::Response, Status>>),
    Conf(oneshot::Sender<Result<Index, Status>>),
}

impl Waiter {
    pub(crate) fn fail(self, status: Status) {
        match self.reply {
            WaiterReply::Write(tx) => {
                let _ = tx.send(Err(status));
            }
            WaiterReply::Conf(tx) => {
                let _ = tx.send(Err(status));
            }
        }
    }
}

/// Requests waiting for their entries, by log index; shared by the driver
/// (which adds them) and the apply task (which answers them). The lock is
/// only held for map operations.
#[derive(Default)]
pub(crate) struct Waiters {
    map: Mutex<BTreeMap<Index, Waiter>>,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Index, Waiter>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, index: Index, w: Waiter) {
        if let Some(old) = self.lock().insert(index, w) {
            old.fail(unavailable(
                "superseded by a newer entry at its index; retry",
            ));
        }
    }

    /// Removes the waiter at `index`, failing any below it (they can no
    /// longer apply: their index passed).
    pub(crate) fn take(&self, index: Index) -> Option<Waiter> {
        let mut m = self.lock();
        let stale: Vec<Index> = m.range(..index).map(|(i, _)| *i).collect();
        let mut old = Vec::new();
        for i in stale {
            if let Some(w) = m.remove(&i) {
                old.push(w);
            }
        }
        let w = m.remove(&index);
        drop(m);
        for w in old {
            w.fail(unavailable("leader changed; retry"));
        }
        w
    }

    /// Fails every waiter at or below `index`.
    pub(crate) fn fail_upto(&self, index: Index, status: &Status) {
        let ws: Vec<Waiter> = {
            let mut m = self.lock();
            let keys: Vec<Index> = m.range(..=index).map(|(i, _)| *i).collect();
            keys.into_iter().filter_map(|i| m.remove(&i)).collect()
        };
        for w in ws {
            w.fail(status.clone());
        }
    }

    /// Fails every waiter above `index`.
    pub(crate) fn fail_above(&self, index: Index, status: &Status) {
        let ws: Vec<Waiter> = {
            let mut m = self.lock();
            let rest = m.split_off(&(index + 1));
            rest.into_values().collect()
        };
        for w in ws {
            w.fail(status.clone());
        }
    }

    pub(crate) fn fail_all(&self, status: &Status) {
        let ws = std::mem::take(&mut *self.lock());
        for (_, w) in ws {
            w.fail(status.clone());
        }
    }
}

/// What the services see of the core without asking the driver.
#[derive(Clone, Debug)]
pub(crate) struct SoftView {
    pub role: Role,
    pub leader: Option<u64>,
    pub term: Term,
    pub commit: Index,
    pub last_index: Index,
    pub snapshot_index: Index,
    /// The configuration in effect (the latest in the log, maybe not
    /// committed).
    pub conf: ConfState,
    /// The configuration as of the commit index: what may be reported as
    /// a membership change's outcome (see [`raft::Status::committed_conf`]).
    pub committed_conf: ConfState,
}

impl Default for SoftView {
    fn default() -> Self {
        SoftView {
            role: Role::Follower,
            leader: None,
            term: 0,
            commit: 0,
            last_index: 0,
            snapshot_index: 0,
            conf: ConfState::default(),
            committed_conf: ConfState::default(),
        }
    }
}

/// The driver task's state.
pub(crate) struct Node {
    pub id: u64,
    pub raw: RawNode<Wal>,
    pub requests: mpsc::Receiver<NodeRequest>,
    pub peer_rx: mpsc::Receiver<Message>,
    /// What the transport tells of peers (see the module docs).
    pub events_rx: mpsc::Receiver<PeerEvent>,
    /// When to campaign because the leader was reported down.
    pub campaign_at: Option<tokio::time::Instant>,
    /// How far apart the remaining voters campaign after their leader is
    /// reported down (see [`crate::limits::LEADER_DOWN_CAMPAIGN_SPACING_MS`]).
    pub leader_down_spacing: Duration,
    pub transport: Transport,
    pub apply_tx: mpsc::Sender<ApplyMsg>,
    pub waiters: Arc<Waiters>,
    pub soft_tx: watch::Sender<SoftView>,
    pub applied_rx: watch::Receiver<Index>,
    pub book: AddrBook,
    pub tick_interval: Duration,
    /// Reads queued this turn, sharing one `read_index` call.
    pub read_batch: Vec<oneshot::Sender<Result<Index, Status>>>,
    /// Read batches waiting for their ReadState, by context.
    pub reads: BTreeMap<u64, Vec<oneshot::Sender<Result<Index, Status>>>>,
    pub next_read_ctx: u64,
    pub role: Role,
    pub leader: Option<u64>,
    /// The term and vote of the last hard state known durable.
    pub synced_term_vote: (Term, Option<u64>),
}

impl Node {
    /// Drives the node until `shutdown` resolves or a fatal error.
    pub(crate) async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        self.publish();
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = ticker.tick() => self.raw.tick(),
                Some(ev) = self.events_rx.recv() => self.peer_event(ev),
                _ = sleep_until(self.campaign_at) => self.campaign_after_leader_down(),
                m = self.peer_rx.recv() => {
                    let Some(m) = m else { break };
                    self.step(m)?;
                    for _ in 0..PROPOSALS_PER_BATCH_MAX {
                        match self.peer_rx.try_recv() {
                            Ok(m) => self.step(m)?,
                            Err(_) => break,
                        }
                    }
                }
                r = self.requests.recv() => {
                    let Some(r) = r else { break };
                    self.handle_request(r)?;
                    for _ in 0..PROPOSALS_PER_BATCH_MAX {
                        match self.requests.try_recv() {
                            Ok(r) => self.handle_request(r)?,
                            Err(_) => break,
                        }
                    }
                }
            }
            self.flush_reads();
            while self.raw.has_ready() {
                let rd = self.raw.ready();
                self.handle_ready(rd).await?;
            }
            self.publish();
        }
        // Graceful stop: make everything written durable.
        let h = self.raw.store_mut().sync_handle().map_err(storage)?;
        let synced = run_blocking(move || h.sync()).await?.map_err(storage)?;
        self.raw.store_mut().mark_durable(synced).map_err(storage)?;
        let stop = unavailable("the node is shutting down");
        self.waiters.fail_all(&stop);
        self.fail_reads(&stop);
        tracing::info!(node = self.id, "raft driver stopped");
        Ok(())
    }

    fn peer_event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Down(peer) => self.leader_down(peer),
            PeerEvent::Replaced {
                id,
                old_incarnation,
                new_incarnation,
            } => {
                let restarted = self.raw.report_replaced(id);
                tracing::warn!(
                    node = self.id,
                    peer = id,
                    old_incarnation = %crate::identity::hex(old_incarnation),
                    new_incarnation = %crate::identity::hex(new_incarnation),
                    leader_probes_it_again = restarted,
                    "peer's data dir was replaced; it no longer counts for commit until it \
                     acknowledges entries again"
                );
            }
            PeerEvent::RefusedUs { by, reason } => {
                tracing::debug!(
                    node = self.id,
                    by,
                    reason = reason.as_str(),
                    "peer refused us"
                );
            }
        }
    }

    /// The transport found `peer` down: if it is our leader, campaign soon.
    fn leader_down(&mut self, peer: u64) {
        if !self.raw.report_leader_down(peer) {
            return;
        }
        crate::observe::metrics::leader_down_report(self.id);
        // Staggered by rank among the remaining voters, so that they do not
        // campaign together and split the vote.
        let conf = self.raw.status().conf;
        let rank = conf
            .voters
            .iter()
            .filter(|&&v| v != peer)
            .position(|&v| v == self.id)
            .unwrap_or(conf.voters.len());
        let delay =
            self.leader_down_spacing * rank as u32 + random_below(self.leader_down_spacing / 3);
        tracing::info!(
            node = self.id,
            leader = peer,
            delay_ms = delay.as_millis() as u64,
            "leader reported down; campaigning soon"
        );
        self.campaign_at = Some(tokio::time::Instant::now() + delay);
    }

    fn campaign_after_leader_down(&mut self) {
        self.campaign_at = None;
        let st = self.raw.status();
        // A leader heard from meanwhile (someone else won) stands.
        if st.role == Role::Follower && st.leader.is_none() {
            if let Err(e) = self.raw.campaign() {
                tracing::debug!(node = self.id, error = %e, "no campaign after leader down");
            }
        }
    }

    fn step(&mut self, m: Message) -> Result<(), ServerError> {
        let member = {
            let soft = self.soft_tx.borrow();
            let c = &soft.conf;
            let none = c.voters.is_empty() && c.voters_outgoing.is_empty() && c.learners.is_empty();
            none || c.voters.contains(&m.from)
                || c.voters_outgoing.contains(&m.from)
                || c.learners.contains(&m.from)
        };
        if !member {
            crate::observe::metrics::peer_message_dropped(self.id, "not-member");
            tracing::debug!(
                node = self.id,
                from = m.from,
                "dropping a message from a non-member"
            );
            return Ok(());
        }
        crate::observe::metrics::count_received(self.id, &m);
        match self.raw.step(m) {
            Ok(()) => Ok(()),
            Err(raft::Error::Storage(e)) => Err(ServerError::Storage(e.to_string())),
            Err(e) => {
                tracing::debug!(node = self.id, error = %e, "message refused");
                Ok(())
            }
        }
    }

    fn publish(&mut self) {
        let st = self.raw.status();
        self.soft_tx.send_if_modified(|v| {
            let new = SoftView {
                role: st.role,
                leader: st.leader,
                term: st.term,
                commit: st.commit,
                last_index: st.last_index,
                snapshot_index: st.snapshot_index,
                conf: st.conf.clone(),
                committed_conf: st.committed_conf.clone(),
            };
            let changed = v.role != new.role
                || v.leader != new.leader
                || v.term != new.term
                || v.commit != new.commit
                || v.last_index != new.last_index
                || v.snapshot_index != new.snapshot_index
                || v.conf != new.conf
                || v.committed_conf != new.committed_conf;
            *v = new;
            changed
        });
    }

    fn handle_request(&mut self, r: NodeRequest) -> Result<(), ServerError> {
        match r {
            NodeRequest::Propose { data, reply } => match self.raw.propose(data) {
                Ok((index, term)) => self.waiters.insert(
                    index,
                    Waiter {
                        term,
                        reply: WaiterReply::Write(reply),
                    },
                ),
                Err(e) => {
                    let _ = reply.send(Err(self.propose_error(e)));
                }
            },
            NodeRequest::ConfChange { cc, reply } => {
                let addr = String::from_utf8_lossy(&cc.context).to_string();
                let (kind, node) = (cc.kind, cc.node_id);
                match self.raw.propose_conf_change(cc) {
                    Ok((index, term)) => {
                        tracing::info!(
                            node = self.id,
                            ?kind,
                            target = node,
                            addr,
                            index,
                            term,
                            "membership change proposed"
                        );
                        self.waiters.insert(
                            index,
                            Waiter {
                                term,
                                reply: WaiterReply::Conf(reply),
                            },
                        );
                    }
                    Err(e) => {
                        let _ = reply.send(Err(self.propose_error(e)));
                    }
                }
            }
            NodeRequest::Read { reply } => self.read_batch.push(reply),
            NodeRequest::TransferLeader { to, reply } => {
                let r = match self.raw.transfer_leader(to) {
                    Ok(()) => {
                        tracing::info!(node = self.id, to, "leadership transfer started");
                        Ok(())
                    }
                    Err(raft::Error::NotLeader { leader }) => Err(self.hint(leader)),
                    Err(raft::Error::NotVoter(id)) => Err(Status::failed_precondition(format!(
                        "node {id} is not a voter of the current configuration"
                    ))),
                    Err(e) => Err(Status::failed_precondition(e.to_string())),
                };
                let _ = reply.send(r);
            }
            NodeRequest::Status { reply } => {
                let _ = reply.send(self.raw.status());
            }
            NodeRequest::Compact { index, reply } => {
                let r = self.compact(index)?;
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
        }
        Ok(())
    }

    fn compact(&mut self, index: Index) -> Result<Result<(Index, Term), Status>, ServerError> {
        let st = self.raw.status();
        let durable = self.raw.store().durable_index();
        let asked = index;
        let index = index.min(st.applied).min(durable);
        tracing::debug!(
            node = self.id,
            asked,
            index,
            applied = st.applied,
            durable,
            first = LogStore::first_index(self.raw.store()),
            last = LogStore::last_index(self.raw.store()),
            snapshot = st.snapshot_index,
            "compaction requested"
        );
        let current = |raw: &RawNode<Wal>| {
            let m = raw.store().snapshot_meta();
            Ok((m.index, m.term))
        };
        if index <= st.snapshot_index {
            return Ok(current(&self.raw));
        }
        let desc = Descriptor {
            state_index: index,
            addrs: self.book.peers(),
        };
        match self.raw.compact(index, desc.encode()) {
            Ok(()) => {
                let m = self.raw.store().snapshot_meta();
                tracing::info!(
                    node = self.id,
                    index = m.index,
                    term = m.term,
                    "snapshot taken, log compacted"
                );
                Ok(Ok((m.index, m.term)))
            }
            Err(raft::Error::Storage(e)) => Err(ServerError::Storage(e.to_string())),
            Err(e) => {
                tracing::debug!(node = self.id, index, error = %e, "compaction skipped");
                Ok(current(&self.raw))
            }
        }
    }

    fn hint(&self, leader: Option<u64>) -> Status {
        not_leader(leader.filter(|&l| l != self.id), &self.book)
    }

    fn propose_error(&self, e: ProposeError) -> Status {
        match e {
            ProposeError::NotLeader { leader } => self.hint(leader),
            ProposeError::TransferInProgress { to } => {
                unavailable(&format!("leadership transfer to {to} in progress; retry"))
            }
            ProposeError::TooManyPending { entries, bytes } => Status::resource_exhausted(format!(
                "too many uncommitted entries ({entries} entries, {bytes} bytes); back off"
            )),
            ProposeError::EntryTooLarge { size, max } => {
                Status::invalid_argument(format!("request of {size} bytes exceeds {max}"))
            }
            // Another change not yet committed, or no entry of the leader's
            // term committed yet: both pass by themselves, so "retry".
            ProposeError::ConfChangeNotAllowed(s) => {
                unavailable(&format!("membership change not possible yet: {s}; retry"))
            }
            ProposeError::InvalidConfChange(s) => {
                Status::failed_precondition(format!("invalid membership change: {s}"))
            }
        }
    }

    fn flush_reads(&mut self) {
        if self.read_batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.read_batch);
        if self.raw.status().role != Role::Leader {
            let st = self.hint(self.leader);
            for tx in batch {
                let _ = tx.send(Err(st.clone()));
            }
            return;
        }
        self.next_read_ctx += 1;
        let ctx = self.next_read_ctx;
        match self.raw.read_index(ctx) {
            Ok(()) => {
                self.reads.insert(ctx, batch);
            }
            Err(e) => {
                let st = match e {
                    raft::Error::TooManyReads { max } => {
                        Status::resource_exhausted(format!("too many pending reads (max {max})"))
                    }
                    raft::Error::NotLeader { leader } => self.hint(leader),
                    other => unavailable(&format!("read refused: {other}; retry")),
                };
                for tx in batch {
                    let _ = tx.send(Err(st.clone()));
                }
            }
        }
    }

    fn fail_reads(&mut self, st: &Status) {
        for (_, batch) in std::mem::take(&mut self.reads) {
            for tx in batch {
                let _ = tx.send(Err(st.clone()));
            }
        }
    }

    async fn handle_ready(&mut self, mut rd: Ready) -> Result<(), ServerError> {
        if let Some(ss) = rd.soft_state {
            let was_leader = self.role == Role::Leader;
            if ss.role != self.role && matches!(ss.role, Role::Candidate | Role::PreCandidate) {
                tracing::info!(node = self.id, role = %ss.role, term = self.raw.status().term,
                    "election timeout: campaigning");
            }
            if ss.role == Role::Leader && self.role != Role::Leader {
                let st = self.raw.status();
                tracing::info!(
                    node = self.id,
                    term = st.term,
                    commit = st.commit,
                    last_index = st.last_index,
                    "elected leader"
                );
            }
            if ss.leader != self.leader {
                tracing::info!(node = self.id, leader = ?ss.leader, role = %ss.role,
                    term = self.raw.status().term, "leader changed");
            }
            self.role = ss.role;
            self.leader = ss.leader;
            if was_leader && ss.role != Role::Leader {
                tracing::info!(node = self.id, "stepped down");
                let st = unavailable(
                    "leadership lost before the entry committed; it may or may not apply: \
                     retry with the same client id and seq",
                );
                // Entries already committed still apply (and answer their
                // waiters); the others may never commit here.
                let commit = self.raw.status().commit;
                self.waiters.fail_above(commit, &st);
                self.fail_reads(&st);
            }
        }
        // 1. A snapshot from the leader (the state machine is restored).
        // (`advance` needs `rd.snapshot`: install a copy.)
        if let Some(snap) = rd.snapshot.clone() {
            let applied = *self.applied_rx.borrow();
            if applied < snap.meta.index {
                return Err(ServerError::StateMachine(format!(
                    "the state machine is at index {applied}, behind the snapshot at {}: its data \
                     is missing; wipe the data dir and let the node catch up from the leader",
                    snap.meta.index
                )));
            }
            if let Some(d) = Descriptor::decode(&snap.data) {
                self.book.merge_peers(&d.addrs)?;
            }
            tracing::info!(
                node = self.id,
                index = snap.meta.index,
                term = snap.meta.term,
                "installing snapshot in the log"
            );
            let index = snap.meta.index;
            self.raw
                .store_mut()
                .install_snapshot(snap)
                .map_err(storage)?;
            self.waiters
                .fail_upto(index, &unavailable("leader changed; retry"));
        }
        // 2. Entries and hard state.
        for e in rd
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::ConfChange)
        {
            if let Ok(cc) = ConfChange::decode(&e.data) {
                self.book.learn_from(&cc)?;
            }
        }
        if !rd.entries.is_empty() {
            let t = std::time::Instant::now();
            self.raw.store_mut().append(&rd.entries).map_err(storage)?;
            crate::observe::metrics::wal_append(self.id, t.elapsed());
        }
        if let Some(hs) = &rd.hard_state {
            self.raw.store_mut().save_hard_state(hs).map_err(storage)?;
        }
        // 3. Messages that need nothing durable.
        for m in std::mem::take(&mut rd.messages) {
            crate::observe::metrics::count_sent(self.id, &m);
            self.transport.send(m);
        }
        // 4. Sync (see `run_blocking`), then the messages that need it.
        // A hard state whose term and vote are unchanged only moved the
        // commit index, which needs no durability (losing it is safe): it
        // rides along with the next sync instead of costing an fsync.
        let vote_changed = rd
            .hard_state
            .is_some_and(|hs| (hs.term, hs.vote) != self.synced_term_vote);
        if !rd.entries.is_empty() || vote_changed {
            let h = self.raw.store_mut().sync_handle().map_err(storage)?;
            let t = std::time::Instant::now();
            let synced = run_blocking(move || h.sync()).await?.map_err(storage)?;
            crate::observe::metrics::wal_fsync(self.id, t.elapsed());
            self.raw.store_mut().mark_durable(synced).map_err(storage)?;
            let hs = self.raw.store().hard_state();
            self.synced_term_vote = (hs.term, hs.vote);
        }
        for m in std::mem::take(&mut rd.persisted_messages) {
            crate::observe::metrics::count_sent(self.id, &m);
            self.transport.send(m);
        }
        // 5. Committed entries to the apply task; reads to their waiters.
        if !rd.committed_entries.is_empty() {
            let conf_changed = rd
                .committed_entries
                .iter()
                .any(|e| e.kind == EntryKind::ConfChange);
            let entries = std::mem::take(&mut rd.committed_entries);
            // Publish the view first: a waiter the apply task answers must
            // find the configuration and commit index it waited for (a
            // membership change's caller reads `Members` right after).
            self.publish();
            self.apply_tx
                .send(ApplyMsg::Entries(entries))
                .await
                .map_err(|_| ServerError::Task("the apply task stopped".into()))?;
            if conf_changed {
                let conf = self.raw.status().conf;
                tracing::info!(node = self.id, voters = ?conf.voters, learners = ?conf.learners,
                    "configuration changed");
                self.transport.retain(&conf.members());
            }
        }
        for rs in std::mem::take(&mut rd.read_states) {
            if let Some(batch) = self.reads.remove(&rs.ctx) {
                for tx in batch {
                    let _ = tx.send(Ok(rs.index));
                }
            }
        }
        // 6. Advance.
        match self.raw.advance(rd) {
            Ok(()) => Ok(()),
            Err(e) => Err(ServerError::Raft(e.to_string())),
        }
    }
}

fn storage(e: wal::Error) -> ServerError {
    ServerError::Storage(e.to_string())
}

/// Opens the WAL and, on a first start of a bootstrapping node, records the
/// initial configuration as a snapshot at index 0.
pub(crate) fn open_wal(
    dir: &std::path::Path,
    voters: Option<Vec<u64>>,
) -> Result<Wal, ServerError> {
    let (mut wal, report) = Wal::open(dir, wal::Options::default()).map_err(storage)?;
    tracing::info!(dir = %dir.display(), report = %report, "WAL opened");
    let fresh = LogStore::last_index(&wal) == 0
        && wal.hard_state().term == 0
        && wal.snapshot_meta().conf == ConfState::default();
    if fresh {
        if let Some(voters) = voters {
            tracing::info!(?voters, "bootstrapping a new cluster");
            wal.install_snapshot(raft::Snapshot {
                meta: raft::SnapshotMeta {
                    index: 0,
                    term: 0,
                    conf: ConfState::with_voters(voters),
                },
                data: Bytes::new(),
            })
            .map_err(storage)?;
        }
    }
    Ok(wal)
}

/// Runs `f`, which blocks (the WAL's fsync), without holding up other
/// tasks. On a multi-thread runtime the driver's own thread runs it
/// (`block_in_place`: tokio hands this worker's queued tasks to another
/// thread meanwhile), which saves the two thread hand-offs of a blocking-pool
/// thread per Ready: +4.5 % puts at 64 clients in an A/B of six fresh
/// clusters each (19.6k vs 18.7k/s median; one run of the six at 15.6k),
/// 1-client p50 unchanged (0.75 vs 0.78 ms). On a current-thread
/// runtime (where `block_in_place` is not allowed) it goes to the blocking
/// pool.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServerError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        Ok(tokio::task::block_in_place(f))
    } else {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ServerError::Task(format!("WAL sync thread: {e}")))
    }
}

/// Sleeps until `at`, or forever if it is `None`.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A random duration in `[0, max)` (`max` itself if zero).
fn random_below(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let nanos = max.as_nanos() as u64;
    if nanos == 0 {
        return max;
    }
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_nanos(r % nanos)
}
