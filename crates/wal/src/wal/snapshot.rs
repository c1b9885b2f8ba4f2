//! Compaction and snapshot installation: the snapshot file, the snapshot
//! record, and deleting segments that hold only compacted entries.

use std::fs;

use bytes::Bytes;
use raft::{HardState, Snapshot, SnapshotMeta};

use super::{create_durably, fsync_dir, snapshot_path, Wal};
use crate::error::{Error, Result};
use crate::format::{self, SnapFile, SnapRecord};
use crate::limits;

impl Wal {
    /// See [`LogStore::compact`]: the snapshot's data goes to its own file,
    /// then a snapshot record is written and synced (making everything
    /// written before it durable too), then segments holding only entries
    /// at or below `meta.index` are deleted.
    pub fn compact(&mut self, meta: SnapshotMeta, data: Bytes) -> Result<()> {
        self.check_poison()?;
        if meta.index < self.snap.index || meta.index > self.last_index() {
            return Err(Error::Invalid(format!(
                "compact to {} outside {}..={}",
                meta.index,
                self.snap.index,
                self.last_index()
            )));
        }
        check_snapshot_input(&meta, &data)?;
        let r = self.write_snapshot(meta, data, false, None);
        self.poison_on_err(r)
    }

    /// See [`LogStore::install_snapshot`]. Durable on return.
    pub fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        self.check_poison()?;
        let Snapshot { meta, data } = snapshot;
        check_snapshot_input(&meta, &data)?;
        let keep = meta.index >= self.snap.index
            && matches!(self.term(meta.index), Ok(t) if t == meta.term);
        let mut hs = self.hard_state;
        if hs.commit < meta.index {
            hs.commit = meta.index;
        }
        let r = self.write_snapshot(meta, data, !keep, Some(hs));
        self.poison_on_err(r)
    }

    fn write_snapshot(
        &mut self,
        meta: SnapshotMeta,
        data: Bytes,
        clear: bool,
        hs: Option<HardState>,
    ) -> Result<()> {
        let seq = self.next_snap_seq;
        self.next_snap_seq += 1;
        let crc = crc32c::crc32c(&data);
        let header = format::encode_snapshot_header(meta.index, meta.term, data.len() as u64, crc);
        let path = snapshot_path(&self.dir, seq);
        create_durably(&self.dir, &path, &[&header, &data])?;
        let file = SnapFile {
            seq,
            len: data.len() as u64,
            crc,
        };
        let record = SnapRecord {
            meta,
            clear_log: clear,
            file,
        };
        let mut rec_buf = Vec::new();
        format::encode_snapshot(&mut rec_buf, &record);
        self.maybe_rotate(rec_buf.len() as u64 + format::RECORD_HEADER_SIZE as u64 + 24)?;
        self.buf.extend_from_slice(&rec_buf);
        self.snap_seq = self.active().seq;
        let meta = record.meta;

        // The log in memory, as a replay of the record would leave it.
        if clear {
            self.cache.clear();
            self.cache_bytes = 0;
            self.locs.clear();
            self.note_overwrite(meta.index);
        } else {
            let drop = (meta.index - self.snap.index) as usize;
            self.locs.drain(..drop.min(self.locs.len()));
            let keep = self.locs.len();
            while self.cache.len() > keep {
                if let Some(old) = self.cache.pop_front() {
                    self.cache_bytes -= old.data.len() as u64;
                }
            }
        }
        let old_file = self.snap_file.replace(file);
        self.snap = meta;
        if let Some(hs) = hs.filter(|hs| *hs != self.hard_state) {
            self.hard_state = hs;
            self.hs_seq = self.active().seq;
            format::encode_hard_state(&mut self.buf, &hs);
        }
        self.sync_active()?;

        if let Some(old) = old_file {
            let p = snapshot_path(&self.dir, old.seq);
            fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
        }
        if !self.remove_obsolete_segments()? && old_file.is_some() {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Delete the segments before the one holding the first entry (all but
    /// the active one if the log is empty); fsync the directory if any was.
    /// If the latest hard-state or snapshot record lives in a segment to be
    /// deleted (the active segment was started but its copies never reached
    /// the disk before a crash), copy them into the active segment and sync
    /// first.
    pub(super) fn remove_obsolete_segments(&mut self) -> Result<bool> {
        let keep_from = self.locs.front().map_or(self.active().seq, |l| l.seq);
        if self.segments.len() < 2 || self.segments[0].seq >= keep_from {
            return Ok(false);
        }
        let hs_lost = self.hs_seq != 0 && self.hs_seq < keep_from;
        let snap_lost = self.snap_seq != 0 && self.snap_seq < keep_from;
        if hs_lost || snap_lost {
            self.write_state_copies();
            self.sync_active()?;
        }
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[0].seq < keep_from {
            if let Some(seg) = self.segments.pop_front() {
                fs::remove_file(&seg.path).map_err(|e| Error::io("remove", &seg.path, e))?;
                removed = true;
            }
        }
        if removed {
            fsync_dir(&self.dir)?;
        }
        Ok(removed)
    }
}

fn check_snapshot_input(meta: &SnapshotMeta, data: &Bytes) -> Result<()> {
    let c = &meta.conf;
    let members = c.voters.len() + c.learners.len() + c.voters_outgoing.len();
    if members > limits::CONF_MEMBERS_MAX {
        return Err(Error::Invalid(format!(
            "configuration of {members} ids; the limit is {}",
            limits::CONF_MEMBERS_MAX
        )));
    }
    if data.len() as u64 > limits::SNAPSHOT_SIZE_MAX {
        return Err(Error::Invalid(format!(
            "snapshot of {} bytes; the limit is {}",
            data.len(),
            limits::SNAPSHOT_SIZE_MAX
        )));
    }
    Ok(())
}
