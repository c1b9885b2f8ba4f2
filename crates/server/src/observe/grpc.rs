//! A tower layer around every gRPC service of a node: it authorizes the
//! call (tokens, TLS client certificates for the peer service), times it and
//! counts it by method and status code, and counts client reads and writes.
//!
//! The status code of a call is read from the `grpc-status` response header
//! (tonic sends errors as "trailers-only" responses, so the code is in the
//! headers); a response without it finished `OK` unless its trailers say
//! otherwise, which only streaming calls do (the peer service's streams).
//!
//! `Cluster.Status` responses carry two extra headers, `raftkv-reads-total`
//! and `raftkv-writes-total`: the client reads and writes this node served
//! successfully since it started. The web page's `/api/cluster` turns them
//! into reads/s and writes/s.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};

use crate::observe::metrics;
use crate::security::{self, Access, AuthConfig};

/// The header with the reads served by a node.
pub const READS_HEADER: &str = "raftkv-reads-total";
/// The header with the writes served by a node.
pub const WRITES_HEADER: &str = "raftkv-writes-total";

/// Reads and writes served successfully.
#[derive(Debug, Default)]
pub struct Served {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
}

/// What the layer needs: the node id and the tokens. (The peer listener's
/// TLS requires a client certificate itself, and the peer handshake checks
/// that it names the caller: see the transport's `handshake` module.)
#[derive(Clone)]
pub struct GrpcLayer {
    pub id: u64,
    pub auth: Arc<AuthConfig>,
    pub served: Arc<Served>,
    pub metrics: Arc<metrics::GrpcMetrics>,
}

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcService<S>;

    fn layer(&self, inner: S) -> GrpcService<S> {
        GrpcService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`GrpcLayer`] wraps around the routes.
#[derive(Clone)]
pub struct GrpcService<S> {
    inner: S,
    layer: GrpcLayer,
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The method label of a path: `Service/Method` without the package, or
/// `other` for paths that are not ours (bounded label values).
fn method_label(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/raftkv.kv.Kv/Put",
        "/raftkv.kv.Kv/Get",
        "/raftkv.kv.Kv/Delete",
        "/raftkv.kv.Kv/Append",
        "/raftkv.kv.Kv/Scan",
        "/raftkv.kv.Kv/Txn",
        "/raftkv.kv.Kv/RegisterSession",
        "/raftkv.kv.Cluster/Status",
        "/raftkv.kv.Cluster/Members",
        "/raftkv.kv.Cluster/AddLearner",
        "/raftkv.kv.Cluster/Promote",
        "/raftkv.kv.Cluster/Remove",
        "/raftkv.kv.Cluster/TransferLeader",
        "/raftkv.kv.Cluster/Snapshot",
        "/raftkv.kv.Cluster/Backup",
        "/raftkv.raft.Raft/Send",
        "/raftkv.raft.Raft/InstallSnapshot",
        "/raftkv.health.Health/Ping",
    ];
    KNOWN
        .iter()
        .find(|k| **k == path)
        .map(|k| {
            let rest = k.trim_start_matches("/raftkv.");
            rest.split_once('.').map(|(_, m)| m).unwrap_or(rest)
        })
        .unwrap_or("other")
}

/// The INVALID_ARGUMENT answer to a request tonic found over the message
/// size limit (its OUT_OF_RANGE status in `headers`).
fn oversized_request(headers: &http::HeaderMap) -> tonic::Status {
    let detail = tonic::Status::from_header_map(headers)
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    tonic::Status::invalid_argument(format!(
        "request too large ({detail}): a key may have at most limits.key_size_max \
         and a value at most limits.value_size_max bytes"
    ))
}

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for GrpcService<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let start = Instant::now();
        let layer = self.layer.clone();
        let path = req.uri().path().to_string();
        let method = method_label(&path);
        let access = security::access_of(&path);
        let denied = security::authorize(
            &layer.auth,
            &path,
            req.headers()
                .get("authorization")
                .map(HeaderValue::as_bytes),
        )
        .err();
        if let Some(status) = denied {
            layer
                .metrics
                .request(method, code_name(status.code()), start.elapsed());
            tracing::debug!(node = layer.id, path, code = ?status.code(), "call refused");
            return Box::pin(async move { Ok(status.into_http()) });
        }
        // Keep the instance that was polled ready; leave a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut res = inner.call(req).await?;
            let code = res
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map(tonic::Code::from_i32)
                .unwrap_or(tonic::Code::Ok);
            // tonic refuses a request over the decoding limit with
            // OUT_OF_RANGE before our handler runs; the API promises
            // INVALID_ARGUMENT for a request over a limit.
            if code == tonic::Code::OutOfRange && path.starts_with("/raftkv.kv.") {
                let status = oversized_request(res.headers());
                layer
                    .metrics
                    .request(method, code_name(status.code()), start.elapsed());
                return Ok(status.into_http());
            }
            let ok = code == tonic::Code::Ok;
            layer
                .metrics
                .request(method, code_name(code), start.elapsed());
            if ok {
                match access {
                    Access::Read if path.starts_with("/raftkv.kv.Kv/") => {
                        layer.served.reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Access::Write if path.starts_with("/raftkv.kv.Kv/") => {
                        layer.served.writes.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            if access == Access::Write
                && path.starts_with("/raftkv.kv.Kv/")
                && path != "/raftkv.kv.Kv/RegisterSession"
            {
                match code {
                    tonic::Code::Ok => layer.metrics.proposal(true),
                    tonic::Code::Unavailable | tonic::Code::ResourceExhausted => {
                        layer.metrics.proposal(false)
                    }
                    _ => {}
                }
            }
            if path == "/raftkv.kv.Cluster/Status" {
                let h = res.headers_mut();
                let reads = layer.served.reads.load(Ordering::Relaxed);
                let writes = layer.served.writes.load(Ordering::Relaxed);
                h.insert(READS_HEADER, HeaderValue::from(reads));
                h.insert(WRITES_HEADER, HeaderValue::from(writes));
            }
            Ok(res)
        })
    }
}
