//! The pool of client sessions that makes writes exactly-once.
//!
//! The state machine keeps, per session, the last sequence number it applied
//! and that request's reply, so a session may have only one write in flight:
//! a retry of the same `(client_id, seq)` is answered from the session, a
//! newer `seq` replaces it. To let many tasks write at once, a client holds
//! up to [`ClientConfig::sessions_max`](crate::ClientConfig) sessions and
//! lends one to each write. A session is opened (`RegisterSession`, a write
//! through the log) the first time the pool is empty.
//!
//! Sequence numbers: a write takes `next_seq` and the session moves on to
//! `next_seq + 1` whatever the outcome, so a write abandoned at the deadline
//! can never be confused with the next one: if the abandoned attempt reaches
//! the log after the next write, the state machine refuses it as stale.

use std::sync::Mutex;

use tokio::sync::Semaphore;

/// One session: its id and the sequence number of its next write.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client_id: u64,
    pub(crate) next_seq: u64,
}

impl Session {
    pub(crate) fn new(client_id: u64) -> Session {
        Session {
            client_id,
            next_seq: 1,
        }
    }

    /// The sequence number for the next write.
    pub(crate) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

/// Idle sessions, and permits bounding the sessions in use.
pub(crate) struct Sessions {
    idle: Mutex<Vec<Session>>,
    pub(crate) permits: Semaphore,
}

impl Sessions {
    pub(crate) fn new(max: usize) -> Sessions {
        Sessions {
            idle: Mutex::new(Vec::with_capacity(max)),
            permits: Semaphore::new(max),
        }
    }

    /// An idle session, if any. The caller holds a permit.
    pub(crate) fn pop(&self) -> Option<Session> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Gives a session back for the next write.
    pub(crate) fn put(&self, s: Session) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }

    /// How many sessions are idle.
    #[cfg(test)]
    pub(crate) fn idle_len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_increase_and_sessions_are_reused() {
        let pool = Sessions::new(2);
        assert!(pool.pop().is_none());
        let mut s = Session::new(7);
        assert_eq!(s.take_seq(), 1);
        assert_eq!(s.take_seq(), 2);
        pool.put(s);
        assert_eq!(pool.idle_len(), 1);
        let s = pool.pop();
        assert!(matches!(
            s,
            Some(Session {
                client_id: 7,
                next_seq: 3
            })
        ));
        assert_eq!(pool.permits.available_permits(), 2);
    }
}
