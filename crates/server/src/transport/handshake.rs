//! The peer handshake: who is calling, for whom, in which cluster, and
//! the proof that it may.
//!
//! # On the wire
//!
//! Every `Raft.Send` and `Raft.InstallSnapshot` call carries gRPC metadata:
//!
//! | key | value |
//! |---|---|
//! | `raftkv-cluster-id` | the sender's cluster id, 16 hex digits (0: not known yet) |
//! | `raftkv-from` / `raftkv-to` | sender and receiver node ids, decimal |
//! | `raftkv-incarnation` | the sender's data dir incarnation, 16 hex digits |
//! | `raftkv-client-addr` | the sender's client address (`advertise_client_addr`) |
//! | `raftkv-from-addr` | the sender's peer address |
//! | `raftkv-peer-auth` | with a cluster secret: HMAC-SHA256 (hex) of [`Hello::canonical`] |
//!
//! # Checks by the receiver, in order
//!
//! 1. every field present and well-formed, `to` is this node: else
//!    `wrong-node` (`bad-auth` when the handshake is missing altogether);
//! 2. the cluster secret: configured here and the MAC verifies (constant
//!    time), or configured on neither side: else `bad-auth`;
//! 3. with TLS: the caller's certificate (required on the peer listener,
//!    signed by the cluster CA) names `raftkv://node/<from>` in a URI SAN:
//!    else `wrong-node` (a client certificate names no node);
//! 4. the cluster id: equal, or ours is 0 (a joining node: it adopts the
//!    caller's, durably, after the checks above passed): else
//!    `cluster-mismatch` (a caller with 0 is refused by a node that knows
//!    its cluster);
//! 5. the caller is a member of this node's configuration (voters and
//!    learners), unless this node has none yet: else `not-member`.
//!
//! A refusal is a gRPC `PERMISSION_DENIED` (`UNAUTHENTICATED` for
//! `bad-auth`) whose metadata `raftkv-refusal` names the reason; the
//! receiver counts it (`raftkv_peer_refused_total{reason}`) and logs it
//! (rate-limited). The sender logs it at ERROR (at most once per peer and
//! reason every [`REFUSAL_LOG_SPACING_MS`]), counts it
//! (`raftkv_peer_refused_by_total{reason}`), tells the driver
//! ([`super::PeerEvent::RefusedUs`]) and backs off.
//!
//! After the handshake, every message on the call must carry `from` equal
//! to the handshake's and `to` equal to this node: others are dropped and
//! counted (`raftkv_peer_messages_dropped_total{reason}`).
//!
//! # Outgoing TLS
//!
//! With TLS the sender dials with the server name `node-<to>.raftkv`,
//! which `raftkv certs` writes into each node certificate as a DNS SAN
//! beside `raftkv://node/<id>`: the ordinary server-certificate check then
//! proves that the node answering is the node dialled (and a client
//! certificate, whose key usage is client authentication only, cannot
//! serve at all).
//!
//! # What the secret does not do
//!
//! The MAC proves that the caller knows the secret; it does not encrypt,
//! and it does not cover the messages. Someone who can read the network can
//! replay a handshake and send messages on it: on untrusted networks use
//! TLS.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::hmac;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::Status;

use crate::error::ServerError;
use crate::identity::Identity;

pub const CLUSTER_ID: &str = "raftkv-cluster-id";
pub const FROM: &str = "raftkv-from";
pub const TO: &str = "raftkv-to";
pub const INCARNATION: &str = "raftkv-incarnation";
pub const CLIENT_ADDR: &str = "raftkv-client-addr";
pub const FROM_ADDR: &str = "raftkv-from-addr";
pub const PEER_AUTH: &str = "raftkv-peer-auth";
pub const REFUSAL: &str = "raftkv-refusal";

/// The shortest cluster secret accepted, in bytes.
pub const SECRET_SIZE_MIN: usize = 16;
/// The longest cluster secret file read, in bytes.
pub const SECRET_SIZE_MAX: usize = 4096;
/// A refusal is logged at most this often per peer and reason.
pub const REFUSAL_LOG_SPACING_MS: u64 = 10_000;

/// Why a handshake was refused (the `raftkv-refusal` value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    ClusterMismatch,
    WrongNode,
    BadAuth,
    NotMember,
    IdentityMismatch,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::ClusterMismatch => "cluster-mismatch",
            Refusal::WrongNode => "wrong-node",
            Refusal::BadAuth => "bad-auth",
            Refusal::NotMember => "not-member",
            Refusal::IdentityMismatch => "identity-mismatch",
        }
    }

    pub fn parse(s: &str) -> Option<Refusal> {
        [
            Refusal::ClusterMismatch,
            Refusal::WrongNode,
            Refusal::BadAuth,
            Refusal::NotMember,
            Refusal::IdentityMismatch,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// The gRPC error answering a refused handshake.
    pub fn status(self, detail: &str) -> Status {
        let msg = format!("peer handshake refused ({}): {detail}", self.as_str());
        let mut st = match self {
            Refusal::BadAuth => Status::unauthenticated(msg),
            _ => Status::permission_denied(msg),
        };
        st.metadata_mut()
            .insert(REFUSAL, MetadataValue::from_static(self.as_str()));
        st
    }

    /// The refusal a gRPC error carries, if it is one.
    pub fn of(st: &Status) -> Option<Refusal> {
        Refusal::parse(st.metadata().get(REFUSAL)?.to_str().ok()?)
    }
}

/// A refused handshake: why, and a line for the logs.
#[derive(Debug)]
pub struct Refused {
    pub reason: Refusal,
    pub detail: String,
    /// The caller's claimed id, if it said.
    pub from: Option<u64>,
}

fn refused(reason: Refusal, from: Option<u64>, detail: impl Into<String>) -> Refused {
    Refused {
        reason,
        detail: detail.into(),
        from,
    }
}

/// A parsed handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub cluster_id: u64,
    pub from: u64,
    pub to: u64,
    pub incarnation: u64,
    pub client_addr: String,
    pub peer_addr: String,
}

impl Hello {
    /// The string the MAC covers: a version tag and every field, one per
    /// line (addresses cannot hold a newline: they are header values).
    pub fn canonical(&self) -> String {
        format!(
            "raftkv-peer-auth-v1\n{:016x}\n{}\n{}\n{:016x}\n{}\n{}",
            self.cluster_id, self.from, self.to, self.incarnation, self.client_addr, self.peer_addr
        )
    }
}

/// The cluster secret, as an HMAC-SHA256 key.
pub struct Secret {
    key: hmac::Key,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn new(bytes: &[u8]) -> Secret {
        Secret {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// Reads a secret file: one secret of at least [`SECRET_SIZE_MIN`]
    /// bytes; one trailing newline (`\n` or `\r\n`) is ignored. A file
    /// that its group or others may read is refused (Unix).
    ///
    /// # Errors
    /// [`ServerError::Secret`] naming the file and the fix.
    pub fn load(path: &Path) -> Result<Secret, ServerError> {
        let bad = |reason: String| ServerError::Secret {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| ServerError::io(path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "mode {:03o} lets others read it; run `chmod 600 {}`",
                    mode & 0o777,
                    path.display()
                )));
            }
        }
        if meta.len() > SECRET_SIZE_MAX as u64 {
            return Err(bad(format!("larger than {SECRET_SIZE_MAX} bytes")));
        }
        let mut bytes = std::fs::read(path).map_err(|e| ServerError::io(path, e))?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.len() < SECRET_SIZE_MIN {
            return Err(bad(format!(
                "the secret has {} bytes, at least {SECRET_SIZE_MIN} are needed \
                 (e.g. `head -c 32 /dev/urandom | base64 > {}`)",
                bytes.len(),
                path.display()
            )));
        }
        Ok(Secret::new(&bytes))
    }

    fn sign(&self, hello: &Hello) -> String {
        hex(hmac::sign(&self.key, hello.canonical().as_bytes()).as_ref())
    }

    fn verify(&self, hello: &Hello, mac_hex: &str) -> bool {
        match unhex(mac_hex) {
            Some(tag) => hmac::verify(&self.key, hello.canonical().as_bytes(), &tag).is_ok(),
            None => false,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// How peers authenticate, as `status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAuth {
    None,
    Secret,
    Tls,
}

impl PeerAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerAuth::None => "none",
            PeerAuth::Secret => "secret",
            PeerAuth::Tls => "tls",
        }
    }
}

/// This node's side of the handshake, shared by the sending and the
/// receiving halves of the transport.
pub struct Local {
    pub id: u64,
    pub incarnation: u64,
    cluster_id: AtomicU64,
    /// The identity, for a durable adoption of the cluster id.
    identity: Mutex<Identity>,
    data_dir: PathBuf,
    pub client_addr: String,
    pub peer_addr: String,
    secret: Option<Secret>,
    tls: bool,
    /// When each (peer, reason) refusal was last logged.
    logged: Mutex<HashMap<(u64, Refusal), Instant>>,
}

impl Local {
    pub fn new(
        identity: Identity,
        data_dir: PathBuf,
        client_addr: String,
        peer_addr: String,
        secret: Option<Secret>,
        tls: bool,
    ) -> Local {
        Local {
            id: identity.node_id,
            incarnation: identity.incarnation,
            cluster_id: AtomicU64::new(identity.cluster_id),
            identity: Mutex::new(identity),
            data_dir,
            client_addr,
            peer_addr,
            secret,
            tls,
            logged: Mutex::new(HashMap::new()),
        }
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::SeqCst)
    }

    /// How peers authenticate here (TLS wins over a secret for `status`;
    /// both apply when both are set).
    pub fn peer_auth(&self) -> PeerAuth {
        if self.tls {
            PeerAuth::Tls
        } else if self.secret.is_some() {
            PeerAuth::Secret
        } else {
            PeerAuth::None
        }
    }

    /// This node's handshake to `to`.
    pub fn hello(&self, to: u64) -> Hello {
        Hello {
            cluster_id: self.cluster_id(),
            from: self.id,
            to,
            incarnation: self.incarnation,
            client_addr: self.client_addr.clone(),
            peer_addr: self.peer_addr.clone(),
        }
    }

    /// Adds the handshake to `to` to an outgoing call.
    pub fn stamp<T>(&self, to: u64, req: &mut tonic::Request<T>) {
        let h = self.hello(to);
        let mac = self.secret.as_ref().map(|s| s.sign(&h));
        let m = req.metadata_mut();
        let mut put = |k: &'static str, v: String| {
            if let Ok(v) = MetadataValue::try_from(v) {
                m.insert(k, v);
            }
        };
        put(CLUSTER_ID, format!("{:016x}", h.cluster_id));
        put(FROM, h.from.to_string());
        put(TO, h.to.to_string());
        put(INCARNATION, format!("{:016x}", h.incarnation));
        put(CLIENT_ADDR, h.client_addr);
        put(FROM_ADDR, h.peer_addr);
        if let Some(mac) = mac {
            put(PEER_AUTH, mac);
        }
    }

    /// Checks an incoming handshake (see the module docs); `certs` are the
    /// caller's TLS certificates, `members` this node's configuration
    /// (`None`: it has none yet). On success the caller's cluster id has
    /// been adopted if this node had none.
    ///
    /// # Errors
    /// The refusal to answer with.
    pub fn check(
        &self,
        meta: &MetadataMap,
        certs: Option<&[tonic::transport::CertificateDer<'static>]>,
        members: Option<&BTreeSet<u64>>,
    ) -> Result<Hello, Refused> {
        let get = |k: &str| meta.get(k).and_then(|v| v.to_str().ok());
        if get(FROM).is_none() && get(CLUSTER_ID).is_none() {
            return Err(refused(
                Refusal::BadAuth,
                None,
                "no handshake (raftkv-from, raftkv-cluster-id ...): an older or foreign sender",
            ));
        }
        let from = get(FROM).and_then(|s| s.parse::<u64>().ok());
        let field = |k: &str| -> Result<&str, Refused> {
            get(k).ok_or_else(|| refused(Refusal::WrongNode, from, format!("`{k}` missing")))
        };
        let hex16 = |k: &str| -> Result<u64, Refused> {
            let s = field(k)?;
            if s.len() != 16 {
                return Err(refused(
                    Refusal::WrongNode,
                    from,
                    format!("`{k}` not 16 hex digits"),
                ));
            }
            u64::from_str_radix(s, 16)
                .map_err(|_| refused(Refusal::WrongNode, from, format!("`{k}` not 16 hex digits")))
        };
        let dec = |k: &str| -> Result<u64, Refused> {
            field(k)?
                .parse::<u64>()
                .map_err(|_| refused(Refusal::WrongNode, from, format!("`{k}` is not a node id")))
        };
        let hello = Hello {
            cluster_id: hex16(CLUSTER_ID)?,
            from: dec(FROM)?,
            to: dec(TO)?,
            incarnation: hex16(INCARNATION)?,
            client_addr: field(CLIENT_ADDR)?.to_string(),
            peer_addr: field(FROM_ADDR)?.to_string(),
        };
        let from = Some(hello.from);
        if hello.from == 0 || hello.from == self.id {
            return Err(refused(
                Refusal::WrongNode,
                from,
                format!("the caller claims node id {}", hello.from),
            ));
        }
        if !host_port(&hello.client_addr) || !host_port(&hello.peer_addr) {
            return Err(refused(Refusal::WrongNode, from, "malformed addresses"));
        }
        if hello.to != self.id {
            return Err(refused(
                Refusal::WrongNode,
                from,
                format!("addressed to node {}, this is node {}", hello.to, self.id),
            ));
        }
        match (&self.secret, get(PEER_AUTH)) {
            (Some(s), Some(mac)) => {
                if !s.verify(&hello, mac) {
                    return Err(refused(
                        Refusal::BadAuth,
                        from,
                        "the cluster secret does not match",
                    ));
                }
            }
            (Some(_), None) => {
                return Err(refused(
                    Refusal::BadAuth,
                    from,
                    "this node needs the cluster secret; the caller sent none",
                ))
            }
            (None, Some(_)) => {
                return Err(refused(
                    Refusal::BadAuth,
                    from,
                    "the caller sent a cluster secret; this node has none configured",
                ))
            }
            (None, None) => {}
        }
        if self.tls {
            let names = certs
                .and_then(|c| c.first())
                .map(|c| crate::security::node_ids_of(c.as_ref()))
                .unwrap_or_default();
            if !names.contains(&hello.from) {
                return Err(refused(
                    Refusal::WrongNode,
                    from,
                    format!(
                        "the caller's certificate does not name node {} (raftkv://node/{}); \
                         it names {names:?}",
                        hello.from, hello.from
                    ),
                ));
            }
        }
        let ours = self.cluster_id();
        if ours == 0 && hello.cluster_id != 0 {
            self.adopt(hello.cluster_id, hello.from)
                .map_err(|e| refused(Refusal::ClusterMismatch, from, e.to_string()))?;
        } else if hello.cluster_id != ours {
            return Err(refused(
                Refusal::ClusterMismatch,
                from,
                format!(
                    "the caller is in cluster {:016x}, this node in {ours:016x}",
                    hello.cluster_id
                ),
            ));
        }
        if let Some(m) = members {
            if !m.contains(&hello.from) {
                return Err(refused(
                    Refusal::NotMember,
                    from,
                    format!("node {} is not a member of {m:?}", hello.from),
                ));
            }
        }
        Ok(hello)
    }

    fn adopt(&self, cluster_id: u64, from: u64) -> Result<(), ServerError> {
        let mut id = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        if id.cluster_id == 0 {
            id.adopt_cluster_id(&self.data_dir, cluster_id)?;
            self.cluster_id.store(cluster_id, Ordering::SeqCst);
            tracing::info!(node = self.id, cluster_id = %crate::identity::hex(cluster_id), from,
                "joined cluster: adopted its id from the first authenticated peer");
        } else if id.cluster_id != cluster_id {
            return Err(ServerError::Identity {
                path: Identity::path(&self.data_dir),
                reason: format!(
                    "adopted cluster {} meanwhile, not {}",
                    crate::identity::hex(id.cluster_id),
                    crate::identity::hex(cluster_id)
                ),
            });
        }
        Ok(())
    }

    /// Whether a refusal about `peer` is due for the log (at most once per
    /// peer and reason every [`REFUSAL_LOG_SPACING_MS`]).
    pub fn log_due(&self, peer: u64, reason: Refusal) -> bool {
        let mut m = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let spacing = Duration::from_millis(REFUSAL_LOG_SPACING_MS);
        match m.get(&(peer, reason)) {
            Some(t) if now.duration_since(*t) < spacing => false,
            _ => {
                if m.len() >= crate::limits::PEERS_MAX * 8 {
                    m.clear();
                }
                m.insert((peer, reason), now);
                true
            }
        }
    }
}

fn host_port(a: &str) -> bool {
    match a.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &Path, cluster_id: u64, secret: Option<&[u8]>) -> Local {
        let id = Identity {
            cluster_id,
            node_id: 1,
            incarnation: 7,
        };
        Local::new(
            id,
            dir.to_path_buf(),
            "127.0.0.1:7001".into(),
            "127.0.0.1:7201".into(),
            secret.map(Secret::new),
            false,
        )
    }

    fn sender(dir: &Path, cluster_id: u64, secret: Option<&[u8]>) -> tonic::Request<()> {
        let id = Identity {
            cluster_id,
            node_id: 2,
            incarnation: 9,
        };
        let l = Local::new(
            id,
            dir.to_path_buf(),
            "127.0.0.1:7002".into(),
            "127.0.0.1:7202".into(),
            secret.map(Secret::new),
            false,
        );
        let mut r = tonic::Request::new(());
        l.stamp(1, &mut r);
        r
    }

    fn reason(r: Result<Hello, Refused>) -> Option<Refusal> {
        r.err().map(|e| e.reason)
    }

    #[test]
    fn a_matching_handshake_passes_and_a_changed_one_does_not() {
        let d = tempfile::tempdir().unwrap();
        let s = b"0123456789abcdef0123";
        let me = local(d.path(), 5, Some(s));
        let r = sender(d.path(), 5, Some(s));
        let h = me.check(r.metadata(), None, None).unwrap();
        assert_eq!((h.from, h.to, h.incarnation), (2, 1, 9));
        assert_eq!(h.client_addr, "127.0.0.1:7002");
        // Tampered: the MAC no longer covers the fields.
        let mut r2 = sender(d.path(), 5, Some(s));
        r2.metadata_mut()
            .insert(FROM, MetadataValue::from_static("3"));
        assert_eq!(
            reason(me.check(r2.metadata(), None, None)),
            Some(Refusal::BadAuth)
        );
        // Wrong secret, no secret, unexpected secret.
        let r3 = sender(d.path(), 5, Some(b"another secret, long enough"));
        assert_eq!(
            reason(me.check(r3.metadata(), None, None)),
            Some(Refusal::BadAuth)
        );
        let r4 = sender(d.path(), 5, None);
        assert_eq!(
            reason(me.check(r4.metadata(), None, None)),
            Some(Refusal::BadAuth)
        );
        let open = local(d.path(), 5, None);
        let r5 = sender(d.path(), 5, Some(s));
        assert_eq!(
            reason(open.check(r5.metadata(), None, None)),
            Some(Refusal::BadAuth)
        );
        // No handshake at all.
        let empty = tonic::Request::new(());
        assert_eq!(
            reason(me.check(empty.metadata(), None, None)),
            Some(Refusal::BadAuth)
        );
    }

    #[test]
    fn cluster_ids_must_match_and_a_joining_node_adopts_durably() {
        let d = tempfile::tempdir().unwrap();
        let me = local(d.path(), 5, None);
        let r = sender(d.path(), 6, None);
        assert_eq!(
            reason(me.check(r.metadata(), None, None)),
            Some(Refusal::ClusterMismatch)
        );
        let r0 = sender(d.path(), 0, None);
        assert_eq!(
            reason(me.check(r0.metadata(), None, None)),
            Some(Refusal::ClusterMismatch)
        );
        let joining = local(d.path(), 0, None);
        joining.check(r.metadata(), None, None).unwrap();
        assert_eq!(joining.cluster_id(), 6);
        assert_eq!(Identity::load(d.path()).unwrap().unwrap().cluster_id, 6);
        let r7 = sender(d.path(), 7, None);
        assert_eq!(
            reason(joining.check(r7.metadata(), None, None)),
            Some(Refusal::ClusterMismatch)
        );
    }

    #[test]
    fn wrong_receiver_non_members_and_missing_certificates_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let me = local(d.path(), 5, None);
        let mut r = sender(d.path(), 5, None);
        r.metadata_mut().insert(TO, MetadataValue::from_static("3"));
        assert_eq!(
            reason(me.check(r.metadata(), None, None)),
            Some(Refusal::WrongNode)
        );
        let r = sender(d.path(), 5, None);
        let members = BTreeSet::from([1, 3]);
        assert_eq!(
            reason(me.check(r.metadata(), None, Some(&members))),
            Some(Refusal::NotMember)
        );
        let mut tls = local(d.path(), 5, None);
        tls.tls = true;
        assert_eq!(
            reason(tls.check(r.metadata(), None, None)),
            Some(Refusal::WrongNode)
        );
    }

    #[test]
    fn refusals_round_trip_through_a_status() {
        let st = Refusal::NotMember.status("x");
        assert_eq!(Refusal::of(&st), Some(Refusal::NotMember));
        assert_eq!(st.code(), tonic::Code::PermissionDenied);
        assert_eq!(Refusal::of(&Status::internal("x")), None);
    }

    #[test]
    fn secret_files_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        std::fs::write(&p, "short\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Secret::load(&p).unwrap_err();
        assert!(e.to_string().contains("at least 16"), "{e}");
        std::fs::write(&p, "0123456789abcdef\n").unwrap();
        Secret::load(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Secret::load(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}
