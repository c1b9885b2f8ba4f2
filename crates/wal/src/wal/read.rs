//! Reading the log: terms, entry ranges (cache, then disk through the
//! index, checksum-checked) and the snapshot.

use std::fs;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use raft::{Entry, Index, Snapshot, SnapshotMeta, Term};

use super::{segment_path, snapshot_path, Loc, Wal};
use crate::error::{Error, Result};
use crate::format::{self, Record};
use crate::limits;

impl Wal {
    /// See [`LogStore::term`].
    pub fn term(&self, index: Index) -> Result<Term> {
        self.check_poison()?;
        if index == self.snap.index {
            return Ok(self.snap.term);
        }
        if index < self.snap.index {
            return Err(Error::Compacted {
                index,
                first_index: self.first_index(),
            });
        }
        match self.locs.get((index - self.snap.index - 1) as usize) {
            Some(l) => Ok(l.term),
            None => Err(Error::Unavailable {
                index,
                last_index: self.last_index(),
            }),
        }
    }

    /// See [`LogStore::entries`]. Recent entries come from the cache, older
    /// ones from disk, checksum-checked.
    pub fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>> {
        self.check_poison()?;
        if lo <= self.snap.index {
            return Err(Error::Compacted {
                index: lo,
                first_index: self.first_index(),
            });
        }
        let last = self.last_index();
        if hi > last + 1 {
            return Err(Error::Unavailable {
                index: hi - 1,
                last_index: last,
            });
        }
        let cache_first = last + 1 - self.cache.len() as Index;
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut i = lo;
        while i < hi {
            if i >= cache_first {
                let e = &self.cache[(i - cache_first) as usize];
                bytes += e.size();
                if !out.is_empty() && bytes > max_bytes {
                    break;
                }
                out.push(e.clone());
                i += 1;
                continue;
            }
            // A run of entries in one segment, bounded by the read span, by
            // max_bytes and by the cache.
            let at = |i: Index| self.locs[(i - self.snap.index - 1) as usize];
            let first = at(i);
            let mut j = i;
            let mut done = false;
            while j < hi.min(cache_first) {
                let l = at(j);
                let size = l.len as u64 - format::RECORD_HEADER_SIZE as u64;
                if l.seq != first.seq
                    || (j > i && l.offset + l.len as u64 - first.offset > limits::READ_SPAN_MAX)
                {
                    break;
                }
                if (!out.is_empty() || j > i) && bytes + size > max_bytes {
                    done = true;
                    break;
                }
                bytes += size;
                j += 1;
            }
            if j == i {
                break;
            }
            let end = at(j - 1);
            let span = self.read_span(
                first.seq,
                first.offset,
                end.offset + end.len as u64 - first.offset,
            )?;
            for k in i..j {
                let l = at(k);
                out.push(self.decode_entry(&span, first, l, k)?);
            }
            i = j;
            if done {
                break;
            }
        }
        Ok(out)
    }

    fn decode_entry(&self, span: &Bytes, first: Loc, l: Loc, index: Index) -> Result<Entry> {
        let rel = (l.offset - first.offset) as usize;
        let corrupt = |reason: String| Error::Corrupt {
            file: segment_path(&self.dir, l.seq),
            offset: l.offset,
            reason,
        };
        let (kind, range) = format::check_record(span, rel).map_err(|b| corrupt(b.to_string()))?;
        match format::decode_record(kind, span, range).map_err(corrupt)? {
            Record::Entry(e) if e.index == index && e.term == l.term => Ok(e),
            other => Err(corrupt(format!(
                "expected entry {index} term {}, found {other:?}",
                l.term
            ))),
        }
    }

    /// Read `len` bytes at `offset` of segment `seq`, from the file and, for
    /// the active segment, the user-space buffer.
    fn read_span(&self, seq: u64, offset: u64, len: u64) -> Result<Bytes> {
        let seg = self.segment(seq).ok_or_else(|| Error::Corrupt {
            file: segment_path(&self.dir, seq),
            offset,
            reason: "segment of an indexed entry is gone".into(),
        })?;
        let mut out = vec![0u8; len as usize];
        let from_file = seg.len.saturating_sub(offset).min(len) as usize;
        if from_file > 0 {
            seg.file
                .read_exact_at(&mut out[..from_file], offset)
                .map_err(|e| Error::io("read", &seg.path, e))?;
        }
        if from_file < out.len() {
            let start = (offset + from_file as u64 - seg.len) as usize;
            let want = out.len() - from_file;
            let src = self
                .buf
                .get(start..start + want)
                .ok_or_else(|| Error::Corrupt {
                    file: seg.path.clone(),
                    offset,
                    reason: "indexed entry beyond the written data".into(),
                })?;
            out[from_file..].copy_from_slice(src);
        }
        Ok(Bytes::from(out))
    }

    /// The metadata of the latest snapshot.
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        self.snap.clone()
    }

    /// The latest snapshot with its data, read from its file and checked.
    pub fn snapshot(&self) -> Result<Snapshot> {
        self.check_poison()?;
        let Some(f) = self.snap_file else {
            return Ok(Snapshot {
                meta: self.snap.clone(),
                data: Bytes::new(),
            });
        };
        let path = snapshot_path(&self.dir, f.seq);
        let all = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let corrupt = |reason: String| Error::Corrupt {
            file: path.clone(),
            offset: 0,
            reason,
        };
        let h = format::decode_snapshot_header(&all)
            .map_err(|e| corrupt(format!("bad snapshot header: {e:?}")))?;
        let data = &all[format::SNAPSHOT_HEADER_SIZE..];
        if h.len != data.len() as u64
            || h.len != f.len
            || h.crc != f.crc
            || crc32c::crc32c(data) != f.crc
        {
            return Err(Error::Corrupt {
                file: path.clone(),
                offset: format::SNAPSHOT_HEADER_SIZE as u64,
                reason: "snapshot data does not match its checksum".into(),
            });
        }
        let all = Bytes::from(all);
        Ok(Snapshot {
            meta: self.snap.clone(),
            data: all.slice(format::SNAPSHOT_HEADER_SIZE..),
        })
    }
}
