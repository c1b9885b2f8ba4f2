//! Status and membership: the `Cluster` service.

use proto::kv::cluster_client::ClusterClient;
use proto::kv::{
    AddLearnerRequest, MembersRequest, MembersResponse, PromoteRequest, RemoveRequest,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse, TransferLeaderRequest,
    TransferLeaderResponse,
};

use crate::client::{normalize_endpoint, Client, Route};
use crate::error::Result;
use crate::limits;
use crate::security::Conn;

fn cluster_client(channel: Conn) -> ClusterClient<Conn> {
    ClusterClient::new(channel)
        .max_decoding_message_size(limits::RESPONSE_SIZE_MAX)
        .max_encoding_message_size(limits::REQUEST_SIZE_MAX)
}

/// One node's answer to [`Client::status_all`].
#[derive(Debug)]
pub struct NodeStatus {
    /// The node's address.
    pub addr: String,
    /// Its status, or why it could not be had.
    pub status: Result<StatusResponse>,
}

impl Client {
    /// The status of some node (the known leader if any, else the next
    /// reachable endpoint).
    ///
    /// # Errors
    /// The transient errors of [`Error`](crate::Error) when no node answers.
    pub async fn status(&self) -> Result<StatusResponse> {
        let mut in_doubt = false;
        self.call(Route::Any, &mut in_doubt, |channel| async move {
            cluster_client(channel).status(StatusRequest {}).await
        })
        .await
    }

    /// The status of the node at `addr`: one attempt, no redirect.
    ///
    /// # Errors
    /// [`Error::Unavailable`](crate::Error::Unavailable) when it cannot be
    /// reached, [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded)
    /// when it does not answer within the attempt timeout.
    pub async fn status_of(&self, addr: &str) -> Result<StatusResponse> {
        let config = self.config();
        let budget = config.attempt_timeout.min(config.deadline);
        self.call_node(addr, budget, |channel| async move {
            cluster_client(channel).status(StatusRequest {}).await
        })
        .await
    }

    /// The status of every node: the members some node reports plus this
    /// client's endpoints, asked concurrently, ordered by address. A node
    /// that does not answer is listed with its error.
    ///
    /// # Errors
    /// Only when no node at all answers (as [`status`](Client::status)).
    pub async fn status_all(&self) -> Result<Vec<NodeStatus>> {
        let first = self.status().await?;
        let mut addrs: Vec<String> = first.members.iter().map(|m| m.addr.clone()).collect();
        addrs.extend(self.endpoints());
        let mut addrs: Vec<String> = addrs
            .into_iter()
            .filter_map(|a| normalize_endpoint(&a).ok())
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs.truncate(limits::ENDPOINTS_MAX);
        let mut tasks = tokio::task::JoinSet::new();
        for addr in addrs {
            let client = self.clone();
            tasks.spawn(async move {
                let status = client.status_of(&addr).await;
                NodeStatus { addr, status }
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!("status task failed: {e}"),
            }
        }
        out.sort_by(|a, b| a.addr.cmp(&b.addr));
        Ok(out)
    }

    /// A consistent point-in-time copy of the cluster's state, streamed by
    /// the leader (see `Cluster/Backup` in `kv.proto`): every write
    /// acknowledged before the call is in it. The deadline covers finding
    /// the leader; reading the stream takes as long as it takes.
    ///
    /// # Errors
    /// The transient errors of [`Error`](crate::Error) when no leader
    /// answers in time.
    pub async fn backup(&self) -> Result<tonic::Streaming<proto::kv::BackupChunk>> {
        let mut in_doubt = false;
        self.call(Route::Leader, &mut in_doubt, |channel| async move {
            cluster_client(channel)
                .backup(proto::kv::BackupRequest {})
                .await
        })
        .await
    }

    /// The cluster's configuration as the leader sees it.
    ///
    /// # Errors
    /// The transient errors of [`Error`](crate::Error).
    pub async fn members(&self) -> Result<MembersResponse> {
        let mut in_doubt = false;
        self.call(Route::Leader, &mut in_doubt, |channel| async move {
            cluster_client(channel).members(MembersRequest {}).await
        })
        .await
    }

    /// Adds node `id` at `addr` as a learner; answered once the change is
    /// committed.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) for a member's
    /// id, [`Error::InvalidArgument`](crate::Error::InvalidArgument) for id 0
    /// or a bad address; the transient errors.
    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<MembersResponse> {
        let request = AddLearnerRequest {
            id,
            addr: addr.to_string(),
        };
        let mut in_doubt = false;
        self.call(Route::Leader, &mut in_doubt, |channel| {
            let request = request.clone();
            async move { cluster_client(channel).add_learner(request).await }
        })
        .await
    }

    /// Makes learner `id` a voter.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown id,
    /// [`Error::FailedPrecondition`](crate::Error::FailedPrecondition) for a
    /// node that is not a learner; the transient errors.
    pub async fn promote(&self, id: u64) -> Result<MembersResponse> {
        let mut in_doubt = false;
        self.call(Route::Leader, &mut in_doubt, |channel| async move {
            cluster_client(channel).promote(PromoteRequest { id }).await
        })
        .await
    }

    /// Removes member `id` (the leader included).
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown id; the
    /// transient errors.
    pub async fn remove(&self, id: u64) -> Result<MembersResponse> {
        let mut in_doubt = false;
        self.call(Route::Leader, &mut in_doubt, |channel| async move {
            cluster_client(channel).remove(RemoveRequest { id }).await
        })
        .await
    }

    /// Hands leadership to voter `to`; answered once it leads.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown id, and
    /// whatever the leader answers when the transfer gives up.
    pub async fn transfer_leader(&self, to: u64) -> Result<TransferLeaderResponse> {
        let mut in_doubt = false;
        self.call(Route::Leader, &mut in_doubt, |channel| async move {
            cluster_client(channel)
                .transfer_leader(TransferLeaderRequest { to })
                .await
        })
        .await
    }

    /// Makes the node at `addr` snapshot its state and compact its log. A
    /// snapshot of a big state takes a while: this waits up to the whole
    /// deadline.
    ///
    /// # Errors
    /// As [`status_of`](Client::status_of), plus what the node answers.
    pub async fn snapshot_of(&self, addr: &str) -> Result<SnapshotResponse> {
        let budget = self.config().deadline;
        self.call_node(addr, budget, |channel| async move {
            cluster_client(channel).snapshot(SnapshotRequest {}).await
        })
        .await
    }
}
