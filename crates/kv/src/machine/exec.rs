//! Running one command: reads see the command's own writes, then the
//! batch's, then the engine; a refused command writes nothing.

use std::collections::BTreeMap;

use bitcask::Engine;
use raft::Index;

use super::meta::{Meta, MetaCache};
use super::reader::{eng, get_record};
use super::{Batch, StateMachine};
use crate::command::{Command, Compare, CompareTarget, Op, Request};
use crate::error::{CommandError, FatalError};
use crate::keys::{self, bounds, user_bounds, Record};
use crate::limits;
use crate::response::{OpResult, Reply, Response};

/// The writes of one command, buffered so that a refused command changes
/// nothing and later ops of a transaction see earlier ones.
struct Tx<'a, E: Engine> {
    engine: &'a E,
    /// Writes of earlier entries of the same batch, not yet in the engine.
    pending: &'a BTreeMap<Vec<u8>, Option<Record>>,
    /// Versions of keys as the engine holds them (not all keys).
    meta: &'a MetaCache,
    writes: BTreeMap<Vec<u8>, Option<Record>>,
}

impl<E: Engine> Tx<'_, E> {
    /// The key as this command's or the batch's writes left it, if they
    /// touched it (`Some(None)`: deleted).
    fn staged(&self, key: &[u8]) -> Option<&Option<Record>> {
        self.writes.get(key).or_else(|| self.pending.get(key))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Record>, FatalError> {
        match self.staged(key) {
            Some(r) => Ok(r.clone()),
            None => get_record(self.engine, key),
        }
    }

    /// What a put needs of the key's current record: from this command's or
    /// the batch's writes, else the cache, else the engine.
    fn meta(&self, key: &[u8]) -> Result<Option<Meta>, FatalError> {
        if let Some(r) = self.staged(key) {
            return Ok(r.as_ref().map(Meta::of));
        }
        if let Some(m) = self.meta.get(key) {
            return Ok(Some(m));
        }
        Ok(get_record(self.engine, key)?.as_ref().map(Meta::of))
    }

    /// Writes `value` at `key`; returns the previous record (read in full).
    fn put(
        &mut self,
        index: Index,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<Option<Record>, FatalError> {
        let prev = self.get(key)?;
        self.write(index, key, value, prev.as_ref().map(Meta::of));
        Ok(prev)
    }

    /// Writes `value` at `key` when the previous value is not wanted (no
    /// engine read if the key's version is cached).
    fn put_blind(&mut self, index: Index, key: &[u8], value: Vec<u8>) -> Result<(), FatalError> {
        let prev = self.meta(key)?;
        self.write(index, key, value, prev);
        Ok(())
    }

    fn write(&mut self, index: Index, key: &[u8], value: Vec<u8>, prev: Option<Meta>) {
        let record = Record {
            value,
            create_index: prev.map_or(index, |p| p.create_index),
            mod_index: index,
            version: prev.map_or(1, |p| p.version + 1),
        };
        self.writes.insert(key.to_vec(), Some(record));
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Record>, FatalError> {
        let prev = self.get(key)?;
        if prev.is_some() {
            self.writes.insert(key.to_vec(), None);
        }
        Ok(prev)
    }

    fn compare(&self, c: &Compare) -> Result<bool, FatalError> {
        let cur = self.get(&c.key)?;
        Ok(match &c.target {
            CompareTarget::Value(v) => cur
                .as_ref()
                .is_some_and(|r| c.op.holds(r.value.as_slice(), v.as_slice())),
            CompareTarget::Version(v) => c.op.holds(&cur.as_ref().map_or(0, |r| r.version), v),
            CompareTarget::ModIndex(v) => c.op.holds(&cur.as_ref().map_or(0, |r| r.mod_index), v),
            CompareTarget::Exists(b) => c.op.holds(&cur.is_some(), b),
        })
    }
}

impl<E: Engine> StateMachine<E> {
    /// Runs a command; a refused one writes nothing.
    pub(super) fn execute(
        &self,
        index: Index,
        request: &Request,
        batch: &mut Batch,
    ) -> Result<Response, FatalError> {
        let mut tx = Tx {
            engine: self.engine(),
            pending: &batch.overlay,
            meta: &self.meta,
            writes: BTreeMap::new(),
        };
        let result = match request.validate() {
            Err(e) => Err(e),
            Ok(()) => self.run(index, &request.command, &mut tx)?,
        };
        let result = result.and_then(|reply| {
            let size = reply.encoded_len() + 32;
            if size > limits::RESPONSE_SIZE_MAX {
                return Err(CommandError::ResponseTooLarge {
                    size: size as u64,
                    max: limits::RESPONSE_SIZE_MAX as u64,
                });
            }
            Ok(reply)
        });
        if result.is_ok() {
            let writes = tx.writes;
            for (key, record) in writes {
                batch.put_user(key, record);
            }
        }
        Ok(Response { index, result })
    }

    fn run(
        &self,
        index: Index,
        command: &Command,
        tx: &mut Tx<'_, E>,
    ) -> Result<Result<Reply, CommandError>, FatalError> {
        let kv = |key: &[u8], r: Option<Record>, want: bool| {
            if want {
                r.map(|r| r.into_kv(key.to_vec()))
            } else {
                None
            }
        };
        Ok(Ok(match command {
            Command::Put {
                key,
                value,
                prev_kv,
            } => {
                if *prev_kv {
                    let prev = tx.put(index, key, value.clone())?;
                    Reply::Put {
                        prev: kv(key, prev, true),
                    }
                } else {
                    tx.put_blind(index, key, value.clone())?;
                    Reply::Put { prev: None }
                }
            }
            Command::Delete { key, prev_kv } => {
                let prev = tx.delete(key)?;
                Reply::Delete {
                    deleted: prev.is_some(),
                    prev: kv(key, prev, *prev_kv),
                }
            }
            Command::DeleteRange { start, end } => {
                let (lo, hi) = user_bounds(start, end);
                let (s, e) = bounds(&lo, &hi);
                let max = limits::DELETE_RANGE_KEYS_MAX;
                let pairs = eng(self.engine().scan(s, e, max + 1))?;
                if pairs.len() > max {
                    return Ok(Err(CommandError::RangeTooLarge { max: max as u64 }));
                }
                for (k, _) in &pairs {
                    if let Some(user) = keys::strip_user(k) {
                        tx.writes.insert(user.to_vec(), None);
                    }
                }
                Reply::DeleteRange {
                    deleted: pairs.len() as u64,
                }
            }
            Command::Append { key, value } => {
                let prev = tx.get(key)?;
                let mut new = prev.map(|p| p.value).unwrap_or_default();
                if new.len() + value.len() > limits::VALUE_SIZE_MAX {
                    return Ok(Err(CommandError::ValueTooLarge {
                        size: (new.len() + value.len()) as u64,
                        max: limits::VALUE_SIZE_MAX as u64,
                    }));
                }
                new.extend_from_slice(value);
                let value_len = new.len() as u64;
                let version = tx.put(index, key, new)?.map_or(1, |p| p.version + 1);
                Reply::Append { value_len, version }
            }
            Command::Txn {
                compares,
                success,
                failure,
            } => {
                let mut succeeded = true;
                for c in compares {
                    if !tx.compare(c)? {
                        succeeded = false;
                        break;
                    }
                }
                let branch = if succeeded { success } else { failure };
                let mut results = Vec::with_capacity(branch.len());
                for op in branch {
                    results.push(match op {
                        Op::Put { key, value } => {
                            tx.put_blind(index, key, value.clone())?;
                            OpResult::Put
                        }
                        Op::Delete { key } => OpResult::Delete {
                            deleted: tx.delete(key)?.is_some(),
                        },
                        Op::Get { key } => OpResult::Get {
                            kv: tx.get(key)?.map(|r| r.into_kv(key.clone())),
                        },
                    });
                }
                Reply::Txn { succeeded, results }
            }
            Command::RegisterSession => return Ok(Err(CommandError::RegisterWithSession)),
        }))
    }
}
