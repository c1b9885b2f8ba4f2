//! The simulator's bounds, in one place.

/// Most messages in flight in the simulated network; a send beyond it is
/// dropped (and counted), like a full socket buffer.
pub const MESSAGES_IN_FLIGHT_MAX: usize = 200_000;

/// Most client requests and replies in flight.
pub const CLIENT_EVENTS_IN_FLIGHT_MAX: usize = 100_000;

/// Most nodes a run may create (the initial ones and those added by
/// membership changes).
pub const NODES_MAX: usize = 16;

/// Most simulated clients.
pub const CLIENTS_MAX: usize = 64;

/// Most time units a run may last.
pub const STEPS_MAX: u64 = 100_000_000;

/// Most reads a node keeps waiting for its state machine to catch up.
pub const READS_WAITING_MAX: usize = 10_000;

/// Most peer messages, and most client requests, held for a stalled node;
/// beyond it they are dropped (a full socket buffer).
pub const STALL_HELD_MAX: usize = 10_000;
