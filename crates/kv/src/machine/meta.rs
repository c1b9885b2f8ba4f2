//! The versions of recently written keys, so that a put need not read the
//! key's previous record from the engine only to carry its `create_index`
//! forward and count its `version` up.
//!
//! Only the apply path touches it, and only at one place: when a batch is
//! written to the engine, every user key it wrote is recorded here (a
//! delete removes it). A snapshot restore clears it. So an entry is always
//! the key's metadata as of the engine's contents; a key not here is read
//! from the engine as before. At most [`limits::META_CACHE_KEYS_MAX`] keys
//! of [`limits::META_CACHE_KEY_BYTES_MAX`] bytes in all are kept; a key
//! beyond that starts over from empty (a bound, not an eviction policy: a
//! miss costs one engine read, never a wrong answer).

use std::collections::HashMap;

use raft::Index;

use crate::keys::Record;
use crate::limits;

/// What a put needs of a key's previous record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Meta {
    pub create_index: Index,
    pub version: u64,
}

impl Meta {
    pub(super) fn of(r: &Record) -> Meta {
        Meta {
            create_index: r.create_index,
            version: r.version,
        }
    }
}

#[derive(Debug)]
pub(super) struct MetaCache {
    map: HashMap<Vec<u8>, Meta>,
    /// The bytes of the keys in `map`.
    key_bytes: usize,
    capacity: usize,
    key_bytes_max: usize,
}

impl Default for MetaCache {
    fn default() -> Self {
        MetaCache::with_capacity(limits::META_CACHE_KEYS_MAX)
    }
}

impl MetaCache {
    /// At most `capacity` keys (0: keep none).
    pub(super) fn with_capacity(capacity: usize) -> MetaCache {
        MetaCache {
            map: HashMap::new(),
            key_bytes: 0,
            capacity,
            key_bytes_max: limits::META_CACHE_KEY_BYTES_MAX,
        }
    }

    /// `Some(meta)`: the key exists; `None`: not known here (ask the
    /// engine). A deleted key is not kept, so absence is never cached.
    pub(super) fn get(&self, key: &[u8]) -> Option<Meta> {
        self.map.get(key).copied()
    }

    /// Records what a batch written to the engine left for `key`.
    pub(super) fn written(&mut self, key: Vec<u8>, record: Option<&Record>) {
        match record {
            None => {
                if self.map.remove(&key).is_some() {
                    self.key_bytes -= key.len();
                }
            }
            Some(r) => {
                if let Some(m) = self.map.get_mut(&key) {
                    *m = Meta::of(r);
                    return;
                }
                if self.capacity == 0 {
                    return;
                }
                if self.map.len() >= self.capacity
                    || self.key_bytes + key.len() > self.key_bytes_max
                {
                    self.clear();
                }
                self.key_bytes += key.len();
                self.map.insert(key, Meta::of(r));
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.key_bytes = 0;
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bitcask::MemEngine;
    use raft::{Entry, EntryKind};

    use super::*;
    use crate::command::{Command, Compare, CompareOp, CompareTarget, Op, Request};
    use crate::machine::StateMachine;

    fn rec(create_index: Index, version: u64) -> Record {
        Record {
            value: b"v".to_vec(),
            create_index,
            mod_index: create_index + version,
            version,
        }
    }

    #[test]
    fn writes_update_deletes_remove_and_the_size_is_bounded() {
        let mut c = MetaCache::with_capacity(2);
        c.written(b"a".to_vec(), Some(&rec(1, 1)));
        c.written(b"a".to_vec(), Some(&rec(1, 2)));
        assert_eq!(
            c.get(b"a"),
            Some(Meta {
                create_index: 1,
                version: 2
            })
        );
        c.written(b"a".to_vec(), None);
        assert_eq!(c.get(b"a"), None);
        c.written(b"b".to_vec(), Some(&rec(2, 1)));
        c.written(b"c".to_vec(), Some(&rec(3, 1)));
        assert_eq!(c.len(), 2);
        // Full: a new key starts over.
        c.written(b"d".to_vec(), Some(&rec(4, 1)));
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(b"b"), None);
        assert_eq!(
            c.get(b"d"),
            Some(Meta {
                create_index: 4,
                version: 1
            })
        );
        let mut small = MetaCache::with_capacity(10);
        small.key_bytes_max = 5;
        small.written(b"abc".to_vec(), Some(&rec(1, 1)));
        small.written(b"de".to_vec(), Some(&rec(2, 1)));
        assert_eq!(small.len(), 2);
        small.written(b"f".to_vec(), Some(&rec(3, 1)));
        assert_eq!((small.len(), small.key_bytes), (1, 1));
        small.written(b"f".to_vec(), None);
        assert_eq!((small.len(), small.key_bytes), (0, 0));
        let mut off = MetaCache::with_capacity(0);
        off.written(b"a".to_vec(), Some(&rec(1, 1)));
        assert_eq!(off.get(b"a"), None);
    }

    /// A random command on a few keys (puts with and without prev_kv,
    /// deletes, ranges, appends, transactions).
    fn command(x: &mut u64) -> Command {
        let mut next = |n: u64| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x % n
        };
        let key = |i: u64| format!("k{i}").into_bytes();
        let (k, v) = (key(next(6)), format!("v{}", next(100)).into_bytes());
        match next(7) {
            0 | 1 => Command::Put {
                key: k,
                value: v,
                prev_kv: next(2) == 0,
            },
            2 => Command::Delete {
                key: k,
                prev_kv: false,
            },
            3 => Command::DeleteRange {
                start: key(next(3)),
                end: key(3 + next(3)),
            },
            4 => Command::Append { key: k, value: v },
            _ => Command::Txn {
                compares: vec![Compare {
                    key: k.clone(),
                    target: CompareTarget::Version(next(4)),
                    op: CompareOp::Greater,
                }],
                success: vec![Op::Put { key: k, value: v }, Op::Get { key: key(next(6)) }],
                failure: vec![Op::Put {
                    key: key(next(6)),
                    value: b"f".to_vec(),
                }],
            },
        }
    }

    /// The cache changes no answer: state machines without it, with a tiny
    /// one (starting over all the time) and with the default one give the
    /// same replies (versions and create indexes included) and end in the
    /// same state, applying entries one at a time and in runs.
    #[test]
    fn answers_are_the_same_with_and_without_the_cache() {
        let open = |capacity: usize| {
            let mut sm = StateMachine::open(Arc::new(MemEngine::new())).expect("open");
            sm.meta = MetaCache::with_capacity(capacity);
            sm
        };
        let mut machines = [open(0), open(2), open(limits::META_CACHE_KEYS_MAX)];
        let mut x = 0x9e37_79b9_7f4a_7c15;
        let mut index = 0;
        for run in 0..300u64 {
            let len = 1 + run % 5;
            let entries: Vec<Entry> = (0..len)
                .map(|_| {
                    index += 1;
                    Entry {
                        index,
                        term: 1,
                        kind: EntryKind::Normal,
                        data: Request::without_session(command(&mut x)).encode().into(),
                    }
                })
                .collect();
            let mut answers = machines
                .iter_mut()
                .map(|sm| sm.apply_all(&entries).expect("apply"));
            let first = answers.next().expect("three machines");
            for other in answers {
                assert_eq!(other, first, "run {run}");
            }
        }
        let states: Vec<_> = machines
            .iter()
            .map(|sm| sm.scan(b"", b"", 0).expect("scan"))
            .collect();
        assert!(states[0].iter().any(|kv| kv.version > 3), "{:?}", states[0]);
        assert_eq!(states[1], states[0]);
        assert_eq!(states[2], states[0]);
    }
}
