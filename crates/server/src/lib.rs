//! The raftkv node runtime: the tokio tasks that drive the Raft core, the
//! peer transport, the gRPC services and the node's configuration.
//!
//! # Running a node
//!
//! ```no_run
//! # async fn example() -> Result<(), server::ServerError> {
//! let config = server::Config::from_toml_str(r#"
//!     id = 1
//!     listen_addr = "127.0.0.1:7001"
//!     data_dir = "/tmp/raftkv/1"
//!     [peers]
//!     2 = "127.0.0.1:7202"
//!     3 = "127.0.0.1:7203"
//! "#)?;
//! server::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! A node has two listeners: the CLIENT listener (`listen_addr`: the `Kv`,
//! `Cluster` and `Health` services) and the PEER listener
//! (`peer_listen_addr`, default the client port + 200: the `Raft` service
//! only, every call authenticated by the peer handshake of the
//! `transport` module). [`run`] binds both; [`run_with_listeners`] takes
//! them already bound, so tests can bind `127.0.0.1:0`. Both return when
//! `shutdown` completes (after a graceful stop) or when the node fails.
//! See [`config`] for the TOML format, bootstrap and joining.
//!
//! # Tasks
//!
//! ```text
//!  client listener ── Kv / Cluster services ──(bounded: NODE_INBOX_MAX)──┐
//!                              ▲  answers by (index, term)           ▼
//!                              │                          ┌─ Raft driver task ──┐
//!  peer listener ── Raft service ──(bounded: PEER_INBOX_MAX)─▶│ owns RawNode + WAL  │
//!          (handshake checked; peer streams,              │ tick / step / Ready │
//!           snapshot chunks)                              └──┬──────────────┬───┘
//!                                       transport outboxes ◀─┘              │ committed entries
//!                                       (PEER_OUTBOX_MAX per peer)          ▼ (APPLY_QUEUE_MAX)
//!                                                               apply thread: kv::StateMachine
//! ```
//!
//! - The **driver** (module `node`) owns the `RawNode` and
//!   the WAL; it batches proposals, sends the leader's AppendEntries before
//!   its fsync, fsyncs on a blocking thread, and hands committed entries on.
//! - The **apply thread** owns the state machine (`kv` over Bitcask), applies
//!   entries in batches and answers waiting writes; it triggers compaction
//!   every `snapshot_threshold_entries`.
//! - The **services** read through a cloneable `kv::KvReader` (no lock),
//!   after a ReadIndex round for linearizable reads.
//! - The **transport** keeps one stream per peer and streams snapshots (see
//!   the `transport` and `descriptor` modules for the snapshot scheme).
//!
//! Every queue is bounded; a full one answers `RESOURCE_EXHAUSTED` (client
//! requests) or drops the message (peer traffic; Raft retransmits). No lock
//! is held across an fsync or a network call.
//!
//! # Files in the data dir
//!
//! - `wal/`: the Raft log, hard state and snapshot descriptors (`wal` crate);
//! - `kv/`: the state machine's Bitcask store, with its applied index;
//! - `recv/`: snapshot transfers being received (see `spool`; cleared at
//!   start);
//! - `peers.toml`: the address book (see `addrbook`);
//! - `identity.toml`: cluster id, node id, incarnation (see [`identity`]);
//! - `removed`: present once the node learned it was removed from the
//!   cluster (one line saying how); the node then stays removed across
//!   restarts (see `raft::membership`, "A removed node").
//! - `identity.toml`: cluster id, node id, incarnation (see [`identity`]);
//! - `recovering.toml`: present while the node repairs lost data (see
//!   [`startup`]).
//!
//! # Startup
//!
//! [`open_identity`] checks (or makes) the identity and, on an empty data
//! dir with `bootstrap`, bootstraps the cluster after asking the peers
//! (`Raft.Probe`). Then the state machine and the WAL are opened and
//! compared ([`startup::check_lost_data`]): a node that lost acknowledged
//! data, or joins empty, starts *recovering* (`raft::Config::recovering`:
//! no votes, no campaigns until a leader has caught it up).
//!
//! # Shutdown
//!
//! When `shutdown` completes, the driver stops taking input, syncs the WAL
//! and answers waiting requests `UNAVAILABLE` (clients retry elsewhere with
//! the same session and seq); then the gRPC server stops accepting and ends
//! peer streams; the apply thread drains its queue and syncs the state
//! machine. A connection whose other end vanished without closing it (a
//! peer cut off the network) is found by HTTP/2 pings and dropped within
//! a few seconds (`limits::SERVED_CONNECTION_PING_*`), so it cannot hold the
//! stop up. A crash at any point is safe: the WAL is synced before anything
//! that depends on it is sent or applied, and the state machine's applied
//! index is durable with its data.
//!
//! A node whose data dir was wiped rejoins under its id without
//! `--bootstrap` and is repaired by the leader (docs/operations.md).

mod addrbook;
mod apply;
pub mod backup;
pub mod config;
pub mod config_file;
mod descriptor;
pub mod disk;
mod durable;
pub mod error;
pub mod identity;
pub mod limits;
mod merger;
mod node;
mod observe;
pub mod security;
mod service;
mod spool;
pub mod startup;
mod transport;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tonic::transport::server::TcpIncoming;

pub use config::{Config, ConfigError, Limits, TestHooks};
pub use error::ServerError;
pub use startup::open_identity;
/// The peer handshake (metadata names, refusals, the cluster secret); public
/// so that tools and tests can speak it.
pub use transport::handshake;

use crate::addrbook::AddrBook;
use crate::apply::Applier;
use crate::limits::{APPLY_QUEUE_MAX, NODE_INBOX_MAX, PEER_INBOX_MAX, PEER_MESSAGE_SIZE_MAX};
use crate::node::{Node, SoftView, Waiters};
use crate::service::Handle;

/// Run a node until `shutdown` completes: bind `config.listen_addr` and the
/// peer listen address, then as [`run_with_listeners`].
///
/// # Errors
/// An invalid configuration, an unusable data dir, a failed bind, or a
/// fatal storage or state-machine error while running.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(&config.listen_addr)
        .await
        .map_err(|e| ServerError::Serve(format!("bind {}: {e}", config.listen_addr)))?;
    let peer_addr = config.peer_listen();
    let peer_listener = tokio::net::TcpListener::bind(&peer_addr)
        .await
        .map_err(|e| ServerError::Serve(format!("bind the peer listener {peer_addr}: {e}")))?;
    run_with_listeners(config, listener, peer_listener, shutdown).await
}

struct Health {
    id: u64,
}

#[tonic::async_trait]
impl proto::health::health_server::Health for Health {
    async fn ping(
        &self,
        _req: tonic::Request<proto::health::PingRequest>,
    ) -> Result<tonic::Response<proto::health::PingResponse>, tonic::Status> {
        Ok(tonic::Response::new(proto::health::PingResponse {
            node_id: self.id,
        }))
    }
}

/// Finds what this node lost (see `startup`), merges it with the marker of
/// an earlier start, keeps the marker, and says so loudly.
fn lost_data(
    dir: &std::path::Path,
    id: u64,
    wal: &wal::Wal,
    report: &wal::RecoveryReport,
    applied: u64,
) -> Result<Option<startup::LostData>, ServerError> {
    let meta = wal.snapshot_meta();
    let last_index = wal.last_index();
    let remembered = startup::Remembered {
        hard_commit: wal.hard_state().commit,
        last_index,
        snapshot_index: meta.index,
        blank: meta.conf == raft::ConfState::default() && last_index == 0,
        applied,
        wal_cut: report.torn_tail.is_some() || report.repaired.is_some(),
    };
    let found = startup::check_lost_data(&remembered, dir)?;
    let earlier = startup::LostData::load(dir)?;
    let lost = match (found, earlier) {
        (None, None) => None,
        (Some(l), None) | (None, Some(l)) => Some(l),
        // Found again (the repair had not begun, or not got far): the
        // higher floor, today's findings.
        (Some(f), Some(e)) => Some(startup::LostData {
            floor: f.floor.max(e.floor),
            reason: f.reason,
        }),
    };
    let Some(l) = lost else {
        tracing::info!(node = id, dir = %dir.join("wal").display(), report = %report, "WAL opened");
        return Ok(None);
    };
    l.save(dir)?;
    if l.floor == 0 && remembered.blank {
        tracing::info!(node = id, report = %report,
            "WAL opened empty: this node joins; it grants no votes and does not campaign \
             until a leader has added it and caught it up");
    } else {
        tracing::error!(node = id, floor = l.floor, lost = %l.reason, report = %report,
            "this node lost data it may have acknowledged: it grants no votes and does not \
             campaign until the leader has caught it up past index {} (status shows \
             `recovering`); the leader repairs it by itself; if no leader can be elected \
             without it, see docs/operations.md, \"A node whose log was damaged\"", l.floor);
    }
    Ok(Some(l))
}

fn create_dir(path: &std::path::Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(path).map_err(|e| ServerError::io(path, e))
}

/// Run a node on already bound listeners (clients, peers) until `shutdown`
/// completes.
///
/// `config.listen_addr` and `peer_listen_addr` are ignored for binding; the
/// addresses other nodes use are still `config.advertise_peer_addr()` and
/// `config.advertise_client()`.
///
/// Shutdown: the driver stops taking input and syncs the WAL; waiting
/// requests are answered `Unavailable`; the gRPC server stops accepting and
/// finishes in-flight calls (peer streams are closed); the apply task
/// drains its queue and syncs the state machine.
///
/// # Errors
/// As [`run`].
pub async fn run_with_listeners(
    config: Config,
    listener: tokio::net::TcpListener,
    peer_listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    config.validate()?;
    let id = config.id;
    let addr = config.advertise_client();
    let peer_addr = config.advertise_peer_addr();
    let dir = config.data_dir.clone();
    create_dir(&dir)?;
    let opened = open_identity(&config, &dir).await?;
    let identity = opened.identity;
    let secret = match &config.cluster_secret_file {
        Some(p) => Some(transport::handshake::Secret::load(p)?),
        None => None,
    };
    let local = Arc::new(transport::handshake::Local::new(
        identity,
        dir.clone(),
        addr.clone(),
        peer_addr.clone(),
        secret,
        config.tls.is_some(),
    ));
    let peer_auth = local.peer_auth();
    create_dir(&dir.join("wal"))?;
    create_dir(&dir.join("kv"))?;
    let recv_dir = dir.join("recv");
    spool::clear(&recv_dir).map_err(|e| ServerError::io(&recv_dir, e))?;
    let book = AddrBook::open(&dir, &config.peers, (id, &peer_addr, &addr))?;

    // The state machine, then the log; the log is replayed from the state
    // machine's durable applied index.
    let engine_options = bitcask::Options {
        file_size_max: config.storage.file_size_max,
    };
    let engine = bitcask::Bitcask::open(dir.join("kv"), engine_options).map_err(|e| {
        ServerError::StateMachine(format!("open {}: {e}", dir.join("kv").display()))
    })?;
    let sm = kv::StateMachine::open(Arc::new(engine))
        .map_err(|e| ServerError::StateMachine(e.to_string()))?;
    if let Some(index) = sm.restore_pending() {
        // The state is half-replaced: applying entries on top would be
        // wrong, and nothing makes the leader resend the snapshot.
        return Err(ServerError::StateMachine(format!(
            "the state machine in {} holds an interrupted snapshot restore (to index {index}); \
             wipe this node's data dir, remove it and add it back",
            dir.join("kv").display()
        )));
    }
    let (wal, report) = node::open_wal(
        &dir.join("wal"),
        opened.bootstrap,
        config.storage.wal_segment_size_max,
    )?;
    let lost = lost_data(&dir, id, &wal, &report, sm.applied_index())?;
    let applied = sm.applied_index().min(raft::LogStore::last_index(&wal));
    let seed_rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ id.rotate_left(32);
    let rc = raft::Config {
        id,
        election_timeout_ticks_min: config.election_timeout_ticks_min,
        election_timeout_ticks_max: config.election_timeout_ticks_max,
        heartbeat_interval_ticks: config.heartbeat_interval_ticks,
        pre_vote: config.pre_vote,
        check_quorum: config.check_quorum,
        lease_read: config.lease_read,
        tick_interval: Duration::from_millis(config.tick_interval_ms),
        applied,
        recovering: lost.as_ref().map(|l| l.floor),
        seed: seed_rng,
        ..raft::Config::new(id)
    };
    let synced_hs = wal.hard_state();
    let mut raw = raft::RawNode::new(rc, wal).map_err(|e| ServerError::Raft(e.to_string()))?;
    let removed = node::removed_record(&dir)?;
    if let Some(how) = &removed {
        raw.mark_removed();
        crate::observe::metrics::set_removed(id, true);
        tracing::warn!(node = id, record = %how, file = %dir.join(node::REMOVED_FILE).display(),
            "this node was removed from the cluster: it takes part in nothing and answers \
             clients FAILED_PRECONDITION; stop it, or wipe its data dir and add it back as a \
             learner");
    }
    {
        let st = raw.status();
        if peer_auth == transport::handshake::PeerAuth::None && st.conf.voters.len() > 1 {
            tracing::warn!(node = id, voters = ?st.conf.voters,
                "PEERS ARE NOT AUTHENTICATED: this multi-node cluster has neither [tls] nor \
                 cluster_secret_file, so anyone who can reach the peer port {peer_addr} can \
                 write to the Raft log; configure one of them (see README, \"Running a secured \
                 cluster\")");
        }
        tracing::info!(node = id, addr, peer_addr, peer_auth = peer_auth.as_str(),
            cluster_id = %identity::hex(local.cluster_id()),
            incarnation = %identity::hex(local.incarnation), term = st.term, commit = st.commit, applied,
            state_applied = sm.applied_index(), last_index = st.last_index,
            snapshot_index = st.snapshot_index, voters = ?st.conf.voters,
            learners = ?st.conf.learners, cluster_id = %identity::hex(identity.cluster_id),
            incarnation = %identity::hex(identity.incarnation), recovering = st.recovering,
            "node recovered");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let (node_tx, node_rx) = mpsc::channel(NODE_INBOX_MAX);
    let (peer_tx, peer_rx) = mpsc::channel(PEER_INBOX_MAX);
    let (apply_tx, apply_rx) = mpsc::channel(APPLY_QUEUE_MAX);
    let (applied_tx, applied_rx) = watch::channel(sm.applied_index());
    let (soft_tx, soft_rx) = watch::channel(SoftView::default());
    let waiters = Arc::new(Waiters::default());
    let reader = sm.reader();
    let engine = sm.engine_handle();

    let applier = Applier {
        id,
        sm,
        rx: apply_rx,
        waiters: Arc::clone(&waiters),
        applied_tx,
        node_tx: node_tx.clone(),
        book: book.clone(),
        hooks: config.test_hooks.clone(),
        snapshot_threshold: config.snapshot_threshold_entries,
        compacted_at: applied,
    };
    let apply_thread = std::thread::Builder::new()
        .name(format!("apply-{id}"))
        .spawn(move || applier.run())
        .map_err(|e| ServerError::Task(format!("spawn the apply thread: {e}")))?;

    let peer_tls = match &config.tls {
        Some(t) => Some(security::client_tls(t)?),
        None => None,
    };
    // Kv messages: requests up to the configured size, responses (a Scan's)
    // up to the state machine's limit; the same for forwarded calls.
    let msg_max = config.limits.grpc_message_size_max;
    let response_max = service::response_size_max(&config.limits);
    let forwarder = service::forward::Forwarder::new(
        peer_tls.clone(),
        msg_max,
        response_max,
        Duration::from_millis(limits::REQUEST_WAIT_MS_MAX),
    );
    let (events_tx, events_rx) = mpsc::channel(limits::PEER_EVENTS_MAX);
    let transport = transport::Transport::new(
        id,
        book.clone(),
        reader.clone(),
        stop_rx.clone(),
        events_tx.clone(),
        Arc::clone(&local),
    )
    .with_peer_tls(peer_tls);
    let tick = Duration::from_millis(config.tick_interval_ms);
    let handle = Handle {
        id,
        identity,
        addr: addr.clone(),
        peer_auth,
        node_tx,
        apply_tx: apply_tx.clone(),
        soft: soft_rx.clone(),
        applied: applied_rx.clone(),
        reader,
        book: book.clone(),
        limits: config.limits.clone(),
        proposals: Arc::new(Semaphore::new(config.limits.pending_proposals_max)),
        reads: Arc::new(Semaphore::new(config.limits.pending_reads_max)),
        request_wait: Duration::from_millis(limits::REQUEST_WAIT_MS_MAX),
        election_timeout: tick * config.election_timeout_ticks_max as u32,
        forwarder: Arc::new(forwarder),
        disk: Arc::new(disk::DiskGuard::new(&dir, config.storage.disk_reserve())),
    };
    let node = Node {
        id,
        raw,
        requests: node_rx,
        peer_rx,
        events_rx,
        campaign_at: None,
        leader_down_spacing: (tick * config.election_timeout_ticks_min as u32 / 2).min(
            Duration::from_millis(limits::LEADER_DOWN_CAMPAIGN_SPACING_MS),
        ),
        transport,
        apply_tx: apply_tx.clone(),
        waiters,
        soft_tx,
        applied_rx: applied_rx.clone(),
        book: book.clone(),
        tick_interval: tick,
        clock_origin: std::time::Instant::now(),
        ticks_done: 0,
        ticks_caught_up_max: config.election_timeout_ticks_max.saturating_mul(2),
        read_batch: Vec::new(),
        reads: Default::default(),
        next_read_ctx: 0,
        role: raft::Role::Follower,
        leader: None,
        synced_term_vote: (synced_hs.term, synced_hs.vote),
        data_dir: dir.clone(),
        removal_handled: removed.is_some(),
        recovering_marked: lost.is_some(),
        loss_logged: Default::default(),
    };

    let merger = tokio::spawn(merger::run(
        id,
        Arc::clone(&engine),
        config.storage.clone(),
        stop_rx.clone(),
    ));

    // Metrics, the web page, tokens and TLS (the `observe` and `security` modules).
    let grpc_layer = observe::start(&config, handle.clone(), engine, stop_rx.clone()).await?;
    // Both servers ping their connections and drop dead ones (see
    // `limits::SERVED_CONNECTION_PING_MS`).
    let served = || {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_millis(
                limits::SERVED_CONNECTION_PING_MS,
            )))
            .http2_keepalive_timeout(Some(Duration::from_millis(
                limits::SERVED_CONNECTION_PING_TIMEOUT_MS,
            )))
    };
    let mut server_builder = served();
    let mut peer_builder = served();
    if let Some(tls) = &config.tls {
        server_builder = server_builder
            .tls_config(security::server_tls(tls)?)
            .map_err(|e| ServerError::Serve(format!("TLS: {e}")))?;
        peer_builder = peer_builder
            .tls_config(security::peer_server_tls(tls)?)
            .map_err(|e| ServerError::Serve(format!("peer TLS: {e}")))?;
    }

    let kv_svc = proto::kv::kv_server::KvServer::new(service::kv::KvService {
        handle: handle.clone(),
    })
    .max_decoding_message_size(msg_max)
    .max_encoding_message_size(response_max);
    let cluster_svc =
        proto::kv::cluster_server::ClusterServer::new(service::cluster::ClusterService { handle });
    let raft_svc = proto::raft::raft_server::RaftServer::new(transport::service::RaftService {
        id,
        identity,
        peer_tx,
        apply_tx,
        applied: applied_rx,
        stop: stop_rx.clone(),
        book: book.clone(),
        spool_dir: recv_dir,
        local: Arc::clone(&local),
        soft: soft_rx,
        events: events_tx,
    })
    .max_decoding_message_size(PEER_MESSAGE_SIZE_MAX)
    .max_encoding_message_size(PEER_MESSAGE_SIZE_MAX);
    let health_svc = proto::health::health_server::HealthServer::new(Health { id });

    let mut server_stop = stop_rx.clone();
    let mut peer_stop = stop_rx.clone();
    let peer_server = peer_builder
        .tcp_nodelay(true)
        .layer(grpc_layer.clone())
        .add_service(raft_svc)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(peer_listener).with_nodelay(Some(true)),
            async move {
                let _ = peer_stop.wait_for(|s| *s).await;
            },
        );
    let client_server = server_builder
        .tcp_nodelay(true)
        .layer(grpc_layer)
        .add_service(kv_svc)
        .add_service(cluster_svc)
        .add_service(health_svc)
        // The builder's `tcp_nodelay` covers only listeners it binds itself:
        // accepted sockets get TCP_NODELAY here, or Nagle holds every small
        // reply (a Get's, a peer's ack) until the client's delayed ACK, ~40 ms.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                let _ = server_stop.wait_for(|s| *s).await;
            },
        );
    // Both servers run as one task: it ends when either fails, or when
    // both have stopped.
    let server = async move {
        tokio::try_join!(
            async {
                let r = client_server.await;
                r.map_err(|e| format!("client listener: {e}"))
            },
            async {
                let r = peer_server.await;
                r.map_err(|e| format!("peer listener: {e}"))
            }
        )
        .map(|_| ())
    };
    let mut server = tokio::spawn(server);
    tracing::info!(node = id, addr, peer_addr, "serving");

    // The driver runs until shutdown, a fatal error, or the server failing.
    let (server_failed_tx, server_failed_rx) = tokio::sync::oneshot::channel::<String>();
    let driver = node.run(async move {
        tokio::select! {
            _ = shutdown => {}
            _ = server_failed_rx => {}
        }
    });
    tokio::pin!(driver);
    let mut server_result: Option<Result<(), String>> = None;
    let driver_result = tokio::select! {
        r = &mut driver => r,
        r = &mut server => {
            let r = match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let _ = server_failed_tx.send(format!("{r:?}"));
            server_result = Some(r);
            driver.await
        }
    };
    if let Err(e) = &driver_result {
        tracing::error!(node = id, error = %e, "node stopping on a fatal error");
    }
    // Stop the server, peer streams and peer tasks.
    let _ = stop_tx.send(true);
    if server_result.is_none() {
        match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
            Ok(Ok(Ok(()))) => server_result = Some(Ok(())),
            Ok(Ok(Err(e))) => server_result = Some(Err(e.to_string())),
            Ok(Err(e)) => server_result = Some(Err(e.to_string())),
            Err(_) => {
                tracing::warn!(node = id, "gRPC server did not stop in time; aborting it");
                server.abort();
                server_result = Some(Ok(()));
            }
        }
    }
    // A merge under way finishes first (see `merger`).
    if let Err(e) = merger.await {
        tracing::warn!(node = id, error = %e, "merge task failed");
    }
    // The driver is gone, so is its apply sender; the services' senders went
    // with the server. The apply thread drains and syncs.
    let apply_result = tokio::task::spawn_blocking(move || apply_thread.join())
        .await
        .map_err(|e| ServerError::Task(e.to_string()))?
        .map_err(|_| ServerError::Task("the apply thread panicked".into()))?;
    // A failed apply thread is the cause when the driver stopped because
    // the apply task did (say, the disk is full): report it first.
    apply_result?;
    driver_result?;
    if let Some(Err(e)) = server_result {
        return Err(ServerError::Serve(e));
    }
    tracing::info!(node = id, "node stopped");
    Ok(())
}
