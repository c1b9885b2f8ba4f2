//! `raftkv dev`: a local cluster in one command.
//!
//! Spawns N child processes of this same binary (`raftkv server --id i
//! ...`), node i listening for clients on `127.0.0.1:<base-port + i - 1>`
//! and for peers on that port + 200, with its data in `<data-dir>/node-<i>`
//! and its log in `<data-dir>/node-<i>.log`. The nodes authenticate each
//! other with a random cluster secret written to `<data-dir>/cluster-secret`
//! (mode 600; kept and reused with `--data-dir`). Waits
//! for a leader; prints the endpoints and example commands; then waits for
//! Ctrl-C (SIGINT) or SIGTERM and stops every node with SIGTERM, waiting
//! for each (SIGKILL after a grace period). A node that dies meanwhile (say,
//! killed to try failover) is reported and left down until `restart N` is
//! typed into dev's terminal (`stop N` stops one; see `dev_support`). A
//! temporary data directory is deleted on exit unless another process (a
//! node started by hand) holds a node's WAL open.
//!
//! Without `--data-dir` the data lives in a fresh temporary directory that
//! is deleted on a clean stop; with `--data-dir` it is kept, and running
//! `raftkv dev` again with the same directory and node count restarts the
//! same cluster with its data.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use tokio::process::{Child, Command};

use crate::exit::CliError;
use crate::output::role_name;

use crate::limits::{
    DEV_LEADER_WAIT_MAX as LEADER_WAIT, DEV_NODES_MAX, DEV_STOP_GRACE_MAX as STOP_GRACE,
};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=DEV_NODES_MAX as i64))]
    pub nodes: u16,
    /// Where the nodes keep their data (kept); default: a temporary
    /// directory, deleted on exit.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Node i listens on BASE_PORT + i - 1 (clients) and that + 200
    /// (peers).
    #[arg(long, default_value_t = 7001, value_parser = clap::value_parser!(u16).range(1..))]
    pub base_port: u16,
    /// Milliseconds per Raft tick (the nodes' default if not given).
    #[arg(long, value_name = "MS")]
    pub tick_ms: Option<u64>,
}

struct Node {
    id: u64,
    addr: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Child,
    running: bool,
}

/// Sends `signal` to process `pid`.
fn send_signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is that of
    // our own child, still unreaped (so it cannot have been reused).
    unsafe {
        libc::kill(pid, signal);
    }
}

/// What every node of a dev cluster is started with.
#[derive(Clone, Copy)]
struct Common<'a> {
    exe: &'a Path,
    /// `--peers`: every node's peer address.
    peers: &'a str,
    tick_ms: Option<u64>,
    /// The cluster secret file.
    secret: &'a Path,
}

fn spawn_node(
    common: &Common<'_>,
    id: u64,
    addr: &str,
    data_dir: &Path,
    log: &Path,
) -> Result<Child, CliError> {
    let Common {
        exe,
        peers,
        tick_ms,
        secret,
    } = *common;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| CliError::Failed(format!("cannot open {}: {e}", log.display())))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| CliError::Failed(format!("cannot open {}: {e}", log.display())))?;
    let mut cmd = Command::new(exe);
    cmd.arg("server")
        .arg("--id")
        .arg(id.to_string())
        .arg("--listen")
        .arg(addr)
        .arg("--peer-listen")
        .arg(peer_addr_of(addr).unwrap_or_default())
        .arg("--peers")
        .arg(peers)
        .arg("--cluster-secret-file")
        .arg(secret)
        .arg("--data-dir")
        .arg(data_dir)
        // A new data dir starts the cluster; an existing one ignores it.
        .arg("--bootstrap")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true);
    if let Some(t) = tick_ms {
        cmd.arg("--tick-ms").arg(t.to_string());
    }
    if let Some(http) = http_addr_of(addr) {
        cmd.arg("--http-addr").arg(http);
    }
    // SAFETY: the closure runs in the forked child before exec and only
    // makes one async-signal-safe system call (prctl): the node gets
    // SIGTERM if this dev process dies without stopping it.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| CliError::Failed(format!("cannot start node {id}: {e}")))
}

/// A dev node's peer address: its client port + 200.
pub fn peer_addr_of(addr: &str) -> Option<String> {
    server::config::default_peer_addr(addr)
}

/// The cluster secret of a dev cluster: `<root>/cluster-secret`, made (32
/// random bytes, hex, mode 600) unless it exists.
fn ensure_secret(root: &Path) -> Result<PathBuf, CliError> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.join("cluster-secret");
    if path.exists() {
        return Ok(path);
    }
    let fail =
        |e: std::io::Error| CliError::Failed(format!("cannot write {}: {e}", path.display()));
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CliError::Failed(format!("cannot read /dev/urandom: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(fail)?;
    f.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(fail)?;
    Ok(path)
}

/// A dev node's HTTP address (/metrics, the web page): its port + 100.
pub fn http_addr_of(addr: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?.checked_add(100)?;
    Some(format!("{host}:{port}"))
}

/// The last lines of a node's log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(5);
    lines[start..].join("\n    ")
}

pub async fn run(a: DevArgs) -> Result<(), CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Failed(format!("cannot find this executable: {e}")))?;
    let (root, temporary) = match &a.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("raftkv-dev-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&root)
        .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", root.display())))?;
    let last_port = u32::from(a.base_port) + u32::from(a.nodes) - 1 + 200;
    if last_port > u32::from(u16::MAX) {
        return Err(CliError::BadInput(format!(
            "ports {}..={last_port} do not fit",
            a.base_port
        )));
    }
    let addrs: Vec<String> = (0..a.nodes)
        .map(|i| format!("127.0.0.1:{}", a.base_port + i))
        .collect();
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}={}", i + 1, peer_addr_of(addr).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",");

    let mut ports = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        ports.push((format!("node {}", i + 1), addr.clone()));
        if let Some(peer) = peer_addr_of(addr) {
            ports.push((format!("node {}'s peer port", i + 1), peer));
        }
        if let Some(http) = http_addr_of(addr) {
            ports.push((format!("node {}'s web page", i + 1), http));
        }
    }
    crate::dev_support::check_ports_free(&ports)?;

    let secret = ensure_secret(&root)?;
    let common = Common {
        exe: &exe,
        peers: &peers,
        tick_ms: a.tick_ms,
        secret: &secret,
    };
    let mut nodes: Vec<Node> = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let data_dir = root.join(format!("node-{id}"));
        let log = root.join(format!("node-{id}.log"));
        match spawn_node(&common, id, addr, &data_dir, &log) {
            Ok(child) => nodes.push(Node {
                id,
                addr: addr.clone(),
                data_dir,
                log,
                child,
                running: true,
            }),
            Err(e) => {
                stop_all(&mut nodes).await;
                return Err(e);
            }
        }
    }

    let client = client::Client::connect(
        addrs.clone(),
        client::ClientConfig {
            deadline: Duration::from_secs(2),
            ..client::ClientConfig::default()
        },
    )?;
    let shutdown = crate::server_cmd::shutdown_signal();
    tokio::pin!(shutdown);
    let started = tokio::time::Instant::now();
    let mut leader = None;
    // Wait for a leader, or for a node to die, or for Ctrl-C.
    loop {
        if let Some(dead) = reap(&mut nodes) {
            stop_all(&mut nodes).await;
            return Err(CliError::Failed(dead));
        }
        for n in &nodes {
            if let Ok(s) = client.status_of(&n.addr).await {
                // Only our own nodes count (not another cluster's there).
                if s.id == n.id && role_name(s.role) == "leader" {
                    leader = Some(s.id);
                }
            }
        }
        if leader.is_some() || started.elapsed() > LEADER_WAIT {
            break;
        }
        tokio::select! {
            _ = &mut shutdown => {
                stop_all(&mut nodes).await;
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    print_banner(&a, &root, temporary, &nodes, &addrs, leader);

    // Run until Ctrl-C, reporting nodes that die and running the commands
    // typed in (see `dev_support::DevCommand`).
    let mut input = crate::dev_support::stdin_lines();
    let mut input_open = true;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            line = input.recv(), if input_open => match line {
                Some(line) => {
                    let spawn = |n: &Node| {
                        spawn_node(&common, n.id, &n.addr, &n.data_dir, &n.log)
                    };
                    run_command(&line, &mut nodes, spawn).await;
                }
                None => input_open = false,
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some(dead) = reap(&mut nodes) {
                    eprintln!("{dead}");
                    eprintln!("(`restart {}` starts it again)", dead_id(&nodes));
                }
            }
        }
    }
    eprintln!("stopping {} node(s)...", nodes.len());
    stop_all(&mut nodes).await;
    if temporary {
        let busy: Vec<String> = nodes
            .iter()
            .filter(|n| crate::dev_support::in_use(&n.data_dir))
            .map(|n| n.data_dir.display().to_string())
            .collect();
        if !busy.is_empty() {
            eprintln!(
                "kept {}: another process uses {} (a node started by hand?)",
                root.display(),
                busy.join(", ")
            );
        } else if let Err(e) = std::fs::remove_dir_all(&root) {
            eprintln!("could not delete {}: {e}", root.display());
        }
    }
    eprintln!("stopped");
    Ok(())
}

/// The id of the last node noticed down (for the restart hint).
fn dead_id(nodes: &[Node]) -> String {
    nodes
        .iter()
        .rev()
        .find(|n| !n.running)
        .map_or("N".to_string(), |n| n.id.to_string())
}

/// Runs one typed command; `spawn` starts a node's process.
async fn run_command(
    line: &str,
    nodes: &mut [Node],
    spawn: impl Fn(&Node) -> Result<Child, CliError>,
) {
    use crate::dev_support::{parse_dev_command, DevCommand, DEV_COMMANDS_HELP};
    let command = match parse_dev_command(line) {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let id = match command {
        DevCommand::Help => {
            eprintln!("{DEV_COMMANDS_HELP}");
            return;
        }
        DevCommand::Restart(id) | DevCommand::Stop(id) => id,
    };
    // Notice a node killed since the last look.
    let _ = reap(nodes);
    let Some(n) = nodes.iter_mut().find(|n| n.id == id) else {
        eprintln!("there is no node {id}");
        return;
    };
    match (command, n.running) {
        (DevCommand::Restart(_), true) => eprintln!("node {id} is running"),
        (DevCommand::Restart(_), false) => match spawn(n) {
            Ok(child) => {
                n.child = child;
                n.running = true;
                let pid = n.child.id().map_or("-".to_string(), |p| p.to_string());
                eprintln!("node {id} restarted (pid {pid})");
            }
            Err(e) => eprintln!("cannot restart node {id}: {e}"),
        },
        (DevCommand::Stop(_), false) => eprintln!("node {id} is not running"),
        (DevCommand::Stop(_), true) => {
            stop_all(std::slice::from_mut(n)).await;
            eprintln!("node {id} stopped");
        }
        (DevCommand::Help, _) => {}
    }
}

/// Notices a node that exited; returns a message naming it.
fn reap(nodes: &mut [Node]) -> Option<String> {
    for n in nodes.iter_mut().filter(|n| n.running) {
        if let Ok(Some(status)) = n.child.try_wait() {
            n.running = false;
            return Some(format!(
                "node {} ({}) exited: {status}; its log ({}) ends with:\n    {}",
                n.id,
                n.addr,
                n.log.display(),
                log_tail(&n.log)
            ));
        }
    }
    None
}

/// SIGTERM to every running node, then wait for each (SIGKILL after
/// [`STOP_GRACE`]).
async fn stop_all(nodes: &mut [Node]) {
    for n in nodes.iter().filter(|n| n.running) {
        if let Some(pid) = n.child.id() {
            send_signal(pid, libc::SIGTERM);
        }
    }
    for n in nodes.iter_mut().filter(|n| n.running) {
        match tokio::time::timeout(STOP_GRACE, n.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!(
                    "node {} did not stop within {STOP_GRACE:?}: killing it",
                    n.id
                );
                let _ = n.child.start_kill();
                let _ = n.child.wait().await;
            }
        }
        n.running = false;
    }
}

fn print_banner(
    a: &DevArgs,
    root: &Path,
    temporary: bool,
    nodes: &[Node],
    addrs: &[String],
    leader: Option<u64>,
) {
    match leader {
        Some(l) => println!("raftkv dev: {} node(s) up; node {l} leads.", nodes.len()),
        None => println!(
            "raftkv dev: {} node(s) started, no leader yet (see the logs).",
            nodes.len()
        ),
    }
    println!();
    for n in nodes {
        println!(
            "  node {}  {}  peers {}  pid {}  data {}  log {}",
            n.id,
            n.addr,
            peer_addr_of(&n.addr).unwrap_or_default(),
            n.child.id().map_or("-".to_string(), |p| p.to_string()),
            n.data_dir.display(),
            n.log.display()
        );
    }
    if let Some(web) = nodes.first().and_then(|n| http_addr_of(&n.addr)) {
        println!();
        println!("  web page: http://{web}/  (every node serves one; metrics at /metrics)");
    }
    println!(
        "  peers authenticate with the secret in {}",
        root.join("cluster-secret").display()
    );
    println!();
    let endpoints = addrs.join(",");
    if endpoints != crate::DEFAULT_ENDPOINTS {
        println!("Point the client commands at this cluster first:");
        println!("  export RAFTKV_ENDPOINTS={endpoints}");
        println!();
    }
    println!("Try, in another terminal:");
    println!("  raftkv put greeting hello");
    println!("  raftkv get greeting");
    println!("  raftkv status");
    println!("  kill -9 <pid of the leader>   # then: raftkv status, raftkv get greeting");
    println!("  raftkv bench put --clients 64 --ops 20000");
    println!();
    if temporary {
        println!(
            "Data in {} (deleted on exit; use --data-dir to keep it).",
            root.display()
        );
    } else {
        println!("Data in {} (kept).", root.display());
    }
    let _ = a;
    println!("{}", crate::dev_support::DEV_COMMANDS_HELP);
    println!("Ctrl-C stops the cluster.");
}
