//! The simulated network between nodes.
//!
//! Every message sent gets a delivery time drawn from the run's
//! [`NetFaults`]: a base delay, sometimes a long one (which reorders it
//! behind later messages), a chance to be dropped and a chance to be
//! duplicated (the copy gets its own delay). Partitions are sets of blocked
//! directed links, checked when a message would be delivered: a symmetric
//! partition blocks both directions, a one-way partition one. Healing
//! clears them; messages already dropped stay dropped.

use std::collections::{BTreeMap, BTreeSet};

use raft::{Message, NodeId};

use crate::limits::MESSAGES_IN_FLIGHT_MAX;
use crate::rng::Rng;
use crate::Time;

/// How badly the network behaves in one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetFaults {
    /// Delay of a message: `[delay_min, delay_max)` time units.
    pub delay_min: Time,
    pub delay_max: Time,
    /// Chance (per mille) of a long delay in `[delay_max, delay_long_max)`.
    pub delay_long_per_mille: u64,
    pub delay_long_max: Time,
    /// Chance (per mille) that a message is lost.
    pub drop_per_mille: u64,
    /// Chance (per mille) that a message is delivered twice.
    pub duplicate_per_mille: u64,
}

impl NetFaults {
    /// A network that delivers everything promptly, in order per link.
    pub fn none() -> NetFaults {
        NetFaults {
            delay_min: 1,
            delay_max: 2,
            delay_long_per_mille: 0,
            delay_long_max: 2,
            drop_per_mille: 0,
            duplicate_per_mille: 0,
        }
    }

    /// Random fault rates for a run.
    pub fn random(rng: &mut Rng) -> NetFaults {
        let delay_min = rng.range(1, 5);
        let delay_max = delay_min + rng.range(2, 40);
        NetFaults {
            delay_min,
            delay_max,
            delay_long_per_mille: rng.range(0, 30),
            delay_long_max: delay_max + rng.range(10, 300),
            drop_per_mille: rng.range(0, 60),
            duplicate_per_mille: rng.range(0, 30),
        }
    }
}

/// What the network did, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    /// Dropped because a partition blocked the link.
    pub blocked: u64,
    /// Dropped because too many messages were in flight.
    pub overflowed: u64,
}

/// The network. See the module docs.
#[derive(Debug)]
pub struct Network {
    pub faults: NetFaults,
    /// In flight: (delivery time, send number) → message.
    queue: BTreeMap<(Time, u64), Message>,
    sent: u64,
    /// Blocked directed links (from, to).
    blocked: BTreeSet<(NodeId, NodeId)>,
    pub stats: NetStats,
}

impl Network {
    /// An empty network with these fault rates.
    pub fn new(faults: NetFaults) -> Network {
        Network {
            faults,
            queue: BTreeMap::new(),
            sent: 0,
            blocked: BTreeSet::new(),
            stats: NetStats::default(),
        }
    }

    /// Sends `msg` at time `now`.
    pub fn send(&mut self, now: Time, msg: Message, rng: &mut Rng) {
        self.stats.sent += 1;
        if rng.chance(self.faults.drop_per_mille) {
            self.stats.dropped += 1;
            return;
        }
        if rng.chance(self.faults.duplicate_per_mille) {
            self.stats.duplicated += 1;
            let at = now + self.delay(rng);
            self.enqueue(at, msg.clone());
        }
        let at = now + self.delay(rng);
        self.enqueue(at, msg);
    }

    fn delay(&self, rng: &mut Rng) -> Time {
        let f = &self.faults;
        if rng.chance(f.delay_long_per_mille) {
            rng.range(f.delay_max, f.delay_long_max)
        } else {
            rng.range(f.delay_min, f.delay_max)
        }
    }

    fn enqueue(&mut self, at: Time, msg: Message) {
        if self.queue.len() >= MESSAGES_IN_FLIGHT_MAX {
            self.stats.overflowed += 1;
            return;
        }
        self.sent += 1;
        self.queue.insert((at, self.sent), msg);
    }

    /// The next message due at or before `now` whose link is open; messages
    /// on blocked links are dropped on the way.
    pub fn next_due(&mut self, now: Time) -> Option<Message> {
        loop {
            let entry = self.queue.first_entry()?;
            if entry.key().0 > now {
                return None;
            }
            let msg = entry.remove();
            if self.blocked.contains(&(msg.from, msg.to)) {
                self.stats.blocked += 1;
                continue;
            }
            self.stats.delivered += 1;
            return Some(msg);
        }
    }

    /// Blocks both directions between every node of `a` and every node of `b`.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.blocked.insert((x, y));
                self.blocked.insert((y, x));
            }
        }
    }

    /// Blocks messages from `from` to `to` only.
    pub fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Whether messages from `from` to `to` are blocked.
    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Whether any link is blocked.
    pub fn is_partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// Opens every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use raft::MessageBody;

    use super::*;

    fn msg(from: NodeId, to: NodeId, round: u64) -> Message {
        Message {
            from,
            to,
            term: 1,
            body: MessageBody::HeartbeatResponse { round },
        }
    }

    fn drain(net: &mut Network, until: Time) -> Vec<Message> {
        let mut out = Vec::new();
        for t in 0..=until {
            while let Some(m) = net.next_due(t) {
                out.push(m);
            }
        }
        out
    }

    #[test]
    fn a_clean_network_delivers_everything_once() {
        let mut rng = Rng::new(1);
        let mut net = Network::new(NetFaults::none());
        for r in 0..100 {
            net.send(0, msg(1, 2, r), &mut rng);
        }
        let got = drain(&mut net, 10);
        assert_eq!(got.len(), 100);
        assert_eq!(net.stats.delivered, 100);
    }

    #[test]
    fn faults_drop_duplicate_and_reorder() {
        let mut rng = Rng::new(2);
        let faults = NetFaults {
            delay_min: 1,
            delay_max: 50,
            delay_long_per_mille: 100,
            delay_long_max: 500,
            drop_per_mille: 100,
            duplicate_per_mille: 100,
        };
        let mut net = Network::new(faults);
        for r in 0..1000 {
            net.send(0, msg(1, 2, r), &mut rng);
        }
        let got = drain(&mut net, 1000);
        assert!(
            net.stats.dropped > 50 && net.stats.duplicated > 50,
            "{:?}",
            net.stats
        );
        assert_eq!(
            got.len() as u64,
            1000 - net.stats.dropped + net.stats.duplicated
        );
        let rounds: Vec<u64> = got
            .iter()
            .map(|m| match m.body {
                MessageBody::HeartbeatResponse { round } => round,
                _ => unreachable!(),
            })
            .collect();
        assert!(rounds.windows(2).any(|w| w[0] > w[1]), "some reordering");
    }

    #[test]
    fn partitions_block_links_until_healed() {
        let mut rng = Rng::new(3);
        let mut net = Network::new(NetFaults::none());
        net.partition(&[1], &[2, 3]);
        net.block(2, 3);
        for (f, t) in [(1, 2), (2, 1), (3, 1), (2, 3), (3, 2)] {
            net.send(0, msg(f, t, 0), &mut rng);
        }
        let got = drain(&mut net, 5);
        assert_eq!(got.len(), 1, "only 3→2 is open");
        assert_eq!((got[0].from, got[0].to), (3, 2));
        net.heal();
        net.send(10, msg(1, 2, 0), &mut rng);
        assert_eq!(drain(&mut net, 20).len(), 1);
    }
}
