//! Every bound the WAL enforces, in one place.

/// The largest record (header + payload) the WAL writes or accepts when
/// reading. An entry whose record would be larger is refused with
/// [`Error::EntryTooLarge`](crate::Error::EntryTooLarge).
pub const RECORD_SIZE_MAX: u64 = 16 * 1024 * 1024;

/// The largest `data` an entry may carry: [`RECORD_SIZE_MAX`] minus the
/// record header and the entry's fixed fields.
pub const ENTRY_DATA_SIZE_MAX: u64 = RECORD_SIZE_MAX
    - crate::format::RECORD_HEADER_SIZE as u64
    - crate::format::ENTRY_FIXED_SIZE as u64;

/// The default size at which the active segment is closed and a new one
/// started.
pub const SEGMENT_SIZE_DEFAULT: u64 = 64 * 1024 * 1024;

/// The largest `Options::segment_size_max` accepted (offsets stay far from
/// any overflow, and recovery reads one segment at a time into memory).
pub const SEGMENT_SIZE_MAX: u64 = 1024 * 1024 * 1024;

/// The smallest `Options::segment_size_max` accepted (tests use tiny
/// segments to exercise rotation).
pub const SEGMENT_SIZE_MIN: u64 = 256;

/// Bytes buffered in user space before `append` writes them to the file
/// (without fsync). `sync` always writes the buffer out.
pub const WRITE_BUFFER_MAX: usize = 1024 * 1024;

/// Bytes of zeros written per call when preallocating a segment.
pub const PREALLOCATE_CHUNK: usize = 1024 * 1024;

/// The largest `Options::cache_entries_max` accepted.
pub const CACHE_ENTRIES_MAX: usize = 1 << 20;

/// The largest `Options::cache_bytes_max` accepted.
pub const CACHE_BYTES_MAX: u64 = 1 << 30;

/// Bytes read with one `pread` when `entries` reads a range from disk.
pub const READ_SPAN_MAX: u64 = 1024 * 1024;

/// How many recent log overwrites the WAL remembers to clamp the index a
/// late [`SyncHandle`](crate::SyncHandle) may mark durable. A handle older
/// than this many overwrites marks nothing durable (safe, conservative).
pub const OVERWRITES_TRACKED_MAX: usize = 256;

/// The most node ids one configuration (voters + learners + outgoing voters)
/// may hold in a snapshot record.
pub const CONF_MEMBERS_MAX: usize = 4096;

/// The largest snapshot payload `compact`/`install_snapshot` accept (it is
/// held in memory as one `Bytes` by the `LogStore` API anyway).
pub const SNAPSHOT_SIZE_MAX: u64 = 4 * 1024 * 1024 * 1024;

const _: () = assert!(SEGMENT_SIZE_MIN >= crate::format::SEGMENT_HEADER_SIZE as u64 * 2);
const _: () = assert!(SEGMENT_SIZE_DEFAULT <= SEGMENT_SIZE_MAX);
const _: () = assert!(RECORD_SIZE_MAX <= u32::MAX as u64);
const _: () = assert!(READ_SPAN_MAX <= RECORD_SIZE_MAX);
