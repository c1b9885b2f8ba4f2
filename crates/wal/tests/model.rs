//! Model-based property test: random sequences of append (with conflicting
//! overwrites), save_hard_state, sync, compact, install_snapshot and reopen
//! (with or without a sync first), checked against a plain model.
//!
//! The model tracks every state the log passed through since the last point
//! where everything was durable. A reopen without sync may lose any suffix
//! of unsynced records, so the reopened WAL must equal one of those states
//! (never anything else); the model then continues from that state.
//!
//! `WAL_MODEL_CASES` sets the number of cases (default 32).

mod common;

use bytes::Bytes;
use common::{entry, open};
use proptest::prelude::*;
use raft::{ConfState, Entry, HardState, Index, Snapshot, SnapshotMeta};
use wal::{Options, Wal};

#[derive(Clone, Debug)]
enum Op {
    /// Append `n` entries starting `back` before the end (0: at the end).
    Append {
        back: u8,
        n: u8,
        size: u16,
    },
    SaveHardState {
        term: u8,
        vote: u8,
        commit: u8,
    },
    Sync,
    /// Compact to `back` entries before the last one.
    Compact {
        back: u8,
    },
    /// Install a snapshot at `last + ahead - 3`, with the log's term at that
    /// index if `matching`, else a new term.
    Install {
        ahead: u8,
        matching: bool,
    },
    Reopen {
        sync_first: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 1u8..8, 0u16..400).prop_map(|(back, n, size)| Op::Append { back, n, size }),
        2 => (0u8..10, 0u8..4, 0u8..50).prop_map(|(term, vote, commit)| Op::SaveHardState { term, vote, commit }),
        3 => Just(Op::Sync),
        1 => (0u8..12).prop_map(|back| Op::Compact { back }),
        1 => (0u8..8, any::<bool>()).prop_map(|(ahead, matching)| Op::Install { ahead, matching }),
        2 => any::<bool>().prop_map(|sync_first| Op::Reopen { sync_first }),
    ]
}

/// What the log holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    snap: SnapshotMeta,
    snap_data: Bytes,
    hs: HardState,
    /// `entries[i]` has index `snap.index + 1 + i`.
    entries: Vec<Entry>,
}

impl State {
    fn last(&self) -> Index {
        self.snap.index + self.entries.len() as Index
    }

    fn term(&self, index: Index) -> Option<u64> {
        if index == self.snap.index {
            return Some(self.snap.term);
        }
        if index < self.snap.index {
            return None;
        }
        self.entries
            .get((index - self.snap.index - 1) as usize)
            .map(|e| e.term)
    }

    fn read(wal: &Wal) -> State {
        let entries = wal
            .entries(wal.first_index(), wal.last_index() + 1, u64::MAX)
            .unwrap();
        let snap = wal.snapshot().unwrap();
        for e in &entries {
            assert_eq!(wal.term(e.index).unwrap(), e.term);
        }
        State {
            snap: snap.meta,
            snap_data: snap.data,
            hs: wal.hard_state(),
            entries,
        }
    }
}

struct Model {
    now: State,
    /// States since everything was last durable; the first is durable.
    since_sync: Vec<State>,
}

impl Model {
    fn record(&mut self) {
        self.since_sync.push(self.now.clone());
    }
    fn durable(&mut self) {
        self.since_sync = vec![self.now.clone()];
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size_max: 2048,
        cache_entries_max: 5,
        cache_bytes_max: 4096,
        ..Options::default()
    };
    let (mut wal, _) = open(dir.path(), opts.clone());
    let empty = State {
        snap: SnapshotMeta::default(),
        snap_data: Bytes::new(),
        hs: HardState::default(),
        entries: Vec::new(),
    };
    let mut m = Model {
        now: empty.clone(),
        since_sync: vec![empty],
    };
    for (step, op) in ops.into_iter().enumerate() {
        let nonce = step as u64 + 1;
        match op {
            Op::Append { back, n, size } => {
                let from = (m.now.last() + 1)
                    .saturating_sub(back as Index)
                    .max(m.now.snap.index + 1);
                let term =
                    m.now.entries.last().map_or(m.now.snap.term, |e| e.term) + u64::from(back > 0);
                let batch: Vec<Entry> = (from..from + n as Index)
                    .map(|i| entry(i, term, nonce, size as usize))
                    .collect();
                wal.append(&batch).unwrap();
                m.now
                    .entries
                    .truncate((from - m.now.snap.index - 1) as usize);
                for e in batch {
                    m.now.entries.push(e);
                    m.record();
                }
            }
            Op::SaveHardState { term, vote, commit } => {
                let hs = HardState {
                    term: term.into(),
                    vote: (vote > 0).then_some(vote.into()),
                    commit: commit.into(),
                };
                wal.save_hard_state(&hs).unwrap();
                m.now.hs = hs;
                m.record();
            }
            Op::Sync => {
                wal.sync().unwrap();
                m.durable();
            }
            Op::Compact { back } => {
                let to = m
                    .now
                    .last()
                    .saturating_sub(back as Index)
                    .max(m.now.snap.index);
                let meta = SnapshotMeta {
                    index: to,
                    term: m.now.term(to).unwrap(),
                    conf: ConfState::with_voters([1, to % 5 + 1]),
                };
                let data = Bytes::from(format!("compact {step}"));
                wal.compact(meta.clone(), data.clone()).unwrap();
                m.now.entries.drain(..(to - m.now.snap.index) as usize);
                m.now.snap = meta;
                m.now.snap_data = data;
                m.durable();
            }
            Op::Install { ahead, matching } => {
                let index = (m.now.last() + ahead as Index).saturating_sub(3);
                let log_term = m.now.term(index);
                let term = match (matching, log_term) {
                    (true, Some(t)) => t,
                    _ => log_term.unwrap_or(m.now.snap.term) + 1,
                };
                let meta = SnapshotMeta {
                    index,
                    term,
                    conf: ConfState::with_voters([1, 2, 3]),
                };
                let data = Bytes::from(format!("install {step}"));
                wal.install_snapshot(Snapshot {
                    meta: meta.clone(),
                    data: data.clone(),
                })
                .unwrap();
                let keep = index >= m.now.snap.index && log_term == Some(term);
                if keep {
                    m.now.entries.drain(..(index - m.now.snap.index) as usize);
                } else {
                    m.now.entries.clear();
                }
                m.now.hs.commit = m.now.hs.commit.max(index);
                m.now.snap = meta;
                m.now.snap_data = data;
                m.durable();
            }
            Op::Reopen { sync_first } => {
                if sync_first {
                    wal.sync().unwrap();
                    m.durable();
                }
                drop(wal);
                let (w, report) = open(dir.path(), opts.clone());
                wal = w;
                assert!(report.repaired.is_none());
                let got = State::read(&wal);
                let Some(pos) = m.since_sync.iter().position(|s| *s == got) else {
                    panic!(
                        "step {step}: reopened state matches no state since the last sync\n got {got:?}\n candidates {:?}",
                        m.since_sync
                    );
                };
                m.now = m.since_sync[pos].clone();
                m.durable();
            }
        }
        assert_eq!(State::read(&wal), m.now, "step {step}");
        assert_eq!(wal.first_index(), m.now.snap.index + 1);
        assert!(wal.durable_index() <= wal.last_index());
    }
}

fn cases() -> u32 {
    std::env::var("WAL_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn wal_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
