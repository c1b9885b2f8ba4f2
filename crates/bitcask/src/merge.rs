//! Merge: copy the live records of every immutable data file into new
//! files, then switch over atomically. See the crate docs, "Merge".

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::bitcask::{Bitcask, Entry, MergeStats};
use crate::error::{Error, IoContext, Result};
use crate::file::{self, DataFile, RecordReader};
use crate::format::{self, HintEntry};
use crate::limits;
use crate::recovery::{finish_merge, MANIFEST};

/// A merge output file being written.
struct Output {
    id: u32,
    tmp: PathBuf,
    writer: BufWriter<File>,
    len: u64,
    hints: Vec<HintEntry>,
}

/// A live record of an input file, as the keydir showed it.
struct Live {
    file: u32,
    offset: u32,
    key: Arc<[u8]>,
    entry: Entry,
    /// Position in key order.
    order: usize,
}

/// A record copied by the merge: its key, where it was, where it is now.
struct Moved {
    key: Arc<[u8]>,
    from_file: u32,
    from_offset: u32,
    to: Entry,
    /// Position in key order.
    order: usize,
}

pub fn merge(db: &Bitcask) -> Result<MergeStats> {
    db.check_poison()?;
    let _merging = db.merging.lock().map_err(|_| {
        db.fatal(Error::Poisoned(
            "a thread panicked while holding a lock".into(),
        ))
    })?;
    // Rotate so that everything written so far is in an immutable file, and
    // take the inputs while holding the writer lock: a rotation after this
    // point only adds files newer than every input.
    let inputs: Vec<Arc<DataFile>> = {
        let mut w = db.lock_writer()?;
        if w.len > format::HEADER_LEN as u64 {
            db.rotate(&mut w).map_err(|e| db.fatal(e))?;
        }
        let active_id = w.active.id;
        let s = db.read_state()?;
        s.files
            .values()
            .filter(|f| f.id != active_id)
            .cloned()
            .collect()
    };
    if inputs.is_empty() {
        return Ok(MergeStats::default());
    }
    let mut outputs: Vec<Output> = Vec::new();
    let result = copy_live(db, &inputs, &mut outputs);
    let (moved, mut stats) = match result {
        Ok(r) => r,
        Err(e) => {
            for o in &outputs {
                let _ = fs::remove_file(&o.tmp);
            }
            return Err(db.fatal(e));
        }
    };
    stats.files_in = inputs.len();
    stats.files_out = outputs.len();
    switch_over(db, &inputs, outputs, moved).map_err(|e| db.fatal(e))?;
    Ok(stats)
}

/// Copies every live record of `inputs` into new output files.
///
/// The live records are found by walking the keydir (in chunks of
/// [`limits::merge_switch_keys_max`] keys per read lock) rather than by
/// looking up every record's key, then read in file and offset order. Dead
/// records and tombstones are never read. Tombstones are dropped: every
/// older record of their key is in an input file too (a merge always takes
/// all immutable files), so nothing is left for them to hide.
fn copy_live(
    db: &Bitcask,
    inputs: &[Arc<DataFile>],
    outputs: &mut Vec<Output>,
) -> Result<(Vec<Moved>, MergeStats)> {
    let mut stats = MergeStats::default();
    let input_ids: BTreeSet<u32> = inputs.iter().map(|f| f.id).collect();
    let mut live: Vec<Live> = Vec::new();
    let mut after: Option<Arc<[u8]>> = None;
    loop {
        let s = db.read_state()?;
        let start = match &after {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Unbounded,
        };
        let mut last = None;
        for (k, e) in s
            .keydir
            .range::<[u8], _>((start, Bound::Unbounded))
            .take(limits::merge_switch_keys_max)
        {
            if input_ids.contains(&e.file) {
                live.push(Live {
                    file: e.file,
                    offset: e.offset,
                    key: k.clone(),
                    entry: *e,
                    order: live.len(),
                });
            }
            last = Some(k);
        }
        let Some(last) = last else { break };
        after = Some(last.clone());
    }
    live.sort_unstable_by_key(|l| (l.file, l.offset));

    let mut moved = Vec::with_capacity(live.len());
    let mut record = Vec::new();
    let mut live = live.into_iter().peekable();
    for input in inputs {
        let mut reader = RecordReader::new(input)?;
        stats.bytes_in += reader.len;
        while let Some(Live {
            offset,
            key,
            entry: e,
            order,
            ..
        }) = live.next_if(|l| l.file == input.id)
        {
            let (h, bytes) = reader.record_at(u64::from(offset), &key, e.value_size)?;
            record.clear();
            if h.flags == 0 {
                record.extend_from_slice(bytes);
            } else {
                // Clear the batch flag: the copy stands alone.
                let value = &bytes[format::RECORD_HEADER_LEN + key.len()..];
                format::encode_record(&mut record, h.timestamp, 0, &key, value);
            }
            let out = output_for(db, outputs, record.len() as u64)?;
            let to = Entry {
                timestamp: h.timestamp,
                file: out.id,
                offset: out.len as u32,
                value_size: h.value_size,
            };
            out.writer.write_all(&record).at(&out.tmp)?;
            out.hints.push(HintEntry {
                timestamp: h.timestamp,
                flags: 0,
                key: key[..].into(),
                value_size: h.value_size,
                offset: out.len as u32,
            });
            out.len += record.len() as u64;
            stats.bytes_out += record.len() as u64;
            stats.records_copied += 1;
            moved.push(Moved {
                key,
                from_file: input.id,
                from_offset: offset,
                to,
                order,
            });
        }
    }
    // Back in key order, so the switch's lookups walk the keydir in order
    // (neighbouring keys share their path through the tree).
    moved.sort_unstable_by_key(|m| m.order);
    Ok((moved, stats))
}

/// The output file a record of `len` bytes goes to, starting a new one when
/// the current one would pass the size limit.
fn output_for<'a>(db: &Bitcask, outputs: &'a mut Vec<Output>, len: u64) -> Result<&'a mut Output> {
    let full = outputs.last().is_none_or(|o| {
        o.len > format::HEADER_LEN as u64 && o.len + len > db.options.file_size_max
    });
    if full {
        let id = db.next_file_id.fetch_add(1, Ordering::SeqCst);
        let tmp = file::tmp_path(&file::data_path(&db.dir, id));
        let f = File::create(&tmp).at(&tmp)?;
        let mut writer = BufWriter::with_capacity(1 << 20, f);
        writer
            .write_all(&format::encode_header(format::DATA_MAGIC))
            .at(&tmp)?;
        outputs.push(Output {
            id,
            tmp,
            writer,
            len: format::HEADER_LEN as u64,
            hints: Vec::new(),
        });
    }
    outputs
        .last_mut()
        .ok_or_else(|| Error::InvalidOptions("no merge output".into()))
}

/// Makes the outputs durable and visible, commits the merge with the
/// manifest, points the keydir at the copies that are still current, and
/// deletes the inputs.
fn switch_over(
    db: &Bitcask,
    inputs: &[Arc<DataFile>],
    outputs: Vec<Output>,
    moved: Vec<Moved>,
) -> Result<()> {
    let dir = &db.dir;
    // 1. Outputs durable under their final names, each hint before its data
    //    file (a data file without a hint would look like an active file).
    //    Until the manifest exists, a restart sees inputs and outputs both:
    //    the same records twice, which recovery resolves by timestamp.
    let mut opened = Vec::new();
    for o in outputs {
        let f = o
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .at(&o.tmp)?;
        f.sync_all().at(&o.tmp)?;
        drop(f);
        file::write_hint(dir, o.id, &o.hints)?;
        let path = file::data_path(dir, o.id);
        fs::rename(&o.tmp, &path).at(&path)?;
        opened.push((o.id, o.len));
    }
    file::sync_dir(dir)?;
    let mut new_files = Vec::new();
    for (id, len) in opened {
        new_files.push((Arc::new(DataFile::open(dir, id, false)?), len));
    }
    // 2. Commit: the manifest lists the inputs, which are now redundant.
    let replaced: Vec<u32> = inputs.iter().map(|f| f.id).collect();
    file::write_atomic(
        dir,
        &dir.join(MANIFEST),
        &format::encode_manifest(&replaced),
    )?;
    // 3. Switch the keydir: only entries still pointing at the copied record
    //    move; a key written or deleted during the merge keeps its newer
    //    entry, and its copy is dead space in the output. The write lock is
    //    taken per chunk of keys, so reads and writes go on in between: the
    //    outputs are in the file map before any entry points at them, and
    //    the inputs stay in it until none does.
    {
        let mut s = db.write_state()?;
        for (f, len) in &new_files {
            s.files.insert(f.id, f.clone());
            s.space.insert(f.id, (*len, 0));
        }
    }
    for chunk in moved.chunks(limits::merge_switch_keys_max) {
        let mut s = db.write_state()?;
        for m in chunk {
            let Some(e) = s.keydir.get_mut(&m.key[..]) else {
                continue;
            };
            if e.file == m.from_file && e.offset == m.from_offset {
                *e = m.to;
                let len = m.to.record_len(m.key.len());
                s.add_live(m.to.file, len);
            }
        }
    }
    {
        let mut s = db.write_state()?;
        for id in &replaced {
            s.files.remove(id);
            s.space.remove(id);
        }
    }
    // 4. Delete the inputs (views keep their open handles), then the
    //    manifest.
    finish_merge(dir, &replaced)?;
    Ok(())
}
