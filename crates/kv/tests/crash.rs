//! Crash consistency over Bitcask: cut the engine's data file at every
//! byte offset of its tail (a torn write) and reopen. The state machine
//! must come back at some applied index X with exactly the state of a
//! replica that applied entries 1..=X, and replaying the log must bring it
//! to the full state. This holds because every entry's writes and its
//! applied index are one atomic engine batch.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitcask::{Bitcask, MemEngine, Options};
use common::{append, put, Driver};
use kv::{Command, StateMachine};
use raft::Entry;

fn open(dir: &Path) -> Arc<Bitcask> {
    Arc::new(Bitcask::open(dir, Options::default()).unwrap())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
}

fn last_data_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    files.sort();
    files.pop().expect("a data file")
}

/// The digest after applying `log[..n]` on a fresh in-memory replica.
fn digest_at(log: &[Entry], n: usize) -> kv::StateDigest {
    let mut sm = StateMachine::open(Arc::new(MemEngine::new())).unwrap();
    sm.apply_all(&log[..n]).unwrap();
    sm.digest().unwrap()
}

#[test]
fn a_torn_tail_leaves_a_consistent_prefix() {
    // tmpfs when there is one: the test reopens the engine hundreds of
    // times and fsyncs on disk would dominate.
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let dir = root.path().join("node");
    std::fs::create_dir_all(&dir).unwrap();
    let mut d = Driver::new(open(&dir));
    let c = d.register();
    for seq in 1..=12u64 {
        d.req(c, seq, append(b"log", &[b'a' + seq as u8]))
            .result
            .unwrap();
        d.ok(put(format!("k{}", seq % 4).as_bytes(), &[seq as u8; 30]));
        if seq % 5 == 0 {
            d.ok(Command::DeleteRange {
                start: b"k".to_vec(),
                end: b"k2".to_vec(),
            });
        }
    }
    d.sm.sync().unwrap();
    let log = d.log.clone();
    let full = d.sm.digest().unwrap();
    drop(d);
    let expected: Vec<kv::StateDigest> = (0..=log.len()).map(|n| digest_at(&log, n)).collect();

    let file = last_data_file(&dir);
    let len = std::fs::metadata(&file).unwrap().len();
    let name = file.file_name().unwrap().to_owned();
    let mut seen = std::collections::BTreeSet::new();
    // Every offset past the data file's header (a file cut inside its
    // header is refused by the engine, not our concern here).
    const FILE_HEADER_MAX: u64 = 64;
    let offsets = FILE_HEADER_MAX..len;
    for (i, cut) in offsets.enumerate() {
        let copy = root.path().join(format!("cut{i}"));
        copy_dir(&dir, &copy);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(copy.join(&name))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let engine = match Bitcask::open(&copy, Options::default()) {
            Ok(e) => Arc::new(e),
            Err(e) => panic!("reopen after cut at {cut} of {len}: {e}"),
        };
        let mut sm = StateMachine::open(engine).unwrap();
        let x = sm.applied_index() as usize;
        assert_eq!(
            sm.digest().unwrap(),
            expected[x],
            "cut at {cut} of {len}: state is not that of entries 1..={x}"
        );
        seen.insert(x);
        sm.apply_all(&log).unwrap();
        assert_eq!(sm.digest().unwrap(), full, "cut at {cut}: replay");
        assert_eq!(
            sm.get(b"log").unwrap().map(|kv| kv.value.len()),
            Some(12),
            "cut at {cut}: an append was applied twice or lost"
        );
        drop(sm);
        std::fs::remove_dir_all(&copy).unwrap();
    }
    // The cuts landed between many different entries.
    assert!(seen.len() > 10, "applied indexes seen: {seen:?}");
}
