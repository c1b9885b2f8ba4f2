//! Snapshot transfers spooled to disk while they arrive.
//!
//! A follower receiving a snapshot must not restore it before the last
//! chunk arrived (a transfer that breaks halfway would leave its state
//! machine half-replaced), and must not hold the whole image in memory
//! either (it is as large as the leader's data). So the gRPC task writes
//! each chunk to a file under `<data_dir>/recv/` as it arrives, and the
//! apply thread reads the chunks back one at a time to restore them: at
//! most one chunk (plus buffers) is in memory on either side.
//!
//! # Format
//!
//! A sequence of frames `len: u32 LE | chunk bytes`, in arrival order. The
//! file is temporary: it is not synced (a crash loses it, and the leader
//! sends the snapshot again), it is removed when its [`SpoolReader`] (or an
//! unfinished [`Spool`]) is dropped, and the node clears the directory when
//! it starts ([`clear`]).

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncWriteExt, BufWriter};

use crate::limits::PEER_MESSAGE_SIZE_MAX;

/// Removes and recreates the spool directory `dir` (leftovers of a crash).
pub(crate) fn clear(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)
}

/// A transfer being written.
pub(crate) struct Spool {
    path: PathBuf,
    file: Option<BufWriter<tokio::fs::File>>,
    bytes: u64,
}

impl Spool {
    /// Creates a new, empty spool file in `dir`.
    pub(crate) async fn create(dir: &Path) -> io::Result<Spool> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("snapshot-{}-{n}.recv", std::process::id()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(Spool {
            path,
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            bytes: 0,
        })
    }

    /// Appends one chunk.
    pub(crate) async fn push(&mut self, chunk: &[u8]) -> io::Result<()> {
        let len = u32::try_from(chunk.len())
            .ok()
            .filter(|&l| l as usize <= PEER_MESSAGE_SIZE_MAX)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "chunk too large"))?;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("spool already finished"))?;
        file.write_all(&len.to_le_bytes()).await?;
        file.write_all(chunk).await?;
        self.bytes += 4 + chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far (frames included).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes the file and opens it for reading from the start.
    pub(crate) async fn finish(mut self) -> io::Result<SpoolReader> {
        if let Some(mut f) = self.file.take() {
            f.flush().await?;
        }
        let path = std::mem::take(&mut self.path);
        let reader = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        Ok(SpoolReader {
            path,
            file: BufReader::with_capacity(256 * 1024, reader),
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A finished transfer, read back chunk by chunk (blocking reads: on the
/// apply thread). The file is removed when this is dropped.
pub(crate) struct SpoolReader {
    path: PathBuf,
    file: BufReader<std::fs::File>,
}

impl SpoolReader {
    /// The next chunk, or `None` after the last one.
    pub(crate) fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        match self.file.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > PEER_MESSAGE_SIZE_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("spooled chunk of {len} bytes: the spool file is damaged"),
            ));
        }
        let mut chunk = vec![0u8; len];
        self.file.read_exact(&mut chunk)?;
        Ok(Some(chunk))
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp dir (kept alive by the first) with an empty `recv/` in it.
    fn fresh_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("recv");
        clear(&d).unwrap();
        (dir, d)
    }

    #[tokio::test]
    async fn chunks_come_back_in_order_and_the_file_goes_away() {
        let (_dir, d) = fresh_dir();
        let chunks: Vec<Vec<u8>> = vec![b"first".to_vec(), Vec::new(), vec![7u8; 300_000]];
        let mut s = Spool::create(&d).await.unwrap();
        for c in &chunks {
            s.push(c).await.unwrap();
        }
        assert_eq!(s.bytes(), 12 + 5 + 300_000);
        let mut r = s.finish().await.unwrap();
        let mut back = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            back.push(c);
        }
        assert_eq!(back, chunks);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        drop(r);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn an_unfinished_spool_is_removed_and_clear_removes_leftovers() {
        let (_dir, d) = fresh_dir();
        let mut s = Spool::create(&d).await.unwrap();
        s.push(b"abc").await.unwrap();
        drop(s);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        std::fs::write(d.join("snapshot-1-1.recv"), b"left over").unwrap();
        clear(&d).unwrap();
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_damaged_length_is_an_error_not_an_allocation() {
        let (_dir, d) = fresh_dir();
        let mut s = Spool::create(&d).await.unwrap();
        s.push(b"abc").await.unwrap();
        let path = s.path.clone();
        let mut r = s.finish().await.unwrap();
        std::fs::write(&path, u32::MAX.to_le_bytes()).unwrap();
        let e = r.next_chunk().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
