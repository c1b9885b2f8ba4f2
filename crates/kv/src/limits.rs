//! Every bound the state machine enforces, in one place.
//!
//! The limits that shape what a command *does* (sizes, counts, session
//! expiry) are part of the replicated semantics: every replica must use the
//! same values, or replicas could answer one entry differently and diverge.
//! They are therefore constants, not configuration. [`SessionLimits`] lets
//! tests shrink the session bounds; a real cluster uses
//! [`SessionLimits::default`] on every node.
//!
//! [`SessionLimits`]: crate::SessionLimits
//! [`SessionLimits::default`]: crate::SessionLimits::default

/// Largest user key, in bytes. Empty keys are refused too.
pub const KEY_SIZE_MAX: usize = 4 * 1024;

/// Largest value, in bytes (also the largest value an Append may grow to).
pub const VALUE_SIZE_MAX: usize = 1024 * 1024;

/// Largest encoded request, in bytes. A request over this decodes to an
/// error response.
pub const REQUEST_SIZE_MAX: usize = 4 * 1024 * 1024;

/// Most compares in one transaction.
pub const COMPARES_PER_TXN_MAX: usize = 64;

/// Most operations in one branch (success or failure) of a transaction.
pub const OPS_PER_TXN_MAX: usize = 64;

/// Largest encoded response (e.g. a transaction with many Gets). A command
/// whose response would exceed this fails with
/// [`CommandError::ResponseTooLarge`](crate::CommandError::ResponseTooLarge)
/// and changes nothing. Keeps cached session responses and snapshot chunks
/// bounded.
pub const RESPONSE_SIZE_MAX: usize = 2 * 1024 * 1024;

/// Most keys one DeleteRange may remove. A range holding more fails with
/// [`CommandError::RangeTooLarge`](crate::CommandError::RangeTooLarge) and
/// removes nothing (delete it in pieces). Bounds the size of one engine
/// batch.
pub const DELETE_RANGE_KEYS_MAX: usize = 10_000;

/// Most key-values one scan returns.
pub const SCAN_LIMIT_MAX: usize = 10_000;

/// Most key-values a scan reads from the engine at once (a page is read in
/// such batches, so a page of large values holds little beyond its bytes).
pub const SCAN_BATCH_KEYS_MAX: usize = 64;

/// Key-values a scan reads in its first batch, before it has seen how
/// large the values are.
pub const SCAN_FIRST_BATCH_KEYS: usize = 8;

/// Bytes a scan page counts per key beyond the key and value (the
/// metadata and framing of one key-value in a response).
pub const SCAN_ITEM_OVERHEAD: usize = 64;

/// Most live client sessions. Registering one more evicts the session used
/// least recently (smallest last-used log index).
pub const SESSIONS_MAX: usize = 16_384;

/// A session not used for more than this many log entries is dropped.
pub const SESSION_IDLE_ENTRIES_MAX: u64 = 10_000_000;

/// Largest snapshot chunk, header and checksum included.
pub const CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Bytes of chunk framing: magic (4), format version (1), chunk number (4),
/// flags (1), payload length (4), CRC32C (4).
pub const CHUNK_OVERHEAD: usize = 4 + 1 + 4 + 1 + 4 + 4;

/// The largest single item a snapshot payload may hold: a session record
/// with a cached response, or a user record, plus tags and length prefixes.
pub const SNAPSHOT_ITEM_SIZE_MAX: usize = RESPONSE_SIZE_MAX + 64;

// A snapshot chunk always has room for any single item.
const _: () = assert!(SNAPSHOT_ITEM_SIZE_MAX + CHUNK_OVERHEAD <= CHUNK_BYTES_MAX);
// A user record (key + value + metadata) fits in one snapshot item.
const _: () = assert!(KEY_SIZE_MAX + VALUE_SIZE_MAX + 64 <= SNAPSHOT_ITEM_SIZE_MAX);
// A Put with prev_kv always has room for its response.
const _: () = assert!(KEY_SIZE_MAX + VALUE_SIZE_MAX + 64 <= RESPONSE_SIZE_MAX);
// A request can carry at least one maximal put.
const _: () = assert!(KEY_SIZE_MAX + VALUE_SIZE_MAX + 64 <= REQUEST_SIZE_MAX);

/// `apply_all` writes its batch before it holds this many engine
/// operations...
pub const APPLY_BATCH_OPS_MAX: usize = 16 * 1024;

/// ...or this many bytes of keys and values.
pub const APPLY_BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Keys whose version the state machine keeps in memory, so that a put
/// needs no read of the previous record (see `machine::meta`): ~80 bytes
/// each plus the key, so a few MiB at most...
pub const META_CACHE_KEYS_MAX: usize = 64 * 1024;

/// ...and this many bytes of those keys in all.
pub const META_CACHE_KEY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Engine record overhead assumed per operation in the bounds below.
const ENGINE_OP_OVERHEAD: usize = 64;

/// The most engine operations one entry adds to a batch: a DeleteRange's
/// deletes or a transaction's puts, plus expired or evicted sessions, the
/// session record and the applied index.
pub const ENTRY_OPS_MAX: usize = max(DELETE_RANGE_KEYS_MAX, OPS_PER_TXN_MAX) + SESSIONS_MAX + 2;

/// The most bytes one entry adds to a batch (keys of a DeleteRange or the
/// whole request, a session record with its response, expired session
/// keys), headers included.
pub const ENTRY_BYTES_MAX: usize =
    max(DELETE_RANGE_KEYS_MAX * (KEY_SIZE_MAX + 1), REQUEST_SIZE_MAX)
        + RESPONSE_SIZE_MAX
        + 64
        + SESSIONS_MAX * 10
        + ENTRY_OPS_MAX * ENGINE_OP_OVERHEAD;

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

// A batch, flushed once it reaches the bounds above, plus one more entry
// always fits in one engine write batch.
const _: () = assert!(APPLY_BATCH_OPS_MAX + ENTRY_OPS_MAX <= bitcask::limits::batch_ops_max);
const _: () = assert!(
    APPLY_BATCH_BYTES_MAX + APPLY_BATCH_OPS_MAX * ENGINE_OP_OVERHEAD + ENTRY_BYTES_MAX
        <= bitcask::limits::batch_size_max
);
// Our keys and values are within the engine's (one byte of key prefix, a
// few of record header).
const _: () = assert!(KEY_SIZE_MAX + 16 <= bitcask::limits::key_size_max);
const _: () = assert!(RESPONSE_SIZE_MAX + 64 <= bitcask::limits::value_size_max);
