//! A Bitcask storage engine for the replicated state machine.
//!
//! The [`Engine`] trait is what the state machine uses; [`MemEngine`] keeps
//! everything in memory (tests, model); [`Bitcask`] keeps it on disk.

mod bitcask;
pub mod engine;
pub mod error;
mod file;
mod format;
pub mod limits;
pub mod memory;
mod merge;
mod recovery;

pub use bitcask::{
    Bitcask, BitcaskView, MergeStats, Options, RecoveryReport, KEYDIR_BYTES_PER_KEY,
};
pub use engine::{check_key, check_value, Engine, Op, Status, View};
pub use error::{Error, Result};
pub use format::VERSION;
pub use memory::{MemEngine, MemView};
