//! The rules every role follows when a message arrives (Figure 2, "Rules
//! for Servers: All Servers" and "RequestVote RPC"), before the message is
//! handed to the role's own handler.

use crate::candidate::Votes;
use crate::error::Result;
use crate::message::{Message, MessageBody};
use crate::node::{RawNode, RoleState};
use crate::storage::LogStore;
use crate::types::{NodeId, Term};

impl<S: LogStore> RawNode<S> {
    pub(crate) fn step_message(&mut self, m: Message) -> Result<()> {
        if m.to != self.id || m.from == self.id || m.from == 0 {
            return Ok(());
        }
        if m.term > self.term {
            if let MessageBody::PreVote { .. } | MessageBody::RequestVote { .. } = m.body {
                let transfer = matches!(m.body, MessageBody::RequestVote { transfer: true, .. });
                if self.in_lease() && !transfer {
                    // Leader stickiness: a node that heard from a live leader
                    // within the minimum election timeout ignores votes, so a
                    // node that cannot hear the leader cannot depose it.
                    return Ok(());
                }
            }
            match m.body {
                // A pre-vote changes no term; a granted pre-vote response
                // carries the term the pre-candidate would campaign in.
                MessageBody::PreVote { .. } => {}
                MessageBody::PreVoteResponse { granted: true } => {}
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    // "If RPC request or response contains term T >
                    // currentTerm: set currentTerm = T, convert to follower."
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                // "Reply false if term < currentTerm": the stale sender
                // learns the newer term from the reply and steps down.
                MessageBody::AppendEntries { prev_index, .. } => self.send(
                    m.from,
                    MessageBody::AppendEntriesResponse {
                        reject: true,
                        index: prev_index,
                        conflict_term: 0,
                        conflict_index: 0,
                    },
                ),
                MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => self.send(
                    m.from,
                    MessageBody::AppendEntriesResponse {
                        reject: true,
                        index: 0,
                        conflict_term: 0,
                        conflict_index: 0,
                    },
                ),
                MessageBody::PreVote { .. } => {
                    self.send(m.from, MessageBody::PreVoteResponse { granted: false })
                }
                MessageBody::RequestVote { .. } => {
                    self.send(m.from, MessageBody::RequestVoteResponse { granted: false })
                }
                _ => {}
            }
            return Ok(());
        }

        match m.body {
            MessageBody::PreVote {
                last_index,
                last_term,
            } => {
                // Grant a pre-vote for a later term whenever the candidate's
                // log is up to date; in our own term, as for a real vote.
                let can_vote = self.vote == Some(m.from)
                    || (self.vote.is_none() && self.leader.is_none())
                    || m.term > self.term;
                let granted = can_vote
                    && !self.is_blank()
                    && self.recovering.is_none()
                    && self.log.is_up_to_date(last_index, last_term)?;
                let term = if granted { m.term } else { self.term };
                self.send_with_term(m.from, term, MessageBody::PreVoteResponse { granted });
                Ok(())
            }
            // A blank node (`is_blank`: started with an empty store and
            // has received neither a snapshot nor an entry) grants no
            // pre-vote or vote. Its vote protects no log, and a blank node
            // is a voter in someone's configuration only if it lost its
            // disk while still a voter (or was promoted before receiving
            // anything). Then its vote lets a node with a stale log and
            // configuration win: seen with the chaos tester's
            // `--eager-wipe`, where node 1, still holding {1,2,3}, won
            // term 4 with the vote of the just-wiped node 3 while the
            // removal of 3 was uncommitted, and committed entries were
            // lost (testdata/wiped_voter_no_vote.txt). This costs no
            // liveness in normal operation: a learner is promoted by an
            // entry it then holds, so a caught-up voter is never blank.
            // A recovering node (`is_recovering`: it lost data it may have
            // acknowledged, or joined empty) grants none either until
            // repaired, for the same reason: its log may lack entries its
            // lost acknowledgements helped commit
            // (testdata/recovering_no_vote.txt).
            MessageBody::RequestVote {
                last_index,
                last_term,
                ..
            } => {
                // "If votedFor is null or candidateId, and candidate's log is
                // at least as up-to-date as receiver's log, grant vote."
                let can_vote =
                    self.vote == Some(m.from) || (self.vote.is_none() && self.leader.is_none());
                let granted = can_vote
                    && !self.is_blank()
                    && self.recovering.is_none()
                    && self.log.is_up_to_date(last_index, last_term)?;
                if granted {
                    self.vote = Some(m.from);
                    self.election_elapsed = 0;
                }
                // Sent only once the vote is durable (persisted_messages).
                self.send(m.from, MessageBody::RequestVoteResponse { granted });
                Ok(())
            }
            _ => match self.role {
                RoleState::Follower => self.step_follower(m),
                RoleState::PreCandidate(_) | RoleState::Candidate(_) => self.step_candidate(m),
                RoleState::Leader(_) => self.step_leader(m),
            },
        }
    }

    /// Whether this node heard from a live leader within the minimum
    /// election timeout (or has just restarted with leases on).
    pub(crate) fn in_lease(&self) -> bool {
        self.votes_blocked_ticks > 0
            || (self.leader.is_some()
                && self.election_elapsed < self.config.election_timeout_ticks_min)
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = RoleState::Follower;
        self.leader = leader;
        self.reset_election_timer();
    }

    /// An election timeout elapsed (or `campaign` was called, or a
    /// `TimeoutNow` arrived with `transfer`): run a pre-vote round if
    /// configured, else a real election.
    pub(crate) fn start_election(&mut self, transfer: bool) {
        if self.config.pre_vote && !transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate(transfer);
        }
    }

    fn become_pre_candidate(&mut self) {
        self.role = RoleState::PreCandidate(Votes::default());
        self.leader = None;
        self.reset_election_timer();
        let (last_index, last_term) = self.last_position();
        let voters: Vec<NodeId> = self.membership.current().voters.iter().copied().collect();
        for id in voters {
            if id != self.id {
                self.send_with_term(
                    id,
                    self.term + 1,
                    MessageBody::PreVote {
                        last_index,
                        last_term,
                    },
                );
            }
        }
        self.record_vote(self.id, true);
    }

    /// "On conversion to candidate, start election: increment currentTerm,
    /// vote for self, reset election timer, send RequestVote RPCs to all
    /// other servers."
    pub(crate) fn become_candidate(&mut self, transfer: bool) {
        self.term += 1;
        self.vote = Some(self.id);
        self.role = RoleState::Candidate(Votes::default());
        self.leader = None;
        self.reset_election_timer();
        let (last_index, last_term) = self.last_position();
        let voters: Vec<NodeId> = self.membership.current().voters.iter().copied().collect();
        for id in voters {
            if id != self.id {
                self.send(
                    id,
                    MessageBody::RequestVote {
                        last_index,
                        last_term,
                        transfer,
                    },
                );
            }
        }
        self.record_vote(self.id, true);
    }

    pub(crate) fn last_position(&self) -> (u64, Term) {
        let last = self.log.last_index();
        // The last index is never compacted (it is the snapshot index at
        // worst), so its term is known.
        (last, self.log.term(last).ok().flatten().unwrap_or(0))
    }
}
