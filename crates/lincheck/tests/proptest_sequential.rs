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
