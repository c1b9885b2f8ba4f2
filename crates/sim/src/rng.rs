//! The simulator's randomness: one seeded generator per run.

use raft::rng::SplitMix64;

/// A seeded generator with the draws the simulator needs.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }

    /// A generator for a sub-stream (e.g. a node's election timeouts),
    /// derived from this one's next draw.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.0.next_u64())
    }

    /// 64 random bits.
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `[lo, hi)` (`lo` when empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0.range(lo, hi)
    }

    /// `true` with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        per_mille > 0 && self.range(0, 1000) < per_mille
    }

    /// One element of a non-empty slice (`None` if empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.range(0, items.len() as u64) as usize])
    }
}
