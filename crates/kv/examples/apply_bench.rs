//! Rough figures for the state machine: apply throughput one entry at a
//! time and in runs, snapshot and restore speed. Figures are printed, not
//! asserted.
//!
//! ```text
//! cargo run -p kv --release --example apply_bench [-- ENTRIES]
//! ```

use std::sync::Arc;
use std::time::Instant;

use bitcask::{Bitcask, Engine, MemEngine, Options};
use kv::{Command, Request, StateMachine};
use raft::{Entry, EntryKind};

fn entries(n: u64, client_id: u64) -> Vec<Entry> {
    (1..=n)
        .map(|i| {
            let req = Request {
                client_id,
                seq: if client_id == 0 { 0 } else { i - 1 },
                command: Command::Put {
                    key: format!("key{:012}", (i * 7919) % n).into_bytes(),
                    value: vec![(i % 251) as u8; 256],
                    prev_kv: false,
                },
            };
            let data = if client_id != 0 && i == 1 {
                Request::without_session(Command::RegisterSession).encode()
            } else {
                req.encode()
            };
            Entry {
                index: i,
                term: 1,
                kind: EntryKind::Normal,
                data: data.into(),
            }
        })
        .collect()
}

fn run<E: Engine>(name: &str, make: impl Fn() -> Arc<E>, log: &[Entry], run_len: usize) {
    let mut sm = StateMachine::open(make()).expect("open");
    let start = Instant::now();
    if run_len == 1 {
        for e in log {
            sm.apply(e).expect("apply");
        }
    } else {
        for run in log.chunks(run_len) {
            sm.apply_all(run).expect("apply_all");
        }
    }
    sm.sync().expect("sync");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<10} run {run_len:>3}: {:>9.0} entries/s ({:.2} s for {})",
        log.len() as f64 / secs,
        secs,
        log.len()
    );
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let root = tempfile::tempdir().expect("tempdir");
    let counter = std::sync::atomic::AtomicU32::new(0);
    let bitcask = || {
        let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.path().join(format!("b{i}"));
        Arc::new(Bitcask::open(dir, Options::default()).expect("bitcask"))
    };
    println!("Put of 16 B keys, 256 B values, {n} entries, client id 1 (session)");
    let log = entries(n, 1);
    for run_len in [1, 64] {
        run("MemEngine", || Arc::new(MemEngine::new()), &log, run_len);
        run("Bitcask", bitcask, &log, run_len);
    }

    let mut sm = StateMachine::open(bitcask()).expect("open");
    sm.apply_all(&log).expect("apply");
    let start = Instant::now();
    let digest = sm.digest().expect("digest");
    println!("digest of {n} keys: {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let chunks: Vec<Vec<u8>> = sm
        .snapshot()
        .expect("snapshot")
        .collect::<Result<_, _>>()
        .expect("chunks");
    let bytes: usize = chunks.iter().map(Vec::len).sum();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "snapshot: {} chunks, {:.1} MB in {:.3} s ({:.0} MB/s)",
        chunks.len(),
        bytes as f64 / 1e6,
        secs,
        bytes as f64 / 1e6 / secs
    );
    let mut fresh = StateMachine::open(bitcask()).expect("open");
    let start = Instant::now();
    fresh.restore(&chunks).expect("restore");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "restore (with fsync): {:.3} s ({:.0} MB/s)",
        secs,
        bytes as f64 / 1e6 / secs
    );
    assert_eq!(fresh.digest().expect("digest"), digest);
}
