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
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

/// The size of a WAL segment's header (the `wal` crate's
/// `SEGMENT_HEADER_SIZE`): cuts land past it.
const WAL_SEGMENT_HEADER: u64 = 32;

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

/// The length of `path` (`len` bytes) without its trailing zero bytes.
fn written_len(path: &Path, len: u64) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(chunk))
            .map_err(|e| Error::io("read", path, e))?;
        if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
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

    /// Whether node `id` starts with `--join` (it was wiped and rejoined).
    pub fn is_joined(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.joined)
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
        self.spawn(id, id, join)
    }

    /// Starts node `id`'s data dir with `--id as_id` (another id: the start
    /// must be refused). Its flags are otherwise the usual ones; `join` is
    /// not changed for later starts.
    ///
    /// # Errors
    /// As [`Cluster::start`].
    pub fn start_as(&mut self, id: u64, as_id: u64) -> Result<()> {
        let joined = self.node(id)?.joined;
        self.spawn(id, as_id, joined)
    }

    fn spawn(&mut self, id: u64, as_id: u64, join: bool) -> Result<()> {
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
        if as_id == id {
            node.joined |= join;
        }
        let join = node.joined || join;
        node.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| Error::io("open", &node.log_path, e))?;
        let _ = writeln!(
            log,
            "=== chaos: start #{} of node {id} as --id {as_id} (join: {join}) ===",
            node.starts
        );
        let err_log = log
            .try_clone()
            .map_err(|e| Error::io("dup", &node.log_path, e))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("server")
            .args(["--id", &as_id.to_string()])
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
        if join {
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
        self.empty_data_dir(id, false).map(|_| ())
    }

    /// Moves node `id`'s data dir aside (to `data.damaged-<start count>`,
    /// kept for inspection) and makes an empty one; returns where it went.
    /// The node must be stopped.
    ///
    /// # Errors
    /// [`Error::Process`] when it runs; [`Error::Io`] on a file error.
    pub fn set_aside(&mut self, id: u64) -> Result<PathBuf> {
        self.empty_data_dir(id, true)
            .map(|aside| aside.unwrap_or_default())
    }

    /// Empties node `id`'s data dir: deletes it, or with `keep` moves it
    /// aside (returning where).
    fn empty_data_dir(&mut self, id: u64, keep: bool) -> Result<Option<PathBuf>> {
        let as_user = self.spec.as_node_users;
        let node = self.node(id)?;
        if node.child.is_some() {
            return Err(Error::Process {
                id,
                reason: "cannot empty the data dir of a running node".into(),
            });
        }
        let dir = node.data_dir.clone();
        let aside = if keep {
            let aside = dir.with_file_name(format!("data.damaged-{}", node.starts));
            std::fs::rename(&dir, &aside).map_err(|e| Error::io("rename", &dir, e))?;
            Some(aside)
        } else {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
            None
        };
        create_dir(&dir)?;
        if as_user {
            chown_tree(&dir, node_uid(id))?;
        }
        Ok(aside)
    }

    /// Waits up to `within` for node `id`'s process to end and reaps it:
    /// `Some(how it ended)`, or `None` when it still runs (or never ran).
    pub async fn wait_exit(&mut self, id: u64, within: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + within;
        loop {
            let node = self.nodes.get_mut(&id)?;
            let child = node.child.as_mut()?;
            match child.try_wait() {
                Ok(Some(status)) => {
                    node.child = None;
                    node.paused = false;
                    return Some(status);
                }
                Ok(None) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return None,
            }
        }
    }

    /// Cuts node `id`'s newest WAL segment (`<data_dir>/wal/*.wal`) to a
    /// length drawn with `pick` past the segment header; returns the file,
    /// its old and its new length. The node must be stopped.
    ///
    /// # Errors
    /// [`Error::Process`] when it runs or has no segment; [`Error::Io`].
    pub fn truncate_wal(&mut self, id: u64, pick: u64) -> Result<(PathBuf, u64, u64)> {
        let node = self.node(id)?;
        if node.child.is_some() {
            return Err(Error::Process {
                id,
                reason: "cannot cut the WAL of a running node".into(),
            });
        }
        let dir = node.data_dir.join("wal");
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("read dir", &dir, e))?;
        let mut newest: Option<PathBuf> = None;
        for entry in entries {
            let path = entry.map_err(|e| Error::io("read dir", &dir, e))?.path();
            // Segment names are zero-padded sequence numbers: the greatest
            // name is the newest segment.
            let is_segment = path.extension().is_some_and(|x| x == "wal");
            if is_segment && newest.as_ref().is_none_or(|n| path > *n) {
                newest = Some(path);
            }
        }
        let path = newest.ok_or_else(|| Error::Process {
            id,
            reason: format!("no WAL segment in {}", dir.display()),
        })?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        // Segments are preallocated with zeros: cut inside the written part
        // (up to the last non-zero byte), where the records are.
        let written = written_len(&path, len)?;
        if written <= WAL_SEGMENT_HEADER {
            return Err(Error::Process {
                id,
                reason: format!("{} holds no record to cut", path.display()),
            });
        }
        let cut = WAL_SEGMENT_HEADER + pick % (written - WAL_SEGMENT_HEADER);
        file.set_len(cut)
            .map_err(|e| Error::io("truncate", &path, e))?;
        file.sync_all().map_err(|e| Error::io("sync", &path, e))?;
        Ok((path, len, cut))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_len_skips_the_preallocated_zeros() {
        let dir = std::env::temp_dir().join(format!("chaos-written-len-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("1.wal");
        // A record ending at byte 1_500_000 of a 3 MiB file (spans chunks).
        let mut bytes = vec![0u8; 3 << 20];
        bytes[..8].copy_from_slice(b"RKVWAL\r\n");
        bytes[1_499_999] = 7;
        std::fs::write(&path, &bytes).unwrap_or_default();
        let len = bytes.len() as u64;
        assert_eq!(written_len(&path, len).ok(), Some(1_500_000));
        std::fs::write(&path, vec![0u8; 4096]).unwrap_or_default();
        assert_eq!(written_len(&path, 4096).ok(), Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
