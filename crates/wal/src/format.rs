//! Encoding and decoding of segment headers, records and snapshot files.
//! The byte layout is documented in the crate docs; this module is its only
//! implementation. All integers are little-endian.

use std::collections::BTreeSet;

use bytes::Bytes;
use raft::{ConfState, Entry, EntryKind, HardState, Index, NodeId, SnapshotMeta, Term};

use crate::limits;

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RKVWAL\r\n";
/// The first eight bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RKVSNP\r\n";
/// The on-disk format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes in a segment header.
pub const SEGMENT_HEADER_SIZE: usize = 32;
/// Bytes in a snapshot file header.
pub const SNAPSHOT_HEADER_SIZE: usize = 48;
/// Bytes before a record's payload: length (4), CRC32C (4), kind (1).
pub const RECORD_HEADER_SIZE: usize = 9;
/// Bytes of an entry payload before its data: index, term, entry kind.
pub const ENTRY_FIXED_SIZE: usize = 17;

/// Record kinds (byte 8 of a record).
pub const KIND_ENTRY: u8 = 1;
pub const KIND_HARD_STATE: u8 = 2;
pub const KIND_SNAPSHOT: u8 = 3;

/// Flag bit in a snapshot record: drop every entry, not only those at or
/// below the snapshot index (an installed snapshot that the log does not
/// match).
pub const SNAPSHOT_FLAG_CLEAR_LOG: u8 = 1;

/// Where a snapshot's data lives: `snap-<seq>.snap`, its length and CRC32C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapFile {
    pub seq: u64,
    pub len: u64,
    pub crc: u32,
}

/// A snapshot record: the metadata, whether the whole log is dropped, and
/// the file holding the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapRecord {
    pub meta: SnapshotMeta,
    pub clear_log: bool,
    pub file: SnapFile,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Entry(Entry),
    HardState(HardState),
    Snapshot(SnapRecord),
}

/// Why a segment header is not acceptable.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    Short,
    Magic,
    /// A version this code does not know; `newer` if above ours.
    Version(u32),
    Reserved,
    Crc,
}

/// The segment header: magic, version, reserved, sequence number, reserved,
/// CRC32C of bytes 0..28.
pub fn encode_segment_header(seq: u64) -> [u8; SEGMENT_HEADER_SIZE] {
    let mut h = [0u8; SEGMENT_HEADER_SIZE];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Check a segment header and return its sequence number.
pub fn decode_segment_header(buf: &[u8]) -> Result<u64, HeaderError> {
    if buf.len() < SEGMENT_HEADER_SIZE {
        return Err(HeaderError::Short);
    }
    if buf[0..8] != SEGMENT_MAGIC {
        return Err(HeaderError::Magic);
    }
    let version = u32_at(buf, 8);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    if crc32c::crc32c(&buf[0..28]) != u32_at(buf, 28) {
        return Err(HeaderError::Crc);
    }
    if u32_at(buf, 12) != 0 || u32_at(buf, 24) != 0 {
        return Err(HeaderError::Reserved);
    }
    Ok(u64_at(buf, 16))
}

/// The snapshot file header: magic, version, reserved, index, term, data
/// length, data CRC32C, CRC32C of bytes 0..44.
pub fn encode_snapshot_header(
    index: Index,
    term: Term,
    len: u64,
    crc: u32,
) -> [u8; SNAPSHOT_HEADER_SIZE] {
    let mut h = [0u8; SNAPSHOT_HEADER_SIZE];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    h[24..32].copy_from_slice(&term.to_le_bytes());
    h[32..40].copy_from_slice(&len.to_le_bytes());
    h[40..44].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32c::crc32c(&h[0..44]);
    h[44..48].copy_from_slice(&hcrc.to_le_bytes());
    h
}

/// A decoded snapshot file header.
#[derive(Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub index: Index,
    pub term: Term,
    pub len: u64,
    pub crc: u32,
}

pub fn decode_snapshot_header(buf: &[u8]) -> Result<SnapshotHeader, HeaderError> {
    if buf.len() < SNAPSHOT_HEADER_SIZE {
        return Err(HeaderError::Short);
    }
    if buf[0..8] != SNAPSHOT_MAGIC {
        return Err(HeaderError::Magic);
    }
    let version = u32_at(buf, 8);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    if crc32c::crc32c(&buf[0..44]) != u32_at(buf, 44) {
        return Err(HeaderError::Crc);
    }
    if u32_at(buf, 12) != 0 {
        return Err(HeaderError::Reserved);
    }
    Ok(SnapshotHeader {
        index: u64_at(buf, 16),
        term: u64_at(buf, 24),
        len: u64_at(buf, 32),
        crc: u32_at(buf, 40),
    })
}

/// The size of the record that holds `entry`.
pub fn entry_record_size(entry: &Entry) -> u64 {
    (RECORD_HEADER_SIZE + ENTRY_FIXED_SIZE) as u64 + entry.data.len() as u64
}

/// Append one record to `buf`: reserve the header, let `payload` write the
/// payload, then fill in the length and the CRC. Returns the record's size.
fn encode_record(buf: &mut Vec<u8>, kind: u8, payload: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_SIZE]);
    buf[start + 8] = kind;
    payload(buf);
    let len = (buf.len() - start - RECORD_HEADER_SIZE) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = record_crc(
        &buf[start..start + 4],
        kind,
        &buf[start + RECORD_HEADER_SIZE..],
    );
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buf.len() - start
}

/// The CRC32C a record carries: over its length field, kind and payload.
fn record_crc(len: &[u8], kind: u8, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(len);
    let crc = crc32c::crc32c_append(crc, &[kind]);
    crc32c::crc32c_append(crc, payload)
}

pub fn encode_entry(buf: &mut Vec<u8>, e: &Entry) -> usize {
    encode_record(buf, KIND_ENTRY, |b| {
        b.extend_from_slice(&e.index.to_le_bytes());
        b.extend_from_slice(&e.term.to_le_bytes());
        b.push(e.kind.as_u8());
        b.extend_from_slice(&e.data);
    })
}

pub fn encode_hard_state(buf: &mut Vec<u8>, hs: &HardState) -> usize {
    encode_record(buf, KIND_HARD_STATE, |b| {
        b.extend_from_slice(&hs.term.to_le_bytes());
        b.extend_from_slice(&hs.vote.unwrap_or(0).to_le_bytes());
        b.extend_from_slice(&hs.commit.to_le_bytes());
    })
}

pub fn encode_snapshot(buf: &mut Vec<u8>, r: &SnapRecord) -> usize {
    encode_record(buf, KIND_SNAPSHOT, |b| {
        b.extend_from_slice(&r.meta.index.to_le_bytes());
        b.extend_from_slice(&r.meta.term.to_le_bytes());
        b.push(if r.clear_log {
            SNAPSHOT_FLAG_CLEAR_LOG
        } else {
            0
        });
        b.extend_from_slice(&r.file.seq.to_le_bytes());
        b.extend_from_slice(&r.file.len.to_le_bytes());
        b.extend_from_slice(&r.file.crc.to_le_bytes());
        for set in [
            &r.meta.conf.voters,
            &r.meta.conf.learners,
            &r.meta.conf.voters_outgoing,
        ] {
            b.extend_from_slice(&(set.len() as u32).to_le_bytes());
            for id in set {
                b.extend_from_slice(&id.to_le_bytes());
            }
        }
    })
}

/// Why the bytes at an offset are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRecord {
    /// Fewer than [`RECORD_HEADER_SIZE`] bytes left.
    ShortHeader,
    /// The length field is 0 or above the record size limit.
    Length(u32),
    /// The record would end past the end of the file.
    PastEnd(u32),
    /// The checksum does not match.
    Crc,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRecord::ShortHeader => write!(f, "incomplete record header"),
            BadRecord::Length(l) => write!(f, "invalid record length {l}"),
            BadRecord::PastEnd(l) => write!(
                f,
                "record of {l} payload bytes runs past the end of the file"
            ),
            BadRecord::Crc => write!(f, "record checksum mismatch"),
        }
    }
}

/// Frame and checksum-check the record at `buf[p..]`. Returns the kind and
/// the payload range; the record ends at the payload's end.
pub fn check_record(buf: &[u8], p: usize) -> Result<(u8, std::ops::Range<usize>), BadRecord> {
    if buf.len().saturating_sub(p) < RECORD_HEADER_SIZE {
        return Err(BadRecord::ShortHeader);
    }
    let len = u32_at(buf, p);
    if len == 0 || len as u64 + RECORD_HEADER_SIZE as u64 > limits::RECORD_SIZE_MAX {
        return Err(BadRecord::Length(len));
    }
    let end = p + RECORD_HEADER_SIZE + len as usize;
    if end > buf.len() {
        return Err(BadRecord::PastEnd(len));
    }
    let kind = buf[p + 8];
    if record_crc(&buf[p..p + 4], kind, &buf[p + RECORD_HEADER_SIZE..end]) != u32_at(buf, p + 4) {
        return Err(BadRecord::Crc);
    }
    Ok((kind, p + RECORD_HEADER_SIZE..end))
}

/// Whether the record at `p` would check out if one bit of its length field
/// were flipped back: tells a damaged length field (corruption) from a
/// record cut short by a crash.
pub fn length_bit_flip_explains(buf: &[u8], p: usize) -> bool {
    if buf.len().saturating_sub(p) < RECORD_HEADER_SIZE {
        return false;
    }
    let len = u32_at(buf, p);
    let kind = buf[p + 8];
    let crc = u32_at(buf, p + 4);
    (0..32).any(|bit| {
        let l = len ^ (1u32 << bit);
        let end = p as u64 + RECORD_HEADER_SIZE as u64 + l as u64;
        l != 0
            && l as u64 + RECORD_HEADER_SIZE as u64 <= limits::RECORD_SIZE_MAX
            && end <= buf.len() as u64
            && record_crc(
                &l.to_le_bytes(),
                kind,
                &buf[p + RECORD_HEADER_SIZE..end as usize],
            ) == crc
    })
}

/// Decode a checked record's payload. `payload` is a slice of `whole` (so
/// entry data can share `whole`'s allocation).
pub fn decode_record(
    kind: u8,
    whole: &Bytes,
    payload: std::ops::Range<usize>,
) -> Result<Record, String> {
    let p = &whole[payload.clone()];
    match kind {
        KIND_ENTRY => {
            if p.len() < ENTRY_FIXED_SIZE {
                return Err(format!("entry payload of {} bytes is too short", p.len()));
            }
            let kind_byte = p[16];
            let kind = EntryKind::from_u8(kind_byte)
                .ok_or_else(|| format!("unknown entry kind {kind_byte}"))?;
            Ok(Record::Entry(Entry {
                index: u64_at(p, 0),
                term: u64_at(p, 8),
                kind,
                data: whole.slice(payload.start + ENTRY_FIXED_SIZE..payload.end),
            }))
        }
        KIND_HARD_STATE => {
            if p.len() != 24 {
                return Err(format!("hard state payload of {} bytes (want 24)", p.len()));
            }
            let vote = u64_at(p, 8);
            Ok(Record::HardState(HardState {
                term: u64_at(p, 0),
                vote: (vote != 0).then_some(vote),
                commit: u64_at(p, 16),
            }))
        }
        KIND_SNAPSHOT => decode_snapshot(p).ok_or_else(|| "malformed snapshot record".to_string()),
        k => Err(format!("unknown record kind {k}")),
    }
}

fn decode_snapshot(p: &[u8]) -> Option<Record> {
    const FIXED: usize = 8 + 8 + 1 + 8 + 8 + 4;
    if p.len() < FIXED {
        return None;
    }
    let flags = p[16];
    if flags & !SNAPSHOT_FLAG_CLEAR_LOG != 0 {
        return None;
    }
    let mut at = FIXED;
    let mut sets: [BTreeSet<NodeId>; 3] = Default::default();
    let mut total = 0usize;
    for set in &mut sets {
        if p.len() < at + 4 {
            return None;
        }
        let n = u32_at(p, at) as usize;
        at += 4;
        total += n;
        if total > limits::CONF_MEMBERS_MAX || p.len() < at + n * 8 {
            return None;
        }
        for i in 0..n {
            set.insert(u64_at(p, at + i * 8));
        }
        at += n * 8;
    }
    if at != p.len() {
        return None;
    }
    let [voters, learners, voters_outgoing] = sets;
    Some(Record::Snapshot(SnapRecord {
        meta: SnapshotMeta {
            index: u64_at(p, 0),
            term: u64_at(p, 8),
            conf: ConfState {
                voters,
                learners,
                voters_outgoing,
            },
        },
        clear_log: flags & SNAPSHOT_FLAG_CLEAR_LOG != 0,
        file: SnapFile {
            seq: u64_at(p, 17),
            len: u64_at(p, 25),
            crc: u32_at(p, 33),
        },
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let e = Entry {
            index: 7,
            term: 3,
            kind: EntryKind::ConfChange,
            data: Bytes::from_static(b"hello"),
        };
        let hs = HardState {
            term: 4,
            vote: Some(2),
            commit: 6,
        };
        let snap = SnapRecord {
            meta: SnapshotMeta {
                index: 5,
                term: 2,
                conf: ConfState {
                    voters: [1, 2, 3].into(),
                    learners: [4].into(),
                    voters_outgoing: [1, 2].into(),
                },
            },
            clear_log: true,
            file: SnapFile {
                seq: 9,
                len: 100,
                crc: 0xdead_beef,
            },
        };
        let mut buf = Vec::new();
        encode_entry(&mut buf, &e);
        encode_hard_state(&mut buf, &hs);
        encode_snapshot(&mut buf, &snap);
        let whole = Bytes::from(buf);
        let mut p = 0;
        let mut out = Vec::new();
        while p < whole.len() {
            let (kind, range) = check_record(&whole, p).unwrap();
            p = range.end;
            out.push(decode_record(kind, &whole, range).unwrap());
        }
        assert_eq!(
            out,
            vec![
                Record::Entry(e),
                Record::HardState(hs),
                Record::Snapshot(snap)
            ]
        );
    }

    #[test]
    fn header_rejects_newer_version_and_damage() {
        let h = encode_segment_header(42);
        assert_eq!(decode_segment_header(&h), Ok(42));
        let mut newer = h;
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(decode_segment_header(&newer), Err(HeaderError::Version(2)));
        let mut bad = h;
        bad[20] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::Crc));
        assert_eq!(decode_segment_header(&h[..10]), Err(HeaderError::Short));
    }

    #[test]
    fn length_flip_is_recognised() {
        let mut buf = Vec::new();
        let e = Entry {
            index: 1,
            term: 1,
            kind: EntryKind::Normal,
            data: Bytes::from(vec![7u8; 100]),
        };
        encode_entry(&mut buf, &e);
        encode_entry(&mut buf, &e);
        buf[2] ^= 0x10; // length now far past the end
        assert_eq!(
            check_record(&buf, 0),
            Err(BadRecord::PastEnd(117 + (0x10 << 16)))
        );
        assert!(length_bit_flip_explains(&buf, 0));
        // A record genuinely cut short is not explained by a length flip.
        let mut short = Vec::new();
        encode_entry(&mut short, &e);
        short.truncate(60);
        assert!(!length_bit_flip_explains(&short, 0));
    }
}
