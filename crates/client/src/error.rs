//! The client's errors, and how gRPC status codes map to them.
//!
//! | gRPC answer | [`Error`] | retried inside the deadline? |
//! |---|---|---|
//! | `UNAVAILABLE` (with or without a leader hint), connection failures | [`Error::Unavailable`] once the deadline passes | yes, following the hint or the next endpoint |
//! | `RESOURCE_EXHAUSTED` | [`Error::ResourceExhausted`] once the deadline passes | yes, with backoff |
//! | an attempt timing out | [`Error::DeadlineExceeded`] once the deadline passes | yes, on the next endpoint |
//! | `INVALID_ARGUMENT` | [`Error::InvalidArgument`] | no |
//! | `NOT_FOUND` | [`Error::NotFound`] | no |
//! | `ALREADY_EXISTS` | [`Error::AlreadyExists`] | no |
//! | `FAILED_PRECONDITION` from a node removed from the cluster (`raftkv-error: node-removed`) | [`Error::Unavailable`] once the deadline passes | yes, at the next endpoint |
//! | `FAILED_PRECONDITION` | [`Error::FailedPrecondition`] (session errors are handled inside) | no |
//! | anything else | [`Error::Server`] | no |

use proto::kv::KeyValue;

/// The client's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request was refused as malformed or over a limit (empty key,
    /// value too large...). Retrying it cannot help.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// What the request names does not exist (e.g. an unknown member id).
    /// A missing key is not an error: `get` returns `None`.
    #[error("not found: {0}")]
    NotFound(String),
    /// What the request creates exists already (e.g. a member id).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The cluster's state does not allow the request (e.g. promoting a
    /// voter).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A compare-and-swap found another value. `current` is the key as the
    /// failed transaction saw it (`None`: absent).
    #[error("compare failed: {}", describe_current(.current))]
    CasFailed {
        /// The key when the compare failed.
        current: Option<KeyValue>,
    },
    /// No node could serve the request before the deadline (no leader
    /// elected, or no endpoint reachable). `last` is the last failure seen.
    #[error("cluster unavailable: {last}")]
    Unavailable {
        /// The last failure seen.
        last: String,
    },
    /// The deadline passed while attempts were under way or backing off. A
    /// write may or may not have applied (it applied at most once).
    #[error("deadline exceeded: {last}")]
    DeadlineExceeded {
        /// The last failure seen.
        last: String,
    },
    /// The cluster stayed overloaded until the deadline.
    #[error("cluster overloaded: {0}")]
    ResourceExhausted(String),
    /// The session a write used is unknown to the cluster (expired or
    /// evicted) and an earlier attempt of the write may have applied:
    /// whether the write took effect is unknown. (When no attempt can have
    /// applied, the client opens a new session and retries by itself.)
    #[error("session expired while a write was in doubt: {0}")]
    SessionExpired(String),
    /// An endpoint is not a valid `host:port`.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No endpoints were given.
    #[error("no endpoints given")]
    NoEndpoints,
    /// Any other answer from a node.
    #[error("{code:?}: {message}")]
    Server {
        /// The gRPC status code.
        code: tonic::Code,
        /// The node's message.
        message: String,
    },
}

fn describe_current(current: &Option<KeyValue>) -> String {
    match current {
        None => "the key is absent".to_string(),
        Some(kv) => format!(
            "the current value is {:?} (version {})",
            String::from_utf8_lossy(&kv.value),
            kv.version
        ),
    }
}

impl Error {
    /// Whether retrying the same request later could succeed (the cluster
    /// was unreachable, leaderless, overloaded or slow).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. }
                | Error::DeadlineExceeded { .. }
                | Error::ResourceExhausted(_)
        )
    }

    /// The error for a final (not retried) status.
    pub(crate) fn from_status(status: &tonic::Status) -> Error {
        let message = status.message().to_string();
        match status.code() {
            tonic::Code::InvalidArgument => Error::InvalidArgument(message),
            tonic::Code::NotFound => Error::NotFound(message),
            tonic::Code::AlreadyExists => Error::AlreadyExists(message),
            tonic::Code::FailedPrecondition
                if status
                    .metadata()
                    .get(proto::kv::ERROR_METADATA)
                    .is_some_and(|v| v.as_bytes() == proto::kv::UNKNOWN_SESSION.as_bytes()) =>
            {
                Error::SessionExpired(message)
            }
            tonic::Code::FailedPrecondition => Error::FailedPrecondition(message),
            tonic::Code::ResourceExhausted => Error::ResourceExhausted(message),
            tonic::Code::Unavailable => Error::Unavailable { last: message },
            tonic::Code::DeadlineExceeded => Error::DeadlineExceeded { last: message },
            code => Error::Server { code, message },
        }
    }
}
