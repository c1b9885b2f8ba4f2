//! Bearer tokens: a missing or unknown token gets `Unauthenticated`, a
//! read-only token writing gets `PermissionDenied`, the right tokens work,
//! also through a follower that forwards the call.

mod common;

use std::collections::BTreeMap;

use common::*;
use proto::kv::cluster_client::ClusterClient;
use proto::kv::kv_client::KvClient;
use proto::kv::*;
use server::security::{AuthConfig, TokenConfig, TokenRole};
use tonic::Code;

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn auth() -> AuthConfig {
    AuthConfig {
        tokens: vec![
            TokenConfig {
                token: "writer-secret".into(),
                role: TokenRole::Write,
            },
            TokenConfig {
                token: "reader-secret".into(),
                role: TokenRole::Read,
            },
        ],
    }
}

fn put_req(key: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    }
}

fn get_req(key: &str) -> GetRequest {
    GetRequest {
        key: key.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_enforced_by_role() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr().await;
    let mut cfg = node_config(1, &addr, &BTreeMap::new(), dir.path());
    cfg.auth = auth();
    let mut c = Cluster {
        dir,
        addrs: BTreeMap::from([(1, addr.clone())]),
        peer_addrs: BTreeMap::new(),
        configs: BTreeMap::from([(1, cfg)]),
        running: BTreeMap::new(),
    };
    c.start_node(1).await;
    let ch = channel(&addr).await;
    let mut kv = KvClient::new(ch.clone());
    let mut cluster = ClusterClient::new(ch);

    // Wait for the single node to lead (Status needs a token too).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let st = cluster
            .status(with_token(StatusRequest {}, Some("reader-secret")))
            .await
            .unwrap()
            .into_inner();
        if st.role == Role::Leader as i32 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let code = |r: Result<tonic::Response<PutResponse>, tonic::Status>| r.err().map(|s| s.code());
    assert_eq!(
        code(kv.put(with_token(put_req("a"), None)).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(kv.put(with_token(put_req("a"), Some("wrong"))).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(
            kv.put(with_token(put_req("a"), Some("reader-secret")))
                .await
        ),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        code(
            kv.put(with_token(put_req("a"), Some("writer-secret")))
                .await
        ),
        None
    );

    // Reads: any valid token; none or a wrong one is refused.
    let got = kv
        .get(with_token(get_req("a"), Some("reader-secret")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.kv.map(|kv| kv.value.to_vec()), Some(b"v".to_vec()));
    assert!(kv
        .get(with_token(get_req("a"), Some("writer-secret")))
        .await
        .is_ok());
    assert_eq!(
        kv.get(with_token(get_req("a"), None))
            .await
            .err()
            .map(|s| s.code()),
        Some(Code::Unauthenticated)
    );
    // Admin calls need the write role.
    assert_eq!(
        cluster
            .snapshot(with_token(
                SnapshotRequest::default(),
                Some("reader-secret")
            ))
            .await
            .err()
            .map(|s| s.code()),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        cluster
            .status(with_token(StatusRequest {}, None))
            .await
            .err()
            .map(|s| s.code()),
        Some(Code::Unauthenticated)
    );
    c.stop_all().await;
}

/// A follower forwards a call with the caller's token, and the leader
/// checks it again: a writer's put through a follower applies; a reader's
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_call_carries_the_callers_token() {
    let mut c = Cluster::start_with(3, |cfg| cfg.auth = auth()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let leader = 'found: loop {
        for (&id, addr) in &c.addrs {
            let mut cl = ClusterClient::new(channel(addr).await);
            if let Ok(st) = cl
                .status(with_token(StatusRequest {}, Some("reader-secret")))
                .await
            {
                if st.into_inner().role == Role::Leader as i32 {
                    break 'found id;
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let mut kv = KvClient::new(channel(&c.addrs[&follower]).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let r = loop {
        // Until the follower has heard from the leader.
        match kv
            .put(with_token(put_req("f"), Some("writer-secret")))
            .await
        {
            Err(st) if st.code() == Code::Unavailable && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            r => break r,
        }
    };
    let r = r.expect("a writer's put through a follower").into_inner();
    assert_eq!(r.header.map(|h| h.node_id), Some(leader));
    assert_eq!(
        kv.put(with_token(put_req("f"), Some("reader-secret")))
            .await
            .err()
            .map(|s| s.code()),
        Some(Code::PermissionDenied)
    );
    let got = kv
        .get(with_token(get_req("f"), Some("reader-secret")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.header.map(|h| h.node_id),
        Some(leader),
        "forwarded read"
    );
    assert_eq!(got.kv.map(|kv| kv.value.to_vec()), Some(b"v".to_vec()));
    c.stop_all().await;
}
