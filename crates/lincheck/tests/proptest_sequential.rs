//! Property: a history made by running operations one at a time against a
//! reference store, each stretched into a random interval around the moment
//! it ran, is always linearizable; and changing one read's result to a
//! value no order can explain makes it not.

use std::collections::BTreeMap;

use lincheck::{check, KvInput, KvModel, KvOperation, KvOutput, Operation, Verdict};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Step {
    kind: u8,
    key: u8,
    value: u8,
    before: u64,
    after: u64,
    /// 0: completed; 1: unknown and applied; 2: unknown, never applied.
    fate: u8,
}

fn step() -> impl Strategy<Value = Step> {
    (0u8..5, 0u8..3, 0u8..4, 0u64..40, 0u64..40, 0u8..10).prop_map(
        |(kind, key, value, before, after, fate)| Step {
            kind,
            key,
            value,
            before,
            after,
            fate: match fate {
                0 => 1,
                1 => 2,
                _ => 0,
            },
        },
    )
}

/// Run the steps sequentially (step i at time 10 * (i + 1)) and record the
/// history.
fn run(steps: &[Step]) -> Vec<KvOperation> {
    let mut store: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut history = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let at = 10 * (i as u64 + 1);
        let key = vec![b'a' + s.key];
        let value = vec![b'0' + s.value];
        let current = store.get(&key).cloned();
        let apply = s.fate != 2;
        let (input, output) = match s.kind {
            0 => {
                if apply {
                    store.insert(key.clone(), value.clone());
                }
                (KvInput::Put { key, value }, KvOutput::Ok)
            }
            1 => (KvInput::Get { key }, KvOutput::Value(current)),
            2 => {
                if apply {
                    store
                        .entry(key.clone())
                        .or_default()
                        .extend_from_slice(&value);
                }
                (KvInput::Append { key, value }, KvOutput::Ok)
            }
            3 => {
                let expected = if s.value % 2 == 0 {
                    current.clone()
                } else {
                    Some(value.clone())
                };
                let swapped = expected == current;
                if apply && swapped {
                    store.insert(key.clone(), value.clone());
                }
                (
                    KvInput::Cas {
                        key,
                        expected,
                        new: value,
                    },
                    KvOutput::Cas(swapped),
                )
            }
            _ => {
                if apply {
                    store.remove(&key);
                }
                (KvInput::Delete { key }, KvOutput::Ok)
            }
        };
        let call = at - s.before.min(at);
        history.push(match s.fate {
            0 => Operation::completed(i as u64, call, at + s.after, input, output),
            _ => Operation::unknown(i as u64, call, input),
        });
    }
    history
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn sequential_executions_are_linearizable(steps in prop::collection::vec(step(), 0..60)) {
        let history = run(&steps);
        let outcome = check(&KvModel, history).unwrap();
        prop_assert_eq!(outcome.verdict, Verdict::Linearizable);
    }

    #[test]
    fn an_impossible_read_is_caught(steps in prop::collection::vec(step(), 1..40), pick in 0usize..40) {
        let mut history = run(&steps);
        let reads: Vec<usize> = history
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op.output, Some(KvOutput::Value(_))))
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!reads.is_empty());
        let i = reads[pick % reads.len()];
        // No operation ever writes a 'z', so no order explains this read.
        history[i].output = Some(KvOutput::Value(Some(b"z".to_vec())));
        let outcome = check(&KvModel, history).unwrap();
        prop_assert!(matches!(outcome.verdict, Verdict::Violation(_)), "{}", outcome.verdict);
    }
}

/// The key-value model without its direct check for append-only keys, so
/// that the general search decides every partition.
struct SearchOnly;

impl lincheck::Model for SearchOnly {
    type State = lincheck::KvState;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> lincheck::KvState {
        KvModel.init()
    }

    fn step(
        &self,
        state: &lincheck::KvState,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<lincheck::KvState> {
        KvModel.step(state, input, output)
    }

    fn partition(&self, history: Vec<KvOperation>) -> Vec<lincheck::Partition<KvInput, KvOutput>> {
        KvModel.partition(history)
    }
}

/// An append-only history on one key: appends of unique tokens run
/// sequentially, reads of the value, random intervals, some appends of
/// unknown outcome; then perhaps one read's result corrupted (a token
/// dropped, duplicated or swapped with its neighbour).
fn append_history(steps: &[(bool, u64, u64, u8)], corrupt: u8, pick: usize) -> Vec<KvOperation> {
    let mut value: Vec<u8> = Vec::new();
    let mut history = Vec::new();
    for (i, &(is_append, before, after, fate)) in steps.iter().enumerate() {
        let at = 10 * (i as u64 + 1);
        let call = at - before.min(at);
        if is_append {
            let token = format!("t{i};").into_bytes();
            let input = KvInput::Append {
                key: b"k".to_vec(),
                value: token.clone(),
            };
            match fate {
                0 => history.push(Operation::unknown(1, call, input)),
                1 => {
                    value.extend_from_slice(&token);
                    history.push(Operation::unknown(1, call, input));
                }
                _ => {
                    value.extend_from_slice(&token);
                    history.push(Operation::completed(
                        1,
                        call,
                        at + after,
                        input,
                        KvOutput::Ok,
                    ));
                }
            }
        } else {
            let out = KvOutput::Value((!value.is_empty()).then(|| value.clone()));
            history.push(Operation::completed(
                2,
                call,
                at + after,
                KvInput::Get { key: b"k".to_vec() },
                out,
            ));
        }
    }
    let reads: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, op)| matches!(op.output, Some(KvOutput::Value(Some(_)))))
        .map(|(i, _)| i)
        .collect();
    if corrupt > 0 && !reads.is_empty() {
        let i = reads[pick % reads.len()];
        if let Some(KvOutput::Value(Some(v))) = &history[i].output {
            let text = String::from_utf8_lossy(v).to_string();
            let mut tokens: Vec<String> = text.split_inclusive(';').map(str::to_string).collect();
            match corrupt {
                1 => {
                    tokens.remove(pick % tokens.len());
                }
                2 => {
                    let t = tokens[pick % tokens.len()].clone();
                    tokens.push(t);
                }
                _ => {
                    if tokens.len() >= 2 {
                        let j = pick % (tokens.len() - 1);
                        tokens.swap(j, j + 1);
                    }
                }
            }
            let v = tokens.concat().into_bytes();
            history[i].output = Some(KvOutput::Value((!v.is_empty()).then_some(v)));
        }
    }
    history
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The direct check for append-only keys agrees with the search.
    #[test]
    fn direct_append_check_agrees_with_the_search(
        steps in prop::collection::vec((any::<bool>(), 0u64..30, 0u64..30, 0u8..6), 0..14),
        corrupt in 0u8..4,
        pick in 0usize..100,
    ) {
        let history = append_history(&steps, corrupt, pick);
        let direct = check(&KvModel, history.clone()).unwrap();
        let search = check(&SearchOnly, history).unwrap();
        prop_assert_eq!(direct.verdict.is_linearizable(), search.verdict.is_linearizable(),
            "direct: {}\nsearch: {}", direct.verdict, search.verdict);
        let gave_up = matches!(search.verdict, Verdict::Unknown { .. });
        prop_assert!(!gave_up, "the search gave up");
        if corrupt == 0 {
            prop_assert!(direct.verdict.is_linearizable(), "{}", direct.verdict);
        }
    }
}
