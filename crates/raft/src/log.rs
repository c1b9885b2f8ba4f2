//! The log as the core sees it: the store's durable entries followed by
//! entries not yet known to be durable ("unstable"), plus a snapshot
//! received from the leader that the caller has not installed yet.
//!
//! # Invariants
//!
//! - `unstable[i]` has index `offset + i`; everything below `offset` is in
//!   the store and synced (the caller advanced the Ready that carried it).
//! - `handed` is the last unstable index handed out in a Ready; entries
//!   above it go into the next Ready. `offset - 1 <= handed <= last_index`.
//! - With a `pending_snapshot`, `offset == snapshot.index + 1` and the store
//!   is not read until the snapshot is installed.
//! - `applied <= applying <= commit <= last_index`.

use crate::error::Result;
use crate::storage::{LogStore, StorageError};
use crate::types::{Entry, Index, Snapshot, Term};

pub(crate) struct RaftLog<S: LogStore> {
    pub(crate) store: S,
    /// A snapshot from the leader, to be installed by the caller.
    pub(crate) pending_snapshot: Option<Snapshot>,
    /// Whether `pending_snapshot` went out in a Ready already.
    pub(crate) snapshot_handed: bool,
    pub(crate) offset: Index,
    pub(crate) unstable: Vec<Entry>,
    pub(crate) handed: Index,
    pub(crate) commit: Index,
    /// Committed entries handed out for applying (not yet advanced).
    pub(crate) applying: Index,
    /// Entries the caller has applied (advanced).
    pub(crate) applied: Index,
}

impl<S: LogStore> RaftLog<S> {
    pub(crate) fn new(store: S, commit: Index, applied: Index) -> RaftLog<S> {
        let offset = store.last_index() + 1;
        RaftLog {
            store,
            pending_snapshot: None,
            snapshot_handed: false,
            offset,
            unstable: Vec::new(),
            handed: offset - 1,
            commit,
            applying: applied,
            applied,
        }
    }

    /// The index of the latest snapshot (everything up to it is compacted).
    pub(crate) fn snapshot_index(&self) -> Index {
        match &self.pending_snapshot {
            Some(s) => s.meta.index,
            None => self.store.first_index() - 1,
        }
    }

    pub(crate) fn first_index(&self) -> Index {
        self.snapshot_index() + 1
    }

    pub(crate) fn last_index(&self) -> Index {
        if let Some(e) = self.unstable.last() {
            return e.index;
        }
        match &self.pending_snapshot {
            Some(s) => s.meta.index,
            None => self.offset - 1,
        }
    }

    /// The last index known durable (the store holds it, synced). Only
    /// meaningful without a pending snapshot (the leader never has one).
    pub(crate) fn persisted_index(&self) -> Index {
        self.offset - 1
    }

    /// The term of the entry at `index`, or `None` if it is compacted away
    /// or beyond the log. Index 0 has term 0.
    pub(crate) fn term(&self, index: Index) -> Result<Option<Term>> {
        if index == 0 {
            return Ok(Some(0));
        }
        if index > self.last_index() {
            return Ok(None);
        }
        if index >= self.offset {
            return Ok(Some(self.unstable[(index - self.offset) as usize].term));
        }
        if let Some(s) = &self.pending_snapshot {
            return Ok((index == s.meta.index).then_some(s.meta.term));
        }
        match self.store.term(index) {
            Ok(t) => Ok(Some(t)),
            Err(StorageError::Compacted { .. }) | Err(StorageError::Unavailable { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn last_term(&self) -> Result<Term> {
        Ok(self.term(self.last_index())?.unwrap_or(0))
    }

    pub(crate) fn match_term(&self, index: Index, term: Term) -> Result<bool> {
        Ok(self.term(index)? == Some(term))
    }

    /// Whether a log ending at `(last_index, last_term)` is at least as
    /// up-to-date as ours (§5.4.1): a later last term wins; with equal last
    /// terms the longer log wins.
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> Result<bool> {
        let my_term = self.last_term()?;
        Ok(last_term > my_term || (last_term == my_term && last_index >= self.last_index()))
    }

    /// Entries `lo..hi`, at most `max_bytes` of them (at least one).
    ///
    /// # Errors
    /// `StorageError::Compacted` if `lo` is compacted away.
    pub(crate) fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>> {
        let hi = hi.min(self.last_index() + 1);
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo < self.first_index() {
            return Err(StorageError::Compacted {
                index: lo,
                first_index: self.first_index(),
            }
            .into());
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        if lo < self.offset {
            out = self.store.entries(lo, hi.min(self.offset), max_bytes)?;
            bytes = out.iter().map(Entry::size).sum();
            let got_all = out.last().map(|e| e.index + 1) == Some(hi.min(self.offset));
            if !got_all || hi <= self.offset {
                return Ok(out);
            }
        }
        let from = lo.max(self.offset);
        for e in &self.unstable[(from - self.offset) as usize..(hi - self.offset) as usize] {
            bytes += e.size();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    /// Appends `entries` (contiguous; the first at most `last_index + 1`),
    /// replacing whatever the log holds from the first one on.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let at = first.index;
        debug_assert!(at <= self.last_index() + 1 && at > self.commit);
        if at >= self.offset + self.unstable.len() as Index {
            // Plain append at the end.
        } else if at <= self.offset {
            // Replaces part of the stable log: the store will be overwritten
            // from `at` when the caller appends these entries.
            self.offset = at;
            self.unstable.clear();
        } else {
            self.unstable.truncate((at - self.offset) as usize);
        }
        self.unstable.extend_from_slice(entries);
        self.handed = self.handed.min(at - 1).max(self.offset - 1);
    }

    /// The follower's log-matching step: if our log holds `(prev_index,
    /// prev_term)`, appends the new part of `entries` (dropping a
    /// conflicting suffix), advances the commit index to
    /// `min(commit, last new index)` and returns the last new index, and the
    /// entries actually written (from the first conflict on).
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        commit: Index,
        entries: &[Entry],
    ) -> Result<Option<(Index, Vec<Entry>)>> {
        if !self.match_term(prev_index, prev_term)? {
            return Ok(None);
        }
        let last_new = prev_index + entries.len() as Index;
        let mut written = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if !self.match_term(e.index, e.term)? {
                if e.index <= self.commit {
                    return Err(crate::Error::Storage(StorageError::Invalid(format!(
                        "entry {}@{} conflicts with committed entry (commit {})",
                        e.index, e.term, self.commit
                    ))));
                }
                written = entries[i..].to_vec();
                self.append(&written);
                break;
            }
        }
        self.commit_to(commit.min(last_new));
        Ok(Some((last_new, written)))
    }

    pub(crate) fn commit_to(&mut self, index: Index) {
        if index > self.commit {
            debug_assert!(index <= self.last_index());
            self.commit = index.min(self.last_index());
        }
    }

    /// Resets the log to a snapshot from the leader.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        self.offset = index + 1;
        self.unstable.clear();
        self.handed = index;
        self.commit = index;
        self.pending_snapshot = Some(snapshot);
        self.snapshot_handed = false;
    }

    /// The caller made entries up to `(index, term)` durable.
    pub(crate) fn stable_to(&mut self, index: Index, term: Term) {
        if index < self.offset || index > self.last_index() {
            return;
        }
        if self.unstable[(index - self.offset) as usize].term != term {
            return;
        }
        self.unstable.drain(..(index + 1 - self.offset) as usize);
        self.offset = index + 1;
        self.handed = self.handed.max(index);
    }

    /// The caller installed the snapshot at `(index, term)`.
    pub(crate) fn snapshot_installed(&mut self, index: Index, term: Term) {
        if let Some(s) = &self.pending_snapshot {
            if s.meta.index == index && s.meta.term == term && self.snapshot_handed {
                self.pending_snapshot = None;
                self.snapshot_handed = false;
            }
        }
    }

    /// Unstable entries not yet handed out.
    pub(crate) fn entries_to_hand(&self) -> &[Entry] {
        let from = (self.handed + 1).max(self.offset);
        &self.unstable[(from - self.offset) as usize..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStore;
    use bytes::Bytes;

    fn ent(index: Index, term: Term) -> Entry {
        Entry {
            index,
            term,
            kind: crate::EntryKind::Normal,
            data: Bytes::new(),
        }
    }

    #[test]
    fn append_truncates_conflicting_suffix_and_stable_to_checks_term() {
        let mut log = RaftLog::new(MemStore::new(), 0, 0);
        log.append(&[ent(1, 1), ent(2, 1), ent(3, 1)]);
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.entries_to_hand().len(), 3);
        // Handed out, then written by the caller.
        log.handed = 3;
        log.store
            .append(&[ent(1, 1), ent(2, 1), ent(3, 1)])
            .unwrap();
        log.stable_to(3, 1);
        assert_eq!(log.offset, 4);
        assert_eq!(log.persisted_index(), 3);
        // A conflicting append into the stable part.
        let got = log.maybe_append(1, 1, 0, &[ent(2, 2)]).unwrap();
        assert_eq!(got, Some((2, vec![ent(2, 2)])));
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.term(2).unwrap(), Some(2));
        assert_eq!(log.term(3).unwrap(), None);
        assert_eq!(log.entries_to_hand(), &[ent(2, 2)]);
        // stable_to with a term that no longer matches does nothing.
        log.stable_to(2, 1);
        assert_eq!(log.offset, 2);
        // Log matching fails on a missing prev.
        assert_eq!(log.maybe_append(5, 1, 0, &[ent(6, 1)]).unwrap(), None);
        assert!(log.is_up_to_date(2, 2).unwrap());
        assert!(!log.is_up_to_date(9, 1).unwrap());
    }
}
