//! One log-store test suite, run against `raft::MemStore` (the reference
//! model) and against `Wal` with several option sets. Each case gets a
//! fresh store and a `reopen` hook: for `MemStore` a crash after sync
//! (`MemStore::crash`), for `Wal` dropping it and opening the directory
//! again. Also: bad input and corruption cases specific to the WAL.

mod common;

use bytes::Bytes;
use common::{entry, open, small_opts};
use raft::{
    ConfState, Entry, HardState, Index, LogStore, MemStore, Snapshot, SnapshotMeta, StorageError,
};
use wal::{Error, Options, Wal};

/// A store under test, object-safe so one case function serves all stores.
trait DynHarness {
    fn s(&mut self) -> &mut dyn LogStore;
    /// Simulate a restart. Callers sync first when they expect everything.
    fn restart(&mut self);
}

struct Mem(MemStore);

impl DynHarness for Mem {
    fn s(&mut self) -> &mut dyn LogStore {
        &mut self.0
    }
    fn restart(&mut self) {
        self.0.crash();
    }
}

struct Disk {
    dir: tempfile::TempDir,
    opts: Options,
    wal: Option<Wal>,
}

impl Disk {
    fn new(opts: Options) -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path(), opts.clone());
        Disk {
            dir,
            opts,
            wal: Some(wal),
        }
    }
}

impl DynHarness for Disk {
    fn s(&mut self) -> &mut dyn LogStore {
        self.wal.as_mut().unwrap()
    }
    fn restart(&mut self) {
        drop(self.wal.take());
        let (wal, report) = open(self.dir.path(), self.opts.clone());
        assert!(
            report.torn_tail.is_none() && report.repaired.is_none(),
            "{report}"
        );
        self.wal = Some(wal);
    }
}

fn all(s: &dyn LogStore) -> Vec<Entry> {
    let (lo, hi) = (s.first_index(), s.last_index() + 1);
    s.entries(lo, hi, u64::MAX).unwrap()
}

fn ents(lo: Index, hi: Index, term: u64, nonce: u64) -> Vec<Entry> {
    (lo..=hi)
        .map(|i| entry(i, term, nonce, 20 + (i as usize * 37) % 200))
        .collect()
}

fn meta(index: Index, term: u64, voters: &[u64]) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term,
        conf: ConfState::with_voters(voters.iter().copied()),
    }
}

// ---- the cases -------------------------------------------------------------

fn case_empty(h: &mut dyn DynHarness) {
    let s = h.s();
    assert_eq!((s.first_index(), s.last_index()), (1, 0));
    assert_eq!(s.term(0).unwrap(), 0);
    assert!(matches!(
        s.term(1),
        Err(StorageError::Unavailable {
            index: 1,
            last_index: 0
        })
    ));
    assert_eq!(s.entries(1, 1, u64::MAX).unwrap(), vec![]);
    assert!(matches!(
        s.entries(1, 2, u64::MAX),
        Err(StorageError::Unavailable { .. })
    ));
    let (hs, conf) = s.initial_state().unwrap();
    assert_eq!((hs, conf), (HardState::default(), ConfState::default()));
    h.restart();
    assert_eq!((h.s().first_index(), h.s().last_index()), (1, 0));
}

fn case_append_read_reopen(h: &mut dyn DynHarness) {
    let written = ents(1, 60, 1, 0);
    for chunk in written.chunks(7) {
        h.s().append(chunk).unwrap();
    }
    h.s().sync().unwrap();
    for round in 0..2 {
        let s = h.s();
        assert_eq!((s.first_index(), s.last_index()), (1, 60), "round {round}");
        assert_eq!(all(s), written);
        assert_eq!(s.term(60).unwrap(), 1);
        assert_eq!(
            s.entries(10, 20, u64::MAX).unwrap(),
            written[9..19].to_vec()
        );
        // max_bytes: at least one entry, then as many as fit.
        assert_eq!(s.entries(10, 20, 0).unwrap(), written[9..10].to_vec());
        let budget = written[9].size() + written[10].size();
        assert_eq!(s.entries(10, 20, budget).unwrap(), written[9..11].to_vec());
        assert_eq!(
            s.entries(10, 20, budget - 1).unwrap(),
            written[9..10].to_vec()
        );
        assert!(matches!(
            s.entries(10, 62, u64::MAX),
            Err(StorageError::Unavailable { .. })
        ));
        h.restart();
    }
}

fn case_overwrite_conflicting_suffix(h: &mut dyn DynHarness) {
    h.s().append(&ents(1, 30, 1, 0)).unwrap();
    h.s().sync().unwrap();
    // A new leader's log diverges from index 21.
    h.s().append(&ents(21, 25, 2, 1)).unwrap();
    assert_eq!(h.s().last_index(), 25);
    h.s().sync().unwrap();
    let mut want = ents(1, 20, 1, 0);
    want.extend(ents(21, 25, 2, 1));
    assert_eq!(all(h.s()), want);
    h.restart();
    assert_eq!(all(h.s()), want);
    // Overwrite again, further back, then extend past the old end.
    h.s().append(&ents(5, 40, 3, 2)).unwrap();
    h.s().sync().unwrap();
    h.restart();
    let mut want = ents(1, 4, 1, 0);
    want.extend(ents(5, 40, 3, 2));
    assert_eq!(all(h.s()), want);
}

fn case_contract_violations(h: &mut dyn DynHarness) {
    h.s().append(&ents(1, 5, 1, 0)).unwrap();
    // A hole.
    assert!(matches!(
        h.s().append(&ents(7, 8, 1, 0)),
        Err(StorageError::Invalid(_))
    ));
    // Not contiguous.
    let mut gap = ents(6, 6, 1, 0);
    gap.push(entry(8, 1, 0, 10));
    assert!(matches!(h.s().append(&gap), Err(StorageError::Invalid(_))));
    h.s().sync().unwrap();
    h.s().compact(meta(3, 1, &[1]), Bytes::from("s")).unwrap();
    // At or below the snapshot.
    assert!(matches!(
        h.s().append(&ents(3, 4, 2, 0)),
        Err(StorageError::Invalid(_))
    ));
    // Compacting backwards or past the end.
    assert!(matches!(
        h.s().compact(meta(2, 1, &[1]), Bytes::new()),
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        h.s().compact(meta(9, 1, &[1]), Bytes::new()),
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(all(h.s()), ents(4, 5, 1, 0));
}

fn case_hard_state(h: &mut dyn DynHarness) {
    let hs = HardState {
        term: 7,
        vote: Some(3),
        commit: 0,
    };
    h.s().save_hard_state(&hs).unwrap();
    h.s().append(&ents(1, 3, 7, 0)).unwrap();
    let hs2 = HardState { commit: 2, ..hs };
    h.s().save_hard_state(&hs2).unwrap();
    h.s().sync().unwrap();
    h.restart();
    assert_eq!(h.s().initial_state().unwrap().0, hs2);
    let hs3 = HardState {
        term: 8,
        vote: None,
        commit: 3,
    };
    h.s().save_hard_state(&hs3).unwrap();
    h.s().sync().unwrap();
    h.restart();
    assert_eq!(h.s().initial_state().unwrap().0, hs3);
}

fn case_compact(h: &mut dyn DynHarness) {
    let written = ents(1, 80, 1, 0);
    h.s().append(&written).unwrap();
    h.s().sync().unwrap();
    let m = meta(50, 1, &[1, 2, 3]);
    h.s()
        .compact(m.clone(), Bytes::from("state at 50"))
        .unwrap();
    for round in 0..2 {
        let s = h.s();
        assert_eq!((s.first_index(), s.last_index()), (51, 80), "round {round}");
        assert_eq!(s.term(50).unwrap(), 1);
        assert!(matches!(
            s.term(49),
            Err(StorageError::Compacted {
                index: 49,
                first_index: 51
            })
        ));
        assert!(matches!(
            s.entries(50, 60, u64::MAX),
            Err(StorageError::Compacted { .. })
        ));
        assert_eq!(all(s), written[50..].to_vec());
        assert_eq!(s.snapshot_meta(), m);
        let snap = s.snapshot().unwrap();
        assert_eq!(
            (snap.meta, snap.data),
            (m.clone(), Bytes::from("state at 50"))
        );
        assert_eq!(s.initial_state().unwrap().1, m.conf);
        h.restart();
    }
    // Compact everything; the log goes on after it.
    h.s()
        .compact(meta(80, 1, &[1, 2]), Bytes::from("80"))
        .unwrap();
    assert_eq!((h.s().first_index(), h.s().last_index()), (81, 80));
    h.s().append(&ents(81, 90, 2, 0)).unwrap();
    h.s().sync().unwrap();
    h.restart();
    assert_eq!(all(h.s()), ents(81, 90, 2, 0));
    assert_eq!(h.s().snapshot().unwrap().data, Bytes::from("80"));
}

fn case_install_snapshot(h: &mut dyn DynHarness) {
    // A snapshot the log does not match drops the whole log.
    h.s().append(&ents(1, 10, 1, 0)).unwrap();
    h.s().sync().unwrap();
    let m = meta(20, 3, &[1, 2, 3]);
    h.s()
        .install_snapshot(Snapshot {
            meta: m.clone(),
            data: Bytes::from("twenty"),
        })
        .unwrap();
    h.restart();
    let s = h.s();
    assert_eq!((s.first_index(), s.last_index()), (21, 20));
    assert_eq!(s.initial_state().unwrap().0.commit, 20);
    assert_eq!(s.snapshot().unwrap().data, Bytes::from("twenty"));
    assert_eq!(s.term(20).unwrap(), 3);
    // A snapshot the log matches keeps the entries after it.
    s.append(&ents(21, 40, 3, 0)).unwrap();
    s.sync().unwrap();
    s.install_snapshot(Snapshot {
        meta: meta(30, 3, &[1, 2]),
        data: Bytes::from("thirty"),
    })
    .unwrap();
    h.restart();
    assert_eq!(all(h.s()), ents(31, 40, 3, 0));
    // Same index, other term: the log goes.
    h.s()
        .install_snapshot(Snapshot {
            meta: meta(35, 4, &[1, 2]),
            data: Bytes::from("35"),
        })
        .unwrap();
    h.restart();
    assert_eq!((h.s().first_index(), h.s().last_index()), (36, 35));
}

fn case_bootstrap_conf(h: &mut dyn DynHarness) {
    // The way to give a fresh node its first configuration: a snapshot at 0.
    let m = meta(0, 0, &[1, 2, 3]);
    h.s().compact(m.clone(), Bytes::new()).unwrap();
    h.restart();
    assert_eq!(h.s().initial_state().unwrap().1, m.conf);
    assert_eq!((h.s().first_index(), h.s().last_index()), (1, 0));
    h.s().append(&ents(1, 3, 1, 0)).unwrap();
    h.s().sync().unwrap();
    h.restart();
    assert_eq!(all(h.s()), ents(1, 3, 1, 0));
}

fn case_long_run(h: &mut dyn DynHarness) {
    // Many appends, overwrites and compactions across many segments.
    let mut model: Vec<Entry> = Vec::new();
    let mut first = 1;
    let mut rng = common::Rng(42);
    for step in 0..200u64 {
        let last = first - 1 + model.len() as Index;
        let from = if step % 9 == 8 && last >= first {
            last - rng.below(last - first + 1)
        } else {
            last + 1
        };
        let n = 1 + rng.below(8);
        let batch: Vec<Entry> = (from..from + n)
            .map(|i| entry(i, step, step, rng.below(300) as usize))
            .collect();
        h.s().append(&batch).unwrap();
        model.truncate((from - first) as usize);
        model.extend(batch);
        if step.is_multiple_of(5) {
            h.s().sync().unwrap();
        }
        if step % 40 == 39 {
            let last = first - 1 + model.len() as Index;
            let to = last - rng.below(10).min(last - first + 1);
            let term = h.s().term(to).unwrap();
            h.s()
                .compact(meta(to, term, &[1]), Bytes::from(vec![step as u8; 100]))
                .unwrap();
            model.drain(..(to + 1 - first) as usize);
            first = to + 1;
        }
        if step % 50 == 49 {
            h.s().sync().unwrap();
            h.restart();
        }
        assert_eq!(all(h.s()), model, "step {step}");
    }
}

type Case = fn(&mut dyn DynHarness);

const CASES: &[(&str, Case)] = &[
    ("empty", case_empty),
    ("append_read_reopen", case_append_read_reopen),
    (
        "overwrite_conflicting_suffix",
        case_overwrite_conflicting_suffix,
    ),
    ("contract_violations", case_contract_violations),
    ("hard_state", case_hard_state),
    ("compact", case_compact),
    ("install_snapshot", case_install_snapshot),
    ("bootstrap_conf", case_bootstrap_conf),
    ("long_run", case_long_run),
];

#[test]
fn suite_memstore() {
    for (name, case) in CASES {
        eprintln!("memstore: {name}");
        case(&mut Mem(MemStore::new()));
    }
}

fn wal_option_sets() -> Vec<Options> {
    vec![
        common::test_opts(),
        small_opts(),
        Options {
            cache_entries_max: 0,
            cache_bytes_max: 0,
            ..small_opts()
        },
    ]
}

#[test]
fn suite_wal() {
    for opts in wal_option_sets() {
        for (name, case) in CASES {
            eprintln!("wal {opts:?}: {name}");
            case(&mut Disk::new(opts.clone()));
        }
    }
}

// ---- WAL-specific behaviour and bad input ---------------------------------

#[test]
fn small_segments_rotate_and_compaction_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), small_opts());
    wal.append(&ents(1, 200, 1, 0)).unwrap();
    wal.sync().unwrap();
    let before = wal.segment_count();
    assert!(before > 10, "{before} segments");
    wal.compact(meta(190, 1, &[1]), Bytes::from("x")).unwrap();
    assert!(
        wal.segment_count() < 4,
        "{} segments left",
        wal.segment_count()
    );
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(
        files,
        wal.segment_count() + 2,
        "segments + LOCK + one snapshot file"
    );
    assert_eq!(
        wal.entries(191, 201, u64::MAX).unwrap(),
        ents(191, 200, 1, 0)
    );
    drop(wal);
    let (wal, report) = open(dir.path(), small_opts());
    assert_eq!((report.first_index, report.last_index), (191, 200));
    assert_eq!(
        wal.entries(191, 201, u64::MAX).unwrap(),
        ents(191, 200, 1, 0)
    );
}

#[test]
fn reading_a_compacted_index_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), small_opts());
    wal.append(&ents(1, 20, 1, 0)).unwrap();
    wal.compact(meta(10, 1, &[1]), Bytes::new()).unwrap();
    assert!(matches!(
        wal.entries(5, 12, u64::MAX),
        Err(Error::Compacted {
            index: 5,
            first_index: 11
        })
    ));
    assert!(matches!(
        wal.term(9),
        Err(Error::Compacted { index: 9, .. })
    ));
    assert!(matches!(
        LogStore::entries(&wal, 10, 12, u64::MAX),
        Err(StorageError::Compacted {
            index: 10,
            first_index: 11
        })
    ));
    assert!(matches!(
        wal.term(21),
        Err(Error::Unavailable {
            index: 21,
            last_index: 20
        })
    ));
}

#[test]
fn oversize_entry_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), common::test_opts());
    wal.append(&ents(1, 3, 1, 0)).unwrap();
    let big = Entry {
        data: Bytes::from(vec![0u8; wal::limits::ENTRY_DATA_SIZE_MAX as usize + 1]),
        ..entry(5, 1, 0, 0)
    };
    let batch = vec![entry(4, 1, 0, 10), big];
    match wal.append(&batch) {
        Err(Error::EntryTooLarge {
            index: 5,
            size,
            max,
        }) => assert!(size > max),
        other => panic!("expected EntryTooLarge, got {other:?}"),
    }
    assert!(matches!(
        LogStore::append(&mut wal, &batch),
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(wal.last_index(), 3);
    assert!(!wal.is_poisoned());
    // The largest allowed entry goes through and reads back.
    let max = Entry {
        data: Bytes::from(vec![9u8; wal::limits::ENTRY_DATA_SIZE_MAX as usize]),
        ..entry(4, 1, 0, 0)
    };
    wal.append(std::slice::from_ref(&max)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (wal, _) = open(dir.path(), common::test_opts());
    assert_eq!(wal.entries(4, 5, u64::MAX).unwrap(), vec![max]);
}

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

#[test]
fn newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), common::test_opts());
    wal.append(&ents(1, 3, 1, 0)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let seg = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(seg).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(seg, &bytes).unwrap();
    for repair in [false, true] {
        match Wal::open(
            dir.path(),
            Options {
                repair,
                ..Options::default()
            },
        ) {
            Err(Error::UnsupportedVersion {
                file,
                found: 2,
                supported: 1,
            }) => assert_eq!(&file, seg),
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
    }
}

#[test]
fn newer_snapshot_file_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), common::test_opts());
    wal.append(&ents(1, 3, 1, 0)).unwrap();
    wal.compact(meta(2, 1, &[1]), Bytes::from("snap")).unwrap();
    drop(wal);
    let snap = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .unwrap();
    let mut bytes = std::fs::read(&snap).unwrap();
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&snap, &bytes).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), common::test_opts()),
        Err(Error::UnsupportedVersion { found: 3, .. })
    ));
}

#[test]
fn damaged_snapshot_data_is_an_error_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), common::test_opts());
    wal.append(&ents(1, 3, 1, 0)).unwrap();
    wal.compact(meta(2, 1, &[1]), Bytes::from("snapshot data"))
        .unwrap();
    drop(wal);
    let snap = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .unwrap();
    let mut bytes = std::fs::read(&snap).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x04;
    std::fs::write(&snap, &bytes).unwrap();
    let (wal, _) = open(dir.path(), common::test_opts());
    assert!(matches!(wal.snapshot(), Err(Error::Corrupt { .. })));
}

#[test]
fn damage_in_an_earlier_segment_refuses_open_and_repair_cuts_there() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), small_opts());
    wal.append(&ents(1, 100, 1, 0)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let segs = segment_files(dir.path());
    assert!(segs.len() > 5);
    let victim = &segs[2];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = 32 + 9 + 3; // inside the first record's payload
    bytes[at] ^= 0x20;
    std::fs::write(victim, &bytes).unwrap();
    match Wal::open(dir.path(), small_opts()) {
        Err(Error::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(&file, victim);
            assert_eq!(offset, 32, "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let (wal, report) = open(
        dir.path(),
        Options {
            repair: true,
            ..small_opts()
        },
    );
    let cut = report.repaired.clone().expect("repair reported");
    assert_eq!((&cut.file, cut.offset), (victim, 32));
    assert_eq!(cut.segments_deleted.len(), segs.len() - 3);
    assert!(report.to_string().contains("REPAIRED"), "{report}");
    let last = wal.last_index();
    assert!(last > 0 && last < 100);
    assert_eq!(
        wal.entries(1, last + 1, u64::MAX).unwrap(),
        ents(1, last, 1, 0)
    );
    drop(wal);
    // The repaired directory opens cleanly from now on.
    let (wal, report) = open(dir.path(), small_opts());
    assert!(report.repaired.is_none() && report.torn_tail.is_none());
    assert_eq!(wal.last_index(), last);
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), small_opts());
    wal.append(&ents(1, 60, 1, 0)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let segs = segment_files(dir.path());
    std::fs::remove_file(&segs[1]).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), small_opts()),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size_max: 10,
        ..Options::default()
    };
    assert!(matches!(
        Wal::open(dir.path(), opts),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn state_records_survive_compaction_after_a_crash_right_after_rotation() {
    // A crash right after a rotation leaves the new segment with only its
    // header: the copies of the hard state and snapshot records that start
    // every segment never reached the disk. Compaction then must not delete
    // the segments holding the originals without copying them first.
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), small_opts());
    let hs = HardState {
        term: 3,
        vote: Some(2),
        commit: 1,
    };
    wal.compact(meta(0, 0, &[1, 2, 3]), Bytes::from("boot"))
        .unwrap();
    wal.save_hard_state(&hs).unwrap();
    let before = wal.segment_count();
    let mut next = 1;
    while wal.segment_count() == before {
        wal.append(&ents(next, next, 3, 0)).unwrap();
        next += 1;
    }
    drop(wal); // no sync: the new segment holds only its header
    let (mut wal, _) = open(dir.path(), small_opts());
    assert!(wal.segment_count() >= 2);
    let last = wal.last_index();
    let term = wal.term(last).unwrap();
    wal.compact(meta(last, term, &[1, 2, 3]), Bytes::from("later"))
        .unwrap();
    assert_eq!(wal.segment_count(), 1);
    drop(wal);
    let (wal, _) = open(dir.path(), small_opts());
    assert_eq!(wal.hard_state(), hs);
    assert_eq!(wal.snapshot_meta(), meta(last, term, &[1, 2, 3]));
}
