//! Randomized runs of small clusters over an unreliable network (loss,
//! duplication, reordering, partitions, crashes that lose unsynced data,
//! restarts, compaction, membership changes), checking after every step:
//!
//! - election safety: at most one leader per term;
//! - state machine safety: no two nodes apply different entries at an index;
//! - leader completeness: a leader's log holds every applied entry it still
//!   has (not compacted);
//! - each node's own invariants (`check_invariants`).
//!
//! A failure names the seed; `RAFT_FUZZ_SEEDS=N` runs more seeds.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::Cluster;
use raft::{ConfChange, ConfChangeKind, Config, LogStore, NodeId, Role};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Default)]
struct Checker {
    leaders: BTreeMap<u64, NodeId>,
    /// index -> (term, data, the highest term any node had when it was first
    /// applied: the entry was committed in that term or earlier).
    applied: BTreeMap<u64, (u64, Bytes, u64)>,
    /// Reads asked for: ctx -> the highest commit index of any node then.
    reads: BTreeMap<u64, u64>,
    reads_served: u64,
}

impl Checker {
    fn check(&mut self, c: &mut Cluster) -> Result<(), String> {
        c.check_invariants()?;
        let max_term = c
            .nodes
            .values()
            .map(|n| n.raw.status().term)
            .max()
            .unwrap_or(0);
        for (id, n) in c.nodes.iter_mut() {
            for (index, term, data) in n.applied_log.drain(..) {
                match self.applied.get(&index) {
                    Some((t, d, _)) if *t != term || *d != data => {
                        return Err(format!(
                            "node {id} applied {index}@{term}, another node applied {index}@{t}"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.applied.insert(index, (term, data, max_term));
                    }
                }
            }
            // Linearizable reads: a read must see every write acknowledged
            // before it was asked, i.e. everything committed anywhere then.
            for (ctx, index) in n.read_log.drain(..) {
                let floor = self.reads.get(&ctx).copied().unwrap_or(0);
                if index < floor {
                    return Err(format!(
                        "node {id} served read {ctx} at index {index}, but {floor} was committed when it was asked"
                    ));
                }
                self.reads_served += 1;
            }
            let s = n.raw.status();
            if s.role == Role::Leader {
                if let Some(other) = self.leaders.insert(s.term, *id) {
                    if other != *id {
                        return Err(format!("two leaders in term {}: {other} and {id}", s.term));
                    }
                }
                let store = n.raw.store();
                // Leader completeness: a leader of a later term than the one
                // an entry was committed in holds that entry.
                for (index, (term, _, committed_by)) in self.applied.range(store.first_index()..) {
                    if s.term <= *committed_by {
                        continue;
                    }
                    if *index > s.last_index {
                        return Err(format!(
                            "leader {id} (term {}) lacks applied entry {index}",
                            s.term
                        ));
                    }
                    if *index <= store.last_index() {
                        let t = store.term(*index).map_err(|e| e.to_string())?;
                        if t != *term {
                            return Err(format!(
                                "leader {id} holds {index}@{t}, but {index}@{term} was applied"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn run(seed: u64, steps: usize) -> Result<(), String> {
    let mut rng = Rng(seed);
    let n = if rng.chance(50) { 3 } else { 5 };
    let voters: Vec<NodeId> = (1..=n).collect();
    let check_quorum = rng.chance(50);
    let template = Config {
        pre_vote: rng.chance(50),
        check_quorum,
        lease_read: check_quorum && rng.chance(50),
        entries_per_append_max: 1 + rng.below(4) as usize,
        inflight_appends_max: 1 + rng.below(4) as usize,
        seed,
        ..Config::new(1)
    };
    let mut c = Cluster::new(&voters, &[], template);
    let mut checker = Checker::default();
    let mut out = String::new();
    let mut next_data = 0u64;
    let membership = rng.chance(30);
    let mut with_leader = 0;
    let mut proposed = 0;
    for step in 0..steps {
        out.clear();
        if c.leader().is_some() {
            with_leader += 1;
        }
        if std::env::var("RAFT_FUZZ_TRACE").is_ok() && step % 50 == 0 {
            let mut line = format!("step {step} net={} side={:?}:", c.net.len(), c.side);
            for (id, n) in &c.nodes {
                let s = n.raw.status();
                line += &format!(
                    " {id}:{}{}/t{}/c{}/l{}{}",
                    s.role,
                    if n.down { "(down)" } else { "" },
                    s.term,
                    s.commit,
                    s.last_index,
                    if n.held.is_some() { "(held)" } else { "" }
                );
            }
            eprintln!("{line}");
        }
        let ids: Vec<NodeId> = c.nodes.keys().copied().collect();
        let pick = ids[rng.below(ids.len() as u64) as usize];
        match rng.below(100) {
            0..=9 => {
                for id in c.up_ids() {
                    c.tick(id, 1)?;
                }
            }
            10..=49 => {
                // Deliver, drop, or duplicate a few random messages.
                for _ in 0..4 {
                    if c.net.is_empty() {
                        break;
                    }
                    let i = rng.below(c.net.len() as u64) as usize;
                    let Some(m) = c.net.remove(i) else { break };
                    if rng.chance(10) {
                        continue; // lost
                    }
                    if rng.chance(5) {
                        c.net.push_back(m.clone());
                    }
                    c.net.push_front(m);
                    c.deliver_one(&mut out)?;
                }
            }
            50..=69 => {
                let sync = rng.chance(85);
                c.process(pick, sync, &mut out)?;
            }
            70..=74 => {
                if c.nodes[&pick].held.is_some() {
                    c.sync(pick, &mut out)?;
                }
            }
            75..=84 => {
                if let Some(l) = c.leader() {
                    next_data += 1;
                    c.propose(l, &format!("v{next_data}"), &mut out)?;
                    if out.contains("proposed") {
                        proposed += 1;
                    }
                }
            }
            85..=86 => {
                if !rng.chance(25) {
                    // Crashes are rarer than the other events.
                } else if !c.nodes[&pick].down {
                    c.crash(pick)?;
                } else {
                    c.restart(pick)?;
                }
            }
            87..=89 => {
                let down: Vec<NodeId> = c
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.down)
                    .map(|(id, _)| *id)
                    .collect();
                if let Some(id) = down.first() {
                    c.restart(*id)?;
                }
            }
            90..=91 => {
                if !rng.chance(30) {
                    // Partitions change less often.
                } else if c.side.is_some() {
                    c.side = None;
                } else {
                    let side = ids.iter().copied().filter(|_| rng.chance(40)).collect();
                    c.side = Some(side);
                }
            }
            92..=93 => c.compact(pick, &mut out)?,
            94..=95 => {
                if let Some(l) = c.leader() {
                    let _ = c.node(l)?.raw.transfer_leader(pick);
                }
            }
            96..=97 => {
                // A read on any node that is up (followers forward it).
                if !c.nodes[&pick].down {
                    let floor = c
                        .nodes
                        .values()
                        .map(|n| n.raw.status().commit)
                        .max()
                        .unwrap_or(0);
                    checker.reads.insert(step as u64, floor);
                    let _ = c.node(pick)?.raw.read_index(step as u64);
                }
            }
            _ => {
                if membership {
                    if let Some(l) = c.leader() {
                        let conf = c.node(l)?.raw.status().conf;
                        let target = 1 + rng.below(n + 2);
                        let kind = if conf.learners.contains(&target) {
                            ConfChangeKind::AddVoter
                        } else if conf.voters.contains(&target) {
                            if conf.voters.len() > 2 {
                                ConfChangeKind::RemoveNode
                            } else {
                                continue;
                            }
                        } else {
                            ConfChangeKind::AddLearner
                        };
                        let cc = ConfChange::new(kind, target);
                        if c.node(l)?.raw.propose_conf_change(cc).is_ok()
                            && !c.nodes.contains_key(&target)
                        {
                            c.add_blank_node(target);
                        }
                    }
                }
            }
        }
        if std::env::var("RAFT_FUZZ_TRACE").is_ok() && !out.is_empty() {
            eprint!("[{step}] {out}");
        }
        checker
            .check(&mut c)
            .map_err(|e| format!("seed {seed} step {step}: {e}"))?;
    }
    // Heal everything and check that the cluster converges on a leader.
    c.side = None;
    let down: Vec<NodeId> = c
        .nodes
        .iter()
        .filter(|(_, n)| n.down)
        .map(|(id, _)| *id)
        .collect();
    for id in down {
        c.restart(id)?;
    }
    for id in c.up_ids() {
        if c.nodes[&id].held.is_some() {
            c.sync(id, &mut out)?;
        }
    }
    for _ in 0..200 {
        for id in c.up_ids() {
            c.tick(id, 1)?;
        }
        out.clear();
        c.stabilize(&mut out)?;
        checker
            .check(&mut c)
            .map_err(|e| format!("seed {seed} settling: {e}"))?;
    }
    if c.leader().is_none() {
        return Err(format!("seed {seed}: no leader after settling"));
    }
    if std::env::var("RAFT_FUZZ_VERBOSE").is_ok() {
        eprintln!(
            "seed {seed}: {} nodes, {with_leader} steps with a leader, {proposed} proposed, {} reads served, {} entries applied, {} terms with a leader",
            c.nodes.len(),
            checker.reads_served,
            checker.applied.len(),
            checker.leaders.len()
        );
    }
    Ok(())
}

#[test]
fn random_runs_keep_raft_safety() {
    let seeds: u64 = std::env::var("RAFT_FUZZ_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let range = match std::env::var("RAFT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(one) => one..one + 1,
        None => {
            let from: u64 = std::env::var("RAFT_FUZZ_FROM")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            from..from + seeds
        }
    };
    for seed in range {
        if let Err(e) = run(seed, 3000) {
            panic!("seed {seed}: {e}");
        }
    }
}
