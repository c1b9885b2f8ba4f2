//! How responses are shown: text for people, JSON (`--json`) for scripts.
//!
//! JSON shapes (every value a JSON object printed on one line):
//!
//! - `header`: `{"node_id", "term", "applied_index", "leader_id"}`
//! - a key: `{"key", "value", "create_index", "mod_index", "version"}`, key
//!   and value in base64 (standard alphabet, padded; as etcdctl), whatever
//!   `--encoding` says: every byte string survives the trip
//! - `put`: `{"header", "index", "prev_kv": key|null}`
//! - `get`: `{"header", "kv": key|null}`
//! - `del`: `{"header", "index", "deleted"}`
//! - `append`: `{"header", "index", "version", "value_len"}`
//! - `scan`: `{"header", "kvs": [key...], "more"}`
//! - `cas`: `{"succeeded": true, "header", "index"}` or
//!   `{"succeeded": false, "current": key|null}`
//! - `status`: `{"nodes": [{"addr", "ok": true, "id", "role", "term",
//!   "leader_id", "leader_addr", "commit_index", "applied_index",
//!   "last_log_index", "snapshot_index", "cluster_id", "incarnation" (16
//!   hex digits each), "recovering", "peer_auth", "members": [member...],
//!   "disk_free_bytes", "disk_reserve_bytes"} |
//!   {"addr", "ok": false, "error"}]}`
//! - member: `{"id", "addr", "peer_addr", "role": "voter"|"learner"}` (`addr`:
//!   the client address, `peer_addr`: the Raft service's)
//! - `members`: `{"header", "members": [member...], "index"}`
//! - `transfer-leader`: `{"header", "leader_id"}`
//! - `snapshot`: `{"nodes": [{"addr", "ok": true, "snapshot_index",
//!   "snapshot_term"} | {"addr", "ok": false, "error"}]}`
//! - `snapshot save`: `{"file", "index", "term", "chunks", "bytes",
//!   "crc32c"}`; `snapshot restore`: `{"data_dir", "id", "index", "term",
//!   "crc32c"}`
//! - `endpoint health`: `{"endpoints": [{"addr", "healthy": true, "took_ms",
//!   "leader_id"} | {"addr", "healthy": false, "took_ms", "error"}]}`

use client::pb::{KeyValue, Member, ResponseHeader, Role, StatusResponse};
use serde_json::{json, Value};

use crate::encoding::base64;

pub fn header_json(h: &Option<ResponseHeader>) -> Value {
    match h {
        None => Value::Null,
        Some(h) => json!({
            "node_id": h.node_id,
            "term": h.term,
            "applied_index": h.applied_index,
            "leader_id": h.leader_id,
        }),
    }
}

pub fn kv_json(kv: &KeyValue) -> Value {
    json!({
        "key": base64(&kv.key),
        "value": base64(&kv.value),
        "create_index": kv.create_index,
        "mod_index": kv.mod_index,
        "version": kv.version,
    })
}

pub fn opt_kv_json(kv: &Option<KeyValue>) -> Value {
    kv.as_ref().map_or(Value::Null, kv_json)
}

pub fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Follower) => "follower",
        Ok(Role::PreCandidate) => "pre-candidate",
        Ok(Role::Candidate) => "candidate",
        Ok(Role::Leader) => "leader",
        Ok(Role::Learner) => "learner",
        Err(_) => "unknown",
    }
}

/// A node's role as `status` shows it: "removed" for a node removed from
/// the cluster, else its Raft role.
pub fn status_role(s: &StatusResponse) -> &'static str {
    if s.removed {
        "removed"
    } else {
        role_name(s.role)
    }
}

pub fn member_json(m: &Member) -> Value {
    json!({
        "id": m.id,
        "addr": m.addr,
        "peer_addr": m.peer_addr,
        "role": if m.learner { "learner" } else { "voter" },
    })
}

pub fn status_json(addr: &str, s: &StatusResponse) -> Value {
    json!({
        "addr": addr,
        "ok": true,
        "id": s.id,
        "role": status_role(s),
        "removed": s.removed,
        "term": s.term,
        "leader_id": s.leader_id,
        "leader_addr": s.leader_addr,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "last_log_index": s.last_log_index,
        "snapshot_index": s.snapshot_index,
        "cluster_id": format!("{:016x}", s.cluster_id),
        "incarnation": format!("{:016x}", s.incarnation),
        "recovering": s.recovering,
        "peer_auth": s.peer_auth,
        "members": s.members.iter().map(member_json).collect::<Vec<_>>(),
        "disk_free_bytes": s.disk_free_bytes,
        "disk_reserve_bytes": s.disk_reserve_bytes,
    })
}

/// A warning when a node's disk is below its reserve (it refuses writes as
/// leader), else `None`.
pub fn disk_warning(s: &StatusResponse) -> Option<String> {
    (s.disk_reserve_bytes > 0 && s.disk_free_bytes < s.disk_reserve_bytes).then(|| {
        format!(
            "disk nearly full: {} bytes free, below the reserve of {} (writes are refused \
             while it leads)",
            s.disk_free_bytes, s.disk_reserve_bytes
        )
    })
}

pub fn error_json(addr: &str, e: &dyn std::fmt::Display) -> Value {
    json!({ "addr": addr, "ok": false, "error": e.to_string() })
}

/// Prints a JSON document on one line.
pub fn print_json(v: &Value) {
    println!("{v}");
}

/// A fixed-width table: a header row, then rows, columns padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv() -> KeyValue {
        KeyValue {
            key: "k".into(),
            value: "v".into(),
            create_index: 3,
            mod_index: 5,
            version: 2,
        }
    }

    #[test]
    fn json_shapes_are_stable() {
        assert_eq!(
            kv_json(&kv()),
            json!({"key":"aw==","value":"dg==","create_index":3,"mod_index":5,"version":2})
        );
        assert_eq!(opt_kv_json(&None), Value::Null);
        let h = Some(ResponseHeader {
            node_id: 1,
            term: 2,
            applied_index: 3,
            leader_id: 1,
        });
        assert_eq!(
            header_json(&h),
            json!({"node_id":1,"term":2,"applied_index":3,"leader_id":1})
        );
        let s = StatusResponse {
            id: 2,
            addr: "127.0.0.1:7002".into(),
            role: Role::Leader as i32,
            term: 4,
            leader_id: 2,
            leader_addr: "127.0.0.1:7002".into(),
            commit_index: 10,
            applied_index: 9,
            last_log_index: 11,
            snapshot_index: 0,
            cluster_id: 0xab,
            recovering: true,
            members: vec![Member {
                id: 4,
                addr: "h:4".into(),
                learner: true,
                peer_addr: "h:204".into(),
            }],
            ..StatusResponse::default()
        };
        let j = status_json("127.0.0.1:7002", &s);
        assert_eq!(j["role"], "leader");
        assert_eq!(j["ok"], true);
        assert_eq!(j["commit_index"], 10);
        assert_eq!(j["cluster_id"], "00000000000000ab");
        assert_eq!(j["recovering"], true);
        assert_eq!(
            j["members"][0],
            json!({"id":4,"addr":"h:4","peer_addr":"h:204","role":"learner"})
        );
        let e = error_json("h:1", &"refused");
        assert_eq!(e, json!({"addr":"h:1","ok":false,"error":"refused"}));
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "ROLE"],
            &[
                vec!["1".into(), "leader".into()],
                vec!["10".into(), "follower".into()],
            ],
        );
        assert_eq!(t, "ID  ROLE\n1   leader\n10  follower");
    }
}
