//! Histories: what clients asked for, when, and what they were told.

use std::fmt;

/// A point in time as the history's recorder saw it (any monotonic unit:
/// simulator ticks, nanoseconds). Only the order of times matters.
pub type Time = u64;

/// One client operation.
///
/// `call` is when the client sent it, `ret` when it learned the outcome.
/// An operation whose outcome is unknown (a timeout, a lost connection) has
/// `ret == None` and `output == None`: it may have taken effect at any
/// moment after `call`, or never.
///
/// A time is compared with `<`: an operation that returned at time `t`
/// precedes one called strictly after `t`; one called *at* `t` is treated as
/// concurrent with it (the lenient choice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Which client issued it (for explanations only).
    pub client: u64,
    pub call: Time,
    /// `None`: the outcome is unknown.
    pub ret: Option<Time>,
    pub input: I,
    /// `None`: the outcome is unknown. Must be `None` iff `ret` is.
    pub output: Option<O>,
}

impl<I, O> Operation<I, O> {
    /// A completed operation.
    pub fn completed(client: u64, call: Time, ret: Time, input: I, output: O) -> Self {
        Operation {
            client,
            call,
            ret: Some(ret),
            input,
            output: Some(output),
        }
    }

    /// An operation whose outcome the client never learned.
    pub fn unknown(client: u64, call: Time, input: I) -> Self {
        Operation {
            client,
            call,
            ret: None,
            input,
            output: None,
        }
    }
}

impl<I: fmt::Debug, O: fmt::Debug> fmt::Display for Operation<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} [{}, ", self.client, self.call)?;
        match self.ret {
            Some(t) => write!(f, "{t}]")?,
            None => write!(f, "?]")?,
        }
        write!(f, " {:?} -> ", self.input)?;
        match &self.output {
            Some(o) => write!(f, "{o:?}"),
            None => write!(f, "unknown"),
        }
    }
}
