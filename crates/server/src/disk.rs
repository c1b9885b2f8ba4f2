//! Free space on the data dir's volume, and the reserve that keeps a node
//! from running out of it.
//!
//! A node whose WAL or state machine cannot write stops (a failed write or
//! fsync may leave it diverged otherwise). So a leader refuses new writes
//! while its data dir's volume has less than `storage.disk_reserve_bytes`
//! free (by default one WAL segment: room for the next preallocation): the
//! client gets `RESOURCE_EXHAUSTED` with the `raftkv-error: disk-full`
//! metadata and a message naming the node and the numbers, status shows
//! the free space, and the log says so once each time the volume crosses
//! the reserve. Reads go on. Writes resume by themselves once space is
//! freed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::Status;

/// How long a free-space figure is reused before `statvfs` is asked again.
const DISK_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// Bytes available to this process on the volume holding `path`.
///
/// # Errors
/// The path cannot be examined.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the
    // call, and `st` points to writable memory of the right type and size;
    // statvfs(3) writes only into it.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct (and it was
    // zeroed before, so every field is initialized either way).
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (u32 or u64).
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

/// The free-space check of one data dir.
#[derive(Debug)]
pub struct DiskGuard {
    dir: PathBuf,
    reserve: u64,
    /// The last figure and when it was taken.
    last: Mutex<Option<(Instant, u64)>>,
    /// Below the reserve at the last look (for logging transitions).
    low: AtomicBool,
}

impl DiskGuard {
    /// A guard keeping `reserve` bytes free on `dir`'s volume (0: off).
    pub fn new(dir: &Path, reserve: u64) -> DiskGuard {
        DiskGuard {
            dir: dir.to_path_buf(),
            reserve,
            last: Mutex::new(None),
            low: AtomicBool::new(false),
        }
    }

    /// The reserve, in bytes.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Free bytes now (at most [`DISK_CHECK_INTERVAL`] old); `None` when
    /// the volume cannot be examined.
    pub fn free(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().ok()?;
        if let Some((at, free)) = *last {
            if now.duration_since(at) < DISK_CHECK_INTERVAL {
                return Some(free);
            }
        }
        let free = free_bytes(&self.dir).ok()?;
        *last = Some((now, free));
        Some(free)
    }

    /// Whether the volume is below the reserve, logging each change.
    pub fn low(&self, node: u64) -> bool {
        let low = self.reserve > 0 && self.free().is_some_and(|f| f < self.reserve);
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::warn!(node, dir = %self.dir.display(), free = self.free().unwrap_or(0),
                    reserve = self.reserve, "disk nearly full: refusing writes until space is freed");
            } else {
                tracing::info!(node, dir = %self.dir.display(), "disk space back above the reserve: taking writes");
            }
        }
        low
    }

    /// `Ok` if a write may go ahead, else the answer naming the problem.
    ///
    /// # Errors
    /// `RESOURCE_EXHAUSTED` with `raftkv-error: disk-full`.
    pub fn check_write(&self, node: u64) -> Result<(), Status> {
        if !self.low(node) {
            return Ok(());
        }
        let mut status = Status::resource_exhausted(format!(
            "disk nearly full on node {node}: {} bytes free in {}, below the reserve of {} \
             (storage.disk_reserve_bytes); free space there, then retry",
            self.free().unwrap_or(0),
            self.dir.display(),
            self.reserve
        ));
        status.metadata_mut().insert(
            proto::kv::ERROR_METADATA,
            tonic::metadata::MetadataValue::from_static(proto::kv::DISK_FULL),
        );
        Err(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_and_the_reserve_applies() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let free = match free_bytes(dir.path()) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert!(free > 0);
        assert!(
            DiskGuard::new(dir.path(), 0).check_write(1).is_ok(),
            "0 is off"
        );
        assert!(DiskGuard::new(dir.path(), 1).check_write(1).is_ok());
        let e = match DiskGuard::new(dir.path(), u64::MAX).check_write(7) {
            Ok(()) => panic!("a reserve above the disk passed"),
            Err(e) => e,
        };
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("disk nearly full on node 7"), "{e:?}");
        assert_eq!(
            e.metadata()
                .get(proto::kv::ERROR_METADATA)
                .map(|v| v.as_bytes()),
            Some(proto::kv::DISK_FULL.as_bytes())
        );
        assert!(free_bytes(Path::new("/nonexistent/raftkv")).is_err());
    }
}
