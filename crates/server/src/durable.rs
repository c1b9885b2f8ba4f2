//! Small files in the data dir written so that they survive a crash.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes `data` to `path` atomically and durably: to `<path>.tmp`,
/// fsynced, renamed over `path`, then the directory fsynced. A crash leaves
/// either the old file or the new one (and maybe a stale `.tmp`).
///
/// # Errors
/// The first I/O error.
pub(crate) fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp: PathBuf = path.to_path_buf();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    tmp.set_file_name(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
