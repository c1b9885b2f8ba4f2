//! The chaos runner's errors.

use std::path::PathBuf;

/// The runner's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a run could not be carried out (a checker verdict is not an error:
/// it is part of the run's [`Report`](crate::run::Report)).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A node process could not be started or signalled.
    #[error("node {id}: {reason}")]
    Process { id: u64, reason: String },
    /// `nft` refused a ruleset.
    #[error("nft failed: {0}")]
    Nft(String),
    /// The cluster did not become usable (no leader, a node not serving).
    #[error("cluster not ready: {0}")]
    NotReady(String),
    /// A client library error outside the recorded workload.
    #[error("client: {0}")]
    Client(#[from] client::Error),
    /// A bad command-line value.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Writing the history or the schedule as JSON failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// An [`Error::Io`] naming the action and the path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
