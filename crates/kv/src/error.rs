//! Errors, split by who must hear about them.
//!
//! - [`CommandError`]: a command was refused. Deterministic: every replica
//!   refuses the same entry the same way, so the error travels back to the
//!   client inside a [`Response`](crate::Response) and the log goes on.
//! - [`FatalError`]: the node cannot apply or read safely (an engine I/O
//!   error, a corrupt record, an entry out of order). Carrying on could make
//!   this replica diverge from the others: the node must stop.
//! - [`Error`]: what reads and snapshots return, either of the two;
//!   [`Error::is_deterministic`] tells them apart.
//! - [`DecodeError`]: bytes that are not a valid encoding. Never a panic.

/// A byte string that is not a valid encoding.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is empty.
    #[error("empty input")]
    Empty,
    /// The first byte names a format version this build does not know.
    #[error("unsupported format version {version}")]
    UnsupportedVersion { version: u8 },
    /// The input ended in the middle of a field.
    #[error("input truncated at offset {offset}")]
    Truncated { offset: u64 },
    /// A varint longer than 10 bytes or above `u64::MAX`.
    #[error("varint overflows u64 at offset {offset}")]
    VarintOverflow { offset: u64 },
    /// A varint in a longer form than needed (a trailing zero group).
    #[error("overlong varint at offset {offset}")]
    OverlongVarint { offset: u64 },
    /// A bool byte other than 0 or 1.
    #[error("invalid bool byte {value} at offset {offset}")]
    InvalidBool { offset: u64, value: u8 },
    /// A tag byte that names no known variant.
    #[error("invalid {what} tag {tag} at offset {offset}")]
    InvalidTag {
        what: &'static str,
        offset: u64,
        tag: u8,
    },
    /// A length or count larger than the bytes left or a limit.
    #[error("length {length} at offset {offset} exceeds {max}")]
    LengthTooLarge { offset: u64, length: u64, max: u64 },
    /// Bytes left over after a complete value.
    #[error("{count} trailing bytes at offset {offset}")]
    TrailingBytes { offset: u64, count: u64 },
}

/// A refused command. Deterministic: the same entry gives the same error on
/// every replica. Returned to the client in its response; the state is
/// unchanged by the refused command (except that the client's session
/// remembers the answer, see the crate docs).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The entry's bytes are not a valid request.
    #[error("malformed request: {reason}")]
    Malformed { reason: String },
    /// The encoded request is larger than
    /// [`REQUEST_SIZE_MAX`](crate::limits::REQUEST_SIZE_MAX).
    #[error("request of {size} bytes exceeds {max}")]
    RequestTooLarge { size: u64, max: u64 },
    /// Keys must not be empty.
    #[error("empty key")]
    EmptyKey,
    /// A key over [`KEY_SIZE_MAX`](crate::limits::KEY_SIZE_MAX).
    #[error("key of {size} bytes exceeds {max}")]
    KeyTooLarge { size: u64, max: u64 },
    /// A value (or the result of an Append) over
    /// [`VALUE_SIZE_MAX`](crate::limits::VALUE_SIZE_MAX).
    #[error("value of {size} bytes exceeds {max}")]
    ValueTooLarge { size: u64, max: u64 },
    /// A transaction with too many compares.
    #[error("{count} compares exceed {max}")]
    TooManyCompares { count: u64, max: u64 },
    /// A transaction branch with too many operations.
    #[error("{count} operations exceed {max}")]
    TooManyOps { count: u64, max: u64 },
    /// A range whose (non-empty) end is below its start.
    #[error("invalid range: end is below start")]
    InvalidRange,
    /// A DeleteRange over more keys than
    /// [`DELETE_RANGE_KEYS_MAX`](crate::limits::DELETE_RANGE_KEYS_MAX).
    #[error("range holds more than {max} keys")]
    RangeTooLarge { max: u64 },
    /// The response would exceed
    /// [`RESPONSE_SIZE_MAX`](crate::limits::RESPONSE_SIZE_MAX).
    #[error("response of {size} bytes exceeds {max}")]
    ResponseTooLarge { size: u64, max: u64 },
    /// No live session has this client id: never registered, expired or
    /// evicted. The client must register a new session; whether its last
    /// request took effect is unknown.
    #[error("unknown or expired session {client_id}")]
    UnknownSession { client_id: u64 },
    /// A request older than the session's last one; its answer is gone.
    #[error("stale request: client {client_id} seq {seq} is below the last seq {last_seq}")]
    StaleRequest {
        client_id: u64,
        seq: u64,
        last_seq: u64,
    },
    /// Sequence numbers start at 1 within a session.
    #[error("sequence number 0 is invalid within a session")]
    InvalidSeq { client_id: u64 },
    /// A request with a session (client id not 0) that registers a session.
    #[error("RegisterSession must be sent with client id 0")]
    RegisterWithSession,
}

/// An error that must stop the node: going on could diverge this replica.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// The storage engine failed (I/O error, corrupt record...).
    #[error("storage engine error: {0}")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A record written by this crate no longer decodes.
    #[error("corrupt state machine record {what}: {source}")]
    Corrupt {
        what: String,
        #[source]
        source: DecodeError,
    },
    /// The stored state was written by a newer format version.
    #[error("state machine format version {found} is newer than {supported}")]
    UnsupportedFormat { found: u8, supported: u8 },
    /// An entry arrived out of order: applying it would skip entries.
    #[error("entry {index} applied after {applied}: log gap")]
    Gap { index: u64, applied: u64 },
    /// A snapshot being restored is damaged or inconsistent. The state is
    /// left marked as "restoring"; restore again from a good snapshot.
    #[error("bad snapshot: {0}")]
    Snapshot(String),
    /// A restore was interrupted and never finished: the state is
    /// incomplete and must be restored again before use.
    #[error("an interrupted snapshot restore (to index {index}) must be redone")]
    RestoreIncomplete { index: u64 },
}

impl FatalError {
    /// Wraps any engine error.
    pub fn engine<E: std::error::Error + Send + Sync + 'static>(e: E) -> FatalError {
        FatalError::Engine(Box::new(e))
    }
}

/// What reads, scans and snapshot calls return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments: tell the client (gRPC `InvalidArgument`).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The node must stop.
    #[error(transparent)]
    Fatal(#[from] FatalError),
}

impl Error {
    /// Whether the error is a deterministic answer for the client (`true`)
    /// or a fault that must stop the node (`false`).
    pub fn is_deterministic(&self) -> bool {
        matches!(self, Error::Command(_))
    }
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
