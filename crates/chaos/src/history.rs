//! The recorded client history, its JSON form and its conversion to
//! [`lincheck`]'s operations.
//!
//! Every client operation is one [`Record`]: who issued it, when it was
//! invoked and when it completed (nanoseconds since the run's clock
//! started), what it asked and what came back. The [`Outcome`] says how it
//! ended:
//!
//! - `ok` / `value` / `cas`: the operation completed with that result;
//! - `unknown`: a write whose outcome the client never learned (a timeout,
//!   a lost connection, an unavailable cluster). It may have taken effect
//!   at any moment after its invocation, or never;
//! - `failed`: the operation certainly had no effect (a read that got no
//!   answer, a request refused as invalid). It is left out of the checks.
//!
//! The JSON file written on failure is an array of records, e.g.
//!
//! ```json
//! {"client":3,"call_ns":1200,"ret_ns":5400,
//!  "op":{"append":{"key":"a1","value":"c3.17;"}},"outcome":"ok"}
//! ```
//!
//! Keys and values are strings: the workload only writes ASCII.

use lincheck::{KvInput, KvOperation, KvOutput, Operation};
use serde::{Deserialize, Serialize};

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Put {
        key: String,
        value: String,
    },
    /// A read; `linearizable` false when it was served serializable.
    Get {
        key: String,
        linearizable: bool,
    },
    Append {
        key: String,
        value: String,
    },
    /// Set `key` to `new` if it is `expected` (`None`: absent).
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
}

impl Op {
    /// The key the operation is on.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. }
            | Op::Get { key, .. }
            | Op::Append { key, .. }
            | Op::Cas { key, .. } => key,
        }
    }

    /// Whether the operation may change the store.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }

    fn input(&self) -> KvInput {
        match self {
            Op::Put { key, value } => KvInput::Put {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
            },
            Op::Get { key, .. } => KvInput::Get {
                key: key.as_bytes().to_vec(),
            },
            Op::Append { key, value } => KvInput::Append {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
            },
            Op::Cas { key, expected, new } => KvInput::Cas {
                key: key.as_bytes().to_vec(),
                expected: expected.as_ref().map(|e| e.as_bytes().to_vec()),
                new: new.as_bytes().to_vec(),
            },
        }
    }
}

/// How an operation ended (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A put or append was applied.
    Ok,
    /// A read's value (`None`: absent).
    Value(Option<String>),
    /// Whether a compare-and-swap swapped.
    Cas(bool),
    /// The outcome is unknown; the error seen.
    Unknown(String),
    /// Certainly without effect; the error seen.
    Failed(String),
}

/// One operation of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub client: u64,
    pub call_ns: u64,
    /// `None` when the outcome is unknown.
    pub ret_ns: Option<u64>,
    pub op: Op,
    pub outcome: Outcome,
}

impl Record {
    /// The operation as the linearizability checker sees it; `None` for a
    /// failed one (it had no effect, so it constrains nothing).
    pub fn to_lincheck(&self) -> Option<KvOperation> {
        let input = self.op.input();
        let output = match &self.outcome {
            Outcome::Ok => KvOutput::Ok,
            Outcome::Value(v) => KvOutput::Value(v.as_ref().map(|s| s.as_bytes().to_vec())),
            Outcome::Cas(swapped) => KvOutput::Cas(*swapped),
            Outcome::Unknown(_) => {
                return Some(Operation::unknown(self.client, self.call_ns, input))
            }
            Outcome::Failed(_) => return None,
        };
        // A completion recorded at the invocation's nanosecond still comes
        // after it.
        let ret = self.ret_ns.unwrap_or(self.call_ns).max(self.call_ns);
        Some(Operation::completed(
            self.client,
            self.call_ns,
            ret,
            input,
            output,
        ))
    }
}

/// Counts of a history's outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
}

/// Counts `records` by outcome (a CAS that did not swap is ok: it
/// completed).
pub fn counts(records: &[Record]) -> Counts {
    let mut c = Counts::default();
    for r in records {
        match r.outcome {
            Outcome::Ok | Outcome::Value(_) | Outcome::Cas(_) => c.ok += 1,
            Outcome::Unknown(_) => c.unknown += 1,
            Outcome::Failed(_) => c.failed += 1,
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: Op, outcome: Outcome) -> Record {
        Record {
            client: 1,
            call_ns: 10,
            ret_ns: Some(20),
            op,
            outcome,
        }
    }

    #[test]
    fn records_convert_to_lincheck_operations() {
        let put = rec(
            Op::Put {
                key: "r0".into(),
                value: "v".into(),
            },
            Outcome::Ok,
        );
        let op = put.to_lincheck().unwrap();
        assert_eq!(op.ret, Some(20));
        assert_eq!(op.output, Some(KvOutput::Ok));

        let mut unknown = put.clone();
        unknown.ret_ns = None;
        unknown.outcome = Outcome::Unknown("timeout".into());
        let op = unknown.to_lincheck().unwrap();
        assert_eq!((op.ret, op.output), (None, None));

        let failed = rec(
            Op::Get {
                key: "r0".into(),
                linearizable: true,
            },
            Outcome::Failed("unavailable".into()),
        );
        assert!(failed.to_lincheck().is_none());

        let cas = rec(
            Op::Cas {
                key: "r0".into(),
                expected: None,
                new: "n".into(),
            },
            Outcome::Cas(false),
        );
        assert_eq!(
            cas.to_lincheck().unwrap().output,
            Some(KvOutput::Cas(false))
        );
        assert_eq!(
            counts(&[put, unknown, failed, cas]),
            Counts {
                ok: 2,
                failed: 1,
                unknown: 1
            }
        );
    }

    #[test]
    fn json_round_trip() {
        let r = rec(
            Op::Append {
                key: "a1".into(),
                value: "c3.17;".into(),
            },
            Outcome::Ok,
        );
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"append\""), "{json}");
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
