//! Who this node is: the cluster it belongs to, its node id, and the
//! incarnation of its data dir.
//!
//! # Why
//!
//! Raft's safety rests on every voter keeping what it acknowledged. A node
//! whose disk was replaced, or that was started on another node's or another
//! cluster's data dir, must never be taken for the member it claims to be.
//! The identity file lets the node itself refuse a mismatched start, and the
//! peer handshake (see `transport`) carries the same values so that its
//! peers can tell a member from an impostor, and a member from the same
//! member after a disk replacement (same node id, new incarnation).
//!
//! # Values
//!
//! - `cluster_id`: made once, when a cluster is bootstrapped, from the
//!   cluster token and the ids of the initial voters
//!   ([`Identity::cluster_id_for`]), so that every node of a new cluster,
//!   bootstrapped with the same settings, derives the same id without
//!   talking to the others. 0 means "not known yet": a node that joins an
//!   existing cluster learns it from the first authenticated peer.
//! - `node_id`: the `--id` the data dir was created with; never 0.
//! - `incarnation`: random, made whenever the data dir is created. It never
//!   changes afterwards, so a new incarnation under a known node id means
//!   the member lost its disk.
//!
//! # File format
//!
//! `<data_dir>/identity.toml`, TOML, ids as 16 hex digits:
//!
//! ```toml
//! # raftkv node identity: made once, never edit by hand
//! format = 1
//! cluster_id = "5f0c3d2e9a7b1c44"
//! node_id = 2
//! incarnation = "a1b2c3d4e5f60718"
//! ```
//!
//! Written atomically: to `identity.toml.tmp`, fsynced, renamed over
//! `identity.toml`, then the directory is fsynced. A file that does not
//! parse stops the node with its path named: it is never replaced silently.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::ServerError;

/// The identity file's name in the data dir.
pub const FILE_NAME: &str = "identity.toml";

/// The only format version written and read.
const FORMAT: u32 = 1;

/// This node's identity. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's id; 0 while not known (a joining node).
    pub cluster_id: u64,
    /// This node's id; never 0.
    pub node_id: u64,
    /// The data dir's incarnation: random, made with the data dir.
    pub incarnation: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: u32,
    cluster_id: String,
    node_id: u64,
    incarnation: String,
}

fn bad(path: &Path, reason: impl Into<String>) -> ServerError {
    ServerError::Identity {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn parse_hex(path: &Path, field: &str, s: &str) -> Result<u64, ServerError> {
    if s.len() != 16 {
        return Err(bad(
            path,
            format!("`{field}` must be 16 hex digits, is `{s}`"),
        ));
    }
    u64::from_str_radix(s, 16)
        .map_err(|_| bad(path, format!("`{field}` must be 16 hex digits, is `{s}`")))
}

/// Formats an id the way the file, the logs and `status` show it.
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}

/// A random, non-zero u64 from the operating system's randomness (std seeds
/// each `RandomState` from it), mixed with the clock and the process id.
pub fn random_id() -> u64 {
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        let v = h.finish();
        if v != 0 {
            return v;
        }
    }
}

impl Identity {
    /// The path of the identity file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Reads `<dir>/identity.toml`; `None` if there is none.
    ///
    /// # Errors
    /// An unreadable file, or one that does not parse or holds a node id 0.
    pub fn load(dir: &Path) -> Result<Option<Identity>, ServerError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ServerError::io(&path, e)),
        };
        let f: File = toml::from_str(&text).map_err(|e| bad(&path, e.to_string()))?;
        if f.format != FORMAT {
            return Err(bad(
                &path,
                format!(
                    "format {} is not known (this build reads {FORMAT})",
                    f.format
                ),
            ));
        }
        if f.node_id == 0 {
            return Err(bad(&path, "`node_id` is 0"));
        }
        Ok(Some(Identity {
            cluster_id: parse_hex(&path, "cluster_id", &f.cluster_id)?,
            node_id: f.node_id,
            incarnation: parse_hex(&path, "incarnation", &f.incarnation)?,
        }))
    }

    /// Makes a new identity with a fresh incarnation and writes it to `dir`
    /// (which must exist). `cluster_id` is 0 for a node that joins.
    ///
    /// # Errors
    /// A failed write or fsync.
    pub fn create(dir: &Path, node_id: u64, cluster_id: u64) -> Result<Identity, ServerError> {
        let id = Identity {
            cluster_id,
            node_id,
            incarnation: random_id(),
        };
        id.save(dir)?;
        Ok(id)
    }

    /// Records the cluster id learned by a joining node, durably.
    ///
    /// # Errors
    /// A failed write or fsync (the identity is then left as it was).
    pub fn adopt_cluster_id(&mut self, dir: &Path, cluster_id: u64) -> Result<(), ServerError> {
        let next = Identity {
            cluster_id,
            ..*self
        };
        next.save(dir)?;
        *self = next;
        Ok(())
    }

    /// The cluster id a bootstrap derives: a 64-bit FNV-1a hash of the
    /// cluster token and the sorted ids of the initial voters, so that
    /// every node bootstrapped with the same token and voters agrees, and
    /// two clusters bootstrapped with different tokens differ. Never 0.
    pub fn cluster_id_for(token: &str, voters: &BTreeMap<u64, String>) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(b"raftkv-cluster-v1\0");
        eat(token.as_bytes());
        for id in voters.keys() {
            eat(b"\0");
            eat(&id.to_be_bytes());
        }
        if h == 0 {
            1
        } else {
            h
        }
    }

    fn save(&self, dir: &Path) -> Result<(), ServerError> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        let body = toml::to_string(&File {
            format: FORMAT,
            cluster_id: hex(self.cluster_id),
            node_id: self.node_id,
            incarnation: hex(self.incarnation),
        })
        .map_err(|e| bad(&path, e.to_string()))?;
        let text = format!("# raftkv node identity: made once, never edit by hand\n{body}");
        let mut f = std::fs::File::create(&tmp).map_err(|e| ServerError::io(&tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| ServerError::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| ServerError::io(&path, e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ServerError::io(dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::create(dir.path(), 3, 0xabc).unwrap();
        assert_eq!(id.node_id, 3);
        assert_ne!(id.incarnation, 0);
        assert_eq!(Identity::load(dir.path()).unwrap(), Some(id));
        assert!(!dir.path().join("identity.toml.tmp").exists());
    }

    #[test]
    fn a_new_data_dir_gets_a_new_incarnation() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let x = Identity::create(a.path(), 1, 7).unwrap();
        let y = Identity::create(b.path(), 1, 7).unwrap();
        assert_ne!(x.incarnation, y.incarnation);
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn adopt_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut id = Identity::create(dir.path(), 4, 0).unwrap();
        id.adopt_cluster_id(dir.path(), 99).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap().unwrap().cluster_id, 99);
    }

    #[test]
    fn damaged_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = Identity::path(dir.path());
        for text in [
            "garbage",
            "format = 1\ncluster_id = \"zz\"\nnode_id = 1\nincarnation = \"0000000000000001\"\n",
            "format = 1\ncluster_id = \"0000000000000001\"\nnode_id = 0\nincarnation = \"0000000000000001\"\n",
            "format = 2\ncluster_id = \"0000000000000001\"\nnode_id = 1\nincarnation = \"0000000000000001\"\n",
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Identity::load(dir.path()).unwrap_err().to_string();
            assert!(e.contains("identity.toml"), "{e}");
        }
    }

    #[test]
    fn cluster_ids_agree_on_the_same_bootstrap_and_differ_otherwise() {
        let v = |ids: &[u64]| ids.iter().map(|i| (*i, format!("h{i}:1"))).collect();
        let a = Identity::cluster_id_for("prod", &v(&[1, 2, 3]));
        // Addresses do not matter: nodes may name their peers differently.
        let b = Identity::cluster_id_for(
            "prod",
            &[(1, "x".into()), (2, "y".into()), (3, "z".into())].into(),
        );
        assert_eq!(a, b);
        assert_ne!(a, Identity::cluster_id_for("test", &v(&[1, 2, 3])));
        assert_ne!(a, Identity::cluster_id_for("prod", &v(&[1, 2])));
        assert_ne!(a, 0);
    }
}
