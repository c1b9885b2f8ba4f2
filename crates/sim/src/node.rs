//! One simulated node: a [`RawNode`] over a [`MemStore`], its state
//! machine, and what it owes clients.
//!
//! A node is *up* (it has a `RawNode`), *down* (crashed: only the durable
//! part of its store survives, in `down_store`, until it restarts) or
//! *stopped* (removed from the cluster and shut down for good). An up node
//! may be *stalled* for a while (its process stopped, as by SIGSTOP or a
//! paused VM): it counts no ticks, handles no message, request or fsync;
//! messages and requests for it wait (or, for messages, are dropped) until
//! it resumes, with its clock jumped.
//!
//! A `Ready` is handled in two halves, so that a crash can fall between
//! writing and syncing: the first half (install a snapshot, write entries
//! and hard state, send `messages`) runs when the Ready is taken; the
//! second (sync, send `persisted_messages`, apply, serve reads, advance)
//! runs after a simulated fsync delay. Messages and ticks keep arriving in
//! between, as the Ready contract allows.

use std::collections::BTreeMap;

use raft::{Index, MemStore, Message, NodeId, RawNode, Ready, Term};

use crate::client::ClientRequest;
use crate::fsm::Fsm;
use crate::Time;

/// A process stall in progress (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stall {
    /// When the process resumes.
    pub until: Time,
    /// Messages for the node are dropped (a connection reset) rather than
    /// held until it resumes (a socket buffer).
    pub drop_messages: bool,
    /// On resume the node is given the ticks it missed (as the server's
    /// ticker does), else none (as the ticker did before it counted time).
    pub catch_up: bool,
    /// Peer messages held for the node.
    pub inbox: Vec<Message>,
    /// Client requests held for the node: (client, op, request).
    pub requests: Vec<(usize, u64, ClientRequest)>,
}

/// A client write proposed at this node, waiting for its entry to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingWrite {
    pub term: Term,
    pub client: usize,
    pub op: u64,
}

/// A client read waiting for its ReadState and then for the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRead {
    pub client: usize,
    pub op: u64,
    pub key: Vec<u8>,
}

/// One node of the simulated cluster. See the module docs.
pub struct SimNode {
    pub id: NodeId,
    /// `Some` while the node is up.
    pub raw: Option<RawNode<MemStore>>,
    /// The store of a crashed node, holding only what was durable.
    pub down_store: Option<MemStore>,
    pub fsm: Fsm,
    /// The Ready whose first half is done, and when its sync completes.
    pub in_flight: Option<(Ready, Time)>,
    pub pending_writes: BTreeMap<Index, PendingWrite>,
    pub pending_reads: BTreeMap<u64, PendingRead>,
    /// Reads confirmed by the leader: (index to wait for, read context).
    pub reads_waiting: Vec<(Index, u64)>,
    /// Commit observations are checked up to here.
    pub checked_commit: Index,
    /// When a crashed node comes back.
    pub restart_at: Option<Time>,
    /// When a removed node is shut down (if still removed then).
    pub stop_at: Option<Time>,
    /// Shut down for good.
    pub stopped: bool,
    /// Whether the node ever showed up in a leader's configuration.
    pub joined: bool,
    /// The node ticks when `(now + tick_phase) % TICK == 0`.
    pub tick_phase: Time,
    /// Something happened to it in this time unit: check it.
    pub dirty: bool,
    /// The applied index at which the state machine was last snapshotted
    /// into the log store.
    pub compacted_at: Index,
    /// `Some` while the process is stalled.
    pub stall: Option<Stall>,
    /// Ticks the node has counted since it (re)started.
    pub ticks: u64,
    /// Ticks the node missed in its current stall.
    pub stall_ticks_missed: u64,
}

impl std::fmt::Debug for SimNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNode")
            .field("id", &self.id)
            .field("up", &self.raw.is_some())
            .field("stopped", &self.stopped)
            .field("applied", &self.fsm.applied())
            .finish_non_exhaustive()
    }
}

impl SimNode {
    /// A node that is up, running `raw`, with state machine `fsm`.
    pub fn new(id: NodeId, raw: RawNode<MemStore>, fsm: Fsm, tick_phase: Time) -> SimNode {
        SimNode {
            id,
            raw: Some(raw),
            down_store: None,
            fsm,
            in_flight: None,
            pending_writes: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            reads_waiting: Vec::new(),
            checked_commit: 0,
            restart_at: None,
            stop_at: None,
            stopped: false,
            joined: false,
            tick_phase,
            dirty: true,
            compacted_at: 0,
            stall: None,
            ticks: 0,
            stall_ticks_missed: 0,
        }
    }

    /// Whether the node is running.
    pub fn is_up(&self) -> bool {
        self.raw.is_some()
    }

    /// Whether the node is up and takes inputs (not stalled).
    pub fn is_running(&self) -> bool {
        self.raw.is_some() && self.stall.is_none()
    }

    /// Crash: keep only what the store synced; forget everything else
    /// (the Ready in flight, clients' requests, the state machine).
    /// Returns whether the node was up.
    pub fn crash(&mut self) -> bool {
        let Some(mut raw) = self.raw.take() else {
            return false;
        };
        let mut store = std::mem::take(raw.store_mut());
        drop(raw);
        store.crash();
        self.down_store = Some(store);
        self.in_flight = None;
        self.pending_writes.clear();
        self.pending_reads.clear();
        self.reads_waiting.clear();
        self.checked_commit = 0;
        self.stall = None;
        self.ticks = 0;
        true
    }
}
