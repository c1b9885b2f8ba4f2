//! A node's configuration: from a TOML file, from flags (the `cli` crate
//! fills the struct), or from [`Config::default`] for tests.
//!
//! # TOML format
//!
//! Every field is optional; missing ones take the default shown.
//!
//! ```toml
//! id = 1                          # this node's id, never 0
//! listen_addr = "127.0.0.1:7001"  # gRPC for clients: Kv, Cluster, Health
//! peer_listen_addr = "127.0.0.1:7201" # the Raft service (default: listen port + 200)
//! advertise_client_addr = "db1.example:7001" # the client address peers tell clients (default listen_addr)
//! cluster_secret_file = "secret"  # peers authenticate with it (no TLS); see README
//! data_dir = "data/1"             # <data_dir>/wal, <data_dir>/kv, <data_dir>/peers.toml
//! bootstrap = false               # true: a new (empty) data dir starts a new cluster
//! cluster_token = "raftkv"        # with bootstrap: makes the cluster id
//! # cluster_id = "5f0c3d2e9a7b1c44" # optional: refuse a data dir of another cluster
//! join = false                    # accepted: "do not bootstrap" (the default)
//! tick_interval_ms = 100
//! election_timeout_ticks_min = 10
//! election_timeout_ticks_max = 20
//! heartbeat_interval_ticks = 1
//! pre_vote = true
//! check_quorum = true
//! lease_read = false              # true: linearizable reads from the leader's lease (see below)
//! snapshot_threshold_entries = 10000
//! http_addr = "127.0.0.1:7101"   # /metrics and the web page; off if unset
//!
//! [peers]                         # node id -> PEER address, this node may be listed
//! 1 = "127.0.0.1:7201"
//! 2 = "127.0.0.1:7202"
//! 3 = "127.0.0.1:7203"
//!
//! [tls]                           # optional: TLS only, mutual TLS with peers
//! ca = "certs/ca.pem"
//! cert = "certs/node1.pem"
//! key = "certs/node1.key"
//!
//! [[auth.tokens]]                 # optional: bearer tokens (see `security`)
//! token = "s3cret"
//! role = "write"                  # or "read"
//!
//! [storage]                       # the state machine's Bitcask engine
//! file_size_max = 268435456       # a data file is closed past this size
//! merge_dead_percent = 50         # merge once this share of record bytes is dead (0: never)
//! merge_dead_bytes_min = 67108864 # ... and at least this many bytes are dead
//! merge_check_interval_ms = 10000 # how often to look
//! wal_segment_size_max = 67108864 # WAL segment files (preallocated; up to ~2 at once)
//! disk_reserve_bytes = 67108864   # a leader refuses writes below this much free disk (default: one segment; 0: never)
//!
//! [limits]
//! key_size_max = 4096
//! value_size_max = 1048576
//! pending_proposals_max = 4096
//! pending_reads_max = 4096
//! scan_limit_max = 10000
//! grpc_message_size_max = 4194304
//! ```
//!
//! # Peers and bootstrap
//!
//! `peers` names the cluster's initial voters and their addresses. Listing
//! this node itself is allowed and optional: the initial voters are
//! `{id} ∪ peers` either way, and this node's own peer address (as others
//! reach it) is `peers[id]` if present, else the peer listen address. Its
//! client address travels to the peers in the handshake (see the
//! `transport` module) and lands in their address books. All nodes of a new
//! cluster must be given the same set. The set is used only on the very
//! first start (an empty data dir); later the configuration comes from the
//! log and the addresses from `<data_dir>/peers.toml`, which also holds the
//! addresses of nodes added at runtime.
//!
//! Only `bootstrap = true` (`--bootstrap`) on an empty data dir creates a
//! cluster: the initial configuration `{id} ∪ peers` and the cluster id,
//! derived from `cluster_token` and the initial voters' ids (see
//! [`crate::identity`]), so every node bootstrapped with the same settings
//! agrees. Before that the node asks its peers (`Raft.Probe`) and refuses
//! to bootstrap if one of them already holds a cluster with a log: this
//! node's data dir was lost, and it must rejoin instead. On a data dir that
//! already exists `bootstrap` is ignored, so a node is restarted with the
//! flags it was first started with. Without `bootstrap` an empty data dir
//! joins: no configuration, no votes, no campaigns; it waits for a leader
//! to add it (as a learner) and catches up from a snapshot; its `peers`
//! only seed the address book. `join = true` says the same explicitly;
//! `join` and `bootstrap` together are an error. `cluster_id`, if set, is
//! the cluster this node must belong to: a data dir of another cluster is
//! refused. See docs/operations.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;

use crate::limits;

/// Errors in a configuration: which field, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML did not parse or a field has the wrong type; the message
    /// names the field and the line.
    #[error("malformed config: {0}")]
    Parse(String),
    /// A field parsed but its value is not allowed.
    #[error("invalid config field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A node's configuration. See the module docs for the TOML format.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id; never 0.
    pub id: u64,
    /// Where the client gRPC server listens (`Kv`, `Cluster`, `Health`).
    pub listen_addr: String,
    /// Where the peer gRPC server (the `Raft` service only) listens;
    /// default: the host of `listen_addr` with its port + 200.
    pub peer_listen_addr: Option<String>,
    /// This node's client address as clients reach it (sent to peers in the
    /// handshake; leader hints and forwarding use it); default `listen_addr`.
    pub advertise_client_addr: Option<String>,
    /// A file holding the cluster secret that authenticates peers without
    /// TLS (see `transport::handshake`); none if unset.
    pub cluster_secret_file: Option<PathBuf>,
    /// The initial voters (id → PEER address); may or may not include this
    /// node.
    #[serde(deserialize_with = "de_peers")]
    pub peers: BTreeMap<u64, String>,
    /// Start without a configuration and wait to be added by a leader (the
    /// default; kept for compatibility, an error with `bootstrap`).
    pub join: bool,
    /// On an empty data dir, create a new cluster with the initial voters
    /// `{id} ∪ peers`; ignored on an existing data dir.
    pub bootstrap: bool,
    /// With `bootstrap`: the token the cluster id is derived from, so that
    /// two clusters with the same node ids differ.
    pub cluster_token: String,
    /// The cluster this node must belong to (16 hex digits), if set: a data
    /// dir of another cluster is refused at startup.
    pub cluster_id: Option<String>,
    /// Where the WAL (`wal/`), the state machine (`kv/`) and the address
    /// book (`peers.toml`) live.
    pub data_dir: PathBuf,
    /// Milliseconds per Raft tick.
    pub tick_interval_ms: u64,
    /// Smallest randomized election timeout, in ticks.
    pub election_timeout_ticks_min: u64,
    /// Largest randomized election timeout, in ticks (exclusive bound).
    pub election_timeout_ticks_max: u64,
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_interval_ticks: u64,
    /// Run a pre-vote round before a real election.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout
    /// steps down.
    pub check_quorum: bool,
    /// Serve linearizable reads on the leader from its lease instead of a
    /// ReadIndex heartbeat round: one network round trip less per read.
    /// The lease is checked against the monotonic clock and lasts the
    /// minimum election timeout minus 10 % (clock-rate drift) minus one
    /// tick from when the acknowledged heartbeat round was sent; after a
    /// stall longer than that (paused process or VM) reads fall back to a
    /// round. Correct while the nodes' clocks run at the same rate to
    /// within that 10 % (see crates/raft/src/read.rs). Needs `check_quorum`. Off by
    /// default.
    pub lease_read: bool,
    /// Take a snapshot and compact the WAL every this many applied entries.
    pub snapshot_threshold_entries: u64,
    /// `[storage]`: the Bitcask engine's file size and automatic merges.
    pub storage: Storage,
    /// Request and queue limits.
    pub limits: Limits,
    /// Where the HTTP server (`/metrics`, the web page) listens; none if
    /// unset. See the `observe` module.
    pub http_addr: Option<String>,
    /// `[tls]`: serve TLS only and use mutual TLS with peers (see
    /// [`crate::security`]); plaintext if unset.
    pub tls: Option<crate::security::TlsConfig>,
    /// `[auth]`: bearer tokens (see [`crate::security`]); off if empty.
    pub auth: crate::security::AuthConfig,
    /// Hooks for tests only; never set from TOML.
    #[serde(skip)]
    pub test_hooks: TestHooks,
}

/// The state machine's Bitcask engine: when data files are closed, and
/// when a background merge rewrites the closed ones without their dead
/// records (overwritten or deleted values). See [`crate::merger`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// The active data file is closed (and becomes mergeable) before a
    /// write would take it past this many bytes.
    pub file_size_max: u64,
    /// Merge once dead records are at least this percentage of the record
    /// bytes; 0 turns automatic merges off.
    pub merge_dead_percent: u8,
    /// ... and at least this many bytes are dead.
    pub merge_dead_bytes_min: u64,
    /// How often the engine is looked at, in ms.
    pub merge_check_interval_ms: u64,
    /// The WAL's segment size: each segment file is preallocated to it, and
    /// the next one is preallocated once the active one is half full, so
    /// the WAL holds up to about twice this much beyond its live entries.
    /// Small volumes need a small value.
    pub wal_segment_size_max: u64,
    /// A leader refuses writes while its data dir's volume has less than
    /// this many bytes free (see `disk`); unset: `wal_segment_size_max`
    /// (room for the next WAL segment); 0: never.
    pub disk_reserve_bytes: Option<u64>,
}

impl Storage {
    /// The free-space reserve in force (see `disk_reserve_bytes`).
    pub fn disk_reserve(&self) -> u64 {
        self.disk_reserve_bytes.unwrap_or(self.wal_segment_size_max)
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            file_size_max: bitcask::limits::file_size_default,
            merge_dead_percent: 50,
            merge_dead_bytes_min: 64 * 1024 * 1024,
            merge_check_interval_ms: 10_000,
            wal_segment_size_max: wal::limits::SEGMENT_SIZE_DEFAULT,
            disk_reserve_bytes: None,
        }
    }
}

/// Request and queue limits of a node. Defaults come from [`crate::limits`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest key, in bytes.
    pub key_size_max: usize,
    /// Largest value, in bytes.
    pub value_size_max: usize,
    /// Writes waiting for their entry to apply; beyond it `ResourceExhausted`.
    pub pending_proposals_max: usize,
    /// Linearizable reads waiting; beyond it `ResourceExhausted`.
    pub pending_reads_max: usize,
    /// Most keys one Scan returns (a larger requested limit is clamped).
    pub scan_limit_max: u32,
    /// Largest gRPC message decoded, in bytes.
    pub grpc_message_size_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_size_max: limits::KEY_SIZE_MAX,
            value_size_max: limits::VALUE_SIZE_MAX,
            pending_proposals_max: limits::PENDING_PROPOSALS_MAX,
            pending_reads_max: limits::PENDING_READS_MAX,
            scan_limit_max: limits::SCAN_LIMIT_MAX,
            grpc_message_size_max: limits::GRPC_MESSAGE_SIZE_MAX,
        }
    }
}

/// Fault hooks for tests. Cloning shares the counters.
#[derive(Clone, Debug, Default)]
pub struct TestHooks {
    /// While positive, each successful write's reply is dropped after its
    /// entry applied (the client sees `Unavailable`), and the counter is
    /// decremented: a lost reply.
    pub drop_write_replies: Arc<AtomicU64>,
}

impl TestHooks {
    /// Whether to drop this reply (consumes one unit of the counter).
    pub fn take_drop_write_reply(&self) -> bool {
        self.drop_write_replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 1,
            listen_addr: "127.0.0.1:7001".to_string(),
            peer_listen_addr: None,
            advertise_client_addr: None,
            cluster_secret_file: None,
            peers: BTreeMap::new(),
            join: false,
            bootstrap: false,
            cluster_token: "raftkv".to_string(),
            cluster_id: None,
            data_dir: PathBuf::from("data"),
            tick_interval_ms: 100,
            election_timeout_ticks_min: 10,
            election_timeout_ticks_max: 20,
            heartbeat_interval_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            lease_read: false,
            snapshot_threshold_entries: 10_000,
            storage: Storage::default(),
            limits: Limits::default(),
            http_addr: None,
            tls: None,
            auth: crate::security::AuthConfig::default(),
            test_hooks: TestHooks::default(),
        }
    }
}

fn de_peers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u64, String>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    let mut peers = BTreeMap::new();
    for (k, v) in raw {
        let id = k.trim().parse::<u64>().map_err(|_| {
            serde::de::Error::custom(format!("peers: key `{k}` is not a node id (a u64)"))
        })?;
        peers.insert(id, v);
    }
    Ok(peers)
}

impl Config {
    /// Parse a TOML document and [`validate`](Config::validate) it.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] naming the field and line of a malformed
    /// document; [`ConfigError::Invalid`] for a value out of range.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(s).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Read a TOML file and parse it as [`from_toml_str`](Config::from_toml_str);
    /// relative paths it sets are relative to its directory.
    ///
    /// # Errors
    /// As `from_toml_str`, plus [`ConfigError::Read`].
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let s = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::from_toml_str(&s)?;
        let base = path.parent().unwrap_or(Path::new("."));
        crate::config_file::resolve_relative_paths(&mut config, &s, base)?;
        Ok(config)
    }

    /// Where the peer listener binds: `peer_listen_addr`, else the host of
    /// `listen_addr` with its port + [`PEER_PORT_OFFSET`] (`listen_addr`
    /// itself if that port does not exist; `validate` refuses it).
    pub fn peer_listen(&self) -> String {
        if let Some(a) = &self.peer_listen_addr {
            return a.clone();
        }
        default_peer_addr(&self.listen_addr).unwrap_or_else(|| self.listen_addr.clone())
    }

    /// The PEER address other nodes reach this node at: `peers[id]` if
    /// listed, else [`Config::peer_listen`].
    pub fn advertise_peer_addr(&self) -> String {
        self.peers
            .get(&self.id)
            .cloned()
            .unwrap_or_else(|| self.peer_listen())
    }

    /// The CLIENT address clients reach this node at:
    /// `advertise_client_addr`, else `listen_addr`.
    pub fn advertise_client(&self) -> String {
        self.advertise_client_addr
            .clone()
            .unwrap_or_else(|| self.listen_addr.clone())
    }

    /// The voters a new cluster starts with: `{id} ∪ peers`.
    pub fn initial_voters(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.peers.keys().copied().collect();
        if !v.contains(&self.id) {
            v.push(self.id);
        }
        v.sort_unstable();
        v
    }

    /// The initial voters with their addresses (as far as known), for the
    /// cluster id of a bootstrap.
    pub fn initial_voter_map(&self) -> BTreeMap<u64, String> {
        let mut m = self.peers.clone();
        m.entry(self.id).or_insert_with(|| self.listen_addr.clone());
        m
    }

    /// `cluster_id` parsed, if set.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if it is not 16 hex digits or is 0.
    pub fn expected_cluster_id(&self) -> Result<Option<u64>, ConfigError> {
        let Some(s) = &self.cluster_id else {
            return Ok(None);
        };
        let bad = || {
            invalid(
                "cluster_id",
                format!("`{s}` is not 16 hex digits (not 0), e.g. as `raftkv status` shows it"),
            )
        };
        if s.len() != 16 {
            return Err(bad());
        }
        match u64::from_str_radix(s, 16) {
            Ok(0) | Err(_) => Err(bad()),
            Ok(v) => Ok(Some(v)),
        }
    }

    /// Check every field's range.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(invalid("id", "must be a positive node id (0 is reserved)"));
        }
        self.listen_addr
            .parse::<SocketAddr>()
            .map_err(|e| invalid("listen_addr", format!("`{}`: {e}", self.listen_addr)))?;
        match &self.peer_listen_addr {
            Some(a) => {
                a.parse::<SocketAddr>()
                    .map_err(|e| invalid("peer_listen_addr", format!("`{a}`: {e}")))?;
            }
            None => {
                if default_peer_addr(&self.listen_addr).is_none() {
                    return Err(invalid(
                        "peer_listen_addr",
                        format!(
                            "the default (listen_addr's port + {PEER_PORT_OFFSET}) is past 65535; \
                             set peer_listen_addr"
                        ),
                    ));
                }
            }
        }
        if self.peer_listen() == self.listen_addr {
            return Err(invalid(
                "peer_listen_addr",
                "must differ from listen_addr: the Raft service has its own listener",
            ));
        }
        if let Some(a) = &self.advertise_client_addr {
            check_host_port(a).map_err(|r| invalid("advertise_client_addr", r))?;
        }
        if self.peers.len() > limits::PEERS_MAX {
            return Err(invalid(
                "peers",
                format!("{} peers, at most {}", self.peers.len(), limits::PEERS_MAX),
            ));
        }
        for (id, addr) in &self.peers {
            if *id == 0 {
                return Err(invalid("peers", "node id 0 is reserved"));
            }
            check_host_port(addr).map_err(|r| invalid("peers", format!("peer {id}: {r}")))?;
        }
        if self.join && self.bootstrap {
            return Err(invalid(
                "bootstrap",
                "`join` and `bootstrap` together: bootstrap starts a new cluster, join waits to be added to one; pick one",
            ));
        }
        if self.cluster_token.is_empty()
            || self.cluster_token.len() > limits::CLUSTER_TOKEN_BYTES_MAX
        {
            return Err(invalid(
                "cluster_token",
                format!("must be 1..={} bytes", limits::CLUSTER_TOKEN_BYTES_MAX),
            ));
        }
        self.expected_cluster_id()?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if let Some(a) = &self.http_addr {
            a.parse::<SocketAddr>()
                .map_err(|e| invalid("http_addr", format!("`{a}`: {e}")))?;
        }
        self.auth.validate()?;
        if self.tick_interval_ms == 0 || self.tick_interval_ms > 60_000 {
            return Err(invalid("tick_interval_ms", "must be in 1..=60000"));
        }
        if self.heartbeat_interval_ticks == 0 {
            return Err(invalid("heartbeat_interval_ticks", "must be positive"));
        }
        if self.election_timeout_ticks_min <= self.heartbeat_interval_ticks {
            return Err(invalid(
                "election_timeout_ticks_min",
                format!(
                    "{} must exceed heartbeat_interval_ticks ({})",
                    self.election_timeout_ticks_min, self.heartbeat_interval_ticks
                ),
            ));
        }
        if self.election_timeout_ticks_max <= self.election_timeout_ticks_min {
            return Err(invalid(
                "election_timeout_ticks_max",
                format!(
                    "{} must exceed election_timeout_ticks_min ({})",
                    self.election_timeout_ticks_max, self.election_timeout_ticks_min
                ),
            ));
        }
        if self.lease_read && !self.check_quorum {
            return Err(invalid("lease_read", "needs check_quorum = true"));
        }
        if self.snapshot_threshold_entries == 0 {
            return Err(invalid("snapshot_threshold_entries", "must be positive"));
        }
        let st = &self.storage;
        if st.file_size_max < 4096 || st.file_size_max > bitcask::limits::file_size_max {
            return Err(invalid(
                "storage.file_size_max",
                format!("must be in 4096..={}", bitcask::limits::file_size_max),
            ));
        }
        if st.merge_dead_percent > 100 {
            return Err(invalid("storage.merge_dead_percent", "must be in 0..=100"));
        }
        if !(limits::WAL_SEGMENT_SIZE_MIN..=wal::limits::SEGMENT_SIZE_MAX)
            .contains(&st.wal_segment_size_max)
        {
            return Err(invalid(
                "storage.wal_segment_size_max",
                format!(
                    "must be in {}..={}",
                    limits::WAL_SEGMENT_SIZE_MIN,
                    wal::limits::SEGMENT_SIZE_MAX
                ),
            ));
        }
        if st.merge_check_interval_ms == 0 {
            return Err(invalid(
                "storage.merge_check_interval_ms",
                "must be positive",
            ));
        }
        let l = &self.limits;
        if l.key_size_max == 0 || l.key_size_max > limits::KEY_SIZE_CAP {
            return Err(invalid(
                "limits.key_size_max",
                format!("must be in 1..={}", limits::KEY_SIZE_CAP),
            ));
        }
        if l.value_size_max > limits::VALUE_SIZE_CAP {
            return Err(invalid(
                "limits.value_size_max",
                format!("must be at most {}", limits::VALUE_SIZE_CAP),
            ));
        }
        if l.pending_proposals_max == 0 || l.pending_proposals_max > limits::PENDING_CAP {
            return Err(invalid(
                "limits.pending_proposals_max",
                format!("must be in 1..={}", limits::PENDING_CAP),
            ));
        }
        if l.pending_reads_max == 0 || l.pending_reads_max > limits::PENDING_CAP {
            return Err(invalid(
                "limits.pending_reads_max",
                format!("must be in 1..={}", limits::PENDING_CAP),
            ));
        }
        if l.scan_limit_max == 0 {
            return Err(invalid("limits.scan_limit_max", "must be positive"));
        }
        if l.grpc_message_size_max < l.key_size_max + l.value_size_max + 1024
            || l.grpc_message_size_max > limits::GRPC_MESSAGE_SIZE_CAP
        {
            return Err(invalid(
                "limits.grpc_message_size_max",
                format!(
                    "must hold a maximal key and value (+1 KiB) and be at most {}",
                    limits::GRPC_MESSAGE_SIZE_CAP
                ),
            ));
        }
        Ok(())
    }
}

/// How far the default peer port is from the client port.
pub const PEER_PORT_OFFSET: u16 = 200;

/// `addr` with its port + [`PEER_PORT_OFFSET`]; `None` if that overflows or
/// `addr` is not `host:port`.
pub fn default_peer_addr(addr: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?.checked_add(PEER_PORT_OFFSET)?;
    Some(format!("{host}:{port}"))
}

fn check_host_port(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("`{addr}` is not host:port"))?;
    if host.is_empty() {
        return Err(format!("`{addr}` has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("`{addr}` has no valid port"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_document_parses() {
        let c = Config::from_toml_str(
            r#"
            id = 2
            listen_addr = "127.0.0.1:7002"
            data_dir = "/tmp/x"
            tick_interval_ms = 50
            [peers]
            1 = "127.0.0.1:7001"
            2 = "127.0.0.1:7002"
            3 = "localhost:7003"
            [storage]
            merge_dead_percent = 30
            [limits]
            key_size_max = 100
            "#,
        )
        .unwrap();
        assert_eq!(c.id, 2);
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.tick_interval_ms, 50);
        assert_eq!(c.limits.key_size_max, 100);
        assert_eq!(c.storage.merge_dead_percent, 30);
        assert_eq!(c.storage.file_size_max, Storage::default().file_size_max);
        assert_eq!(c.limits.value_size_max, limits::VALUE_SIZE_MAX);
        assert_eq!(c.initial_voters(), vec![1, 2, 3]);
        assert_eq!(c.advertise_peer_addr(), "127.0.0.1:7002");
        assert_eq!(c.peer_listen(), "127.0.0.1:7202");
        assert_eq!(c.advertise_client(), "127.0.0.1:7002");
    }

    #[test]
    fn malformed_documents_name_the_field() {
        let e = Config::from_toml_str("id = \"one\"").unwrap_err();
        assert!(e.to_string().contains("id"), "{e}");
        let e = Config::from_toml_str("idd = 1").unwrap_err();
        assert!(e.to_string().contains("idd"), "{e}");
        let e = Config::from_toml_str("[peers]\nx = \"a:1\"").unwrap_err();
        assert!(e.to_string().contains("peers"), "{e}");
        let e = Config::from_toml_str("id = 0").unwrap_err();
        assert!(e.to_string().contains("`id`"), "{e}");
        let e = Config::from_toml_str("listen_addr = \"127.0.0.1:65400\"").unwrap_err();
        assert!(e.to_string().contains("peer_listen_addr"), "{e}");
        let e = Config::from_toml_str(
            "listen_addr = \"127.0.0.1:7001\"\npeer_listen_addr = \"127.0.0.1:7001\"",
        )
        .unwrap_err();
        assert!(e.to_string().contains("peer_listen_addr"), "{e}");
        let e = Config::from_toml_str("listen_addr = \"nowhere\"").unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let e = Config::from_toml_str("election_timeout_ticks_min = 1").unwrap_err();
        assert!(e.to_string().contains("election_timeout_ticks_min"), "{e}");
        let e = Config::from_toml_str("[peers]\n2 = \"nohost\"").unwrap_err();
        assert!(e.to_string().contains("peers"), "{e}");
        let e = Config::from_toml_str("lease_read = true\ncheck_quorum = false").unwrap_err();
        assert!(e.to_string().contains("lease_read"), "{e}");
        let e = Config::from_toml_str("[storage]\nmerge_dead_percent = 101").unwrap_err();
        assert!(e.to_string().contains("storage.merge_dead_percent"), "{e}");
        let e = Config::from_toml_str("[storage]\nfile_size_max = 10").unwrap_err();
        assert!(e.to_string().contains("storage.file_size_max"), "{e}");
    }

    #[test]
    fn drop_hook_counts_down() {
        let h = TestHooks::default();
        h.drop_write_replies.store(1, Ordering::SeqCst);
        assert!(h.take_drop_write_reply());
        assert!(!h.take_drop_write_reply());
    }

    #[test]
    fn bootstrap_and_join_together_and_bad_cluster_ids_are_refused() {
        let e = Config::from_toml_str("join = true\nbootstrap = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bootstrap") && e.contains("join"), "{e}");
        for bad in ["\"xyz\"", "\"0000000000000000\"", "\"12\""] {
            let e = Config::from_toml_str(&format!("cluster_id = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("cluster_id"), "{e}");
        }
        let c =
            Config::from_toml_str("cluster_id = \"00000000000000aB\"\nbootstrap = true\n").unwrap();
        assert_eq!(c.expected_cluster_id().unwrap(), Some(0xab));
        assert!(Config::from_toml_str("cluster_token = \"\"\n").is_err());
        assert!(
            !Config::default().bootstrap,
            "an empty data dir joins by default"
        );
    }
}
