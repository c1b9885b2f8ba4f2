//! How a [`Client`](crate::Client) retries and times out.

use std::time::Duration;

use crate::limits;

/// Settings of a [`Client`](crate::Client). `ClientConfig::default()` suits
/// a cluster on one machine or one LAN.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The whole time one operation may take, retries and redirects
    /// included. When it passes, the operation fails with
    /// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded) or, if no
    /// node could be reached at all, [`Error::Unavailable`](crate::Error::Unavailable).
    pub deadline: Duration,
    /// The most one attempt (one RPC to one node) may take; a slower attempt
    /// is abandoned and the next node is tried (a write then keeps its
    /// sequence number, so it still applies at most once).
    pub attempt_timeout: Duration,
    /// The TCP connect timeout to one node.
    pub connect_timeout: Duration,
    /// The first backoff after a failed attempt that taught nothing new
    /// (no leader hint); it doubles up to `backoff_max`, with jitter.
    pub backoff_initial: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// Most sessions the client opens, and so most writes it keeps in flight
    /// at once; further writes wait for one to finish.
    pub sessions_max: usize,
    /// A bearer token sent with every call (clusters with `[auth]`).
    pub token: Option<String>,
    /// TLS: the CA to trust and an optional client identity; plaintext if
    /// `None`.
    pub tls: Option<crate::security::TlsOptions>,
    /// Let a follower forward writes, linearizable reads and membership
    /// changes to the leader itself (one more hop), instead of asking it
    /// for the leader hint. Off by default: the client follows hints and
    /// then talks to the leader directly. On, the client stays with
    /// whichever node answers (the first endpoint that is up), as a plain
    /// gRPC client or one behind a load balancer would.
    pub follower_forwarding: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_millis(500),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(250),
            sessions_max: limits::SESSIONS_MAX,
            token: None,
            tls: None,
            follower_forwarding: false,
        }
    }
}
