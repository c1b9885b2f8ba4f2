//! Network faults: kernel-level packet drops between nodes with `nft`.
//!
//! # Addresses and who sent a packet
//!
//! Node `id` listens on `127.0.0.(10+id)` (all of 127.0.0.0/8 is loopback on
//! Linux, so no address needs adding). Its *outgoing* connections to peers
//! leave from 127.0.0.1, though (the server does not bind a source
//! address), so the source address cannot tell which node sent a packet.
//! Instead each node runs as its own uid (`node_uid_base + id`): the first
//! packet of a connection a node opens is matched by `meta skuid` and the
//! connection is tagged with `ct mark = id`. A packet then belongs to the
//! connection between the initiator (its ct mark) and the node whose
//! listening address is one end of the packet:
//!
//! | connection | direction of packet | matched by |
//! |---|---|---|
//! | opened by X to Y | X → Y | `ct mark X ip daddr addr(Y)` |
//! | opened by Y to X | X → Y (a reply) | `ct mark Y ip saddr addr(X)` |
//!
//! so dropping every packet from X to Y takes exactly those two rules.
//! Connections of the chaos clients (run as root) carry no mark and are
//! never dropped: partitions are between nodes, as in Jepsen.
//!
//! # The table
//!
//! One table, `inet chaos`, created at the start of a run and deleted at its
//! end (also on panic or Ctrl-C via [`Firewall`]'s `Drop`):
//!
//! ```text
//! table inet chaos {
//!   chain output {                        # base chain on the output hook
//!     type filter hook output priority 0; policy accept;
//!     ct state new meta skuid 61001 ct mark set 1
//!     ...                                 # one per node
//!     jump cuts
//!   }
//!   chain cuts {                          # flushed and refilled per fault
//!     ct mark 1 ip daddr 127.0.0.12 drop  # 1 -> 2, connections 1 opened
//!     ct mark 2 ip saddr 127.0.0.11 drop  # 1 -> 2, replies on 2's connections
//!   }
//! }
//! ```
//!
//! On loopback every packet passes the output hook once, so one hook sees
//! all traffic. Each change is one `nft -f -` transaction (atomic).

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::limits;

/// The nft table's name (family `inet`).
pub const TABLE: &str = "chaos";

/// The address node `id` listens on: 127.0.0.(10+id).
pub fn node_ip(id: u64) -> Ipv4Addr {
    // ids are bounded by `nodes_max`, so 10 + id fits in a byte.
    Ipv4Addr::new(127, 0, 0, (10 + id.min(limits::nodes_max)) as u8)
}

/// The uid node `id` runs as when the runner is root.
pub fn node_uid(id: u64) -> u32 {
    limits::node_uid_base + id.min(limits::nodes_max) as u32
}

/// A set of directed cuts: `(from, to)` drops every packet from node `from`
/// to node `to`. A symmetric partition holds both directions.
pub type Cuts = BTreeSet<(u64, u64)>;

/// Cuts in both directions between every node of `a` and every node of `b`.
pub fn cut_between(a: &[u64], b: &[u64]) -> Cuts {
    let mut cuts = Cuts::new();
    for &x in a {
        for &y in b {
            if x != y {
                cuts.insert((x, y));
                cuts.insert((y, x));
            }
        }
    }
    cuts
}

/// The script that (re)creates the table for nodes `ids`, with no cuts.
/// It deletes a table left by an earlier run that died, in the same
/// transaction.
pub fn setup_script(ids: &[u64]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "add table inet {TABLE}\ndelete table inet {TABLE}\n"
    ));
    s.push_str(&format!("table inet {TABLE} {{\n"));
    s.push_str("  chain cuts {\n  }\n");
    s.push_str("  chain output {\n");
    s.push_str("    type filter hook output priority 0; policy accept;\n");
    for &id in ids {
        s.push_str(&format!(
            "    ct state new meta skuid {} ct mark set {id}\n",
            node_uid(id)
        ));
    }
    s.push_str("    jump cuts\n  }\n}\n");
    s
}

/// The script that replaces the current cuts with `cuts`.
pub fn cuts_script(cuts: &Cuts) -> String {
    let mut s = format!("flush chain inet {TABLE} cuts\n");
    for &(from, to) in cuts {
        s.push_str(&format!(
            "add rule inet {TABLE} cuts ct mark {from} ip daddr {} drop\n",
            node_ip(to)
        ));
        s.push_str(&format!(
            "add rule inet {TABLE} cuts ct mark {to} ip saddr {} drop\n",
            node_ip(from)
        ));
    }
    s
}

/// The script that removes the table.
pub fn teardown_script() -> String {
    format!("delete table inet {TABLE}\n")
}

/// Runs `nft -f -` with `script` on stdin.
fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Nft(format!("cannot run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| Error::Nft(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Nft(format!("waiting for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Nft(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether this process can make partitions, and if not, why.
pub fn capability() -> std::result::Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err("not running as root (partitions need nft and per-node uids)".into());
    }
    match Command::new("nft").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("`nft --version` failed: {}", o.status)),
        Err(e) => Err(format!("no nft binary ({e}); install the nftables package")),
    }
}

/// The run's firewall table. Partitions are applied with
/// [`Firewall::set_cuts`]; dropping the value deletes the table.
#[derive(Debug)]
pub struct Firewall {
    cuts: Cuts,
    installed: bool,
}

impl Firewall {
    /// Creates the table for nodes `ids`.
    ///
    /// # Errors
    /// [`Error::Nft`] when nft refuses the table.
    pub fn install(ids: &[u64]) -> Result<Firewall> {
        nft(&setup_script(ids))?;
        Ok(Firewall {
            cuts: Cuts::new(),
            installed: true,
        })
    }

    /// Replaces the cuts in force.
    ///
    /// # Errors
    /// [`Error::Nft`] when nft refuses the rules.
    pub fn set_cuts(&mut self, cuts: Cuts) -> Result<()> {
        if cuts == self.cuts {
            return Ok(());
        }
        nft(&cuts_script(&cuts))?;
        self.cuts = cuts;
        Ok(())
    }

    /// Removes every cut.
    ///
    /// # Errors
    /// As [`set_cuts`](Firewall::set_cuts).
    pub fn heal(&mut self) -> Result<()> {
        self.set_cuts(Cuts::new())
    }

    /// The cuts in force.
    pub fn cuts(&self) -> &Cuts {
        &self.cuts
    }

    /// Deletes the table now.
    pub fn remove(&mut self) {
        if self.installed {
            if let Err(e) = nft(&teardown_script()) {
                eprintln!("chaos: could not delete nft table inet {TABLE}: {e}");
            }
            self.installed = false;
        }
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Deletes a table left behind by a killed run (Ctrl-C twice, SIGKILL);
/// quiet when there is none.
pub fn remove_stale_table() {
    let _ = nft(&format!("add table inet {TABLE}\n{}", teardown_script()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_uids_per_node() {
        assert_eq!(node_ip(1).to_string(), "127.0.0.11");
        assert_eq!(node_ip(5).to_string(), "127.0.0.15");
        assert_eq!(node_uid(3), 61_003);
    }

    #[test]
    fn setup_marks_every_node_and_jumps_to_cuts() {
        let s = setup_script(&[1, 2, 3]);
        assert!(s.starts_with("add table inet chaos\ndelete table inet chaos\n"));
        for id in 1..=3u64 {
            let line = format!("ct state new meta skuid {} ct mark set {id}\n", 61_000 + id);
            assert!(s.contains(&line), "missing {line} in {s}");
        }
        assert!(s.contains("type filter hook output priority 0; policy accept;"));
        // The jump comes after the marks, so a new connection is marked
        // before the cuts look at it.
        let jump = s.find("jump cuts").unwrap_or(0);
        let last_mark = s.find("ct mark set 3").unwrap_or(usize::MAX);
        assert!(jump > last_mark);
    }

    #[test]
    fn one_way_cut_is_two_rules_for_one_direction() {
        let cuts: Cuts = [(1, 2)].into_iter().collect();
        let s = cuts_script(&cuts);
        assert_eq!(
            s,
            "flush chain inet chaos cuts\n\
             add rule inet chaos cuts ct mark 1 ip daddr 127.0.0.12 drop\n\
             add rule inet chaos cuts ct mark 2 ip saddr 127.0.0.11 drop\n"
        );
    }

    #[test]
    fn symmetric_cut_covers_both_directions_and_heal_flushes() {
        let cuts = cut_between(&[1], &[2, 3]);
        assert_eq!(cuts.len(), 4);
        assert!(cuts.contains(&(1, 2)) && cuts.contains(&(2, 1)));
        assert!(cuts.contains(&(1, 3)) && cuts.contains(&(3, 1)));
        assert!(!cuts.contains(&(2, 3)));
        let s = cuts_script(&cuts);
        assert_eq!(s.lines().count(), 1 + 2 * 4);
        assert!(s.contains("ct mark 3 ip daddr 127.0.0.11 drop"));
        assert!(s.contains("ct mark 1 ip saddr 127.0.0.13 drop"));
        assert_eq!(cuts_script(&Cuts::new()), "flush chain inet chaos cuts\n");
        assert_eq!(teardown_script(), "delete table inet chaos\n");
    }
}
