//! The replicated state machine each simulated node applies to: the real
//! `kv::StateMachine` over an in-memory engine.
//!
//! The simulator keeps no state-machine data across a crash: a restarted
//! node rebuilds its state machine from the durable snapshot in its log
//! store and the core hands it the committed entries after the snapshot
//! again (`Config::applied` is the snapshot index). That is what a node
//! whose state machine lost everything unsynced would do, and it is always
//! correct.
//!
//! Snapshot data (what goes into the log store and `InstallSnapshot`) is
//! the concatenation of the state machine's snapshot chunks.

use bitcask::MemEngine;
use bytes::Bytes;
use kv::{Applied, Response, StateMachine};
use raft::{Entry, Index};

/// One node's state machine.
pub struct Fsm {
    sm: StateMachine<MemEngine>,
}

impl std::fmt::Debug for Fsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fsm")
            .field("applied", &self.applied())
            .finish_non_exhaustive()
    }
}

impl Fsm {
    /// An empty state machine.
    ///
    /// # Errors
    /// The state machine failed to open.
    pub fn new() -> Result<Fsm, String> {
        let sm =
            StateMachine::open(std::sync::Arc::new(MemEngine::new())).map_err(|e| e.to_string())?;
        Ok(Fsm { sm })
    }

    /// A state machine restored from snapshot `data` (empty data: an empty
    /// state machine, as for the bootstrap snapshot at index 0).
    ///
    /// # Errors
    /// The snapshot does not restore.
    pub fn restore(data: &[u8]) -> Result<Fsm, String> {
        let mut fsm = Fsm::new()?;
        if data.is_empty() {
            return Ok(fsm);
        }
        let chunks = kv::split_chunks(data)
            .collect::<Result<Vec<&[u8]>, _>>()
            .map_err(|e| format!("snapshot framing: {e}"))?;
        fsm.sm
            .restore(chunks)
            .map_err(|e| format!("snapshot restore: {e}"))?;
        Ok(fsm)
    }

    /// Applies a committed entry; the response for a client request, or
    /// `None` for a no-op or configuration change.
    ///
    /// # Errors
    /// A fatal state-machine error, or an entry out of order.
    pub fn apply(&mut self, entry: &Entry) -> Result<Option<Response>, String> {
        match self.sm.apply(entry).map_err(|e| e.to_string())? {
            Applied::Response(r) => Ok(Some(r)),
            Applied::Empty { .. } => Ok(None),
            Applied::Skipped { index } => Err(format!(
                "entry {index} handed out for applying again (applied is {})",
                self.applied()
            )),
        }
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// A state-machine read error.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let kv = self.sm.get(key).map_err(|e| e.to_string())?;
        Ok(kv.map(|kv| kv.value))
    }

    /// A snapshot of everything applied, as one blob.
    ///
    /// # Errors
    /// A state-machine read error.
    pub fn snapshot(&self) -> Result<Bytes, String> {
        let mut data = Vec::new();
        for chunk in self.sm.snapshot().map_err(|e| e.to_string())? {
            data.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        }
        Ok(Bytes::from(data))
    }

    /// The last applied index.
    pub fn applied(&self) -> Index {
        self.sm.applied_index()
    }

    /// A digest of the whole state at the applied index.
    ///
    /// # Errors
    /// A state-machine read error.
    pub fn digest(&self) -> Result<u64, String> {
        Ok(self.sm.digest().map_err(|e| e.to_string())?.hash)
    }
}
