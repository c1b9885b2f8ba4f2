//! Peer transport: how Raft messages travel between nodes.
//!
//! # Sending
//!
//! [`Transport::send`] never waits. Each peer has a task that owns a
//! long-lived client-streaming `Raft.Send` call to it and a bounded outbox
//! ([`PEER_OUTBOX_MAX`] messages) feeding it. When the outbox is full the
//! message is dropped: Raft retransmits (heartbeats, probes, the in-flight
//! window). A broken stream is reopened with exponential backoff between
//! [`PEER_RECONNECT_BACKOFF_MS_MIN`] and [`PEER_RECONNECT_BACKOFF_MS_MAX`];
//! messages queued meanwhile go out on the new stream (Raft ignores stale
//! ones). A stream that had been up for a while is reopened at once, and if
//! that connection is refused the peer is reported down to the driver
//! ([`PeerEvent::Down`]; bounded channel, dropped when full): a follower
//! whose leader's process died starts an election without waiting out its
//! election timeout (see [`raft::RawNode::report_leader_down`]).
//!
//! Peers are dialled at their PEER address (the address book's `peer`),
//! where only the `Raft` service listens; every call starts with the
//! handshake of [`handshake`]. A call the peer refuses is logged at ERROR
//! (rate-limited), counted, reported to the driver
//! ([`PeerEvent::RefusedUs`]) and retried only after the longest backoff.
//!
//! `InstallSnapshot` messages take another path: a task opens a
//! `Raft.InstallSnapshot` call and streams the state machine's current
//! image in chunks of at most [`SNAPSHOT_CHUNK_SIZE_MAX`] bytes, produced on
//! a blocking thread from a point-in-time view and sent through a channel
//! of 4 chunks (backpressure: at most a few chunks in memory). At most one
//! transfer per peer and [`SNAPSHOT_SENDS_MAX`] in all run at once; a failed
//! transfer is simply dropped, and the leader's core sends the snapshot
//! again after its retry timeout. See [`crate::descriptor`] for why sending
//! a newer image than the snapshot's index is correct.
//!
//! # Receiving
//!
//! See [`service`]: the handshake is checked, then messages are decoded,
//! checked to come from the handshake's sender and to be addressed to this
//! node, and queued to the driver (dropped if its inbox is full).

pub mod convert;
pub mod handshake;
pub mod service;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::raft as pb;
use proto::raft::raft_client::RaftClient;
use raft::{Message, MessageBody};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

use crate::addrbook::AddrBook;
use crate::apply::Engine;
use crate::limits::{
    PEER_CONNECT_MS_MAX, PEER_MESSAGE_SIZE_MAX, PEER_OUTBOX_MAX, PEER_RECONNECT_BACKOFF_MS_MAX,
    PEER_RECONNECT_BACKOFF_MS_MIN, PEER_STREAM_BUFFER_MAX, PEER_STREAM_STABLE_MS_MIN,
    SNAPSHOT_CHUNK_SIZE_MAX, SNAPSHOT_FINISH_MS_MAX, SNAPSHOT_IDLE_MS_MAX, SNAPSHOT_SENDS_MAX,
};
use handshake::{Local, Refusal};

/// What the transport tells the driver about its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PeerEvent {
    /// A peer whose stream had been up refused a new connection.
    Down(u64),
    /// A known peer showed a new incarnation in its handshake: its data dir
    /// was replaced, and it no longer holds what it acknowledged.
    Replaced {
        id: u64,
        old_incarnation: u64,
        new_incarnation: u64,
    },
    /// A peer refused our handshake.
    RefusedUs { by: u64, reason: Refusal },
}

/// The sending half of the transport. Cloning shares it.
#[derive(Clone)]
pub(crate) struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    book: AddrBook,
    reader: kv::KvReader<Engine>,
    peers: Mutex<HashMap<u64, mpsc::Sender<pb::RaftMessage>>>,
    snapshots: Mutex<HashSet<u64>>,
    snapshot_sends: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    /// Where peer events go (to the driver).
    events: mpsc::Sender<PeerEvent>,
    /// Mutual TLS to peers (`[tls]`): the CA and this node's identity.
    tls: Option<tonic::transport::ClientTlsConfig>,
    /// This node's handshake.
    local: Arc<Local>,
}

impl Transport {
    pub(crate) fn new(
        id: u64,
        book: AddrBook,
        reader: kv::KvReader<Engine>,
        stop: watch::Receiver<bool>,
        events: mpsc::Sender<PeerEvent>,
        local: Arc<Local>,
    ) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                id,
                book,
                reader,
                peers: Mutex::new(HashMap::new()),
                snapshots: Mutex::new(HashSet::new()),
                snapshot_sends: Arc::new(Semaphore::new(SNAPSHOT_SENDS_MAX)),
                stop,
                events,
                tls: None,
                local,
            }),
        }
    }

    /// Dials peers with TLS (set right after [`Transport::new`], before any
    /// clone).
    pub(crate) fn with_peer_tls(mut self, tls: Option<tonic::transport::ClientTlsConfig>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.tls = tls;
        }
        self
    }

    /// Queues `m` for its peer; never waits (drops it if the outbox is full).
    pub(crate) fn send(&self, m: Message) {
        if m.to == self.inner.id {
            return;
        }
        if matches!(m.body, MessageBody::InstallSnapshot { .. }) {
            self.send_snapshot(m);
            return;
        }
        let to = m.to;
        let tx = {
            let mut peers = self.inner.peers.lock().unwrap_or_else(|p| p.into_inner());
            let tx = peers.entry(to).or_insert_with(|| self.spawn_peer(to));
            if tx.is_closed() {
                *tx = self.spawn_peer(to);
            }
            tx.clone()
        };
        if tx.try_send(convert::message_to_pb(&m)).is_err() {
            tracing::trace!(
                from = self.inner.id,
                to,
                "peer outbox full; message dropped"
            );
        }
    }

    /// Stops the streams to nodes that are no longer members (their tasks
    /// end when their outbox closes). A later message to one starts anew.
    pub(crate) fn retain(&self, members: &std::collections::BTreeSet<u64>) {
        let mut peers = self.inner.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.retain(|id, _| members.contains(id));
    }

    fn spawn_peer(&self, to: u64) -> mpsc::Sender<pb::RaftMessage> {
        let (tx, rx) = mpsc::channel(PEER_OUTBOX_MAX);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(peer_loop(inner, to, rx));
        tx
    }

    fn send_snapshot(&self, m: Message) {
        let to = m.to;
        {
            let mut s = self
                .inner
                .snapshots
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !s.insert(to) {
                return;
            }
        }
        let Ok(permit) = Arc::clone(&self.inner.snapshot_sends).try_acquire_owned() else {
            self.inner
                .snapshots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&to);
            return;
        };
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = send_snapshot(&inner, m).await;
            crate::observe::metrics::snapshot_sent(inner.id, r.is_ok(), started.elapsed());
            match r {
                Ok(r) => tracing::info!(from = inner.id, to, accepted = r.accepted,
                    reason = %r.reason, applied = r.applied_index, "snapshot sent"),
                Err(e) => {
                    tracing::warn!(from = inner.id, to, error = %e, "snapshot transfer failed")
                }
            }
            inner
                .snapshots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&to);
            drop(permit);
        });
    }
}

/// A call to `to` carrying this node's handshake.
fn with_handshake<T>(inner: &Inner, to: u64, body: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(body);
    inner.local.stamp(to, &mut req);
    req
}

/// A failed call: if the peer refused our handshake, log it (ERROR, at
/// most once per peer and reason every `REFUSAL_LOG_SPACING_MS`), count it
/// and tell the driver. Returns whether it was a refusal.
fn refused_by(inner: &Inner, to: u64, st: &tonic::Status) -> bool {
    let Some(reason) = Refusal::of(st) else {
        return false;
    };
    crate::observe::metrics::peer_refused_by(inner.id, reason.as_str());
    if inner.local.log_due(to, reason) {
        tracing::error!(
            from = inner.id,
            to,
            reason = reason.as_str(),
            detail = st.message(),
            "peer refused our handshake; check this node's cluster, id, secret or certificate"
        );
    }
    let _ = inner
        .events
        .try_send(PeerEvent::RefusedUs { by: to, reason });
    true
}

/// Dials `to` at `addr`. With TLS, the server must present a certificate
/// naming `node-<to>.raftkv` (see [`handshake`]).
pub(crate) async fn connect(
    addr: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
    to: u64,
) -> Result<Channel, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.clone().domain_name(crate::security::node_dns_name(to)))
            .map_err(|e| format!("TLS settings for {addr}: {e}"))?;
    }
    // The whole handshake is bounded: a peer whose socket is bound but
    // which does not serve yet must not hold a connection attempt forever.
    match tokio::time::timeout(
        Duration::from_millis(PEER_CONNECT_MS_MAX),
        endpoint.connect(),
    )
    .await
    {
        Ok(r) => r.map_err(|e| format!("connect to {addr}: {e}")),
        Err(_) => Err(format!("connect to {addr}: handshake timed out")),
    }
}

fn client(channel: Channel) -> RaftClient<Channel> {
    RaftClient::new(channel)
        .max_encoding_message_size(PEER_MESSAGE_SIZE_MAX)
        .max_decoding_message_size(PEER_MESSAGE_SIZE_MAX)
}

/// Resolves once `stop` is set (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps `d`, or returns `false` early if the transport stops.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stopped(stop) => false,
    }
}

async fn peer_loop(inner: Arc<Inner>, to: u64, mut outbox: mpsc::Receiver<pb::RaftMessage>) {
    let mut stop = inner.stop.clone();
    let min = Duration::from_millis(PEER_RECONNECT_BACKOFF_MS_MIN);
    let max = Duration::from_millis(PEER_RECONNECT_BACKOFF_MS_MAX);
    let mut backoff = min;
    let mut logged_down = false;
    // Whether a connection failed or broke before this attempt.
    let mut broken = false;
    // Whether the last stream was up and has just ended: the next failed
    // connection means the peer is down.
    let mut just_ended = false;
    loop {
        let is_stopped = *stop.borrow();
        if is_stopped {
            return;
        }
        let Some(addr) = inner.book.peer(to) else {
            if !logged_down {
                tracing::warn!(from = inner.id, to, "no address known for peer");
                logged_down = true;
            }
            if !pause(&mut stop, max).await {
                return;
            }
            continue;
        };
        let channel = match connect(&addr, inner.tls.as_ref(), to).await {
            Ok(c) => c,
            Err(e) => {
                broken = true;
                if std::mem::take(&mut just_ended) {
                    // Dropped if the driver is behind: it is only a hint.
                    let _ = inner.events.try_send(PeerEvent::Down(to));
                }
                if !logged_down {
                    tracing::info!(from = inner.id, to, error = %e, "peer unreachable; retrying");
                    logged_down = true;
                }
                if !pause(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(max);
                continue;
            }
        };
        if logged_down {
            tracing::info!(from = inner.id, to, addr, "peer reachable again");
        }
        logged_down = false;
        if broken {
            // What queued up while the peer was unreachable is stale (a
            // restarted peer may have lost what it acknowledged): drop it and
            // let the core probe from scratch, which sends a snapshot if
            // the peer needs entries that were compacted meanwhile.
            let mut dropped = 0;
            while outbox.try_recv().is_ok() {
                dropped += 1;
            }
            tracing::debug!(
                from = inner.id,
                to,
                dropped,
                "stale messages dropped on reconnect"
            );
        }
        broken = true;
        backoff = min;
        let (tx, rx) = mpsc::channel(PEER_STREAM_BUFFER_MAX);
        let mut c = client(channel);
        let req = with_handshake(&inner, to, ReceiverStream::new(rx));
        let mut call = Box::pin(async move { c.send(req).await });
        let opened = std::time::Instant::now();
        let mut refused = false;
        loop {
            tokio::select! {
                r = &mut call => {
                    if let Err(st) = &r {
                        refused = refused_by(&inner, to, st);
                    }
                    tracing::debug!(from = inner.id, to, result = ?r.err(), "peer stream ended");
                    break;
                }
                m = outbox.recv() => {
                    let Some(m) = m else { return };
                    if tx.send(m).await.is_err() {
                        break;
                    }
                }
                _ = stopped(&mut stop) => return,
            }
        }
        // A stream that was up for a while is reopened at once, so that a
        // dead peer is noticed now; one that broke soon after opening waits
        // (no busy loop against a peer that keeps closing it).
        if refused {
            // Refused: nothing changes soon by itself (a wrong secret, a
            // removed node ...). Try again only after the longest backoff.
            if !pause(&mut stop, max).await {
                return;
            }
            continue;
        }
        just_ended = true;
        if opened.elapsed() < Duration::from_millis(PEER_STREAM_STABLE_MS_MIN)
            && !pause(&mut stop, backoff).await
        {
            return;
        }
    }
}

async fn send_snapshot(inner: &Inner, m: Message) -> Result<pb::InstallSnapshotResponse, String> {
    let addr = inner
        .book
        .peer(m.to)
        .ok_or_else(|| format!("no address for node {}", m.to))?;
    let channel = connect(&addr, inner.tls.as_ref(), m.to).await?;
    let stream = inner
        .reader
        .snapshot_with_chunk_size(SNAPSHOT_CHUNK_SIZE_MAX)
        .map_err(|e| format!("snapshot of the state machine: {e}"))?;
    let data_index = stream.index();
    tracing::info!(from = inner.id, to = m.to, data_index, "sending snapshot");
    let header = convert::message_to_pb(&m);
    let (tx, rx) = mpsc::channel::<pb::SnapshotChunk>(4);
    // Progress: chunks taken by gRPC, and whether the last one was produced.
    let taken = Arc::new(AtomicU64::new(0));
    let produced_all = Arc::new(AtomicBool::new(false));
    let all = Arc::clone(&produced_all);
    let producer = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut chunks = stream.peekable();
        let mut offset = 0u64;
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let chunk = chunk.map_err(|e| format!("reading the snapshot: {e}"))?;
            let last = chunks.peek().is_none();
            let len = chunk.len() as u64;
            let msg = pb::SnapshotChunk {
                header: first.then(|| header.clone()),
                data: chunk.into(),
                offset,
                last,
                data_index: if first { data_index } else { 0 },
            };
            offset += len;
            first = false;
            if tx.blocking_send(msg).is_err() {
                return Err("the receiver went away".into());
            }
        }
        all.store(true, Ordering::SeqCst);
        Ok(())
    });
    let counter = Arc::clone(&taken);
    let body = ReceiverStream::new(rx).map(move |c| {
        counter.fetch_add(1, Ordering::SeqCst);
        c
    });
    let mut c = client(channel);
    let to = m.to;
    let call = c.install_snapshot(with_handshake(inner, to, body));
    tokio::pin!(call);
    // A watchdog: a receiver that stops taking chunks (or never answers
    // after the last one) is given up on, freeing this peer's transfer slot
    // for the core's retry.
    let mut seen = 0;
    let mut since = tokio::time::Instant::now();
    let r = loop {
        tokio::select! {
            r = &mut call => break r.map_err(|e| {
                refused_by(inner, to, &e);
                format!("install_snapshot: {e}")
            })?,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let now = taken.load(Ordering::SeqCst);
                if now != seen {
                    seen = now;
                    since = tokio::time::Instant::now();
                }
                let limit = if produced_all.load(Ordering::SeqCst) {
                    SNAPSHOT_FINISH_MS_MAX
                } else {
                    SNAPSHOT_IDLE_MS_MAX
                };
                if since.elapsed() > Duration::from_millis(limit) {
                    return Err(format!("transfer stalled after {seen} chunks; abandoned"));
                }
            }
        }
    };
    producer
        .await
        .map_err(|e| format!("snapshot producer: {e}"))??;
    Ok(r.into_inner())
}
