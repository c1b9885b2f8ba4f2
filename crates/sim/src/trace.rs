//! The run's fingerprint: a 64-bit FNV-1a hash of every event of the run
//! (each message delivered, each client reply, each fault), fed in order.
//! Two runs of one seed must end with the same hash; a differing hash means
//! something outside the seed (a clock, a default-hashed map's order) leaked
//! into the run.

/// 64-bit FNV-1a.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv::new()
    }
}

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// The empty hash.
    pub fn new() -> Fnv {
        Fnv(Self::OFFSET)
    }

    /// Feed bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// Feed a number (as 8 little-endian bytes).
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}
