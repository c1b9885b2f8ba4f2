//! The gRPC services of `proto/kv.proto` (`Kv`, `Cluster`), and what they
//! share: the [`Handle`] to the node and the mapping of errors to status
//! codes.
//!
//! | situation | code |
//! |---|---|
//! | empty key, key or value over the limit, bad range, malformed request | `INVALID_ARGUMENT` |
//! | not the leader, for a call that is not forwarded (`raftkv-no-forward`, or already forwarded once; see [`forward`]) | `UNAVAILABLE` + `raftkv-leader-id`/`raftkv-leader-addr` |
//! | no leader known, leader lost before commit, timed out waiting; a membership change while another is uncommitted (or before the leader committed an entry of its term) | `UNAVAILABLE` (retry) |
//! | pending proposals/reads or a node queue full | `RESOURCE_EXHAUSTED` |
//! | unknown session / stale request | `FAILED_PRECONDITION` + `raftkv-error` |
//! | unknown member id | `NOT_FOUND`; a member in the wrong role: `FAILED_PRECONDITION`; adding a member twice: `ALREADY_EXISTS` |
//! | promoting a learner that has not caught up (or is not running) | `FAILED_PRECONDITION`, naming its match index, the leader's last and commit index and what is missing |
//! | any call but `Cluster.Status` to a node removed from the cluster | `FAILED_PRECONDITION` ("this node was removed from the cluster (id N); ...") |

pub mod cluster;
pub mod forward;
pub mod kv;

use std::sync::Arc;
use std::time::Duration;

use ::kv::{CommandError, KvReader, Request};
use proto::kv as pb;
use raft::Index;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tonic::metadata::MetadataValue;
use tonic::Status;

use crate::addrbook::AddrBook;
use crate::apply::{ApplyMsg, Engine};
use crate::config::Limits;
use crate::node::{NodeRequest, SoftView};

/// `Unavailable` with a message: the client retries.
pub(crate) fn unavailable(msg: &str) -> Status {
    Status::unavailable(msg.to_string())
}

/// `Unavailable` with the leader hint metadata when a leader is known.
pub(crate) fn not_leader(leader: Option<u64>, book: &AddrBook) -> Status {
    let Some(leader) = leader else {
        return unavailable("no leader known yet (an election may be running); retry shortly");
    };
    let addr = book.client(leader);
    let mut st = Status::unavailable(format!(
        "not the leader; the leader is node {leader}{}",
        addr.as_deref()
            .map(|a| format!(" at {a}"))
            .unwrap_or_default()
    ));
    if let Ok(v) = MetadataValue::try_from(leader.to_string()) {
        st.metadata_mut().insert(pb::LEADER_ID_METADATA, v);
    }
    if let Some(v) = addr.and_then(|a| MetadataValue::try_from(a).ok()) {
        st.metadata_mut().insert(pb::LEADER_ADDR_METADATA, v);
    }
    st
}

/// The status for a command the state machine refused.
pub(crate) fn command_error(e: CommandError) -> Status {
    let session = |msg: String, kind: &'static str| {
        let mut st = Status::failed_precondition(msg);
        st.metadata_mut()
            .insert(pb::ERROR_METADATA, MetadataValue::from_static(kind));
        st
    };
    match e {
        CommandError::UnknownSession { .. } => session(e.to_string(), pb::UNKNOWN_SESSION),
        CommandError::StaleRequest { .. } => session(e.to_string(), pb::STALE_REQUEST),
        CommandError::InvalidSeq { .. } | CommandError::RegisterWithSession => {
            Status::invalid_argument(e.to_string())
        }
        CommandError::RangeTooLarge { .. } | CommandError::ResponseTooLarge { .. } => {
            Status::failed_precondition(e.to_string())
        }
        _ => Status::invalid_argument(e.to_string()),
    }
}

/// What every service needs of the node.
#[derive(Clone)]
pub(crate) struct Handle {
    pub id: u64,
    /// This node's identity (cluster id, incarnation), as of startup.
    pub identity: crate::identity::Identity,
    /// This node's client address (as clients reach it).
    pub addr: String,
    /// How peers authenticate (for `status`).
    pub peer_auth: crate::transport::handshake::PeerAuth,
    pub node_tx: mpsc::Sender<NodeRequest>,
    pub apply_tx: mpsc::Sender<ApplyMsg>,
    pub soft: watch::Receiver<SoftView>,
    pub applied: watch::Receiver<Index>,
    pub reader: KvReader<Engine>,
    pub book: AddrBook,
    pub limits: Limits,
    pub proposals: Arc<Semaphore>,
    pub reads: Arc<Semaphore>,
    pub request_wait: Duration,
    pub election_timeout: Duration,
    /// Connections to the leader, for calls a follower forwards.
    pub forwarder: Arc<forward::Forwarder>,
    /// Free space on the data dir's volume (writes stop below the reserve).
    pub disk: Arc<crate::disk::DiskGuard>,
}

/// The largest Kv response a node encodes (a Scan page is cut to fit): the
/// request limit, but never below what the state machine may answer.
pub(crate) fn response_size_max(limits: &Limits) -> usize {
    limits
        .grpc_message_size_max
        .max(::kv::limits::RESPONSE_SIZE_MAX)
}

impl Handle {
    pub(crate) fn header(&self) -> pb::ResponseHeader {
        let soft = self.soft.borrow();
        pb::ResponseHeader {
            node_id: self.id,
            term: soft.term,
            applied_index: *self.applied.borrow(),
            leader_id: soft.leader.unwrap_or(0),
        }
    }

    /// The leader to forward a `Kv` call with this metadata to: `None` if
    /// this node is the leader, knows no leader (or its address), or the
    /// call may not be forwarded (see [`forward`]).
    pub(crate) fn forward_target(
        &self,
        meta: &tonic::metadata::MetadataMap,
    ) -> Option<proto::kv::kv_client::KvClient<tonic::transport::Channel>> {
        self.forward_channel(meta).map(|c| self.forwarder.kv(c))
    }

    /// As [`Handle::forward_target`], for a `Cluster` call.
    pub(crate) fn forward_cluster(
        &self,
        meta: &tonic::metadata::MetadataMap,
    ) -> Option<proto::kv::cluster_client::ClusterClient<tonic::transport::Channel>> {
        self.forward_channel(meta)
            .map(|c| self.forwarder.cluster(c))
    }

    fn forward_channel(
        &self,
        meta: &tonic::metadata::MetadataMap,
    ) -> Option<tonic::transport::Channel> {
        if !forward::Forwarder::allowed(meta) {
            return None;
        }
        let leader = {
            let soft = self.soft.borrow();
            if soft.role == raft::Role::Leader {
                return None;
            }
            soft.leader.filter(|&l| l != self.id)?
        };
        let addr = self.book.client(leader)?;
        let channel = self.forwarder.channel(&addr)?;
        crate::observe::metrics::forwarded(self.id);
        Some(channel)
    }

    /// `FAILED_PRECONDITION` if this node was removed from the cluster:
    /// every client call but `Status` checks it first.
    pub(crate) fn check_removed(&self) -> Result<(), Status> {
        if self.soft.borrow().removed {
            return Err(crate::node::removed_status(self.id));
        }
        Ok(())
    }

    /// `Ok` if this node is the leader, else the hint.
    pub(crate) fn check_leader(&self) -> Result<(), Status> {
        let soft = self.soft.borrow();
        if soft.role == raft::Role::Leader {
            Ok(())
        } else {
            Err(not_leader(
                soft.leader.filter(|&l| l != self.id),
                &self.book,
            ))
        }
    }

    pub(crate) fn check_key(&self, key: &[u8]) -> Result<(), Status> {
        if key.is_empty() {
            return Err(Status::invalid_argument("the key must not be empty"));
        }
        if key.len() > self.limits.key_size_max {
            return Err(Status::invalid_argument(format!(
                "key of {} bytes exceeds the limit of {} (key_size_max)",
                key.len(),
                self.limits.key_size_max
            )));
        }
        Ok(())
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<(), Status> {
        if value.len() > self.limits.value_size_max {
            return Err(Status::invalid_argument(format!(
                "value of {} bytes exceeds the limit of {} (value_size_max)",
                value.len(),
                self.limits.value_size_max
            )));
        }
        Ok(())
    }

    /// Sends a request to the driver without waiting for queue space.
    pub(crate) fn send(&self, r: NodeRequest) -> Result<(), Status> {
        self.node_tx.try_send(r).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                Status::resource_exhausted("the node's request queue is full; back off and retry")
            }
            mpsc::error::TrySendError::Closed(_) => unavailable("the node is shutting down"),
        })
    }

    /// Proposes `request` through the log and waits for it to apply.
    pub(crate) async fn propose(&self, request: Request) -> Result<::kv::Response, Status> {
        request.validate().map_err(command_error)?;
        self.check_leader()?;
        self.disk.check_write(self.id)?;
        let _permit = self.proposals.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} writes already pending (pending_proposals_max); back off and retry",
                self.limits.pending_proposals_max
            ))
        })?;
        let (tx, rx) = oneshot::channel();
        self.send(NodeRequest::Propose {
            data: request.encode().into(),
            reply: tx,
        })?;
        let r =
            match tokio::time::timeout(self.request_wait, rx).await {
                Ok(Ok(r)) => r?,
                Ok(Err(_)) => return Err(unavailable("the node is shutting down")),
                Err(_) => return Err(unavailable(
                    "timed out waiting for the write to commit; it may still apply: retry with \
                     the same client id and seq",
                )),
            };
        Ok(r)
    }

    /// Waits until a read may be served: at once if `serializable`, else
    /// after a ReadIndex round and until the state machine caught up.
    pub(crate) async fn read_barrier(&self, serializable: bool) -> Result<(), Status> {
        if serializable {
            return Ok(());
        }
        self.check_leader()?;
        let _permit = self.reads.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} reads already pending (pending_reads_max); back off and retry",
                self.limits.pending_reads_max
            ))
        })?;
        let (tx, rx) = oneshot::channel();
        let started = std::time::Instant::now();
        self.send(NodeRequest::Read { reply: tx })?;
        let wait = async {
            let index = rx
                .await
                .map_err(|_| unavailable("the node is shutting down"))??;
            self.wait_applied(index).await?;
            crate::observe::metrics::read_index(self.id, started.elapsed());
            Ok(())
        };
        match tokio::time::timeout(self.request_wait, wait).await {
            Ok(r) => r,
            Err(_) => Err(unavailable(
                "timed out confirming leadership for a linearizable read; retry",
            )),
        }
    }

    /// Waits until the state machine applied `index`.
    pub(crate) async fn wait_applied(&self, index: Index) -> Result<(), Status> {
        let mut applied = self.applied.clone();
        applied
            .wait_for(|&a| a >= index)
            .await
            .map(|_| ())
            .map_err(|_| unavailable("the node is shutting down"))
    }
}
