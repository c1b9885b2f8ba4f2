//! Membership changes under write load, and bad input.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use proto::kv::*;
use tonic::Code;

type Addrs = Arc<Mutex<BTreeMap<u64, String>>>;

/// Writes `w0, w1, ...` until `stop`, following leader hints; returns the
/// writes that were acknowledged.
async fn writer(addrs: Addrs, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut acked = Vec::new();
    let mut target: Option<String> = None;
    let mut i = 0u64;
    let mut rr = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let addr = match &target {
            Some(a) => a.clone(),
            None => {
                let all: Vec<String> = addrs.lock().unwrap().values().cloned().collect();
                rr += 1;
                all[rr % all.len()].clone()
            }
        };
        let r = match try_channel(&addr).await {
            Ok(ch) => {
                KvClient::new(ch)
                    .put(PutRequest {
                        key: format!("w{i}").into_bytes().into(),
                        value: i.to_string().into_bytes().into(),
                        ..Default::default()
                    })
                    .await
            }
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        };
        match r {
            Ok(_) => {
                acked.push(i);
                i += 1;
                target = Some(addr);
            }
            Err(st) => {
                target = leader_hint(&st).map(|(_, a)| a);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    acked
}

use proto::kv::kv_client::KvClient;

/// Retries a Cluster call on the current leader until it succeeds or a
/// non-retryable error comes back.
async fn on_leader<T, F, Fut>(c: &Cluster, mut op: F) -> Result<T, tonic::Status>
where
    F: FnMut(proto::kv::cluster_client::ClusterClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = c.leader().await;
        match op(c.cluster(l).await).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(st)
                if matches!(st.code(), Code::Unavailable | Code::FailedPrecondition)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(st) => return Err(st),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grow_to_five_remove_the_leader_and_transfer_while_a_client_writes() {
    let mut c = Cluster::start(3).await;
    c.leader().await;
    let addrs: Addrs = Arc::new(Mutex::new(c.addrs.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(Arc::clone(&addrs), Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Grow: two learners, then promote them.
    for id in 4..=5u64 {
        let addr = c.start_joining(id).await;
        addrs.lock().unwrap().insert(id, c.addrs[&id].clone());
        let r = on_leader(&c, |mut cl| {
            let addr = addr.clone();
            async move { cl.add_learner(AddLearnerRequest { id, addr }).await }
        })
        .await
        .unwrap();
        assert!(r.members.iter().any(|m| m.id == id && m.learner), "{r:?}");
        let r = on_leader(&c, |mut cl| async move {
            cl.promote(PromoteRequest { id }).await
        })
        .await
        .unwrap();
        assert!(r.members.iter().any(|m| m.id == id && !m.learner), "{r:?}");
    }
    let l = c.leader().await;
    let members = c
        .cluster(l)
        .await
        .members(MembersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        members.members.iter().filter(|m| !m.learner).count(),
        5,
        "{members:?}"
    );

    // Remove the leader; the others elect a new one.
    let old = l;
    // (A retry after an in-doubt answer may find it already removed.)
    match on_leader(&c, |mut cl| async move {
        cl.remove(RemoveRequest { id: old }).await
    })
    .await
    {
        Ok(_) => {}
        Err(e) if e.code() == Code::NotFound => {}
        Err(e) => panic!("remove {old}: {e}"),
    }
    addrs.lock().unwrap().remove(&old);
    let deadline = Instant::now() + Duration::from_secs(15);
    let new = loop {
        let id = *c.running.keys().find(|&&i| i != old).unwrap();
        let s = c.status(id).await;
        if s.leader_id != 0 && s.leader_id != old {
            break s.leader_id;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader after removing {old}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    c.stop_node(old).await.unwrap();
    let members = c
        .cluster(new)
        .await
        .members(MembersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.members.len(), 4, "{members:?}");

    // Transfer leadership to another voter.
    let to = *c.running.keys().find(|&&i| i != new).unwrap();
    let r = on_leader(&c, |mut cl| async move {
        cl.transfer_leader(TransferLeaderRequest { to }).await
    })
    .await
    .unwrap();
    assert_eq!(r.leader_id, to);
    assert_eq!(c.leader().await, to);

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = w.await.unwrap();
    assert!(
        acked.len() > 10,
        "the client kept writing: {} writes",
        acked.len()
    );
    let l = c.leader().await;
    for i in &acked {
        assert_eq!(
            get(&c, l, &format!("w{i}")).await,
            Some(i.to_string().into_bytes()),
            "w{i}"
        );
    }
    // The joined nodes have everything.
    let last = put(&c, l, "final", "x").await.index;
    for id in 4..=5 {
        wait_applied(&c, id, last).await;
        assert_eq!(get_local(&c, id, "w0").await, Some(b"0".to_vec()));
    }
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_right_code_and_the_node_keeps_serving() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let mut kv = c.kv(l).await;
    let put = |key: Vec<u8>, value: Vec<u8>| PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    };
    let e = kv.put(put(vec![], b"v".to_vec())).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = kv
        .put(put(vec![b'k'; kv::limits::KEY_SIZE_MAX + 1], b"v".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("key_size_max"), "{e}");
    let e = kv
        .put(put(b"k".to_vec(), vec![0; kv::limits::VALUE_SIZE_MAX + 1]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = kv
        .get(GetRequest {
            key: vec![].into(),
            serializable: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = kv
        .append(AppendRequest {
            key: b"k".to_vec().into(),
            value: b"v".to_vec().into(),
            client_id: 424242,
            seq: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert_eq!(
        e.metadata()
            .get(ERROR_METADATA)
            .and_then(|v| v.to_str().ok()),
        Some(UNKNOWN_SESSION)
    );

    let mut cl = c.cluster(l).await;
    let e = cl.promote(PromoteRequest { id: 99 }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let e = cl.remove(RemoveRequest { id: 99 }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let e = cl
        .transfer_leader(TransferLeaderRequest { to: 99 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let e = cl.promote(PromoteRequest { id: l }).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    let e = cl
        .add_learner(AddLearnerRequest {
            id: 0,
            addr: "127.0.0.1:1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = cl
        .add_learner(AddLearnerRequest {
            id: 7,
            addr: "nohost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = cl
        .add_learner(AddLearnerRequest {
            id: l,
            addr: "127.0.0.1:1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e}");

    // A malformed config is refused with the field named, and a node given
    // one does not start.
    let e = server::Config::from_toml_str("id = 1\ntick_interval_ms = \"fast\"").unwrap_err();
    assert!(e.to_string().contains("tick_interval_ms"), "{e}");
    let bad = server::Config {
        id: 0,
        ..c.configs[&1].clone()
    };
    let r = server::run(bad, async {}).await;
    assert!(matches!(r, Err(server::ServerError::Config(_))), "{r:?}");

    // Still serving.
    let r = kv
        .put(put(b"ok".to_vec(), b"yes".to_vec()))
        .await
        .unwrap()
        .into_inner();
    assert!(r.index > 0);
    assert_eq!(get(&c, l, "ok").await, Some(b"yes".to_vec()));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_answered_resource_exhausted_and_the_node_recovers() {
    let mut c = Cluster::start(3).await;
    // Restart with room for a single pending write per node.
    c.stop_all().await;
    for cfg in c.configs.values_mut() {
        cfg.limits.pending_proposals_max = 1;
    }
    for id in 1..=3 {
        c.start_node(id).await;
    }
    let l = c.leader().await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut kv = c.kv(l).await;
        tasks.push(tokio::spawn(async move {
            kv.put(PutRequest {
                key: format!("o{i}").into_bytes().into(),
                value: b"v".to_vec().into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| e.code())
        }));
    }
    let mut ok = 0;
    let mut exhausted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Code::ResourceExhausted) => exhausted += 1,
            Err(code) => panic!("unexpected {code:?}"),
        }
    }
    assert!(ok >= 1, "some writes went through");
    assert!(exhausted >= 1, "some writes were pushed back ({ok} ok)");
    // Not stuck: writes go through again.
    for i in 0..5 {
        put(&c, l, &format!("after{i}"), "v").await;
    }
    c.stop_all().await;
}

/// Regression (chaos `--eager-wipe`, seed 1): a removal that is appended
/// but not committed must not be reported as done. The chaos tester's
/// retried `Remove` got `NotFound` from a node whose log held the
/// uncommitted removal, and `Members` (the appended configuration) agreed,
/// so it wiped the "removed" node; a stale node then won an election with
/// the wiped node's vote and acknowledged writes were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uncommitted_removal_is_not_reported_as_done() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    put(&c, l, "k", "v").await;
    let others: Vec<u64> = (1..=3).filter(|&id| id != l).collect();
    let (down, target) = (others[0], others[1]);
    // Without `down` the new configuration {l, down} has no majority, so
    // the removal of `target` is appended but cannot commit.
    c.stop_node(down).await.unwrap();
    let mut first = c.cluster(l).await;
    let pending = tokio::spawn(async move { first.remove(RemoveRequest { id: target }).await });
    // Wait until the removal is appended on the leader.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = c.status(l).await;
        if !st.members.iter().any(|m| m.id == target) {
            break;
        }
        assert!(Instant::now() < deadline, "removal never appended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A retry must not say NotFound, and Members must still list the
    // target, whether `l` still leads or stepped down (check quorum).
    for via in [l, target] {
        let retry = c
            .cluster(via)
            .await
            .remove(RemoveRequest { id: target })
            .await;
        match retry {
            Err(st) => assert_eq!(
                st.code(),
                Code::Unavailable,
                "retried remove via {via} while uncommitted: {st:?}"
            ),
            Ok(r) => panic!("retried remove via {via} succeeded uncommitted: {r:?}"),
        }
        let members = c
            .cluster(via)
            .await
            .members(MembersRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(
            members.members.iter().any(|m| m.id == target),
            "Members via {via} dropped node {target} before its removal committed"
        );
    }
    // Once a majority is back the removal commits and is reported.
    c.start_node(down).await;
    let r = on_leader(&c, |mut cl| async move {
        cl.remove(RemoveRequest { id: target }).await
    })
    .await;
    match r {
        Ok(_) => {}
        Err(st) => assert_eq!(st.code(), Code::NotFound, "{st:?}"),
    }
    let l = c.leader().await;
    let members = c
        .cluster(l)
        .await
        .members(MembersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!members.members.iter().any(|m| m.id == target));
    pending.abort();
    c.stop_all().await;
}

/// A follower forwards membership changes and leadership transfers to the
/// leader, so a plain gRPC client may send them to any node; asked not to
/// forward, it answers with the leader hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_calls_to_a_follower_are_forwarded_to_the_leader() {
    // Election timeouts of 1-2 s: no election between the steps, even on a
    // loaded machine (the assertions name who must answer).
    let mut c = Cluster::start_with(3, |cfg| {
        cfg.election_timeout_ticks_min = 50;
        cfg.election_timeout_ticks_max = 100;
    })
    .await;
    let l = c.leader_known_by(&[1, 2, 3]).await;
    let followers: Vec<u64> = (1..=3).filter(|&id| id != l).collect();
    let (a, b) = (followers[0], followers[1]);

    // A learner added through one follower and removed through the other
    // (node 4 never runs: a learner does not count for commits).
    let addr = free_addr().await;
    let added = c
        .cluster(a)
        .await
        .add_learner(AddLearnerRequest { id: 4, addr })
        .await
        .expect("add_learner through a follower")
        .into_inner();
    // Answered by the leader (`l`, unless an election came between).
    let by = added.header.as_ref().map_or(0, |h| h.node_id);
    assert!(by != a && by != 0, "answered by node {by}");
    assert!(added.members.iter().any(|m| m.id == 4 && m.learner));
    let removed = c
        .cluster(b)
        .await
        .remove(RemoveRequest { id: 4 })
        .await
        .expect("remove through a follower")
        .into_inner();
    assert!(!removed.members.iter().any(|m| m.id == 4));

    // Asked not to forward: the hint, as before.
    let mut req = tonic::Request::new(TransferLeaderRequest { to: a });
    req.metadata_mut().insert(
        NO_FORWARD_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    let err = c.cluster(b).await.transfer_leader(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let (hinted, _) = leader_hint(&err).expect("a leader hint");
    assert_ne!(hinted, b);

    // Leadership moved by asking a follower (the old leader answers once
    // the target has taken over).
    let r = c
        .cluster(b)
        .await
        .transfer_leader(TransferLeaderRequest { to: a })
        .await
        .expect("transfer through a follower")
        .into_inner();
    assert_eq!(r.leader_id, a);
    assert_eq!(c.leader().await, a);
    c.stop_all().await;
}

/// Issue 11: `promote` accepted a learner that was never started, leaving
/// the cluster with a dead voter. Now it is refused with the lag named, the
/// voters stay as they were, and once the node runs and catches up the
/// promotion goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promote_of_a_learner_that_never_started_is_refused_and_the_voters_stay() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    put(&c, l, "before", "x").await;
    // Added, but nothing runs at its (peer) address.
    let addr = free_addr().await;
    let peer = free_addr().await;
    on_leader(&c, |mut cl| {
        let addr = peer.clone();
        async move { cl.add_learner(AddLearnerRequest { id: 4, addr }).await }
    })
    .await
    .unwrap();
    // Give the leader more than an election timeout to hear from it.
    tokio::time::sleep(Duration::from_millis(TICK_MS * 25)).await;
    let l = c.leader().await;
    let e = c
        .cluster(l)
        .await
        .promote(PromoteRequest { id: 4 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(
        e.message().contains("learner 4 has not caught up")
            && e.message().contains("match index is 0")
            && e.message().contains("may not be running"),
        "{e}"
    );
    let members = c
        .cluster(l)
        .await
        .members(MembersRequest {})
        .await
        .unwrap()
        .into_inner();
    let voters: Vec<u64> = members
        .members
        .iter()
        .filter(|m| !m.learner)
        .map(|m| m.id)
        .collect();
    assert_eq!(voters, vec![1, 2, 3], "{members:?}");
    assert!(members.members.iter().any(|m| m.id == 4 && m.learner));

    // Started as the docs say (empty data dir, joining, at that address),
    // it catches up and is promoted.
    c.addrs.insert(4, addr.clone());
    c.peer_addrs.insert(4, peer.clone());
    let mut cfg = node_config(4, &addr, &BTreeMap::from([(4, peer)]), c.dir.path());
    cfg.join = true;
    cfg.bootstrap = false;
    c.configs.insert(4, cfg);
    c.start_node(4).await;
    // Promote is refused until the leader has seen it catch up: repeat.
    let t0 = std::time::Instant::now();
    let r = loop {
        let r = on_leader(&c, |mut cl| async move {
            cl.promote(PromoteRequest { id: 4 }).await
        })
        .await;
        match r {
            Ok(r) => break r,
            Err(st) if st.code() == tonic::Code::FailedPrecondition => {
                assert!(t0.elapsed() < Duration::from_secs(15), "{st:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(st) => panic!("{st:?}"),
        }
    };
    assert!(r.members.iter().any(|m| m.id == 4 && !m.learner), "{r:?}");
    c.stop_all().await;
}

/// Issue 11: a removed node kept running and answering as a follower. Now
/// it learns of its removal: its status says `removed`, every client call
/// to it is refused FAILED_PRECONDITION, it never disrupts the others (the
/// term stays the same for three election timeouts while it runs), and
/// after a restart it is still removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_node_says_so_refuses_clients_and_never_disrupts() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    put(&c, l, "k", "v").await;
    let victim = (1..=3).find(|&i| i != l).unwrap();
    on_leader(&c, |mut cl| async move {
        cl.remove(RemoveRequest { id: victim }).await
    })
    .await
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st = c.status(victim).await;
        if st.removed {
            break st;
        }
        assert!(Instant::now() < deadline, "not told of its removal: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(st.leader_id, 0, "{st:?}");

    let removed = |e: tonic::Status| {
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        assert!(
            e.message().contains(&format!(
                "this node was removed from the cluster (id {victim})"
            )),
            "{e}"
        );
    };
    let mut kv = c.kv(victim).await;
    removed(
        kv.put(PutRequest {
            key: b"k".to_vec().into(),
            value: b"w".to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    for serializable in [false, true] {
        removed(
            kv.get(GetRequest {
                key: b"k".to_vec().into(),
                serializable,
            })
            .await
            .unwrap_err(),
        );
    }
    removed(
        c.cluster(victim)
            .await
            .members(MembersRequest {})
            .await
            .unwrap_err(),
    );

    // It keeps running for three election timeouts; nobody's term moves.
    let others: Vec<u64> = (1..=3).filter(|&i| i != victim).collect();
    let leader = c.leader_known_by(&others).await;
    let term = c.status(leader).await.term;
    tokio::time::sleep(Duration::from_millis(TICK_MS * 20 * 3 + 200)).await;
    for &id in &others {
        let s = c.status(id).await;
        assert_eq!((s.term, s.leader_id), (term, leader), "node {id}: {s:?}");
    }
    let s = c.status(victim).await;
    assert!(s.removed && s.term <= term, "{s:?}");
    assert_eq!(get(&c, leader, "k").await, Some(b"v".to_vec()));

    // Restarted, it is still removed, at once.
    c.stop_node(victim).await.unwrap();
    c.start_node(victim).await;
    let s = c.status(victim).await;
    assert!(s.removed, "{s:?}");
    removed(
        c.kv(victim)
            .await
            .get(GetRequest {
                key: b"k".to_vec().into(),
                serializable: true,
            })
            .await
            .unwrap_err(),
    );
    c.stop_all().await;
}
