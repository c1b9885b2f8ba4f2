//! WAL throughput: 256-byte entries appended in batches of 1, 16, 64 and
//! 256, one fsync per batch; plus the disk's raw fdatasync latency.
//!
//! ```text
//! cargo run -p wal --release --example wal_bench [-- --dir PATH] [--seconds S]
//! ```
//!
//! `--dir` picks the file system to measure (default: a temporary directory
//! under the system temp dir).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::{Entry, EntryKind};
use wal::{Options, Wal};

const ENTRY_BYTES: usize = 256;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dir: Option<PathBuf> = None;
    let mut seconds = 3.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--seconds" => seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(seconds),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let tmp = match &dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let per_run = Duration::from_secs_f64(seconds);
    println!(
        "WAL benchmark in {} ({seconds} s per row)",
        tmp.path().display()
    );
    println!();

    let (p50, p99, mean) = fdatasync_latency(&tmp.path().join("raw-append"), true, per_run)?;
    println!("raw fdatasync after a 4 KiB append:    p50 {p50:>7.1} us  p99 {p99:>7.1} us  mean {mean:>7.1} us");
    let (p50, p99, mean) = fdatasync_latency(&tmp.path().join("raw-overwrite"), false, per_run)?;
    println!("raw fdatasync after a 4 KiB overwrite: p50 {p50:>7.1} us  p99 {p99:>7.1} us  mean {mean:>7.1} us");
    println!();

    println!(
        "| entries per fsync | entries/s | MB/s (payload) | fsyncs/s | mean us per fsync'd batch |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for batch in [1usize, 16, 64, 256] {
        let dir = tmp.path().join(format!("wal-{batch}"));
        let (entries, elapsed, syncs) = run_wal(&dir, batch, per_run)?;
        let secs = elapsed.as_secs_f64();
        println!(
            "| {batch} | {:.0} | {:.1} | {:.0} | {:.0} |",
            entries as f64 / secs,
            (entries * ENTRY_BYTES) as f64 / secs / 1e6,
            syncs as f64 / secs,
            secs * 1e6 / syncs as f64
        );
        std::fs::remove_dir_all(&dir)?;
    }

    println!();
    let dir = tmp.path().join("wal-read");
    let (entries, elapsed) = run_reads(&dir, per_run)?;
    println!(
        "reads from disk (cache off, page cache warm), random 64-entry ranges of 200,000 entries: {:.0} entries/s",
        entries as f64 / elapsed.as_secs_f64()
    );
    std::fs::remove_dir_all(&dir)?;

    println!();
    println!("pipelined (the server's shape): 64-entry batches appended without waiting, fsyncs on a sync");
    println!("thread via sync_handle, one in flight, at most 4096 entries ahead of durable:");
    let dir = tmp.path().join("wal-parallel");
    let (entries, elapsed, syncs) = run_wal_parallel(&dir, 64, per_run)?;
    let secs = elapsed.as_secs_f64();
    println!(
        "  {:.0} entries/s durable, {:.1} MB/s, {:.0} fsyncs/s, {:.0} entries per fsync",
        entries as f64 / secs,
        (entries * ENTRY_BYTES) as f64 / secs / 1e6,
        syncs as f64 / secs,
        entries as f64 / syncs.max(1) as f64
    );
    Ok(())
}

/// Latency of `fdatasync` after writing 4 KiB, either appended (the file
/// grows, as a WAL segment does) or overwriting the same block.
fn fdatasync_latency(path: &Path, append: bool, run: Duration) -> std::io::Result<(f64, f64, f64)> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let block = vec![0xabu8; 4096];
    if !append {
        f.write_all(&block)?;
        f.sync_all()?;
    }
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < run || lat.len() < 10 {
        if append {
            f.write_all(&block)?;
        } else {
            std::os::unix::fs::FileExt::write_all_at(&f, &block, 0)?;
        }
        let t = Instant::now();
        f.sync_data()?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    lat.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    Ok((p(0.5), p(0.99), mean))
}

fn entry(index: u64) -> Entry {
    Entry {
        index,
        term: 1,
        kind: EntryKind::Normal,
        data: Bytes::from(vec![(index % 251) as u8; ENTRY_BYTES]),
    }
}

/// Append batches of `batch` entries, `sync` after each, for `run`.
fn run_wal(
    dir: &Path,
    batch: usize,
    run: Duration,
) -> Result<(usize, Duration, usize), wal::Error> {
    let (mut wal, _) = Wal::open(dir, Options::default())?;
    let mut next = 1u64;
    let mut syncs = 0;
    let start = Instant::now();
    while start.elapsed() < run {
        let entries: Vec<Entry> = (next..next + batch as u64).map(entry).collect();
        wal.append(&entries)?;
        wal.sync()?;
        next += batch as u64;
        syncs += 1;
    }
    Ok(((next - 1) as usize, start.elapsed(), syncs))
}

/// Random 64-entry range reads through the index and `pread`, no cache.
fn run_reads(dir: &Path, run: Duration) -> Result<(usize, Duration), wal::Error> {
    let opts = Options {
        cache_entries_max: 0,
        cache_bytes_max: 0,
        ..Options::default()
    };
    let (mut wal, _) = Wal::open(dir, opts)?;
    let total = 200_000u64;
    for lo in (1..=total).step_by(1000) {
        wal.append(&(lo..lo + 1000).map(entry).collect::<Vec<_>>())?;
    }
    wal.sync()?;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut read = 0;
    let start = Instant::now();
    while start.elapsed() < run {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let lo = 1 + x % (total - 64);
        let got = wal.entries(lo, lo + 64, u64::MAX)?;
        assert_eq!(got.len(), 64);
        read += got.len();
    }
    Ok((read, start.elapsed()))
}

/// The server's shape: a producer appends `batch`-entry batches without
/// waiting, while a sync thread fsyncs whatever was appended (one fsync in
/// flight at a time, via `sync_handle`). The producer may run at most
/// `BACKLOG_MAX` entries ahead of the durable index. Returns entries made
/// durable, the time taken and the number of fsyncs.
fn run_wal_parallel(
    dir: &Path,
    batch: usize,
    run: Duration,
) -> Result<(usize, Duration, usize), wal::Error> {
    const BACKLOG_MAX: u64 = 4096;
    let (mut wal, _) = Wal::open(dir, Options::default())?;
    let (to_sync, sync_rx) = std::sync::mpsc::sync_channel::<wal::SyncHandle>(1);
    let (done_tx, done) = std::sync::mpsc::sync_channel::<wal::Result<wal::Synced>>(1);
    let syncer = std::thread::spawn(move || {
        for h in sync_rx {
            if done_tx.send(h.sync()).is_err() {
                break;
            }
        }
    });
    let mut next = 1u64;
    let mut in_flight = false;
    let mut syncs = 0;
    let start = Instant::now();
    loop {
        let running = start.elapsed() < run;
        if running && next - 1 - wal.durable_index() < BACKLOG_MAX {
            let entries: Vec<Entry> = (next..next + batch as u64).map(entry).collect();
            wal.append(&entries)?;
            next += batch as u64;
        }
        // Collect a finished sync (wait for it if we cannot do anything else).
        let must_wait = in_flight && (!running || next - 1 - wal.durable_index() >= BACKLOG_MAX);
        let finished = if must_wait {
            done.recv().ok()
        } else {
            done.try_recv().ok()
        };
        if let Some(r) = finished {
            wal.mark_durable(r?)?;
            in_flight = false;
        }
        if !in_flight && wal.durable_index() < next - 1 {
            let h = wal.sync_handle()?;
            if to_sync.send(h).is_err() {
                return Err(wal::Error::Invalid("sync thread gone".into()));
            }
            in_flight = true;
            syncs += 1;
        }
        if !running && !in_flight {
            break;
        }
    }
    drop(to_sync);
    let _ = syncer.join();
    Ok((wal.durable_index() as usize, start.elapsed(), syncs))
}
