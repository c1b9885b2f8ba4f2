//! Helpers shared by the integration tests: a driver that numbers entries
//! and unwraps responses.

#![allow(dead_code)]

use std::sync::Arc;

use bitcask::Engine;
use kv::{Applied, Command, Reply, Request, Response, SessionLimits, StateMachine};
use raft::{Entry, EntryKind};

pub fn normal(index: u64, data: Vec<u8>) -> Entry {
    Entry {
        index,
        term: 1,
        kind: EntryKind::Normal,
        data: data.into(),
    }
}

pub fn put(key: &[u8], value: &[u8]) -> Command {
    Command::Put {
        key: key.to_vec(),
        value: value.to_vec(),
        prev_kv: false,
    }
}

pub fn append(key: &[u8], value: &[u8]) -> Command {
    Command::Append {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

/// Drives one state machine: keeps the next index and the log so far.
pub struct Driver<E: Engine> {
    pub sm: StateMachine<E>,
    pub engine: Arc<E>,
    pub log: Vec<Entry>,
    pub limits: SessionLimits,
}

impl<E: Engine> Driver<E> {
    pub fn new(engine: Arc<E>) -> Self {
        Self::with_limits(engine, SessionLimits::default())
    }

    pub fn with_limits(engine: Arc<E>, limits: SessionLimits) -> Self {
        let sm = StateMachine::open_with(Arc::clone(&engine), limits).unwrap();
        Driver {
            sm,
            engine,
            log: Vec::new(),
            limits,
        }
    }

    pub fn next_index(&self) -> u64 {
        self.log.len() as u64 + 1
    }

    /// Appends an entry to the log and applies it.
    pub fn apply_entry(&mut self, kind: EntryKind, data: Vec<u8>) -> Applied {
        let entry = Entry {
            index: self.next_index(),
            term: 1,
            kind,
            data: data.into(),
        };
        self.log.push(entry.clone());
        self.sm.apply(&entry).unwrap()
    }

    pub fn apply_raw(&mut self, data: Vec<u8>) -> Response {
        match self.apply_entry(EntryKind::Normal, data) {
            Applied::Response(r) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    pub fn req(&mut self, client_id: u64, seq: u64, command: Command) -> Response {
        self.apply_raw(
            Request {
                client_id,
                seq,
                command,
            }
            .encode(),
        )
    }

    /// Applies a command without a session and returns its reply.
    pub fn ok(&mut self, command: Command) -> Reply {
        let r = self.req(0, 0, command);
        r.result.unwrap_or_else(|e| panic!("refused: {e}"))
    }

    pub fn register(&mut self) -> u64 {
        match self.ok(Command::RegisterSession) {
            Reply::SessionRegistered { client_id } => client_id,
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// Drops the state machine and opens it again over the same engine.
    pub fn reopen(&mut self) {
        self.sm = StateMachine::open_with(Arc::clone(&self.engine), self.limits).unwrap();
    }

    /// Drops the state machine and the engine, then opens the state machine
    /// over the engine `open` returns (e.g. the same directory reopened),
    /// keeping the log.
    pub fn reopened(self, open: impl FnOnce() -> Arc<E>) -> Self {
        let Driver {
            sm,
            engine,
            log,
            limits,
        } = self;
        drop(sm);
        drop(engine);
        let mut d = Driver::with_limits(open(), limits);
        d.log = log;
        d
    }

    /// Applies every log entry again (as after a restart) and checks each
    /// one is skipped or, above the applied index, applied.
    pub fn replay(&mut self) {
        for entry in self.log.clone() {
            self.sm.apply(&entry).unwrap();
        }
    }

    pub fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.sm.get(key).unwrap().map(|kv| kv.value)
    }
}

/// Makes each named `fn name<E: Engine>(d: Driver<E>)` a test module that
/// runs it over `MemEngine` and over `Bitcask` (in a fresh directory).
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn mem() {
                let engine = std::sync::Arc::new(bitcask::MemEngine::new());
                super::$name($crate::common::Driver::new(engine));
            }

            #[test]
            fn bitcask() {
                let dir = tempfile::tempdir().unwrap();
                let engine = bitcask::Bitcask::open(dir.path(), bitcask::Options::default()).unwrap();
                super::$name($crate::common::Driver::new(std::sync::Arc::new(engine)));
            }
        }
    )*};
}
