//! The [`Wal`]: segments on disk, the in-memory index of entry positions,
//! the recent-entry cache, group commit and compaction.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use raft::{
    ConfState, Entry, HardState, Index, LogStore, Snapshot, SnapshotMeta, StorageResult, Term,
};

use crate::error::{Error, Result};
use crate::format::{self, SnapFile, SnapRecord};
use crate::limits;
use crate::recovery::{self, RecoveryReport};
use crate::sync::{Poison, SyncHandle, Synced};

mod read;
mod snapshot;
#[cfg(test)]
mod tests;

/// How a [`Wal`] is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Start a new segment once the active one reaches this many bytes
    /// (a single record larger than this still fits in a segment of its
    /// own). Between [`limits::SEGMENT_SIZE_MIN`] and
    /// [`limits::SEGMENT_SIZE_MAX`].
    pub segment_size_max: u64,
    /// On finding a damaged record that is not a torn tail, cut the log
    /// there (deleting later segments) instead of refusing to open. The cut
    /// is reported in [`RecoveryReport::repaired`]. Data after the cut is
    /// lost: use only when an operator decided so.
    pub repair: bool,
    /// How many of the most recent entries are kept in memory, so the
    /// leader replicates them without reading the disk. 0 disables the
    /// cache.
    pub cache_entries_max: usize,
    /// A bound on the bytes of data the cache holds.
    pub cache_bytes_max: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_size_max: limits::SEGMENT_SIZE_DEFAULT,
            repair: false,
            cache_entries_max: 4096,
            cache_bytes_max: 16 * 1024 * 1024,
        }
    }
}

/// An open segment file.
#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    file: File,
    /// Bytes in the file. For the active segment, bytes written out of the
    /// user-space buffer so far.
    len: u64,
}

/// Where an entry's record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub seq: u64,
    pub offset: u64,
    /// The record's size, header included.
    pub len: u32,
    pub term: Term,
}

/// The Raft log, hard state and snapshot on disk. See the crate docs.
pub struct Wal {
    dir: PathBuf,
    opts: Options,
    /// Held for the lifetime of the `Wal`: an exclusive lock on `LOCK`.
    _lock: File,
    /// Ascending and consecutive by `seq`; the last one is active.
    segments: VecDeque<Segment>,
    /// Records not yet written to the active segment.
    buf: Vec<u8>,
    /// Bytes written to the active segment since its last fsync.
    dirty: bool,

    snap: SnapshotMeta,
    snap_file: Option<SnapFile>,
    next_snap_seq: u64,
    hard_state: HardState,
    /// Segments holding the latest hard-state and snapshot records (0: none
    /// written); they must not be deleted before the records are copied.
    hs_seq: u64,
    snap_seq: u64,
    /// `locs[i]` is the entry at index `snap.index + 1 + i`.
    locs: VecDeque<Loc>,
    /// The last `cache.len()` entries of the log.
    cache: VecDeque<Entry>,
    cache_bytes: u64,

    /// Entries up to here (of the log as it is now) are on disk.
    durable: Index,
    /// Counts overwrites of the log (appends that replaced a suffix, and
    /// snapshots that dropped the whole log).
    overwrite_seq: u64,
    /// `(overwrite_seq, last index kept)` of recent overwrites.
    overwrites: VecDeque<(u64, Index)>,

    poison: Poison,
    /// The next segment, being preallocated on a thread of its own.
    next_segment: Option<(u64, std::thread::JoinHandle<Result<File>>)>,
    #[cfg(test)]
    fail_next_sync: bool,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("snapshot_index", &self.snap.index)
            .field("last_index", &self.last_index())
            .field("durable_index", &self.durable_index())
            .field("buffered_bytes", &self.buf.len())
            .field("poisoned", &self.poison.get())
            .finish()
    }
}

// The server moves the WAL and its sync handles between threads.
const _: () = {
    const fn send<T: Send>() {}
    send::<Wal>();
    send::<SyncHandle>();
};

impl Drop for Wal {
    fn drop(&mut self) {
        // Do not leave a thread writing into the directory behind (a new
        // `Wal` may open it right away); its file is deleted on open.
        if let Some((_, thread)) = self.next_segment.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

pub(crate) fn snapshot_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snap-{seq:020}.snap"))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Write `chunks` to `path` through a temporary file: write, fsync, rename,
/// fsync the directory. Returns the file, open for reading and writing.
/// Create segment `seq` as `<seq>.wal.tmp`: the header, then zeros up to
/// `size` bytes, fsynced. Writing into blocks that already exist lets a
/// later `fdatasync` skip the file-system journal (no size or extent
/// change), which makes it several times faster and keeps it from waiting
/// on other processes' metadata.
fn preallocate(dir: &Path, seq: u64, size: u64) -> Result<File> {
    let path = tmp_path(&segment_path(dir, seq));
    let r = preallocate_at(&path, seq, size);
    if r.is_err() {
        // A failed attempt (say, the disk is full) leaves no partial file
        // holding space (recovery would remove it too, at the next open).
        let _ = fs::remove_file(&path);
    }
    r
}

fn preallocate_at(path: &Path, seq: u64, size: u64) -> Result<File> {
    let path = path.to_path_buf();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| Error::io("create", &path, e))?;
    let header = format::encode_segment_header(seq);
    f.write_all(&header)
        .map_err(|e| Error::io("write", &path, e))?;
    let zeros = vec![0u8; limits::PREALLOCATE_CHUNK];
    let mut left = size.saturating_sub(header.len() as u64);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])
            .map_err(|e| Error::io("write", &path, e))?;
        left -= n as u64;
    }
    f.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
    Ok(f)
}

fn create_durably(dir: &Path, path: &Path, chunks: &[&[u8]]) -> Result<File> {
    let tmp = tmp_path(path);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    for c in chunks {
        f.write_all(c).map_err(|e| Error::io("write", &tmp, e))?;
    }
    f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e))?;
    fsync_dir(dir)?;
    Ok(f)
}

impl Wal {
    /// Open (or create) the WAL in `dir`, recovering what is on disk. Log the
    /// returned report: it says what a torn tail or a repair cut off.
    ///
    /// # Errors
    /// [`Error::Corrupt`] with the file and byte offset of damage that is
    /// not a torn tail (unless `opts.repair`); [`Error::UnsupportedVersion`]
    /// for files of a newer format; [`Error::Locked`] if the directory is in
    /// use; [`Error::Io`]; [`Error::Invalid`] for bad options.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<(Wal, RecoveryReport)> {
        let dir = dir.as_ref().to_path_buf();
        if !(limits::SEGMENT_SIZE_MIN..=limits::SEGMENT_SIZE_MAX).contains(&opts.segment_size_max) {
            return Err(Error::Invalid(format!(
                "segment_size_max {} outside {}..={}",
                opts.segment_size_max,
                limits::SEGMENT_SIZE_MIN,
                limits::SEGMENT_SIZE_MAX
            )));
        }
        if opts.cache_entries_max > limits::CACHE_ENTRIES_MAX
            || opts.cache_bytes_max > limits::CACHE_BYTES_MAX
        {
            return Err(Error::Invalid(format!(
                "cache limits {} entries / {} bytes above {} / {}",
                opts.cache_entries_max,
                opts.cache_bytes_max,
                limits::CACHE_ENTRIES_MAX,
                limits::CACHE_BYTES_MAX
            )));
        }
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
        }
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { dir }),
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", &lock_path, e)),
        }

        let rec = recovery::recover(&dir, opts.repair)?;
        let mut report = rec.report;
        let mut segments = VecDeque::new();
        for &(seq, len) in &rec.segments {
            let path = segment_path(&dir, seq);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            segments.push_back(Segment {
                seq,
                path,
                file,
                len,
            });
        }
        let replay = rec.replay;
        let mut wal = Wal {
            dir,
            opts,
            _lock: lock,
            segments,
            buf: Vec::new(),
            dirty: false,
            snap: replay.snap,
            snap_file: replay.snap_file,
            next_snap_seq: rec.next_snap_seq,
            hard_state: replay.hard_state,
            hs_seq: replay.hs_seq,
            snap_seq: replay.snap_seq,
            locs: replay.locs,
            cache: VecDeque::new(),
            cache_bytes: 0,
            durable: 0,
            overwrite_seq: 0,
            overwrites: VecDeque::new(),
            poison: Arc::default(),
            next_segment: None,
            #[cfg(test)]
            fail_next_sync: false,
        };
        if wal.segments.is_empty() {
            wal.new_segment(1)?;
            // After a repair that deleted every segment, the state replayed
            // from them must be written again.
            wal.write_state_copies();
            wal.sync_active()?;
        } else {
            // What was read back may still sit in the page cache only (the
            // process crashed, not the machine): make it durable before
            // counting it as such.
            let active = wal.active();
            active
                .file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &active.path, e))?;
        }
        wal.durable = wal.last_index();
        wal.remove_obsolete_segments()?;
        report.segments = wal.segments.len();
        report.entries = wal.locs.len() as u64;
        report.first_index = wal.first_index();
        report.last_index = wal.last_index();
        report.snapshot_index = wal.snap.index;
        Ok((wal, report))
    }

    /// The directory the WAL lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last saved hard state (durable once synced).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The highest index `i` such that entries `first_index()..=i` of the
    /// log as it is now are on disk (or the snapshot index if none is).
    pub fn durable_index(&self) -> Index {
        self.durable.max(self.snap.index)
    }

    /// Whether an earlier failure poisoned the WAL.
    pub fn is_poisoned(&self) -> bool {
        self.poison.get().is_some()
    }

    fn check_poison(&self) -> Result<()> {
        match self.poison.get() {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Poison the WAL if `r` is an error, and pass it on.
    fn poison_on_err<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            let _ = self.poison.set(e.to_string());
        }
        r
    }

    fn active(&self) -> &Segment {
        // There is always an active segment: `open` makes one.
        &self.segments[self.segments.len() - 1]
    }

    fn segment(&self, seq: u64) -> Option<&Segment> {
        let first = self.segments.front()?.seq;
        self.segments.get(seq.checked_sub(first)? as usize)
    }

    pub fn first_index(&self) -> Index {
        self.snap.index + 1
    }

    pub fn last_index(&self) -> Index {
        self.snap.index + self.locs.len() as Index
    }

    /// See [`LogStore::append`]. Entries go to the user-space buffer (and to
    /// the file once the buffer is full); none is durable before a sync.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a hole or a rewrite of the snapshot,
    /// [`Error::EntryTooLarge`] (nothing is written then); I/O errors poison.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.check_poison()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for w in entries.windows(2) {
            if w[1].index != w[0].index + 1 {
                return Err(Error::Invalid(format!(
                    "entries not contiguous: {} then {}",
                    w[0].index, w[1].index
                )));
            }
        }
        if first.index <= self.snap.index || first.index > self.last_index() + 1 {
            return Err(Error::Invalid(format!(
                "append at {} outside {}..={}",
                first.index,
                self.snap.index + 1,
                self.last_index() + 1
            )));
        }
        for e in entries {
            if e.data.len() as u64 > limits::ENTRY_DATA_SIZE_MAX {
                return Err(Error::EntryTooLarge {
                    index: e.index,
                    size: e.data.len() as u64,
                    max: limits::ENTRY_DATA_SIZE_MAX,
                });
            }
        }
        if first.index <= self.last_index() {
            self.truncate_from(first.index);
        }
        let r = self.append_unchecked(entries);
        self.poison_on_err(r)
    }

    /// Drop the entries from `index` on from memory (the records stay in
    /// the files; later records override them on replay).
    fn truncate_from(&mut self, index: Index) {
        let last = self.last_index();
        let cache_first = last + 1 - self.cache.len() as Index;
        if index <= cache_first {
            self.cache.clear();
            self.cache_bytes = 0;
        } else {
            for e in self.cache.drain((index - cache_first) as usize..) {
                self.cache_bytes -= e.data.len() as u64;
            }
        }
        self.locs.truncate((index - self.snap.index - 1) as usize);
        self.note_overwrite(index - 1);
    }

    fn note_overwrite(&mut self, kept: Index) {
        self.durable = self.durable.min(kept);
        self.overwrite_seq += 1;
        self.overwrites.push_back((self.overwrite_seq, kept));
        if self.overwrites.len() > limits::OVERWRITES_TRACKED_MAX {
            self.overwrites.pop_front();
        }
    }

    fn append_unchecked(&mut self, entries: &[Entry]) -> Result<()> {
        for e in entries {
            let size = format::entry_record_size(e);
            self.maybe_rotate(size)?;
            let offset = self.active().len + self.buf.len() as u64;
            let len = format::encode_entry(&mut self.buf, e);
            self.locs.push_back(Loc {
                seq: self.active().seq,
                offset,
                len: len as u32,
                term: e.term,
            });
            self.cache_push(e);
            if self.buf.len() >= limits::WRITE_BUFFER_MAX {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn cache_push(&mut self, e: &Entry) {
        if self.opts.cache_entries_max == 0 {
            return;
        }
        self.cache_bytes += e.data.len() as u64;
        self.cache.push_back(e.clone());
        while self.cache.len() > self.opts.cache_entries_max
            || self.cache_bytes > self.opts.cache_bytes_max
        {
            match self.cache.pop_front() {
                Some(old) => self.cache_bytes -= old.data.len() as u64,
                None => break,
            }
        }
    }

    /// Start a new segment if a record of `size` bytes would push the
    /// active one past `segment_size_max` (an empty segment takes any
    /// record).
    fn maybe_rotate(&mut self, size: u64) -> Result<()> {
        let used = self.active().len + self.buf.len() as u64;
        if used > format::SEGMENT_HEADER_SIZE as u64 && used + size > self.opts.segment_size_max {
            self.rotate()?;
        } else if self.next_segment.is_none() && used * 2 >= self.opts.segment_size_max {
            // Half full: start preallocating the next segment.
            let (dir, seq, size) = (
                self.dir.clone(),
                self.active().seq + 1,
                self.opts.segment_size_max,
            );
            self.next_segment = Some((
                seq,
                std::thread::spawn(move || preallocate(&dir, seq, size)),
            ));
        }
        Ok(())
    }

    /// Close the active segment (write out and fsync it) and start the
    /// next. The new segment begins with copies of the hard state and the
    /// snapshot record, so older segments can be deleted once the entries
    /// in them are compacted.
    fn rotate(&mut self) -> Result<()> {
        self.flush()?;
        // Cut the preallocated zeros off and fsync size and data: only the
        // last segment may end in zeros.
        let seg = self.active();
        seg.file
            .set_len(seg.len)
            .map_err(|e| Error::io("truncate", &seg.path, e))?;
        seg.file
            .sync_all()
            .map_err(|e| Error::io("fsync", &seg.path, e))?;
        self.dirty = false;
        self.durable = self.last_index();
        let seq = self.active().seq + 1;
        self.new_segment(seq)?;
        self.write_state_copies();
        Ok(())
    }

    /// Copies of the hard state and the snapshot record, into the buffer.
    fn write_state_copies(&mut self) {
        let seq = self.active().seq;
        if self.hard_state != HardState::default() || self.hs_seq != 0 {
            format::encode_hard_state(&mut self.buf, &self.hard_state);
            self.hs_seq = seq;
        }
        if let Some(file) = self.snap_file {
            self.snap_seq = seq;
            format::encode_snapshot(
                &mut self.buf,
                &SnapRecord {
                    meta: self.snap.clone(),
                    clear_log: false,
                    file,
                },
            );
        }
    }

    /// Make segment `seq` the active one: take the file preallocated in the
    /// background (started when the active segment was half full) or make it
    /// now, rename it into place, fsync the directory.
    fn new_segment(&mut self, seq: u64) -> Result<()> {
        let path = segment_path(&self.dir, seq);
        let ready = match self.next_segment.take() {
            Some((s, thread)) => {
                let made = thread
                    .join()
                    .map_err(|_| {
                        Error::io(
                            "preallocate",
                            &path,
                            std::io::Error::other("thread panicked"),
                        )
                    })
                    .and_then(|r| r);
                if s == seq {
                    Some(made?)
                } else {
                    None
                }
            }
            None => None,
        };
        let file = match ready {
            Some(f) => f,
            None => preallocate(&self.dir, seq, self.opts.segment_size_max)?,
        };
        fs::rename(tmp_path(&path), &path).map_err(|e| Error::io("rename", &path, e))?;
        fsync_dir(&self.dir)?;
        let (dir, size) = (self.dir.clone(), self.opts.segment_size_max);
        self.next_segment = Some((
            seq + 1,
            std::thread::spawn(move || preallocate(&dir, seq + 1, size)),
        ));
        let header = format::encode_segment_header(seq);
        self.segments.push_back(Segment {
            seq,
            path,
            file,
            len: header.len() as u64,
        });
        Ok(())
    }

    /// Write the user-space buffer to the active segment (no fsync).
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let n = self.segments.len() - 1;
        let seg = &mut self.segments[n];
        seg.file
            .write_all_at(&self.buf, seg.len)
            .map_err(|e| Error::io("write", &seg.path, e))?;
        seg.len += self.buf.len() as u64;
        self.buf.clear();
        self.dirty = true;
        Ok(())
    }

    /// Flush and fdatasync the active segment; everything written is then
    /// durable.
    fn sync_active(&mut self) -> Result<()> {
        self.flush()?;
        if self.dirty {
            let seg = self.active();
            #[cfg(test)]
            if self.fail_next_sync {
                return Err(Error::io(
                    "fdatasync",
                    &seg.path,
                    std::io::Error::other("injected failure"),
                ));
            }
            seg.file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &seg.path, e))?;
            self.dirty = false;
        }
        self.durable = self.last_index();
        Ok(())
    }

    /// See [`LogStore::save_hard_state`]. Not durable before a sync.
    pub fn save_hard_state(&mut self, hs: &HardState) -> Result<()> {
        self.check_poison()?;
        if *hs == self.hard_state {
            return Ok(());
        }
        let r = self.maybe_rotate(format::RECORD_HEADER_SIZE as u64 + 24);
        self.poison_on_err(r)?;
        self.hard_state = *hs;
        self.hs_seq = self.active().seq;
        format::encode_hard_state(&mut self.buf, hs);
        Ok(())
    }

    /// Make everything written so far durable: write out the buffer, one
    /// `fdatasync`. A failure poisons the WAL.
    pub fn sync(&mut self) -> Result<()> {
        self.check_poison()?;
        let r = self.sync_active();
        self.poison_on_err(r)
    }

    /// Write the buffer out and return a handle whose [`SyncHandle::sync`]
    /// makes it durable, on any thread. See the crate docs ("Syncing in
    /// parallel") for how to use it safely.
    pub fn sync_handle(&mut self) -> Result<SyncHandle> {
        self.check_poison()?;
        let r = self.flush();
        self.poison_on_err(r)?;
        let seg = self.active();
        let file = seg
            .file
            .try_clone()
            .map_err(|e| Error::io("dup", &seg.path, e));
        let file = self.poison_on_err(file)?;
        Ok(SyncHandle {
            file,
            path: seg.path.clone(),
            index: self.last_index(),
            overwrite_seq: self.overwrite_seq,
            poison: self.poison.clone(),
        })
    }

    /// Record that a [`SyncHandle`] finished: entries it covered that are
    /// still in the log become durable. Safe with any interleaving of
    /// appends, overwrites, rotations and compactions since the handle was
    /// made.
    pub fn mark_durable(&mut self, done: Synced) -> Result<()> {
        self.check_poison()?;
        let mut cap = done.index.min(self.last_index());
        if done.overwrite_seq < self.overwrite_seq {
            match self.overwrites.front() {
                Some(&(oldest, _)) if oldest <= done.overwrite_seq + 1 => {
                    for &(seq, kept) in &self.overwrites {
                        if seq > done.overwrite_seq {
                            cap = cap.min(kept);
                        }
                    }
                }
                // Too many overwrites since: claim nothing.
                _ => return Ok(()),
            }
        }
        self.durable = self.durable.max(cap);
        Ok(())
    }

    /// The active segment's file and how many bytes of it are written
    /// (including the user-space buffer). The file itself is preallocated,
    /// so its size says nothing about this.
    pub fn active_segment(&self) -> (&Path, u64) {
        let seg = self.active();
        (&seg.path, seg.len + self.buf.len() as u64)
    }

    /// How many segment files the WAL uses now.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

impl LogStore for Wal {
    fn initial_state(&self) -> StorageResult<(HardState, ConfState)> {
        self.check_poison()?;
        Ok((self.hard_state, self.snap.conf.clone()))
    }

    fn first_index(&self) -> Index {
        Wal::first_index(self)
    }

    fn last_index(&self) -> Index {
        Wal::last_index(self)
    }

    fn term(&self, index: Index) -> StorageResult<Term> {
        Ok(Wal::term(self, index)?)
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> StorageResult<Vec<Entry>> {
        Ok(Wal::entries(self, lo, hi, max_bytes)?)
    }

    fn snapshot_meta(&self) -> SnapshotMeta {
        Wal::snapshot_meta(self)
    }

    fn snapshot(&self) -> StorageResult<Snapshot> {
        Ok(Wal::snapshot(self)?)
    }

    fn append(&mut self, entries: &[Entry]) -> StorageResult<()> {
        Ok(Wal::append(self, entries)?)
    }

    fn save_hard_state(&mut self, hs: &HardState) -> StorageResult<()> {
        Ok(Wal::save_hard_state(self, hs)?)
    }

    fn sync(&mut self) -> StorageResult<()> {
        Ok(Wal::sync(self)?)
    }

    fn compact(&mut self, meta: SnapshotMeta, data: Bytes) -> StorageResult<()> {
        Ok(Wal::compact(self, meta, data)?)
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> StorageResult<()> {
        Ok(Wal::install_snapshot(self, snapshot)?)
    }
}
