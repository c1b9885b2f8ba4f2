//! Requests: what a client asks the state machine to do, and their binary
//! encoding (format version 1, see the crate docs for the byte layout).

use crate::codec::{put_bool, put_bytes, put_uvarint, Reader};
use crate::error::{CommandError, DecodeError};
use crate::limits;

/// The request format version this build writes and reads.
pub const REQUEST_FORMAT_VERSION: u8 = 1;

/// One client request, as carried by a Normal log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The client's session id, from a [`Command::RegisterSession`] reply;
    /// `0` means no session (no duplicate detection).
    pub client_id: u64,
    /// The request's sequence number within the session, from 1, increasing
    /// by at least 1 per new request. Ignored when `client_id` is 0.
    pub seq: u64,
    pub command: Command,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Sets `key` to `value`; with `prev_kv`, the reply carries the previous
    /// key-value (if there was one).
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        prev_kv: bool,
    },
    /// Removes `key`; with `prev_kv`, the reply carries the removed one.
    Delete { key: Vec<u8>, prev_kv: bool },
    /// Removes every key in `start..end`. An empty `end` means "to the end
    /// of the key space"; see [`prefix_end`] for prefix
    /// deletes.
    DeleteRange { start: Vec<u8>, end: Vec<u8> },
    /// Appends `value` to the key's value, creating the key if absent.
    Append { key: Vec<u8>, value: Vec<u8> },
    /// If every compare holds, runs `success`, else `failure`, in order,
    /// each op seeing the effects of the ones before it.
    Txn {
        compares: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    },
    /// Opens a client session; the reply carries its client id (the index
    /// of the entry that registered it). Must be sent with client id 0.
    RegisterSession,
}

/// One condition of a transaction: `target(key) op value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub target: CompareTarget,
    pub op: CompareOp,
}

/// What a compare looks at, with the operand to compare it to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The value, compared bytewise. On an absent key every such compare is
    /// false.
    Value(Vec<u8>),
    /// The version (0 for an absent key).
    Version(u64),
    /// The index of the last modification (0 for an absent key).
    ModIndex(u64),
    /// Whether the key exists (`false < true` for Less/Greater).
    Exists(bool),
}

/// The comparison, `actual op operand`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Less,
    Greater,
}

impl CompareOp {
    /// Whether `actual op operand` holds.
    pub fn holds<T: Ord + ?Sized>(self, actual: &T, operand: &T) -> bool {
        match self {
            CompareOp::Eq => actual == operand,
            CompareOp::NotEq => actual != operand,
            CompareOp::Less => actual < operand,
            CompareOp::Greater => actual > operand,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            CompareOp::Eq => 1,
            CompareOp::NotEq => 2,
            CompareOp::Less => 3,
            CompareOp::Greater => 4,
        }
    }

    fn from_u8(b: u8) -> Option<CompareOp> {
        Some(match b {
            1 => CompareOp::Eq,
            2 => CompareOp::NotEq,
            3 => CompareOp::Less,
            4 => CompareOp::Greater,
            _ => return None,
        })
    }
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
    Get { key: Vec<u8> },
}

impl Op {
    fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::Get { key } => key,
        }
    }
}

// Tags of the encoding.
const CMD_PUT: u8 = 1;
const CMD_DELETE: u8 = 2;
const CMD_DELETE_RANGE: u8 = 3;
const CMD_APPEND: u8 = 4;
const CMD_TXN: u8 = 5;
const CMD_REGISTER_SESSION: u8 = 6;
const TARGET_VALUE: u8 = 1;
const TARGET_VERSION: u8 = 2;
const TARGET_MOD_INDEX: u8 = 3;
const TARGET_EXISTS: u8 = 4;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_GET: u8 = 3;

impl Request {
    /// A request outside any session.
    pub fn without_session(command: Command) -> Request {
        Request {
            client_id: 0,
            seq: 0,
            command,
        }
    }

    /// The encoding: see the crate docs, "Request encoding".
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.payload_hint());
        out.push(REQUEST_FORMAT_VERSION);
        put_uvarint(&mut out, self.client_id);
        put_uvarint(&mut out, self.seq);
        match &self.command {
            Command::Put {
                key,
                value,
                prev_kv,
            } => {
                out.push(CMD_PUT);
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
                put_bool(&mut out, *prev_kv);
            }
            Command::Delete { key, prev_kv } => {
                out.push(CMD_DELETE);
                put_bytes(&mut out, key);
                put_bool(&mut out, *prev_kv);
            }
            Command::DeleteRange { start, end } => {
                out.push(CMD_DELETE_RANGE);
                put_bytes(&mut out, start);
                put_bytes(&mut out, end);
            }
            Command::Append { key, value } => {
                out.push(CMD_APPEND);
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            Command::Txn {
                compares,
                success,
                failure,
            } => {
                out.push(CMD_TXN);
                put_uvarint(&mut out, compares.len() as u64);
                for c in compares {
                    put_bytes(&mut out, &c.key);
                    out.push(c.op.as_u8());
                    match &c.target {
                        CompareTarget::Value(v) => {
                            out.push(TARGET_VALUE);
                            put_bytes(&mut out, v);
                        }
                        CompareTarget::Version(v) => {
                            out.push(TARGET_VERSION);
                            put_uvarint(&mut out, *v);
                        }
                        CompareTarget::ModIndex(v) => {
                            out.push(TARGET_MOD_INDEX);
                            put_uvarint(&mut out, *v);
                        }
                        CompareTarget::Exists(b) => {
                            out.push(TARGET_EXISTS);
                            put_bool(&mut out, *b);
                        }
                    }
                }
                encode_ops(&mut out, success);
                encode_ops(&mut out, failure);
            }
            Command::RegisterSession => out.push(CMD_REGISTER_SESSION),
        }
        out
    }

    fn payload_hint(&self) -> usize {
        match &self.command {
            Command::Put { key, value, .. } | Command::Append { key, value } => {
                key.len() + value.len()
            }
            Command::Delete { key, .. } => key.len(),
            Command::DeleteRange { start, end } => start.len() + end.len(),
            Command::Txn { .. } | Command::RegisterSession => 0,
        }
    }

    /// Decodes a request. Any byte string gives either a request or a
    /// [`DecodeError`]; it never panics and allocates at most about the
    /// input's size.
    pub fn decode(buf: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8().map_err(|_| DecodeError::Empty)?;
        if version != REQUEST_FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let client_id = r.uvarint()?;
        let seq = r.uvarint()?;
        let tag_offset = r.offset() as u64;
        let command = match r.u8()? {
            CMD_PUT => Command::Put {
                key: r.bytes()?,
                value: r.bytes()?,
                prev_kv: r.bool()?,
            },
            CMD_DELETE => Command::Delete {
                key: r.bytes()?,
                prev_kv: r.bool()?,
            },
            CMD_DELETE_RANGE => Command::DeleteRange {
                start: r.bytes()?,
                end: r.bytes()?,
            },
            CMD_APPEND => Command::Append {
                key: r.bytes()?,
                value: r.bytes()?,
            },
            CMD_TXN => {
                // Each compare takes at least 3 bytes, so the count is
                // bounded by what remains: no allocation beyond the input.
                let n = r.count(r.remaining())?;
                let mut compares = Vec::with_capacity(n.min(limits::COMPARES_PER_TXN_MAX));
                for _ in 0..n {
                    let key = r.bytes()?;
                    let op_offset = r.offset() as u64;
                    let op_tag = r.u8()?;
                    let op = CompareOp::from_u8(op_tag).ok_or(DecodeError::InvalidTag {
                        what: "compare op",
                        offset: op_offset,
                        tag: op_tag,
                    })?;
                    let target_offset = r.offset() as u64;
                    let target = match r.u8()? {
                        TARGET_VALUE => CompareTarget::Value(r.bytes()?),
                        TARGET_VERSION => CompareTarget::Version(r.uvarint()?),
                        TARGET_MOD_INDEX => CompareTarget::ModIndex(r.uvarint()?),
                        TARGET_EXISTS => CompareTarget::Exists(r.bool()?),
                        tag => {
                            return Err(DecodeError::InvalidTag {
                                what: "compare target",
                                offset: target_offset,
                                tag,
                            })
                        }
                    };
                    compares.push(Compare { key, target, op });
                }
                let success = decode_ops(&mut r)?;
                let failure = decode_ops(&mut r)?;
                Command::Txn {
                    compares,
                    success,
                    failure,
                }
            }
            CMD_REGISTER_SESSION => Command::RegisterSession,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "command",
                    offset: tag_offset,
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(Request {
            client_id,
            seq,
            command,
        })
    }

    /// Checks the request against the limits. Deterministic.
    pub fn validate(&self) -> Result<(), CommandError> {
        match &self.command {
            Command::Put { key, value, .. } | Command::Append { key, value } => {
                check_key(key)?;
                check_value(value)
            }
            Command::Delete { key, .. } => check_key(key),
            Command::DeleteRange { start, end } => check_range(start, end),
            Command::Txn {
                compares,
                success,
                failure,
            } => {
                if compares.len() > limits::COMPARES_PER_TXN_MAX {
                    return Err(CommandError::TooManyCompares {
                        count: compares.len() as u64,
                        max: limits::COMPARES_PER_TXN_MAX as u64,
                    });
                }
                for c in compares {
                    check_key(&c.key)?;
                    if let CompareTarget::Value(v) = &c.target {
                        check_value(v)?;
                    }
                }
                for ops in [success, failure] {
                    if ops.len() > limits::OPS_PER_TXN_MAX {
                        return Err(CommandError::TooManyOps {
                            count: ops.len() as u64,
                            max: limits::OPS_PER_TXN_MAX as u64,
                        });
                    }
                    for op in ops {
                        check_key(op.key())?;
                        if let Op::Put { value, .. } = op {
                            check_value(value)?;
                        }
                    }
                }
                Ok(())
            }
            Command::RegisterSession => {
                if self.client_id != 0 {
                    return Err(CommandError::RegisterWithSession);
                }
                Ok(())
            }
        }
    }
}

fn encode_ops(out: &mut Vec<u8>, ops: &[Op]) {
    put_uvarint(out, ops.len() as u64);
    for op in ops {
        match op {
            Op::Put { key, value } => {
                out.push(OP_PUT);
                put_bytes(out, key);
                put_bytes(out, value);
            }
            Op::Delete { key } => {
                out.push(OP_DELETE);
                put_bytes(out, key);
            }
            Op::Get { key } => {
                out.push(OP_GET);
                put_bytes(out, key);
            }
        }
    }
}

fn decode_ops(r: &mut Reader<'_>) -> Result<Vec<Op>, DecodeError> {
    // Each op takes at least 2 bytes: the count is bounded by the input.
    let n = r.count(r.remaining())?;
    let mut ops = Vec::with_capacity(n.min(limits::OPS_PER_TXN_MAX));
    for _ in 0..n {
        let offset = r.offset() as u64;
        let op = match r.u8()? {
            OP_PUT => Op::Put {
                key: r.bytes()?,
                value: r.bytes()?,
            },
            OP_DELETE => Op::Delete { key: r.bytes()? },
            OP_GET => Op::Get { key: r.bytes()? },
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "txn op",
                    offset,
                    tag,
                })
            }
        };
        ops.push(op);
    }
    Ok(ops)
}

/// Checks a user key: non-empty and at most
/// [`KEY_SIZE_MAX`](limits::KEY_SIZE_MAX) bytes.
pub fn check_key(key: &[u8]) -> Result<(), CommandError> {
    if key.is_empty() {
        return Err(CommandError::EmptyKey);
    }
    if key.len() > limits::KEY_SIZE_MAX {
        return Err(CommandError::KeyTooLarge {
            size: key.len() as u64,
            max: limits::KEY_SIZE_MAX as u64,
        });
    }
    Ok(())
}

/// Checks a value: at most [`VALUE_SIZE_MAX`](limits::VALUE_SIZE_MAX) bytes.
pub fn check_value(value: &[u8]) -> Result<(), CommandError> {
    if value.len() > limits::VALUE_SIZE_MAX {
        return Err(CommandError::ValueTooLarge {
            size: value.len() as u64,
            max: limits::VALUE_SIZE_MAX as u64,
        });
    }
    Ok(())
}

/// Checks a range `start..end` (empty `end`: unbounded). The start may be
/// empty (from the first key); neither bound may exceed the key size limit;
/// a non-empty end must not be below the start.
pub fn check_range(start: &[u8], end: &[u8]) -> Result<(), CommandError> {
    for b in [start, end] {
        if b.len() > limits::KEY_SIZE_MAX {
            return Err(CommandError::KeyTooLarge {
                size: b.len() as u64,
                max: limits::KEY_SIZE_MAX as u64,
            });
        }
    }
    if !end.is_empty() && end < start {
        return Err(CommandError::InvalidRange);
    }
    Ok(())
}

/// The smallest key above every key that starts with `prefix`, as a range
/// end: `scan(prefix, prefix_end(prefix))` is a prefix scan. Returns an
/// empty vector (unbounded) when no such key exists (`prefix` empty or all
/// `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_cases() {
        assert_eq!(prefix_end(b"abc"), b"abd".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), Vec::<u8>::new());
        assert_eq!(prefix_end(b""), Vec::<u8>::new());
    }

    #[test]
    fn decode_refuses_unknown_version_and_tags() {
        assert_eq!(Request::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(
            Request::decode(&[9]),
            Err(DecodeError::UnsupportedVersion { version: 9 })
        );
        assert!(matches!(
            Request::decode(&[1, 0, 0, 77]),
            Err(DecodeError::InvalidTag {
                what: "command",
                ..
            })
        ));
        let mut ok = Request::without_session(Command::RegisterSession).encode();
        ok.push(0);
        assert!(matches!(
            Request::decode(&ok),
            Err(DecodeError::TrailingBytes { count: 1, .. })
        ));
    }

    #[test]
    fn validate_limits() {
        let big_key = vec![b'k'; limits::KEY_SIZE_MAX + 1];
        let put = |key: Vec<u8>, value: Vec<u8>| {
            Request::without_session(Command::Put {
                key,
                value,
                prev_kv: false,
            })
        };
        assert_eq!(
            put(Vec::new(), b"v".to_vec()).validate(),
            Err(CommandError::EmptyKey)
        );
        assert!(matches!(
            put(big_key, b"v".to_vec()).validate(),
            Err(CommandError::KeyTooLarge { .. })
        ));
        assert!(matches!(
            put(b"k".to_vec(), vec![0; limits::VALUE_SIZE_MAX + 1]).validate(),
            Err(CommandError::ValueTooLarge { .. })
        ));
        assert!(put(b"k".to_vec(), vec![0; limits::VALUE_SIZE_MAX])
            .validate()
            .is_ok());
        let range = Request::without_session(Command::DeleteRange {
            start: b"b".to_vec(),
            end: b"a".to_vec(),
        });
        assert_eq!(range.validate(), Err(CommandError::InvalidRange));
        let txn = Request::without_session(Command::Txn {
            compares: Vec::new(),
            success: vec![Op::Get { key: b"k".to_vec() }; limits::OPS_PER_TXN_MAX + 1],
            failure: Vec::new(),
        });
        assert!(matches!(
            txn.validate(),
            Err(CommandError::TooManyOps { .. })
        ));
        let reg = Request {
            client_id: 5,
            seq: 1,
            command: Command::RegisterSession,
        };
        assert_eq!(reg.validate(), Err(CommandError::RegisterWithSession));
    }
}
