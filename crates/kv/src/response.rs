//! Responses: what applying a request produced, and their encoding (used to
//! keep a session's last response durable, and by anyone who wants to ship
//! a response as bytes).

use crate::codec::{bytes_len, put_bool, put_bytes, put_uvarint, uvarint_len, Reader};
use crate::error::{CommandError, DecodeError};
use raft::Index;

/// The response format version this build writes and reads.
pub const RESPONSE_FORMAT_VERSION: u8 = 1;

/// A key with its value and metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The log index of the entry that created the key (since its last
    /// delete).
    pub create_index: Index,
    /// The log index of the entry that last changed the key.
    pub mod_index: Index,
    /// 1 when created, +1 on every change; a deleted key starts over.
    pub version: u64,
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The log index at which the request applied (for an answer from the
    /// session cache: the index of the original).
    pub index: Index,
    /// The reply, or why the command was refused.
    pub result: Result<Reply, CommandError>,
}

/// What a successful command returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `prev` is set only when asked for and the key existed.
    Put { prev: Option<KeyValue> },
    /// `deleted`: whether the key existed; `prev` only when asked for.
    Delete {
        deleted: bool,
        prev: Option<KeyValue>,
    },
    /// The number of keys removed.
    DeleteRange { deleted: u64 },
    /// The key's new value length and version.
    Append { value_len: u64, version: u64 },
    /// Whether the compares held (so the success branch ran), and one
    /// result per op of the branch that ran.
    Txn {
        succeeded: bool,
        results: Vec<OpResult>,
    },
    /// The new session's client id.
    SessionRegistered { client_id: u64 },
}

/// The result of one transaction op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    Put,
    Delete { deleted: bool },
    Get { kv: Option<KeyValue> },
}

const RESULT_OK: u8 = 0;
const RESULT_ERR: u8 = 1;

const REPLY_PUT: u8 = 1;
const REPLY_DELETE: u8 = 2;
const REPLY_DELETE_RANGE: u8 = 3;
const REPLY_APPEND: u8 = 4;
const REPLY_TXN: u8 = 5;
const REPLY_SESSION: u8 = 6;

const OPRES_PUT: u8 = 1;
const OPRES_DELETE: u8 = 2;
const OPRES_GET: u8 = 3;

impl KeyValue {
    /// The bytes [`KeyValue`] takes in a response encoding.
    pub(crate) fn encoded_len(&self) -> usize {
        bytes_len(&self.key)
            + bytes_len(&self.value)
            + uvarint_len(self.create_index)
            + uvarint_len(self.mod_index)
            + uvarint_len(self.version)
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        put_bytes(out, &self.key);
        put_bytes(out, &self.value);
        put_uvarint(out, self.create_index);
        put_uvarint(out, self.mod_index);
        put_uvarint(out, self.version);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<KeyValue, DecodeError> {
        Ok(KeyValue {
            key: r.bytes()?,
            value: r.bytes()?,
            create_index: r.uvarint()?,
            mod_index: r.uvarint()?,
            version: r.uvarint()?,
        })
    }
}

fn opt_kv_len(kv: &Option<KeyValue>) -> usize {
    1 + kv.as_ref().map_or(0, KeyValue::encoded_len)
}

fn put_opt_kv(out: &mut Vec<u8>, kv: &Option<KeyValue>) {
    match kv {
        None => put_bool(out, false),
        Some(kv) => {
            put_bool(out, true);
            kv.encode_into(out);
        }
    }
}

fn opt_kv(r: &mut Reader<'_>) -> Result<Option<KeyValue>, DecodeError> {
    Ok(if r.bool()? {
        Some(KeyValue::decode_from(r)?)
    } else {
        None
    })
}

impl Reply {
    /// An upper bound of the bytes this reply takes in a response encoding.
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Reply::Put { prev } => 1 + opt_kv_len(prev),
            Reply::Delete { prev, .. } => 2 + opt_kv_len(prev),
            Reply::DeleteRange { .. } | Reply::SessionRegistered { .. } => 1 + 10,
            Reply::Append { .. } => 1 + 20,
            Reply::Txn { results, .. } => {
                2 + 10
                    + results
                        .iter()
                        .map(|r| match r {
                            OpResult::Put => 1,
                            OpResult::Delete { .. } => 2,
                            OpResult::Get { kv } => 1 + opt_kv_len(kv),
                        })
                        .sum::<usize>()
            }
        }
    }
}

impl Response {
    /// The encoding: version byte, `uvarint` index, then `0` + reply or `1`
    /// + error (tags listed in the source).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.push(RESPONSE_FORMAT_VERSION);
        put_uvarint(&mut out, self.index);
        match &self.result {
            Ok(reply) => {
                out.reserve(reply.encoded_len());
                out.push(RESULT_OK);
                encode_reply(&mut out, reply);
            }
            Err(e) => {
                out.push(RESULT_ERR);
                encode_error(&mut out, e);
            }
        }
        out
    }

    /// Decodes a response; never panics.
    pub fn decode(buf: &[u8]) -> Result<Response, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8().map_err(|_| DecodeError::Empty)?;
        if version != RESPONSE_FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let index = r.uvarint()?;
        let offset = r.offset() as u64;
        let result = match r.u8()? {
            RESULT_OK => Ok(decode_reply(&mut r)?),
            RESULT_ERR => Err(decode_error(&mut r)?),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "result",
                    offset,
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(Response { index, result })
    }
}

fn encode_reply(out: &mut Vec<u8>, reply: &Reply) {
    match reply {
        Reply::Put { prev } => {
            out.push(REPLY_PUT);
            put_opt_kv(out, prev);
        }
        Reply::Delete { deleted, prev } => {
            out.push(REPLY_DELETE);
            put_bool(out, *deleted);
            put_opt_kv(out, prev);
        }
        Reply::DeleteRange { deleted } => {
            out.push(REPLY_DELETE_RANGE);
            put_uvarint(out, *deleted);
        }
        Reply::Append { value_len, version } => {
            out.push(REPLY_APPEND);
            put_uvarint(out, *value_len);
            put_uvarint(out, *version);
        }
        Reply::Txn { succeeded, results } => {
            out.push(REPLY_TXN);
            put_bool(out, *succeeded);
            put_uvarint(out, results.len() as u64);
            for res in results {
                match res {
                    OpResult::Put => out.push(OPRES_PUT),
                    OpResult::Delete { deleted } => {
                        out.push(OPRES_DELETE);
                        put_bool(out, *deleted);
                    }
                    OpResult::Get { kv } => {
                        out.push(OPRES_GET);
                        put_opt_kv(out, kv);
                    }
                }
            }
        }
        Reply::SessionRegistered { client_id } => {
            out.push(REPLY_SESSION);
            put_uvarint(out, *client_id);
        }
    }
}

fn decode_reply(r: &mut Reader<'_>) -> Result<Reply, DecodeError> {
    let offset = r.offset() as u64;
    Ok(match r.u8()? {
        REPLY_PUT => Reply::Put { prev: opt_kv(r)? },
        REPLY_DELETE => Reply::Delete {
            deleted: r.bool()?,
            prev: opt_kv(r)?,
        },
        REPLY_DELETE_RANGE => Reply::DeleteRange {
            deleted: r.uvarint()?,
        },
        REPLY_APPEND => Reply::Append {
            value_len: r.uvarint()?,
            version: r.uvarint()?,
        },
        REPLY_TXN => {
            let succeeded = r.bool()?;
            let n = r.count(r.remaining())?;
            let mut results = Vec::with_capacity(n);
            for _ in 0..n {
                let offset = r.offset() as u64;
                results.push(match r.u8()? {
                    OPRES_PUT => OpResult::Put,
                    OPRES_DELETE => OpResult::Delete { deleted: r.bool()? },
                    OPRES_GET => OpResult::Get { kv: opt_kv(r)? },
                    tag => {
                        return Err(DecodeError::InvalidTag {
                            what: "op result",
                            offset,
                            tag,
                        })
                    }
                });
            }
            Reply::Txn { succeeded, results }
        }
        REPLY_SESSION => Reply::SessionRegistered {
            client_id: r.uvarint()?,
        },
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "reply",
                offset,
                tag,
            })
        }
    })
}

// Error tags.
const E_MALFORMED: u8 = 1;
const E_REQUEST_TOO_LARGE: u8 = 2;
const E_EMPTY_KEY: u8 = 3;
const E_KEY_TOO_LARGE: u8 = 4;
const E_VALUE_TOO_LARGE: u8 = 5;
const E_TOO_MANY_COMPARES: u8 = 6;
const E_TOO_MANY_OPS: u8 = 7;
const E_INVALID_RANGE: u8 = 8;
const E_RANGE_TOO_LARGE: u8 = 9;
const E_RESPONSE_TOO_LARGE: u8 = 10;
const E_UNKNOWN_SESSION: u8 = 11;
const E_STALE_REQUEST: u8 = 12;
const E_INVALID_SEQ: u8 = 13;
const E_REGISTER_WITH_SESSION: u8 = 14;

fn encode_error(out: &mut Vec<u8>, e: &CommandError) {
    let two = |out: &mut Vec<u8>, tag: u8, a: u64, b: u64| {
        out.push(tag);
        put_uvarint(out, a);
        put_uvarint(out, b);
    };
    match e {
        CommandError::Malformed { reason } => {
            out.push(E_MALFORMED);
            put_bytes(out, reason.as_bytes());
        }
        CommandError::RequestTooLarge { size, max } => two(out, E_REQUEST_TOO_LARGE, *size, *max),
        CommandError::EmptyKey => out.push(E_EMPTY_KEY),
        CommandError::KeyTooLarge { size, max } => two(out, E_KEY_TOO_LARGE, *size, *max),
        CommandError::ValueTooLarge { size, max } => two(out, E_VALUE_TOO_LARGE, *size, *max),
        CommandError::TooManyCompares { count, max } => two(out, E_TOO_MANY_COMPARES, *count, *max),
        CommandError::TooManyOps { count, max } => two(out, E_TOO_MANY_OPS, *count, *max),
        CommandError::InvalidRange => out.push(E_INVALID_RANGE),
        CommandError::RangeTooLarge { max } => {
            out.push(E_RANGE_TOO_LARGE);
            put_uvarint(out, *max);
        }
        CommandError::ResponseTooLarge { size, max } => two(out, E_RESPONSE_TOO_LARGE, *size, *max),
        CommandError::UnknownSession { client_id } => {
            out.push(E_UNKNOWN_SESSION);
            put_uvarint(out, *client_id);
        }
        CommandError::StaleRequest {
            client_id,
            seq,
            last_seq,
        } => {
            two(out, E_STALE_REQUEST, *client_id, *seq);
            put_uvarint(out, *last_seq);
        }
        CommandError::InvalidSeq { client_id } => {
            out.push(E_INVALID_SEQ);
            put_uvarint(out, *client_id);
        }
        CommandError::RegisterWithSession => out.push(E_REGISTER_WITH_SESSION),
    }
}

fn decode_error(r: &mut Reader<'_>) -> Result<CommandError, DecodeError> {
    let offset = r.offset() as u64;
    Ok(match r.u8()? {
        E_MALFORMED => {
            let at = r.offset() as u64;
            let reason = String::from_utf8(r.bytes()?).map_err(|_| DecodeError::InvalidTag {
                what: "utf-8 string",
                offset: at,
                tag: 0,
            })?;
            CommandError::Malformed { reason }
        }
        E_REQUEST_TOO_LARGE => CommandError::RequestTooLarge {
            size: r.uvarint()?,
            max: r.uvarint()?,
        },
        E_EMPTY_KEY => CommandError::EmptyKey,
        E_KEY_TOO_LARGE => CommandError::KeyTooLarge {
            size: r.uvarint()?,
            max: r.uvarint()?,
        },
        E_VALUE_TOO_LARGE => CommandError::ValueTooLarge {
            size: r.uvarint()?,
            max: r.uvarint()?,
        },
        E_TOO_MANY_COMPARES => CommandError::TooManyCompares {
            count: r.uvarint()?,
            max: r.uvarint()?,
        },
        E_TOO_MANY_OPS => CommandError::TooManyOps {
            count: r.uvarint()?,
            max: r.uvarint()?,
        },
        E_INVALID_RANGE => CommandError::InvalidRange,
        E_RANGE_TOO_LARGE => CommandError::RangeTooLarge { max: r.uvarint()? },
        E_RESPONSE_TOO_LARGE => CommandError::ResponseTooLarge {
            size: r.uvarint()?,
            max: r.uvarint()?,
        },
        E_UNKNOWN_SESSION => CommandError::UnknownSession {
            client_id: r.uvarint()?,
        },
        E_STALE_REQUEST => CommandError::StaleRequest {
            client_id: r.uvarint()?,
            seq: r.uvarint()?,
            last_seq: r.uvarint()?,
        },
        E_INVALID_SEQ => CommandError::InvalidSeq {
            client_id: r.uvarint()?,
        },
        E_REGISTER_WITH_SESSION => CommandError::RegisterWithSession,
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "error",
                offset,
                tag,
            })
        }
    })
}
