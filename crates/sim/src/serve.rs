//! The clients' side of the cluster: requests arriving at nodes (a write
//! is proposed, a read goes through ReadIndex), replies going back, reads
//! served once the state machine has caught up, and the client link, which
//! delays and sometimes loses messages but is never partitioned.

use std::collections::BTreeMap;

use bytes::Bytes;
use raft::{Index, NodeId, ProposeError};

use crate::client::{ClientEvent, ClientIo, ClientMsg, ClientMsgBody, ClientReply, ClientRequest};
use crate::cluster::Cluster;
use crate::fsm::Fsm;
use crate::limits::{CLIENT_EVENTS_IN_FLIGHT_MAX, STALL_HELD_MAX};
use crate::node::{PendingRead, PendingWrite};
use crate::rng::Rng;
use crate::Time;

impl Cluster {
    pub(crate) fn deliver_client_msgs(&mut self) {
        loop {
            let Some(entry) = self.client_queue.first_entry() else {
                return;
            };
            if entry.key().0 > self.now {
                return;
            }
            let msg = entry.remove();
            self.trace.u64(self.now);
            self.trace.u64(msg.client as u64);
            self.trace.u64(msg.op);
            self.trace.u64(msg.node);
            match msg.body {
                ClientMsgBody::Request(req) => {
                    self.client_request(msg.client, msg.op, msg.node, req)
                }
                ClientMsgBody::Reply(reply) => {
                    let nodes = self.live_ids();
                    let mut out = Vec::new();
                    let mut events = Vec::new();
                    if let Some(c) = self.clients.get_mut(msg.client) {
                        let mut io = ClientIo {
                            nodes: &nodes,
                            stats: &mut self.ops,
                            out: &mut out,
                            events: &mut events,
                        };
                        c.on_reply(self.now, msg.op, msg.node, reply, &mut io);
                    }
                    self.client_out(out, events);
                }
            }
        }
    }

    fn client_request(&mut self, client: usize, op: u64, node: NodeId, req: ClientRequest) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        if let Some(stall) = &mut n.stall {
            // A stalled process takes the request when it resumes.
            if stall.requests.len() < STALL_HELD_MAX {
                stall.requests.push((client, op, req));
            }
            return;
        }
        let Some(raw) = &mut n.raw else {
            return; // A down node answers nothing.
        };
        n.dirty = true;
        let reply = match req {
            ClientRequest::Write(request) => match raw.propose(Bytes::from(request.encode())) {
                Ok((index, term)) => {
                    n.pending_writes
                        .insert(index, PendingWrite { term, client, op });
                    None
                }
                Err(ProposeError::NotLeader { leader }) => Some(ClientReply::NotLeader(leader)),
                Err(_) => Some(ClientReply::Failed),
            },
            ClientRequest::Read(key) if self.local_reads => match n.fsm.get(&key) {
                Ok(v) => Some(ClientReply::Read(v)),
                Err(_) => Some(ClientReply::Failed),
            },
            ClientRequest::Read(key) => {
                let ctx = self.next_read_ctx;
                self.next_read_ctx += 1;
                match raw.read_index(ctx) {
                    Ok(()) => {
                        n.pending_reads.insert(ctx, PendingRead { client, op, key });
                        None
                    }
                    Err(raft::Error::NotLeader { leader }) => Some(ClientReply::NotLeader(leader)),
                    Err(raft::Error::NoLeader) => Some(ClientReply::NotLeader(None)),
                    Err(_) => Some(ClientReply::Failed),
                }
            }
        };
        if let Some(reply) = reply {
            let msg = ClientMsg {
                client,
                op,
                node,
                body: ClientMsgBody::Reply(reply),
            };
            send_client(
                &mut self.client_queue,
                &mut self.client_sent,
                &mut self.rng,
                now,
                msg,
            );
        }
    }

    pub(crate) fn clients_act(&mut self) {
        let nodes = self.live_ids();
        let mut out = Vec::new();
        let mut events = Vec::new();
        let mut io = ClientIo {
            nodes: &nodes,
            stats: &mut self.ops,
            out: &mut out,
            events: &mut events,
        };
        for c in &mut self.clients {
            c.act(self.now, self.quiet, &mut io);
        }
        self.client_out(out, events);
    }

    fn client_out(&mut self, out: Vec<ClientMsg>, events: Vec<ClientEvent>) {
        for m in out {
            send_client(
                &mut self.client_queue,
                &mut self.client_sent,
                &mut self.rng,
                self.now,
                m,
            );
        }
        for ClientEvent::Finished(op) in events {
            self.history.push(op);
        }
    }
}

/// Serves the reads whose index the state machine has reached.
pub(crate) fn serve_reads(
    id: NodeId,
    fsm: &Fsm,
    pending: &mut BTreeMap<u64, PendingRead>,
    waiting: &mut Vec<(Index, u64)>,
    replies: &mut Vec<ClientMsg>,
    errors: &mut Vec<String>,
) {
    let applied = fsm.applied();
    let mut keep = Vec::new();
    for (index, ctx) in std::mem::take(waiting) {
        if index > applied {
            keep.push((index, ctx));
            continue;
        }
        let Some(r) = pending.remove(&ctx) else {
            continue;
        };
        match fsm.get(&r.key) {
            Ok(v) => replies.push(ClientMsg {
                client: r.client,
                op: r.op,
                node: id,
                body: ClientMsgBody::Reply(ClientReply::Read(v)),
            }),
            Err(e) => errors.push(format!("node {id}: read: {e}")),
        }
    }
    *waiting = keep;
}

pub(crate) fn send_client(
    queue: &mut BTreeMap<(Time, u64), ClientMsg>,
    sent: &mut u64,
    rng: &mut Rng,
    now: Time,
    msg: ClientMsg,
) {
    if queue.len() >= CLIENT_EVENTS_IN_FLIGHT_MAX || rng.chance(10) {
        return; // Lost on the way.
    }
    *sent += 1;
    let at = now + rng.range(1, 20);
    queue.insert((at, *sent), msg);
}
