//! Reads and writes of keys: the `Kv` service.

use std::future::Future;

use bytes::Bytes;
use proto::kv::kv_client::KvClient;
use proto::kv::{
    compare, txn_op, txn_op_result, AppendRequest, AppendResponse, Compare, CompareOp,
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, KeyValue, PutRequest, PutResponse,
    RegisterSessionRequest, ScanRequest, ScanResponse, TxnGet, TxnOp, TxnPut, TxnRequest,
    TxnResponse,
};

use crate::client::{Client, Route};
use crate::error::{Error, Result};
use crate::limits;
use crate::security::Conn;
use crate::session::Session;

/// How a read is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// Reflects every write acknowledged before the read started (served by
    /// the leader after a ReadIndex round). The default.
    #[default]
    Linearizable,
    /// Served by any node from its local state at once; may be stale.
    Serializable,
}

/// What a [`Client::scan`] reads: build one with [`Scan::prefix`],
/// [`Scan::range`] or [`Scan::all`], then narrow it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    request: ScanRequest,
}

impl Scan {
    /// Every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Scan {
        Scan {
            request: ScanRequest {
                start: prefix.into(),
                prefix: true,
                ..ScanRequest::default()
            },
        }
    }

    /// Every key in `[start, end)`; an empty `end` means to the last key.
    pub fn range(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Scan {
        Scan {
            request: ScanRequest {
                start: start.into(),
                end: end.into(),
                ..ScanRequest::default()
            },
        }
    }

    /// Every key.
    pub fn all() -> Scan {
        Scan::range(Bytes::new(), Bytes::new())
    }

    /// Return at most `n` keys (0: the server's maximum).
    pub fn limit(mut self, n: u32) -> Scan {
        self.request.limit = n;
        self
    }

    /// Leave the values out.
    pub fn keys_only(mut self) -> Scan {
        self.request.keys_only = true;
        self
    }

    /// Read with this consistency.
    pub fn mode(mut self, mode: ReadMode) -> Scan {
        self.request.serializable = mode == ReadMode::Serializable;
        self
    }

    /// The request this scan sends.
    pub fn request(&self) -> &ScanRequest {
        &self.request
    }

    /// The rest of this scan after `last`, the last key of a page that said
    /// `more` (a page ends at the key limit or at the node's response size
    /// limit). `limit` is kept as is.
    pub fn resume_after(&self, last: &[u8]) -> Scan {
        let mut request = self.request.clone();
        if request.prefix {
            request.end = prefix_end(&request.start);
            request.prefix = false;
        }
        request.start = next_key(last);
        Scan { request }
    }
}

/// The first key after every key starting with `prefix` (empty: no such
/// key, the prefix is all `0xff`).
fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::new()
}

/// Refuses a request over [`REQUEST_SIZE_MAX`](limits::REQUEST_SIZE_MAX)
/// before it is sent (tonic would fail it mid-stream with an opaque
/// transport error).
fn check_request_size(request: &impl prost::Message) -> Result<()> {
    let size = request.encoded_len();
    if size > limits::REQUEST_SIZE_MAX {
        return Err(Error::InvalidArgument(format!(
            "the request is {size} bytes, over the client's limit of {} bytes; \
             nodes take values up to their limits.value_size_max (1 MiB by default)",
            limits::REQUEST_SIZE_MAX
        )));
    }
    Ok(())
}

fn kv_client(channel: Conn) -> KvClient<Conn> {
    KvClient::new(channel)
        .max_decoding_message_size(limits::RESPONSE_SIZE_MAX)
        .max_encoding_message_size(limits::REQUEST_SIZE_MAX)
}

impl Client {
    /// Sets `key` to `value`. Exactly-once: retries inside the deadline
    /// never apply it twice.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or over-limit key or value;
    /// the transient errors of [`Error`] when no leader could be reached in
    /// time.
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<PutResponse> {
        self.put_request(PutRequest {
            key: key.into(),
            value: value.into(),
            ..PutRequest::default()
        })
        .await
    }

    /// Sends a Put as given (its `client_id` and `seq` are set by the
    /// client); e.g. with `prev_kv: true` to get the previous value back.
    ///
    /// # Errors
    /// As [`put`](Client::put).
    pub async fn put_request(&self, request: PutRequest) -> Result<PutResponse> {
        check_request_size(&request)?;
        self.write(move |channel, client_id, seq| {
            let mut request = request.clone();
            request.client_id = client_id;
            request.seq = seq;
            async move { kv_client(channel).put(request).await }
        })
        .await
    }

    /// Reads `key` linearizably; `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or over-limit key; the
    /// transient errors of [`Error`].
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>> {
        Ok(self.get_with(key, ReadMode::Linearizable).await?.kv)
    }

    /// Reads `key` with the given consistency; the response's header tells
    /// which node answered and at which applied index.
    ///
    /// # Errors
    /// As [`get`](Client::get).
    pub async fn get_with(&self, key: impl Into<Bytes>, mode: ReadMode) -> Result<GetResponse> {
        let request = GetRequest {
            key: key.into(),
            serializable: mode == ReadMode::Serializable,
        };
        let mut in_doubt = false;
        self.call(route_of(mode), &mut in_doubt, |channel| {
            let request = request.clone();
            async move { kv_client(channel).get(request).await }
        })
        .await
    }

    /// Deletes `key`; the response says whether it existed (`deleted`).
    ///
    /// # Errors
    /// As [`put`](Client::put).
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<DeleteResponse> {
        self.delete_request(DeleteRequest {
            key: key.into(),
            ..DeleteRequest::default()
        })
        .await
    }

    /// Deletes every key starting with `prefix` (not empty).
    ///
    /// # Errors
    /// As [`put`](Client::put).
    pub async fn delete_prefix(&self, prefix: impl Into<Bytes>) -> Result<DeleteResponse> {
        self.delete_request(DeleteRequest {
            key: prefix.into(),
            prefix: true,
            ..DeleteRequest::default()
        })
        .await
    }

    /// Deletes every key in `[start, end)`.
    ///
    /// # Errors
    /// As [`put`](Client::put).
    pub async fn delete_range(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
    ) -> Result<DeleteResponse> {
        self.delete_request(DeleteRequest {
            key: start.into(),
            range_end: end.into(),
            ..DeleteRequest::default()
        })
        .await
    }

    /// Sends a Delete as given (`client_id` and `seq` are set by the client).
    ///
    /// # Errors
    /// As [`put`](Client::put).
    pub async fn delete_request(&self, request: DeleteRequest) -> Result<DeleteResponse> {
        self.write(move |channel, client_id, seq| {
            let mut request = request.clone();
            request.client_id = client_id;
            request.seq = seq;
            async move { kv_client(channel).delete(request).await }
        })
        .await
    }

    /// Appends `value` to `key`'s value (an absent key starts empty).
    /// Exactly-once, so a retried append never duplicates its bytes.
    ///
    /// # Errors
    /// As [`put`](Client::put); [`Error::InvalidArgument`] also when the
    /// value would grow past the limit.
    pub async fn append(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<AppendResponse> {
        let request = AppendRequest {
            key: key.into(),
            value: value.into(),
            ..AppendRequest::default()
        };
        check_request_size(&request)?;
        self.write(move |channel, client_id, seq| {
            let mut request = request.clone();
            request.client_id = client_id;
            request.seq = seq;
            async move { kv_client(channel).append(request).await }
        })
        .await
    }

    /// Reads keys in order. At most one page: when the response's `more` is
    /// set, scan again from just after the last key (see
    /// [`next_key`](crate::next_key)).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad range; the transient errors of
    /// [`Error`].
    pub async fn scan(&self, scan: Scan) -> Result<ScanResponse> {
        let route = if scan.request.serializable {
            Route::Any
        } else {
            Route::Leader
        };
        let mut in_doubt = false;
        self.call(route, &mut in_doubt, |channel| {
            let request = scan.request.clone();
            async move { kv_client(channel).scan(request).await }
        })
        .await
    }

    /// Runs a transaction: if every compare holds, the `success` ops, else
    /// the `failure` ops, atomically and exactly once.
    ///
    /// # Errors
    /// As [`put`](Client::put).
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse> {
        check_request_size(&request)?;
        self.write(move |channel, client_id, seq| {
            let mut request = request.clone();
            request.client_id = client_id;
            request.seq = seq;
            async move { kv_client(channel).txn(request).await }
        })
        .await
    }

    /// Compare-and-swap: sets `key` to `new` if its value is `expected`
    /// (`None`: if the key is absent).
    ///
    /// # Errors
    /// [`Error::CasFailed`] with the key as the transaction saw it when the
    /// value differed; otherwise as [`put`](Client::put).
    pub async fn cas(
        &self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: impl Into<Bytes>,
    ) -> Result<TxnResponse> {
        let key = key.into();
        let target = match expected {
            Some(v) => compare::Target::Value(v),
            None => compare::Target::Exists(false),
        };
        let request = TxnRequest {
            compares: vec![Compare {
                key: key.clone(),
                op: CompareOp::Equal as i32,
                target: Some(target),
            }],
            success: vec![TxnOp {
                op: Some(txn_op::Op::Put(TxnPut {
                    key: key.clone(),
                    value: new.into(),
                })),
            }],
            failure: vec![TxnOp {
                op: Some(txn_op::Op::Get(TxnGet { key })),
            }],
            ..TxnRequest::default()
        };
        let response = self.txn(request).await?;
        if response.succeeded {
            return Ok(response);
        }
        let current = response.results.into_iter().find_map(|r| match r.result {
            Some(txn_op_result::Result::Get(g)) => g.kv,
            _ => None,
        });
        Err(Error::CasFailed { current })
    }

    /// Runs one write with a session from the pool: `attempt` gets a channel,
    /// the session's client id and the write's sequence number.
    async fn write<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut(Conn, u64, u64) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let sessions = &self.inner.sessions;
        let _permit = sessions
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable {
                last: "client closed".to_string(),
            })?;
        let mut session = match sessions.pop() {
            Some(s) => s,
            None => self.register_session().await?,
        };
        let mut reopened = false;
        loop {
            let client_id = session.client_id;
            let seq = session.take_seq();
            let mut in_doubt = false;
            let result = self
                .call(Route::Leader, &mut in_doubt, |channel| {
                    attempt(channel, client_id, seq)
                })
                .await;
            match result {
                // The session is gone. If no attempt can have applied, open
                // a new session and send the write again, once.
                Err(Error::SessionExpired(_)) if !in_doubt && !reopened => {
                    reopened = true;
                    session = self.register_session().await?;
                }
                Err(Error::SessionExpired(m)) => return Err(Error::SessionExpired(m)),
                other => {
                    sessions.put(session);
                    return other;
                }
            }
        }
    }

    async fn register_session(&self) -> Result<Session> {
        let mut in_doubt = false;
        let response = self
            .call(Route::Leader, &mut in_doubt, |channel| async move {
                kv_client(channel)
                    .register_session(RegisterSessionRequest {})
                    .await
            })
            .await?;
        if response.client_id == 0 {
            return Err(Error::Server {
                code: tonic::Code::Internal,
                message: "RegisterSession returned client id 0".to_string(),
            });
        }
        tracing::debug!(client_id = response.client_id, "session registered");
        Ok(Session::new(response.client_id))
    }
}

fn route_of(mode: ReadMode) -> Route {
    match mode {
        ReadMode::Linearizable => Route::Leader,
        ReadMode::Serializable => Route::Any,
    }
}

/// The smallest key after `key`: where to continue a scan whose last key was
/// `key`.
pub fn next_key(key: &[u8]) -> Bytes {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    Bytes::from(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_builders_fill_the_request() {
        let s = Scan::prefix("user/")
            .limit(10)
            .keys_only()
            .mode(ReadMode::Serializable);
        assert_eq!(&s.request().start[..], b"user/");
        assert!(s.request().prefix && s.request().keys_only && s.request().serializable);
        assert_eq!(s.request().limit, 10);
        let r = Scan::range("a", "c");
        assert_eq!(
            (&r.request().start[..], &r.request().end[..]),
            (&b"a"[..], &b"c"[..])
        );
        assert!(!r.request().prefix && !r.request().serializable);
        assert_eq!(Scan::all().request(), &ScanRequest::default());
    }

    #[test]
    fn a_resumed_scan_covers_the_rest_of_the_range() {
        let s = Scan::prefix(&b"ab\xff"[..]).limit(5).keys_only();
        let r = s.resume_after(b"ab\xff\x01");
        assert_eq!(&r.request().start[..], b"ab\xff\x01\0");
        assert_eq!(&r.request().end[..], b"ac");
        assert!(!r.request().prefix && r.request().keys_only);
        assert_eq!(r.request().limit, 5);
        let r = Scan::prefix(&b"\xff"[..]).resume_after(b"\xff1");
        assert!(r.request().end.is_empty(), "all-0xff prefix: no end");
        let r = Scan::range("a", "m").resume_after(b"c");
        assert_eq!(
            (&r.request().start[..], &r.request().end[..]),
            (&b"c\0"[..], &b"m"[..])
        );
    }

    #[test]
    fn next_key_is_the_immediate_successor() {
        assert_eq!(&next_key(b"ab")[..], b"ab\0");
        assert!(next_key(b"ab").as_ref() > b"ab".as_ref());
        assert!(next_key(b"ab").as_ref() < b"ab\x00\x00".as_ref());
    }
}
