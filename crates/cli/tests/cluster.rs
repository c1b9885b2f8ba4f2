//! Real clusters of `raftkv server` processes on loopback, each test on its
//! own free ports and temporary directories, driven through the client
//! library and the `raftkv` binary.
//!
//! Each cluster test takes a few seconds (debug build, 2 cores).
//!
//! Timing: nodes tick every 20 ms with an election timeout of 10-20 ticks
//! (200-400 ms), so "a few election timeouts" is a couple of seconds even on
//! a loaded machine.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, ReadMode};
use testkit::{free_port, free_port_run, free_ports};

const RAFTKV: &str = env!("CARGO_BIN_EXE_raftkv");
const TICK_MS: u64 = 20;
const ELECTION_TICKS_MIN: u64 = 10;
const ELECTION_TICKS_MAX: u64 = 20;

struct Node {
    id: u64,
    addr: String,
    /// Where its Raft service listens.
    peer_addr: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Started with `--join` (added at runtime, not an initial voter).
    join: bool,
}

struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    peers: String,
    extra_args: Vec<String>,
}

impl Cluster {
    fn start(n: usize, extra_args: &[&str]) -> Cluster {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let ports = free_ports(n);
        let nodes: Vec<Node> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| Node {
                id: i as u64 + 1,
                addr: format!("127.0.0.1:{port}"),
                peer_addr: format!("127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(format!("node-{}", i + 1)),
                log: dir.path().join(format!("node-{}.log", i + 1)),
                child: None,
                join: false,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer_addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            dir,
            nodes,
            peers,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let node = &self.nodes[i];
        let log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
        {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let log_err = match log.try_clone() {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let child = Command::new(RAFTKV)
            .args([
                "server",
                "--id",
                &node.id.to_string(),
                "--listen",
                &node.addr,
                "--peer-listen",
                &node.peer_addr,
            ])
            .args(["--peers", &self.peers])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--tick-ms", &TICK_MS.to_string()])
            .args(["--election-ticks-min", &ELECTION_TICKS_MIN.to_string()])
            .args(["--election-ticks-max", &ELECTION_TICKS_MAX.to_string()])
            .args(["--heartbeat-ticks", "2"])
            .args(&self.extra_args)
            // The first start of an initial voter makes the cluster; a
            // restart ignores --bootstrap.
            .args(if node.join {
                &["--join"][..]
            } else {
                &["--bootstrap"][..]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn();
        match child {
            Ok(c) => self.nodes[i].child = Some(c),
            Err(e) => panic!("spawn node {}: {e}", node.id),
        }
    }

    /// Starts one more node with `--join` (empty, waiting to be added);
    /// returns its index.
    fn add_joining_node(&mut self) -> usize {
        let i = self.nodes.len();
        let port = free_port();
        self.nodes.push(Node {
            id: i as u64 + 1,
            addr: format!("127.0.0.1:{port}"),
            peer_addr: format!("127.0.0.1:{}", free_port()),
            data_dir: self.dir.path().join(format!("node-{}", i + 1)),
            log: self.dir.path().join(format!("node-{}.log", i + 1)),
            child: None,
            join: true,
        });
        self.spawn(i);
        i
    }

    /// SIGKILL node i and reap it.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM node i and wait for it to exit (SIGKILL after 10 s).
    fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            if let Ok(pid) = libc::pid_t::try_from(c.id()) {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid
                // is our unreaped child's.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let t0 = Instant::now();
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if t0.elapsed() > Duration::from_secs(10) => {
                        let _ = c.kill();
                        let _ = c.wait();
                        panic!("node {} ignored SIGTERM", self.nodes[i].id);
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    fn client(&self) -> Client {
        self.client_of(self.endpoints())
    }

    fn client_of(&self, endpoints: Vec<String>) -> Client {
        let config = ClientConfig {
            deadline: Duration::from_secs(10),
            ..ClientConfig::default()
        };
        match Client::connect(endpoints, config) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// Waits until a node reports itself leader; returns its index in
    /// `nodes`.
    async fn wait_leader(&self, within: Duration) -> usize {
        let c = self.client();
        let t0 = Instant::now();
        while t0.elapsed() < within {
            for (i, n) in self.nodes.iter().enumerate() {
                if n.child.is_none() {
                    continue;
                }
                if let Ok(s) = c.status_of(&n.addr).await {
                    if s.role == client::Role::Leader as i32 {
                        return i;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no leader within {within:?}\n{}", self.logs());
    }

    /// Runs the `raftkv` binary against this cluster.
    fn raftkv(&self, args: &[&str]) -> Output {
        let endpoints = self.endpoints().join(",");
        match Command::new(RAFTKV)
            .args(args)
            .args(["--endpoints", &endpoints, "--timeout", "10"])
            .output()
        {
            Ok(o) => o,
            Err(e) => panic!("run raftkv: {e}"),
        }
    }

    /// The tails of every node's log, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n  ");
            s.push_str(&format!("--- node {} ({}):\n  {tail}\n", n.id, n.addr));
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        let _ = &self.dir;
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    match serde_json::from_slice(&o.stdout) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_take_writes_through_any_node_and_read_them_back() {
    let cluster = Cluster::start(3, &[]);
    cluster.wait_leader(Duration::from_secs(10)).await;
    // A client that knows only node i writes through it.
    for (i, addr) in cluster.endpoints().into_iter().enumerate() {
        let c = cluster.client_of(vec![addr]);
        let r = c.put(format!("k{i}"), format!("v{i}")).await;
        assert!(
            r.is_ok(),
            "put through node {}: {r:?}\n{}",
            i + 1,
            cluster.logs()
        );
    }
    // Linearizable reads through every node see every write.
    for addr in cluster.endpoints() {
        let c = cluster.client_of(vec![addr.clone()]);
        for i in 0..3 {
            let got = c.get(format!("k{i}")).await;
            let value = got.ok().flatten().map(|kv| kv.value);
            assert_eq!(
                value.as_deref(),
                Some(format!("v{i}").as_bytes()),
                "via {addr}"
            );
        }
    }
    // The CLI: put, get, append, scan, cas, del with --json shapes.
    let o = cluster.raftkv(&["put", "--json", "cli-key", "one"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(json(&o)["index"].as_u64().is_some_and(|i| i > 0));
    let o = cluster.raftkv(&["append", "cli-key", "+two"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cluster.raftkv(&["get", "--json", "cli-key"]);
    // --json carries keys and values in base64: "one+two".
    assert_eq!(json(&o)["kv"]["value"], "b25lK3R3bw==");
    let o = cluster.raftkv(&["get", "--serializable", "-q", "cli-key"]);
    assert!(o.status.success());
    let o = cluster.raftkv(&["cas", "--json", "cli-key", "wrong", "three"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(json(&o)["succeeded"], false);
    assert_eq!(json(&o)["current"]["value"], "b25lK3R3bw==");
    let o = cluster.raftkv(&["cas", "cli-key", "one+two", "three"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cluster.raftkv(&["scan", "--json", "--prefix", "k"]);
    let keys: Vec<String> = json(&o)["kvs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| kv["key"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(keys, vec!["azA=", "azE=", "azI="], "k0, k1, k2 in base64");
    let o = cluster.raftkv(&["del", "--prefix", "--json", "k"]);
    assert_eq!(json(&o)["deleted"], 3);
    let o = cluster.raftkv(&["get", "k0"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = cluster.raftkv(&["status", "--json"]);
    let nodes = json(&o)["nodes"].as_array().cloned().unwrap_or_default();
    assert_eq!(nodes.len(), 3, "{}", stdout(&o));
    assert_eq!(nodes.iter().filter(|n| n["role"] == "leader").count(), 1);
    let o = cluster.raftkv(&["members", "--json"]);
    assert_eq!(json(&o)["members"].as_array().map(Vec::len), Some(3));
}

/// By default the client library follows the leader hint away from a
/// follower; with `follower_forwarding` it stays with the follower, which
/// forwards each call to the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_hints_or_lets_a_follower_forward() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let leader_addr = cluster.nodes[leader].addr.clone();
    let follower = cluster.nodes[(leader + 1) % 3].addr.clone();
    let leader_id = match cluster.client().status_of(&leader_addr).await {
        Ok(s) => s.id,
        Err(e) => panic!("{e}"),
    };

    let hints = cluster.client_of(vec![follower.clone()]);
    let r = hints.put("h", "1").await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(hints.leader().as_deref(), Some(leader_addr.as_str()));

    let forwarding = match Client::connect(
        vec![follower.clone()],
        ClientConfig {
            deadline: Duration::from_secs(10),
            follower_forwarding: true,
            ..ClientConfig::default()
        },
    ) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    for i in 0..3 {
        let answered_by = match forwarding.put(format!("f{i}"), "2").await {
            Ok(r) => r.header.map(|h| h.node_id),
            Err(e) => panic!("put through a forwarding follower: {e}"),
        };
        assert_eq!(answered_by, Some(leader_id), "the leader answers");
        assert_eq!(forwarding.leader().as_deref(), Some(follower.as_str()));
    }
    let got = forwarding.get("f2").await.ok().flatten().map(|kv| kv.value);
    assert_eq!(got.as_deref(), Some(&b"2"[..]));
    assert_eq!(forwarding.endpoints(), vec![follower], "never redirected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_a_new_one_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let c = cluster.client();
    let mut acked = Vec::new();
    for i in 0..20 {
        if c.put(format!("before-{i}"), format!("{i}")).await.is_ok() {
            acked.push(format!("before-{i}"));
        }
    }
    assert_eq!(acked.len(), 20);

    cluster.kill(leader);
    let t0 = Instant::now();
    let new_leader = cluster
        .wait_leader(Duration::from_millis(ELECTION_TICKS_MAX * TICK_MS * 10))
        .await;
    let failover = t0.elapsed();
    assert_ne!(new_leader, leader);
    eprintln!("new leader after {failover:?}");

    // Writes go on (the client finds the new leader by itself).
    for i in 0..20 {
        let r = c.put(format!("after-{i}"), format!("{i}")).await;
        assert!(r.is_ok(), "{r:?}\n{}", cluster.logs());
        acked.push(format!("after-{i}"));
    }
    for k in &acked {
        let got = c.get(k.clone()).await;
        assert!(matches!(got, Ok(Some(_))), "{k}: {got:?}");
    }

    // The old leader comes back and catches up.
    cluster.spawn(leader);
    let target = match c.status().await {
        Ok(s) => s.commit_index,
        Err(e) => panic!("{e}"),
    };
    let addr = cluster.nodes[leader].addr.clone();
    let t0 = Instant::now();
    loop {
        if let Ok(s) = c.status_of(&addr).await {
            if s.applied_index >= target {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "node did not catch up\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = cluster.client_of(vec![addr]);
    let got = back
        .get_with("after-19", ReadMode::Serializable)
        .await
        .ok()
        .and_then(|r| r.kv)
        .map(|kv| kv.value);
    assert_eq!(got.as_deref(), Some(&b"19"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stop_and_start_keeps_every_write() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.wait_leader(Duration::from_secs(10)).await;
    let c = cluster.client();
    for i in 0..30 {
        let r = c.put(format!("k{i:02}"), format!("{i}")).await;
        assert!(r.is_ok(), "{r:?}");
    }
    for i in 0..3 {
        cluster.stop(i);
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    cluster.wait_leader(Duration::from_secs(10)).await;
    let c = cluster.client();
    let page = c.scan(client::Scan::prefix("k")).await;
    let n = page.map(|p| p.kvs.len()).map_err(|e| e.to_string());
    assert_eq!(n, Ok(30), "{}", cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_the_node_keeps_serving() {
    let cluster = Cluster::start(3, &["--value-size-max", "1024"]);
    cluster.wait_leader(Duration::from_secs(10)).await;
    let o = cluster.raftkv(&["put", "", "v"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
    assert!(stderr(&o).to_lowercase().contains("key"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    let big = "x".repeat(2000);
    let o = cluster.raftkv(&["put", "k", &big]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).to_lowercase().contains("value"),
        "{}",
        stderr(&o)
    );
    let o = cluster.raftkv(&["members", "remove", "99"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("99"), "{}", stderr(&o));
    // Still serving.
    let o = cluster.raftkv(&["put", "k", "fine"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cluster.raftkv(&["get", "-q", "k"]);
    assert_eq!(stdout(&o).trim(), "fine");
}

#[test]
fn a_malformed_config_file_is_refused_with_a_clear_message() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let path = dir.path().join("bad.toml");
    if let Err(e) = std::fs::write(&path, "id = 1\nlisten_addr = 7001\n") {
        panic!("{e}");
    }
    let o = match Command::new(RAFTKV)
        .arg("server")
        .arg("--config")
        .arg(&path)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("error: ") && err.contains("listen_addr"),
        "{err}"
    );
}

#[test]
fn client_commands_fail_cleanly_without_a_cluster() {
    let port = free_port();
    let o = match Command::new(RAFTKV)
        .args(["get", "k", "--timeout", "0.5"])
        .args(["--endpoints", &format!("127.0.0.1:{port}")])
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: cluster unavailable"),
        "{}",
        stderr(&o)
    );
    let o = match Command::new(RAFTKV)
        .args(["put", "k", "v", "--endpoints", "nohost"])
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_through_the_cli_while_a_client_writes() {
    let mut cluster = Cluster::start(3, &[]);
    let first_leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let first_leader_id = cluster.nodes[first_leader].id;

    // A writer keeps going through every change below.
    let writer = cluster.client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let w = writer.clone();
    let task = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut failed = Vec::new();
        let mut i = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let key = format!("w{i:05}");
            match w.put(key.clone(), "x").await {
                Ok(_) => acked.push(key),
                Err(e) => failed.push(format!("{key}: {e}")),
            }
            i += 1;
        }
        (acked, failed)
    });

    let new = cluster.add_joining_node();
    let new_id = cluster.nodes[new].id.to_string();
    let new_addr = cluster.nodes[new].addr.clone();
    let new_peer_addr = cluster.nodes[new].peer_addr.clone();
    let o = cluster.raftkv(&["members", "add-learner", &new_id, &new_peer_addr, "--json"]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.logs());
    let members = json(&o)["members"].as_array().cloned().unwrap_or_default();
    assert!(
        members
            .iter()
            .any(|m| m["id"].as_u64() == Some(4) && m["role"] == "learner"),
        "{members:?}"
    );

    // The learner catches up.
    let c = cluster.client();
    let t0 = Instant::now();
    loop {
        let target = c.status().await.map(|s| s.commit_index).unwrap_or(u64::MAX);
        if let Ok(s) = c.status_of(&new_addr).await {
            if s.applied_index + 5 >= target {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "learner did not catch up\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The leader promotes only a learner it has seen catch up in the log
    // (its match index), which may come a little after the learner's state
    // machine caught up from a snapshot: repeat while it says so.
    let t0 = Instant::now();
    loop {
        let o = cluster.raftkv(&["members", "promote", &new_id]);
        if o.status.success() {
            break;
        }
        assert!(
            stderr(&o).contains("has not caught up") && t0.elapsed() < Duration::from_secs(15),
            "{}\n{}",
            stderr(&o),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = cluster.raftkv(&["transfer-leader", &new_id, "--json"]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.logs());
    assert_eq!(json(&o)["leader_id"].as_u64(), Some(4));
    let o = cluster.raftkv(&["members", "remove", &first_leader_id.to_string(), "--json"]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.logs());
    let ids: Vec<u64> = json(&o)["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        !ids.contains(&first_leader_id) && ids.contains(&4),
        "{ids:?}"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed) = match task.await {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert!(failed.is_empty(), "writes failed: {failed:?}");
    assert!(acked.len() > 10, "only {} writes", acked.len());
    // Every acknowledged write is there, read through the new leader.
    let reader = cluster.client_of(vec![new_addr]);
    let page = reader.scan(client::Scan::prefix("w").limit(0)).await;
    let keys: Vec<String> = match page {
        Ok(p) => p
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect(),
        Err(e) => panic!("{e}"),
    };
    for k in &acked {
        assert!(keys.contains(k), "acknowledged {k} is missing");
    }
}

/// Issue 11: `raftkv members promote` accepted a learner that was never
/// started, and a removed node went on answering as a follower. Now the
/// promotion fails (exit code 1) with the lag named, and `raftkv status`
/// shows the removed node as `removed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoting_a_learner_that_never_started_fails_and_status_shows_a_removed_node() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    // Nothing runs at this address.
    let addr = format!("127.0.0.1:{}", free_port());
    let o = cluster.raftkv(&["members", "add-learner", "4", &addr]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.logs());
    tokio::time::sleep(Duration::from_millis(TICK_MS * (ELECTION_TICKS_MAX + 5))).await;
    let o = cluster.raftkv(&["members", "promote", "4"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("learner 4 has not caught up")
            && err.contains("match index is 0")
            && err.contains("may not be running"),
        "{err}"
    );
    let o = cluster.raftkv(&["members", "--json"]);
    let voters: Vec<u64> = json(&o)["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|m| m["role"] == "voter")
                .filter_map(|m| m["id"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(voters, vec![1, 2, 3]);

    let victim = cluster.nodes[(leader + 1) % 3].id;
    let o = cluster.raftkv(&["members", "remove", &victim.to_string()]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.logs());
    let t0 = Instant::now();
    loop {
        let o = cluster.raftkv(&["status", "--json"]);
        let nodes = json(&o)["nodes"].as_array().cloned().unwrap_or_default();
        let removed = nodes
            .iter()
            .any(|n| n["id"].as_u64() == Some(victim) && n["removed"] == true);
        if removed {
            let n = nodes.iter().find(|n| n["id"].as_u64() == Some(victim));
            assert_eq!(n.map(|n| n["role"].clone()), Some("removed".into()));
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{nodes:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = cluster.raftkv(&["status"]);
    let row = stdout(&o)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&victim.to_string()))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(row.contains("removed"), "{}", stdout(&o));
    // It is unhealthy (a container health check restarts or flags it),
    // though it may still know a leader.
    let victim_addr = cluster.nodes[(leader + 1) % 3].addr.clone();
    let o = match Command::new(RAFTKV)
        .args(["endpoint", "health", "--endpoints", &victim_addr])
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("removed"), "{}", stdout(&o));
    // Writes through any endpoint still work: the client skips the
    // removed node.
    let o = cluster.raftkv(&["put", "after", "removal"]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_starts_a_cluster_in_one_command_and_stops_it_on_ctrl_c() {
    // Dev nodes use the base ports, +100 (HTTP) and +200 (peers).
    let base = free_port_run(3, 200);
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let out_path = dir.path().join("dev.out");
    let out = match std::fs::File::create(&out_path) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    let err_path = dir.path().join("dev.err");
    let err = match std::fs::File::create(&err_path) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    let mut dev = match Command::new(RAFTKV)
        .args(["dev", "--nodes", "3", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let t0 = Instant::now();
    let banner = loop {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if text.contains("Ctrl-C stops the cluster") {
            break text;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = dev.kill();
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            let tail: String = err.lines().rev().take(30).collect::<Vec<_>>().join("\n");
            panic!("no banner: {text}\nstderr (last lines, newest first):\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(banner.contains("leads"), "{banner}");
    let endpoints: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    assert!(banner.contains(&endpoints[0]), "{banner}");
    let run = |args: &[&str]| match Command::new(RAFTKV)
        .args(args)
        .args(["--endpoints", &endpoints.join(",")])
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    };
    let o = run(&["put", "hello", "world"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["get", "-q", "hello"]);
    assert_eq!(stdout(&o).trim(), "world");

    // Ctrl-C: every node stops, and dev exits 0.
    if let Ok(pid) = libc::pid_t::try_from(dev.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // unreaped child's.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = dev.try_wait() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = dev.kill();
            panic!("dev did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    for e in &endpoints {
        assert!(
            std::net::TcpStream::connect(e).is_err(),
            "{e} still serving after dev stopped"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_applies_once() {
    use client::pb::kv_client::KvClient;
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let addr = cluster.nodes[leader].addr.clone();
    let channel = match tonic::transport::Channel::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect().await,
        Err(e) => panic!("{e}"),
    };
    let mut kv = match channel {
        Ok(c) => KvClient::new(c),
        Err(e) => panic!("{e}"),
    };
    let session = kv
        .register_session(client::pb::RegisterSessionRequest {})
        .await
        .map(|r| r.into_inner().client_id);
    let client_id = match session {
        Ok(id) => id,
        Err(e) => panic!("{e}"),
    };
    let append = client::pb::AppendRequest {
        key: "log".into(),
        value: "+a".into(),
        client_id,
        seq: 1,
    };
    // The same write sent twice, as a client does when a reply is lost.
    let first = kv.append(append.clone()).await.map(|r| r.into_inner());
    let again = kv.append(append).await.map(|r| r.into_inner());
    let (first, again) = match (first, again) {
        (Ok(a), Ok(b)) => (a, b),
        other => panic!("{other:?}"),
    };
    assert_eq!(first.index, again.index, "the retry was applied again");
    assert_eq!((first.version, again.version), (1, 1));
    let next = client::pb::AppendRequest {
        key: "log".into(),
        value: "+b".into(),
        client_id,
        seq: 2,
    };
    assert!(kv.append(next).await.is_ok());
    let c = cluster.client();
    let value = c.get("log").await.ok().flatten().map(|kv| kv.value);
    assert_eq!(value.as_deref(), Some(&b"+a+b"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_a_paused_leader_apply_exactly_once() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let pid = match cluster.nodes[leader].child.as_ref().map(Child::id) {
        Some(p) => p as libc::pid_t,
        None => panic!("leader not running"),
    };
    let config = ClientConfig {
        deadline: Duration::from_secs(20),
        attempt_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let c = match Client::connect(cluster.endpoints(), config) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert!(c.put("log", "").await.is_ok());
    let mut expected = String::new();
    for (i, part) in ["+a", "+b", "+c"].iter().enumerate() {
        let c2 = c.clone();
        let append = tokio::spawn(async move { c2.append("log", *part).await });
        // Pause the (old) leader while the append may be in flight, long
        // enough for an election, then let it go on.
        tokio::time::sleep(Duration::from_millis(5 * i as u64)).await;
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // unreaped child's.
        unsafe {
            libc::kill(pid, libc::SIGSTOP);
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
        }
        let r = append.await;
        assert!(matches!(r, Ok(Ok(_))), "{r:?}\n{}", cluster.logs());
        expected.push_str(part);
    }
    let value = c.get("log").await.ok().flatten().map(|kv| kv.value);
    assert_eq!(value.as_deref(), Some(expected.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_kept_down_while_the_log_is_compacted_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let down = (leader + 1) % 3;
    cluster.stop(down);
    let c = cluster.client();
    let mut last = 0;
    for i in 0..50 {
        match c.put(format!("s{i:02}"), format!("{i}")).await {
            Ok(r) => last = r.index,
            Err(e) => panic!("put: {e}"),
        }
    }
    // Compact the live nodes' logs through the CLI, once each has applied
    // the last write (a node snapshots what it has applied).
    let live: Vec<String> = (0..3)
        .filter(|i| *i != down)
        .map(|i| cluster.nodes[i].addr.clone())
        .collect();
    for addr in &live {
        let t0 = Instant::now();
        while !matches!(c.status_of(addr).await, Ok(s) if s.applied_index >= last) {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "{addr} never applied {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let o = cluster.raftkv(&["snapshot", "--node", addr, "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let index = json(&o)["nodes"][0]["snapshot_index"].as_u64().unwrap_or(0);
        assert!(index >= 50, "snapshot at {index}");
    }
    cluster.spawn(down);
    let addr = cluster.nodes[down].addr.clone();
    let t0 = Instant::now();
    loop {
        if let Ok(s) = c.status_of(&addr).await {
            if s.snapshot_index >= 50 && s.applied_index >= 50 {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "node did not catch up from a snapshot\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = cluster.client_of(vec![addr]);
    let got = back.get_with("s49", ReadMode::Serializable).await;
    let value = got.ok().and_then(|r| r.kv).map(|kv| kv.value);
    assert_eq!(value.as_deref(), Some(&b"49"[..]));
}

/// Issue 11: with `--lease-read`, a leader stopped with SIGSTOP past the
/// election timeout while another leader takes writes must not answer a
/// linearizable get from its old state when it resumes. Its lease is
/// checked against the monotonic clock, which kept running through the
/// stall, so the read goes through a heartbeat round (which the others
/// refuse, and the old leader steps down) instead of being answered at once.
/// Before, the lease was counted in ticks, which a stopped process does not
/// count, and the resumed leader answered with the value from before its
/// pause (whether a read gets in before the new leader's messages is a
/// race, hence ten rounds of 32 reads over 4 connections waiting in its
/// sockets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_reading_leader_paused_past_the_election_timeout_reads_nothing_stale() {
    let cluster = Cluster::start(3, &["--lease-read"]);
    for round in 0..10 {
        paused_lease_leader_round(&cluster, round).await;
    }
}

/// One round of the test above: returns once the reads after the resume
/// were checked.
async fn paused_lease_leader_round(cluster: &Cluster, round: u32) {
    use client::pb::kv_client::KvClient;
    let old = cluster.wait_leader(Duration::from_secs(10)).await;
    let pid = match cluster.nodes[old].child.as_ref().map(Child::id) {
        Some(p) => p as libc::pid_t,
        None => panic!("leader not running"),
    };
    let before = format!("before-{round}");
    let after = format!("after-{round}");
    let c = cluster.client();
    assert!(
        c.put("k", before.clone()).await.is_ok(),
        "{}",
        cluster.logs()
    );
    // Connections straight to the old leader: one attempt per call, no
    // retry elsewhere, so what it answers is what it served.
    let addr = cluster.nodes[old].addr.clone();
    let mut conns = Vec::new();
    for _ in 0..4 {
        let channel = match tonic::transport::Channel::from_shared(format!("http://{addr}")) {
            Ok(e) => e.connect().await,
            Err(e) => panic!("{e}"),
        };
        match channel {
            Ok(ch) => conns.push(KvClient::new(ch)),
            Err(e) => panic!("{e}"),
        }
    }
    let kv = conns[0].clone();
    let get = |mut kv: KvClient<tonic::transport::Channel>| async move {
        let req = client::pb::GetRequest {
            key: "k".into(),
            serializable: false,
        };
        let r = tokio::time::timeout(Duration::from_secs(5), kv.get(req)).await;
        match r {
            Ok(Ok(resp)) => Ok(resp
                .into_inner()
                .kv
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())),
            Ok(Err(status)) => Err(status.message().to_string()),
            Err(_) => Err("timed out".to_string()),
        }
    };
    // The lease is in use: a get on the leader sees the last write.
    let first = get(kv.clone()).await;
    assert_eq!(first, Ok(Some(before.clone())), "{}", cluster.logs());

    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
    // unreaped child's.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    let paused = Instant::now();
    // Another leader is elected and takes a write.
    let others: Vec<String> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != old)
        .map(|(_, n)| n.addr.clone())
        .collect();
    let rest = cluster.client_of(others);
    let wrote = rest.put("k", after.clone()).await;
    if wrote.is_err() {
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
        }
    }
    assert!(wrote.is_ok(), "{wrote:?}\n{}", cluster.logs());
    // Stay paused for 1 s in all (2.5 to 5 election timeouts).
    let pause = Duration::from_millis(1000);
    tokio::time::sleep(pause.saturating_sub(paused.elapsed())).await;
    // Reads sent while it is still stopped wait in its socket and are the
    // first thing it sees on resume, together with the new leader's
    // messages.
    let early: Vec<_> = (0..32)
        .map(|i| tokio::spawn(get(conns[i % conns.len()].clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // SAFETY: as above.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    let mut answers = Vec::new();
    for h in early {
        match h.await {
            Ok(a) => answers.push(a),
            Err(e) => panic!("{e}"),
        }
    }
    // And reads right after the resume, for a while.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(300) {
        answers.push(get(kv.clone()).await);
    }
    let stale = answers
        .iter()
        .filter(|a| matches!(a, Ok(Some(v)) if *v == before))
        .count();
    assert_eq!(
        stale,
        0,
        "round {round}: the resumed old leader answered {stale} stale reads: {answers:?}\n{}",
        cluster.logs()
    );
    // Every read it answered shows the new write.
    assert!(
        answers
            .iter()
            .all(|a| a.is_err() || matches!(a, Ok(Some(v)) if *v == after)),
        "round {round}: {answers:?}"
    );
}
