//! The checker against hand-written key-value histories: known violations
//! must be rejected, tricky valid histories accepted.

use lincheck::{
    check, check_with_budget, KvInput, KvModel, KvOperation, KvOutput, Operation, Verdict,
};

fn put(k: &str, v: &str) -> KvInput {
    KvInput::Put {
        key: k.into(),
        value: v.into(),
    }
}
fn get(k: &str) -> KvInput {
    KvInput::Get { key: k.into() }
}
fn append(k: &str, v: &str) -> KvInput {
    KvInput::Append {
        key: k.into(),
        value: v.into(),
    }
}
fn cas(k: &str, expected: Option<&str>, new: &str) -> KvInput {
    KvInput::Cas {
        key: k.into(),
        expected: expected.map(Into::into),
        new: new.into(),
    }
}
fn del(k: &str) -> KvInput {
    KvInput::Delete { key: k.into() }
}
fn val(v: Option<&str>) -> KvOutput {
    KvOutput::Value(v.map(Into::into))
}
fn op(client: u64, call: u64, ret: u64, input: KvInput, output: KvOutput) -> KvOperation {
    Operation::completed(client, call, ret, input, output)
}

fn verdict(history: Vec<KvOperation>) -> Verdict {
    check(&KvModel, history).unwrap().verdict
}

fn assert_violation(history: Vec<KvOperation>, key: &str) -> lincheck::Violation {
    match verdict(history) {
        Verdict::Violation(v) => {
            assert_eq!(v.partition, format!("key \"{key}\""));
            v
        }
        other => panic!("expected a violation, got {other}"),
    }
}

#[test]
fn stale_read_after_completed_write_is_rejected() {
    let v = assert_violation(
        vec![
            op(1, 0, 10, put("x", "1"), KvOutput::Ok),
            op(1, 11, 20, put("x", "2"), KvOutput::Ok),
            op(2, 25, 30, get("x"), val(Some("1"))),
        ],
        "x",
    );
    assert_eq!(v.prefix_len, 2, "{v}");
    assert!(v.stuck.iter().any(|s| s.contains("get \"x\"")), "{v}");
}

#[test]
fn lost_write_is_rejected() {
    // An acknowledged append never shows up in a later read.
    assert_violation(
        vec![
            op(1, 0, 10, append("x", "a"), KvOutput::Ok),
            op(2, 5, 15, append("x", "b"), KvOutput::Ok),
            op(3, 20, 30, get("x"), val(Some("a"))),
        ],
        "x",
    );
    // An acknowledged put followed by a read of nothing.
    assert_violation(
        vec![
            op(1, 0, 10, put("y", "1"), KvOutput::Ok),
            op(3, 20, 30, get("y"), val(None)),
        ],
        "y",
    );
}

#[test]
fn write_applied_twice_is_rejected() {
    assert_violation(
        vec![
            op(1, 0, 10, append("x", "a"), KvOutput::Ok),
            op(1, 11, 20, append("x", "b"), KvOutput::Ok),
            op(2, 21, 30, get("x"), val(Some("abb"))),
        ],
        "x",
    );
    // Even when the append's outcome is unknown, it may apply only once.
    assert_violation(
        vec![
            Operation::unknown(1, 0, append("x", "a")),
            op(2, 21, 30, get("x"), val(Some("aa"))),
        ],
        "x",
    );
}

#[test]
fn cas_against_a_value_that_was_not_current_is_rejected() {
    assert_violation(
        vec![
            op(1, 0, 10, put("x", "1"), KvOutput::Ok),
            op(1, 11, 20, put("x", "2"), KvOutput::Ok),
            op(2, 21, 30, cas("x", Some("1"), "3"), KvOutput::Cas(true)),
        ],
        "x",
    );
    // A failed CAS although the expected value was current.
    assert_violation(
        vec![
            op(1, 0, 10, put("x", "1"), KvOutput::Ok),
            op(2, 21, 30, cas("x", Some("1"), "3"), KvOutput::Cas(false)),
        ],
        "x",
    );
}

#[test]
fn reads_going_backwards_are_rejected() {
    // Two sequential reads during a long write: new value, then old value.
    assert_violation(
        vec![
            op(1, 0, 5, put("x", "old"), KvOutput::Ok),
            op(2, 10, 100, put("x", "new"), KvOutput::Ok),
            op(3, 20, 30, get("x"), val(Some("new"))),
            op(3, 40, 50, get("x"), val(Some("old"))),
        ],
        "x",
    );
}

#[test]
fn delete_then_stale_read_is_rejected() {
    assert_violation(
        vec![
            op(1, 0, 5, put("x", "1"), KvOutput::Ok),
            op(1, 6, 10, del("x"), KvOutput::Ok),
            op(2, 11, 20, get("x"), val(Some("1"))),
        ],
        "x",
    );
}

#[test]
fn concurrent_operations_may_take_effect_in_either_order() {
    for read in ["ab", "ba"] {
        let h = vec![
            op(1, 0, 10, append("x", "a"), KvOutput::Ok),
            op(2, 0, 10, append("x", "b"), KvOutput::Ok),
            op(3, 20, 30, get("x"), val(Some(read))),
        ];
        assert_eq!(verdict(h), Verdict::Linearizable, "read {read}");
    }
    // A read overlapping a write may see either value.
    for read in [None, Some("1")] {
        let h = vec![
            op(1, 0, 10, put("x", "1"), KvOutput::Ok),
            op(2, 5, 15, get("x"), val(read)),
        ];
        assert_eq!(verdict(h), Verdict::Linearizable);
    }
    // Operations touching at one instant count as concurrent.
    let h = vec![
        op(1, 0, 10, put("x", "1"), KvOutput::Ok),
        op(2, 10, 15, get("x"), val(None)),
    ];
    assert_eq!(verdict(h), Verdict::Linearizable);
}

#[test]
fn an_unknown_operation_may_take_effect_or_not() {
    // It took effect, late: after a read that did not see it.
    let h = vec![
        Operation::unknown(1, 0, put("x", "1")),
        op(2, 10, 20, get("x"), val(None)),
        op(2, 30, 40, get("x"), val(Some("1"))),
    ];
    assert_eq!(verdict(h), Verdict::Linearizable);
    // It never took effect.
    let h = vec![
        Operation::unknown(1, 0, append("x", "z")),
        op(2, 10, 20, append("x", "a"), KvOutput::Ok),
        op(2, 30, 40, get("x"), val(Some("a"))),
    ];
    assert_eq!(verdict(h), Verdict::Linearizable);
    // But not before its call.
    assert_violation(
        vec![
            op(2, 10, 20, get("x"), val(Some("1"))),
            Operation::unknown(1, 30, put("x", "1")),
        ],
        "x",
    );
}

#[test]
fn cas_chains_are_accepted() {
    let h = vec![
        op(1, 0, 10, cas("x", None, "1"), KvOutput::Cas(true)),
        op(2, 0, 10, cas("x", None, "2"), KvOutput::Cas(false)),
        op(3, 5, 20, cas("x", Some("1"), "3"), KvOutput::Cas(true)),
        op(1, 21, 30, get("x"), val(Some("3"))),
    ];
    assert_eq!(verdict(h), Verdict::Linearizable);
}

#[test]
fn keys_are_checked_independently() {
    let outcome = check(
        &KvModel,
        vec![
            op(1, 0, 10, put("a", "1"), KvOutput::Ok),
            op(1, 0, 10, put("b", "1"), KvOutput::Ok),
            op(1, 20, 30, get("a"), val(Some("1"))),
            op(1, 20, 30, get("b"), val(None)),
        ],
    )
    .unwrap();
    assert_eq!(outcome.partitions, 2);
    match outcome.verdict {
        Verdict::Violation(v) => assert_eq!(v.partition, "key \"b\""),
        other => panic!("expected a violation on b, got {other}"),
    }
}

#[test]
fn wrong_output_kind_is_rejected() {
    assert_violation(vec![op(1, 0, 10, put("x", "1"), val(None))], "x");
}

#[test]
fn malformed_histories_are_errors() {
    let bad = op(1, 10, 5, get("x"), val(None));
    assert!(check(&KvModel, vec![bad]).is_err());
    let mut bad = op(1, 0, 5, get("x"), val(None));
    bad.output = None;
    assert!(check(&KvModel, vec![bad]).is_err());
}

#[test]
fn a_search_out_of_budget_says_unknown() {
    // Many concurrent appends then a read no order explains: the search
    // must try many orders before it can reject, so a tiny budget runs out.
    // (A put makes it a mixed key, so the general search runs.)
    let mut h: Vec<KvOperation> = (0..8)
        .map(|i| op(i, 0, 100, append("x", &i.to_string()), KvOutput::Ok))
        .collect();
    h.push(op(98, 0, 1, put("x", "s"), KvOutput::Ok));
    h.push(op(99, 200, 210, get("x"), val(Some("nope"))));
    let outcome = check_with_budget(&KvModel, h.clone(), 50).unwrap();
    assert!(
        matches!(outcome.verdict, Verdict::Unknown { .. }),
        "{}",
        outcome.verdict
    );
    let outcome = check(&KvModel, h).unwrap();
    assert!(
        matches!(outcome.verdict, Verdict::Violation(_)),
        "{}",
        outcome.verdict
    );
}

#[test]
fn many_unknown_appends_that_never_applied_are_checked_quickly() {
    // Eight appends time out early and never take effect; then 60 appends
    // complete, each followed by a read of the whole value. Trying every
    // unknown append at every position would take millions of steps.
    let mut h: Vec<KvOperation> = (0..8)
        .map(|i| Operation::unknown(100 + i, i, append("x", &format!("u{i};"))))
        .collect();
    let mut value = String::new();
    let mut t = 100;
    for i in 0..60 {
        let token = format!("{i};");
        value.push_str(&token);
        h.push(op(1, t, t + 5, append("x", &token), KvOutput::Ok));
        h.push(op(2, t + 6, t + 9, get("x"), val(Some(&value))));
        t += 10;
    }
    let outcome = check_with_budget(&KvModel, h, 20_000).unwrap();
    assert_eq!(
        outcome.verdict,
        Verdict::Linearizable,
        "{}",
        outcome.verdict
    );
}

#[test]
fn unknown_appends_that_applied_late_are_found() {
    // Two unknown appends show up only in the last read, in call order
    // reversed.
    let mut h: Vec<KvOperation> = vec![
        Operation::unknown(7, 0, append("x", "a;")),
        Operation::unknown(8, 1, append("x", "b;")),
    ];
    let mut value = String::new();
    let mut t = 100;
    for i in 0..20 {
        let token = format!("{i};");
        value.push_str(&token);
        h.push(op(1, t, t + 5, append("x", &token), KvOutput::Ok));
        h.push(op(2, t + 6, t + 9, get("x"), val(Some(&value))));
        t += 10;
    }
    value.push_str("b;a;");
    h.push(op(2, t, t + 5, get("x"), val(Some(&value))));
    let outcome = check_with_budget(&KvModel, h.clone(), 200_000).unwrap();
    assert_eq!(
        outcome.verdict,
        Verdict::Linearizable,
        "{}",
        outcome.verdict
    );
    // And "a" twice is still impossible.
    let last = h.len() - 1;
    value.push_str("a;");
    h[last].output = Some(val(Some(&value)));
    let outcome = check(&KvModel, h).unwrap();
    assert!(
        matches!(outcome.verdict, Verdict::Violation(_)),
        "{}",
        outcome.verdict
    );
}

#[test]
fn unseen_unknown_appends_are_dropped_only_on_append_only_keys() {
    // On an append-only key, an unknown append nobody read is dropped...
    let h = vec![
        Operation::unknown(1, 0, append("x", "u;")),
        op(2, 10, 20, append("x", "a;"), KvOutput::Ok),
        op(3, 30, 40, get("x"), val(Some("a;"))),
    ];
    let outcome = check(&KvModel, h).unwrap();
    assert_eq!(outcome.ops, 2);
    assert_eq!(outcome.verdict, Verdict::Linearizable);
    // ...one that was read is kept, and a read of it twice still fails.
    let h = vec![
        Operation::unknown(1, 0, append("x", "u;")),
        op(3, 30, 40, get("x"), val(Some("u;u;"))),
    ];
    let outcome = check(&KvModel, h).unwrap();
    assert_eq!(outcome.ops, 2);
    assert!(matches!(outcome.verdict, Verdict::Violation(_)));
    // On a key with puts, nothing is dropped.
    let h = vec![
        Operation::unknown(1, 0, append("x", "u;")),
        op(2, 10, 20, put("x", "p"), KvOutput::Ok),
    ];
    assert_eq!(check(&KvModel, h).unwrap().ops, 2);
}
