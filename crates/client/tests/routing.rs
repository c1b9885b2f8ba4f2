//! The client against mock nodes (real gRPC on loopback, no Raft): leader
//! hints are followed, a write whose reply is lost is retried with the same
//! sequence number, sessions carry one write at a time, expired sessions are
//! replaced, bad input is not retried, and an unreachable cluster fails
//! within the deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::pb::kv_server::{Kv, KvServer};
use client::pb::{
    AppendRequest, AppendResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse,
    KeyValue, PutRequest, PutResponse, RegisterSessionRequest, RegisterSessionResponse,
    ResponseHeader, ScanRequest, ScanResponse, TxnRequest, TxnResponse,
};
use client::{Client, ClientConfig, Error, ReadMode};
use tonic::{Request, Response, Status};

/// What the mock leader saw and holds.
#[derive(Default)]
struct State {
    /// Every Put attempt that reached the leader: (client_id, seq, key).
    attempts: Vec<(u64, u64, String)>,
    /// Applied puts, deduplicated by (client_id, seq).
    applied: HashMap<(u64, u64), String>,
    data: HashMap<String, String>,
    /// Drop this many replies after applying (as a lost reply).
    drop_replies: u32,
    /// Sessions the mock has registered; others are "unknown".
    sessions: Vec<u64>,
    next_session: u64,
    /// Writes in flight per session, to catch two writes sharing one.
    in_flight: HashMap<u64, u32>,
    max_in_flight_per_session: u32,
}

#[derive(Clone)]
struct Mock {
    id: u64,
    /// `None`: this node is the leader; `Some(addr)`: a follower that
    /// redirects there.
    leader_addr: Option<String>,
    state: Arc<Mutex<State>>,
}

impl Mock {
    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            node_id: self.id,
            term: 1,
            applied_index: 0,
            leader_id: 2,
        })
    }

    fn redirect(&self) -> Result<(), Status> {
        match &self.leader_addr {
            None => Ok(()),
            Some(addr) => {
                let mut s = Status::unavailable("not the leader");
                if let Ok(v) = addr.parse() {
                    s.metadata_mut().insert(proto_keys::LEADER_ADDR, v);
                }
                Err(s)
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

mod proto_keys {
    pub const LEADER_ADDR: &str = "raftkv-leader-addr";
}

#[tonic::async_trait]
impl Kv for Mock {
    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.redirect()?;
        let r = request.into_inner();
        let key = String::from_utf8_lossy(&r.key).into_owned();
        if key.is_empty() {
            return Err(Status::invalid_argument("empty key"));
        }
        {
            let mut s = self.state();
            if !s.sessions.contains(&r.client_id) {
                let mut st = Status::failed_precondition("unknown session");
                st.metadata_mut().insert(
                    "raftkv-error",
                    tonic::metadata::MetadataValue::from_static("unknown-session"),
                );
                return Err(st);
            }
            s.attempts.push((r.client_id, r.seq, key.clone()));
            let n = s.in_flight.entry(r.client_id).or_insert(0);
            *n += 1;
            let n = *n;
            s.max_in_flight_per_session = s.max_in_flight_per_session.max(n);
        }
        // Let concurrent writes overlap.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut s = self.state();
        if let Some(n) = s.in_flight.get_mut(&r.client_id) {
            *n -= 1;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = s.applied.entry((r.client_id, r.seq))
        {
            e.insert(key.clone());
            s.data
                .insert(key, String::from_utf8_lossy(&r.value).into_owned());
        }
        if s.drop_replies > 0 {
            s.drop_replies -= 1;
            return Err(Status::unavailable("reply lost"));
        }
        Ok(Response::new(PutResponse {
            header: self.header(),
            index: s.applied.len() as u64,
            prev_kv: None,
        }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let r = request.into_inner();
        if !r.serializable {
            self.redirect()?;
        }
        let key = String::from_utf8_lossy(&r.key).into_owned();
        let s = self.state();
        let kv = s.data.get(&key).map(|v| KeyValue {
            key: r.key.clone(),
            value: v.clone().into(),
            create_index: 1,
            mod_index: 1,
            version: 1,
        });
        Ok(Response::new(GetResponse {
            header: self.header(),
            kv,
        }))
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn append(&self, _: Request<AppendRequest>) -> Result<Response<AppendResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn scan(&self, _: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn register_session(
        &self,
        _: Request<RegisterSessionRequest>,
    ) -> Result<Response<RegisterSessionResponse>, Status> {
        self.redirect()?;
        let mut s = self.state();
        s.next_session += 100;
        let id = s.next_session;
        s.sessions.push(id);
        Ok(Response::new(RegisterSessionResponse {
            header: self.header(),
            client_id: id,
        }))
    }
}

/// Serves `mock` on a fresh loopback port; returns its address.
async fn serve(mock: Mock) -> String {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a.to_string(),
        Err(e) => panic!("{e}"),
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(KvServer::new(mock))
            .serve_with_incoming(incoming)
            .await;
    });
    addr
}

/// A follower (first endpoint) pointing at a leader (not in the endpoints).
async fn cluster() -> (Client, Arc<Mutex<State>>, String, String) {
    let state = Arc::new(Mutex::new(State::default()));
    let leader = serve(Mock {
        id: 2,
        leader_addr: None,
        state: state.clone(),
    })
    .await;
    let follower = serve(Mock {
        id: 1,
        leader_addr: Some(leader.clone()),
        state: state.clone(),
    })
    .await;
    let config = ClientConfig {
        deadline: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let c = match Client::connect(vec![follower.clone()], config) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    (c, state, follower, leader)
}

fn lock(s: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_leader_hint_and_learns_the_leader() {
    let (c, state, follower, leader) = cluster().await;
    let r = c.put("a", "1").await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(c.leader().as_deref(), Some(leader.as_str()));
    assert_eq!(c.endpoints(), vec![follower.clone(), leader.clone()]);
    // A linearizable read goes to the leader, a serializable one is served
    // by whichever node the client asks.
    let r = c.get_with("a", ReadMode::Linearizable).await;
    assert_eq!(r.ok().and_then(|r| r.header).map(|h| h.node_id), Some(2));
    let got = c.get("a").await.ok().flatten().map(|kv| kv.value);
    assert_eq!(got.as_deref(), Some(&b"1"[..]));
    assert_eq!(lock(&state).attempts.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_reply_is_lost_is_retried_with_the_same_seq_and_applies_once() {
    let (c, state, _, _) = cluster().await;
    lock(&state).drop_replies = 2;
    let r = c.put("k", "v").await;
    assert!(r.is_ok(), "{r:?}");
    let r = c.put("k2", "v").await;
    assert!(r.is_ok(), "{r:?}");
    let s = lock(&state);
    let seqs: Vec<(u64, u64)> = s.attempts.iter().map(|(c, q, _)| (*c, *q)).collect();
    let id = seqs[0].0;
    // Three attempts of the first write, all with seq 1; then seq 2.
    assert_eq!(seqs, vec![(id, 1), (id, 1), (id, 1), (id, 2)]);
    assert_eq!(s.applied.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_share_a_session() {
    let (c, state, _, _) = cluster().await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        let c = c.clone();
        tasks.spawn(async move {
            for i in 0..5 {
                c.put(format!("t{t}-{i}"), "x").await?;
            }
            Ok::<(), Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(matches!(r, Ok(Ok(()))), "{r:?}");
    }
    let s = lock(&state);
    assert_eq!(s.applied.len(), 80);
    assert_eq!(s.max_in_flight_per_session, 1);
    // Per session, sequence numbers arrive strictly increasing.
    let mut last: HashMap<u64, u64> = HashMap::new();
    for (cid, seq, _) in &s.attempts {
        let prev = last.insert(*cid, *seq).unwrap_or(0);
        assert!(*seq > prev, "session {cid}: seq {seq} after {prev}");
    }
    assert!(
        s.sessions.len() > 1 && s.sessions.len() <= 16,
        "{}",
        s.sessions.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_replaced_when_nothing_can_have_applied() {
    let (c, state, _, _) = cluster().await;
    assert!(c.put("a", "1").await.is_ok());
    let first = lock(&state).sessions[0];
    lock(&state).sessions.clear(); // the cluster forgets the session
    let r = c.put("b", "2").await;
    assert!(r.is_ok(), "{r:?}");
    let s = lock(&state);
    let (cid, seq, key) = s.attempts.last().cloned().unwrap_or_default();
    assert_ne!(cid, first);
    assert_eq!((seq, key.as_str()), (1, "b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_not_retried() {
    let (c, state, _, _) = cluster().await;
    let r = c.put("", "v").await;
    assert!(
        matches!(r, Err(Error::InvalidArgument(ref m)) if m.contains("empty key")),
        "{r:?}"
    );
    assert!(lock(&state).attempts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_fails_within_the_deadline() {
    // A port nobody listens on: bind, note it, close.
    let addr = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.to_string(),
        Err(e) => panic!("{e}"),
    };
    let config = ClientConfig {
        deadline: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let c = match Client::connect(vec![addr], config) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let t0 = std::time::Instant::now();
    let r = c.get("k").await;
    let took = t0.elapsed();
    assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    assert!(r.as_ref().is_err_and(Error::is_transient));
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
