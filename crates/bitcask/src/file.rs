//! Data files on disk: naming, creation (write, fsync, rename, fsync the
//! directory), reading one record with its checks, scanning a whole file,
//! and writing and loading hint files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Error, IoContext, Result};
use crate::format::{self, HintEntry, RecordHeader, FLAG_BATCH_CONT, FLAG_TOMBSTONE};

/// The name of the data file with id `id`.
pub fn data_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.data"))
}

/// The name of the hint file of data file `id`.
pub fn hint_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.hint"))
}

/// The temporary name a file is written under before its rename.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Makes the directory's entries (creations, renames, deletions) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Writes `bytes` to `path` atomically: write a temporary file, fsync it,
/// rename it into place, fsync the directory.
pub fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    drop(f);
    fs::rename(&tmp, path).at(path)?;
    sync_dir(dir)
}

/// An open data file. Shared (`Arc`) by the engine and by views: a file a
/// view holds stays readable after a merge unlinks it, because the open
/// handle keeps the inode alive.
#[derive(Debug)]
pub struct DataFile {
    pub id: u32,
    pub path: PathBuf,
    pub file: File,
}

impl DataFile {
    /// Creates a new, empty data file (header only), durably.
    pub fn create(dir: &Path, id: u32) -> Result<DataFile> {
        let path = data_path(dir, id);
        write_atomic(dir, &path, &format::encode_header(format::DATA_MAGIC))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        Ok(DataFile { id, path, file })
    }

    /// Opens an existing data file and checks its header.
    pub fn open(dir: &Path, id: u32, writable: bool) -> Result<DataFile> {
        let path = data_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .at(&path)?;
        let mut header = [0u8; format::HEADER_LEN];
        let len = file.metadata().at(&path)?.len();
        if len < format::HEADER_LEN as u64 {
            return Err(Error::corrupt(&path, 0, "file shorter than its header"));
        }
        file.read_exact_at(&mut header, 0).at(&path)?;
        format::check_header(&path, &header, format::DATA_MAGIC)?;
        Ok(DataFile { id, path, file })
    }

    /// The file's current length.
    pub fn len(&self) -> Result<u64> {
        Ok(self.file.metadata().at(&self.path)?.len())
    }

    /// Reads the value of the record at `offset`, which the keydir says
    /// holds `key` with a value of `value_size` bytes. The record's CRC, key
    /// and sizes are checked: damage is [`Error::Corrupt`], never wrong data.
    pub fn read_value(&self, key: &[u8], offset: u32, value_size: u32) -> Result<Bytes> {
        let len = format::record_len(key.len(), value_size as usize);
        let mut buf = vec![0u8; len];
        match self.file.read_exact_at(&mut buf, u64::from(offset)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Error::corrupt(
                    &self.path,
                    offset.into(),
                    "record past end of file",
                ))
            }
            Err(e) => return Err(e).at(&self.path),
        }
        let bad = |reason: &str| Err(Error::corrupt(&self.path, offset.into(), reason));
        let Some(h) = RecordHeader::decode(&buf) else {
            return bad("bad record header");
        };
        if !h.crc_ok(&buf) {
            return bad("record checksum mismatch");
        }
        if h.key_size as usize != key.len()
            || h.value_size != value_size
            || h.flags & FLAG_TOMBSTONE != 0
            || &buf[format::RECORD_HEADER_LEN..format::RECORD_HEADER_LEN + key.len()] != key
        {
            return bad("record does not match the keydir");
        }
        Ok(Bytes::from(buf).slice(format::RECORD_HEADER_LEN + key.len()..))
    }
}

/// Why a scan stopped before the end of a file.
#[derive(Debug)]
pub struct BadRecord {
    pub offset: u64,
    pub reason: &'static str,
}

/// Reads the records of a data file in order, checking each one's CRC.
/// Uses positioned reads only (never the file's shared cursor), so scans of
/// one file may run on several threads at once.
pub struct RecordReader<'a> {
    file: &'a DataFile,
    /// Bytes of the file from `buf_at`, read ahead.
    buf: Vec<u8>,
    buf_at: u64,
    pub pos: u64,
    pub len: u64,
}

/// How much a [`RecordReader`] reads ahead.
const READ_AHEAD: usize = 1 << 20;

impl<'a> RecordReader<'a> {
    pub fn new(file: &'a DataFile) -> Result<Self> {
        let len = file.len()?;
        Ok(RecordReader {
            file,
            buf: Vec::new(),
            buf_at: format::HEADER_LEN as u64,
            pos: format::HEADER_LEN as u64,
            len,
        })
    }

    /// Makes `buf` hold the file's bytes `at..at + n` (which the caller
    /// checked are inside the file) and returns their start in `buf`.
    fn fill(&mut self, at: u64, n: usize) -> Result<usize> {
        let have = self.buf_at + self.buf.len() as u64;
        if at >= self.buf_at && at + n as u64 <= have {
            return Ok((at - self.buf_at) as usize);
        }
        let want = n.max(READ_AHEAD).min((self.len - at) as usize);
        self.buf.resize(want, 0);
        self.file
            .file
            .read_exact_at(&mut self.buf, at)
            .at(&self.file.path)?;
        self.buf_at = at;
        Ok(0)
    }

    /// The record at `offset`, which the keydir says holds `key` with a
    /// value of `value_size` bytes, checked like [`DataFile::read_value`]
    /// checks it. Reads ahead, so ascending offsets read the file
    /// sequentially.
    pub fn record_at(
        &mut self,
        offset: u64,
        key: &[u8],
        value_size: u32,
    ) -> Result<(RecordHeader, &[u8])> {
        let len = format::record_len(key.len(), value_size as usize);
        let path = &self.file.path;
        if offset < format::HEADER_LEN as u64 || offset + len as u64 > self.len {
            return Err(Error::corrupt(path, offset, "record past end of file"));
        }
        let start = self.fill(offset, len)?;
        let record = &self.buf[start..start + len];
        let path = &self.file.path;
        let bad = |reason: &str| Err(Error::corrupt(path, offset, reason));
        let Some(h) = RecordHeader::decode(record) else {
            return bad("bad record header");
        };
        if !h.crc_ok(record) {
            return bad("record checksum mismatch");
        }
        if h.len() != len
            || h.flags & FLAG_TOMBSTONE != 0
            || &record[format::RECORD_HEADER_LEN..format::RECORD_HEADER_LEN + key.len()] != key
        {
            return bad("record does not match the keydir");
        }
        Ok((h, record))
    }

    /// The next record (its offset, header and whole encoded bytes), `None`
    /// at the end of the file, or the damage found at the current position.
    #[allow(clippy::type_complexity)]
    pub fn next_record(
        &mut self,
    ) -> Result<std::result::Result<Option<(u64, RecordHeader, &[u8])>, BadRecord>> {
        let offset = self.pos;
        if offset == self.len {
            return Ok(Ok(None));
        }
        let bad = |reason| Ok(Err(BadRecord { offset, reason }));
        if self.len - offset < format::RECORD_HEADER_LEN as u64 {
            return bad("partial record header");
        }
        let start = self.fill(offset, format::RECORD_HEADER_LEN)?;
        let Some(h) = RecordHeader::decode(&self.buf[start..]) else {
            return bad("bad record header");
        };
        let len = h.len();
        if self.len - offset < len as u64 {
            return bad("record runs past the end of the file");
        }
        let start = self.fill(offset, len)?;
        let record = &self.buf[start..start + len];
        if !h.crc_ok(record) {
            return bad("record checksum mismatch");
        }
        self.pos += len as u64;
        Ok(Ok(Some((offset, h, record))))
    }
}

/// What scanning a data file found.
#[derive(Debug)]
pub struct Scan {
    /// One entry per complete record, in file order.
    pub entries: Vec<HintEntry>,
    /// Set when a torn tail was cut off: the offset the file was truncated
    /// at, and why.
    pub truncated: Option<(u64, &'static str)>,
}

/// Scans every record of `file`. A damaged record is [`Error::Corrupt`],
/// except in the active file (`tolerate_torn_tail`), where damage that
/// nothing valid follows is a torn write: the file is truncated at the
/// start of the damaged record's batch, durably, and the cut reported.
pub fn scan(file: &DataFile, tolerate_torn_tail: bool) -> Result<Scan> {
    let mut reader = RecordReader::new(file)?;
    let mut entries = Vec::new();
    let mut batch: Vec<HintEntry> = Vec::new();
    let mut batch_start = reader.pos;
    let bad = loop {
        match reader.next_record()? {
            Ok(Some((offset, h, bytes))) => {
                let key = &bytes[format::RECORD_HEADER_LEN..][..h.key_size as usize];
                batch.push(HintEntry {
                    timestamp: h.timestamp,
                    flags: h.flags & FLAG_TOMBSTONE,
                    key: key.into(),
                    value_size: h.value_size,
                    offset: offset as u32,
                });
                if h.flags & FLAG_BATCH_CONT == 0 {
                    entries.append(&mut batch);
                    batch_start = reader.pos;
                }
            }
            Ok(None) if batch.is_empty() => {
                return Ok(Scan {
                    entries,
                    truncated: None,
                })
            }
            Ok(None) => {
                // Every record is whole, but the batch's last one is
                // missing: the damage is at the end of the file.
                break BadRecord {
                    offset: reader.pos,
                    reason: "unfinished write batch",
                };
            }
            Err(bad) => break bad,
        }
    };
    let len = reader.len;
    drop(reader);
    if !tolerate_torn_tail || valid_record_after(file, bad.offset, len)? {
        return Err(Error::corrupt(&file.path, bad.offset, bad.reason));
    }
    file.file.set_len(batch_start).at(&file.path)?;
    file.file.sync_all().at(&file.path)?;
    Ok(Scan {
        entries,
        truncated: Some((batch_start, bad.reason)),
    })
}

/// Whether a record with a good checksum starts anywhere after `offset`:
/// then the damage at `offset` is not a torn tail (a torn write leaves
/// nothing valid behind it) but corruption.
fn valid_record_after(file: &DataFile, offset: u64, len: u64) -> Result<bool> {
    let from = offset + 1;
    if from >= len {
        return Ok(false);
    }
    let mut tail = vec![0u8; (len - from) as usize];
    file.file.read_exact_at(&mut tail, from).at(&file.path)?;
    for p in 0..tail.len() {
        let rest = &tail[p..];
        if rest.len() < format::RECORD_HEADER_LEN {
            break;
        }
        if let Some(h) = RecordHeader::decode(rest) {
            if h.len() <= rest.len() && h.crc_ok(&rest[..h.len()]) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Writes the hint file of data file `id`, durably.
pub fn write_hint(dir: &Path, id: u32, entries: &[HintEntry]) -> Result<()> {
    write_atomic(dir, &hint_path(dir, id), &format::encode_hint(entries))
}
