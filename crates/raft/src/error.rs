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
    /// A `Ready` was handed to `advance` that does not belong to the node's
    /// outstanding one, or `ready()` was called twice without `advance`.
    #[error("ready/advance misuse: {0}")]
    ReadyMisuse(String),
    /// This node was removed from the cluster (see
    /// [`RawNode::is_removed`](crate::RawNode::is_removed)).
    #[error("node {0} was removed from the cluster")]
    Removed(NodeId),
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
    /// A learner may be promoted only once it has caught up: the leader
    /// heard from it within an election timeout, it holds the configuration
    /// that made it a learner, and it is at most
    /// `limits::PROMOTE_LAG_ENTRIES_MAX` entries behind the leader's log.
    #[error("{0}")]
    LearnerBehind(LearnerLag),
    /// This node was removed from the cluster and takes no proposals.
    #[error("node {id} was removed from the cluster")]
    Removed { id: NodeId },
    /// The configuration change does not make sense (e.g. removing a node
    /// that is not a member).
    #[error("invalid configuration change: {0}")]
    InvalidConfChange(String),
}

/// How far a learner is from being promotable
/// ([`ProposeError::LearnerBehind`]); its `Display` says what is missing
/// and what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnerLag {
    /// The learner.
    pub id: NodeId,
    /// How far the leader knows its log matches the learner's.
    pub match_index: Index,
    /// The leader's last index.
    pub last_index: Index,
    /// The leader's commit index.
    pub commit_index: Index,
    /// The index of the configuration change that made it a learner (the
    /// current configuration's).
    pub conf_index: Index,
    /// Ticks since the leader last heard from it; `None`: not at all in
    /// this leader's term.
    pub heard_ticks_ago: Option<u64>,
    /// The election timeout (minimum, in ticks): "recently" above.
    pub election_timeout_ticks: u64,
}

impl std::fmt::Display for LearnerLag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let LearnerLag {
            id,
            match_index,
            last_index,
            commit_index,
            conf_index,
            heard_ticks_ago,
            election_timeout_ticks,
        } = *self;
        let lag = last_index.saturating_sub(match_index);
        let why = match heard_ticks_ago {
            None => "the leader has not heard from it at all: it may not be running (start it \
                 with an empty data dir, without bootstrap, at the address it was added \
                 with, with the cluster's secret or TLS settings)"
                .to_string(),
            Some(t) if t > election_timeout_ticks => format!(
                "the leader last heard from it {t} ticks ago (more than an election timeout, \
             {election_timeout_ticks} ticks): it may have stopped or be cut off"
            ),
            Some(_) if match_index < conf_index => format!(
                "it does not hold the configuration that added it (index {conf_index}) yet: \
             it is still catching up (receiving a snapshot?); retry once it has"
            ),
            Some(_) => format!(
                "it is {lag} entries behind (at most {} allowed); retry once it has caught up",
                crate::limits::PROMOTE_LAG_ENTRIES_MAX
            ),
        };
        write!(
            f,
            "learner {id} has not caught up: its match index is {match_index}, the leader's \
             last index {last_index} and commit index {commit_index}; {why}"
        )
    }
}
