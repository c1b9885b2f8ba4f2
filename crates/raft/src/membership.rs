//! Cluster configurations and how they change.
//!
//! TODO: safety argument.
