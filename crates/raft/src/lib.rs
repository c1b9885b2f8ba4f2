//! The Raft consensus protocol as a pure, deterministic state machine.
//!
//! No I/O, no clock, no threads: the caller drives the node with ticks,
//! messages and proposals, and carries out what the node asks for.

pub mod storage;
pub mod types;

pub use storage::{LogStore, MemStore, StorageError, StorageResult};
pub use types::{
    ConfState, Entry, EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMeta, Term,
};
