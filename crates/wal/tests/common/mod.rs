//! Helpers shared by the WAL's integration tests.
#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use raft::{Entry, EntryKind, Index, Term};
use wal::{Options, RecoveryReport, Wal};

/// An entry whose data tells its index, term and a nonce apart, padded to
/// `size` bytes.
pub fn entry(index: Index, term: Term, nonce: u64, size: usize) -> Entry {
    let mut data = format!("{index}:{term}:{nonce};").into_bytes();
    let mut x = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ nonce;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.push(x as u8);
    }
    Entry {
        index,
        term,
        kind: if index.is_multiple_of(7) {
            EntryKind::ConfChange
        } else {
            EntryKind::Normal
        },
        data: Bytes::from(data),
    }
}

/// Default options but with 256 KiB segments: preallocating the default
/// 64 MiB per segment would make tests slow.
pub fn test_opts() -> Options {
    Options {
        segment_size_max: 256 * 1024,
        ..Options::default()
    }
}

/// Options with tiny segments and a tiny cache, to exercise rotation,
/// segment deletion and reads from disk.
pub fn small_opts() -> Options {
    Options {
        segment_size_max: 1024,
        cache_entries_max: 4,
        cache_bytes_max: 1024,
        ..Options::default()
    }
}

pub fn open(dir: &Path, opts: Options) -> (Wal, RecoveryReport) {
    match Wal::open(dir, opts) {
        Ok(x) => x,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
