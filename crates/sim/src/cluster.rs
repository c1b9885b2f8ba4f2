//! The simulated cluster: nodes, network, clients and checkers, advanced
//! one time unit at a time.
//!
//! In each time unit, in this order: stalled nodes whose stall is over
//! resume, every running node is given the time (`RawNode::set_now`: one
//! time unit is a millisecond of its monotonic clock), faults and
//! membership changes (on tick
//! boundaries), network messages due, client messages due, node ticks,
//! Ready handling (second halves whose fsync is done, then new Readies),
//! clients acting, and the invariant checks of every node something
//! happened to. Everything iterates in node-id or time order, and every
//! random draw comes from the run's one generator, so a seed replays the
//! same run.

use std::collections::BTreeMap;
use std::time::Duration;

use lincheck::KvOperation;
use raft::{
    ConfChange, Config, EntryKind, Index, LogStore, MemStore, Message, MessageBody, NodeId,
    RawNode, Role,
};

use crate::client::{Client, ClientMsg, ClientMsgBody, ClientReply, OpStats};
use crate::faults::FaultPlan;
use crate::fsm::Fsm;
use crate::invariants::{EntryId, Invariants};
use crate::limits::{READS_WAITING_MAX, STALL_HELD_MAX};
use crate::net::Network;
use crate::node::SimNode;
use crate::rng::Rng;
use crate::serve::{send_client, serve_reads};
use crate::trace::Fnv;
use crate::{FaultStats, Time, TICK};

/// How the nodes of a run are configured (drawn per seed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// A node's fsync takes `[0, fsync_max)` time units.
    pub fsync_max: Time,
    /// Snapshot the state machine into the log store every this many
    /// applied entries.
    pub compact_every: Index,
    /// `Config::entries_per_append_max` (small values split replication
    /// into many partial acknowledgements).
    pub entries_per_append_max: usize,
    /// `Config::inflight_appends_max`.
    pub inflight_appends_max: usize,
    /// `Config::lease_read` (only with `check_quorum`).
    pub lease_read: bool,
}

/// The whole simulated world. See the module docs.
pub struct Cluster {
    pub now: Time,
    pub rng: Rng,
    pub nodes: BTreeMap<NodeId, SimNode>,
    pub net: Network,
    pub clients: Vec<Client>,
    /// Client requests and replies in flight: (time, number) → message.
    pub client_queue: BTreeMap<(Time, u64), ClientMsg>,
    pub(crate) client_sent: u64,
    pub settings: NodeSettings,
    pub inv: Invariants,
    pub trace: Fnv,
    pub history: Vec<KvOperation>,
    pub ops: OpStats,
    pub faults: FaultStats,
    pub(crate) next_read_ctx: u64,
    /// The first violation found; the run stops there.
    pub violation: Option<String>,
    pub verbose: bool,
    /// Print every delivered message.
    pub trace_messages: bool,
    /// Sabotage: answer reads locally, without ReadIndex.
    pub local_reads: bool,
    /// Sabotage: give each node a clock made of its own ticks (as the core
    /// counted its lease before it took a clock), and no ticks for the time
    /// it was stalled.
    pub tick_clock: bool,
    /// Run each node's `check_invariants()` after every step.
    pub core_invariants: bool,
    /// Clients start no new operations.
    pub quiet: bool,
    /// The fault schedule (taken out while it runs).
    pub plan: Option<FaultPlan>,
    /// The configuration the cluster was bootstrapped with (the snapshot
    /// at index 0 of the first nodes). A node added later starts from it
    /// too: it then replays the configuration changes in the log from index
    /// 1 on, or gets a snapshot carrying the current configuration. (A node
    /// started with an empty configuration would derive a wrong one from
    /// the log's changes alone, e.g. {itself}, and elect itself.)
    pub bootstrap_conf: raft::ConfState,
}

impl Cluster {
    /// A cluster whose nodes `voters` are up and bootstrapped with that
    /// configuration.
    pub fn new(
        rng: Rng,
        net: Network,
        voters: &[NodeId],
        settings: NodeSettings,
        verbose: bool,
    ) -> Result<Cluster, String> {
        let mut c = Cluster {
            now: 0,
            rng,
            nodes: BTreeMap::new(),
            net,
            clients: Vec::new(),
            client_queue: BTreeMap::new(),
            client_sent: 0,
            settings,
            inv: Invariants::new(),
            trace: Fnv::new(),
            history: Vec::new(),
            ops: OpStats::default(),
            faults: FaultStats::default(),
            next_read_ctx: 1,
            violation: None,
            verbose,
            trace_messages: false,
            local_reads: false,
            tick_clock: false,
            core_invariants: true,
            quiet: false,
            plan: None,
            bootstrap_conf: raft::ConfState::with_voters(voters.iter().copied()),
        };
        let conf = c.bootstrap_conf.clone();
        for &id in voters {
            c.add_node(id, MemStore::with_conf(conf.clone()))?;
            if let Some(n) = c.nodes.get_mut(&id) {
                n.joined = true;
            }
        }
        Ok(c)
    }

    /// Adds an up node `id` over `store`.
    pub fn add_node(&mut self, id: NodeId, store: MemStore) -> Result<(), String> {
        let mut raw = RawNode::new(self.node_config(id, 0), store).map_err(|e| e.to_string())?;
        raw.set_now(Duration::from_millis(self.now));
        let fsm = Fsm::new()?;
        let phase = self.rng.range(0, TICK);
        self.nodes.insert(id, SimNode::new(id, raw, fsm, phase));
        Ok(())
    }

    /// The clock node `n` is given: the simulated time (one unit is a
    /// millisecond), or with the `tick_clock` sabotage its own ticks.
    fn clock_of(&self, n: &SimNode) -> Duration {
        if self.tick_clock {
            Duration::from_millis(n.ticks * TICK)
        } else {
            Duration::from_millis(self.now)
        }
    }

    /// Gives every running node the time (called at the start of each
    /// time unit, so before any input in it).
    fn set_clocks(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let Some(n) = self.nodes.get(&id) else {
                continue;
            };
            let clock = self.clock_of(n);
            if let Some(n) = self.nodes.get_mut(&id) {
                if n.stall.is_none() {
                    if let Some(raw) = &mut n.raw {
                        raw.set_now(clock);
                    }
                }
            }
        }
    }

    /// Whether node `id` is up and not stalled.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.is_running())
    }

    /// Resumes the stalled nodes whose stall is over: with `catch_up` they
    /// are given the ticks they missed (at most twice the largest election
    /// timeout, as the server does), then what was held for them is sent
    /// again (messages through the network, requests through the client
    /// link, so they arrive in a random order).
    fn resume_stalls(&mut self) {
        let now = self.now;
        let due: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.stall.as_ref().is_some_and(|s| s.until <= now))
            .map(|n| n.id)
            .collect();
        let cap = 2 * Config::default().election_timeout_ticks_max;
        for id in due {
            let Some(clock) = self.nodes.get(&id).map(|n| self.clock_of(n)) else {
                continue;
            };
            let tick_clock = self.tick_clock;
            let Some(n) = self.nodes.get_mut(&id) else {
                continue;
            };
            let Some(stall) = n.stall.take() else {
                continue;
            };
            n.dirty = true;
            let mut missed = 0;
            if let Some(raw) = &mut n.raw {
                raw.set_now(clock);
                if stall.catch_up && !tick_clock {
                    // The ticks the node would have counted meanwhile.
                    missed = n.stall_ticks_missed.min(cap);
                    for _ in 0..missed {
                        raw.tick();
                        n.ticks += 1;
                    }
                }
            }
            n.stall_ticks_missed = 0;
            for m in stall.inbox {
                self.net.send(now, m, &mut self.rng);
            }
            for (client, op, req) in stall.requests {
                send_client(
                    &mut self.client_queue,
                    &mut self.client_sent,
                    &mut self.rng,
                    now,
                    ClientMsg {
                        client,
                        op,
                        node: id,
                        body: ClientMsgBody::Request(req),
                    },
                );
            }
            self.trace.u64(0x5ee5);
            self.trace.u64(id);
            self.log(|| format!("node {id} resumes (caught up {missed} ticks)"));
        }
    }

    /// Stalls node `id` (if it is up) until `until`.
    pub fn stall(&mut self, id: NodeId, until: Time, drop_messages: bool, catch_up: bool) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        if !n.is_running() {
            return;
        }
        n.stall = Some(crate::node::Stall {
            until,
            drop_messages,
            catch_up,
            inbox: Vec::new(),
            requests: Vec::new(),
        });
        n.stall_ticks_missed = 0;
        self.faults.stalls += 1;
        self.trace.u64(0x57a1);
        self.trace.u64(id);
        self.log(|| {
            format!(
                "stall node {id} until {until} (messages {}, catch up: {catch_up})",
                if drop_messages { "dropped" } else { "held" }
            )
        });
    }

    fn node_config(&mut self, id: NodeId, applied: Index) -> Config {
        Config {
            id,
            seed: self.rng.u64(),
            pre_vote: self.settings.pre_vote,
            check_quorum: self.settings.check_quorum,
            lease_read: self.settings.lease_read && self.settings.check_quorum,
            tick_interval: Duration::from_millis(TICK),
            entries_per_append_max: self.settings.entries_per_append_max,
            inflight_appends_max: self.settings.inflight_appends_max,
            applied,
            // Hash committed entries for check_invariants() in release too.
            check_invariants: true,
            ..Config::default()
        }
    }

    /// Records a violation (the first one wins) and says so if verbose.
    pub fn fail(&mut self, what: String) {
        if self.verbose {
            println!("[{:>7}] VIOLATION {what}", self.now);
        }
        if self.violation.is_none() {
            self.violation = Some(what);
        }
    }

    /// Prints an event when verbose.
    pub fn log(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            println!("[{:>7}] {}", self.now, what());
        }
    }

    /// Ids of nodes that have not been stopped for good.
    pub fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| !n.stopped)
            .map(|n| n.id)
            .collect()
    }

    /// The up node that leads in the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        let mut best: Option<(u64, NodeId)> = None;
        for n in self.nodes.values() {
            if let Some(raw) = &n.raw {
                let st = raw.status();
                if st.role == Role::Leader && best.is_none_or(|(t, _)| st.term > t) {
                    best = Some((st.term, n.id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// One time unit. See the module docs for the order.
    pub fn step(&mut self) {
        self.resume_stalls();
        self.set_clocks();
        if self.now.is_multiple_of(TICK) {
            self.faults_tick();
        }
        self.leader_killer_unit();
        while let Some(msg) = self.net.next_due(self.now) {
            self.deliver(msg);
        }
        self.deliver_client_msgs();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            let now = self.now;
            if let Some(n) = self.nodes.get_mut(&id) {
                let tick_clock = self.tick_clock;
                if let Some(raw) = &mut n.raw {
                    if (now + n.tick_phase).is_multiple_of(TICK) {
                        if n.stall.is_some() {
                            n.stall_ticks_missed += 1;
                            continue;
                        }
                        n.ticks += 1;
                        if tick_clock {
                            raw.set_now(Duration::from_millis(n.ticks * TICK));
                        }
                        raw.tick();
                        n.dirty = true;
                    }
                }
            }
        }
        for &id in &ids {
            self.handle_ready(id);
        }
        self.clients_act();
        for &id in &ids {
            self.check_node(id);
        }
        self.now += 1;
    }

    fn deliver(&mut self, msg: Message) {
        let Some(n) = self.nodes.get_mut(&msg.to) else {
            return;
        };
        if let Some(stall) = &mut n.stall {
            if !stall.drop_messages && stall.inbox.len() < STALL_HELD_MAX {
                stall.inbox.push(msg);
            }
            return;
        }
        let Some(raw) = &mut n.raw else {
            return;
        };
        hash_message(&mut self.trace, self.now, &msg);
        if self.trace_messages {
            println!("[{:>7}] deliver {msg}", self.now);
        }
        n.dirty = true;
        if let Err(e) = raw.step(msg) {
            let id = n.id;
            self.fail(format!("node {id}: step failed: {e}"));
        }
    }

    // ---- Ready handling -------------------------------------------------

    fn handle_ready(&mut self, id: NodeId) {
        // Bounded: each pass either finishes a Ready or starts one.
        for _ in 0..8 {
            let Some(n) = self.nodes.get(&id) else {
                return;
            };
            let Some(raw) = &n.raw else {
                return;
            };
            if n.stall.is_some() {
                return;
            }
            match &n.in_flight {
                Some((_, at)) if *at <= self.now => self.finish_ready(id),
                Some(_) => return,
                None if raw.has_ready() => self.start_ready(id),
                None => return,
            }
            if self.violation.is_some() {
                return;
            }
        }
    }

    /// First half: snapshot, entries, hard state, `messages`.
    fn start_ready(&mut self, id: NodeId) {
        let now = self.now;
        let fsync = self.rng.range(0, self.settings.fsync_max);
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(raw) = &mut n.raw else {
            return;
        };
        n.dirty = true;
        let rd = raw.ready();
        self.trace.u64(now);
        self.trace.u64(id);
        self.trace.u64(rd.entries.len() as u64);
        self.trace.u64(rd.committed_entries.len() as u64);
        let mut errors: Vec<String> = Vec::new();
        if let Some(snap) = &rd.snapshot {
            self.faults.snapshots_installed += 1;
            match Fsm::restore(&snap.data) {
                Ok(fsm) => n.fsm = fsm,
                Err(e) => errors.push(format!("node {id}: snapshot restore: {e}")),
            }
            if n.fsm.applied() != snap.meta.index {
                errors.push(format!(
                    "node {id}: restored state machine is at {} but the snapshot is at {}",
                    n.fsm.applied(),
                    snap.meta.index
                ));
            }
            // Writes waiting at or below the snapshot will never apply here.
            let rest = n.pending_writes.split_off(&(snap.meta.index + 1));
            let lost = std::mem::replace(&mut n.pending_writes, rest);
            for (_, w) in lost {
                send_client(
                    &mut self.client_queue,
                    &mut self.client_sent,
                    &mut self.rng,
                    now,
                    ClientMsg {
                        client: w.client,
                        op: w.op,
                        node: id,
                        body: ClientMsgBody::Reply(ClientReply::Failed),
                    },
                );
            }
            if let Err(e) = raw.store_mut().install_snapshot(snap.clone()) {
                errors.push(format!("node {id}: install_snapshot: {e}"));
            }
            n.compacted_at = snap.meta.index;
        }
        if let Some(first) = rd.entries.first() {
            let store = raw.store_mut();
            let mut prev = store.term(first.index - 1).ok();
            for e in &rd.entries {
                if let Err(v) = self.inv.observe_appended(id, e, prev) {
                    errors.push(v.to_string());
                }
                prev = Some(e.term);
            }
            if let Err(e) = store.append(&rd.entries) {
                errors.push(format!("node {id}: append: {e}"));
            }
        }
        if let Some(hs) = &rd.hard_state {
            if let Err(e) = raw.store_mut().save_hard_state(hs) {
                errors.push(format!("node {id}: save_hard_state: {e}"));
            }
        }
        // The Ready handed out every entry: the store is the core's log.
        let (commit, term) = {
            let st = raw.status();
            (st.commit, st.term)
        };
        if let Err(v) = check_commit(
            &mut self.inv,
            id,
            term,
            raw.store(),
            commit,
            &mut n.checked_commit,
        ) {
            errors.push(v.to_string());
        }
        if let Some(ss) = &rd.soft_state {
            if ss.role == Role::Leader {
                let term = raw.status().term;
                if self.verbose {
                    println!("[{now:>7}] node {id} became leader in term {term}");
                }
                if let Err(v) = self.inv.observe_leader(id, term) {
                    errors.push(v.to_string());
                }
                let store = raw.store();
                let snapshot_index = store.snapshot_meta().index;
                let log = |i: Index| {
                    store
                        .entries(i, i + 1, u64::MAX)
                        .ok()
                        .and_then(|v| v.first().map(EntryId::of))
                };
                if let Err(v) = self.inv.check_leader_log(id, term, snapshot_index, log) {
                    errors.push(v.to_string());
                }
            }
        }
        for m in &rd.messages {
            self.net.send(now, m.clone(), &mut self.rng);
        }
        let mut rd = rd;
        rd.messages.clear();
        n.in_flight = Some((rd, now + fsync));
        for e in errors {
            self.fail(e);
        }
    }

    /// Second half: sync, `persisted_messages`, apply, reads, advance,
    /// maybe compact.
    fn finish_ready(&mut self, id: NodeId) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some((rd, _)) = n.in_flight.take() else {
            return;
        };
        let Some(raw) = &mut n.raw else {
            return;
        };
        n.dirty = true;
        let mut errors: Vec<String> = Vec::new();
        let mut replies: Vec<ClientMsg> = Vec::new();
        if let Err(e) = raw.store_mut().sync() {
            errors.push(format!("node {id}: sync: {e}"));
        }
        for m in &rd.persisted_messages {
            self.net.send(now, m.clone(), &mut self.rng);
        }
        for e in &rd.committed_entries {
            if let Err(v) = self.inv.observe_applied(id, e.index, EntryId::of(e)) {
                errors.push(v.to_string());
            }
            let resp = match n.fsm.apply(e) {
                Ok(r) => r,
                Err(err) => {
                    errors.push(format!("node {id}: apply {}: {err}", e.index));
                    None
                }
            };
            if e.kind == EntryKind::ConfChange {
                self.faults.conf_changes_applied += 1;
                if self.verbose {
                    if let Ok(cc) = ConfChange::decode(&e.data) {
                        println!(
                            "[{now:>7}] node {id} applied conf change {:?} {} at {}",
                            cc.kind, cc.node_id, e.index
                        );
                    }
                }
            }
            if let Some(w) = n.pending_writes.remove(&e.index) {
                let reply = match resp {
                    Some(r) if w.term == e.term => ClientReply::Written(r),
                    _ => ClientReply::Failed,
                };
                replies.push(ClientMsg {
                    client: w.client,
                    op: w.op,
                    node: id,
                    body: ClientMsgBody::Reply(reply),
                });
            }
        }
        // Writes waiting below what was applied lost their slot.
        let applied = n.fsm.applied();
        let rest = n.pending_writes.split_off(&(applied + 1));
        for (_, w) in std::mem::replace(&mut n.pending_writes, rest) {
            replies.push(ClientMsg {
                client: w.client,
                op: w.op,
                node: id,
                body: ClientMsgBody::Reply(ClientReply::Failed),
            });
        }
        for rs in &rd.read_states {
            if n.reads_waiting.len() < READS_WAITING_MAX {
                n.reads_waiting.push((rs.index, rs.ctx));
            }
        }
        serve_reads(
            id,
            &n.fsm,
            &mut n.pending_reads,
            &mut n.reads_waiting,
            &mut replies,
            &mut errors,
        );
        if let Err(e) = raw.advance(rd) {
            errors.push(format!("node {id}: advance: {e}"));
        }
        // Snapshot the state machine into the log store now and then. A
        // node may apply committed entries it has not persisted itself yet;
        // the core refuses to compact past its own durable log, so wait
        // until the applied index is durable here.
        let applied = n.fsm.applied();
        let durable = raw.store().durable_last_index();
        if applied >= n.compacted_at + self.settings.compact_every && applied <= durable {
            match n.fsm.snapshot() {
                Ok(data) => match raw.compact(applied, data) {
                    Ok(()) => {
                        n.compacted_at = applied;
                        self.faults.compactions += 1;
                    }
                    // A refusal (e.g. a snapshot from the leader pending) is
                    // not a fault: try again later.
                    Err(raft::Error::Compact { .. }) => self.faults.compactions_refused += 1,
                    Err(e) => errors.push(format!("node {id}: compact to {applied}: {e}")),
                },
                Err(e) => errors.push(format!("node {id}: snapshot: {e}")),
            }
        }
        for r in replies {
            send_client(
                &mut self.client_queue,
                &mut self.client_sent,
                &mut self.rng,
                now,
                r,
            );
        }
        for e in errors {
            self.fail(e);
        }
    }

    // ---- Checks ---------------------------------------------------------

    fn check_node(&mut self, id: NodeId) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        if !n.dirty {
            return;
        }
        n.dirty = false;
        let Some(raw) = &mut n.raw else {
            return;
        };
        let mut errors = Vec::new();
        if self.core_invariants {
            if let Err(e) = raw.check_invariants() {
                errors.push(format!("node {id}: invariant: {e}"));
            }
        }
        let st = raw.status();
        if st.role == Role::Leader {
            if let Err(v) = self.inv.observe_leader(id, st.term) {
                errors.push(v.to_string());
            }
        }
        // The store shows the core's log only when no Ready is in flight
        // and every entry has been handed out: entries still in the core's
        // unstable log may replace (uncommitted) ones in the store.
        if n.in_flight.is_none() && !raw.has_ready() {
            if let Err(v) = check_commit(
                &mut self.inv,
                id,
                st.term,
                raw.store(),
                st.commit,
                &mut n.checked_commit,
            ) {
                errors.push(v.to_string());
            }
        }
        for e in errors {
            self.fail(e);
        }
    }

    /// Crashes node `id`; it comes back at `restart_at`.
    pub fn crash(&mut self, id: NodeId, restart_at: Time) {
        if let Some(n) = self.nodes.get_mut(&id) {
            if n.crash() {
                n.restart_at = Some(restart_at);
                self.faults.crashes += 1;
                self.trace.u64(0xc4a5);
                self.trace.u64(id);
                self.log(|| format!("crash node {id} (back at {restart_at})"));
            }
        }
    }

    /// Restarts a crashed node from its durable store.
    pub fn restart(&mut self, id: NodeId) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(store) = n.down_store.take() else {
            return;
        };
        n.restart_at = None;
        let snapshot = match store.snapshot() {
            Ok(s) => s,
            Err(e) => return self.fail(format!("node {id}: reading the snapshot on restart: {e}")),
        };
        let fsm = match Fsm::restore(&snapshot.data) {
            Ok(f) => f,
            Err(e) => return self.fail(format!("node {id}: restoring on restart: {e}")),
        };
        let config = self.node_config(id, snapshot.meta.index);
        let mut raw = match RawNode::new(config, store) {
            Ok(r) => r,
            Err(e) => return self.fail(format!("node {id}: restart: {e}")),
        };
        raw.set_now(Duration::from_millis(if self.tick_clock {
            0
        } else {
            self.now
        }));
        if let Some(n) = self.nodes.get_mut(&id) {
            n.compacted_at = snapshot.meta.index;
            n.fsm = fsm;
            n.raw = Some(raw);
            n.dirty = true;
        }
        self.faults.restarts += 1;
        self.trace.u64(0x5e57);
        self.trace.u64(id);
        self.log(|| format!("restart node {id} from snapshot {}", snapshot.meta.index));
    }
}

/// Observes node `id`'s committed entries up to `commit` (those not
/// checked yet), reading them from `store`, which must hold the core's
/// whole log.
fn check_commit(
    inv: &mut Invariants,
    id: NodeId,
    term: raft::Term,
    store: &MemStore,
    commit: Index,
    checked: &mut Index,
) -> Result<(), crate::invariants::Violation> {
    let mut i = (*checked).max(store.snapshot_meta().index) + 1;
    while i <= commit {
        match store.entries(i, i + 1, u64::MAX) {
            Ok(v) if !v.is_empty() => {
                inv.observe_committed(id, term, i, EntryId::of(&v[0]))?;
                *checked = i;
            }
            _ => break,
        }
        i += 1;
    }
    Ok(())
}

/// Feeds the fields of a delivered message that matter into the trace.
fn hash_message(h: &mut Fnv, now: Time, m: &Message) {
    h.u64(now);
    h.u64(m.from);
    h.u64(m.to);
    h.u64(m.term);
    h.bytes(m.body.name().as_bytes());
    match &m.body {
        MessageBody::AppendEntries {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            h.u64(*prev_index);
            h.u64(*prev_term);
            h.u64(entries.len() as u64);
            h.u64(*commit);
        }
        MessageBody::AppendEntriesResponse { reject, index, .. } => {
            h.u64(u64::from(*reject));
            h.u64(*index);
        }
        MessageBody::RequestVoteResponse { granted } | MessageBody::PreVoteResponse { granted } => {
            h.u64(u64::from(*granted));
        }
        MessageBody::Heartbeat { commit, round } => {
            h.u64(*commit);
            h.u64(*round);
        }
        MessageBody::InstallSnapshot { snapshot } => h.u64(snapshot.meta.index),
        _ => {}
    }
}
