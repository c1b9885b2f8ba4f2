//! The client session table: per client id, the last sequence number and
//! its response, and when the session was last used (a log index).
//!
//! Expiry is by log index only, so every replica drops the same sessions at
//! the same entry: a session whose last use is more than
//! `idle_entries_max` entries behind the entry being applied is dropped
//! before that entry is applied; registering a session when
//! `sessions_max` are live first evicts the least recently used one (the
//! smallest last-used index, ties broken by the smaller client id).

use std::collections::{BTreeMap, BTreeSet};

use crate::limits;
use raft::Index;

/// The session bounds. Part of the replicated semantics: every replica of a
/// cluster must use the same values (see [`limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most live sessions.
    pub sessions_max: usize,
    /// A session unused for more than this many entries is dropped.
    pub idle_entries_max: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            sessions_max: limits::SESSIONS_MAX,
            idle_entries_max: limits::SESSION_IDLE_ENTRIES_MAX,
        }
    }
}

/// What the state machine keeps in memory per session. The last response
/// lives only in the engine (read back for the rare duplicate), so memory
/// per session is small and bounded whatever the responses' sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionMeta {
    pub last_seq: u64,
    pub last_index: Index,
}

/// The live sessions, with an index by last use for expiry and eviction.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: BTreeMap<u64, SessionMeta>,
    by_last_use: BTreeSet<(Index, u64)>,
}

impl Sessions {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, client_id: u64) -> Option<SessionMeta> {
        self.by_id.get(&client_id).copied()
    }

    /// Inserts or replaces a session.
    pub(crate) fn insert(&mut self, client_id: u64, record: SessionMeta) {
        if let Some(old) = self.by_id.get(&client_id) {
            self.by_last_use.remove(&(old.last_index, client_id));
        }
        self.by_last_use.insert((record.last_index, client_id));
        self.by_id.insert(client_id, record);
    }

    pub(crate) fn remove(&mut self, client_id: u64) -> Option<SessionMeta> {
        let old = self.by_id.remove(&client_id)?;
        self.by_last_use.remove(&(old.last_index, client_id));
        Some(old)
    }

    /// Removes and returns the ids of sessions idle for more than
    /// `idle_entries_max` entries at `index`.
    pub(crate) fn expire(&mut self, index: Index, idle_entries_max: u64) -> Vec<u64> {
        let mut expired = Vec::new();
        while let Some(&(last, id)) = self.by_last_use.first() {
            if index.saturating_sub(last) <= idle_entries_max {
                break;
            }
            self.remove(id);
            expired.push(id);
        }
        expired
    }

    /// Removes and returns the least recently used session.
    pub(crate) fn evict_lru(&mut self) -> Option<u64> {
        let &(_, id) = self.by_last_use.first()?;
        self.remove(id);
        Some(id)
    }

    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
        self.by_last_use.clear();
    }

    /// Sessions in client id order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u64, &SessionMeta)> {
        self.by_id.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(last_index: Index) -> SessionMeta {
        SessionMeta {
            last_seq: 0,
            last_index,
        }
    }

    #[test]
    fn expire_drops_only_idle_sessions_in_order() {
        let mut s = Sessions::default();
        s.insert(1, rec(10));
        s.insert(2, rec(20));
        s.insert(3, rec(30));
        // At 25 with idle max 10: 10 is 15 behind (dropped), 20 is 5 behind.
        assert_eq!(s.expire(25, 10), vec![1]);
        assert_eq!(s.len(), 2);
        // Re-using session 2 at 40 moves it to the back.
        s.insert(2, rec(40));
        assert_eq!(s.expire(41, 10), vec![3]);
        assert_eq!(s.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn evict_lru_breaks_ties_by_id() {
        let mut s = Sessions::default();
        s.insert(9, rec(5));
        s.insert(4, rec(5));
        s.insert(1, rec(6));
        assert_eq!(s.evict_lru(), Some(4));
        assert_eq!(s.evict_lru(), Some(9));
        assert_eq!(s.evict_lru(), Some(1));
        assert_eq!(s.evict_lru(), None);
    }
}
