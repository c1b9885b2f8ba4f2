//! Opening a WAL directory: reading every segment back, telling a torn tail
//! from corruption, and rebuilding the in-memory log.
//!
//! # Replay rules
//!
//! Records are applied in file order, oldest segment first:
//! - an entry record with index `i` drops every entry at or above `i` and
//!   then appends itself (this is how an overwritten suffix disappears: the
//!   WAL has no separate truncate record). If the log does not reach
//!   `i - 1`, the entries before `i` lie in segments deleted by compaction;
//!   the log restarts at `i` and the gap must be covered by the snapshot by
//!   the end of the replay;
//! - a hard-state record replaces the hard state;
//! - a snapshot record sets the snapshot and drops the entries at or below
//!   its index (all entries if its clear-log flag is set).
//!
//! At the end every entry above the snapshot index must be present; a gap
//! means a segment went missing and is reported as corruption.
//!
//! # Torn tail or corruption?
//!
//! The last segment is preallocated with zeros, so its written part ends
//! where the bytes from some record boundary to the end of the file are all
//! zero: that is a clean end, not damage. Otherwise a bad record in the
//! *last* segment is a torn write, cut off and reported, when it cannot hold
//! durable data followed by more records: its header is cut short; or its
//! length field is zero, too large or runs past the end of the file; or its
//! checksum fails and nothing but zeros follows the record's end — in the
//! last two cases only if no single flipped bit of the length field would
//! make the record check out (a damaged length is corruption). Any other
//! bad record, and any bad record in an earlier segment (a segment is cut
//! to its written length and fsynced before the next one is created),
//! refuses the open with the file and offset, unless `repair` is set, in
//! which case the log is cut there and the cut is reported.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft::{HardState, Index, SnapshotMeta};

use crate::error::{Error, Result};
use crate::format::{self, BadRecord, HeaderError, Record, SnapFile};
use crate::wal::{fsync_dir, segment_path, snapshot_path, Loc};

/// What opening the WAL found and did. Log it: a torn tail is expected after
/// a crash; a repair means data was thrown away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files in use after recovery.
    pub segments: usize,
    /// Entries in the log after recovery.
    pub entries: u64,
    pub first_index: Index,
    pub last_index: Index,
    pub snapshot_index: Index,
    /// A torn last record that was cut off (normal after a crash).
    pub torn_tail: Option<Truncation>,
    /// A damaged record where `Options::repair` cut the log, with every
    /// later segment deleted.
    pub repaired: Option<Truncation>,
    /// Leftover files removed: temporary files of interrupted writes and
    /// snapshot files no record refers to.
    pub removed_files: Vec<PathBuf>,
}

/// Where the log was cut during recovery and what was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub file: PathBuf,
    pub offset: u64,
    /// Bytes dropped from `file` (and, for a repair, all of the deleted
    /// segments).
    pub bytes_dropped: u64,
    /// Later segment files deleted (repair only).
    pub segments_deleted: Vec<PathBuf>,
    pub reason: String,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WAL recovered: {} segments, entries {}..={} ({}), snapshot at {}",
            self.segments, self.first_index, self.last_index, self.entries, self.snapshot_index
        )?;
        if let Some(t) = &self.torn_tail {
            write!(f, "; torn tail cut: {t}")?;
        }
        if let Some(t) = &self.repaired {
            write!(f, "; REPAIRED, DATA DROPPED: {t}")?;
        }
        if !self.removed_files.is_empty() {
            write!(f, "; removed {} leftover files", self.removed_files.len())?;
        }
        Ok(())
    }
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {} ({}), {} bytes dropped",
            self.file.display(),
            self.offset,
            self.reason,
            self.bytes_dropped
        )?;
        if !self.segments_deleted.is_empty() {
            write!(
                f,
                ", {} later segments deleted",
                self.segments_deleted.len()
            )?;
        }
        Ok(())
    }
}

/// The log as rebuilt by replaying records.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub snap: SnapshotMeta,
    pub snap_file: Option<SnapFile>,
    pub hard_state: HardState,
    /// `locs[i]` is the entry at index `base + 1 + i`.
    pub base: Index,
    pub locs: VecDeque<Loc>,
    /// Segments holding the latest hard-state and snapshot records (0: none).
    pub hs_seq: u64,
    pub snap_seq: u64,
}

impl Replay {
    fn last(&self) -> Index {
        self.base + self.locs.len() as Index
    }

    fn apply(&mut self, record: Record, loc: Loc) -> std::result::Result<(), String> {
        match record {
            Record::Entry(e) => {
                if e.index == 0 {
                    return Err("entry with index 0".into());
                }
                let prev = e.index - 1;
                if prev >= self.base && prev <= self.last() {
                    self.locs.truncate((prev - self.base) as usize);
                } else {
                    self.locs.clear();
                    self.base = prev;
                }
                self.locs.push_back(loc);
            }
            Record::HardState(hs) => {
                self.hard_state = hs;
                self.hs_seq = loc.seq;
            }
            Record::Snapshot(s) => {
                self.snap_seq = loc.seq;
                self.drop_through(s.meta.index, s.clear_log);
                self.snap = s.meta;
                self.snap_file = Some(s.file);
            }
        }
        Ok(())
    }

    /// Drop the entries at or below `index` (all of them if `clear`).
    fn drop_through(&mut self, index: Index, clear: bool) {
        if clear || index >= self.last() {
            self.locs.clear();
            self.base = index;
        } else if index > self.base {
            self.locs.drain(..(index - self.base) as usize);
            self.base = index;
        }
    }
}

/// What [`recover`] hands to `Wal::open`.
pub(crate) struct Recovered {
    /// Segment sequence numbers and their valid lengths, ascending.
    pub segments: Vec<(u64, u64)>,
    pub replay: Replay,
    pub report: RecoveryReport,
    pub next_snap_seq: u64,
}

/// Read the directory back. Cuts a torn tail (and, with `repair`, damage)
/// from the files; deletes leftover temporary and snapshot files.
pub(crate) fn recover(dir: &Path, repair: bool) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let mut seqs = Vec::new();
    let mut snap_seqs = Vec::new();
    let read_dir = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for item in read_dir {
        let item = item.map_err(|e| Error::io("read directory", dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            let path = item.path();
            fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            report.removed_files.push(path);
        } else if let Some(seq) = parse_seq(name, "", ".wal") {
            seqs.push(seq);
        } else if let Some(seq) = parse_seq(name, "snap-", ".snap") {
            snap_seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(Error::Corrupt {
                file: segment_path(dir, w[1]),
                offset: 0,
                reason: format!("segment {} is missing before it", w[0] + 1),
            });
        }
    }

    let mut replay = Replay::default();
    let mut segments = Vec::new();
    let count = seqs.len();
    for (n, &seq) in seqs.iter().enumerate() {
        let path = segment_path(dir, seq);
        let is_last = n + 1 == count;
        let data = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let data = Bytes::from(data);
        let cut = match scan_segment(&path, seq, &data, is_last, &mut replay)? {
            Scan::Clean { end } => {
                segments.push((seq, end));
                continue;
            }
            Scan::Torn { offset, reason } => {
                let written_end = data
                    .iter()
                    .rposition(|&b| b != 0)
                    .map_or(0, |i| i as u64 + 1);
                report.torn_tail = Some(Truncation {
                    file: path.clone(),
                    offset,
                    bytes_dropped: written_end.saturating_sub(offset),
                    segments_deleted: Vec::new(),
                    reason,
                });
                (offset, false)
            }
            Scan::Damaged { offset, reason } => {
                if !repair {
                    return Err(Error::Corrupt {
                        file: path,
                        offset,
                        reason,
                    });
                }
                let mut deleted = Vec::new();
                let mut bytes = data.len() as u64 - offset;
                for &later in &seqs[n + 1..] {
                    let p = segment_path(dir, later);
                    bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
                    deleted.push(p);
                }
                report.repaired = Some(Truncation {
                    file: path.clone(),
                    offset,
                    bytes_dropped: bytes,
                    segments_deleted: deleted,
                    reason,
                });
                (offset, true)
            }
        };
        let (offset, stop) = cut;
        if offset < format::SEGMENT_HEADER_SIZE as u64 {
            // Not even a valid header: drop the whole file.
            fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        } else {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            f.set_len(offset)
                .map_err(|e| Error::io("truncate", &path, e))?;
            f.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
            segments.push((seq, offset));
        }
        fsync_dir(dir)?;
        if stop {
            break;
        }
    }

    // Every entry above the snapshot must be there.
    if replay.base < replay.snap.index {
        let index = replay.snap.index;
        replay.drop_through(index, false);
    }
    if replay.base > replay.snap.index {
        return Err(Error::Corrupt {
            file: dir.to_path_buf(),
            offset: 0,
            reason: format!(
                "entries {}..={} are missing (snapshot at {}): a segment was lost",
                replay.snap.index + 1,
                replay.base,
                replay.snap.index
            ),
        });
    }

    // The snapshot file the last snapshot record names must be there and
    // match; other snapshot files are leftovers.
    if let Some(f) = replay.snap_file {
        check_snapshot_file(dir, f, &replay.snap)?;
    }
    let mut removed_snap = false;
    for &s in &snap_seqs {
        if replay.snap_file.map(|f| f.seq) != Some(s) {
            let p = snapshot_path(dir, s);
            fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
            report.removed_files.push(p);
            removed_snap = true;
        }
    }
    if removed_snap || !report.removed_files.is_empty() {
        fsync_dir(dir)?;
    }
    let next_snap_seq = snap_seqs
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(replay.snap_file.map_or(0, |f| f.seq))
        + 1;

    Ok(Recovered {
        segments,
        replay,
        report,
        next_snap_seq,
    })
}

enum Scan {
    /// Valid records up to `end`; after it only zeros (the preallocated,
    /// unwritten part of the last segment) or nothing.
    Clean {
        end: u64,
    },
    Torn {
        offset: u64,
        reason: String,
    },
    Damaged {
        offset: u64,
        reason: String,
    },
}

fn scan_segment(
    path: &Path,
    seq: u64,
    data: &Bytes,
    is_last: bool,
    replay: &mut Replay,
) -> Result<Scan> {
    match format::decode_segment_header(data) {
        Ok(s) if s == seq => {}
        Ok(s) => {
            return Ok(Scan::Damaged {
                offset: 0,
                reason: format!("header says segment {s}, file name says {seq}"),
            })
        }
        Err(HeaderError::Version(v)) if v > format::FORMAT_VERSION => {
            return Err(Error::UnsupportedVersion {
                file: path.to_path_buf(),
                found: v,
                supported: format::FORMAT_VERSION,
            })
        }
        Err(e) => {
            return Ok(Scan::Damaged {
                offset: 0,
                reason: format!("bad segment header: {e:?}"),
            })
        }
    }
    let mut p = format::SEGMENT_HEADER_SIZE;
    while p < data.len() {
        match format::check_record(data, p) {
            Ok((kind, range)) => {
                let end = range.end;
                let record = match format::decode_record(kind, data, range) {
                    Ok(r) => r,
                    Err(reason) => {
                        return Ok(Scan::Damaged {
                            offset: p as u64,
                            reason,
                        })
                    }
                };
                let term = match &record {
                    Record::Entry(e) => e.term,
                    _ => 0,
                };
                let loc = Loc {
                    seq,
                    offset: p as u64,
                    len: (end - p) as u32,
                    term,
                };
                if let Err(reason) = replay.apply(record, loc) {
                    return Ok(Scan::Damaged {
                        offset: p as u64,
                        reason,
                    });
                }
                p = end;
            }
            Err(bad) => {
                let reason = bad.to_string();
                let offset = p as u64;
                // The last segment is preallocated with zeros: where they
                // start, the written part ends.
                let written_end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                if is_last && written_end <= p {
                    return Ok(Scan::Clean { end: offset });
                }
                if is_last && is_torn(data, p, written_end, bad) {
                    return Ok(Scan::Torn { offset, reason });
                }
                return Ok(Scan::Damaged { offset, reason });
            }
        }
    }
    Ok(Scan::Clean {
        end: data.len() as u64,
    })
}

/// Whether the bad record at `p` of the last segment is a torn write (see
/// the module docs). `written_end` is where the trailing zeros start.
fn is_torn(data: &[u8], p: usize, written_end: usize, bad: BadRecord) -> bool {
    match bad {
        BadRecord::ShortHeader => true,
        BadRecord::Length(_) | BadRecord::PastEnd(_) => !format::length_bit_flip_explains(data, p),
        BadRecord::Crc => {
            let len = format::u32_at(data, p) as usize;
            p + format::RECORD_HEADER_SIZE + len >= written_end
                && !format::length_bit_flip_explains(data, p)
        }
    }
}

fn check_snapshot_file(dir: &Path, f: SnapFile, meta: &SnapshotMeta) -> Result<()> {
    let path = snapshot_path(dir, f.seq);
    let corrupt = |reason: String| Error::Corrupt {
        file: path.clone(),
        offset: 0,
        reason,
    };
    let file = fs::File::open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            corrupt(format!("snapshot file for index {} is missing", meta.index))
        } else {
            Error::io("open", &path, e)
        }
    })?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("stat", &path, e))?
        .len();
    let mut header = [0u8; format::SNAPSHOT_HEADER_SIZE];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, 0)
        .map_err(|_| corrupt("snapshot file header is cut short".into()))?;
    let h = match format::decode_snapshot_header(&header) {
        Ok(h) => h,
        Err(HeaderError::Version(v)) if v > format::FORMAT_VERSION => {
            return Err(Error::UnsupportedVersion {
                file: path,
                found: v,
                supported: format::FORMAT_VERSION,
            })
        }
        Err(e) => return Err(corrupt(format!("bad snapshot header: {e:?}"))),
    };
    if h.index != meta.index || h.term != meta.term || h.len != f.len || h.crc != f.crc {
        return Err(corrupt(format!(
            "snapshot file ({}, {}, {} bytes) does not match its WAL record ({}, {}, {} bytes)",
            h.index, h.term, h.len, meta.index, meta.term, f.len
        )));
    }
    if size != format::SNAPSHOT_HEADER_SIZE as u64 + f.len {
        return Err(corrupt(format!(
            "snapshot file is {size} bytes, want {}",
            format::SNAPSHOT_HEADER_SIZE as u64 + f.len
        )));
    }
    Ok(())
}

/// `prefix` + 20 decimal digits + `suffix`.
fn parse_seq(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
