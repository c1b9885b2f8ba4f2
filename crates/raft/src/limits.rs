//! Every bound the Raft core enforces, in one place.
//!
//! A [`Config`](crate::Config) may choose smaller values for the tunable
//! ones; `Config::validate` refuses values above these maxima.

use crate::types::Index;

/// Most entries one AppendEntries message may carry (upper bound for
/// `Config::entries_per_append_max`).
pub const ENTRIES_PER_APPEND_MAX: usize = 16 * 1024;

/// Most bytes of entries (by [`Entry::size`](crate::Entry::size)) one
/// AppendEntries message may carry (upper bound for
/// `Config::bytes_per_append_max`). A single larger entry is still sent alone.
pub const BYTES_PER_APPEND_MAX: u64 = 64 * 1024 * 1024;

/// Most AppendEntries messages in flight to one follower (upper bound for
/// `Config::inflight_appends_max`).
pub const INFLIGHT_APPENDS_MAX: usize = 4096;

/// Largest payload one proposal may carry.
pub const ENTRY_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Most entries a leader holds appended but not yet committed; a proposal
/// beyond it is refused with `ProposeError::TooManyPending`.
pub const UNCOMMITTED_ENTRIES_MAX: Index = 16 * 1024;

/// Most bytes of entries a leader holds appended but not yet committed.
pub const UNCOMMITTED_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Most read requests waiting on one node (for a heartbeat round, for the
/// leader's first commit in its term, or forwarded and unanswered).
pub const READS_PENDING_MAX: usize = 16 * 1024;

/// Most bytes of committed entries handed out in one `Ready` (at least one
/// entry is always handed out when any is committed).
pub const COMMITTED_BYTES_PER_READY_MAX: u64 = 64 * 1024 * 1024;

/// Largest `context` of a [`ConfChange`](crate::ConfChange).
pub const CONF_CHANGE_CONTEXT_BYTES_MAX: usize = 64 * 1024;

/// Most voters plus learners in one configuration.
pub const MEMBERS_MAX: usize = 256;

/// How many of the most recent committed entries `check_invariants` remembers
/// (index, term, hash) to detect a committed entry that changed.
pub const COMMITTED_HASH_WINDOW_MAX: usize = 64;

/// Most heartbeat rounds whose creation time the leader remembers (for
/// leases).
pub const READS_ROUNDS_REMEMBERED_MAX: usize = 64;

/// Largest election timeout, in ticks.
pub const ELECTION_TIMEOUT_TICKS_MAX: u64 = 1_000_000;

/// Longest `Config::tick_interval`.
pub const TICK_INTERVAL_MAX: std::time::Duration = std::time::Duration::from_secs(60);
/// How far (in entries) a learner's match index may be behind the leader's
/// last index for the learner to be promoted to a voter. A learner this
/// close catches up with one or two AppendEntries; one further behind
/// would be a voter that cannot acknowledge new entries yet, so the
/// cluster would tolerate one failure fewer until it caught up.
pub const PROMOTE_LAG_ENTRIES_MAX: Index = 1024;

/// For how many election timeouts (of `election_timeout_ticks_max` ticks)
/// a leader keeps replicating to a node it removed, so that the node
/// receives its removal and the commit index covering it and stops (see
/// the membership module docs). Dropped earlier once the node has both.
pub const DEPARTING_ELECTION_TIMEOUTS_MAX: u64 = 2;
