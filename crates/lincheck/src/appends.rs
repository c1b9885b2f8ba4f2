//! A direct check for a key that sees only appends and reads.
//!
//! Appends only grow a value, so the reads of such a key pin down almost
//! everything: the longest read lists, in order, every append that took
//! effect before it; every other read must be a prefix of it; each read sits
//! right after the last append it contains. What is left free is the order
//! of reads that saw the same value, and of completed appends that no read
//! saw (they must come after every read). Taking those in call order is
//! always at least as good as any other order. So there is exactly one
//! candidate order worth checking, and checking it against real time takes
//! one pass. An append of unknown outcome that no read saw is left out (it
//! never took effect, or took effect after every read).
//!
//! The general search is exponential on such keys when reads are rare
//! (every order of the appends between two reads gives a different string,
//! so its memo cannot merge them); this check is `O(n log n)`.
//!
//! It applies when every append's value is non-empty and no value is a
//! prefix of another (e.g. unique tokens ending in a separator): then a
//! read's bytes split into appended values in exactly one way. Otherwise it
//! steps aside and the search runs.

use std::collections::{BTreeMap, BTreeSet};

use crate::check::{Verdict, Violation};
use crate::history::Time;
use crate::kv::{KvInput, KvOutput, KvState};
use crate::limits::EXPLANATION_OPS_MAX;
use crate::model::{Model, Partition};
use crate::KvModel;

/// The verdict for an append-only partition, or `None` if the check does
/// not apply (see the module docs).
pub(crate) fn check_appends(
    model: &KvModel,
    part: &Partition<KvInput, KvOutput>,
) -> Option<Verdict> {
    let ops = &part.ops;
    let mut values: Vec<(&[u8], usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match (&op.input, &op.output) {
            (KvInput::Append { value, .. }, None | Some(KvOutput::Ok)) if !value.is_empty() => {
                values.push((value, i));
            }
            (KvInput::Get { .. }, None | Some(KvOutput::Value(_))) => {}
            _ => return None,
        }
    }
    values.sort_unstable();
    if values.windows(2).any(|w| w[1].0.starts_with(w[0].0)) {
        return None; // Not prefix-free (or a value appended twice).
    }
    let by_value: BTreeMap<&[u8], usize> = values.iter().copied().collect();
    let lengths: BTreeSet<usize> = values.iter().map(|(v, _)| v.len()).collect();
    let fail = |prefix: &[usize], state: Vec<u8>, stuck: Vec<usize>| {
        let skip = prefix.len().saturating_sub(EXPLANATION_OPS_MAX);
        Some(Verdict::Violation(Violation {
            partition: part.label.clone(),
            prefix_len: prefix.len(),
            prefix_tail: prefix[skip..]
                .iter()
                .map(|&i| model.describe(&ops[i]))
                .collect(),
            state: format!("{:?}", KvState((!state.is_empty()).then_some(state))),
            stuck: stuck.iter().map(|&i| model.describe(&ops[i])).collect(),
        }))
    };

    // Split every read into the appends it saw, in order.
    let mut reads: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let Some(KvOutput::Value(v)) = &op.output else {
            continue;
        };
        let seq = match v {
            None => Vec::new(),
            Some(bytes) => match split(bytes, &by_value, &lengths) {
                Some(seq) if !seq.is_empty() => seq,
                // Bytes no sequence of appends produces.
                _ => return fail(&[], Vec::new(), vec![i]),
            },
        };
        let mut seen = BTreeSet::new();
        if let Some(&twice) = seq.iter().find(|&&a| !seen.insert(a)) {
            // An append applied twice.
            return fail(&[], Vec::new(), vec![twice, i]);
        }
        reads.push((i, seq));
    }
    // Every read must be a prefix of the longest.
    let longest = reads
        .iter()
        .max_by_key(|(i, seq)| (seq.len(), std::cmp::Reverse(*i)))
        .map(|(i, seq)| (*i, seq.clone()))
        .unwrap_or_default();
    for (i, seq) in &reads {
        if !longest.1.starts_with(seq) {
            return fail(&[], Vec::new(), vec![*i, longest.0]);
        }
    }

    // The one candidate order.
    let call = |i: usize| ops[i].call;
    let ret = |i: usize| ops[i].ret.unwrap_or(Time::MAX);
    let mut reads_at: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, seq) in &reads {
        reads_at.entry(seq.len()).or_default().push(*i);
    }
    let mut order: Vec<usize> = Vec::with_capacity(ops.len());
    for k in 0..=longest.1.len() {
        if k > 0 {
            order.push(longest.1[k - 1]);
        }
        if let Some(rs) = reads_at.get_mut(&k) {
            rs.sort_by_key(|&i| (call(i), i));
            order.extend(rs.iter().copied());
        }
    }
    let in_longest: BTreeSet<usize> = longest.1.iter().copied().collect();
    let mut unseen: Vec<usize> = values
        .iter()
        .map(|(_, i)| *i)
        .filter(|i| !in_longest.contains(i) && ops[*i].ret.is_some())
        .collect();
    unseen.sort_by_key(|&i| (call(i), i));
    order.extend(unseen);

    // Real time: nothing later in the order may have returned before
    // something earlier was called.
    let mut min_ret_after = vec![Time::MAX; order.len() + 1];
    for p in (0..order.len()).rev() {
        min_ret_after[p] = min_ret_after[p + 1].min(ret(order[p]));
    }
    for p in 0..order.len() {
        let x = order[p];
        if min_ret_after[p + 1] < call(x) {
            let y = order[p + 1..]
                .iter()
                .copied()
                .find(|&y| ret(y) == min_ret_after[p + 1])
                .unwrap_or(x);
            let mut state = Vec::new();
            for &i in &order[..p] {
                if let KvInput::Append { value, .. } = &ops[i].input {
                    state.extend_from_slice(value);
                }
            }
            return fail(&order[..p], state, vec![x, y]);
        }
    }
    Some(Verdict::Linearizable)
}

/// Splits `bytes` into appended values (prefix-free, so at most one way).
fn split(
    bytes: &[u8],
    by_value: &BTreeMap<&[u8], usize>,
    lengths: &BTreeSet<usize>,
) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let (len, op) = lengths
            .iter()
            .filter(|&&l| l <= rest.len())
            .find_map(|&l| by_value.get(&rest[..l]).map(|&op| (l, op)))?;
        out.push(op);
        pos += len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KvOperation, Operation};

    fn append(v: &str) -> KvInput {
        KvInput::Append {
            key: b"k".to_vec(),
            value: v.into(),
        }
    }

    fn get() -> KvInput {
        KvInput::Get { key: b"k".to_vec() }
    }

    fn part(ops: Vec<KvOperation>) -> Partition<KvInput, KvOutput> {
        Partition {
            label: "key \"k\"".into(),
            ops,
        }
    }

    #[test]
    fn applies_only_to_prefix_free_append_only_keys() {
        let ok = part(vec![Operation::completed(
            1,
            0,
            1,
            append("a;"),
            KvOutput::Ok,
        )]);
        assert_eq!(check_appends(&KvModel, &ok), Some(Verdict::Linearizable));
        let not_prefix_free = part(vec![
            Operation::completed(1, 0, 1, append("a"), KvOutput::Ok),
            Operation::completed(1, 2, 3, append("ab"), KvOutput::Ok),
        ]);
        assert_eq!(check_appends(&KvModel, &not_prefix_free), None);
        let with_put = part(vec![Operation::completed(
            1,
            0,
            1,
            KvInput::Put {
                key: b"k".to_vec(),
                value: b"x".to_vec(),
            },
            KvOutput::Ok,
        )]);
        assert_eq!(check_appends(&KvModel, &with_put), None);
    }

    #[test]
    fn finds_the_order_and_rejects_what_real_time_forbids() {
        let read = |c, r, v: &str| {
            Operation::completed(9, c, r, get(), KvOutput::Value(Some(v.as_bytes().to_vec())))
        };
        // b was appended after a returned, but the read saw b first.
        let h = part(vec![
            Operation::completed(1, 0, 5, append("a;"), KvOutput::Ok),
            Operation::completed(2, 10, 15, append("b;"), KvOutput::Ok),
            read(20, 30, "b;a;"),
        ]);
        assert!(matches!(
            check_appends(&KvModel, &h),
            Some(Verdict::Violation(_))
        ));
        // Concurrent appends: either order.
        let h = part(vec![
            Operation::completed(1, 0, 15, append("a;"), KvOutput::Ok),
            Operation::completed(2, 10, 15, append("b;"), KvOutput::Ok),
            read(20, 30, "b;a;"),
        ]);
        assert_eq!(check_appends(&KvModel, &h), Some(Verdict::Linearizable));
    }
}
