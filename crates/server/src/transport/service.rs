//! The receiving half of the transport: the `Raft` gRPC service, served on
//! the peer listener only.
//!
//! Every call's handshake is checked first (see [`super::handshake`]); a
//! refused one is answered with the refusal and counted. An accepted one
//! updates the address book (the caller's client address, its peer address
//! if unknown, its incarnation; a new incarnation of a known node is
//! reported to the driver as [`PeerEvent::Replaced`]).
//!
//! `Send` streams: each message is decoded, checked to come from the
//! handshake's sender and to be addressed to this node (else dropped and
//! counted in `raftkv_peer_messages_dropped_total{reason}`); a caller that
//! is no longer a member (removed while its call was open) gets the
//! `not-member` refusal at its next message, which ends the call; the rest
//! is queued to the driver's peer inbox without waiting (dropped when
//! it is full; Raft retransmits). The stream ends when the sender closes it
//! or this node stops.
//!
//! `InstallSnapshot`: the chunks are checked to be contiguous (by offset),
//! spooled to a file as they arrive (up to [`SNAPSHOT_RECV_BYTES_MAX`]
//! bytes; see [`crate::spool`]), and once the last one is in, handed to the
//! apply task, which restores the state machine unless it is already at or past
//! the image's index; only then is the header's `InstallSnapshot` message
//! stepped into the core (waiting for inbox space: it must not be lost
//! after the restore).

use proto::raft as pb;
use raft::{Message, MessageBody};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

use tonic::{Request, Response, Status, Streaming};

use super::convert::message_from_pb;
use super::handshake::{Hello, Local};
use super::PeerEvent;
use crate::addrbook::AddrBook;
use crate::apply::ApplyMsg;
use crate::limits::SNAPSHOT_RECV_BYTES_MAX;
use crate::node::SoftView;
use crate::spool::Spool;

/// The `Raft` gRPC service.
pub(crate) struct RaftService {
    pub id: u64,
    /// This node's identity, for `Probe`.
    pub identity: crate::identity::Identity,
    pub peer_tx: mpsc::Sender<Message>,
    pub apply_tx: mpsc::Sender<ApplyMsg>,
    pub applied: watch::Receiver<u64>,
    pub stop: watch::Receiver<bool>,
    pub book: AddrBook,
    /// Where snapshot transfers are spooled (`<data_dir>/recv`).
    pub spool_dir: std::path::PathBuf,
    /// This node's handshake.
    pub local: Arc<Local>,
    /// The driver's view: the configuration a caller must be a member of
    /// (and the term and log `Probe` reports).
    pub soft: watch::Receiver<SoftView>,
    /// Where replaced peers are reported (to the driver).
    pub events: mpsc::Sender<PeerEvent>,
}

impl RaftService {
    /// Checks a call's handshake and records what it tells; the refusal
    /// to answer with otherwise.
    async fn admit<T>(&self, req: &Request<T>) -> Result<Hello, Status> {
        let members = self.soft.borrow().members();
        let certs = req.peer_certs();
        let hello = match self.local.check(
            req.metadata(),
            certs.as_deref().map(|c| c.as_slice()),
            members.as_ref(),
        ) {
            Ok(h) => h,
            Err(r) => {
                crate::observe::metrics::peer_refused(self.id, r.reason.as_str());
                let peer = r.from.unwrap_or(0);
                if self.local.log_due(peer, r.reason) {
                    tracing::warn!(node = self.id, from = ?r.from, remote = ?req.remote_addr(),
                        reason = r.reason.as_str(), detail = %r.detail, "peer handshake refused");
                }
                return Err(r.reason.status(&r.detail));
            }
        };
        match self.book.learn_handshake(
            hello.from,
            Some(&hello.peer_addr),
            Some(&hello.client_addr),
            hello.incarnation,
        ) {
            Ok(Some(old)) => {
                crate::observe::metrics::peer_replaced(self.id);
                tracing::warn!(node = self.id, peer = hello.from,
                    old_incarnation = %crate::identity::hex(old),
                    new_incarnation = %crate::identity::hex(hello.incarnation),
                    "peer has a new incarnation: its data dir was replaced");
                let ev = PeerEvent::Replaced {
                    id: hello.from,
                    old_incarnation: old,
                    new_incarnation: hello.incarnation,
                };
                let _ = self.events.send(ev).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(node = self.id, error = %e, "cannot save the address book");
            }
        }
        Ok(hello)
    }

    /// Whether `id` may speak Raft to this node ([`SoftView::admits`]).
    fn is_member(&self, id: u64) -> bool {
        self.soft.borrow().admits(id)
    }

    fn decode(&self, m: pb::RaftMessage, hello: &Hello) -> Option<Message> {
        match message_from_pb(m) {
            Ok(m) if m.to == self.id && m.from == hello.from => Some(m),
            Ok(m) => {
                let reason = if m.from != hello.from {
                    "from-mismatch"
                } else {
                    "to-mismatch"
                };
                crate::observe::metrics::peer_message_dropped(self.id, reason);
                tracing::warn!(
                    node = self.id,
                    to = m.to,
                    from = m.from,
                    caller = hello.from,
                    reason,
                    "dropping a peer message not from the caller or not for this node"
                );
                None
            }
            Err(e) => {
                tracing::warn!(node = self.id, error = %e, "dropping a malformed peer message");
                None
            }
        }
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn probe(
        &self,
        req: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        let from = req.into_inner().from;
        let v = self.soft.borrow().clone();
        tracing::debug!(node = self.id, from, "probed");
        Ok(Response::new(pb::ProbeResponse {
            node_id: self.id,
            cluster_id: self.identity.cluster_id,
            term: v.term,
            last_index: v.last_index,
            commit_index: v.commit,
        }))
    }

    async fn send(
        &self,
        req: Request<Streaming<pb::RaftMessage>>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        let hello = self.admit(&req).await?;
        let mut stream = req.into_inner();
        let mut stop = self.stop.clone();
        loop {
            let next = tokio::select! {
                m = stream.message() => m?,
                _ = super::stopped(&mut stop) => None,
            };
            let Some(m) = next else { break };
            let Some(m) = self.decode(m, &hello) else {
                continue;
            };
            if !self.is_member(hello.from) {
                // Removed while its call was open: the message is dropped
                // and the call ends with the refusal, so that the caller
                // learns it is no longer a member.
                crate::observe::metrics::peer_message_dropped(self.id, "not-member");
                crate::observe::metrics::peer_refused(self.id, "not-member");
                return Err(super::handshake::Refusal::NotMember.status(&format!(
                    "node {} is no longer a member of this node's configuration",
                    hello.from
                )));
            }
            if matches!(m.body, MessageBody::InstallSnapshot { .. }) {
                tracing::warn!(node = self.id, "InstallSnapshot on a Send stream; dropped");
                continue;
            }
            if self.peer_tx.try_send(m).is_err() {
                tracing::trace!(node = self.id, "peer inbox full; message dropped");
            }
        }
        Ok(Response::new(pb::SendResponse {}))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        let hello = self.admit(&req).await?;
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let header = first
            .header
            .clone()
            .ok_or_else(|| Status::invalid_argument("the first chunk has no header"))?;
        let msg = self
            .decode(header, &hello)
            .ok_or_else(|| Status::invalid_argument("bad snapshot header"))?;
        let MessageBody::InstallSnapshot { snapshot } = &msg.body else {
            return Err(Status::invalid_argument(
                "the snapshot header is not an InstallSnapshot message",
            ));
        };
        let data_index = first.data_index;
        if data_index < snapshot.meta.index {
            return Err(Status::invalid_argument(format!(
                "snapshot image at {data_index} is older than the snapshot at {}",
                snapshot.meta.index
            )));
        }
        tracing::info!(
            node = self.id,
            from = msg.from,
            index = snapshot.meta.index,
            term = snapshot.meta.term,
            data_index,
            "receiving snapshot"
        );
        let mut spool = Spool::create(&self.spool_dir)
            .await
            .map_err(|e| Status::internal(format!("spool the snapshot: {e}")))?;
        let mut offset = 0u64;
        let mut next = Some(first);
        loop {
            let c = match next.take() {
                Some(c) => c,
                None => stream.message().await?.ok_or_else(|| {
                    Status::invalid_argument("the snapshot stream ended before its last chunk")
                })?,
            };
            if c.offset != offset {
                return Err(Status::invalid_argument(format!(
                    "snapshot chunk at offset {} where {offset} was expected",
                    c.offset
                )));
            }
            offset += c.data.len() as u64;
            if offset > SNAPSHOT_RECV_BYTES_MAX {
                return Err(Status::resource_exhausted(format!(
                    "snapshot larger than {SNAPSHOT_RECV_BYTES_MAX} bytes"
                )));
            }
            let last = c.last;
            spool
                .push(&c.data)
                .await
                .map_err(|e| Status::internal(format!("spool the snapshot: {e}")))?;
            if last {
                break;
            }
        }
        let bytes = spool.bytes();
        let chunks = spool
            .finish()
            .await
            .map_err(|e| Status::internal(format!("spool the snapshot: {e}")))?;
        let (tx, rx) = oneshot::channel();
        self.apply_tx
            .send(ApplyMsg::Restore {
                data_index,
                chunks,
                bytes,
                reply: tx,
            })
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        let restored = rx
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?
            .map_err(|e| Status::internal(format!("restore failed: {e}")))?;
        self.peer_tx
            .send(msg)
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        Ok(Response::new(pb::InstallSnapshotResponse {
            accepted: true,
            reason: if restored {
                String::new()
            } else {
                "state machine already at or past the image".into()
            },
            applied_index: *self.applied.borrow(),
        }))
    }
}
