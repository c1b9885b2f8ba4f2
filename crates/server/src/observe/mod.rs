//! Observability: the node's HTTP server (`http_addr`) with `/metrics`
//! (Prometheus text), a live web page of the cluster, and the JSON it polls.
//!
//! | path | what |
//! |---|---|
//! | `/metrics` | Prometheus text format 0.0.4 (see [`metrics`] for the list) |
//! | `/` | the web page (HTML and JS compiled into the binary) |
//! | `/api/status` | this node alone, as JSON |
//! | `/api/cluster` | every member's status, asked by this node over gRPC (`Cluster.Status`, [`CLUSTER_POLL_TIMEOUT_MS`] each, all at once), plus this node's leader history |
//!
//! `/api/cluster` JSON:
//!
//! ```text
//! { "served_by": 1, "time_ms": 1764094000000, "leader": 2 | null,
//!   "nodes": [ { "id": 1, "addr": "127.0.0.1:7001", "up": true, "error": null,
//!                "role": "leader" | "follower" | "candidate" | "pre-candidate" | "learner" | "removed" | "down",
//!                "removed": false,
//!                "term": 3, "leader_id": 2, "commit": 120, "applied": 120,
//!                "last_index": 120, "snapshot_index": 0,
//!                "reads_total": 10, "writes_total": 99,
//!                "peer_auth": "none" | "secret" | "tls" | "" (down) } ],
//!   "leader_history": [ { "time_ms": ..., "term": 3, "leader": 2 | null } ] }
//! ```
//!
//! A node that does not answer in time is listed with `"up": false`; the
//! page goes on showing the others, whichever node serves it. The
//! leader-change history is the serving node's own view (the last
//! [`LEADER_HISTORY_MAX`] changes).

pub mod grpc;
mod http;
pub mod metrics;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{oneshot, watch};

use crate::node::{NodeRequest, SoftView};
use crate::service::Handle;

pub(crate) use http::spawn;

/// How long `/api/cluster` waits for each member's status.
pub const CLUSTER_POLL_TIMEOUT_MS: u64 = 800;
/// Leader changes kept for the page.
pub const LEADER_HISTORY_MAX: usize = 200;
/// gRPC channels to members kept open by the page's poller.
pub const POLL_CHANNELS_MAX: usize = 64;

/// One leader change seen by this node.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LeaderChange {
    pub time_ms: u64,
    pub term: u64,
    pub leader: Option<u64>,
}

/// What the HTTP server needs of the node.
#[derive(Clone)]
pub(crate) struct Observer {
    pub(crate) id: u64,
    pub(crate) handle: Handle,
    pub(crate) data_dir: PathBuf,
    pub(crate) engine: Option<Arc<dyn Fn() -> Option<bitcask::Status> + Send + Sync>>,
    pub(crate) served: Arc<grpc::Served>,
    pub(crate) history: Arc<Mutex<VecDeque<LeaderChange>>>,
    pub(crate) token: Option<String>,
    pub(crate) tls: Option<tonic::transport::ClientTlsConfig>,
    pub(crate) channels: Arc<Mutex<BTreeMap<String, tonic::transport::Channel>>>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Observer {
    /// The Raft core's status, from the driver.
    pub(crate) async fn core_status(&self) -> Option<raft::Status> {
        let (tx, rx) = oneshot::channel();
        self.handle.send(NodeRequest::Status { reply: tx }).ok()?;
        tokio::time::timeout(Duration::from_millis(CLUSTER_POLL_TIMEOUT_MS), rx)
            .await
            .ok()?
            .ok()
    }

    /// Refreshes the scrape-time gauges.
    pub(crate) async fn refresh_gauges(&self) {
        if let Some(st) = self.core_status().await {
            metrics::set_removed(self.id, st.removed);
            let learner = st.conf.learners.contains(&self.id);
            let lags = st
                .progress
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, p)| (*id, st.last_index.saturating_sub(p.match_index)))
                .collect();
            metrics::set_core(
                self.id,
                &metrics::CoreGauges {
                    role: role_number(st.role, learner),
                    term: st.term,
                    leader: st.leader.unwrap_or(0),
                    commit: st.commit,
                    applied: *self.handle.applied.borrow(),
                    last_index: st.last_index,
                    snapshot_index: st.snapshot_index,
                    recovering: st.recovering,
                    lags,
                },
            );
        }
        let dir = self.data_dir.join("wal");
        let engine = self.engine.clone();
        let sizes =
            tokio::task::spawn_blocking(move || (dir_bytes(&dir), engine.and_then(|f| f())))
                .await
                .ok();
        if let Some((wal, engine)) = sizes {
            metrics::set_storage(self.id, wal, engine.as_ref());
        }
    }
}

fn role_number(role: raft::Role, learner: bool) -> f64 {
    match role {
        raft::Role::Follower if learner => 4.0,
        raft::Role::Follower => 0.0,
        raft::Role::PreCandidate => 1.0,
        raft::Role::Candidate => 2.0,
        raft::Role::Leader => 3.0,
    }
}

/// Total size of the regular files directly in `dir` (0 if unreadable).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Watches the node's soft state: logs and counts every leader change and
/// keeps the history for the page. Ends when the node's state channel
/// closes.
pub(crate) async fn watch_leader(
    id: u64,
    mut soft: watch::Receiver<SoftView>,
    history: Arc<Mutex<VecDeque<LeaderChange>>>,
) {
    let mut last: Option<(Option<u64>, u64)> = None;
    loop {
        let (leader, term, role, commit) = {
            let s = soft.borrow_and_update();
            (s.leader, s.term, s.role, s.commit)
        };
        let changed = match last {
            None => leader.is_some(),
            Some((l, _)) => l != leader,
        };
        if changed {
            metrics::leader_changed(id);
            // The driver logs the change at info; this is the page's view.
            tracing::debug!(node = id, term, leader = ?leader, role = ?role, commit,
                "leader change recorded");
            if let Ok(mut h) = history.lock() {
                if h.len() >= LEADER_HISTORY_MAX {
                    h.pop_front();
                }
                h.push_back(LeaderChange {
                    time_ms: now_ms(),
                    term,
                    leader,
                });
            }
        }
        last = Some((leader, term));
        if soft.changed().await.is_err() {
            return;
        }
    }
}

/// Starts what observes a node: the leader watcher and, if `http_addr` is
/// set, the HTTP server. Returns the gRPC layer to wrap the services in.
///
/// # Errors
/// The HTTP address cannot be bound, or the TLS files cannot be read.
pub(crate) async fn start(
    config: &crate::Config,
    handle: Handle,
    engine: Arc<crate::apply::Engine>,
    stop: watch::Receiver<bool>,
) -> Result<grpc::GrpcLayer, crate::ServerError> {
    let id = config.id;
    let _ = metrics::prometheus();
    let served = Arc::new(grpc::Served::default());
    let history = Arc::new(Mutex::new(VecDeque::new()));
    tokio::spawn(watch_leader(id, handle.soft.clone(), Arc::clone(&history)));
    if let Some(addr) = &config.http_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| crate::ServerError::Serve(format!("bind http_addr {addr}: {e}")))?;
        let tls = match &config.tls {
            Some(t) => Some(crate::security::client_tls(t)?),
            None => None,
        };
        let observer = Observer {
            id,
            handle,
            data_dir: config.data_dir.clone(),
            engine: Some(Arc::new(move || bitcask::Engine::status(&*engine).ok())),
            served: Arc::clone(&served),
            history,
            token: config.auth.own_token().map(str::to_string),
            tls,
            channels: Arc::default(),
        };
        tracing::info!(
            node = id,
            http_addr = addr,
            "serving /metrics and the web page"
        );
        spawn(observer, listener, stop);
    }
    Ok(grpc::GrpcLayer {
        id,
        auth: Arc::new(config.auth.clone()),
        served,
        metrics: Arc::new(metrics::GrpcMetrics::new(id)),
    })
}
