//! The address book: node id → `host:port`, shared by the transport (where
//! to send), the services (leader hints, members) and persisted in
//! `<data_dir>/peers.toml` so that a restarted node knows the addresses of
//! nodes added at runtime.
//!
//! # File format
//!
//! ```toml
//! [peers]
//! 1 = "127.0.0.1:7001"
//! 4 = "127.0.0.1:7004"
//! ```
//!
//! Written atomically: to `peers.toml.tmp`, fsynced, renamed over
//! `peers.toml`, then the directory is fsynced. Addresses are learned from
//! the configuration (`peers`), from membership-change entries (their
//! context is the new node's address) as they are appended, and from a
//! snapshot's descriptor. An address is never dropped when a node is
//! removed: a removal may still be rolled back, and a stale entry is
//! harmless.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::ServerError;

/// The shared, persisted address book. Cloning shares it.
#[derive(Clone, Debug)]
pub struct AddrBook {
    inner: Arc<RwLock<BTreeMap<u64, String>>>,
    path: PathBuf,
}

#[derive(serde::Deserialize)]
struct File {
    peers: BTreeMap<String, String>,
}

impl AddrBook {
    /// Loads `<dir>/peers.toml` if present, then adds `seed` entries for
    /// ids it does not know yet.
    ///
    /// # Errors
    /// An unreadable or malformed file.
    pub fn open(dir: &Path, seed: &BTreeMap<u64, String>) -> Result<AddrBook, ServerError> {
        let path = dir.join("peers.toml");
        let mut map = BTreeMap::new();
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                let f: File = toml::from_str(&s).map_err(|e| ServerError::AddressBook {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                for (k, v) in f.peers {
                    let id = k.parse::<u64>().map_err(|_| ServerError::AddressBook {
                        path: path.clone(),
                        reason: format!("key `{k}` is not a node id"),
                    })?;
                    map.insert(id, v);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ServerError::io(&path, e)),
        }
        for (id, addr) in seed {
            map.entry(*id).or_insert_with(|| addr.clone());
        }
        let book = AddrBook {
            inner: Arc::new(RwLock::new(map)),
            path,
        };
        book.save()?;
        Ok(book)
    }

    /// The address of `id`, if known.
    pub fn get(&self, id: u64) -> Option<String> {
        self.read().get(&id).cloned()
    }

    /// A copy of the whole book.
    pub fn all(&self) -> BTreeMap<u64, String> {
        self.read().clone()
    }

    /// Records `id`'s address; persists the book if it changed.
    ///
    /// # Errors
    /// A failed write of the file.
    pub fn set(&self, id: u64, addr: &str) -> Result<(), ServerError> {
        let changed = {
            let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
            if m.get(&id).map(String::as_str) == Some(addr) {
                false
            } else {
                m.insert(id, addr.to_string());
                true
            }
        };
        if changed {
            tracing::info!(node = id, addr, "address book: learned address");
            self.save()?;
        }
        Ok(())
    }

    /// Records the address a membership change carries: an added learner or
    /// voter may name its address (UTF-8) in the change's context.
    ///
    /// # Errors
    /// A failed write of the file.
    pub fn learn_from(&self, cc: &raft::ConfChange) -> Result<(), ServerError> {
        let adds = matches!(
            cc.kind,
            raft::ConfChangeKind::AddLearner | raft::ConfChangeKind::AddVoter
        );
        match std::str::from_utf8(&cc.context) {
            Ok(addr) if adds && !addr.is_empty() => self.set(cc.node_id, addr),
            _ => Ok(()),
        }
    }

    /// Merges `entries` (ids already known keep their address).
    ///
    /// # Errors
    /// A failed write of the file.
    pub fn merge(&self, entries: &BTreeMap<u64, String>) -> Result<(), ServerError> {
        let changed = {
            let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
            let mut changed = false;
            for (id, addr) in entries {
                if !m.contains_key(id) {
                    m.insert(*id, addr.clone());
                    changed = true;
                }
            }
            changed
        };
        if changed {
            self.save()?;
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, String>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the file atomically (tmp, fsync, rename, fsync dir).
    fn save(&self) -> Result<(), ServerError> {
        let mut s = String::from("# raftkv address book: node id = \"host:port\"\n[peers]\n");
        for (id, addr) in self.all() {
            // Addresses are validated host:port strings; escape anyway.
            s.push_str(&format!("{id} = {}\n", toml_string(&addr)));
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
        let book = AddrBook::open(dir.path(), &seed).unwrap();
        book.set(4, "h\"x:4").unwrap();
        drop(book);
        let seed2: BTreeMap<u64, String> = [(1, "other:1".to_string())].into();
        let book = AddrBook::open(dir.path(), &seed2).unwrap();
        assert_eq!(book.get(1).as_deref(), Some("127.0.0.1:1"));
        assert_eq!(book.get(4).as_deref(), Some("h\"x:4"));
        assert_eq!(book.get(9), None);
    }
}
