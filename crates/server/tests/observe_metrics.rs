//! `/metrics` parses as Prometheus text and its counters move under load;
//! `/api/cluster` shows every node and the leader, and keeps answering when
//! a node is down.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A GET over plain HTTP/1.1; returns (status code, body).
async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("HTTP answer within 10 s")
        .unwrap();
    let text = String::from_utf8(buf).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A small parser of the Prometheus text format (0.0.4): comments,
/// `# HELP`/`# TYPE` lines and samples `name{l="v",...} value`. Panics on
/// anything else, so a malformed exposition fails the test.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            if let Some(t) = rest.strip_prefix("TYPE ") {
                let kind = t.split_whitespace().nth(1).expect("TYPE has a kind");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "line {n}: unknown type {kind}"
                );
            }
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        assert!(
            !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()),
            "line {n}: bad metric name in {line:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let close = r
                .find('}')
                .unwrap_or_else(|| panic!("line {n}: unclosed labels"));
            for pair in r[..close].split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {n}: bad label {pair:?}"));
                assert!(
                    v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                    "line {n}: label value not quoted: {pair:?}"
                );
                labels.insert(k.to_string(), v[1..v.len() - 1].to_string());
            }
            rest = &r[close + 1..];
        }
        let value_text = rest.split_whitespace().next().expect("a value");
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("line {n}: bad value {v:?}")),
        };
        out.push((name.to_string(), labels, value));
    }
    out
}

/// Sum of the samples named `name` whose labels include all of `want`.
fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

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
