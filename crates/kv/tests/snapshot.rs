//! Snapshots: point in time, bounded self-checking chunks, restore on an
//! empty or stale node, interrupted and corrupt restores.

mod common;

use std::sync::Arc;

use bitcask::{Bitcask, Engine, MemEngine, Options};
use common::{append, put, Driver};
use kv::{limits, split_chunks, FatalError, StateMachine};

/// Some keys (one large), two sessions with cached responses.
fn populate<E: Engine>(d: &mut Driver<E>) {
    let a = d.register();
    let b = d.register();
    for i in 0..60u64 {
        d.ok(put(format!("key{i:03}").as_bytes(), &[i as u8; 40]));
    }
    d.ok(put(b"big", &vec![1; 5000]));
    d.ok(put(b"\xff\xfe", b"high"));
    d.req(a, 1, append(b"log", b"a")).result.unwrap();
    d.req(b, 7, append(b"log", b"b")).result.unwrap();
    d.ok(kv::Command::Delete {
        key: b"key010".to_vec(),
        prev_kv: false,
    });
}

fn chunks_of<E: Engine>(d: &Driver<E>, size: usize) -> Vec<Vec<u8>> {
    d.sm.reader()
        .snapshot_with_chunk_size(size)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn mem() -> Driver<MemEngine> {
    Driver::new(Arc::new(MemEngine::new()))
}

#[test]
fn restore_on_a_fresh_node_gives_the_same_state() {
    let mut src = mem();
    populate(&mut src);
    let chunks = chunks_of(&src, 512);
    assert!(chunks.len() > 5, "small chunks: {}", chunks.len());
    for c in &chunks {
        // Each holds at least one item and at most the target, except a
        // chunk holding one item larger than it (the 5000-byte value).
        assert!(c.len() <= 512 || c.len() > 5000, "chunk of {}", c.len());
    }
    let mut dst = mem();
    let index = dst.sm.restore(&chunks).unwrap();
    assert_eq!(index, src.sm.applied_index());
    assert_eq!(dst.sm.applied_index(), index);
    assert_eq!(dst.sm.applied_term(), src.sm.applied_term());
    assert_eq!(dst.sm.digest().unwrap(), src.sm.digest().unwrap());
    assert_eq!(
        dst.sm.scan(b"", b"", 0).unwrap(),
        src.sm.scan(b"", b"", 0).unwrap()
    );
    assert_eq!(dst.sm.session_count(), 2);
    // Both go on from the same log and stay identical; a retry to the
    // restored node is answered from the restored session.
    dst.log = src.log.clone();
    for d in [&mut src, &mut dst] {
        let retry = d.req(2, 7, append(b"log", b"b"));
        assert!(retry.result.is_ok());
        d.ok(append(b"log", b"c"));
    }
    assert_eq!(dst.value(b"log"), Some(b"abc".to_vec()));
    assert_eq!(dst.sm.digest().unwrap(), src.sm.digest().unwrap());
    // The restore is durable: reopen and it is all there.
    dst.reopen();
    assert_eq!(dst.sm.digest().unwrap(), src.sm.digest().unwrap());
}

#[test]
fn a_snapshot_is_a_point_in_time() {
    let mut src = mem();
    populate(&mut src);
    let at = src.sm.digest().unwrap();
    let stream = src.sm.reader().snapshot_with_chunk_size(300).unwrap();
    assert_eq!(stream.index(), at.index);
    // Writes after the snapshot was taken do not show in it.
    src.ok(put(b"key000", b"changed"));
    src.ok(kv::Command::DeleteRange {
        start: Vec::new(),
        end: Vec::new(),
    });
    let chunks: Vec<Vec<u8>> = stream.collect::<Result<_, _>>().unwrap();
    let mut dst = mem();
    dst.sm.restore(&chunks).unwrap();
    assert_eq!(dst.sm.digest().unwrap(), at);
    assert_ne!(src.sm.digest().unwrap(), at);
}

#[test]
fn restore_replaces_a_stale_node_and_works_on_bitcask() {
    let mut src = mem();
    populate(&mut src);
    let blob: Vec<u8> = chunks_of(&src, limits::CHUNK_BYTES_MAX).concat();
    let dir = tempfile::tempdir().unwrap();
    let open = || Arc::new(Bitcask::open(dir.path(), Options::default()).unwrap());
    let mut stale = Driver::new(open());
    stale.ok(put(b"only-here", b"x"));
    stale.register();
    stale.ok(put(b"key001", b"old"));
    let chunks: Vec<&[u8]> = split_chunks(&blob).collect::<Result<_, _>>().unwrap();
    assert_eq!(chunks.len(), 1);
    stale.sm.restore(chunks).unwrap();
    assert_eq!(stale.sm.get(b"only-here").unwrap(), None);
    assert_eq!(stale.sm.digest().unwrap(), src.sm.digest().unwrap());
    let stale = stale.reopened(open);
    assert_eq!(stale.sm.digest().unwrap(), src.sm.digest().unwrap());
    assert_eq!(stale.sm.session_count(), 2);
}

#[test]
fn a_snapshot_at_the_applied_index_or_of_nothing_restores() {
    // Index 0: a state machine that applied nothing.
    let src = mem();
    let chunks = chunks_of(&src, 64);
    let mut dst = mem();
    assert_eq!(dst.sm.restore(&chunks).unwrap(), 0);
    assert_eq!(dst.sm.digest().unwrap(), src.sm.digest().unwrap());
    // At the node's own applied index: replaced by the same state.
    let mut src = mem();
    populate(&mut src);
    let chunks = chunks_of(&src, 1000);
    let mut same = mem();
    populate(&mut same);
    assert_eq!(same.sm.restore(&chunks).unwrap(), src.sm.applied_index());
    assert_eq!(same.sm.digest().unwrap(), src.sm.digest().unwrap());
}

#[test]
fn an_empty_state_round_trips() {
    let mut src = mem();
    src.apply_entry(raft::EntryKind::Normal, Vec::new());
    let chunks = chunks_of(&src, 64);
    assert_eq!(chunks.len(), 1);
    let mut dst = mem();
    assert_eq!(dst.sm.restore(&chunks).unwrap(), 1);
    assert_eq!(dst.sm.digest().unwrap(), src.sm.digest().unwrap());
}

#[test]
fn a_corrupt_chunk_leaves_the_restore_pending_until_redone() {
    let mut src = mem();
    populate(&mut src);
    let chunks = chunks_of(&src, 400);
    let engine = Arc::new(MemEngine::new());
    let mut dst = Driver::new(Arc::clone(&engine));
    dst.ok(put(b"before", b"x"));
    let before = dst.sm.digest().unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        for pos in [0, 5, 9, 13, 14, chunk.len() / 2, chunk.len() - 1] {
            let mut bad = chunks.clone();
            bad[i][pos] ^= 0x10;
            let err = dst.sm.restore(&bad).unwrap_err();
            assert!(matches!(err, FatalError::Snapshot(_)), "{err}");
            if i == 0 {
                // The first chunk is checked before anything changes.
                assert_eq!(dst.sm.restore_pending(), None);
                assert_eq!(dst.sm.digest().unwrap(), before);
            } else {
                assert_eq!(dst.sm.restore_pending(), Some(src.sm.applied_index()));
            }
        }
        if i >= 2 {
            break;
        }
    }
    // Pending: no applying, no reading, also after a restart.
    assert!(matches!(
        dst.sm.apply(&common::normal(2, Vec::new())),
        Err(FatalError::RestoreIncomplete { .. })
    ));
    assert!(!dst.sm.get(b"before").unwrap_err().is_deterministic());
    dst.reopen();
    assert_eq!(dst.sm.restore_pending(), Some(src.sm.applied_index()));
    // Redoing it with the good chunks completes it.
    dst.sm.restore(&chunks).unwrap();
    assert_eq!(dst.sm.restore_pending(), None);
    assert_eq!(dst.sm.digest().unwrap(), src.sm.digest().unwrap());
    drop(dst);
    let reopened = StateMachine::open(engine).unwrap();
    assert_eq!(reopened.digest().unwrap(), src.sm.digest().unwrap());
}

#[test]
fn missing_reordered_or_extra_chunks_are_refused() {
    let mut src = mem();
    populate(&mut src);
    let chunks = chunks_of(&src, 400);
    let n = chunks.len();
    assert!(n >= 4);
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("missing last", chunks[..n - 1].to_vec()),
        ("missing middle", [&chunks[..1], &chunks[2..]].concat()),
        ("swapped", {
            let mut c = chunks.clone();
            c.swap(1, 2);
            c
        }),
        ("extra", {
            let mut c = chunks.clone();
            c.push(chunks[n - 1].clone());
            c
        }),
        ("truncated", {
            let mut c = chunks.clone();
            let len = c[1].len();
            c[1].truncate(len - 3);
            c
        }),
    ];
    for (what, bad) in cases {
        let mut dst = mem();
        let err = dst.sm.restore(&bad).unwrap_err();
        assert!(matches!(err, FatalError::Snapshot(_)), "{what}: {err}");
        assert!(dst.sm.restore_pending().is_some(), "{what}");
    }
    // A truncated blob is refused by split_chunks.
    let blob = chunks.concat();
    assert!(split_chunks(&blob[..blob.len() - 1]).any(|c| c.is_err()));
}

#[test]
fn a_snapshot_below_the_applied_index_is_refused_untouched() {
    let mut src = mem();
    populate(&mut src);
    let chunks = chunks_of(&src, limits::CHUNK_BYTES_MAX);
    let mut ahead = mem();
    populate(&mut ahead);
    ahead.ok(put(b"newer", b"x"));
    let before = ahead.sm.digest().unwrap();
    assert!(matches!(
        ahead.sm.restore(&chunks),
        Err(FatalError::Snapshot(_))
    ));
    assert_eq!(ahead.sm.restore_pending(), None);
    assert_eq!(ahead.sm.digest().unwrap(), before);
    assert!(matches!(
        ahead.sm.restore(Vec::<Vec<u8>>::new()),
        Err(FatalError::Snapshot(_))
    ));
}

#[test]
fn garbage_chunks_never_panic() {
    let mut dst = mem();
    for junk in [
        &b""[..],
        b"RKVS",
        b"RKVS\x01\x00\x00\x00\x00\x01\xff\xff\xff\xff",
        &[0u8; 64],
    ] {
        assert!(dst.sm.restore([junk]).is_err());
    }
}

/// A node that wrote a key before restoring a snapshot counts the key's
/// version on from the snapshot's record, not from its own old one (the
/// state machine keeps recent versions in memory).
#[test]
fn versions_after_a_restore_continue_from_the_snapshot() {
    let mut src = mem();
    for i in 0..5 {
        src.ok(put(format!("f{i}").as_bytes(), b"filler"));
    }
    src.ok(put(b"x", b"src"));
    let mut dst = mem();
    for v in [&b"1"[..], b"2", b"3"] {
        dst.ok(put(b"x", v));
    }
    let index = dst.sm.restore(chunks_of(&src, 512)).unwrap();
    assert_eq!(index, src.sm.applied_index());
    // The same next entry on both.
    src.ok(put(b"x", b"again"));
    let entry = src.log.last().unwrap().clone();
    dst.sm.apply(&entry).unwrap();
    let (a, b) = (src.sm.get(b"x").unwrap(), dst.sm.get(b"x").unwrap());
    assert_eq!(a.as_ref().map(|kv| kv.version), Some(2));
    assert_eq!(b, a);
}
