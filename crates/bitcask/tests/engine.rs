//! The same engine tests, run against every `Engine`: `MemEngine` and
//! `Bitcask` (with small files, so rotation happens).

use std::ops::Bound;

use bitcask::{Engine, Error, Op, View};
use bytes::Bytes;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn keys(pairs: &[(Bytes, Bytes)]) -> Vec<&[u8]> {
    pairs.iter().map(|(k, _)| k.as_ref()).collect()
}

pub fn put_get_delete<E: Engine>(e: &E) {
    assert_eq!(e.get(b"a").unwrap(), None);
    e.put(b"a", b"1").unwrap();
    e.put(b"b", b"2").unwrap();
    assert_eq!(e.get(b"a").unwrap(), Some(b("1")));
    e.put(b"a", b"3").unwrap();
    assert_eq!(e.get(b"a").unwrap(), Some(b("3")));
    e.delete(b"a").unwrap();
    assert_eq!(e.get(b"a").unwrap(), None);
    e.delete(b"missing").unwrap();
    assert_eq!(e.get(b"b").unwrap(), Some(b("2")));
    // An empty value is a value, not a delete.
    e.put(b"empty", b"").unwrap();
    assert_eq!(e.get(b"empty").unwrap(), Some(Bytes::new()));
    assert_eq!(e.status().unwrap().keys, 2);
}

pub fn batches<E: Engine>(e: &E) {
    e.write_batch(&[
        Op::Put(b("x"), b("1")),
        Op::Put(b("y"), b("2")),
        Op::Delete(b("x")),
        Op::Put(b("z"), b("3")),
    ])
    .unwrap();
    assert_eq!(e.get(b"x").unwrap(), None);
    assert_eq!(e.get(b"y").unwrap(), Some(b("2")));
    assert_eq!(e.get(b"z").unwrap(), Some(b("3")));
    // A bad op anywhere rejects the whole batch.
    let err = e
        .write_batch(&[Op::Put(b("w"), b("1")), Op::Put(Bytes::new(), b("2"))])
        .unwrap_err();
    assert!(matches!(err, Error::EmptyKey), "{err}");
    assert!(!err.is_fatal());
    assert_eq!(e.get(b"w").unwrap(), None);
    e.write_batch(&[]).unwrap();
}

pub fn scans<E: Engine>(e: &E) {
    for k in ["a", "b", "c", "d", "e"] {
        e.put(k.as_bytes(), k.as_bytes()).unwrap();
    }
    let all = e
        .scan(Bound::Unbounded, Bound::Unbounded, usize::MAX)
        .unwrap();
    assert_eq!(keys(&all), vec![&b"a"[..], b"b", b"c", b"d", b"e"]);
    assert_eq!(all[2].1, b("c"));
    let r = e
        .scan(Bound::Included(b"b"), Bound::Excluded(b"d"), 10)
        .unwrap();
    assert_eq!(keys(&r), vec![&b"b"[..], b"c"]);
    let r = e
        .scan(Bound::Excluded(b"b"), Bound::Included(b"d"), 10)
        .unwrap();
    assert_eq!(keys(&r), vec![&b"c"[..], b"d"]);
    let r = e.scan(Bound::Unbounded, Bound::Unbounded, 2).unwrap();
    assert_eq!(keys(&r), vec![&b"a"[..], b"b"]);
    // Empty and inverted ranges are empty, not a panic.
    assert!(e
        .scan(Bound::Excluded(b"c"), Bound::Excluded(b"c"), 10)
        .unwrap()
        .is_empty());
    assert!(e
        .scan(Bound::Included(b"d"), Bound::Included(b"b"), 10)
        .unwrap()
        .is_empty());
    e.delete(b"c").unwrap();
    let all = e
        .scan(Bound::Unbounded, Bound::Unbounded, usize::MAX)
        .unwrap();
    assert_eq!(keys(&all), vec![&b"a"[..], b"b", b"d", b"e"]);
}

pub fn views_are_point_in_time<E: Engine>(e: &E) {
    e.put(b"a", b"1").unwrap();
    e.put(b"b", b"2").unwrap();
    let view = e.view().unwrap();
    e.put(b"a", b"changed").unwrap();
    e.delete(b"b").unwrap();
    e.put(b"c", b"new").unwrap();
    // Enough writes to rotate small files, then a merge that drops the
    // records the view points to.
    for i in 0..200 {
        e.put(format!("k{i:03}").as_bytes(), &[7u8; 100]).unwrap();
    }
    e.merge().unwrap();
    for i in 0..200 {
        e.delete(format!("k{i:03}").as_bytes()).unwrap();
    }
    e.merge().unwrap();
    assert_eq!(view.get(b"a").unwrap(), Some(b("1")));
    assert_eq!(view.get(b"b").unwrap(), Some(b("2")));
    assert_eq!(view.get(b"c").unwrap(), None);
    assert_eq!(view.len(), 2);
    let all: Vec<_> = view.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(all, vec![(b("a"), b("1")), (b("b"), b("2"))]);
    let r = view
        .scan(Bound::Excluded(b"a"), Bound::Unbounded, 10)
        .unwrap();
    assert_eq!(r, vec![(b("b"), b("2"))]);
    assert_eq!(e.get(b"a").unwrap(), Some(b("changed")));
    assert_eq!(e.get(b"b").unwrap(), None);
}

pub fn bad_input<E: Engine>(e: &E) {
    let big_key = vec![1u8; bitcask::limits::key_size_max + 1];
    let err = e.put(&big_key, b"v").unwrap_err();
    assert!(matches!(err, Error::KeyTooLarge { .. }), "{err}");
    let err = e.put(b"", b"v").unwrap_err();
    assert!(matches!(err, Error::EmptyKey), "{err}");
    let err = e.delete(b"").unwrap_err();
    assert!(matches!(err, Error::EmptyKey), "{err}");
    let big_value = vec![1u8; bitcask::limits::value_size_max + 1];
    let err = e.put(b"k", &big_value).unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err}");
    assert!(!err.is_fatal());
    // The engine still works, and nothing was written.
    let max_key = vec![2u8; bitcask::limits::key_size_max];
    e.put(&max_key, b"ok").unwrap();
    assert_eq!(e.get(&max_key).unwrap(), Some(b("ok")));
    assert_eq!(e.status().unwrap().keys, 1);
}

pub fn many_keys_and_status<E: Engine>(e: &E) {
    for i in 0..500u32 {
        e.put(&i.to_be_bytes(), &vec![i as u8; (i % 50) as usize])
            .unwrap();
    }
    for i in (0..500u32).step_by(3) {
        e.delete(&i.to_be_bytes()).unwrap();
    }
    e.sync().unwrap();
    for i in 0..500u32 {
        let want = (i % 3 != 0).then(|| Bytes::from(vec![i as u8; (i % 50) as usize]));
        assert_eq!(e.get(&i.to_be_bytes()).unwrap(), want, "key {i}");
    }
    let status = e.status().unwrap();
    assert_eq!(status.keys, 500 - 167);
    e.merge().unwrap();
    assert_eq!(e.status().unwrap().keys, 500 - 167);
    let all = e
        .scan(Bound::Unbounded, Bound::Unbounded, usize::MAX)
        .unwrap();
    assert_eq!(all.len(), 333);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
}

/// Runs every shared test against fresh engines made by `$make`.
macro_rules! engine_tests {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn put_get_delete() {
                let (e, _guard) = $make;
                super::put_get_delete(&e);
            }
            #[test]
            fn batches() {
                let (e, _guard) = $make;
                super::batches(&e);
            }
            #[test]
            fn scans() {
                let (e, _guard) = $make;
                super::scans(&e);
            }
            #[test]
            fn views_are_point_in_time() {
                let (e, _guard) = $make;
                super::views_are_point_in_time(&e);
            }
            #[test]
            fn bad_input() {
                let (e, _guard) = $make;
                super::bad_input(&e);
            }
            #[test]
            fn many_keys_and_status() {
                let (e, _guard) = $make;
                super::many_keys_and_status(&e);
            }
        }
    };
}

engine_tests!(memory, (bitcask::MemEngine::new(), ()));

fn bitcask_small() -> (bitcask::Bitcask, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let options = bitcask::Options {
        file_size_max: 4096,
    };
    (bitcask::Bitcask::open(dir.path(), options).unwrap(), dir)
}

engine_tests!(on_disk, super::bitcask_small());
