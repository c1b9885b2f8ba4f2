//! The start of a node, before its Raft core exists: who it is (the
//! identity in its data dir), whether it bootstraps a new cluster, and
//! whether it lost data it may have acknowledged.
//!
//! # Identity ([`open_identity`])
//!
//! - A data dir with an identity file: refused if the file's node id is not
//!   `--id`, or if `cluster_id` is configured and the file names another
//!   cluster (both values and the fix are in the error). `bootstrap` is
//!   ignored: a node restarts with the flags it was first started with.
//! - A data dir with data but no identity file (made before identities
//!   existed): it gets an identity with cluster id 0 (learned from peers
//!   later), logged.
//! - An empty data dir with `bootstrap`: the node asks every peer
//!   (`Raft.Probe`) and refuses if one already holds a cluster with a log
//!   (then this node's data dir was lost, and bootstrapping would make it a
//!   voter that forgot what it acknowledged); else it writes the identity
//!   with the derived cluster id, and the initial configuration goes into
//!   the WAL when it is opened ([`Opened::bootstrap`]). Unreachable peers do not stop it: the nodes of a new
//!   cluster start in any order.
//! - An empty data dir without `bootstrap`: it joins, with cluster id 0.
//!
//! # Lost data ([`LostData`], [`check_lost_data`])
//!
//! At startup the node compares what its parts remember: a log that ends
//! before the hard state's commit index, or a state machine that applied
//! entries beyond the log's end while opening the WAL cut records off it,
//! means the log lost committed entries; a
//! state machine behind the log's snapshot means the state machine lost
//! its data (it is the snapshot's data: the node refuses to start, naming
//! the fix). A node that joins with an empty data dir is in the first
//! state too (it acknowledged nothing, but it is not caught up). Such a
//! node is *recovering* (`raft::Config::recovering`): no votes, no
//! campaigns, until the leader has caught it up. The state is kept in
//! `<data_dir>/recovering.toml` until then, so a restart during the repair
//! stays recovering.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::raft as pb;

use crate::config::Config;
use crate::error::ServerError;
use crate::identity::{hex, Identity};
use crate::limits;

/// The recovering marker's file name in the data dir.
pub const RECOVERING_FILE: &str = "recovering.toml";

fn identity_error(dir: &Path, reason: String) -> ServerError {
    ServerError::Identity {
        path: Identity::path(dir),
        reason,
    }
}

/// Whether `dir` holds anything of a node (a WAL or state machine file).
fn has_data(dir: &Path) -> bool {
    ["wal", "kv"].iter().any(|sub| {
        std::fs::read_dir(dir.join(sub))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    })
}

/// What [`open_identity`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// This node's identity (written to the data dir).
    pub identity: Identity,
    /// `Some(voters)`: a new data dir that bootstraps a cluster of these
    /// voters; the caller writes the initial configuration into the (empty)
    /// WAL when it opens it. The identity is written first: a crash in
    /// between leaves a node that joins (an initial voter of the others'
    /// configuration, caught up by their leader).
    pub bootstrap: Option<Vec<u64>>,
}

/// Loads, checks or creates this node's identity, and decides whether it
/// bootstraps a cluster. See the module docs.
///
/// # Errors
/// [`ServerError::Identity`] for a mismatched or unreadable identity, or a
/// refused bootstrap; I/O errors.
pub async fn open_identity(config: &Config, dir: &Path) -> Result<Opened, ServerError> {
    let (identity, bootstrap) = open_inner(config, dir).await?;
    Ok(Opened {
        identity,
        bootstrap,
    })
}

async fn open_inner(
    config: &Config,
    dir: &Path,
) -> Result<(Identity, Option<Vec<u64>>), ServerError> {
    let expected = config.expected_cluster_id()?;
    if let Some(id) = Identity::load(dir)? {
        if id.node_id != config.id {
            return Err(identity_error(
                dir,
                format!(
                    "this data dir belongs to node {}, but the node was started with --id {}: \
                     start it with --id {}, or give node {} its own (empty) data dir",
                    id.node_id, config.id, id.node_id, config.id
                ),
            ));
        }
        if let Some(want) = expected {
            if id.cluster_id != 0 && id.cluster_id != want {
                return Err(identity_error(
                    dir,
                    format!(
                        "this data dir belongs to cluster {}, but cluster_id (--cluster-id) is {}: \
                         use the data dir of a node of cluster {}, or fix --cluster-id",
                        hex(id.cluster_id),
                        hex(want),
                        hex(want)
                    ),
                ));
            }
        }
        if config.bootstrap {
            tracing::info!(
                node = config.id,
                "the data dir exists: bootstrap is ignored"
            );
        }
        return Ok((id, None));
    }
    std::fs::create_dir_all(dir).map_err(|e| ServerError::io(dir, e))?;
    if has_data(dir) {
        let id = Identity::create(dir, config.id, expected.unwrap_or(0))?;
        tracing::warn!(
            node = config.id,
            incarnation = %hex(id.incarnation),
            cluster_id = %hex(id.cluster_id),
            "this data dir predates node identities: wrote {} (cluster id learned from peers later)",
            Identity::path(dir).display()
        );
        return Ok((id, None));
    }
    if !config.bootstrap {
        let id = Identity::create(dir, config.id, 0)?;
        tracing::info!(
            node = config.id,
            incarnation = %hex(id.incarnation),
            "new data dir without --bootstrap: joining; waiting for a leader to add this node"
        );
        return Ok((id, None));
    }
    let voters = config.initial_voter_map();
    let cluster_id = Identity::cluster_id_for(&config.cluster_token, &voters);
    if let Some(want) = expected {
        if want != cluster_id {
            return Err(identity_error(
                dir,
                format!(
                    "bootstrapping would make cluster {} (from the cluster token and voters {:?}), \
                     but cluster_id (--cluster-id) is {}: fix --cluster-token, --peers or --cluster-id",
                    hex(cluster_id),
                    voters.keys().collect::<Vec<_>>(),
                    hex(want)
                ),
            ));
        }
    }
    probe_before_bootstrap(config, dir).await?;
    let id = Identity::create(dir, config.id, cluster_id)?;
    tracing::info!(
        node = config.id,
        cluster_id = %hex(cluster_id),
        incarnation = %hex(id.incarnation),
        voters = ?voters.keys().collect::<Vec<_>>(),
        "bootstrapping a new cluster"
    );
    Ok((id, Some(voters.keys().copied().collect())))
}

/// Asks every peer what it holds; refuses the bootstrap if one has a
/// cluster with a log.
async fn probe_before_bootstrap(config: &Config, dir: &Path) -> Result<(), ServerError> {
    let tls = match &config.tls {
        Some(t) => Some(crate::security::client_tls(t)?),
        None => None,
    };
    let peers: Vec<(u64, String)> = config
        .peers
        .iter()
        .filter(|(id, _)| **id != config.id)
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    let wait = Duration::from_millis(limits::BOOTSTRAP_PROBE_WAIT_MS);
    let mut asks = tokio::task::JoinSet::new();
    for (peer, addr) in peers {
        let tls = tls.clone();
        let from = config.id;
        asks.spawn(async move {
            let answer = tokio::time::timeout(wait, async {
                let channel = crate::transport::connect(&addr, tls.as_ref(), peer).await?;
                pb::raft_client::RaftClient::new(channel)
                    .probe(pb::ProbeRequest { from })
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| s.message().to_string())
            })
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
            (peer, addr, answer)
        });
    }
    while let Some(joined) = asks.join_next().await {
        let (peer, addr, answer) =
            joined.map_err(|e| ServerError::Task(format!("bootstrap probe: {e}")))?;
        match answer {
            Ok(p) if p.last_index > 0 || p.term > 0 => {
                return Err(identity_error(
                    dir,
                    format!(
                        "refusing to bootstrap: node {peer} ({addr}) already belongs to cluster {} \
                         (term {}, last index {}); this node's data dir was lost: start it \
                         without --bootstrap to rejoin, see docs/operations.md",
                        hex(p.cluster_id),
                        p.term,
                        p.last_index
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) => tracing::info!(
                node = config.id,
                peer,
                addr,
                error = %e,
                "peer not reachable before bootstrap (it may not be started yet)"
            ),
        }
    }
    Ok(())
}

/// What a node found lost at startup, and how far it must catch up.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LostData {
    /// The node must hold the leader's log at least up to here before it
    /// votes again (`raft::Config::recovering`).
    pub floor: u64,
    /// What was found, for the logs and the operator.
    pub reason: String,
}

impl LostData {
    fn path(dir: &Path) -> PathBuf {
        dir.join(RECOVERING_FILE)
    }

    /// The marker left by an earlier start, if any.
    ///
    /// # Errors
    /// An unreadable or malformed file.
    pub fn load(dir: &Path) -> Result<Option<LostData>, ServerError> {
        let path = Self::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(t) => toml::from_str(&t).map(Some).map_err(|e| {
                ServerError::StateMachine(format!(
                    "{}: {e} (it records that this node is repairing lost data; \
                     do not edit it)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ServerError::io(&path, e)),
        }
    }

    /// Writes the marker durably (temporary file, fsync, rename, dir fsync).
    ///
    /// # Errors
    /// A failed write.
    pub fn save(&self, dir: &Path) -> Result<(), ServerError> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{RECOVERING_FILE}.tmp"));
        let body = toml::to_string(self).map_err(|e| ServerError::StateMachine(e.to_string()))?;
        let text = format!(
            "# raftkv: this node lost data and is being repaired; removed once caught up\n{body}"
        );
        crate::identity::write_durably(dir, &tmp, &path, text.as_bytes())
    }

    /// Removes the marker (the node caught up).
    ///
    /// # Errors
    /// A failed removal.
    pub fn clear(dir: &Path) -> Result<(), ServerError> {
        let path = Self::path(dir);
        match std::fs::remove_file(&path) {
            Ok(()) => std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| ServerError::io(dir, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ServerError::io(&path, e)),
        }
    }
}

/// What the parts of a node remember at startup.
#[derive(Clone, Copy, Debug)]
pub struct Remembered {
    /// The hard state's commit index.
    pub hard_commit: u64,
    /// The log's last index (the snapshot's if the log is empty).
    pub last_index: u64,
    /// The log's snapshot index.
    pub snapshot_index: u64,
    /// Whether the log holds no configuration at all (a node that joins).
    pub blank: bool,
    /// The state machine's durable applied index.
    pub applied: u64,
    /// Whether opening the WAL cut a torn tail or repaired damage.
    pub wal_cut: bool,
}

/// Compares what the node remembers (see the module docs). `Ok(None)`:
/// nothing lost. A state machine behind the snapshot is an error: the node
/// cannot serve, and must be wiped and rejoin.
///
/// Not detected: a WAL that lost whole segment files at its end without a
/// cut record, and whose hard state went with them (the state machine
/// being ahead is then taken for a restored snapshot image).
///
/// # Errors
/// [`ServerError::StateMachine`] naming the indexes and the fix.
pub fn check_lost_data(r: &Remembered, dir: &Path) -> Result<Option<LostData>, ServerError> {
    if r.applied < r.snapshot_index {
        return Err(ServerError::StateMachine(format!(
            "the state machine in {} has applied up to index {}, behind the log's snapshot at \
             index {}: its data was lost and the log no longer holds it. Move this node's data \
             dir away and start it again without --bootstrap (it rejoins and gets a snapshot \
             from the leader), see docs/operations.md \"A node whose log was damaged\"",
            dir.join("kv").display(),
            r.applied,
            r.snapshot_index
        )));
    }
    let mut found = Vec::new();
    let mut floor = 0;
    if r.hard_commit > r.last_index {
        found.push(format!(
            "the log ends at index {} but index {} was committed: entries {}..={} are lost",
            r.last_index,
            r.hard_commit,
            r.last_index + 1,
            r.hard_commit
        ));
        floor = floor.max(r.hard_commit);
    }
    // A state machine ahead of the log is normal right after a snapshot
    // from the leader was restored (the image is at or past the
    // snapshot's index; the entries in between come again). Only when
    // opening the WAL cut records off does it say the log lost entries
    // that were applied, so committed and acknowledged.
    if r.applied > r.last_index && r.wal_cut {
        found.push(format!(
            "the state machine applied up to index {} but the log ends at index {}: \
             entries {}..={} are lost from the log",
            r.applied,
            r.last_index,
            r.last_index + 1,
            r.applied
        ));
        floor = floor.max(r.applied);
    }
    if found.is_empty() {
        if r.blank && r.last_index == 0 {
            return Ok(Some(LostData {
                floor: 0,
                reason: "joining with an empty data dir".into(),
            }));
        }
        return Ok(None);
    }
    if r.wal_cut {
        found.push("opening the WAL cut records off its end".into());
    }
    Ok(Some(LostData {
        floor,
        reason: found.join("; "),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rem() -> Remembered {
        Remembered {
            hard_commit: 10,
            last_index: 12,
            snapshot_index: 4,
            blank: false,
            applied: 9,
            wal_cut: false,
        }
    }

    #[test]
    fn nothing_lost_is_none() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(check_lost_data(&rem(), d.path()).unwrap(), None);
    }

    #[test]
    fn a_log_ending_before_the_commit_index_is_lost_data() {
        let d = tempfile::tempdir().unwrap();
        let r = Remembered {
            last_index: 6,
            wal_cut: true,
            ..rem()
        };
        let l = check_lost_data(&r, d.path()).unwrap().unwrap();
        assert_eq!(l.floor, 10);
        assert!(l.reason.contains("entries 7..=10"), "{}", l.reason);
        assert!(l.reason.contains("WAL cut"), "{}", l.reason);
    }

    #[test]
    fn a_state_machine_ahead_of_the_log_is_lost_data() {
        let d = tempfile::tempdir().unwrap();
        let r = Remembered {
            hard_commit: 5,
            last_index: 6,
            applied: 9,
            wal_cut: true,
            ..rem()
        };
        let l = check_lost_data(&r, d.path()).unwrap().unwrap();
        assert_eq!(l.floor, 9);
        // Without a cut: a restored snapshot image ahead of the log.
        let r = Remembered {
            wal_cut: false,
            ..r
        };
        assert_eq!(check_lost_data(&r, d.path()).unwrap(), None);
    }

    #[test]
    fn a_state_machine_behind_the_snapshot_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let r = Remembered {
            applied: 2,
            ..rem()
        };
        let e = check_lost_data(&r, d.path()).unwrap_err().to_string();
        assert!(e.contains("index 2") && e.contains("index 4"), "{e}");
        assert!(e.contains("without --bootstrap"), "{e}");
    }

    #[test]
    fn a_blank_node_is_recovering_from_zero() {
        let d = tempfile::tempdir().unwrap();
        let r = Remembered {
            hard_commit: 0,
            last_index: 0,
            snapshot_index: 0,
            blank: true,
            applied: 0,
            wal_cut: false,
        };
        assert_eq!(check_lost_data(&r, d.path()).unwrap().unwrap().floor, 0);
    }

    #[test]
    fn the_marker_round_trips_and_clears() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(LostData::load(d.path()).unwrap(), None);
        let l = LostData {
            floor: 7,
            reason: "x".into(),
        };
        l.save(d.path()).unwrap();
        assert_eq!(LostData::load(d.path()).unwrap(), Some(l));
        LostData::clear(d.path()).unwrap();
        assert_eq!(LostData::load(d.path()).unwrap(), None);
        LostData::clear(d.path()).unwrap();
    }
}
