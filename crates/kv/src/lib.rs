//! The replicated key-value state machine of raftkv.
//!
//! Raft orders the commands; this crate gives them meaning. The server
//! hands every committed [`raft::Entry`] to [`StateMachine::apply`], in log
//! order, and answers the waiting client with the [`Response`] it returns.
//! Every replica applying the same entries reaches the same state: applying
//! reads nothing but the entry and the state (no clock, no randomness, no
//! per-node configuration), and [`StateDigest`] lets tests check it.
//!
//! ```
//! use bitcask::MemEngine;
//! use kv::{Applied, Command, Reply, Request, StateMachine};
//! use raft::{Entry, EntryKind};
//! use std::sync::Arc;
//!
//! let mut sm = StateMachine::open(Arc::new(MemEngine::new())).unwrap();
//! let put = Request::without_session(Command::Put {
//!     key: b"greeting".to_vec(),
//!     value: b"hello".to_vec(),
//!     prev_kv: false,
//! });
//! let entry = Entry { index: 1, term: 1, kind: EntryKind::Normal, data: put.encode().into() };
//! let Applied::Response(response) = sm.apply(&entry).unwrap() else { panic!() };
//! assert_eq!(response.index, 1);
//! assert_eq!(response.result, Ok(Reply::Put { prev: None }));
//! let kv = sm.get(b"greeting").unwrap().unwrap();
//! assert_eq!((kv.value.as_slice(), kv.create_index, kv.version), (&b"hello"[..], 1, 1));
//! // Replaying the same entry (e.g. after a restart) does nothing.
//! assert_eq!(sm.apply(&entry).unwrap(), Applied::Skipped { index: 1 });
//! ```
//!
//! # Entries
//!
//! - A Normal entry with empty data (a new leader's no-op) and a ConfChange
//!   entry (applied to the cluster configuration by the server) only
//!   advance the applied index: [`Applied::Empty`].
//! - A Normal entry with data holds one encoded [`Request`]:
//!   [`Applied::Response`]. Bytes that do not decode, or a command over a
//!   limit, give a refusal ([`CommandError`]) in the response, identical
//!   on every replica — never a divergence, never a panic.
//! - An entry at or below the applied index is skipped
//!   ([`Applied::Skipped`]); an entry beyond `applied + 1` is a
//!   [`FatalError::Gap`].
//! - Every entry's writes, its session changes and the new applied index
//!   (with its term) go to the engine in **one atomic batch**. After a
//!   crash the engine holds the state as of some applied index; the server
//!   replays the log above [`StateMachine::applied_index`] and nothing is
//!   applied twice. The engine makes its writes durable on
//!   [`StateMachine::sync`]: compact the Raft log only up to the index
//!   `sync` returns (or a durable snapshot's).
//! - [`StateMachine::apply_all`] applies a run of entries (one `Ready`'s
//!   worth) with the same results as `apply` one by one, in as few engine
//!   batches as the limits allow, each ending with the applied index of
//!   its last entry (a DeleteRange writes the batch before it first).
//! - [`FatalError`] from `apply` means the node must stop (an engine
//!   failure or corrupt data); carrying on could diverge.
//!
//! # Commands
//!
//! | command | effect | reply |
//! |---|---|---|
//! | `Put { key, value, prev_kv }` | sets the value | previous key-value if `prev_kv` |
//! | `Delete { key, prev_kv }` | removes the key | whether it existed, previous if `prev_kv` |
//! | `DeleteRange { start, end }` | removes keys in `start..end` (empty `end`: no bound; [`prefix_end`] for prefixes), at most [`DELETE_RANGE_KEYS_MAX`](limits::DELETE_RANGE_KEYS_MAX) or nothing | count removed |
//! | `Append { key, value }` | appends to the value, creating the key if absent | new length and version |
//! | `Txn { compares, success, failure }` | if every compare holds runs `success`, else `failure` | which branch, one result per op |
//! | `RegisterSession` | opens a session | its client id |
//!
//! Every key keeps its `create_index` (the entry that created it since its
//! last delete), `mod_index` (the entry that last changed it) and `version`
//! (1 at creation, +1 per change, restarting after a delete). Every
//! response carries the index at which its request applied.
//!
//! Transactions: compares look at the value (bytewise; false for every op
//! when the key is absent), the version or mod index (0 when absent), or
//! existence (`false < true`). Ops run in order and see the effects of the
//! ones before them; a put of the same key twice bumps its version twice.
//! A transaction is all or nothing: if it is refused (for example its
//! response would exceed [`RESPONSE_SIZE_MAX`](limits::RESPONSE_SIZE_MAX))
//! nothing changes.
//!
//! Keys are 1 to [`KEY_SIZE_MAX`](limits::KEY_SIZE_MAX) bytes, values at
//! most [`VALUE_SIZE_MAX`](limits::VALUE_SIZE_MAX) (an Append that would
//! grow past it is refused). All bounds are in [`limits`].
//!
//! # Sessions and exactly-once
//!
//! Sessions are **registered explicitly**: a client sends
//! `RegisterSession` (with client id 0) and gets back a client id, which
//! is the log index of that entry (unique, and the same on every replica).
//! It then numbers its writes `seq = 1, 2, 3...` and sends one at a time,
//! retrying a request with the same seq until it gets an answer. For each
//! session the state machine keeps the last seq and its response:
//!
//! - `seq > last`: applied, and its response remembered;
//! - `seq == last`: answered with the remembered response (the index in it
//!   is the original's), not applied again;
//! - `seq < last`: refused as [`CommandError::StaleRequest`];
//! - seq 0 in a session: [`CommandError::InvalidSeq`];
//! - an unknown client id: [`CommandError::UnknownSession`]. The session
//!   expired or was evicted: the client must register again, and the
//!   outcome of its last unanswered request is unknown.
//!
//! Why not create sessions implicitly on first use? Because after an
//! expiry, a retried request would silently start a fresh session and be
//! applied a second time; with explicit registration it is refused instead.
//!
//! Client id 0 means no session: the request is applied every time it is
//! committed (fine for reads and idempotent writes).
//!
//! Sessions expire by log index, never by a clock: before applying entry
//! `i`, every session last used more than
//! [`SESSION_IDLE_ENTRIES_MAX`](limits::SESSION_IDLE_ENTRIES_MAX) entries
//! before `i` is dropped; registering when
//! [`SESSIONS_MAX`](limits::SESSIONS_MAX) sessions are live evicts the least
//! recently used one (smallest last-use index, then smallest id). A request
//! using a session (a retry included) counts as a use. Sessions are stored
//! in the engine with the data, in the same batch, so a restart or a
//! snapshot keeps them. In memory the state machine keeps only each
//! session's last seq and last-use index (two `BTreeMap` entries, under
//! 100 bytes); the remembered response is read back from the engine for a
//! duplicate, so memory stays bounded whatever the responses' sizes.
//!
//! # Reads
//!
//! [`KvReader`] (from [`StateMachine::reader`]) is a cloneable handle that
//! reads through `&self` on any thread while the apply task applies: no
//! lock is needed around the state machine for reads. `get`, `scan`
//! (`start..end`, empty end = no bound, at most
//! [`SCAN_LIMIT_MAX`](limits::SCAN_LIMIT_MAX) results) and `scan_prefix`.
//! For a linearizable read, wait until `applied_index()` reaches the read
//! index, then read.
//!
//! # Request encoding (version 1)
//!
//! Primitives: `uvarint` is unsigned LEB128 (at most 10 bytes), `bytes` is
//! a `uvarint` length then the bytes, `bool` is one byte 0 or 1.
//!
//! ```text
//! request  = u8 version (1) | uvarint client_id | uvarint seq | command
//! command  = 1 put          | bytes key | bytes value | bool prev_kv
//!          | 2 delete       | bytes key | bool prev_kv
//!          | 3 delete_range | bytes start | bytes end
//!          | 4 append       | bytes key | bytes value
//!          | 5 txn          | uvarint n | n * compare | ops success | ops failure
//!          | 6 register_session
//! compare  = bytes key | u8 op (1 eq, 2 not_eq, 3 less, 4 greater) | target
//! target   = 1 value bytes | 2 version uvarint | 3 mod_index uvarint | 4 exists bool
//! ops      = uvarint n | n * op
//! op       = 1 put bytes key bytes value | 2 delete bytes key | 3 get bytes key
//! ```
//!
//! Trailing bytes, unknown tags and versions, bad bools, truncation and
//! overlong or overflowing varints are each a typed [`DecodeError`], so
//! every request has exactly one encoding. Responses have
//! their own encoding ([`Response::encode`]), used to store a session's
//! last response.
//!
//! # Key layout in the engine
//!
//! | engine key | value |
//! |---|---|
//! | `0x00` ++ user key | `u8` 1, `uvarint` create_index, mod_index, version, then the value |
//! | `0x01 'a'` | applied index and term (`uvarint`s) |
//! | `0x01 'f'` | state format version (1) |
//! | `0x01 'r'` | present only during a restore: its target index |
//! | `0x01 's'` ++ client id (`u64` big-endian) | session: `uvarint` last_seq, last_index, `bool`, the last response |
//!
//! User scans are bounded to `0x00..0x01`, so they never see internal keys.
//!
//! # Snapshots
//!
//! [`KvReader::snapshot`] reads one point-in-time engine view (applying may
//! go on) and yields chunks of at most
//! [`CHUNK_BYTES_MAX`](limits::CHUNK_BYTES_MAX) bytes, each with a magic,
//! a number, a length and a CRC32C; the items inside are a header (applied
//! index and term), every user record in key order, every session, and a
//! trailer with counts and the digest. The byte layout is in [`snapshot`].
//!
//! [`StateMachine::restore`] (or [`begin_restore`](StateMachine::begin_restore)
//! / [`Restore::push`] / [`Restore::finish`] to stream) checks the first
//! chunk, then writes a restore marker and removes the applied index in one
//! batch, clears the user keys and sessions, loads each chunk after checking
//! it (CRC, order, counts), checks the trailer's digest, and only then
//! writes the applied index and removes the marker in one batch and syncs.
//! A crash or a bad chunk in between leaves the marker: the state machine
//! then opens with [`restore_pending`](StateMachine::restore_pending) set,
//! refuses to apply or read, and the restore must be redone (keep the
//! snapshot until `restore` returns). A snapshot below the applied index is
//! refused before anything changes.
//!
//! # Driving it from the server
//!
//! 1. Open the engine, then [`StateMachine::open`]. If
//!    [`restore_pending`](StateMachine::restore_pending) is set, or the
//!    applied index is below the log store's snapshot index, restore the
//!    log store's snapshot first.
//! 2. The apply task owns the `StateMachine` and hands it the committed
//!    entries of each `Ready` with [`apply_all`](StateMachine::apply_all);
//!    it answers each waiting client with the `Response` of its entry
//!    (match by the entry's index and term: a duplicate's response carries
//!    the original's index). Any `Err` stops the node.
//! 3. Reads use [`KvReader`] clones on other tasks, no lock needed: for a
//!    linearizable read, wait until `applied_index()` reaches the read
//!    index.
//! 4. To compact the log: [`sync`](StateMachine::sync), then compact up to
//!    the index it returned. To send a snapshot: [`KvReader::snapshot`]
//!    (its `index()` and `term()` fill the snapshot metadata), stream or
//!    concatenate the chunks. To install one: `restore` or
//!    `begin_restore`/`push`/`finish`.
//! 5. [`StateMachine::engine_handle`] gives the engine for `merge()` and
//!    `status()`.
//!
//! # Digest
//!
//! [`KvReader::digest`]: a 64-bit hash of the applied index, every user
//! key-value with its metadata and every session (see [`digest`]). Two
//! replicas at the same applied index have the same digest.

mod codec;
pub mod command;
pub mod digest;
pub mod error;
pub mod keys;
pub mod limits;
mod machine;
pub mod response;
pub mod session;
pub mod snapshot;

pub use command::{
    check_key, check_range, check_value, prefix_end, Command, Compare, CompareOp, CompareTarget,
    Op, Request,
};
pub use digest::StateDigest;
pub use error::{CommandError, DecodeError, Error, FatalError, Result};
pub use machine::{Applied, KvReader, Restore, ScanPage, StateMachine};
pub use response::{KeyValue, OpResult, Reply, Response};
pub use session::SessionLimits;
pub use snapshot::{split_chunks, SnapshotStream};
