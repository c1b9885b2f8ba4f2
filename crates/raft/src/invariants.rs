//! Invariants of one node, checked after every input in debug builds and by
//! the simulator: a violation points at the step that broke it.

use std::collections::{BTreeMap, VecDeque};

use crate::limits;
use crate::node::{RawNode, RoleState};
use crate::storage::LogStore;
use crate::types::{Entry, Index, NodeId, Term};

/// What the checker remembers between checks.
#[derive(Debug, Default)]
pub(crate) struct InvariantState {
    last_term: Term,
    last_commit: Index,
    /// The leader this node saw in each recent term.
    leaders: BTreeMap<Term, NodeId>,
    /// (index, term, hash of data) of the most recent committed entries.
    committed: VecDeque<(Index, Term, u64)>,
}

/// FNV-1a over the entry's data; enough to notice a changed entry.
pub(crate) fn hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl InvariantState {
    /// Remembers committed entries handed out for applying.
    pub(crate) fn record_committed(&mut self, entries: &[Entry]) {
        for e in entries {
            self.committed.push_back((e.index, e.term, hash(&e.data)));
        }
        while self.committed.len() > limits::COMMITTED_HASH_WINDOW_MAX {
            self.committed.pop_front();
        }
    }
}

impl<S: LogStore> RawNode<S> {
    pub(crate) fn check_invariants_inner(&mut self) -> Result<(), String> {
        let log = &self.log;
        let last = log.last_index();
        let c = &mut self.checker;
        if self.term < c.last_term {
            return Err(format!(
                "term went back from {} to {}",
                c.last_term, self.term
            ));
        }
        c.last_term = self.term;
        if log.commit < c.last_commit {
            return Err(format!(
                "commit went back from {} to {}",
                c.last_commit, log.commit
            ));
        }
        c.last_commit = log.commit;
        if log.commit > last {
            return Err(format!("commit {} beyond last index {last}", log.commit));
        }
        if !(log.applied <= log.applying && log.applying <= log.commit) {
            return Err(format!(
                "applied {} <= applying {} <= commit {} does not hold",
                log.applied, log.applying, log.commit
            ));
        }
        if log.offset == 0 || log.offset > last + 1 || log.handed + 1 < log.offset {
            return Err(format!(
                "unstable offset {} handed {} last {last}",
                log.offset, log.handed
            ));
        }
        // Appends keep the unstable entries contiguous; checking both ends
        // keeps this check O(1) per step.
        if let (Some(first), Some(last_e)) = (log.unstable.first(), log.unstable.last()) {
            if first.index != log.offset
                || last_e.index != log.offset + log.unstable.len() as Index - 1
            {
                return Err(format!(
                    "unstable entries {}..={} at offset {}",
                    first.index, last_e.index, log.offset
                ));
            }
        }
        if let Some(leader) = self.leader {
            match c.leaders.get(&self.term) {
                Some(l) if *l != leader => {
                    return Err(format!(
                        "two leaders in term {}: {l} and {leader}",
                        self.term
                    ))
                }
                Some(_) => {}
                None => {
                    c.leaders.insert(self.term, leader);
                    while c.leaders.len() > limits::COMMITTED_HASH_WINDOW_MAX {
                        c.leaders.pop_first();
                    }
                }
            }
        }
        match &self.role {
            RoleState::Candidate(_) if self.vote != Some(self.id) => {
                return Err(format!("candidate voted for {:?}", self.vote));
            }
            RoleState::Leader(l) => {
                if self.leader != Some(self.id) {
                    return Err(format!("leader thinks the leader is {:?}", self.leader));
                }
                for (id, p) in &l.progress {
                    if p.match_index > last || p.next_index <= p.match_index {
                        return Err(format!(
                            "progress of {id}: match {} next {} last {last}",
                            p.match_index, p.next_index
                        ));
                    }
                }
            }
            _ => {}
        }
        let conf = self.membership.current();
        if !conf.voters_outgoing.is_empty() {
            return Err("joint configuration in use".into());
        }
        if !conf.voters.is_disjoint(&conf.learners) {
            return Err(format!("voter and learner at once: {conf:?}"));
        }
        let first = log.first_index();
        for (index, term, h) in c.committed.iter().copied() {
            if index < first || index > last {
                continue;
            }
            let got = log
                .entries(index, index + 1, u64::MAX)
                .map_err(|e| e.to_string())?;
            match got.first() {
                Some(e) if e.term == term && hash(&e.data) == h => {}
                Some(e) => {
                    return Err(format!(
                        "committed entry {index}@{term} changed to {}@{}",
                        e.index, e.term
                    ))
                }
                None => return Err(format!("committed entry {index} is missing")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::storage::{LogStore, MemStore};
    use crate::types::ConfState;
    use crate::{Config, RawNode};

    fn leader() -> RawNode<MemStore> {
        let store = MemStore::with_conf(ConfState::with_voters([1]));
        let config = Config {
            check_invariants: true,
            ..Config::new(1)
        };
        let mut n = RawNode::new(config, store).unwrap();
        n.campaign().unwrap();
        n.propose(Bytes::from("a")).unwrap();
        for _ in 0..3 {
            if !n.has_ready() {
                break;
            }
            let rd = n.ready();
            n.store_mut().append(&rd.entries).unwrap();
            if let Some(hs) = &rd.hard_state {
                n.store_mut().save_hard_state(hs).unwrap();
            }
            n.store_mut().sync().unwrap();
            n.advance(rd).unwrap();
        }
        assert_eq!(n.status().commit, 2);
        // The checker compares with what it saw last; debug builds check
        // after every step, release builds only here, so check once now.
        assert_eq!(n.check_invariants(), Ok(()));
        n
    }

    #[test]
    fn checker_rejects_known_unsafe_states() {
        let mut n = leader();
        assert_eq!(n.check_invariants(), Ok(()));

        let mut bad = leader();
        bad.log.commit = 9;
        let e = bad.check_invariants().unwrap_err();
        assert!(e.contains("beyond last index"), "{e}");

        let mut bad = leader();
        bad.log.commit = 1;
        bad.log.applying = 1;
        bad.log.applied = 1;
        let e = bad.check_invariants().unwrap_err();
        assert!(e.contains("commit went back"), "{e}");

        let mut bad = leader();
        bad.term -= 1;
        let e = bad.check_invariants().unwrap_err();
        assert!(e.contains("term went back"), "{e}");

        let mut bad = leader();
        bad.leader = Some(7);
        let e = bad.check_invariants().unwrap_err();
        assert!(
            e.contains("two leaders") || e.contains("leader thinks"),
            "{e}"
        );

        // A committed entry that changes under the node: rewrite entry 2 in
        // the store behind the core's back.
        let mut bad = leader();
        let mut changed = bad.store().entries(2, 3, u64::MAX).unwrap();
        changed[0].data = Bytes::from("b");
        bad.store_mut().append(&changed).unwrap();
        let e = bad.check_invariants().unwrap_err();
        assert!(e.contains("committed entry 2"), "{e}");

        let mut bad = leader();
        bad.membership = crate::membership::Membership::new(
            0,
            ConfState {
                voters_outgoing: [1].into_iter().collect(),
                ..ConfState::with_voters([1])
            },
        );
        assert!(bad.check_invariants().is_err());
    }
}
