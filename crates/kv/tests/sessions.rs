//! Exactly-once: sessions, duplicates, stale requests, deterministic expiry
//! and eviction, persistence across restarts.

mod common;

use std::sync::Arc;

use bitcask::{Engine, MemEngine};
use common::{append, put, Driver};
use kv::{Command, CommandError, Reply, Request, SessionLimits};
use raft::EntryKind;

fn small(sessions_max: usize, idle_entries_max: u64) -> Driver<MemEngine> {
    Driver::with_limits(
        Arc::new(MemEngine::new()),
        SessionLimits {
            sessions_max,
            idle_entries_max,
        },
    )
}

fn a_duplicate_is_answered_from_the_session_not_applied_again<E: Engine>(mut d: Driver<E>) {
    d.ok(put(b"pad", b"x"));
    let c = d.register();
    assert_eq!(c, 2, "the client id is the registering entry's index");
    let first = d.req(c, 1, append(b"log", b"a"));
    assert_eq!(first.index, 3);
    // The reply was lost; the client retries seq 1 twice.
    let retry = d.req(c, 1, append(b"log", b"a"));
    assert_eq!(retry, first, "same response, original index");
    let retry = d.req(c, 1, append(b"log", b"a"));
    assert_eq!(retry, first);
    assert_eq!(d.value(b"log"), Some(b"a".to_vec()), "Append applied once");
    assert_eq!(d.sm.applied_index(), 5);
    let second = d.req(c, 2, append(b"log", b"b"));
    assert_eq!(
        second.result,
        Ok(Reply::Append {
            value_len: 2,
            version: 2
        })
    );
    assert_eq!(
        d.req(c, 1, append(b"log", b"a")).result,
        Err(CommandError::StaleRequest {
            client_id: c,
            seq: 1,
            last_seq: 2
        })
    );
    assert_eq!(
        d.req(c, 0, append(b"log", b"a")).result,
        Err(CommandError::InvalidSeq { client_id: c })
    );
    // Sequence numbers may skip.
    assert!(d.req(c, 10, append(b"log", b"c")).result.is_ok());
    assert_eq!(d.value(b"log"), Some(b"abc".to_vec()));
}

fn refusals_are_remembered_too<E: Engine>(mut d: Driver<E>) {
    let c = d.register();
    let refused = d.req(c, 1, put(b"", b"v"));
    assert_eq!(refused.result, Err(CommandError::EmptyKey));
    assert_eq!(d.req(c, 1, put(b"k", b"v")), refused);
    assert_eq!(d.value(b"k"), None);
}

fn unknown_sessions_and_bad_registrations_are_refused<E: Engine>(mut d: Driver<E>) {
    assert_eq!(
        d.req(77, 1, put(b"k", b"v")).result,
        Err(CommandError::UnknownSession { client_id: 77 })
    );
    assert_eq!(
        d.req(5, 1, Command::RegisterSession).result,
        Err(CommandError::RegisterWithSession)
    );
    assert_eq!(d.sm.session_count(), 0);
    assert_eq!(d.value(b"k"), None);
    // Without a session the same write applies every time.
    d.ok(append(b"n", b"x"));
    d.ok(append(b"n", b"x"));
    assert_eq!(d.value(b"n"), Some(b"xx".to_vec()));
}

#[test]
fn idle_sessions_expire_by_log_index() {
    let mut d = small(100, 5);
    let idle = d.register(); // 1
    let busy = d.register(); // 2
    for seq in 1..=4 {
        d.req(busy, seq, put(b"k", b"v")).result.unwrap(); // 3..=6
    }
    // Entry 7: `idle` was last used at 1, 6 entries ago: dropped first.
    let r = d.req(idle, 1, put(b"k", b"late"));
    assert_eq!(
        r.result,
        Err(CommandError::UnknownSession { client_id: idle })
    );
    assert_eq!(d.sm.session_count(), 1);
    // `busy` (last used at 6) lives through entry 11 and is gone at 12.
    for _ in 8..=11 {
        d.apply_entry(EntryKind::Normal, Vec::new());
    }
    assert_eq!(d.sm.session_count(), 1);
    assert_eq!(
        d.req(busy, 5, put(b"k", b"v")).result,
        Err(CommandError::UnknownSession { client_id: busy })
    );
    assert_eq!(d.sm.session_count(), 0);
}

#[test]
fn the_least_recently_used_session_is_evicted() {
    let mut d = small(2, 1_000);
    let a = d.register(); // 1
    let b = d.register(); // 2
    d.req(a, 1, put(b"k", b"a")).result.unwrap(); // a used at 3
    let c = d.register(); // 4: evicts b (last used at 2)
    assert_eq!(d.sm.session_count(), 2);
    assert_eq!(
        d.req(b, 1, put(b"k", b"b")).result,
        Err(CommandError::UnknownSession { client_id: b })
    );
    assert!(d.req(a, 2, put(b"k", b"a2")).result.is_ok());
    assert!(d.req(c, 1, put(b"k", b"c")).result.is_ok());
    // Survives a restart: the table is in the engine.
    d.reopen();
    assert_eq!(d.sm.session_count(), 2);
    assert_eq!(d.req(c, 1, put(b"k", b"again")).index, 7);
    assert_eq!(d.value(b"k"), Some(b"c".to_vec()));
}

#[test]
fn expiry_is_the_same_on_every_replica() {
    let entries: Vec<Vec<u8>> = {
        let mut v = Vec::new();
        v.push(Request::without_session(Command::RegisterSession).encode());
        v.push(Request::without_session(Command::RegisterSession).encode());
        for i in 0..40u64 {
            let client = 1 + i % 2 * (i % 7 / 3);
            v.push(
                Request {
                    client_id: client,
                    seq: i + 1,
                    command: append(b"x", &[b'a' + (i % 26) as u8]),
                }
                .encode(),
            );
            if i % 5 == 0 {
                v.push(Request::without_session(Command::RegisterSession).encode());
            }
        }
        v
    };
    let run = |restart_at: usize| {
        let mut d = small(3, 4);
        let mut responses = Vec::new();
        for (i, data) in entries.iter().enumerate() {
            if i == restart_at {
                d.reopen();
            }
            responses.push(d.apply_raw(data.clone()));
        }
        (responses, d.sm.digest().unwrap())
    };
    let (r1, g1) = run(usize::MAX);
    let (r2, g2) = run(17);
    assert_eq!(r1, r2);
    assert_eq!(g1, g2);
    // The run did expire and evict sessions.
    assert!(r1
        .iter()
        .any(|r| matches!(r.result, Err(CommandError::UnknownSession { .. }))));
}

on_both_engines!(
    a_duplicate_is_answered_from_the_session_not_applied_again,
    refusals_are_remembered_too,
    unknown_sessions_and_bad_registrations_are_refused,
);
