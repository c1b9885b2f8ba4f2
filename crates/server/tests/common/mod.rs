//! In-process clusters for the server's integration tests: every node is a
//! `server::run_with_listeners` task on 127.0.0.1 (a client and a peer
//! listener) with its own temp data dir, and clients talk to them over real
//! gRPC.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proto::kv::cluster_client::ClusterClient;
use proto::kv::kv_client::KvClient;
use proto::kv::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use server::security::TlsConfig;
use server::{Config, ServerError};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

pub const TICK_MS: u64 = 20;

/// One running node.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// Client addresses.
    pub addrs: BTreeMap<u64, String>,
    /// Peer addresses (the Raft service).
    pub peer_addrs: BTreeMap<u64, String>,
    pub configs: BTreeMap<u64, Config>,
    pub running: BTreeMap<u64, Running>,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A free address on 127.0.0.1 that stays free while its node is down
/// (see [`testkit`]).
pub async fn free_addr() -> String {
    testkit::free_addr()
}

/// A node's config: client address `addr`, `peers` the initial voters'
/// PEER addresses; the node's own peer address is `peers[id]`, or a fresh
/// free one.
pub fn node_config(
    id: u64,
    addr: &str,
    peers: &BTreeMap<u64, String>,
    dir: &std::path::Path,
) -> Config {
    let peer = peers.get(&id).cloned().unwrap_or_else(testkit::free_addr);
    Config {
        id,
        listen_addr: addr.to_string(),
        peer_listen_addr: Some(peer),
        peers: peers.clone(),
        data_dir: dir.join(format!("n{id}")),
        tick_interval_ms: TICK_MS,
        election_timeout_ticks_min: 10,
        election_timeout_ticks_max: 20,
        heartbeat_interval_ticks: 2,
        // The first start makes the cluster; restarts ignore it.
        bootstrap: true,
        ..Config::default()
    }
}

impl Cluster {
    /// Starts `n` voters (ids 1..=n).
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, |_| {}).await
    }

    /// Starts `n` voters (ids 1..=n), each config changed by `tweak`.
    pub async fn start_with(n: u64, tweak: impl Fn(&mut Config)) -> Cluster {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let mut addrs = BTreeMap::new();
        let mut peer_addrs = BTreeMap::new();
        for id in 1..=n {
            addrs.insert(id, free_addr().await);
            peer_addrs.insert(id, free_addr().await);
        }
        let mut c = Cluster {
            dir,
            addrs: addrs.clone(),
            peer_addrs: peer_addrs.clone(),
            configs: BTreeMap::new(),
            running: BTreeMap::new(),
        };
        for id in 1..=n {
            let mut cfg = node_config(id, &addrs[&id], &peer_addrs, c.dir.path());
            tweak(&mut cfg);
            c.configs.insert(id, cfg);
            c.start_node(id).await;
        }
        c
    }

    /// Starts (or restarts) node `id` from its config.
    pub async fn start_node(&mut self, id: u64) {
        let cfg = self.configs[&id].clone();
        let listener = bind_retry(&cfg.listen_addr).await;
        let peer_listener = bind_retry(&cfg.peer_listen()).await;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run_with_listeners(
            cfg,
            listener,
            peer_listener,
            async move {
                let _ = rx.await;
            },
        ));
        self.running.insert(id, Running { stop: tx, task });
    }

    /// Restarts node `id` with its socket bound at once but serving only
    /// after `delay` (as a process still opening its data would).
    pub async fn start_node_after(&mut self, id: u64, delay: Duration) {
        let cfg = self.configs[&id].clone();
        let listener = bind_retry(&cfg.listen_addr).await;
        let peer_listener = bind_retry(&cfg.peer_listen()).await;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            server::run_with_listeners(cfg, listener, peer_listener, async move {
                let _ = rx.await;
            })
            .await
        });
        self.running.insert(id, Running { stop: tx, task });
    }

    /// Adds a node that joins (empty, waits to be added) and starts it;
    /// returns its PEER address (what `add_learner` takes).
    pub async fn start_joining(&mut self, id: u64) -> String {
        self.start_joining_with(id, |_| {}).await
    }

    /// As [`Cluster::start_joining`], the config changed by `tweak`.
    pub async fn start_joining_with(&mut self, id: u64, tweak: impl Fn(&mut Config)) -> String {
        let addr = free_addr().await;
        let peer = free_addr().await;
        self.addrs.insert(id, addr.clone());
        self.peer_addrs.insert(id, peer.clone());
        let mut cfg = node_config(
            id,
            &addr,
            &BTreeMap::from([(id, peer.clone())]),
            self.dir.path(),
        );
        cfg.peers.clear();
        cfg.join = true;
        cfg.bootstrap = false;
        tweak(&mut cfg);
        self.configs.insert(id, cfg);
        self.start_node(id).await;
        peer
    }

    /// Runs node `id` from its config and expects it to refuse to start:
    /// returns the error (panics if it is still running after 10 s).
    pub async fn start_refused(&mut self, id: u64) -> ServerError {
        let cfg = self.configs[&id].clone();
        let listener = bind_retry(&cfg.listen_addr).await;
        let peer_listener = bind_retry(&cfg.peer_listen()).await;
        let run = server::run_with_listeners(cfg, listener, peer_listener, std::future::pending());
        match tokio::time::timeout(Duration::from_secs(10), run).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => panic!("node {id} started and stopped"),
            Err(_) => panic!("node {id} started (still running after 10 s)"),
        }
    }

    /// The state digest of every node's state machine, read from the data
    /// dirs (stop the nodes first).
    pub fn digests(&self) -> BTreeMap<u64, kv::StateDigest> {
        self.configs
            .iter()
            .map(|(id, cfg)| {
                let engine = bitcask::Bitcask::open(cfg.data_dir.join("kv"), Default::default())
                    .expect("open the state machine's engine");
                let sm = kv::StateMachine::open(std::sync::Arc::new(engine)).expect("open kv");
                (*id, sm.digest().expect("digest"))
            })
            .collect()
    }

    /// Stops node `id` gracefully and waits for it; returns its result.
    pub async fn stop_node(&mut self, id: u64) -> Result<(), ServerError> {
        let r = self.running.remove(&id).expect("node running");
        let _ = r.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), r.task)
            .await
            .expect("node stops within 15 s")
            .expect("node task did not panic")
    }

    pub async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        for id in ids {
            self.stop_node(id).await.unwrap();
        }
    }

    pub async fn kv(&self, id: u64) -> KvClient<Channel> {
        KvClient::new(channel(&self.addrs[&id]).await)
    }

    pub async fn cluster(&self, id: u64) -> ClusterClient<Channel> {
        ClusterClient::new(channel(&self.addrs[&id]).await)
    }

    /// Waits until the running nodes agree on a leader; returns it.
    pub async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut seen = BTreeMap::new();
            for &id in self.running.keys() {
                if let Ok(mut c) = try_cluster(&self.addrs[&id]).await {
                    if let Ok(s) = c.status(StatusRequest {}).await {
                        let s = s.into_inner();
                        if s.role == Role::Leader as i32 {
                            *seen.entry(s.id).or_insert(0) += 1;
                        }
                    }
                }
            }
            if seen.len() == 1 {
                return *seen.keys().next().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no single leader within 15 s: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the leader is known to each of `ids` (they have heard
    /// from it); returns it.
    pub async fn leader_known_by(&self, ids: &[u64]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let l = self.leader().await;
            let mut known = true;
            for &id in ids {
                known &= self.status(id).await.leader_id == l;
            }
            if known {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "nodes {ids:?} did not learn of leader {l} within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn status(&self, id: u64) -> StatusResponse {
        self.cluster(id)
            .await
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }
}

async fn bind_retry(addr: &str) -> tokio::net::TcpListener {
    for _ in 0..100 {
        if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr}");
}

pub async fn try_channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
}

pub async fn channel(addr: &str) -> Channel {
    for _ in 0..100 {
        if let Ok(c) = try_channel(addr).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to {addr}");
}

async fn try_cluster(addr: &str) -> Result<ClusterClient<Channel>, tonic::transport::Error> {
    Ok(ClusterClient::new(try_channel(addr).await?))
}

/// The leader hint of an `Unavailable` status: (id, addr).
pub fn leader_hint(st: &tonic::Status) -> Option<(u64, String)> {
    let id = st
        .metadata()
        .get(LEADER_ID_METADATA)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let addr = st
        .metadata()
        .get(LEADER_ADDR_METADATA)?
        .to_str()
        .ok()?
        .to_string();
    Some((id, addr))
}

/// Runs `op` against node `start`, following leader hints and retrying
/// `Unavailable` for up to 20 s. Returns the answer and the node that gave it.
pub async fn with_leader<T, F, Fut>(c: &Cluster, start: u64, mut op: F) -> Result<T, tonic::Status>
where
    F: FnMut(KvClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut target = c.addrs[&start].clone();
    loop {
        let r = match try_channel(&target).await {
            Ok(ch) => op(KvClient::new(ch)).await,
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        };
        match r {
            Ok(r) => return Ok(r.into_inner()),
            Err(st) if st.code() == Code::Unavailable && Instant::now() < deadline => {
                if let Some((_, addr)) = leader_hint(&st) {
                    target = addr;
                } else {
                    // Try another running node.
                    let ids: Vec<&u64> = c.running.keys().collect();
                    let i = (Instant::now().elapsed().subsec_nanos() as usize + ids.len())
                        % ids.len().max(1);
                    target = c.addrs[ids[i]].clone();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(st) => return Err(st),
        }
    }
}

pub async fn put(c: &Cluster, via: u64, key: &str, value: &str) -> PutResponse {
    let (k, v) = (key.as_bytes().to_vec(), value.as_bytes().to_vec());
    with_leader(c, via, |mut kv| {
        let req = PutRequest {
            key: k.clone().into(),
            value: v.clone().into(),
            ..Default::default()
        };
        async move { kv.put(req).await }
    })
    .await
    .unwrap_or_else(|e| panic!("put {key}: {e}"))
}

pub async fn get(c: &Cluster, via: u64, key: &str) -> Option<Vec<u8>> {
    let k = key.as_bytes().to_vec();
    with_leader(c, via, |mut kv| {
        let req = GetRequest {
            key: k.clone().into(),
            serializable: false,
        };
        async move { kv.get(req).await }
    })
    .await
    .unwrap_or_else(|e| panic!("get {key}: {e}"))
    .kv
    .map(|kv| kv.value.to_vec())
}

pub async fn register(c: &Cluster, via: u64) -> u64 {
    with_leader(c, via, |mut kv| async move {
        kv.register_session(RegisterSessionRequest {}).await
    })
    .await
    .unwrap()
    .client_id
}

/// Appends with a session; retries (same client id and seq) on Unavailable.
pub async fn append(
    c: &Cluster,
    via: u64,
    key: &str,
    value: &str,
    client_id: u64,
    seq: u64,
) -> AppendResponse {
    let (k, v) = (key.as_bytes().to_vec(), value.as_bytes().to_vec());
    with_leader(c, via, |mut kv| {
        let req = AppendRequest {
            key: k.clone().into(),
            value: v.clone().into(),
            client_id,
            seq,
        };
        async move { kv.append(req).await }
    })
    .await
    .unwrap_or_else(|e| panic!("append {key}: {e}"))
}

/// A serializable (local) read on node `id`.
pub async fn get_local(c: &Cluster, id: u64, key: &str) -> Option<Vec<u8>> {
    c.kv(id)
        .await
        .get(GetRequest {
            key: key.as_bytes().to_vec().into(),
            serializable: true,
        })
        .await
        .unwrap()
        .into_inner()
        .kv
        .map(|kv| kv.value.to_vec())
}

/// Waits until node `id` applied at least `index`.
pub async fn wait_applied(c: &Cluster, id: u64, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c.status(id).await;
        if s.applied_index >= index {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} stuck at applied {} < {index}",
            s.applied_index
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A CA: its PEM and an issuer for leaf certificates.
pub struct Ca {
    pub pem: String,
    pub issuer: Issuer<'static, KeyPair>,
}

pub fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

/// A leaf certificate for 127.0.0.1: (cert, key). With `node`, a node
/// certificate as `raftkv certs` writes it (URI SAN `raftkv://node/<id>`,
/// DNS SAN `node-<id>.raftkv`, server and client auth); without, a client
/// certificate (client auth only, no node name).
pub fn leaf(ca: &Ca, name: &str, node: Option<u64>) -> (String, String) {
    let mut sans = vec!["127.0.0.1".to_string(), "localhost".into()];
    if let Some(id) = node {
        sans.push(format!("node-{id}.raftkv"));
    }
    let mut p = CertificateParams::new(sans).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    match node {
        Some(id) => {
            p.subject_alt_names.push(rcgen::SanType::URI(
                format!("raftkv://node/{id}").try_into().unwrap(),
            ));
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
        }
        None => p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

pub fn write_tls(
    dir: &Path,
    name: &str,
    ca_pem: &str,
    (cert, key): &(String, String),
) -> TlsConfig {
    let t = TlsConfig {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&t.ca, ca_pem).unwrap();
    std::fs::write(&t.cert, cert).unwrap();
    std::fs::write(&t.key, key).unwrap();
    t
}

pub async fn tls_channel(addr: &str, ca_pem: &str, identity: Option<&(String, String)>) -> Channel {
    tls_channel_named(addr, ca_pem, identity, "").await
}

/// As [`tls_channel`], expecting the server certificate to name `name`
/// (the host of `addr` if empty).
pub async fn tls_channel_named(
    addr: &str,
    ca_pem: &str,
    identity: Option<&(String, String)>,
    name: &str,
) -> Channel {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if !name.is_empty() {
        tls = tls.domain_name(name);
    }
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// A GET over plain HTTP/1.1; returns (status code, body).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("HTTP answer within 10 s")
        .unwrap();
    let text = String::from_utf8(buf).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// One sample: metric name, labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

/// A small parser of the Prometheus text format (0.0.4): comments,
/// `# HELP`/`# TYPE` lines and samples `name{l="v",...} value`. Panics on
/// anything else, so a malformed exposition fails the test.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            if let Some(t) = rest.strip_prefix("TYPE ") {
                let kind = t.split_whitespace().nth(1).expect("TYPE has a kind");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "line {n}: unknown type {kind}"
                );
            }
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        assert!(
            !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()),
            "line {n}: bad metric name in {line:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let close = r
                .find('}')
                .unwrap_or_else(|| panic!("line {n}: unclosed labels"));
            for pair in r[..close].split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {n}: bad label {pair:?}"));
                assert!(
                    v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                    "line {n}: label value not quoted: {pair:?}"
                );
                labels.insert(k.to_string(), v[1..v.len() - 1].to_string());
            }
            rest = &r[close + 1..];
        }
        let value_text = rest.split_whitespace().next().expect("a value");
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("line {n}: bad value {v:?}")),
        };
        out.push((name.to_string(), labels, value));
    }
    out
}

/// Sum of the samples named `name` whose labels include all of `want`.
pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}
