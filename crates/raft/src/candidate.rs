//! Pre-candidates and candidates: counting (pre-)votes (Figure 2, "Rules
//! for Servers: Candidates").

use std::collections::BTreeMap;

use crate::error::Result;
use crate::membership::quorum;
use crate::message::{Message, MessageBody};
use crate::node::{RawNode, RoleState};
use crate::storage::LogStore;
use crate::types::NodeId;

/// Votes received in this election: granted or refused, by voter.
pub(crate) type Votes = BTreeMap<NodeId, bool>;

impl<S: LogStore> RawNode<S> {
    pub(crate) fn step_candidate(&mut self, m: Message) -> Result<()> {
        let pre = matches!(self.role, RoleState::PreCandidate(_));
        match m.body {
            // "If AppendEntries RPC received from new leader: convert to
            // follower." (Its term is ours, so it won our term's election.)
            MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. } => {
                self.become_follower(m.term, Some(m.from));
                self.step_follower(m)
            }
            MessageBody::PreVoteResponse { granted } if pre => {
                // Granted responses carry our term + 1; refusals our term
                // (a higher one already made us a follower).
                if !granted || m.term == self.term + 1 {
                    self.record_vote(m.from, granted);
                }
                Ok(())
            }
            MessageBody::RequestVoteResponse { granted } if !pre => {
                self.record_vote(m.from, granted);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Counts a vote and acts on the outcome: "If votes received from
    /// majority of servers: become leader"; a majority of refusals ends the
    /// election (back to follower, wait for the next timeout).
    pub(crate) fn record_vote(&mut self, from: NodeId, granted: bool) {
        let conf = self.membership.current();
        if !conf.voters.contains(&from) {
            return;
        }
        let needed = quorum(conf.voters.len());
        let (pre, votes) = match &mut self.role {
            RoleState::PreCandidate(v) => (true, v),
            RoleState::Candidate(v) => (false, v),
            _ => return,
        };
        votes.entry(from).or_insert(granted);
        let yes = votes.values().filter(|g| **g).count();
        let no = votes.len() - yes;
        if yes >= needed {
            if pre {
                self.become_candidate(false);
            } else {
                self.become_leader();
            }
        } else if no >= needed {
            let term = self.term;
            self.become_follower(term, None);
        }
    }
}
