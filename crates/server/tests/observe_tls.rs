//! TLS and mutual TLS: a node whose certificate another CA signed cannot
//! exchange Raft messages with the cluster, which keeps working without it;
//! a TLS node refuses plaintext; the peer service needs a client
//! certificate; clients may connect with the CA alone.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use proto::kv::cluster_client::ClusterClient;
use proto::kv::kv_client::KvClient;
use proto::kv::*;
use tonic::transport::Endpoint;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_a_foreign_certificate_is_cut_off_and_the_cluster_keeps_working() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cluster_ca = ca("cluster CA");
    let other_ca = ca("another CA");
    let mut addrs = BTreeMap::new();
    let mut peer_addrs = BTreeMap::new();
    for id in 1..=3 {
        addrs.insert(id, free_addr().await);
        peer_addrs.insert(id, free_addr().await);
    }
    let mut c = Cluster {
        dir,
        addrs: addrs.clone(),
        peer_addrs: peer_addrs.clone(),
        configs: BTreeMap::new(),
        running: BTreeMap::new(),
    };
    let certs_dir = c.dir.path().join("certs");
    std::fs::create_dir_all(&certs_dir).unwrap();
    // Nodes 1 and 2: certificates from the cluster CA. Node 3 trusts the
    // cluster CA but holds a certificate from another CA.
    let rogue = leaf(&other_ca, "node3", Some(3));
    for id in 1..=3u64 {
        let mut cfg = node_config(id, &addrs[&id], &peer_addrs, c.dir.path());
        let ident = if id == 3 {
            rogue.clone()
        } else {
            leaf(&cluster_ca, &format!("node{id}"), Some(id))
        };
        cfg.tls = Some(write_tls(
            &certs_dir,
            &format!("node{id}"),
            &cluster_ca.pem,
            &ident,
        ));
        c.configs.insert(id, cfg);
        c.start_node(id).await;
    }

    // A client with the cluster CA (no client certificate) finds a leader
    // among nodes 1 and 2 and writes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = 'found: loop {
        for id in [1u64, 2] {
            let mut cl = ClusterClient::new(tls_channel(&addrs[&id], &cluster_ca.pem, None).await);
            if let Ok(st) = cl.status(StatusRequest {}).await {
                if st.into_inner().role == Role::Leader as i32 {
                    break 'found id;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader among nodes 1 and 2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut kv = KvClient::new(tls_channel(&addrs[&leader], &cluster_ca.pem, None).await);
    for i in 0..5 {
        kv.put(PutRequest {
            key: format!("k{i}").into_bytes().into(),
            value: b"v".to_vec().into(),
            ..Default::default()
        })
        .await
        .expect("a write over TLS commits with two of three nodes");
    }
    let follower = 3 - leader;
    let mut fc = ClusterClient::new(tls_channel(&addrs[&follower], &cluster_ca.pem, None).await);
    let st = fc.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(st.leader_id, leader);
    // The follower forwards a write to the leader over mutual TLS.
    let mut fkv = KvClient::new(tls_channel(&addrs[&follower], &cluster_ca.pem, None).await);
    let r = fkv
        .put(PutRequest {
            key: b"via-follower".to_vec().into(),
            value: b"v".to_vec().into(),
            ..Default::default()
        })
        .await
        .expect("a write sent to a follower is forwarded over TLS")
        .into_inner();
    assert_eq!(r.header.map(|h| h.node_id), Some(leader));

    // Node 3 never heard from the leader: no leader, nothing applied. (Its
    // server certificate is from the other CA, so ask it trusting that.)
    let mut n3 = ClusterClient::new(tls_channel(&addrs[&3], &other_ca.pem, None).await);
    let st3 = n3.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(st3.leader_id, 0, "node 3 knows no leader: {st3:?}");
    assert_eq!(st3.applied_index, 0, "node 3 applied nothing: {st3:?}");
    assert_ne!(st3.role, Role::Leader as i32);

    // A client trusting only the cluster CA refuses node 3's certificate.
    let mut bad = ClusterClient::new(tls_channel(&addrs[&3], &cluster_ca.pem, None).await);
    assert!(bad.status(StatusRequest {}).await.is_err());

    // Plaintext to a TLS node fails.
    let plain = Endpoint::from_shared(format!("http://{}", addrs[&leader]))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .connect_lazy();
    assert!(ClusterClient::new(plain)
        .status(StatusRequest {})
        .await
        .is_err());

    // A client certificate from another CA is refused in the handshake.
    let mut rogue_client =
        ClusterClient::new(tls_channel(&addrs[&leader], &cluster_ca.pem, Some(&rogue)).await);
    assert!(rogue_client.status(StatusRequest {}).await.is_err());

    // The peer listener needs a client certificate: a client with the CA
    // alone fails the TLS handshake. The client listener has no Raft
    // service at all.
    let mut raft = proto::raft::raft_client::RaftClient::new(
        tls_channel_named(
            &peer_addrs[&leader],
            &cluster_ca.pem,
            None,
            &format!("node-{leader}.raftkv"),
        )
        .await,
    );
    raft.send(tokio_stream::iter(Vec::<proto::raft::RaftMessage>::new()))
        .await
        .expect_err("the peer listener refuses a client without a certificate");
    let mut raft = proto::raft::raft_client::RaftClient::new(
        tls_channel(&addrs[&leader], &cluster_ca.pem, None).await,
    );
    let err = raft
        .send(tokio_stream::iter(Vec::<proto::raft::RaftMessage>::new()))
        .await
        .expect_err("the client listener has no Raft service");
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");

    c.stop_all().await;
}
