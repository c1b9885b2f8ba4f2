//! Cluster control: `raftkv server` processes on loopback, started, killed
//! (SIGKILL), paused (SIGSTOP / SIGCONT), restarted on their data, or wiped.
//!
//! # Layout of a run folder
//!
//! ```text
//! <run_dir>/
//!   node-<id>/data/      the node's --data-dir (owned by the node's uid)
//!   node-<id>/node.log   stdout and stderr of every start, appended
//! ```
//!
//! Node `id` listens for clients on `127.0.0.(10+id):<port>` and for peers
//! on `<port> + 200`, the same ports for every node (see [`crate::net`]).
//! The nodes share a cluster secret (`<run_dir>/cluster-secret`). When `as_node_users` is set (the runner is
//! root) node `id` runs as uid and gid `node_uid(id)` so the firewall can
//! tell its connections apart. Each node runs in its own process group, so
//! a Ctrl-C in the terminal reaches only the runner, which then stops the
//! nodes itself. Dropping the [`Cluster`] SIGKILLs every node still running.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::error::{Error, Result};
use crate::net::{node_ip, node_uid};
use crate::rng::Rng;

/// How to start the nodes.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The `raftkv` binary.
    pub bin: PathBuf,
    /// The run folder (see the module docs).
    pub run_dir: PathBuf,
    /// Node ids, 1..=n.
    pub ids: Vec<u64>,
    /// Run node `id` as uid `node_uid(id)` (needs root).
    pub as_node_users: bool,
    /// Extra flags for `raftkv server` (tick length, snapshot threshold).
    pub extra_args: Vec<String>,
}

/// One node's process and files.
#[derive(Debug)]
struct Node {
    addr: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Started with `--join` once (after a wipe): always restart so, or an
    /// empty data dir would bootstrap a second cluster.
    joined: bool,
    starts: u32,
}

/// A running cluster (see the module docs).
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    port: u16,
    nodes: BTreeMap<u64, Node>,
    /// The cluster secret (hex), the same in every node's copy.
    secret: String,
}

/// How far a node's peer port is from its client port.
const PEER_PORT_OFFSET: u16 = 200;

/// A port free on every node address (and that + [`PEER_PORT_OFFSET`]),
/// drawn with `rng`.
fn free_port(ids: &[u64], rng: &mut Rng) -> Result<u16> {
    for _ in 0..200 {
        let port = rng.between(20_000, 59_000) as u16;
        let all_free = ids.iter().all(|&id| {
            [port, port + PEER_PORT_OFFSET]
                .iter()
                .all(|&p| TcpListener::bind(SocketAddr::new(node_ip(id).into(), p)).is_ok())
        });
        if all_free {
            return Ok(port);
        }
    }
    Err(Error::NotReady("no port free on every node address".into()))
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("create", path, e))
}

/// Gives `path` (recursively) to `uid`.
fn chown_tree(path: &Path, uid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
        .map_err(|e| Error::io("chown", path, e))?;
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| Error::io("read dir", path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read dir", path, e))?;
            chown_tree(&entry.path(), uid)?;
        }
    }
    Ok(())
}

impl Cluster {
    /// Prepares the run folder and picks a port; starts nothing.
    ///
    /// # Errors
    /// [`Error::Io`] when a folder cannot be made; [`Error::NotReady`]
    /// when no port is free.
    pub fn new(spec: ClusterSpec, seed: u64) -> Result<Cluster> {
        let mut rng = Rng::stream(seed ^ u64::from(std::process::id()), 0x9047);
        let port = free_port(&spec.ids, &mut rng)?;
        let mut nodes = BTreeMap::new();
        for &id in &spec.ids {
            let dir = spec.run_dir.join(format!("node-{id}"));
            let data_dir = dir.join("data");
            create_dir(&data_dir)?;
            if spec.as_node_users {
                chown_tree(&data_dir, node_uid(id))?;
            }
            nodes.insert(
                id,
                Node {
                    addr: format!("{}:{port}", node_ip(id)),
                    data_dir,
                    log_path: dir.join("node.log"),
                    child: None,
                    paused: false,
                    joined: false,
                    starts: 0,
                },
            );
        }
        let mut bytes = [0u8; 24];
        {
            use std::io::Read;
            let path = Path::new("/dev/urandom");
            File::open(path)
                .and_then(|mut f| f.read_exact(&mut bytes))
                .map_err(|e| Error::io("read", path, e))?;
        }
        let secret = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Cluster {
            spec,
            port,
            nodes,
            secret,
        })
    }

    /// The port every node listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every node id.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// Node `id`'s client address, `ip:port`.
    pub fn addr(&self, id: u64) -> String {
        format!("{}:{}", node_ip(id), self.port)
    }

    /// Node `id`'s peer address, `ip:port+200` (what `add-learner` takes).
    pub fn peer_addr(&self, id: u64) -> String {
        format!("{}:{}", node_ip(id), self.port + PEER_PORT_OFFSET)
    }

    /// Every node's address.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.addr.clone()).collect()
    }

    /// `1=ip:peer-port,2=ip:peer-port,...` for `--peers`.
    pub fn peers_arg(&self) -> String {
        self.nodes
            .keys()
            .map(|&id| format!("{id}={}", self.peer_addr(id)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Writes the cluster secret file (mode 600, readable by the node
    /// users: each node gets its own copy in its folder).
    fn secret_file(&self, id: u64) -> Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.spec.run_dir.join(format!("node-{id}"));
        let path = dir.join("cluster-secret");
        if !path.exists() {
            let secret = format!("{}\n", self.secret);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| Error::io("create", &path, e))?;
            f.write_all(secret.as_bytes())
                .map_err(|e| Error::io("write", &path, e))?;
            if self.spec.as_node_users {
                chown_tree(&path, node_uid(id))?;
            }
        }
        Ok(path)
    }

    /// The node's log file.
    pub fn log_path(&self, id: u64) -> Option<&Path> {
        self.nodes.get(&id).map(|n| n.log_path.as_path())
    }

    fn node(&mut self, id: u64) -> Result<&mut Node> {
        self.nodes.get_mut(&id).ok_or(Error::Process {
            id,
            reason: "no such node".into(),
        })
    }

    /// Whether node `id`'s process is running (paused or not).
    pub fn is_running(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.child.is_some())
    }

    /// Whether node `id` is paused.
    pub fn is_paused(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.paused)
    }

    /// Starts node `id` on its data dir. `join`: start empty and wait to be
    /// added (after a wipe); once set it sticks for later restarts.
    ///
    /// # Errors
    /// [`Error::Process`] when it is running already or cannot be spawned.
    pub fn start(&mut self, id: u64, join: bool) -> Result<()> {
        let bin = self.spec.bin.clone();
        let extra = self.spec.extra_args.clone();
        let as_user = self.spec.as_node_users;
        let peers = self.peers_arg();
        let peer_listen = self.peer_addr(id);
        let secret = self.secret_file(id)?;
        let node = self.node(id)?;
        if node.child.is_some() {
            return Err(Error::Process {
                id,
                reason: "already running".into(),
            });
        }
        node.joined |= join;
        node.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| Error::io("open", &node.log_path, e))?;
        let _ = writeln!(
            log,
            "=== chaos: start #{} of node {id} (join: {}) ===",
            node.starts, node.joined
        );
        let err_log = log
            .try_clone()
            .map_err(|e| Error::io("dup", &node.log_path, e))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("server")
            .args(["--id", &id.to_string()])
            .args(["--listen", &node.addr])
            .args(["--peer-listen", &peer_listen])
            .args(["--peers", &peers])
            .arg("--cluster-secret-file")
            .arg(&secret)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(&extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .env("HOME", &node.data_dir)
            .process_group(0)
            .kill_on_drop(true);
        if node.joined {
            cmd.arg("--join");
        } else {
            // Makes the cluster on the first start; restarts (the data dir
            // exists) ignore it.
            cmd.arg("--bootstrap");
        }
        if as_user {
            cmd.uid(node_uid(id)).gid(node_uid(id));
        }
        let child = cmd.spawn().map_err(|e| Error::Process {
            id,
            reason: format!("spawn {}: {e}", bin.display()),
        })?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    fn signal(&mut self, id: u64, sig: libc::c_int) -> Result<()> {
        let node = self.node(id)?;
        let pid = node
            .child
            .as_ref()
            .and_then(Child::id)
            .ok_or(Error::Process {
                id,
                reason: "not running".into(),
            })?;
        let pid = libc::pid_t::try_from(pid).map_err(|_| Error::Process {
            id,
            reason: format!("pid {pid} out of range"),
        })?;
        // SAFETY: kill(2) with a pid we spawned and have not reaped (the
        // Child is still held, so the pid cannot have been reused).
        let rc = unsafe { libc::kill(pid, sig) };
        if rc != 0 {
            return Err(Error::Process {
                id,
                reason: format!("kill({pid}, {sig}): {}", std::io::Error::last_os_error()),
            });
        }
        Ok(())
    }

    /// SIGKILLs node `id` (paused or not) and reaps it.
    ///
    /// # Errors
    /// [`Error::Process`] when it is not running.
    pub async fn kill(&mut self, id: u64) -> Result<()> {
        self.signal(id, libc::SIGKILL)?;
        let node = self.node(id)?;
        if let Some(mut child) = node.child.take() {
            let _ = child.wait().await;
        }
        node.paused = false;
        Ok(())
    }

    /// SIGSTOPs node `id`.
    ///
    /// # Errors
    /// [`Error::Process`] when it is not running.
    pub fn pause(&mut self, id: u64) -> Result<()> {
        self.signal(id, libc::SIGSTOP)?;
        self.node(id)?.paused = true;
        Ok(())
    }

    /// SIGCONTs node `id`.
    ///
    /// # Errors
    /// [`Error::Process`] when it is not running.
    pub fn resume(&mut self, id: u64) -> Result<()> {
        self.signal(id, libc::SIGCONT)?;
        self.node(id)?.paused = false;
        Ok(())
    }

    /// Deletes node `id`'s data and makes an empty data dir. The node must
    /// be stopped.
    ///
    /// # Errors
    /// [`Error::Process`] when it runs; [`Error::Io`] on a file error.
    pub fn wipe(&mut self, id: u64) -> Result<()> {
        let as_user = self.spec.as_node_users;
        let node = self.node(id)?;
        if node.child.is_some() {
            return Err(Error::Process {
                id,
                reason: "cannot wipe a running node".into(),
            });
        }
        let dir = node.data_dir.clone();
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
        create_dir(&dir)?;
        if as_user {
            chown_tree(&dir, node_uid(id))?;
        }
        Ok(())
    }

    /// Nodes whose process ended without being killed by us, with how.
    pub fn reap_exited(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for (id, node) in &mut self.nodes {
            let exited = match node.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(format!("wait failed: {e}")),
                _ => None,
            };
            if let Some(how) = exited {
                node.child = None;
                node.paused = false;
                out.push((*id, how));
            }
        }
        out
    }

    /// SIGKILLs every node still running and reaps them.
    pub async fn stop_all(&mut self) {
        for id in self.ids() {
            if self.is_running(id) {
                let _ = self.kill(id).await;
            }
        }
    }

    /// The last `max` bytes of node `id`'s log (for failure reports).
    pub fn log_tail(&self, id: u64, max: u64) -> String {
        let Some(path) = self.log_path(id) else {
            return String::new();
        };
        let Ok(mut f) = File::open(path) else {
            return String::new();
        };
        use std::io::{Read, Seek, SeekFrom};
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(child) = node.child.as_mut() {
                // SIGKILL also ends a stopped process.
                let _ = child.start_kill();
            }
        }
    }
}
