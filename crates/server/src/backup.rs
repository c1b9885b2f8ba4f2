//! Backups: a consistent point-in-time copy of a running cluster's state
//! (`raftkv snapshot save FILE`), and new data dirs seeded from one
//! (`raftkv snapshot restore FILE`), so a destroyed cluster can be rebuilt.
//!
//! # Taking one
//!
//! The `Cluster/Backup` call ([`serve`]) runs on the leader: a ReadIndex
//! round (as for a linearizable read) makes sure every write acknowledged
//! before the call is applied, then the state machine's point-in-time image
//! (`kv::SnapshotStream`, the same one a lagging follower receives) is
//! streamed at its applied index. Writes go on meanwhile; they are not in
//! the copy.
//!
//! # File format (version 1)
//!
//! ```text
//! 0..8     magic "RKVBAK01"
//! 8..16    applied index of the image (u64 LE)
//! 16..24   term of that entry (u64 LE)
//! then per chunk: length n (u32 LE, 1..=BACKUP_CHUNK_BYTES_MAX), n bytes
//! then:    0 (u32 LE): the end
//! then:    CRC-32C of every byte before it (u32 LE)
//! ```
//!
//! # Restoring
//!
//! [`restore_data_dir`] checks the whole file's checksum first, then writes
//! a new node's data dir: the state machine restored from the chunks (at
//! the backup's index `I`), and a WAL holding only a snapshot at `I` whose
//! configuration is the new cluster's voters. Every node of the new cluster
//! is restored from the same file, so all start with the same state and
//! log position; they elect a leader and go on from `I + 1`. Node ids and
//! addresses may differ from the old cluster's.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use proto::kv as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::descriptor::Descriptor;
use crate::error::ServerError;
use crate::limits::{BACKUP_CHUNKS_IN_FLIGHT_MAX, BACKUP_CHUNK_BYTES, BACKUP_CHUNK_BYTES_MAX};
use crate::service::Handle;

const MAGIC: &[u8; 8] = b"RKVBAK01";

/// The stream a `Backup` call answers with.
pub type BackupStream = ReceiverStream<Result<pb::BackupChunk, Status>>;

/// Serves a `Backup` call: confirms leadership and waits for the applied
/// index as a linearizable read does, then streams the state machine's
/// image from a blocking thread through a bounded channel.
pub(crate) async fn serve(handle: &Handle) -> Result<BackupStream, Status> {
    handle.read_barrier(false).await?;
    let stream = handle
        .reader
        .snapshot_with_chunk_size(BACKUP_CHUNK_BYTES)
        .map_err(|e| Status::internal(format!("cannot read the state machine: {e}")))?;
    let (index, term) = (stream.index(), stream.term());
    tracing::info!(node = handle.id, index, term, "streaming a backup");
    let (tx, rx) = mpsc::channel(BACKUP_CHUNKS_IN_FLIGHT_MAX);
    tokio::task::spawn_blocking(move || {
        for chunk in stream {
            let msg = chunk
                .map(|data| pb::BackupChunk {
                    data: data.into(),
                    index,
                    term,
                })
                .map_err(|e| Status::internal(format!("reading the state machine: {e}")));
            let failed = msg.is_err();
            // A closed channel: the client went away.
            if tx.blocking_send(msg).is_err() || failed {
                break;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// Why a backup file cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a raftkv backup (bad magic)")]
    Magic,
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("the backup is damaged: checksum {found:08x}, expected {expected:08x}")]
    Checksum { found: u32, expected: u32 },
}

/// Writes a backup file: [`new`](BackupWriter::new), then each chunk, then
/// [`finish`](BackupWriter::finish).
pub struct BackupWriter<W: Write> {
    out: W,
    crc: u32,
    bytes: u64,
}

impl<W: Write> BackupWriter<W> {
    /// Starts a backup of the image at `index` (of term `term`).
    ///
    /// # Errors
    /// A write error.
    pub fn new(out: W, index: u64, term: u64) -> Result<Self, BackupError> {
        let mut w = BackupWriter {
            out,
            crc: 0,
            bytes: 0,
        };
        w.put(MAGIC)?;
        w.put(&index.to_le_bytes())?;
        w.put(&term.to_le_bytes())?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<(), BackupError> {
        self.out.write_all(b)?;
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.bytes += b.len() as u64;
        Ok(())
    }

    /// Appends one chunk.
    ///
    /// # Errors
    /// An empty or over-large chunk, or a write error.
    pub fn chunk(&mut self, data: &[u8]) -> Result<(), BackupError> {
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&n| n > 0 && n as usize <= BACKUP_CHUNK_BYTES_MAX)
            .ok_or_else(|| BackupError::Damaged(format!("a chunk of {} bytes", data.len())))?;
        self.put(&len.to_le_bytes())?;
        self.put(data)
    }

    /// Ends the file; returns its checksum and size, and the writer.
    ///
    /// # Errors
    /// A write error.
    pub fn finish(mut self) -> Result<(u32, u64, W), BackupError> {
        self.put(&0u32.to_le_bytes())?;
        let crc = self.crc;
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.flush()?;
        Ok((crc, self.bytes + 4, self.out))
    }
}

/// What a backup file holds, from its header, once its checksum checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    pub index: u64,
    pub term: u64,
    pub chunks: u64,
    pub crc: u32,
}

/// Reads a backup file's chunks in order, checking each length; the
/// checksum is checked when the end marker is reached.
struct BackupReader<R: Read> {
    input: R,
    crc: u32,
    index: u64,
    term: u64,
    chunks: u64,
    done: bool,
}

impl<R: Read> BackupReader<R> {
    fn new(input: R) -> Result<Self, BackupError> {
        let mut r = BackupReader {
            input,
            crc: 0,
            index: 0,
            term: 0,
            chunks: 0,
            done: false,
        };
        let mut header = [0u8; 24];
        r.take(&mut header)?;
        if &header[..8] != MAGIC {
            return Err(BackupError::Magic);
        }
        r.index = u64_at(&header[8..16]);
        r.term = u64_at(&header[16..24]);
        Ok(r)
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => BackupError::Damaged("truncated".into()),
            _ => BackupError::Io(e),
        })?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }

    /// The next chunk, or `None` after the end marker and a good checksum.
    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, BackupError> {
        if self.done {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.take(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 {
            let expected = self.crc;
            let mut stored = [0u8; 4];
            self.input
                .read_exact(&mut stored)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => BackupError::Damaged("truncated".into()),
                    _ => BackupError::Io(e),
                })?;
            let found = u32::from_le_bytes(stored);
            if found != expected {
                return Err(BackupError::Checksum { found, expected });
            }
            let mut extra = [0u8; 1];
            if self.input.read(&mut extra)? != 0 {
                return Err(BackupError::Damaged("bytes after the checksum".into()));
            }
            self.done = true;
            return Ok(None);
        }
        if len > BACKUP_CHUNK_BYTES_MAX {
            return Err(BackupError::Damaged(format!("a chunk of {len} bytes")));
        }
        let mut data = vec![0u8; len];
        self.take(&mut data)?;
        self.chunks += 1;
        Ok(Some(data))
    }
}

fn u64_at(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Reads the whole backup at `path` and checks its framing and checksum.
///
/// # Errors
/// [`BackupError`] naming what is wrong.
pub fn verify(path: &Path) -> Result<BackupInfo, BackupError> {
    let file = std::fs::File::open(path)?;
    let mut r = BackupReader::new(std::io::BufReader::new(file))?;
    while r.next_chunk()?.is_some() {}
    Ok(BackupInfo {
        index: r.index,
        term: r.term,
        chunks: r.chunks,
        crc: r.crc,
    })
}

/// Seeds the data dir of node `id` of a new cluster whose voters are
/// `peers` (id -> address; `id` among them) from the backup at `path`.
/// The directory must not exist or be empty. See the module docs.
///
/// # Errors
/// A damaged backup (nothing is written then), a non-empty directory, or a
/// storage error.
pub fn restore_data_dir(
    path: &Path,
    data_dir: &Path,
    id: u64,
    peers: &BTreeMap<u64, String>,
) -> Result<BackupInfo, ServerError> {
    let bad = |e: BackupError| backup_error(path, e);
    if id == 0 || !peers.contains_key(&id) {
        return Err(ServerError::Config(crate::ConfigError::Invalid {
            field: "peers",
            reason: format!("node {id} must be one of the voters given"),
        }));
    }
    let info = verify(path).map_err(bad)?;
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ServerError::Io {
            path: data_dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "not empty: restore into a new data dir",
            ),
        });
    }
    let existed = data_dir.exists();
    let r = write_data_dir(path, data_dir, &info, peers);
    if r.is_err() {
        // Leave nothing half-written behind (the directory was empty).
        let _ = if existed {
            std::fs::remove_dir_all(data_dir.join("kv"))
                .and_then(|()| std::fs::remove_dir_all(data_dir.join("wal")))
        } else {
            std::fs::remove_dir_all(data_dir)
        };
    }
    r.map(|()| info)
}

/// The writing part of [`restore_data_dir`], into an empty `data_dir`.
fn write_data_dir(
    path: &Path,
    data_dir: &Path,
    info: &BackupInfo,
    peers: &BTreeMap<u64, String>,
) -> Result<(), ServerError> {
    let bad = |e: BackupError| backup_error(path, e);
    let kv_dir = data_dir.join("kv");
    let wal_dir = data_dir.join("wal");
    for d in [&kv_dir, &wal_dir] {
        std::fs::create_dir_all(d).map_err(|e| ServerError::io(d, e))?;
    }
    // The state machine, from the chunks.
    let engine = bitcask::Bitcask::open(&kv_dir, bitcask::Options::default())
        .map_err(|e| ServerError::StateMachine(format!("open {}: {e}", kv_dir.display())))?;
    let mut sm = kv::StateMachine::open(Arc::new(engine))
        .map_err(|e| ServerError::StateMachine(e.to_string()))?;
    let file = std::fs::File::open(path).map_err(|e| ServerError::io(path, e))?;
    let mut reader = BackupReader::new(std::io::BufReader::new(file)).map_err(bad)?;
    let first = reader
        .next_chunk()
        .map_err(bad)?
        .ok_or_else(|| bad(BackupError::Damaged("no chunks".into())))?;
    let sm_err = |e: kv::FatalError| ServerError::StateMachine(e.to_string());
    let mut restore = sm.begin_restore(&first).map_err(sm_err)?;
    while let Some(chunk) = reader.next_chunk().map_err(bad)? {
        restore.push(&chunk).map_err(sm_err)?;
    }
    let index = restore.finish().map_err(sm_err)?;
    sm.sync().map_err(sm_err)?;
    if index != info.index {
        return Err(bad(BackupError::Damaged(format!(
            "the image is at index {index}, its header says {}",
            info.index
        ))));
    }
    drop(sm);
    // The log: a snapshot at the image's index with the new voters.
    let (mut wal, _) =
        wal::Wal::open(&wal_dir, wal::Options::default()).map_err(|e| storage(&e))?;
    let desc = Descriptor {
        state_index: index,
        addrs: peers.clone(),
    };
    let term = info.term.max(1);
    wal.install_snapshot(raft::Snapshot {
        meta: raft::SnapshotMeta {
            index,
            term,
            conf: raft::ConfState::with_voters(peers.keys().copied()),
        },
        data: desc.encode(),
    })
    .map_err(|e| storage(&e))?;
    wal.save_hard_state(&raft::HardState {
        term,
        vote: None,
        commit: index,
    })
    .map_err(|e| storage(&e))?;
    wal.sync().map_err(|e| storage(&e))?;
    Ok(())
}

/// A backup file's problem as a node error naming the file.
fn backup_error(path: &Path, e: BackupError) -> ServerError {
    match e {
        BackupError::Io(e) => ServerError::io(path, e),
        e => ServerError::StateMachine(format!("backup {}: {e}", path.display())),
    }
}

fn storage(e: &dyn std::fmt::Display) -> ServerError {
    ServerError::Storage(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_backup(chunks: &[&[u8]]) -> Vec<u8> {
        let mut w = match BackupWriter::new(Vec::new(), 42, 3) {
            Ok(w) => w,
            Err(e) => panic!("{e}"),
        };
        for c in chunks {
            if let Err(e) = w.chunk(c) {
                panic!("{e}");
            }
        }
        match w.finish() {
            Ok((_, _, out)) => out,
            Err(e) => panic!("{e}"),
        }
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Vec<u8>>, BackupError> {
        let mut r = BackupReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk()? {
            out.push(c);
        }
        assert_eq!((r.index, r.term), (42, 3));
        Ok(out)
    }

    #[test]
    fn a_backup_reads_back_its_chunks() {
        let b = write_backup(&[b"one", b"two two"]);
        assert_eq!(
            read_all(&b).map_err(|e| e.to_string()),
            Ok(vec![b"one".to_vec(), b"two two".to_vec()])
        );
    }

    #[test]
    fn a_failed_restore_leaves_no_data_dir() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        // Well framed, checksum right, but not a state machine image.
        let file = dir.path().join("bad.rkv");
        if let Err(e) = std::fs::write(&file, write_backup(&[b"not an image"])) {
            panic!("{e}");
        }
        let target = dir.path().join("node");
        let peers = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
        assert!(restore_data_dir(&file, &target, 1, &peers).is_err());
        assert!(!target.exists(), "a half-written data dir was left");
        // Node 2 is not among the voters given.
        assert!(restore_data_dir(&file, &target, 2, &peers).is_err());
    }

    #[test]
    fn every_damage_is_caught() {
        let b = write_backup(&[b"one", b"two two"]);
        // Any flipped byte: a bad magic, a bad length, or a bad checksum.
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x40;
            assert!(read_all(&d).is_err(), "flip at {i} not caught");
        }
        // Any truncation, and bytes appended.
        for n in 0..b.len() {
            assert!(read_all(&b[..n]).is_err(), "cut at {n} not caught");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(read_all(&longer).is_err());
        assert!(matches!(
            read_all(b"RKVBAK02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
            Err(BackupError::Magic)
        ));
    }
}
