//! The safety properties of Raft, checked across the whole simulated
//! cluster as it runs.
//!
//! [`Invariants`] is fed observations (a leader in a term, an entry
//! appended to a log, an entry committed, an entry applied) and keeps what
//! it needs to check each new observation against everything seen before,
//! by any node, at any time in the run:
//!
//! - **Election safety**: at most one leader per term, ever.
//! - **Log matching**: two log entries with the same index and term hold the
//!   same command and follow entries of the same term (by induction, their
//!   whole prefixes are equal).
//! - **Committed entries never change**: two nodes never commit different
//!   entries at one index (nor does one node, across crashes).
//! - **Leader completeness**: a new leader's log holds every entry committed
//!   before its term.
//! - **State-machine safety**: no two nodes apply different entries at one
//!   index.
//!
//! Entries are compared by (term, kind, 64-bit hash of the data).

use std::collections::BTreeMap;
use std::fmt;

use raft::{Entry, Index, NodeId, Term};

use crate::trace::Fnv;

/// An entry as the checkers compare it: its term and a hash of its kind
/// and data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryId {
    pub term: Term,
    pub hash: u64,
}

impl EntryId {
    /// The id of `entry`.
    pub fn of(entry: &Entry) -> EntryId {
        let mut h = Fnv::new();
        h.u64(u64::from(entry.kind.as_u8()));
        h.bytes(&entry.data);
        EntryId {
            term: entry.term,
            hash: h.finish(),
        }
    }
}

/// A broken safety property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which property (e.g. "election safety").
    pub property: &'static str,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)
    }
}

impl std::error::Error for Violation {}

fn violation(property: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { property, detail })
}

/// What the checkers remember of the run. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Invariants {
    /// The leader of each term.
    leaders: BTreeMap<Term, NodeId>,
    /// Every entry ever appended to a log: (index, term) → (hash, term of
    /// the entry before it, if known).
    appended: BTreeMap<(Index, Term), (u64, Option<Term>)>,
    /// Every committed entry, by index, with the first node that committed
    /// it and that node's term then (the term in which it became committed,
    /// or a later one).
    committed: BTreeMap<Index, (EntryId, NodeId, Term)>,
    /// Every applied entry, by index, with the first node that applied it.
    applied: BTreeMap<Index, (EntryId, NodeId)>,
}

impl Invariants {
    /// Nothing observed yet.
    pub fn new() -> Invariants {
        Invariants::default()
    }

    /// `node` is leader in `term`.
    ///
    /// # Errors
    /// Election safety: another node led `term`.
    pub fn observe_leader(&mut self, node: NodeId, term: Term) -> Result<(), Violation> {
        match self.leaders.get(&term) {
            Some(&other) if other != node => violation(
                "election safety",
                format!("nodes {other} and {node} were both leader in term {term}"),
            ),
            Some(_) => Ok(()),
            None => {
                self.leaders.insert(term, node);
                Ok(())
            }
        }
    }

    /// `node` appended `entry` to its log, right after an entry of term
    /// `prev_term` (`None` if unknown, e.g. compacted).
    ///
    /// # Errors
    /// Log matching: another log holds a different entry at this index and
    /// term, or one that follows an entry of another term.
    pub fn observe_appended(
        &mut self,
        node: NodeId,
        entry: &Entry,
        prev_term: Option<Term>,
    ) -> Result<(), Violation> {
        let id = EntryId::of(entry);
        let key = (entry.index, entry.term);
        match self.appended.get_mut(&key) {
            None => {
                self.appended.insert(key, (id.hash, prev_term));
                Ok(())
            }
            Some((hash, prev)) => {
                if *hash != id.hash {
                    return violation(
                        "log matching",
                        format!(
                            "node {node} appended an entry at index {} term {} that differs from \
                             one another log holds there",
                            entry.index, entry.term
                        ),
                    );
                }
                match (*prev, prev_term) {
                    (Some(a), Some(b)) if a != b => violation(
                        "log matching",
                        format!(
                            "node {node} holds entry {}@{} after an entry of term {b}; another log \
                             holds it after term {a}",
                            entry.index, entry.term
                        ),
                    ),
                    (None, Some(b)) => {
                        *prev = Some(b);
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// `node`, in term `term`, considers the entry `id` at `index`
    /// committed.
    ///
    /// # Errors
    /// Another entry was committed at `index` before.
    pub fn observe_committed(
        &mut self,
        node: NodeId,
        term: Term,
        index: Index,
        id: EntryId,
    ) -> Result<(), Violation> {
        match self.committed.get(&index) {
            None => {
                self.committed.insert(index, (id, node, term));
                Ok(())
            }
            Some((seen, by, _)) if *seen != id => violation(
                "committed entries never change",
                format!(
                    "node {node} committed term {} (hash {:016x}) at index {index}, node {by} \
                     committed term {} (hash {:016x}) there",
                    id.term, id.hash, seen.term, seen.hash
                ),
            ),
            Some(_) => Ok(()),
        }
    }

    /// `node` just became leader in `term`; `log(i)` gives the entry its
    /// log holds at index `i`, for `i` above `snapshot_index` (everything
    /// up to the snapshot is covered by it).
    ///
    /// # Errors
    /// Leader completeness: an entry committed before is missing or
    /// different in the new leader's log.
    pub fn check_leader_log(
        &self,
        node: NodeId,
        term: Term,
        snapshot_index: Index,
        log: impl Fn(Index) -> Option<EntryId>,
    ) -> Result<(), Violation> {
        for (&index, (id, by, seen_in)) in self.committed.range(snapshot_index + 1..) {
            // Leader completeness is about entries committed in an earlier
            // term. A node may become leader of a term long after a later
            // term committed more (its vote grants were held up, e.g. while
            // its process was stalled); it needs only what was committed
            // before its term.
            if id.term >= term || *seen_in >= term {
                continue;
            }
            match log(index) {
                Some(have) if have == *id => {}
                Some(have) => {
                    return violation(
                        "leader completeness",
                        format!(
                            "node {node}, leader of term {term}, holds term {} at index {index} \
                             where node {by} committed an entry of term {}",
                            have.term, id.term
                        ),
                    )
                }
                None => {
                    return violation(
                        "leader completeness",
                        format!(
                            "node {node}, leader of term {term}, lacks index {index} which node \
                             {by} committed in term {}",
                            id.term
                        ),
                    )
                }
            }
        }
        Ok(())
    }

    /// `node` applied the entry `id` at `index` to its state machine.
    ///
    /// # Errors
    /// State-machine safety: another node applied a different entry there.
    pub fn observe_applied(
        &mut self,
        node: NodeId,
        index: Index,
        id: EntryId,
    ) -> Result<(), Violation> {
        match self.applied.get(&index) {
            None => {
                self.applied.insert(index, (id, node));
                Ok(())
            }
            Some((seen, by)) if *seen != id => violation(
                "state-machine safety",
                format!(
                    "node {node} applied term {} (hash {:016x}) at index {index}, node {by} \
                     applied term {} (hash {:016x}) there",
                    id.term, id.hash, seen.term, seen.hash
                ),
            ),
            Some(_) => Ok(()),
        }
    }

    /// How many distinct terms had a leader.
    pub fn leader_terms(&self) -> usize {
        self.leaders.len()
    }

    /// The highest index known committed.
    pub fn committed_max(&self) -> Index {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raft::EntryKind;

    use super::*;

    fn entry(index: Index, term: Term, data: &'static str) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: Bytes::from_static(data.as_bytes()),
        }
    }

    #[test]
    fn two_leaders_in_one_term_are_rejected() {
        let mut inv = Invariants::new();
        inv.observe_leader(1, 5).unwrap();
        inv.observe_leader(1, 5).unwrap();
        inv.observe_leader(2, 6).unwrap();
        let v = inv.observe_leader(3, 5).unwrap_err();
        assert_eq!(v.property, "election safety");
        assert!(v.detail.contains("term 5"), "{v}");
    }

    #[test]
    fn different_entries_at_one_index_and_term_are_rejected() {
        let mut inv = Invariants::new();
        inv.observe_appended(1, &entry(3, 2, "a"), Some(1)).unwrap();
        inv.observe_appended(2, &entry(3, 2, "a"), Some(1)).unwrap();
        // Same index, other term: fine (an uncommitted entry overwritten).
        inv.observe_appended(3, &entry(3, 3, "b"), Some(1)).unwrap();
        let v = inv
            .observe_appended(3, &entry(3, 2, "x"), Some(1))
            .unwrap_err();
        assert_eq!(v.property, "log matching");
    }

    #[test]
    fn same_entry_after_different_prefix_is_rejected() {
        let mut inv = Invariants::new();
        inv.observe_appended(1, &entry(4, 2, "a"), Some(2)).unwrap();
        inv.observe_appended(2, &entry(4, 2, "a"), None).unwrap();
        let v = inv
            .observe_appended(3, &entry(4, 2, "a"), Some(1))
            .unwrap_err();
        assert_eq!(v.property, "log matching");
    }

    #[test]
    fn divergent_committed_entries_are_rejected() {
        let mut inv = Invariants::new();
        let a = EntryId::of(&entry(7, 2, "a"));
        let b = EntryId::of(&entry(7, 2, "b"));
        inv.observe_committed(1, 2, 7, a).unwrap();
        inv.observe_committed(2, 2, 7, a).unwrap();
        let v = inv.observe_committed(3, 2, 7, b).unwrap_err();
        assert_eq!(v.property, "committed entries never change");
        assert!(v.detail.contains("index 7"), "{v}");
    }

    #[test]
    fn leader_missing_a_committed_entry_is_rejected() {
        let mut inv = Invariants::new();
        for i in 1..=5 {
            inv.observe_committed(1, 1, i, EntryId::of(&entry(i, 1, "x")))
                .unwrap();
        }
        let full = |i: Index| (i <= 5).then(|| EntryId::of(&entry(i, 1, "x")));
        inv.check_leader_log(2, 2, 0, full).unwrap();
        // Compacted entries are covered by the snapshot.
        let compacted = |i: Index| (3..=5).contains(&i).then(|| EntryId::of(&entry(i, 1, "x")));
        inv.check_leader_log(2, 2, 2, compacted).unwrap();
        // A log that stops at 4.
        let short = |i: Index| (i <= 4).then(|| EntryId::of(&entry(i, 1, "x")));
        let v = inv.check_leader_log(2, 2, 0, short).unwrap_err();
        assert_eq!(v.property, "leader completeness");
        assert!(v.detail.contains("lacks index 5"), "{v}");
        // A log with another entry at 3.
        let other =
            |i: Index| (i <= 5).then(|| EntryId::of(&entry(i, 1, if i == 3 { "y" } else { "x" })));
        assert!(inv.check_leader_log(2, 2, 0, other).is_err());
        // An entry of term 1 first seen committed in term 3 need not be in
        // the log of a leader of term 2 (elected on votes from before).
        inv.observe_committed(3, 3, 6, EntryId::of(&entry(6, 1, "x")))
            .unwrap();
        inv.check_leader_log(2, 2, 0, full).unwrap();
        assert!(inv.check_leader_log(4, 4, 0, full).is_err());
    }

    #[test]
    fn different_applied_entries_are_rejected() {
        let mut inv = Invariants::new();
        let a = EntryId::of(&entry(9, 3, "a"));
        let b = EntryId::of(&entry(9, 4, "a"));
        inv.observe_applied(1, 9, a).unwrap();
        inv.observe_applied(2, 9, a).unwrap();
        let v = inv.observe_applied(2, 9, b).unwrap_err();
        assert_eq!(v.property, "state-machine safety");
    }
}
