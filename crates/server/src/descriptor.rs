//! The snapshot descriptor: the small `data` of a Raft snapshot.
//!
//! # The snapshot scheme
//!
//! The state machine (`kv` over Bitcask) is its own durable snapshot: it
//! stores its applied index with its data. So compaction does not copy the
//! state anywhere: every `snapshot_threshold_entries` applied entries the
//! apply task syncs the state machine (`StateMachine::sync` returns the
//! applied index `D` that is now durable) and the Raft driver compacts the
//! WAL to `min(D, raft applied)` with this descriptor as the snapshot data.
//!
//! When a follower needs a snapshot, the leader's Raft core emits an
//! `InstallSnapshot` message for the WAL's snapshot (index `S`). The
//! transport does not ship the descriptor's index `S` of the state: it
//! streams the state machine's *current* point-in-time image (a
//! `kv::SnapshotStream` over an engine view, at applied index `A >= S`),
//! chunk by chunk. This is consistent because every entry up to `A` is
//! committed, so it is (or will be) in every future leader's log at the same
//! index: the follower restores the image at `A`, hands the Raft message
//! (at `S`) to its core, which truncates its log to `S`, and the state
//! machine skips the entries `S+1..=A` when they are applied again (it skips
//! every entry at or below its applied index). A follower whose state is
//! already at or past `A` does not restore at all.
//!
//! # Format (version 1)
//!
//! ```text
//! 0..4    magic "RKVD"
//! 4       version (1)
//! 5..13   state machine applied index when the descriptor was made (u64 LE)
//! 13..17  number of address-book entries n (u32 LE, at most PEERS_MAX)
//! then n times: node id (u64 LE), address length (u16 LE), address (UTF-8)
//! ```
//!
//! The address book rides along so that a node restored from a snapshot
//! knows the addresses of members whose membership entries were compacted.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::limits::PEERS_MAX;

const MAGIC: &[u8; 4] = b"RKVD";
const VERSION: u8 = 1;

/// A decoded descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// The state machine's applied index when the descriptor was made.
    pub state_index: u64,
    /// The address book then.
    pub addrs: BTreeMap<u64, String>,
}

impl Descriptor {
    /// The encoded form.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.state_index.to_le_bytes());
        let addrs: Vec<_> = self
            .addrs
            .iter()
            .filter(|(_, a)| a.len() <= u16::MAX as usize)
            .take(PEERS_MAX)
            .collect();
        out.extend_from_slice(&(addrs.len() as u32).to_le_bytes());
        for (id, addr) in addrs {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(addr.len() as u16).to_le_bytes());
            out.extend_from_slice(addr.as_bytes());
        }
        Bytes::from(out)
    }

    /// Decodes `b`; `None` if it is not a valid descriptor (an empty
    /// snapshot, e.g. the bootstrap one, decodes to `None` too).
    pub fn decode(b: &[u8]) -> Option<Descriptor> {
        let rest = b.strip_prefix(MAGIC.as_slice())?;
        let (&version, rest) = rest.split_first()?;
        if version != VERSION {
            return None;
        }
        let (idx, rest) = rest.split_at_checked(8)?;
        let state_index = u64::from_le_bytes(idx.try_into().ok()?);
        let (n, mut rest) = rest.split_at_checked(4)?;
        let n = u32::from_le_bytes(n.try_into().ok()?) as usize;
        if n > PEERS_MAX {
            return None;
        }
        let mut addrs = BTreeMap::new();
        for _ in 0..n {
            let (id, r) = rest.split_at_checked(8)?;
            let (len, r) = r.split_at_checked(2)?;
            let len = u16::from_le_bytes(len.try_into().ok()?) as usize;
            let (addr, r) = r.split_at_checked(len)?;
            addrs.insert(
                u64::from_le_bytes(id.try_into().ok()?),
                std::str::from_utf8(addr).ok()?.to_string(),
            );
            rest = r;
        }
        if !rest.is_empty() {
            return None;
        }
        Some(Descriptor { state_index, addrs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refusals() {
        let d = Descriptor {
            state_index: 42,
            addrs: [(1, "a:1".to_string()), (7, "b:7".to_string())].into(),
        };
        let b = d.encode();
        assert_eq!(Descriptor::decode(&b), Some(d));
        for cut in 0..b.len() {
            assert_eq!(Descriptor::decode(&b[..cut]), None, "cut at {cut}");
        }
        let mut extra = b.to_vec();
        extra.push(0);
        assert_eq!(Descriptor::decode(&extra), None);
        assert_eq!(Descriptor::decode(b""), None);
    }
}
