//! Linearizable reads: ReadIndex (§6.4 of the dissertation) and leases.
//!
//! ReadIndex on the leader: (1) the leader must have committed an entry of
//! its term (its no-op), so that its commit index is at least that of any
//! earlier leader — reads that arrive before that wait; (2) it notes its
//! commit index as the read index; (3) it confirms it is still the leader
//! with one heartbeat round that a majority acknowledges — all reads that
//! arrived since the previous round share the next one; (4) the read is
//! served once the state machine has applied the read index (the caller's
//! job, from the `ReadState`). A follower forwards the request to the leader
//! and gets the read index back.
//!
//! Lease reads (`Config::lease_read`, which needs check-quorum) skip the
//! round while the leader's lease holds. The lease is time on a monotonic
//! clock that the driver gives with `RawNode::set_now`, never a tick count:
//! a process that is stopped (SIGSTOP, a paused VM, a long stall, a starved
//! CPU) counts no ticks, so a lease in ticks would outlive the stall, and a
//! leader resumed after another leader took writes would answer from its
//! stale state.
//!
//! The rule. The leader records the clock reading when it *creates* each
//! heartbeat round (`t`, a lower bound of when it is sent). Once a majority
//! acknowledged a round created at `t`, it serves a read while
//! `now < t + Config::lease_duration()`, where `now` is the driver's clock
//! read after the read request arrived, and `lease_duration` is the minimum
//! election timeout in time (`election_timeout_ticks_min × tick_interval`)
//! minus `lease_drift_percent` of it (10 % by default) minus one tick.
//! Otherwise the read waits for a round of its own (ReadIndex), as without
//! leases.
//!
//! Why no other leader can exist meanwhile. Each voter of that majority
//! received the round at some real time `r ≥ t` and reset its election
//! timer; it ignores vote requests (`in_lease`) until it has counted
//! `election_timeout_ticks_min` ticks since then. The driver counts a tick
//! only once a `tick_interval` has passed on its clock and never counts
//! ahead of its clock (the server counts ticks from elapsed time, see
//! `server::node`), but the first tick may come right after the reset: the
//! window lasts at least `(min − 1) × tick_interval` on the voter's clock.
//! A stalled voter counts late, which only makes its window longer. Any new
//! leader needs a vote from one of that majority, so none exists before
//! `t + (min − 1) × tick_interval` in real time, up to the clocks' rate
//! errors: `lease_drift_percent` covers the voter's clock running fast and
//! the leader's running slow together (10 % allows about 5 % each; real
//! clocks are off by well under 0.1 %). A leader that stalls past its lease
//! sees `now` beyond it the moment it resumes (the clock kept running), so
//! its next read goes through a round, which a majority that moved on to
//! a new term refuses, and the leader steps down.
//!
//! Guards. The lease is used only if `set_now` was called within the last
//! tick (a driver that stops giving the clock cannot extend a lease with a
//! frozen reading). After the leader sends a `TimeoutNow` (which lets a
//! voter bypass the vote-refusal window) it stops using the lease for the
//! rest of its term. A restarted node refuses votes for
//! `election_timeout_ticks_min` ticks when leases are on (it may have
//! acknowledged a lease before it crashed). The leader-down shortcut
//! (`report_leader_down`) is ignored when leases are on.

use std::collections::VecDeque;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::limits;
use crate::membership::quorum;
use crate::message::{MessageBody, ReadState};
use crate::node::RawNode;
use crate::storage::LogStore;
use crate::types::{Index, NodeId};

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    ctx: u64,
    from: NodeId,
    index: Index,
    round: u64,
}

/// The leader's waiting reads and heartbeat rounds.
#[derive(Debug, Default)]
pub(crate) struct ReadQueue {
    /// Reads that arrived before the leader committed an entry of its term.
    waiting_commit: Vec<(u64, NodeId)>,
    /// Reads waiting for a majority to acknowledge `round`.
    pending: VecDeque<PendingRead>,
    /// The last heartbeat round sent.
    round: u64,
    /// Reads wait for a round not yet sent.
    want_round: bool,
    /// Recent rounds and the time (driver's clock) each was created at,
    /// for the lease.
    round_times: VecDeque<(u64, Duration)>,
}

impl ReadQueue {
    /// Starts a new heartbeat round, created at `now` on the driver's
    /// clock; returns its number.
    pub(crate) fn new_round(&mut self, now: Duration) -> u64 {
        self.round += 1;
        self.want_round = false;
        self.round_times.push_back((self.round, now));
        while self.round_times.len() > limits::READS_ROUNDS_REMEMBERED_MAX {
            self.round_times.pop_front();
        }
        self.round
    }

    fn len(&self) -> usize {
        self.waiting_commit.len() + self.pending.len()
    }
}

impl<S: LogStore> RawNode<S> {
    fn committed_in_term(&self) -> bool {
        self.log.term(self.log.commit).ok().flatten() == Some(self.term)
    }

    /// A read request on the leader, from a client of ours (`from == id`)
    /// or forwarded by a follower.
    pub(crate) fn leader_read(&mut self, ctx: u64, from: NodeId) -> Result<()> {
        let committed = self.committed_in_term();
        let lease = committed && self.lease_valid();
        let commit = self.log.commit;
        let Some(l) = self.leader_state_mut() else {
            return Err(Error::NotLeader { leader: None });
        };
        if l.reads.len() >= limits::READS_PENDING_MAX {
            return Err(Error::TooManyReads {
                max: limits::READS_PENDING_MAX,
            });
        }
        if !committed {
            l.reads.waiting_commit.push((ctx, from));
        } else if lease {
            self.answer_read(ctx, from, commit);
        } else {
            let round = l.reads.round + 1;
            l.reads.pending.push_back(PendingRead {
                ctx,
                from,
                index: commit,
                round,
            });
            l.reads.want_round = true;
        }
        Ok(())
    }

    fn answer_read(&mut self, ctx: u64, from: NodeId, index: Index) {
        if from == self.id {
            self.read_states.push(ReadState { ctx, index });
        } else {
            self.send(from, MessageBody::ReadIndexResponse { ctx, index });
        }
    }

    /// The leader committed more: reads waiting for its first commit in the
    /// term can now take the commit index and wait for a round.
    pub(crate) fn on_commit_in_term(&mut self) {
        if !self.committed_in_term() {
            return;
        }
        let commit = self.log.commit;
        let Some(l) = self.leader_state_mut() else {
            return;
        };
        if l.reads.waiting_commit.is_empty() {
            return;
        }
        let round = l.reads.round + 1;
        for (ctx, from) in std::mem::take(&mut l.reads.waiting_commit) {
            l.reads.pending.push_back(PendingRead {
                ctx,
                from,
                index: commit,
                round,
            });
        }
        l.reads.want_round = true;
    }

    pub(crate) fn read_round_wanted(&self) -> bool {
        self.leader_state().is_some_and(|l| l.reads.want_round)
    }

    /// Sends the heartbeat round that waiting reads need (called when a
    /// Ready is taken, so that all reads since the last one share it).
    pub(crate) fn flush_read_round(&mut self) {
        if self.read_round_wanted() {
            self.bcast_heartbeat();
        }
    }

    /// The latest round a majority of voters acknowledged (we acknowledge
    /// every round we send).
    fn quorum_round(&self) -> u64 {
        let Some(l) = self.leader_state() else {
            return 0;
        };
        let conf = self.membership.current();
        let mut rounds: Vec<u64> = conf
            .voters
            .iter()
            .map(|id| {
                if *id == self.id {
                    l.reads.round
                } else {
                    l.progress.get(id).map_or(0, |p| p.round_acked)
                }
            })
            .collect();
        if rounds.is_empty() {
            return 0;
        }
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        rounds[quorum(conf.voters.len()) - 1]
    }

    /// Answers the reads whose round a majority acknowledged.
    pub(crate) fn release_reads(&mut self) {
        let confirmed = self.quorum_round();
        let mut ready = Vec::new();
        if let Some(l) = self.leader_state_mut() {
            while l
                .reads
                .pending
                .front()
                .is_some_and(|r| r.round <= confirmed)
            {
                if let Some(r) = l.reads.pending.pop_front() {
                    ready.push(r);
                }
            }
        }
        for r in ready {
            self.answer_read(r.ctx, r.from, r.index);
        }
    }

    /// Whether the leader may serve a read from its lease now: the latest
    /// round a majority acknowledged was created less than
    /// `Config::lease_duration` ago on the driver's clock. Never decided by
    /// ticks: a stalled process counts no ticks.
    fn lease_valid(&self) -> bool {
        if !self.config.lease_read || self.ticks_since_clock > 1 {
            return false;
        }
        let Some(l) = self.leader_state() else {
            return false;
        };
        if l.timeout_now_sent || l.transferee.is_some() {
            return false;
        }
        let confirmed = self.quorum_round();
        let Some((_, sent)) = l.reads.round_times.iter().find(|(r, _)| *r == confirmed) else {
            return false;
        };
        self.now < *sent + self.config.lease_duration()
    }
}
