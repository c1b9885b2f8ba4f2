//! `status`, `members ...`, `transfer-leader`, `snapshot`: the cluster.

use clap::{Args, Subcommand};
use serde_json::json;

use client::pb::{Member, MembersResponse};

use crate::exit::CliError;
use crate::output::{
    error_json, header_json, member_json, print_json, status_json, status_role, table,
};
use crate::ClientOpts;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Debug, Args)]
pub struct MembersArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub action: Option<MembersAction>,
}

#[derive(Debug, Subcommand)]
pub enum MembersAction {
    /// Add a node as a learner (it catches up, but does not vote).
    ///
    /// Start the new node too, before or right after, so that it catches up:
    ///   raftkv server --id ID --listen HOST:PORT --peer-listen ADDR --data-dir DIR --join
    /// - its data dir EMPTY (a wiped or new one);
    /// - with --join (`join = true`): without it the node bootstraps a
    ///   cluster of its own instead of waiting to be added;
    /// - with the same TLS files (`[tls]`, a node certificate signed by the
    ///   cluster's CA) and tokens as the other nodes;
    /// - ADDR is where the other nodes reach its Raft service: its PEER
    ///   address (--peer-listen, default its client port + 200); its
    ///   client address arrives with its first peer handshake.
    ///
    /// Then wait until it has caught up (`raftkv status`: its applied index
    /// near the leader's) and promote it.
    #[command(verbatim_doc_comment)]
    AddLearner { id: u64, addr: String },
    /// Make a learner a voter.
    ///
    /// Refused (FAILED_PRECONDITION, exit code 1) while the learner has not
    /// caught up: the leader has not heard from it within an election
    /// timeout (it is not running, or cannot be reached), it does not hold
    /// the configuration that added it yet, or it is more than 1024
    /// entries behind. The message names its match index and the leader's
    /// last and commit index; retry once it has caught up.
    #[command(verbatim_doc_comment)]
    Promote { id: u64 },
    /// Remove a member (the leader too).
    ///
    /// The removed node learns of its removal, stops taking part and
    /// answers every client call FAILED_PRECONDITION (its `status` says
    /// `removed`); it keeps running until you stop it. To use it again,
    /// wipe its data dir and add it back as a learner.
    #[command(verbatim_doc_comment)]
    Remove { id: u64 },
}

#[derive(Debug, Args)]
pub struct TransferArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// The voter to hand leadership to.
    pub id: u64,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Only this node (`host:port`); default: every node.
    #[arg(long)]
    pub node: Option<String>,
    #[command(subcommand)]
    pub action: Option<SnapshotAction>,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Save a consistent point-in-time copy of the cluster's data to FILE
    /// (streamed from the leader, with a CRC-32C).
    Save {
        /// The backup file to write (FILE.part until complete).
        file: std::path::PathBuf,
    },
    /// Seed the data dir of one node of a new cluster from a backup (run it
    /// for every node, with the same --peers), then start the nodes.
    Restore {
        /// The backup file (its checksum is checked first).
        file: std::path::PathBuf,
        /// The new node's data dir (must not exist or be empty).
        #[arg(long, value_name = "DIR")]
        data_dir: std::path::PathBuf,
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Every voter of the new cluster: `ID=HOST:PORT` pairs, comma
        /// separated, the same for each node (and for `raftkv server`).
        #[arg(long, value_name = "ID=ADDR,...", value_delimiter = ',', value_parser = crate::server_cmd::parse_peer, required = true)]
        peers: Vec<(u64, String)>,
    },
}

pub async fn status(a: StatusArgs) -> Result<(), CliError> {
    let c = a.opts.client()?;
    let nodes = once_per_node(c.status_all().await?);
    if a.opts.json {
        let list: Vec<_> = nodes
            .iter()
            .map(|n| match &n.status {
                Ok(s) => status_json(&n.addr, s),
                Err(e) => error_json(&n.addr, e),
            })
            .collect();
        print_json(&json!({ "nodes": list }));
        return unreachable(&nodes);
    }
    let mut rows = Vec::new();
    let mut down = Vec::new();
    for n in &nodes {
        match &n.status {
            Ok(s) => rows.push(vec![
                s.id.to_string(),
                n.addr.clone(),
                if s.recovering {
                    format!("{} (recovering)", status_role(s))
                } else {
                    status_role(s).to_string()
                },
                s.term.to_string(),
                if s.leader_id == 0 {
                    "-".to_string()
                } else {
                    s.leader_id.to_string()
                },
                s.commit_index.to_string(),
                s.applied_index.to_string(),
                s.last_log_index.to_string(),
                s.snapshot_index.to_string(),
                format!("{:016x}", s.cluster_id),
                format!("{:016x}", s.incarnation),
                s.peer_auth.clone(),
            ]),
            Err(e) => {
                rows.push(vec![
                    "?".into(),
                    n.addr.clone(),
                    "down".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                down.push(format!("{}: {e}", n.addr));
            }
        }
    }
    println!(
        "{}",
        table(
            &[
                "ID",
                "ADDRESS",
                "ROLE",
                "TERM",
                "LEADER",
                "COMMIT",
                "APPLIED",
                "LAST",
                "SNAPSHOT",
                "CLUSTER",
                "INCARNATION",
                "PEER AUTH"
            ],
            &rows
        )
    );
    for d in down {
        eprintln!("unreachable: {d}");
    }
    for n in &nodes {
        if let Some(w) = n.status.as_ref().ok().and_then(crate::output::disk_warning) {
            eprintln!("{}: {w}", n.addr);
        }
    }
    unreachable(&nodes)
}

/// An error when some node did not answer (after the output was printed).
fn unreachable(nodes: &[client::NodeStatus]) -> Result<(), CliError> {
    let down = nodes.iter().filter(|n| n.status.is_err()).count();
    if down == 0 {
        return Ok(());
    }
    Err(CliError::Unreachable(format!(
        "{down} of {} node(s) unreachable",
        nodes.len()
    )))
}

/// Lists each node once. `status_all` asks both the endpoints given and the
/// addresses the members know each other by; where those differ (a host
/// reaching containers through published ports, while they know each other
/// as `node1:7001`), a node answers at one and may be unreachable at the
/// other. A second answer from the same node id is dropped, and so is an
/// unreachable member address whose node answered elsewhere. An unreachable
/// endpoint whose id is unknown stays.
fn once_per_node(nodes: Vec<client::NodeStatus>) -> Vec<client::NodeStatus> {
    use std::collections::{BTreeMap, BTreeSet};
    let answered: BTreeSet<u64> = nodes
        .iter()
        .filter_map(|n| n.status.as_ref().ok().map(|s| s.id))
        .collect();
    let member_ids: BTreeMap<&str, u64> = nodes
        .iter()
        .filter_map(|n| n.status.as_ref().ok())
        .flat_map(|s| s.members.iter().map(|m| (m.addr.as_str(), m.id)))
        .collect();
    let drop: Vec<bool> = {
        let mut listed = BTreeSet::new();
        nodes
            .iter()
            .map(|n| match &n.status {
                Ok(s) => !listed.insert(s.id),
                Err(_) => member_ids
                    .get(n.addr.as_str())
                    .is_some_and(|id| answered.contains(id)),
            })
            .collect()
    };
    nodes
        .into_iter()
        .zip(drop)
        .filter_map(|(n, d)| (!d).then_some(n))
        .collect()
}

fn print_members(r: &MembersResponse, json_out: bool) {
    if json_out {
        print_json(&json!({
            "header": header_json(&r.header),
            "members": r.members.iter().map(member_json).collect::<Vec<_>>(),
            "index": r.index,
        }));
        return;
    }
    let leader = r.header.as_ref().map_or(0, |h| h.leader_id);
    let rows: Vec<Vec<String>> = r
        .members
        .iter()
        .map(|m: &Member| {
            vec![
                m.id.to_string(),
                m.addr.clone(),
                match (m.learner, m.id == leader) {
                    (true, _) => "learner".to_string(),
                    (false, true) => "voter (leader)".to_string(),
                    (false, false) => "voter".to_string(),
                },
                m.peer_addr.clone(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["ID", "ADDRESS", "ROLE", "PEER ADDRESS"], &rows)
    );
    if r.index != 0 {
        eprintln!("(configuration applied at index {})", r.index);
    }
}

pub async fn members(a: MembersArgs) -> Result<(), CliError> {
    let c = a.opts.client()?;
    let r = match a.action {
        None => c.members().await?,
        Some(MembersAction::AddLearner { id, addr }) => {
            if id == 0 {
                return Err(CliError::BadInput("node id 0 is reserved".to_string()));
            }
            c.add_learner(id, &addr).await?
        }
        Some(MembersAction::Promote { id }) => c.promote(id).await?,
        Some(MembersAction::Remove { id }) => c.remove(id).await?,
    };
    print_members(&r, a.opts.json);
    Ok(())
}

pub async fn transfer_leader(a: TransferArgs) -> Result<(), CliError> {
    let c = a.opts.client()?;
    let r = c.transfer_leader(a.id).await?;
    if a.opts.json {
        print_json(&json!({"header": header_json(&r.header), "leader_id": r.leader_id}));
    } else {
        println!("node {} leads", r.leader_id);
    }
    Ok(())
}

pub async fn snapshot(a: SnapshotArgs) -> Result<(), CliError> {
    if a.node.is_some() && a.action.is_some() {
        return Err(CliError::BadInput(
            "--node is for `raftkv snapshot` alone (compaction), not save or restore".into(),
        ));
    }
    match &a.action {
        Some(SnapshotAction::Save { file }) => return crate::backup_cmd::save(&a.opts, file).await,
        Some(SnapshotAction::Restore {
            file,
            data_dir,
            id,
            peers,
        }) => return crate::backup_cmd::restore(file, data_dir, *id, peers, a.opts.json),
        None => {}
    }
    let c = a.opts.client()?;
    let addrs: Vec<String> = match &a.node {
        Some(n) => vec![n.clone()],
        None => c.status_all().await?.into_iter().map(|n| n.addr).collect(),
    };
    let mut results = Vec::new();
    let mut failed = 0;
    for addr in addrs {
        let r = c.snapshot_of(&addr).await;
        if r.is_err() {
            failed += 1;
        }
        results.push((addr, r));
    }
    if a.opts.json {
        let list: Vec<_> = results
            .iter()
            .map(|(addr, r)| match r {
                Ok(s) => json!({
                    "addr": addr,
                    "ok": true,
                    "snapshot_index": s.snapshot_index,
                    "snapshot_term": s.snapshot_term,
                }),
                Err(e) => error_json(addr, e),
            })
            .collect();
        print_json(&json!({ "nodes": list }));
    } else {
        for (addr, r) in &results {
            match r {
                Ok(s) => println!(
                    "{addr}: snapshot at index {} (term {})",
                    s.snapshot_index, s.snapshot_term
                ),
                Err(e) => println!("{addr}: failed: {e}"),
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Failed(format!(
            "{failed} of {} node(s) did not snapshot",
            results.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::pb::StatusResponse;

    fn up(addr: &str, id: u64, members: &[(u64, &str)]) -> client::NodeStatus {
        client::NodeStatus {
            addr: addr.to_string(),
            status: Ok(StatusResponse {
                id,
                members: members
                    .iter()
                    .map(|(id, addr)| Member {
                        id: *id,
                        addr: addr.to_string(),
                        learner: false,
                        ..Member::default()
                    })
                    .collect(),
                ..StatusResponse::default()
            }),
        }
    }

    fn down(addr: &str) -> client::NodeStatus {
        client::NodeStatus {
            addr: addr.to_string(),
            status: Err(client::Error::Unavailable {
                last: "dns error".into(),
            }),
        }
    }

    #[test]
    fn status_lists_each_node_once() {
        let members = [(1, "node1:7001"), (2, "node2:7001"), (3, "node3:7001")];
        // Sorted by address, as status_all returns them: the host's view of
        // containers (published ports answer, the names do not resolve), node
        // 2 answering under both addresses, node 3 down.
        let nodes = vec![
            up("127.0.0.1:17001", 1, &members),
            up("127.0.0.1:17002", 2, &members),
            down("127.0.0.1:17003"),
            down("node1:7001"),
            up("node2:7001", 2, &members),
            down("node3:7001"),
        ];
        let kept: Vec<String> = once_per_node(nodes).into_iter().map(|n| n.addr).collect();
        assert_eq!(
            kept,
            vec![
                "127.0.0.1:17001",
                "127.0.0.1:17002",
                "127.0.0.1:17003",
                "node3:7001"
            ]
        );
    }
}
