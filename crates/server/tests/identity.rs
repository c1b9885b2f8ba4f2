//! Identity at startup, explicit bootstrap, and lost data (issue 11): a
//! node refuses another node's or another cluster's data dir; a follower
//! whose data dir was wiped does not bootstrap a second cluster and is
//! repaired; a follower whose WAL was cut below its commit index starts
//! recovering (no votes) and is repaired.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Waits until node `id` reports `recovering == want`.
async fn wait_recovering(c: &Cluster, id: u64, want: bool) -> proto::kv::StatusResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c.status(id).await;
        if s.recovering == want {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "node {id}: recovering is not {want} within 20 s: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The old leader is down; the two others are a healthy follower and the
/// node that lost data. The latter grants no vote (and does not
/// campaign), so no leader is elected: checked for `ticks` election
/// timeouts' worth of time.
async fn no_leader_without_the_recovering_nodes_vote(c: &Cluster, ids: [u64; 2]) {
    let until = Instant::now() + Duration::from_millis(TICK_MS * 20 * 5);
    while Instant::now() < until {
        for id in ids {
            let s = c.status(id).await;
            assert_ne!(
                s.role,
                proto::kv::Role::Leader as i32,
                "node {id} was elected without the recovering node's vote: {s:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `n` keys through the leader; returns the last write's index.
async fn write(c: &Cluster, via: u64, prefix: &str, n: usize) -> u64 {
    let mut last = 0;
    for i in 0..n {
        last = put(c, via, &format!("{prefix}{i}"), &format!("{i}"))
            .await
            .index;
    }
    last
}

/// After the repair: every node holds the same state (stopped, digests
/// read from the data dirs).
async fn same_state_everywhere(c: &mut Cluster, leader: u64) {
    let last = put(c, leader, "final", "x").await.index;
    for id in c.configs.keys().copied().collect::<Vec<_>>() {
        wait_applied(c, id, last).await;
    }
    c.stop_all().await;
    let digests = c.digests();
    let first = digests.values().next().copied().unwrap();
    assert!(
        digests.values().all(|d| *d == first),
        "replicas differ: {digests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_id_or_another_clusters_data_dir_is_refused() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    write(&c, leader, "k", 3).await;
    let st = c.status(1).await;
    assert_ne!(st.cluster_id, 0);
    assert_ne!(st.incarnation, 0);
    assert!(!st.recovering);
    // Every node derived the same cluster id from the same bootstrap.
    for id in [2, 3] {
        assert_eq!(c.status(id).await.cluster_id, st.cluster_id);
    }
    let follower = if leader == 3 { 2 } else { 3 };
    c.stop_node(follower).await.unwrap();

    // The follower's data dir, started as node 7.
    let good = c.configs[&follower].clone();
    c.configs.get_mut(&follower).unwrap().id = 7;
    let e = c.start_refused(follower).await.to_string();
    assert!(
        e.contains(&format!("belongs to node {follower}")) && e.contains("--id 7"),
        "{e}"
    );

    // The right id, but the operator expects another cluster.
    c.configs.insert(follower, good.clone());
    c.configs.get_mut(&follower).unwrap().cluster_id = Some("00000000000000aa".into());
    let e = c.start_refused(follower).await.to_string();
    assert!(
        e.contains(&format!("{:016x}", st.cluster_id)) && e.contains("00000000000000aa"),
        "{e}"
    );

    // With the right expectation it starts and catches up.
    c.configs.get_mut(&follower).unwrap().cluster_id = Some(format!("{:016x}", st.cluster_id));
    c.start_node(follower).await;
    let last = write(&c, leader, "m", 3).await;
    wait_applied(&c, follower, last).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_follower_does_not_bootstrap_and_is_repaired() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    write(&c, leader, "k", 20).await;
    let follower = if leader == 3 { 2 } else { 3 };
    c.stop_node(follower).await.unwrap();
    let dir = c.configs[&follower].data_dir.clone();
    std::fs::remove_dir_all(&dir).unwrap();

    // Restarted with the same flags (--bootstrap included): refused, since
    // the peers already hold the cluster's log.
    let e = c.start_refused(follower).await.to_string();
    assert!(
        e.contains("refusing to bootstrap")
            && e.contains("already belongs to cluster")
            && e.contains("without --bootstrap"),
        "{e}"
    );
    assert!(!dir.join("wal").exists(), "nothing was bootstrapped");

    // Without --bootstrap it joins under its old id. The leader is down
    // meanwhile (it would repair the node at once): the node grants no
    // vote, so the other follower cannot be elected.
    let other = 6 - leader - follower;
    c.stop_node(leader).await.unwrap();
    c.configs.get_mut(&follower).unwrap().bootstrap = false;
    c.start_node(follower).await;
    let st = wait_recovering(&c, follower, true).await;
    assert_eq!(
        st.cluster_id, 0,
        "a joining node learns the cluster id later"
    );
    assert!(dir.join("recovering.toml").exists());
    no_leader_without_the_recovering_nodes_vote(&c, [other, follower]).await;

    // The leader returns, finds the node's log gone (a rejection below its
    // match) and repairs it.
    c.start_node(leader).await;
    let leader = c.leader().await;
    write(&c, leader, "m", 5).await;
    let st = wait_recovering(&c, follower, false).await;
    assert!(st.commit_index > 20, "{st:?}");
    assert!(!dir.join("recovering.toml").exists());
    same_state_everywhere(&mut c, leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wal_cut_below_the_commit_index_makes_the_node_recover() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    write(&c, leader, "k", 60).await;
    let follower = if leader == 3 { 2 } else { 3 };
    let applied = c.status(follower).await.applied_index;
    c.stop_node(follower).await.unwrap();

    // Cut the newest WAL segment in half (disk damage).
    let dir = c.configs[&follower].data_dir.clone();
    let wal = dir.join("wal");
    let seg = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .max()
        .expect("a WAL segment");
    let data = std::fs::read(&seg).unwrap();
    let written = data.iter().rposition(|b| *b != 0).unwrap() + 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(written as u64 / 2)
        .unwrap();

    // Same flags: it starts (the data dir is its own), recovering. The
    // leader is down meanwhile (it would repair the node at once).
    let other = 6 - leader - follower;
    c.stop_node(leader).await.unwrap();
    c.start_node(follower).await;
    let st = wait_recovering(&c, follower, true).await;
    assert!(st.last_log_index < applied, "{st:?} vs applied {applied}");
    let marker = std::fs::read_to_string(dir.join("recovering.toml")).unwrap();
    assert!(marker.contains("lost"), "{marker}");

    // Restarted during the repair it stays recovering.
    c.stop_node(follower).await.unwrap();
    c.start_node(follower).await;
    wait_recovering(&c, follower, true).await;

    // It grants no vote while behind: with the leader down, the other
    // follower cannot be elected.
    no_leader_without_the_recovering_nodes_vote(&c, [other, follower]).await;
    c.start_node(leader).await;
    let leader = c.leader().await;

    write(&c, leader, "m", 5).await;
    wait_recovering(&c, follower, false).await;
    assert!(!dir.join("recovering.toml").exists());
    same_state_everywhere(&mut c, leader).await;
}
