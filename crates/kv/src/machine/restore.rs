//! Installing a snapshot (the steps are in the crate docs, "Snapshots").

use std::ops::Bound;
use std::sync::atomic::Ordering;

use bitcask::{Engine, Op as EngineOp};
use bytes::Bytes;
use raft::Index;

use super::reader::eng;
use super::{StateMachine, PAGE_KEYS};
use crate::error::FatalError;
use crate::keys::{
    self, encode_applied, encode_index, APPLIED_KEY, RESTORE_KEY, SESSION_END, SESSION_PREFIX,
};
use crate::snapshot::Loader;

impl<E: Engine> StateMachine<E> {
    /// Restores a snapshot from its chunks, replacing the whole state (see
    /// the crate docs, "Snapshots"). Returns the snapshot's index.
    ///
    /// # Errors
    /// A bad first chunk, or a snapshot below the applied index (unless
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
        // Every key may change: no cached version survives a restore.
        self.meta.clear();
        let applied = self.applied_index();
        if self.restore_pending().is_none() && loader.index < applied {
            return Err(FatalError::Snapshot(format!(
                "snapshot at index {} is below the applied index {applied}",
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
