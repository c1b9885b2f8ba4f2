//! Bitcask benchmark: `cargo run -p bitcask --release --example bitcask_bench [-- --keys N --value-size B --restarts N --dir D]`.
//!
//! Prints put/s, get/s and get latency (p50/p99/p999, values from the page
//! cache), keydir bytes per key (measured with a counting allocator),
//! restart time with and without hint files, and merge throughput.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use bitcask::{Bitcask, Engine, Options, View};

/// Counts the bytes currently allocated (requested sizes).
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; the
// counter is only arithmetic on the requested sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> isize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// splitmix64: spreads sequential numbers into random-looking keys.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(i).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut keys: u64 = 1_000_000;
    let mut value_size = 256usize;
    let mut dir: Option<PathBuf> = None;
    let mut restarts = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--keys" => keys = args.next().ok_or("--keys N")?.parse()?,
            "--value-size" => value_size = args.next().ok_or("--value-size B")?.parse()?,
            "--restarts" => restarts = args.next().ok_or("--restarts N")?.parse::<usize>()?.max(1),
            "--dir" => dir = Some(args.next().ok_or("--dir D")?.into()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let tmp = tempfile::tempdir_in(dir.unwrap_or_else(std::env::temp_dir))?;
    let path = tmp.path().to_path_buf();
    println!(
        "bitcask bench: {keys} keys of 16 B, values of {value_size} B, dir {}",
        path.display()
    );
    let value = vec![0xabu8; value_size];

    // Puts.
    let before = allocated();
    let db = Bitcask::open(&path, Options::default())?;
    let start = Instant::now();
    for i in 0..keys {
        db.put(&key(i), &value)?;
    }
    db.sync()?;
    let put_secs = start.elapsed().as_secs_f64();
    // Hint files are written in the background; let them finish so the
    // memory they use is not counted as the keydir's.
    db.wait_for_hints()?;
    let status = db.status()?;
    let grown = (allocated() - before) as f64 / keys as f64;
    println!(
        "put:     {:>10.0} puts/s ({:.2} s, {:.1} MB/s, one sync at the end)",
        keys as f64 / put_secs,
        put_secs,
        status.disk_bytes as f64 / 1e6 / put_secs
    );
    println!(
        "keydir:  {grown:.1} B/key after inserting in random order (allocated bytes / keys, key bytes included)"
    );

    // Durable puts: each followed by `sync` (one fdatasync), for reference.
    let mut lat = Vec::new();
    let start = Instant::now();
    for i in 0..500u64 {
        let t = Instant::now();
        db.put(&key(keys + i), &value)?;
        db.sync()?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "put+sync: {:>9.0} durable puts/s from one thread; latency p50 {:.0} µs, p99 {:.0} µs",
        lat.len() as f64 / secs,
        percentile(&lat, 0.50) as f64 / 1e3,
        percentile(&lat, 0.99) as f64 / 1e3
    );
    for i in 0..500u64 {
        db.delete(&key(keys + i))?;
    }

    // Gets, random keys, values from the page cache.
    let n = keys.min(1_000_000);
    let mut lat = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for i in 0..n {
        let k = key(mix(i ^ 0x5555) % keys);
        let t = Instant::now();
        let v = db.get(&k)?;
        lat.push(t.elapsed().as_nanos() as u64);
        if v.map(|v| v.len()) != Some(value_size) {
            return Err("get returned a wrong value".into());
        }
    }
    let get_secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "get:     {:>10.0} gets/s; latency p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.1} µs",
        n as f64 / get_secs,
        percentile(&lat, 0.50) as f64 / 1e3,
        percentile(&lat, 0.99) as f64 / 1e3,
        percentile(&lat, 0.999) as f64 / 1e3,
        *lat.last().unwrap_or(&0) as f64 / 1e3
    );

    // A point-in-time view (the keydir clone) and a full ordered pass over
    // it, as a snapshot would do.
    let start = Instant::now();
    let view = db.view()?;
    let view_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut bytes = 0usize;
    for pair in view.iter() {
        let (k, v) = pair?;
        bytes += k.len() + v.len();
    }
    let iter_secs = start.elapsed().as_secs_f64();
    println!(
        "view:    {:.0} ms to take with {} keys; iterating it: {:.0} keys/s ({:.0} MB/s)",
        view_secs * 1e3,
        view.len(),
        view.len() as f64 / iter_secs,
        bytes as f64 / 1e6 / iter_secs
    );
    drop(view);

    // Restart with hint files (rotate first so every file has one).
    db.merge()?;
    drop(db);
    // Several restarts: the machine may be shared, so the spread matters.
    let mut times = Vec::new();
    for _ in 1..restarts {
        let start = Instant::now();
        let db = Bitcask::open(&path, Options::default())?;
        times.push(start.elapsed().as_secs_f64());
        drop(db);
    }
    let before = allocated();
    let start = Instant::now();
    let db = Bitcask::open(&path, Options::default())?;
    times.push(start.elapsed().as_secs_f64());
    let held = (allocated() - before) as f64 / keys as f64;
    let status = db.status()?;
    times.sort_by(f64::total_cmp);
    println!(
        "restart: {:.3} s with hint files (median of {}; min {:.3} s, max {:.3} s; {} keys, {} files)",
        times[times.len() / 2],
        times.len(),
        times[0],
        times[times.len() - 1],
        status.keys,
        status.files
    );
    println!(
        "keydir:  {held:.1} B/key after a restart (bulk-built); the estimate in Status is {:.1} B/key",
        status.keydir_bytes as f64 / keys as f64
    );
    drop(db);
    for e in std::fs::read_dir(&path)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "hint") {
            std::fs::remove_file(p)?;
        }
    }
    let start = Instant::now();
    let db = Bitcask::open(&path, Options::default())?;
    let restart_scan = start.elapsed().as_secs_f64();
    println!(
        "restart: {restart_scan:.3} s without hint files (scans {:.0} MB of data files, rebuilds the hints)",
        db.status()?.disk_bytes as f64 / 1e6
    );

    // Merge: overwrite half of the keys, then merge everything.
    for i in (0..keys).step_by(2) {
        db.put(&key(i), &value)?;
    }
    let before = db.status()?;
    let start = Instant::now();
    let stats = db.merge_files()?;
    let merge_secs = start.elapsed().as_secs_f64();
    let after = db.status()?;
    println!(
        "merge:   {:.0} MB/s read ({:.0} MB in, {:.0} MB out, {} records copied, {:.2} s); disk {:.0} MB -> {:.0} MB",
        stats.bytes_in as f64 / 1e6 / merge_secs,
        stats.bytes_in as f64 / 1e6,
        stats.bytes_out as f64 / 1e6,
        stats.records_copied,
        merge_secs,
        before.disk_bytes as f64 / 1e6,
        after.disk_bytes as f64 / 1e6
    );
    Ok(())
}
