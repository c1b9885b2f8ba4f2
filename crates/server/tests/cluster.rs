//! A 3-node cluster in one process: writes through any node, reads back,
//! restarts.

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
    // A follower answers a write with the leader hint.
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let err = c
        .kv(follower)
        .await
        .put(proto::kv::PutRequest {
            key: b"x".to_vec().into(),
            value: b"y".to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(leader_hint(&err), Some((leader, c.addrs[&leader].clone())));
    c.stop_all().await;
}
