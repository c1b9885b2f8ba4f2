//! What the node asks its caller to do: [`Ready`], and the small value types
//! it carries and [`Status`] reports.

use std::collections::BTreeMap;

use crate::message::{Message, ReadState};
use crate::types::{ConfState, Entry, HardState, Index, NodeId, Snapshot, Term};

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Follower,
    /// Asking for pre-votes; its term has not changed yet.
    PreCandidate,
    Candidate,
    Leader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(s)
    }
}

/// State that is not persisted: the role and the known leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub role: Role,
    pub leader: Option<NodeId>,
}

/// Everything the node needs its caller to do, handed out by
/// `RawNode::ready` and given back with `RawNode::advance`. Handle the
/// fields in the order of the crate docs' contract.
#[derive(Debug, Default)]
#[must_use = "a Ready must be handled and given back to advance()"]
pub struct Ready {
    /// The role or leader, if either changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
    /// The hard state to save, if it changed.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader to install (step 1).
    pub snapshot: Option<Snapshot>,
    /// Entries to append to the log store (step 2).
    pub entries: Vec<Entry>,
    /// Messages that may be sent at once, before the store is synced (the
    /// leader's AppendEntries, heartbeats, snapshots): step 3.
    pub messages: Vec<Message>,
    /// Messages to send only after this Ready's entries and hard state are
    /// durable (votes, vote requests, follower acknowledgements): step 4.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply to the state machine, in order (step 5).
    pub committed_entries: Vec<Entry>,
    /// Reads that are safe to serve once `applied >= index` (step 5).
    pub read_states: Vec<ReadState>,
    /// Sequence number of this Ready (checked by `advance`).
    pub(crate) number: u64,
    /// Last unstable entry handed out: (index, term).
    pub(crate) stable_to: Option<(Index, Term)>,
    /// The applied index once this Ready's committed entries are applied.
    pub(crate) applied_to: Index,
}

impl Ready {
    /// Whether there is nothing to do (advance it anyway).
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
    }
}

/// Where a follower stands in the leader's eyes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProgressState {
    /// The leader does not know where the follower's log matches: one
    /// AppendEntries at a time, backing off on rejection.
    Probe,
    /// Logs match up to `match_index`: AppendEntries are pipelined, up to
    /// `Config::inflight_appends_max` in flight.
    Replicate,
    /// The follower needs a snapshot, which is on its way.
    Snapshot,
}

impl std::fmt::Display for ProgressState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ProgressState::Probe => "probe",
            ProgressState::Replicate => "replicate",
            ProgressState::Snapshot => "snapshot",
        };
        f.write_str(s)
    }
}

/// A follower's replication progress, as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressStatus {
    pub match_index: Index,
    pub next_index: Index,
    pub state: ProgressState,
    /// AppendEntries in flight.
    pub inflight: usize,
    /// Whether the follower is a learner.
    pub learner: bool,
}

/// A leader saw a follower reject an AppendEntries at or below the index
/// the follower had acknowledged: the follower lost data (a wiped or
/// damaged disk), or the rejection was an old duplicate. The leader forgot
/// the follower's match and repairs it (probe, snapshot if needed). Taken
/// with [`RawNode::take_follower_losses`](crate::RawNode::take_follower_losses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerLoss {
    /// The follower.
    pub id: NodeId,
    /// The leader's term.
    pub term: Term,
    /// The match index the leader had for it.
    pub match_index: Index,
    /// The index of the rejected AppendEntries (its prev index), at or
    /// below `match_index`.
    pub rejected: Index,
    /// The follower's hint: its last index + 1 if its log is shorter, 0 if
    /// it holds no configuration at all (an empty data dir).
    pub follower_next: Index,
}

/// A snapshot of the node's state, for status pages and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub vote: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub commit: Index,
    pub applied: Index,
    pub last_index: Index,
    /// The index of the latest snapshot (entries up to it are compacted).
    pub snapshot_index: Index,
    /// The configuration in effect (the latest one in the log).
    pub conf: ConfState,
    /// The configuration as of the commit index: the latest one whose
    /// entry is known committed. It differs from `conf` while a change is
    /// appended but not yet committed (such a change may still be
    /// truncated away). Only this one may be reported as a change's
    /// outcome: e.g. a node is certainly removed only once it is absent
    /// here.
    pub committed_conf: ConfState,
    /// On a leader, the nodes it removed and still replicates to until they
    /// hold their removal and its commit (see [`crate::membership`]); their
    /// answers must reach it. Empty elsewhere.
    pub departing: Vec<NodeId>,
    /// The leader's view of each other member (empty on followers).
    pub progress: BTreeMap<NodeId, ProgressStatus>,
    /// The target of a leadership transfer in progress.
    pub transferee: Option<NodeId>,
    /// This node was removed from the cluster: it sends nothing, never
    /// campaigns and takes no requests (see [`crate::membership`]).
    pub removed: bool,
    /// Recovering lost data: no votes, no campaigns (see
    /// [`RawNode::is_recovering`](crate::RawNode::is_recovering)).
    pub recovering: bool,
}
