//! Membership changes, and their encoding in `EntryKind::ConfChange` entries.
//!
//! # Format
//!
//! ```text
//! byte 0      version (1)
//! byte 1      kind: 1 AddLearner, 2 AddVoter, 3 RemoveNode
//! bytes 2..10 node id, u64 little-endian
//! bytes 10..14 context length n, u32 little-endian (n <= CONF_CHANGE_CONTEXT_BYTES_MAX)
//! bytes 14..14+n context (opaque to Raft, e.g. the node's address)
//! ```
//! Nothing may follow the context.

use bytes::{BufMut, Bytes, BytesMut};

use crate::limits::CONF_CHANGE_CONTEXT_BYTES_MAX;
use crate::types::NodeId;

const VERSION: u8 = 1;
const HEADER_LEN: usize = 14;

/// What a membership change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfChangeKind {
    /// Add a node that receives the log but does not vote.
    AddLearner,
    /// Add a voter, or promote a learner to a voter.
    AddVoter,
    /// Remove a voter or a learner (possibly the leader itself).
    RemoveNode,
}

impl ConfChangeKind {
    fn as_u8(self) -> u8 {
        match self {
            ConfChangeKind::AddLearner => 1,
            ConfChangeKind::AddVoter => 2,
            ConfChangeKind::RemoveNode => 3,
        }
    }

    fn from_u8(b: u8) -> Option<ConfChangeKind> {
        match b {
            1 => Some(ConfChangeKind::AddLearner),
            2 => Some(ConfChangeKind::AddVoter),
            3 => Some(ConfChangeKind::RemoveNode),
            _ => None,
        }
    }
}

/// One membership change: one node added, promoted or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfChange {
    pub kind: ConfChangeKind,
    pub node_id: NodeId,
    /// Opaque to Raft (the server puts the node's address here).
    pub context: Bytes,
}

/// Why bytes do not decode as a [`ConfChange`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfChangeError {
    #[error("conf change truncated: {len} bytes, need {need}")]
    Truncated { len: usize, need: usize },
    #[error("unknown conf change format version {0}")]
    BadVersion(u8),
    #[error("unknown conf change kind {0}")]
    BadKind(u8),
    #[error("conf change node id 0 is invalid")]
    ZeroNodeId,
    #[error("conf change context of {len} bytes exceeds {max}")]
    ContextTooLarge { len: usize, max: usize },
    #[error("{0} trailing bytes after conf change")]
    TrailingBytes(usize),
}

impl ConfChange {
    /// A change of `kind` for `node_id`, with an empty context.
    pub fn new(kind: ConfChangeKind, node_id: NodeId) -> ConfChange {
        ConfChange {
            kind,
            node_id,
            context: Bytes::new(),
        }
    }

    /// The encoding described in the module docs.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER_LEN + self.context.len());
        b.put_u8(VERSION);
        b.put_u8(self.kind.as_u8());
        b.put_u64_le(self.node_id);
        b.put_u32_le(self.context.len() as u32);
        b.put_slice(&self.context);
        b.freeze()
    }

    /// Decodes the module docs' format.
    ///
    /// # Errors
    /// A [`ConfChangeError`] naming what is wrong with the bytes.
    pub fn decode(data: &[u8]) -> Result<ConfChange, ConfChangeError> {
        if data.len() < HEADER_LEN {
            return Err(ConfChangeError::Truncated {
                len: data.len(),
                need: HEADER_LEN,
            });
        }
        if data[0] != VERSION {
            return Err(ConfChangeError::BadVersion(data[0]));
        }
        let kind = ConfChangeKind::from_u8(data[1]).ok_or(ConfChangeError::BadKind(data[1]))?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&data[2..10]);
        let node_id = u64::from_le_bytes(id);
        if node_id == 0 {
            return Err(ConfChangeError::ZeroNodeId);
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&data[10..14]);
        let len = u32::from_le_bytes(len) as usize;
        if len > CONF_CHANGE_CONTEXT_BYTES_MAX {
            return Err(ConfChangeError::ContextTooLarge {
                len,
                max: CONF_CHANGE_CONTEXT_BYTES_MAX,
            });
        }
        let need = HEADER_LEN + len;
        if data.len() < need {
            return Err(ConfChangeError::Truncated {
                len: data.len(),
                need,
            });
        }
        if data.len() > need {
            return Err(ConfChangeError::TrailingBytes(data.len() - need));
        }
        Ok(ConfChange {
            kind,
            node_id,
            context: Bytes::copy_from_slice(&data[HEADER_LEN..need]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_bytes() {
        for kind in [
            ConfChangeKind::AddLearner,
            ConfChangeKind::AddVoter,
            ConfChangeKind::RemoveNode,
        ] {
            let cc = ConfChange {
                kind,
                node_id: 42,
                context: Bytes::from_static(b"127.0.0.1:7000"),
            };
            let enc = cc.encode();
            assert_eq!(ConfChange::decode(&enc), Ok(cc));
            for cut in 0..enc.len() {
                assert!(ConfChange::decode(&enc[..cut]).is_err(), "cut at {cut}");
            }
            let mut long = enc.to_vec();
            long.push(0);
            assert_eq!(
                ConfChange::decode(&long),
                Err(ConfChangeError::TrailingBytes(1))
            );
        }
        let good = ConfChange::new(ConfChangeKind::AddVoter, 3)
            .encode()
            .to_vec();
        let mut v = good.clone();
        v[0] = 9;
        assert_eq!(ConfChange::decode(&v), Err(ConfChangeError::BadVersion(9)));
        let mut k = good.clone();
        k[1] = 0;
        assert_eq!(ConfChange::decode(&k), Err(ConfChangeError::BadKind(0)));
        let zero = ConfChange::new(ConfChangeKind::AddVoter, 0).encode();
        assert_eq!(ConfChange::decode(&zero), Err(ConfChangeError::ZeroNodeId));
        let mut huge = good;
        huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            ConfChange::decode(&huge),
            Err(ConfChangeError::ContextTooLarge { .. })
        ));
    }
}
