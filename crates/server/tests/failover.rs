//! Leader loss, restarts, exactly-once retries and snapshot catch-up.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_stopped_new_leader_takes_over_and_nothing_is_lost() {
    let mut c = Cluster::start(3).await;
    let old = c.leader().await;
    let mut acked = Vec::new();
    for i in 0..20 {
        put(&c, old, &format!("a{i}"), &format!("{i}")).await;
        acked.push(i);
    }
    c.stop_node(old).await.unwrap();
    let new = c.leader().await;
    assert_ne!(new, old);
    for i in 20..40 {
        put(&c, new, &format!("a{i}"), &format!("{i}")).await;
        acked.push(i);
    }
    for &i in &acked {
        assert_eq!(
            get(&c, new, &format!("a{i}")).await,
            Some(format!("{i}").into_bytes()),
            "a{i}"
        );
    }
    // The old leader comes back and catches up.
    c.start_node(old).await;
    let last = put(&c, new, "after", "restart").await.index;
    wait_applied(&c, old, last).await;
    for &i in &acked {
        assert_eq!(
            get_local(&c, old, &format!("a{i}")).await,
            Some(format!("{i}").into_bytes())
        );
    }
    c.stop_all().await;
}

/// The followers of a leader whose process is gone (its sockets closed)
/// elect a new one without waiting out an election timeout: their
/// transports find the leader's connection refused and report it down.
/// Node 1 has short timeouts so that it leads first; nodes 2 and 3 have
/// 10–20 s ones, so a new leader within 8 s of the stop (the stop itself
/// included, on a loaded machine) can only come from that report (it takes
/// ~0.2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_of_a_stopped_leader_elect_a_new_one_before_their_election_timeout() {
    let mut c = Cluster::start_with(3, |cfg| {
        if cfg.id != 1 {
            cfg.election_timeout_ticks_min = 10_000 / TICK_MS;
            cfg.election_timeout_ticks_max = 20_000 / TICK_MS;
        }
    })
    .await;
    let old = c.leader().await;
    assert_eq!(old, 1, "node 1, with the short timeouts, leads first");
    put(&c, old, "k", "v").await;
    let stopped = Instant::now();
    c.stop_node(old).await.unwrap();
    let new = c.leader().await;
    let took = stopped.elapsed();
    assert_ne!(new, old);
    assert!(
        took < Duration::from_secs(8),
        "new leader after {took:?}: the election timeout (>= 10 s) was waited out"
    );
    assert_eq!(get(&c, new, "k").await, Some(b"v".to_vec()));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_cluster_stop_and_start_keeps_the_data() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    for i in 0..30 {
        put(&c, l, &format!("p{i}"), &format!("v{i}")).await;
    }
    c.stop_all().await;
    for id in 1..=3 {
        c.start_node(id).await;
    }
    let l = c.leader().await;
    for i in 0..30 {
        assert_eq!(
            get(&c, l, &format!("p{i}")).await,
            Some(format!("v{i}").into_bytes())
        );
    }
    put(&c, l, "more", "writes").await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_write_whose_reply_was_lost_applies_once() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let client_id = register(&c, l).await;
    assert!(client_id > 0);
    // The next successful write's reply is dropped after it applied.
    c.configs[&l]
        .test_hooks
        .drop_write_replies
        .store(1, Ordering::SeqCst);
    let err = c
        .kv(l)
        .await
        .append(proto::kv::AppendRequest {
            key: b"log".to_vec().into(),
            value: b"a".to_vec().into(),
            client_id,
            seq: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert_eq!(
        c.configs[&l]
            .test_hooks
            .drop_write_replies
            .load(Ordering::SeqCst),
        0
    );
    // The client retries the same write: answered from the session.
    let r = append(&c, l, "log", "a", client_id, 1).await;
    assert_eq!(r.value_len, 1);
    assert_eq!(get(&c, l, "log").await, Some(b"a".to_vec()));
    let r = append(&c, l, "log", "b", client_id, 2).await;
    assert_eq!(r.value_len, 2);
    assert_eq!(get(&c, l, "log").await, Some(b"ab".to_vec()));
    // An old seq is refused, not re-applied.
    let err = c
        .kv(l)
        .await
        .append(proto::kv::AppendRequest {
            key: b"log".to_vec().into(),
            value: b"a".to_vec().into(),
            client_id,
            seq: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert_eq!(get(&c, l, "log").await, Some(b"ab".to_vec()));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_down_while_the_log_is_compacted_catches_up_from_a_snapshot() {
    let mut c = Cluster::start(3).await;
    for cfg in c.configs.values_mut() {
        cfg.snapshot_threshold_entries = 20;
    }
    // Restart everyone with the small threshold.
    c.stop_all().await;
    for id in 1..=3 {
        c.start_node(id).await;
    }
    let l = c.leader().await;
    let down = (1..=3).find(|&i| i != l).unwrap();
    c.stop_node(down).await.unwrap();
    let mut last = 0;
    for i in 0..120 {
        last = put(&c, l, &format!("s{i}"), &format!("{i}")).await.index;
    }
    // Force a snapshot on the leader too, so its log starts past `down`'s.
    let snap = c
        .cluster(l)
        .await
        .snapshot(proto::kv::SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(snap.snapshot_index > 0);
    let st = c.status(l).await;
    assert!(st.snapshot_index >= 100, "leader compacted: {st:?}");
    // It binds its socket at once but serves only later: snapshot attempts
    // meanwhile must not wedge the leader's transfer to it.
    c.start_node_after(down, std::time::Duration::from_millis(3000))
        .await;
    wait_applied(&c, down, last).await;
    let st = c.status(down).await;
    assert!(
        st.snapshot_index > 0,
        "caught up through a snapshot: {st:?}"
    );
    for i in 0..120 {
        assert_eq!(
            get_local(&c, down, &format!("s{i}")).await,
            Some(format!("{i}").into_bytes())
        );
    }
    // And it keeps replicating after the snapshot.
    let idx = put(&c, l, "post", "snapshot").await.index;
    wait_applied(&c, down, idx).await;
    assert_eq!(
        get_local(&c, down, "post").await,
        Some(b"snapshot".to_vec())
    );
    c.stop_all().await;
}

/// A wiped node lost its log and its vote, so it must not come back as the
/// same voter (its old acknowledgements still count in the leader's eyes):
/// the operator removes it, wipes it, and adds it back as a learner, which
/// then catches up from a snapshot, and promotes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_wiped_of_its_data_is_restored_through_a_snapshot() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let wiped = (1..=3).find(|&i| i != l).unwrap();
    for i in 0..50 {
        put(&c, l, &format!("x{i}"), &format!("{i}")).await;
    }
    c.stop_node(wiped).await.unwrap();
    let mut cl = c.cluster(l).await;
    cl.remove(proto::kv::RemoveRequest { id: wiped })
        .await
        .unwrap();
    let snap = cl
        .snapshot(proto::kv::SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(snap.snapshot_index >= 50, "{snap:?}");
    std::fs::remove_dir_all(&c.configs[&wiped].data_dir).unwrap();
    let cfg = c.configs.get_mut(&wiped).unwrap();
    cfg.join = true;
    cfg.bootstrap = false;
    cfg.peers.clear();
    c.start_node(wiped).await;
    cl.add_learner(proto::kv::AddLearnerRequest {
        id: wiped,
        addr: c.peer_addrs[&wiped].clone(),
    })
    .await
    .unwrap();
    let last = put(&c, l, "x-last", "done").await.index;
    wait_applied(&c, wiped, last).await;
    let st = c.status(wiped).await;
    assert!(
        st.snapshot_index >= snap.snapshot_index,
        "restored from a snapshot: {st:?}"
    );
    for i in 0..50 {
        assert_eq!(
            get_local(&c, wiped, &format!("x{i}")).await,
            Some(format!("{i}").into_bytes())
        );
    }
    cl.promote(proto::kv::PromoteRequest { id: wiped })
        .await
        .unwrap();
    let m = cl
        .members(proto::kv::MembersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.members.iter().filter(|m| !m.learner).count(), 3, "{m:?}");
    c.stop_all().await;
}

/// As the CLI's real-process test does it: a follower stopped right after
/// the election, 50 writes, both live nodes compacted on demand, then the
/// follower restarted (serving only after a short delay).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_stopped_early_catches_up_after_on_demand_compaction() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let down = (1..=3).find(|&i| i != l).unwrap();
    c.stop_node(down).await.unwrap();
    let mut last = 0;
    for i in 0..50 {
        last = put(&c, l, &format!("s{i:02}"), &format!("{i}")).await.index;
    }
    for id in (1..=3).filter(|&i| i != down) {
        // A node snapshots what it has applied: the live follower may
        // still be applying the last writes.
        wait_applied(&c, id, last).await;
        let s = c
            .cluster(id)
            .await
            .snapshot(proto::kv::SnapshotRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(s.snapshot_index >= 50, "{s:?}");
    }
    c.start_node_after(down, std::time::Duration::from_millis(700))
        .await;
    let t0 = std::time::Instant::now();
    loop {
        if let Ok(mut cl) =
            tokio::time::timeout(std::time::Duration::from_millis(500), c.cluster(down)).await
        {
            if let Ok(s) = cl.status(proto::kv::StatusRequest {}).await {
                let s = s.into_inner();
                if s.snapshot_index >= 50 && s.applied_index >= 50 {
                    break;
                }
            }
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(15),
            "no catch-up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(get_local(&c, down, "s49").await, Some(b"49".to_vec()));
    c.stop_all().await;
}
