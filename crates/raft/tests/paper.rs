//! Unit tests of single rules, named after the sentences of the Raft paper
//! (Figure 2 and §5) or of the Ready contract that they check.

mod common;

use bytes::Bytes;
use common::Cluster;
use raft::{
    ConfState, Config, Entry, EntryKind, Error, HardState, LogStore, MemStore, Message,
    MessageBody, ProposeError, RawNode, Ready, Role,
};

fn config(id: u64) -> Config {
    Config {
        pre_vote: false,
        ..Config::new(id)
    }
}

fn new_node(id: u64, voters: &[u64]) -> RawNode<MemStore> {
    let store = MemStore::with_conf(ConfState::with_voters(voters.iter().copied()));
    RawNode::new(config(id), store).unwrap()
}

/// What a handled Ready contained.
#[derive(Default)]
struct Handled {
    hard_state: Option<HardState>,
    entries: Vec<Entry>,
    messages: Vec<Message>,
    persisted_messages: Vec<Message>,
    committed_entries: Vec<Entry>,
}

/// Handles a Ready fully (persist, sync, apply, advance).
fn handle(n: &mut RawNode<MemStore>) -> Handled {
    let rd = n.ready();
    if let Some(s) = rd.snapshot.clone() {
        n.store_mut().install_snapshot(s).unwrap();
    }
    n.store_mut().append(&rd.entries).unwrap();
    if let Some(hs) = &rd.hard_state {
        n.store_mut().save_hard_state(hs).unwrap();
    }
    n.store_mut().sync().unwrap();
    let h = Handled {
        hard_state: rd.hard_state,
        entries: rd.entries.clone(),
        messages: rd.messages.clone(),
        persisted_messages: rd.persisted_messages.clone(),
        committed_entries: rd.committed_entries.clone(),
    };
    n.advance(rd).unwrap();
    h
}

fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from,
        to,
        term,
        body,
    }
}

fn ent(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: Bytes::from(format!("{index}@{term}")),
    }
}

fn append(term: u64, prev: (u64, u64), entries: Vec<Entry>, commit: u64) -> MessageBody {
    let _ = term;
    MessageBody::AppendEntries {
        prev_index: prev.0,
        prev_term: prev.1,
        entries,
        commit,
    }
}

/// A follower (node 2 of 1,2,3) that holds entries 1@1, 2@1, 3@2 from
/// leader 1 in term 2.
fn follower_with_log() -> RawNode<MemStore> {
    let mut n = new_node(2, &[1, 2, 3]);
    n.step(msg(
        1,
        2,
        2,
        append(2, (0, 0), vec![ent(1, 1), ent(2, 1), ent(3, 2)], 0),
    ))
    .unwrap();
    let _ = handle(&mut n);
    assert_eq!(n.status().last_index, 3);
    n
}

fn responses(rd: &Handled) -> Vec<MessageBody> {
    rd.persisted_messages
        .iter()
        .chain(&rd.messages)
        .map(|m| m.body.clone())
        .collect()
}

#[test]
fn if_rpc_request_or_response_contains_term_above_current_term_convert_to_follower() {
    let mut c = Cluster::new(&[1, 2, 3], &[], config(1));
    let mut out = String::new();
    c.node(1).unwrap().raw.campaign().unwrap();
    c.stabilize(&mut out).unwrap();
    assert_eq!(c.leader(), Some(1));
    let leader = &mut c.node(1).unwrap().raw;
    leader
        .step(msg(2, 1, 7, MessageBody::HeartbeatResponse { round: 0 }))
        .unwrap();
    let s = leader.status();
    assert_eq!((s.role, s.term, s.vote), (Role::Follower, 7, None));
}

#[test]
fn reply_false_if_term_below_current_term() {
    let mut n = follower_with_log();
    n.step(msg(3, 2, 1, append(1, (3, 2), vec![ent(4, 1)], 3)))
        .unwrap();
    let rd = handle(&mut n);
    assert_eq!(rd.persisted_messages.len(), 1);
    let m = &rd.persisted_messages[0];
    assert_eq!(m.term, 2, "the reply carries the newer term");
    assert!(matches!(
        m.body,
        MessageBody::AppendEntriesResponse { reject: true, .. }
    ));
    assert_eq!(n.status().last_index, 3, "nothing appended");
}

#[test]
fn reply_false_if_log_has_no_entry_at_prev_index_with_prev_term_with_conflict_hints() {
    let mut n = follower_with_log();
    // Too short: the hint is our last index + 1.
    n.step(msg(1, 2, 2, append(2, (7, 2), vec![ent(8, 2)], 0)))
        .unwrap();
    // Term mismatch at 2 (we hold term 1 there, from index 1 on).
    n.step(msg(1, 2, 2, append(2, (2, 2), vec![ent(3, 2)], 0)))
        .unwrap();
    let rd = handle(&mut n);
    assert_eq!(
        responses(&rd),
        vec![
            MessageBody::AppendEntriesResponse {
                reject: true,
                index: 7,
                conflict_term: 0,
                conflict_index: 4
            },
            MessageBody::AppendEntriesResponse {
                reject: true,
                index: 2,
                conflict_term: 1,
                conflict_index: 1
            },
        ]
    );
}

#[test]
fn if_an_existing_entry_conflicts_with_a_new_one_delete_it_and_all_that_follow() {
    let mut n = follower_with_log();
    n.step(msg(1, 2, 3, append(3, (1, 1), vec![ent(2, 3)], 0)))
        .unwrap();
    let rd = handle(&mut n);
    assert_eq!(rd.entries, vec![ent(2, 3)]);
    assert_eq!(n.status().last_index, 2);
    assert_eq!(n.store().term(2).unwrap(), 3);
}

#[test]
fn append_any_new_entries_not_already_in_the_log_and_never_truncate_on_a_stale_append() {
    let mut n = follower_with_log();
    // A delayed duplicate carrying only entry 2: it matches, so entry 3
    // (which follows it) must stay.
    n.step(msg(1, 2, 2, append(2, (1, 1), vec![ent(2, 1)], 0)))
        .unwrap();
    let rd = handle(&mut n);
    assert!(rd.entries.is_empty());
    assert_eq!(n.status().last_index, 3);
    assert!(
        responses(&rd).contains(&MessageBody::AppendEntriesResponse {
            reject: false,
            index: 2,
            conflict_term: 0,
            conflict_index: 0
        })
    );
}

#[test]
fn if_leader_commit_above_commit_index_set_commit_index_to_min_of_leader_commit_and_last_new_entry()
{
    let mut n = follower_with_log();
    n.step(msg(1, 2, 2, append(2, (1, 1), vec![ent(2, 1)], 10)))
        .unwrap();
    assert_eq!(n.status().commit, 2, "limited by the last new entry");
    let rd = handle(&mut n);
    assert_eq!(
        rd.committed_entries
            .iter()
            .map(|e| e.index)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(rd.hard_state.map(|h| h.commit), Some(2));
}

#[test]
fn grant_vote_only_if_candidate_log_is_at_least_as_up_to_date_as_receiver_log() {
    // Our last entry is 3@2.
    let cases = [
        (3, 2, true),  // same
        (9, 2, true),  // longer, same term
        (1, 3, true),  // later term wins even if shorter
        (2, 2, false), // shorter, same term
        (9, 1, false), // earlier term loses even if longer
    ];
    for (last_index, last_term, granted) in cases {
        let mut n = follower_with_log();
        // Wait out the election timeout so the vote is not ignored.
        for _ in 0..10 {
            n.tick();
        }
        if n.status().role != Role::Follower {
            continue;
        }
        n.step(msg(
            3,
            2,
            9,
            MessageBody::RequestVote {
                last_index,
                last_term,
                transfer: false,
            },
        ))
        .unwrap();
        let rd = handle(&mut n);
        assert_eq!(
            responses(&rd),
            vec![MessageBody::RequestVoteResponse { granted }],
            "candidate log {last_index}@{last_term}"
        );
    }
}

#[test]
fn each_server_votes_for_at_most_one_candidate_in_a_term_and_the_vote_is_persisted_first() {
    let mut n = new_node(1, &[1, 2, 3]);
    let vote = |from| {
        msg(
            from,
            1,
            5,
            MessageBody::RequestVote {
                last_index: 0,
                last_term: 0,
                transfer: false,
            },
        )
    };
    n.step(vote(2)).unwrap();
    n.step(vote(3)).unwrap();
    n.step(vote(2)).unwrap();
    let rd = n.ready();
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 5,
            vote: Some(2),
            commit: 0
        })
    );
    assert!(rd.messages.is_empty(), "votes wait for the sync");
    let granted: Vec<_> = rd
        .persisted_messages
        .iter()
        .map(|m| (m.to, m.body.clone()))
        .collect();
    assert_eq!(
        granted,
        vec![
            (2, MessageBody::RequestVoteResponse { granted: true }),
            (3, MessageBody::RequestVoteResponse { granted: false }),
            (2, MessageBody::RequestVoteResponse { granted: true }),
        ]
    );
    n.advance(rd).unwrap();
}

#[test]
fn leader_sends_append_entries_before_its_own_fsync_but_counts_itself_only_after_advance() {
    let mut c = Cluster::new(&[1, 2, 3], &[], config(1));
    let mut out = String::new();
    c.node(1).unwrap().raw.campaign().unwrap();
    c.stabilize(&mut out).unwrap();
    let leader = &mut c.node(1).unwrap().raw;
    let (index, _) = leader.propose(Bytes::from("x")).unwrap();
    let rd = leader.ready();
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(
        rd.messages
            .iter()
            .filter(|m| matches!(m.body, MessageBody::AppendEntries { .. }))
            .count(),
        2,
        "the AppendEntries go out with the entries to write"
    );
    leader.store_mut().append(&rd.entries).unwrap();
    let commit = leader.status().commit;
    // One follower acknowledges: with the leader's copy not durable yet,
    // that is 1 durable copy of 3.
    leader
        .step(msg(
            2,
            1,
            1,
            MessageBody::AppendEntriesResponse {
                reject: false,
                index,
                conflict_term: 0,
                conflict_index: 0,
            },
        ))
        .unwrap();
    assert_eq!(leader.status().commit, commit);
    leader.store_mut().sync().unwrap();
    leader.advance(rd).unwrap();
    assert_eq!(leader.status().commit, index);
}

#[test]
fn election_timeout_is_random_in_min_max() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let cfg = Config { seed, ..config(1) };
        let store = MemStore::with_conf(ConfState::with_voters([1, 2, 3]));
        let mut n = RawNode::new(cfg.clone(), store).unwrap();
        let mut ticks = 0;
        while n.status().role == Role::Follower {
            n.tick();
            ticks += 1;
            assert!(ticks < cfg.election_timeout_ticks_max, "seed {seed}");
        }
        assert!(ticks >= cfg.election_timeout_ticks_min, "seed {seed}");
        seen.insert(ticks);
    }
    assert!(seen.len() > 3, "timeouts vary: {seen:?}");
}

#[test]
fn same_inputs_give_same_outputs() {
    let trace = || {
        let mut c = Cluster::new(&[1, 2, 3], &[], Config::new(1));
        let mut out = String::new();
        for round in 0..60 {
            for id in c.up_ids() {
                c.tick(id, 1).unwrap();
            }
            if let Some(l) = c.leader() {
                c.propose(l, &format!("v{round}"), &mut out).unwrap();
            }
            c.stabilize(&mut out).unwrap();
        }
        out
    };
    let a = trace();
    assert!(a.contains("apply"), "the run did something");
    assert_eq!(a, trace());
}

#[test]
fn proposals_are_refused_by_followers_with_a_leader_hint() {
    let mut c = Cluster::new(&[1, 2, 3], &[], config(1));
    let mut out = String::new();
    c.node(1).unwrap().raw.campaign().unwrap();
    c.stabilize(&mut out).unwrap();
    let r = c.node(2).unwrap().raw.propose(Bytes::from("x"));
    assert_eq!(r, Err(ProposeError::NotLeader { leader: Some(1) }));
    let big = Bytes::from(vec![0u8; raft::limits::ENTRY_BYTES_MAX as usize + 1]);
    let r = c.node(1).unwrap().raw.propose(big);
    assert!(matches!(r, Err(ProposeError::EntryTooLarge { .. })));
}

#[test]
fn advance_with_a_foreign_ready_is_an_error_and_a_second_ready_is_empty() {
    let mut a = new_node(1, &[1]);
    let mut b = new_node(1, &[1]);
    a.campaign().unwrap();
    b.campaign().unwrap();
    let a1 = a.ready();
    assert!(!a1.is_empty());
    assert!(!a.has_ready(), "no Ready while one is outstanding");
    let again = a.ready();
    assert!(again.is_empty());
    a.advance(again).unwrap();
    let b1 = b.ready();
    let _ = handle_ready(&mut b, b1);
    b.propose(Bytes::from("x")).unwrap();
    let _b2 = b.ready();
    assert!(matches!(b.advance(a1), Err(Error::ReadyMisuse(_))));
}

fn handle_ready(n: &mut RawNode<MemStore>, rd: Ready) -> raft::Result<()> {
    n.store_mut().append(&rd.entries).unwrap();
    n.store_mut().sync().unwrap();
    n.advance(rd)
}

#[test]
fn a_restarted_node_hands_out_committed_entries_after_its_applied_index() {
    let mut n = new_node(1, &[1]);
    n.campaign().unwrap();
    let _ = handle(&mut n);
    for i in 0..3 {
        n.propose(Bytes::from(format!("v{i}"))).unwrap();
    }
    let _ = handle(&mut n);
    let _ = handle(&mut n);
    assert_eq!(n.status().applied, 4);
    let store = std::mem::take(n.store_mut());
    let cfg = Config {
        applied: 2,
        ..config(1)
    };
    let mut again = RawNode::new(cfg, store).unwrap();
    let rd = handle(&mut again);
    let idx: Vec<u64> = rd.committed_entries.iter().map(|e| e.index).collect();
    assert_eq!(idx, vec![3, 4]);
    let store = std::mem::take(again.store_mut());
    let bad = Config {
        applied: 99,
        ..config(1)
    };
    assert!(matches!(RawNode::new(bad, store), Err(Error::Config(_))));
}

#[test]
fn malformed_append_entries_from_a_peer_are_ignored() {
    let mut n = follower_with_log();
    // A hole (entry 5 after prev 3), and a term above the leader's.
    n.step(msg(1, 2, 2, append(2, (3, 2), vec![ent(5, 2)], 0)))
        .unwrap();
    n.step(msg(1, 2, 2, append(2, (3, 2), vec![ent(4, 9)], 0)))
        .unwrap();
    n.step(msg(1, 2, 2, append(2, (3, 2), vec![ent(4, 1)], 0)))
        .unwrap();
    let h = handle(&mut n);
    assert!(h.entries.is_empty());
    assert!(h.persisted_messages.is_empty());
    assert_eq!(n.status().last_index, 3);
}

#[test]
fn batches_are_bounded_by_bytes_and_one_large_entry_still_goes_alone() {
    let cfg = Config {
        bytes_per_append_max: 150,
        inflight_appends_max: 16,
        ..config(1)
    };
    let mut c = Cluster::new(&[1, 2], &[], cfg);
    let mut out = String::new();
    c.node(1).unwrap().raw.campaign().unwrap();
    c.stabilize(&mut out).unwrap();
    let leader = &mut c.node(1).unwrap().raw;
    for _ in 0..3 {
        leader.propose(Bytes::from(vec![b'x'; 100])).unwrap();
    }
    leader.propose(Bytes::from(vec![b'y'; 400])).unwrap();
    let rd = leader.ready();
    let sizes: Vec<Vec<u64>> = rd
        .messages
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntries { entries, .. } => {
                Some(entries.iter().map(|e| e.data.len() as u64).collect())
            }
            _ => None,
        })
        .collect();
    // 100-byte entries (117 bytes with their header) one per batch, and the
    // 400-byte entry alone although it exceeds the limit.
    assert_eq!(sizes, vec![vec![100], vec![100], vec![100], vec![400]]);
    leader.store_mut().append(&rd.entries).unwrap();
    leader.store_mut().sync().unwrap();
    leader.advance(rd).unwrap();
}

#[test]
fn proposals_beyond_the_uncommitted_limit_are_refused() {
    let mut c = Cluster::new(&[1, 2, 3], &[], config(1));
    let mut out = String::new();
    c.node(1).unwrap().raw.campaign().unwrap();
    c.stabilize(&mut out).unwrap();
    let leader = &mut c.node(1).unwrap().raw;
    let mut accepted = 0;
    let refused = loop {
        match leader.propose(Bytes::from_static(b"v")) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= raft::limits::UNCOMMITTED_ENTRIES_MAX);
    };
    assert!(matches!(refused, ProposeError::TooManyPending { .. }));
    assert_eq!(accepted, raft::limits::UNCOMMITTED_ENTRIES_MAX);
}

/// Lease reads: the lease is time on the driver's clock. A driver that
/// stops giving it (`set_now`) while ticks go on cannot stretch the lease
/// with a frozen reading: after two ticks without it, reads take a round.
#[test]
fn a_lease_is_not_used_on_a_clock_that_stopped_being_given() {
    let cfg = Config {
        lease_read: true,
        check_quorum: true,
        ..config(1)
    };
    let mut c = Cluster::new(&[1, 2, 3], &[], cfg);
    let mut out = String::new();
    c.node(1).unwrap().raw.campaign().unwrap();
    c.stabilize(&mut out).unwrap();
    assert_eq!(c.leader(), Some(1));
    // The first read confirms a round; the next one rides on the lease.
    c.node(1).unwrap().raw.read_index(1).unwrap();
    c.stabilize(&mut out).unwrap();
    let heartbeats = |c: &mut Cluster| {
        let rd = c.node(1).unwrap().raw.ready();
        let n = rd
            .messages
            .iter()
            .filter(|m| matches!(m.body, MessageBody::Heartbeat { .. }))
            .count();
        let reads = rd.read_states.len();
        c.node(1).unwrap().raw.advance(rd).unwrap();
        (n, reads)
    };
    c.node(1).unwrap().raw.read_index(2).unwrap();
    assert_eq!(heartbeats(&mut c), (0, 1), "served from the lease");
    // One tick without a clock reading: still the lease (the driver reads
    // the clock once per input; a tick may come right after a reading).
    c.node(1).unwrap().raw.tick();
    c.node(1).unwrap().raw.read_index(3).unwrap();
    assert_eq!(heartbeats(&mut c), (0, 1), "served from the lease");
    // A second tick without one: the clock is not being given any more.
    c.node(1).unwrap().raw.tick();
    c.node(1).unwrap().raw.read_index(4).unwrap();
    let (n, reads) = heartbeats(&mut c);
    assert_eq!(reads, 0, "not served from the lease");
    assert!(n >= 2, "a round went out ({n} heartbeats)");
    // Given again, within the lease: served from it again.
    let now = c.node(1).unwrap().clock;
    c.node(1).unwrap().raw.set_now(now);
    c.node(1).unwrap().raw.read_index(5).unwrap();
    let rd = c.node(1).unwrap().raw.ready();
    assert!(
        rd.read_states.iter().any(|r| r.ctx == 5),
        "{:?}",
        rd.read_states
    );
    c.node(1).unwrap().raw.advance(rd).unwrap();
}
