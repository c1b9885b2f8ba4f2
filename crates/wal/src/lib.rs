//! The Raft log on disk: a segmented write-ahead log that implements
//! [`raft::LogStore`].
//!
//! A [`Wal`] keeps a node's log entries, hard state (term, vote, commit) and
//! snapshot metadata as checksummed records in append-only segment files,
//! and each snapshot's opaque data in a file of its own. Writes go to a
//! user-space buffer; [`Wal::sync`] writes the buffer out and makes all of
//! it durable with one `fdatasync` (group commit). An in-memory index maps
//! every entry to its segment and offset, so any range is one `pread` away,
//! and the most recent entries are cached in memory.
//!
//! ```
//! use bytes::Bytes;
//! use raft::{Entry, EntryKind, HardState, LogStore};
//! use wal::{Options, Wal};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let opts = Options { segment_size_max: 1 << 20, ..Options::default() };
//! let (mut wal, report) = Wal::open(dir.path(), opts.clone()).unwrap();
//! println!("{report}"); // log what recovery found
//! let e = |index, term| Entry { index, term, kind: EntryKind::Normal, data: Bytes::from("x") };
//! wal.append(&[e(1, 1), e(2, 1), e(3, 1)]).unwrap();
//! wal.save_hard_state(&HardState { term: 1, vote: Some(1), commit: 2 }).unwrap();
//! wal.sync().unwrap(); // one fdatasync for all of it
//! assert_eq!(wal.durable_index(), 3);
//! wal.append(&[e(3, 2)]).unwrap(); // overwrite a conflicting suffix
//! assert_eq!(wal.term(3).unwrap(), 2);
//! drop(wal);
//!
//! let (wal, _) = Wal::open(dir.path(), opts).unwrap();
//! assert_eq!(LogStore::last_index(&wal), 3); // the overwrite was not synced...
//! assert!(matches!(wal.term(3).unwrap(), 1 | 2)); // ...so either may be there
//! ```
//!
//! # Files
//!
//! A WAL directory holds:
//! - `LOCK`: empty; locked (`flock`) while a `Wal` has the directory open;
//! - `<seq>.wal`: segments, `seq` as 20 decimal digits, consecutive;
//! - `snap-<seq>.snap`: the data of the latest snapshot;
//! - `*.tmp`: a file being created (a snapshot, or the next segment being
//!   preallocated); deleted on open.
//!
//! New files (segments, snapshots) are written as `*.tmp`, fsynced, renamed
//! into place, and the directory is fsynced. The directory is fsynced again
//! after files are deleted.
//!
//! Segments are **preallocated**: a new segment is its header followed by
//! zeros up to `segment_size_max`, written and fsynced before the rename
//! (on a background thread, started when the active segment is half full).
//! Records then overwrite blocks that already exist, so an `fdatasync`
//! flushes data only: no file-size or extent change, no file-system journal
//! commit (which on ext4 also waits for every other process's metadata).
//! On the development machine an fdatasync after an in-place write was
//! about 1.5-2x cheaper than after an append when the disk was quiet, and up
//! to 20x cheaper while other processes were creating files
//! (`docs/benchmarks.md`). When
//! a segment is closed it is cut to its written length and fsynced, so only
//! the last segment ends in zeros.
//!
//! # Segment format (version 1)
//!
//! All integers are little-endian. A segment is a 32-byte header followed by
//! records.
//!
//! ```text
//! header:  0..8   magic "RKVWAL\r\n"
//!          8..12  format version (u32) = 1
//!         12..16  reserved, zero
//!         16..24  segment sequence number (u64), equal to the file name's
//!         24..28  reserved, zero
//!         28..32  CRC32C of bytes 0..28 (u32)
//!
//!         32..    records, back to back; in the last segment they may be
//!                 followed by zeros to the end of the file (unwritten
//!                 preallocated space: a record never starts with 4 zero
//!                 bytes, since len >= 1)
//!
//! record:  0..4   len (u32): bytes of payload, 1..=RECORD_SIZE_MAX-9
//!          4..8   CRC32C (Castagnoli) of bytes 0..4, byte 8, and the payload
//!          8      kind (u8): 1 entry, 2 hard state, 3 snapshot
//!          9..    payload, `len` bytes:
//!
//! entry (kind 1):        0..8 index, 8..16 term, 16 entry kind (1 normal,
//!                        2 conf change), 17.. data (len - 17 bytes)
//! hard state (kind 2):   0..8 term, 8..16 vote (0 = none), 16..24 commit
//! snapshot (kind 3):     0..8 index, 8..16 term,
//!                        16 flags (bit 0: clear the whole log; others zero),
//!                        17..25 snapshot file seq, 25..33 data length,
//!                        33..37 data CRC32C,
//!                        then three id sets: voters, learners, outgoing
//!                        voters, each a u32 count followed by that many u64
//!                        node ids (ascending); nothing after them
//! ```
//!
//! A reader that finds a version above its own refuses the file with
//! [`Error::UnsupportedVersion`] (so does a reader of snapshot files).
//!
//! # Snapshot file format (version 1)
//!
//! ```text
//!  0..8   magic "RKVSNP\r\n"      8..12  format version (u32) = 1
//! 12..16  reserved, zero         16..24  snapshot index
//! 24..32  snapshot term          32..40  data length
//! 40..44  data CRC32C            44..48  CRC32C of bytes 0..44
//! 48..    data (opaque to the WAL)
//! ```
//!
//! # How the log is kept
//!
//! - **Overwriting a conflicting suffix.** There is no truncate record: an
//!   entry record with index `i` replaces every entry at or above `i`
//!   written before it. [`Wal::append`] starting at `i <= last_index()`
//!   drops the suffix from memory and appends the new records; recovery
//!   replays the same rule (see the `recovery` module). A crash before the
//!   new records are durable leaves the old suffix, which is a state the log
//!   really was in.
//! - **Compaction.** [`Wal::compact`] writes the snapshot data to
//!   `snap-<seq>.snap` (tmp, fsync, rename, fsync dir), appends a snapshot
//!   record and fsyncs it, deletes the previous snapshot file, and deletes
//!   every segment before the one holding the first remaining entry.
//!   Entries above the snapshot index stay readable. Each new segment starts
//!   with copies of the current hard-state and snapshot records, so the
//!   latest of both survive the deletion of older segments.
//! - **Installing a snapshot.** Like compaction; when the log does not hold
//!   the snapshot's index and term, the record's clear-log flag drops the
//!   whole log. The commit index is raised to the snapshot index.
//! - **Recovery.** Records are replayed oldest segment first with the rules
//!   above; at the end every entry above the snapshot index must be there
//!   (a gap means a lost segment: [`Error::Corrupt`]). In the last segment,
//!   zeros from a record boundary to the end of the file are unwritten
//!   preallocated space (a clean end). A bad record there is a *torn write*,
//!   cut off and reported in [`RecoveryReport::torn_tail`], when it cannot
//!   be durable data followed by more records: its header is incomplete; or
//!   its length is 0, too large or runs past the end of the file; or its
//!   checksum fails and only zeros follow its end — the last two only if no
//!   single flipped bit of the length field would make the record check out
//!   (a damaged length is corruption, not a tear). Every other bad record,
//!   and any bad record in an earlier segment (segments are cut to size and
//!   fsynced before the next is created), refuses the open with
//!   [`Error::Corrupt`] naming the file and byte offset, unless
//!   [`Options::repair`] is set: then the log is cut there, later segments
//!   are deleted, and [`RecoveryReport::repaired`] says what was dropped.
//!   Reads check checksums again; damage found then is an error, never
//!   data.
//! - **Failures are fatal.** A failed write or fsync poisons the `Wal`: every
//!   later call returns [`Error::Poisoned`]. After a failed fsync the kernel
//!   may have dropped the dirty pages, so retrying could report data durable
//!   that is not; the node must stop, and reopening reads back what is really
//!   on disk.
//!
//! # Syncing in parallel
//!
//! The leader may fsync its log while AppendEntries are in flight.
//! [`Wal::sync_handle`] writes the buffer to the active segment and returns
//! a [`SyncHandle`] (a duplicate of the segment's file descriptor and the
//! last index written); it is `Send`, so [`SyncHandle::sync`] can run on
//! another thread while the `Wal` keeps taking appends. Hand its result to
//! [`Wal::mark_durable`]; [`Wal::durable_index`] then tells which entries
//! count toward commit. This is safe because:
//! - segments are append-only: overwrites and snapshots add records and never
//!   truncate a file, so the bytes the handle covers are never rewritten;
//! - rotation fsyncs the old segment before starting a new one, so a handle
//!   to a segment that stopped being active still covers everything before
//!   its index;
//! - a compaction may delete the segment under an in-flight handle; its
//!   descriptor stays valid and its entries are below the snapshot anyway;
//! - [`Wal::mark_durable`] clamps the index to what is still in the log: if
//!   the suffix was overwritten since the handle was made, only the entries
//!   before the overwrite count.
//!
//! The server must (1) treat a sync error as fatal (the handle poisons the
//! `Wal` itself), (2) not count entries as durable before `mark_durable`
//! returns, and (3) not send replies that depend on a hard state saved
//! before `sync_handle` until that handle's sync finished. Any number of
//! handles may be in flight; marking them in any order is safe.
//!
//! # What it does not do
//!
//! - Segments are not recycled: each new one is zero-filled, which writes
//!   every byte of the log twice.
//! - A crash that persisted a later page of unsynced records but only part
//!   of an earlier one, in the last segment, is reported as corruption (it
//!   cannot be told from damage to durable data), so the open needs
//!   `repair`. (If the earlier page reads as zeros, it is cut as a torn
//!   tail.)
//! - `repair` cannot cut back past the latest snapshot record: the data file
//!   of the snapshot before it is already deleted, so such a cut still
//!   refuses to open (the snapshot file is reported missing).
//! - The in-memory index costs 32 bytes per entry in the log; compact to
//!   bound it.
//! - Data written but not synced is lost on drop (call [`Wal::sync`] before
//!   a clean shutdown).
//! - One writer per directory (a `LOCK` file enforces it).

mod error;
mod format;
pub mod limits;
mod recovery;
mod sync;
mod wal;

pub use error::{Error, Result};
pub use recovery::{RecoveryReport, Truncation};
pub use sync::{SyncHandle, Synced};
pub use wal::{Options, Wal};
