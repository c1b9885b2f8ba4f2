//! Peer transport: how Raft messages travel between nodes.

pub mod convert;
