//! Errors of the CLI and its exit codes.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the operation failed (server error, a node failed to start, `endpoint health` found an unhealthy node...) |
//! | 2 | bad input: a malformed command line, config or argument (empty key, value over the limit...), or client settings that do not fit the node (TLS, CA, an HTTP port) |
//! | 3 | `get`: the key does not exist |
//! | 4 | `cas`: the compare failed |
//! | 5 | the cluster could not be reached or did not answer in time; `status`: a node did not answer |

use client::Error as ClientError;

pub const FAILURE: u8 = 1;
pub const BAD_INPUT: u8 = 2;
pub const NOT_FOUND: u8 = 3;
pub const CAS_FAILED: u8 = 4;
pub const UNAVAILABLE: u8 = 5;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A client operation failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The key does not exist (`get`); the message was already printed
    /// when `--json` asked for a document.
    #[error("key not found: {0}")]
    NotFound(String),
    /// A compare-and-swap failed; already reported on stdout.
    #[error("compare failed: {0}")]
    CasFailed(String),
    /// A bad flag, file or argument.
    #[error("{0}")]
    BadInput(String),
    /// Some nodes asked about did not answer (the others' answers were
    /// printed).
    #[error("{0}")]
    Unreachable(String),
    /// Anything else (a node that failed, an I/O error).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Client(e) => match e {
                ClientError::InvalidArgument(_)
                | ClientError::Misconfigured(_)
                | ClientError::InvalidEndpoint { .. }
                | ClientError::NoEndpoints => BAD_INPUT,
                ClientError::CasFailed { .. } => CAS_FAILED,
                e if e.is_transient() => UNAVAILABLE,
                _ => FAILURE,
            },
            CliError::NotFound(_) => NOT_FOUND,
            CliError::CasFailed(_) => CAS_FAILED,
            CliError::BadInput(_) => BAD_INPUT,
            CliError::Unreachable(_) => UNAVAILABLE,
            CliError::Failed(_) => FAILURE,
        }
    }

    /// Prints the one-line message on stderr.
    pub fn report(&self) {
        eprintln!("error: {self}");
    }
}

impl From<server::ServerError> for CliError {
    fn from(e: server::ServerError) -> Self {
        match e {
            server::ServerError::Config(c) => CliError::BadInput(c.to_string()),
            e => CliError::Failed(with_disk_hint(e.to_string())),
        }
    }
}

/// `message` with what to do when it says a disk is full (ENOSPC, "os
/// error 28", from the WAL or the state machine).
pub fn with_disk_hint(message: String) -> String {
    if message.contains("os error 28") || message.contains("No space left on device") {
        format!(
            "{message}\n  the disk is full: free space in the node's data dir (or give it \
             a larger volume), then restart the node; its data up to the failure is intact"
        )
    } else {
        message
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_tell_errors_apart() {
        let c = |e: ClientError| CliError::from(e).code();
        assert_eq!(
            c(ClientError::InvalidArgument("empty key".into())),
            BAD_INPUT
        );
        assert_eq!(
            c(ClientError::Unavailable { last: "x".into() }),
            UNAVAILABLE
        );
        assert_eq!(
            c(ClientError::DeadlineExceeded { last: "x".into() }),
            UNAVAILABLE
        );
        assert_eq!(c(ClientError::CasFailed { current: None }), CAS_FAILED);
        assert_eq!(c(ClientError::NotFound("member 9".into())), FAILURE);
        assert_eq!(CliError::NotFound("k".into()).code(), NOT_FOUND);
        assert_eq!(CliError::BadInput("x".into()).code(), BAD_INPUT);
    }

    #[test]
    fn a_full_disk_is_named_with_the_fix() {
        let full = with_disk_hint(
            "state machine: write kv/0001.data: No space left on device (os error 28)".into(),
        );
        assert!(full.contains("the disk is full"), "{full}");
        let other = with_disk_hint("raft: something else".into());
        assert_eq!(other, "raft: something else");
    }
}
