//! Opening a directory: finish an interrupted merge, load the keydir from
//! hint files (or by scanning data files), cut a torn tail off the active
//! file. See the crate docs, "Recovery".

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};

use crate::bitcask::{Bitcask, Entry, Keydir, Options, RecoveryReport, State, Writer};
use crate::error::{Error, IoContext, Result};
use crate::file::{self, DataFile};
use crate::format::{self, FLAG_TOMBSTONE};
use crate::limits;

/// The name of the merge manifest (see the crate docs, "Merge").
pub const MANIFEST: &str = "MERGE";
const LOCK: &str = "LOCK";

/// An exclusive `flock` on `dir/LOCK`, held while the engine is open.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        // SAFETY: `flock` only reads the file descriptor, which `file` keeps
        // open for the duration of the call; it touches no memory of ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(Error::Locked { path });
        }
        Ok(DirLock { _file: file })
    }
}

/// Files found in the directory.
#[derive(Default)]
struct Listing {
    data: BTreeSet<u32>,
    hints: BTreeSet<u32>,
    tmp: Vec<PathBuf>,
    manifest: bool,
}

fn list(dir: &Path) -> Result<Listing> {
    let mut l = Listing::default();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            l.tmp.push(entry.path());
        } else if name == MANIFEST {
            l.manifest = true;
        } else if let Some((stem, ext)) = name.split_once('.') {
            let Ok(id) = stem.parse::<u32>() else {
                continue;
            };
            match ext {
                "data" => l.data.insert(id),
                "hint" => l.hints.insert(id),
                _ => continue,
            };
        }
    }
    Ok(l)
}

/// Removes a file; one that is already gone is fine.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(path),
        _ => Ok(()),
    }
}

/// Finishes a merge whose manifest was committed: deletes the data and hint
/// files it replaced, then the manifest.
pub fn finish_merge(dir: &Path, replaced: &[u32]) -> Result<()> {
    for &id in replaced {
        remove_if_exists(&file::data_path(dir, id))?;
        remove_if_exists(&file::hint_path(dir, id))?;
    }
    file::sync_dir(dir)?;
    remove_if_exists(&dir.join(MANIFEST))?;
    file::sync_dir(dir)
}

/// One record's place, as loaded from a hint file or a scan. The key
/// borrows the loaded hint bytes, and its first 16 bytes are copied inline
/// (`prefix`, big-endian, zero-padded): sorting, deduplicating and
/// allocating the keydir's keys then rarely touch the borrowed bytes, which
/// lie in file order, not key order (each touch is a cache miss). This is
/// what keeps a restart with a million keys well under a second.
struct Loaded<'a> {
    prefix: u128,
    key: &'a [u8],
    entry: Entry,
    tombstone: bool,
}

/// Key bytes `Loaded::prefix` holds.
const PREFIX_LEN: usize = 16;

impl<'a> Loaded<'a> {
    fn new(key: &'a [u8], entry: Entry, tombstone: bool) -> Self {
        let mut p = [0u8; PREFIX_LEN];
        let n = key.len().min(PREFIX_LEN);
        p[..n].copy_from_slice(&key[..n]);
        Loaded {
            prefix: u128::from_be_bytes(p),
            key,
            entry,
            tombstone,
        }
    }

    /// Orders by key. Zero-padding keeps the prefix order consistent with
    /// the keys' order; two keys that fit the prefix and share it differ
    /// only in trailing zeros, so the shorter one is first.
    fn cmp_key(&self, other: &Self) -> std::cmp::Ordering {
        self.prefix.cmp(&other.prefix).then_with(|| {
            if self.key.len() <= PREFIX_LEN && other.key.len() <= PREFIX_LEN {
                self.key.len().cmp(&other.key.len())
            } else {
                self.key.cmp(other.key)
            }
        })
    }

    /// The key as a new `Arc`, copied from the prefix when it fits.
    fn arc_key(&self) -> Arc<[u8]> {
        if self.key.len() <= PREFIX_LEN {
            Arc::from(&self.prefix.to_be_bytes()[..self.key.len()])
        } else {
            Arc::from(self.key)
        }
    }
}

/// Where a data file's entries come from.
enum Source {
    /// A hint file that passed its checks.
    Hint {
        id: u32,
        path: PathBuf,
        bytes: Vec<u8>,
    },
    /// A scan of the data file.
    Scan {
        id: u32,
        entries: Vec<format::HintEntry>,
    },
}

pub fn open(dir: &Path, options: Options) -> Result<Bitcask> {
    if options.file_size_max <= format::HEADER_LEN as u64
        || options.file_size_max > limits::file_size_max
    {
        return Err(Error::InvalidOptions(format!(
            "file_size_max {} is outside {}..={}",
            options.file_size_max,
            format::HEADER_LEN + 1,
            limits::file_size_max
        )));
    }
    fs::create_dir_all(dir).at(dir)?;
    let lock = DirLock::acquire(dir)?;
    let mut report = RecoveryReport::default();

    let mut l = list(dir)?;
    if l.manifest {
        let path = dir.join(MANIFEST);
        let bytes = fs::read(&path).at(&path)?;
        let replaced = format::decode_manifest(&path, &bytes)?;
        finish_merge(dir, &replaced)?;
        report.merge_finished = true;
        l = list(dir)?;
    }
    for tmp in &l.tmp {
        remove_if_exists(tmp)?;
    }
    for id in l.hints.difference(&l.data) {
        remove_if_exists(&file::hint_path(dir, *id))?;
    }
    // The active file is the newest data file without a hint file: every
    // immutable file gets its hint when it is rotated out or merged.
    let active_id = l
        .data
        .iter()
        .rev()
        .find(|id| !l.hints.contains(id))
        .copied();

    let mut sources = Vec::new();
    let mut files = BTreeMap::new();
    let mut lens = BTreeMap::new();
    for &id in &l.data {
        let is_active = Some(id) == active_id;
        let f = DataFile::open(dir, id, is_active)?;
        let mut len = f.len()?;
        let mut source = None;
        if l.hints.contains(&id) {
            let path = file::hint_path(dir, id);
            let bytes = fs::read(&path).at(&path)?;
            match check_hint(&path, &bytes, len) {
                Ok(()) => source = Some(Source::Hint { id, path, bytes }),
                // A hint file is derived data: any damage, even to its
                // version field, means scanning the data file instead.
                Err(Error::Corrupt { .. } | Error::UnsupportedVersion { .. }) => {
                    report.hints_rebuilt.push(path);
                }
                Err(e) => return Err(e),
            }
        }
        let source = match source {
            Some(s) => s,
            None => {
                let scan = file::scan(&f, is_active)?;
                if let Some((at, reason)) = scan.truncated {
                    report.truncated = Some((f.path.clone(), at, len - at, reason.to_string()));
                    len = at;
                }
                if !is_active {
                    file::write_hint(dir, id, &scan.entries)?;
                    if !l.hints.contains(&id) {
                        report.hints_rebuilt.push(file::hint_path(dir, id));
                    }
                }
                Source::Scan {
                    id,
                    entries: scan.entries,
                }
            }
        };
        sources.push(source);
        files.insert(id, Arc::new(f));
        lens.insert(id, len);
    }
    report.files = files.len();

    let total: usize = sources
        .iter()
        .map(|s| match s {
            // The footer's count, checked by `check_hint`.
            Source::Hint { bytes, .. } => {
                format::u64_at(bytes, bytes.len() - format::HINT_FOOTER_LEN) as usize
            }
            Source::Scan { entries, .. } => entries.len(),
        })
        .sum();
    let mut loaded: Vec<Loaded> = Vec::with_capacity(total);
    for source in &sources {
        match source {
            Source::Hint { id, path, bytes } => {
                format::decode_hint(path, bytes, |timestamp, flags, key, value_size, offset| {
                    let entry = Entry {
                        timestamp,
                        file: *id,
                        offset,
                        value_size,
                    };
                    loaded.push(Loaded::new(key, entry, flags & FLAG_TOMBSTONE != 0));
                })?;
            }
            Source::Scan { id, entries } => {
                loaded.extend(entries.iter().map(|h| {
                    let entry = Entry {
                        timestamp: h.timestamp,
                        file: *id,
                        offset: h.offset,
                        value_size: h.value_size,
                    };
                    Loaded::new(&h.key, entry, h.flags & FLAG_TOMBSTONE != 0)
                }));
            }
        }
    }

    // The newest record of each key wins; a tombstone means no key.
    let next_timestamp = loaded
        .iter()
        .map(|l| l.entry.timestamp + 1)
        .max()
        .unwrap_or(1);
    loaded.sort_unstable_by(|a, b| a.cmp_key(b).then(a.entry.timestamp.cmp(&b.entry.timestamp)));
    let mut key_bytes = 0u64;
    let mut live: BTreeMap<u32, u64> = BTreeMap::new();
    // Keys are allocated in order, so building the map walks memory in
    // order too.
    let mut sorted: Vec<(Arc<[u8]>, Entry)> = Vec::with_capacity(loaded.len());
    for (i, l) in loaded.iter().enumerate() {
        let newest = loaded
            .get(i + 1)
            .is_none_or(|next| next.cmp_key(l) != std::cmp::Ordering::Equal);
        if newest && !l.tombstone {
            key_bytes += l.key.len() as u64;
            *live.entry(l.entry.file).or_default() += l.entry.record_len(l.key.len());
            sorted.push((l.arc_key(), l.entry));
        }
    }
    drop(loaded);
    drop(sources);
    let keydir: Keydir = sorted.into_iter().collect();

    let next_file_id = l.data.iter().next_back().map_or(1, |id| id + 1);
    let next_file_id = AtomicU32::new(next_file_id);
    let active = match active_id {
        Some(id) => files[&id].clone(),
        None => {
            let id = next_file_id.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let f = Arc::new(DataFile::create(dir, id)?);
            files.insert(id, f.clone());
            lens.insert(id, format::HEADER_LEN as u64);
            f
        }
    };
    let space = lens
        .iter()
        .map(|(id, len)| (*id, (*len, live.get(id).copied().unwrap_or(0))))
        .collect();
    let len = lens[&active.id];
    Ok(Bitcask {
        dir: dir.to_path_buf(),
        options,
        state: RwLock::new(State {
            keydir,
            files,
            space,
            key_bytes,
        }),
        writer: Mutex::new(Writer {
            active,
            len,
            next_timestamp,
            buf: Vec::new(),
        }),
        merging: Mutex::new(()),
        next_file_id,
        poison: Default::default(),
        hint_threads: Default::default(),
        report,
        _lock: lock,
    })
}

/// Checks a hint file: its own checks, then each entry against the data
/// file's length. Damage is [`Error::Corrupt`] (the caller scans the data
/// file).
fn check_hint(path: &Path, bytes: &[u8], data_len: u64) -> Result<()> {
    let mut bad = false;
    format::decode_hint(path, bytes, |_, flags, key, value_size, offset| {
        let tombstone = flags & FLAG_TOMBSTONE != 0;
        let end = u64::from(offset) + format::record_len(key.len(), value_size as usize) as u64;
        bad |= u64::from(offset) < format::HEADER_LEN as u64
            || end > data_len
            || key.len() > limits::key_size_max
            || value_size as usize > limits::value_size_max
            || (tombstone && value_size != 0);
    })?;
    if bad {
        return Err(Error::corrupt(path, 0, "hint entry outside its data file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> Entry {
        Entry {
            timestamp: 0,
            file: 0,
            offset: 0,
            value_size: 0,
        }
    }

    proptest! {
        /// The prefix order is the keys' byte order, equal exactly when the
        /// keys are, and the inline copy is the key.
        #[test]
        fn prefix_order_is_key_order(
            a in prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 1..40),
            b in prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 1..40),
        ) {
            let (la, lb) = (Loaded::new(&a, entry(), false), Loaded::new(&b, entry(), false));
            prop_assert_eq!(la.cmp_key(&lb), a.cmp(&b));
            prop_assert_eq!(la.cmp_key(&la), std::cmp::Ordering::Equal);
            prop_assert_eq!(&la.arc_key()[..], &a[..]);
            // Keys sharing a long common prefix.
            let c: Vec<u8> = a.iter().chain(&b).copied().collect();
            let lc = Loaded::new(&c, entry(), false);
            prop_assert_eq!(la.cmp_key(&lc), a.cmp(&c));
            prop_assert_eq!(lc.cmp_key(&la), c.cmp(&a));
        }
    }
}
