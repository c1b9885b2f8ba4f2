//! Snapshots: a point-in-time image of the state machine as a stream of
//! self-checking chunks, and the loader that restores one.
//!
//! # Chunk format (version 1)
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `RKVS` |
//! | 1 | format version (1) |
//! | 4 | chunk number, `u32` little-endian, from 0 |
//! | 1 | flags: bit 0 set on the last chunk |
//! | 4 | payload length `n`, `u32` little-endian |
//! | n | payload: a sequence of items |
//! | 4 | CRC32C of every byte above, `u32` little-endian |
//!
//! Chunks are self-delimiting, so a whole snapshot may also be kept as the
//! concatenation of its chunks ([`split_chunks`]).
//!
//! # Items
//!
//! Each item is a tag byte followed by its fields:
//!
//! - `1` header: `uvarint` applied index, `uvarint` applied term. The first
//!   item of chunk 0, and only there.
//! - `2` user key-value: `bytes` user key, `bytes` user record (see
//!   [`keys`] for the record layout). Strictly ascending keys.
//! - `3` session: `uvarint` client id, `bytes` session record. After every
//!   key-value, strictly ascending ids.
//! - `4` trailer: `uvarint` key-value count, `uvarint` session count, the
//!   [digest](crate::StateDigest) hash as 8 bytes little-endian. The last
//!   item of the last chunk.
//!
//! A chunk holds at least one item and otherwise at most the target size
//! (at most [`CHUNK_BYTES_MAX`](crate::limits::CHUNK_BYTES_MAX)).

use std::collections::VecDeque;
use std::ops::Bound;

use bitcask::View;
use bytes::Bytes;

use crate::codec::{put_bytes, put_uvarint, Reader};
use crate::digest::Hasher;
use crate::error::{DecodeError, Error, FatalError};
use crate::keys::{
    self, decode_applied, session_id, Record, SessionRecord, APPLIED_KEY, SESSION_END,
    SESSION_PREFIX,
};
use crate::limits::{self, CHUNK_OVERHEAD};
use raft::{Index, Term};

const MAGIC: &[u8; 4] = b"RKVS";
/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;
const FLAG_LAST: u8 = 1;

const ITEM_HEADER: u8 = 1;
const ITEM_KV: u8 = 2;
const ITEM_SESSION: u8 = 3;
const ITEM_TRAILER: u8 = 4;

/// Engine pairs read per scan while streaming.
const PAGE_KEYS: usize = 256;

fn bad(msg: impl Into<String>) -> FatalError {
    FatalError::Snapshot(msg.into())
}

fn bad_decode(what: &str, e: DecodeError) -> FatalError {
    FatalError::Snapshot(format!("{what}: {e}"))
}

/// Frames one chunk.
fn frame(number: u32, last: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + CHUNK_OVERHEAD);
    out.extend_from_slice(MAGIC);
    out.push(SNAPSHOT_FORMAT_VERSION);
    out.extend_from_slice(&number.to_le_bytes());
    out.push(if last { FLAG_LAST } else { 0 });
    // The payload is below CHUNK_BYTES_MAX, far below u32::MAX.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A checked chunk.
pub(crate) struct Chunk<'a> {
    pub number: u32,
    pub last: bool,
    pub payload: &'a [u8],
}

/// The length of the chunk at the start of `buf` (header and CRC included),
/// from its length field.
fn chunk_len(buf: &[u8]) -> Result<usize, FatalError> {
    if buf.len() < CHUNK_OVERHEAD {
        return Err(bad(format!("chunk of {} bytes is too short", buf.len())));
    }
    let n = u32::from_le_bytes([buf[10], buf[11], buf[12], buf[13]]) as usize;
    if n + CHUNK_OVERHEAD > limits::CHUNK_BYTES_MAX {
        return Err(bad(format!("chunk payload of {n} bytes is over the limit")));
    }
    Ok(n + CHUNK_OVERHEAD)
}

/// Checks a chunk's framing and CRC.
pub(crate) fn parse_chunk(buf: &[u8]) -> Result<Chunk<'_>, FatalError> {
    let len = chunk_len(buf)?;
    if len != buf.len() {
        return Err(bad(format!(
            "chunk is {} bytes, its header says {len}",
            buf.len()
        )));
    }
    if &buf[0..4] != MAGIC {
        return Err(bad("bad chunk magic"));
    }
    if buf[4] != SNAPSHOT_FORMAT_VERSION {
        return Err(bad(format!("unsupported snapshot format {}", buf[4])));
    }
    let body = &buf[..len - 4];
    let stored = u32::from_le_bytes([buf[len - 4], buf[len - 3], buf[len - 2], buf[len - 1]]);
    let crc = crc32c::crc32c(body);
    if crc != stored {
        return Err(bad(format!(
            "chunk checksum mismatch (stored {stored:08x}, computed {crc:08x})"
        )));
    }
    let flags = buf[9];
    if flags & !FLAG_LAST != 0 {
        return Err(bad(format!("unknown chunk flags {flags:#x}")));
    }
    Ok(Chunk {
        number: u32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]),
        last: flags & FLAG_LAST != 0,
        payload: &buf[14..len - 4],
    })
}

/// Splits a concatenation of chunks (e.g. a snapshot kept as one blob) into
/// its chunks. Only the framing lengths are read here; each chunk is
/// checked when it is restored.
pub fn split_chunks(mut data: &[u8]) -> impl Iterator<Item = Result<&[u8], FatalError>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        match chunk_len(data) {
            Ok(len) if len <= data.len() => {
                let (chunk, rest) = data.split_at(len);
                data = rest;
                Some(Ok(chunk))
            }
            Ok(len) => {
                let n = data.len();
                data = &[];
                Some(Err(bad(format!(
                    "truncated snapshot: a chunk of {len} bytes has {n}"
                ))))
            }
            Err(e) => {
                data = &[];
                Some(Err(e))
            }
        }
    })
}

#[derive(Debug)]
enum Phase {
    Users,
    Sessions,
    Done,
}

/// A point-in-time snapshot being streamed: an iterator of chunks. It reads
/// from an engine [`View`], so applying may go on while it streams.
pub struct SnapshotStream<V: View> {
    view: V,
    index: Index,
    term: Term,
    chunk_target: usize,
    next_chunk: u32,
    phase: Phase,
    /// The last engine key read in the current phase.
    cursor: Option<Bytes>,
    page: VecDeque<(Bytes, Bytes)>,
    /// An item encoded but not yet placed in a chunk.
    held: Option<Vec<u8>>,
    kvs: u64,
    sessions: u64,
    hasher: Hasher,
    finished: bool,
}

impl<V: View> std::fmt::Debug for SnapshotStream<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStream")
            .field("index", &self.index)
            .field("term", &self.term)
            .field("next_chunk", &self.next_chunk)
            .finish_non_exhaustive()
    }
}

impl<V: View> SnapshotStream<V> {
    pub(crate) fn new(view: V, chunk_target: usize) -> Result<SnapshotStream<V>, FatalError> {
        let (index, term) = match view.get(APPLIED_KEY).map_err(FatalError::engine)? {
            Some(v) => decode_applied(&v)?,
            None => (0, 0),
        };
        Ok(SnapshotStream {
            view,
            index,
            term,
            chunk_target: chunk_target.clamp(CHUNK_OVERHEAD + 1, limits::CHUNK_BYTES_MAX),
            next_chunk: 0,
            phase: Phase::Users,
            cursor: None,
            page: VecDeque::new(),
            held: None,
            kvs: 0,
            sessions: 0,
            hasher: Hasher::new(index),
            finished: false,
        })
    }

    /// The applied index the snapshot is taken at.
    pub fn index(&self) -> Index {
        self.index
    }

    /// The term of the entry at [`index`](Self::index).
    pub fn term(&self) -> Term {
        self.term
    }

    /// The next item, encoded, or `None` when every pair was read.
    fn next_item(&mut self) -> Result<Option<Vec<u8>>, FatalError> {
        loop {
            if let Some((k, v)) = self.page.pop_front() {
                self.cursor = Some(k.clone());
                return self.encode_item(&k, &v).map(Some);
            }
            let (lo, hi): (&[u8], &[u8]) = match self.phase {
                Phase::Users => (&[keys::USER_PREFIX], &[keys::USER_PREFIX + 1]),
                Phase::Sessions => (SESSION_PREFIX, SESSION_END),
                Phase::Done => return Ok(None),
            };
            let start = match &self.cursor {
                Some(c) => Bound::Excluded(c.as_ref()),
                None => Bound::Included(lo),
            };
            let page = self
                .view
                .scan(start, Bound::Excluded(hi), PAGE_KEYS)
                .map_err(FatalError::engine)?;
            if page.is_empty() {
                self.phase = match self.phase {
                    Phase::Users => Phase::Sessions,
                    _ => Phase::Done,
                };
                self.cursor = None;
            }
            self.page = page.into();
        }
    }

    fn encode_item(&mut self, key: &[u8], value: &[u8]) -> Result<Vec<u8>, FatalError> {
        let mut out = Vec::with_capacity(key.len() + value.len() + 12);
        match self.phase {
            Phase::Users => {
                let user = keys::strip_user(key).unwrap_or(key);
                let record = Record::decode_stored(user, value)?;
                self.hasher.kv(user, &record);
                self.kvs += 1;
                out.push(ITEM_KV);
                put_bytes(&mut out, user);
                put_bytes(&mut out, value);
            }
            Phase::Sessions | Phase::Done => {
                let id = session_id(key)?;
                let record = SessionRecord::decode_stored(id, value)?;
                self.hasher.session(id, &record);
                self.sessions += 1;
                out.push(ITEM_SESSION);
                put_uvarint(&mut out, id);
                put_bytes(&mut out, value);
            }
        }
        Ok(out)
    }

    fn next_chunk(&mut self) -> Result<Vec<u8>, FatalError> {
        let room = self.chunk_target - CHUNK_OVERHEAD;
        let mut payload = Vec::new();
        if self.next_chunk == 0 {
            payload.push(ITEM_HEADER);
            put_uvarint(&mut payload, self.index);
            put_uvarint(&mut payload, self.term);
        }
        let mut last = false;
        loop {
            let item = match self.held.take() {
                Some(item) => item,
                None => match self.next_item()? {
                    Some(item) => item,
                    None => {
                        let mut trailer = vec![ITEM_TRAILER];
                        put_uvarint(&mut trailer, self.kvs);
                        put_uvarint(&mut trailer, self.sessions);
                        trailer.extend_from_slice(&self.hasher.finish().to_le_bytes());
                        if !payload.is_empty() && payload.len() + trailer.len() > room {
                            // The trailer goes in a chunk of its own.
                            self.phase = Phase::Done;
                            break;
                        }
                        payload.extend_from_slice(&trailer);
                        last = true;
                        break;
                    }
                },
            };
            if !payload.is_empty() && payload.len() + item.len() > room {
                self.held = Some(item);
                break;
            }
            payload.extend_from_slice(&item);
        }
        let chunk = frame(self.next_chunk, last, &payload);
        self.next_chunk += 1;
        self.finished = last;
        Ok(chunk)
    }
}

impl<V: View> Iterator for SnapshotStream<V> {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let chunk = self.next_chunk();
        if chunk.is_err() {
            self.finished = true;
        }
        Some(chunk.map_err(Error::from))
    }
}

/// One item of a parsed chunk payload.
#[derive(Debug)]
pub(crate) enum Item<'a> {
    Header { index: Index, term: Term },
    Kv { key: &'a [u8], record: &'a [u8] },
    Session { client_id: u64, record: &'a [u8] },
    Trailer { kvs: u64, sessions: u64, hash: u64 },
}

/// Parses every item of a payload.
pub(crate) fn parse_items(payload: &[u8]) -> Result<Vec<Item<'_>>, FatalError> {
    let mut r = Reader::new(payload);
    let mut items = Vec::new();
    let e = |e| bad_decode("snapshot item", e);
    while r.remaining() > 0 {
        let offset = r.offset() as u64;
        let item = match r.u8().map_err(e)? {
            ITEM_HEADER => Item::Header {
                index: r.uvarint().map_err(e)?,
                term: r.uvarint().map_err(e)?,
            },
            ITEM_KV => Item::Kv {
                key: r.bytes_ref().map_err(e)?,
                record: r.bytes_ref().map_err(e)?,
            },
            ITEM_SESSION => Item::Session {
                client_id: r.uvarint().map_err(e)?,
                record: r.bytes_ref().map_err(e)?,
            },
            ITEM_TRAILER => {
                let kvs = r.uvarint().map_err(e)?;
                let sessions = r.uvarint().map_err(e)?;
                let hash = r.take(8).map_err(e)?;
                let mut h = [0u8; 8];
                h.copy_from_slice(hash);
                Item::Trailer {
                    kvs,
                    sessions,
                    hash: u64::from_le_bytes(h),
                }
            }
            tag => {
                return Err(e(DecodeError::InvalidTag {
                    what: "snapshot item",
                    offset,
                    tag,
                }))
            }
        };
        items.push(item);
    }
    Ok(items)
}

/// Checks the items of a snapshot as they arrive and turns them into engine
/// writes; the checks a restore relies on live here.
#[derive(Debug)]
pub(crate) struct Loader {
    pub index: Index,
    pub term: Term,
    next_chunk: u32,
    last_key: Option<Vec<u8>>,
    last_session: Option<u64>,
    kvs: u64,
    sessions: u64,
    hasher: Hasher,
    pub done: bool,
}

impl Loader {
    /// Reads the header of chunk 0; returns the loader and the first
    /// chunk's writes.
    pub(crate) fn begin(first: &[u8]) -> Result<(Loader, Vec<bitcask::Op>), FatalError> {
        let chunk = parse_chunk(first)?;
        if chunk.number != 0 {
            return Err(bad(format!("first chunk is number {}", chunk.number)));
        }
        let items = parse_items(chunk.payload)?;
        let (index, term) = match items.first() {
            Some(Item::Header { index, term }) => (*index, *term),
            _ => return Err(bad("chunk 0 does not start with a header")),
        };
        let mut loader = Loader {
            index,
            term,
            next_chunk: 0,
            last_key: None,
            last_session: None,
            kvs: 0,
            sessions: 0,
            hasher: Hasher::new(index),
            done: false,
        };
        let ops = loader.load(chunk.number, chunk.last, &items[1..])?;
        Ok((loader, ops))
    }

    /// Checks a later chunk; returns its writes.
    pub(crate) fn push(&mut self, buf: &[u8]) -> Result<Vec<bitcask::Op>, FatalError> {
        let chunk = parse_chunk(buf)?;
        let items = parse_items(chunk.payload)?;
        self.load(chunk.number, chunk.last, &items)
    }

    fn load(
        &mut self,
        number: u32,
        last: bool,
        items: &[Item<'_>],
    ) -> Result<Vec<bitcask::Op>, FatalError> {
        if self.done {
            return Err(bad("chunk after the last chunk"));
        }
        if number != self.next_chunk {
            return Err(bad(format!(
                "chunk {number} where chunk {} was expected",
                self.next_chunk
            )));
        }
        self.next_chunk += 1;
        let mut ops = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match *item {
                Item::Header { .. } => return Err(bad("a second header")),
                Item::Kv { key, record } => {
                    if self.last_session.is_some() {
                        return Err(bad("a key-value after a session"));
                    }
                    crate::command::check_key(key)
                        .map_err(|e| bad(format!("key {}: {e}", keys::show_key(key))))?;
                    if self.last_key.as_deref().is_some_and(|last| last >= key) {
                        return Err(bad("key-values out of order"));
                    }
                    let rec = Record::decode(record)
                        .map_err(|e| bad_decode(&format!("record {}", keys::show_key(key)), e))?;
                    crate::command::check_value(&rec.value).map_err(|e| bad(e.to_string()))?;
                    self.hasher.kv(key, &rec);
                    self.kvs += 1;
                    self.last_key = Some(key.to_vec());
                    ops.push(bitcask::Op::Put(
                        Bytes::from(keys::user_key(key)),
                        Bytes::copy_from_slice(record),
                    ));
                }
                Item::Session { client_id, record } => {
                    if self.last_session.is_some_and(|last| last >= client_id) {
                        return Err(bad("sessions out of order"));
                    }
                    let rec = SessionRecord::decode(record)
                        .map_err(|e| bad_decode(&format!("session {client_id}"), e))?;
                    self.hasher.session(client_id, &rec);
                    self.sessions += 1;
                    self.last_session = Some(client_id);
                    ops.push(bitcask::Op::Put(
                        Bytes::from(keys::session_key(client_id)),
                        Bytes::copy_from_slice(record),
                    ));
                }
                Item::Trailer {
                    kvs,
                    sessions,
                    hash,
                } => {
                    if !last || i + 1 != items.len() {
                        return Err(bad("a trailer before the end"));
                    }
                    if kvs != self.kvs || sessions != self.sessions {
                        return Err(bad(format!(
                            "trailer counts {kvs} keys and {sessions} sessions, \
                             the chunks held {} and {}",
                            self.kvs, self.sessions
                        )));
                    }
                    if hash != self.hasher.finish() {
                        return Err(bad("digest mismatch"));
                    }
                    self.done = true;
                }
            }
        }
        if last && !self.done {
            return Err(bad("the last chunk has no trailer"));
        }
        Ok(ops)
    }
}
