//! `raftkv-compare`: one load generator for raftkv and etcd, so the two are
//! measured by the same driver (built only with the cli crate's `etcd`
//! feature; `bench/compare-etcd.sh` and `bench/failover.sh` run it).
//!
//! `--backend raftkv` talks to raftkv through the `client` crate (leader
//! discovery, sessions, linearizable gets by ReadIndex); `--backend etcd`
//! through the `etcd-client` crate (one balanced channel over the
//! endpoints; a put or a linearizable get sent to a follower is forwarded by
//! etcd itself, as in any etcd deployment).
//!
//! Workloads, all over `--keys` keys `bench-<n>` chosen by a seeded
//! splitmix64, values of `--value-size` bytes, `--clients` tasks sharing one
//! client, `--ops` operations in all:
//! - `put`, `get` (linearizable), `sget` (serializable), `mixed`
//!   (`--read-percent` linearizable gets, the rest puts). Reads first write
//!   every key once (not measured).
//! - `failover`: `--clients` writers put for `--seconds`; every completion
//!   time is kept, and at the end the longest gap between two successful
//!   writes is reported, and, when `--kill-time-file` holds the Unix time
//!   (seconds, fractional) at which a script SIGKILLed the leader, the time
//!   from that kill to the first write that started after it and succeeded.
//!
//! Output: one JSON object on stdout (`throughput_ops_s`, `latency_us.p50`,
//! `p99`, ... as `raftkv bench --json`; `failover` adds `max_gap_ms`,
//! `recovery_ms`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;

/// Largest latency kept in the histogram (longer ones are clamped), µs.
const LATENCY_US_MAX: u64 = 60_000_000;
/// Most concurrent client tasks.
const CLIENTS_MAX: u64 = 1024;
/// Longest failover run, seconds.
const FAILOVER_SECONDS_MAX: u64 = 120;
/// Most completion times kept by one failover writer.
const FAILOVER_SAMPLES_MAX: usize = 2_000_000;
/// Tasks that preload keys.
const PRELOAD_TASKS_MAX: u64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Raftkv,
    Etcd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    Put,
    Get,
    Sget,
    Mixed,
    Failover,
}

#[derive(Debug, Parser)]
#[command(
    name = "raftkv-compare",
    about = "The same load against raftkv or etcd"
)]
struct Args {
    workload: Workload,
    #[arg(long, value_enum, default_value_t = Backend::Raftkv)]
    backend: Backend,
    /// Client addresses, comma separated (`host:port`).
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=CLIENTS_MAX))]
    clients: u64,
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    ops: u64,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(0..=100))]
    read_percent: u64,
    /// Per-operation deadline, seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Failover: how long to write.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=FAILOVER_SECONDS_MAX))]
    seconds: u64,
    /// Failover: a file the killing script writes the kill's Unix time to.
    #[arg(long)]
    kill_time_file: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone)]
enum Store {
    Raftkv(client::Client),
    Etcd(Box<etcd_client::KvClient>),
}

impl Store {
    async fn connect(a: &Args) -> Result<Store, String> {
        match a.backend {
            Backend::Raftkv => {
                let config = client::ClientConfig {
                    deadline: Duration::from_secs_f64(a.timeout),
                    sessions_max: a.clients as usize,
                    ..client::ClientConfig::default()
                };
                client::Client::connect(a.endpoints.clone(), config)
                    .map(Store::Raftkv)
                    .map_err(|e| e.to_string())
            }
            Backend::Etcd => {
                let urls: Vec<String> = a.endpoints.iter().map(|e| format!("http://{e}")).collect();
                let opts = etcd_client::ConnectOptions::new()
                    .with_timeout(Duration::from_secs_f64(a.timeout))
                    .with_connect_timeout(Duration::from_secs(2));
                etcd_client::Client::connect(urls, Some(opts))
                    .await
                    .map(|c| Store::Etcd(Box::new(c.kv_client())))
                    .map_err(|e| e.to_string())
            }
        }
    }

    async fn put(&mut self, key: String, value: &bytes::Bytes) -> Result<(), String> {
        match self {
            Store::Raftkv(c) => c
                .put(key, value.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Store::Etcd(c) => c
                .put(key, value.to_vec(), None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    async fn get(&mut self, key: String, serializable: bool) -> Result<(), String> {
        match self {
            Store::Raftkv(c) => {
                let mode = if serializable {
                    client::ReadMode::Serializable
                } else {
                    client::ReadMode::Linearizable
                };
                c.get_with(key, mode)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Store::Etcd(c) => {
                let opts = if serializable {
                    etcd_client::GetOptions::new().with_serializable()
                } else {
                    etcd_client::GetOptions::new()
                };
                c.get(key, Some(opts))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// splitmix64, seeded per task.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn key(n: u64) -> String {
    format!("bench-{n:08}")
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).map_err(|e| e.to_string())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn preload(store: &Store, a: &Args, value: &bytes::Bytes) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..a.clients.min(PRELOAD_TASKS_MAX) {
        let (mut s, value, next, keys) = (store.clone(), value.clone(), next.clone(), a.keys);
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= keys {
                    return Ok::<(), String>(());
                }
                s.put(key(n), &value).await?;
            }
        });
    }
    while let Some(j) = tasks.join_next().await {
        j.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn load(store: Store, a: &Args, value: bytes::Bytes) -> Result<serde_json::Value, String> {
    if a.workload != Workload::Put {
        preload(&store, a, &value).await?;
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..a.clients {
        let (mut s, value, next) = (store.clone(), value.clone(), next.clone());
        let (workload, keys, ops, read_percent) = (a.workload, a.keys, a.ops, a.read_percent);
        let mut rng = Rng(a.seed ^ t.wrapping_mul(0x2545_f491_4f6c_dd1d));
        tasks.spawn(async move {
            let mut h = histogram()?;
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None::<String>);
            while next.fetch_add(1, Ordering::Relaxed) < ops {
                let k = key(rng.below(keys));
                let t0 = Instant::now();
                let r = match workload {
                    Workload::Get => s.get(k, false).await,
                    Workload::Sget => s.get(k, true).await,
                    Workload::Mixed if rng.below(100) < read_percent => s.get(k, false).await,
                    _ => s.put(k, &value).await,
                };
                let us = (t0.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
                match r {
                    Ok(()) => {
                        ok += 1;
                        let _ = h.record(us);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            Ok::<_, String>((h, ok, errors, first_error))
        });
    }
    let mut h = histogram()?;
    let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None::<String>);
    while let Some(j) = tasks.join_next().await {
        let (th, o, e, f) = j.map_err(|e| e.to_string())??;
        h.add(&th).map_err(|e| e.to_string())?;
        ok += o;
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(json!({
        "backend": format!("{:?}", a.backend).to_lowercase(),
        "workload": format!("{:?}", a.workload).to_lowercase(),
        "clients": a.clients,
        "ok": ok,
        "errors": errors,
        "elapsed_s": elapsed,
        "throughput_ops_s": if elapsed > 0.0 { ok as f64 / elapsed } else { 0.0 },
        "latency_us": {
            "p50": h.value_at_quantile(0.50),
            "p90": h.value_at_quantile(0.90),
            "p99": h.value_at_quantile(0.99),
            "max": h.max(),
        },
        "first_error": first_error,
    }))
}

async fn failover(
    store: Store,
    a: &Args,
    value: bytes::Bytes,
) -> Result<serde_json::Value, String> {
    let until = Instant::now() + Duration::from_secs(a.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..a.clients {
        let (mut s, value, keys) = (store.clone(), value.clone(), a.keys);
        let mut rng = Rng(a.seed ^ t.wrapping_mul(0x2545_f491_4f6c_dd1d));
        tasks.spawn(async move {
            // (start, end) Unix times of each successful write.
            let mut done: Vec<(f64, f64)> = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < until && done.len() < FAILOVER_SAMPLES_MAX {
                let start = unix_now();
                match s.put(key(rng.below(keys)), &value).await {
                    Ok(()) => done.push((start, unix_now())),
                    Err(_) => errors += 1,
                }
            }
            (done, errors)
        });
    }
    let mut done = Vec::new();
    let mut errors = 0;
    while let Some(j) = tasks.join_next().await {
        let (d, e) = j.map_err(|e| e.to_string())?;
        done.extend(d);
        errors += e;
    }
    done.sort_by(|x, y| x.1.total_cmp(&y.1));
    let max_gap = done
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .fold(0.0f64, f64::max);
    let kill_time = match &a.kill_time_file {
        Some(p) => std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok()),
        None => None,
    };
    let recovery = kill_time.and_then(|k| {
        done.iter()
            .filter(|(s, _)| *s >= k)
            .map(|(_, e)| e - k)
            .reduce(f64::min)
    });
    Ok(json!({
        "backend": format!("{:?}", a.backend).to_lowercase(),
        "workload": "failover",
        "clients": a.clients,
        "ok": done.len(),
        "errors": errors,
        "max_gap_ms": max_gap * 1000.0,
        "kill_time": kill_time,
        "recovery_ms": recovery.map(|r| r * 1000.0),
    }))
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let value = bytes::Bytes::from(vec![b'x'; a.value_size]);
    let result = match Store::connect(&a).await {
        Ok(store) if a.workload == Workload::Failover => failover(store, &a, value).await,
        Ok(store) => load(store, &a, value).await,
        Err(e) => Err(format!("connect: {e}")),
    };
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("raftkv-compare: {e}");
            std::process::exit(1);
        }
    }
}
