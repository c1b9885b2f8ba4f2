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

/// One record's place, as loaded from a hint file or a scan.
struct Loaded {
    key: Arc<[u8]>,
    entry: Entry,
    tombstone: bool,
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

    let mut loaded: Vec<Loaded> = Vec::new();
    let mut files = BTreeMap::new();
    let mut lens = BTreeMap::new();
    for &id in &l.data {
        let is_active = Some(id) == active_id;
        let f = DataFile::open(dir, id, is_active)?;
        let mut len = f.len()?;
        let mut from_hint = false;
        if l.hints.contains(&id) {
            let path = file::hint_path(dir, id);
            let bytes = fs::read(&path).at(&path)?;
            let before = loaded.len();
            match load_hint(&path, &bytes, id, len, &mut loaded) {
                Ok(()) => from_hint = true,
                // A hint file is derived data: any damage, even to its
                // version field, means scanning the data file instead.
                Err(Error::Corrupt { .. } | Error::UnsupportedVersion { .. }) => {
                    loaded.truncate(before);
                    report.hints_rebuilt.push(path);
                }
                Err(e) => return Err(e),
            }
        }
        if !from_hint {
            let scan = file::scan(&f, is_active)?;
            if let Some((at, reason)) = scan.truncated {
                report.truncated = Some((f.path.clone(), at, len - at, reason.to_string()));
                len = at;
            }
            for h in &scan.entries {
                loaded.push(Loaded {
                    key: Arc::from(&h.key[..]),
                    entry: Entry {
                        timestamp: h.timestamp,
                        file: id,
                        offset: h.offset,
                        value_size: h.value_size,
                    },
                    tombstone: h.flags & FLAG_TOMBSTONE != 0,
                });
            }
            if !is_active {
                file::write_hint(dir, id, &scan.entries)?;
                if !l.hints.contains(&id) {
                    report.hints_rebuilt.push(file::hint_path(dir, id));
                }
            }
        }
        files.insert(id, Arc::new(f));
        lens.insert(id, len);
    }
    report.files = files.len();

    // The newest record of each key wins; a tombstone means no key.
    let next_timestamp = loaded
        .iter()
        .map(|l| l.entry.timestamp + 1)
        .max()
        .unwrap_or(1);
    loaded.sort_unstable_by(|a, b| {
        a.key
            .cmp(&b.key)
            .then(a.entry.timestamp.cmp(&b.entry.timestamp))
    });
    let mut last: Vec<Loaded> = Vec::with_capacity(loaded.len());
    for l in loaded {
        match last.last_mut() {
            Some(prev) if prev.key == l.key => *prev = l,
            _ => last.push(l),
        }
    }
    let mut key_bytes = 0u64;
    let mut live: BTreeMap<u32, u64> = BTreeMap::new();
    let keydir: Keydir = last
        .into_iter()
        .filter(|l| !l.tombstone)
        .map(|l| {
            key_bytes += l.key.len() as u64;
            *live.entry(l.entry.file).or_default() += l.entry.record_len(l.key.len());
            (l.key, l.entry)
        })
        .collect();

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
        poisoned: Default::default(),
        poison_reason: Default::default(),
        report,
        _lock: lock,
    })
}

/// Loads a hint file's entries, checking each against the data file's
/// length. Damage is [`Error::Corrupt`] (the caller scans the data file).
fn load_hint(
    path: &Path,
    bytes: &[u8],
    id: u32,
    data_len: u64,
    out: &mut Vec<Loaded>,
) -> Result<()> {
    let mut bad = false;
    format::decode_hint(path, bytes, |timestamp, flags, key, value_size, offset| {
        let tombstone = flags & FLAG_TOMBSTONE != 0;
        let end = u64::from(offset) + format::record_len(key.len(), value_size as usize) as u64;
        if u64::from(offset) < format::HEADER_LEN as u64
            || end > data_len
            || key.len() > limits::key_size_max
            || value_size as usize > limits::value_size_max
            || (tombstone && value_size != 0)
        {
            bad = true;
            return;
        }
        out.push(Loaded {
            key: Arc::from(key),
            entry: Entry {
                timestamp,
                file: id,
                offset,
                value_size,
            },
            tombstone,
        });
    })?;
    if bad {
        return Err(Error::corrupt(path, 0, "hint entry outside its data file"));
    }
    Ok(())
}
