//! The client's limits, in one place.

/// Most endpoints a client keeps (the seeds plus addresses learned from
/// leader hints); further learned addresses are not added.
pub const ENDPOINTS_MAX: usize = 64;

/// Default for [`ClientConfig::sessions_max`](crate::ClientConfig): most
/// sessions (and so most writes in flight) per client.
pub const SESSIONS_MAX: usize = 256;

/// Largest gRPC response the client decodes, in bytes (a full Scan page).
pub const RESPONSE_SIZE_MAX: usize = 64 * 1024 * 1024;

/// Largest gRPC request the client encodes, in bytes.
pub const REQUEST_SIZE_MAX: usize = 64 * 1024 * 1024;

/// Most leader-hint redirects followed in a row without backing off (a
/// guard against two nodes pointing at each other).
pub const REDIRECTS_IN_A_ROW_MAX: u32 = 8;
