//! Conversions between `raft::Message` and its protobuf form
//! (`proto/raft.proto`). Encoding never fails; decoding refuses messages
//! without a body, with node id 0 or with an unknown entry kind.

use proto::raft as pb;
use raft::{ConfState, Entry, EntryKind, Message, MessageBody, Snapshot, SnapshotMeta};

/// Why a protobuf message does not convert to a `raft::Message`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message without a body")]
    NoBody,
    #[error("message with node id 0 (from {from}, to {to})")]
    ZeroId { from: u64, to: u64 },
    #[error("entry {index} has unknown kind {kind}")]
    BadEntryKind { index: u64, kind: i32 },
    #[error("install_snapshot without metadata")]
    NoSnapshotMeta,
}

fn entry_to_pb(e: &Entry) -> pb::Entry {
    let kind = match e.kind {
        EntryKind::Normal => pb::EntryKind::Normal,
        EntryKind::ConfChange => pb::EntryKind::ConfChange,
    };
    pb::Entry {
        index: e.index,
        term: e.term,
        kind: kind as i32,
        data: e.data.clone(),
    }
}

fn entry_from_pb(e: pb::Entry) -> Result<Entry, DecodeError> {
    let kind = match pb::EntryKind::try_from(e.kind) {
        Ok(pb::EntryKind::Normal) => EntryKind::Normal,
        Ok(pb::EntryKind::ConfChange) => EntryKind::ConfChange,
        _ => {
            return Err(DecodeError::BadEntryKind {
                index: e.index,
                kind: e.kind,
            })
        }
    };
    Ok(Entry {
        index: e.index,
        term: e.term,
        kind,
        data: e.data,
    })
}

/// The protobuf form of a configuration.
pub fn conf_to_pb(c: &ConfState) -> pb::ConfState {
    pb::ConfState {
        voters: c.voters.iter().copied().collect(),
        learners: c.learners.iter().copied().collect(),
        voters_outgoing: c.voters_outgoing.iter().copied().collect(),
    }
}

fn conf_from_pb(c: pb::ConfState) -> ConfState {
    ConfState {
        voters: c.voters.into_iter().collect(),
        learners: c.learners.into_iter().collect(),
        voters_outgoing: c.voters_outgoing.into_iter().collect(),
    }
}

/// The protobuf form of `m`.
pub fn message_to_pb(m: &Message) -> pb::RaftMessage {
    use pb::raft_message::Body;
    let body = match &m.body {
        MessageBody::PreVote {
            last_index,
            last_term,
        } => Body::PreVote(pb::PreVote {
            last_index: *last_index,
            last_term: *last_term,
        }),
        MessageBody::PreVoteResponse { granted } => {
            Body::PreVoteResponse(pb::PreVoteResponse { granted: *granted })
        }
        MessageBody::RequestVote {
            last_index,
            last_term,
            transfer,
        } => Body::RequestVote(pb::RequestVote {
            last_index: *last_index,
            last_term: *last_term,
            transfer: *transfer,
        }),
        MessageBody::RequestVoteResponse { granted } => {
            Body::RequestVoteResponse(pb::RequestVoteResponse { granted: *granted })
        }
        MessageBody::AppendEntries {
            prev_index,
            prev_term,
            entries,
            commit,
        } => Body::AppendEntries(pb::AppendEntries {
            prev_index: *prev_index,
            prev_term: *prev_term,
            entries: entries.iter().map(entry_to_pb).collect(),
            commit: *commit,
        }),
        MessageBody::AppendEntriesResponse {
            reject,
            index,
            conflict_term,
            conflict_index,
        } => Body::AppendEntriesResponse(pb::AppendEntriesResponse {
            reject: *reject,
            index: *index,
            conflict_term: *conflict_term,
            conflict_index: *conflict_index,
        }),
        MessageBody::Heartbeat { commit, round } => Body::Heartbeat(pb::Heartbeat {
            commit: *commit,
            round: *round,
        }),
        MessageBody::HeartbeatResponse { round } => {
            Body::HeartbeatResponse(pb::HeartbeatResponse { round: *round })
        }
        MessageBody::InstallSnapshot { snapshot } => Body::InstallSnapshot(pb::InstallSnapshot {
            meta: Some(pb::SnapshotMeta {
                index: snapshot.meta.index,
                term: snapshot.meta.term,
                conf: Some(conf_to_pb(&snapshot.meta.conf)),
            }),
            data: snapshot.data.clone(),
        }),
        MessageBody::TimeoutNow => Body::TimeoutNow(pb::TimeoutNow {}),
        MessageBody::ReadIndex { ctx } => Body::ReadIndex(pb::ReadIndex { ctx: *ctx }),
        MessageBody::ReadIndexResponse { ctx, index } => {
            Body::ReadIndexResponse(pb::ReadIndexResponse {
                ctx: *ctx,
                index: *index,
            })
        }
    };
    pb::RaftMessage {
        from: m.from,
        to: m.to,
        term: m.term,
        body: Some(body),
    }
}

/// The `raft::Message` a protobuf message stands for.
///
/// # Errors
/// A [`DecodeError`] for a message the core must not see.
pub fn message_from_pb(m: pb::RaftMessage) -> Result<Message, DecodeError> {
    use pb::raft_message::Body;
    if m.from == 0 || m.to == 0 {
        return Err(DecodeError::ZeroId {
            from: m.from,
            to: m.to,
        });
    }
    let body = match m.body.ok_or(DecodeError::NoBody)? {
        Body::PreVote(b) => MessageBody::PreVote {
            last_index: b.last_index,
            last_term: b.last_term,
        },
        Body::PreVoteResponse(b) => MessageBody::PreVoteResponse { granted: b.granted },
        Body::RequestVote(b) => MessageBody::RequestVote {
            last_index: b.last_index,
            last_term: b.last_term,
            transfer: b.transfer,
        },
        Body::RequestVoteResponse(b) => MessageBody::RequestVoteResponse { granted: b.granted },
        Body::AppendEntries(b) => MessageBody::AppendEntries {
            prev_index: b.prev_index,
            prev_term: b.prev_term,
            entries: b
                .entries
                .into_iter()
                .map(entry_from_pb)
                .collect::<Result<_, _>>()?,
            commit: b.commit,
        },
        Body::AppendEntriesResponse(b) => MessageBody::AppendEntriesResponse {
            reject: b.reject,
            index: b.index,
            conflict_term: b.conflict_term,
            conflict_index: b.conflict_index,
        },
        Body::Heartbeat(b) => MessageBody::Heartbeat {
            commit: b.commit,
            round: b.round,
        },
        Body::HeartbeatResponse(b) => MessageBody::HeartbeatResponse { round: b.round },
        Body::InstallSnapshot(b) => {
            let meta = b.meta.ok_or(DecodeError::NoSnapshotMeta)?;
            MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    meta: SnapshotMeta {
                        index: meta.index,
                        term: meta.term,
                        conf: meta.conf.map(conf_from_pb).unwrap_or_default(),
                    },
                    data: b.data,
                },
            }
        }
        Body::TimeoutNow(_) => MessageBody::TimeoutNow,
        Body::ReadIndex(b) => MessageBody::ReadIndex { ctx: b.ctx },
        Body::ReadIndexResponse(b) => MessageBody::ReadIndexResponse {
            ctx: b.ctx,
            index: b.index,
        },
    };
    Ok(Message {
        from: m.from,
        to: m.to,
        term: m.term,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn roundtrip(body: MessageBody) {
        let m = Message {
            from: 1,
            to: 2,
            term: 7,
            body,
        };
        assert_eq!(message_from_pb(message_to_pb(&m)).unwrap(), m);
    }

    #[test]
    fn every_body_roundtrips() {
        let e = |index, kind| Entry {
            index,
            term: 3,
            kind,
            data: Bytes::from_static(b"x"),
        };
        roundtrip(MessageBody::PreVote {
            last_index: 4,
            last_term: 2,
        });
        roundtrip(MessageBody::PreVoteResponse { granted: true });
        roundtrip(MessageBody::RequestVote {
            last_index: 4,
            last_term: 2,
            transfer: true,
        });
        roundtrip(MessageBody::RequestVoteResponse { granted: false });
        roundtrip(MessageBody::AppendEntries {
            prev_index: 9,
            prev_term: 2,
            entries: vec![e(10, EntryKind::Normal), e(11, EntryKind::ConfChange)],
            commit: 8,
        });
        roundtrip(MessageBody::AppendEntriesResponse {
            reject: true,
            index: 9,
            conflict_term: 1,
            conflict_index: 5,
        });
        roundtrip(MessageBody::Heartbeat {
            commit: 3,
            round: 17,
        });
        roundtrip(MessageBody::HeartbeatResponse { round: 17 });
        roundtrip(MessageBody::InstallSnapshot {
            snapshot: Snapshot {
                meta: SnapshotMeta {
                    index: 100,
                    term: 4,
                    conf: ConfState {
                        voters: [1, 2, 3].into(),
                        learners: [4].into(),
                        voters_outgoing: Default::default(),
                    },
                },
                data: Bytes::from_static(b"descriptor"),
            },
        });
        roundtrip(MessageBody::TimeoutNow);
        roundtrip(MessageBody::ReadIndex { ctx: 5 });
        roundtrip(MessageBody::ReadIndexResponse { ctx: 5, index: 40 });
    }

    #[test]
    fn bad_messages_are_refused() {
        let mut m = message_to_pb(&Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::TimeoutNow,
        });
        m.body = None;
        assert_eq!(message_from_pb(m.clone()), Err(DecodeError::NoBody));
        m.body = Some(pb::raft_message::Body::TimeoutNow(pb::TimeoutNow {}));
        m.from = 0;
        assert!(matches!(
            message_from_pb(m),
            Err(DecodeError::ZeroId { .. })
        ));
        let bad = pb::RaftMessage {
            from: 1,
            to: 2,
            term: 1,
            body: Some(pb::raft_message::Body::AppendEntries(pb::AppendEntries {
                prev_index: 0,
                prev_term: 0,
                entries: vec![pb::Entry {
                    index: 1,
                    term: 1,
                    kind: 0,
                    data: Bytes::new(),
                }],
                commit: 0,
            })),
        };
        assert!(matches!(
            message_from_pb(bad),
            Err(DecodeError::BadEntryKind { .. })
        ));
    }
}
