//! The engine's errors.

use std::io;
use std::path::{Path, PathBuf};

/// Everything an engine call can fail with.
///
/// Errors split in two kinds (see [`Error::is_fatal`]): input errors
/// (`KeyTooLarge`, `EmptyKey`, ...) reject one call and leave the engine
/// usable; the others mean the store on disk is damaged or could not be
/// made durable, and the engine refuses further writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on `path`; the `io::ErrorKind` is kept in `source`.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record, header or hint file failed its checks.
    #[error("corrupt data in {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A file was written by a newer format version than this build reads.
    #[error("{} has format version {version}; this build reads up to {supported}", file.display())]
    UnsupportedVersion {
        file: PathBuf,
        version: u32,
        supported: u32,
    },
    /// The key is longer than [`limits::key_size_max`](crate::limits::key_size_max).
    #[error("key of {size} bytes is over the limit of {max} bytes")]
    KeyTooLarge { size: usize, max: usize },
    /// The value is longer than [`limits::value_size_max`](crate::limits::value_size_max).
    #[error("value of {size} bytes is over the limit of {max} bytes")]
    ValueTooLarge { size: usize, max: usize },
    /// Keys must not be empty.
    #[error("empty key")]
    EmptyKey,
    /// A write batch is over [`limits::batch_size_max`](crate::limits::batch_size_max)
    /// bytes or [`limits::batch_ops_max`](crate::limits::batch_ops_max) operations.
    #[error("write batch of {size} ({what}) is over the limit of {max}")]
    BatchTooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    /// Another engine (in this or another process) has the directory open.
    #[error("{} is locked: another engine has the directory open", path.display())]
    Locked { path: PathBuf },
    /// The options passed to `open` are invalid.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// An earlier write or fsync failed, so what is on disk is unknown; the
    /// engine refuses every call until it is reopened (retrying an fsync
    /// after a failure is not safe).
    #[error("engine stopped after an earlier fatal error: {0}")]
    Poisoned(String),
}

impl Error {
    /// Whether the error means the engine can no longer be trusted (the
    /// caller should stop rather than carry on): I/O failures, corruption
    /// and a poisoned engine. Input errors are not fatal.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Error::KeyTooLarge { .. }
                | Error::ValueTooLarge { .. }
                | Error::EmptyKey
                | Error::BatchTooLarge { .. }
                | Error::InvalidOptions(_)
        )
    }

    pub(crate) fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}

/// A `Result` with an [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
