//! The WAL's errors, and how they map onto [`raft::StorageError`].

use std::io;
use std::path::PathBuf;

use raft::{Index, StorageError};

/// Everything the WAL can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed. `io::ErrorKind` is kept in `source`. A failed
    /// write or sync also poisons the WAL (see [`Error::Poisoned`]).
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record or header on disk is damaged. Opening refuses to go on
    /// (unless `Options::repair`); a damaged record found by a read is
    /// returned as this error and never as data.
    #[error("corrupt WAL file {} at byte offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A file was written by a newer (or unknown) format version.
    #[error("{} has format version {found}; this build reads version {supported}", file.display())]
    UnsupportedVersion {
        file: PathBuf,
        found: u32,
        supported: u32,
    },
    /// Another process (or another `Wal` in this one) has the directory open.
    #[error("WAL directory {} is locked by another user", dir.display())]
    Locked { dir: PathBuf },
    /// The index was compacted into a snapshot.
    #[error("log index {index} is compacted (first available index is {first_index})")]
    Compacted { index: Index, first_index: Index },
    /// The index is past the end of the log.
    #[error("log index {index} is unavailable (last index is {last_index})")]
    Unavailable { index: Index, last_index: Index },
    /// An entry too large for one record.
    #[error("entry {index} has {size} bytes of data; the limit is {max}")]
    EntryTooLarge { index: Index, size: u64, max: u64 },
    /// The caller broke the contract (a hole in the log, a bad option...).
    #[error("invalid WAL call: {0}")]
    Invalid(String),
    /// An earlier write or fsync failed. The on-disk state is unknown, so the
    /// WAL refuses every further call; the node must stop and recover by
    /// reopening (which reads back only what reached the disk).
    #[error("WAL is poisoned by an earlier failure: {0}")]
    Poisoned(String),
}

/// A `Result` with the WAL's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The `io::ErrorKind` of an I/O error, if this is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

impl From<Error> for StorageError {
    fn from(e: Error) -> StorageError {
        match e {
            Error::Compacted { index, first_index } => {
                StorageError::Compacted { index, first_index }
            }
            Error::Unavailable { index, last_index } => {
                StorageError::Unavailable { index, last_index }
            }
            Error::Invalid(_) | Error::EntryTooLarge { .. } => StorageError::Invalid(e.to_string()),
            Error::Corrupt { .. } | Error::UnsupportedVersion { .. } => {
                StorageError::Corrupt(e.to_string())
            }
            Error::Io { ref source, .. } => {
                let kind = source.kind();
                StorageError::Io(io::Error::new(kind, e.to_string()))
            }
            Error::Locked { .. } | Error::Poisoned(_) => {
                StorageError::Io(io::Error::other(e.to_string()))
            }
        }
    }
}
