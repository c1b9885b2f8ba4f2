//! Followers: "Respond to RPCs from candidates and leaders" (Figure 2).
//! Also handles what any non-leader does with a leader's messages.

use crate::error::Result;
use crate::message::{Message, MessageBody, ReadState};
use crate::node::RawNode;
use crate::storage::LogStore;
use crate::types::{Entry, Index, NodeId, Snapshot, Term};

impl<S: LogStore> RawNode<S> {
    pub(crate) fn step_follower(&mut self, m: Message) -> Result<()> {
        match m.body {
            MessageBody::AppendEntries {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                if !well_formed(prev_index, prev_term, &entries, m.term) {
                    // A peer bug or a corrupted message: never let it into
                    // the log. The leader retries with a good one.
                    return Ok(());
                }
                self.heard_from_leader(m.from);
                self.removal.heard_leader_commit(commit);
                self.handle_append_entries(m.from, prev_index, prev_term, &entries, commit)
            }
            MessageBody::Heartbeat { commit, round } => {
                self.heard_from_leader(m.from);
                // The leader sends a commit index our log is known to match.
                self.log.commit_to(commit.min(self.log.last_index()));
                self.send(m.from, MessageBody::HeartbeatResponse { round });
                Ok(())
            }
            MessageBody::InstallSnapshot { snapshot } => {
                if snapshot.meta.term > m.term || snapshot.meta.conf.voters.is_empty() {
                    return Ok(());
                }
                self.heard_from_leader(m.from);
                self.handle_install_snapshot(m.from, snapshot)
            }
            MessageBody::TimeoutNow => {
                // Leadership transfer: campaign at once, skipping pre-vote;
                // voters grant despite having heard from the leader.
                if self.is_promotable() {
                    self.start_election(true);
                }
                Ok(())
            }
            MessageBody::ReadIndexResponse { ctx, index } => {
                if self.read_states.len() < crate::limits::READS_PENDING_MAX {
                    self.read_states.push(ReadState { ctx, index });
                }
                Ok(())
            }
            // A read forwarded to a node that is no longer leader is dropped;
            // the requester retries.
            _ => Ok(()),
        }
    }

    /// A node started from an empty store: no voters, no learners, no log.
    /// It must get the configuration from a snapshot before any entry.
    pub(crate) fn is_blank(&self) -> bool {
        let conf = self.membership.current();
        conf.voters.is_empty() && conf.learners.is_empty() && self.log.last_index() == 0
    }

    fn heard_from_leader(&mut self, leader: NodeId) {
        self.leader = Some(leader);
        self.election_elapsed = 0;
    }

    /// The AppendEntries receiver implementation (Figure 2), with conflict
    /// hints on rejection so that the leader can skip a whole term at once.
    fn handle_append_entries(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: &[Entry],
        commit: Index,
    ) -> Result<()> {
        if self.is_blank() {
            // We know no configuration yet: entries are changes relative to
            // a configuration we do not have. Ask for a snapshot first
            // (conflict index 0 means exactly that).
            self.send(
                from,
                MessageBody::AppendEntriesResponse {
                    reject: true,
                    index: prev_index,
                    conflict_term: 0,
                    conflict_index: 0,
                },
            );
            return Ok(());
        }
        if prev_index < self.log.commit {
            // Everything up to our commit index matches the leader already.
            let index = self.log.commit;
            self.send(from, accept(index));
            return Ok(());
        }
        match self
            .log
            .maybe_append(prev_index, prev_term, commit, entries)?
        {
            Some((last_new, written)) => {
                self.membership.on_append(&written);
                self.send(from, accept(last_new));
            }
            None => {
                // "Reply false if log doesn't contain an entry at prevLogIndex
                // whose term matches prevLogTerm."
                let (conflict_term, conflict_index) = self.conflict_hint(prev_index)?;
                self.send(
                    from,
                    MessageBody::AppendEntriesResponse {
                        reject: true,
                        index: prev_index,
                        conflict_term,
                        conflict_index,
                    },
                );
            }
        }
        Ok(())
    }

    /// For a rejected `prev_index`: the term we hold there and the first
    /// index of that term in our log, or (0, last index + 1) if our log is
    /// shorter.
    fn conflict_hint(&self, prev_index: Index) -> Result<(Term, Index)> {
        let last = self.log.last_index();
        if prev_index > last {
            return Ok((0, last + 1));
        }
        let Some(term) = self.log.term(prev_index)? else {
            return Ok((0, last + 1));
        };
        let floor = (self.log.commit + 1).max(self.log.first_index());
        let mut first = prev_index;
        while first > floor && self.log.term(first - 1)? == Some(term) {
            first -= 1;
        }
        Ok((term, first))
    }

    fn handle_install_snapshot(&mut self, from: NodeId, snapshot: Snapshot) -> Result<()> {
        let (index, term) = (snapshot.meta.index, snapshot.meta.term);
        if index <= self.log.commit && !(self.is_blank() && index == self.log.commit) {
            let commit = self.log.commit;
            self.send(from, accept(commit));
            return Ok(());
        }
        if self.log.match_term(index, term)? && !self.is_blank() {
            // We hold the snapshot's last entry: just commit up to it.
            self.log.commit_to(index);
        } else {
            self.membership.restore(index, snapshot.meta.conf.clone());
            self.log.restore(snapshot);
        }
        // Sent after the Ready (with the snapshot to install) is handled.
        self.send(from, accept(index));
        Ok(())
    }
}

/// Entries that follow `prev_index` without holes, with terms that never
/// decrease, start at `prev_term` or later and are at most the leader's term.
fn well_formed(prev_index: Index, prev_term: Term, entries: &[Entry], term: Term) -> bool {
    let mut last_term = prev_term;
    for (i, e) in entries.iter().enumerate() {
        if e.index != prev_index + 1 + i as Index || e.term < last_term || e.term > term {
            return false;
        }
        last_term = e.term;
    }
    prev_term <= term
}

fn accept(index: Index) -> MessageBody {
    MessageBody::AppendEntriesResponse {
        reject: false,
        index,
        conflict_term: 0,
        conflict_index: 0,
    }
}
