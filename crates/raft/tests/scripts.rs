//! Runs every scenario script in `testdata/*.txt` (goldenscript format:
//! commands, `---`, expected output). Regenerate expected output with
//! `UPDATE_GOLDENFILES=1 cargo test -p raft --test scripts` and review the
//! diff before committing it.
//!
//! Commands (node ids are numbers; `[ids]` defaults to all nodes):
//!
//! - `cluster nodes=N [learners=a,b] [pre_vote=] [check_quorum=] [lease_read=]
//!   [election_min=] [election_max=] [heartbeat=] [entries_per_append=]
//!   [inflight=] [seed=] [tick_ms=] [lease_drift_percent=]`: a fresh
//!   cluster of voters 1..=N.
//! - `tick [ids] [n=1]`: advance time on the nodes (only ticks; nothing is
//!   delivered). Each tick also moves the node's clock (`set_now`) on by
//!   the tick interval (100 ms; `tick_ms=` in `cluster`).
//! - `stall ID ms=N`: ID's process was stopped for N ms: its clock jumps,
//!   and it counted no ticks meanwhile.
//! - `campaign ID`: start an election on ID.
//! - `run n=N`: N times: tick every node that is up, then stabilize; prints
//!   only role changes, applied entries, reads and snapshots (no messages).
//! - `stabilize`: handle every Ready and deliver every message until
//!   nothing moves. Prints role changes, messages sent, entries applied,
//!   reads served, messages dropped.
//! - `process [ids] [sync=false]`: handle one Ready of each node; with
//!   `sync=false`, the entries are written but not synced and the Ready is
//!   not advanced until `sync ID` (an fsync in flight).
//! - `sync ID`: finish a held Ready (sync, send persisted messages, apply,
//!   advance).
//! - `deliver [to=ID]`: deliver the messages in flight now (once).
//! - `partition ids`: the listed nodes on one side, all others on the
//!   other; `heal` removes it.
//! - `crash ID` (loses everything not synced) / `restart ID`.
//! - `wipe ID`: ID loses its disk and restarts with an empty store,
//!   recovering (as a joining node); `truncate ID to=I`: ID crashes and its
//!   log loses every entry after I (its hard state stays), then restarts.
//! - `leader-down ID PEER`: the transport of ID reports PEER down
//!   (`report_leader_down`); prints whether ID took it.
//! - `refused ID BY`: the transport of ID reports that BY refused it as
//!   a non-member (`refused_as_non_member`); prints whether ID took it.
//! - `replaced ID PEER`: the transport of ID saw a new incarnation of PEER
//!   (`report_replaced`); prints whether ID took it.
//! - `propose ID DATA`, `read ID CTX`, `transfer FROM TO`,
//!   `add-learner LEADER ID`, `promote LEADER ID`, `remove LEADER ID`,
//!   `compact ID` (at the applied index).
//! - `status [ids]`, `log [ids]` (`|` marks the commit index).
//!
//! After every command the invariants of every node are checked.

mod common;

use std::error::Error;
use std::fmt::Write as _;

use common::{Cluster, Out};
use raft::{ConfChangeKind, Config, Index, NodeId};

#[derive(Default)]
struct Runner {
    cluster: Option<Cluster>,
}

fn parse_ids(s: &str) -> Result<Vec<NodeId>, Box<dyn Error>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<NodeId>().map_err(|e| e.into()))
        .collect()
}

impl goldenscript::Runner for Runner {
    type Command = goldenscript::Command;

    fn run(
        &mut self,
        command: &goldenscript::Command,
        _context: &goldenscript::Context,
    ) -> Result<String, Box<dyn Error>> {
        let mut out = Out::new();
        let mut args = command.consume_args();
        if command.name == "cluster" {
            let mut template = Config::new(1);
            template.election_timeout_ticks_min = 10;
            template.election_timeout_ticks_max = 20;
            template.heartbeat_interval_ticks = 2;
            let mut n = 3;
            let mut learners = Vec::new();
            while let Some((k, v)) = args.next_key() {
                match k {
                    "nodes" => n = v.parse()?,
                    "learners" => learners = parse_ids(v)?,
                    "pre_vote" => template.pre_vote = v.parse()?,
                    "check_quorum" => template.check_quorum = v.parse()?,
                    "lease_read" => template.lease_read = v.parse()?,
                    "election_min" => template.election_timeout_ticks_min = v.parse()?,
                    "election_max" => template.election_timeout_ticks_max = v.parse()?,
                    "heartbeat" => template.heartbeat_interval_ticks = v.parse()?,
                    "entries_per_append" => template.entries_per_append_max = v.parse()?,
                    "inflight" => template.inflight_appends_max = v.parse()?,
                    "seed" => template.seed = v.parse()?,
                    "tick_ms" => {
                        template.tick_interval = std::time::Duration::from_millis(v.parse()?)
                    }
                    "lease_drift_percent" => template.lease_drift_percent = v.parse()?,
                    _ => return Err(format!("unknown key {k}").into()),
                }
            }
            args.reject_next()?;
            if let Err(e) = template.validate() {
                writeln!(out, "error: {e}")?;
                return Ok(out);
            }
            let voters: Vec<NodeId> = (1..=n).collect();
            self.cluster = Some(Cluster::new(&voters, &learners, template));
            return Ok(out);
        }
        let c = self.cluster.as_mut().ok_or("no cluster")?;
        let all: Vec<NodeId> = c.nodes.keys().copied().collect();
        let pos_ids =
            |args: &mut goldenscript::ArgumentConsumer| -> Result<Vec<NodeId>, Box<dyn Error>> {
                let mut v = Vec::new();
                while let Some(p) = args.next_pos() {
                    v.extend(parse_ids(p)?);
                }
                Ok(v)
            };
        let one = |args: &mut goldenscript::ArgumentConsumer| -> Result<NodeId, Box<dyn Error>> {
            Ok(args.next_pos().ok_or("node id expected")?.parse()?)
        };
        match command.name.as_str() {
            "tick" => {
                let n: u64 = args.take_key("n").map_or(Ok(1), |v| v.parse())?;
                let mut ids = pos_ids(&mut args)?;
                if ids.is_empty() {
                    ids = all;
                }
                for id in ids {
                    c.tick(id, n)?;
                }
            }
            "stall" => {
                let id = one(&mut args)?;
                let ms: u64 = args.take_key("ms").ok_or("ms= expected")?.parse()?;
                c.stall(id, std::time::Duration::from_millis(ms))?;
            }
            "campaign" => {
                let id = one(&mut args)?;
                if let Err(e) = c.node(id)?.raw.campaign() {
                    writeln!(out, "{id}: campaign refused: {e}")?;
                }
            }
            "stabilize" => c.stabilize(&mut out)?,
            "run" => {
                let n: u64 = args.take_key("n").map_or(Ok(1), |v| v.parse())?;
                for _ in 0..n {
                    for id in c.up_ids() {
                        c.tick(id, 1)?;
                    }
                    let mut trace = Out::new();
                    c.stabilize(&mut trace)?;
                    for line in trace.lines() {
                        if !line.contains('→') {
                            writeln!(out, "{line}")?;
                        }
                    }
                }
            }
            "process" => {
                let sync: bool = args.take_key("sync").map_or(Ok(true), |v| v.parse())?;
                let mut ids = pos_ids(&mut args)?;
                if ids.is_empty() {
                    ids = all;
                }
                for id in ids {
                    c.process(id, sync, &mut out)?;
                }
            }
            "sync" => {
                let id = one(&mut args)?;
                c.sync(id, &mut out)?;
            }
            "deliver" => {
                let to = args.take_key("to").map(|v| v.parse()).transpose()?;
                c.deliver(to, &mut out)?;
            }
            "partition" => {
                let ids = pos_ids(&mut args)?;
                c.side = Some(ids.into_iter().collect());
            }
            "heal" => c.side = None,
            "crash" => {
                let id = one(&mut args)?;
                c.crash(id)?;
            }
            "restart" => {
                let id = one(&mut args)?;
                c.restart(id)?;
            }
            "wipe" => {
                // The node loses its disk and restarts with an empty store
                // (a join-mode node under the same id).
                let id = one(&mut args)?;
                c.wipe(id);
                writeln!(out, "{id}: wiped; restarted with an empty store")?;
            }
            "truncate" => {
                // The node crashes and its log loses every entry after
                // `to` (a damaged disk); it restarts with its hard state.
                let id = one(&mut args)?;
                let to: Index = args.take_key("to").ok_or("to= expected")?.parse()?;
                c.truncate(id, to)?;
                writeln!(out, "{id}: log cut after {to}; restarted")?;
            }
            "propose" => {
                let id = one(&mut args)?;
                let data = args.next_pos().ok_or("data expected")?.to_string();
                c.propose(id, &data, &mut out)?;
            }
            "read" => {
                let id = one(&mut args)?;
                let ctx: u64 = args.next_pos().ok_or("ctx expected")?.parse()?;
                if let Err(e) = c.node(id)?.raw.read_index(ctx) {
                    writeln!(out, "{id}: read refused: {e}")?;
                }
            }
            "leader-down" => {
                let id = one(&mut args)?;
                let peer = one(&mut args)?;
                let taken = c.node(id)?.raw.report_leader_down(peer);
                let verb = if taken { "takes" } else { "ignores" };
                writeln!(out, "{id}: {verb} the report that {peer} is down")?;
            }
            "refused" => {
                let id = one(&mut args)?;
                let by = one(&mut args)?;
                let taken = c.node(id)?.raw.refused_as_non_member(by);
                let verb = if taken { "takes" } else { "ignores" };
                writeln!(out, "{id}: {verb} the refusal by {by}")?;
            }
            "replaced" => {
                let id = one(&mut args)?;
                let peer = one(&mut args)?;
                let taken = c.node(id)?.raw.report_replaced(peer);
                let verb = if taken { "restarts" } else { "ignores" };
                writeln!(out, "{id}: {verb} the progress of replaced node {peer}")?;
            }
            "transfer" => {
                let from = one(&mut args)?;
                let to = one(&mut args)?;
                if let Err(e) = c.node(from)?.raw.transfer_leader(to) {
                    writeln!(out, "{from}: transfer refused: {e}")?;
                }
            }
            "add-learner" | "promote" | "remove" => {
                let kind = match command.name.as_str() {
                    "add-learner" => ConfChangeKind::AddLearner,
                    "promote" => ConfChangeKind::AddVoter,
                    _ => ConfChangeKind::RemoveNode,
                };
                let leader = one(&mut args)?;
                let target = one(&mut args)?;
                c.conf_change(leader, kind, target, &mut out)?;
            }
            "compact" => {
                let id = one(&mut args)?;
                c.compact(id, &mut out)?;
            }
            "status" | "log" => {
                let mut ids = pos_ids(&mut args)?;
                if ids.is_empty() {
                    ids = all;
                }
                for id in ids {
                    if command.name == "status" {
                        c.status(id, &mut out)?;
                    } else {
                        c.log(id, &mut out)?;
                    }
                }
            }
            name => return Err(format!("unknown command {name}").into()),
        }
        args.reject_next()?;
        c.check_invariants()?;
        Ok(out)
    }
}

#[test]
fn scripts() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scripts in {dir:?}");
    for path in paths {
        goldenscript::run(&mut Runner::default(), &path)?;
    }
    Ok(())
}
