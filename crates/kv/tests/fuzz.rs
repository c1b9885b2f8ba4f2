//! Property tests: the encodings round-trip and never panic on garbage;
//! applying any bytes never fails; random workloads behave like a model
//! and replicas (restarted, or restored from a snapshot) agree.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bitcask::MemEngine;
use common::Driver;
use kv::{
    Applied, Command, CommandError, Compare, CompareOp, CompareTarget, KeyValue, Op, OpResult,
    Reply, Request, Response, StateMachine,
};
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::NotEq),
        Just(CompareOp::Less),
        Just(CompareOp::Greater),
    ]
}

fn compare() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        bytes(8).prop_map(CompareTarget::Value),
        any::<u64>().prop_map(CompareTarget::Version),
        any::<u64>().prop_map(CompareTarget::ModIndex),
        any::<bool>().prop_map(CompareTarget::Exists),
    ];
    (bytes(8), target, compare_op()).prop_map(|(key, target, op)| Compare { key, target, op })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (bytes(8), bytes(8)).prop_map(|(key, value)| Op::Put { key, value }),
        bytes(8).prop_map(|key| Op::Delete { key }),
        bytes(8).prop_map(|key| Op::Get { key }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (bytes(16), bytes(32), any::<bool>()).prop_map(|(key, value, prev_kv)| Command::Put {
            key,
            value,
            prev_kv
        }),
        (bytes(16), any::<bool>()).prop_map(|(key, prev_kv)| Command::Delete { key, prev_kv }),
        (bytes(8), bytes(8)).prop_map(|(start, end)| Command::DeleteRange { start, end }),
        (bytes(16), bytes(32)).prop_map(|(key, value)| Command::Append { key, value }),
        (
            proptest::collection::vec(compare(), 0..4),
            proptest::collection::vec(op(), 0..4),
            proptest::collection::vec(op(), 0..4)
        )
            .prop_map(|(compares, success, failure)| Command::Txn {
                compares,
                success,
                failure
            }),
        Just(Command::RegisterSession),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (any::<u64>(), any::<u64>(), command()).prop_map(|(client_id, seq, command)| Request {
        client_id,
        seq,
        command,
    })
}

fn key_value() -> impl Strategy<Value = KeyValue> {
    (bytes(8), bytes(8), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(key, value, create_index, mod_index, version)| KeyValue {
            key,
            value,
            create_index,
            mod_index,
            version,
        },
    )
}

fn reply() -> impl Strategy<Value = Reply> {
    let op_result = prop_oneof![
        Just(OpResult::Put),
        any::<bool>().prop_map(|deleted| OpResult::Delete { deleted }),
        proptest::option::of(key_value()).prop_map(|kv| OpResult::Get { kv }),
    ];
    prop_oneof![
        proptest::option::of(key_value()).prop_map(|prev| Reply::Put { prev }),
        (any::<bool>(), proptest::option::of(key_value()))
            .prop_map(|(deleted, prev)| Reply::Delete { deleted, prev }),
        any::<u64>().prop_map(|deleted| Reply::DeleteRange { deleted }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(value_len, version)| Reply::Append { value_len, version }),
        (any::<bool>(), proptest::collection::vec(op_result, 0..4))
            .prop_map(|(succeeded, results)| Reply::Txn { succeeded, results }),
        any::<u64>().prop_map(|client_id| Reply::SessionRegistered { client_id }),
    ]
}

fn command_error() -> impl Strategy<Value = CommandError> {
    prop_oneof![
        "[a-z ]{0,12}".prop_map(|reason| CommandError::Malformed { reason }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(size, max)| CommandError::RequestTooLarge { size, max }),
        Just(CommandError::EmptyKey),
        (any::<u64>(), any::<u64>())
            .prop_map(|(size, max)| CommandError::KeyTooLarge { size, max }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(size, max)| CommandError::ValueTooLarge { size, max }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(count, max)| CommandError::TooManyCompares { count, max }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(count, max)| CommandError::TooManyOps { count, max }),
        Just(CommandError::InvalidRange),
        any::<u64>().prop_map(|max| CommandError::RangeTooLarge { max }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(size, max)| CommandError::ResponseTooLarge { size, max }),
        any::<u64>().prop_map(|client_id| CommandError::UnknownSession { client_id }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(client_id, seq, last_seq)| {
            CommandError::StaleRequest {
                client_id,
                seq,
                last_seq,
            }
        }),
        any::<u64>().prop_map(|client_id| CommandError::InvalidSeq { client_id }),
        Just(CommandError::RegisterWithSession),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    let result = prop_oneof![reply().prop_map(Ok), command_error().prop_map(Err)];
    (any::<u64>(), result).prop_map(|(index, result)| Response { index, result })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn request_round_trips(req in request()) {
        let buf = req.encode();
        prop_assert_eq!(Request::decode(&buf), Ok(req));
    }

    #[test]
    fn response_round_trips(resp in response()) {
        let buf = resp.encode();
        prop_assert_eq!(Response::decode(&buf), Ok(resp));
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in bytes(64)) {
        let _ = Request::decode(&buf);
        let _ = Response::decode(&buf);
        // With a valid version byte, the rest is garbage.
        let mut v1 = vec![1];
        v1.extend_from_slice(&buf);
        let _ = Request::decode(&v1);
        let _ = Response::decode(&v1);
    }

    #[test]
    fn damaged_encodings_are_errors_or_other_requests(
        req in request(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let buf = req.encode();
        let mut flipped = buf.clone();
        let i = pos.index(flipped.len());
        flipped[i] = byte;
        if let Ok(other) = Request::decode(&flipped) {
            // Whatever decodes re-encodes to the same bytes.
            prop_assert_eq!(other.encode(), flipped);
        }
        let n = cut.index(buf.len());
        prop_assert!(Request::decode(&buf[..n]).is_err(), "a strict prefix decoded");
    }

    #[test]
    fn applying_any_bytes_answers_and_never_fails(entries in proptest::collection::vec(bytes(48), 1..16)) {
        let mut sm = StateMachine::open(Arc::new(MemEngine::new())).unwrap();
        for (i, data) in entries.into_iter().enumerate() {
            let mut data = data;
            if data.is_empty() {
                data.push(0);
            }
            let entry = common::normal(i as u64 + 1, data);
            match sm.apply(&entry) {
                Ok(Applied::Response(r)) => prop_assert_eq!(r.index, i as u64 + 1),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}

/// A small-key workload for the model test.
#[derive(Clone, Debug)]
enum Step {
    Cmd(Command),
    Restart,
}

fn small_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(b"ab".to_vec()),
        Just(b"c".to_vec())
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (small_key(), bytes(4)).prop_map(|(key, value)| Step::Cmd(Command::Put { key, value, prev_kv: true })),
        2 => small_key().prop_map(|key| Step::Cmd(Command::Delete { key, prev_kv: false })),
        3 => (small_key(), bytes(4)).prop_map(|(key, value)| Step::Cmd(Command::Append { key, value })),
        1 => (small_key(), small_key()).prop_map(|(start, end)| Step::Cmd(Command::DeleteRange { start, end })),
        2 => (small_key(), bytes(4), small_key(), bytes(4)).prop_map(|(k1, v1, k2, v2)| Step::Cmd(Command::Txn {
            compares: vec![Compare { key: k1, target: CompareTarget::Value(v1), op: CompareOp::Eq }],
            success: vec![Op::Put { key: k2.clone(), value: v2 }],
            failure: vec![Op::Delete { key: k2 }],
        })),
        1 => Just(Step::Restart),
    ]
}

/// The model: key → value.
fn model_apply(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, cmd: &Command) {
    match cmd {
        Command::Put { key, value, .. } => {
            model.insert(key.clone(), value.clone());
        }
        Command::Delete { key, .. } => {
            model.remove(key);
        }
        Command::Append { key, value } => model
            .entry(key.clone())
            .or_default()
            .extend_from_slice(value),
        Command::DeleteRange { start, end } => {
            if end.is_empty() || start <= end {
                model.retain(|k, _| !(k >= start && (end.is_empty() || k < end)));
            }
        }
        Command::Txn {
            compares,
            success,
            failure,
        } => {
            let ok = compares.iter().all(|c| match &c.target {
                CompareTarget::Value(v) => model.get(&c.key).is_some_and(|cur| cur == v),
                _ => unreachable!(),
            });
            for op in if ok { success } else { failure } {
                match op {
                    Op::Put { key, value } => {
                        model.insert(key.clone(), value.clone());
                    }
                    Op::Delete { key } => {
                        model.remove(key);
                    }
                    Op::Get { .. } => {}
                }
            }
        }
        Command::RegisterSession => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_workloads_match_the_model_and_replicas_agree(
        steps in proptest::collection::vec(step(), 1..40),
        run_len in 1usize..12,
    ) {
        let engine = Arc::new(MemEngine::new());
        let mut d = Driver::new(Arc::clone(&engine));
        let mut replica = Driver::new(Arc::new(MemEngine::new()));
        let mut model = BTreeMap::new();
        let client = d.register();
        replica.register();
        let mut seq = 0;
        for step in &steps {
            match step {
                Step::Restart => d.reopen(),
                Step::Cmd(cmd) => {
                    seq += 1;
                    let req = Request { client_id: client, seq, command: cmd.clone() };
                    let first = d.apply_raw(req.encode());
                    // Every write is sent twice, as after a lost reply.
                    let again = d.apply_raw(req.encode());
                    prop_assert_eq!(&again, &first);
                    replica.apply_raw(req.encode());
                    replica.apply_raw(req.encode());
                    if first.result.is_ok() {
                        model_apply(&mut model, cmd);
                    }
                }
            }
        }
        let got: BTreeMap<Vec<u8>, Vec<u8>> =
            d.sm.scan(b"", b"", 0).unwrap().into_iter().map(|kv| (kv.key, kv.value)).collect();
        prop_assert_eq!(&got, &model);
        let digest = d.sm.digest().unwrap();
        prop_assert_eq!(replica.sm.digest().unwrap(), digest);
        // A third replica restored from a snapshot agrees too.
        let chunks: Vec<Vec<u8>> = d.sm.reader().snapshot_with_chunk_size(128).unwrap()
            .collect::<Result<_, _>>().unwrap();
        let mut restored = StateMachine::open(Arc::new(MemEngine::new())).unwrap();
        restored.restore(&chunks).unwrap();
        prop_assert_eq!(restored.digest().unwrap(), digest);
        // A fourth applies the log in runs with apply_all: same answers.
        let mut batched = StateMachine::open(Arc::new(MemEngine::new())).unwrap();
        let mut answers = Vec::new();
        for run in d.log.chunks(run_len) {
            answers.extend(batched.apply_all(run).unwrap());
        }
        let mut one_by_one = StateMachine::open(Arc::new(MemEngine::new())).unwrap();
        let singles: Vec<Applied> = d.log.iter().map(|e| one_by_one.apply(e).unwrap()).collect();
        prop_assert_eq!(answers, singles);
        prop_assert_eq!(batched.digest().unwrap(), digest);
        prop_assert_eq!(batched.applied_index(), d.log.len() as u64);
    }
}

/// What a client does next in the sessions workload.
#[derive(Clone, Debug)]
enum ClientStep {
    Register,
    /// A new request from client slot `slot` appending a unique token.
    Fresh {
        slot: usize,
    },
    /// A retry of slot's last request.
    Retry {
        slot: usize,
    },
    /// A request with an old seq.
    Stale {
        slot: usize,
    },
    Noop,
}

fn client_step() -> impl Strategy<Value = ClientStep> {
    prop_oneof![
        1 => Just(ClientStep::Register),
        6 => (0usize..4).prop_map(|slot| ClientStep::Fresh { slot }),
        3 => (0usize..4).prop_map(|slot| ClientStep::Retry { slot }),
        1 => (0usize..4).prop_map(|slot| ClientStep::Stale { slot }),
        1 => Just(ClientStep::Noop),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Several clients with retries and stale requests, small session
    /// limits: every token is appended at most once, a retry answers like
    /// the original, and replicas that apply in runs, restart, or restore
    /// from a snapshot all agree.
    #[test]
    fn sessions_under_retries_stay_exactly_once(
        steps in proptest::collection::vec(client_step(), 1..60),
        run_len in 2usize..9,
        restart_at in 0usize..60,
    ) {
        let limits = kv::SessionLimits { sessions_max: 3, idle_entries_max: 12 };
        let mut d = Driver::with_limits(Arc::new(MemEngine::new()), limits);
        // Per slot: client id, last seq and the last request's response.
        let mut slots: Vec<Option<(u64, u64, Response)>> = vec![None; 4];
        let mut next_slot = 0;
        let mut token = 0u32;
        for (i, step) in steps.iter().enumerate() {
            if i == restart_at {
                d.reopen();
            }
            match *step {
                ClientStep::Register => {
                    let id = d.register();
                    slots[next_slot % 4] = Some((id, 0, Response { index: 0, result: Ok(Reply::Put { prev: None }) }));
                    next_slot += 1;
                }
                ClientStep::Fresh { slot } => {
                    let Some((id, seq, _)) = slots[slot].clone() else { continue };
                    token += 1;
                    let cmd = Command::Append { key: b"t".to_vec(), value: format!("<{token}>").into_bytes() };
                    let r = d.req(id, seq + 1, cmd);
                    slots[slot] = Some((id, seq + 1, r));
                }
                ClientStep::Retry { slot } => {
                    let Some((id, seq, last)) = slots[slot].clone() else { continue };
                    if seq == 0 { continue; }
                    let cmd = Command::Append { key: b"t".to_vec(), value: b"<retry>".to_vec() };
                    let r = d.req(id, seq, cmd);
                    match &r.result {
                        Err(CommandError::UnknownSession { .. }) => {}
                        _ => prop_assert_eq!(&r, &last, "a retry answers like the original"),
                    }
                }
                ClientStep::Stale { slot } => {
                    let Some((id, seq, _)) = slots[slot].clone() else { continue };
                    if seq < 2 { continue; }
                    let cmd = Command::Append { key: b"t".to_vec(), value: b"<stale>".to_vec() };
                    let r = d.req(id, seq - 1, cmd);
                    prop_assert!(matches!(
                        r.result,
                        Err(CommandError::StaleRequest { .. } | CommandError::UnknownSession { .. })
                    ), "{:?}", r);
                }
                ClientStep::Noop => {
                    d.apply_entry(raft::EntryKind::Normal, Vec::new());
                }
            }
        }
        let value = d.value(b"t").unwrap_or_default();
        let text = String::from_utf8(value).unwrap();
        prop_assert!(!text.contains("<retry>") && !text.contains("<stale>"), "{}", text);
        for t in 1..=token {
            prop_assert!(text.matches(&format!("<{t}>")).count() <= 1, "token {} twice: {}", t, text);
        }
        let digest = d.sm.digest().unwrap();
        let mut batched = StateMachine::open_with(Arc::new(MemEngine::new()), limits).unwrap();
        for run in d.log.chunks(run_len) {
            batched.apply_all(run).unwrap();
        }
        prop_assert_eq!(batched.digest().unwrap(), digest);
        let chunks: Vec<Vec<u8>> = d.sm.reader().snapshot_with_chunk_size(200).unwrap()
            .collect::<Result<_, _>>().unwrap();
        let mut restored = StateMachine::open_with(Arc::new(MemEngine::new()), limits).unwrap();
        restored.restore(&chunks).unwrap();
        prop_assert_eq!(restored.digest().unwrap(), digest);
        prop_assert_eq!(restored.session_count(), d.sm.session_count());
    }
}
