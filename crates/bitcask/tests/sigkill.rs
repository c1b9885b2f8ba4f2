//! SIGKILL crash test: this test binary re-runs itself as a child (the
//! `child_writer` test, enabled by an environment variable) that writes,
//! syncs and merges in a loop, printing each synced key to stdout. The
//! parent kills it with SIGKILL at random moments, several times, and checks
//! after each kill that every key reported synced is there.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcask::{Bitcask, Engine, Op, Options};
use bytes::Bytes;

const DIR_VAR: &str = "BITCASK_SIGKILL_CHILD_DIR";
const ROUND_VAR: &str = "BITCASK_SIGKILL_CHILD_ROUND";

fn opts() -> Options {
    Options {
        file_size_max: 16 * 1024,
    }
}

fn value(round: u32, i: u32) -> Vec<u8> {
    format!("round {round} value {i} {}", "x".repeat((i % 97) as usize)).into_bytes()
}

/// The child: not a test on its own (returns at once without the variable).
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let round: u32 = std::env::var(ROUND_VAR).unwrap().parse().unwrap();
    let db = Bitcask::open(&dir, opts()).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0u32.. {
        let key = format!("r{round}-{i:08}");
        if i % 3 == 0 {
            // A batch: the key plus a marker that must appear with it.
            db.write_batch(&[
                Op::Put(Bytes::from(key.clone()), Bytes::from(value(round, i))),
                Op::Put(
                    Bytes::from(format!("m{round}-{i:08}")),
                    Bytes::from_static(b"m"),
                ),
            ])
            .unwrap();
        } else {
            db.put(key.as_bytes(), &value(round, i)).unwrap();
        }
        if i % 5 == 0 && i > 0 {
            db.delete(format!("r{round}-{:08}", i - 1).as_bytes())
                .unwrap();
        }
        if i % 4 == 3 {
            db.sync().unwrap();
            writeln!(out, "synced {i}").unwrap();
            out.flush().unwrap();
        }
        if i % 500 == 499 {
            db.merge().unwrap();
        }
    }
}

/// Whether key `i` of a round was deleted by the time `synced` was synced
/// (key `i` is deleted while writing key `i + 1` when that is a multiple of
/// 5). `None`: it may or may not be (the delete may have reached the disk
/// unsynced).
fn deleted(i: u32, synced: u32) -> Option<bool> {
    let deletes = (i + 1).is_multiple_of(5);
    if deletes && i == synced {
        None
    } else {
        Some(deletes && i < synced)
    }
}

#[test]
fn every_synced_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut synced_by_round = Vec::new();
    for round in 0..5u32 {
        let mut child = Command::new(&exe)
            .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, dir.path())
            .env(ROUND_VAR, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill after a random number of synced keys (sometimes right away).
        let kill_after = next() % 400;
        let started = Instant::now();
        let mut synced: Option<u32> = None;
        let mut lines = BufReader::new(stdout).lines();
        while synced.map_or(0, |s| s + 1) < kill_after as u32 * 4 {
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(n) = line.strip_prefix("synced ") {
                        synced = Some(n.parse().unwrap());
                    }
                }
                _ => break,
            }
        }
        // Some extra unsynced writes may happen before the signal lands.
        std::thread::sleep(Duration::from_micros(next() % 2000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines written before the kill may still be in the pipe.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("synced ") {
                synced = Some(n.parse().unwrap());
            }
        }
        synced_by_round.push(synced);

        let db = Bitcask::open(dir.path(), opts()).unwrap();
        for (r, synced) in synced_by_round.iter().enumerate() {
            let r = r as u32;
            let Some(synced) = *synced else { continue };
            for i in 0..=synced {
                let got = db.get(format!("r{r}-{i:08}").as_bytes()).unwrap();
                match deleted(i, synced) {
                    Some(true) => assert_eq!(got, None, "round {r} key {i}"),
                    Some(false) => {
                        assert_eq!(got, Some(Bytes::from(value(r, i))), "round {r} key {i}")
                    }
                    None => {
                        assert!(got.is_none() || got == Some(Bytes::from(value(r, i))))
                    }
                }
                let marker = db.get(format!("m{r}-{i:08}").as_bytes()).unwrap();
                assert_eq!(marker.is_some(), i % 3 == 0, "round {r} marker {i}");
            }
        }
        // A batch is all or nothing, synced or not.
        for (k, _) in db
            .scan(
                std::ops::Bound::Unbounded,
                std::ops::Bound::Unbounded,
                usize::MAX,
            )
            .unwrap()
        {
            if let Some(rest) = k.strip_prefix(b"m") {
                let key = [&b"r"[..], rest].concat();
                let i: u32 = std::str::from_utf8(&rest[rest.len() - 8..])
                    .unwrap()
                    .parse()
                    .unwrap();
                let got = db.get(&key).unwrap();
                // The batch's key is there unless a later delete removed it.
                assert!(
                    got.is_some() || (i + 1).is_multiple_of(5),
                    "{key:?} without its batch"
                );
            }
        }
        println!(
            "round {round}: killed after {synced:?} synced; recovery {:?}",
            db.recovery_report()
        );
    }
}
