//! A node's configuration: its id, timing (in ticks), features and limits.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::limits;
use crate::types::{Index, NodeId};

/// How a [`RawNode`](crate::RawNode) behaves. Time is counted in ticks (calls
/// to `RawNode::tick`); the caller picks how long a tick is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id; never 0.
    pub id: NodeId,
    /// A follower or candidate that hears nothing for a randomized timeout in
    /// `[election_timeout_ticks_min, election_timeout_ticks_max)` ticks
    /// starts an election. The minimum is also the window in which a
    /// follower that heard from a live leader ignores vote requests, the
    /// check-quorum period, and the leadership-transfer timeout.
    pub election_timeout_ticks_min: u64,
    /// See `election_timeout_ticks_min`; must be larger than it.
    pub election_timeout_ticks_max: u64,
    /// A leader sends heartbeats every this many ticks; must be below
    /// `election_timeout_ticks_min`.
    pub heartbeat_interval_ticks: u64,
    /// Run a pre-vote round (which changes no term) before a real election,
    /// so that a node returning from a partition cannot disrupt the cluster.
    pub pre_vote: bool,
    /// A leader that has not heard from a majority of voters within
    /// `election_timeout_ticks_min` ticks steps down.
    pub check_quorum: bool,
    /// Serve `read_index` on the leader from its lease (no heartbeat round)
    /// while less than [`Config::lease_duration`] has passed, on the clock
    /// the driver gives with [`RawNode::set_now`], since a heartbeat round
    /// that a majority acknowledged was sent. Requires `check_quorum`, and
    /// a driver that calls `set_now` (without it the lease is never used).
    /// See the module docs of `read.rs` (crates/raft/src) for the safety
    /// argument.
    ///
    /// [`RawNode::set_now`]: crate::RawNode::set_now
    pub lease_read: bool,
    /// How long a tick is meant to last: the driver ticks every this long
    /// (on average, never more often). Only lease reads use it, to turn the
    /// followers' vote-refusal window (`election_timeout_ticks_min` ticks)
    /// into time.
    pub tick_interval: Duration,
    /// The bound on clock-rate drift for lease reads, in percent of the
    /// minimum election timeout (1 to 50): how much faster any node's
    /// clock may run than the leader's, both measured against real time,
    /// counting both errors. See [`Config::lease_duration`].
    pub lease_drift_percent: u64,
    /// Most entries in one AppendEntries message.
    pub entries_per_append_max: usize,
    /// Most bytes of entries in one AppendEntries message (one larger entry
    /// is still sent alone).
    pub bytes_per_append_max: u64,
    /// Most AppendEntries in flight to one follower in the replicate state.
    pub inflight_appends_max: usize,
    /// The last index the state machine has applied (durably) when the node
    /// starts; committed entries after it are handed out again.
    pub applied: Index,
    /// Seed of the generator that randomizes election timeouts.
    pub seed: u64,
    /// Keep what [`RawNode::check_invariants`](crate::RawNode::check_invariants)
    /// needs to check that committed entries never change (a hash of every
    /// committed entry), and in debug builds check the invariants after
    /// every input. On by default in debug builds; the simulator turns it
    /// on in release builds. Off, `check_invariants` still checks the rest.
    pub check_invariants: bool,
}

impl Default for Config {
    /// Timing for a 3-node cluster with a tick of about 100 ms; limits for a
    /// local network. `id` is 1: set it.
    fn default() -> Config {
        Config {
            id: 1,
            election_timeout_ticks_min: 10,
            election_timeout_ticks_max: 20,
            heartbeat_interval_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            lease_read: false,
            tick_interval: Duration::from_millis(100),
            lease_drift_percent: 10,
            entries_per_append_max: 256,
            bytes_per_append_max: 1024 * 1024,
            inflight_appends_max: 64,
            applied: 0,
            seed: 0,
            check_invariants: cfg!(debug_assertions),
        }
    }
}

impl Config {
    /// A default configuration for node `id`, with the seed set to `id` so
    /// that nodes of one cluster draw different timeouts.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            seed: id,
            ..Config::default()
        }
    }

    /// Checks that the configuration makes sense.
    ///
    /// # Errors
    /// `Error::Config` naming the first problem found.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(Error::Config(s));
        if self.id == 0 {
            return bad("id must not be 0".into());
        }
        if self.heartbeat_interval_ticks == 0 {
            return bad("heartbeat_interval_ticks must be at least 1".into());
        }
        if self.election_timeout_ticks_min <= self.heartbeat_interval_ticks {
            return bad(format!(
                "election_timeout_ticks_min ({}) must exceed heartbeat_interval_ticks ({})",
                self.election_timeout_ticks_min, self.heartbeat_interval_ticks
            ));
        }
        if self.election_timeout_ticks_max <= self.election_timeout_ticks_min {
            return bad(format!(
                "election_timeout_ticks_max ({}) must exceed election_timeout_ticks_min ({})",
                self.election_timeout_ticks_max, self.election_timeout_ticks_min
            ));
        }
        if self.election_timeout_ticks_max > limits::ELECTION_TIMEOUT_TICKS_MAX {
            return bad(format!(
                "election_timeout_ticks_max ({}) above {}",
                self.election_timeout_ticks_max,
                limits::ELECTION_TIMEOUT_TICKS_MAX
            ));
        }
        if self.lease_read && !self.check_quorum {
            return bad("lease_read requires check_quorum".into());
        }
        if self.tick_interval.is_zero() || self.tick_interval > limits::TICK_INTERVAL_MAX {
            return bad(format!(
                "tick_interval ({:?}) must be above 0 and at most {:?}",
                self.tick_interval,
                limits::TICK_INTERVAL_MAX
            ));
        }
        if self.lease_read {
            if !(1..=50).contains(&self.lease_drift_percent) {
                return bad(format!(
                    "lease_drift_percent ({}) must be in 1..=50",
                    self.lease_drift_percent
                ));
            }
            if self.lease_duration().is_zero() {
                return bad(format!(
                    "election_timeout_ticks_min ({}) is too short for lease reads with a \
                     {}% drift margin and one tick: the lease would be empty",
                    self.election_timeout_ticks_min, self.lease_drift_percent
                ));
            }
        }
        if self.entries_per_append_max == 0
            || self.entries_per_append_max > limits::ENTRIES_PER_APPEND_MAX
        {
            return bad(format!(
                "entries_per_append_max ({}) must be in 1..={}",
                self.entries_per_append_max,
                limits::ENTRIES_PER_APPEND_MAX
            ));
        }
        if self.bytes_per_append_max == 0
            || self.bytes_per_append_max > limits::BYTES_PER_APPEND_MAX
        {
            return bad(format!(
                "bytes_per_append_max ({}) must be in 1..={}",
                self.bytes_per_append_max,
                limits::BYTES_PER_APPEND_MAX
            ));
        }
        if self.inflight_appends_max == 0
            || self.inflight_appends_max > limits::INFLIGHT_APPENDS_MAX
        {
            return bad(format!(
                "inflight_appends_max ({}) must be in 1..={}",
                self.inflight_appends_max,
                limits::INFLIGHT_APPENDS_MAX
            ));
        }
        Ok(())
    }

    /// How long a lease read may rely on one heartbeat round, counted from
    /// when the leader created it: the minimum election timeout in time
    /// (`election_timeout_ticks_min × tick_interval`), minus
    /// `lease_drift_percent` of it for clock-rate drift, minus one tick
    /// (a follower's first tick after it hears from the leader may come at
    /// once). Zero if nothing is left.
    ///
    /// With the defaults (10 ticks of 100 ms, 10 %): 1000 − 100 − 100 =
    /// 800 ms.
    pub fn lease_duration(&self) -> Duration {
        let ticks = u32::try_from(self.election_timeout_ticks_min).unwrap_or(u32::MAX);
        let min = self.tick_interval.saturating_mul(ticks);
        let drift = min.mul_f64(self.lease_drift_percent.min(100) as f64 / 100.0);
        min.saturating_sub(drift).saturating_sub(self.tick_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_refused() {
        assert!(Config::default().validate().is_ok());
        let bad = [
            Config {
                id: 0,
                ..Config::default()
            },
            Config {
                heartbeat_interval_ticks: 0,
                ..Config::default()
            },
            Config {
                election_timeout_ticks_min: 2,
                ..Config::default()
            },
            Config {
                election_timeout_ticks_max: 10,
                ..Config::default()
            },
            Config {
                entries_per_append_max: 0,
                ..Config::default()
            },
            Config {
                inflight_appends_max: 0,
                ..Config::default()
            },
            Config {
                bytes_per_append_max: 0,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(Error::Config(_))), "{c:?}");
        }
    }

    #[test]
    fn lease_read_without_check_quorum_is_an_error() {
        let c = Config {
            lease_read: true,
            check_quorum: false,
            ..Config::default()
        };
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("check_quorum"), "{err}");
        let ok = Config {
            lease_read: true,
            check_quorum: true,
            ..Config::default()
        };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn lease_duration_takes_off_the_drift_margin_and_one_tick() {
        let c = Config::default();
        assert_eq!(c.lease_duration(), Duration::from_millis(800));
        let c = Config {
            election_timeout_ticks_min: 3,
            election_timeout_ticks_max: 6,
            heartbeat_interval_ticks: 1,
            tick_interval: Duration::from_millis(50),
            lease_drift_percent: 20,
            ..Config::default()
        };
        // 150 ms - 30 ms - 50 ms.
        assert_eq!(c.lease_duration(), Duration::from_millis(70));
        let empty = Config {
            election_timeout_ticks_min: 2,
            election_timeout_ticks_max: 4,
            heartbeat_interval_ticks: 1,
            lease_drift_percent: 50,
            lease_read: true,
            ..Config::default()
        };
        assert!(empty.lease_duration().is_zero());
        let err = empty.validate().unwrap_err();
        assert!(
            err.to_string().contains("too short for lease reads"),
            "{err}"
        );
        let drift = Config {
            lease_read: true,
            lease_drift_percent: 0,
            ..Config::default()
        };
        assert!(drift.validate().is_err());
        let tick = Config {
            tick_interval: Duration::ZERO,
            ..Config::default()
        };
        assert!(tick.validate().is_err());
    }
}
