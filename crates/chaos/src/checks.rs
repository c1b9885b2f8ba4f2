//! The checks run on a finished run: linearizability per key, every
//! acknowledged write visible exactly once in the final reads, and replica
//! convergence. Each takes plain data, so each is tested on synthetic
//! histories.
//!
//! Append tokens are `c<client>.<n>;`: unique per operation and ended by
//! `;`, so the final value of an append key splits back into the tokens
//! that were applied, in order. An acknowledged token must appear exactly
//! once (missing: a lost write; twice: a write applied twice), a token
//! whose outcome is unknown at most once, a failed one never, and no token
//! may appear that no client sent.

use std::collections::BTreeMap;

use lincheck::{KvModel, Verdict};
use serde::Serialize;

use crate::history::{Op, Outcome, Record};

/// The separator that ends every append token.
pub const TOKEN_END: char = ';';

/// The token a client appends for its `n`th append.
pub fn append_token(client: u64, n: u64) -> String {
    format!("c{client}.{n}{TOKEN_END}")
}

/// What the linearizability checker said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinResult {
    Linearizable,
    /// The checker's explanation.
    Violation(String),
    /// The search gave up (budget) or the history was malformed.
    Unknown(String),
}

impl LinResult {
    /// True for a violation (unknown is not a violation, but is reported).
    pub fn is_violation(&self) -> bool {
        matches!(self, LinResult::Violation(_))
    }
}

/// Runs [`lincheck`] with the key-value model over `records`, split by key.
pub fn linearizability(records: &[Record]) -> LinResult {
    let ops: Vec<_> = records.iter().filter_map(Record::to_lincheck).collect();
    match lincheck::check(&KvModel, ops) {
        Ok(outcome) => match outcome.verdict {
            Verdict::Linearizable => LinResult::Linearizable,
            Verdict::Violation(v) => LinResult::Violation(format!("{v}")),
            v @ Verdict::Unknown { .. } => LinResult::Unknown(format!("{v}")),
        },
        Err(e) => LinResult::Unknown(format!("malformed history: {e}")),
    }
}

/// Checks the final value of every key that had appends against the append
/// records (see the module docs). `finals` maps a key to its value read
/// after healing. Returns one line per problem.
pub fn appends_exactly_once(
    records: &[Record],
    finals: &BTreeMap<String, Option<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_key: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        if let Op::Append { key, .. } = &r.op {
            by_key.entry(key).or_default().push(r);
        }
    }
    for (key, appends) in by_key {
        let Some(last) = finals.get(key) else {
            problems.push(format!("key {key}: no final read"));
            continue;
        };
        let value = last.clone().unwrap_or_default();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for token in value.split_inclusive(TOKEN_END) {
            *seen.entry(token).or_default() += 1;
        }
        let mut sent: BTreeMap<&str, &Outcome> = BTreeMap::new();
        for r in &appends {
            if let Op::Append { value, .. } = &r.op {
                sent.insert(value.as_str(), &r.outcome);
            }
        }
        for (token, outcome) in &sent {
            let n = seen.get(token).copied().unwrap_or(0);
            match outcome {
                Outcome::Ok if n == 0 => {
                    problems.push(format!("key {key}: acknowledged append {token} lost"))
                }
                Outcome::Unknown(_) | Outcome::Ok if n > 1 => {
                    problems.push(format!("key {key}: append {token} applied {n} times"))
                }
                Outcome::Failed(_) if n > 0 => problems.push(format!(
                    "key {key}: failed append {token} applied {n} times"
                )),
                _ => {}
            }
        }
        for (token, n) in &seen {
            if !sent.contains_key(token) {
                problems.push(format!(
                    "key {key}: {token:?} appears {n} times but was never appended"
                ));
            }
        }
    }
    problems
}

/// Checks that the final value of every register key (put / cas) is one
/// that some client wrote (or absent), i.e. nothing made up. Whether it is
/// the *right* one is the linearizability check's job (the final reads are
/// part of the history).
pub fn registers_written(
    records: &[Record],
    finals: &BTreeMap<String, Option<String>>,
) -> Vec<String> {
    let mut written: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in records {
        if matches!(r.outcome, Outcome::Failed(_)) {
            continue;
        }
        match &r.op {
            Op::Put { key, value } => written.entry(key).or_default().push(value),
            Op::Cas { key, new, .. } => written.entry(key).or_default().push(new),
            _ => {}
        }
    }
    let mut problems = Vec::new();
    for (key, values) in written {
        match finals.get(key) {
            None => problems.push(format!("key {key}: no final read")),
            Some(None) => {}
            Some(Some(v)) if values.contains(&v.as_str()) => {}
            Some(Some(v)) => {
                problems.push(format!("key {key}: final value {v:?} was never written"))
            }
        }
    }
    problems
}

/// One node's full state as read after healing: its applied index and every
/// key with its value and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub id: u64,
    pub applied_index: u64,
    pub kvs: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
}

/// Whether all nodes hold identical state at the same applied index. `Ok`
/// names the index; `Err` says which nodes differ and how.
pub fn convergence(states: &[NodeState]) -> Result<u64, String> {
    let Some(first) = states.first() else {
        return Err("no node could be read".into());
    };
    for s in &states[1..] {
        if s.applied_index != first.applied_index {
            return Err(format!(
                "node {} applied {} but node {} applied {}",
                first.id, first.applied_index, s.id, s.applied_index
            ));
        }
        if s.kvs != first.kvs {
            let differing: Vec<String> = first
                .kvs
                .keys()
                .chain(s.kvs.keys())
                .filter(|k| first.kvs.get(*k) != s.kvs.get(*k))
                .take(5)
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            return Err(format!(
                "nodes {} and {} differ at applied index {} (keys {:?})",
                first.id, s.id, first.applied_index, differing
            ));
        }
    }
    Ok(first.applied_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(client: u64, n: u64, key: &str, outcome: Outcome) -> Record {
        Record {
            client,
            call_ns: n * 10,
            ret_ns: Some(n * 10 + 5),
            op: Op::Append {
                key: key.into(),
                value: append_token(client, n),
            },
            outcome,
        }
    }

    fn finals(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn appends_all_present_once_pass() {
        let h = vec![
            append(1, 1, "a", Outcome::Ok),
            append(2, 1, "a", Outcome::Unknown("timeout".into())),
            append(1, 2, "a", Outcome::Unknown("timeout".into())),
        ];
        // The unknown c2.1 applied, the unknown c1.2 did not: both fine.
        let f = finals(&[("a", Some("c1.1;c2.1;"))]);
        assert!(appends_exactly_once(&h, &f).is_empty());
    }

    #[test]
    fn a_lost_append_is_caught() {
        let h = vec![
            append(1, 1, "a", Outcome::Ok),
            append(1, 2, "a", Outcome::Ok),
        ];
        let f = finals(&[("a", Some("c1.1;"))]);
        let p = appends_exactly_once(&h, &f);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("c1.2;") && p[0].contains("lost"), "{p:?}");
    }

    #[test]
    fn a_doubled_append_is_caught_even_when_unknown() {
        let h = vec![
            append(1, 1, "a", Outcome::Ok),
            append(2, 1, "a", Outcome::Unknown("timeout".into())),
        ];
        let f = finals(&[("a", Some("c1.1;c2.1;c1.1;c2.1;"))]);
        let p = appends_exactly_once(&h, &f);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|l| l.contains("applied 2 times")), "{p:?}");
    }

    #[test]
    fn a_phantom_token_and_a_missing_read_are_caught() {
        let h = vec![
            append(1, 1, "a", Outcome::Ok),
            append(1, 2, "b", Outcome::Ok),
        ];
        let f = finals(&[("a", Some("c1.1;c9.9;"))]);
        let p = appends_exactly_once(&h, &f);
        assert!(p.iter().any(|l| l.contains("never appended")), "{p:?}");
        assert!(
            p.iter().any(|l| l.contains("key b: no final read")),
            "{p:?}"
        );
    }

    #[test]
    fn registers_must_hold_a_written_value() {
        let put = Record {
            client: 1,
            call_ns: 1,
            ret_ns: Some(2),
            op: Op::Put {
                key: "r".into(),
                value: "x".into(),
            },
            outcome: Outcome::Ok,
        };
        assert!(
            registers_written(std::slice::from_ref(&put), &finals(&[("r", Some("x"))])).is_empty()
        );
        assert!(registers_written(std::slice::from_ref(&put), &finals(&[("r", None)])).is_empty());
        let p = registers_written(&[put], &finals(&[("r", Some("y"))]));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn linearizability_of_a_stale_read_is_a_violation() {
        let h = vec![
            Record {
                client: 1,
                call_ns: 0,
                ret_ns: Some(10),
                op: Op::Put {
                    key: "r".into(),
                    value: "1".into(),
                },
                outcome: Outcome::Ok,
            },
            Record {
                client: 2,
                call_ns: 20,
                ret_ns: Some(30),
                op: Op::Get {
                    key: "r".into(),
                    linearizable: false,
                },
                outcome: Outcome::Value(None),
            },
        ];
        assert!(linearizability(&h).is_violation());
        assert_eq!(linearizability(&h[..1]), LinResult::Linearizable);
    }

    #[test]
    fn convergence_needs_equal_index_and_state() {
        let mut kvs = BTreeMap::new();
        kvs.insert(b"k".to_vec(), (b"v".to_vec(), 1));
        let a = NodeState {
            id: 1,
            applied_index: 7,
            kvs: kvs.clone(),
        };
        let mut b = a.clone();
        b.id = 2;
        assert_eq!(convergence(&[a.clone(), b.clone()]), Ok(7));
        let mut c = b.clone();
        c.kvs.insert(b"k".to_vec(), (b"w".to_vec(), 2));
        assert!(convergence(&[a.clone(), c]).is_err());
        let mut d = b;
        d.applied_index = 8;
        assert!(convergence(&[a, d]).is_err());
        assert!(convergence(&[]).is_err());
    }
}
