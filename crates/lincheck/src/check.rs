//! The search: Wing & Gong's algorithm with Lowe's memoization, as in
//! Porcupine.
//!
//! The operations of one partition become a list of call and return events
//! in time order (a call before a return at the same time; an unknown
//! operation's return at infinity). The search walks the list from its head:
//!
//! - at a **call**, it tries to linearize that operation now: if the model
//!   accepts its output in the current state and the pair (set of linearized
//!   operations, new state) was never reached before, it pushes the
//!   operation on a stack, removes its call and return from the list and
//!   starts again from the head; otherwise it moves on to the next event;
//! - at a **return**, the operation that returns was not linearized before
//!   it had to be: the search backtracks (pops the last linearized
//!   operation, puts its events back, and tries the event after its call).
//!
//! Operations of unknown outcome (return at infinity) are handled the other
//! way round: at their call the search first passes over them, and
//! linearizes one there only when it backtracks to that point. Such an
//! operation never has to come early, so this finds the usual case (it took
//! effect late, or never) without trying it at every position first; and
//! once the walk reaches the return of an unknown operation, only unknown
//! operations are left, and the history is linearizable.
//!
//! The history is linearizable when the list is empty, and not when the
//! stack is empty at a return. The memo (a set of (bitset, state)) makes the
//! search polynomial for the usual histories; it stays exponential in the
//! worst case, so the number of steps is bounded and running out gives an
//! "unknown" verdict rather than a hang.

use std::collections::HashSet;
use std::fmt;

use crate::history::{Operation, Time};
use crate::limits::{EXPLANATION_OPS_MAX, SEARCH_STEPS_MAX};
use crate::model::{Model, Partition};

/// A history the checker cannot take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryError {
    /// An operation returned before it was called.
    ReturnBeforeCall { client: u64, call: Time, ret: Time },
    /// An operation has a return time but no output, or the other way round.
    OutputMismatch { client: u64, call: Time },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::ReturnBeforeCall { client, call, ret } => write!(
                f,
                "operation of client {client} returns at {ret}, before its call at {call}"
            ),
            HistoryError::OutputMismatch { client, call } => write!(
                f,
                "operation of client {client} called at {call} must have both a return time \
                 and an output, or neither"
            ),
        }
    }
}

impl std::error::Error for HistoryError {}

/// Why a partition is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The partition (e.g. the key).
    pub partition: String,
    /// How many operations the longest linearizable prefix found has.
    pub prefix_len: usize,
    /// The last operations of that prefix, in linearization order (at most
    /// `EXPLANATION_OPS_MAX`).
    pub prefix_tail: Vec<String>,
    /// The model's state after the prefix.
    pub state: String,
    /// The operations that could come next in real-time order, none of
    /// which the model accepts in that state.
    pub stuck: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "not linearizable: {}; longest linearizable prefix has {} operations, ending with:",
            self.partition, self.prefix_len
        )?;
        for op in &self.prefix_tail {
            writeln!(f, "    {op}")?;
        }
        writeln!(f, "  state after it: {}", self.state)?;
        writeln!(f, "  none of these can come next:")?;
        for op in &self.stuck {
            writeln!(f, "    {op}")?;
        }
        Ok(())
    }
}

/// The checker's answer for a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every partition is linearizable.
    Linearizable,
    /// A partition is not (the first one found, in partition order).
    Violation(Violation),
    /// No violation was found, but the search gave up on a partition after
    /// its step budget.
    Unknown { partition: String, steps: u64 },
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::Violation(v) => write!(f, "{v}"),
            Verdict::Unknown { partition, steps } => write!(
                f,
                "unknown: gave up on {partition} after {steps} search steps"
            ),
        }
    }
}

/// What a check found, with some figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// How many partitions were checked.
    pub partitions: usize,
    /// How many operations were checked in all.
    pub ops: usize,
    /// Search steps used in all partitions.
    pub steps: u64,
}

/// Check `history` against `model` with the default step budget
/// ([`SEARCH_STEPS_MAX`] per partition).
///
/// # Errors
/// A malformed history (see [`HistoryError`]).
pub fn check<M: Model>(
    model: &M,
    history: Vec<Operation<M::Input, M::Output>>,
) -> Result<Outcome, HistoryError> {
    check_with_budget(model, history, SEARCH_STEPS_MAX)
}

/// Check `history` against `model`, giving up on a partition after
/// `steps_max` search steps.
///
/// # Errors
/// A malformed history (see [`HistoryError`]).
pub fn check_with_budget<M: Model>(
    model: &M,
    history: Vec<Operation<M::Input, M::Output>>,
    steps_max: u64,
) -> Result<Outcome, HistoryError> {
    for op in &history {
        if op.ret.is_some() != op.output.is_some() {
            return Err(HistoryError::OutputMismatch {
                client: op.client,
                call: op.call,
            });
        }
        if let Some(ret) = op.ret {
            if ret < op.call {
                return Err(HistoryError::ReturnBeforeCall {
                    client: op.client,
                    call: op.call,
                    ret,
                });
            }
        }
    }
    let mut outcome = Outcome {
        verdict: Verdict::Linearizable,
        partitions: 0,
        ops: 0,
        steps: 0,
    };
    for part in model.partition(history) {
        outcome.partitions += 1;
        outcome.ops += part.ops.len();
        let (verdict, steps) = match model.check_directly(&part) {
            Some(verdict) => (verdict, 0),
            None => check_partition(model, &part, steps_max),
        };
        outcome.steps += steps;
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Violation(_) => {
                outcome.verdict = verdict;
                return Ok(outcome);
            }
            Verdict::Unknown { .. } => {
                if outcome.verdict.is_linearizable() {
                    outcome.verdict = verdict;
                }
            }
        }
    }
    Ok(outcome)
}

/// The event list: nodes `0..2n` are events (`2i` the call of operation
/// `i`, `2i + 1` its return), `2n` is the head sentinel and `2n + 1` the
/// tail sentinel. Removal and reinsertion are "dancing links": a removed
/// node keeps its own links, so undoing removals in reverse order restores
/// the list exactly.
struct EventList {
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
    tail: usize,
}

impl EventList {
    fn new(order: &[usize], nodes: usize) -> EventList {
        let head = nodes;
        let tail = nodes + 1;
        let mut next = vec![tail; nodes + 2];
        let mut prev = vec![head; nodes + 2];
        let mut last = head;
        for &node in order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        next[last] = tail;
        prev[tail] = last;
        EventList {
            next,
            prev,
            head,
            tail,
        }
    }

    fn remove(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn reinsert(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        self.prev[n] = node;
    }

    fn is_empty(&self) -> bool {
        self.next[self.head] == self.tail
    }
}

/// A decision on the search stack.
enum Frame<S> {
    /// Operation `op` was linearized; `before` is the state before it.
    /// `second_try`: it had been skipped at this point first (an unknown
    /// operation), so both choices have now been tried.
    Linearized {
        op: usize,
        before: S,
        second_try: bool,
    },
    /// Operation `op` (an unknown one) was passed over at this point.
    Skipped { op: usize },
}

fn check_partition<M: Model>(
    model: &M,
    part: &Partition<M::Input, M::Output>,
    steps_max: u64,
) -> (Verdict, u64) {
    let ops = &part.ops;
    let n = ops.len();
    // Sort events by time; at equal times calls come first (concurrent).
    let mut order: Vec<(Time, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.call, 0, 2 * i));
        order.push((op.ret.unwrap_or(Time::MAX), 1, 2 * i + 1));
    }
    order.sort_unstable();
    let order: Vec<usize> = order.into_iter().map(|(_, _, node)| node).collect();
    let mut list = EventList::new(&order, 2 * n);

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut memo: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    // The longest run of linearized operations seen, for explanations.
    let mut depth = 0usize;
    let mut best: Vec<usize> = Vec::new();
    let mut state = model.init();
    let mut node = list.next[list.head];
    let mut steps = 0u64;

    // Tries to linearize operation `i` now; on success updates the state,
    // the bitset, the list and the memo.
    let try_linearize = |i: usize,
                         state: &mut M::State,
                         linearized: &mut Vec<u64>,
                         memo: &mut HashSet<(Vec<u64>, M::State)>,
                         list: &mut EventList|
     -> Option<M::State> {
        let op = &ops[i];
        let next_state = model.step(state, &op.input, op.output.as_ref())?;
        linearized[i / 64] |= 1 << (i % 64);
        if memo.insert((linearized.clone(), next_state.clone())) {
            list.remove(2 * i);
            list.remove(2 * i + 1);
            Some(std::mem::replace(state, next_state))
        } else {
            linearized[i / 64] &= !(1 << (i % 64));
            None
        }
    };

    while !list.is_empty() {
        steps += 1;
        if steps > steps_max {
            let verdict = Verdict::Unknown {
                partition: part.label.clone(),
                steps: steps_max,
            };
            return (verdict, steps_max);
        }
        if node != list.tail && node.is_multiple_of(2) {
            // A call.
            let i = node / 2;
            if ops[i].ret.is_none() {
                // An operation of unknown outcome may take effect at any
                // later point: pass over it first, and linearize it here
                // only if the search comes back to this point.
                stack.push(Frame::Skipped { op: i });
                node = list.next[node];
                continue;
            }
            match try_linearize(i, &mut state, &mut linearized, &mut memo, &mut list) {
                Some(before) => {
                    stack.push(Frame::Linearized {
                        op: i,
                        before,
                        second_try: false,
                    });
                    depth += 1;
                    if depth > best.len() {
                        best = linearized_ops(&stack);
                    }
                    node = list.next[list.head];
                }
                None => node = list.next[node],
            }
            continue;
        }
        if node != list.tail && ops[node / 2].ret.is_none() {
            // The return of an unknown operation: only such operations are
            // left, and they can all take effect now, in any order (or
            // never). Linearizable.
            return (Verdict::Linearizable, steps);
        }
        // A return: the operation returning here was never linearized.
        // Backtrack to the last choice that has an alternative left.
        loop {
            steps += 1;
            match stack.pop() {
                None => return (Verdict::Violation(explain(model, part, &best)), steps),
                Some(Frame::Linearized {
                    op,
                    before,
                    second_try,
                }) => {
                    state = before;
                    depth -= 1;
                    linearized[op / 64] &= !(1 << (op % 64));
                    list.reinsert(2 * op + 1);
                    list.reinsert(2 * op);
                    if !second_try {
                        // The alternative: leave it for later.
                        node = list.next[2 * op];
                        break;
                    }
                }
                Some(Frame::Skipped { op }) => {
                    // The alternative: linearize it here after all.
                    if let Some(before) =
                        try_linearize(op, &mut state, &mut linearized, &mut memo, &mut list)
                    {
                        stack.push(Frame::Linearized {
                            op,
                            before,
                            second_try: true,
                        });
                        depth += 1;
                        if depth > best.len() {
                            best = linearized_ops(&stack);
                        }
                        node = list.next[list.head];
                        break;
                    }
                }
            }
        }
    }
    (Verdict::Linearizable, steps)
}

fn linearized_ops<S>(stack: &[Frame<S>]) -> Vec<usize> {
    stack
        .iter()
        .filter_map(|f| match f {
            Frame::Linearized { op, .. } => Some(*op),
            Frame::Skipped { .. } => None,
        })
        .collect()
}

/// Describe the longest linearizable prefix found and what could not
/// follow it.
fn explain<M: Model>(
    model: &M,
    part: &Partition<M::Input, M::Output>,
    best: &[usize],
) -> Violation {
    let ops = &part.ops;
    let mut state = model.init();
    for &i in best {
        if let Some(s) = model.step(&state, &ops[i].input, ops[i].output.as_ref()) {
            state = s;
        }
    }
    let mut done = vec![false; ops.len()];
    for &i in best {
        done[i] = true;
    }
    // The earliest return among the rest bounds what could come next.
    let horizon = ops
        .iter()
        .zip(&done)
        .filter(|(_, d)| !**d)
        .map(|(op, _)| op.ret.unwrap_or(Time::MAX))
        .min()
        .unwrap_or(Time::MAX);
    let stuck = ops
        .iter()
        .zip(&done)
        .filter(|(op, d)| !**d && op.call <= horizon)
        .map(|(op, _)| model.describe(op))
        .collect();
    let skip = best.len().saturating_sub(EXPLANATION_OPS_MAX);
    Violation {
        partition: part.label.clone(),
        prefix_len: best.len(),
        prefix_tail: best[skip..]
            .iter()
            .map(|&i| model.describe(&ops[i]))
            .collect(),
        state: format!("{state:?}"),
        stuck,
    }
}
