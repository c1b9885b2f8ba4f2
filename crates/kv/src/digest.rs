//! The replica digest: a hash of the applied index, every user key-value
//! (with its metadata) and every session, in key order. Two replicas at the
//! same applied index must have the same digest.
//!
//! The hash is 64-bit FNV-1a over a length-prefixed, fixed-width rendering
//! of the fields (so `("ab","c")` and `("a","bc")` differ). It detects
//! divergence; it is not a cryptographic hash.

use crate::keys::{Record, SessionRecord};
use crate::response::Response;
use raft::Index;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A digest of a state machine's state at an applied index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateDigest {
    /// The applied index the digest was taken at.
    pub index: Index,
    /// The hash (see the module docs).
    pub hash: u64,
}

/// The running hash.
#[derive(Clone, Debug)]
pub(crate) struct Hasher {
    state: u64,
}

impl Hasher {
    /// A hasher that starts with the applied index.
    pub(crate) fn new(index: Index) -> Hasher {
        let mut h = Hasher { state: FNV_OFFSET };
        h.u64(index);
        h
    }

    fn raw(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state ^= u64::from(b);
            self.state = self.state.wrapping_mul(FNV_PRIME);
        }
    }

    fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.raw(b);
    }

    /// Feeds one user key-value.
    pub(crate) fn kv(&mut self, key: &[u8], record: &Record) {
        self.raw(&[1]);
        self.bytes(key);
        self.bytes(&record.value);
        self.u64(record.create_index);
        self.u64(record.mod_index);
        self.u64(record.version);
    }

    /// Feeds one session.
    pub(crate) fn session(&mut self, client_id: u64, record: &SessionRecord) {
        self.raw(&[2]);
        self.u64(client_id);
        self.u64(record.last_seq);
        self.u64(record.last_index);
        match &record.response {
            None => self.raw(&[0]),
            Some(r) => {
                self.raw(&[1]);
                self.bytes(&Response::encode(r));
            }
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_delimited() {
        let rec = |v: &[u8]| Record {
            value: v.to_vec(),
            create_index: 1,
            mod_index: 1,
            version: 1,
        };
        let mut a = Hasher::new(5);
        a.kv(b"ab", &rec(b"c"));
        let mut b = Hasher::new(5);
        b.kv(b"a", &rec(b"bc"));
        assert_ne!(a.finish(), b.finish());
        let mut c = Hasher::new(6);
        c.kv(b"ab", &rec(b"c"));
        assert_ne!(a.finish(), c.finish());
    }
}
