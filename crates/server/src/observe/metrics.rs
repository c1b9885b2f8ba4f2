//! The metrics a node exports, and the one-line helpers the rest of the
//! server calls at each event.
//!
//! Metrics go through the `metrics` facade into one process-wide Prometheus
//! recorder ([`prometheus`]); every series carries a `node` label, so
//! several nodes in one process (tests) stay apart. Histograms are rendered
//! as Prometheus histograms with the buckets of [`LATENCY_BUCKETS`] (seconds)
//! or [`BYTES_BUCKETS`].
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `raftkv_role` (0 follower, 1 pre-candidate, 2 candidate, 3 leader, 4 learner) | gauge | node |
//! | `raftkv_term`, `raftkv_leader_id`, `raftkv_commit_index`, `raftkv_applied_index`, `raftkv_last_log_index`, `raftkv_snapshot_index` | gauge | node |
//! | `raftkv_removed` (1: this node was removed from the cluster and serves nothing) | gauge | node |
//! | `raftkv_leader_changes_total` | counter | node |
//! | `raftkv_proposals_total` | counter | node, result = ok / dropped |
//! | `raftkv_messages_sent_total` | counter | node, type |
//! | `raftkv_append_entries_rejected_total` | counter | node |
//! | `raftkv_follower_lost_data_total` (leader: a follower rejected at or below its match) | counter | node, follower |
//! | `raftkv_recovering` (1 while this node repairs lost data: no votes) | gauge | node |
//! | `raftkv_follower_match_lag` (leader only: last log index − match index) | gauge | node, follower |
//! | `raftkv_wal_append_seconds`, `raftkv_wal_fsync_seconds`, `raftkv_apply_seconds`, `raftkv_read_index_seconds` | histogram | node |
//! | `raftkv_snapshot_sends_total`, `raftkv_snapshot_installs_total` | counter | node, result |
//! | `raftkv_snapshot_send_seconds`, `raftkv_snapshot_install_seconds` | histogram | node |
//! | `raftkv_snapshot_bytes` (installed on this node) | histogram | node, direction = received |
//! | `raftkv_leader_down_reports_total` | counter | node |
//! | `raftkv_merges_total` | counter | node, result = ok / failed |
//! | `raftkv_forwarded_calls_total` | counter | node |
//! | `raftkv_peer_refused_total` (handshakes this node refused) | counter | node, reason |
//! | `raftkv_peer_refused_by_total` (refusals this node got from peers) | counter | node, reason |
//! | `raftkv_peer_messages_dropped_total` (peer messages dropped unstepped) | counter | node, reason |
//! | `raftkv_peer_replaced_total` (a known peer showed a new incarnation) | counter | node |
//! | `raftkv_grpc_requests_total` | counter | node, method, code |
//! | `raftkv_grpc_request_seconds` | histogram | node, method |
//! | `raftkv_wal_bytes` | gauge | node |
//! | `raftkv_bitcask_bytes` | gauge | node, kind = live / dead / disk |
//! | `raftkv_keys`, `raftkv_sessions` | gauge | node |

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: 50 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Size buckets, in bytes: 1 KiB to 1 GiB.
pub const BYTES_BUCKETS: &[f64] = &[
    1024.0,
    16384.0,
    262144.0,
    1048576.0,
    16777216.0,
    268435456.0,
    1073741824.0,
];

/// The process-wide Prometheus recorder, installed on first use. `None` if
/// another recorder was installed first (then nothing is exported).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES_BUCKETS)
                .and_then(|b| b.set_buckets(LATENCY_BUCKETS))
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// `# HELP` texts.
fn describe() {
    use metrics::{describe_counter as c, describe_gauge as g, describe_histogram as h, Unit};
    g!(
        "raftkv_role",
        "0 follower, 1 pre-candidate, 2 candidate, 3 leader, 4 learner"
    );
    g!("raftkv_term", "current Raft term");
    g!(
        "raftkv_removed",
        "1: this node was removed from the cluster and serves nothing"
    );
    g!(
        "raftkv_leader_id",
        "the leader this node knows of (0: none)"
    );
    g!("raftkv_commit_index", "highest log index known committed");
    g!(
        "raftkv_applied_index",
        "highest log index applied to the state machine"
    );
    g!(
        "raftkv_last_log_index",
        "index of the last entry in the log"
    );
    g!(
        "raftkv_snapshot_index",
        "index covered by the latest snapshot"
    );
    g!(
        "raftkv_follower_match_lag",
        "leader only: last log index minus the follower's match index"
    );
    g!(
        "raftkv_wal_bytes",
        Unit::Bytes,
        "size of the WAL segment files"
    );
    g!(
        "raftkv_bitcask_bytes",
        Unit::Bytes,
        "Bitcask record bytes: live, dead (merge reclaims), disk"
    );
    g!(
        "raftkv_keys",
        "keys in the state machine's engine (session records included)"
    );
    g!("raftkv_sessions", "client sessions in the state machine");
    c!(
        "raftkv_peer_refused_total",
        "peer handshakes this node refused, by reason"
    );
    c!(
        "raftkv_peer_refused_by_total",
        "refusals this node got from its peers, by reason"
    );
    c!(
        "raftkv_peer_messages_dropped_total",
        "peer messages dropped before the core: from-mismatch, to-mismatch, not-member"
    );
    c!(
        "raftkv_peer_replaced_total",
        "handshakes from a known peer with a new incarnation (its data dir was replaced)"
    );
    c!(
        "raftkv_leader_changes_total",
        "times the leader known to this node changed"
    );
    c!(
        "raftkv_proposals_total",
        "client writes: ok (applied) or dropped (unavailable, overloaded)"
    );
    c!(
        "raftkv_messages_sent_total",
        "Raft messages handed to the transport, by type"
    );
    c!(
        "raftkv_append_entries_rejected_total",
        "AppendEntries rejected by followers (log mismatch)"
    );
    c!(
        "raftkv_follower_lost_data_total",
        "leader only: followers that rejected entries at or below their match index (lost data)"
    );
    g!(
        "raftkv_recovering",
        "1 while this node repairs lost data (grants no votes, does not campaign)"
    );
    c!(
        "raftkv_snapshot_sends_total",
        "snapshots streamed to followers"
    );
    c!(
        "raftkv_snapshot_installs_total",
        "snapshots from the leader installed"
    );
    c!(
        "raftkv_leader_down_reports_total",
        "times this follower's leader was reported down (connection refused) and it forgot it"
    );
    c!(
        "raftkv_merges_total",
        "automatic merges of the state machine's Bitcask files, by result"
    );
    c!(
        "raftkv_forwarded_calls_total",
        "Kv calls this follower forwarded to the leader"
    );
    c!(
        "raftkv_grpc_requests_total",
        "gRPC calls served, by method and status code"
    );
    h!(
        "raftkv_grpc_request_seconds",
        Unit::Seconds,
        "gRPC call latency"
    );
    h!(
        "raftkv_wal_append_seconds",
        Unit::Seconds,
        "WAL append (buffered write) latency"
    );
    h!(
        "raftkv_wal_fsync_seconds",
        Unit::Seconds,
        "WAL fsync latency"
    );
    h!(
        "raftkv_apply_seconds",
        Unit::Seconds,
        "latency of applying one batch of committed entries"
    );
    h!(
        "raftkv_read_index_seconds",
        Unit::Seconds,
        "ReadIndex round: leadership confirmed and applied caught up"
    );
    h!(
        "raftkv_snapshot_send_seconds",
        Unit::Seconds,
        "time to stream a snapshot to a follower"
    );
    h!(
        "raftkv_snapshot_install_seconds",
        Unit::Seconds,
        "time to restore a received snapshot"
    );
    h!(
        "raftkv_snapshot_bytes",
        Unit::Bytes,
        "size of snapshots installed"
    );
}

fn node(id: u64) -> String {
    id.to_string()
}

/// A message of `kind` was handed to the transport.
pub fn message_sent(id: u64, kind: &'static str) {
    counter!("raftkv_messages_sent_total", "node" => node(id), "type" => kind).increment(1);
}

/// A follower rejected our AppendEntries (log mismatch).
pub fn append_rejected(id: u64) {
    counter!("raftkv_append_entries_rejected_total", "node" => node(id)).increment(1);
}

/// Entries were appended to the WAL (buffered, before the fsync).
pub fn wal_append(id: u64, took: Duration) {
    histogram!("raftkv_wal_append_seconds", "node" => node(id)).record(took.as_secs_f64());
}

/// The WAL was fsynced.
pub fn wal_fsync(id: u64, took: Duration) {
    histogram!("raftkv_wal_fsync_seconds", "node" => node(id)).record(took.as_secs_f64());
}

/// A batch of committed entries was applied to the state machine.
pub fn applied(id: u64, took: Duration, sessions: usize) {
    histogram!("raftkv_apply_seconds", "node" => node(id)).record(took.as_secs_f64());
    gauge!("raftkv_sessions", "node" => node(id)).set(sessions as f64);
}

/// A ReadIndex round finished (leadership confirmed and applied caught up).
pub fn read_index(id: u64, took: Duration) {
    histogram!("raftkv_read_index_seconds", "node" => node(id)).record(took.as_secs_f64());
}

/// A snapshot was streamed to a follower (or failed to be). Its size is
/// counted on the receiving side (`direction = "received"`).
pub fn snapshot_sent(id: u64, ok: bool, took: Duration) {
    let result = if ok { "ok" } else { "error" };
    counter!("raftkv_snapshot_sends_total", "node" => node(id), "result" => result).increment(1);
    histogram!("raftkv_snapshot_send_seconds", "node" => node(id)).record(took.as_secs_f64());
}

/// A snapshot from the leader was installed (or failed to be).
pub fn snapshot_installed(id: u64, ok: bool, took: Duration, bytes: u64) {
    let result = if ok { "ok" } else { "error" };
    counter!("raftkv_snapshot_installs_total", "node" => node(id), "result" => result).increment(1);
    histogram!("raftkv_snapshot_install_seconds", "node" => node(id)).record(took.as_secs_f64());
    if ok {
        histogram!("raftkv_snapshot_bytes", "node" => node(id), "direction" => "received")
            .record(bytes as f64);
    }
}

/// Whether this node was removed from the cluster.
pub fn set_removed(id: u64, removed: bool) {
    gauge!("raftkv_removed", "node" => node(id)).set(if removed { 1.0 } else { 0.0 });
}

/// This leader found that `follower` lost data it had acknowledged.
pub fn follower_lost_data(id: u64, follower: u64) {
    counter!("raftkv_follower_lost_data_total", "node" => node(id), "follower" => follower.to_string())
        .increment(1);
}

/// The leader this node knows changed (to `None` too).
pub fn leader_changed(id: u64) {
    counter!("raftkv_leader_changes_total", "node" => node(id)).increment(1);
}

/// This follower's leader was reported down and it forgot it.
pub fn leader_down_report(id: u64) {
    counter!("raftkv_leader_down_reports_total", "node" => node(id)).increment(1);
}

/// An automatic merge ran (`ok`) or failed.
pub fn merge(id: u64, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    counter!("raftkv_merges_total", "node" => node(id), "result" => result).increment(1);
}

/// This node refused a peer's handshake.
pub fn peer_refused(id: u64, reason: &'static str) {
    counter!("raftkv_peer_refused_total", "node" => node(id), "reason" => reason).increment(1);
}

/// A peer refused this node's handshake.
pub fn peer_refused_by(id: u64, reason: &'static str) {
    counter!("raftkv_peer_refused_by_total", "node" => node(id), "reason" => reason).increment(1);
}

/// A peer message was dropped before reaching the core.
pub fn peer_message_dropped(id: u64, reason: &'static str) {
    counter!("raftkv_peer_messages_dropped_total", "node" => node(id), "reason" => reason)
        .increment(1);
}

/// A known peer showed a new incarnation.
pub fn peer_replaced(id: u64) {
    counter!("raftkv_peer_replaced_total", "node" => node(id)).increment(1);
}

/// A `Kv` call was forwarded to the leader.
pub fn forwarded(id: u64) {
    counter!("raftkv_forwarded_calls_total", "node" => node(id)).increment(1);
}

/// A gRPC method label and a status code name.
type MethodCode = (&'static str, &'static str);

/// The per-call metrics of one node's gRPC layer. Their handles are made
/// once per (method, code) and kept: finding a series in the registry on
/// every call (label strings allocated and hashed, three lookups) showed up
/// in the leader's profile under load. Label values are bounded (methods
/// and codes are fixed sets), and so is the map.
pub struct GrpcMetrics {
    id: u64,
    calls: Mutex<HashMap<MethodCode, (Counter, Histogram)>>,
    /// Proposals `ok` and `dropped`.
    proposals: [OnceLock<Counter>; 2],
}

impl GrpcMetrics {
    pub fn new(id: u64) -> GrpcMetrics {
        GrpcMetrics {
            id,
            calls: Mutex::new(HashMap::new()),
            proposals: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// A gRPC call of `method` finished with `code` (the status code name).
    pub fn request(&self, method: &'static str, code: &'static str, took: Duration) {
        let id = self.id;
        let (calls, seconds) = {
            let mut m = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            m.entry((method, code))
                .or_insert_with(|| {
                    (
                        counter!("raftkv_grpc_requests_total", "node" => node(id),
                            "method" => method, "code" => code),
                        histogram!("raftkv_grpc_request_seconds", "node" => node(id),
                            "method" => method),
                    )
                })
                .clone()
        };
        calls.increment(1);
        seconds.record(took.as_secs_f64());
    }

    /// A client write finished: committed and applied (`ok`) or not.
    pub fn proposal(&self, ok: bool) {
        let (slot, result) = if ok { (0, "ok") } else { (1, "dropped") };
        self.proposals[slot]
            .get_or_init(
                || counter!("raftkv_proposals_total", "node" => node(self.id), "result" => result),
            )
            .increment(1);
    }
}

/// Scrape-time gauges of the Raft core.
pub struct CoreGauges {
    pub role: f64,
    pub term: u64,
    pub leader: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    /// Recovering lost data.
    pub recovering: bool,
    /// (follower, lag) for every other member, on the leader.
    pub lags: Vec<(u64, u64)>,
}

/// Sets the core's gauges.
pub fn set_core(id: u64, g: &CoreGauges) {
    gauge!("raftkv_role", "node" => node(id)).set(g.role);
    gauge!("raftkv_term", "node" => node(id)).set(g.term as f64);
    gauge!("raftkv_leader_id", "node" => node(id)).set(g.leader as f64);
    gauge!("raftkv_commit_index", "node" => node(id)).set(g.commit as f64);
    gauge!("raftkv_applied_index", "node" => node(id)).set(g.applied as f64);
    gauge!("raftkv_last_log_index", "node" => node(id)).set(g.last_index as f64);
    gauge!("raftkv_snapshot_index", "node" => node(id)).set(g.snapshot_index as f64);
    gauge!("raftkv_recovering", "node" => node(id)).set(if g.recovering { 1.0 } else { 0.0 });
    for (f, lag) in &g.lags {
        gauge!("raftkv_follower_match_lag", "node" => node(id), "follower" => f.to_string())
            .set(*lag as f64);
    }
}

/// Sets the storage gauges.
pub fn set_storage(id: u64, wal_bytes: u64, engine: Option<&bitcask::Status>) {
    gauge!("raftkv_wal_bytes", "node" => node(id)).set(wal_bytes as f64);
    if let Some(s) = engine {
        gauge!("raftkv_bitcask_bytes", "node" => node(id), "kind" => "live")
            .set(s.live_bytes as f64);
        gauge!("raftkv_bitcask_bytes", "node" => node(id), "kind" => "dead")
            .set(s.dead_bytes as f64);
        gauge!("raftkv_bitcask_bytes", "node" => node(id), "kind" => "disk")
            .set(s.disk_bytes as f64);
        gauge!("raftkv_keys", "node" => node(id)).set(s.keys as f64);
    }
}

/// Counts a message handed to the transport, by its kind.
pub fn count_sent(id: u64, m: &raft::Message) {
    use raft::MessageBody as B;
    let kind = match &m.body {
        B::PreVote { .. } => "pre_vote",
        B::PreVoteResponse { .. } => "pre_vote_response",
        B::RequestVote { .. } => "request_vote",
        B::RequestVoteResponse { .. } => "request_vote_response",
        B::AppendEntries { .. } => "append_entries",
        B::AppendEntriesResponse { .. } => "append_entries_response",
        B::Heartbeat { .. } => "heartbeat",
        B::HeartbeatResponse { .. } => "heartbeat_response",
        B::InstallSnapshot { .. } => "install_snapshot",
        B::TimeoutNow => "timeout_now",
        B::ReadIndex { .. } => "read_index",
        B::ReadIndexResponse { .. } => "read_index_response",
        #[allow(unreachable_patterns)]
        _ => "other",
    };
    message_sent(id, kind);
}

/// Counts a received message: a rejected AppendEntries, seen by the leader.
pub fn count_received(id: u64, m: &raft::Message) {
    if let raft::MessageBody::AppendEntriesResponse { reject: true, .. } = &m.body {
        append_rejected(id);
    }
}
