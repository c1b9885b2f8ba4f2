//! The clients: concurrent tasks that issue put, get, append and
//! compare-and-swap on a few keys through the `client` library and record
//! each operation's invocation and completion (see [`crate::history`]).
//!
//! Keys are of two kinds so that each check has what it needs:
//!
//! - register keys `r0`, `r1`, …: put (a unique value), get, and
//!   compare-and-swap (expecting the value this client saw last);
//! - append keys `a0`, `a1`, …: append of a unique token
//!   ([`append_token`]) and get, so a lost or doubled write shows in the
//!   final value.
//!
//! Reads are linearizable, or with `serializable_reads` served by one node
//! chosen at random, locally and possibly stale, while still being checked
//! as linearizable (the mode that must fail).
//!
//! With `follower_forwarding` the clients let followers forward their calls
//! to the leader (as a plain gRPC client would) and stay with the node that
//! answers, so most calls take the follower-to-leader hop under the faults.
//!
//! A write that fails with anything but a definite refusal (an invalid
//! argument, a compare that did not hold) is recorded as unknown: it may
//! have applied. A read that fails is recorded as failed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{Client, ClientConfig, Error as ClientError, ReadMode};
use tokio::sync::watch;

use crate::checks::append_token;
use crate::history::{Op, Outcome, Record};
use crate::limits;
use crate::rng::Rng;

/// Client id used for the final reads (workload clients count from 1).
pub const FINAL_READER: u64 = 0;

/// How the clients behave.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Concurrent client tasks.
    pub clients: usize,
    pub register_keys: usize,
    pub append_keys: usize,
    /// Serve reads serializable (from a random node) instead of linearizable.
    pub serializable_reads: bool,
    /// Let followers forward calls to the leader (see the module docs).
    pub follower_forwarding: bool,
    /// One operation's whole deadline (retries included).
    pub op_timeout: Duration,
    /// Longest pause between two operations of one client.
    pub think_ms_max: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 8,
            register_keys: 3,
            append_keys: 3,
            serializable_reads: false,
            follower_forwarding: false,
            op_timeout: Duration::from_secs(3),
            think_ms_max: 20,
        }
    }
}

impl WorkloadConfig {
    /// Every key the workload uses.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = (0..self.register_keys).map(|i| format!("r{i}")).collect();
        keys.extend((0..self.append_keys).map(|i| format!("a{i}")));
        keys
    }
}

/// The client settings for one operation deadline.
pub fn client_config(op_timeout: Duration) -> ClientConfig {
    ClientConfig {
        deadline: op_timeout,
        attempt_timeout: op_timeout.min(Duration::from_secs(1)),
        connect_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    }
}

/// Nanoseconds since `start`.
pub fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn short(e: &ClientError) -> String {
    let mut s = e.to_string();
    s.truncate(200);
    s
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the clients until `stop` turns true; returns every record.
///
/// # Errors
/// A client that cannot be built (a bad endpoint).
pub async fn run(
    endpoints: Vec<String>,
    config: WorkloadConfig,
    seed: u64,
    clock: Instant,
    stop: watch::Receiver<bool>,
) -> Result<Vec<Record>, ClientError> {
    let budget = Arc::new(AtomicUsize::new(limits::history_ops_max));
    let mut tasks = tokio::task::JoinSet::new();
    let clients = config.clients.clamp(1, limits::clients_max);
    for c in 0..clients {
        let id = c as u64 + 1;
        // Each client lists the nodes in another order, so their first
        // guesses of the leader differ.
        let mut eps = endpoints.clone();
        eps.rotate_left(c % endpoints.len().max(1));
        let main = Client::connect(
            eps,
            ClientConfig {
                follower_forwarding: config.follower_forwarding,
                ..client_config(config.op_timeout)
            },
        )?;
        let mut per_node = Vec::new();
        if config.serializable_reads {
            for e in &endpoints {
                per_node.push(Client::connect(
                    vec![e.clone()],
                    client_config(config.op_timeout),
                )?);
            }
        }
        let worker = Worker {
            id,
            main,
            per_node,
            config: config.clone(),
            rng: Rng::stream(seed, 1000 + id),
            clock,
            budget: Arc::clone(&budget),
            last_seen: BTreeMap::new(),
            appends: 0,
            puts: 0,
        };
        let stop = stop.clone();
        tasks.spawn(worker.run(stop));
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(records) => all.extend(records),
            Err(e) => tracing::error!("client task failed: {e}"),
        }
    }
    all.sort_by_key(|r| r.call_ns);
    Ok(all)
}

struct Worker {
    id: u64,
    main: Client,
    per_node: Vec<Client>,
    config: WorkloadConfig,
    rng: Rng,
    clock: Instant,
    budget: Arc<AtomicUsize>,
    /// The value this client last saw per register key (for CAS).
    last_seen: BTreeMap<String, Option<String>>,
    appends: u64,
    puts: u64,
}

impl Worker {
    async fn run(mut self, stop: watch::Receiver<bool>) -> Vec<Record> {
        let mut records = Vec::new();
        while !*stop.borrow() {
            let taken = self
                .budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1));
            if taken.is_err() {
                break;
            }
            let op = self.next_op();
            records.push(self.perform(op).await);
            let think = self.rng.below(self.config.think_ms_max + 1);
            tokio::time::sleep(Duration::from_millis(think)).await;
        }
        records
    }

    fn next_op(&mut self) -> Op {
        let registers = self.config.register_keys as u64;
        let appends = self.config.append_keys as u64;
        let on_register = appends == 0 || (registers > 0 && self.rng.percent(50));
        let linearizable = !self.config.serializable_reads;
        if on_register {
            let key = format!("r{}", self.rng.below(registers));
            match self.rng.below(10) {
                0..=2 => {
                    self.puts += 1;
                    Op::Put {
                        key,
                        value: format!("c{}.p{}", self.id, self.puts),
                    }
                }
                3..=6 => Op::Get { key, linearizable },
                _ => {
                    self.puts += 1;
                    let expected = self.last_seen.get(&key).cloned().flatten();
                    Op::Cas {
                        key,
                        expected,
                        new: format!("c{}.p{}", self.id, self.puts),
                    }
                }
            }
        } else {
            let key = format!("a{}", self.rng.below(appends));
            if self.rng.percent(60) {
                self.appends += 1;
                Op::Append {
                    key,
                    value: append_token(self.id, self.appends),
                }
            } else {
                Op::Get { key, linearizable }
            }
        }
    }

    async fn perform(&mut self, op: Op) -> Record {
        let call_ns = nanos_since(self.clock);
        let outcome = match &op {
            Op::Put { key, value } => write_outcome(
                self.main
                    .put(Bytes::from(key.clone()), Bytes::from(value.clone()))
                    .await
                    .map(|_| Outcome::Ok),
            ),
            Op::Append { key, value } => write_outcome(
                self.main
                    .append(Bytes::from(key.clone()), Bytes::from(value.clone()))
                    .await
                    .map(|_| Outcome::Ok),
            ),
            Op::Cas { key, expected, new } => {
                let res = self
                    .main
                    .cas(
                        Bytes::from(key.clone()),
                        expected.clone().map(Bytes::from),
                        Bytes::from(new.clone()),
                    )
                    .await;
                match res {
                    Ok(_) => Outcome::Cas(true),
                    Err(ClientError::CasFailed { current }) => {
                        self.last_seen
                            .insert(key.clone(), current.map(|kv| text(&kv.value)));
                        Outcome::Cas(false)
                    }
                    Err(e) => write_outcome(Err(e)),
                }
            }
            Op::Get { key, linearizable } => {
                let res = if *linearizable {
                    self.main.get(Bytes::from(key.clone())).await
                } else {
                    let n = self.rng.below(self.per_node.len() as u64) as usize;
                    match self.per_node.get(n) {
                        Some(c) => c
                            .get_with(Bytes::from(key.clone()), ReadMode::Serializable)
                            .await
                            .map(|r| r.kv),
                        None => self.main.get(Bytes::from(key.clone())).await,
                    }
                };
                match res {
                    Ok(kv) => Outcome::Value(kv.map(|kv| text(&kv.value))),
                    Err(e) => Outcome::Failed(short(&e)),
                }
            }
        };
        match (&op, &outcome) {
            (Op::Put { key, value }, Outcome::Ok) => {
                self.last_seen.insert(key.clone(), Some(value.clone()));
            }
            (Op::Cas { key, new, .. }, Outcome::Cas(true)) => {
                self.last_seen.insert(key.clone(), Some(new.clone()));
            }
            (Op::Get { key, .. }, Outcome::Value(v)) if key.starts_with('r') => {
                self.last_seen.insert(key.clone(), v.clone());
            }
            _ => {}
        }
        let ret_ns = match outcome {
            Outcome::Unknown(_) => None,
            _ => Some(nanos_since(self.clock)),
        };
        Record {
            client: self.id,
            call_ns,
            ret_ns,
            op,
            outcome,
        }
    }
}

/// A write's outcome: a definite refusal is `Failed`, any other error
/// `Unknown`.
fn write_outcome(res: Result<Outcome, ClientError>) -> Outcome {
    match res {
        Ok(o) => o,
        Err(e @ ClientError::InvalidArgument(_)) => Outcome::Failed(short(&e)),
        Err(e) => Outcome::Unknown(short(&e)),
    }
}

/// Reads every key linearizably after healing, retrying each until
/// `deadline`. Returns the reads as records (client [`FINAL_READER`], to
/// add to the history) and the final value of each key that could be read.
pub async fn final_reads(
    client: &Client,
    keys: &[String],
    clock: Instant,
    deadline: Instant,
) -> (Vec<Record>, BTreeMap<String, Option<String>>) {
    let mut records = Vec::new();
    let mut finals = BTreeMap::new();
    for key in keys {
        loop {
            let call_ns = nanos_since(clock);
            match client.get(Bytes::from(key.clone())).await {
                Ok(kv) => {
                    let value = kv.map(|kv| text(&kv.value));
                    records.push(Record {
                        client: FINAL_READER,
                        call_ns,
                        ret_ns: Some(nanos_since(clock)),
                        op: Op::Get {
                            key: key.clone(),
                            linearizable: true,
                        },
                        outcome: Outcome::Value(value.clone()),
                    });
                    finals.insert(key.clone(), value);
                    break;
                }
                Err(e) => {
                    if Instant::now() >= deadline {
                        tracing::warn!("final read of {key} failed: {e}");
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    (records, finals)
}
