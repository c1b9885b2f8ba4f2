//! The Raft consensus protocol as a pure, deterministic state machine.
//!
//! No I/O, no clock, no threads, no unseeded randomness: the caller drives a
//! [`RawNode`] with ticks, messages and proposals, and carries out what the
//! node asks for in a [`Ready`]. The same inputs always give the same outputs.
//!
//! # Driving a node
//!
//! Inputs: [`RawNode::tick`] (time, in ticks), [`RawNode::step`] (a message
//! from a peer), [`RawNode::propose`], [`RawNode::propose_conf_change`],
//! [`RawNode::read_index`], [`RawNode::transfer_leader`],
//! [`RawNode::campaign`]. After any of them, if [`RawNode::has_ready`], take
//! the [`Ready`] with [`RawNode::ready`] and handle it **in this order**:
//!
//! 1. If `snapshot` is set, restore the state machine from it, then call
//!    [`LogStore::install_snapshot`] with it.
//! 2. Append `entries` to the store ([`LogStore::append`]) and, if
//!    `hard_state` is set, save it ([`LogStore::save_hard_state`]).
//! 3. Send `messages`. They do not depend on this Ready being durable: they
//!    are the leader's AppendEntries, heartbeats and snapshots, so the
//!    leader's fsync runs in parallel with replication.
//! 4. [`LogStore::sync`] the store, then send `persisted_messages` (votes,
//!    vote requests, follower acknowledgements: they promise that the
//!    entries and hard state are durable).
//! 5. Apply `committed_entries` to the state machine in order; serve each of
//!    `read_states` once the state machine has applied its `index`.
//! 6. Call [`RawNode::advance`] with the Ready. This tells the core that
//!    everything in it is durable and applied; only now does a leader count
//!    its own copy of the new entries towards commit (durable-ack counting),
//!    so `advance` may itself produce a new Ready.
//!
//! Only one Ready is outstanding at a time: call `advance` before the next
//! `ready`. Ticks, messages and proposals may arrive between `ready` and
//! `advance`; what they produce goes into the next Ready.
//!
//! Batching: what happens between two Readies shares the next one. The
//! leader sends every entry proposed since the last Ready in as few
//! AppendEntries per follower as the batch limits allow (up to the in-flight
//! window), and confirms every read waiting for leadership with one
//! heartbeat round.
//!
//! Compaction: once the state machine has a snapshot of everything up to an
//! applied index, [`RawNode::compact`] records it in the store and drops the
//! log up to there.
//!
//! ```
//! use bytes::Bytes;
//! use raft::{Config, ConfState, LogStore, MemStore, RawNode, Role};
//!
//! let store = MemStore::with_conf(ConfState::with_voters([1]));
//! let mut node = RawNode::new(Config::new(1), store).unwrap();
//! node.campaign().unwrap();
//! let mut applied = Vec::new();
//! let mut proposed = None;
//! for _ in 0..10 {
//!     if node.status().role == Role::Leader && proposed.is_none() {
//!         proposed = Some(node.propose(Bytes::from("x=1")).unwrap());
//!     }
//!     if !node.has_ready() {
//!         continue;
//!     }
//!     let rd = node.ready();
//!     // 1. no snapshot in a single-node cluster.
//!     assert!(rd.snapshot.is_none());
//!     // 2. persist entries and hard state.
//!     node.store_mut().append(&rd.entries).unwrap();
//!     if let Some(hs) = &rd.hard_state {
//!         node.store_mut().save_hard_state(hs).unwrap();
//!     }
//!     // 3. and 4. nothing to send to nobody, but sync.
//!     node.store_mut().sync().unwrap();
//!     // 5. apply.
//!     for e in &rd.committed_entries {
//!         applied.push((e.index, e.data.clone()));
//!     }
//!     // 6. advance.
//!     node.advance(rd).unwrap();
//! }
//! let (index, _term) = proposed.unwrap();
//! // The leader's no-op entry of its term came first, then ours.
//! assert_eq!(applied.last(), Some(&(index, Bytes::from("x=1"))));
//! assert_eq!(node.status().commit, index);
//! assert_eq!(node.status().applied, index);
//! ```
//!
//! # What it implements
//!
//! Elections with randomized timeouts, pre-vote, check-quorum and leader
//! stickiness; replication with the log-matching check, fast conflict
//! backup and per-follower progress (probe / replicate / snapshot) with a
//! bounded in-flight window; commit of current-term entries by a majority
//! of durable matches; ReadIndex and (optionally) lease reads; leadership
//! transfer; snapshots and compaction; membership changes one voter at a
//! time, with learners (see [`membership`] for the safety argument).
//!
//! # Files
//!
//! `node.rs` is the public API and the Ready cycle; `step.rs` the rules
//! every role follows (terms, votes); `follower.rs`, `candidate.rs` and
//! `leader.rs` one role each; `log.rs` the log as the core sees it (the
//! store plus entries not yet persisted); `progress.rs` the leader's view of
//! each follower; `read.rs` ReadIndex; `membership.rs` configurations;
//! `invariants.rs` the checks run after every step in debug builds.

pub mod confchange;
pub mod config;
pub mod error;
pub mod limits;
pub mod membership;
pub mod message;
pub mod ready;
pub mod rng;
pub mod storage;
pub mod types;

mod candidate;
mod follower;
mod invariants;
mod leader;
mod log;
mod node;
mod progress;
mod read;
mod step;

pub use confchange::{ConfChange, ConfChangeError, ConfChangeKind};
pub use config::Config;
pub use error::{Error, LearnerLag, ProposeError, Result};
pub use message::{Message, MessageBody, ReadState};
pub use node::RawNode;
pub use ready::{ProgressState, ProgressStatus, Ready, Role, SoftState, Status};
pub use storage::{LogStore, MemStore, StorageError, StorageResult};
pub use types::{
    ConfState, Entry, EntryKind, HardState, Index, NodeId, Snapshot, SnapshotMeta, Term,
};
