//! A throughput figure for the write path, not a pass/fail test: run with
//! `cargo test --release -p server --test bench -- --ignored --nocapture`
//! (`BENCH_CLIENTS`, `BENCH_SECS` and `BENCH_VALUE` tune it).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use proto::kv::PutRequest;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run explicitly, in release"]
async fn put_throughput() {
    let clients = env("BENCH_CLIENTS", 64);
    let secs = env("BENCH_SECS", 5);
    let value = vec![b'v'; env("BENCH_VALUE", 100) as usize];
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut lat = Vec::new();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let mut kv = c.kv(l).await;
        let (stop, done, value) = (Arc::clone(&stop), Arc::clone(&done), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = kv
                    .put(PutRequest {
                        key: format!("b{w}-{}", i % 1000).into_bytes().into(),
                        value: value.clone().into(),
                        ..Default::default()
                    })
                    .await;
                if r.is_ok() {
                    lat.push(t.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
            lat
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = t0.elapsed().as_secs_f64();
    lat.sort();
    let p = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "put: {clients} clients, {} B values: {:.0} ops/s; latency p50 {:?} p99 {:?} max {:?}",
        value.len(),
        done.load(Ordering::SeqCst) as f64 / elapsed,
        p(0.5),
        p(0.99),
        lat.last().copied().unwrap_or_default()
    );
    c.stop_all().await;
}
