//! A secured node end to end through the binary: `raftkv certs` makes the
//! certificates, `raftkv server --config` serves TLS with tokens, and the
//! client commands need `--cacert` and the right `--token`.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use testkit::free_port;

const RAFTKV: &str = env!("CARGO_BIN_EXE_raftkv");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn raftkv(args: &[&str]) -> Output {
    Command::new(RAFTKV)
        .args(args)
        .env_remove("RAFTKV_TOKEN")
        .env_remove("RAFTKV_CACERT")
        .env_remove("RAFTKV_ENDPOINTS")
        .output()
        .expect("raftkv runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn config(dir: &Path, addr: &str, peer: &str) -> String {
    let certs = dir.join("certs");
    format!(
        r#"
id = 1
listen_addr = "{addr}"
peer_listen_addr = "{peer}"
data_dir = "{data}"
bootstrap = true
tick_interval_ms = 20

[tls]
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[[auth.tokens]]
token = "writer-token"
role = "write"

[[auth.tokens]]
token = "reader-token"
role = "read"
"#,
        data = dir.join("node-1").display(),
        ca = certs.join("ca.pem").display(),
        cert = certs.join("node1.pem").display(),
        key = certs.join("node1.key").display(),
    )
}

#[test]
fn a_tls_node_with_tokens_serves_only_the_right_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let certs_s = certs.to_string_lossy().to_string();
    let o = raftkv(&["certs", "--out", &certs_s, "--nodes", "1"]);
    assert!(o.status.success(), "raftkv certs: {}", text(&o));
    let ca = certs.join("ca.pem").to_string_lossy().to_string();

    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("node.toml");
    let peer = format!("127.0.0.1:{}", free_port());
    std::fs::write(&cfg, config(dir.path(), &addr, &peer)).expect("write config");
    let log = std::fs::File::create(dir.path().join("node.log")).expect("log");
    let _node = Kill(
        Command::new(RAFTKV)
            .arg("server")
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::from(log.try_clone().expect("dup")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("server starts"),
    );
    let base = ["--endpoints", addr.as_str(), "--timeout", "2"];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = extra.to_vec();
        a.extend_from_slice(&base);
        raftkv(&a)
    };

    // The writer's put succeeds once the node is up and leads.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = with(&["put", "k", "v", "--cacert", &ca, "--token", "writer-token"]);
        if o.status.success() {
            break;
        }
        let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "no successful put: {}\nlog:\n{log}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Reads with the reader token.
    let o = with(&["get", "k", "--cacert", &ca, "--token", "reader-token"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "v");

    // No token, a wrong token: unauthenticated.
    let o = with(&["put", "k", "w", "--cacert", &ca]);
    assert!(!o.status.success());
    assert!(text(&o).contains("token"), "{}", text(&o));
    let o = with(&["get", "k", "--cacert", &ca, "--token", "nope"]);
    assert!(!o.status.success());
    assert!(text(&o).to_lowercase().contains("token"), "{}", text(&o));

    // The reader may not write.
    let o = with(&["put", "k", "w", "--cacert", &ca, "--token", "reader-token"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("only read"), "{}", text(&o));

    // Plaintext to the TLS node fails.
    let o = with(&["get", "k", "--token", "reader-token"]);
    assert!(!o.status.success(), "plaintext must fail: {}", text(&o));

    // The value was not overwritten by any refused write.
    let o = with(&["get", "k", "--cacert", &ca, "--token", "writer-token"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "v");
}
