//! The receiving half of the transport: the `Raft` gRPC service.
//!
//! `Send` streams: each message is decoded, checked to be addressed to this
//! node, and queued to the driver's peer inbox without waiting (dropped when
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
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Request, Response, Status, Streaming};

use super::convert::message_from_pb;
use crate::addrbook::AddrBook;
use crate::apply::ApplyMsg;
use crate::limits::SNAPSHOT_RECV_BYTES_MAX;
use crate::spool::Spool;

/// The `Raft` gRPC service.
pub(crate) struct RaftService {
    pub id: u64,
    /// This node's identity, for `Probe`.
    pub identity: crate::identity::Identity,
    /// The driver's published state, for `Probe`.
    pub soft: watch::Receiver<crate::node::SoftView>,
    pub peer_tx: mpsc::Sender<Message>,
    pub apply_tx: mpsc::Sender<ApplyMsg>,
    pub applied: watch::Receiver<u64>,
    pub stop: watch::Receiver<bool>,
    pub book: AddrBook,
    /// Where snapshot transfers are spooled (`<data_dir>/recv`).
    pub spool_dir: std::path::PathBuf,
}

/// The sender's address from the stream's metadata, if well-formed.
fn from_addr<T>(req: &Request<T>) -> Option<String> {
    let a = req
        .metadata()
        .get(super::FROM_ADDR_METADATA)?
        .to_str()
        .ok()?;
    let (host, port) = a.rsplit_once(':')?;
    (!host.is_empty() && port.parse::<u16>().is_ok()).then(|| a.to_string())
}

impl RaftService {
    /// Records `from`'s address if this node does not know it yet.
    fn learn(&self, from: u64, addr: &Option<String>) {
        if let Some(a) = addr {
            if self.book.get(from).is_none() {
                let entry = std::collections::BTreeMap::from([(from, a.clone())]);
                if let Err(e) = self.book.merge(&entry) {
                    tracing::warn!(node = self.id, error = %e, "cannot save the address book");
                }
            }
        }
    }

    fn decode(&self, m: pb::RaftMessage) -> Option<Message> {
        match message_from_pb(m) {
            Ok(m) if m.to == self.id => Some(m),
            Ok(m) => {
                tracing::warn!(
                    node = self.id,
                    to = m.to,
                    from = m.from,
                    "dropping a peer message addressed to another node"
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
        let addr = from_addr(&req);
        let mut stream = req.into_inner();
        let mut stop = self.stop.clone();
        let mut learned = false;
        loop {
            let next = tokio::select! {
                m = stream.message() => m?,
                _ = super::stopped(&mut stop) => None,
            };
            let Some(m) = next else { break };
            let Some(m) = self.decode(m) else { continue };
            if !learned {
                self.learn(m.from, &addr);
                learned = true;
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
        let addr = from_addr(&req);
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
            .decode(header)
            .ok_or_else(|| Status::invalid_argument("bad snapshot header"))?;
        self.learn(msg.from, &addr);
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
