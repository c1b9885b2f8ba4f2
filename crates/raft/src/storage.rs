//! The log store: where a node keeps its Raft log, hard state and snapshot.
//!
//! The core reads the durable log through [`LogStore`]; the application that
//! drives the node writes to it while handling a `Ready` (append entries,
//! save the hard state, sync) and when it compacts the log behind a snapshot.
//! [`MemStore`] keeps everything in memory; the `wal` crate keeps it on disk.
//!
//! # The log a store holds
//!
//! A store holds the entries `first_index()..=last_index()` with no holes.
//! Everything at or below `snapshot_meta().index` has been compacted away;
//! `first_index() == snapshot_meta().index + 1` always. An empty store has
//! `first_index() == 1`, `last_index() == 0`.
//!
//! # To ensure correctness
//!
//! - `append` keeps the log contiguous: the first appended entry's index is
//!   at most `last_index() + 1` and above the snapshot index; entries from
//!   there on are replaced (a conflicting suffix is dropped).
//! - Nothing written is durable until `sync` returns `Ok`. A store that
//!   cannot make data durable returns an error, and the caller must stop the
//!   node: retrying an fsync after a failure is not safe.
//! - Writes are serialized: one caller at a time (`&mut self`).

use bytes::Bytes;

use crate::types::{ConfState, Entry, HardState, Index, Snapshot, SnapshotMeta, Term};

/// Errors a log store returns.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The requested index is at or below the snapshot: it was compacted away.
    #[error("log index {index} is compacted (first available index is {first_index})")]
    Compacted { index: Index, first_index: Index },
    /// The requested index is above the last index in the store.
    #[error("log index {index} is unavailable (last index is {last_index})")]
    Unavailable { index: Index, last_index: Index },
    /// The caller broke the contract (e.g. an append that would leave a hole).
    #[error("invalid log store call: {0}")]
    Invalid(String),
    /// The data on disk is damaged.
    #[error("corrupt log store: {0}")]
    Corrupt(String),
    /// An I/O error. After a failed write or sync the node must stop.
    #[error("log store I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A `Result` with a [`StorageError`].
pub type StorageResult<T> = std::result::Result<T, StorageError>;

/// A node's persistent Raft state: the log, the hard state and the latest
/// snapshot. See the module docs for the contract.
pub trait LogStore {
    /// The hard state and configuration the node starts from: the last saved
    /// hard state, and the configuration of the latest snapshot (the core
    /// replays configuration entries in the log after it).
    fn initial_state(&self) -> StorageResult<(HardState, ConfState)>;

    /// The first index still in the log (`snapshot index + 1`).
    fn first_index(&self) -> Index;

    /// The last index in the log, or the snapshot index if the log is empty.
    fn last_index(&self) -> Index;

    /// The term of the entry at `index`. The snapshot index is allowed (its
    /// term is the snapshot's), and so is 0 (term 0).
    ///
    /// # Errors
    /// `Compacted` below the snapshot index, `Unavailable` above the last.
    fn term(&self, index: Index) -> StorageResult<Term>;

    /// Entries `lo..hi` (`hi` exclusive), stopping early once their summed
    /// [`Entry::size`] exceeds `max_bytes` (at least one entry is returned
    /// when `lo < hi`).
    ///
    /// # Errors
    /// `Compacted` if `lo` is at or below the snapshot index, `Unavailable`
    /// if `hi > last_index() + 1`.
    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> StorageResult<Vec<Entry>>;

    /// The metadata of the latest snapshot (index 0 if there is none).
    fn snapshot_meta(&self) -> SnapshotMeta;

    /// The latest snapshot, with its data, for sending to a follower.
    ///
    /// # Errors
    /// Whatever reading the snapshot's data fails with.
    fn snapshot(&self) -> StorageResult<Snapshot>;

    /// Append `entries` (contiguous, ascending), replacing any existing
    /// entries from `entries[0].index` on. Not durable until [`sync`].
    ///
    /// # Errors
    /// `Invalid` if the append would leave a hole or rewrite the snapshot.
    ///
    /// [`sync`]: LogStore::sync
    fn append(&mut self, entries: &[Entry]) -> StorageResult<()>;

    /// Save the hard state. Not durable until [`sync`](LogStore::sync).
    fn save_hard_state(&mut self, hs: &HardState) -> StorageResult<()>;

    /// Make everything written so far durable.
    fn sync(&mut self) -> StorageResult<()>;

    /// Record a snapshot of the state machine at `meta.index` (which must be
    /// at most `last_index()` and at or above the current snapshot index)
    /// and drop the log entries up to and including it. Durable on return.
    fn compact(&mut self, meta: SnapshotMeta, data: Bytes) -> StorageResult<()>;

    /// Install a snapshot received from the leader: record it and drop the
    /// whole log, unless the log holds `meta.index` with `meta.term`, in
    /// which case only the entries up to `meta.index` are dropped. Durable on
    /// return.
    fn install_snapshot(&mut self, snapshot: Snapshot) -> StorageResult<()>;
}

/// A log store in memory, for tests and the simulator.
///
/// It models durability explicitly: writes land in the "written" state and
/// become durable on `sync`; [`MemStore::crash`] throws away everything not
/// synced, like a power cut.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    /// What a read sees: `entries[i]` has index `snapshot.meta.index + 1 + i`.
    entries: Vec<Entry>,
    hard_state: HardState,
    snapshot: Snapshot,
    /// The state as of the last sync.
    durable: Option<Box<Durable>>,
}

#[derive(Clone, Debug, Default)]
struct Durable {
    entries: Vec<Entry>,
    hard_state: HardState,
    snapshot: Snapshot,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// A store that starts from a snapshot carrying `conf`, the usual way to
    /// bootstrap a cluster's first configuration.
    pub fn with_conf(conf: ConfState) -> MemStore {
        let mut store = MemStore::default();
        store.snapshot.meta.conf = conf;
        store.durable = Some(Box::new(store.as_durable()));
        store
    }

    /// Drop everything that was not synced, as a crash would.
    pub fn crash(&mut self) {
        let d = self.durable.take().map(|d| *d).unwrap_or_default();
        self.entries = d.entries.clone();
        self.hard_state = d.hard_state;
        self.snapshot = d.snapshot.clone();
        self.durable = Some(Box::new(d));
    }

    /// Cuts the log (durable and not) after `index`, keeping the hard
    /// state: a damaged disk whose log lost its tail, possibly below the
    /// recorded commit index. For fault injection in tests and the
    /// simulator. An `index` below the snapshot keeps the snapshot only.
    pub fn truncate_log_after(&mut self, index: Index) {
        self.crash();
        let keep = index.saturating_sub(self.offset()) as usize;
        self.entries.truncate(keep);
        if let Some(d) = &mut self.durable {
            d.entries.truncate(keep);
        }
    }

    /// The last index that is durable (survives [`MemStore::crash`]).
    pub fn durable_last_index(&self) -> Index {
        match &self.durable {
            Some(d) => d.snapshot.meta.index + d.entries.len() as Index,
            None => 0,
        }
    }

    fn as_durable(&self) -> Durable {
        Durable {
            entries: self.entries.clone(),
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
        }
    }

    fn offset(&self) -> Index {
        self.snapshot.meta.index
    }
}

impl LogStore for MemStore {
    fn initial_state(&self) -> StorageResult<(HardState, ConfState)> {
        Ok((self.hard_state, self.snapshot.meta.conf.clone()))
    }

    fn first_index(&self) -> Index {
        self.offset() + 1
    }

    fn last_index(&self) -> Index {
        self.offset() + self.entries.len() as Index
    }

    fn term(&self, index: Index) -> StorageResult<Term> {
        let offset = self.offset();
        if index == offset {
            return Ok(self.snapshot.meta.term);
        }
        if index < offset {
            return Err(StorageError::Compacted {
                index,
                first_index: self.first_index(),
            });
        }
        match self.entries.get((index - offset - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(StorageError::Unavailable {
                index,
                last_index: self.last_index(),
            }),
        }
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> StorageResult<Vec<Entry>> {
        let offset = self.offset();
        if lo <= offset {
            return Err(StorageError::Compacted {
                index: lo,
                first_index: self.first_index(),
            });
        }
        if hi > self.last_index() + 1 {
            return Err(StorageError::Unavailable {
                index: hi - 1,
                last_index: self.last_index(),
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in &self.entries[(lo - offset - 1) as usize..(hi.max(lo) - offset - 1) as usize] {
            bytes += e.size();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        self.snapshot.meta.clone()
    }

    fn snapshot(&self) -> StorageResult<Snapshot> {
        Ok(self.snapshot.clone())
    }

    fn append(&mut self, entries: &[Entry]) -> StorageResult<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for w in entries.windows(2) {
            if w[1].index != w[0].index + 1 {
                return Err(StorageError::Invalid(format!(
                    "entries not contiguous: {} then {}",
                    w[0].index, w[1].index
                )));
            }
        }
        let offset = self.offset();
        if first.index <= offset || first.index > self.last_index() + 1 {
            return Err(StorageError::Invalid(format!(
                "append at {} outside {}..={}",
                first.index,
                offset + 1,
                self.last_index() + 1
            )));
        }
        self.entries.truncate((first.index - offset - 1) as usize);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    fn save_hard_state(&mut self, hs: &HardState) -> StorageResult<()> {
        self.hard_state = *hs;
        Ok(())
    }

    fn sync(&mut self) -> StorageResult<()> {
        self.durable = Some(Box::new(self.as_durable()));
        Ok(())
    }

    fn compact(&mut self, meta: SnapshotMeta, data: Bytes) -> StorageResult<()> {
        let offset = self.offset();
        if meta.index < offset || meta.index > self.last_index() {
            return Err(StorageError::Invalid(format!(
                "compact to {} outside {}..={}",
                meta.index,
                offset,
                self.last_index()
            )));
        }
        self.entries.drain(..(meta.index - offset) as usize);
        self.snapshot = Snapshot { meta, data };
        // Compaction is durable on return; the rest of the durable state is
        // whatever was synced before, with the compacted prefix dropped.
        let mut d = self.durable.take().map(|d| *d).unwrap_or_default();
        let d_offset = d.snapshot.meta.index;
        let drop =
            (self.snapshot.meta.index.saturating_sub(d_offset) as usize).min(d.entries.len());
        d.entries.drain(..drop);
        d.snapshot = self.snapshot.clone();
        self.durable = Some(Box::new(d));
        Ok(())
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> StorageResult<()> {
        let meta = &snapshot.meta;
        let keep =
            matches!(self.term(meta.index), Ok(t) if t == meta.term) && meta.index >= self.offset();
        if keep {
            self.entries.drain(..(meta.index - self.offset()) as usize);
        } else {
            self.entries.clear();
        }
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        self.snapshot = snapshot;
        self.durable = Some(Box::new(self.as_durable()));
        Ok(())
    }
}
