//! The address book: for each node id, its PEER address (where the Raft
//! service listens: the transport dials it), its CLIENT address (where
//! clients reach it: leader hints and follower forwarding use it) and the
//! incarnation it last showed in a peer handshake. Shared by the transport
//! and the services, persisted in `<data_dir>/peers.toml` so that a
//! restarted node knows the nodes added at runtime.
//!
//! # File format (version 2)
//!
//! ```toml
//! format = 2
//! [peers.1]
//! peer = "127.0.0.1:7201"
//! client = "127.0.0.1:7001"
//! incarnation = "a1b2c3d4e5f60718"
//! [peers.4]
//! peer = "127.0.0.1:7204"
//! ```
//!
//! Every field of a node is optional. The format before the peer listener
//! (`[peers]` with `id = "host:port"`, one address serving both) is still
//! read: its address becomes the node's client address (that is what it
//! was to clients), and the peer address comes from `peers` in the
//! configuration; the file is rewritten in format 2.
//!
//! Written atomically: to `peers.toml.tmp`, fsynced, renamed over
//! `peers.toml`, then the directory is fsynced. Peer addresses are learned
//! from the configuration (`peers`), from membership-change entries (their
//! context is the new node's peer address) as they are appended, from a
//! snapshot's descriptor, and from a peer's handshake when unknown (a node
//! that just joined must answer its leader). Client addresses and
//! incarnations come from handshakes only (the latest wins). An entry is
//! never dropped when a node is removed: a removal may still be rolled
//! back, and a stale entry is harmless.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::ServerError;

/// What the book knows of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Where its Raft service listens.
    pub peer: Option<String>,
    /// Where clients reach it.
    pub client: Option<String>,
    /// The incarnation of its data dir, as last seen in a handshake.
    pub incarnation: Option<u64>,
}

/// The shared, persisted address book. Cloning shares it.
#[derive(Clone, Debug)]
pub struct AddrBook {
    inner: Arc<RwLock<BTreeMap<u64, Entry>>>,
    path: PathBuf,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    peer: Option<String>,
    client: Option<String>,
    incarnation: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum FileValue {
    /// Format 1: one address serving clients and peers.
    Old(String),
    New(FileEntry),
}

#[derive(serde::Deserialize)]
struct File {
    format: Option<u32>,
    #[serde(default)]
    peers: BTreeMap<String, FileValue>,
}

const FORMAT: u32 = 2;

impl AddrBook {
    /// Loads `<dir>/peers.toml` if present (either format), then adds the
    /// `seed` peer addresses for ids that have none, and records this
    /// node's own addresses (`own`: id, peer address, client address).
    ///
    /// # Errors
    /// An unreadable or malformed file, or one of a newer format.
    pub fn open(
        dir: &Path,
        seed: &BTreeMap<u64, String>,
        own: (u64, &str, &str),
    ) -> Result<AddrBook, ServerError> {
        let path = dir.join("peers.toml");
        let bad = |reason: String| ServerError::AddressBook {
            path: path.clone(),
            reason,
        };
        let mut map: BTreeMap<u64, Entry> = BTreeMap::new();
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                let f: File = toml::from_str(&s).map_err(|e| bad(e.to_string()))?;
                if let Some(v) = f.format.filter(|&v| v > FORMAT) {
                    return Err(bad(format!(
                        "format {v} is newer than this version reads ({FORMAT}); \
                         run a newer raftkv"
                    )));
                }
                for (k, v) in f.peers {
                    let id = k
                        .parse::<u64>()
                        .map_err(|_| bad(format!("key `{k}` is not a node id")))?;
                    let e = match v {
                        FileValue::Old(addr) => Entry {
                            client: Some(addr),
                            ..Entry::default()
                        },
                        FileValue::New(e) => Entry {
                            peer: e.peer,
                            client: e.client,
                            incarnation: match e.incarnation {
                                Some(h) => Some(u64::from_str_radix(&h, 16).map_err(|_| {
                                    bad(format!("node {id}: incarnation `{h}` is not hex"))
                                })?),
                                None => None,
                            },
                        },
                    };
                    map.insert(id, e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ServerError::io(&path, e)),
        }
        for (id, addr) in seed {
            let e = map.entry(*id).or_default();
            if e.peer.is_none() {
                e.peer = Some(addr.clone());
            }
        }
        let (own_id, own_peer, own_client) = own;
        let e = map.entry(own_id).or_default();
        e.peer = Some(own_peer.to_string());
        e.client = Some(own_client.to_string());
        let book = AddrBook {
            inner: Arc::new(RwLock::new(map)),
            path,
        };
        book.save()?;
        Ok(book)
    }

    /// The peer address of `id`, if known.
    pub fn peer(&self, id: u64) -> Option<String> {
        self.read().get(&id).and_then(|e| e.peer.clone())
    }

    /// The client address of `id`, if known.
    pub fn client(&self, id: u64) -> Option<String> {
        self.read().get(&id).and_then(|e| e.client.clone())
    }

    /// A copy of the whole book.
    pub fn all(&self) -> BTreeMap<u64, Entry> {
        self.read().clone()
    }

    /// Every known peer address (what a snapshot's descriptor carries).
    pub fn peers(&self) -> BTreeMap<u64, String> {
        self.read()
            .iter()
            .filter_map(|(id, e)| Some((*id, e.peer.clone()?)))
            .collect()
    }

    /// Records `id`'s peer address; persists the book if it changed.
    ///
    /// # Errors
    /// A failed write of the file.
    pub fn set_peer(&self, id: u64, addr: &str) -> Result<(), ServerError> {
        let changed = self.update(|m| {
            let e = m.entry(id).or_default();
            if e.peer.as_deref() == Some(addr) {
                return false;
            }
            e.peer = Some(addr.to_string());
            true
        });
        if changed {
            tracing::info!(node = id, addr, "address book: learned peer address");
            self.save()?;
        }
        Ok(())
    }

    /// What a peer's handshake told: its client address (the latest wins),
    /// its peer address (only if none is known: a configured or committed
    /// address is never replaced by what a peer claims) and its
    /// incarnation. Returns the incarnation known before if it differs
    /// (the peer's data dir was replaced). Persists the book if it changed.
    ///
    /// # Errors
    /// A failed write of the file.
    pub fn learn_handshake(
        &self,
        id: u64,
        peer: Option<&str>,
        client: Option<&str>,
        incarnation: u64,
    ) -> Result<Option<u64>, ServerError> {
        let mut replaced = None;
        let changed = self.update(|m| {
            let e = m.entry(id).or_default();
            let mut changed = false;
            if let (None, Some(p)) = (&e.peer, peer) {
                e.peer = Some(p.to_string());
                changed = true;
            }
            if let Some(c) = client {
                if e.client.as_deref() != Some(c) {
                    e.client = Some(c.to_string());
                    changed = true;
                }
            }
            if e.incarnation != Some(incarnation) {
                replaced = e.incarnation;
                e.incarnation = Some(incarnation);
                changed = true;
            }
            changed
        });
        if changed {
            self.save()?;
        }
        Ok(replaced)
    }

    /// Records the address a membership change carries: an added learner or
    /// voter may name its peer address (UTF-8) in the change's context.
    ///
    /// # Errors
    /// A failed write of the file.
    pub fn learn_from(&self, cc: &raft::ConfChange) -> Result<(), ServerError> {
        let adds = matches!(
            cc.kind,
            raft::ConfChangeKind::AddLearner | raft::ConfChangeKind::AddVoter
        );
        match std::str::from_utf8(&cc.context) {
            Ok(addr) if adds && !addr.is_empty() => self.set_peer(cc.node_id, addr),
            _ => Ok(()),
        }
    }

    /// Merges peer addresses (ids that already have one keep it).
    ///
    /// # Errors
    /// A failed write of the file.
    pub fn merge_peers(&self, entries: &BTreeMap<u64, String>) -> Result<(), ServerError> {
        let changed = self.update(|m| {
            let mut changed = false;
            for (id, addr) in entries {
                let e = m.entry(*id).or_default();
                if e.peer.is_none() {
                    e.peer = Some(addr.clone());
                    changed = true;
                }
            }
            changed
        });
        if changed {
            self.save()?;
        }
        Ok(())
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<u64, Entry>) -> bool) -> bool {
        let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
        f(&mut m)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Entry>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the file atomically (tmp, fsync, rename, fsync dir).
    fn save(&self) -> Result<(), ServerError> {
        let mut s = format!(
            "# raftkv address book: per node, its peer and client addresses\nformat = {FORMAT}\n"
        );
        for (id, e) in self.all() {
            s.push_str(&format!("\n[peers.{id}]\n"));
            if let Some(p) = &e.peer {
                s.push_str(&format!("peer = {}\n", toml_string(p)));
            }
            if let Some(c) = &e.client {
                s.push_str(&format!("client = {}\n", toml_string(c)));
            }
            if let Some(i) = e.incarnation {
                s.push_str(&format!("incarnation = \"{i:016x}\"\n"));
            }
        }
        crate::durable::write(&self.path, s.as_bytes()).map_err(|e| ServerError::io(&self.path, e))
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_persists_and_merges() {
        let dir = tempfile::tempdir().unwrap();
        let seed: BTreeMap<u64, String> = [(1, "127.0.0.1:1".to_string())].into();
        let book = AddrBook::open(dir.path(), &seed, (9, "p:9", "c:9")).unwrap();
        book.set_peer(4, "h\"x:4").unwrap();
        assert_eq!(
            book.learn_handshake(4, Some("z:1"), Some("c:4"), 7)
                .unwrap(),
            None
        );
        assert_eq!(book.learn_handshake(4, None, None, 8).unwrap(), Some(7));
        drop(book);
        let seed2: BTreeMap<u64, String> = [(1, "other:1".to_string())].into();
        let book = AddrBook::open(dir.path(), &seed2, (9, "p:9", "c:9")).unwrap();
        assert_eq!(book.peer(1).as_deref(), Some("127.0.0.1:1"));
        assert_eq!(
            book.peer(4).as_deref(),
            Some("h\"x:4"),
            "a handshake never replaces a peer address"
        );
        assert_eq!(book.client(4).as_deref(), Some("c:4"));
        assert_eq!(book.all()[&4].incarnation, Some(8));
        assert_eq!(book.client(9).as_deref(), Some("c:9"));
        assert_eq!(book.peer(9).as_deref(), Some("p:9"));
        assert_eq!(book.peer(5), None);
    }

    #[test]
    fn old_format_is_read_as_client_addresses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("peers.toml"),
            "[peers]\n1 = \"127.0.0.1:7001\"\n4 = \"127.0.0.1:7004\"\n",
        )
        .unwrap();
        let seed: BTreeMap<u64, String> = [(1, "127.0.0.1:7201".to_string())].into();
        let book =
            AddrBook::open(dir.path(), &seed, (2, "127.0.0.1:7202", "127.0.0.1:7002")).unwrap();
        assert_eq!(book.client(1).as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(book.peer(1).as_deref(), Some("127.0.0.1:7201"));
        assert_eq!(book.client(4).as_deref(), Some("127.0.0.1:7004"));
        assert_eq!(book.peer(4), None);
        let text = std::fs::read_to_string(dir.path().join("peers.toml")).unwrap();
        assert!(text.contains("format = 2"), "{text}");
    }

    #[test]
    fn newer_or_malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.toml");
        std::fs::write(&path, "format = 3\n").unwrap();
        let e = AddrBook::open(dir.path(), &BTreeMap::new(), (1, "a:1", "a:2")).unwrap_err();
        assert!(e.to_string().contains("newer"), "{e}");
        std::fs::write(&path, "[peers.1]\nincarnation = \"zz\"\n").unwrap();
        let e = AddrBook::open(dir.path(), &BTreeMap::new(), (1, "a:1", "a:2")).unwrap_err();
        assert!(e.to_string().contains("incarnation"), "{e}");
    }
}
