//! The core's errors: API misuse and refusals are kept apart from storage
//! failures (after which the node must stop).

use crate::confchange::ConfChangeError;
use crate::storage::StorageError;
use crate::types::{Index, NodeId};

/// Errors of the Raft core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid raft config: {0}")]
    Config(String),
    /// The log store failed; the node must stop (see the storage docs).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The request needs the leader, and this node is not it.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// A follower cannot forward a read: it knows no leader.
    #[error("no leader known")]
    NoLeader,
    /// Too many reads are already waiting.
    #[error("too many pending reads (max {max})")]
    TooManyReads { max: usize },
    /// The node named is not a member of the configuration (or not a voter
    /// where a voter is needed).
    #[error("node {0} is not a voting member")]
    NotVoter(NodeId),
    /// This node lost data it may have acknowledged (or joined with an
    /// empty data dir) and is not repaired yet: it does not campaign (see
    /// [`RawNode::is_recovering`](crate::RawNode::is_recovering)).
    #[error("node {id} is recovering lost data (needs commit index {floor} from a leader)")]
    Recovering { id: NodeId, floor: Index },
    /// A `Ready` was handed to `advance` that does not belong to the node's
    /// outstanding one, or `ready()` was called twice without `advance`.
    #[error("ready/advance misuse: {0}")]
    ReadyMisuse(String),
    /// A compaction request was out of range.
    #[error("cannot compact to {index}: {reason}")]
    Compact { index: Index, reason: String },
    /// A committed configuration-change entry could not be decoded.
    #[error("bad conf change entry at index {index}: {source}")]
    BadConfChangeEntry {
        index: Index,
        source: ConfChangeError,
    },
}

/// A `Result` with the core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Why a proposal was refused. Nothing was appended.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProposeError {
    /// Only the leader takes proposals; `leader` is a hint for the caller.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The leader is handing leadership to `to` and refuses proposals.
    #[error("leadership transfer to {to} in progress")]
    TransferInProgress { to: NodeId },
    /// Too many entries (or bytes) are appended but not yet committed.
    #[error("too many uncommitted entries ({entries} entries, {bytes} bytes)")]
    TooManyPending { entries: Index, bytes: u64 },
    /// The entry is larger than `limits::ENTRY_BYTES_MAX`.
    #[error("entry of {size} bytes exceeds the limit of {max}")]
    EntryTooLarge { size: u64, max: u64 },
    /// A configuration change is already in the log and not yet committed,
    /// or the leader has not yet committed an entry of its own term.
    #[error("a configuration change cannot be proposed now: {0}")]
    ConfChangeNotAllowed(String),
    /// The configuration change does not make sense (e.g. removing a node
    /// that is not a member).
    #[error("invalid configuration change: {0}")]
    InvalidConfChange(String),
}
