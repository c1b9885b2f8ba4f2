//! [`Client`]: endpoints, channels, leader tracking and the retry loop every
//! operation goes through.
//!
//! # Routing
//!
//! The client keeps a list of endpoints (the seeds given to
//! [`Client::connect`] plus leader addresses learned from hints, at most
//! [`ENDPOINTS_MAX`](crate::limits::ENDPOINTS_MAX)) and the address of the
//! leader it last saw. An operation is sent to the known leader, else to the
//! next endpoint in turn. When a node answers `UNAVAILABLE` with the
//! `raftkv-leader-addr` metadata, the client goes there at once; when it
//! answers `UNAVAILABLE` without a hint, fails to connect, or does not answer
//! within [`ClientConfig::attempt_timeout`], the client forgets that leader,
//! backs off (exponentially, with jitter) and tries the next endpoint. All
//! of this happens inside the operation's [`ClientConfig::deadline`].
//!
//! Calls ask followers for that hint (`raftkv-no-forward`) rather than
//! letting them forward, so the client soon talks to the leader directly.
//! With [`ClientConfig::follower_forwarding`] the followers forward instead,
//! and the "leader" the client keeps is simply the last node that answered.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::limits;
use crate::security::{Auth, Conn};
use crate::session::Sessions;

/// Where an operation may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Only the leader (writes, linearizable reads, membership changes):
    /// follow leader hints.
    Leader,
    /// Any node (serializable reads, status): prefer the known leader, move
    /// on only when a node cannot be reached.
    Any,
}

/// A client of a raftkv cluster. Cheap to clone; clones share connections,
/// the known leader and the session pool, and may be used from many tasks at
/// once.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    routing: Mutex<Routing>,
    channels: Mutex<HashMap<String, Channel>>,
    auth: Auth,
    pub(crate) sessions: Sessions,
    /// State of the jitter generator (xorshift64*).
    jitter: AtomicU64,
}

struct Routing {
    /// Seeds first, then learned addresses; never empty.
    endpoints: Vec<String>,
    /// The leader's address as last seen.
    leader: Option<String>,
    /// The endpoint to try next when no leader is known.
    next: usize,
}

/// How one failed attempt is handled.
enum Failure {
    /// Go to this address at once (a leader hint).
    Redirect(String),
    /// Back off, then try the next endpoint; the attempt may have reached
    /// the node (so a write may have applied).
    Retry {
        message: String,
        in_doubt: bool,
        timed_out: bool,
    },
    /// Back off and try the same node again (overload).
    Overloaded(String),
    /// Give up with this status.
    Final(tonic::Status),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routing = self.inner.routing();
        f.debug_struct("Client")
            .field("endpoints", &routing.endpoints)
            .field("leader", &routing.leader)
            .finish()
    }
}

impl Client {
    /// A client of the cluster reachable at `endpoints` (`host:port` each;
    /// any subset of the nodes will do, the rest are learned from leader
    /// hints). Connections are made lazily, so this succeeds while nodes are
    /// down; the first operation finds a live node and the leader.
    ///
    /// # Errors
    /// [`Error::NoEndpoints`] for an empty list, [`Error::InvalidEndpoint`]
    /// for an endpoint that is not `host:port`.
    pub fn connect(endpoints: Vec<String>, config: ClientConfig) -> Result<Client> {
        let mut list: Vec<String> = Vec::new();
        for e in endpoints {
            let e = normalize_endpoint(&e)?;
            if !list.contains(&e) && list.len() < limits::ENDPOINTS_MAX {
                list.push(e);
            }
        }
        if list.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let seed = std::collections::hash_map::RandomState::new();
        let seed = std::hash::BuildHasher::hash_one(&seed, std::process::id()) | 1;
        let sessions = Sessions::new(config.sessions_max.max(1));
        let auth = Auth::new(config.token.as_deref(), config.follower_forwarding)?;
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                routing: Mutex::new(Routing {
                    endpoints: list,
                    leader: None,
                    next: 0,
                }),
                channels: Mutex::new(HashMap::new()),
                auth,
                sessions,
                jitter: AtomicU64::new(seed),
            }),
        })
    }

    /// The endpoints this client knows (seeds and learned leader addresses).
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.routing().endpoints.clone()
    }

    /// The leader's address as last seen, if any.
    pub fn leader(&self) -> Option<String> {
        self.inner.routing().leader.clone()
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Runs `attempt` against nodes chosen by `route` until it succeeds, a
    /// final error comes back, or the deadline passes. `in_doubt` is set
    /// when an attempt may have reached a node without its answer coming
    /// back.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        route: Route,
        in_doubt: &mut bool,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let config = &self.inner.config;
        let deadline = Instant::now() + config.deadline;
        let mut backoff = config.backoff_initial;
        let mut redirects = 0u32;
        let mut last = String::from("no attempt made");
        let mut last_kind = LastKind::Unavailable;
        let mut target: Option<String> = None;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(match last_kind {
                    LastKind::Unavailable => Error::Unavailable { last },
                    LastKind::Timeout => Error::DeadlineExceeded { last },
                    LastKind::Overloaded => Error::ResourceExhausted(last),
                });
            }
            let addr = match target.take() {
                Some(a) => a,
                None => self.inner.pick(),
            };
            let channel = self.inner.channel(&addr)?;
            let budget = config.attempt_timeout.min(deadline - now);
            let failure = match tokio::time::timeout(budget, attempt(channel)).await {
                Ok(Ok(response)) => {
                    if route == Route::Leader {
                        self.inner.set_leader(&addr);
                    }
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) => classify(&status, route),
                Err(_) => Failure::Retry {
                    message: format!("{addr}: no answer within {budget:?}"),
                    in_doubt: true,
                    timed_out: true,
                },
            };
            match failure {
                Failure::Final(status) => return Err(Error::from_status(&status)),
                Failure::Redirect(leader)
                    if leader != addr && redirects < limits::REDIRECTS_IN_A_ROW_MAX =>
                {
                    tracing::debug!(from = %addr, to = %leader, "following leader hint");
                    redirects += 1;
                    last = format!("{addr}: not the leader, redirected to {leader}");
                    last_kind = LastKind::Unavailable;
                    self.inner.learn_leader(&leader);
                    target = Some(leader);
                    continue;
                }
                Failure::Redirect(leader) => {
                    last = format!("{addr}: not the leader, points to {leader}");
                    last_kind = LastKind::Unavailable;
                    self.inner.failed(&addr);
                }
                Failure::Retry {
                    message,
                    in_doubt: doubt,
                    timed_out,
                } => {
                    tracing::debug!(%addr, %message, "attempt failed");
                    *in_doubt |= doubt;
                    last_kind = if timed_out {
                        LastKind::Timeout
                    } else {
                        LastKind::Unavailable
                    };
                    last = format!("{addr}: {message}");
                    self.inner.failed(&addr);
                }
                Failure::Overloaded(message) => {
                    last = format!("{addr}: {message}");
                    last_kind = LastKind::Overloaded;
                    target = Some(addr);
                }
            }
            redirects = 0;
            let sleep = self.inner.jittered(backoff);
            let sleep = sleep.min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(sleep).await;
            backoff = (backoff * 2).min(config.backoff_max);
        }
    }

    /// One attempt at one node, no retry, no redirect (status of a given
    /// node, snapshot of a node), given at most `budget`.
    pub(crate) async fn call_node<T, F, Fut>(
        &self,
        addr: &str,
        budget: Duration,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let addr = normalize_endpoint(addr)?;
        let channel = self.inner.channel(&addr)?;
        match tokio::time::timeout(budget, attempt(channel)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(match classify(&status, Route::Any) {
                Failure::Retry { message, .. } => Error::Unavailable {
                    last: format!("{addr}: {message}"),
                },
                _ => Error::from_status(&status),
            }),
            Err(_) => Err(Error::DeadlineExceeded {
                last: format!("{addr}: no answer within {budget:?}"),
            }),
        }
    }
}

#[derive(Clone, Copy)]
enum LastKind {
    Unavailable,
    Timeout,
    Overloaded,
}

/// Decides what a failed attempt means.
fn classify(status: &tonic::Status, route: Route) -> Failure {
    use tonic::Code;
    match status.code() {
        Code::Unavailable => {
            let hint = status
                .metadata()
                .get(proto::kv::LEADER_ADDR_METADATA)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| !s.is_empty());
            match (route, hint) {
                (Route::Leader, Some(addr)) => match normalize_endpoint(addr) {
                    Ok(addr) => Failure::Redirect(addr),
                    Err(_) => Failure::Retry {
                        message: status.message().to_string(),
                        in_doubt: false,
                        timed_out: false,
                    },
                },
                // A refused connection never reached the node; other
                // `Unavailable` answers come from the node before it
                // proposed anything, or from a lost reply: in doubt.
                _ => Failure::Retry {
                    message: status.message().to_string(),
                    in_doubt: !is_connect_error(status),
                    timed_out: false,
                },
            }
        }
        // A broken connection, a node shutting down or a reset stream.
        Code::Unknown | Code::Cancelled | Code::Aborted if is_transport_error(status) => {
            Failure::Retry {
                message: status.message().to_string(),
                in_doubt: true,
                timed_out: false,
            }
        }
        Code::Cancelled => Failure::Retry {
            message: status.message().to_string(),
            in_doubt: true,
            timed_out: false,
        },
        Code::ResourceExhausted => Failure::Overloaded(status.message().to_string()),
        // A node removed from the cluster refuses before doing anything:
        // the next endpoint may be a member.
        Code::FailedPrecondition
            if status
                .metadata()
                .get(proto::kv::ERROR_METADATA)
                .is_some_and(|v| v.as_bytes() == proto::kv::NODE_REMOVED.as_bytes()) =>
        {
            Failure::Retry {
                message: status.message().to_string(),
                in_doubt: false,
                timed_out: false,
            }
        }
        _ => Failure::Final(status.clone()),
    }
}

fn is_connect_error(status: &tonic::Status) -> bool {
    // Only failures before a request could be sent: tonic reports them as
    // "tcp connect error", "connection refused" or "dns error". A reset or
    // closed connection may have carried the request.
    let m = status.message().to_ascii_lowercase();
    m.contains("tcp connect") || m.contains("connection refused") || m.contains("dns error")
}

fn is_transport_error(status: &tonic::Status) -> bool {
    let m = status.message().to_ascii_lowercase();
    [
        "transport",
        "connection",
        "h2 protocol",
        "broken pipe",
        "reset",
        "closed",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// Checks `host:port` and drops an `http://` prefix.
pub(crate) fn normalize_endpoint(e: &str) -> Result<String> {
    let trimmed = e.trim();
    let s = trimmed
        .strip_prefix("http://")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    let bad = |reason: &str| Error::InvalidEndpoint {
        endpoint: e.to_string(),
        reason: reason.to_string(),
    };
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(s.to_string()),
        _ => Err(bad("no valid port")),
    }
}

impl Inner {
    fn routing(&self) -> MutexGuard<'_, Routing> {
        // A panic while holding this lock cannot leave the routing table
        // inconsistent (every update is a single assignment), so a poisoned
        // lock is still usable.
        self.routing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pick(&self) -> String {
        let mut r = self.routing();
        if let Some(l) = &r.leader {
            return l.clone();
        }
        let i = r.next % r.endpoints.len();
        r.next = i;
        r.endpoints[i].clone()
    }

    fn set_leader(&self, addr: &str) {
        let mut r = self.routing();
        if r.leader.as_deref() != Some(addr) {
            r.leader = Some(addr.to_string());
        }
    }

    fn learn_leader(&self, addr: &str) {
        let mut r = self.routing();
        if !r.endpoints.iter().any(|e| e == addr) && r.endpoints.len() < limits::ENDPOINTS_MAX {
            r.endpoints.push(addr.to_string());
        }
        r.leader = Some(addr.to_string());
    }

    /// `addr` failed: forget it as leader and move past it.
    fn failed(&self, addr: &str) {
        let mut r = self.routing();
        if r.leader.as_deref() == Some(addr) {
            r.leader = None;
        }
        let n = r.endpoints.len();
        r.next = match r.endpoints.iter().position(|e| e == addr) {
            Some(i) => (i + 1) % n,
            None => (r.next + 1) % n,
        };
    }

    fn channel(&self, addr: &str) -> Result<Conn> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(Conn::new(c.clone(), self.auth.clone()));
        }
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| Error::InvalidEndpoint {
                endpoint: addr.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        if let Some(tls) = &self.config.tls {
            endpoint = endpoint
                .tls_config(tls.config())
                .map_err(|e| Error::InvalidArgument(format!("TLS settings: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        if channels.len() >= limits::ENDPOINTS_MAX * 2 {
            channels.clear();
        }
        channels.insert(addr.to_string(), channel.clone());
        Ok(Conn::new(channel, self.auth.clone()))
    }

    /// `d` scaled by a random factor in [0.5, 1.5).
    fn jittered(&self, d: Duration) -> Duration {
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.jitter.store(x, Ordering::Relaxed);
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11; // 53 bits
        let f = 0.5 + (r as f64) / ((1u64 << 53) as f64);
        d.mul_f64(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_node_s_refusal_moves_on_and_other_failed_preconditions_are_final() {
        let mut removed = tonic::Status::failed_precondition("this node was removed");
        removed.metadata_mut().insert(
            proto::kv::ERROR_METADATA,
            tonic::metadata::MetadataValue::from_static(proto::kv::NODE_REMOVED),
        );
        assert!(matches!(
            classify(&removed, Route::Leader),
            Failure::Retry {
                in_doubt: false,
                ..
            }
        ));
        let other = tonic::Status::failed_precondition("learner 4 has not caught up");
        assert!(matches!(classify(&other, Route::Leader), Failure::Final(_)));
    }

    #[test]
    fn endpoints_are_checked_and_normalized() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:7001").ok().as_deref(),
            Some("127.0.0.1:7001")
        );
        assert_eq!(
            normalize_endpoint(" http://h:1/ ").ok().as_deref(),
            Some("h:1")
        );
        assert!(matches!(
            normalize_endpoint("nohost"),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            normalize_endpoint(":7001"),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            normalize_endpoint("h:0"),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            normalize_endpoint("h:x"),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            Client::connect(vec![], ClientConfig::default()),
            Err(Error::NoEndpoints)
        ));
    }

    #[test]
    fn leader_hint_redirects_only_leader_routes() {
        let mut status = tonic::Status::unavailable("not the leader");
        status.metadata_mut().insert(
            proto::kv::LEADER_ADDR_METADATA,
            tonic::metadata::MetadataValue::from_static("127.0.0.1:7002"),
        );
        assert!(
            matches!(classify(&status, Route::Leader), Failure::Redirect(a) if a == "127.0.0.1:7002")
        );
        assert!(matches!(
            classify(&status, Route::Any),
            Failure::Retry { .. }
        ));
        let plain = tonic::Status::unavailable("no leader");
        assert!(matches!(
            classify(&plain, Route::Leader),
            Failure::Retry { in_doubt: true, .. }
        ));
        let refused = tonic::Status::unavailable("tcp connect error: Connection refused");
        assert!(matches!(
            classify(&refused, Route::Leader),
            Failure::Retry {
                in_doubt: false,
                ..
            }
        ));
        let reset = tonic::Status::unavailable("connection reset");
        assert!(matches!(
            classify(&reset, Route::Leader),
            Failure::Retry { in_doubt: true, .. }
        ));
        let bad = tonic::Status::invalid_argument("empty key");
        assert!(matches!(classify(&bad, Route::Leader), Failure::Final(_)));
        let busy = tonic::Status::resource_exhausted("queue full");
        assert!(matches!(
            classify(&busy, Route::Leader),
            Failure::Overloaded(_)
        ));
    }

    #[test]
    fn routing_moves_past_failed_nodes_and_learns_leaders() {
        let c = Client::connect(
            vec!["a:1".into(), "b:2".into(), "a:1".into()],
            ClientConfig::default(),
        )
        .map_err(|e| e.to_string());
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.endpoints(), vec!["a:1", "b:2"]);
        assert_eq!(c.inner.pick(), "a:1");
        c.inner.failed("a:1");
        assert_eq!(c.inner.pick(), "b:2");
        c.inner.learn_leader("c:3");
        assert_eq!(c.leader().as_deref(), Some("c:3"));
        assert_eq!(c.inner.pick(), "c:3");
        c.inner.failed("c:3");
        assert_eq!(c.leader(), None);
        assert_eq!(c.inner.pick(), "a:1");
        assert_eq!(c.endpoints(), vec!["a:1", "b:2", "c:3"]);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let c = match Client::connect(vec!["a:1".into()], ClientConfig::default()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        for _ in 0..1000 {
            let d = c.inner.jittered(Duration::from_millis(100));
            assert!(
                d >= Duration::from_millis(50) && d < Duration::from_millis(150),
                "{d:?}"
            );
        }
    }
}
