//! A Bitcask storage engine for the replicated state machine.
//!
//! The [`Engine`] trait is what the state machine (the `kv` crate) uses; its
//! contract is in [`engine`]. Two engines implement it: [`MemEngine`] keeps
//! everything in a `BTreeMap` (tests, and the model the disk engine is
//! checked against) and [`Bitcask`] keeps it on disk.
//!
//! ```
//! use bitcask::{Bitcask, Engine, Op, Options, View};
//! use bytes::Bytes;
//! use std::ops::Bound;
//!
//! let dir = tempfile::tempdir()?;
//! let db = Bitcask::open(dir.path(), Options::default())?;
//! db.put(b"a", b"1")?;
//! db.write_batch(&[
//!     Op::Put(Bytes::from("b"), Bytes::from("2")),
//!     Op::Delete(Bytes::from("a")),
//! ])?; // atomic across crashes
//! db.sync()?; // durable from here on
//! let view = db.view()?; // point in time
//! db.put(b"b", b"3")?;
//! assert_eq!(view.get(b"b")?, Some(Bytes::from("2")));
//! assert_eq!(db.scan(Bound::Unbounded, Bound::Unbounded, 10)?.len(), 1);
//! if db.needs_merge(0.5)? {
//!     db.merge()?;
//! }
//! drop(db);
//! let db = Bitcask::open(dir.path(), Options::default())?; // recovers
//! assert_eq!(db.get(b"b")?, Some(Bytes::from("3")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Design
//!
//! Bitcask (Sheehy and Smith, 2010): every write appends a record to the
//! *active* data file; an in-memory *keydir* maps each live key to the file
//! and offset of its newest record, so a read is one lookup and one
//! positioned read. When the active file reaches
//! [`Options::file_size_max`] it becomes immutable and a new one starts.
//! Overwritten and deleted records stay on disk as dead bytes until a
//! *merge* copies the live records of all immutable files into new files.
//!
//! The keydir is a `BTreeMap<Arc<[u8]>, Entry>`, so scans are ordered and a
//! point-in-time [`View`] is a clone of it (reference-count bumps, `O(keys)`)
//! together with `Arc`s of the open data files. Records are never changed in
//! place, so nothing a view points to changes; a file a merge deletes stays
//! readable through the view's open handle until the view is dropped.
//!
//! ## Files in the directory
//!
//! | name | what |
//! |---|---|
//! | `NNNNNNNNNN.data` | a data file, `N` its id (decimal, 10 digits) |
//! | `NNNNNNNNNN.hint` | the hint file of an immutable data file |
//! | `MERGE` | the merge manifest, present only while a merge switches over |
//! | `*.tmp` | a file being written; deleted on open |
//! | `LOCK` | `flock`ed while an engine has the directory open |
//!
//! The active file is the data file with the highest id among those without
//! a hint file: every immutable file gets its hint when it is rotated out
//! (written by a background thread, see below) or written by a merge (the
//! hint is renamed in before its data file). An immutable file whose hint
//! is not written yet when the process dies is older than the active file,
//! so the rule still finds the right one; opening scans it and writes its
//! hint.
//!
//! ## Data files
//!
//! A 16-byte header, then records back to back. All integers little-endian.
//!
//! ```text
//! header:  0..8   magic "RKVBCDAT"
//!          8..12  format version (u32), currently 1
//!          12..16 CRC32C of bytes 0..12
//!
//! record:  0..4   crc         CRC32C (Castagnoli) of bytes 4..end of record
//!          4..12  timestamp   u64, the engine's write sequence number
//!          12     flags       bit 0: tombstone (a delete; value_size is 0)
//!                             bit 1: batch continues (more records of the
//!                                    same write batch follow)
//!                             other bits: must be 0
//!          13..17 key_size    u32, 1..=limits::key_size_max
//!          17..21 value_size  u32, 0..=limits::value_size_max
//!          21..   key, then value
//! ```
//!
//! The timestamp is a logical clock, not wall time: it increases by one per
//! record across all files and restarts (recovery continues from the
//! highest one seen), so the state never depends on a clock. When several
//! records of one key exist (in different files, or an original and its
//! merge copy), the one with the highest timestamp wins.
//!
//! A write batch is encoded as consecutive records, all but the last with
//! the "batch continues" flag, and written with one `pwrite`; it never spans
//! two files. Recovery ignores a batch without its last record, so a batch
//! is atomic across crashes.
//!
//! ## Hint files
//!
//! One per immutable data file: where each record is, without the values, so
//! a restart reads a few bytes per key instead of the whole data file.
//!
//! ```text
//! header:  16 bytes as above, magic "RKVBCHNT"
//! entry:   0..8   timestamp    u64
//!          8      flags        bit 0: tombstone
//!          9..13  key_size     u32
//!          13..17 value_size   u32
//!          17..21 offset       u32, the record's offset in the data file
//!          21..   key
//! footer:  0..8   entry count  u64
//!          8..12  CRC32C of the whole file before these 4 bytes
//! ```
//!
//! A hint file lists every record of its data file, tombstones included (a
//! tombstone must keep hiding older records of its key in other files). A
//! hint file that fails any check (checksum, count, an entry outside the
//! data file, even a newer version) is ignored: the data file is scanned
//! and the hint rewritten ([`RecoveryReport::hints_rebuilt`]).
//!
//! ## Writing files safely
//!
//! New files (data files, hints, the manifest) are written under a `.tmp`
//! name, fsynced, renamed into place, and the directory fsynced. A rotated
//! file is fsynced before its successor is created, so a crash can never
//! keep a newer write and lose an older one, and [`Engine::sync`] only has
//! to fdatasync the active file. (The rotation's fsync runs on the writing
//! thread and takes as long as the file's unsynced data needs; calling
//! `sync` regularly keeps it short.) The hint file of a rotated-out file is
//! written by a background thread (at most [`limits::hint_threads_max`] at
//! once; [`Bitcask::wait_for_hints`] waits for them, and dropping the engine
//! does), so a rotation does not stall writes for a scan of the file. A failed write or fsync poisons the engine
//! ([`Error::Poisoned`] from every later call): after a failed fsync the
//! kernel may have dropped the dirty pages, so retrying is not safe.
//!
//! ## Recovery
//!
//! [`Bitcask::open`]: finish an interrupted merge (below); delete `*.tmp`
//! files and hints without a data file; load each immutable file's hint
//! (or scan it, strictly: any bad record is [`Error::Corrupt`] with the file
//! and offset); scan the active file, where a bad or missing tail is a torn
//! write *if no record with a good checksum follows it*: the file is
//! truncated at the start of the damaged record's batch, durably, and the
//! cut reported in [`RecoveryReport::truncated`]. Damage followed by good
//! records is corruption, not a torn write, and opening fails. Then the
//! newest record of each key wins, tombstones drop out, and the keydir is
//! built in one pass from the sorted entries.
//!
//! Every read checks the record's CRC, key, sizes and flags against the
//! keydir: damage found after opening is [`Error::Corrupt`], never wrong
//! data.
//!
//! ## Merge
//!
//! [`Bitcask::merge_files`] runs while reads and writes go on (from another
//! thread; one merge at a time):
//!
//! 1. Rotate the active file if it holds records, so everything written so
//!    far is immutable. The inputs are *all* immutable files.
//! 2. Walk the keydir (a read lock per chunk of keys) for the entries that
//!    point into the inputs, and copy those records, read in file and
//!    offset order with their checks, into new output files (same
//!    timestamp, flags cleared), with their hints. Dead records and
//!    tombstones are never read, so they are dropped; dropping tombstones is
//!    safe because every older record of their key is in an input too.
//! 3. Make the outputs durable and rename them in (hint first). A crash
//!    now leaves inputs and outputs both: the same records twice, resolved
//!    by timestamp.
//! 4. Commit: write the `MERGE` manifest listing the inputs. From here on a
//!    restart deletes the inputs before loading.
//! 5. Switch the keydir: an entry moves to its copy only if it still points
//!    at the copied record; keys written during the merge keep their newer
//!    entry (their copy is dead space in the output).
//! 6. Delete the inputs (views keep their open handles), then the manifest.
//!
//! Neither readers nor writers wait for the copying or the fsyncs; the
//! keydir switch takes the write lock for at most
//! [`limits::merge_switch_keys_max`] keys at a time.
//!
//! ## Space accounting
//!
//! For each file the engine knows its length and the bytes of live records
//! (records the keydir points to); dead bytes are the rest. [`Status`] sums
//! them; [`Bitcask::needs_merge`] compares the dead share with a ratio.
//!
//! ## Memory per key
//!
//! A keydir slot is a 16-byte `Arc<[u8]>` pointer and a 24-byte `Entry`
//! (timestamp u64, file u32, offset u32, value size u32); the key lives in
//! the `Arc`'s allocation (16 bytes of counts + the key). With `BTreeMap`
//! node headers and fill, measured (`examples/bench.rs`, counting
//! allocator, 16-byte keys): about 74 bytes per key when the keydir is
//! built at open and 94 when built by random inserts, key bytes included,
//! plus the allocator's own per-allocation overhead.
//! [`KEYDIR_BYTES_PER_KEY`] is the estimate [`Status::keydir_bytes`] uses.
//!
//! ## Not done
//!
//! - Values are read with one `pread` each; there is no cache of our own
//!   (the page cache serves hot data).
//! - A view costs `O(keys)` to take (the keydir clone, about 0.1-0.25 s
//!   for a million keys), and holds the state's read lock meanwhile, so
//!   writes wait that long.
//! - Merging always takes every immutable file, not just the dirtiest, and
//!   runs on the calling thread (call it from a thread of its own).
//! - Files a view still holds are unlinked but their space is freed only
//!   when the view is dropped.
//! - Every data file stays open (one descriptor each).
//! - Deciding whether damage in the active file is a torn tail reads the
//!   rest of the file into memory (at most one file) once, at open.
//! - Torn-tail repair cannot tell a bit flip in the *last* record of the
//!   active file from a torn write: that record is cut off (and reported),
//!   even if it had been synced.

mod bitcask;
pub mod engine;
pub mod error;
mod file;
mod format;
pub mod limits;
pub mod memory;
mod merge;
mod recovery;

pub use bitcask::{
    Bitcask, BitcaskView, MergeStats, Options, RecoveryReport, KEYDIR_BYTES_PER_KEY,
};
pub use engine::{check_key, check_value, Engine, Op, Status, View};
pub use error::{Error, Result};
pub use format::VERSION;
pub use memory::{MemEngine, MemView};
