//! The checker's bounds, in one place.

#![allow(non_upper_case_globals)] // Limits are named `thing_max` (see STYLE.md).

/// How many search steps (an attempt to linearize one operation, or one
/// backtrack) one partition may take before the checker gives up with
/// [`Verdict::Unknown`](crate::Verdict::Unknown) instead of running on.
/// The search is exponential in the worst case; real histories from the
/// simulator need a few thousand steps per key.
pub const search_steps_max: u64 = 5_000_000;

/// How many operations of the longest linearizable prefix an explanation
/// lists (the most recent ones).
pub const explanation_ops_max: usize = 12;
