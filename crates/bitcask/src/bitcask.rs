//! [`Bitcask`]: the on-disk engine (formats and design in the crate docs).
//!
//! # Locking
//!
//! - `state` (`RwLock`): the keydir, the open files and the space figures.
//!   Reads hold it only to look up an entry and clone the file's `Arc`; the
//!   value is read after it is released. Writes hold it for writing only to
//!   update the keydir after their bytes are in the file.
//! - `writer` (`Mutex`): the active file and the next timestamp; serializes
//!   writes and rotation. Never held across a merge's copying.
//! - `merging` (`Mutex`): one merge at a time.
//!
//! Lock order: `merging`, then `writer`, then `state`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::engine::{
    check_batch, check_key, check_value, range_is_empty, Engine, Op, Status, View,
};
use crate::error::{Error, IoContext, Result};
use crate::file::{self, DataFile};
use crate::format::{self, FLAG_BATCH_CONT, FLAG_TOMBSTONE};
use crate::limits;

/// Options for [`Bitcask::open`].
#[derive(Clone, Debug)]
pub struct Options {
    /// The active data file is rotated before a write would take it past
    /// this many bytes (a batch larger than this gets a file of its own).
    /// At most [`limits::file_size_max`].
    pub file_size_max: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            file_size_max: limits::file_size_default,
        }
    }
}

/// Where a key's current value lives. 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The record's timestamp (the engine's write sequence number).
    pub timestamp: u64,
    /// The data file's id.
    pub file: u32,
    /// The record's offset in the data file.
    pub offset: u32,
    /// The value's length.
    pub value_size: u32,
}

impl Entry {
    /// The length of the whole record on disk.
    pub fn record_len(&self, key_len: usize) -> u64 {
        format::record_len(key_len, self.value_size as usize) as u64
    }
}

/// A key, its entry and its file, looked up under the lock to be read after.
type Located = (Arc<[u8]>, Entry, Arc<DataFile>);

/// The keydir: every live key, in order, with where its value is.
pub(crate) type Keydir = BTreeMap<Arc<[u8]>, Entry>;

/// Estimated bytes of memory the keydir uses per key besides the key's own
/// bytes: the `BTreeMap` slot (a 16-byte `Arc<[u8]>` pointer and the
/// 24-byte `Entry`) at the tree's fill, node headers, and the `Arc`'s
/// 16 bytes of counts. Measured by `examples/bench.rs` with a counting
/// allocator: 58 bytes per key when the keydir is built at open, 78 when
/// built by random inserts (requested sizes; the allocator adds its own
/// overhead per allocation, about 16 bytes with glibc for 16-byte keys).
pub const KEYDIR_BYTES_PER_KEY: u64 = 80;

pub(crate) struct State {
    pub keydir: Keydir,
    /// Every data file, the active one included.
    pub files: BTreeMap<u32, Arc<DataFile>>,
    /// Per data file: (length on disk, bytes of live records).
    pub space: BTreeMap<u32, (u64, u64)>,
    /// Sum of the keydir's key lengths.
    pub key_bytes: u64,
}

impl State {
    /// Points `key` at `entry` (in file `entry.file`), keeping the space
    /// figures right.
    pub fn insert(&mut self, key: &[u8], entry: Entry) {
        let len = entry.record_len(key.len());
        if let Some(old) = self.keydir.get_mut(key) {
            let old = std::mem::replace(old, entry);
            self.sub_live(old.file, old.record_len(key.len()));
        } else {
            self.keydir.insert(Arc::from(key), entry);
            self.key_bytes += key.len() as u64;
        }
        self.add_live(entry.file, len);
    }

    /// Removes `key`, keeping the space figures right.
    pub fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.keydir.remove(key) {
            self.sub_live(old.file, old.record_len(key.len()));
            self.key_bytes -= key.len() as u64;
        }
    }

    pub fn add_live(&mut self, file: u32, bytes: u64) {
        if let Some(s) = self.space.get_mut(&file) {
            s.1 += bytes;
        }
    }

    pub fn sub_live(&mut self, file: u32, bytes: u64) {
        if let Some(s) = self.space.get_mut(&file) {
            s.1 = s.1.saturating_sub(bytes);
        }
    }

    fn file(&self, id: u32) -> Result<Arc<DataFile>> {
        file_of(&self.files, id)
    }
}

fn file_of(files: &BTreeMap<u32, Arc<DataFile>>, id: u32) -> Result<Arc<DataFile>> {
    files.get(&id).cloned().ok_or_else(|| Error::Corrupt {
        file: PathBuf::from(format!("data file {id}")),
        offset: 0,
        reason: "the keydir points to a data file that is not open".into(),
    })
}

pub(crate) struct Writer {
    pub active: Arc<DataFile>,
    /// The active file's length.
    pub len: u64,
    pub next_timestamp: u64,
    /// Reused encoding buffer.
    pub buf: Vec<u8>,
}

/// A write borrowed from the caller, so `put` and `delete` copy nothing
/// before encoding.
#[derive(Clone, Copy)]
enum OpRef<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
}

impl<'a> OpRef<'a> {
    fn key(&self) -> &'a [u8] {
        match self {
            OpRef::Put(key, _) | OpRef::Delete(key) => key,
        }
    }
}

/// Set once a fatal error happened; every later call fails.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    flag: AtomicBool,
    reason: Mutex<String>,
}

impl Poison {
    fn check(&self) -> Result<()> {
        if self.flag.load(Ordering::Acquire) {
            let reason = self.reason.lock().map(|r| r.clone()).unwrap_or_default();
            return Err(Error::Poisoned(reason));
        }
        Ok(())
    }

    fn set(&self, err: &Error) {
        if err.is_fatal() {
            if let Ok(mut r) = self.reason.lock() {
                if r.is_empty() {
                    *r = err.to_string();
                }
            }
            self.flag.store(true, Ordering::Release);
        }
    }
}

/// What opening the engine found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// A torn tail cut off the active data file: the file, the offset it
    /// was truncated at, the bytes removed, and why.
    pub truncated: Option<(PathBuf, u64, u64, String)>,
    /// Hint files that were missing or damaged and were rebuilt by scanning
    /// their data file.
    pub hints_rebuilt: Vec<PathBuf>,
    /// Whether an interrupted merge's switch-over was finished.
    pub merge_finished: bool,
    /// Data files loaded.
    pub files: usize,
}

/// What one merge did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub records_copied: u64,
}

/// The Bitcask engine. See the crate docs.
pub struct Bitcask {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) state: RwLock<State>,
    pub(crate) writer: Mutex<Writer>,
    pub(crate) merging: Mutex<()>,
    pub(crate) next_file_id: AtomicU32,
    pub(crate) poison: Arc<Poison>,
    /// Threads writing the hint files of rotated-out files (at most
    /// [`limits::hint_threads_max`]); joined on drop.
    pub(crate) hint_threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) report: RecoveryReport,
    pub(crate) _lock: crate::recovery::DirLock,
}

impl Drop for Bitcask {
    fn drop(&mut self) {
        // Hint threads must finish before the directory can be opened again.
        let _ = self.wait_for_hints();
    }
}

impl std::fmt::Debug for Bitcask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitcask")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Bitcask {
    /// Opens (or creates) the engine in `dir`, recovering from a crash: see
    /// the crate docs, "Recovery". Only one engine may have a directory
    /// open at a time (an `flock` on `dir/LOCK`).
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Bitcask> {
        crate::recovery::open(dir.as_ref(), options)
    }

    /// What opening found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The engine's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether dead records make up at least `ratio` (0.0..=1.0) of the
    /// record bytes, so a merge is worth it.
    pub fn needs_merge(&self, ratio: f64) -> Result<bool> {
        let s = self.status()?;
        Ok(s.dead_bytes > 0 && s.dead_ratio() >= ratio)
    }

    /// Merges every immutable data file (see the crate docs, "Merge").
    pub fn merge_files(&self) -> Result<MergeStats> {
        crate::merge::merge(self)
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        self.poison.check()
    }

    /// Stops the engine after a fatal error and returns the error.
    pub(crate) fn fatal(&self, err: Error) -> Error {
        self.poison.set(&err);
        err
    }

    pub(crate) fn read_state(&self) -> Result<RwLockReadGuard<'_, State>> {
        self.state.read().map_err(|_| self.lock_poisoned())
    }

    pub(crate) fn write_state(&self) -> Result<RwLockWriteGuard<'_, State>> {
        self.state.write().map_err(|_| self.lock_poisoned())
    }

    pub(crate) fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>> {
        self.writer.lock().map_err(|_| self.lock_poisoned())
    }

    fn lock_poisoned(&self) -> Error {
        self.fatal(Error::Poisoned(
            "a thread panicked while holding a lock".into(),
        ))
    }

    /// Makes the active file immutable and starts a new one: fsync the old
    /// file (so that nothing in a newer file can survive a crash that loses
    /// older writes), create the new one durably, switch. The old file's
    /// hint is written by a background thread.
    pub(crate) fn rotate(&self, w: &mut Writer) -> Result<()> {
        w.active.file.sync_data().at(&w.active.path)?;
        let id = self.next_file_id.fetch_add(1, Ordering::SeqCst);
        let new = Arc::new(DataFile::create(&self.dir, id)?);
        let old = std::mem::replace(&mut w.active, new.clone());
        w.len = format::HEADER_LEN as u64;
        {
            let mut s = self.write_state()?;
            s.files.insert(id, new);
            s.space.insert(id, (w.len, 0));
        }
        self.spawn_hint_writer(old)
    }

    /// Writes `file`'s hint file on a background thread (scan, then write
    /// and rename durably); a failure poisons the engine. Until it is done,
    /// a restart scans the data file instead, so nothing waits for it. If a
    /// merge deletes the data file first, the hint is an orphan that the
    /// next open deletes.
    fn spawn_hint_writer(&self, file: Arc<DataFile>) -> Result<()> {
        let mut threads = self
            .hint_threads
            .lock()
            .map_err(|_| Error::Poisoned("a thread panicked while holding a lock".into()))?;
        let (done, mut running): (Vec<_>, Vec<_>) =
            threads.drain(..).partition(|t| t.is_finished());
        for t in done {
            let _ = t.join();
        }
        // Bounded: wait for the oldest when too many are running.
        while running.len() >= limits::hint_threads_max {
            let _ = running.remove(0).join();
        }
        let dir = self.dir.clone();
        let poison = self.poison.clone();
        let spawned = std::thread::Builder::new()
            .name("bitcask-hint".into())
            .spawn(move || {
                let written = file::scan(&file, false)
                    .and_then(|scan| file::write_hint(&dir, file.id, &scan.entries));
                if let Err(e) = written {
                    poison.set(&e);
                }
            })
            .at(&self.dir)?;
        running.push(spawned);
        *threads = running;
        Ok(())
    }

    /// Waits until every rotated-out file has its hint file.
    pub fn wait_for_hints(&self) -> Result<()> {
        let threads: Vec<_> = self
            .hint_threads
            .lock()
            .map_err(|_| Error::Poisoned("a thread panicked while holding a lock".into()))?
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
        self.check_poison()
    }

    fn write_batch_locked(&self, w: &mut Writer, ops: &[OpRef<'_>]) -> Result<()> {
        let size: usize = ops
            .iter()
            .map(|op| match op {
                OpRef::Put(k, v) => format::record_len(k.len(), v.len()),
                OpRef::Delete(k) => format::record_len(k.len(), 0),
            })
            .sum();
        if size > limits::batch_size_max {
            return Err(Error::BatchTooLarge {
                what: "bytes",
                size,
                max: limits::batch_size_max,
            });
        }
        if w.len > format::HEADER_LEN as u64 && w.len + size as u64 > self.options.file_size_max {
            self.rotate(w).map_err(|e| self.fatal(e))?;
        }
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        let mut entries = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let timestamp = w.next_timestamp + i as u64;
            let cont = if i + 1 < ops.len() {
                FLAG_BATCH_CONT
            } else {
                0
            };
            let offset = (w.len + buf.len() as u64) as u32;
            match op {
                OpRef::Put(key, value) => {
                    format::encode_record(&mut buf, timestamp, cont, key, value);
                    entries.push(Some(Entry {
                        timestamp,
                        file: w.active.id,
                        offset,
                        value_size: value.len() as u32,
                    }));
                }
                OpRef::Delete(key) => {
                    format::encode_record(&mut buf, timestamp, cont | FLAG_TOMBSTONE, key, &[]);
                    entries.push(None);
                }
            }
        }
        let written = w.active.file.write_all_at(&buf, w.len);
        if buf.capacity() <= 1 << 20 {
            w.buf = buf;
        }
        written.at(&w.active.path).map_err(|e| self.fatal(e))?;
        w.len += size as u64;
        w.next_timestamp += ops.len() as u64;
        let mut s = self.write_state()?;
        for (op, entry) in ops.iter().zip(entries) {
            match entry {
                Some(entry) => s.insert(op.key(), entry),
                None => s.remove(op.key()),
            }
        }
        if let Some(space) = s.space.get_mut(&w.active.id) {
            space.0 = w.len;
        }
        Ok(())
    }

    /// Reads the values of `entries` (looked up under the lock).
    fn read_values(pairs: Vec<Located>) -> Result<Vec<(Bytes, Bytes)>> {
        pairs
            .into_iter()
            .map(|(key, e, f)| {
                let value = f.read_value(&key, e.offset, e.value_size)?;
                Ok((Bytes::copy_from_slice(&key), value))
            })
            .collect()
    }
}

fn collect_range(
    keydir: &Keydir,
    files: &BTreeMap<u32, Arc<DataFile>>,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    limit: usize,
) -> Result<Vec<Located>> {
    if range_is_empty(start, end) {
        return Ok(Vec::new());
    }
    keydir
        .range::<[u8], _>((start, end))
        .take(limit)
        .map(|(k, e)| Ok((k.clone(), *e, file_of(files, e.file)?)))
        .collect()
}

impl Engine for Bitcask {
    type View = BitcaskView;

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.check_poison()?;
        let (entry, file) = {
            let s = self.read_state()?;
            match s.keydir.get(key) {
                None => return Ok(None),
                Some(e) => (*e, s.file(e.file)?),
            }
        };
        file.read_value(key, entry.offset, entry.value_size)
            .map(Some)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_poison()?;
        check_key(key)?;
        check_value(value)?;
        let mut w = self.lock_writer()?;
        self.write_batch_locked(&mut w, &[OpRef::Put(key, value)])
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.check_poison()?;
        check_key(key)?;
        let mut w = self.lock_writer()?;
        self.write_batch_locked(&mut w, &[OpRef::Delete(key)])
    }

    fn write_batch(&self, ops: &[Op]) -> Result<()> {
        self.check_poison()?;
        check_batch(ops)?;
        if ops.is_empty() {
            return Ok(());
        }
        let ops: Vec<OpRef<'_>> = ops
            .iter()
            .map(|op| match op {
                Op::Put(key, value) => OpRef::Put(key, value),
                Op::Delete(key) => OpRef::Delete(key),
            })
            .collect();
        let mut w = self.lock_writer()?;
        self.write_batch_locked(&mut w, &ops)
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        self.check_poison()?;
        let pairs = {
            let s = self.read_state()?;
            collect_range(&s.keydir, &s.files, start, end, limit)?
        };
        Self::read_values(pairs)
    }

    /// A view clones the keydir (`O(keys)`: reference counts, no key
    /// bytes) and the file handles it points into.
    fn view(&self) -> Result<BitcaskView> {
        self.check_poison()?;
        let s = self.read_state()?;
        Ok(BitcaskView {
            keydir: s.keydir.clone(),
            files: s.files.clone(),
        })
    }

    fn sync(&self) -> Result<()> {
        self.check_poison()?;
        // Files rotated out were fsynced when they were; only the active one
        // can hold unsynced writes. The fsync runs without the writer lock.
        let active = self.lock_writer()?.active.clone();
        active
            .file
            .sync_data()
            .at(&active.path)
            .map_err(|e| self.fatal(e))
    }

    fn merge(&self) -> Result<()> {
        self.merge_files().map(|_| ())
    }

    fn status(&self) -> Result<Status> {
        self.check_poison()?;
        let s = self.read_state()?;
        let mut status = Status {
            keys: s.keydir.len() as u64,
            files: s.files.len() as u64,
            keydir_bytes: s.keydir.len() as u64 * KEYDIR_BYTES_PER_KEY + s.key_bytes,
            ..Status::default()
        };
        for (len, live) in s.space.values() {
            status.disk_bytes += len;
            status.live_bytes += live;
            status.dead_bytes += len
                .saturating_sub(format::HEADER_LEN as u64)
                .saturating_sub(*live);
        }
        Ok(status)
    }
}

/// A point-in-time view of a [`Bitcask`]: a copy of the keydir and the
/// data files it points into (kept open, so readable even after a merge
/// deletes them). Records are never rewritten in place, so later writes
/// cannot change what the view reads.
#[derive(Clone)]
pub struct BitcaskView {
    keydir: Keydir,
    files: BTreeMap<u32, Arc<DataFile>>,
}

impl std::fmt::Debug for BitcaskView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcaskView")
            .field("keys", &self.keydir.len())
            .finish_non_exhaustive()
    }
}

impl View for BitcaskView {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        match self.keydir.get(key) {
            None => Ok(None),
            Some(e) => file_of(&self.files, e.file)?
                .read_value(key, e.offset, e.value_size)
                .map(Some),
        }
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        Bitcask::read_values(collect_range(&self.keydir, &self.files, start, end, limit)?)
    }

    fn iter(&self) -> Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + Send + '_> {
        Box::new(self.keydir.iter().map(|(k, e)| {
            let value = file_of(&self.files, e.file)?.read_value(k, e.offset, e.value_size)?;
            Ok((Bytes::copy_from_slice(k), value))
        }))
    }

    fn len(&self) -> u64 {
        self.keydir.len() as u64
    }
}
