//! A writer process killed with SIGKILL at random moments: every index it
//! reported durable is there after reopening, with the right contents.
//!
//! The test binary runs itself as the child (`current_exe()` with an env
//! var and the test's name as filter). It lives alone in this binary: a
//! child forked while another test holds the WAL's lock file open would
//! briefly share that lock.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{entry, open, Rng};
use raft::{Entry, Index};
use wal::Options;

const CHILD_ENV: &str = "WAL_SIGKILL_CHILD_DIR";
const ENTRY_SIZE: usize = 100;

fn kill_entry(index: Index) -> Entry {
    entry(index, 1, 0xfeed, ENTRY_SIZE)
}

/// The child: append and sync forever, printing each durable index. It
/// alternates between `sync` and a `SyncHandle` run on another thread,
/// and compacts now and then, so kills land in rotations and deletions too.
fn child(dir: &Path) -> ! {
    let opts = Options {
        segment_size_max: 16 * 1024,
        ..Options::default()
    };
    let (mut wal, report) = open(dir, opts);
    println!("opened {}", report.last_index);
    let mut rng = Rng(std::process::id() as u64 | 1);
    let mut round = 0u64;
    loop {
        round += 1;
        let next = wal.last_index() + 1;
        let n = 1 + rng.below(64);
        let batch: Vec<Entry> = (next..next + n).map(kill_entry).collect();
        wal.append(&batch).unwrap();
        if round.is_multiple_of(2) {
            wal.sync().unwrap();
        } else {
            let h = wal.sync_handle().unwrap();
            let done = std::thread::spawn(move || h.sync())
                .join()
                .unwrap()
                .unwrap();
            wal.mark_durable(done).unwrap();
        }
        println!("durable {}", wal.durable_index());
        if round.is_multiple_of(50) {
            let to = wal.durable_index().saturating_sub(500);
            if to > wal.snapshot_meta().index {
                let meta = raft::SnapshotMeta {
                    index: to,
                    term: 1,
                    conf: raft::ConfState::with_voters([1]),
                };
                wal.compact(meta, bytes::Bytes::from(format!("snap {to}")))
                    .unwrap();
            }
        }
    }
}

#[test]
fn sigkill_never_loses_a_durable_entry() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("sigkill test seed {seed}");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().unwrap();
    let mut reported: Index = 0;
    for kill in 0..6 {
        let mut child = Command::new(&exe)
            .args([
                "sigkill_never_loses_a_durable_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("durable ") {
                    let _ = tx.send(n.parse::<Index>().unwrap());
                }
            }
        });
        // Let it run a random while once it has started writing.
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("child writes");
        reported = reported.max(first);
        let until = Instant::now() + Duration::from_millis(20 + rng.below(250));
        while Instant::now() < until {
            if let Ok(n) = rx.recv_timeout(Duration::from_millis(1)) {
                reported = reported.max(n);
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        while let Ok(n) = rx.try_recv() {
            reported = reported.max(n);
        }

        let (wal, report) = open(dir.path(), common::test_opts());
        eprintln!("kill {kill}: reported durable {reported}; {report}");
        assert!(
            wal.last_index() >= reported,
            "lost durable entries: {report}"
        );
        let lo = wal.first_index();
        assert!(lo <= reported + 1);
        let got = wal.entries(lo, wal.last_index() + 1, u64::MAX).unwrap();
        for e in &got {
            assert_eq!(*e, kill_entry(e.index), "entry {} differs", e.index);
        }
        if wal.snapshot_meta().index > 0 {
            let snap = wal.snapshot().unwrap();
            assert_eq!(
                snap.data,
                bytes::Bytes::from(format!("snap {}", snap.meta.index))
            );
        }
    }
    assert!(reported > 0);
}
