//! A Bitcask storage engine for the replicated state machine.
//!
//! The [`Engine`] trait is what the state machine uses; [`MemEngine`] keeps
//! everything in memory (tests, model); the on-disk Bitcask engine follows.

pub mod engine;
pub mod error;
pub mod limits;
pub mod memory;

pub use engine::{check_key, check_value, Engine, Op, Status, View};
pub use error::{Error, Result};
pub use memory::{MemEngine, MemView};
