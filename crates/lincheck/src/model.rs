//! What the checker checks against: a sequential specification.

use std::fmt::Debug;
use std::hash::Hash;

use crate::history::Operation;

/// One independent part of a history, checked on its own (for a key-value
/// store: all operations on one key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition<I, O> {
    /// What the partition is (e.g. the key), for explanations.
    pub label: String,
    /// Its operations, in any order.
    pub ops: Vec<Operation<I, O>>,
}

/// A sequential specification of an object.
///
/// The checker searches for an order of the operations, consistent with
/// their real-time order, in which every operation's output is the one this
/// model gives when the operations run one after another from [`init`].
///
/// [`init`]: Model::init
pub trait Model {
    /// The object's state. Hashed and compared to prune the search: two
    /// search paths that linearized the same set of operations and reached
    /// equal states have the same future.
    type State: Clone + Eq + Hash + Debug;
    /// An operation's input (what the client asked for).
    type Input: Clone + Debug;
    /// An operation's output (what the client was told).
    type Output: Clone + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Apply `input` to `state`. With `Some(output)`, return the new state if
    /// the object could have answered `output` in `state`, and `None` if not.
    /// With `None` (the client never learned the outcome), return the state
    /// after the operation takes effect; this must not fail.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// Split a history into parts that can be checked independently (a
    /// history is linearizable iff each part is). The default is one part.
    fn partition(
        &self,
        history: Vec<Operation<Self::Input, Self::Output>>,
    ) -> Vec<Partition<Self::Input, Self::Output>> {
        vec![Partition {
            label: String::from("all"),
            ops: history,
        }]
    }

    /// A one-line description of an operation, for explanations.
    fn describe(&self, op: &Operation<Self::Input, Self::Output>) -> String {
        op.to_string()
    }

    /// A direct, exact verdict for a partition the model knows how to
    /// decide without the general search (e.g. a key that only sees appends
    /// and reads), or `None` to run the search. The default is `None`.
    fn check_directly(
        &self,
        part: &Partition<Self::Input, Self::Output>,
    ) -> Option<crate::check::Verdict> {
        let _ = part;
        None
    }
}
