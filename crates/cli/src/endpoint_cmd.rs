//! `raftkv endpoint health`: is each node up and part of a working cluster?
//!
//! A node is healthy when it answers a status call within the timeout,
//! was not removed from the cluster, knows a leader (so it can serve reads
//! and writes) and has more free disk than its reserve. The command checks
//! the `--endpoints` given, or with `--cluster` every member the cluster
//! reports too, and exits 1 when any is unhealthy or unreachable.

use std::time::Instant;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::exit::CliError;
use crate::output::print_json;
use crate::ClientOpts;

#[derive(Debug, Args)]
pub struct EndpointArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub action: EndpointAction,
}

#[derive(Debug, Subcommand)]
pub enum EndpointAction {
    /// Check each endpoint (or with --cluster every member): exit 1 when
    /// any is unhealthy or unreachable.
    Health {
        /// Every member the cluster reports, not only --endpoints.
        #[arg(long)]
        cluster: bool,
    },
}

/// One endpoint's health.
struct Health {
    addr: String,
    took_ms: u128,
    /// `Ok(leader id)` or why it is not healthy.
    verdict: Result<u64, String>,
}

pub async fn run(a: EndpointArgs) -> Result<(), CliError> {
    let EndpointAction::Health { cluster } = a.action;
    let c = a.opts.client()?;
    let mut addrs: Vec<String> = c.endpoints();
    if cluster {
        // Members as some node reports them; if none answers, the
        // endpoints alone (each reported unreachable below).
        if let Ok(all) = c.status_all().await {
            addrs.extend(all.into_iter().map(|n| n.addr));
        }
    }
    addrs.sort();
    addrs.dedup();
    let mut tasks = tokio::task::JoinSet::new();
    for addr in addrs {
        let c = c.clone();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let verdict = match c.status_of(&addr).await {
                Ok(s) if crate::output::disk_warning(&s).is_some() => {
                    Err(crate::output::disk_warning(&s).unwrap_or_default())
                }
                Ok(s) if s.removed => {
                    Err("removed from the cluster: it serves nothing".to_string())
                }
                Ok(s) if s.leader_id != 0 => Ok(s.leader_id),
                Ok(_) => Err("no leader known (election under way, or no quorum)".to_string()),
                Err(e) => Err(format!("unreachable: {e}")),
            };
            Health {
                addr,
                took_ms: t0.elapsed().as_millis(),
                verdict,
            }
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(h) => results.push(h),
            Err(e) => return Err(CliError::Failed(format!("health task failed: {e}"))),
        }
    }
    results.sort_by(|x, y| x.addr.cmp(&y.addr));
    if a.opts.json {
        let list: Vec<_> = results
            .iter()
            .map(|h| match &h.verdict {
                Ok(leader) => json!({"addr": h.addr, "healthy": true, "took_ms": h.took_ms as u64, "leader_id": leader}),
                Err(e) => json!({"addr": h.addr, "healthy": false, "took_ms": h.took_ms as u64, "error": e}),
            })
            .collect();
        print_json(&json!({ "endpoints": list }));
    } else {
        for h in &results {
            match &h.verdict {
                Ok(leader) => println!(
                    "{} is healthy: leader {leader}, answered in {} ms",
                    h.addr, h.took_ms
                ),
                Err(e) => println!("{} is unhealthy: {e}", h.addr),
            }
        }
    }
    let bad = results.iter().filter(|h| h.verdict.is_err()).count();
    if bad > 0 {
        return Err(CliError::Failed(format!(
            "{bad} of {} endpoint(s) unhealthy",
            results.len()
        )));
    }
    Ok(())
}
