//! A 3-node cluster in one process: writes through any node (followers
//! forward), reads back, restarts.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_through_any_node_read_back() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    for via in 1..=3u64 {
        let key = format!("k{via}");
        let r = put(&c, via, &key, &format!("v{via}")).await;
        assert!(r.index > 0);
    }
    for via in 1..=3u64 {
        for k in 1..=3u64 {
            assert_eq!(
                get(&c, via, &format!("k{k}")).await,
                Some(format!("v{k}").into_bytes())
            );
        }
    }
    // A follower forwards a write and a linearizable read to the leader: a
    // plain gRPC client (no hint following) gets the leader's answers.
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let mut kv = c.kv(follower).await;
    let put_req = proto::kv::PutRequest {
        key: b"x".to_vec().into(),
        value: b"y".to_vec().into(),
        ..Default::default()
    };
    let r = kv.put(put_req.clone()).await.unwrap().into_inner();
    assert_eq!(r.header.unwrap().node_id, leader, "answered by the leader");
    let r = kv
        .get(proto::kv::GetRequest {
            key: b"x".to_vec().into(),
            serializable: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kv.unwrap().value, b"y".to_vec());
    assert_eq!(r.header.unwrap().node_id, leader);
    // Asked not to forward (as our client library does), it answers with
    // the leader hint; a call already forwarded once is never forwarded
    // again.
    for key in [
        proto::kv::NO_FORWARD_METADATA,
        proto::kv::FORWARDED_METADATA,
    ] {
        let mut req = tonic::Request::new(put_req.clone());
        req.metadata_mut()
            .insert(key, tonic::metadata::MetadataValue::from_static("1"));
        let err = kv.put(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{key}");
        assert_eq!(leader_hint(&err), Some((leader, c.addrs[&leader].clone())));
    }
    c.stop_all().await;
}

/// Bytes of the files directly in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Overwrites leave dead records; the automatic merge gives the space back
/// on every node, and the data is intact (also after a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwritten_values_are_merged_away_automatically() {
    let mut c = Cluster::start_with(3, |cfg| {
        cfg.storage.file_size_max = 64 * 1024;
        cfg.storage.merge_dead_percent = 50;
        cfg.storage.merge_dead_bytes_min = 128 * 1024;
        cfg.storage.merge_check_interval_ms = 100;
    })
    .await;
    let leader = c.leader().await;
    let value = "x".repeat(2048);
    for i in 0..300 {
        put(&c, leader, "k", &format!("{i}{value}")).await;
    }
    let last = put(&c, leader, "last", "1").await.index;
    let kv_dir = |id: u64| c.dir.path().join(format!("n{id}")).join("kv");
    // ~600 KiB were written per node, almost all of it overwritten.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for id in 1..=3 {
        wait_applied(&c, id, last).await;
        loop {
            let bytes = dir_bytes(&kv_dir(id));
            if bytes < 256 * 1024 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {id}: {bytes} bytes of data files after 20 s; no merge"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let want = format!("299{value}").into_bytes();
    for id in 1..=3 {
        assert_eq!(
            get_local(&c, id, "k").await,
            Some(want.clone()),
            "node {id}"
        );
    }
    c.stop_node(leader).await.unwrap();
    c.start_node(leader).await;
    assert_eq!(get_local(&c, leader, "k").await, Some(want));
    c.stop_all().await;
}

/// With `lease_read`, linearizable reads are served from the leader's
/// lease; they still see every acknowledged write, also after the leader
/// changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_reads_see_every_acknowledged_write() {
    let mut c = Cluster::start_with(3, |cfg| cfg.lease_read = true).await;
    let leader = c.leader().await;
    for i in 0..20 {
        put(&c, leader, &format!("k{i}"), &format!("{i}")).await;
        assert_eq!(
            get(&c, leader, &format!("k{i}")).await,
            Some(format!("{i}").into_bytes())
        );
    }
    c.stop_node(leader).await.unwrap();
    let new = c.leader().await;
    put(&c, new, "after", "x").await;
    for i in 0..20 {
        assert_eq!(
            get(&c, new, &format!("k{i}")).await,
            Some(format!("{i}").into_bytes())
        );
    }
    assert_eq!(get(&c, new, "after").await, Some(b"x".to_vec()));
    c.stop_all().await;
}
