//! The leader's view of one follower's log: how far it matches, what to
//! send next, and how many AppendEntries are in flight.
//!
//! - **Probe**: the match point is unknown; one AppendEntries at a time
//!   (paused until answered or until the next heartbeat response), backing
//!   off on rejection using the follower's conflict hints.
//! - **Replicate**: logs match up to `match_index`; AppendEntries are sent
//!   optimistically (`next_index` moves on at send) with at most
//!   `inflight_appends_max` unanswered.
//! - **Snapshot**: the follower's next entry is compacted away; a snapshot
//!   is on its way and nothing else is sent until it is acknowledged (or a
//!   retry timeout passes).

use std::collections::VecDeque;

use crate::ready::{ProgressState, ProgressStatus};
use crate::types::Index;

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) match_index: Index,
    pub(crate) next_index: Index,
    pub(crate) state: ProgressState,
    /// Probe: an AppendEntries is out and unanswered.
    pub(crate) paused: bool,
    /// Replicate: the last index of each AppendEntries in flight.
    pub(crate) inflight: VecDeque<Index>,
    /// Snapshot: the index of the snapshot sent, and the tick it was sent.
    pub(crate) pending_snapshot: Index,
    pub(crate) snapshot_sent_tick: u64,
    /// Heard from since the last check-quorum.
    pub(crate) recent_active: bool,
    /// The leader's tick when it last heard from this follower (`None`:
    /// never in this term). Promotion of a learner requires a recent one.
    pub(crate) heard_tick: Option<u64>,
    /// The latest heartbeat round this follower acknowledged.
    pub(crate) round_acked: u64,
    pub(crate) learner: bool,
    /// The commit index last sent to this follower.
    pub(crate) commit_sent: Index,
}

impl Progress {
    pub(crate) fn new(next_index: Index, learner: bool) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            paused: false,
            inflight: VecDeque::new(),
            pending_snapshot: 0,
            snapshot_sent_tick: 0,
            recent_active: true,
            heard_tick: None,
            round_acked: 0,
            learner,
            commit_sent: 0,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.next_index = if self.state == ProgressState::Snapshot {
            (self.match_index + 1).max(self.pending_snapshot + 1)
        } else {
            self.match_index + 1
        };
        self.state = ProgressState::Probe;
        self.paused = false;
        self.inflight.clear();
        self.pending_snapshot = 0;
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.paused = false;
        self.inflight.clear();
        self.pending_snapshot = 0;
    }

    pub(crate) fn become_snapshot(&mut self, index: Index, tick: u64) {
        self.state = ProgressState::Snapshot;
        self.pending_snapshot = index;
        self.snapshot_sent_tick = tick;
        self.paused = false;
        self.inflight.clear();
    }

    /// Whether nothing more may be sent now.
    pub(crate) fn is_paused(&self, inflight_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.paused,
            ProgressState::Replicate => self.inflight.len() >= inflight_max,
            ProgressState::Snapshot => true,
        }
    }

    /// Records that an AppendEntries ending at `last` (with `n` entries)
    /// went out.
    pub(crate) fn sent(&mut self, last: Index, n: usize) {
        match self.state {
            ProgressState::Replicate => {
                if n > 0 {
                    self.next_index = last + 1;
                    self.inflight.push_back(last);
                }
            }
            ProgressState::Probe => self.paused = true,
            ProgressState::Snapshot => {}
        }
    }

    /// A successful response says the follower matches up to `index`.
    /// Returns whether that is news.
    pub(crate) fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.paused = false;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|&i| i <= index) {
            self.inflight.pop_front();
        }
        updated
    }

    /// A rejection of the AppendEntries at `rejected` (its prev index); the
    /// hints suggest `hint_next`. Returns false for a stale rejection.
    pub(crate) fn maybe_decr_to(&mut self, rejected: Index, hint_next: Index) -> bool {
        if rejected <= self.match_index {
            return false;
        }
        match self.state {
            ProgressState::Replicate => {
                self.become_probe();
                self.next_index = hint_next.clamp(self.match_index + 1, rejected);
                true
            }
            ProgressState::Probe => {
                if self.next_index.saturating_sub(1) != rejected {
                    return false;
                }
                self.next_index = hint_next.clamp(self.match_index + 1, rejected);
                self.paused = false;
                true
            }
            ProgressState::Snapshot => false,
        }
    }

    pub(crate) fn status(&self) -> ProgressStatus {
        ProgressStatus {
            match_index: self.match_index,
            next_index: self.next_index,
            state: self.state,
            inflight: self.inflight.len(),
            learner: self.learner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicate_window_is_bounded_and_rejection_falls_back_to_probe() {
        let mut p = Progress::new(5, false);
        assert!(!p.is_paused(2));
        p.sent(5, 1);
        assert!(p.is_paused(2), "a probe waits for its answer");
        assert!(p.maybe_update(5));
        p.become_replicate();
        assert_eq!(p.next_index, 6);
        p.sent(7, 2);
        p.sent(9, 2);
        assert!(p.is_paused(2), "two in flight is the window");
        assert_eq!(p.next_index, 10);
        assert!(p.maybe_update(7));
        assert!(!p.is_paused(2));
        assert!(!p.maybe_decr_to(6, 3), "a stale rejection is ignored");
        assert!(p.maybe_decr_to(9, 3));
        assert_eq!(p.state, ProgressState::Probe);
        assert_eq!(p.next_index, 8, "never below match + 1");
        assert!(
            !p.maybe_decr_to(9, 2),
            "rejection of another probe is stale"
        );
        assert!(!p.maybe_decr_to(7, 2), "at or below match is stale");
    }
}
