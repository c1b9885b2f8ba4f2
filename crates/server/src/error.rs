//! The node's errors: what stops a node ([`ServerError`]) and how request
//! failures map to gRPC status codes.

use std::path::PathBuf;

use crate::config::ConfigError;

/// Why a node could not start or had to stop.
///
/// Errors that could let replicas diverge (a failed fsync, a failed apply, a
/// corrupt record) stop the node: they are never answered to a client and
/// retried.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file or directory operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Binding or serving the gRPC listener failed.
    #[error("gRPC server: {0}")]
    Serve(String),
    /// The Raft core refused its configuration or failed.
    #[error("raft: {0}")]
    Raft(String),
    /// The WAL (Raft log store) failed; the node stops.
    #[error("raft log store: {0}")]
    Storage(String),
    /// The state machine failed (apply, snapshot, restore); the node stops.
    #[error("state machine: {0}")]
    StateMachine(String),
    /// The address book in the data dir is unreadable.
    #[error("address book {path}: {reason}")]
    AddressBook { path: PathBuf, reason: String },
    /// The identity file in the data dir is unreadable or does not match
    /// the configuration (see `identity`).
    #[error("identity {path}: {reason}")]
    Identity { path: PathBuf, reason: String },
    /// The cluster secret file is unusable.
    #[error("cluster secret {path}: {reason}")]
    Secret { path: PathBuf, reason: String },
    /// A task of the node panicked or ended unexpectedly.
    #[error("node task failed: {0}")]
    Task(String),
}

impl ServerError {
    /// An [`ServerError::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ServerError {
        ServerError::Io {
            path: path.into(),
            source,
        }
    }
}
