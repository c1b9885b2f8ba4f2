//! `raftkv server`: one node, configured by flags and/or a TOML file (flags
//! win), stopped gracefully by SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use crate::exit::CliError;

#[derive(Debug, Args)]
#[command(after_long_help = server_help_reference())]
pub struct ServerArgs {
    /// A TOML config file (see the `server` crate docs for its fields);
    /// flags given too override it.
    #[arg(long, short = 'c', value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// This node's id (not 0).
    #[arg(long)]
    pub id: Option<u64>,
    /// The address to listen on for clients (`host:port`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The address the Raft service (peers only) listens on; default: the
    /// host of --listen with its port + 200.
    #[arg(long, value_name = "ADDR")]
    pub peer_listen: Option<String>,
    /// This node's client address as clients reach it, told to peers for
    /// leader hints and forwarding; default: --listen.
    #[arg(long, value_name = "ADDR")]
    pub advertise_client: Option<String>,
    /// A file holding the cluster secret (at least 16 bytes, mode 600) that
    /// peers authenticate with when there is no TLS.
    #[arg(long, value_name = "PATH")]
    pub cluster_secret_file: Option<PathBuf>,
    /// The initial voters: `ID=HOST:PORT` pairs of PEER addresses, comma
    /// separated (this node may be listed).
    #[arg(long, value_name = "ID=ADDR,...", value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Option<Vec<(u64, String)>>,
    /// Where this node keeps its log and state.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// On an empty data dir, start a new cluster of `{id} ∪ peers`
    /// (ignored when the data dir exists; refused if a peer already holds
    /// a cluster with a log). Without it an empty data dir joins.
    #[arg(long)]
    pub bootstrap: bool,
    /// With --bootstrap: the token the cluster id is made from (default
    /// `raftkv`), so that two clusters with the same node ids differ.
    #[arg(long, value_name = "TOKEN")]
    pub cluster_token: Option<String>,
    /// Refuse a data dir of another cluster than this one (16 hex digits,
    /// as `raftkv status` shows it).
    #[arg(long, value_name = "HEX")]
    pub cluster_id: Option<String>,
    /// Start empty and wait to be added to an existing cluster (the
    /// default without --bootstrap).
    #[arg(long)]
    pub join: bool,
    /// Milliseconds per Raft tick.
    #[arg(long, value_name = "MS")]
    pub tick_ms: Option<u64>,
    /// Smallest election timeout, in ticks.
    #[arg(long, value_name = "TICKS")]
    pub election_ticks_min: Option<u64>,
    /// Largest election timeout, in ticks (exclusive).
    #[arg(long, value_name = "TICKS")]
    pub election_ticks_max: Option<u64>,
    /// Heartbeat interval, in ticks.
    #[arg(long, value_name = "TICKS")]
    pub heartbeat_ticks: Option<u64>,
    /// Serve linearizable reads from the leader's lease (no heartbeat round
    /// per read); safe only while clocks run at the same rate. Off by default.
    #[arg(long)]
    pub lease_read: bool,
    /// Merge the state machine's files once dead records are this percentage
    /// of the record bytes (0: never; default 50).
    #[arg(long, value_name = "PERCENT")]
    pub merge_dead_percent: Option<u8>,
    /// ...and at least this many bytes are dead (default 64 MiB).
    #[arg(long, value_name = "BYTES")]
    pub merge_dead_bytes_min: Option<u64>,
    /// How often to look whether a merge is due, in ms (default 10000).
    #[arg(long, value_name = "MS")]
    pub merge_check_interval_ms: Option<u64>,
    /// Close a state-machine data file (making it mergeable) past this size
    /// (default 256 MiB).
    #[arg(long, value_name = "BYTES")]
    pub data_file_size_max: Option<u64>,
    /// WAL segment size, in bytes (default 64 MiB; each segment file is
    /// preallocated, up to two at once: lower it on small volumes).
    #[arg(long, value_name = "BYTES")]
    pub wal_segment_size: Option<u64>,
    /// Refuse writes (as leader) while the data dir's volume has less than
    /// this many bytes free (default: the WAL segment size; 0: never).
    #[arg(long, value_name = "BYTES")]
    pub disk_reserve_bytes: Option<u64>,
    /// Snapshot and compact the log every this many applied entries.
    #[arg(long, value_name = "ENTRIES")]
    pub snapshot_threshold: Option<u64>,
    /// Largest key, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub key_size_max: Option<usize>,
    /// Largest value, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub value_size_max: Option<usize>,
    /// Log level (or a `RUST_LOG`-style filter); `RUST_LOG` wins when set.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Write logs as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// Log format: `human` (default) or `json` (as --log-json).
    #[arg(long, value_parser = ["human", "json"], value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Serve /metrics and the web page on this address (`host:port`).
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<String>,
}

impl ServerArgs {
    /// Whether logs are JSON lines.
    pub fn json_logs(&self) -> bool {
        self.log_json || self.log_format.as_deref() == Some("json")
    }
}

pub fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not ID=HOST:PORT"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("`{id}` in `{s}` is not a node id"))?;
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(format!("`{s}` has no address"));
    }
    Ok((id, addr.to_string()))
}

impl ServerArgs {
    /// The config: the file's (or the defaults), then every flag given.
    pub fn to_config(&self) -> Result<server::Config, CliError> {
        let mut c = match &self.config {
            Some(path) => server::Config::from_toml_file(path)
                .map_err(|e| CliError::BadInput(e.to_string()))?,
            None => server::Config::default(),
        };
        if let Some(v) = self.id {
            c.id = v;
        }
        if let Some(v) = &self.listen {
            c.listen_addr = v.clone();
        }
        if let Some(v) = &self.peer_listen {
            c.peer_listen_addr = Some(v.clone());
        }
        if let Some(v) = &self.advertise_client {
            c.advertise_client_addr = Some(v.clone());
        }
        if let Some(v) = &self.cluster_secret_file {
            c.cluster_secret_file = Some(v.clone());
        }
        if let Some(peers) = &self.peers {
            c.peers = peers.iter().cloned().collect::<BTreeMap<u64, String>>();
        }
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if self.join {
            c.join = true;
        }
        if self.bootstrap {
            c.bootstrap = true;
        }
        if let Some(v) = &self.cluster_token {
            c.cluster_token = v.clone();
        }
        if let Some(v) = &self.cluster_id {
            c.cluster_id = Some(v.clone());
        }
        if let Some(v) = self.tick_ms {
            c.tick_interval_ms = v;
        }
        if let Some(v) = self.election_ticks_min {
            c.election_timeout_ticks_min = v;
        }
        if let Some(v) = self.election_ticks_max {
            c.election_timeout_ticks_max = v;
        }
        if let Some(v) = self.heartbeat_ticks {
            c.heartbeat_interval_ticks = v;
        }
        if self.lease_read {
            c.lease_read = true;
        }
        if let Some(v) = self.merge_dead_percent {
            c.storage.merge_dead_percent = v;
        }
        if let Some(v) = self.merge_dead_bytes_min {
            c.storage.merge_dead_bytes_min = v;
        }
        if let Some(v) = self.merge_check_interval_ms {
            c.storage.merge_check_interval_ms = v;
        }
        if let Some(v) = self.data_file_size_max {
            c.storage.file_size_max = v;
        }
        if let Some(v) = self.wal_segment_size {
            c.storage.wal_segment_size_max = v;
        }
        if let Some(v) = self.disk_reserve_bytes {
            c.storage.disk_reserve_bytes = Some(v);
        }
        if let Some(v) = self.snapshot_threshold {
            c.snapshot_threshold_entries = v;
        }
        if let Some(v) = self.key_size_max {
            c.limits.key_size_max = v;
        }
        if let Some(v) = self.value_size_max {
            c.limits.value_size_max = v;
        }
        if let Some(v) = &self.http_addr {
            c.http_addr = Some(v.clone());
        }
        c.validate()
            .map_err(|e| CliError::BadInput(e.to_string()))?;
        Ok(c)
    }
}

/// Completes on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            // Signal handlers could not be installed: fall back to Ctrl-C.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The TOML reference, after the flags in `raftkv server --help`.
fn server_help_reference() -> String {
    format!(
        "Every setting, in the TOML file given with --config (flags override it):\n\n{}",
        server::config_file::REFERENCE
    )
}

pub async fn run(args: ServerArgs) -> Result<(), CliError> {
    let config = args.to_config()?;
    server::config_file::check_named_files(&config)
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    tracing::info!(
        id = config.id,
        listen = %config.listen_addr,
        peer_listen = %config.peer_listen(),
        data_dir = %config.data_dir.display(),
        "starting node"
    );
    server::run(config, shutdown_signal()).await?;
    tracing::info!("node stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(a: &[&str]) -> ServerArgs {
        match crate::Cli::try_parse_from(["raftkv", "server"].iter().chain(a.iter())) {
            Ok(crate::Cli {
                command: crate::Command::Server(s),
            }) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let dir = match dir {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let path = dir.path().join("node.toml");
        let toml = "id = 2\nlisten_addr = \"127.0.0.1:7102\"\ntick_interval_ms = 50\n[peers]\n1 = \"127.0.0.1:7101\"\n";
        if let Err(e) = std::fs::write(&path, toml) {
            panic!("{e}");
        }
        let p = path.to_string_lossy().to_string();
        let c = args(&["--config", &p, "--tick-ms", "20", "--data-dir", "/tmp/x"]).to_config();
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.id, 2);
        assert_eq!(c.listen_addr, "127.0.0.1:7102");
        assert_eq!(c.tick_interval_ms, 20);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.peers.get(&1).map(String::as_str), Some("127.0.0.1:7101"));
    }

    #[test]
    fn peers_flag_parses_pairs() {
        let c = args(&["--id", "1", "--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002"]).to_config();
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.peers.len(), 2);
        assert!(!c.lease_read);
        let c = args(&["--id", "1", "--lease-read", "--merge-dead-percent", "30"]).to_config();
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert!(c.lease_read);
        assert_eq!(c.storage.merge_dead_percent, 30);
        let e = args(&["--id", "1", "--merge-dead-percent", "101"]).to_config();
        assert!(e.is_err(), "101 % accepted");
        let c = args(&[
            "--id",
            "1",
            "--merge-dead-bytes-min",
            "1000",
            "--merge-check-interval-ms",
            "500",
            "--data-file-size-max",
            "1048576",
        ])
        .to_config();
        let st = match c {
            Ok(c) => c.storage,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            (
                st.merge_dead_bytes_min,
                st.merge_check_interval_ms,
                st.file_size_max
            ),
            (1000, 500, 1_048_576)
        );
        let c = args(&["--id", "1", "--wal-segment-size", "4194304"]).to_config();
        assert_eq!(
            c.map(|c| c.storage.wal_segment_size_max).ok(),
            Some(4_194_304)
        );
        for bad in [
            ["--merge-check-interval-ms", "0"],
            ["--data-file-size-max", "10"],
            ["--wal-segment-size", "4096"],
        ] {
            let e = args(&["--id", "1", bad[0], bad[1]]).to_config();
            assert!(e.is_err(), "{bad:?} accepted");
        }
        assert!(crate::Cli::try_parse_from(["raftkv", "server", "--peers", "x=h:1"]).is_err());
        assert!(crate::Cli::try_parse_from(["raftkv", "server", "--peers", "1"]).is_err());
    }

    #[test]
    fn a_malformed_config_is_a_clear_bad_input_error() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let path = dir.path().join("bad.toml");
        if let Err(e) = std::fs::write(&path, "id = \"one\"\n") {
            panic!("{e}");
        }
        let p = path.to_string_lossy().to_string();
        let e = match args(&["--config", &p]).to_config() {
            Ok(_) => panic!("accepted a malformed config"),
            Err(e) => e,
        };
        assert_eq!(e.code(), crate::exit::BAD_INPUT);
        assert!(e.to_string().contains("id"), "{e}");
        let e = match args(&["--id", "0"]).to_config() {
            Ok(_) => panic!("accepted id 0"),
            Err(e) => e,
        };
        assert!(e.to_string().contains("id"), "{e}");
        let missing = dir
            .path()
            .join("missing.toml")
            .to_string_lossy()
            .to_string();
        assert!(args(&["--config", &missing]).to_config().is_err());
    }
}
