//! raftkv's protobuf messages and gRPC services, generated at build time from
//! `proto/*.proto`, plus conversions between them and our own types.

/// `proto/health.proto`.
pub mod health {
    tonic::include_proto!("raftkv.health");
}

/// `proto/raft.proto`: peer messages of the Raft protocol (the server
/// converts them to and from `raft::Message`).
pub mod raft {
    tonic::include_proto!("raftkv.raft");
}

/// `proto/kv.proto`: the client API (`Kv` and `Cluster` services).
pub mod kv {
    tonic::include_proto!("raftkv.kv");

    /// gRPC metadata key a follower sets on an `Unavailable` answer: the
    /// leader's node id (decimal).
    pub const LEADER_ID_METADATA: &str = "raftkv-leader-id";
    /// gRPC metadata key a follower sets on an `Unavailable` answer: the
    /// leader's client address (`host:port`).
    pub const LEADER_ADDR_METADATA: &str = "raftkv-leader-addr";
    /// gRPC metadata key on a `FailedPrecondition` answer naming its kind:
    /// a session error ([`UNKNOWN_SESSION`], [`STALE_REQUEST`]) or
    /// [`NODE_REMOVED`].
    pub const ERROR_METADATA: &str = "raftkv-error";
    /// [`ERROR_METADATA`] value: the session is unknown or expired.
    pub const UNKNOWN_SESSION: &str = "unknown-session";
    /// [`ERROR_METADATA`] value: the request's `seq` is below the session's last.
    pub const STALE_REQUEST: &str = "stale-request";
    /// [`ERROR_METADATA`] value: the node asked was removed from the
    /// cluster; it did nothing with the call (ask another node).
    pub const NODE_REMOVED: &str = "node-removed";
    /// gRPC metadata key a client sets (any value) to get the leader hint
    /// from a follower instead of having the follower forward the call to
    /// the leader (our client library follows hints itself and so saves a
    /// hop).
    pub const NO_FORWARD_METADATA: &str = "raftkv-no-forward";
    /// gRPC metadata key a follower sets on a call it forwards to the
    /// leader; a node receiving it never forwards again (no loops).
    pub const FORWARDED_METADATA: &str = "raftkv-forwarded";
}
