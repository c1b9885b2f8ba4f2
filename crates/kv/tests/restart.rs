//! Restarts never apply an entry twice, over both engines: the applied
//! index is written in the same batch as the data, and replaying the log
//! skips what is already applied.

mod common;

use std::path::Path;
use std::sync::Arc;

use bitcask::{Bitcask, Engine, MemEngine, Options};
use common::{append, put, Driver};
use kv::{Applied, Command, CompareOp, CompareTarget, Op, Request};
use raft::EntryKind;

/// A mixed workload: sessions, appends, a txn, deletes, a no-op and a
/// configuration change.
fn workload<E: Engine>(d: &mut Driver<E>) {
    let c = d.register();
    for seq in 1..=20u64 {
        d.req(c, seq, append(b"log", format!("{seq},").as_bytes()))
            .result
            .unwrap();
        if seq % 4 == 0 {
            d.ok(put(format!("k{seq}").as_bytes(), b"v"));
        }
    }
    d.apply_entry(EntryKind::Normal, Vec::new());
    d.apply_entry(EntryKind::ConfChange, vec![9, 9]);
    d.ok(Command::Txn {
        compares: vec![kv::Compare {
            key: b"k4".to_vec(),
            target: CompareTarget::Version(1),
            op: CompareOp::Eq,
        }],
        success: vec![Op::Delete {
            key: b"k8".to_vec(),
        }],
        failure: Vec::new(),
    });
    // A duplicate of the last seq, as a client retry would send.
    d.req(c, 20, append(b"log", b"20,")).result.unwrap();
}

fn expected_log() -> Vec<u8> {
    (1..=20)
        .map(|s| format!("{s},"))
        .collect::<String>()
        .into_bytes()
}

fn restart_and_replay<E: Engine>(mut d: Driver<E>, reopen: impl Fn() -> Arc<E>) {
    workload(&mut d);
    let before = d.sm.digest().unwrap();
    let applied = d.sm.applied_index();
    d.sm.sync().unwrap();
    let mut d = d.reopened(&reopen);
    assert_eq!(d.sm.applied_index(), applied);
    assert_eq!(d.sm.digest().unwrap(), before);
    // The server replays the whole log it still has: all skipped.
    for entry in d.log.clone() {
        assert_eq!(
            d.sm.apply(&entry).unwrap(),
            Applied::Skipped { index: entry.index }
        );
    }
    assert_eq!(d.value(b"log"), Some(expected_log()), "no append doubled");
    assert_eq!(d.sm.digest().unwrap(), before);
    // And the session table survived: a retry is answered from it.
    let retry = d.req(
        1,
        20,
        append(b"log", b"20,"), // client id 1 registered at index 1
    );
    assert!(retry.result.is_ok());
    assert!(retry.index < applied);
    assert_eq!(d.value(b"log"), Some(expected_log()));
}

/// A node that stopped after applying only part of the log catches up by
/// replaying all of it and ends where a node that never stopped is.
fn partial_then_catch_up<E: Engine>(fresh: impl Fn() -> Arc<E>, reopen: impl Fn() -> Arc<E>) {
    let mut whole = Driver::new(Arc::new(MemEngine::new()));
    workload(&mut whole);
    let want = whole.sm.digest().unwrap();
    for stop_at in [0, 1, 7, 20, whole.log.len() - 1] {
        let mut d = Driver::new(fresh());
        for entry in &whole.log[..stop_at] {
            d.sm.apply(entry).unwrap();
        }
        d.log = whole.log.clone();
        let mut d = d.reopened(&reopen);
        d.replay();
        assert_eq!(d.sm.digest().unwrap(), want, "stopped at {stop_at}");
        assert_eq!(d.value(b"log"), Some(expected_log()));
    }
}

#[test]
fn memengine_restart_never_applies_twice() {
    let engine = Arc::new(MemEngine::new());
    let d = Driver::new(Arc::clone(&engine));
    restart_and_replay(d, || Arc::clone(&engine));
}

#[test]
fn memengine_partial_apply_then_catch_up() {
    // The same engine holds the partial state across the "restart".
    let current = std::sync::Mutex::new(Arc::new(MemEngine::new()));
    partial_then_catch_up(
        || {
            let e = Arc::new(MemEngine::new());
            *current.lock().unwrap() = Arc::clone(&e);
            e
        },
        || Arc::clone(&current.lock().unwrap()),
    );
}

fn open_bitcask(dir: &Path) -> Arc<Bitcask> {
    Arc::new(Bitcask::open(dir, Options::default()).unwrap())
}

#[test]
fn bitcask_restart_never_applies_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = Driver::new(open_bitcask(dir.path()));
    restart_and_replay(d, || open_bitcask(dir.path()));
}

#[test]
fn bitcask_partial_apply_then_catch_up() {
    let root = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicU32::new(0);
    let current = std::sync::Mutex::new(root.path().to_path_buf());
    partial_then_catch_up(
        || {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = root.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            *current.lock().unwrap() = dir.clone();
            open_bitcask(&dir)
        },
        || open_bitcask(&current.lock().unwrap()),
    );
}

#[test]
fn bitcask_and_memengine_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut disk = Driver::new(open_bitcask(dir.path()));
    let mut mem = Driver::new(Arc::new(MemEngine::new()));
    workload(&mut disk);
    workload(&mut mem);
    assert_eq!(disk.sm.digest().unwrap(), mem.sm.digest().unwrap());
    assert_eq!(
        disk.sm.scan(b"", b"", 0).unwrap(),
        mem.sm.scan(b"", b"", 0).unwrap()
    );
}

#[test]
fn a_newer_state_format_is_refused() {
    let engine = Arc::new(MemEngine::new());
    engine.put(&[0x01, b'f'], &[9]).unwrap();
    let err = kv::StateMachine::open(engine).unwrap_err();
    assert!(matches!(
        err,
        kv::FatalError::UnsupportedFormat {
            found: 9,
            supported: 1
        }
    ));
}

#[test]
fn requests_encode_the_same_everywhere() {
    // Pin the encoding: a change here is a format change.
    let r = Request {
        client_id: 300,
        seq: 2,
        command: put(b"k", b"v"),
    };
    assert_eq!(r.encode(), vec![1, 0xac, 0x02, 2, 1, 1, b'k', 1, b'v', 0]);
}

#[test]
fn apply_all_skips_the_applied_prefix_and_refuses_gaps() {
    let mut d = Driver::new(Arc::new(MemEngine::new()));
    workload(&mut d);
    let log = d.log.clone();
    let mut fresh = kv::StateMachine::open(Arc::new(MemEngine::new())).unwrap();
    let first = fresh.apply_all(&log[..10]).unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(fresh.applied_index(), 10);
    // A run overlapping what is applied: the overlap is skipped.
    let again = fresh.apply_all(&log[5..]).unwrap();
    assert!(again[..5]
        .iter()
        .all(|a| matches!(a, Applied::Skipped { .. })));
    assert_eq!(fresh.digest().unwrap(), d.sm.digest().unwrap());
    // A gap inside a run: the entries before it are applied, then an error.
    let mut gappy = kv::StateMachine::open(Arc::new(MemEngine::new())).unwrap();
    let run = vec![log[0].clone(), log[1].clone(), log[3].clone()];
    assert!(matches!(
        gappy.apply_all(&run),
        Err(kv::FatalError::Gap {
            index: 4,
            applied: 2
        })
    ));
    assert_eq!(gappy.applied_index(), 2);
}
