//! Every command's effect, metadata and reply, over `MemEngine`.

mod common;

use bitcask::Engine;
use common::{append, put, Driver};
use kv::{
    limits, prefix_end, Applied, Command, CommandError, Compare, CompareOp, CompareTarget,
    KeyValue, Op, OpResult, Reply, ScanPage,
};
use raft::EntryKind;

fn kv(key: &[u8], value: &[u8], create: u64, modi: u64, version: u64) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        value: value.to_vec(),
        create_index: create,
        mod_index: modi,
        version,
    }
}

fn put_keeps_create_index_and_counts_versions<E: Engine>(mut d: Driver<E>) {
    assert_eq!(d.ok(put(b"a", b"1")), Reply::Put { prev: None });
    d.ok(put(b"other", b"x"));
    let r = d.req(
        0,
        0,
        Command::Put {
            key: b"a".to_vec(),
            value: b"2".to_vec(),
            prev_kv: true,
        },
    );
    assert_eq!(r.index, 3);
    assert_eq!(
        r.result,
        Ok(Reply::Put {
            prev: Some(kv(b"a", b"1", 1, 1, 1))
        })
    );
    assert_eq!(d.sm.get(b"a").unwrap(), Some(kv(b"a", b"2", 1, 3, 2)));
    assert_eq!(d.sm.applied_index(), 3);
}

fn delete_then_recreate_starts_over<E: Engine>(mut d: Driver<E>) {
    d.ok(put(b"k", b"v1"));
    d.ok(put(b"k", b"v2"));
    let r = d.ok(Command::Delete {
        key: b"k".to_vec(),
        prev_kv: true,
    });
    assert_eq!(
        r,
        Reply::Delete {
            deleted: true,
            prev: Some(kv(b"k", b"v2", 1, 2, 2))
        }
    );
    assert_eq!(d.sm.get(b"k").unwrap(), None);
    let r = d.ok(Command::Delete {
        key: b"k".to_vec(),
        prev_kv: true,
    });
    assert_eq!(
        r,
        Reply::Delete {
            deleted: false,
            prev: None
        }
    );
    d.ok(put(b"k", b"v3"));
    assert_eq!(d.sm.get(b"k").unwrap(), Some(kv(b"k", b"v3", 5, 5, 1)));
}

fn delete_range_and_prefix<E: Engine>(mut d: Driver<E>) {
    for k in [
        &b"a"[..],
        b"ab",
        b"abc",
        b"ab\xff",
        b"ac",
        b"b",
        b"\xff\xff",
    ] {
        d.ok(put(k, b"v"));
    }
    // Prefix "ab": ab, abc, ab\xff.
    let r = d.ok(Command::DeleteRange {
        start: b"ab".to_vec(),
        end: prefix_end(b"ab"),
    });
    assert_eq!(r, Reply::DeleteRange { deleted: 3 });
    let keys: Vec<Vec<u8>> =
        d.sm.scan(b"", b"", 0)
            .unwrap()
            .into_iter()
            .map(|kv| kv.key)
            .collect();
    assert_eq!(
        keys,
        vec![
            b"a".to_vec(),
            b"ac".to_vec(),
            b"b".to_vec(),
            b"\xff\xff".to_vec()
        ]
    );
    // End exclusive.
    let r = d.ok(Command::DeleteRange {
        start: b"a".to_vec(),
        end: b"b".to_vec(),
    });
    assert_eq!(r, Reply::DeleteRange { deleted: 2 });
    assert!(d.sm.get(b"b").unwrap().is_some());
    // Unbounded end removes the rest, internal keys untouched.
    let r = d.ok(Command::DeleteRange {
        start: Vec::new(),
        end: Vec::new(),
    });
    assert_eq!(r, Reply::DeleteRange { deleted: 2 });
    assert!(d.sm.scan(b"", b"", 0).unwrap().is_empty());
    assert_eq!(d.sm.applied_index(), 10);
    // A reversed range is refused.
    let r = d.req(
        0,
        0,
        Command::DeleteRange {
            start: b"z".to_vec(),
            end: b"a".to_vec(),
        },
    );
    assert_eq!(r.result, Err(CommandError::InvalidRange));
}

fn delete_range_over_the_limit_removes_nothing<E: Engine>(mut d: Driver<E>) {
    let max = limits::DELETE_RANGE_KEYS_MAX;
    let per_txn = limits::OPS_PER_TXN_MAX;
    let mut n = 0;
    while n <= max {
        let ops: Vec<Op> = (n..(n + per_txn).min(max + 1))
            .map(|i| Op::Put {
                key: format!("k{i:06}").into_bytes(),
                value: Vec::new(),
            })
            .collect();
        n += ops.len();
        d.ok(Command::Txn {
            compares: Vec::new(),
            success: ops,
            failure: Vec::new(),
        });
    }
    let range = Command::DeleteRange {
        start: b"k".to_vec(),
        end: b"l".to_vec(),
    };
    let r = d.req(0, 0, range);
    assert_eq!(
        r.result,
        Err(CommandError::RangeTooLarge { max: max as u64 })
    );
    assert!(d.sm.get(b"k000000").unwrap().is_some());
    let r = d.ok(Command::DeleteRange {
        start: b"k".to_vec(),
        end: b"k000100".to_vec(),
    });
    assert_eq!(r, Reply::DeleteRange { deleted: 100 });
}

fn append_creates_then_appends_and_respects_the_limit<E: Engine>(mut d: Driver<E>) {
    assert_eq!(
        d.ok(append(b"log", b"a")),
        Reply::Append {
            value_len: 1,
            version: 1
        }
    );
    assert_eq!(
        d.ok(append(b"log", b"bc")),
        Reply::Append {
            value_len: 3,
            version: 2
        }
    );
    assert_eq!(d.sm.get(b"log").unwrap(), Some(kv(b"log", b"abc", 1, 2, 2)));
    let big = vec![b'x'; limits::VALUE_SIZE_MAX - 2];
    let r = d.req(0, 0, append(b"log", &big));
    assert!(matches!(r.result, Err(CommandError::ValueTooLarge { .. })));
    assert_eq!(d.value(b"log"), Some(b"abc".to_vec()));
    // Exactly at the limit is fine.
    let fits = vec![b'x'; limits::VALUE_SIZE_MAX - 3];
    assert!(d.req(0, 0, append(b"log", &fits)).result.is_ok());
    assert_eq!(
        d.value(b"log").map(|v| v.len()),
        Some(limits::VALUE_SIZE_MAX)
    );
}

fn cmp(key: &[u8], target: CompareTarget, op: CompareOp) -> Compare {
    Compare {
        key: key.to_vec(),
        target,
        op,
    }
}

/// Runs a txn with one compare; returns whether it succeeded.
fn holds<E: Engine>(d: &mut Driver<E>, c: Compare) -> bool {
    match d.ok(Command::Txn {
        compares: vec![c],
        success: Vec::new(),
        failure: Vec::new(),
    }) {
        Reply::Txn { succeeded, results } => {
            assert!(results.is_empty());
            succeeded
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn txn_compare_semantics<E: Engine>(mut d: Driver<E>) {
    use CompareOp::*;
    use CompareTarget::*;
    d.ok(put(b"k", b"m")); // index 1, version 1
    d.ok(put(b"k", b"m")); // index 2, version 2
    let cases: Vec<(CompareTarget, CompareOp, bool)> = vec![
        (Value(b"m".to_vec()), Eq, true),
        (Value(b"m".to_vec()), NotEq, false),
        (Value(b"n".to_vec()), Less, true),
        (Value(b"l".to_vec()), Greater, true),
        (Value(b"m".to_vec()), Less, false),
        (Version(2), Eq, true),
        (Version(3), Less, true),
        (Version(1), Greater, true),
        (Version(2), NotEq, false),
        (ModIndex(2), Eq, true),
        (ModIndex(1), Eq, false),
        (ModIndex(5), Less, true),
        (Exists(true), Eq, true),
        (Exists(false), Eq, false),
        (Exists(false), Greater, true),
    ];
    for (target, op, want) in cases {
        let c = cmp(b"k", target.clone(), op);
        assert_eq!(holds(&mut d, c), want, "{target:?} {op:?} on present key");
    }
    // An absent key: value compares are all false, version and mod index
    // are 0, it does not exist.
    let absent: Vec<(CompareTarget, CompareOp, bool)> = vec![
        (Value(Vec::new()), Eq, false),
        (Value(b"x".to_vec()), NotEq, false),
        (Value(b"x".to_vec()), Less, false),
        (Version(0), Eq, true),
        (ModIndex(0), Eq, true),
        (Version(1), Less, true),
        (Exists(false), Eq, true),
        (Exists(true), NotEq, true),
    ];
    for (target, op, want) in absent {
        let c = cmp(b"nope", target.clone(), op);
        assert_eq!(holds(&mut d, c), want, "{target:?} {op:?} on absent key");
    }
}

fn txn_runs_one_branch_in_order<E: Engine>(mut d: Driver<E>) {
    d.ok(put(b"x", b"1"));
    let txn = |expect: &[u8]| Command::Txn {
        compares: vec![cmp(
            b"x",
            CompareTarget::Value(expect.to_vec()),
            CompareOp::Eq,
        )],
        success: vec![
            Op::Put {
                key: b"x".to_vec(),
                value: b"2".to_vec(),
            },
            Op::Get { key: b"x".to_vec() },
            Op::Put {
                key: b"y".to_vec(),
                value: b"a".to_vec(),
            },
            Op::Put {
                key: b"y".to_vec(),
                value: b"b".to_vec(),
            },
            Op::Delete { key: b"z".to_vec() },
        ],
        failure: vec![Op::Get { key: b"x".to_vec() }],
    };
    // Compare fails: the failure branch reads x.
    let r = d.ok(txn(b"0"));
    assert_eq!(
        r,
        Reply::Txn {
            succeeded: false,
            results: vec![OpResult::Get {
                kv: Some(kv(b"x", b"1", 1, 1, 1))
            }]
        }
    );
    // Compare holds: later ops see earlier ones.
    let r = d.ok(txn(b"1"));
    assert_eq!(
        r,
        Reply::Txn {
            succeeded: true,
            results: vec![
                OpResult::Put,
                OpResult::Get {
                    kv: Some(kv(b"x", b"2", 1, 3, 2))
                },
                OpResult::Put,
                OpResult::Put,
                OpResult::Delete { deleted: false },
            ]
        }
    );
    assert_eq!(d.sm.get(b"y").unwrap(), Some(kv(b"y", b"b", 3, 3, 2)));
}

fn txn_is_all_or_nothing_when_its_response_is_too_large<E: Engine>(mut d: Driver<E>) {
    let big = vec![7u8; limits::VALUE_SIZE_MAX];
    for k in [&b"b1"[..], b"b2", b"b3"] {
        d.ok(put(k, &big));
    }
    let r = d.req(
        0,
        0,
        Command::Txn {
            compares: Vec::new(),
            success: vec![
                Op::Put {
                    key: b"marker".to_vec(),
                    value: b"set".to_vec(),
                },
                Op::Get {
                    key: b"b1".to_vec(),
                },
                Op::Get {
                    key: b"b2".to_vec(),
                },
                Op::Get {
                    key: b"b3".to_vec(),
                },
            ],
            failure: Vec::new(),
        },
    );
    assert!(matches!(
        r.result,
        Err(CommandError::ResponseTooLarge { .. })
    ));
    assert_eq!(d.sm.get(b"marker").unwrap(), None);
    assert_eq!(d.sm.applied_index(), 4);
}

fn bad_entries_give_deterministic_refusals<E: Engine>(mut d: Driver<E>) {
    let r = d.apply_raw(b"\x01garbage".to_vec());
    assert!(matches!(r.result, Err(CommandError::Malformed { .. })));
    assert_eq!(r.index, 1);
    let r = d.apply_raw(vec![0xee]);
    assert!(
        matches!(&r.result, Err(CommandError::Malformed { reason }) if reason.contains("version"))
    );
    let r = d.apply_raw(vec![1; limits::REQUEST_SIZE_MAX + 1]);
    assert!(matches!(
        r.result,
        Err(CommandError::RequestTooLarge { .. })
    ));
    let r = d.req(0, 0, put(b"", b"v"));
    assert_eq!(r.result, Err(CommandError::EmptyKey));
    let r = d.req(0, 0, put(&[1; limits::KEY_SIZE_MAX + 1], b"v"));
    assert!(matches!(r.result, Err(CommandError::KeyTooLarge { .. })));
    let r = d.req(0, 0, put(b"k", &vec![0; limits::VALUE_SIZE_MAX + 1]));
    assert!(matches!(r.result, Err(CommandError::ValueTooLarge { .. })));
    assert_eq!(d.sm.applied_index(), 6);
    assert!(d.sm.scan(b"", b"", 0).unwrap().is_empty());
}

fn noop_and_conf_change_only_advance_the_index<E: Engine>(mut d: Driver<E>) {
    assert_eq!(
        d.apply_entry(EntryKind::Normal, Vec::new()),
        Applied::Empty { index: 1 }
    );
    assert_eq!(
        d.apply_entry(EntryKind::ConfChange, vec![1, 2, 3]),
        Applied::Empty { index: 2 }
    );
    assert_eq!(d.sm.applied_index(), 2);
    d.reopen();
    assert_eq!(d.sm.applied_index(), 2);
}

fn entries_must_come_in_order<E: Engine>(mut d: Driver<E>) {
    d.ok(put(b"a", b"1"));
    let gap = common::normal(5, Vec::new());
    assert!(matches!(
        d.sm.apply(&gap),
        Err(kv::FatalError::Gap {
            index: 5,
            applied: 1
        })
    ));
    let old = d.log[0].clone();
    assert_eq!(d.sm.apply(&old).unwrap(), Applied::Skipped { index: 1 });
}

fn scans_see_only_user_keys_in_order_with_limits<E: Engine>(mut d: Driver<E>) {
    let s = d.register();
    d.req(s, 1, put(b"\xff", b"top")).result.unwrap();
    for k in [&b"b"[..], b"a", b"c\x00", b"c"] {
        d.ok(put(k, b"v"));
    }
    let all = d.sm.scan(b"", b"", 0).unwrap();
    let keys: Vec<&[u8]> = all.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![&b"a"[..], b"b", b"c", b"c\x00", b"\xff"]);
    assert_eq!(d.sm.scan(b"b", b"", 2).unwrap().len(), 2);
    let (page, more) = d.sm.scan_page(b"b", b"", &ScanPage::keys(2)).unwrap();
    assert_eq!(page.len(), 2);
    assert!(more);
    let (page, more) = d.sm.scan_page(b"b", b"", &ScanPage::keys(4)).unwrap();
    assert_eq!(page.len(), 4);
    assert!(!more);
    assert_eq!(d.sm.scan(b"b", b"c", 0).unwrap().len(), 1);
    assert_eq!(d.sm.scan_prefix(b"c", 0).unwrap().len(), 2);
    assert_eq!(d.sm.scan_prefix(b"\xff", 0).unwrap().len(), 1);
    assert!(matches!(
        d.sm.scan(b"z", b"a", 0),
        Err(kv::Error::Command(CommandError::InvalidRange))
    ));
    let e = d.sm.get(b"").unwrap_err();
    assert!(e.is_deterministic());
    // Reads through a reader handle on another thread.
    let reader = d.sm.reader();
    let got = std::thread::spawn(move || reader.get(b"a").unwrap())
        .join()
        .unwrap();
    assert_eq!(got.map(|kv| kv.value), Some(b"v".to_vec()));
}

/// Pages cut by bytes: whole key-values up to the budget, `more` set, the
/// first key always returned; continuing from after the last key reads
/// every key exactly once, across the engine batches.
fn scan_pages_stop_at_their_byte_budget<E: Engine>(mut d: Driver<E>) {
    let value = vec![7u8; 1000];
    // 150 keys: more than two engine batches.
    for i in 0..150u32 {
        d.ok(put(format!("k{i:03}").as_bytes(), &value));
    }
    let item = 4 + 1000 + limits::SCAN_ITEM_OVERHEAD;
    let page = |bytes_max: usize, limit: usize, keys_only: bool| ScanPage {
        limit,
        bytes_max,
        keys_only,
    };
    let (p, more) =
        d.sm.scan_page(b"", b"", &page(3 * item + 10, 0, false))
            .unwrap();
    assert_eq!(p.len(), 3);
    assert!(more);
    // A budget below one key still returns that key.
    let (p, more) = d.sm.scan_page(b"k149", b"", &page(10, 0, false)).unwrap();
    assert_eq!((p.len(), more), (1, false));
    assert_eq!(p[0].value.len(), 1000);
    // Keys only: values dropped and not counted.
    let key_item = 4 + limits::SCAN_ITEM_OVERHEAD;
    let (p, more) =
        d.sm.scan_page(b"", b"", &page(150 * key_item, 0, true))
            .unwrap();
    assert_eq!((p.len(), more), (150, false));
    let (p, more) =
        d.sm.scan_page(b"", b"", &page(150 * key_item - 1, 0, true))
            .unwrap();
    assert_eq!((p.len(), more), (149, true));
    assert!(p.iter().all(|kv| kv.value.is_empty()));
    // Paging by bytes reads every key once, in order.
    let mut seen = Vec::new();
    let mut from = Vec::new();
    loop {
        let (p, more) =
            d.sm.scan_page(&from, b"", &page(7 * item, 0, false))
                .unwrap();
        assert!(p.len() <= 7 && !p.is_empty());
        seen.extend(p.iter().map(|kv| kv.key.clone()));
        if !more {
            break;
        }
        from = p.last().unwrap().key.clone();
        from.push(0);
    }
    let want: Vec<Vec<u8>> = (0..150u32)
        .map(|i| format!("k{i:03}").into_bytes())
        .collect();
    assert_eq!(seen, want);
    // The key limit still applies across batches.
    let (p, more) =
        d.sm.scan_page(b"", b"", &page(usize::MAX, 140, false))
            .unwrap();
    assert_eq!((p.len(), more), (140, true));
    let (p, more) =
        d.sm.scan_page(b"", b"", &page(usize::MAX, 150, false))
            .unwrap();
    assert_eq!((p.len(), more), (150, false));
}

on_both_engines!(
    scan_pages_stop_at_their_byte_budget,
    txn_compare_semantics,
    put_keeps_create_index_and_counts_versions,
    delete_then_recreate_starts_over,
    delete_range_and_prefix,
    delete_range_over_the_limit_removes_nothing,
    append_creates_then_appends_and_respects_the_limit,
    txn_runs_one_branch_in_order,
    txn_is_all_or_nothing_when_its_response_is_too_large,
    bad_entries_give_deterministic_refusals,
    noop_and_conf_change_only_advance_the_index,
    entries_must_come_in_order,
    scans_see_only_user_keys_in_order_with_limits,
);
