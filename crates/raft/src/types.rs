//! The nouns of the protocol: log entries, hard state, configurations and
//! snapshot metadata. These are shared with the WAL (which persists them),
//! the state machine and the wire format.

use std::collections::BTreeSet;

use bytes::Bytes;

/// A node's identity in the cluster. `0` is never a valid node id.
pub type NodeId = u64;
/// A Raft term. Terms start at 0 (no leader has ever been elected).
pub type Term = u64;
/// A log position. The first real entry has index 1; index 0 is the empty log.
pub type Index = u64;

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// Application data, opaque to Raft; `data` may be empty for the no-op
    /// entry a new leader appends to commit an entry of its own term.
    Normal,
    /// A membership change: `data` is an encoded [`ConfChange`](crate::ConfChange).
    ConfChange,
}

impl EntryKind {
    /// The byte this kind is stored as on disk and on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            EntryKind::Normal => 1,
            EntryKind::ConfChange => 2,
        }
    }

    /// The inverse of [`EntryKind::as_u8`]; `None` for an unknown byte.
    pub fn from_u8(b: u8) -> Option<EntryKind> {
        match b {
            1 => Some(EntryKind::Normal),
            2 => Some(EntryKind::ConfChange),
            _ => None,
        }
    }
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    pub kind: EntryKind,
    pub data: Bytes,
}

impl Entry {
    /// An approximation of the entry's size, used to bound batches by bytes.
    pub fn size(&self) -> u64 {
        // index + term + kind + data.
        8 + 8 + 1 + self.data.len() as u64
    }
}

/// The state a node must persist before it answers any message that depends
/// on it: the current term, the vote cast in it, and the commit index (the
/// commit index is persisted for faster restarts only; losing it is safe).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    /// The candidate voted for in `term`, if any.
    pub vote: Option<NodeId>,
    pub commit: Index,
}

/// A cluster configuration: who votes and who only listens.
///
/// `voters_outgoing` is non-empty only while a joint configuration is in
/// effect (the old voters during a joint-consensus change); a decision then
/// needs a majority of `voters` *and* a majority of `voters_outgoing`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfState {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub voters_outgoing: BTreeSet<NodeId>,
}

impl ConfState {
    /// A configuration of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> ConfState {
        ConfState {
            voters: voters.into_iter().collect(),
            ..ConfState::default()
        }
    }

    /// Every node that receives the log: voters (both halves of a joint
    /// configuration) and learners.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }

    /// Whether `id` may vote in this configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }
}

/// Where a snapshot sits in the log and which configuration it carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log index the snapshot includes (0: no snapshot).
    pub index: Index,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The configuration in effect at `index`.
    pub conf: ConfState,
}

/// A snapshot of the state machine at `meta.index`. The payload is opaque to
/// Raft: the state machine produces it and restores from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}
