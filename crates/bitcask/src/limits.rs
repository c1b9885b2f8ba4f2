//! The engine's bounds, in one place.
//!
//! Record offsets inside a data file are stored as `u32` in the keydir (to
//! keep it small), so a data file never grows past 4 GiB; the constants are
//! tied together below so that this holds for any accepted write.

#![allow(non_upper_case_globals)] // Limits are named `thing_max` (see STYLE.md).

/// The largest key, in bytes. Keys are kept in memory (the keydir), so they
/// are meant to be small.
pub const key_size_max: usize = 64 * 1024;

/// The largest value, in bytes.
pub const value_size_max: usize = 32 * 1024 * 1024;

/// The largest write batch ([`Engine::write_batch`](crate::Engine::write_batch)),
/// in encoded bytes (record headers included). A batch is written to one
/// data file, so it is bounded by the file size.
pub const batch_size_max: usize = 128 * 1024 * 1024;

/// The most operations in one write batch.
pub const batch_ops_max: usize = 1024 * 1024;

/// The largest `file_size_max` an [`Options`](crate::Options) may ask for.
/// A file is rotated before a write would take it past its limit, but one
/// batch always fits in an otherwise empty file, so a file is at most
/// `file_size_max + batch_size_max` bytes long.
pub const file_size_max: u64 = 1024 * 1024 * 1024;

/// The default size at which the active data file is rotated.
pub const file_size_default: u64 = 256 * 1024 * 1024;

/// The most background threads writing hint files at once; a rotation
/// beyond that waits for the oldest.
pub const hint_threads_max: usize = 4;

/// The most keydir entries a merge switches over per hold of the write
/// lock (a few hundred microseconds), so reads and writes are not held up
/// for the whole switch.
pub const merge_switch_keys_max: usize = 4096;

// Every offset in a data file fits in the keydir's `u32`.
const _: () = assert!(file_size_max + batch_size_max as u64 <= u32::MAX as u64);
// One record of maximal size fits in a batch.
const _: () = assert!(key_size_max + value_size_max + 64 <= batch_size_max);
