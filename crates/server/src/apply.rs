//! The apply task: a thread of its own that owns the state machine, applies
//! committed entries in log order and answers the requests waiting for
//! them.
//!
//! It takes [`ApplyMsg`]s from a bounded channel (the driver blocks when it
//! is full). After each batch it publishes the applied index on a `watch`
//! (linearizable reads wait on it). Every `snapshot_threshold_entries`
//! applied entries it syncs the state machine and asks the driver to
//! compact the WAL up to the durable index (see [`crate::descriptor`]).
//!
//! A [`kv::FatalError`] (a failed engine write, a gap in the entries) stops
//! the node: carrying on could diverge this replica.

use std::sync::Arc;

use kv::{Applied, StateMachine};
use raft::{ConfChange, Entry, EntryKind, Index};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;

use crate::addrbook::AddrBook;
use crate::config::TestHooks;
use crate::error::ServerError;
use crate::node::{NodeRequest, WaiterReply, Waiters};
use crate::service::unavailable;
use crate::spool::SpoolReader;

/// The state machine's engine.
pub(crate) type Engine = bitcask::Bitcask;

/// What the apply task is asked to do.
pub(crate) enum ApplyMsg {
    /// Committed entries, in log order.
    Entries(Vec<Entry>),
    /// Restore the state machine from a snapshot image at `data_index`
    /// (skipped if already at or past it). Answers whether it restored.
    Restore {
        data_index: Index,
        chunks: SpoolReader,
        /// The spooled size, for the metrics.
        bytes: u64,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// Sync the state machine now; answers the durable applied index (the
    /// service then asks the driver to compact up to it).
    SnapshotNow { reply: oneshot::Sender<Index> },
}

pub(crate) struct Applier {
    pub id: u64,
    pub sm: StateMachine<Engine>,
    pub rx: mpsc::Receiver<ApplyMsg>,
    pub waiters: Arc<Waiters>,
    pub applied_tx: watch::Sender<Index>,
    pub node_tx: mpsc::Sender<NodeRequest>,
    pub book: AddrBook,
    pub hooks: TestHooks,
    pub snapshot_threshold: u64,
    /// The durable index last handed to the driver for compaction.
    pub compacted_at: Index,
}

impl Applier {
    /// Runs until the channel closes; then syncs the state machine.
    pub(crate) fn run(mut self) -> Result<(), ServerError> {
        while let Some(msg) = self.rx.blocking_recv() {
            match msg {
                ApplyMsg::Entries(entries) => self.apply(&entries)?,
                ApplyMsg::Restore {
                    data_index,
                    chunks,
                    bytes,
                    reply,
                } => {
                    let t = std::time::Instant::now();
                    let r = self.restore(data_index, chunks);
                    crate::observe::metrics::snapshot_installed(
                        self.id,
                        r.is_ok(),
                        t.elapsed(),
                        bytes,
                    );
                    match r {
                        Ok(restored) => {
                            let _ = reply.send(Ok(restored));
                        }
                        Err(e) => {
                            // A refused first chunk changes nothing; a bad
                            // later one leaves a restore pending, which a
                            // new transfer redoes.
                            tracing::warn!(node = self.id, error = %e, "snapshot restore failed");
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
                ApplyMsg::SnapshotNow { reply } => {
                    let index = self.sync()?;
                    self.compacted_at = self.compacted_at.max(index);
                    let _ = reply.send(index);
                }
            }
        }
        self.sync()?;
        tracing::info!(
            node = self.id,
            applied = self.sm.applied_index(),
            "apply task stopped"
        );
        Ok(())
    }

    fn sync(&self) -> Result<Index, ServerError> {
        self.sm
            .sync()
            .map_err(|e| ServerError::StateMachine(e.to_string()))
    }

    fn apply(&mut self, entries: &[Entry]) -> Result<(), ServerError> {
        let t = std::time::Instant::now();
        let results = self
            .sm
            .apply_all(entries)
            .map_err(|e| ServerError::StateMachine(e.to_string()))?;
        crate::observe::metrics::applied(self.id, t.elapsed(), self.sm.session_count());
        for (e, applied) in entries.iter().zip(results) {
            if e.kind == EntryKind::ConfChange {
                self.on_conf_change(e)?;
            }
            let waiter = match applied {
                Applied::Skipped { .. } => {
                    if let Some(w) = self.waiters.take(e.index) {
                        w.fail(unavailable("leader changed; retry"));
                    }
                    continue;
                }
                _ => self.waiters.take(e.index),
            };
            let Some(w) = waiter else { continue };
            if w.term != e.term {
                w.fail(unavailable(
                    "leader changed and the entry was replaced; retry with the same client id and seq",
                ));
                continue;
            }
            match (w.reply, applied) {
                (WaiterReply::Write(tx), Applied::Response(r)) => {
                    if r.result.is_ok() && self.hooks.take_drop_write_reply() {
                        tracing::warn!(node = self.id, index = e.index, "test hook: reply dropped");
                        let _ = tx.send(Err(unavailable("reply lost (test hook); retry")));
                    } else {
                        let _ = tx.send(Ok(r));
                    }
                }
                (WaiterReply::Conf(tx), _) => {
                    let _ = tx.send(Ok(e.index));
                }
                (WaiterReply::Write(tx), _) => {
                    let _ = tx.send(Err(Status::internal(format!(
                        "entry {} applied without a response",
                        e.index
                    ))));
                }
            }
        }
        let applied = self.sm.applied_index();
        self.applied_tx.send_replace(applied);
        if applied >= self.compacted_at + self.snapshot_threshold {
            let index = self.sync()?;
            let req = NodeRequest::Compact { index, reply: None };
            // A full queue only delays compaction to the next batch.
            if self.node_tx.try_send(req).is_ok() {
                self.compacted_at = index;
            }
        }
        Ok(())
    }

    fn on_conf_change(&mut self, e: &Entry) -> Result<(), ServerError> {
        match ConfChange::decode(&e.data) {
            Ok(cc) => {
                tracing::info!(node = self.id, index = e.index, kind = ?cc.kind, target = cc.node_id,
                    "membership change applied");
                self.book.learn_from(&cc)?;
            }
            Err(err) => {
                tracing::warn!(node = self.id, index = e.index, error = %err, "undecodable conf change")
            }
        }
        Ok(())
    }

    fn restore(&mut self, data_index: Index, mut chunks: SpoolReader) -> Result<bool, String> {
        let applied = self.sm.applied_index();
        if self.sm.restore_pending().is_none() && data_index <= applied {
            tracing::info!(
                node = self.id,
                data_index,
                applied,
                "snapshot image not newer than the state machine; not restoring"
            );
            return Ok(false);
        }
        let spooled = |e: std::io::Error| format!("read the spooled snapshot: {e}");
        let first = chunks
            .next_chunk()
            .map_err(spooled)?
            .ok_or("an empty snapshot")?;
        let mut restore = self.sm.begin_restore(&first).map_err(|e| e.to_string())?;
        // An error from here on leaves the restore pending (see
        // `kv::StateMachine::restore`): the next transfer redoes it.
        while let Some(chunk) = chunks.next_chunk().map_err(spooled)? {
            restore.push(&chunk).map_err(|e| e.to_string())?;
        }
        let index = restore.finish().map_err(|e| e.to_string())?;
        tracing::info!(
            node = self.id,
            index,
            term = self.sm.applied_term(),
            "state machine restored from a snapshot"
        );
        self.waiters
            .fail_upto(index, &unavailable("leader changed; retry"));
        self.applied_tx.send_replace(index);
        self.compacted_at = self.compacted_at.max(index);
        Ok(true)
    }
}
