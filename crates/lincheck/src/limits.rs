//! The checker's bounds, in one place.

/// How many search steps (an attempt to linearize one operation, or one
/// backtrack) one partition may take before the checker gives up with
/// [`Verdict::Unknown`](crate::Verdict::Unknown) instead of running on.
/// The search is exponential in the worst case; real histories from the
/// simulator need a few thousand steps per key.
pub const SEARCH_STEPS_MAX: u64 = 5_000_000;

/// How many operations of the longest linearizable prefix an explanation
/// lists (the most recent ones).
pub const EXPLANATION_OPS_MAX: usize = 12;
