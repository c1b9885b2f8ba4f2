//! [`StateMachine`]: applies committed entries to the engine, keeps the
//! sessions, answers reads, takes and restores snapshots.
//!
//! - `mod.rs`: opening, applying entries in batches, sessions.
//! - `exec.rs`: running one command against the engine and the batch.
//! - `reader.rs`: [`KvReader`], reads, digests and snapshot streams.
//! - `restore.rs`: installing a snapshot.

mod exec;
mod meta;
mod reader;
mod restore;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bitcask::{Engine, Op as EngineOp};
use bytes::Bytes;
use raft::{Entry, EntryKind, Index, Term};

use crate::command::{Command, Request};
use crate::digest::StateDigest;
use crate::error::{CommandError, FatalError, Result};
use crate::keys::{
    decode_applied, decode_index, encode_applied, session_id, session_key, user_key, Record,
    SessionRecord, APPLIED_KEY, FORMAT_KEY, RESTORE_KEY, SESSION_END, SESSION_PREFIX,
    STATE_FORMAT_VERSION,
};
use crate::limits;
use crate::response::{KeyValue, Reply, Response};
use crate::session::{SessionLimits, SessionMeta, Sessions};
use crate::snapshot::SnapshotStream;

use reader::{eng, Shared};
pub use reader::{KvReader, ScanPage};
pub use restore::Restore;

/// Engine keys read or deleted per engine call when loading or clearing.
const PAGE_KEYS: usize = 4096;

/// What applying one entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The entry is at or below the applied index: already applied before
    /// (e.g. replayed after a restart); nothing was done.
    Skipped { index: Index },
    /// A leader's empty no-op or a configuration change: only the applied
    /// index moved (the server applies membership changes itself).
    Empty { index: Index },
    /// A request was applied (or answered from its session): answer the
    /// waiting client with this.
    Response(Response),
}

/// The replicated state machine over an engine (see the crate docs).
///
/// Writes (`apply`, `restore`) take `&mut self`: one apply task owns it.
/// Reads go through [`reader`](Self::reader) handles, which need no lock.
pub struct StateMachine<E: Engine> {
    reader: KvReader<E>,
    applied_term: Term,
    sessions: Sessions,
    limits: SessionLimits,
    /// Versions of recently written keys (see [`meta`]).
    meta: meta::MetaCache,
}

impl<E: Engine> std::fmt::Debug for StateMachine<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("applied", &self.applied_index())
            .field("applied_term", &self.applied_term)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// The engine writes of a run of entries, written as one atomic batch with
/// the applied index of the last one.
#[derive(Default)]
struct Batch {
    ops: Vec<EngineOp>,
    bytes: usize,
    /// The user records the ops write, for reads by later entries.
    overlay: BTreeMap<Vec<u8>, Option<Record>>,
    /// The session records the ops write (encoded).
    sessions: BTreeMap<u64, Bytes>,
    /// The last entry whose writes are in the batch.
    last: Option<(Index, Term)>,
}

impl Batch {
    fn push(&mut self, op: EngineOp) {
        self.bytes += match &op {
            EngineOp::Put(k, v) => k.len() + v.len(),
            EngineOp::Delete(k) => k.len(),
        };
        self.ops.push(op);
    }

    fn put_user(&mut self, key: Vec<u8>, record: Option<Record>) {
        let engine_key = Bytes::from(user_key(&key));
        self.push(match &record {
            Some(r) => EngineOp::Put(engine_key, Bytes::from(r.encode())),
            None => EngineOp::Delete(engine_key),
        });
        self.overlay.insert(key, record);
    }

    fn is_full(&self) -> bool {
        self.ops.len() >= limits::APPLY_BATCH_OPS_MAX || self.bytes >= limits::APPLY_BATCH_BYTES_MAX
    }
}

/// Decodes an entry's request, or the refusal for bytes that are not one.
fn decode_request(data: &[u8]) -> Result<Request, CommandError> {
    if data.len() > limits::REQUEST_SIZE_MAX {
        return Err(CommandError::RequestTooLarge {
            size: data.len() as u64,
            max: limits::REQUEST_SIZE_MAX as u64,
        });
    }
    Request::decode(data).map_err(|e| CommandError::Malformed {
        reason: e.to_string(),
    })
}

impl<E: Engine> StateMachine<E> {
    /// Opens the state machine stored in `engine` with the default session
    /// limits.
    pub fn open(engine: Arc<E>) -> Result<Self, FatalError> {
        Self::open_with(engine, SessionLimits::default())
    }

    /// Opens with explicit session limits (identical on every replica; for
    /// tests). Loads the applied index and the sessions. If a restore was
    /// interrupted, the state machine opens with
    /// [`restore_pending`](Self::restore_pending) set, and refuses to apply
    /// or read until a snapshot is restored.
    pub fn open_with(engine: Arc<E>, limits: SessionLimits) -> Result<Self, FatalError> {
        let limits = SessionLimits {
            sessions_max: limits.sessions_max.max(1),
            ..limits
        };
        match eng(engine.get(FORMAT_KEY))? {
            Some(v) if v.as_ref() == [STATE_FORMAT_VERSION] => {}
            Some(v) => {
                return Err(FatalError::UnsupportedFormat {
                    found: v.first().copied().unwrap_or(0),
                    supported: STATE_FORMAT_VERSION,
                })
            }
            None => eng(engine.put(FORMAT_KEY, &[STATE_FORMAT_VERSION]))?,
        }
        let shared = Arc::new(Shared::default());
        let mut sm = StateMachine {
            reader: KvReader { engine, shared },
            applied_term: 0,
            sessions: Sessions::default(),
            limits,
            meta: meta::MetaCache::default(),
        };
        if let Some(v) = eng(sm.engine().get(RESTORE_KEY))? {
            let index = decode_index(&v, "restore marker")?;
            sm.reader
                .shared
                .restoring
                .store(index.max(1), Ordering::Release);
            return Ok(sm);
        }
        if let Some(v) = eng(sm.engine().get(APPLIED_KEY))? {
            let (index, term) = decode_applied(&v)?;
            sm.reader.shared.applied.store(index, Ordering::Release);
            sm.applied_term = term;
        }
        sm.load_sessions()?;
        Ok(sm)
    }

    fn engine(&self) -> &E {
        &self.reader.engine
    }

    fn load_sessions(&mut self) -> Result<(), FatalError> {
        self.sessions.clear();
        let mut cursor: Option<Bytes> = None;
        loop {
            let start = match &cursor {
                Some(c) => Bound::Excluded(c.as_ref()),
                None => Bound::Included(SESSION_PREFIX),
            };
            let page = eng(self
                .engine()
                .scan(start, Bound::Excluded(SESSION_END), PAGE_KEYS))?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            cursor = Some(last.clone());
            for (k, v) in &page {
                let id = session_id(k)?;
                let record = SessionRecord::decode_stored(id, v)?;
                self.sessions.insert(
                    id,
                    SessionMeta {
                        last_seq: record.last_seq,
                        last_index: record.last_index,
                    },
                );
            }
        }
    }

    /// A read handle (see [`KvReader`]).
    pub fn reader(&self) -> KvReader<E> {
        self.reader.clone()
    }

    /// The engine, shared with the readers.
    pub fn engine_handle(&self) -> Arc<E> {
        Arc::clone(&self.reader.engine)
    }

    /// The index of the last applied entry (0: none).
    pub fn applied_index(&self) -> Index {
        self.reader.applied_index()
    }

    /// The term of the last applied entry.
    pub fn applied_term(&self) -> Term {
        self.applied_term
    }

    /// The number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The target index of an interrupted restore, if one must be redone.
    pub fn restore_pending(&self) -> Option<Index> {
        match self.reader.shared.restoring.load(Ordering::Acquire) {
            0 => None,
            index => Some(index),
        }
    }

    /// See [`KvReader::get`].
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        self.reader.get(key)
    }

    /// See [`KvReader::scan`].
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KeyValue>> {
        self.reader.scan(start, end, limit)
    }

    /// See [`KvReader::scan_page`].
    pub fn scan_page(
        &self,
        start: &[u8],
        end: &[u8],
        page: &ScanPage,
    ) -> Result<(Vec<KeyValue>, bool)> {
        self.reader.scan_page(start, end, page)
    }

    /// See [`KvReader::scan_prefix`].
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<KeyValue>> {
        self.reader.scan_prefix(prefix, limit)
    }

    /// See [`KvReader::snapshot`].
    pub fn snapshot(&self) -> Result<SnapshotStream<E::View>> {
        self.reader.snapshot()
    }

    /// See [`KvReader::digest`].
    pub fn digest(&self) -> Result<StateDigest> {
        self.reader.digest()
    }

    /// Makes everything applied so far durable; returns the applied index
    /// that is now durable. The log may be compacted up to it (and no
    /// further) once this returns.
    pub fn sync(&self) -> Result<Index, FatalError> {
        let index = self.applied_index();
        eng(self.engine().sync())?;
        Ok(index)
    }

    /// Applies one committed entry. Entries must come in log order;
    /// entries at or below the applied index are skipped. The entry's
    /// effects, the session changes and the new applied index go to the
    /// engine in one atomic batch.
    ///
    /// # Errors
    /// Only fatal ones: the node must stop. A bad request is not an error
    /// here but a refusal inside the returned [`Response`].
    pub fn apply(&mut self, entry: &Entry) -> Result<Applied, FatalError> {
        let mut applied = self.apply_all(std::slice::from_ref(entry))?;
        applied
            .pop()
            .ok_or_else(|| FatalError::Snapshot("internal: no result for an entry".into()))
    }

    /// Applies a run of committed entries (e.g. all of one `Ready`) like
    /// [`apply`](Self::apply) does one by one, with the same results, but
    /// writes them to the engine in few batches: one, unless the run holds
    /// a DeleteRange (the batch so far is written before it) or exceeds
    /// [`APPLY_BATCH_OPS_MAX`](limits::APPLY_BATCH_OPS_MAX) operations or
    /// [`APPLY_BATCH_BYTES_MAX`](limits::APPLY_BATCH_BYTES_MAX) bytes. Each
    /// batch carries the applied index of its last entry, so a crash
    /// leaves the state as of some entry of the run.
    ///
    /// # Errors
    /// As for [`apply`](Self::apply). On an error, some of the entries may
    /// have been applied; the node must stop anyway.
    pub fn apply_all(&mut self, entries: &[Entry]) -> Result<Vec<Applied>, FatalError> {
        if let Some(index) = self.restore_pending() {
            return Err(FatalError::RestoreIncomplete { index });
        }
        let mut batch = Batch::default();
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let applied = batch.last.map_or_else(|| self.applied_index(), |(i, _)| i);
            if entry.index <= applied {
                out.push(Applied::Skipped { index: entry.index });
                continue;
            }
            if entry.index != applied + 1 {
                self.flush(&mut batch)?;
                return Err(FatalError::Gap {
                    index: entry.index,
                    applied,
                });
            }
            out.push(self.apply_one(entry, &mut batch)?);
            batch.last = Some((entry.index, entry.term));
            if batch.is_full() {
                self.flush(&mut batch)?;
            }
        }
        self.flush(&mut batch)?;
        Ok(out)
    }

    /// Writes the batch with its applied index, and publishes the index.
    fn flush(&mut self, batch: &mut Batch) -> Result<(), FatalError> {
        let Some((index, term)) = batch.last else {
            return Ok(());
        };
        let mut ops = std::mem::take(&mut batch.ops);
        ops.push(EngineOp::Put(
            Bytes::from_static(APPLIED_KEY),
            Bytes::from(encode_applied(index, term)),
        ));
        eng(self.engine().write_batch(&ops))?;
        for (key, record) in std::mem::take(&mut batch.overlay) {
            self.meta.written(key, record.as_ref());
        }
        *batch = Batch::default();
        self.reader.shared.applied.store(index, Ordering::Release);
        self.applied_term = term;
        Ok(())
    }

    fn apply_one(&mut self, entry: &Entry, batch: &mut Batch) -> Result<Applied, FatalError> {
        let index = entry.index;
        let request = match entry.kind {
            EntryKind::Normal if !entry.data.is_empty() => Some(decode_request(&entry.data)),
            EntryKind::Normal | EntryKind::ConfChange => None,
        };
        // A DeleteRange scans the engine: write what the batch holds first
        // (before any of this entry's writes, so the batch ends at the
        // previous entry).
        if let Some(Ok(Request {
            command: Command::DeleteRange { .. },
            ..
        })) = &request
        {
            self.flush(batch)?;
        }
        for id in self.sessions.expire(index, self.limits.idle_entries_max) {
            batch.push(EngineOp::Delete(Bytes::from(session_key(id))));
        }
        Ok(match request {
            None => Applied::Empty { index },
            Some(Err(e)) => Applied::Response(Response {
                index,
                result: Err(e),
            }),
            Some(Ok(request)) => Applied::Response(self.apply_request(index, &request, batch)?),
        })
    }

    fn put_session(&mut self, client_id: u64, record: SessionRecord, batch: &mut Batch) {
        let encoded = Bytes::from(record.encode());
        batch.push(EngineOp::Put(
            Bytes::from(session_key(client_id)),
            encoded.clone(),
        ));
        batch.sessions.insert(client_id, encoded);
        self.sessions.insert(
            client_id,
            SessionMeta {
                last_seq: record.last_seq,
                last_index: record.last_index,
            },
        );
    }

    /// The remembered response of a session's last request, from the batch
    /// or the engine.
    fn cached_response(
        &self,
        client_id: u64,
        meta: SessionMeta,
        batch: &Batch,
    ) -> Result<Response, FatalError> {
        let stored = match batch.sessions.get(&client_id) {
            Some(b) => b.clone(),
            None => eng(self.engine().get(&session_key(client_id)))?.ok_or_else(|| {
                FatalError::Corrupt {
                    what: format!("session {client_id}: record missing"),
                    source: crate::error::DecodeError::Empty,
                }
            })?,
        };
        let record = SessionRecord::decode_stored(client_id, &stored)?;
        match record.response {
            Some(r) if record.last_seq == meta.last_seq => Ok(r),
            _ => Err(FatalError::Corrupt {
                what: format!(
                    "session {client_id}: no response stored for seq {}",
                    meta.last_seq
                ),
                source: crate::error::DecodeError::Empty,
            }),
        }
    }

    fn apply_request(
        &mut self,
        index: Index,
        request: &Request,
        batch: &mut Batch,
    ) -> Result<Response, FatalError> {
        let refuse = |e: CommandError| Response {
            index,
            result: Err(e),
        };
        if matches!(request.command, Command::RegisterSession) {
            if let Err(e) = request.validate() {
                return Ok(refuse(e));
            }
            while self.sessions.len() >= self.limits.sessions_max {
                let Some(id) = self.sessions.evict_lru() else {
                    break;
                };
                batch.push(EngineOp::Delete(Bytes::from(session_key(id))));
            }
            let record = SessionRecord {
                last_seq: 0,
                last_index: index,
                response: None,
            };
            self.put_session(index, record, batch);
            return Ok(Response {
                index,
                result: Ok(Reply::SessionRegistered { client_id: index }),
            });
        }
        let client_id = request.client_id;
        if client_id == 0 {
            return self.execute(index, request, batch);
        }
        let Some(session) = self.sessions.get(client_id) else {
            return Ok(refuse(CommandError::UnknownSession { client_id }));
        };
        let seq = request.seq;
        if seq == 0 {
            return Ok(refuse(CommandError::InvalidSeq { client_id }));
        }
        if seq < session.last_seq {
            return Ok(refuse(CommandError::StaleRequest {
                client_id,
                seq,
                last_seq: session.last_seq,
            }));
        }
        if seq == session.last_seq {
            let cached = self.cached_response(client_id, session, batch)?;
            // A retry keeps the session alive.
            let record = SessionRecord {
                last_seq: session.last_seq,
                last_index: index,
                response: Some(cached.clone()),
            };
            self.put_session(client_id, record, batch);
            return Ok(cached);
        }
        let response = self.execute(index, request, batch)?;
        let record = SessionRecord {
            last_seq: seq,
            last_index: index,
            response: Some(response.clone()),
        };
        self.put_session(client_id, record, batch);
        Ok(response)
    }
}
