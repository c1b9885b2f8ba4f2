//! [`RawNode`]: the public API of the core and the Ready cycle.

use bytes::Bytes;

use crate::confchange::ConfChange;
use crate::config::Config;
use crate::error::{ProposeError, Result};
use crate::message::Message;
use crate::ready::{Ready, Status};
use crate::storage::LogStore;
use crate::types::{Index, NodeId, Term};

/// One Raft node, driven from outside. See the crate docs for the contract.
pub struct RawNode<S: LogStore> {
    pub(crate) store: S,
    pub(crate) config: Config,
}

impl<S: LogStore> RawNode<S> {
    /// A node that starts from what `store` holds (hard state, snapshot,
    /// log), as a follower. `config.applied` is where the state machine
    /// stands.
    ///
    /// # Errors
    /// `Error::Config` for a bad config or an `applied` index beyond the
    /// log; `Error::Storage` if the store cannot be read.
    pub fn new(config: Config, store: S) -> Result<Self> {
        config.validate()?;
        let _ = store;
        todo!()
    }

    /// Advances time by one tick: followers and candidates count towards an
    /// election timeout, the leader towards its next heartbeat and its
    /// check-quorum.
    pub fn tick(&mut self) {
        todo!()
    }

    /// Handles a message from a peer. Messages for another node, from an
    /// unknown sender or stale ones are ignored.
    ///
    /// # Errors
    /// `Error::Storage` if the store fails; the node must then stop.
    pub fn step(&mut self, msg: Message) -> Result<()> {
        let _ = msg;
        todo!()
    }

    /// Appends `data` as a new entry if this node is the leader, and returns
    /// where it landed. It is committed when it shows up in a Ready's
    /// `committed_entries` at that index with that term; if another entry
    /// shows up there instead, the proposal was lost.
    ///
    /// # Errors
    /// A [`ProposeError`] if the proposal is refused; nothing was appended.
    pub fn propose(&mut self, data: Bytes) -> std::result::Result<(Index, Term), ProposeError> {
        let _ = data;
        todo!()
    }

    /// Proposes a membership change (see [`crate::membership`]), which takes
    /// effect as soon as it is appended.
    ///
    /// # Errors
    /// A [`ProposeError`]: not leader, another change not yet committed, the
    /// leader's first entry of its term not yet committed, an invalid change.
    pub fn propose_conf_change(
        &mut self,
        cc: ConfChange,
    ) -> std::result::Result<(Index, Term), ProposeError> {
        let _ = cc;
        todo!()
    }

    /// Asks for a linearizable read. The answer is a [`ReadState`] with
    /// this `ctx` in a later Ready; serve the read once the state machine
    /// has applied its index. A follower forwards the request to the leader.
    /// A read may be lost (leader change, lost message): the caller retries
    /// after a timeout.
    ///
    /// # Errors
    /// `Error::NoLeader` on a follower that knows no leader,
    /// `Error::TooManyReads` when too many reads wait.
    ///
    /// [`ReadState`]: crate::ReadState
    pub fn read_index(&mut self, ctx: u64) -> Result<()> {
        let _ = ctx;
        todo!()
    }

    /// Hands leadership to voter `to`: the leader catches it up, then tells
    /// it to start an election at once. Proposals are refused meanwhile; the
    /// transfer is abandoned after an election timeout.
    ///
    /// # Errors
    /// `Error::NotLeader`, or `Error::NotVoter` if `to` is not a voter.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<()> {
        let _ = to;
        todo!()
    }

    /// Starts an election now (with pre-vote if configured).
    ///
    /// # Errors
    /// `Error::NotVoter` if this node is not a voter.
    pub fn campaign(&mut self) -> Result<()> {
        todo!()
    }

    /// Whether a [`Ready`] has something to do.
    pub fn has_ready(&self) -> bool {
        todo!()
    }

    /// Takes the next [`Ready`]. Call [`RawNode::advance`] with it once it
    /// is handled, before calling `ready` again.
    pub fn ready(&mut self) -> Ready {
        todo!()
    }

    /// Tells the node that `ready` was handled: everything in it is durable
    /// and its committed entries are applied.
    ///
    /// # Errors
    /// `Error::ReadyMisuse` for a Ready that is not the outstanding one;
    /// `Error::Storage` if the store fails.
    pub fn advance(&mut self, ready: Ready) -> Result<()> {
        let _ = ready;
        todo!()
    }

    /// Records a snapshot of the state machine at `index` (at most the
    /// applied index) in the store, which drops the log up to it.
    ///
    /// # Errors
    /// `Error::Compact` if `index` is beyond the applied index or below the
    /// current snapshot; `Error::Storage` if the store fails.
    pub fn compact(&mut self, index: Index, data: Bytes) -> Result<()> {
        let _ = (index, data);
        todo!()
    }

    /// The node's state.
    pub fn status(&self) -> Status {
        todo!()
    }

    /// The log store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The log store, for handling a Ready.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Checks the node's internal invariants (commit within the log and
    /// never decreasing, committed entries never changing, terms never
    /// decreasing, at most one leader seen per term...). Runs after every
    /// input in debug builds.
    ///
    /// # Errors
    /// A description of the first violated invariant.
    pub fn check_invariants(&mut self) -> std::result::Result<(), String> {
        todo!()
    }
}
