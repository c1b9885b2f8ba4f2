//! `put`, `get`, `del`, `append`, `scan`, `cas`: reads and writes of keys.

use clap::Args;
use serde_json::json;

use client::{ReadMode, Scan};

use crate::exit::CliError;
use crate::output::{header_json, kv_json, opt_kv_json, print_json, table, text};
use crate::ClientOpts;

#[derive(Debug, Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Also print the previous value.
    #[arg(long)]
    pub prev: bool,
    pub key: String,
    pub value: String,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Read from any node's local state (fast, may be stale) instead of a
    /// linearizable read through the leader.
    #[arg(long)]
    pub serializable: bool,
    /// Print the value only, without metadata.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    pub key: String,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Delete every key starting with KEY.
    #[arg(long)]
    pub prefix: bool,
    pub key: String,
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    pub key: String,
    pub value: String,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Keys starting with P.
    #[arg(long, value_name = "P", conflicts_with_all = ["from", "to"])]
    pub prefix: Option<String>,
    /// The first key (inclusive).
    #[arg(long, value_name = "A")]
    pub from: Option<String>,
    /// The end key (exclusive).
    #[arg(long, value_name = "B")]
    pub to: Option<String>,
    /// At most N keys (0: the server's maximum).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Keys only, without values.
    #[arg(long)]
    pub keys_only: bool,
    /// Read from any node's local state.
    #[arg(long)]
    pub serializable: bool,
}

#[derive(Debug, Args)]
pub struct CasArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Succeed only if KEY does not exist (then give KEY NEW only).
    #[arg(long, conflicts_with = "new")]
    pub expect_absent: bool,
    pub key: String,
    /// The value KEY must have (omit with --expect-absent).
    pub expected: Option<String>,
    /// The new value.
    pub new: Option<String>,
}

impl CasArgs {
    /// With `--expect-absent` the second positional is the new value.
    pub fn new_or_expected(&self) -> Option<&str> {
        if self.expect_absent {
            self.expected.as_deref().or(self.new.as_deref())
        } else {
            self.new.as_deref()
        }
    }
}

fn mode(serializable: bool) -> ReadMode {
    if serializable {
        ReadMode::Serializable
    } else {
        ReadMode::Linearizable
    }
}

pub async fn put(a: PutArgs) -> Result<(), CliError> {
    let c = a.opts.client()?;
    let r = c
        .put_request(client::pb::PutRequest {
            key: a.key.clone().into(),
            value: a.value.into(),
            prev_kv: a.prev,
            ..Default::default()
        })
        .await?;
    if a.opts.json {
        print_json(&json!({
            "header": header_json(&r.header),
            "index": r.index,
            "prev_kv": opt_kv_json(&r.prev_kv),
        }));
    } else {
        match (a.prev, &r.prev_kv) {
            (true, Some(p)) => {
                println!("OK (index {}, previous value: {})", r.index, text(&p.value))
            }
            (true, None) => println!("OK (index {}, no previous value)", r.index),
            _ => println!("OK (index {})", r.index),
        }
    }
    Ok(())
}

pub async fn get(a: GetArgs) -> Result<(), CliError> {
    let c = a.opts.client()?;
    let r = c.get_with(a.key.clone(), mode(a.serializable)).await?;
    if a.opts.json {
        print_json(&json!({"header": header_json(&r.header), "kv": opt_kv_json(&r.kv)}));
    }
    let Some(kv) = r.kv else {
        return Err(CliError::NotFound(a.key));
    };
    if !a.opts.json {
        if a.quiet {
            println!("{}", text(&kv.value));
        } else {
            println!("{}", text(&kv.value));
            let node = r.header.map(|h| h.node_id).unwrap_or(0);
            eprintln!(
                "(version {}, created at {}, modified at {}; read from node {node}{})",
                kv.version,
                kv.create_index,
                kv.mod_index,
                if a.serializable { ", serializable" } else { "" }
            );
        }
    }
    Ok(())
}

pub async fn del(a: DelArgs) -> Result<(), CliError> {
    let c = a.opts.client()?;
    let r = if a.prefix {
        c.delete_prefix(a.key).await?
    } else {
        c.delete(a.key).await?
    };
    if a.opts.json {
        print_json(&json!({
            "header": header_json(&r.header),
            "index": r.index,
            "deleted": r.deleted,
        }));
    } else {
        println!("deleted {} key(s) (index {})", r.deleted, r.index);
    }
    Ok(())
}

pub async fn append(a: AppendArgs) -> Result<(), CliError> {
    let c = a.opts.client()?;
    let r = c.append(a.key, a.value).await?;
    if a.opts.json {
        print_json(&json!({
            "header": header_json(&r.header),
            "index": r.index,
            "version": r.version,
            "value_len": r.value_len,
        }));
    } else {
        println!(
            "OK (index {}, version {}, {} bytes)",
            r.index, r.version, r.value_len
        );
    }
    Ok(())
}

/// The scan a `scan` command line asks for.
pub fn scan_of(a: &ScanArgs) -> Scan {
    let scan = match (&a.prefix, &a.from, &a.to) {
        (Some(p), _, _) => Scan::prefix(p.clone()),
        (None, from, to) => Scan::range(
            from.clone().unwrap_or_default(),
            to.clone().unwrap_or_default(),
        ),
    };
    let scan = scan.limit(a.limit).mode(mode(a.serializable));
    if a.keys_only {
        scan.keys_only()
    } else {
        scan
    }
}

pub async fn scan(a: ScanArgs) -> Result<(), CliError> {
    let c = a.opts.client()?;
    let r = c.scan(scan_of(&a)).await?;
    if a.opts.json {
        print_json(&json!({
            "header": header_json(&r.header),
            "kvs": r.kvs.iter().map(kv_json).collect::<Vec<_>>(),
            "more": r.more,
        }));
        return Ok(());
    }
    if a.keys_only {
        for kv in &r.kvs {
            println!("{}", text(&kv.key));
        }
    } else {
        let rows: Vec<Vec<String>> = r
            .kvs
            .iter()
            .map(|kv| vec![text(&kv.key), kv.version.to_string(), text(&kv.value)])
            .collect();
        if !rows.is_empty() {
            println!("{}", table(&["KEY", "VERSION", "VALUE"], &rows));
        }
    }
    eprintln!(
        "({} key(s){})",
        r.kvs.len(),
        if r.more {
            "; more match: raise --limit or scan from after the last key"
        } else {
            ""
        }
    );
    Ok(())
}

pub async fn cas(a: CasArgs) -> Result<(), CliError> {
    let (expected, new) = match (a.expect_absent, &a.expected, &a.new) {
        (true, Some(new), None) => (None, new.clone()),
        (false, Some(exp), Some(new)) => (Some(exp.clone()), new.clone()),
        (true, _, _) => {
            return Err(CliError::BadInput(
                "with --expect-absent give KEY NEW only".to_string(),
            ))
        }
        (false, _, _) => {
            return Err(CliError::BadInput(
                "give KEY EXPECTED NEW (or KEY NEW with --expect-absent)".to_string(),
            ))
        }
    };
    let c = a.opts.client()?;
    match c.cas(a.key, expected.map(Into::into), new).await {
        Ok(r) => {
            if a.opts.json {
                print_json(&json!({
                    "succeeded": true,
                    "header": header_json(&r.header),
                    "index": r.index,
                }));
            } else {
                println!("OK (index {})", r.index);
            }
            Ok(())
        }
        Err(client::Error::CasFailed { current }) => {
            if a.opts.json {
                print_json(&json!({"succeeded": false, "current": opt_kv_json(&current)}));
            }
            Err(CliError::CasFailed(match current {
                None => "the key does not exist".to_string(),
                Some(kv) => format!("the current value is {:?}", text(&kv.value)),
            }))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn scan_args(args: &[&str]) -> ScanArgs {
        match crate::Cli::try_parse_from(["raftkv", "scan"].iter().chain(args.iter())) {
            Ok(crate::Cli {
                command: crate::Command::Scan(s),
            }) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scan_flags_become_requests() {
        let s = scan_of(&scan_args(&["--prefix", "user/", "--keys-only"]));
        assert!(s.request().prefix && s.request().keys_only);
        assert_eq!(&s.request().start[..], b"user/");
        assert_eq!(s.request().limit, 100);
        let s = scan_of(&scan_args(&[
            "--from",
            "a",
            "--to",
            "m",
            "--limit",
            "0",
            "--serializable",
        ]));
        assert!(!s.request().prefix && s.request().serializable);
        assert_eq!(
            (&s.request().start[..], &s.request().end[..]),
            (&b"a"[..], &b"m"[..])
        );
        assert_eq!(s.request().limit, 0);
        let s = scan_of(&scan_args(&[]));
        assert!(s.request().start.is_empty() && s.request().end.is_empty());
    }
}
