//! [`StateMachine`]: applies committed entries to the engine, keeps the
//! sessions, answers reads, takes and restores snapshots.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bitcask::{Engine, Op as EngineOp};
use bytes::Bytes;
use raft::{Entry, EntryKind, Index, Term};

use crate::command::{check_key, check_range, Command, Compare, CompareTarget, Op, Request};
use crate::digest::{Hasher, StateDigest};
use crate::error::{CommandError, Error, FatalError, Result};
use crate::keys::{
    self, bounds, decode_applied, decode_index, encode_applied, encode_index, session_id,
    session_key, user_bounds, user_key, Record, SessionRecord, APPLIED_KEY, FORMAT_KEY,
    RESTORE_KEY, SESSION_END, SESSION_PREFIX, STATE_FORMAT_VERSION,
};
use crate::limits;
use crate::response::{KeyValue, OpResult, Reply, Response};
use crate::session::{SessionLimits, SessionMeta, Sessions};
use crate::snapshot::{Loader, SnapshotStream};

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

/// State shared between the state machine and its readers.
#[derive(Debug, Default)]
struct Shared {
    applied: AtomicU64,
    /// The target index of an unfinished restore; 0 when none.
    restoring: AtomicU64,
}

/// A cheap, cloneable read handle: reads run on any thread while the state
/// machine applies (the engine takes `&self` and locks internally). A read
/// sees everything applied before it started and possibly more.
pub struct KvReader<E: Engine> {
    engine: Arc<E>,
    shared: Arc<Shared>,
}

impl<E: Engine> Clone for KvReader<E> {
    fn clone(&self) -> Self {
        KvReader {
            engine: Arc::clone(&self.engine),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: Engine> std::fmt::Debug for KvReader<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvReader")
            .field("applied", &self.applied_index())
            .finish_non_exhaustive()
    }
}

fn eng<T>(r: bitcask::Result<T>) -> Result<T, FatalError> {
    r.map_err(FatalError::engine)
}

impl<E: Engine> KvReader<E> {
    /// The index of the last applied entry.
    pub fn applied_index(&self) -> Index {
        self.shared.applied.load(Ordering::Acquire)
    }

    fn check_usable(&self) -> Result<(), FatalError> {
        match self.shared.restoring.load(Ordering::Acquire) {
            0 => Ok(()),
            index => Err(FatalError::RestoreIncomplete { index }),
        }
    }

    /// The key-value under `key`.
    ///
    /// # Errors
    /// `Command` for an empty or over-limit key; `Fatal` on an engine error
    /// or while a restore is unfinished.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        check_key(key)?;
        self.check_usable()?;
        get_record(&*self.engine, key)
            .map(|r| r.map(|r| r.into_kv(key.to_vec())))
            .map_err(Error::from)
    }

    /// Up to `limit` key-values with keys in `start..end`, in key order. An
    /// empty `end` means no upper bound; `limit` is capped at
    /// [`SCAN_LIMIT_MAX`](limits::SCAN_LIMIT_MAX), and 0 means that cap.
    ///
    /// # Errors
    /// `Command` for an invalid range; `Fatal` as for [`get`](Self::get).
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KeyValue>> {
        Ok(self.scan_page(start, end, limit)?.0)
    }

    /// Like [`scan`](Self::scan), and also whether more keys follow in the
    /// range (continue from the last key returned plus a `0` byte).
    pub fn scan_page(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<(Vec<KeyValue>, bool)> {
        check_range(start, end)?;
        self.check_usable()?;
        let limit = if limit == 0 {
            limits::SCAN_LIMIT_MAX
        } else {
            limit.min(limits::SCAN_LIMIT_MAX)
        };
        let (lo, hi) = user_bounds(start, end);
        let (s, e) = bounds(&lo, &hi);
        let pairs = eng(self.engine.scan(s, e, limit + 1))?;
        let more = pairs.len() > limit;
        let mut out = Vec::with_capacity(pairs.len().min(limit));
        for (k, v) in pairs.into_iter().take(limit) {
            let Some(user) = keys::strip_user(&k) else {
                continue;
            };
            out.push(Record::decode_stored(user, &v)?.into_kv(user.to_vec()));
        }
        Ok((out, more))
    }

    /// Up to `limit` key-values whose keys start with `prefix`.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<KeyValue>> {
        self.scan(prefix, &crate::command::prefix_end(prefix), limit)
    }

    /// A point-in-time snapshot, streamed in chunks of at most
    /// [`CHUNK_BYTES_MAX`](limits::CHUNK_BYTES_MAX) bytes.
    pub fn snapshot(&self) -> Result<SnapshotStream<E::View>> {
        self.snapshot_with_chunk_size(limits::CHUNK_BYTES_MAX)
    }

    /// Like [`snapshot`](Self::snapshot), with chunks of about
    /// `chunk_bytes` (each holds at least one item).
    pub fn snapshot_with_chunk_size(&self, chunk_bytes: usize) -> Result<SnapshotStream<E::View>> {
        self.check_usable()?;
        let view = eng(self.engine.view())?;
        Ok(SnapshotStream::new(view, chunk_bytes)?)
    }

    /// The digest of the state (see [`StateDigest`]), taken from one
    /// point-in-time view.
    pub fn digest(&self) -> Result<StateDigest> {
        use bitcask::View as _;
        self.check_usable()?;
        let view = eng(self.engine.view())?;
        let index = match eng(view.get(APPLIED_KEY))? {
            Some(v) => decode_applied(&v)?.0,
            None => 0,
        };
        let mut hasher = Hasher::new(index);
        for pair in view.iter() {
            let (k, v) = eng(pair)?;
            if let Some(user) = keys::strip_user(&k) {
                hasher.kv(user, &Record::decode_stored(user, &v)?);
            } else if k.starts_with(SESSION_PREFIX) {
                let id = session_id(&k)?;
                hasher.session(id, &SessionRecord::decode_stored(id, &v)?);
            }
        }
        Ok(StateDigest {
            index,
            hash: hasher.finish(),
        })
    }
}

fn get_record<E: Engine>(engine: &E, key: &[u8]) -> Result<Option<Record>, FatalError> {
    match eng(engine.get(&user_key(key)))? {
        Some(v) => Ok(Some(Record::decode_stored(key, &v)?)),
        None => Ok(None),
    }
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

/// The writes of one command, buffered so that a refused command changes
/// nothing and later ops of a transaction see earlier ones.
struct Tx<'a, E: Engine> {
    engine: &'a E,
    /// Writes of earlier entries of the same batch, not yet in the engine.
    pending: &'a BTreeMap<Vec<u8>, Option<Record>>,
    writes: BTreeMap<Vec<u8>, Option<Record>>,
}

impl<E: Engine> Tx<'_, E> {
    fn get(&self, key: &[u8]) -> Result<Option<Record>, FatalError> {
        match self.writes.get(key).or_else(|| self.pending.get(key)) {
            Some(r) => Ok(r.clone()),
            None => get_record(self.engine, key),
        }
    }

    fn put(
        &mut self,
        index: Index,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<Option<Record>, FatalError> {
        let prev = self.get(key)?;
        let record = Record {
            value,
            create_index: prev.as_ref().map_or(index, |p| p.create_index),
            mod_index: index,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
        };
        self.writes.insert(key.to_vec(), Some(record));
        Ok(prev)
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Record>, FatalError> {
        let prev = self.get(key)?;
        if prev.is_some() {
            self.writes.insert(key.to_vec(), None);
        }
        Ok(prev)
    }

    fn compare(&self, c: &Compare) -> Result<bool, FatalError> {
        let cur = self.get(&c.key)?;
        Ok(match &c.target {
            CompareTarget::Value(v) => cur
                .as_ref()
                .is_some_and(|r| c.op.holds(r.value.as_slice(), v.as_slice())),
            CompareTarget::Version(v) => c.op.holds(&cur.as_ref().map_or(0, |r| r.version), v),
            CompareTarget::ModIndex(v) => c.op.holds(&cur.as_ref().map_or(0, |r| r.mod_index), v),
            CompareTarget::Exists(b) => c.op.holds(&cur.is_some(), b),
        })
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
        limit: usize,
    ) -> Result<(Vec<KeyValue>, bool)> {
        self.reader.scan_page(start, end, limit)
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

    /// Runs a command; a refused one writes nothing.
    fn execute(
        &self,
        index: Index,
        request: &Request,
        batch: &mut Batch,
    ) -> Result<Response, FatalError> {
        let mut tx = Tx {
            engine: self.engine(),
            pending: &batch.overlay,
            writes: BTreeMap::new(),
        };
        let result = match request.validate() {
            Err(e) => Err(e),
            Ok(()) => self.run(index, &request.command, &mut tx)?,
        };
        let result = result.and_then(|reply| {
            let size = reply.encoded_len() + 32;
            if size > limits::RESPONSE_SIZE_MAX {
                return Err(CommandError::ResponseTooLarge {
                    size: size as u64,
                    max: limits::RESPONSE_SIZE_MAX as u64,
                });
            }
            Ok(reply)
        });
        if result.is_ok() {
            let writes = tx.writes;
            for (key, record) in writes {
                batch.put_user(key, record);
            }
        }
        Ok(Response { index, result })
    }

    fn run(
        &self,
        index: Index,
        command: &Command,
        tx: &mut Tx<'_, E>,
    ) -> Result<Result<Reply, CommandError>, FatalError> {
        let kv = |key: &[u8], r: Option<Record>, want: bool| {
            if want {
                r.map(|r| r.into_kv(key.to_vec()))
            } else {
                None
            }
        };
        Ok(Ok(match command {
            Command::Put {
                key,
                value,
                prev_kv,
            } => {
                let prev = tx.put(index, key, value.clone())?;
                Reply::Put {
                    prev: kv(key, prev, *prev_kv),
                }
            }
            Command::Delete { key, prev_kv } => {
                let prev = tx.delete(key)?;
                Reply::Delete {
                    deleted: prev.is_some(),
                    prev: kv(key, prev, *prev_kv),
                }
            }
            Command::DeleteRange { start, end } => {
                let (lo, hi) = user_bounds(start, end);
                let (s, e) = bounds(&lo, &hi);
                let max = limits::DELETE_RANGE_KEYS_MAX;
                let pairs = eng(self.engine().scan(s, e, max + 1))?;
                if pairs.len() > max {
                    return Ok(Err(CommandError::RangeTooLarge { max: max as u64 }));
                }
                for (k, _) in &pairs {
                    if let Some(user) = keys::strip_user(k) {
                        tx.writes.insert(user.to_vec(), None);
                    }
                }
                Reply::DeleteRange {
                    deleted: pairs.len() as u64,
                }
            }
            Command::Append { key, value } => {
                let prev = tx.get(key)?;
                let mut new = prev.map(|p| p.value).unwrap_or_default();
                if new.len() + value.len() > limits::VALUE_SIZE_MAX {
                    return Ok(Err(CommandError::ValueTooLarge {
                        size: (new.len() + value.len()) as u64,
                        max: limits::VALUE_SIZE_MAX as u64,
                    }));
                }
                new.extend_from_slice(value);
                let value_len = new.len() as u64;
                let version = tx.put(index, key, new)?.map_or(1, |p| p.version + 1);
                Reply::Append { value_len, version }
            }
            Command::Txn {
                compares,
                success,
                failure,
            } => {
                let mut succeeded = true;
                for c in compares {
                    if !tx.compare(c)? {
                        succeeded = false;
                        break;
                    }
                }
                let branch = if succeeded { success } else { failure };
                let mut results = Vec::with_capacity(branch.len());
                for op in branch {
                    results.push(match op {
                        Op::Put { key, value } => {
                            tx.put(index, key, value.clone())?;
                            OpResult::Put
                        }
                        Op::Delete { key } => OpResult::Delete {
                            deleted: tx.delete(key)?.is_some(),
                        },
                        Op::Get { key } => OpResult::Get {
                            kv: tx.get(key)?.map(|r| r.into_kv(key.clone())),
                        },
                    });
                }
                Reply::Txn { succeeded, results }
            }
            Command::RegisterSession => return Ok(Err(CommandError::RegisterWithSession)),
        }))
    }

    /// Restores a snapshot from its chunks, replacing the whole state (see
    /// the crate docs, "Snapshots"). Returns the snapshot's index.
    ///
    /// # Errors
    /// A bad first chunk, or a snapshot not above the applied index (unless
    /// a restore is pending), is refused before anything changes. A bad
    /// later chunk leaves the state machine with
    /// [`restore_pending`](Self::restore_pending) set: restore again.
    pub fn restore<I, C>(&mut self, chunks: I) -> Result<Index, FatalError>
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let mut chunks = chunks.into_iter();
        let first = chunks
            .next()
            .ok_or_else(|| FatalError::Snapshot("no chunks".into()))?;
        let mut restore = self.begin_restore(first.as_ref())?;
        for chunk in chunks {
            restore.push(chunk.as_ref())?;
        }
        restore.finish()
    }

    /// Starts a streaming restore with the first chunk (see
    /// [`restore`](Self::restore)). Dropping the returned [`Restore`]
    /// without [`finish`](Restore::finish) leaves the restore pending.
    pub fn begin_restore(&mut self, first_chunk: &[u8]) -> Result<Restore<'_, E>, FatalError> {
        let (loader, ops) = Loader::begin(first_chunk)?;
        let applied = self.applied_index();
        if self.restore_pending().is_none() && loader.index <= applied {
            return Err(FatalError::Snapshot(format!(
                "snapshot at index {} is not above the applied index {applied}",
                loader.index
            )));
        }
        // Mark the restore first: from here until finish, a crash leaves
        // the marker, and open() reports the restore as pending.
        eng(self.engine().write_batch(&[
            EngineOp::Put(
                Bytes::from_static(RESTORE_KEY),
                Bytes::from(encode_index(loader.index)),
            ),
            EngineOp::Delete(Bytes::from_static(APPLIED_KEY)),
        ]))?;
        self.reader
            .shared
            .restoring
            .store(loader.index.max(1), Ordering::Release);
        self.reader.shared.applied.store(0, Ordering::Release);
        self.applied_term = 0;
        self.sessions.clear();
        self.clear_range(&[keys::USER_PREFIX], &[keys::USER_PREFIX + 1])?;
        self.clear_range(SESSION_PREFIX, SESSION_END)?;
        let mut restore = Restore { sm: self, loader };
        restore.write(ops)?;
        Ok(restore)
    }

    fn clear_range(&self, lo: &[u8], hi: &[u8]) -> Result<(), FatalError> {
        loop {
            let page =
                eng(self
                    .engine()
                    .scan(Bound::Included(lo), Bound::Excluded(hi), PAGE_KEYS))?;
            if page.is_empty() {
                return Ok(());
            }
            let ops: Vec<EngineOp> = page.into_iter().map(|(k, _)| EngineOp::Delete(k)).collect();
            eng(self.engine().write_batch(&ops))?;
        }
    }
}

/// A restore under way (see [`StateMachine::begin_restore`]).
#[derive(Debug)]
pub struct Restore<'a, E: Engine> {
    sm: &'a mut StateMachine<E>,
    loader: Loader,
}

impl<E: Engine> Restore<'_, E> {
    /// The index of the snapshot being restored.
    pub fn index(&self) -> Index {
        self.loader.index
    }

    fn write(&mut self, ops: Vec<EngineOp>) -> Result<(), FatalError> {
        // A chunk is at most CHUNK_BYTES_MAX bytes, far below the engine's
        // batch limits, so one chunk is one batch.
        if !ops.is_empty() {
            eng(self.sm.engine().write_batch(&ops))?;
        }
        Ok(())
    }

    /// Checks and loads the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), FatalError> {
        let ops = self.loader.push(chunk)?;
        self.write(ops)
    }

    /// Completes the restore once the last chunk was pushed: writes the
    /// applied index (removing the restore marker in the same batch),
    /// syncs the engine and reloads the sessions.
    pub fn finish(self) -> Result<Index, FatalError> {
        if !self.loader.done {
            return Err(FatalError::Snapshot(
                "the snapshot ended before its last chunk".into(),
            ));
        }
        let (index, term) = (self.loader.index, self.loader.term);
        eng(self.sm.engine().write_batch(&[
            EngineOp::Put(
                Bytes::from_static(APPLIED_KEY),
                Bytes::from(encode_applied(index, term)),
            ),
            EngineOp::Delete(Bytes::from_static(RESTORE_KEY)),
        ]))?;
        eng(self.sm.engine().sync())?;
        self.sm.load_sessions()?;
        self.sm.applied_term = term;
        self.sm
            .reader
            .shared
            .applied
            .store(index, Ordering::Release);
        self.sm.reader.shared.restoring.store(0, Ordering::Release);
        Ok(index)
    }
}
