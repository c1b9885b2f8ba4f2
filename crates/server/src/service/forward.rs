//! Forwarding calls from a follower to the leader, so that any node accepts
//! any of them: writes, linearizable reads and session registrations
//! (`Kv`), membership changes and leadership transfers (`Cluster`) that
//! reach a follower are sent on to the leader it knows, and the leader's
//! answer (or error) is passed back unchanged.
//!
//! - One hop at most: the forwarded call carries [`FORWARDED_METADATA`], and
//!   a node receiving it answers itself (a node that lost leadership
//!   meanwhile answers `Unavailable` with the leader hint).
//! - A client may ask for the hint instead ([`NO_FORWARD_METADATA`]): our
//!   client library does, since it follows hints and then talks to the
//!   leader directly, saving the hop.
//! - With no leader known the follower answers itself (`Unavailable`, retry).
//! - The caller's `authorization` header goes along: the leader checks the
//!   token again. With `[tls]`, the follower dials the leader with its own
//!   node certificate, as it does for Raft traffic.
//! - Connections are made lazily, one per leader address, and kept (at most
//!   [`PEERS_MAX`] addresses).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use proto::kv::cluster_client::ClusterClient;
use proto::kv::kv_client::KvClient;
use proto::kv::{FORWARDED_METADATA, NO_FORWARD_METADATA};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Request;

use crate::limits::PEERS_MAX;

/// The leader connections of one node.
pub(crate) struct Forwarder {
    tls: Option<ClientTlsConfig>,
    message_size_max: usize,
    response_size_max: usize,
    /// How long a forwarded call may take.
    timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Forwarder {
    pub(crate) fn new(
        tls: Option<ClientTlsConfig>,
        message_size_max: usize,
        response_size_max: usize,
        timeout: Duration,
    ) -> Forwarder {
        Forwarder {
            tls,
            message_size_max,
            response_size_max,
            timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a call with this metadata may be forwarded.
    pub(crate) fn allowed(meta: &tonic::metadata::MetadataMap) -> bool {
        !meta.contains_key(FORWARDED_METADATA) && !meta.contains_key(NO_FORWARD_METADATA)
    }

    /// A `Kv` client on a channel from [`Forwarder::channel`].
    pub(crate) fn kv(&self, channel: Channel) -> KvClient<Channel> {
        KvClient::new(channel)
            .max_encoding_message_size(self.message_size_max)
            .max_decoding_message_size(self.response_size_max)
    }

    /// A `Cluster` client on a channel from [`Forwarder::channel`].
    pub(crate) fn cluster(&self, channel: Channel) -> ClusterClient<Channel> {
        ClusterClient::new(channel)
            .max_encoding_message_size(self.message_size_max)
            .max_decoding_message_size(self.response_size_max)
    }

    /// A channel to the leader at `addr` (lazily connected, cached), or
    /// `None` if `addr` is not a usable address.
    pub(crate) fn channel(&self, addr: &str) -> Option<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
                    .ok()?
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .timeout(self.timeout);
                if let Some(tls) = &self.tls {
                    endpoint = endpoint.tls_config(tls.clone()).ok()?;
                }
                let c = endpoint.connect_lazy();
                if channels.len() >= PEERS_MAX {
                    channels.clear();
                }
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Some(channel)
    }
}

/// The call to send to the leader: the same message, the caller's token,
/// and the forwarded mark.
pub(crate) fn outgoing<T>(req: Request<T>) -> Request<T> {
    let auth = req.metadata().get("authorization").cloned();
    let mut out = Request::new(req.into_inner());
    if let Some(a) = auth {
        out.metadata_mut().insert("authorization", a);
    }
    out.metadata_mut()
        .insert(FORWARDED_METADATA, MetadataValue::from_static("1"));
    out
}
