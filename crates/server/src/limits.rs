//! Every limit of the node runtime in one place, named `thing_max`.
//!
//! The values here are the defaults and hard caps; a node's [`Limits`]
//! (from its configuration) may lower them but never raise them past the
//! `*_cap` constants.
//!
//! [`Limits`]: crate::config::Limits

/// Default largest key a client may write or read, in bytes (the state
/// machine's own limit).
pub const KEY_SIZE_MAX: usize = kv::limits::KEY_SIZE_MAX;
/// Default largest value a client may write, in bytes (the state machine's
/// own limit).
pub const VALUE_SIZE_MAX: usize = kv::limits::VALUE_SIZE_MAX;
/// Default number of proposals waiting for their entry to apply, per node.
pub const PENDING_PROPOSALS_MAX: usize = 4096;
/// Default number of linearizable reads waiting for a ReadIndex round.
pub const PENDING_READS_MAX: usize = 4096;
/// Default largest number of keys one Scan returns.
pub const SCAN_LIMIT_MAX: u32 = kv::limits::SCAN_LIMIT_MAX as u32;
/// Default largest gRPC message the node decodes, in bytes (a request with a
/// maximal key and value plus framing fits well within it).
pub const GRPC_MESSAGE_SIZE_MAX: usize = 4 * 1024 * 1024;

/// Bytes of a Scan response kept free for its header and framing: a page's
/// key-values fill the rest of the response size limit.
pub const SCAN_RESPONSE_HEADROOM: usize = 4096;
/// How long a write or read waits for its entry to apply (or its read
/// index) before answering `Unavailable` (the client retries), in ms.
pub const REQUEST_WAIT_MS_MAX: u64 = 10_000;
/// Bytes of one snapshot transfer a receiver spools to disk before
/// restoring (see `spool`; only a chunk at a time is in memory). A guard
/// against a runaway sender filling the disk, far above any state machine
/// this store is meant for.
pub const SNAPSHOT_RECV_BYTES_MAX: u64 = 256 << 30;
/// Messages buffered on one open peer stream (between the outbox and gRPC).
pub const PEER_STREAM_BUFFER_MAX: usize = 256;
/// Largest peer message (AppendEntries batch, snapshot chunk), in bytes.
pub const PEER_MESSAGE_SIZE_MAX: usize = 64 * 1024 * 1024;

/// Hard cap for the key size setting: the state machine refuses more.
pub const KEY_SIZE_CAP: usize = kv::limits::KEY_SIZE_MAX;
/// Hard cap for the value size setting: the state machine refuses more.
pub const VALUE_SIZE_CAP: usize = kv::limits::VALUE_SIZE_MAX;
/// Hard cap for pending proposals and reads.
pub const PENDING_CAP: usize = 1 << 20;
/// Hard cap for the gRPC message size.
pub const GRPC_MESSAGE_SIZE_CAP: usize = 64 * 1024 * 1024;

/// Requests queued from gRPC handlers to the Raft driver task.
pub const NODE_INBOX_MAX: usize = 1024;
/// Messages queued from peers to the Raft driver task.
pub const PEER_INBOX_MAX: usize = 4096;
/// Messages queued for one peer's outgoing stream; beyond it messages are
/// dropped (Raft retries).
pub const PEER_OUTBOX_MAX: usize = 1024;
/// Batches of committed entries queued for the apply task.
pub const APPLY_QUEUE_MAX: usize = 64;
/// Proposals the driver takes into one Raft batch before handling a Ready.
pub const PROPOSALS_PER_BATCH_MAX: usize = 512;
/// Bytes of snapshot data in one chunk on the wire.
pub const SNAPSHOT_CHUNK_SIZE_MAX: usize = 1024 * 1024;
/// A snapshot transfer whose receiver takes no chunk for this long is
/// abandoned (so the leader's retry can start a new one), in ms.
pub const SNAPSHOT_IDLE_MS_MAX: u64 = 10_000;
/// After its last chunk, how long a transfer waits for the receiver to
/// restore and answer, in ms.
pub const SNAPSHOT_FINISH_MS_MAX: u64 = 120_000;
/// Establishing a peer connection (TCP and HTTP/2 handshakes), in ms.
pub const PEER_CONNECT_MS_MAX: u64 = 2_000;
/// Snapshot transfers a node sends at once.
pub const SNAPSHOT_SENDS_MAX: usize = 2;
/// Backoff between reconnect attempts to a peer, first and largest, in ms.
pub const PEER_RECONNECT_BACKOFF_MS_MIN: u64 = 50;
/// See [`PEER_RECONNECT_BACKOFF_MS_MIN`].
pub const PEER_RECONNECT_BACKOFF_MS_MAX: u64 = 2_000;
/// A peer stream that ends after being up at least this long is reopened
/// at once (no backoff), in ms.
pub const PEER_STREAM_STABLE_MS_MIN: u64 = 1_000;
/// Peer events (a peer found down, replaced, or refusing us) arriving at
/// the driver and not yet handled; more are dropped (a peer found down or
/// refusing is only a hint; a replaced peer waits for room).
pub const PEER_EVENTS_MAX: usize = 16;
/// After its leader is reported down, the remaining voters campaign one
/// after the other, by id: the voter of rank r (0 for the lowest id) waits
/// r times this long (or half its minimum election timeout, if that is
/// shorter), plus up to a third of it at random, in ms. Campaigning
/// together would split the vote and cost a whole election timeout; this
/// spacing is far above a vote round trip even on a loaded machine.
pub const LEADER_DOWN_CAMPAIGN_SPACING_MS: u64 = 150;
/// Peers in the address book.
pub const PEERS_MAX: usize = 64;
/// A node pings every HTTP/2 connection it serves after this long without
/// a frame from the other end, in ms...
pub const SERVED_CONNECTION_PING_MS: u64 = 2_000;
/// ...and drops the connection when the answer takes longer than this, in
/// ms. A connection whose other end vanished without closing it (a peer
/// cut off the network) would otherwise live for ever with its open peer
/// stream, and a graceful stop would wait for it.
pub const SERVED_CONNECTION_PING_TIMEOUT_MS: u64 = 3_000;

const _: () = assert!(KEY_SIZE_MAX <= KEY_SIZE_CAP);
const _: () = assert!(VALUE_SIZE_MAX <= VALUE_SIZE_CAP);
const _: () = assert!(KEY_SIZE_MAX + VALUE_SIZE_MAX + 4096 <= GRPC_MESSAGE_SIZE_MAX);
const _: () = assert!(PEER_RECONNECT_BACKOFF_MS_MIN <= PEER_RECONNECT_BACKOFF_MS_MAX);

/// Longest `cluster_token`, in bytes.
pub const CLUSTER_TOKEN_BYTES_MAX: usize = 256;

/// How long a node that bootstraps waits for each peer's `Raft.Probe`
/// answer, in ms. An unreachable peer does not stop the bootstrap (the
/// nodes of a new cluster start in any order).
pub const BOOTSTRAP_PROBE_WAIT_MS: u64 = 500;

/// At most one "follower lost data" ERROR line per follower this often, in
/// ms (each one is counted in `raftkv_follower_lost_data_total`).
pub const FOLLOWER_LOSS_LOG_INTERVAL_MS: u64 = 10_000;

/// Bytes a backup chunk aims at (`Cluster/Backup`; a chunk holds at least
/// one record, so it may be larger, up to [`BACKUP_CHUNK_BYTES_MAX`]).
pub const BACKUP_CHUNK_BYTES: usize = 1024 * 1024;

/// Largest chunk a backup file may hold (the state machine's largest
/// snapshot chunk).
pub const BACKUP_CHUNK_BYTES_MAX: usize = kv::limits::CHUNK_BYTES_MAX;

/// Backup chunks read ahead of a slow client.
pub const BACKUP_CHUNKS_IN_FLIGHT_MAX: usize = 4;

/// Smallest WAL segment size a config may ask for (`storage.wal_segment_size_max`):
/// smaller segments mean a file per few entries.
pub const WAL_SEGMENT_SIZE_MIN: u64 = 1024 * 1024;
