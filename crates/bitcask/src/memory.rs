//! [`MemEngine`]: an in-memory [`Engine`] over a `BTreeMap`, for tests and
//! as the model the on-disk engine is checked against.
//!
//! It keeps nothing across restarts: `sync` and `merge` do nothing. A view is
//! a clone of the map (values are reference-counted `Bytes`, so a clone
//! copies keys' handles, not data).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::engine::{check_batch, range_is_empty, Engine, Op, Status, View};
use crate::error::{Error, Result};

type Map = BTreeMap<Bytes, Bytes>;

/// An in-memory engine (see the module docs).
#[derive(Debug, Default)]
pub struct MemEngine {
    map: RwLock<Map>,
}

impl MemEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Map>> {
        self.map
            .read()
            .map_err(|_| Error::Poisoned("a thread panicked while holding the lock".into()))
    }
}

fn scan_map(
    map: &Map,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    limit: usize,
) -> Vec<(Bytes, Bytes)> {
    if range_is_empty(start, end) {
        return Vec::new();
    }
    map.range::<[u8], _>((start, end))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Engine for MemEngine {
    type View = MemView;

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.read()?.get(key).cloned())
    }

    fn write_batch(&self, ops: &[Op]) -> Result<()> {
        check_batch(ops)?;
        let mut map = self
            .map
            .write()
            .map_err(|_| Error::Poisoned("a thread panicked while holding the lock".into()))?;
        for op in ops {
            match op {
                Op::Put(key, value) => {
                    map.insert(key.clone(), value.clone());
                }
                Op::Delete(key) => {
                    map.remove(key);
                }
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        Ok(scan_map(&*self.read()?, start, end, limit))
    }

    fn view(&self) -> Result<MemView> {
        Ok(MemView {
            map: Arc::new(self.read()?.clone()),
        })
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn merge(&self) -> Result<()> {
        Ok(())
    }

    fn status(&self) -> Result<Status> {
        let map = self.read()?;
        let bytes: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        Ok(Status {
            keys: map.len() as u64,
            live_bytes: bytes as u64,
            keydir_bytes: bytes as u64,
            ..Status::default()
        })
    }
}

/// A point-in-time view of a [`MemEngine`].
#[derive(Clone, Debug)]
pub struct MemView {
    map: Arc<Map>,
}

impl View for MemView {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        Ok(scan_map(&self.map, start, end, limit))
    }

    fn iter(&self) -> Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + Send + '_> {
        Box::new(self.map.iter().map(|(k, v)| Ok((k.clone(), v.clone()))))
    }

    fn len(&self) -> u64 {
        self.map.len() as u64
    }
}
