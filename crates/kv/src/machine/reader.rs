//! [`KvReader`]: reads through `&self`, alongside the apply task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bitcask::Engine;
use raft::Index;

use crate::command::{check_key, check_range};
use crate::digest::{Hasher, StateDigest};
use crate::error::{Error, FatalError, Result};
use crate::keys::{
    self, bounds, decode_applied, session_id, user_bounds, user_key, Record, SessionRecord,
    APPLIED_KEY, SESSION_PREFIX,
};
use crate::limits;
use crate::response::KeyValue;
use crate::snapshot::SnapshotStream;

/// The bounds of one scan page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPage {
    /// At most this many keys (0: [`SCAN_LIMIT_MAX`](limits::SCAN_LIMIT_MAX)).
    pub limit: usize,
    /// At most about this many bytes: keys, values and
    /// [`SCAN_ITEM_OVERHEAD`](limits::SCAN_ITEM_OVERHEAD) per key; the
    /// first key counts whatever its size.
    pub bytes_max: usize,
    /// Leave the values out (and out of the byte count).
    pub keys_only: bool,
}

impl ScanPage {
    /// Up to `limit` keys with their values, bytes unbounded.
    pub fn keys(limit: usize) -> ScanPage {
        ScanPage {
            limit,
            bytes_max: usize::MAX,
            keys_only: false,
        }
    }
}

/// State shared between the state machine and its readers.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) applied: AtomicU64,
    /// The target index of an unfinished restore; 0 when none.
    pub(super) restoring: AtomicU64,
}

/// A cheap, cloneable read handle: reads run on any thread while the state
/// machine applies (the engine takes `&self` and locks internally). A read
/// sees everything applied before it started and possibly more.
pub struct KvReader<E: Engine> {
    pub(super) engine: Arc<E>,
    pub(super) shared: Arc<Shared>,
}

impl<E: Engine> Clone for KvReader<E> {
    fn clone(&self) -> Self {
        KvReader {
            engine: Arc::clone(&self.engine),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: Engine> std::fmt::Debug for KvReader<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvReader")
            .field("applied", &self.applied_index())
            .finish_non_exhaustive()
    }
}

pub(super) fn eng<T>(r: bitcask::Result<T>) -> Result<T, FatalError> {
    r.map_err(FatalError::engine)
}

impl<E: Engine> KvReader<E> {
    /// The index of the last applied entry.
    pub fn applied_index(&self) -> Index {
        self.shared.applied.load(Ordering::Acquire)
    }

    fn check_usable(&self) -> Result<(), FatalError> {
        match self.shared.restoring.load(Ordering::Acquire) {
            0 => Ok(()),
            index => Err(FatalError::RestoreIncomplete { index }),
        }
    }

    /// The key-value under `key`.
    ///
    /// # Errors
    /// `Command` for an empty or over-limit key; `Fatal` on an engine error
    /// or while a restore is unfinished.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        check_key(key)?;
        self.check_usable()?;
        get_record(&*self.engine, key)
            .map(|r| r.map(|r| r.into_kv(key.to_vec())))
            .map_err(Error::from)
    }

    /// Up to `limit` key-values with keys in `start..end`, in key order. An
    /// empty `end` means no upper bound; `limit` is capped at
    /// [`SCAN_LIMIT_MAX`](limits::SCAN_LIMIT_MAX), and 0 means that cap.
    ///
    /// # Errors
    /// `Command` for an invalid range; `Fatal` as for [`get`](Self::get).
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KeyValue>> {
        Ok(self.scan_page(start, end, &ScanPage::keys(limit))?.0)
    }

    /// Like [`scan`](Self::scan) within the bounds of `page` (keys and
    /// bytes), and also whether more keys follow in the range (continue from
    /// the last key returned plus a `0` byte). The first key is returned
    /// whatever its size, so a scan always moves on.
    ///
    /// Values are read from the engine in small batches, so a page of large
    /// values never holds much more than `page.bytes_max` in memory.
    pub fn scan_page(
        &self,
        start: &[u8],
        end: &[u8],
        page: &ScanPage,
    ) -> Result<(Vec<KeyValue>, bool)> {
        check_range(start, end)?;
        self.check_usable()?;
        let limit = if page.limit == 0 {
            limits::SCAN_LIMIT_MAX
        } else {
            page.limit.min(limits::SCAN_LIMIT_MAX)
        };
        let (mut lo, hi) = user_bounds(start, end);
        let mut out: Vec<KeyValue> = Vec::new();
        let mut bytes = 0usize;
        let mut largest = 0usize;
        loop {
            // Enough keys for the rest of the page (one more tells whether
            // more follow), fewer when the values seen so far are large.
            let room = page.bytes_max.saturating_sub(bytes);
            let by_size = match largest {
                0 => limits::SCAN_FIRST_BATCH_KEYS,
                l => room / l + 1,
            };
            let batch = (limit - out.len())
                .min(by_size)
                .clamp(1, limits::SCAN_BATCH_KEYS_MAX)
                + 1;
            let (s, e) = bounds(&lo, &hi);
            let pairs = eng(self.engine.scan(s, e, batch))?;
            let exhausted = pairs.len() < batch;
            for (k, v) in pairs.iter() {
                let Some(user) = keys::strip_user(k) else {
                    continue;
                };
                if out.len() == limit {
                    return Ok((out, true));
                }
                let mut kv = Record::decode_stored(user, v)?.into_kv(user.to_vec());
                if page.keys_only {
                    kv.value = Vec::new();
                }
                let size = kv.key.len() + kv.value.len() + limits::SCAN_ITEM_OVERHEAD;
                if !out.is_empty() && bytes + size > page.bytes_max {
                    return Ok((out, true));
                }
                bytes += size;
                largest = largest.max(size);
                out.push(kv);
            }
            match pairs.last() {
                Some((k, _)) if !exhausted => {
                    lo = k.to_vec();
                    lo.push(0);
                }
                _ => return Ok((out, false)),
            }
        }
    }

    /// Up to `limit` key-values whose keys start with `prefix`.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<KeyValue>> {
        self.scan(prefix, &crate::command::prefix_end(prefix), limit)
    }

    /// A point-in-time snapshot, streamed in chunks of at most
    /// [`CHUNK_BYTES_MAX`](limits::CHUNK_BYTES_MAX) bytes.
    pub fn snapshot(&self) -> Result<SnapshotStream<E::View>> {
        self.snapshot_with_chunk_size(limits::CHUNK_BYTES_MAX)
    }

    /// Like [`snapshot`](Self::snapshot), with chunks of about
    /// `chunk_bytes` (each holds at least one item).
    pub fn snapshot_with_chunk_size(&self, chunk_bytes: usize) -> Result<SnapshotStream<E::View>> {
        self.check_usable()?;
        let view = eng(self.engine.view())?;
        Ok(SnapshotStream::new(view, chunk_bytes)?)
    }

    /// The digest of the state (see [`StateDigest`]), taken from one
    /// point-in-time view.
    pub fn digest(&self) -> Result<StateDigest> {
        use bitcask::View as _;
        self.check_usable()?;
        let view = eng(self.engine.view())?;
        let index = match eng(view.get(APPLIED_KEY))? {
            Some(v) => decode_applied(&v)?.0,
            None => 0,
        };
        let mut hasher = Hasher::new(index);
        for pair in view.iter() {
            let (k, v) = eng(pair)?;
            if let Some(user) = keys::strip_user(&k) {
                hasher.kv(user, &Record::decode_stored(user, &v)?);
            } else if k.starts_with(SESSION_PREFIX) {
                let id = session_id(&k)?;
                hasher.session(id, &SessionRecord::decode_stored(id, &v)?);
            }
        }
        Ok(StateDigest {
            index,
            hash: hasher.finish(),
        })
    }
}

pub(super) fn get_record<E: Engine>(engine: &E, key: &[u8]) -> Result<Option<Record>, FatalError> {
    match eng(engine.get(&user_key(key)))? {
        Some(v) => Ok(Some(Record::decode_stored(key, &v)?)),
        None => Ok(None),
    }
}
