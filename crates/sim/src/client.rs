//! Simulated clients: a workload of put / get / append / compare-and-swap /
//! delete on a few keys, with client sessions for exactly-once writes.
//!
//! Each client has one operation outstanding at a time. It opens a session
//! first (a `RegisterSession` command). Every write carries the session's
//! client id and the operation's sequence number; a write whose attempt
//! times out, or that a node could not propose, is sent again **with the
//! same sequence number** to another node, so the state machine applies it
//! at most once and answers a duplicate from its session table. Reads go
//! through ReadIndex on whatever node the client asks.
//!
//! An operation that gets a definite answer is recorded as completed; one
//! that runs out of time is recorded with an unknown outcome (it may have
//! applied or not). Keys `a*` only ever see appends and reads, so at the
//! end every acknowledged append must be in them exactly once.

use std::collections::BTreeMap;

use kv::{Command, Compare, CompareOp, CompareTarget, Op, Reply, Request, Response};
use lincheck::{KvInput, KvOperation, KvOutput, Operation};
use raft::NodeId;

use crate::rng::Rng;
use crate::Time;

/// Keys that see every kind of operation.
pub const MIXED_KEYS: [&[u8]; 3] = [b"k0", b"k1", b"k2"];
/// Keys that see only appends and reads.
pub const APPEND_KEYS: [&[u8]; 2] = [b"a0", b"a1"];

/// Client timing, in time units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTiming {
    /// Pause between operations: `[0, think_max)`.
    pub think_max: Time,
    /// An attempt with no answer after this long is retried elsewhere.
    pub attempt_timeout: Time,
    /// An operation with no definite answer after this long is given up
    /// (recorded as unknown).
    pub op_timeout: Time,
}

/// What a client asks a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// Propose this request (a write or a session registration).
    Write(Request),
    /// Read this key linearizably.
    Read(Vec<u8>),
}

/// A node's answer to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientReply {
    /// Not the leader (with a hint); nothing was done.
    NotLeader(Option<NodeId>),
    /// The node could not do it (proposal refused or lost, read failed);
    /// a write may still have been applied through an earlier attempt.
    Failed,
    /// The write applied, with the state machine's response.
    Written(Response),
    /// The read's result.
    Read(Option<Vec<u8>>),
}

/// A message between a client and a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientMsg {
    pub client: usize,
    /// The client's operation number this is about.
    pub op: u64,
    pub node: NodeId,
    pub body: ClientMsgBody,
}

/// Which way a [`ClientMsg`] goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMsgBody {
    Request(ClientRequest),
    Reply(ClientReply),
}

/// What finished operations amount to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    pub ok: u64,
    /// Definite refusals by the state machine (recorded as unknown).
    pub failed: u64,
    /// Gave up without a definite answer.
    pub unknown: u64,
    pub sessions: u64,
    pub retries: u64,
}

#[derive(Clone, Debug)]
enum What {
    Register,
    Kv { input: KvInput, seq: u64 },
}

#[derive(Clone, Debug)]
struct Current {
    op: u64,
    what: What,
    call: Time,
    attempt_deadline: Time,
    give_up_at: Time,
    target: NodeId,
}

/// One client. See the module docs.
#[derive(Debug)]
pub struct Client {
    /// Index in the run's client list; the history's client id is this + 1.
    pub index: usize,
    session: Option<u64>,
    next_seq: u64,
    ops: u64,
    current: Option<Current>,
    next_op_at: Time,
    /// The value this client last saw for each key (CAS expectations).
    last_seen: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The node that last answered, or the last leader hint.
    leader_hint: Option<NodeId>,
    rng: Rng,
    timing: ClientTiming,
    /// Sabotage: a retried write gets a new sequence number (so the state
    /// machine cannot tell it is a retry).
    pub new_seq_on_retry: bool,
}

/// What a client reads and writes when it acts: the nodes it may talk to,
/// the run's counters, requests to send, finished operations.
pub struct ClientIo<'a> {
    pub nodes: &'a [NodeId],
    pub stats: &'a mut OpStats,
    pub out: &'a mut Vec<ClientMsg>,
    pub events: &'a mut Vec<ClientEvent>,
}

/// Something a client did that the run records.
#[derive(Clone, Debug)]
pub enum ClientEvent {
    /// An operation finished (completed or unknown).
    Finished(KvOperation),
}

impl Client {
    /// A client with its own random stream.
    pub fn new(index: usize, rng: Rng, timing: ClientTiming) -> Client {
        Client {
            index,
            session: None,
            next_seq: 1,
            ops: 0,
            current: None,
            next_op_at: 0,
            last_seen: BTreeMap::new(),
            leader_hint: None,
            rng,
            timing,
            new_seq_on_retry: false,
        }
    }

    /// Whether an operation is outstanding.
    pub fn is_busy(&self) -> bool {
        self.current.is_some()
    }

    /// Time passes: start an operation (unless `quiet`), retry or give up.
    /// Requests to send go to `out`; finished operations to `events`.
    pub fn act(&mut self, now: Time, quiet: bool, io: &mut ClientIo<'_>) {
        let nodes = io.nodes;
        if nodes.is_empty() {
            return;
        }
        match &self.current {
            None => {
                if quiet || now < self.next_op_at {
                    return;
                }
                self.ops += 1;
                let what = self.next_what();
                // Reads often go to any node (a follower forwards ReadIndex
                // to the leader); writes to the last known leader.
                let is_read = matches!(&what, What::Kv { input, .. } if input.is_read_only());
                let target = if is_read && self.rng.chance(500) {
                    self.rng.pick(nodes).unwrap_or(1)
                } else {
                    self.pick_target(nodes)
                };
                self.current = Some(Current {
                    op: self.ops,
                    what,
                    call: now,
                    attempt_deadline: now + self.timing.attempt_timeout,
                    give_up_at: now + self.timing.op_timeout,
                    target,
                });
                self.send_attempt(io.out);
            }
            Some(cur) => {
                if now >= cur.give_up_at {
                    self.give_up(now, io.stats, io.events);
                } else if now >= cur.attempt_deadline {
                    self.leader_hint = None;
                    let target = self.pick_other(nodes, cur.target);
                    self.retry(now, target, io.stats, io.out);
                }
            }
        }
    }

    fn retry(&mut self, now: Time, target: NodeId, stats: &mut OpStats, out: &mut Vec<ClientMsg>) {
        stats.retries += 1;
        if let Some(cur) = &mut self.current {
            cur.target = target;
            cur.attempt_deadline = now + self.timing.attempt_timeout;
            if let What::Kv { seq, .. } = &mut cur.what {
                if self.new_seq_on_retry && *seq > 0 {
                    *seq = self.next_seq;
                    self.next_seq += 1;
                }
            }
        }
        self.send_attempt(out);
    }

    fn give_up(&mut self, now: Time, stats: &mut OpStats, events: &mut Vec<ClientEvent>) {
        let Some(cur) = self.current.take() else {
            return;
        };
        self.next_op_at = now + self.rng.range(0, self.timing.think_max);
        if let What::Kv { input, .. } = cur.what {
            stats.unknown += 1;
            // What this client believes about the key is now unsure.
            self.last_seen.remove(input.key());
            events.push(ClientEvent::Finished(Operation::unknown(
                self.index as u64 + 1,
                cur.call,
                input,
            )));
        }
    }

    fn pick_target(&mut self, nodes: &[NodeId]) -> NodeId {
        match self.leader_hint {
            Some(n) if nodes.contains(&n) => n,
            _ => self.rng.pick(nodes).unwrap_or(1),
        }
    }

    fn pick_other(&mut self, nodes: &[NodeId], not: NodeId) -> NodeId {
        let others: Vec<NodeId> = nodes.iter().copied().filter(|&n| n != not).collect();
        self.rng.pick(&others).unwrap_or(not)
    }

    fn send_attempt(&self, out: &mut Vec<ClientMsg>) {
        let Some(cur) = &self.current else {
            return;
        };
        let request = match &cur.what {
            What::Register => {
                ClientRequest::Write(Request::without_session(Command::RegisterSession))
            }
            What::Kv { input, seq } => match command(input) {
                None => ClientRequest::Read(input.key().to_vec()),
                Some(command) => ClientRequest::Write(Request {
                    client_id: self.session.unwrap_or(0),
                    seq: *seq,
                    command,
                }),
            },
        };
        out.push(ClientMsg {
            client: self.index,
            op: cur.op,
            node: cur.target,
            body: ClientMsgBody::Request(request),
        });
    }

    fn next_what(&mut self) -> What {
        if self.session.is_none() {
            return What::Register;
        }
        let append_only = self.rng.chance(400);
        let token = format!("{}.{};", self.index + 1, self.next_seq);
        let input = if append_only {
            let key = self.rng.pick(&APPEND_KEYS).unwrap_or(b"a0").to_vec();
            if self.rng.chance(700) {
                KvInput::Append {
                    key,
                    value: token.into_bytes(),
                }
            } else {
                KvInput::Get { key }
            }
        } else {
            let key = self.rng.pick(&MIXED_KEYS).unwrap_or(b"k0").to_vec();
            match self.rng.range(0, 100) {
                0..=29 => KvInput::Put {
                    key,
                    value: format!("p{token}").into_bytes(),
                },
                30..=59 => KvInput::Get { key },
                60..=74 => KvInput::Append {
                    key,
                    value: token.into_bytes(),
                },
                75..=94 => {
                    let expected = match self.last_seen.get(&key) {
                        Some(v) if self.rng.chance(800) => v.clone(),
                        _ => Some(b"p".to_vec()),
                    };
                    KvInput::Cas {
                        key,
                        expected,
                        new: format!("c{token}").into_bytes(),
                    }
                }
                _ => KvInput::Delete { key },
            }
        };
        let seq = if input.is_read_only() {
            0
        } else {
            self.next_seq += 1;
            self.next_seq - 1
        };
        What::Kv { input, seq }
    }

    /// A node answered operation `op`.
    pub fn on_reply(
        &mut self,
        now: Time,
        op: u64,
        from: NodeId,
        reply: ClientReply,
        io: &mut ClientIo<'_>,
    ) {
        let nodes = io.nodes;
        let Some(cur) = &self.current else {
            return;
        };
        if cur.op != op {
            return; // A late answer to an operation already finished.
        }
        match reply {
            ClientReply::NotLeader(hint) => {
                if cur.target != from {
                    return; // An answer to an earlier attempt.
                }
                self.leader_hint = hint.filter(|h| nodes.contains(h));
                let target = match self.leader_hint {
                    Some(h) if h != from => h,
                    _ => self.pick_other(nodes, from),
                };
                // Back off a little so a cluster without a leader is not
                // flooded: the retry goes out on the next attempt deadline
                // unless the hint names a leader.
                if hint.is_some() {
                    self.retry(now, target, io.stats, io.out);
                } else if let Some(cur) = &mut self.current {
                    cur.target = target;
                    cur.attempt_deadline = cur.attempt_deadline.min(now + 20);
                }
            }
            ClientReply::Failed => {
                if cur.target != from {
                    return;
                }
                if let Some(cur) = &mut self.current {
                    cur.attempt_deadline = cur.attempt_deadline.min(now + 10);
                }
            }
            ClientReply::Written(resp) => {
                self.leader_hint = Some(from);
                self.finish_write(now, resp, io.stats, io.events);
            }
            ClientReply::Read(value) => {
                let Some(cur) = self.current.take() else {
                    return;
                };
                self.next_op_at = now + self.rng.range(0, self.timing.think_max);
                if let What::Kv { input, .. } = cur.what {
                    io.stats.ok += 1;
                    self.last_seen.insert(input.key().to_vec(), value.clone());
                    io.events.push(ClientEvent::Finished(Operation::completed(
                        self.index as u64 + 1,
                        cur.call,
                        now,
                        input,
                        KvOutput::Value(value),
                    )));
                }
            }
        }
    }

    fn finish_write(
        &mut self,
        now: Time,
        resp: Response,
        stats: &mut OpStats,
        events: &mut Vec<ClientEvent>,
    ) {
        let Some(cur) = self.current.take() else {
            return;
        };
        self.next_op_at = now + self.rng.range(0, self.timing.think_max);
        let client = self.index as u64 + 1;
        match cur.what {
            What::Register => {
                if let Ok(Reply::SessionRegistered { client_id }) = resp.result {
                    stats.sessions += 1;
                    self.session = Some(client_id);
                }
                // Otherwise the next operation registers again.
            }
            What::Kv { input, .. } => {
                let output = match (&input, &resp.result) {
                    (KvInput::Put { value, .. }, Ok(Reply::Put { .. })) => {
                        self.last_seen
                            .insert(input.key().to_vec(), Some(value.clone()));
                        Some(KvOutput::Ok)
                    }
                    (KvInput::Append { .. }, Ok(Reply::Append { .. })) => {
                        self.last_seen.remove(input.key());
                        Some(KvOutput::Ok)
                    }
                    (KvInput::Delete { .. }, Ok(Reply::Delete { .. })) => {
                        self.last_seen.insert(input.key().to_vec(), None);
                        Some(KvOutput::Ok)
                    }
                    (KvInput::Cas { new, .. }, Ok(Reply::Txn { succeeded, .. })) => {
                        if *succeeded {
                            self.last_seen
                                .insert(input.key().to_vec(), Some(new.clone()));
                        }
                        Some(KvOutput::Cas(*succeeded))
                    }
                    _ => None,
                };
                match output {
                    Some(output) => {
                        stats.ok += 1;
                        events.push(ClientEvent::Finished(Operation::completed(
                            client, cur.call, now, input, output,
                        )));
                    }
                    None => {
                        // Refused or answered oddly: whether it applied is
                        // not something the client can tell.
                        stats.failed += 1;
                        self.last_seen.remove(input.key());
                        events.push(ClientEvent::Finished(Operation::unknown(
                            client, cur.call, input,
                        )));
                    }
                }
            }
        }
    }
}

/// The state-machine command for a write; `None` for a read.
pub fn command(input: &KvInput) -> Option<Command> {
    Some(match input.clone() {
        KvInput::Get { .. } => return None,
        KvInput::Put { key, value } => Command::Put {
            key,
            value,
            prev_kv: false,
        },
        KvInput::Append { key, value } => Command::Append { key, value },
        KvInput::Delete { key } => Command::Delete {
            key,
            prev_kv: false,
        },
        KvInput::Cas { key, expected, new } => {
            let target = match expected {
                Some(v) => CompareTarget::Value(v),
                None => CompareTarget::Exists(false),
            };
            Command::Txn {
                compares: vec![Compare {
                    key: key.clone(),
                    target,
                    op: CompareOp::Eq,
                }],
                success: vec![Op::Put { key, value: new }],
                failure: Vec::new(),
            }
        }
    })
}
