//! The checks at the end of a run, once the faults stopped and the cluster
//! settled: replica convergence, appends exactly once, linearizability.

use std::collections::BTreeMap;

use lincheck::{KvInput, KvOutput, Verdict};
use raft::Index;

use crate::client::APPEND_KEYS;
use crate::cluster::Cluster;
use crate::Report;

pub(crate) fn check_end(c: &mut Cluster, report: &mut Report) {
    report.leader_at_end = c.leader().is_some();
    if let Some(l) = c.leader() {
        if let Some(raw) = c.nodes.get(&l).and_then(|n| n.raw.as_ref()) {
            report.members_at_end = raw.status().conf.members().into_iter().collect();
        }
    }
    convergence(c, report);
    if c.violation.is_some() {
        return;
    }
    appends_exactly_once(c);
    if c.violation.is_some() {
        return;
    }
    report.history_ops = c.history.len();
    let budget = std::env::var("SIM_LINCHECK_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(lincheck::limits::SEARCH_STEPS_MAX);
    match lincheck::check_with_budget(&lincheck::KvModel, c.history.clone(), budget) {
        Err(e) => c.fail(format!("malformed history: {e}")),
        Ok(outcome) => match outcome.verdict {
            Verdict::Linearizable => {}
            Verdict::Unknown { partition, steps } => {
                report.lincheck_unknown = true;
                c.log(|| format!("lincheck gave up on {partition} after {steps} steps"));
                if std::env::var_os("SIM_DUMP_HISTORY").is_some() {
                    for op in &c.history {
                        println!("{op}");
                    }
                }
            }
            Verdict::Violation(v) => c.fail(format!("linearizability: {v}")),
        },
    }
}

/// Replicas at the same applied index hold the same state.
fn convergence(c: &mut Cluster, report: &mut Report) {
    let mut by_index: BTreeMap<Index, Vec<(u64, u64)>> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut applied = Vec::new();
    for n in c.nodes.values() {
        if n.stopped || !n.is_up() {
            continue;
        }
        let member = report.members_at_end.is_empty() || report.members_at_end.contains(&n.id);
        if member {
            applied.push(n.fsm.applied());
        }
        match n.fsm.digest() {
            Ok(d) => by_index.entry(n.fsm.applied()).or_default().push((n.id, d)),
            Err(e) => errors.push(format!("node {}: digest: {e}", n.id)),
        }
    }
    report.converged = applied.windows(2).all(|w| w[0] == w[1]);
    for (index, digests) in by_index {
        if let Some((first, d0)) = digests.first() {
            for (id, d) in &digests[1..] {
                if d != d0 {
                    errors.push(format!(
                        "replica convergence: nodes {first} and {id} both applied {index} but \
                         their states differ ({d0:016x} vs {d:016x})"
                    ));
                }
            }
        }
    }
    for e in errors {
        c.fail(e);
    }
}

/// On the append-only keys, in the most advanced replica: every
/// acknowledged append is there exactly once, an append of unknown outcome
/// at most once, and nothing else is there.
fn appends_exactly_once(c: &mut Cluster) {
    let Some(best) = c
        .nodes
        .values()
        .filter(|n| n.is_up() && !n.stopped)
        .max_by_key(|n| (n.fsm.applied(), std::cmp::Reverse(n.id)))
    else {
        return;
    };
    let mut errors = Vec::new();
    for key in APPEND_KEYS {
        // token → acknowledged?
        let mut appended: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        for op in &c.history {
            if let KvInput::Append { key: k, value } = &op.input {
                if k.as_slice() == key {
                    let acked = matches!(op.output, Some(KvOutput::Ok));
                    let e = appended.entry(value.clone()).or_insert(false);
                    *e |= acked;
                }
            }
        }
        let value = match best.fsm.get(key) {
            Ok(v) => v.unwrap_or_default(),
            Err(e) => {
                errors.push(format!("node {}: read {key:?}: {e}", best.id));
                continue;
            }
        };
        let mut seen: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        for token in value.split_inclusive(|b| *b == b';') {
            *seen.entry(token.to_vec()).or_default() += 1;
        }
        let name = String::from_utf8_lossy(key);
        for (token, count) in &seen {
            let t = String::from_utf8_lossy(token);
            if *count > 1 {
                errors.push(format!(
                    "append applied twice: {t} appears {count} times in {name}"
                ));
            }
            if !appended.contains_key(token) {
                errors.push(format!("append from nowhere: {t} in {name}"));
            }
        }
        for (token, acked) in &appended {
            if *acked && !seen.contains_key(token) {
                let t = String::from_utf8_lossy(token);
                errors.push(format!(
                    "lost write: acknowledged append {t} is not in {name} (node {}, applied {})",
                    best.id,
                    best.fsm.applied()
                ));
            }
        }
    }
    for e in errors {
        c.fail(e);
    }
}
