//! The node's HTTP server (axum): routes of the module docs in [`super`].

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use proto::kv as pb;
use serde::Serialize;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use super::grpc::{READS_HEADER, WRITES_HEADER};
use super::{now_ms, Observer, CLUSTER_POLL_TIMEOUT_MS, POLL_CHANNELS_MAX};

const PAGE_HTML: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("page.js");

/// Serves the routes on `listener` until `stop` turns true.
pub(crate) fn spawn(
    observer: Observer,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let id = observer.id;
    let app = Router::new()
        .route("/", get(page))
        .route("/page.js", get(script))
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(api_status))
        .route("/api/cluster", get(api_cluster))
        .with_state(observer);
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::warn!(node = id, error = %e, "HTTP server stopped");
        }
    })
}

async fn page() -> Html<&'static str> {
    Html(PAGE_HTML)
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        PAGE_JS,
    )
        .into_response()
}

async fn metrics_text(State(o): State<Observer>) -> Response {
    o.refresh_gauges().await;
    match super::metrics::prometheus() {
        Some(h) => {
            h.run_upkeep();
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                h.render(),
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed in this process",
        )
            .into_response(),
    }
}

/// One node as the page shows it.
#[derive(Debug, Serialize)]
struct NodeView {
    id: u64,
    addr: String,
    up: bool,
    error: Option<String>,
    role: &'static str,
    /// Removed from the cluster (the role is then "removed" too).
    removed: bool,
    term: u64,
    leader_id: u64,
    commit: u64,
    applied: u64,
    last_index: u64,
    snapshot_index: u64,
    reads_total: u64,
    writes_total: u64,
    /// How peers authenticate to it: none, secret, tls.
    peer_auth: String,
}

impl NodeView {
    fn down(id: u64, addr: String, error: String) -> NodeView {
        NodeView {
            id,
            addr,
            up: false,
            error: Some(error),
            role: "down",
            removed: false,
            term: 0,
            leader_id: 0,
            commit: 0,
            applied: 0,
            last_index: 0,
            snapshot_index: 0,
            reads_total: 0,
            writes_total: 0,
            peer_auth: String::new(),
        }
    }
}

#[derive(Debug, Serialize)]
struct ClusterView {
    served_by: u64,
    time_ms: u64,
    leader: Option<u64>,
    nodes: Vec<NodeView>,
    leader_history: Vec<super::LeaderChange>,
}

fn role_name(r: i32) -> &'static str {
    match pb::Role::try_from(r) {
        Ok(pb::Role::Leader) => "leader",
        Ok(pb::Role::Candidate) => "candidate",
        Ok(pb::Role::PreCandidate) => "pre-candidate",
        Ok(pb::Role::Learner) => "learner",
        Ok(pb::Role::Follower) => "follower",
        _ => "unknown",
    }
}

fn header_u64(md: &tonic::metadata::MetadataMap, key: &str) -> u64 {
    md.get(key)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Observer {
    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut map = self
            .channels
            .lock()
            .map_err(|_| "channel cache poisoned".to_string())?;
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad address {addr}: {e}"))?
            .connect_timeout(Duration::from_millis(CLUSTER_POLL_TIMEOUT_MS))
            .timeout(Duration::from_millis(CLUSTER_POLL_TIMEOUT_MS));
        if let Some(tls) = &self.tls {
            ep = ep
                .tls_config(tls.clone())
                .map_err(|e| format!("TLS: {e}"))?;
        }
        let c = ep.connect_lazy();
        if map.len() >= POLL_CHANNELS_MAX {
            map.clear();
        }
        map.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    async fn poll(&self, id: u64, addr: String) -> NodeView {
        let channel = match self.channel(&addr) {
            Ok(c) => c,
            Err(e) => return NodeView::down(id, addr, e),
        };
        let mut req = tonic::Request::new(pb::StatusRequest {});
        req.set_timeout(Duration::from_millis(CLUSTER_POLL_TIMEOUT_MS));
        if let Some(v) = self
            .token
            .as_ref()
            .and_then(|t| format!("Bearer {t}").parse().ok())
        {
            req.metadata_mut().insert("authorization", v);
        }
        let mut client = pb::cluster_client::ClusterClient::new(channel);
        let call = client.status(req);
        match tokio::time::timeout(Duration::from_millis(CLUSTER_POLL_TIMEOUT_MS), call).await {
            Err(_) => NodeView::down(id, addr, "timed out".into()),
            Ok(Err(e)) => NodeView::down(id, addr, e.message().to_string()),
            Ok(Ok(resp)) => {
                let reads_total = header_u64(resp.metadata(), READS_HEADER);
                let writes_total = header_u64(resp.metadata(), WRITES_HEADER);
                let s = resp.into_inner();
                NodeView {
                    id: s.id,
                    addr,
                    up: true,
                    error: None,
                    role: if s.removed {
                        "removed"
                    } else {
                        role_name(s.role)
                    },
                    removed: s.removed,
                    term: s.term,
                    leader_id: s.leader_id,
                    commit: s.commit_index,
                    applied: s.applied_index,
                    last_index: s.last_log_index,
                    snapshot_index: s.snapshot_index,
                    peer_auth: s.peer_auth.clone(),
                    reads_total,
                    writes_total,
                }
            }
        }
    }

    /// Every member's status (see the module docs of [`super`]).
    async fn cluster(&self) -> ClusterView {
        let mut ids: Vec<u64> = self
            .handle
            .soft
            .borrow()
            .conf
            .members()
            .into_iter()
            .collect();
        ids.push(self.id);
        ids.sort_unstable();
        ids.dedup();
        let book = self.handle.book.all();
        let polls = ids.iter().map(|&id| {
            let addr = if id == self.id {
                self.handle.addr.clone()
            } else {
                book.get(&id)
                    .and_then(|e| e.client.clone())
                    .unwrap_or_default()
            };
            self.poll(id, addr)
        });
        let nodes = futures_join_all(polls).await;
        // The leader: the node that says it leads with the highest term.
        let leader = nodes
            .iter()
            .filter(|n| n.up && n.role == "leader")
            .max_by_key(|n| n.term)
            .map(|n| n.id);
        let leader_history = self
            .history
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        ClusterView {
            served_by: self.id,
            time_ms: now_ms(),
            leader,
            nodes,
            leader_history,
        }
    }
}

/// Runs all futures concurrently (they are few: one per member).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out = Vec::with_capacity(set.len());
    // Poll them all from one future (tokio's JoinSet would need 'static).
    let mut results: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}

async fn api_cluster(State(o): State<Observer>) -> Json<ClusterView> {
    Json(o.cluster().await)
}

async fn api_status(State(o): State<Observer>) -> Response {
    match o.core_status().await {
        Some(st) => Json(serde_json::json!({
            "id": o.id,
            "addr": o.handle.addr,
            "peer_auth": o.handle.peer_auth.as_str(),
            "role": if st.removed { "removed".to_string() } else { st.role.to_string() },
            "removed": st.removed,
            "term": st.term,
            "leader_id": st.leader,
            "commit": st.commit,
            "applied": *o.handle.applied.borrow(),
            "last_index": st.last_index,
            "snapshot_index": st.snapshot_index,
            "reads_total": o.served.reads.load(std::sync::atomic::Ordering::Relaxed),
            "writes_total": o.served.writes.load(std::sync::atomic::Ordering::Relaxed),
        }))
        .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "the node did not answer").into_response(),
    }
}
