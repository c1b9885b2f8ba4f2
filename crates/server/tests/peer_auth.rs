//! Only authenticated members speak Raft (issue 11): forged peer messages —
//! to the client port, without or with a wrong cluster secret, with a
//! `from` that differs from the handshake, from a removed member, with a
//! client certificate, or from another cluster — are refused or dropped,
//! counted, and never applied; a forged TimeoutNow causes no election.
//!
//! The forged AppendEntries is the one of the issue: the leader's id as
//! `from`, the follower's term + 1, one Put entry right after the
//! follower's last entry, committed at once. One test sends it with a
//! valid handshake too, to show it would be applied if authentication let
//! it through (so the refusals, not a malformed message, keep it out).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use proto::kv::*;
use proto::raft as pb;
use server::handshake::{Local, Refusal, Secret};
use server::identity::Identity;
use tonic::transport::{Channel, Endpoint};

const FORGED_KEY: &str = "forged";

/// A secret file (mode 600) in `dir`.
fn secret_file(dir: &std::path::Path, secret: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("cluster-secret");
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// The forged AppendEntries from `from` to `to`, for a follower at `term`
/// whose log ends at `last` (of term `term`).
fn forged_append(from: u64, to: u64, term: u64, last: u64) -> pb::RaftMessage {
    let put = kv::Request {
        client_id: 0,
        seq: 0,
        command: kv::Command::Put {
            key: FORGED_KEY.as_bytes().to_vec(),
            value: b"evil".to_vec(),
            prev_kv: false,
        },
    };
    pb::RaftMessage {
        from,
        to,
        term: term + 1,
        body: Some(pb::raft_message::Body::AppendEntries(pb::AppendEntries {
            prev_index: last,
            prev_term: term,
            entries: vec![pb::Entry {
                index: last + 1,
                term: term + 1,
                kind: pb::EntryKind::Normal as i32,
                data: put.encode().into(),
            }],
            commit: last + 1,
        })),
    }
}

fn forged_timeout_now(from: u64, to: u64, term: u64) -> pb::RaftMessage {
    pb::RaftMessage {
        from,
        to,
        term,
        body: Some(pb::raft_message::Body::TimeoutNow(pb::TimeoutNow {})),
    }
}

/// A handshake as node `as_id` of cluster `cluster_id` (with `secret` if
/// given).
fn handshake(as_id: u64, cluster_id: u64, secret: Option<&str>) -> Local {
    Local::new(
        Identity {
            cluster_id,
            node_id: as_id,
            incarnation: 0x1234,
        },
        std::env::temp_dir(),
        "127.0.0.1:1".into(),
        "127.0.0.1:2".into(),
        secret.map(|s| Secret::new(s.as_bytes())),
        false,
    )
}

fn plain(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// Sends `msgs` on one `Raft.Send` call to `to`, stamped with `hs` if given.
async fn send(
    ch: Channel,
    to: u64,
    hs: Option<&Local>,
    msgs: Vec<pb::RaftMessage>,
) -> Result<(), tonic::Status> {
    let mut req = tonic::Request::new(tokio_stream::iter(msgs));
    if let Some(hs) = hs {
        hs.stamp(to, &mut req);
    }
    pb::raft_client::RaftClient::new(ch)
        .send(req)
        .await
        .map(|_| ())
}

fn refusal(r: Result<(), tonic::Status>) -> Option<Refusal> {
    match r {
        Ok(()) => None,
        Err(st) => Some(Refusal::of(&st).unwrap_or_else(|| panic!("not a refusal: {st}"))),
    }
}

/// A counter from the process-wide metrics (via any node's `/metrics`).
async fn counter(http: &str, name: &str, node: u64, reason: Option<&str>) -> f64 {
    let (_, text) = http_get(http, "/metrics").await;
    let node = node.to_string();
    let mut want = vec![("node", node.as_str())];
    if let Some(r) = reason {
        want.push(("reason", r));
    }
    sum(&parse_prometheus(&text), name, &want)
}

/// Checks, after a while, that no node applied the forged key and that
/// every running node's term is still `terms`.
async fn assert_untouched(c: &Cluster, terms: &BTreeMap<u64, u64>) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for &id in c.running.keys() {
        assert_eq!(
            get_local(c, id, FORGED_KEY).await,
            None,
            "node {id} applied the forged entry"
        );
        if let Some(t) = terms.get(&id) {
            assert_eq!(c.status(id).await.term, *t, "node {id}'s term moved");
        }
    }
}

async fn terms(c: &Cluster) -> BTreeMap<u64, u64> {
    let mut m = BTreeMap::new();
    for &id in c.running.keys() {
        m.insert(id, c.status(id).await.term);
    }
    m
}

/// Starts `n` nodes, each with an HTTP address; returns them and the HTTP
/// addresses (every node's `/metrics` shows every node's metrics: they
/// share the process).
async fn start(n: u64, tweak: impl Fn(&mut server::Config)) -> (Cluster, BTreeMap<u64, String>) {
    let http: BTreeMap<u64, String> = (1..=n).map(|id| (id, testkit::free_addr())).collect();
    let h = http.clone();
    let c = Cluster::start_with(n, move |cfg| {
        cfg.http_addr = Some(h[&cfg.id].clone());
        tweak(cfg);
    })
    .await;
    (c, http)
}

/// Starts 3 TLS nodes; node `id` holds a node certificate naming node
/// `named(id)`. Returns the cluster, the HTTP addresses and the
/// certificates.
async fn start_tls(
    dir: &std::path::Path,
    cluster_ca: &Ca,
    named: impl Fn(u64) -> u64,
) -> (
    Cluster,
    BTreeMap<u64, String>,
    BTreeMap<u64, (String, String)>,
) {
    let node_certs: BTreeMap<u64, (String, String)> = (1..=3)
        .map(|id| (id, leaf(cluster_ca, &format!("node{id}"), Some(named(id)))))
        .collect();
    let nc = node_certs.clone();
    let cdir = dir.to_path_buf();
    let ca_pem = cluster_ca.pem.clone();
    let (c, https) = start(3, move |cfg| {
        cfg.tls = Some(write_tls(
            &cdir,
            &format!("node{}", cfg.id),
            &ca_pem,
            &nc[&cfg.id],
        ));
    })
    .await;
    (c, https, node_certs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_messages_without_the_secret_or_with_a_spoofed_from_are_refused_and_never_applied() {
    let sdir = tempfile::tempdir().unwrap();
    let secret = "the cluster secret of this test";
    let path = secret_file(sdir.path(), secret);
    let p = path.clone();
    let (c, https) = start(3, move |cfg| cfg.cluster_secret_file = Some(p.clone())).await;
    let http = https[&1].clone();
    let l = c.leader_known_by(&[1, 2, 3]).await;
    put(&c, l, "seed", "v").await;
    let f = (1..=3).find(|&i| i != l).unwrap();
    let g = (1..=3).find(|&i| i != l && i != f).unwrap();
    wait_applied(&c, f, c.status(l).await.commit_index).await;
    let st = c.status(f).await;
    let cluster_id = Identity::load(&c.configs[&f].data_dir)
        .unwrap()
        .unwrap()
        .cluster_id;
    let append = forged_append(l, f, st.term, st.last_log_index);
    let timeout_now = forged_timeout_now(l, f, st.term);
    let before = terms(&c).await;
    let peer = &c.peer_addrs[&f];
    let refused_before = counter(&http, "raftkv_peer_refused_total", f, Some("bad-auth")).await;

    // (b) The client port has no Raft service.
    let e = send(plain(&c.addrs[&f]), f, None, vec![append.clone()])
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e}");
    // (c) No handshake, no secret, a wrong secret: bad-auth.
    let all = vec![append.clone(), timeout_now.clone()];
    let r = send(plain(peer), f, None, all.clone()).await;
    assert_eq!(refusal(r), Some(Refusal::BadAuth));
    let r = send(
        plain(peer),
        f,
        Some(&handshake(l, cluster_id, None)),
        all.clone(),
    )
    .await;
    assert_eq!(refusal(r), Some(Refusal::BadAuth));
    let wrong = handshake(l, cluster_id, Some("not the secret, but long enough"));
    let r = send(plain(peer), f, Some(&wrong), all.clone()).await;
    assert_eq!(refusal(r), Some(Refusal::BadAuth));
    let refused_after = counter(&http, "raftkv_peer_refused_total", f, Some("bad-auth")).await;
    assert!(
        refused_after >= refused_before + 3.0,
        "refusals counted: {refused_before} -> {refused_after}"
    );
    // (d) A valid handshake as node g, carrying messages "from" the
    // leader: accepted call, messages dropped and counted.
    let dropped_before = counter(
        &http,
        "raftkv_peer_messages_dropped_total",
        f,
        Some("from-mismatch"),
    )
    .await;
    let as_g = handshake(g, cluster_id, Some(secret));
    send(plain(peer), f, Some(&as_g), all.clone())
        .await
        .expect("the handshake itself is valid");
    let dropped_after = counter(
        &http,
        "raftkv_peer_messages_dropped_total",
        f,
        Some("from-mismatch"),
    )
    .await;
    assert!(
        dropped_after >= dropped_before + 2.0,
        "spoofed messages counted: {dropped_before} -> {dropped_after}"
    );
    assert_untouched(&c, &before).await;

    // Control: the same AppendEntries with a valid handshake as the leader
    // is applied — it was only authentication that kept it out. (Whoever
    // holds the secret is trusted: that is what the secret means.)
    let as_leader = handshake(l, cluster_id, Some(secret));
    send(plain(peer), f, Some(&as_leader), vec![append])
        .await
        .expect("accepted");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get_local(&c, f, FORGED_KEY).await.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the control message was not applied: the forged entry is malformed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = c;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_member_is_refused_and_its_forged_messages_are_not_applied() {
    let (mut c, https) = start(3, |_| {}).await;
    let l = c.leader_known_by(&[1, 2, 3]).await;
    put(&c, l, "seed", "v").await;
    let removed = (1..=3).find(|&i| i != l).unwrap();
    let f = (1..=3).find(|&i| i != l && i != removed).unwrap();
    let http = https[&f].clone();
    // The removed node's real identity: a handshake only membership can
    // refuse.
    let ident = Identity::load(&c.configs[&removed].data_dir)
        .unwrap()
        .unwrap();
    let as_removed = Local::new(
        ident,
        std::env::temp_dir(),
        c.addrs[&removed].clone(),
        c.peer_addrs[&removed].clone(),
        None,
        false,
    );
    // A stream opened as that node while it is still a member (its first
    // message, of an old term, is ignored by the core).
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    as_removed.stamp(f, &mut req);
    let open = pb::raft_client::RaftClient::new(plain(&c.peer_addrs[&f]));
    let call = tokio::spawn(async move {
        let mut open = open;
        open.send(req).await
    });
    let stale = pb::RaftMessage {
        from: removed,
        to: f,
        term: 0,
        body: Some(pb::raft_message::Body::HeartbeatResponse(
            pb::HeartbeatResponse { round: 0 },
        )),
    };
    tx.send(stale).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !call.is_finished(),
        "the stream was accepted while a member"
    );
    c.cluster(l)
        .await
        .remove(RemoveRequest { id: removed })
        .await
        .expect("remove");
    // Wait until the follower knows of the removal.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.status(f).await.members.iter().any(|m| m.id == removed) {
        assert!(std::time::Instant::now() < deadline, "removal not seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.stop_node(removed).await.unwrap();
    let st = c.status(f).await;
    let before = terms(&c).await;
    let refused_before = counter(&http, "raftkv_peer_refused_total", f, Some("not-member")).await;
    let msgs = vec![
        forged_append(removed, f, st.term, st.last_log_index),
        forged_timeout_now(removed, f, st.term),
    ];
    // On the stream opened before the removal: dropped, and the call ends
    // with the refusal.
    let dropped_before = counter(
        &http,
        "raftkv_peer_messages_dropped_total",
        f,
        Some("not-member"),
    )
    .await;
    for m in msgs.clone() {
        // The first one ends the call: the second may find it closed.
        let _ = tx.send(m).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dropped = counter(
            &http,
            "raftkv_peer_messages_dropped_total",
            f,
            Some("not-member"),
        )
        .await;
        if dropped > dropped_before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "messages of a removed member not dropped: {dropped_before} -> {dropped}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(tx);
    let ended = call.await.unwrap();
    assert_eq!(refusal(ended.map(|_| ())), Some(Refusal::NotMember));
    // A new call: refused at the handshake.
    let r = send(plain(&c.peer_addrs[&f]), f, Some(&as_removed), msgs).await;
    assert_eq!(refusal(r), Some(Refusal::NotMember));
    let refused_after = counter(&http, "raftkv_peer_refused_total", f, Some("not-member")).await;
    assert!(
        refused_after > refused_before,
        "{refused_before} -> {refused_after}"
    );
    assert_untouched(&c, &before).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_clusters_node_is_refused_on_both_ends() {
    // Node 3's data dir says it belongs to another cluster.
    let (mut c, https) = start(3, |cfg| {
        if cfg.id == 3 {
            std::fs::create_dir_all(&cfg.data_dir).unwrap();
            Identity::create(&cfg.data_dir, 3, 0x0bad_c0de).unwrap();
        }
    })
    .await;
    let http = https[&1].clone();
    let l = c.leader().await;
    assert_ne!(l, 3);
    put(&c, l, "k", "v").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let theirs = counter(
            &http,
            "raftkv_peer_refused_total",
            3,
            Some("cluster-mismatch"),
        )
        .await;
        let ours = counter(
            &http,
            "raftkv_peer_refused_by_total",
            l,
            Some("cluster-mismatch"),
        )
        .await;
        let leader_refused = counter(
            &http,
            "raftkv_peer_refused_total",
            l,
            Some("cluster-mismatch"),
        )
        .await;
        let node3_refused_by = counter(
            &http,
            "raftkv_peer_refused_by_total",
            3,
            Some("cluster-mismatch"),
        )
        .await;
        // Both ends count the mismatch: node 3 refuses the leader's calls
        // and the leader counts being refused. (Node 3 itself calls the
        // leader only if it campaigns; a node of another cluster that
        // joins empty never does, so the reverse direction may stay 0; its
        // counters are printed on failure.)
        if theirs > 0.0 && ours > 0.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not refused on both ends: node 3 refused {theirs}, leader refused by {ours}, \
             leader refused {leader_refused}, node 3 refused by {node3_refused_by}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s3 = c.status(3).await;
    assert_eq!(s3.applied_index, 0, "node 3 applied nothing: {s3:?}");
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_certificate_or_another_nodes_certificate_cannot_act_as_a_peer() {
    let certs = tempfile::tempdir().unwrap();
    let cluster_ca = ca("cluster CA");
    let (mut c, https, node_certs) = start_tls(certs.path(), &cluster_ca, |id| id).await;
    let http = https[&1].clone();
    // The cluster works over mutual TLS with node certificates.
    let mut l = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    'found: while l == 0 {
        for id in 1..=3 {
            let mut cl = proto::kv::cluster_client::ClusterClient::new(
                tls_channel(&c.addrs[&id], &cluster_ca.pem, None).await,
            );
            if let Ok(s) = cl.status(StatusRequest {}).await {
                let s = s.into_inner();
                if s.role == Role::Leader as i32 {
                    assert_eq!(s.peer_auth, "tls");
                    l = id;
                    break 'found;
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "no leader over TLS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut kv =
        proto::kv::kv_client::KvClient::new(tls_channel(&c.addrs[&l], &cluster_ca.pem, None).await);
    kv.put(PutRequest {
        key: b"seed".to_vec().into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    })
    .await
    .expect("a write over TLS commits");
    let f = (1..=3).find(|&i| i != l).unwrap();
    let g = (1..=3).find(|&i| i != l && i != f).unwrap();
    let mut fc = proto::kv::cluster_client::ClusterClient::new(
        tls_channel(&c.addrs[&f], &cluster_ca.pem, None).await,
    );
    let st = fc.status(StatusRequest {}).await.unwrap().into_inner();
    let cluster_id = Identity::load(&c.configs[&f].data_dir)
        .unwrap()
        .unwrap()
        .cluster_id;
    let msgs = vec![
        forged_append(l, f, st.term, st.last_log_index),
        forged_timeout_now(l, f, st.term),
    ];
    let refused_before = counter(&http, "raftkv_peer_refused_total", f, Some("wrong-node")).await;
    let name = format!("node-{f}.raftkv");
    let peer = &c.peer_addrs[&f];
    // (a) A client certificate from the cluster CA, claiming the leader.
    let client_cert = leaf(&cluster_ca, "client", None);
    let hs = handshake(l, cluster_id, None);
    let ch = tls_channel_named(peer, &cluster_ca.pem, Some(&client_cert), &name).await;
    let r = send(ch, f, Some(&hs), msgs.clone()).await;
    assert_eq!(refusal(r), Some(Refusal::WrongNode));
    // Node g's own certificate, claiming to be the leader.
    let ch = tls_channel_named(peer, &cluster_ca.pem, Some(&node_certs[&g]), &name).await;
    let r = send(ch, f, Some(&hs), msgs.clone()).await;
    assert_eq!(refusal(r), Some(Refusal::WrongNode));
    let refused_after = counter(&http, "raftkv_peer_refused_total", f, Some("wrong-node")).await;
    assert!(
        refused_after >= refused_before + 2.0,
        "{refused_before} -> {refused_after}"
    );
    let mut before = BTreeMap::new();
    for id in 1..=3u64 {
        let mut cl = proto::kv::cluster_client::ClusterClient::new(
            tls_channel(&c.addrs[&id], &cluster_ca.pem, None).await,
        );
        before.insert(
            id,
            cl.status(StatusRequest {}).await.unwrap().into_inner().term,
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in 1..=3u64 {
        let ch = tls_channel(&c.addrs[&id], &cluster_ca.pem, None).await;
        let mut kv = proto::kv::kv_client::KvClient::new(ch.clone());
        let got = kv
            .get(GetRequest {
                key: FORGED_KEY.as_bytes().to_vec().into(),
                serializable: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(got.kv.is_none(), "node {id} applied the forged entry");
        let mut cl = proto::kv::cluster_client::ClusterClient::new(ch);
        let t = cl.status(StatusRequest {}).await.unwrap().into_inner().term;
        assert_eq!(t, before[&id], "node {id}'s term moved");
    }
    c.stop_all().await;
}

/// A follower whose data dir is replaced (wiped, restarted with the same id)
/// shows a new incarnation in its handshake: the leader counts it
/// (`raftkv_peer_replaced_total`), probes it from scratch, and it catches
/// up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_follower_is_recognised_by_the_leader_and_caught_up() {
    let (mut c, https) = start(3, |_| {}).await;
    let l = c.leader_known_by(&[1, 2, 3]).await;
    put(&c, l, "before", "1").await;
    let f = (1..=3).find(|&i| i != l).unwrap();
    let http = https[&l].clone();
    let old = Identity::load(&c.configs[&f].data_dir)
        .unwrap()
        .unwrap()
        .incarnation;
    let replaced_before = counter(&http, "raftkv_peer_replaced_total", l, None).await;
    c.stop_node(f).await.unwrap();
    std::fs::remove_dir_all(&c.configs[&f].data_dir).unwrap();
    let cfg = c.configs.get_mut(&f).unwrap();
    cfg.join = true;
    cfg.bootstrap = false;
    c.start_node(f).await;
    let last = put(&c, l, "after", "2").await.index;
    wait_applied(&c, f, last).await;
    assert_eq!(get_local(&c, f, "before").await, Some(b"1".to_vec()));
    let new = Identity::load(&c.configs[&f].data_dir).unwrap().unwrap();
    assert_ne!(new.incarnation, old, "a new data dir has a new incarnation");
    assert_ne!(new.cluster_id, 0, "the joining node adopted the cluster id");
    let replaced_after = counter(&http, "raftkv_peer_replaced_total", l, None).await;
    assert!(
        replaced_after > replaced_before,
        "the leader did not notice the replacement: {replaced_before} -> {replaced_after}"
    );
    c.stop_all().await;
}

/// A node holding another node's certificate (signed by the cluster CA)
/// is cut off both ways: its calls are refused (the certificate does not
/// name the id it claims), and its peers do not accept it as the server
/// they dial (the name `node-<id>.raftkv` does not match).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_another_nodes_certificate_is_cut_off_both_ways() {
    let certs = tempfile::tempdir().unwrap();
    let cluster_ca = ca("cluster CA");
    // Node 3 holds a certificate naming node 2.
    let named = |id| if id == 3 { 2 } else { id };
    let (mut c, https, _) = start_tls(certs.path(), &cluster_ca, named).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut leader = 0;
        for id in [1u64, 2] {
            let ch = tls_channel(&c.addrs[&id], &cluster_ca.pem, None).await;
            let mut cl = proto::kv::cluster_client::ClusterClient::new(ch);
            if let Ok(s) = cl.status(StatusRequest {}).await {
                if s.into_inner().role == Role::Leader as i32 {
                    leader = id;
                }
            }
        }
        let (mut refused, mut by) = (0.0, 0.0);
        if leader != 0 {
            // (The leader serves HTTP: it answered over gRPC.)
            let http = &https[&leader];
            refused = counter(http, "raftkv_peer_refused_total", 1, Some("wrong-node")).await
                + counter(http, "raftkv_peer_refused_total", 2, Some("wrong-node")).await;
            by = counter(http, "raftkv_peer_refused_by_total", 3, Some("wrong-node")).await;
        }
        if refused > 0.0 && by > 0.0 && leader != 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 3 not refused ({refused}, {by}) or no leader among 1 and 2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Node 3 never heard from the leader (dialling it fails the name
    // check): nothing applied, no leader known.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ch = tls_channel_named(&c.addrs[&3], &cluster_ca.pem, None, "localhost").await;
    let s3 = proto::kv::cluster_client::ClusterClient::new(ch)
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s3.applied_index, 0, "{s3:?}");
    assert_eq!(s3.leader_id, 0, "{s3:?}");
    c.stop_all().await;
}
