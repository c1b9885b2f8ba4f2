//! `/metrics` parses as Prometheus text and its counters move under load;
//! `/api/cluster` shows every node and the leader, and keeps answering when
//! a node is down.

mod common;

use std::collections::BTreeMap;

use common::*;

async fn start_observed(n: u64) -> (Cluster, BTreeMap<u64, String>) {
    let mut http = BTreeMap::new();
    for id in 1..=n {
        http.insert(id, free_addr().await);
    }
    let c = Cluster::start_with(n, |cfg| cfg.http_addr = Some(http[&cfg.id].clone())).await;
    (c, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_parse_and_move_under_load_and_the_cluster_api_survives_a_dead_node() {
    let (mut c, http) = start_observed(3).await;
    let leader = c.leader().await;
    let node = leader.to_string();
    let node = node.as_str();

    let (code, before) = http_get(&http[&leader], "/metrics").await;
    assert_eq!(code, 200);
    assert!(before.contains("# HELP raftkv_term "), "described metrics");
    assert!(before.contains("# TYPE raftkv_wal_fsync_seconds histogram"));
    let before = parse_prometheus(&before);
    assert_eq!(
        sum(&before, "raftkv_role", &[("node", node)]),
        3.0,
        "leader role"
    );

    for i in 0..40 {
        put(&c, leader, &format!("k{i}"), "v").await;
    }
    for i in 0..10 {
        assert!(get(&c, leader, &format!("k{i}")).await.is_some());
    }

    let (code, after) = http_get(&http[&leader], "/metrics").await;
    assert_eq!(code, 200);
    let after = parse_prometheus(&after);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        sum(&after, name, labels) - sum(&before, name, labels)
    };
    let puts = [("node", node), ("method", "Kv/Put"), ("code", "OK")];
    assert!(moved("raftkv_grpc_requests_total", &puts) >= 40.0);
    assert!(
        moved(
            "raftkv_grpc_request_seconds_count",
            &[("node", node), ("method", "Kv/Put")]
        ) >= 40.0
    );
    assert!(
        moved(
            "raftkv_proposals_total",
            &[("node", node), ("result", "ok")]
        ) >= 40.0
    );
    assert!(moved("raftkv_wal_fsync_seconds_count", &[("node", node)]) >= 1.0);
    assert!(moved("raftkv_wal_append_seconds_count", &[("node", node)]) >= 1.0);
    assert!(moved("raftkv_apply_seconds_count", &[("node", node)]) >= 1.0);
    assert!(moved("raftkv_read_index_seconds_count", &[("node", node)]) >= 10.0);
    assert!(
        moved(
            "raftkv_messages_sent_total",
            &[("node", node), ("type", "append_entries")]
        ) >= 1.0
    );
    assert!(sum(&after, "raftkv_commit_index", &[("node", node)]) >= 40.0);
    assert!(sum(&after, "raftkv_term", &[("node", node)]) >= 1.0);
    assert!(sum(&after, "raftkv_leader_changes_total", &[("node", node)]) >= 1.0);
    assert!(sum(&after, "raftkv_wal_bytes", &[("node", node)]) > 0.0);
    assert!(
        sum(
            &after,
            "raftkv_bitcask_bytes",
            &[("node", node), ("kind", "live")]
        ) > 0.0
    );
    assert!(sum(&after, "raftkv_keys", &[("node", node)]) >= 40.0);
    // Histogram buckets are cumulative and end with +Inf = count.
    let inf = sum(
        &after,
        "raftkv_wal_fsync_seconds_bucket",
        &[("node", node), ("le", "+Inf")],
    );
    assert_eq!(
        inf,
        sum(&after, "raftkv_wal_fsync_seconds_count", &[("node", node)])
    );
    // Follower lag gauges exist on the leader, one per follower.
    let lags = after
        .iter()
        .filter(|(n, l, _)| n == "raftkv_follower_match_lag" && l["node"] == node)
        .count();
    assert_eq!(lags, 2);

    // The cluster view, from a follower, with every node up.
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    // A plain put to the follower is forwarded, and counted there.
    c.kv(follower)
        .await
        .put(proto::kv::PutRequest {
            key: b"fwd".to_vec().into(),
            value: b"v".to_vec().into(),
            ..Default::default()
        })
        .await
        .expect("forwarded put");
    let (_, fm) = http_get(&http[&follower], "/metrics").await;
    let fnode = follower.to_string();
    assert!(
        sum(
            &parse_prometheus(&fm),
            "raftkv_forwarded_calls_total",
            &[("node", fnode.as_str())]
        ) >= 1.0
    );
    let (code, body) = http_get(&http[&follower], "/api/cluster").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["leader"], leader);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3);
    let writes: u64 = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["writes_total"].as_u64().unwrap())
        .sum();
    assert!(writes >= 40, "writes counted: {body}");

    // The page is served.
    let (code, page) = http_get(&http[&follower], "/").await;
    assert_eq!(code, 200);
    assert!(page.contains("raftkv cluster"));

    // Stop the third node: the view still answers, listing it down.
    let other = (1..=3).find(|&i| i != leader && i != follower).unwrap();
    c.stop_node(other).await.unwrap();
    let (code, body) = http_get(&http[&follower], "/api/cluster").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let down: Vec<u64> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["up"] == false)
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    assert_eq!(down, vec![other]);
    assert_eq!(v["leader"], leader);
    c.stop_all().await;
}
