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
//! Lease reads (`Config::lease_read`, which needs check-quorum): a majority
//! acknowledged a heartbeat round sent at tick t, and each of them ignores
//! vote requests for `election_timeout_ticks_min` ticks after hearing from
//! us, so no other leader can exist before t + min; the leader serves reads
//! without a round until t + min - `lease_drift_ticks`. After it sends a
//! `TimeoutNow` (which lets a voter bypass that rule), it stops using the
//! lease for the rest of its term. A restarted node refuses votes for
//! `election_timeout_ticks_min` ticks when leases are on.

use std::collections::VecDeque;

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
    /// Recent rounds and the tick each was sent at (for the lease).
    round_ticks: VecDeque<(u64, u64)>,
}

impl ReadQueue {
    /// Starts a new heartbeat round at `tick`; returns its number.
    pub(crate) fn new_round(&mut self, tick: u64) -> u64 {
        self.round += 1;
        self.want_round = false;
        self.round_ticks.push_back((self.round, tick));
        while self.round_ticks.len() > limits::READS_ROUNDS_REMEMBERED_MAX {
            self.round_ticks.pop_front();
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

    /// Whether the leader may serve a read from its lease now.
    fn lease_valid(&self) -> bool {
        if !self.config.lease_read {
            return false;
        }
        let Some(l) = self.leader_state() else {
            return false;
        };
        if l.timeout_now_sent || l.transferee.is_some() {
            return false;
        }
        let confirmed = self.quorum_round();
        let Some((_, sent)) = l.reads.round_ticks.iter().find(|(r, _)| *r == confirmed) else {
            return false;
        };
        let lease = self.config.election_timeout_ticks_min - self.config.lease_drift_ticks;
        self.ticks < sent + lease
    }
}
