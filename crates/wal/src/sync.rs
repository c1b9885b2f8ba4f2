//! Syncing off the writer's thread: [`SyncHandle`] and [`Synced`].

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use raft::Index;

use crate::error::{Error, Result};

/// The poison flag a [`Wal`](crate::Wal) shares with its sync handles: set
/// once, by the first failed write or fsync, with what failed.
pub(crate) type Poison = Arc<OnceLock<String>>;

/// An fsync of the active segment that can run on another thread.
///
/// Made by [`Wal::sync_handle`](crate::Wal::sync_handle), which first writes
/// the WAL's user-space buffer to the file. [`SyncHandle::sync`] then makes
/// everything written before the handle was made durable; hand the result to
/// [`Wal::mark_durable`](crate::Wal::mark_durable).
///
/// If the fsync fails, the handle poisons the WAL it came from: every later
/// call on the WAL returns [`Error::Poisoned`].
#[derive(Debug)]
pub struct SyncHandle {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) index: Index,
    pub(crate) overwrite_seq: u64,
    pub(crate) poison: Poison,
}

/// Proof that a [`SyncHandle`] finished: the last index it covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "pass it to Wal::mark_durable"]
pub struct Synced {
    pub(crate) index: Index,
    pub(crate) overwrite_seq: u64,
}

impl SyncHandle {
    /// The last log index this handle makes durable (as the log was when the
    /// handle was made).
    pub fn index(&self) -> Index {
        self.index
    }

    /// `fdatasync` the segment. Blocking; meant for a thread of its own.
    ///
    /// # Errors
    /// [`Error::Io`] if the fsync fails (the WAL is then poisoned), or
    /// [`Error::Poisoned`] if the WAL already was.
    pub fn sync(self) -> Result<Synced> {
        if let Some(why) = self.poison.get() {
            return Err(Error::Poisoned(why.clone()));
        }
        if let Err(e) = self.file.sync_data() {
            let _ = self
                .poison
                .set(format!("fdatasync of {} failed: {e}", self.path.display()));
            return Err(Error::io("fdatasync", self.path, e));
        }
        Ok(Synced {
            index: self.index,
            overwrite_seq: self.overwrite_seq,
        })
    }
}

impl Synced {
    /// The last log index the finished sync covered.
    pub fn index(&self) -> Index {
        self.index
    }
}
