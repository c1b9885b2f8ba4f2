//! Crash tests: a segment cut at every byte offset of its last records,
//! and single bit flips. (The SIGKILL test is in `sigkill.rs`.)

mod common;

use std::path::{Path, PathBuf};

use common::{entry, open};
use raft::{Entry, HardState, Index};
use wal::{Error, Options, Wal};

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// The state after each synced record: the segment's length then, the last
/// index and the hard state.
#[derive(Clone, Debug)]
struct Checkpoint {
    len: u64,
    last: Index,
    hs: HardState,
}

/// Options for the recorded segment: preallocated to 8 KiB, so everything
/// fits in one segment that ends in zeros.
fn recorded_opts() -> Options {
    Options {
        segment_size_max: 8192,
        ..Options::default()
    }
}

/// Write entries and hard states one record per sync into a single segment
/// and note the written length after each. Returns the entries, checkpoints
/// and the segment's path.
fn write_recorded(dir: &Path, n: u64) -> (Vec<Entry>, Vec<Checkpoint>, PathBuf) {
    let (mut wal, _) = open(dir, recorded_opts());
    let seg = wal.active_segment().0.to_path_buf();
    let len = |w: &Wal| w.active_segment().1;
    let mut written = Vec::new();
    let mut hs = HardState::default();
    let mut cps = vec![Checkpoint {
        len: len(&wal),
        last: 0,
        hs,
    }];
    for i in 1..=n {
        let e = entry(i, 1 + i / 5, i, (i as usize * 13) % 70);
        wal.append(std::slice::from_ref(&e)).unwrap();
        wal.sync().unwrap();
        written.push(e);
        cps.push(Checkpoint {
            len: len(&wal),
            last: i,
            hs,
        });
        if i.is_multiple_of(4) {
            hs = HardState {
                term: 1 + i / 5,
                vote: Some(i % 3 + 1),
                commit: i - 1,
            };
            wal.save_hard_state(&hs).unwrap();
            wal.sync().unwrap();
            cps.push(Checkpoint {
                len: len(&wal),
                last: i,
                hs,
            });
        }
    }
    assert_eq!(segment_files(dir).len(), 1);
    assert_eq!(wal.active_segment().0, seg.as_path());
    (written, cps, seg)
}

/// Open `dir` and check it holds exactly checkpoint `cp` of `written`.
fn check_state(wal: &Wal, written: &[Entry], cp: &Checkpoint, what: &str) {
    assert_eq!(wal.last_index(), cp.last, "{what}");
    assert_eq!(wal.hard_state(), cp.hs, "{what}");
    let got = wal.entries(1, cp.last + 1, u64::MAX).unwrap();
    assert_eq!(got, written[..cp.last as usize].to_vec(), "{what}");
}

#[test]
fn truncation_at_every_offset_of_the_last_records_recovers_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (written, cps, seg) = write_recorded(dir.path(), 24);
    let original = std::fs::read(&seg).unwrap();
    let end = cps[cps.len() - 1].len;
    assert!(original.len() as u64 > end, "the segment is preallocated");
    assert!(original[end as usize..].iter().all(|&b| b == 0));
    // The last five records, and a cut into the header for good measure.
    let from = cps[cps.len() - 6].len;
    let mut cuts: Vec<u64> = (from..=end).collect();
    cuts.push(31);
    for cut in cuts {
        // Two ways a crash leaves the file: cut short (the size did not
        // reach the disk), or full size with zeros where the write did not
        // land (the preallocated blocks).
        for zero_filled in [false, true] {
            let mut bytes = original[..cut as usize].to_vec();
            if zero_filled {
                bytes.resize(original.len(), 0);
            }
            std::fs::write(&seg, &bytes).unwrap();
            let what = format!("cut at {cut}, zero-filled {zero_filled}");
            if cut < 32 {
                // A segment header is written and fsynced before the segment
                // is renamed into place: a cut header is damage.
                assert!(
                    matches!(
                        Wal::open(dir.path(), recorded_opts()),
                        Err(Error::Corrupt { .. })
                    ),
                    "{what}"
                );
                continue;
            }
            let (wal, report) = open(dir.path(), recorded_opts());
            // With zero fill, a record whose missing end was zeros anyway is
            // complete (the same bytes as written).
            let complete = |c: &&Checkpoint| {
                c.len <= cut
                    || (zero_filled
                        && original[cut as usize..c.len as usize]
                            .iter()
                            .all(|&b| b == 0))
            };
            let cp = cps.iter().rev().find(complete).unwrap();
            check_state(&wal, &written, cp, &what);
            match &report.torn_tail {
                None if zero_filled => {}
                None => assert_eq!(
                    cp.len, cut,
                    "{what}: a cut inside a record must be reported"
                ),
                Some(t) => {
                    assert!(cut > cp.len || zero_filled, "{what}");
                    assert_eq!(t.offset, cp.len, "{what}");
                    assert!(t.bytes_dropped <= cut - cp.len, "{what}");
                    assert!(report.to_string().contains("torn tail"), "{report}");
                }
            }
            drop(wal);
            // The cut was made permanent: a second open finds nothing torn.
            let (wal, report) = open(dir.path(), recorded_opts());
            assert!(report.torn_tail.is_none(), "{what}");
            check_state(&wal, &written, cp, &what);
        }
    }
}

#[test]
fn single_bit_flips_are_detected_never_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (written, cps, seg) = write_recorded(dir.path(), 16);
    let original = std::fs::read(&seg).unwrap();
    let last_record = cps[cps.len() - 2].len as usize;
    let before_last = &cps[cps.len() - 2];
    let end = cps[cps.len() - 1].len as usize;
    let mut errors = 0;
    let mut truncated = 0;
    // Every written byte, and a sample of the preallocated zeros after them.
    let bytes_to_flip = (0..end).chain((end..original.len()).step_by(251));
    for byte in bytes_to_flip {
        // Every bit of the header and of the last two records; elsewhere
        // one bit per byte, rotating (so every bit position of the length
        // fields is hit across records); one bit per sampled zero byte.
        let bits: Vec<u32> = if byte >= end {
            vec![(byte % 8) as u32]
        } else if byte < 32 || byte >= cps[cps.len() - 3].len as usize {
            (0..8).collect()
        } else {
            vec![(byte % 8) as u32]
        };
        for bit in bits {
            let mut bytes = original.clone();
            bytes[byte] ^= 1 << bit;
            std::fs::write(&seg, &bytes).unwrap();
            let what = format!("flip byte {byte} bit {bit}");
            match Wal::open(dir.path(), recorded_opts()) {
                Err(Error::Corrupt { offset, .. }) => {
                    assert!(
                        byte < end,
                        "{what}: a flip in unwritten space refused the open"
                    );
                    assert!(offset as usize <= byte, "{what}: reported at {offset}");
                    errors += 1;
                }
                Err(Error::UnsupportedVersion { .. }) => {
                    assert!((8..12).contains(&byte), "{what}");
                    errors += 1;
                }
                Err(e) => panic!("{what}: unexpected error {e}"),
                Ok((wal, report)) if byte >= end => {
                    // Damage in the unwritten zeros loses nothing.
                    check_state(&wal, &written, &cps[cps.len() - 1], &what);
                    assert!(report.torn_tail.is_some(), "{what}");
                }
                Ok((wal, report)) => {
                    // Only a flip in the very last record may pass as a
                    // torn write, and then that record is dropped.
                    assert!(
                        byte >= last_record,
                        "{what}: accepted a damaged file ({report})"
                    );
                    assert!(report.torn_tail.is_some(), "{what}");
                    check_state(&wal, &written, before_last, &what);
                    truncated += 1;
                }
            }
        }
    }
    eprintln!("bit flips: {errors} refused, {truncated} cut as torn tail");
    assert!(errors > 800, "{errors}");
}

#[test]
fn bit_flips_in_an_earlier_segment_always_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let opts = common::small_opts();
    let (mut wal, _) = open(dir.path(), opts.clone());
    let written: Vec<Entry> = (1..=40).map(|i| entry(i, 1, 0, 40)).collect();
    wal.append(&written).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 3);
    let victim = &segs[segs.len() - 2];
    let original = std::fs::read(victim).unwrap();
    for byte in 0..original.len() {
        let bit = (byte * 5 % 8) as u32;
        let mut bytes = original.clone();
        bytes[byte] ^= 1 << bit;
        std::fs::write(victim, &bytes).unwrap();
        match Wal::open(dir.path(), opts.clone()) {
            Err(Error::Corrupt { file, .. }) => assert_eq!(&file, victim),
            Err(Error::UnsupportedVersion { .. }) => assert!((8..12).contains(&byte)),
            other => panic!("flip byte {byte} bit {bit}: {:?}", other.map(|(_, r)| r)),
        }
    }
    std::fs::write(victim, &original).unwrap();
    let (wal, _) = open(dir.path(), opts);
    assert_eq!(wal.entries(1, 41, u64::MAX).unwrap(), written);
}
