//! Nodes that know each other by host name, as containers do
//! (`node1:7001`), and that are configured only through `RAFTKV_*`
//! environment variables, as a container image is. Here the name is
//! `localhost`, which the resolver answers with ::1 and 127.0.0.1 while
//! the nodes listen on 127.0.0.1 only: every connection (peer streams,
//! forwarded calls, the CLI following hints) must resolve the name and try
//! its addresses. deploy/docker/test.sh checks the rest with real
//! containers: a node that comes back at another IP address is found again.
//!
//! Also `raftkv endpoint health`, the image's health check.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::{free_port, free_port_run};

const RAFTKV: &str = env!("CARGO_BIN_EXE_raftkv");

/// One node, configured by environment variables only.
fn spawn(id: usize, ports: &[u16], dir: &Path) -> Child {
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=localhost:{}", i + 1, p + 200))
        .collect();
    let log = match std::fs::File::create(dir.join(format!("node-{id}.log"))) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    let child = Command::new(RAFTKV)
        .arg("server")
        .env("RAFTKV_ID", id.to_string())
        // A new cluster of the peers (ignored on a restart: the data dir
        // exists).
        .env("RAFTKV_BOOTSTRAP", "true")
        .env("RAFTKV_LISTEN", format!("127.0.0.1:{}", ports[id - 1]))
        .env("RAFTKV_PEERS", peers.join(","))
        .env(
            "RAFTKV_ADVERTISE_CLIENT",
            format!("localhost:{}", ports[id - 1]),
        )
        .env("RAFTKV_DATA_DIR", dir.join(format!("node-{id}")))
        .env("RAFTKV_TICK_MS", "20")
        .env("RAFTKV_ELECTION_TICKS_MIN", "10")
        .env("RAFTKV_ELECTION_TICKS_MAX", "20")
        .env("RAFTKV_HEARTBEAT_TICKS", "2")
        .env("RAFTKV_LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn();
    match child {
        Ok(c) => c,
        Err(e) => panic!("spawn node {id}: {e}"),
    }
}

fn raftkv(args: &[&str]) -> Output {
    match Command::new(RAFTKV).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("run raftkv: {e}"),
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `args` until it exits with `code` (or panics after `within`).
fn until_exit(code: i32, args: &[&str], within: Duration, logs: &Path) -> Output {
    let t0 = Instant::now();
    loop {
        let o = raftkv(args);
        if o.status.code() == Some(code) {
            return o;
        }
        if t0.elapsed() > within {
            let mut s = String::new();
            for i in 1..=3 {
                let l = std::fs::read_to_string(logs.join(format!("node-{i}.log")));
                let l = l.unwrap_or_default();
                let tail: Vec<&str> = l.lines().rev().take(10).collect();
                s.push_str(&format!("--- node {i}:\n{}\n", tail.join("\n")));
            }
            panic!(
                "`raftkv {}` never exited {code}: {}\n{s}",
                args.join(" "),
                text(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Nodes(Vec<Option<Child>>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Nodes {
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.0[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_cluster_named_by_hostname_and_configured_by_environment_serves_and_heals() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    // Client ports, each with its peer port (+ 200, the default) free too.
    let ports: Vec<u16> = (0..3).map(|_| free_port_run(1, 200)).collect();
    let ep: Vec<String> = ports.iter().map(|p| format!("localhost:{p}")).collect();
    let mut nodes = Nodes(
        (1..=3)
            .map(|id| Some(spawn(id, &ports, dir.path())))
            .collect(),
    );
    let all = ep.join(",");
    let wait = Duration::from_secs(20);

    // Healthy once node 1 knows a leader (its peers reached by name).
    let o = until_exit(
        0,
        &["endpoint", "health", "--endpoints", &ep[0]],
        wait,
        dir.path(),
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("is healthy"),
        "{}",
        text(&o)
    );

    // Every node advertises its name, and the leader knows the members by
    // name (a client address arrives with the member's first handshake).
    let t0 = Instant::now();
    let doc: serde_json::Value = loop {
        let o = until_exit(
            0,
            &["status", "--json", "--endpoints", &all],
            wait,
            dir.path(),
        );
        let doc: serde_json::Value = match serde_json::from_slice(&o.stdout) {
            Ok(v) => v,
            Err(e) => panic!("{e}: {}", text(&o)),
        };
        let leader_knows_all = doc["nodes"].as_array().is_some_and(|l| {
            l.iter().any(|n| {
                n["role"] == "leader"
                    && n["members"].as_array().is_some_and(|m| {
                        m.iter()
                            .all(|m| m["addr"].as_str().is_some_and(|a| !a.is_empty()))
                    })
            })
        });
        if leader_knows_all || t0.elapsed() > wait {
            break doc;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let Some(list) = doc["nodes"].as_array() else {
        panic!("{doc}")
    };
    let leader_addr = list
        .iter()
        .find(|n| n["role"] == "leader")
        .and_then(|n| n["addr"].as_str())
        .map(str::to_string);
    let Some(leader_addr) = leader_addr else {
        panic!("no leader: {doc}")
    };
    let leader_status = list.iter().find(|n| n["role"] == "leader");
    let members: Vec<&str> = leader_status
        .map_or(&serde_json::Value::Null, |n| &n["members"])
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["addr"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        members,
        ep.iter().map(String::as_str).collect::<Vec<_>>(),
        "{doc}"
    );
    // Asked at other addresses than the members' own (as a host asks
    // containers through their published ports), each node is listed once.
    let by_ip: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let o = raftkv(&["status", "--json", "--endpoints", &by_ip.join(",")]);
    let doc: serde_json::Value = match serde_json::from_slice(&o.stdout) {
        Ok(v) => v,
        Err(e) => panic!("{e}: {}", text(&o)),
    };
    let mut ids: Vec<u64> = doc["nodes"]
        .as_array()
        .map(|l| l.iter().filter_map(|n| n["id"].as_u64()).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3], "{doc}");
    assert_eq!(doc["nodes"].as_array().map(Vec::len), Some(3), "{doc}");

    let follower = ep.iter().find(|e| **e != leader_addr).cloned();
    let Some(follower) = follower else {
        panic!("no follower")
    };

    // A follower forwards to the leader it knows by name; a client sent to
    // a follower follows the hint (a name) to the leader.
    let o = raftkv(&[
        "put",
        "a",
        "1",
        "--endpoints",
        &follower,
        "--follower-forwarding",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = raftkv(&["put", "b", "2", "--endpoints", &follower]);
    assert!(o.status.success(), "{}", text(&o));

    // A follower killed and started again is reconnected by name and
    // catches up with what was written meanwhile.
    let i = ep.iter().position(|e| *e == follower).unwrap_or(0);
    nodes.kill(i);
    let o = raftkv(&["put", "c", "3", "--endpoints", &all]);
    assert!(o.status.success(), "{}", text(&o));
    nodes.0[i] = Some(spawn(i + 1, &ports, dir.path()));
    let o = until_exit(
        0,
        &["get", "--serializable", "c", "--endpoints", &follower],
        wait,
        dir.path(),
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "3");

    // Alone (both others killed), a node soon knows no leader: unhealthy.
    let alone = (i + 1) % 3;
    for k in 0..3 {
        if k != alone {
            nodes.kill(k);
        }
    }
    let o = until_exit(
        1,
        &["endpoint", "health", "--endpoints", &ep[alone]],
        wait,
        dir.path(),
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no leader known"),
        "{}",
        text(&o)
    );
    // Nothing listening: unhealthy too.
    let closed = format!("127.0.0.1:{}", free_port());
    let o = raftkv(&[
        "endpoint",
        "health",
        "--timeout",
        "1",
        "--endpoints",
        &closed,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// A flag wins over its variable; a bad variable is refused like a bad
/// flag (exit 2, naming the setting).
#[test]
fn server_variables_yield_to_flags_and_are_checked() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    // Each of these must be refused at once; a server that starts instead
    // (a variable ignored) is killed after 10 s and fails the test.
    let listen = format!("127.0.0.1:{}", free_port());
    let run = |env: &[(&str, &str)], args: &[&str]| -> Output {
        let mut c = Command::new(RAFTKV);
        c.arg("server")
            .args(args)
            .env("RAFTKV_DATA_DIR", dir.path())
            .env("RAFTKV_LISTEN", &listen)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = match c.spawn() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let t0 = Instant::now();
        while matches!(child.try_wait(), Ok(None)) {
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`raftkv server {}` with {env:?} started instead of refusing",
                    args.join(" ")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match child.wait_with_output() {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    };
    // RAFTKV_ID=0 alone is refused...
    let o = run(&[("RAFTKV_ID", "0")], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("id"),
        "{}",
        text(&o)
    );
    // ...but --id 1 overrides it, and the next bad variable is what fails.
    let o = run(
        &[("RAFTKV_ID", "0"), ("RAFTKV_TICK_MS", "0")],
        &["--id", "1"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("tick_interval_ms"),
        "{}",
        text(&o)
    );
    // Not a number: clap names the flag and the value.
    let o = run(&[("RAFTKV_TICK_MS", "soon")], &["--id", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("soon"),
        "{}",
        text(&o)
    );
    // A boolean flag takes true/false.
    let o = run(&[("RAFTKV_LEASE_READ", "maybe")], &["--id", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
