//! Model test: random sequences of puts, deletes, batches, merges, syncs,
//! views and reopens against a `BTreeMap`.

use std::collections::BTreeMap;
use std::ops::Bound;

use bitcask::{Bitcask, BitcaskView, Engine, Op, Options, View};
use bytes::Bytes;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    Put(u8, usize),
    Delete(u8),
    Batch(Vec<(u8, Option<usize>)>),
    Get(u8),
    Scan(u8, u8),
    Merge,
    Sync,
    View,
    Reopen,
}

fn key(k: u8) -> Bytes {
    Bytes::from(format!("key-{k:02}"))
}

fn value(seed: usize) -> Bytes {
    Bytes::from(vec![(seed % 251) as u8; seed % 90])
}

fn action() -> impl Strategy<Value = Action> {
    let k = 0u8..24;
    prop_oneof![
        8 => (k.clone(), any::<usize>()).prop_map(|(k, v)| Action::Put(k, v)),
        3 => k.clone().prop_map(Action::Delete),
        2 => prop::collection::vec((k.clone(), prop::option::of(any::<usize>())), 0..5)
            .prop_map(Action::Batch),
        3 => k.clone().prop_map(Action::Get),
        1 => (k.clone(), k).prop_map(|(a, b)| Action::Scan(a, b)),
        1 => Just(Action::Merge),
        1 => Just(Action::Sync),
        1 => Just(Action::View),
        1 => Just(Action::Reopen),
    ]
}

type Model = BTreeMap<Bytes, Bytes>;

fn model_cases() -> u32 {
    std::env::var("BITCASK_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

fn all(view: &BitcaskView) -> Model {
    view.iter().map(|r| r.unwrap()).collect()
}

proptest! {
    // 64 cases by default (each fsyncs on every rotation, so a busy disk
    // slows it down); BITCASK_MODEL_CASES=N for a longer run.
    #![proptest_config(ProptestConfig { cases: model_cases(), ..ProptestConfig::default() })]

    #[test]
    fn bitcask_behaves_like_a_btreemap(actions in prop::collection::vec(action(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let opts = || Options { file_size_max: 1000 };
        let mut db = Some(Bitcask::open(dir.path(), opts()).unwrap());
        let mut model = Model::new();
        let mut views: Vec<(BitcaskView, Model)> = Vec::new();
        for a in actions {
            let e = db.as_ref().unwrap();
            match a {
                Action::Put(k, v) => {
                    e.put(&key(k), &value(v)).unwrap();
                    model.insert(key(k), value(v));
                }
                Action::Delete(k) => {
                    e.delete(&key(k)).unwrap();
                    model.remove(&key(k));
                }
                Action::Batch(ops) => {
                    let ops: Vec<Op> = ops
                        .into_iter()
                        .map(|(k, v)| match v {
                            Some(v) => Op::Put(key(k), value(v)),
                            None => Op::Delete(key(k)),
                        })
                        .collect();
                    e.write_batch(&ops).unwrap();
                    for op in ops {
                        match op {
                            Op::Put(k, v) => { model.insert(k, v); }
                            Op::Delete(k) => { model.remove(&k); }
                        }
                    }
                }
                Action::Get(k) => prop_assert_eq!(e.get(&key(k)).unwrap(), model.get(&key(k)).cloned()),
                Action::Scan(a, b) => {
                    let (a, b) = (key(a.min(b)), key(a.max(b)));
                    let got = e.scan(Bound::Included(&a[..]), Bound::Excluded(&b[..]), 5).unwrap();
                    let want: Vec<_> = model
                        .range(a..b)
                        .take(5)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    prop_assert_eq!(got, want);
                }
                Action::Merge => {
                    e.merge().unwrap();
                    prop_assert_eq!(e.status().unwrap().dead_bytes, 0);
                }
                Action::Sync => e.sync().unwrap(),
                Action::View => views.push((e.view().unwrap(), model.clone())),
                Action::Reopen => {
                    drop(db.take());
                    db = Some(Bitcask::open(dir.path(), opts()).unwrap());
                }
            }
            let status = db.as_ref().unwrap().status().unwrap();
            prop_assert_eq!(status.keys, model.len() as u64);
        }
        let e = db.as_ref().unwrap();
        let got: Model = e.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).unwrap().into_iter().collect();
        prop_assert_eq!(&got, &model);
        let live: u64 = model.keys().zip(model.values()).map(|(k, v)| 21 + (k.len() + v.len()) as u64).sum();
        prop_assert_eq!(e.status().unwrap().live_bytes, live);
        for (view, want) in &views {
            prop_assert_eq!(&all(view), want);
        }
        drop(db);
        let e = Bitcask::open(dir.path(), opts()).unwrap();
        let got: Model = e.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).unwrap().into_iter().collect();
        prop_assert_eq!(&got, &model);
        prop_assert_eq!(e.status().unwrap().live_bytes, live);
        for (view, want) in &views {
            prop_assert_eq!(&all(view), want);
        }
    }
}
