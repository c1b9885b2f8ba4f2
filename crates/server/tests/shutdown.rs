//! A node stops when asked even while a peer's connection has gone silent
//! without closing, as every connection from a host cut off the network does
//! (`docker network disconnect`, a pulled cable): no FIN, no RST, no bytes.
//! Such a connection carries an open peer stream, and a graceful stop waits
//! for its streams; the server's HTTP/2 keep-alive finds it dead and drops
//! it, so the stop completes instead of waiting for ever (until a container
//! runtime's SIGKILL).

mod common;

use std::time::{Duration, Instant};

use proto::raft::raft_client::RaftClient;
use proto::raft::RaftMessage;
use server::handshake::Local;
use server::identity::Identity;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Accepts one connection and relays it to `to` until `cut` turns true;
/// from then on it holds both sockets open and moves nothing, a peer that
/// vanished from the network. Returns its address.
async fn blackhole_proxy(to: String, mut cut: watch::Receiver<bool>) -> String {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a.to_string(),
        Err(e) => panic!("{e}"),
    };
    tokio::spawn(async move {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut outbound) = TcpStream::connect(&to).await else {
            return;
        };
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            _ = cut.wait_for(|c| *c) => {}
        }
        // Silent from now on, but never closed (until the test ends).
        tokio::time::sleep(Duration::from_secs(120)).await;
        let _ = inbound.shutdown().await;
        let _ = outbound.shutdown().await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stops_while_a_peer_connection_hangs_half_open() {
    let mut c = common::Cluster::start(3).await;
    let leader = c.leader().await;
    let (cut_tx, cut_rx) = watch::channel(false);
    let proxy = blackhole_proxy(c.peer_addrs[&leader].clone(), cut_rx).await;

    // A peer stream into the leader's peer port through the proxy, as
    // another member's transport opens one (with its handshake): a
    // client-streaming Raft.Send that stays open.
    let other = if leader == 1 { 2 } else { 1 };
    let st = c.status(other).await;
    let hs = Local::new(
        Identity {
            cluster_id: st.cluster_id,
            node_id: other,
            incarnation: st.incarnation,
        },
        std::env::temp_dir(),
        c.addrs[&other].clone(),
        c.peer_addrs[&other].clone(),
        None,
        false,
    );
    let channel = common::channel(&proxy).await;
    let (tx, rx) = mpsc::channel::<RaftMessage>(4);
    let mut client = RaftClient::new(channel);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    hs.stamp(leader, &mut req);
    let call = tokio::spawn(async move { client.send(req).await });
    let m = RaftMessage {
        from: other,
        to: leader,
        term: 0,
        ..RaftMessage::default()
    };
    if tx.send(m).await.is_err() {
        panic!("the peer stream closed at once");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!call.is_finished(), "the peer stream ended early: {call:?}");

    // The peer falls silent; then the node is asked to stop.
    let _ = cut_tx.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let r = c.stop_node(leader).await;
    assert!(r.is_ok(), "{r:?}");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(15), "the stop took {took:?}");
    drop(tx);
    c.stop_all().await;
}
