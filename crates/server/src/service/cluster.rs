//! The `Cluster` service: status, members, membership changes, leadership
//! transfer and on-demand snapshots.
//!
//! A follower forwards membership changes and leadership transfers to the
//! leader (see [`super::forward`]); `Status`, `Members` and `Snapshot` are
//! answered by the node asked.
//!
//! Membership changes go through the log one at a time (the Raft core's
//! rule) and are answered once the change applied. A new node's address
//! rides in the change's context, so every member learns it.
//!
//! # Committed versus appended configuration
//!
//! The core uses a configuration from the moment its entry is appended,
//! but the entry may still be truncated away by a later leader. So every
//! answer that reports a change's *outcome* is based on the configuration
//! as of the commit index, never on the appended one:
//!
//! - `Members` lists the committed configuration (of the node asked: a
//!   lagging node may still list a removed node, never the reverse).
//! - `Remove` is answered by the leader only. `NotFound` means the node is
//!   absent from the leader's committed configuration, so its removal is
//!   durable and wiping its disk is safe. A removal that is appended but
//!   not committed yet (e.g. the first attempt timed out) answers
//!   `Unavailable`; retry until the removal succeeds or `NotFound` comes.
//!
//! (`Status` still shows the node's configuration in effect, appended or
//! not: that is the one the node votes and counts with.)
//!
//! # A removed node
//!
//! A node that learned it was removed (see `raft::membership`) answers
//! `Status` (with `removed` set) and every other call of `Kv` and
//! `Cluster` `FAILED_PRECONDITION` ("this node was removed from the
//! cluster (id N); ..."), without forwarding.

use bytes::Bytes;
use proto::kv as pb;
use raft::{ConfChange, ConfChangeKind, ConfState, Role};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use super::{forward, unavailable, Handle};
use crate::apply::ApplyMsg;
use crate::node::NodeRequest;

/// The `Cluster` gRPC service.
pub(crate) struct ClusterService {
    pub handle: Handle,
}

impl ClusterService {
    fn members(&self, conf: &ConfState) -> Vec<pb::Member> {
        let book = self.handle.book.all();
        let mut out: Vec<pb::Member> = conf
            .voters
            .iter()
            .chain(conf.voters_outgoing.iter())
            .map(|id| (*id, false))
            .chain(conf.learners.iter().map(|id| (*id, true)))
            .map(|(id, learner)| pb::Member {
                id,
                addr: book
                    .get(&id)
                    .and_then(|e| e.client.clone())
                    .unwrap_or_default(),
                peer_addr: book
                    .get(&id)
                    .and_then(|e| e.peer.clone())
                    .unwrap_or_default(),
                learner,
            })
            .collect();
        out.sort_by_key(|m| m.id);
        out.dedup_by_key(|m| m.id);
        out
    }

    async fn conf_change(
        &self,
        kind: ConfChangeKind,
        id: u64,
        context: Bytes,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        self.handle.check_leader()?;
        let (tx, rx) = oneshot::channel();
        self.handle.send(NodeRequest::ConfChange {
            cc: ConfChange {
                kind,
                node_id: id,
                context,
            },
            reply: tx,
        })?;
        let index = match tokio::time::timeout(self.handle.request_wait, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(unavailable("the node is shutting down")),
            Err(_) => {
                return Err(unavailable(
                    "timed out waiting for the membership change to commit; check Members",
                ))
            }
        };
        let conf = self.handle.soft.borrow().conf.clone();
        Ok(Response::new(pb::MembersResponse {
            header: Some(self.handle.header()),
            members: self.members(&conf),
            index,
        }))
    }
}

fn check_addr(addr: &str) -> Result<(), Status> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(Status::invalid_argument(format!(
            "address `{addr}` is not host:port"
        ))),
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let (tx, rx) = oneshot::channel();
        self.handle.send(NodeRequest::Status { reply: tx })?;
        let st = rx
            .await
            .map_err(|_| unavailable("the node is shutting down"))?;
        let role = match st.role {
            Role::Leader => pb::Role::Leader,
            Role::Candidate => pb::Role::Candidate,
            Role::PreCandidate => pb::Role::PreCandidate,
            Role::Follower if st.conf.learners.contains(&self.handle.id) => pb::Role::Learner,
            Role::Follower => pb::Role::Follower,
        };
        let leader = st.leader.unwrap_or(0);
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.handle.header()),
            id: self.handle.id,
            addr: self.handle.addr.clone(),
            role: role as i32,
            term: st.term,
            leader_id: leader,
            leader_addr: st
                .leader
                .and_then(|l| self.handle.book.client(l))
                .unwrap_or_default(),
            commit_index: st.commit,
            applied_index: *self.handle.applied.borrow(),
            last_log_index: st.last_index,
            snapshot_index: st.snapshot_index,
            members: self.members(&st.conf),
            peer_auth: self.handle.peer_auth.as_str().to_string(),
            removed: st.removed,
            cluster_id: self.handle.identity.cluster_id,
            incarnation: self.handle.identity.incarnation,
            recovering: st.recovering,
            disk_free_bytes: self.handle.disk.free().unwrap_or(0),
            disk_reserve_bytes: self.handle.disk.reserve(),
        }))
    }

    async fn members(
        &self,
        _req: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        self.handle.check_removed()?;
        let conf = self.handle.soft.borrow().committed_conf.clone();
        Ok(Response::new(pb::MembersResponse {
            header: Some(self.handle.header()),
            members: self.members(&conf),
            index: 0,
        }))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        self.handle.check_removed()?;
        if let Some(mut leader) = self.handle.forward_cluster(req.metadata()) {
            return leader.add_learner(forward::outgoing(req)).await;
        }
        let r = req.into_inner();
        if r.id == 0 {
            return Err(Status::invalid_argument("node id 0 is reserved"));
        }
        check_addr(&r.addr)?;
        if self.handle.soft.borrow().conf.members().contains(&r.id) {
            return Err(Status::already_exists(format!(
                "node {} is already a member",
                r.id
            )));
        }
        self.conf_change(ConfChangeKind::AddLearner, r.id, Bytes::from(r.addr))
            .await
    }

    async fn promote(
        &self,
        req: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        self.handle.check_removed()?;
        if let Some(mut leader) = self.handle.forward_cluster(req.metadata()) {
            return leader.promote(forward::outgoing(req)).await;
        }
        let id = req.into_inner().id;
        {
            let conf = &self.handle.soft.borrow().conf;
            if !conf.members().contains(&id) {
                return Err(Status::not_found(format!("node {id} is not a member")));
            }
            if !conf.learners.contains(&id) {
                return Err(Status::failed_precondition(format!(
                    "node {id} is already a voter"
                )));
            }
        }
        self.conf_change(ConfChangeKind::AddVoter, id, Bytes::new())
            .await
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        self.handle.check_removed()?;
        if let Some(mut leader) = self.handle.forward_cluster(req.metadata()) {
            return leader.remove(forward::outgoing(req)).await;
        }
        let id = req.into_inner().id;
        // Only the leader's committed configuration can tell that a node
        // is gone for good (module docs).
        self.handle.check_leader()?;
        {
            let soft = self.handle.soft.borrow();
            if !soft.conf.members().contains(&id) {
                if soft.committed_conf.members().contains(&id) {
                    return Err(unavailable(&format!(
                        "the removal of node {id} is appended but not committed yet; retry"
                    )));
                }
                return Err(Status::not_found(format!("node {id} is not a member")));
            }
        }
        self.conf_change(ConfChangeKind::RemoveNode, id, Bytes::new())
            .await
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        self.handle.check_removed()?;
        if let Some(mut leader) = self.handle.forward_cluster(req.metadata()) {
            return leader.transfer_leader(forward::outgoing(req)).await;
        }
        let to = req.into_inner().to;
        {
            let soft = self.handle.soft.borrow();
            if !soft.conf.members().contains(&to) {
                return Err(Status::not_found(format!("node {to} is not a member")));
            }
            if !soft.conf.is_voter(to) {
                return Err(Status::failed_precondition(format!(
                    "node {to} is a learner; promote it first"
                )));
            }
        }
        self.handle.check_leader()?;
        if to != self.handle.id {
            let (tx, rx) = oneshot::channel();
            self.handle
                .send(NodeRequest::TransferLeader { to, reply: tx })?;
            rx.await
                .map_err(|_| unavailable("the node is shutting down"))??;
            let mut soft = self.handle.soft.clone();
            let wait = async { soft.wait_for(|s| s.leader == Some(to)).await.map(|_| ()) };
            match tokio::time::timeout(self.handle.election_timeout * 2, wait).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(unavailable("the node is shutting down")),
                Err(_) => {
                    return Err(Status::deadline_exceeded(format!(
                        "node {to} did not take over within two election timeouts"
                    )))
                }
            }
        }
        Ok(Response::new(pb::TransferLeaderResponse {
            header: Some(self.handle.header()),
            leader_id: to,
        }))
    }

    type BackupStream = crate::backup::BackupStream;

    async fn backup(
        &self,
        _req: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        crate::backup::serve(&self.handle).await.map(Response::new)
    }

    async fn snapshot(
        &self,
        _req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        self.handle.check_removed()?;
        let (tx, rx) = oneshot::channel();
        self.handle
            .apply_tx
            .try_send(ApplyMsg::SnapshotNow { reply: tx })
            .map_err(|_| Status::resource_exhausted("the apply queue is full; retry"))?;
        let index = rx
            .await
            .map_err(|_| unavailable("the node is shutting down"))?;
        let (tx, rx) = oneshot::channel();
        self.handle.send(NodeRequest::Compact {
            index,
            reply: Some(tx),
        })?;
        let (snapshot_index, snapshot_term) = rx
            .await
            .map_err(|_| unavailable("the node is shutting down"))??;
        Ok(Response::new(pb::SnapshotResponse {
            header: Some(self.handle.header()),
            snapshot_index,
            snapshot_term,
        }))
    }
}
