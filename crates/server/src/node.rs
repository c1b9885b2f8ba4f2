//! The Raft driver: one tokio task owns the [`RawNode`] (and through it the
//! WAL) and drives it.
//!
//! # The loop
//!
//! Each turn waits for one input — a tick (`tokio::time::interval` wakes the
//! loop; the ticks due are counted from a monotonic clock, so a stalled
//! process catches up on the ticks it missed: [`Node::tick_due`]), a peer
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
    /// Removed nodes this leader still replicates to (`raft::Status::departing`):
    /// admitted until they know of their removal.
    pub departing: Vec<u64>,
    /// This node was removed from the cluster ([`RawNode::is_removed`]).
    pub removed: bool,
    /// Recovering lost data (see `raft::RawNode::is_recovering`).
    pub recovering: bool,
}

impl SoftView {
    /// Whether `id` may speak Raft to this node: a member of the latest
    /// configuration or of the committed one (a removal appended but not
    /// committed may still be rolled back), or this node has no
    /// configuration yet (a joining node must hear its leader).
    pub(crate) fn admits(&self, id: u64) -> bool {
        let has = |c: &ConfState| {
            c.voters.contains(&id) || c.voters_outgoing.contains(&id) || c.learners.contains(&id)
        };
        self.members().is_none_or(|_| {
            has(&self.conf) || has(&self.committed_conf) || self.departing.contains(&id)
        })
    }

    /// Every member of the latest and the committed configuration; `None`
    /// when there is none (see [`SoftView::admits`]).
    pub(crate) fn members(&self) -> Option<std::collections::BTreeSet<u64>> {
        let mut m = self.conf.members();
        m.extend(self.committed_conf.members());
        (!m.is_empty()).then_some(m)
    }
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
            departing: Vec::new(),
            removed: false,
            recovering: false,
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
    /// The origin of the clock given to the core (`RawNode::set_now`) and
    /// of the tick count: ticks are counted from elapsed time on it.
    pub clock_origin: std::time::Instant,
    /// Ticks given to the core so far.
    pub ticks_done: u64,
    /// Most ticks given at once after a stall (see [`Node::tick_due`]).
    pub ticks_caught_up_max: u64,
    /// Reads queued this turn, sharing one `read_index` call.
    pub read_batch: Vec<oneshot::Sender<Result<Index, Status>>>,
    /// Read batches waiting for their ReadState, by context.
    pub reads: BTreeMap<u64, Vec<oneshot::Sender<Result<Index, Status>>>>,
    pub next_read_ctx: u64,
    pub role: Role,
    pub leader: Option<u64>,
    /// The term and vote of the last hard state known durable.
    pub synced_term_vote: (Term, Option<u64>),
    /// Where the node records that it was removed (see [`REMOVED_FILE`]).
    pub data_dir: std::path::PathBuf,
    /// The removal was logged, recorded and answered.
    pub removal_handled: bool,
    /// `<data_dir>/recovering.toml` exists: removed once the core is no
    /// longer recovering (see `startup`).
    pub recovering_marked: bool,
    /// When a follower's lost data was last logged, by follower.
    pub loss_logged: BTreeMap<u64, tokio::time::Instant>,
}

/// The file in the data dir that records that the node was removed from
/// the cluster (one line saying how it learned it); a restart reads it and
/// stays removed.
pub(crate) const REMOVED_FILE: &str = "removed";

impl Node {
    /// Drives the node until `shutdown` resolves or a fatal error.
    pub(crate) async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        // The interval only wakes the loop; how many ticks are due is
        // counted from the clock (`tick_due`), so a stall is not lost.
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        self.publish();
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = ticker.tick() => self.tick_due(),
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
            self.check_removed("its log holds a committed configuration without it");
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
                // A `not-member` refusal is logged and counted by the
                // transport but not acted on: a follower that missed the
                // entry adding us refuses us the same way, and taking its
                // word would remove a legitimate member for good (see
                // `refused_as_non_member`). A removed node learns of its
                // removal from its own log instead (the leader keeps
                // replicating to a departing node until it holds the
                // removal and its commit).
            }
        }
    }

    /// The transport found `peer` down: if it is our leader, campaign soon.
    fn leader_down(&mut self, peer: u64) {
        self.clock();
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
            self.clock();
            if let Err(e) = self.raw.campaign() {
                tracing::debug!(node = self.id, error = %e, "no campaign after leader down");
            }
        }
    }

    /// Gives the core the time now on the monotonic clock. Called before
    /// every input, after the input was taken from its queue (see
    /// `RawNode::set_now`): the lease is checked against it.
    fn clock(&mut self) {
        self.raw.set_now(self.clock_origin.elapsed());
    }

    /// Gives the core the ticks that elapsed time calls for: one per
    /// `tick_interval` since `clock_origin`, minus those already given.
    /// Normally that is one; after the process was stalled (SIGSTOP, a
    /// paused VM, a starved CPU) it is every tick missed, capped at
    /// `ticks_caught_up_max` (twice the largest election timeout: enough
    /// for every timer to run out; the rest is dropped). So a follower
    /// never counts more ticks than time passed (its vote-refusal window,
    /// which the leader's lease relies on, lasts at least as long as it
    /// says), and a node back from a stall acts on the time it lost: a
    /// follower campaigns (pre-vote first), a leader runs its check-quorum
    /// and steps down if no majority answered meanwhile.
    fn tick_due(&mut self) {
        let elapsed = self.clock_origin.elapsed();
        let (give, done) = ticks_to_give(
            elapsed,
            self.tick_interval,
            self.ticks_done,
            self.ticks_caught_up_max,
        );
        if give > 1 {
            tracing::debug!(
                node = self.id,
                ticks = done - self.ticks_done,
                given = give,
                "ticks missed (stall): catching up"
            );
        }
        self.ticks_done = done;
        for _ in 0..give {
            self.clock();
            self.raw.tick();
        }
    }

    /// The transport reports that member `by` refused our messages because
    /// we are not a member of its configuration (`PeerEvent::RefusedUs`
    /// with reason `not-member`). The core takes it only from a voter of
    /// our configuration, and only when that configuration is not empty
    /// ([`RawNode::refused_as_non_member`]); then this node is removed.
    ///
    /// Known hazard, why the driver does not call it yet: a follower that
    /// missed the entry adding us refuses us as a non-member too (its
    /// configuration is older), and is a voter of ours: taking its refusal
    /// removes a legitimate member. The fix to make before wiring it: the
    /// refusal carries the refuser's commit index, taken only if it is past
    /// the index of our latest configuration.
    #[allow(dead_code)]
    pub(crate) fn refused_as_non_member(&mut self, by: u64) {
        if self.raw.refused_as_non_member(by) {
            self.check_removed(&format!("node {by} refused it as a non-member"));
        } else {
            tracing::debug!(node = self.id, by, "refusal as a non-member ignored");
        }
    }

    /// Once the core says this node was removed: log it, record it in the
    /// data dir, answer everything waiting.
    fn check_removed(&mut self, how: &str) {
        if self.removal_handled || !self.raw.is_removed() {
            return;
        }
        self.removal_handled = true;
        crate::observe::metrics::set_removed(self.id, true);
        tracing::warn!(
            node = self.id,
            how,
            "this node was removed from the cluster: it takes part in nothing from now \
             on and answers clients FAILED_PRECONDITION; stop it, or wipe its data dir and \
             add it back as a learner"
        );
        let path = self.data_dir.join(REMOVED_FILE);
        let line = format!("node {} was removed from the cluster: {how}\n", self.id);
        if let Err(e) = crate::durable::write(&path, line.as_bytes()) {
            tracing::error!(node = self.id, path = %path.display(), error = %e,
                "could not record the removal; after a restart the node may not know it");
        }
        // Committed entries still apply and answer their waiters; the
        // others (a removed leader's, already failed when it stepped down)
        // may or may not apply.
        let commit = self.raw.status().commit;
        self.waiters.fail_above(
            commit,
            &unavailable(
                "this node was removed before the entry committed; it may or may not apply: \
                 retry elsewhere with the same client id and seq",
            ),
        );
        self.fail_reads(&removed_status(self.id));
    }

    fn step(&mut self, m: Message) -> Result<(), ServerError> {
        let member = self.soft_tx.borrow().admits(m.from);
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
        self.clock();
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
        self.after_recovery(st.recovering, st.commit);
        self.report_follower_losses();
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
                departing: st.departing.clone(),
                removed: st.removed,
                recovering: st.recovering,
            };
            let changed = v.role != new.role
                || v.leader != new.leader
                || v.term != new.term
                || v.commit != new.commit
                || v.last_index != new.last_index
                || v.snapshot_index != new.snapshot_index
                || v.conf != new.conf
                || v.committed_conf != new.committed_conf
                || v.departing != new.departing
                || v.removed != new.removed
                || v.recovering != new.recovering;
            *v = new;
            changed
        });
    }

    /// Once the core is no longer recovering (and the Readies that caught
    /// it up are durable: this runs after them), the marker goes.
    fn after_recovery(&mut self, recovering: bool, commit: Index) {
        if !self.recovering_marked || recovering {
            return;
        }
        match crate::startup::LostData::clear(&self.data_dir) {
            Ok(()) => {
                self.recovering_marked = false;
                tracing::info!(
                    node = self.id,
                    commit,
                    "caught up with the leader: no longer recovering (votes and campaigns again)"
                );
            }
            Err(e) => tracing::warn!(node = self.id, error = %e,
                "cannot remove the recovering marker; retrying"),
        }
    }

    /// Logs (rate-limited, per follower) and counts the followers the
    /// core found to have lost data.
    fn report_follower_losses(&mut self) {
        let every = Duration::from_millis(crate::limits::FOLLOWER_LOSS_LOG_INTERVAL_MS);
        for loss in self.raw.take_follower_losses() {
            crate::observe::metrics::follower_lost_data(self.id, loss.id);
            let now = tokio::time::Instant::now();
            let due = self
                .loss_logged
                .get(&loss.id)
                .is_none_or(|t| now.duration_since(*t) >= every);
            if due {
                self.loss_logged.insert(loss.id, now);
                let what = if loss.follower_next == 0 {
                    "holds no log at all (an empty data dir)".to_string()
                } else {
                    format!("its log ends before index {}", loss.follower_next)
                };
                tracing::error!(
                    node = self.id,
                    follower = loss.id,
                    term = loss.term,
                    match_index = loss.match_index,
                    rejected = loss.rejected,
                    "follower {} lost data it had acknowledged up to index {}: {what}; \
                     repairing it from the leader's log or a snapshot (it does not count \
                     for commit until it acknowledges again)",
                    loss.id,
                    loss.match_index
                );
            }
        }
    }

    fn handle_request(&mut self, r: NodeRequest) -> Result<(), ServerError> {
        self.clock();
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
                    _ if self.raw.is_removed() => Err(removed_status(self.id)),
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
            // The learner must catch up (or be started) first.
            ProposeError::LearnerBehind(lag) => Status::failed_precondition(lag.to_string()),
            ProposeError::Removed { id } => removed_status(id),
        }
    }

    fn flush_reads(&mut self) {
        if self.read_batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.read_batch);
        if self.raw.is_removed() {
            let st = removed_status(self.id);
            for tx in batch {
                let _ = tx.send(Err(st.clone()));
            }
            return;
        }
        if self.raw.status().role != Role::Leader {
            let st = self.hint(self.leader);
            for tx in batch {
                let _ = tx.send(Err(st.clone()));
            }
            return;
        }
        self.next_read_ctx += 1;
        let ctx = self.next_read_ctx;
        // Read after every request of the batch was taken from the queue.
        self.clock();
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

/// What every client call to a removed node gets.
pub(crate) fn removed_status(id: u64) -> Status {
    let mut st = Status::failed_precondition(format!(
        "this node was removed from the cluster (id {id}); it serves nothing: ask another \
         node; stop this one, or wipe its data dir and add it back as a learner"
    ));
    st.metadata_mut().insert(
        proto::kv::ERROR_METADATA,
        tonic::metadata::MetadataValue::from_static(proto::kv::NODE_REMOVED),
    );
    st
}

/// Whether the data dir records that this node was removed, and how.
pub(crate) fn removed_record(dir: &std::path::Path) -> Result<Option<String>, ServerError> {
    let path = dir.join(REMOVED_FILE);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::io(&path, e)),
    }
}

fn storage(e: wal::Error) -> ServerError {
    ServerError::Storage(e.to_string())
}

/// Opens the WAL and, on a first start of a bootstrapping node, records the
/// initial configuration as a snapshot at index 0.
/// Opens the WAL in `dir`; with `voters`, a fresh WAL gets a new cluster's
/// initial configuration (the snapshot at index 0).
pub(crate) fn open_wal(
    dir: &std::path::Path,
    voters: Option<Vec<u64>>,
    segment_size_max: u64,
) -> Result<(Wal, wal::RecoveryReport), ServerError> {
    let options = wal::Options {
        segment_size_max,
        ..wal::Options::default()
    };
    let (mut wal, report) = Wal::open(dir, options).map_err(storage)?;
    let fresh = LogStore::last_index(&wal) == 0
        && wal.hard_state().term == 0
        && wal.snapshot_meta().conf == ConfState::default();
    if let (true, Some(voters)) = (fresh, voters) {
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
    Ok((wal, report))
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
/// How many ticks to give the core now, and how many count as given after
/// that: one per `interval` of `elapsed` time, minus the `done` ones, at
/// most `cap` at once (the rest are skipped, never owed). Never more than
/// `elapsed` calls for.
fn ticks_to_give(elapsed: Duration, interval: Duration, done: u64, cap: u64) -> (u64, u64) {
    let due = u64::try_from(elapsed.as_nanos() / interval.as_nanos().max(1)).unwrap_or(u64::MAX);
    let missed = due.saturating_sub(done);
    (missed.min(cap), done.max(due))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_elapsed_time_and_a_stall_is_caught_up_to_a_cap() {
        let ms = Duration::from_millis;
        // Woken on time: one tick.
        assert_eq!(ticks_to_give(ms(100), ms(50), 1, 40), (1, 2));
        // Woken early (nothing due yet): none.
        assert_eq!(ticks_to_give(ms(149), ms(50), 2, 40), (0, 2));
        // After a 1 s stall: the 20 ticks it missed.
        assert_eq!(ticks_to_give(ms(1100), ms(50), 2, 40), (20, 22));
        // After a 10 s stall: at most the cap, and the rest is not owed.
        assert_eq!(ticks_to_give(ms(10_100), ms(50), 2, 40), (40, 202));
        assert_eq!(ticks_to_give(ms(10_150), ms(50), 202, 40), (1, 203));
        // Never more ticks than time passed.
        for t in 0..2000 {
            let (give, done) = ticks_to_give(ms(t), ms(50), 0, u64::MAX);
            assert!(give * 50 <= t && done * 50 <= t, "{t} ms: {give} ticks");
        }
    }

    /// The driver of node 3 of {1,2,3} on a fresh data dir, with nothing
    /// around it (its transport never connects: nothing is sent here).
    fn driver(dir: &std::path::Path) -> Node {
        for sub in ["wal", "kv"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let (wal, _) = open_wal(
            &dir.join("wal"),
            Some(vec![1, 2, 3]),
            wal::limits::SEGMENT_SIZE_DEFAULT,
        )
        .unwrap();
        let raw = RawNode::new(raft::Config::new(3), wal).unwrap();
        let peers = (1..=3)
            .map(|i| (i, format!("127.0.0.1:{}", 1000 + i)))
            .collect();
        let book = AddrBook::open(dir, &peers, (3, "127.0.0.1:1003", "127.0.0.1:2003")).unwrap();
        let engine = bitcask::Bitcask::open(dir.join("kv"), Default::default()).unwrap();
        let sm = kv::StateMachine::open(Arc::new(engine)).unwrap();
        let (_stop_tx, stop_rx) = watch::channel(false);
        let (events_tx, events_rx) = mpsc::channel(4);
        let local = Arc::new(crate::transport::handshake::Local::new(
            crate::identity::Identity {
                cluster_id: 1,
                node_id: 3,
                incarnation: 1,
            },
            dir.to_path_buf(),
            "127.0.0.1:2003".into(),
            "127.0.0.1:1003".into(),
            None,
            false,
        ));
        let (_node_tx, requests) = mpsc::channel(4);
        let (_peer_tx, peer_rx) = mpsc::channel(4);
        let (apply_tx, _apply_rx) = mpsc::channel(4);
        let (soft_tx, _) = watch::channel(SoftView::default());
        let (_applied_tx, applied_rx) = watch::channel(0);
        Node {
            id: 3,
            raw,
            requests,
            peer_rx,
            events_rx,
            campaign_at: None,
            leader_down_spacing: Duration::from_millis(10),
            transport: Transport::new(3, book.clone(), sm.reader(), stop_rx, events_tx, local),
            apply_tx,
            waiters: Arc::new(Waiters::default()),
            soft_tx,
            applied_rx,
            book,
            tick_interval: Duration::from_millis(10),
            clock_origin: std::time::Instant::now(),
            ticks_done: 0,
            ticks_caught_up_max: 100,
            read_batch: Vec::new(),
            reads: BTreeMap::new(),
            next_read_ctx: 0,
            role: Role::Follower,
            leader: None,
            synced_term_vote: (0, None),
            data_dir: dir.to_path_buf(),
            removal_handled: false,
            recovering_marked: false,
            loss_logged: Default::default(),
        }
    }

    #[test]
    fn a_refusal_by_a_voter_removes_the_node_and_it_answers_failed_precondition() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = driver(dir.path());
        // Not a voter of our configuration: ignored.
        node.refused_as_non_member(4);
        assert!(!node.raw.is_removed());
        assert_eq!(removed_record(dir.path()).unwrap(), None);

        node.refused_as_non_member(1);
        assert!(node.raw.is_removed());
        node.publish();
        assert!(node.soft_tx.borrow().removed);
        let record = removed_record(dir.path()).unwrap().unwrap();
        assert!(record.contains("node 1 refused it"), "{record}");

        // Client requests get FAILED_PRECONDITION naming the removal.
        let (tx, mut rx) = oneshot::channel();
        node.handle_request(NodeRequest::Propose {
            data: Bytes::from_static(b"x"),
            reply: tx,
        })
        .unwrap();
        let st = rx.try_recv().unwrap().unwrap_err();
        assert_eq!(st.code(), tonic::Code::FailedPrecondition);
        assert!(
            st.message()
                .contains("this node was removed from the cluster (id 3)"),
            "{}",
            st.message()
        );
        let (tx, mut rx) = oneshot::channel();
        node.handle_request(NodeRequest::Read { reply: tx })
            .unwrap();
        node.flush_reads();
        let st = rx.try_recv().unwrap().unwrap_err();
        assert_eq!(st.code(), tonic::Code::FailedPrecondition);

        // It never campaigns, however long it waits.
        for _ in 0..1000 {
            node.raw.tick();
        }
        assert_eq!(node.raw.status().role, Role::Follower);
        assert!(!node.raw.has_ready());
    }
}
