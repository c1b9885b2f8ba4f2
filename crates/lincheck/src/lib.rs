//! A Porcupine-style linearizability checker.
//!
//! A history is a set of client [`Operation`]s, each with a call time, a
//! return time (or none, if the client never learned the outcome), an input
//! and an output. It is *linearizable* against a sequential [`Model`] if
//! there is an order of all operations that
//!
//! 1. respects real time: an operation that returned before another was
//!    called comes first, and
//! 2. is legal: running the inputs one after another through the model
//!    gives each completed operation the output its client saw.
//!
//! An operation with an unknown outcome may take effect at any moment after
//! its call, or never; it needs no legal output.
//!
//! [`check`] splits the history with [`Model::partition`] (the key-value
//! [`KvModel`] splits by key), searches each part with the algorithm of
//! Wing & Gong as improved by Lowe and used by Porcupine (see [`check`]'s
//! module for how it works), and returns a [`Verdict`]: linearizable, a
//! [`Violation`] with the longest linearizable prefix and the operations
//! that could not follow it, or unknown when the bounded search gave up.
//!
//! ```
//! use lincheck::{check, KvInput, KvModel, KvOutput, Operation};
//!
//! let put = KvInput::Put { key: b"k".to_vec(), value: b"1".to_vec() };
//! let get = KvInput::Get { key: b"k".to_vec() };
//! // A write completes, then a later read still sees nothing: a stale read.
//! let history = vec![
//!     Operation::completed(1, 0, 10, put, KvOutput::Ok),
//!     Operation::completed(2, 20, 30, get, KvOutput::Value(None)),
//! ];
//! let outcome = check(&KvModel, history).unwrap();
//! assert!(!outcome.verdict.is_linearizable());
//! ```

mod appends;
mod check;
mod history;
mod kv;
pub mod limits;
mod model;

pub use check::{check, check_with_budget, HistoryError, Outcome, Verdict, Violation};
pub use history::{Operation, Time};
pub use kv::{KvInput, KvModel, KvOperation, KvOutput, KvState};
pub use model::{Model, Partition};
