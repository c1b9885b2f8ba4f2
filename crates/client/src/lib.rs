//! The raftkv client library.
//!
//! A [`Client`] talks to a raftkv cluster over gRPC (the `Kv` and `Cluster`
//! services of `proto/kv.proto`). Give it any of the nodes' addresses; it
//! finds the leader, follows leader changes, retries inside a deadline, and
//! makes every write apply exactly once.
//!
//! # Example
//!
//! Against a local cluster started with `raftkv dev`:
//!
//! ```no_run
//! use client::{Client, ClientConfig, Error, ReadMode, Scan};
//! use std::time::Duration;
//!
//! # async fn example() -> Result<(), Error> {
//! let config = ClientConfig {
//!     deadline: Duration::from_secs(5),
//!     ..ClientConfig::default()
//! };
//! let kv = Client::connect(
//!     vec!["127.0.0.1:7001".into(), "127.0.0.1:7002".into(), "127.0.0.1:7003".into()],
//!     config,
//! )?;
//!
//! // Writes go to the leader, wherever it is, and apply exactly once.
//! let put = kv.put("greeting", "hello").await?;
//! println!("applied at index {}", put.index);
//! kv.append("greeting", ", world").await?;
//!
//! // Reads are linearizable by default...
//! let kv_pair = kv.get("greeting").await?.expect("just written");
//! assert_eq!(&kv_pair.value[..], b"hello, world");
//! // ...or served by any node, possibly stale, when asked.
//! let _ = kv.get_with("greeting", ReadMode::Serializable).await?;
//!
//! // Compare-and-swap: fails with the current value when it differs.
//! match kv.cas("greeting", Some("nope".into()), "bye").await {
//!     Err(Error::CasFailed { current }) => println!("it was {current:?}"),
//!     other => println!("{other:?}"),
//! }
//!
//! // Ordered scans, one page at a time.
//! let page = kv.scan(Scan::prefix("greet").limit(100)).await?;
//! for item in &page.kvs {
//!     println!("{:?} = {:?}", item.key, item.value);
//! }
//!
//! // The cluster: every node's status, and membership.
//! for node in kv.status_all().await? {
//!     match node.status {
//!         Ok(s) => println!("{} is node {} (term {})", node.addr, s.id, s.term),
//!         Err(e) => println!("{} is down: {e}", node.addr),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Contracts
//!
//! - **Leader discovery.** Operations that need the leader (writes,
//!   linearizable reads, membership changes) go to the leader the client
//!   last saw, else to each endpoint in turn. A follower answers
//!   `UNAVAILABLE` with the leader's address in the `raftkv-leader-addr`
//!   metadata and the client goes there; with no hint (an election is under
//!   way) or when a node cannot be reached, the client backs off and tries
//!   the next one. See [`ClientConfig`] for the timeouts.
//! - **Exactly-once writes.** The client opens sessions with the cluster
//!   (`RegisterSession`) and sends every write with its session's id and a
//!   sequence number that stays the same across retries, so the state
//!   machine answers a retried write from its session table instead of
//!   applying it again. A session carries one write at a time; a client
//!   keeps a pool of up to [`ClientConfig::sessions_max`] of them so that
//!   many tasks can write at once.
//! - **Errors.** A failed operation returns a typed [`Error`]; a transient
//!   one ([`Error::is_transient`]) means the deadline passed: a write may or
//!   may not have applied, but never twice.
//! - **Concurrency.** [`Client`] is `Clone + Send + Sync`; clones share
//!   connections, the leader they know and the session pool.

mod client;
mod cluster;
mod config;
mod diagnose;
mod error;
mod kv;
pub mod limits;
pub mod security;
mod session;

pub use crate::client::Client;
pub use crate::cluster::NodeStatus;
pub use crate::config::ClientConfig;
pub use crate::error::{Error, Result};
pub use crate::kv::{next_key, ReadMode, Scan};
pub use crate::security::TlsOptions;

/// The API's messages (generated from `proto/kv.proto`), for requests built
/// by hand and for reading responses.
pub use proto::kv as pb;
pub use proto::kv::{KeyValue, Member, Role};
