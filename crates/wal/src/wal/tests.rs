//! Unit tests that need the WAL's insides (failure injection).

use super::*;
use raft::EntryKind;

fn opts() -> Options {
    Options {
        segment_size_max: 64 * 1024,
        ..Options::default()
    }
}

fn entry(index: Index, term: Term) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: Bytes::from(format!("e{index}t{term}")),
    }
}

#[test]
fn failed_fsync_poisons_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), opts()).unwrap();
    wal.append(&[entry(1, 1)]).unwrap();
    wal.fail_next_sync = true;
    assert!(matches!(wal.sync(), Err(Error::Io { .. })));
    wal.fail_next_sync = false;
    // No retry-and-continue: every later call fails.
    assert!(matches!(wal.sync(), Err(Error::Poisoned(_))));
    assert!(matches!(
        wal.append(&[entry(2, 1)]),
        Err(Error::Poisoned(_))
    ));
    assert!(matches!(
        wal.entries(1, 2, u64::MAX),
        Err(Error::Poisoned(_))
    ));
    assert!(matches!(wal.term(1), Err(Error::Poisoned(_))));
    assert!(wal.is_poisoned());
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_wal, _) = Wal::open(dir.path(), opts()).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), opts()),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn mark_durable_is_clamped_by_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), opts()).unwrap();
    wal.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
        .unwrap();
    let h = wal.sync_handle().unwrap();
    assert_eq!(h.index(), 10);
    // The log is overwritten from 6 while the sync runs.
    wal.append(&[entry(6, 2)]).unwrap();
    let done = std::thread::spawn(move || h.sync())
        .join()
        .unwrap()
        .unwrap();
    wal.mark_durable(done).unwrap();
    assert_eq!(wal.durable_index(), 5);
    wal.sync().unwrap();
    assert_eq!(wal.durable_index(), 6);
}

#[test]
fn sync_handle_survives_rotation_and_compaction_of_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let small = Options {
        segment_size_max: 1024,
        ..Options::default()
    };
    let (mut wal, _) = Wal::open(dir.path(), small.clone()).unwrap();
    wal.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
        .unwrap();
    let h = wal.sync_handle().unwrap();
    let first_segment = wal.active_segment().0.to_path_buf();
    // While the sync is "in flight": rotate many times, compact the
    // handle's segment away.
    wal.append(&(6..=200).map(|i| entry(i, 1)).collect::<Vec<_>>())
        .unwrap();
    wal.compact(
        SnapshotMeta {
            index: 150,
            term: 1,
            conf: ConfState::with_voters([1]),
        },
        Bytes::from("s"),
    )
    .unwrap();
    assert!(!first_segment.exists());
    let done = std::thread::spawn(move || h.sync())
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(done.index(), 5);
    wal.mark_durable(done).unwrap();
    assert_eq!(wal.durable_index(), 200, "compaction synced everything");
    // A stale handle never lowers the durable index nor raises it past
    // the log.
    wal.append(&[entry(201, 1)]).unwrap();
    let h = wal.sync_handle().unwrap();
    wal.append(&[entry(150 + 1, 2)]).unwrap(); // overwrite from 151
    let done = h.sync().unwrap();
    wal.mark_durable(done).unwrap();
    assert_eq!(wal.durable_index(), 150);
    assert_eq!(wal.last_index(), 151);
}
