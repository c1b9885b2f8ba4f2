//! What an operator does with the `raftkv` binary (issue 16): client options
//! before the command, the server's config reference and file paths, binary
//! keys and values, big responses, health checks, errors that name the fix,
//! backup and restore. Each test runs the binary against its own nodes on
//! testkit ports and temporary directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::free_port;

const RAFTKV: &str = env!("CARGO_BIN_EXE_raftkv");

/// `raftkv ARGS` without the user's environment settings.
fn raftkv(args: &[&str]) -> Output {
    raftkv_in(args, None)
}

/// `raftkv ARGS` with `stdin` as its standard input.
fn raftkv_in(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(RAFTKV);
    cmd.args(args)
        .env_remove("RAFTKV_TOKEN")
        .env_remove("RAFTKV_CACERT")
        .env_remove("RAFTKV_ENDPOINTS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("run raftkv: {e}"),
    };
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        if let Err(e) = pipe.write_all(data) {
            panic!("write stdin: {e}");
        }
    }
    match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("wait raftkv: {e}"),
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    match serde_json::from_slice(&o.stdout) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {}", text(o)),
    }
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

fn write(path: &Path, data: impl AsRef<[u8]>) {
    if let Err(e) = std::fs::write(path, data) {
        panic!("write {}: {e}", path.display());
    }
}

/// A new log file, twice (for a child's stdout and stderr).
fn log_pair(log: &Path) -> (std::fs::File, std::fs::File) {
    let file = match std::fs::File::create(log) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    match file.try_clone() {
        Ok(dup) => (file, dup),
        Err(e) => panic!("{e}"),
    }
}

/// Server flags for tests writing MiB-sized values: compact the log every 2
/// entries. A debug build checks Raft invariants over the whole log on
/// every tick, so a log of several MiB leaves a node too busy to answer.
const SMALL_LOG: &[&str] = &["--snapshot-threshold", "2"];

/// One `raftkv server` process, killed on drop.
struct Node {
    addr: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts `raftkv server ARGS` (its log in `log`) in the directory `cwd`.
    fn spawn(addr: &str, args: &[&str], cwd: &Path, log: PathBuf) -> Node {
        let (file, dup) = log_pair(&log);
        let child = Command::new(RAFTKV)
            .arg("server")
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(dup))
            .stderr(Stdio::from(file))
            .spawn();
        match child {
            Ok(c) => Node {
                addr: addr.to_string(),
                log,
                child: Some(c),
            },
            Err(e) => panic!("spawn raftkv server: {e}"),
        }
    }

    /// A single-node cluster with its data in `dir/name`, fast ticks.
    fn single(dir: &Path, name: &str, extra: &[&str]) -> Node {
        let addr = format!("127.0.0.1:{}", free_port());
        let data = dir.join(name);
        let data = data.to_string_lossy();
        let mut args = vec![
            "--id",
            "1",
            "--listen",
            &addr,
            "--data-dir",
            &data,
            "--tick-ms",
            "20",
            "--bootstrap",
        ];
        args.extend_from_slice(extra);
        Node::spawn(&addr, &args, dir, dir.join(format!("{name}.log")))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `raftkv ARGS --endpoints ADDR --timeout 5 [EXTRA]` until it
    /// succeeds (the node is up and leads), at most 20 s.
    fn until_ok(&self, args: &[&str]) -> Output {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = self.run(args);
            if o.status.success() {
                return o;
            }
            assert!(
                Instant::now() < deadline,
                "never succeeded: raftkv {args:?}: {}\nlog:\n{}",
                text(&o),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `raftkv ARGS --endpoints ADDR --timeout 5`.
    fn run(&self, args: &[&str]) -> Output {
        self.run_in(args, None)
    }

    fn run_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--endpoints", &self.addr, "--timeout", "5"]);
        raftkv_in(&a, stdin)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- 1. Client options anywhere; the server's settings and files ----

#[test]
fn client_options_go_before_or_after_the_command() {
    let dir = tempdir();
    let node = Node::single(dir.path(), "n1", &[]);
    node.until_ok(&["put", "k", "v"]);
    let before = raftkv(&[
        "--endpoints",
        &node.addr,
        "--json",
        "--timeout",
        "5",
        "get",
        "k",
    ]);
    assert!(before.status.success(), "{}", text(&before));
    assert_eq!(json(&before)["kv"]["key"], "aw==", "{}", text(&before));
    let after = node.run(&["get", "k", "--json"]);
    assert_eq!(json(&before)["kv"], json(&after)["kv"]);
    // Not for commands that take no client options.
    let o = raftkv(&["--json", "certs", "--out", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn server_help_shows_every_toml_setting() {
    let o = raftkv(&["server", "--help"]);
    assert!(o.status.success(), "{}", text(&o));
    let help = text(&o);
    for setting in [
        "[tls]",
        "[[auth.tokens]]",
        "scan_limit_max",
        "grpc_message_size_max",
        "pre_vote",
        "check_quorum",
        "merge_dead_percent",
        "--config",
    ] {
        assert!(help.contains(setting), "{setting} missing:\n{help}");
    }
}

#[test]
fn tls_paths_in_a_config_file_are_relative_to_it_and_checked_first() {
    let dir = tempdir();
    let etc = dir.path().join("etc");
    if let Err(e) = std::fs::create_dir(&etc) {
        panic!("{e}");
    }
    let o = raftkv(&[
        "certs",
        "--out",
        &etc.join("certs").to_string_lossy(),
        "--nodes",
        "1",
    ]);
    assert!(o.status.success(), "raftkv certs: {}", text(&o));
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = etc.join("node.toml");
    let toml = format!(
        "id = 1\nlisten_addr = \"{addr}\"\ndata_dir = \"data\"\ntick_interval_ms = 20\n\
         bootstrap = true\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/node1.pem\"\nkey = \"certs/node1.key\"\n"
    );
    write(&cfg, &toml);
    // Started from another directory: the paths still mean etc/...
    let cfg_s = cfg.to_string_lossy().to_string();
    let node = Node::spawn(
        &addr,
        &["--config", &cfg_s],
        dir.path(),
        dir.path().join("n.log"),
    );
    let ca = etc.join("certs/ca.pem").to_string_lossy().to_string();
    let o = node.until_ok(&["--cacert", &ca, "put", "k", "v"]);
    assert!(o.status.success());
    assert!(etc.join("data").is_dir(), "data dir not under etc/");
    drop(node);

    // A missing certificate: refused by name before any directory is made.
    let bad = dir.path().join("bad");
    if let Err(e) = std::fs::create_dir(&bad) {
        panic!("{e}");
    }
    let bad_cfg = bad.join("node.toml");
    write(&bad_cfg, toml.replace("certs/ca.pem", "certs/missing.pem"));
    let o = raftkv(&["server", "--config", &bad_cfg.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("tls.ca") && text(&o).contains("missing.pem"),
        "{}",
        text(&o)
    );
    assert!(
        !bad.join("data").exists(),
        "data dir created before the check"
    );
}

// ---- 2. Binary keys and values ----

/// `raftkv ARGS` where some arguments are raw bytes (not UTF-8).
fn raftkv_raw(node: &Node, args: &[&[u8]]) -> Output {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(RAFTKV)
        .args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)))
        .args(["--endpoints", &node.addr, "--timeout", "5"])
        .env_remove("RAFTKV_ENDPOINTS")
        .output();
    match out {
        Ok(o) => o,
        Err(e) => panic!("run raftkv: {e}"),
    }
}

fn b64(o: &Output, field: &str) -> String {
    json(o)["kv"][field].as_str().unwrap_or("").to_string()
}

#[test]
fn binary_keys_and_values_go_through_hex_base64_raw_and_json() {
    let dir = tempdir();
    let node = Node::single(dir.path(), "n1", &[]);
    node.until_ok(&["put", "warmup", "x"]);

    // Raw non-UTF-8 bytes on the command line, as the shell passes them.
    let o = raftkv_raw(&node, &[b"put", b"\xff\xfe", b"v\x80"]);
    assert!(o.status.success(), "{}", text(&o));
    // The same key in hex and base64; --json carries base64.
    let o = node.run(&["get", "--encoding", "hex", "fffe", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        (b64(&o, "key"), b64(&o, "value")),
        ("//4=".into(), "doA=".into())
    );
    let o = node.run(&["get", "--encoding", "base64", "//4=", "-q"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "doA=\n", "{}", text(&o));
    let o = raftkv_raw(&node, &[b"get", b"\xff\xfe", b"-q"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "v\\x80\n",
        "{}",
        text(&o)
    );
    let o = node.run(&["get", "--encoding", "hex", "fffe", "-q"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "7680");
    let o = node.run(&["get", "--encoding", "hex", "fffe", "--raw"]);
    assert_eq!(o.stdout, b"v\x80");
    // Text output escapes the invalid bytes instead of garbling them.
    let o = node.run(&["scan", "--from", "\u{80}"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\\xff\\xfe"),
        "{}",
        text(&o)
    );
    // Hex in, hex out for a scan's keys.
    let o = node.run(&["scan", "--encoding", "hex", "--prefix", "ff", "--keys-only"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "fffe",
        "{}",
        text(&o)
    );
    // Malformed hex: bad input, named.
    let o = node.run(&["put", "--encoding", "hex", "xyz", "v"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("key is not hex"), "{}", text(&o));
}

#[test]
fn values_come_from_stdin_or_a_file_past_the_argument_list_limit() {
    let dir = tempdir();
    let node = Node::single(dir.path(), "n1", &[]);
    node.until_ok(&["put", "warmup", "x"]);
    // 200 KB: more than one command-line argument may carry (128 KiB).
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let o = node.run_in(&["put", "from-stdin", "-"], Some(&big));
    assert!(o.status.success(), "{}", text(&o));
    let o = node.run(&["get", "from-stdin", "--raw"]);
    assert!(
        o.stdout == big,
        "stdin value differs ({} bytes back)",
        o.stdout.len()
    );
    let file = dir.path().join("value.bin");
    write(&file, &big[..150_000]);
    let f = file.to_string_lossy().to_string();
    let o = node.run(&["put", "from-file", "--value-file", &f]);
    assert!(o.status.success(), "{}", text(&o));
    let o = node.run(&["append", "from-file", "--value-file", &f]);
    assert!(o.status.success(), "{}", text(&o));
    let o = node.run(&["get", "from-file", "--raw"]);
    assert_eq!(o.stdout.len(), 300_000);
    assert!(o.stdout[150_000..] == big[..150_000]);
    let o = node.run(&["put", "k", "--value-file", "/nonexistent/v"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("/nonexistent/v"), "{}", text(&o));
}

// ---- 3. Big responses, oversized requests ----

// The client decodes whatever a node may encode.
const _: () = assert!(client::limits::RESPONSE_SIZE_MAX >= server::limits::GRPC_MESSAGE_SIZE_CAP);

fn client_of(addr: &str) -> client::Client {
    // Generous: these tests share two cores with other clusters.
    let config = client::ClientConfig {
        deadline: Duration::from_secs(30),
        ..client::ClientConfig::default()
    };
    match client::Client::connect(vec![addr.to_string()], config) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_of_values_at_the_size_limit_come_in_pages_that_fit() {
    let dir = tempdir();
    let node = Node::single(dir.path(), "n1", SMALL_LOG);
    node.until_ok(&["put", "warmup", "x"]);
    let c = client_of(&node.addr);
    let max = server::limits::VALUE_SIZE_MAX;
    for i in 0..8u8 {
        let value = vec![b'a' + i; max];
        if let Err(e) = c.put(format!("zbig{i}"), value).await {
            panic!("put at the size limit: {e}");
        }
    }
    // One page: cut by bytes below the 8 keys asked for, `more` set.
    let page = match c.scan(client::Scan::prefix("zbig").limit(8)).await {
        Ok(p) => p,
        Err(e) => panic!("scan: {e}"),
    };
    assert!(page.more, "a page of 8 MiB was not cut");
    assert!(
        (1..8).contains(&page.kvs.len()),
        "{} keys in a page",
        page.kvs.len()
    );
    assert!(page.kvs.iter().all(|kv| kv.value.len() == max));
    // The CLI reads the pages: every key, each value whole.
    let o = node.run(&["scan", "--prefix", "zbig", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc = json(&o);
    let kvs = doc["kvs"].as_array().cloned().unwrap_or_default();
    assert_eq!(kvs.len(), 8);
    assert_eq!(doc["more"], false);
    let b64_len = max.div_ceil(3) * 4;
    assert!(kvs
        .iter()
        .all(|kv| kv["value"].as_str().map(str::len) == Some(b64_len)));
    let o = node.run(&["scan", "--prefix", "zbig", "--limit", "5", "--keys-only"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 5);
    assert!(text(&o).contains("more match"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_invalid_argument() {
    let dir = tempdir();
    let node = Node::single(dir.path(), "n1", SMALL_LOG);
    node.until_ok(&["put", "warmup", "x"]);
    let c = client_of(&node.addr);
    let max = server::limits::VALUE_SIZE_MAX;
    // One byte over the value limit: the node's own check.
    match c.put("k", vec![0u8; max + 1]).await {
        Err(client::Error::InvalidArgument(m)) => assert!(m.contains("value"), "{m}"),
        other => panic!("value limit + 1: {other:?}"),
    }
    // 100 MiB: over the client's message limit.
    match c.put("k", vec![0u8; 100 << 20]).await {
        Err(client::Error::InvalidArgument(m)) => {
            assert!(m.contains("value_size_max"), "{m}")
        }
        other => panic!("100 MiB: {other:?}"),
    }
    // 5 MiB from a client without a limit of its own: over the node's
    // decoding limit, answered INVALID_ARGUMENT (tonic says OUT_OF_RANGE).
    let channel = match tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr)) {
        Ok(e) => e.connect().await,
        Err(e) => panic!("{e}"),
    };
    let channel = match channel {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let mut raw = client::pb::kv_client::KvClient::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    let status = match raw
        .put(client::pb::PutRequest {
            key: "k".into(),
            value: vec![0u8; 5 << 20].into(),
            ..Default::default()
        })
        .await
    {
        Ok(_) => panic!("a 5 MiB put was accepted"),
        Err(s) => s,
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("value_size_max"), "{status:?}");
    // Through the CLI: bad input, exit code 2.
    let f = dir.path().join("big");
    write(&f, vec![1u8; max + 1]);
    let o = node.run(&["put", "k", "--value-file", &f.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

// ---- 4. Health checks ----

/// Three nodes of one cluster, data in `dir/n1..n3`.
fn three_nodes(dir: &Path) -> Vec<Node> {
    three_nodes_named(dir, "n")
}

/// Three nodes of one cluster on new ports, data in `dir/{prefix}1..3`;
/// 50 ms ticks (elections after 0.5-1 s: debug builds on a loaded machine
/// stall on large entries).
fn three_nodes_named(dir: &Path, prefix: &str) -> Vec<Node> {
    three_nodes_prepared(dir, prefix, |_, _, _| {})
}

/// As [`three_nodes_named`], calling `prepare(id, data dir, peers)` for
/// each node before it starts.
fn three_nodes_prepared(dir: &Path, prefix: &str, prepare: impl Fn(&str, &str, &str)) -> Vec<Node> {
    let addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let peer_addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let peers = peer_addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
        .map(|i| {
            let id = (i + 1).to_string();
            let data = dir
                .join(format!("{prefix}{id}"))
                .to_string_lossy()
                .to_string();
            prepare(&id, &data, &peers);
            let args = [
                "--id",
                &id,
                "--listen",
                &addrs[i],
                "--peer-listen",
                &peer_addrs[i],
                "--peers",
                &peers,
                "--data-dir",
                &data,
                "--tick-ms",
                "50",
                "--bootstrap",
            ];
            Node::spawn(&addrs[i], &args, dir, dir.join(format!("{prefix}{id}.log")))
        })
        .collect()
}

#[test]
fn endpoint_health_and_status_fail_when_a_node_is_down() {
    let dir = tempdir();
    let mut nodes = three_nodes(dir.path());
    nodes[0].until_ok(&["put", "k", "v"]);
    let all = nodes
        .iter()
        .map(|n| n.addr.clone())
        .collect::<Vec<_>>()
        .join(",");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Every node knows the leader soon after the first write.
        let o = raftkv(&["endpoint", "health", "--endpoints", &all, "--timeout", "5"]);
        if o.status.success() {
            assert_eq!(
                String::from_utf8_lossy(&o.stdout)
                    .matches("is healthy")
                    .count(),
                3
            );
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
    // --cluster finds the members from one endpoint (each member's client
    // address arrives with its first peer handshake: may take a moment).
    loop {
        let o = nodes[0].run(&["endpoint", "health", "--cluster", "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        let list = json(&o)["endpoints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if list.len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&o));
        std::thread::sleep(Duration::from_millis(100));
    }

    // Node 3 down.
    if let Some(mut c) = nodes[2].child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let o = nodes[0].run(&["endpoint", "health", "--cluster"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains(&format!("{} is unhealthy: unreachable", nodes[2].addr)),
        "{out}"
    );
    assert_eq!(out.matches("is healthy").count(), 2, "{out}");
    assert!(
        text(&o).contains("1 of 3 endpoint(s) unhealthy"),
        "{}",
        text(&o)
    );
    // Only the live endpoint asked: healthy.
    let o = nodes[0].run(&["endpoint", "health"]);
    assert!(o.status.success(), "{}", text(&o));
    // status prints the table and exits 5.
    let o = nodes[0].run(&["status"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("down"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("1 of 3 node(s) unreachable"),
        "{}",
        text(&o)
    );
    let o = nodes[0].run(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(json(&o)["nodes"].as_array().map(Vec::len), Some(3));
}

// ---- 5. Errors that name the fix ----

#[test]
fn tls_mismatches_and_wrong_ports_are_named_at_once() {
    let dir = tempdir();
    for (out, what) in [("certs", "cluster"), ("other", "another CA")] {
        let o = raftkv(&[
            "certs",
            "--out",
            &dir.path().join(out).to_string_lossy(),
            "--nodes",
            "1",
        ]);
        assert!(o.status.success(), "certs for {what}: {}", text(&o));
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("node.toml");
    write(
        &cfg,
        format!(
            "id = 1\nlisten_addr = \"{addr}\"\nhttp_addr = \"{http}\"\ndata_dir = \"data\"\n\
             tick_interval_ms = 20\nbootstrap = true\n[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/node1.pem\"\n\
             key = \"certs/node1.key\"\n"
        ),
    );
    let tls = Node::spawn(
        &addr,
        &["--config", &cfg.to_string_lossy()],
        dir.path(),
        dir.path().join("tls.log"),
    );
    let ca = dir
        .path()
        .join("certs/ca.pem")
        .to_string_lossy()
        .to_string();
    let other_ca = dir
        .path()
        .join("other/ca.pem")
        .to_string_lossy()
        .to_string();
    tls.until_ok(&["--cacert", &ca, "put", "k", "v"]);
    let plain = Node::single(dir.path(), "plain", &[]);
    plain.until_ok(&["put", "k", "v"]);

    let cases: [(&str, Vec<&str>, &str); 4] = [
        (
            "plaintext to TLS",
            vec!["get", "k", "--endpoints", &addr],
            "pass --cacert",
        ),
        (
            "wrong CA",
            vec!["get", "k", "--endpoints", &addr, "--cacert", &other_ca],
            "not signed by the CA",
        ),
        (
            "the HTTP port",
            vec!["get", "k", "--endpoints", &http],
            "http_addr",
        ),
        (
            "TLS to plaintext",
            vec!["get", "k", "--endpoints", &plain.addr, "--cacert", &ca],
            "does not speak TLS",
        ),
    ];
    for (what, args, fix) in cases {
        let mut args = args;
        args.extend_from_slice(&["--timeout", "10"]);
        let t0 = Instant::now();
        let o = raftkv(&args);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", text(&o));
        assert!(text(&o).contains(fix), "{what}: {}", text(&o));
        // Not retried until the 10 s deadline.
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            t0.elapsed()
        );
    }
}

#[test]
fn dev_refuses_ports_in_use_naming_them() {
    let held = match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let port = match held.local_addr() {
        Ok(a) => a.port(),
        Err(e) => panic!("{e}"),
    };
    let dir = tempdir();
    let t0 = Instant::now();
    let o = raftkv(&[
        "dev",
        "--nodes",
        "1",
        "--base-port",
        &port.to_string(),
        "--data-dir",
        &dir.path().to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("127.0.0.1:{port}")) && text(&o).contains("--base-port"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("node(s) up"), "{}", text(&o));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// Runs `script` (`{m}`: a fresh tmpfs of `size`, `{addr}`: a free
/// address) with `sh` in a mount namespace of its own, its output in
/// `dir/log`; `None` (saying so) where mount namespaces are not allowed.
fn in_tmpfs(dir: &Path, size: &str, log: &str, script: &str) -> Option<Node> {
    let probe = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot create a mount namespace here (unshare -m)");
        return None;
    }
    let mnt = dir.join(format!("{log}.mnt"));
    if let Err(e) = std::fs::create_dir(&mnt) {
        panic!("{e}");
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let m = mnt.display().to_string();
    let script = format!(
        "mount -t tmpfs -o size={size} tmpfs '{m}' || exit 90\n{}",
        script
            .replace("{m}", &m)
            .replace("{addr}", &addr)
            .replace("{raftkv}", RAFTKV)
    );
    let log = dir.join(log);
    let (file, dup) = log_pair(&log);
    let child = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .stdout(Stdio::from(dup))
        .stderr(Stdio::from(file))
        .spawn();
    match child {
        Ok(c) => Some(Node {
            addr,
            log,
            child: Some(c),
        }),
        Err(e) => panic!("{e}"),
    }
}

/// A node on a 200 MiB tmpfs (128 MiB of it preallocated WAL) filling up:
/// below the 64 MiB reserve it refuses writes, says why to the client, in
/// status, in health and in its log, and keeps serving reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_refuses_writes_and_says_so_everywhere() {
    let dir = tempdir();
    let Some(node) = in_tmpfs(
        dir.path(),
        "200m",
        "node.log",
        "exec '{raftkv}' server --id 1 --listen {addr} --bootstrap --data-dir '{m}/d' --tick-ms 20 \
         --snapshot-threshold 2",
    ) else {
        return;
    };
    node.until_ok(&["put", "warmup", "x"]);
    let c = client_of(&node.addr);
    let value = vec![7u8; 1 << 20];
    let mut refused = None;
    for i in 0..100 {
        if let Err(e) = c.put(format!("fill{i}"), value.clone()).await {
            refused = Some(e);
            break;
        }
    }
    match refused {
        Some(client::Error::DiskFull(m)) => {
            assert!(m.contains("disk nearly full on node 1"), "{m}")
        }
        other => panic!("expected a disk-full refusal, got {other:?}"),
    }
    let o = node.run(&["put", "k", "v"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("disk nearly full"), "{}", text(&o));
    // Reads go on; status and health say why.
    let o = node.run(&["get", "warmup", "-q"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "x",
        "{}",
        text(&o)
    );
    let o = node.run(&["status"]);
    assert!(text(&o).contains("disk nearly full"), "{}", text(&o));
    let o = node.run(&["status", "--json"]);
    let n = &json(&o)["nodes"][0];
    assert!(
        n["disk_free_bytes"].as_u64() < n["disk_reserve_bytes"].as_u64(),
        "{n}"
    );
    let o = node.run(&["endpoint", "health"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("disk nearly full"), "{}", text(&o));
    assert!(node
        .log_text()
        .contains("disk nearly full: refusing writes"));
}

/// With the reserve off, a node on a 150 MiB tmpfs fills it up and stops,
/// naming the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_named_in_the_nodes_last_words() {
    let dir = tempdir();
    let Some(mut node) = in_tmpfs(
        dir.path(),
        "150m",
        "node.log",
        "exec '{raftkv}' server --id 1 --listen {addr} --bootstrap --data-dir '{m}/d' --tick-ms 20 \
         --snapshot-threshold 2 --disk-reserve-bytes 0",
    ) else {
        return;
    };
    node.until_ok(&["put", "warmup", "x"]);
    let c = client_of(&node.addr);
    let value = vec![7u8; 1 << 20];
    let mut failed = None;
    for i in 0..100 {
        if let Err(e) = c.put(format!("fill{i}"), value.clone()).await {
            failed = Some(e);
            break;
        }
    }
    assert!(
        failed.is_some(),
        "100 MiB fit in 150 MiB with 128 MiB of WAL"
    );
    let t0 = Instant::now();
    while node
        .child
        .as_mut()
        .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    {
        assert!(t0.elapsed() < Duration::from_secs(20), "node still up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let words = node.log_text();
    assert!(
        words.contains("No space left on device") && words.contains("the disk is full"),
        "{words}"
    );
}

// ---- 6. raftkv dev: restart a node; keep a directory in use ----

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is of
        // a process this test started (directly or through dev).
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Waits until `path` holds `needle`; its text.
fn wait_for_text(path: &Path, needle: &str, within: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            t0.elapsed() < within,
            "no `{needle}` in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dev_restarts_a_killed_node_and_keeps_a_directory_in_use() {
    use std::io::Write;
    let base = testkit::free_port_run(3, 100);
    let dir = tempdir();
    let (out, err) = (dir.path().join("dev.out"), dir.path().join("dev.err"));
    let (out_f, err_f) = (log_pair(&out).0, log_pair(&err).0);
    let dev = Command::new(RAFTKV)
        .args(["dev", "--nodes", "3", "--tick-ms", "20"])
        .args(["--base-port", &base.to_string()])
        // The temporary data dir goes under our own.
        .env("TMPDIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::from(out_f))
        .stderr(Stdio::from(err_f))
        .spawn();
    let mut dev = match dev {
        Ok(c) => Node {
            addr: format!("127.0.0.1:{base}"),
            log: err.clone(),
            child: Some(c),
        },
        Err(e) => panic!("{e}"),
    };
    let banner = wait_for_text(&out, "Ctrl-C stops the cluster", Duration::from_secs(30));
    assert!(banner.contains("restart N"), "{banner}");
    let pid_of = |id: u64| -> u32 {
        let line = banner
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("node {id} ")))
            .unwrap_or("");
        let pid = line.split_whitespace().skip_while(|w| *w != "pid").nth(1);
        match pid.and_then(|p| p.parse().ok()) {
            Some(p) => p,
            None => panic!("no pid for node {id} in {banner}"),
        }
    };
    let root = banner
        .lines()
        .find_map(|l| l.strip_prefix("Data in "))
        .and_then(|l| l.split(" (").next())
        .map(PathBuf::from);
    let Some(root) = root else {
        panic!("no data dir in {banner}")
    };
    let addr2 = format!("127.0.0.1:{}", base + 1);
    let get2 = || {
        raftkv(&[
            "get",
            "k",
            "--serializable",
            "--endpoints",
            &addr2,
            "--timeout",
            "2",
        ])
    };
    dev.until_ok(&["put", "k", "v"]);

    // kill -9 node 2; `restart 2` brings it back with its data.
    signal(pid_of(2), libc::SIGKILL);
    let t0 = Instant::now();
    while get2().status.success() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "node 2 still answers"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(stdin) = dev.child.as_mut().and_then(|c| c.stdin.as_mut()) else {
        panic!("no stdin")
    };
    if let Err(e) = stdin.write_all(b"restart 2\nstop 3\n") {
        panic!("{e}");
    }
    let _ = stdin.flush();
    wait_for_text(&err, "node 2 restarted", Duration::from_secs(10));
    wait_for_text(&err, "node 3 stopped", Duration::from_secs(20));
    let t0 = Instant::now();
    loop {
        let o = get2();
        if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "v" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "node 2 not back: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Node 3 started by hand on dev's data: Ctrl-C on dev keeps the dir.
    let peers = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, base + 200 + i))
        .collect::<Vec<_>>()
        .join(",");
    let addr3 = format!("127.0.0.1:{}", base + 2);
    let peer3 = format!("127.0.0.1:{}", base + 202);
    let secret = root.join("cluster-secret").to_string_lossy().to_string();
    let data3 = root.join("node-3").to_string_lossy().to_string();
    let by_hand = Node::spawn(
        &addr3,
        &[
            "--id",
            "3",
            "--listen",
            &addr3,
            "--peer-listen",
            &peer3,
            "--cluster-secret-file",
            &secret,
            "--peers",
            &peers,
            "--data-dir",
            &data3,
            "--tick-ms",
            "20",
        ],
        dir.path(),
        dir.path().join("hand.log"),
    );
    by_hand.until_ok(&["get", "k", "--serializable"]);
    if let Some(pid) = dev.child.as_ref().map(Child::id) {
        signal(pid, libc::SIGINT);
    }
    let t0 = Instant::now();
    while dev
        .child
        .as_mut()
        .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let words = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        words.contains("kept") && words.contains("node-3"),
        "{words}"
    );
    assert!(
        root.join("node-3").join("wal").is_dir(),
        "the running node's dir was deleted"
    );
    let o = by_hand.run(&["get", "k", "--serializable"]);
    assert!(
        o.status.success(),
        "the node started by hand broke: {}",
        text(&o)
    );
}

// ---- 7. Backup and restore ----

/// Every key and value, read page by page.
async fn all_pairs(c: &client::Client) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut scan = client::Scan::all().limit(0);
    loop {
        let page = match c.scan(scan.clone()).await {
            Ok(p) => p,
            Err(e) => panic!("scan: {e}"),
        };
        out.extend(
            page.kvs
                .iter()
                .map(|kv| (kv.key.to_vec(), kv.value.to_vec())),
        );
        match page.kvs.last() {
            Some(last) if page.more => scan = scan.resume_after(&last.key),
            _ => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_cluster_with_every_key() {
    let dir = tempdir();
    let old = three_nodes_named(dir.path(), "old");
    old[0].until_ok(&["put", "warmup", "x"]);
    let c = client_of(&old[0].addr);
    // 500 keys of assorted sizes (binary ones too), three of 400 KB: the
    // backup spans several chunks.
    for i in 0..500u32 {
        let key = format!("key/{i:04}").into_bytes();
        let value = match i % 5 {
            0 => vec![0xff, 0x00, i as u8],
            1 => vec![b'v'; 100 + i as usize],
            _ => format!("value {i}").into_bytes(),
        };
        if let Err(e) = c.put(key, value).await {
            panic!("put {i}: {e}");
        }
    }
    for i in 0..3u8 {
        // A debug build under a loaded machine may lose its leader while it
        // writes 400 KB values: the same put again is harmless.
        let t0 = Instant::now();
        while let Err(e) = c.put(vec![0xfe, i], vec![i; 400_000]).await {
            assert!(t0.elapsed() < Duration::from_secs(30), "big put: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let want = all_pairs(&c).await;
    assert_eq!(want.len(), 504);

    // Save (client options before the command), while the cluster runs.
    let file = dir.path().join("backup.rkv");
    let f = file.to_string_lossy().to_string();
    let o = raftkv(&[
        "--endpoints",
        &old[1].addr,
        "--json",
        "snapshot",
        "save",
        &f,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let saved = json(&o);
    assert!(saved["index"].as_u64().is_some_and(|i| i >= 504), "{saved}");
    assert!(saved["chunks"].as_u64().is_some_and(|n| n >= 2), "{saved}");
    assert!(!dir.path().join("backup.rkv.part").exists());

    // Destroy the cluster: processes and data.
    drop(old);
    for i in 1..=3 {
        if let Err(e) = std::fs::remove_dir_all(dir.path().join(format!("old{i}"))) {
            panic!("{e}");
        }
    }

    // A damaged copy is refused before anything is written.
    let mut bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let damaged = dir.path().join("damaged.rkv");
    write(&damaged, &bytes);
    let target = dir.path().join("never");
    let o = raftkv(&[
        "snapshot",
        "restore",
        &damaged.to_string_lossy(),
        "--data-dir",
        &target.to_string_lossy(),
        "--id",
        "1",
        "--peers",
        "1=127.0.0.1:1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("damaged"), "{}", text(&o));
    assert!(!target.exists(), "a damaged backup wrote a data dir");

    // Restore into a new cluster: new ports, the same ids.
    let new = three_nodes_prepared(dir.path(), "new", |id, data, peers| {
        let o = raftkv(&[
            "snapshot",
            "restore",
            &f,
            "--data-dir",
            data,
            "--id",
            id,
            "--peers",
            peers,
        ]);
        assert!(o.status.success(), "restore node {id}: {}", text(&o));
    });
    new[0].until_ok(&["put", "after-restore", "yes"]);
    let c = client_of(&new[2].addr);
    let mut got = all_pairs(&c).await;
    got.retain(|(k, _)| k != b"after-restore");
    assert!(
        got == want,
        "restored data differs: {} vs {} keys",
        got.len(),
        want.len()
    );
    // Every node has it (a serializable read on each).
    for n in &new {
        let o = n.run(&[
            "get",
            "--serializable",
            "--encoding",
            "hex",
            "fe02",
            "--raw",
        ]);
        assert_eq!(
            o.stdout.len(),
            400_000,
            "node {}: {}",
            n.addr,
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

// ---- 8. The WAL's disk footprint ----

#[test]
fn a_small_volume_needs_and_takes_a_smaller_wal_segment_size() {
    let dir = tempdir();
    // 30 MiB: the default 64 MiB segment cannot be preallocated. The node
    // stops naming the full disk and leaves no partial file behind.
    let Some(mut node) = in_tmpfs(
        dir.path(),
        "30m",
        "default.log",
        "'{raftkv}' server --id 1 --listen {addr} --bootstrap --data-dir '{m}/d'\n\
         echo \"exit $?\"; echo \"files:\"; ls '{m}/d/wal'",
    ) else {
        return;
    };
    let t0 = Instant::now();
    while node
        .child
        .as_mut()
        .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = node.log_text();
    assert!(
        out.contains("the disk is full") && !out.contains("exit 0"),
        "{out}"
    );
    let files = out.split("files:").nth(1).unwrap_or("");
    assert!(!files.contains(".tmp"), "a partial segment was left: {out}");

    // 4 MiB segments: it starts, serves, and its WAL stays small.
    let Some(node) = in_tmpfs(
        dir.path(),
        "30m",
        "small.log",
        "exec '{raftkv}' server --id 1 --listen {addr} --bootstrap --data-dir '{m}/d' --tick-ms 20 \
         --wal-segment-size 4194304",
    ) else {
        return;
    };
    for i in 0..20 {
        node.until_ok(&["put", &format!("k{i}"), "v"]);
    }
    let o = node.run(&["get", "k19", "-q"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "v");
    // Through the node's view of its mount namespace.
    let pid = node.child.as_ref().map(Child::id).unwrap_or(0);
    let wal = PathBuf::from(format!("/proc/{pid}/root"))
        .join(dir.path().strip_prefix("/").unwrap_or(dir.path()))
        .join("small.log.mnt/d/wal");
    let bytes: u64 = match std::fs::read_dir(&wal) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum(),
        Err(e) => panic!("{}: {e}", wal.display()),
    };
    assert!(
        bytes <= 2 * 4 * 1024 * 1024 + 64 * 1024,
        "the WAL takes {bytes} bytes"
    );
}
