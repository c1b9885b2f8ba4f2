//! `raftkv`: one binary for everything a user runs.
//!
//! - `raftkv server ...` runs one node (flags, or `--config FILE.toml` with
//!   flags overriding the file).
//! - `raftkv dev` starts a local cluster of N nodes (child processes of this
//!   same binary) and stops them on Ctrl-C.
//! - `raftkv put | get | del | append | scan | cas | status | endpoint
//!   health | members | transfer-leader | snapshot [save | restore]` talk
//!   to a cluster through the `client` library (`snapshot restore` writes a
//!   data dir instead); `--endpoints` defaults to the dev cluster's. These
//!   client options may come before the command too
//!   ([`hoist_client_options`]).
//! - `raftkv bench put|get|mixed` is the load generator.
//!
//! Output is for people by default and JSON with `--json` (one document on
//! stdout). Errors are one line on stderr, `error: ...`, and the exit code
//! says what happened (see [`exit`]).

mod backup_cmd;
mod bench;
mod certs;
mod cluster_cmd;
mod dev;
mod dev_support;
mod encoding;
mod endpoint_cmd;
mod exit;
mod kv_cmd;
mod limits;
mod output;
mod server_cmd;
mod server_env;

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::exit::CliError;

const AFTER_HELP: &str = "\
Quick start:
  raftkv dev                  # a local 3-node cluster; Ctrl-C stops it
  raftkv put greeting hello   # in another terminal
  raftkv get greeting
  raftkv status

Client options (--endpoints, --timeout, --json, --token, --cacert, --cert,
--key) go before or after the command: `raftkv --cacert ca.pem get k` and
`raftkv get k --cacert ca.pem` are the same; `raftkv get --help` lists them.

Exit codes: 0 ok, 1 failed, 2 bad input, 3 key not found (get),
4 compare failed (cas), 5 cluster unavailable or timed out.";

/// The dev cluster's client endpoints, the default `--endpoints`.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// raftkv: a distributed, strongly consistent key-value store built on Raft.
#[derive(Debug, Parser)]
#[command(
    name = "raftkv",
    version,
    about = "raftkv: a distributed, strongly consistent key-value store built on Raft",
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every command that talks to a cluster.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// The cluster's client addresses (any subset of the nodes), comma
    /// separated.
    #[arg(
        long,
        global = true,
        env = "RAFTKV_ENDPOINTS",
        default_value = DEFAULT_ENDPOINTS,
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// Give up after this many seconds (retries and leader changes
    /// included).
    #[arg(long, global = true, default_value_t = 10.0, value_parser = parse_seconds)]
    pub timeout: f64,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// A bearer token, for clusters with `[auth]` tokens.
    #[arg(long, global = true, env = "RAFTKV_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster CA certificate (PEM): talk TLS to the nodes.
    #[arg(long, global = true, value_name = "FILE", env = "RAFTKV_CACERT")]
    pub cacert: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to present, with --key.
    #[arg(long, global = true, value_name = "FILE", requires = "cacert")]
    pub cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long = "key",
        id = "tls_key",
        global = true,
        value_name = "FILE",
        requires = "cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,
    /// Let the node the client reaches forward writes, linearizable reads
    /// and membership changes to the leader, instead of sending the client
    /// to the leader's own address: for clients that cannot reach the
    /// addresses the nodes know each other by (a host talking to containers
    /// through published ports, NAT, a load balancer).
    #[arg(long, global = true, env = "RAFTKV_FOLLOWER_FORWARDING")]
    pub follower_forwarding: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node of a cluster.
    Server(Box<server_cmd::ServerArgs>),
    /// Start a local cluster (N nodes on this machine) until Ctrl-C.
    Dev(dev::DevArgs),
    /// Set a key.
    Put(kv_cmd::PutArgs),
    /// Read a key (exit code 3 when it does not exist).
    Get(kv_cmd::GetArgs),
    /// Delete a key, or every key with a prefix.
    Del(kv_cmd::DelArgs),
    /// Append to a key's value.
    Append(kv_cmd::AppendArgs),
    /// List keys by prefix or range.
    Scan(kv_cmd::ScanArgs),
    /// Compare-and-swap: set KEY to NEW if its value is EXPECTED (exit code
    /// 4 when it is not).
    Cas(kv_cmd::CasArgs),
    /// Show every node's status (exit 5 when one is unreachable).
    Status(cluster_cmd::StatusArgs),
    /// Check the health of nodes (`endpoint health [--cluster]`).
    Endpoint(endpoint_cmd::EndpointArgs),
    /// Show or change the cluster's members.
    Members(cluster_cmd::MembersArgs),
    /// Hand leadership to another voter.
    TransferLeader(cluster_cmd::TransferArgs),
    /// Make nodes snapshot their state and compact their logs; `snapshot
    /// save FILE` backs up the cluster, `snapshot restore FILE` seeds a new
    /// one.
    Snapshot(cluster_cmd::SnapshotArgs),
    /// Load-generate against a cluster and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Write a development CA and node/client certificates (for TLS).
    Certs(certs::CertsArgs),
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(v > 0.0 && v <= 3600.0) {
        return Err(format!("{v} is not within (0, 3600] seconds"));
    }
    Ok(v)
}

impl ClientOpts {
    /// A client of the given endpoints with the given deadline.
    pub fn client(&self) -> Result<client::Client, CliError> {
        let config = self.secure(client::ClientConfig {
            deadline: Duration::from_secs_f64(self.timeout),
            follower_forwarding: self.follower_forwarding,
            ..client::ClientConfig::default()
        })?;
        let endpoints = self
            .endpoints
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        Ok(client::Client::connect(endpoints, config)?)
    }
}

impl ClientOpts {
    /// `config` with the token and TLS settings of these options.
    pub fn secure(
        &self,
        mut config: client::ClientConfig,
    ) -> Result<client::ClientConfig, CliError> {
        config.token = self.token.clone();
        if let Some(ca) = &self.cacert {
            config.tls = Some(client::TlsOptions::from_files(
                ca,
                self.cert.as_deref(),
                self.tls_key.as_deref(),
            )?);
        }
        Ok(config)
    }
}

fn init_logs(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second initialization (tests) fails harmlessly.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The command line with client options given before the command moved
/// after it, where the command's parser takes them: `raftkv --cacert ca.pem
/// get k` becomes `raftkv get --cacert ca.pem k`. Options before a command
/// that takes none (`server`, `dev`, `certs`) stay where they are, and the
/// parser refuses them there.
pub fn hoist_client_options(args: Vec<OsString>) -> Vec<OsString> {
    use clap::CommandFactory;
    // Every client option's long name and whether it takes a value, from
    // the parser's own definition.
    let probe = ClientOpts::augment_args(clap::Command::new("probe"));
    let takes_value = |name: &str| -> Option<bool> {
        probe
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .map(|a| a.get_action().takes_values())
    };
    let mut hoisted = Vec::new();
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        let Some(long) = arg.to_str().and_then(|a| a.strip_prefix("--")) else {
            break;
        };
        let (name, inline_value) = match long.split_once('=') {
            Some((n, _)) => (n, true),
            None => (long, false),
        };
        match takes_value(name) {
            Some(true) if !inline_value => {
                let end = (i + 2).min(args.len());
                hoisted.extend_from_slice(&args[i..end]);
                i = end;
            }
            Some(_) => {
                hoisted.push(arg.clone());
                i += 1;
            }
            None => break,
        }
    }
    let command = args.get(i).and_then(|a| a.to_str());
    let takes_client_options = command.is_some_and(|name| {
        Cli::command()
            .find_subcommand(name)
            .is_some_and(|sc| sc.get_arguments().any(|a| a.get_id() == "endpoints"))
    });
    if hoisted.is_empty() || !takes_client_options {
        return args;
    }
    let mut out = Vec::with_capacity(args.len());
    out.push(args[0].clone());
    out.push(args[i].clone());
    out.extend(hoisted);
    out.extend_from_slice(&args[i + 1..]);
    out
}

/// The command line (client options hoisted after the command), with the
/// `RAFTKV_*` variables of `raftkv server` (see [`server_env`]); exits with
/// clap's message and code 2 on bad input.
fn parse_command_line() -> Cli {
    let args = hoist_client_options(std::env::args_os().collect());
    let matches = server_env::with_server_env(Cli::command()).get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> std::process::ExitCode {
    let cli = parse_command_line();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(exit::FAILURE);
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            std::process::ExitCode::from(e.code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Server(args) => {
            init_logs(&args.log_level, args.json_logs());
            server_cmd::run(*args).await
        }
        Command::Dev(args) => {
            init_logs("warn", false);
            dev::run(args).await
        }
        command => {
            init_logs("error", false);
            match command {
                Command::Put(a) => kv_cmd::put(a).await,
                Command::Get(a) => kv_cmd::get(a).await,
                Command::Del(a) => kv_cmd::del(a).await,
                Command::Append(a) => kv_cmd::append(a).await,
                Command::Scan(a) => kv_cmd::scan(a).await,
                Command::Cas(a) => kv_cmd::cas(a).await,
                Command::Status(a) => cluster_cmd::status(a).await,
                Command::Endpoint(a) => endpoint_cmd::run(a).await,
                Command::Members(a) => cluster_cmd::members(a).await,
                Command::TransferLeader(a) => cluster_cmd::transfer_leader(a).await,
                Command::Snapshot(a) => cluster_cmd::snapshot(a).await,
                Command::Bench(a) => bench::run(a).await,
                Command::Certs(a) => certs::run(a),
                Command::Server(_) | Command::Dev(_) => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("raftkv").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn client_commands_default_to_the_dev_cluster() {
        let cli = parse(&["get", "k"]).map_err(|e| e.to_string());
        let Ok(Cli {
            command: Command::Get(a),
        }) = cli
        else {
            panic!("{cli:?}");
        };
        assert_eq!(
            a.opts.endpoints,
            vec!["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
        );
        assert!(!a.opts.json && !a.serializable);
        assert_eq!(a.key, "k");
        assert_eq!(a.enc.encoding, encoding::Encoding::Text);
    }

    #[test]
    fn flags_parse_into_their_commands() {
        let Ok(Cli {
            command: Command::Put(p),
        }) = parse(&["put", "--endpoints", "h:1,h:2", "--json", "k", "v"])
        else {
            panic!("put");
        };
        assert_eq!(p.opts.endpoints, vec!["h:1", "h:2"]);
        assert!(p.opts.json);
        assert_eq!(p.key, "k");
        assert_eq!(p.value.value.as_deref(), Some(std::ffi::OsStr::new("v")));

        let Ok(Cli {
            command: Command::Scan(s),
        }) = parse(&["scan", "--from", "a", "--to", "b", "--limit", "5"])
        else {
            panic!("scan");
        };
        assert_eq!(s.from.as_deref(), Some(std::ffi::OsStr::new("a")));
        assert_eq!(s.to.as_deref(), Some(std::ffi::OsStr::new("b")));
        assert_eq!(s.limit, 5);

        let Ok(Cli {
            command: Command::Cas(c),
        }) = parse(&["cas", "k", "--expect-absent", "new"])
        else {
            panic!("cas");
        };
        assert!(c.expect_absent && c.new.is_none());
        assert_eq!(
            c.new_or_expected()
                .map(|v| v.to_string_lossy().into_owned()),
            Some("new".to_string())
        );

        let Ok(Cli {
            command: Command::Bench(b),
        }) = parse(&[
            "bench",
            "mixed",
            "--clients",
            "8",
            "--ops",
            "100",
            "--value-size",
            "64",
            "--keys",
            "10",
        ])
        else {
            panic!("bench");
        };
        assert_eq!((b.clients, b.ops, b.value_size, b.keys), (8, 100, 64, 10));

        let Ok(Cli {
            command: Command::Members(m),
        }) = parse(&[
            "members",
            "add-learner",
            "4",
            "127.0.0.1:7004",
            "--json",
            "--endpoints",
            "h:9",
        ])
        else {
            panic!("members");
        };
        assert!(matches!(
            m.action,
            Some(cluster_cmd::MembersAction::AddLearner { id: 4, ref addr }) if addr == "127.0.0.1:7004"
        ));
        assert!(m.opts.json);
        assert_eq!(m.opts.endpoints, vec!["h:9"]);
    }

    fn hoisted(args: &[&str]) -> Vec<String> {
        let argv = std::iter::once("raftkv")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        hoist_client_options(argv)
            .into_iter()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn client_options_before_the_command_move_after_it() {
        assert_eq!(
            hoisted(&["--cacert", "ca.pem", "--json", "--token=t", "get", "k"]),
            ["get", "--cacert", "ca.pem", "--json", "--token=t", "k"]
        );
        assert_eq!(
            hoisted(&["--endpoints", "h:1", "members", "remove", "3"]),
            ["members", "--endpoints", "h:1", "remove", "3"]
        );
        // Nothing to move, or a command without client options: unchanged.
        assert_eq!(hoisted(&["get", "k", "--json"]), ["get", "k", "--json"]);
        assert_eq!(
            hoisted(&["--json", "server", "--id", "1"]),
            ["--json", "server", "--id", "1"]
        );
        // A missing value: left for the parser to refuse.
        assert_eq!(hoisted(&["--cacert"]), ["--cacert"]);

        let parsed = |args: &[&str]| {
            let argv = std::iter::once("raftkv")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect();
            Cli::try_parse_from(hoist_client_options(argv))
        };
        let Ok(Cli {
            command: Command::Put(p),
        }) = parsed(&["--endpoints", "h:1,h:2", "--json", "put", "k", "v"])
        else {
            panic!("put");
        };
        assert_eq!(p.opts.endpoints, vec!["h:1", "h:2"]);
        assert!(p.opts.json);
        assert!(parsed(&["--json", "server", "--id", "1"]).is_err());
    }

    #[test]
    fn bad_command_lines_are_refused() {
        assert!(parse(&["put", "k"]).is_err());
        assert!(parse(&["put", "k", "v", "--value-file", "f"]).is_err());
        assert!(parse(&["put", "k", "--value-file", "f"]).is_ok());
        assert!(parse(&["put", "k", "v", "--encoding", "rot13"]).is_err());
        assert!(parse(&["get", "k", "--raw", "--json"]).is_err());
        assert!(parse(&["get", "k", "--timeout", "0"]).is_err());
        assert!(parse(&["scan", "--prefix", "p", "--from", "a"]).is_err());
        assert!(parse(&["cas", "k", "old", "new", "--expect-absent"]).is_err());
        assert!(parse(&["bench", "put", "--clients", "0"]).is_err());
        assert!(parse(&["members", "promote", "x"]).is_err());
        assert!(parse(&["dev", "--nodes", "0"]).is_err());
    }
}
