//! The messages nodes exchange. Plain Rust values: the server converts them
//! to its wire format (protobuf); the simulator delivers them as they are.
//!
//! Every message carries the sender's term (`term`). For `PreVote` it is the
//! term the sender *would* campaign in (its current term + 1), and a granted
//! `PreVoteResponse` echoes it; neither changes anybody's term.

use crate::types::{Entry, Index, NodeId, Snapshot, Term};

/// One Raft message from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// "Would you vote for me in `term`?" Sent before a real election when
    /// pre-vote is on; changes no state on either side.
    PreVote { last_index: Index, last_term: Term },
    /// The answer to a `PreVote`.
    PreVoteResponse { granted: bool },
    /// "Vote for me in `term`": the candidate's last log position is for the
    /// up-to-date check. `transfer` is set when the election was started by
    /// a leadership transfer (`TimeoutNow`): voters then grant even if they
    /// heard from a live leader recently.
    RequestVote {
        last_index: Index,
        last_term: Term,
        transfer: bool,
    },
    /// The answer to a `RequestVote`.
    RequestVoteResponse { granted: bool },
    /// Entries after `(prev_index, prev_term)` (possibly none), and the
    /// leader's commit index.
    AppendEntries {
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    },
    /// The answer to an `AppendEntries` or `InstallSnapshot`.
    ///
    /// On success (`reject == false`), `index` is the last index the
    /// follower now holds matching the leader (its match index).
    ///
    /// On rejection, `index` is the rejected `prev_index`, and the hints let
    /// the leader skip a whole conflicting term at once: `conflict_term` is
    /// the term of the follower's entry at `prev_index` (0 if it has none)
    /// and `conflict_index` is the first index the follower holds in that
    /// term (or its last index + 1 when it has no entry at `prev_index`).
    AppendEntriesResponse {
        reject: bool,
        index: Index,
        conflict_term: Term,
        conflict_index: Index,
    },
    /// The leader is alive. `commit` is a commit index that is safe for this
    /// follower (at most its match index). `round` numbers the heartbeat
    /// broadcast, for read confirmation and leases.
    Heartbeat { commit: Index, round: u64 },
    /// The answer to a `Heartbeat`, echoing its round.
    HeartbeatResponse { round: u64 },
    /// The leader's latest snapshot, for a follower whose next entry is
    /// compacted away. Answered by an `AppendEntriesResponse`.
    InstallSnapshot { snapshot: Snapshot },
    /// "Start an election now" (leadership transfer).
    TimeoutNow,
    /// A follower forwards a read request to the leader.
    ReadIndex { ctx: u64 },
    /// The leader's answer to a forwarded read: it is safe to serve the
    /// read `ctx` once the follower has applied `index`.
    ReadIndexResponse { ctx: u64, index: Index },
}

impl MessageBody {
    /// A short name, for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResponse { .. } => "PreVoteResponse",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::RequestVoteResponse { .. } => "RequestVoteResponse",
            MessageBody::AppendEntries { .. } => "AppendEntries",
            MessageBody::AppendEntriesResponse { .. } => "AppendEntriesResponse",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
        }
    }
}

/// A read that is now safe to serve: once the state machine has applied
/// `index`, a read answered from it is linearizable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's context given to `read_index`.
    pub ctx: u64,
    /// The commit index the read must wait for.
    pub index: Index,
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}→{} {} term={}",
            self.from,
            self.to,
            self.body.name(),
            self.term
        )?;
        match &self.body {
            MessageBody::PreVote {
                last_index,
                last_term,
            } => write!(f, " last={last_index}@{last_term}"),
            MessageBody::PreVoteResponse { granted } => {
                write!(f, " granted={granted}")
            }
            MessageBody::RequestVote {
                last_index,
                last_term,
                transfer,
            } => {
                write!(f, " last={last_index}@{last_term}")?;
                if *transfer {
                    write!(f, " transfer")?;
                }
                Ok(())
            }
            MessageBody::RequestVoteResponse { granted } => {
                write!(f, " granted={granted}")
            }
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                write!(f, " prev={prev_index}@{prev_term} commit={commit} [")?;
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        write!(f, " ")?;
                    }
                    write!(f, "{}@{}", e.index, e.term)?;
                }
                write!(f, "]")
            }
            MessageBody::AppendEntriesResponse {
                reject,
                index,
                conflict_term,
                conflict_index,
            } => {
                if *reject {
                    write!(
                        f,
                        " reject index={index} conflict={conflict_index}@{conflict_term}"
                    )
                } else {
                    write!(f, " match={index}")
                }
            }
            MessageBody::Heartbeat { commit, round } => {
                write!(f, " commit={commit} round={round}")
            }
            MessageBody::HeartbeatResponse { round } => {
                write!(f, " round={round}")
            }
            MessageBody::InstallSnapshot { snapshot } => write!(
                f,
                " {}@{} voters={:?} learners={:?}",
                snapshot.meta.index,
                snapshot.meta.term,
                snapshot.meta.conf.voters,
                snapshot.meta.conf.learners
            ),
            MessageBody::TimeoutNow => Ok(()),
            MessageBody::ReadIndex { ctx } => write!(f, " ctx={ctx}"),
            MessageBody::ReadIndexResponse { ctx, index } => {
                write!(f, " ctx={ctx} index={index}")
            }
        }
    }
}
