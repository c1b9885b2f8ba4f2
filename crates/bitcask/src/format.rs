//! The on-disk formats: file headers, data records, hint files and the
//! merge manifest. Every integer is little-endian. The crate docs lay the
//! formats out byte by byte; this module encodes and decodes them.

use std::path::Path;

use crate::error::{Error, Result};
use crate::limits;

/// The format version this build writes and the newest it reads.
pub const VERSION: u32 = 1;

/// Magic bytes opening a data file.
pub const DATA_MAGIC: [u8; 8] = *b"RKVBCDAT";
/// Magic bytes opening a hint file.
pub const HINT_MAGIC: [u8; 8] = *b"RKVBCHNT";
/// Magic bytes opening the merge manifest.
pub const MERGE_MAGIC: [u8; 8] = *b"RKVBCMRG";

/// Length of a file header: magic (8), version (4), CRC32C of both (4).
pub const HEADER_LEN: usize = 16;

/// Length of a data record's fixed part: crc (4), timestamp (8), flags (1),
/// key size (4), value size (4).
pub const RECORD_HEADER_LEN: usize = 21;

/// Record flag: the record is a tombstone (a delete); its value is empty.
pub const FLAG_TOMBSTONE: u8 = 0b01;
/// Record flag: more records of the same write batch follow this one.
pub const FLAG_BATCH_CONT: u8 = 0b10;
const FLAGS_KNOWN: u8 = FLAG_TOMBSTONE | FLAG_BATCH_CONT;

/// Length of a hint entry's fixed part: timestamp (8), flags (1), key size
/// (4), value size (4), record offset (4).
pub const HINT_ENTRY_LEN: usize = 21;
/// Length of a hint file's footer: entry count (8), CRC32C (4).
pub const HINT_FOOTER_LEN: usize = 12;

/// Encodes a file header.
pub fn encode_header(magic: [u8; 8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&magic);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a file header: magic, then version (a newer one is
/// [`Error::UnsupportedVersion`]), then checksum.
pub fn check_header(path: &Path, bytes: &[u8], magic: [u8; 8]) -> Result<()> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::corrupt(path, 0, "file shorter than its header"));
    }
    if bytes[..8] != magic {
        return Err(Error::corrupt(path, 0, "bad magic bytes"));
    }
    let version = u32_at(bytes, 8);
    if version > VERSION {
        return Err(Error::UnsupportedVersion {
            file: path.to_path_buf(),
            version,
            supported: VERSION,
        });
    }
    if crc32c::crc32c(&bytes[..12]) != u32_at(bytes, 12) {
        return Err(Error::corrupt(path, 0, "header checksum mismatch"));
    }
    if version == 0 {
        return Err(Error::corrupt(path, 8, "format version 0"));
    }
    Ok(())
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The length of an encoded record.
pub fn record_len(key_size: usize, value_size: usize) -> usize {
    RECORD_HEADER_LEN + key_size + value_size
}

/// Appends one encoded record to `buf`.
pub fn encode_record(buf: &mut Vec<u8>, timestamp: u64, flags: u8, key: &[u8], value: &[u8]) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&timestamp.to_le_bytes());
    buf.push(flags);
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A record's fixed part, decoded but not yet checked against its CRC.
#[derive(Clone, Copy, Debug)]
pub struct RecordHeader {
    pub crc: u32,
    pub timestamp: u64,
    pub flags: u8,
    pub key_size: u32,
    pub value_size: u32,
}

impl RecordHeader {
    /// Decodes the fixed part; `None` if a field is out of range (unknown
    /// flags, empty or oversized key, oversized value, a tombstone with a
    /// value).
    pub fn decode(b: &[u8]) -> Option<Self> {
        let h = RecordHeader {
            crc: u32_at(b, 0),
            timestamp: u64_at(b, 4),
            flags: b[12],
            key_size: u32_at(b, 13),
            value_size: u32_at(b, 17),
        };
        let sane = h.flags & !FLAGS_KNOWN == 0
            && h.key_size != 0
            && h.key_size as usize <= limits::key_size_max
            && h.value_size as usize <= limits::value_size_max
            && (h.flags & FLAG_TOMBSTONE == 0 || h.value_size == 0);
        sane.then_some(h)
    }

    /// The length of the whole record.
    pub fn len(&self) -> usize {
        record_len(self.key_size as usize, self.value_size as usize)
    }

    /// Whether `record` (the whole encoded record) matches the CRC.
    pub fn crc_ok(&self, record: &[u8]) -> bool {
        crc32c::crc32c(&record[4..]) == self.crc
    }
}

/// One entry of a hint file: where a record of a data file is and what it
/// holds, without its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HintEntry {
    pub timestamp: u64,
    pub flags: u8,
    pub key: Box<[u8]>,
    pub value_size: u32,
    pub offset: u32,
}

/// Encodes a whole hint file.
pub fn encode_hint(entries: &[HintEntry]) -> Vec<u8> {
    let len: usize = entries.iter().map(|e| HINT_ENTRY_LEN + e.key.len()).sum();
    let mut buf = Vec::with_capacity(HEADER_LEN + len + HINT_FOOTER_LEN);
    buf.extend_from_slice(&encode_header(HINT_MAGIC));
    for e in entries {
        buf.extend_from_slice(&e.timestamp.to_le_bytes());
        buf.push(e.flags);
        buf.extend_from_slice(&(e.key.len() as u32).to_le_bytes());
        buf.extend_from_slice(&e.value_size.to_le_bytes());
        buf.extend_from_slice(&e.offset.to_le_bytes());
        buf.extend_from_slice(&e.key);
    }
    buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

/// Decodes a whole hint file, calling `f` for each entry (the key as a
/// slice of `bytes`). Any damage is an error; the caller then falls back
/// to scanning the data file.
pub fn decode_hint<'a>(
    path: &Path,
    bytes: &'a [u8],
    mut f: impl FnMut(u64, u8, &'a [u8], u32, u32),
) -> Result<()> {
    check_header(path, bytes, HINT_MAGIC)?;
    if bytes.len() < HEADER_LEN + HINT_FOOTER_LEN {
        return Err(Error::corrupt(path, 0, "hint file without a footer"));
    }
    let footer = bytes.len() - HINT_FOOTER_LEN;
    let crc_at = bytes.len() - 4;
    if crc32c::crc32c(&bytes[..crc_at]) != u32_at(bytes, crc_at) {
        return Err(Error::corrupt(
            path,
            crc_at as u64,
            "hint checksum mismatch",
        ));
    }
    let count = u64_at(bytes, footer);
    let mut at = HEADER_LEN;
    let mut seen = 0u64;
    while at < footer {
        if footer - at < HINT_ENTRY_LEN {
            return Err(Error::corrupt(path, at as u64, "truncated hint entry"));
        }
        let b = &bytes[at..];
        let timestamp = u64_at(b, 0);
        let flags = b[8];
        let key_size = u32_at(b, 9) as usize;
        let value_size = u32_at(b, 13);
        let offset = u32_at(b, 17);
        if key_size == 0 || key_size > footer - at - HINT_ENTRY_LEN || flags & !FLAGS_KNOWN != 0 {
            return Err(Error::corrupt(path, at as u64, "bad hint entry"));
        }
        f(
            timestamp,
            flags,
            &b[HINT_ENTRY_LEN..HINT_ENTRY_LEN + key_size],
            value_size,
            offset,
        );
        at += HINT_ENTRY_LEN + key_size;
        seen += 1;
    }
    if seen != count {
        return Err(Error::corrupt(
            path,
            footer as u64,
            "hint entry count mismatch",
        ));
    }
    Ok(())
}

/// Encodes the merge manifest: the ids of the data files a finished merge
/// replaced.
pub fn encode_manifest(replaced: &[u32]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + 8 + 4 * replaced.len() + 4);
    buf.extend_from_slice(&encode_header(MERGE_MAGIC));
    buf.extend_from_slice(&(replaced.len() as u64).to_le_bytes());
    for id in replaced {
        buf.extend_from_slice(&id.to_le_bytes());
    }
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

/// Decodes the merge manifest.
pub fn decode_manifest(path: &Path, bytes: &[u8]) -> Result<Vec<u32>> {
    check_header(path, bytes, MERGE_MAGIC)?;
    let bad = || Error::corrupt(path, HEADER_LEN as u64, "bad merge manifest");
    if bytes.len() < HEADER_LEN + 12 {
        return Err(bad());
    }
    let crc_at = bytes.len() - 4;
    if crc32c::crc32c(&bytes[..crc_at]) != u32_at(bytes, crc_at) {
        return Err(bad());
    }
    let count = u64_at(bytes, HEADER_LEN);
    let body = &bytes[HEADER_LEN + 8..crc_at];
    if body.len() as u64 != count.saturating_mul(4) {
        return Err(bad());
    }
    Ok(body.chunks_exact(4).map(|c| u32_at(c, 0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 42, FLAG_BATCH_CONT, b"key", b"value");
        assert_eq!(buf.len(), record_len(3, 5));
        let h = RecordHeader::decode(&buf).unwrap();
        assert_eq!(
            (h.timestamp, h.flags, h.key_size, h.value_size),
            (42, 2, 3, 5)
        );
        assert!(h.crc_ok(&buf));
        buf[25] ^= 1;
        assert!(!h.crc_ok(&buf));
    }

    #[test]
    fn hint_round_trip_and_damage() {
        let entries = vec![
            HintEntry {
                timestamp: 1,
                flags: 0,
                key: b"a".to_vec().into(),
                value_size: 3,
                offset: 16,
            },
            HintEntry {
                timestamp: 2,
                flags: FLAG_TOMBSTONE,
                key: b"bb".to_vec().into(),
                value_size: 0,
                offset: 41,
            },
        ];
        let bytes = encode_hint(&entries);
        let p = Path::new("x.hint");
        let mut got = Vec::new();
        decode_hint(p, &bytes, |t, f, k, v, o| {
            got.push(HintEntry {
                timestamp: t,
                flags: f,
                key: k.into(),
                value_size: v,
                offset: o,
            })
        })
        .unwrap();
        assert_eq!(got, entries);
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode_hint(p, &b, |_, _, _, _, _| {}).is_err(), "bit {i}");
        }
        for len in 0..bytes.len() {
            assert!(
                decode_hint(p, &bytes[..len], |_, _, _, _, _| {}).is_err(),
                "len {len}"
            );
        }
    }

    #[test]
    fn newer_version_is_typed() {
        let mut h = encode_header(DATA_MAGIC);
        h[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        let err = check_header(Path::new("d"), &h, DATA_MAGIC).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { version, .. } if version == VERSION + 1));
    }

    #[test]
    fn manifest_round_trip() {
        let b = encode_manifest(&[1, 5, 9]);
        assert_eq!(decode_manifest(Path::new("m"), &b).unwrap(), vec![1, 5, 9]);
        assert!(decode_manifest(Path::new("m"), &b[..b.len() - 1]).is_err());
    }
}
