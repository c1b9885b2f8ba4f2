//! The `Kv` service: writes go through the log ([`Handle::propose`]),
//! reads are linearizable (ReadIndex) unless `serializable`. A follower
//! forwards writes and linearizable reads to the leader (see
//! [`super::forward`]).

use ::kv::{Command, Compare, CompareOp, CompareTarget, Op, OpResult, Reply, Request};
use proto::kv as pb;
use tonic::{Request as GrpcRequest, Response, Status};

use super::{command_error, forward, Handle};

/// The `Kv` gRPC service.
pub(crate) struct KvService {
    pub handle: Handle,
}

fn kv_to_pb(kv: ::kv::KeyValue) -> pb::KeyValue {
    pb::KeyValue {
        key: kv.key.into(),
        value: kv.value.into(),
        create_index: kv.create_index,
        mod_index: kv.mod_index,
        version: kv.version,
    }
}

fn read_error(e: ::kv::Error) -> Status {
    match e {
        ::kv::Error::Command(c) => command_error(c),
        ::kv::Error::Fatal(f) => Status::internal(format!("state machine read failed: {f}")),
    }
}

fn unexpected(reply: &Reply) -> Status {
    Status::internal(format!(
        "unexpected reply from the state machine: {reply:?}"
    ))
}

impl KvService {
    async fn write(
        &self,
        client_id: u64,
        seq: u64,
        command: Command,
    ) -> Result<(u64, Reply), Status> {
        let r = self
            .handle
            .propose(Request {
                client_id,
                seq,
                command,
            })
            .await?;
        let reply = r.result.map_err(command_error)?;
        Ok((r.index, reply))
    }
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn put(
        &self,
        req: GrpcRequest<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        self.handle.check_removed()?;
        if let Some(mut leader) = self.handle.forward_target(req.metadata()) {
            return leader.put(forward::outgoing(req)).await;
        }
        let r = req.into_inner();
        self.handle.check_key(&r.key)?;
        self.handle.check_value(&r.value)?;
        let command = Command::Put {
            key: r.key.to_vec(),
            value: r.value.to_vec(),
            prev_kv: r.prev_kv,
        };
        let (index, reply) = self.write(r.client_id, r.seq, command).await?;
        let Reply::Put { prev } = reply else {
            return Err(unexpected(&reply));
        };
        Ok(Response::new(pb::PutResponse {
            header: Some(self.handle.header()),
            index,
            prev_kv: prev.map(kv_to_pb),
        }))
    }

    async fn get(
        &self,
        req: GrpcRequest<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        self.handle.check_removed()?;
        if !req.get_ref().serializable {
            if let Some(mut leader) = self.handle.forward_target(req.metadata()) {
                return leader.get(forward::outgoing(req)).await;
            }
        }
        let r = req.into_inner();
        self.handle.check_key(&r.key)?;
        self.handle.read_barrier(r.serializable).await?;
        let kv = self.handle.reader.get(&r.key).map_err(read_error)?;
        Ok(Response::new(pb::GetResponse {
            header: Some(self.handle.header()),
            kv: kv.map(kv_to_pb),
        }))
    }

    async fn delete(
        &self,
        req: GrpcRequest<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.handle.check_removed()?;
        if let Some(mut leader) = self.handle.forward_target(req.metadata()) {
            return leader.delete(forward::outgoing(req)).await;
        }
        let r = req.into_inner();
        self.handle.check_key(&r.key)?;
        let command = if r.prefix {
            if !r.range_end.is_empty() {
                return Err(Status::invalid_argument(
                    "a prefix delete must not have a range_end",
                ));
            }
            Command::DeleteRange {
                start: r.key.to_vec(),
                end: ::kv::prefix_end(&r.key),
            }
        } else if !r.range_end.is_empty() {
            if r.range_end <= r.key {
                return Err(Status::invalid_argument("range_end must be above key"));
            }
            Command::DeleteRange {
                start: r.key.to_vec(),
                end: r.range_end.to_vec(),
            }
        } else {
            Command::Delete {
                key: r.key.to_vec(),
                prev_kv: r.prev_kv,
            }
        };
        let (index, reply) = self.write(r.client_id, r.seq, command).await?;
        let (deleted, prev) = match reply {
            Reply::Delete { deleted, prev } => (u64::from(deleted), prev),
            Reply::DeleteRange { deleted } => (deleted, None),
            other => return Err(unexpected(&other)),
        };
        Ok(Response::new(pb::DeleteResponse {
            header: Some(self.handle.header()),
            index,
            deleted,
            prev_kv: prev.map(kv_to_pb),
        }))
    }

    async fn append(
        &self,
        req: GrpcRequest<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        self.handle.check_removed()?;
        if let Some(mut leader) = self.handle.forward_target(req.metadata()) {
            return leader.append(forward::outgoing(req)).await;
        }
        let r = req.into_inner();
        self.handle.check_key(&r.key)?;
        self.handle.check_value(&r.value)?;
        let command = Command::Append {
            key: r.key.to_vec(),
            value: r.value.to_vec(),
        };
        let (index, reply) = self.write(r.client_id, r.seq, command).await?;
        let Reply::Append { value_len, version } = reply else {
            return Err(unexpected(&reply));
        };
        Ok(Response::new(pb::AppendResponse {
            header: Some(self.handle.header()),
            index,
            version,
            value_len,
        }))
    }

    async fn scan(
        &self,
        req: GrpcRequest<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        self.handle.check_removed()?;
        if !req.get_ref().serializable {
            if let Some(mut leader) = self.handle.forward_target(req.metadata()) {
                return leader.scan(forward::outgoing(req)).await;
            }
        }
        let r = req.into_inner();
        let max = self.handle.limits.scan_limit_max;
        let limit = if r.limit == 0 { max } else { r.limit.min(max) } as usize;
        let (start, end) = if r.prefix {
            (r.start.to_vec(), ::kv::prefix_end(&r.start))
        } else {
            if !r.end.is_empty() && r.end <= r.start {
                return Err(Status::invalid_argument("end must be above start"));
            }
            (r.start.to_vec(), r.end.to_vec())
        };
        if start.len() > self.handle.limits.key_size_max
            || end.len() > self.handle.limits.key_size_max + 1
        {
            return Err(Status::invalid_argument(format!(
                "scan bound exceeds the key size limit of {}",
                self.handle.limits.key_size_max
            )));
        }
        self.handle.read_barrier(r.serializable).await?;
        let (kvs, more) = self
            .handle
            .reader
            .scan_page(&start, &end, limit)
            .map_err(read_error)?;
        let kvs = kvs
            .into_iter()
            .map(|mut kv| {
                if r.keys_only {
                    kv.value.clear();
                }
                kv_to_pb(kv)
            })
            .collect();
        Ok(Response::new(pb::ScanResponse {
            header: Some(self.handle.header()),
            kvs,
            more,
        }))
    }

    async fn txn(
        &self,
        req: GrpcRequest<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        self.handle.check_removed()?;
        if let Some(mut leader) = self.handle.forward_target(req.metadata()) {
            return leader.txn(forward::outgoing(req)).await;
        }
        let r = req.into_inner();
        let mut compares = Vec::with_capacity(r.compares.len());
        for c in r.compares {
            self.handle.check_key(&c.key)?;
            let op = match pb::CompareOp::try_from(c.op) {
                Ok(pb::CompareOp::Equal) => CompareOp::Eq,
                Ok(pb::CompareOp::NotEqual) => CompareOp::NotEq,
                Ok(pb::CompareOp::Less) => CompareOp::Less,
                Ok(pb::CompareOp::Greater) => CompareOp::Greater,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown compare op {}",
                        c.op
                    )))
                }
            };
            let target = match c.target {
                Some(pb::compare::Target::Value(v)) => CompareTarget::Value(v.to_vec()),
                Some(pb::compare::Target::Version(v)) => CompareTarget::Version(v),
                Some(pb::compare::Target::ModIndex(v)) => CompareTarget::ModIndex(v),
                Some(pb::compare::Target::Exists(v)) => CompareTarget::Exists(v),
                None => return Err(Status::invalid_argument("a compare needs a target")),
            };
            compares.push(Compare {
                key: c.key.to_vec(),
                target,
                op,
            });
        }
        let ops = |list: Vec<pb::TxnOp>| -> Result<Vec<Op>, Status> {
            list.into_iter()
                .map(|o| match o.op {
                    Some(pb::txn_op::Op::Put(p)) => {
                        self.handle.check_key(&p.key)?;
                        self.handle.check_value(&p.value)?;
                        Ok(Op::Put {
                            key: p.key.to_vec(),
                            value: p.value.to_vec(),
                        })
                    }
                    Some(pb::txn_op::Op::Delete(d)) => {
                        self.handle.check_key(&d.key)?;
                        Ok(Op::Delete {
                            key: d.key.to_vec(),
                        })
                    }
                    Some(pb::txn_op::Op::Get(g)) => {
                        self.handle.check_key(&g.key)?;
                        Ok(Op::Get {
                            key: g.key.to_vec(),
                        })
                    }
                    None => Err(Status::invalid_argument("a txn op needs an operation")),
                })
                .collect()
        };
        let command = Command::Txn {
            compares,
            success: ops(r.success)?,
            failure: ops(r.failure)?,
        };
        let (index, reply) = self.write(r.client_id, r.seq, command).await?;
        let Reply::Txn { succeeded, results } = reply else {
            return Err(unexpected(&reply));
        };
        let results = results
            .into_iter()
            .map(|res| pb::TxnOpResult {
                result: Some(match res {
                    OpResult::Put => pb::txn_op_result::Result::Put(pb::TxnPutResult {}),
                    OpResult::Delete { deleted } => {
                        pb::txn_op_result::Result::Delete(pb::TxnDeleteResult { deleted })
                    }
                    OpResult::Get { kv } => pb::txn_op_result::Result::Get(pb::TxnGetResult {
                        kv: kv.map(kv_to_pb),
                    }),
                }),
            })
            .collect();
        Ok(Response::new(pb::TxnResponse {
            header: Some(self.handle.header()),
            index,
            succeeded,
            results,
        }))
    }

    async fn register_session(
        &self,
        req: GrpcRequest<pb::RegisterSessionRequest>,
    ) -> Result<Response<pb::RegisterSessionResponse>, Status> {
        self.handle.check_removed()?;
        if let Some(mut leader) = self.handle.forward_target(req.metadata()) {
            return leader.register_session(forward::outgoing(req)).await;
        }
        let (_, reply) = self.write(0, 0, Command::RegisterSession).await?;
        let Reply::SessionRegistered { client_id } = reply else {
            return Err(unexpected(&reply));
        };
        Ok(Response::new(pb::RegisterSessionResponse {
            header: Some(self.handle.header()),
            client_id,
        }))
    }
}
