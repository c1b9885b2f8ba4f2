//! TLS and bearer tokens on the client side.
//!
//! - [`TlsOptions`]: the cluster CA to trust (PEM) and, optionally, a client
//!   certificate and key to present. With TLS set the client dials
//!   `https://host:port`; the server's certificate must name the host (or
//!   IP) of the endpoint and be signed by the CA.
//! - `ClientConfig::token`: sent as `authorization: Bearer <token>` on every
//!   call (see the server's `security` module for the roles).

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::error::{Error, Result};

/// TLS settings: PEM bytes.
#[derive(Clone)]
pub struct TlsOptions {
    /// The CA that signed the nodes' certificates.
    pub ca_pem: Vec<u8>,
    /// A client certificate chain and its key, for servers that ask for one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// Reads the CA and, if both given, a certificate and key, from PEM
    /// files.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a file cannot be read, or only one of
    /// `cert` and `key` is given.
    pub fn from_files(
        ca: &std::path::Path,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
    ) -> Result<TlsOptions> {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", p.display())))
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => {
                return Err(Error::InvalidArgument(
                    "a client certificate needs its key (give both or neither)".into(),
                ))
            }
        };
        Ok(TlsOptions {
            ca_pem: read(ca)?,
            identity,
        })
    }

    pub(crate) fn config(&self) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        c
    }
}

/// Adds the bearer token to every call, and (unless
/// [`ClientConfig::follower_forwarding`](crate::ClientConfig::follower_forwarding))
/// asks followers for the leader hint rather than forwarding: the client
/// follows hints itself and then talks to the leader directly.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    header: Option<MetadataValue<Ascii>>,
    forwarding: bool,
}

impl Auth {
    pub(crate) fn new(token: Option<&str>, forwarding: bool) -> Result<Auth> {
        let header =
            match token {
                None => None,
                Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                    Error::InvalidArgument("the token must be printable ASCII".into())
                })?),
            };
        Ok(Auth { header, forwarding })
    }
}

impl Interceptor for Auth {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        if !self.forwarding {
            req.metadata_mut().insert(
                proto::kv::NO_FORWARD_METADATA,
                MetadataValue::from_static("1"),
            );
        }
        Ok(req)
    }
}

/// A connection to one node, with the token added to each call.
pub type Conn = InterceptedService<Channel, Auth>;
