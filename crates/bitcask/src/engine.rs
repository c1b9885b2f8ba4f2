//! The [`Engine`] trait: what the state machine needs from its store.
//!
//! # Contract
//!
//! - All methods take `&self`: an engine locks internally, so reads
//!   ([`Engine::get`], [`Engine::scan`], views) run concurrently with each
//!   other and with the writer. Writes are serialized by the engine; the
//!   intended use is one writer (the apply task) and many readers.
//! - A write is visible to reads as soon as the call returns. It is durable
//!   only after a later [`Engine::sync`] returns `Ok`.
//! - [`Engine::write_batch`] is atomic: after a crash, either all of its
//!   operations are there or none is.
//! - Keys are non-empty and at most [`limits::key_size_max`] bytes; values
//!   at most [`limits::value_size_max`] bytes. Bad input is rejected with a
//!   typed error before anything is written.
//! - A fatal error ([`Error::is_fatal`]) from a write or sync poisons the
//!   engine: every later call returns [`Error::Poisoned`].
//! - A [`View`] is a point-in-time image: later writes, deletes and merges
//!   do not change what it returns, and it stays readable until dropped.

use std::ops::Bound;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::limits;

/// One write in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Bytes, Bytes),
    /// Remove `key` (a no-op if it is absent).
    Delete(Bytes),
}

impl Op {
    /// The key the operation writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put(key, _) | Op::Delete(key) => key,
        }
    }
}

/// Space and size figures of an engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Number of live keys.
    pub keys: u64,
    /// Bytes of records on disk that the keydir points to (header, key and
    /// value of each live record).
    pub live_bytes: u64,
    /// Bytes of records on disk that nothing points to any more: overwritten
    /// or deleted values and tombstones. Merge reclaims them (except in the
    /// active file).
    pub dead_bytes: u64,
    /// Number of data files.
    pub files: u64,
    /// Total size of the data files, headers included.
    pub disk_bytes: u64,
    /// Estimated bytes of memory held by the keydir (see the crate docs).
    pub keydir_bytes: u64,
}

impl Status {
    /// The share of record bytes that are dead, in `0.0..=1.0`.
    pub fn dead_ratio(&self) -> f64 {
        let total = self.live_bytes + self.dead_bytes;
        if total == 0 {
            0.0
        } else {
            self.dead_bytes as f64 / total as f64
        }
    }
}

/// A point-in-time, read-only image of an engine (see the module docs).
pub trait View: Send + Sync + 'static {
    /// The value of `key` as of the view's creation.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;

    /// Up to `limit` pairs with keys in `(start, end)`, in key order.
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>>;

    /// All pairs in key order, read lazily (for streaming a snapshot).
    fn iter(&self) -> Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + Send + '_>;

    /// Number of keys in the view.
    fn len(&self) -> u64;

    /// Whether the view holds no keys.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An ordered key-value store (see the module docs for the contract).
pub trait Engine: Send + Sync + 'static {
    /// The engine's point-in-time view.
    type View: View;

    /// The current value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;

    /// Sets `key` to `value`.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write_batch(&[Op::Put(
            Bytes::copy_from_slice(key),
            Bytes::copy_from_slice(value),
        )])
    }

    /// Removes `key`; a no-op if it is absent.
    fn delete(&self, key: &[u8]) -> Result<()> {
        self.write_batch(&[Op::Delete(Bytes::copy_from_slice(key))])
    }

    /// Applies `ops` in order, atomically with respect to crashes. The
    /// whole batch is validated first: on an input error nothing is written.
    fn write_batch(&self, ops: &[Op]) -> Result<()>;

    /// Up to `limit` pairs with keys in `(start, end)`, in key order.
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>>;

    /// A point-in-time view of the whole store.
    fn view(&self) -> Result<Self::View>;

    /// Makes every write that returned before this call durable.
    fn sync(&self) -> Result<()>;

    /// Reclaims the space of dead records (a no-op for engines without
    /// any). Runs while reads and writes go on.
    fn merge(&self) -> Result<()>;

    /// Space and size figures.
    fn status(&self) -> Result<Status>;
}

/// Checks a key against the limits.
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if key.len() > limits::key_size_max {
        return Err(Error::KeyTooLarge {
            size: key.len(),
            max: limits::key_size_max,
        });
    }
    Ok(())
}

/// Checks a value against the limits.
pub fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > limits::value_size_max {
        return Err(Error::ValueTooLarge {
            size: value.len(),
            max: limits::value_size_max,
        });
    }
    Ok(())
}

/// Checks every operation of a batch and the batch's operation count.
pub(crate) fn check_batch(ops: &[Op]) -> Result<()> {
    if ops.len() > limits::batch_ops_max {
        return Err(Error::BatchTooLarge {
            what: "operations",
            size: ops.len(),
            max: limits::batch_ops_max,
        });
    }
    for op in ops {
        check_key(op.key())?;
        if let Op::Put(_, value) = op {
            check_value(value)?;
        }
    }
    Ok(())
}

/// Whether a range is empty (so `BTreeMap::range` would panic on it).
pub(crate) fn range_is_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}
