//! `raftkv bench`: a load generator.
//!
//! `--clients` tasks share one [`client::Client`] (and so its connections
//! and a session pool big enough for all of them); together they run
//! `--ops` operations on `--keys` keys (`bench-<n>`, chosen uniformly by a
//! seeded generator) with values of `--value-size` bytes. `get` and `mixed`
//! first write every key once (not measured). Each operation's latency goes
//! into an HDR histogram (microseconds, 3 significant digits); the report
//! gives throughput and p50/p90/p99/p99.9/max. Failed operations are counted
//! apart and not in the histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::exit::CliError;
use crate::output::print_json;
use crate::ClientOpts;

use crate::limits::{
    BENCH_CLIENTS_MAX, BENCH_LATENCY_US_MAX as LATENCY_US_MAX, BENCH_PRELOAD_TASKS_MAX,
    BENCH_VALUE_SIZE_MAX,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Puts only.
    Put,
    /// Gets only (linearizable unless --serializable).
    Get,
    /// Gets and puts, --read-percent of them gets.
    Mixed,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    pub workload: Workload,
    /// Concurrent clients (tasks).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=BENCH_CLIENTS_MAX))]
    pub clients: u64,
    /// Operations in all.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=BENCH_VALUE_SIZE_MAX))]
    pub value_size: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Share of gets in `mixed`, in percent.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_percent: u8,
    /// Serializable gets (any node, may be stale).
    #[arg(long)]
    pub serializable: bool,
    /// Seed of the key choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What one run measured.
#[derive(Debug)]
pub struct Report {
    pub workload: Workload,
    pub clients: u64,
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub histogram: Histogram<u64>,
    pub first_error: Option<String>,
}

impl Report {
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.ok as f64 / s
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let h = &self.histogram;
        json!({
            "workload": format!("{:?}", self.workload).to_lowercase(),
            "clients": self.clients,
            "ok": self.ok,
            "errors": self.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput_ops_s": self.throughput(),
            "latency_us": {
                "mean": h.mean(),
                "p50": h.value_at_quantile(0.50),
                "p90": h.value_at_quantile(0.90),
                "p99": h.value_at_quantile(0.99),
                "p99_9": h.value_at_quantile(0.999),
                "max": h.max(),
            },
            "first_error": self.first_error,
        })
    }

    pub fn to_text(&self) -> String {
        let h = &self.histogram;
        let ms = |v: u64| v as f64 / 1000.0;
        let mut s = format!(
            "{:?}: {} ok, {} failed in {:.2}s with {} clients: {:.0} ops/s\n",
            self.workload,
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.clients,
            self.throughput()
        );
        s.push_str(&format!(
            "latency (ms): mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            h.mean() / 1000.0,
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max())
        ));
        if let Some(e) = &self.first_error {
            s.push_str(&format!("\nfirst error: {e}"));
        }
        s
    }
}

/// A small seeded generator (splitmix64) for key choice.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key(n: u64) -> String {
    format!("bench-{n:08}")
}

fn new_histogram() -> Result<Histogram<u64>, CliError> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
        .map_err(|e| CliError::Failed(format!("histogram: {e}")))
}

pub async fn run(a: BenchArgs) -> Result<(), CliError> {
    let report = bench(&a).await?;
    if a.opts.json {
        print_json(&report.to_json());
    } else {
        println!("{}", report.to_text());
    }
    if report.ok == 0 {
        return Err(CliError::Failed(format!(
            "every operation failed: {}",
            report.first_error.unwrap_or_default()
        )));
    }
    Ok(())
}

pub async fn bench(a: &BenchArgs) -> Result<Report, CliError> {
    let config = a.opts.secure(client::ClientConfig {
        deadline: Duration::from_secs_f64(a.opts.timeout),
        sessions_max: a.clients as usize,
        ..client::ClientConfig::default()
    })?;
    let endpoints = a.opts.endpoints.clone();
    let c = client::Client::connect(endpoints, config)?;
    let value = bytes::Bytes::from(vec![b'x'; a.value_size as usize]);
    let show_progress = !a.opts.json;

    if a.workload != Workload::Put {
        preload(&c, a, &value, show_progress).await?;
    }

    let bar = if show_progress {
        let bar = ProgressBar::new(a.ops);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} ops  {per_sec}  eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let next_op = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..a.clients {
        let c = c.clone();
        let value = value.clone();
        let next_op = next_op.clone();
        let bar = bar.clone();
        let (workload, keys, ops, read_percent, serializable) =
            (a.workload, a.keys, a.ops, a.read_percent, a.serializable);
        let mut rng = Rng(a.seed ^ t.wrapping_mul(0x2545_f491_4f6c_dd1d));
        tasks.spawn(async move {
            let mut h = new_histogram()?;
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            while next_op.fetch_add(1, Ordering::Relaxed) < ops {
                let k = key(rng.below(keys));
                let read = match workload {
                    Workload::Put => false,
                    Workload::Get => true,
                    Workload::Mixed => rng.below(100) < u64::from(read_percent),
                };
                let t0 = Instant::now();
                let result = if read {
                    let mode = if serializable {
                        client::ReadMode::Serializable
                    } else {
                        client::ReadMode::Linearizable
                    };
                    c.get_with(k, mode).await.map(|_| ())
                } else {
                    c.put(k, value.clone()).await.map(|_| ())
                };
                let us = (t0.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
                match result {
                    Ok(()) => {
                        ok += 1;
                        // In bounds by the clamp above.
                        let _ = h.record(us);
                    }
                    Err(e) => {
                        errors += 1;
                        if first_error.is_none() {
                            first_error = Some(e.to_string());
                        }
                    }
                }
                bar.inc(1);
            }
            Ok::<_, CliError>((h, ok, errors, first_error))
        });
    }
    let mut histogram = new_histogram()?;
    let (mut ok, mut errors, mut first_error) = (0, 0, None);
    while let Some(joined) = tasks.join_next().await {
        let (h, o, e, f) = joined.map_err(|e| CliError::Failed(format!("bench task: {e}")))??;
        histogram
            .add(&h)
            .map_err(|e| CliError::Failed(format!("histogram: {e}")))?;
        ok += o;
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(Report {
        workload: a.workload,
        clients: a.clients,
        ok,
        errors,
        elapsed,
        histogram,
        first_error,
    })
}

/// Writes every key once so reads find something.
async fn preload(
    c: &client::Client,
    a: &BenchArgs,
    value: &bytes::Bytes,
    show_progress: bool,
) -> Result<(), CliError> {
    let bar = if show_progress {
        let bar = ProgressBar::new(a.keys);
        bar.set_message("preloading keys");
        if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {pos}/{len}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..a.clients.min(BENCH_PRELOAD_TASKS_MAX) {
        let (c, value, next, bar, keys) =
            (c.clone(), value.clone(), next.clone(), bar.clone(), a.keys);
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= keys {
                    return Ok::<(), client::Error>(());
                }
                c.put(key(n), value.clone()).await?;
                bar.inc(1);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| CliError::Failed(format!("preload task: {e}")))??;
    }
    bar.finish_and_clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_json_has_the_documented_fields() {
        let mut h = match new_histogram() {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        for v in 1..=1000u64 {
            let _ = h.record(v * 10);
        }
        let r = Report {
            workload: Workload::Put,
            clients: 4,
            ok: 1000,
            errors: 2,
            elapsed: Duration::from_secs(2),
            histogram: h,
            first_error: Some("boom".into()),
        };
        let j = r.to_json();
        assert_eq!(j["workload"], "put");
        assert_eq!(j["ok"], 1000);
        assert_eq!(j["errors"], 2);
        assert_eq!(j["throughput_ops_s"], 500.0);
        let p50 = j["latency_us"]["p50"].as_u64().unwrap_or(0);
        assert!((4990..=5010).contains(&p50), "{p50}");
        assert_eq!(
            j["latency_us"]["max"].as_u64().map(|m| m >= 9990),
            Some(true)
        );
        assert!(r.to_text().contains("500 ops/s"), "{}", r.to_text());
    }

    #[test]
    fn key_choice_is_seeded_and_in_range() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        for _ in 0..100 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
        assert_eq!(key(42), "bench-00000042");
    }
}
