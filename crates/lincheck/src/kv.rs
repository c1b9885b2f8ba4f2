//! A model of a key-value store: put, get, append, compare-and-swap and
//! delete, each on one key. Histories are split by key, so the search runs
//! on each key's operations alone.

use std::collections::BTreeMap;
use std::fmt;

use crate::history::Operation;
use crate::model::{Model, Partition};

/// What a client asked the store to do.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Set `key` to `value`.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Read `key`.
    Get { key: Vec<u8> },
    /// Append `value` to `key`'s value (an absent key counts as empty).
    Append { key: Vec<u8>, value: Vec<u8> },
    /// If `key`'s value is `expected` (`None`: absent), set it to `new`.
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
    /// Remove `key`.
    Delete { key: Vec<u8> },
}

impl KvInput {
    /// The key the operation is on.
    pub fn key(&self) -> &[u8] {
        match self {
            KvInput::Put { key, .. }
            | KvInput::Get { key }
            | KvInput::Append { key, .. }
            | KvInput::Cas { key, .. }
            | KvInput::Delete { key } => key,
        }
    }

    /// Whether the operation never changes the store.
    pub fn is_read_only(&self) -> bool {
        matches!(self, KvInput::Get { .. })
    }
}

/// What the store answered.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A put, append or delete was done.
    Ok,
    /// A get's result (`None`: the key is absent).
    Value(Option<Vec<u8>>),
    /// Whether a compare-and-swap swapped.
    Cas(bool),
}

/// The state of one key (`None`: absent).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct KvState(pub Option<Vec<u8>>);

/// The key-value model. See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

/// A history of key-value operations.
pub type KvOperation = Operation<KvInput, KvOutput>;

impl Model for KvModel {
    type State = KvState;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> KvState {
        KvState(None)
    }

    fn step(&self, state: &KvState, input: &KvInput, output: Option<&KvOutput>) -> Option<KvState> {
        let current = &state.0;
        match (input, output) {
            (KvInput::Put { value, .. }, None | Some(KvOutput::Ok)) => {
                Some(KvState(Some(value.clone())))
            }
            (KvInput::Get { .. }, None) => Some(state.clone()),
            (KvInput::Get { .. }, Some(KvOutput::Value(v))) => {
                (v == current).then(|| state.clone())
            }
            (KvInput::Append { value, .. }, None | Some(KvOutput::Ok)) => {
                let mut v = current.clone().unwrap_or_default();
                v.extend_from_slice(value);
                Some(KvState(Some(v)))
            }
            (KvInput::Cas { expected, new, .. }, None) => {
                if expected == current {
                    Some(KvState(Some(new.clone())))
                } else {
                    Some(state.clone())
                }
            }
            (KvInput::Cas { expected, new, .. }, Some(KvOutput::Cas(swapped))) => {
                match (expected == current, *swapped) {
                    (true, true) => Some(KvState(Some(new.clone()))),
                    (false, false) => Some(state.clone()),
                    _ => None,
                }
            }
            (KvInput::Delete { .. }, None | Some(KvOutput::Ok)) => Some(KvState(None)),
            // An output of the wrong kind for the input.
            _ => None,
        }
    }

    /// A key that sees only appends and reads is decided directly (see
    /// the `appends` module), when its appended values allow it.
    fn check_directly(&self, part: &Partition<KvInput, KvOutput>) -> Option<crate::Verdict> {
        crate::appends::check_appends(self, part)
    }

    /// One partition per key, in key order. Reads whose outcome is unknown
    /// are dropped: they constrain nothing. On a key that sees only appends
    /// and reads, an append of unknown outcome whose value no read contains
    /// is dropped too (the soundness argument is in the source, at
    /// `drop_unseen_appends`).
    fn partition(&self, history: Vec<KvOperation>) -> Vec<Partition<KvInput, KvOutput>> {
        let mut by_key: BTreeMap<Vec<u8>, Vec<KvOperation>> = BTreeMap::new();
        for op in history {
            if op.output.is_none() && op.input.is_read_only() {
                continue;
            }
            by_key.entry(op.input.key().to_vec()).or_default().push(op);
        }
        by_key
            .into_iter()
            .map(|(key, ops)| Partition {
                label: format!("key {}", Shown(&key)),
                ops: drop_unseen_appends(ops),
            })
            .collect()
    }
}

/// On one key's operations, if they are only appends and reads: drops the
/// appends of unknown outcome whose value is not a substring of any read's
/// result.
///
/// Why this is sound: such an append may be taken to have never happened
/// (one of its allowed outcomes), so a history linearizable without it is
/// linearizable with it. Conversely, if it took effect in some
/// linearization, every read after it contains its value (appends only
/// grow the value); as none does, no read comes after it, and removing it
/// leaves every read's result as it was. Why it matters: the search would
/// otherwise try each such append at every position between the reads,
/// and the states it reaches (strings in different orders) never repeat,
/// so the memo cannot cut that short.
fn drop_unseen_appends(ops: Vec<KvOperation>) -> Vec<KvOperation> {
    let append_only = ops
        .iter()
        .all(|op| matches!(op.input, KvInput::Append { .. } | KvInput::Get { .. }));
    if !append_only {
        return ops;
    }
    let reads: Vec<Vec<u8>> = ops
        .iter()
        .filter_map(|op| match &op.output {
            Some(KvOutput::Value(Some(v))) => Some(v.clone()),
            _ => None,
        })
        .collect();
    let seen = |value: &[u8]| {
        value.is_empty()
            || reads
                .iter()
                .any(|r| r.windows(value.len()).any(|w| w == value))
    };
    ops.into_iter()
        .filter(|op| match (&op.input, &op.output) {
            (KvInput::Append { value, .. }, None) => seen(value),
            _ => true,
        })
        .collect()
}

/// Bytes shown as a string when they are printable ASCII, else as hex.
struct Shown<'a>(&'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            write!(f, "\"{}\"", String::from_utf8_lossy(self.0))
        } else {
            write!(f, "0x")?;
            for b in self.0 {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        }
    }
}

struct ShownOpt<'a>(&'a Option<Vec<u8>>);

impl fmt::Display for ShownOpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{}", Shown(v)),
            None => write!(f, "(absent)"),
        }
    }
}

impl fmt::Debug for KvInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvInput::Put { key, value } => write!(f, "put {} {}", Shown(key), Shown(value)),
            KvInput::Get { key } => write!(f, "get {}", Shown(key)),
            KvInput::Append { key, value } => {
                write!(f, "append {} {}", Shown(key), Shown(value))
            }
            KvInput::Cas { key, expected, new } => write!(
                f,
                "cas {} {} -> {}",
                Shown(key),
                ShownOpt(expected),
                Shown(new)
            ),
            KvInput::Delete { key } => write!(f, "delete {}", Shown(key)),
        }
    }
}

impl fmt::Debug for KvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Ok => write!(f, "ok"),
            KvOutput::Value(v) => write!(f, "{}", ShownOpt(v)),
            KvOutput::Cas(true) => write!(f, "swapped"),
            KvOutput::Cas(false) => write!(f, "not swapped"),
        }
    }
}

impl fmt::Debug for KvState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", ShownOpt(&self.0))
    }
}
