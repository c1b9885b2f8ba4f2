//! `put`, `get`, `del`, `append`, `scan`, `cas`: reads and writes of keys.
//!
//! Keys and values are bytes: see [`crate::encoding`] for `--encoding`,
//! values from files or standard input, and how they are printed.

use std::ffi::OsString;
use std::io::Write;

use clap::Args;
use serde_json::json;

use client::{ReadMode, Scan};

use crate::encoding::{Encoding, EncodingOpts, ValueArg};
use crate::exit::CliError;
use crate::output::{header_json, kv_json, opt_kv_json, print_json, table};
use crate::ClientOpts;

#[derive(Debug, Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(flatten)]
    pub enc: EncodingOpts,
    /// Also print the previous value.
    #[arg(long)]
    pub prev: bool,
    pub key: OsString,
    #[command(flatten)]
    pub value: ValueArg,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(flatten)]
    pub enc: EncodingOpts,
    /// Read from any node's local state (fast, may be stale) instead of a
    /// linearizable read through the leader.
    #[arg(long)]
    pub serializable: bool,
    /// Print the value only, without metadata.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Write the value's exact bytes to stdout, without a newline or
    /// metadata (for `> FILE`); --encoding applies to the key only.
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,
    pub key: OsString,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(flatten)]
    pub enc: EncodingOpts,
    /// Delete every key starting with KEY.
    #[arg(long)]
    pub prefix: bool,
    pub key: OsString,
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(flatten)]
    pub enc: EncodingOpts,
    pub key: OsString,
    #[command(flatten)]
    pub value: ValueArg,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(flatten)]
    pub enc: EncodingOpts,
    /// Keys starting with P.
    #[arg(long, value_name = "P", conflicts_with_all = ["from", "to"])]
    pub prefix: Option<OsString>,
    /// The first key (inclusive).
    #[arg(long, value_name = "A")]
    pub from: Option<OsString>,
    /// The end key (exclusive).
    #[arg(long, value_name = "B")]
    pub to: Option<OsString>,
    /// At most N keys, read in as many pages as needed (0: one page, as
    /// many keys as one response of the node holds).
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
    #[command(flatten)]
    pub enc: EncodingOpts,
    /// Succeed only if KEY does not exist (then give KEY NEW only).
    #[arg(long, conflicts_with = "new")]
    pub expect_absent: bool,
    pub key: OsString,
    /// The value KEY must have (omit with --expect-absent).
    pub expected: Option<OsString>,
    /// The new value.
    pub new: Option<OsString>,
}

impl CasArgs {
    /// With `--expect-absent` the second positional is the new value.
    pub fn new_or_expected(&self) -> Option<&OsString> {
        if self.expect_absent {
            self.expected.as_ref().or(self.new.as_ref())
        } else {
            self.new.as_ref()
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

/// A command-line key's bytes in encoding `e`.
fn key(e: Encoding, k: &OsString) -> Result<Vec<u8>, CliError> {
    e.decode("key", k)
}

pub async fn put(a: PutArgs) -> Result<(), CliError> {
    let e = a.enc.encoding;
    let k = key(e, &a.key)?;
    let value = a.value.bytes(e)?;
    let c = a.opts.client()?;
    let r = c
        .put_request(client::pb::PutRequest {
            key: k.into(),
            value: value.into(),
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
                println!(
                    "OK (index {}, previous value: {})",
                    r.index,
                    e.encode(&p.value)
                )
            }
            (true, None) => println!("OK (index {}, no previous value)", r.index),
            _ => println!("OK (index {})", r.index),
        }
    }
    Ok(())
}

pub async fn get(a: GetArgs) -> Result<(), CliError> {
    let e = a.enc.encoding;
    let k = key(e, &a.key)?;
    let c = a.opts.client()?;
    let r = c.get_with(k, mode(a.serializable)).await?;
    if a.opts.json {
        print_json(&json!({"header": header_json(&r.header), "kv": opt_kv_json(&r.kv)}));
    }
    let Some(kv) = r.kv else {
        return Err(CliError::NotFound(e.encode(&key(e, &a.key)?)));
    };
    if a.opts.json {
        return Ok(());
    }
    if a.raw {
        let mut out = std::io::stdout().lock();
        out.write_all(&kv.value)?;
        out.flush()?;
        return Ok(());
    }
    println!("{}", e.encode(&kv.value));
    if !a.quiet {
        let node = r.header.map(|h| h.node_id).unwrap_or(0);
        eprintln!(
            "(version {}, created at {}, modified at {}; read from node {node}{})",
            kv.version,
            kv.create_index,
            kv.mod_index,
            if a.serializable { ", serializable" } else { "" }
        );
    }
    Ok(())
}

pub async fn del(a: DelArgs) -> Result<(), CliError> {
    let k = key(a.enc.encoding, &a.key)?;
    let c = a.opts.client()?;
    let r = if a.prefix {
        c.delete_prefix(k).await?
    } else {
        c.delete(k).await?
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
    let e = a.enc.encoding;
    let k = key(e, &a.key)?;
    let value = a.value.bytes(e)?;
    let c = a.opts.client()?;
    let r = c.append(k, value).await?;
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
///
/// # Errors
/// A key that is not in the `--encoding`.
pub fn scan_of(a: &ScanArgs) -> Result<Scan, CliError> {
    let e = a.enc.encoding;
    let opt = |k: &Option<OsString>| -> Result<Vec<u8>, CliError> {
        k.as_ref().map_or(Ok(Vec::new()), |k| key(e, k))
    };
    let scan = match &a.prefix {
        Some(p) => Scan::prefix(key(e, p)?),
        None => Scan::range(opt(&a.from)?, opt(&a.to)?),
    };
    let scan = scan.limit(a.limit).mode(mode(a.serializable));
    Ok(if a.keys_only { scan.keys_only() } else { scan })
}

pub async fn scan(a: ScanArgs) -> Result<(), CliError> {
    let e = a.enc.encoding;
    let request = scan_of(&a)?;
    let c = a.opts.client()?;
    let mut r = c.scan(request.clone()).await?;
    // A node ends a page at its response size limit too: read on until
    // --limit keys (0: one page).
    let want = a.limit as usize;
    while r.more && r.kvs.len() < want {
        let Some(last) = r.kvs.last() else { break };
        let rest = request
            .resume_after(&last.key)
            .limit((want - r.kvs.len()).min(u32::MAX as usize) as u32);
        let page = c.scan(rest).await?;
        r.kvs.extend(page.kvs);
        r.more = page.more;
        r.header = page.header;
    }
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
            println!("{}", e.encode(&kv.key));
        }
    } else {
        let rows: Vec<Vec<String>> = r
            .kvs
            .iter()
            .map(|kv| {
                vec![
                    e.encode(&kv.key),
                    kv.version.to_string(),
                    e.encode(&kv.value),
                ]
            })
            .collect();
        if !rows.is_empty() {
            println!("{}", table(&["KEY", "VERSION", "VALUE"], &rows));
        }
    }
    eprintln!(
        "({} key(s){})",
        r.kvs.len(),
        if r.more {
            "; more match: raise --limit or scan --from after the last key"
        } else {
            ""
        }
    );
    Ok(())
}

pub async fn cas(a: CasArgs) -> Result<(), CliError> {
    let e = a.enc.encoding;
    let (expected, new) = match (a.expect_absent, &a.expected, &a.new) {
        (true, Some(new), None) => (None, e.decode("new value", new)?),
        (false, Some(exp), Some(new)) => (
            Some(e.decode("expected value", exp)?),
            e.decode("new value", new)?,
        ),
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
    let k = key(e, &a.key)?;
    let c = a.opts.client()?;
    match c.cas(k, expected.map(Into::into), new).await {
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
                Some(kv) => format!("the current value is \"{}\"", e.encode(&kv.value)),
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

    fn scan_req(args: &[&str]) -> Scan {
        match scan_of(&scan_args(args)) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn scan_flags_become_requests() {
        let s = scan_req(&["--prefix", "user/", "--keys-only"]);
        assert!(s.request().prefix && s.request().keys_only);
        assert_eq!(&s.request().start[..], b"user/");
        assert_eq!(s.request().limit, 100);
        let s = scan_req(&["--from", "a", "--to", "m", "--limit", "0", "--serializable"]);
        assert!(!s.request().prefix && s.request().serializable);
        assert_eq!(
            (&s.request().start[..], &s.request().end[..]),
            (&b"a"[..], &b"m"[..])
        );
        assert_eq!(s.request().limit, 0);
        let s = scan_req(&[]);
        assert!(s.request().start.is_empty() && s.request().end.is_empty());
        let s = scan_req(&["--encoding", "hex", "--from", "ff00", "--to", "ff01"]);
        assert_eq!(
            (&s.request().start[..], &s.request().end[..]),
            (&b"\xff\x00"[..], &b"\xff\x01"[..])
        );
        assert!(scan_of(&scan_args(&["--encoding", "hex", "--prefix", "zz"])).is_err());
    }
}
