//! The key layout in the engine and the records stored under each key.
//!
//! | engine key | engine value |
//! |---|---|
//! | `0x00` ++ user key | user record |
//! | `0x01 'a'` | applied: `uvarint index`, `uvarint term` |
//! | `0x01 'f'` | format version: one byte |
//! | `0x01 'r'` | restore in progress: `uvarint` target index |
//! | `0x01 's'` ++ client id (`u64` big-endian) | session record |
//!
//! User record: `u8` record version (1), `uvarint create_index`,
//! `uvarint mod_index`, `uvarint version`, then the value (the rest).
//!
//! Session record: `uvarint last_seq`, `uvarint last_index`, `bool` has a
//! response, then the response's encoding (the rest) if it has one.
//!
//! User keys all start with `0x00` and internal keys with `0x01`, so a user
//! scan bounded to `0x00..0x01` never sees an internal key.

use std::ops::Bound;

use crate::codec::{put_bool, put_uvarint, uvarint_len, Reader};
use crate::error::{DecodeError, FatalError};
use crate::response::{KeyValue, Response};
use raft::{Index, Term};

/// The prefix of user keys.
pub(crate) const USER_PREFIX: u8 = 0x00;
/// The applied index and term.
pub(crate) const APPLIED_KEY: &[u8] = &[0x01, b'a'];
/// The state machine's format version.
pub(crate) const FORMAT_KEY: &[u8] = &[0x01, b'f'];
/// Present only while a snapshot restore is under way.
pub(crate) const RESTORE_KEY: &[u8] = &[0x01, b'r'];
/// The prefix of session keys.
pub(crate) const SESSION_PREFIX: &[u8] = &[0x01, b's'];
/// The first key after every session key.
pub(crate) const SESSION_END: &[u8] = &[0x01, b't'];

/// The state format version, stored under `0x01 'f'`.
pub const STATE_FORMAT_VERSION: u8 = 1;
/// The user record version byte.
const RECORD_VERSION: u8 = 1;

/// The engine key of a user key.
pub(crate) fn user_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(USER_PREFIX);
    k.extend_from_slice(key);
    k
}

/// The engine bounds of the user range `start..end` (empty `end`: to the
/// end of the user key space).
pub(crate) fn user_bounds(start: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let lo = user_key(start);
    let hi = if end.is_empty() {
        vec![USER_PREFIX + 1]
    } else {
        user_key(end)
    };
    (lo, hi)
}

/// `(Included(lo), Excluded(hi))` for the engine.
pub(crate) fn bounds<'a>(lo: &'a [u8], hi: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (Bound::Included(lo), Bound::Excluded(hi))
}

/// The user key of an engine key, if it is one.
pub(crate) fn strip_user(engine_key: &[u8]) -> Option<&[u8]> {
    match engine_key.split_first() {
        Some((&USER_PREFIX, rest)) => Some(rest),
        _ => None,
    }
}

/// The engine key of a session.
pub(crate) fn session_key(client_id: u64) -> Vec<u8> {
    let mut k = SESSION_PREFIX.to_vec();
    k.extend_from_slice(&client_id.to_be_bytes());
    k
}

/// The client id of a session key.
pub(crate) fn session_id(engine_key: &[u8]) -> Result<u64, FatalError> {
    engine_key
        .strip_prefix(SESSION_PREFIX)
        .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| FatalError::Corrupt {
            what: format!("session key {engine_key:?}"),
            source: DecodeError::Truncated { offset: 0 },
        })
}

/// A user key's stored value and metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub value: Vec<u8>,
    pub create_index: Index,
    pub mod_index: Index,
    pub version: u64,
}

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            1 + uvarint_len(self.create_index)
                + uvarint_len(self.mod_index)
                + uvarint_len(self.version)
                + self.value.len(),
        );
        out.push(RECORD_VERSION);
        put_uvarint(&mut out, self.create_index);
        put_uvarint(&mut out, self.mod_index);
        put_uvarint(&mut out, self.version);
        out.extend_from_slice(&self.value);
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8().map_err(|_| DecodeError::Empty)?;
        if version != RECORD_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let create_index = r.uvarint()?;
        let mod_index = r.uvarint()?;
        let version = r.uvarint()?;
        let value = r.take(r.remaining())?.to_vec();
        Ok(Record {
            value,
            create_index,
            mod_index,
            version,
        })
    }

    /// Decodes the record stored under a user key, as a fatal error if it
    /// does not decode (the engine returned something we never wrote).
    pub(crate) fn decode_stored(key: &[u8], buf: &[u8]) -> Result<Record, FatalError> {
        Record::decode(buf).map_err(|source| FatalError::Corrupt {
            what: format!("user record {}", show_key(key)),
            source,
        })
    }

    pub(crate) fn into_kv(self, key: Vec<u8>) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_index: self.create_index,
            mod_index: self.mod_index,
            version: self.version,
        }
    }
}

/// The applied index and term.
pub(crate) fn encode_applied(index: Index, term: Term) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    put_uvarint(&mut out, index);
    put_uvarint(&mut out, term);
    out
}

pub(crate) fn decode_applied(buf: &[u8]) -> Result<(Index, Term), FatalError> {
    let corrupt = |source| FatalError::Corrupt {
        what: "applied index".into(),
        source,
    };
    let mut r = Reader::new(buf);
    let index = r.uvarint().map_err(corrupt)?;
    let term = r.uvarint().map_err(corrupt)?;
    r.finish().map_err(corrupt)?;
    Ok((index, term))
}

/// A uvarint on its own (the restore marker).
pub(crate) fn encode_index(index: Index) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    put_uvarint(&mut out, index);
    out
}

pub(crate) fn decode_index(buf: &[u8], what: &str) -> Result<Index, FatalError> {
    let corrupt = |source| FatalError::Corrupt {
        what: what.into(),
        source,
    };
    let mut r = Reader::new(buf);
    let index = r.uvarint().map_err(corrupt)?;
    r.finish().map_err(corrupt)?;
    Ok(index)
}

/// A client session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    pub last_seq: u64,
    pub last_index: Index,
    pub response: Option<Response>,
}

impl SessionRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let response = self.response.as_ref().map(Response::encode);
        let mut out = Vec::with_capacity(21 + response.as_ref().map_or(0, Vec::len));
        put_uvarint(&mut out, self.last_seq);
        put_uvarint(&mut out, self.last_index);
        put_bool(&mut out, response.is_some());
        if let Some(r) = response {
            out.extend_from_slice(&r);
        }
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<SessionRecord, DecodeError> {
        let mut r = Reader::new(buf);
        let last_seq = r.uvarint()?;
        let last_index = r.uvarint()?;
        let response = if r.bool()? {
            Some(Response::decode(r.take(r.remaining())?)?)
        } else {
            r.finish()?;
            None
        };
        Ok(SessionRecord {
            last_seq,
            last_index,
            response,
        })
    }

    pub(crate) fn decode_stored(client_id: u64, buf: &[u8]) -> Result<SessionRecord, FatalError> {
        SessionRecord::decode(buf).map_err(|source| FatalError::Corrupt {
            what: format!("session {client_id}"),
            source,
        })
    }
}

/// A key for error messages: printable ASCII as is, else hex; shortened.
pub(crate) fn show_key(key: &[u8]) -> String {
    let shown = &key[..key.len().min(64)];
    let mut s = if shown.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(shown).into_owned()
    } else {
        shown.iter().map(|b| format!("{b:02x}")).collect()
    };
    if key.len() > shown.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keeps_user_keys_below_internal_ones() {
        let (lo, hi) = user_bounds(b"", b"");
        assert!(lo.as_slice() < APPLIED_KEY && hi.as_slice() <= APPLIED_KEY);
        assert!(user_key(&[0xff; 8]).as_slice() < hi.as_slice());
        assert!(session_key(0).as_slice() >= SESSION_PREFIX);
        assert!(session_key(u64::MAX).as_slice() < SESSION_END);
        assert_eq!(session_id(&session_key(42)).unwrap(), 42);
        assert_eq!(strip_user(&user_key(b"k")), Some(&b"k"[..]));
        assert_eq!(strip_user(APPLIED_KEY), None);
    }

    #[test]
    fn record_round_trip() {
        let r = Record {
            value: b"hello".to_vec(),
            create_index: 3,
            mod_index: 300,
            version: 7,
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        assert!(Record::decode(&[9, 1, 1, 1]).is_err());
        assert!(Record::decode(&[]).is_err());
    }
}
