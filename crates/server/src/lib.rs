//! The raftkv node runtime: the tokio tasks that drive the Raft core, the
//! peer transport, the gRPC services and the node's configuration.
//!
//! # Running a node
//!
//! ```no_run
//! # async fn example() -> Result<(), server::ServerError> {
//! let config = server::Config::from_toml_str(r#"
//!     id = 1
//!     listen_addr = "127.0.0.1:7001"
//!     data_dir = "/tmp/raftkv/1"
//!     [peers]
//!     2 = "127.0.0.1:7002"
//!     3 = "127.0.0.1:7003"
//! "#)?;
//! server::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! [`run`] binds `listen_addr`; [`run_with_listener`] takes an already bound
//! listener, so tests can bind `127.0.0.1:0`. Both return when `shutdown`
//! completes (after a graceful stop) or when the node fails.

pub mod config;
pub mod error;
pub mod limits;
pub mod transport;

use std::future::Future;

pub use config::{Config, ConfigError, Limits, TestHooks};
pub use error::ServerError;

/// Run a node until `shutdown` completes: bind `config.listen_addr`, then as
/// [`run_with_listener`].
///
/// # Errors
/// An invalid configuration, an unusable data dir, a failed bind, or a
/// fatal storage or state-machine error while running.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(&config.listen_addr)
        .await
        .map_err(|e| ServerError::Serve(format!("bind {}: {e}", config.listen_addr)))?;
    run_with_listener(config, listener, shutdown).await
}

/// Run a node on an already bound listener until `shutdown` completes.
///
/// `config.listen_addr` is ignored for binding; the address other nodes use
/// is still `config.advertise_addr()`.
///
/// # Errors
/// As [`run`].
pub async fn run_with_listener(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    config.validate()?;
    let _ = (listener, shutdown);
    Err(ServerError::Task(
        "the node runtime is being built (work in progress)".to_string(),
    ))
}
