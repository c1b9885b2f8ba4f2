//! A small cluster of `RawNode<MemStore>`s with a controllable network, for
//! the scenario scripts and the unit tests. Everything is deterministic.
//!
//! Each node has a toy state machine: the list of applied entry payloads.
//! Its snapshot is that list joined by `,`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use raft::{
    ConfChange, ConfChangeKind, ConfState, Config, Entry, EntryKind, Index, LogStore, MemStore,
    Message, NodeId, RawNode, ReadState, Ready, Role, SoftState,
};

pub type Out = String;

pub struct TestNode {
    pub raw: RawNode<MemStore>,
    pub config: Config,
    /// The state machine: (index, payload) of applied normal entries.
    pub sm: Vec<(Index, String)>,
    pub applied: Index,
    /// Reads handed out and not yet served (waiting for applied >= index).
    pub reads: Vec<ReadState>,
    /// A Ready whose sync and advance are held back (`process sync=false`).
    pub held: Option<Ready>,
    pub down: bool,
    pub soft: SoftState,
    /// Every entry applied since the last drain: (index, term, data).
    pub applied_log: Vec<(Index, u64, Bytes)>,
    /// Every read served since the last drain: (ctx, read index).
    pub read_log: Vec<(u64, Index)>,
    /// The node's monotonic clock: `tick_interval` per tick, plus stalls.
    pub clock: Duration,
}

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, TestNode>,
    pub net: VecDeque<Message>,
    /// One side of a partition; messages crossing it are dropped.
    pub side: Option<BTreeSet<NodeId>>,
    pub bootstrap: ConfState,
    pub template: Config,
}

pub fn data_str(e: &Entry) -> String {
    match e.kind {
        EntryKind::Normal if e.data.is_empty() => "(no-op)".to_string(),
        EntryKind::Normal => String::from_utf8_lossy(&e.data).into_owned(),
        EntryKind::ConfChange => match ConfChange::decode(&e.data) {
            Ok(cc) => format!("conf {:?} {}", cc.kind, cc.node_id),
            Err(err) => format!("conf ({err})"),
        },
    }
}

fn ids(s: &BTreeSet<NodeId>) -> String {
    s.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl Cluster {
    pub fn new(voters: &[NodeId], learners: &[NodeId], template: Config) -> Cluster {
        let mut bootstrap = ConfState::with_voters(voters.iter().copied());
        bootstrap.learners = learners.iter().copied().collect();
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            net: VecDeque::new(),
            side: None,
            bootstrap,
            template,
        };
        for id in voters.iter().chain(learners) {
            c.add_node(*id);
        }
        c
    }

    /// Creates node `id` from the bootstrap configuration.
    pub fn add_node(&mut self, id: NodeId) {
        let store = MemStore::with_conf(self.bootstrap.clone());
        self.add_node_with(id, store);
    }

    /// Creates node `id` with an empty store, as a node joining later
    /// starts: it learns the configuration from the leader's snapshot.
    pub fn add_blank_node(&mut self, id: NodeId) {
        self.add_node_with(id, MemStore::new());
    }

    fn add_node_with(&mut self, id: NodeId, store: MemStore) {
        let config = Config {
            id,
            seed: self.template.seed.wrapping_add(id),
            ..self.template.clone()
        };
        let mut raw = RawNode::new(config.clone(), store).expect("valid config");
        raw.set_now(Duration::ZERO);
        self.nodes.insert(
            id,
            TestNode {
                raw,
                config,
                sm: Vec::new(),
                applied: 0,
                reads: Vec::new(),
                held: None,
                down: false,
                soft: SoftState {
                    role: Role::Follower,
                    leader: None,
                },
                applied_log: Vec::new(),
                read_log: Vec::new(),
                clock: Duration::ZERO,
            },
        );
    }

    pub fn node(&mut self, id: NodeId) -> Result<&mut TestNode, String> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))
    }

    pub fn up_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.down)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn tick(&mut self, id: NodeId, n: u64) -> Result<(), String> {
        let node = self.node(id)?;
        if node.down {
            return Ok(());
        }
        for _ in 0..n {
            node.clock += node.config.tick_interval;
            node.raw.set_now(node.clock);
            node.raw.tick();
        }
        Ok(())
    }

    /// Node `id`'s process was stopped for `d`: its clock jumps, and it
    /// counted no ticks meanwhile.
    pub fn stall(&mut self, id: NodeId, d: Duration) -> Result<(), String> {
        let node = self.node(id)?;
        node.clock += d;
        node.raw.set_now(node.clock);
        Ok(())
    }

    fn blocked(&self, from: NodeId, to: NodeId) -> bool {
        match &self.side {
            Some(s) => s.contains(&from) != s.contains(&to),
            None => false,
        }
    }

    /// Handles node `id`'s Ready: steps 1-3, and with `sync` also 4-6.
    pub fn process(&mut self, id: NodeId, sync: bool, out: &mut Out) -> Result<bool, String> {
        let node = self.nodes.get_mut(&id).ok_or(format!("no node {id}"))?;
        if node.down || node.held.is_some() || !node.raw.has_ready() {
            return Ok(false);
        }
        let mut rd = node.raw.ready();
        if let Some(ss) = rd.soft_state {
            node.soft = ss;
            let term = node.raw.status().term;
            match ss.leader {
                Some(l) if ss.role != Role::Leader => {
                    writeln!(out, "{id}: {} term={term} leader={l}", ss.role).unwrap()
                }
                _ => writeln!(out, "{id}: {} term={term}", ss.role).unwrap(),
            }
        }
        // 1. Install a snapshot.
        if let Some(s) = rd.snapshot.clone() {
            node.sm = restore_sm(&s.data, s.meta.index);
            node.applied = s.meta.index;
            writeln!(
                out,
                "{id}: install snapshot {}@{}",
                s.meta.index, s.meta.term
            )
            .unwrap();
            node.raw
                .store_mut()
                .install_snapshot(s)
                .map_err(|e| e.to_string())?;
        }
        // 2. Append entries, save the hard state.
        node.raw
            .store_mut()
            .append(&rd.entries)
            .map_err(|e| e.to_string())?;
        if let Some(hs) = &rd.hard_state {
            node.raw
                .store_mut()
                .save_hard_state(hs)
                .map_err(|e| e.to_string())?;
        }
        // 3. Send what may go before the sync.
        for m in std::mem::take(&mut rd.messages) {
            writeln!(out, "{m}").unwrap();
            self.net.push_back(m);
        }
        if sync {
            self.finish(id, rd, out)?;
        } else {
            let node = self.node(id)?;
            if !rd.entries.is_empty() {
                let last = rd.entries.last().map(|e| e.index).unwrap_or(0);
                writeln!(out, "{id}: appended up to {last}, not yet synced").unwrap();
            }
            node.held = Some(rd);
        }
        Ok(true)
    }

    /// Steps 4-6 of a Ready.
    fn finish(&mut self, id: NodeId, mut rd: Ready, out: &mut Out) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).ok_or(format!("no node {id}"))?;
        // 4. Sync, then send what needed durability.
        node.raw.store_mut().sync().map_err(|e| e.to_string())?;
        let persisted = std::mem::take(&mut rd.persisted_messages);
        // 5. Apply, serve reads.
        for e in &rd.committed_entries {
            writeln!(out, "{id}: apply {}@{} {}", e.index, e.term, data_str(e)).unwrap();
            if e.kind == EntryKind::Normal && !e.data.is_empty() {
                node.sm
                    .push((e.index, String::from_utf8_lossy(&e.data).into_owned()));
            }
            node.applied = e.index;
            node.applied_log.push((e.index, e.term, e.data.clone()));
        }
        node.reads.extend(rd.read_states.iter().copied());
        let applied = node.applied;
        let mut served = Vec::new();
        node.reads.retain(|r| {
            if r.index <= applied {
                served.push((r.ctx, r.index));
                writeln!(out, "{id}: read ctx={} served at index {}", r.ctx, r.index).unwrap();
                false
            } else {
                writeln!(out, "{id}: read ctx={} waits for index {}", r.ctx, r.index).unwrap();
                true
            }
        });
        node.read_log.extend(served);
        // 6. Advance.
        node.raw.advance(rd).map_err(|e| e.to_string())?;
        for m in persisted {
            writeln!(out, "{m}").unwrap();
            self.net.push_back(m);
        }
        Ok(())
    }

    /// Completes a held Ready (`process sync=false`).
    pub fn sync(&mut self, id: NodeId, out: &mut Out) -> Result<(), String> {
        let node = self.node(id)?;
        let Some(rd) = node.held.take() else {
            return Err(format!("node {id} holds no Ready"));
        };
        writeln!(out, "{id}: synced").unwrap();
        self.finish(id, rd, out)
    }

    /// Delivers the messages queued now (not those they cause).
    pub fn deliver(&mut self, only_to: Option<NodeId>, out: &mut Out) -> Result<bool, String> {
        let batch: Vec<Message> = self.net.drain(..).collect();
        let mut any = false;
        for m in batch {
            if only_to.is_some_and(|t| t != m.to) {
                self.net.push_back(m);
                continue;
            }
            any = true;
            if self.blocked(m.from, m.to) {
                writeln!(out, "dropped {m} (partition)").unwrap();
                continue;
            }
            let Some(node) = self.nodes.get_mut(&m.to) else {
                writeln!(out, "dropped {m} (no such node)").unwrap();
                continue;
            };
            if node.down {
                writeln!(out, "dropped {m} (down)").unwrap();
                continue;
            }
            node.raw.step(m).map_err(|e| e.to_string())?;
        }
        Ok(any)
    }

    /// Delivers the message at the front of the network queue.
    pub fn deliver_one(&mut self, out: &mut Out) -> Result<(), String> {
        let Some(m) = self.net.pop_front() else {
            return Ok(());
        };
        if self.blocked(m.from, m.to) {
            return Ok(());
        }
        match self.nodes.get_mut(&m.to) {
            Some(node) if !node.down => node.raw.step(m).map_err(|e| e.to_string()),
            _ => {
                let _ = out;
                Ok(())
            }
        }
    }

    /// Processes Readies and delivers messages until nothing moves.
    pub fn stabilize(&mut self, out: &mut Out) -> Result<(), String> {
        for _ in 0..10_000 {
            let mut moved = false;
            for id in self.up_ids() {
                while self.process(id, true, out)? {
                    moved = true;
                }
            }
            moved |= self.deliver(None, out)?;
            if !moved {
                return Ok(());
            }
        }
        Err("cluster did not stabilize".into())
    }

    pub fn crash(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.node(id)?;
        node.raw.store_mut().crash();
        node.down = true;
        node.held = None;
        Ok(())
    }

    pub fn restart(&mut self, id: NodeId) -> Result<(), String> {
        let node = self.node(id)?;
        let store = std::mem::take(node.raw.store_mut());
        let config = Config {
            applied: 0,
            ..node.config.clone()
        };
        node.raw = RawNode::new(config, store).map_err(|e| e.to_string())?;
        node.raw.set_now(node.clock);
        node.sm.clear();
        node.applied = 0;
        node.reads.clear();
        node.down = false;
        node.held = None;
        node.soft = SoftState {
            role: Role::Follower,
            leader: None,
        };
        Ok(())
    }

    pub fn propose(&mut self, id: NodeId, data: &str, out: &mut Out) -> Result<(), String> {
        let node = self.node(id)?;
        match node.raw.propose(Bytes::from(data.to_string())) {
            Ok((i, t)) => writeln!(out, "{id}: proposed {data} at {i}@{t}").unwrap(),
            Err(e) => writeln!(out, "{id}: propose refused: {e}").unwrap(),
        }
        Ok(())
    }

    pub fn conf_change(
        &mut self,
        id: NodeId,
        kind: ConfChangeKind,
        target: NodeId,
        out: &mut Out,
    ) -> Result<(), String> {
        let node = self.node(id)?;
        match node.raw.propose_conf_change(ConfChange::new(kind, target)) {
            Ok((i, t)) => writeln!(out, "{id}: proposed {kind:?} {target} at {i}@{t}").unwrap(),
            Err(e) => {
                writeln!(out, "{id}: conf change refused: {e}").unwrap();
                return Ok(());
            }
        }
        if !self.nodes.contains_key(&target) {
            self.add_blank_node(target);
            writeln!(out, "{target}: started with an empty store").unwrap();
        }
        Ok(())
    }

    pub fn status(&mut self, id: NodeId, out: &mut Out) -> Result<(), String> {
        let node = self.node(id)?;
        let s = node.raw.status();
        let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
        writeln!(
            out,
            "{id}: {} term={} leader={leader} commit={} applied={} last={} snap={} voters={} learners={}{}{}",
            s.role,
            s.term,
            s.commit,
            s.applied,
            s.last_index,
            s.snapshot_index,
            ids(&s.conf.voters),
            ids(&s.conf.learners),
            if s.removed { " removed" } else { "" },
            if node.down { " (down)" } else { "" },
        )
        .unwrap();
        for (pid, p) in &s.progress {
            writeln!(
                out,
                "   {pid}: match={} next={} {}{}",
                p.match_index,
                p.next_index,
                p.state,
                if p.learner { " learner" } else { "" }
            )
            .unwrap();
        }
        if let Some(t) = s.transferee {
            writeln!(out, "   transferring to {t}").unwrap();
        }
        Ok(())
    }

    pub fn log(&mut self, id: NodeId, out: &mut Out) -> Result<(), String> {
        let node = self.node(id)?;
        let store = node.raw.store();
        let s = node.raw.status();
        let mut line = format!("{id}:");
        if s.snapshot_index > 0 {
            let t = store.term(s.snapshot_index).unwrap_or(0);
            write!(line, " [snapshot {}@{t}]", s.snapshot_index).unwrap();
        }
        let ents = store
            .entries(store.first_index(), store.last_index() + 1, u64::MAX)
            .map_err(|e| e.to_string())?;
        for e in &ents {
            write!(line, " {}@{} {}", e.index, e.term, data_str(e)).unwrap();
            if e.index == s.commit {
                line.push_str(" |");
            }
        }
        writeln!(out, "{line}").unwrap();
        Ok(())
    }

    pub fn compact(&mut self, id: NodeId, out: &mut Out) -> Result<(), String> {
        let node = self.node(id)?;
        let index = node.applied;
        let data = snapshot_sm(&node.sm);
        match node.raw.compact(index, Bytes::from(data)) {
            Ok(()) => writeln!(out, "{id}: compacted to {index}").unwrap(),
            Err(e) => writeln!(out, "{id}: compact refused: {e}").unwrap(),
        }
        Ok(())
    }

    pub fn check_invariants(&mut self) -> Result<(), String> {
        for (id, n) in self.nodes.iter_mut() {
            n.raw
                .check_invariants()
                .map_err(|e| format!("node {id}: {e}"))?;
        }
        Ok(())
    }

    /// The only leader among the nodes that are up, in the highest term.
    pub fn leader(&self) -> Option<NodeId> {
        let mut best: Option<(u64, NodeId)> = None;
        for (id, n) in &self.nodes {
            let s = n.raw.status();
            if !n.down && s.role == Role::Leader && best.is_none_or(|(t, _)| s.term > t) {
                best = Some((s.term, *id));
            }
        }
        best.map(|(_, id)| id)
    }
}

fn snapshot_sm(sm: &[(Index, String)]) -> String {
    sm.iter()
        .map(|(i, d)| format!("{i}:{d}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn restore_sm(data: &[u8], _index: Index) -> Vec<(Index, String)> {
    let s = String::from_utf8_lossy(data);
    s.split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (i, d) = p.split_once(':')?;
            Some((i.parse().ok()?, d.to_string()))
        })
        .collect()
}
